//! The authority registry: which body runs children's services for a local authority.
//!
//! Built from mySociety's register (`data/uk_local_authorities.csv`, MIT). England's unitary
//! (E06), metropolitan (E08) and London (E09) authorities run their own children's services;
//! a two-tier district (E07) routes to its county (E10). Welsh (W06) and Scottish (S12)
//! councils run their own. An abolished authority routes through its successor when there is
//! exactly one, and names every successor for triage otherwise.
//!
//! Northern Ireland: children's services are run by five Health and Social Care Trusts, whose
//! areas follow the 26 council areas that existed before 2015. Seven of today's 11 districts
//! (N09) lie within one trust; four straddle two (Causeway Coast and Glens, Lisburn and
//! Castlereagh, Mid Ulster, Newry Mourne and Down). Nothing finer than the district is shipped,
//! so those four name both candidate trusts and go to triage. Trusts have no GSS code; kinlink
//! identifies them as `HSCT-<NAME>`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::Error;

const REGISTER_CSV: &str = include_str!("../../data/uk_local_authorities.csv");
const REGISTER_VERSION: &str = include_str!("../../data/AUTHORITIES_VERSION");

/// A body that runs children's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildrensServices {
    pub gss_code: String,
    pub name: String,
    pub nation: String,
    /// The district the route went through, when it was a lower-tier district.
    pub via_district: Option<String>,
}

/// Why a GSS code did not resolve to one body: a triage reason, not a failure of kinlink's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No such code in the register.
    UnknownCode,
    /// Several bodies may be responsible (an abolished authority split between successors, or
    /// a Northern Ireland district straddling two trusts): a person must choose.
    SeveralBodies {
        reason: &'static str,
        candidates: Vec<ChildrensServices>,
    },
    /// The code is not of an authority that runs children's services.
    NotChildrensServices,
}

/// Codes ONS issued after the register was compiled: Barnsley and Sheffield were recoded
/// after their 2024 boundary change. The register still lists their earlier codes.
fn current_code_alias(gss: &str) -> &str {
    match gss {
        "E08000038" => "E08000016",
        "E08000039" => "E08000019",
        other => other,
    }
}

/// The five Northern Ireland Health and Social Care Trusts.
const TRUSTS: [(&str, &str); 5] = [
    ("HSCT-BELFAST", "Belfast Health and Social Care Trust"),
    ("HSCT-NORTHERN", "Northern Health and Social Care Trust"),
    (
        "HSCT-SOUTH-EASTERN",
        "South Eastern Health and Social Care Trust",
    ),
    ("HSCT-SOUTHERN", "Southern Health and Social Care Trust"),
    ("HSCT-WESTERN", "Western Health and Social Care Trust"),
];

/// The trust(s) serving each Northern Ireland district, from the pre-2015 council areas each
/// district was formed from.
fn trusts_for_district(gss: &str) -> &'static [&'static str] {
    match gss {
        "N09000001" => &["HSCT-NORTHERN"], // Antrim and Newtownabbey
        "N09000002" => &["HSCT-SOUTHERN"], // Armagh City, Banbridge and Craigavon
        "N09000003" => &["HSCT-BELFAST"],  // Belfast
        "N09000004" => &["HSCT-NORTHERN", "HSCT-WESTERN"], // Causeway Coast and Glens (Limavady: Western)
        "N09000005" => &["HSCT-WESTERN"],                  // Derry City and Strabane
        "N09000006" => &["HSCT-WESTERN"],                  // Fermanagh and Omagh
        "N09000007" => &["HSCT-SOUTH-EASTERN", "HSCT-BELFAST"], // Lisburn and Castlereagh (Castlereagh: Belfast)
        "N09000008" => &["HSCT-NORTHERN"],                      // Mid and East Antrim
        "N09000009" => &["HSCT-NORTHERN", "HSCT-SOUTHERN"],     // Mid Ulster (Dungannon: Southern)
        "N09000010" => &["HSCT-SOUTHERN", "HSCT-SOUTH-EASTERN"], // Newry, Mourne and Down (Down: South Eastern)
        "N09000011" => &["HSCT-SOUTH-EASTERN"],                  // Ards and North Down
        _ => &[],
    }
}

/// The children's-services body an operator names by code: a register code that runs
/// children's services (a district routes to its county), or a Northern Ireland trust.
pub fn body_by_code(
    registry: &AuthorityRegistry,
    code: &str,
) -> Result<ChildrensServices, Unresolved> {
    let code = code.trim().to_ascii_uppercase();
    match registry.childrens_services(&code) {
        Ok(body) => Ok(body),
        Err(unresolved) => trust_by_code(&code).ok_or(unresolved),
    }
}

/// A Northern Ireland trust by its kinlink code (`HSCT-BELFAST`, ...).
pub fn trust_by_code(code: &str) -> Option<ChildrensServices> {
    trust(code, "").map(|t| ChildrensServices {
        via_district: None,
        ..t
    })
}

fn trust(code: &str, via_district: &str) -> Option<ChildrensServices> {
    TRUSTS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(c, name)| ChildrensServices {
            gss_code: (*c).to_owned(),
            name: (*name).to_owned(),
            nation: "Northern Ireland".to_owned(),
            via_district: Some(via_district.to_owned()),
        })
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

impl AuthorityRegistry {
    /// The register shipped with kinlink.
    pub fn shipped() -> Result<Self, Error> {
        Self::from_csv(REGISTER_CSV, REGISTER_VERSION.trim())
    }

    pub fn from_csv(text: &str, version: &str) -> Result<Self, Error> {
        let mut rows = Vec::new();
        for (index, row) in csv::Reader::from_reader(text.as_bytes())
            .deserialize::<Row>()
            .enumerate()
        {
            rows.push(row.map_err(|source| Error::Register {
                row: index + 2,
                message: source.to_string(),
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

    /// Every body that runs children's services today (current unitary, metropolitan, London
    /// borough and county councils in England, Welsh and Scottish councils, and the five
    /// Northern Ireland trusts), by name: what an operator chooses from when routing by hand.
    pub fn bodies(&self) -> Vec<ChildrensServices> {
        let mut bodies: Vec<ChildrensServices> = self
            .rows
            .iter()
            .filter(|row| row.end_date.is_empty())
            .filter(|row| {
                matches!(
                    row.gss.get(..3).unwrap_or_default(),
                    "E06" | "E08" | "E09" | "E10" | "W06" | "S12"
                )
            })
            .map(|row| ChildrensServices {
                gss_code: row.gss.clone(),
                name: row.name.clone(),
                nation: row.nation.clone(),
                via_district: None,
            })
            .chain(TRUSTS.iter().filter_map(|(code, _)| trust_by_code(code)))
            .collect();
        bodies.sort_by(|a, b| a.name.cmp(&b.name));
        bodies
    }

    /// Version recorded on routing decisions.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The body running children's services for the authority with this GSS code.
    pub fn childrens_services(&self, gss: &str) -> Result<ChildrensServices, Unresolved> {
        let gss = current_code_alias(gss);
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
                many => {
                    let candidates = many
                        .iter()
                        .filter_map(|code| self.by_code.get(*code))
                        .filter_map(|i| self.childrens_services(&self.rows[*i].gss).ok())
                        .collect();
                    return Err(Unresolved::SeveralBodies {
                        reason: "abolished authority split between successors",
                        candidates,
                    });
                }
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
            "N09" => {
                let trusts: Vec<ChildrensServices> = trusts_for_district(&row.gss)
                    .iter()
                    .filter_map(|code| trust(code, &row.gss))
                    .collect();
                return match <[ChildrensServices; 1]>::try_from(trusts) {
                    Ok([one]) => Ok(one),
                    Err(candidates) => Err(Unresolved::SeveralBodies {
                        reason: "district straddles two Health and Social Care Trusts",
                        candidates,
                    }),
                };
            }
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

    #[test]
    fn bodies_are_those_that_run_childrens_services() -> TestResult {
        let registry = registry()?;
        let bodies = registry.bodies();
        // Each one resolves to itself, none is a district, and the NI trusts are there.
        for body in &bodies {
            assert_eq!(
                body_by_code(&registry, &body.gss_code)
                    .map(|b| b.gss_code)
                    .ok()
                    .as_deref(),
                Some(body.gss_code.as_str())
            );
            assert!(!body.gss_code.starts_with("E07"));
        }
        assert_eq!(
            bodies
                .iter()
                .filter(|b| b.gss_code.starts_with("HSCT-"))
                .count(),
            5
        );
        assert!(bodies.len() > 200, "{} bodies", bodies.len());
        Ok(())
    }

    type TestResult = Result<(), crate::Error>;

    fn registry() -> Result<AuthorityRegistry, crate::Error> {
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
        let codes = |r: Result<ChildrensServices, Unresolved>| match r {
            Err(Unresolved::SeveralBodies { candidates, .. }) => candidates
                .into_iter()
                .map(|c| c.gss_code)
                .collect::<Vec<_>>(),
            other => panic!("expected several bodies, got {other:?}"),
        };
        assert_eq!(
            codes(registry.childrens_services("E10000006")),
            ["E06000063", "E06000064"]
        );
        assert_eq!(
            registry.childrens_services("E99999999"),
            Err(Unresolved::UnknownCode)
        );
        // A district of the abolished Allerdale routes through Cumberland.
        assert_eq!(
            registry.childrens_services("E07000026").map(|b| b.gss_code),
            Ok("E06000063".into())
        );
        Ok(())
    }

    #[test]
    fn northern_ireland_routes_to_trusts() -> TestResult {
        let registry = registry()?;
        let single = [
            ("N09000001", "HSCT-NORTHERN"),
            ("N09000002", "HSCT-SOUTHERN"),
            ("N09000003", "HSCT-BELFAST"),
            ("N09000005", "HSCT-WESTERN"),
            ("N09000006", "HSCT-WESTERN"),
            ("N09000008", "HSCT-NORTHERN"),
            ("N09000011", "HSCT-SOUTH-EASTERN"),
        ];
        for (district, trust) in single {
            assert_eq!(
                registry.childrens_services(district).map(|b| b.gss_code),
                Ok(trust.to_owned()),
                "{district}"
            );
        }
        for district in ["N09000004", "N09000007", "N09000009", "N09000010"] {
            assert!(
                matches!(registry.childrens_services(district), Err(Unresolved::SeveralBodies { candidates, .. }) if candidates.len() == 2),
                "{district} straddles two trusts"
            );
        }
        let all: std::collections::BTreeSet<String> = (1..=11)
            .flat_map(|n| {
                trusts_for_district(&format!("N09{n:06}"))
                    .iter()
                    .map(|t| (*t).to_owned())
            })
            .collect();
        assert_eq!(all.len(), 5, "every trust serves some district");
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
