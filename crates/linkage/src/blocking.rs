//! Blocking: only records sharing a key are compared, so a decision never scans the whole
//! registry. Several keys, so one wrong field (a typo in the surname, an estimated year, a
//! move) does not hide a true match.

use std::collections::HashMap;

use crate::compare::PersonRecord;
use crate::normalise::{fold, soundex, transliteration_key};

/// The blocking keys of a record.
pub fn keys(r: &PersonRecord) -> Vec<String> {
    let mut keys = Vec::new();
    let year = r.dob.map(|d| d.year);
    let (given, family) = (fold(&r.given), fold(&r.family));
    if let Some(year) = year {
        if !family.is_empty() {
            keys.push(format!("fs:{}:{year}", soundex(&family)));
        }
        if !given.is_empty() {
            keys.push(format!("gt:{}:{year}", transliteration_key(&given)));
        }
    }
    if !given.is_empty() && !family.is_empty() {
        keys.push(format!("gf:{}:{}", soundex(&given), soundex(&family)));
        // Given and family names swapped.
        keys.push(format!("gf:{}:{}", soundex(&family), soundex(&given)));
    }
    let district: String = r
        .postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if district.len() >= 5
        && let Some(year) = year
    {
        keys.push(format!("pd:{}:{year}", &district[..district.len() - 3]));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Records by blocking key.
#[derive(Debug, Default)]
pub struct Index {
    by_key: HashMap<String, Vec<usize>>,
}

/// Blocks that grow larger than this are too common to be useful and are skipped.
pub const MAX_BLOCK: usize = 2_000;

impl Index {
    pub fn build(records: &[PersonRecord]) -> Self {
        let mut index = Self::default();
        for (i, r) in records.iter().enumerate() {
            index.insert(i, r);
        }
        index
    }

    pub fn insert(&mut self, position: usize, record: &PersonRecord) {
        for key in keys(record) {
            self.by_key.entry(key).or_default().push(position);
        }
    }

    /// Positions of records sharing at least one key with `record`.
    pub fn candidates(&self, record: &PersonRecord) -> Vec<usize> {
        let mut found: Vec<usize> = keys(record)
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .filter(|block| block.len() <= MAX_BLOCK)
            .flatten()
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }
}
