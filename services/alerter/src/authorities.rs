//! The authority registry: which body runs children's services for a local authority.
//!
//! Built from mySociety's register (`data/uk_local_authorities.csv`, MIT). England's unitary
//! (E06), metropolitan (E08) and London (E09) authorities run their own children's services;
//! a two-tier district (E07) routes to its county (E10). Welsh (W06) and Scottish (S12)
//! councils run their own. An abolished authority routes through its successor when there is
//! exactly one. Northern Ireland's districts (N09) route to Health and Social Care Trusts,
//! which this register does not hold yet, so they stay unresolved (triage).

use std::collections::HashMap;

use serde::Deserialize;

const REGISTER_CSV: &str = include_str!("../data/uk_local_authorities.csv");
const REGISTER_VERSION: &str = include_str!("../data/AUTHORITIES_VERSION");

/// A body that runs children's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildrensServices {
    pub gss_code: String,
    pub name: String,
    pub nation: String,
    /// The district the route went through, when it was a lower-tier district.
    pub via_district: Option<String>,
}

/// Why a GSS code did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("unknown GSS code")]
    UnknownCode,
    #[error("abolished authority with several successors")]
    SplitSuccessors,
    #[error("Northern Ireland district: HSC Trust routing not available")]
    NorthernIreland,
    #[error("not an authority that runs children's services")]
    NotChildrensServices,
}

#[derive(Debug, Deserialize)]
struct Row {
    #[serde(rename = "local-authority-code")]
    code: String,
    #[serde(rename = "nice-name")]
    name: String,
    #[serde(rename = "gss-code")]
    gss: String,
    #[serde(rename = "end-date")]
    end_date: String,
    #[serde(rename = "replaced-by")]
    replaced_by: String,
    nation: String,
    #[serde(rename = "county-la")]
    county: String,
}

/// The register, indexed by GSS code and by mySociety's three-letter code.
#[derive(Debug)]
pub struct AuthorityRegistry {
    by_gss: HashMap<String, usize>,
    by_code: HashMap<String, usize>,
    rows: Vec<Row>,
    version: String,
}

/// Errors loading the register.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("authority register row {row} does not parse: {source}")]
    Parse {
        row: usize,
        #[source]
        source: csv::Error,
    },
}

impl AuthorityRegistry {
    /// The register shipped with kinlink.
    pub fn shipped() -> Result<Self, RegistryError> {
        Self::from_csv(REGISTER_CSV, REGISTER_VERSION.trim())
    }

    pub fn from_csv(text: &str, version: &str) -> Result<Self, RegistryError> {
        let mut rows = Vec::new();
        for (index, row) in csv::Reader::from_reader(text.as_bytes())
            .deserialize::<Row>()
            .enumerate()
        {
            rows.push(row.map_err(|source| RegistryError::Parse {
                row: index + 2,
                source,
            })?);
        }
        let mut by_gss = HashMap::new();
        let mut by_code = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            if !row.gss.is_empty() {
                by_gss.insert(row.gss.clone(), index);
            }
            by_code.insert(row.code.clone(), index);
        }
        Ok(Self {
            by_gss,
            by_code,
            rows,
            version: version.to_owned(),
        })
    }

    /// Version recorded on routing decisions.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The body running children's services for the authority with this GSS code.
    pub fn childrens_services(&self, gss: &str) -> Result<ChildrensServices, Unresolved> {
        let mut index = *self.by_gss.get(gss).ok_or(Unresolved::UnknownCode)?;
        let mut via_district = None;
        // Follow successors of abolished authorities (bounded: chains are short).
        for _ in 0..4 {
            let row = &self.rows[index];
            if row.end_date.is_empty() {
                break;
            }
            let successors: Vec<&str> = row
                .replaced_by
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            match successors.as_slice() {
                [one] => index = *self.by_code.get(*one).ok_or(Unresolved::UnknownCode)?,
                _ => return Err(Unresolved::SplitSuccessors),
            }
        }
        let row = &self.rows[index];
        let prefix = row.gss.get(..3).unwrap_or_default();
        let body = match prefix {
            "E06" | "E08" | "E09" | "E10" | "W06" | "S12" => row,
            "E07" => {
                via_district = Some(row.gss.clone());
                let county = self
                    .by_code
                    .get(&row.county)
                    .ok_or(Unresolved::UnknownCode)?;
                &self.rows[*county]
            }
            "N09" => return Err(Unresolved::NorthernIreland),
            _ => return Err(Unresolved::NotChildrensServices),
        };
        Ok(ChildrensServices {
            gss_code: body.gss.clone(),
            name: body.name.clone(),
            nation: body.nation.clone(),
            via_district,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), RegistryError>;

    fn registry() -> Result<AuthorityRegistry, RegistryError> {
        AuthorityRegistry::shipped()
    }

    #[test]
    fn two_tier_district_routes_to_its_county() -> TestResult {
        let body = registry()?.childrens_services("E07000105");
        assert_eq!(body.as_ref().map(|b| b.gss_code.as_str()), Ok("E10000016"));
        assert_eq!(
            body.map(|b| b.via_district),
            Ok(Some("E07000105".to_owned()))
        );
        Ok(())
    }

    #[test]
    fn unitary_metropolitan_london_welsh_scottish_are_their_own() -> TestResult {
        let registry = registry()?;
        for code in [
            "E06000023",
            "E08000025",
            "E09000033",
            "W06000015",
            "S12000036",
        ] {
            assert_eq!(
                registry.childrens_services(code).map(|b| b.gss_code),
                Ok(code.to_owned()),
                "{code}"
            );
        }
        Ok(())
    }

    #[test]
    fn abolished_authorities_follow_a_single_successor_only() -> TestResult {
        let registry = registry()?;
        // Cumbria county council was split in two in 2023: a person must decide.
        assert_eq!(
            registry.childrens_services("E10000006"),
            Err(Unresolved::SplitSuccessors)
        );
        assert_eq!(
            registry.childrens_services("E99999999"),
            Err(Unresolved::UnknownCode)
        );
        assert_eq!(
            registry.childrens_services("N09000003"),
            Err(Unresolved::NorthernIreland)
        );
        Ok(())
    }

    #[test]
    fn every_current_authority_resolves_to_the_expected_number_of_bodies() -> TestResult {
        let registry = registry()?;
        let bodies_with_prefix = |prefixes: &[&str]| -> Result<usize, Unresolved> {
            let mut bodies = std::collections::BTreeSet::new();
            for row in registry.rows.iter().filter(|r| r.end_date.is_empty()) {
                if prefixes.iter().any(|p| row.gss.starts_with(p)) {
                    bodies.insert(registry.childrens_services(&row.gss)?.gss_code);
                }
            }
            Ok(bodies.len())
        };
        // England's 153 children's services authorities; every district routes to one.
        assert_eq!(
            bodies_with_prefix(&["E06", "E07", "E08", "E09", "E10"]),
            Ok(153)
        );
        assert_eq!(bodies_with_prefix(&["W06"]), Ok(22));
        assert_eq!(bodies_with_prefix(&["S12"]), Ok(32));
        Ok(())
    }
}
