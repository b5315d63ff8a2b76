//! The postcode → local authority district table, derived from the ONS Postcode Directory
//! (see `data/POSTCODES_LICENCE.md`) by `scripts/build-postcode-table.py` and shipped inside
//! the binary, so routing never downloads anything.
//!
//! File format (`data/postcodes.txt.gz`, gzip of UTF-8 lines):
//! 1. `# ...` header;
//! 2. `L<TAB>code<TAB>code...`: the district GSS codes, indexed from 0;
//! 3. one line per sector: `<sector><TAB><la>:<unit>,<unit>~,...;<la>:...`, where `<unit>` is
//!    the two final letters of a postcode and `~` marks a terminated postcode.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use crate::Error;
use crate::routing::postcode::PostcodeQuery;

const TABLE_GZ: &[u8] = include_bytes!("../../data/postcodes.txt.gz");
const TABLE_VERSION: &str = include_str!("../../data/POSTCODES_VERSION");

#[derive(Debug, Clone, Copy)]
struct Unit {
    code: [u8; 2],
    la: u16,
    terminated: bool,
}

/// What the table says about a postcode query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostcodeLookup<'a> {
    /// One local authority district. `terminated`: the postcode is no longer in use and this
    /// is its last district.
    Found { district: &'a str, terminated: bool },
    /// A partial postcode whose live postcodes lie in several districts: no guess is made.
    Ambiguous { districts: Vec<&'a str> },
    /// Not in the directory.
    NotFound,
}

/// The loaded table.
#[derive(Debug)]
pub struct PostcodeTable {
    districts: Vec<String>,
    sectors: HashMap<String, Vec<Unit>>,
    /// Outward code → distinct districts of its live postcodes (all postcodes when none live).
    by_outward: HashMap<String, Vec<u16>>,
    postcodes: usize,
    /// Sectors of the file left out because no postcode query can reach them.
    unreachable_sectors: usize,
    version: String,
}

impl PostcodeTable {
    /// The table shipped with kinlink, loaded once per process.
    pub fn shipped() -> Result<&'static PostcodeTable, Error> {
        static TABLE: OnceLock<Result<PostcodeTable, Error>> = OnceLock::new();
        TABLE
            .get_or_init(Self::load_shipped)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Decompresses and parses the shipped table (uncached; benchmarks measure this).
    pub fn load_shipped() -> Result<Self, Error> {
        Self::from_gzip(TABLE_GZ, TABLE_VERSION.trim())
    }

    /// Every full postcode in the table, as `OUTWARD INWARD`, in sector order.
    pub fn postcodes(&self) -> impl Iterator<Item = String> + '_ {
        self.sectors.iter().flat_map(|(sector, units)| {
            units
                .iter()
                .map(move |u| format!("{sector}{}{}", char::from(u.code[0]), char::from(u.code[1])))
        })
    }

    /// Parses a table in the format above.
    pub fn from_gzip(bytes: &[u8], version: &str) -> Result<Self, Error> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Error::PostcodeTableGzip(e.to_string()))?;
        Self::from_text(&text, version)
    }

    pub fn from_text(text: &str, version: &str) -> Result<Self, Error> {
        let mut districts = Vec::new();
        let mut sectors = HashMap::new();
        let mut postcodes = 0;
        let mut unreachable_sectors = 0;
        for (index, line) in text.lines().enumerate() {
            let malformed = || Error::PostcodeTableLine { line: index + 1 };
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, rest) = line.split_once('\t').ok_or_else(malformed)?;
            if key == "L" {
                districts = rest.split('\t').map(str::to_owned).collect();
                continue;
            }
            let mut units = Vec::new();
            for group in rest.split(';') {
                let (la, list) = group.split_once(':').ok_or_else(malformed)?;
                let la: u16 = la.parse().map_err(|_| malformed())?;
                if usize::from(la) >= districts.len() {
                    return Err(malformed());
                }
                for unit in list.split(',') {
                    let terminated = unit.ends_with('~');
                    let code = unit.trim_end_matches('~').as_bytes();
                    let [a, b] = code else {
                        return Err(malformed());
                    };
                    units.push(Unit {
                        code: [*a, *b],
                        la,
                        terminated,
                    });
                }
            }
            // A sector no query can reach (legacy pseudo-postcodes such as Newport's `NPT`,
            // whose outward code is not a UK pattern) is left out: it could never resolve.
            if !matches!(PostcodeQuery::parse(key), Ok(PostcodeQuery::Sector { .. })) {
                unreachable_sectors += 1;
                continue;
            }
            units.sort_by_key(|u| u.code);
            postcodes += units.len();
            sectors.insert(key.to_owned(), units);
        }
        let mut by_outward: HashMap<String, Vec<u16>> = HashMap::new();
        let mut outward_has_live: HashMap<String, bool> = HashMap::new();
        for (sector, units) in &sectors {
            let outward = sector.split(' ').next().unwrap_or_default().to_owned();
            let live = units.iter().any(|u| !u.terminated);
            let has_live = outward_has_live.entry(outward.clone()).or_insert(false);
            let entry = by_outward.entry(outward).or_default();
            if live && !*has_live {
                // First live sector of this outward code: drop terminated-only districts.
                entry.clear();
                *has_live = true;
            }
            if live || !*has_live {
                for la in districts_of(units) {
                    if !entry.contains(&la) {
                        entry.push(la);
                    }
                }
            }
        }
        for las in by_outward.values_mut() {
            las.sort_unstable();
        }
        Ok(Self {
            districts,
            sectors,
            by_outward,
            postcodes,
            unreachable_sectors,
            version: version.to_owned(),
        })
    }

    /// Version recorded on routing decisions.
    /// Sectors of the file left out because no postcode query can reach them.
    pub fn unreachable_sectors(&self) -> usize {
        self.unreachable_sectors
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many postcodes the table holds.
    pub fn len(&self) -> usize {
        self.postcodes
    }

    /// Every district code the table uses.
    pub fn districts(&self) -> impl Iterator<Item = &str> {
        self.districts.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.postcodes == 0
    }

    pub fn lookup(&self, query: &PostcodeQuery) -> PostcodeLookup<'_> {
        match query {
            PostcodeQuery::Full { .. } => {
                let (Some(sector), Some(unit)) = (query.sector(), query.unit()) else {
                    return PostcodeLookup::NotFound;
                };
                let Some(units) = self.sectors.get(&sector) else {
                    return PostcodeLookup::NotFound;
                };
                let code = [unit.as_bytes()[0], unit.as_bytes()[1]];
                match units.binary_search_by_key(&code, |u| u.code) {
                    Ok(i) => PostcodeLookup::Found {
                        district: self.name(units[i].la),
                        terminated: units[i].terminated,
                    },
                    Err(_) => PostcodeLookup::NotFound,
                }
            }
            PostcodeQuery::Sector { .. } => match query.sector().and_then(|s| self.sectors.get(&s))
            {
                Some(units) => self.one_or_many(districts_of(units)),
                None => PostcodeLookup::NotFound,
            },
            PostcodeQuery::District { outward } => match self.by_outward.get(outward) {
                Some(las) => self.one_or_many(las.clone()),
                None => PostcodeLookup::NotFound,
            },
        }
    }

    fn name(&self, la: u16) -> &str {
        self.districts
            .get(usize::from(la))
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn one_or_many(&self, las: Vec<u16>) -> PostcodeLookup<'_> {
        match las.as_slice() {
            [] => PostcodeLookup::NotFound,
            [one] => PostcodeLookup::Found {
                district: self.name(*one),
                terminated: false,
            },
            many => PostcodeLookup::Ambiguous {
                districts: many.iter().map(|la| self.name(*la)).collect(),
            },
        }
    }
}

/// Distinct districts of a sector's live postcodes, or of all when none is live.
fn districts_of(units: &[Unit]) -> Vec<u16> {
    let live: Vec<&Unit> = units.iter().filter(|u| !u.terminated).collect();
    let pool: Vec<&Unit> = if live.is_empty() {
        units.iter().collect()
    } else {
        live
    };
    let mut las: Vec<u16> = pool.iter().map(|u| u.la).collect();
    las.sort_unstable();
    las.dedup();
    las
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# test\nL\tE06000001\tE07000105\tE09000033\n\
        AB1 1\t0:AA,AB~;1:AD\n\
        AB1 2\t1:AA,AB\n\
        ZZ9 9\t2:ZZ~\n";

    fn q(s: &str) -> PostcodeQuery {
        PostcodeQuery::parse(s).unwrap_or(PostcodeQuery::District {
            outward: "?".into(),
        })
    }

    #[test]
    fn full_sector_and_district_lookups() -> Result<(), crate::Error> {
        let t = PostcodeTable::from_text(SAMPLE, "v")?;
        assert_eq!(t.len(), 6);
        assert_eq!(
            t.lookup(&q("AB1 1AA")),
            PostcodeLookup::Found {
                district: "E06000001",
                terminated: false
            }
        );
        assert_eq!(
            t.lookup(&q("ab11ab")),
            PostcodeLookup::Found {
                district: "E06000001",
                terminated: true
            }
        );
        assert_eq!(t.lookup(&q("AB1 1ZZ")), PostcodeLookup::NotFound);
        assert_eq!(
            t.lookup(&q("AB1 2")),
            PostcodeLookup::Found {
                district: "E07000105",
                terminated: false
            }
        );
        assert_eq!(
            t.lookup(&q("AB1 1")),
            PostcodeLookup::Ambiguous {
                districts: vec!["E06000001", "E07000105"]
            }
        );
        assert_eq!(
            t.lookup(&q("AB1")),
            PostcodeLookup::Ambiguous {
                districts: vec!["E06000001", "E07000105"]
            }
        );
        // Only terminated postcodes left: the last district still answers, flagged.
        assert_eq!(
            t.lookup(&q("ZZ9 9ZZ")),
            PostcodeLookup::Found {
                district: "E09000033",
                terminated: true
            }
        );
        assert_eq!(
            t.lookup(&q("ZZ9")),
            PostcodeLookup::Found {
                district: "E09000033",
                terminated: false
            }
        );
        Ok(())
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert!(PostcodeTable::from_text("L\tE06000001\nAB1 1\t5:AA\n", "v").is_err());
        assert!(PostcodeTable::from_text("L\tE06000001\nAB1 1\t0:AAA\n", "v").is_err());
    }
}
