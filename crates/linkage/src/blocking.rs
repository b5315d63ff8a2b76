//! Blocking: only records sharing a key are compared, so a decision never scans the whole
//! registry. Several keys, so one wrong field (a typo in the surname, an estimated year, a
//! move) does not hide a true match.

use std::collections::HashMap;

use crate::compare::{PersonRecord, Prepared};

/// The version of [`keys`]: change it whenever the keys a record gets change, so a store
/// made with other keys is re-keyed before it is searched with these.
pub const KEYS_VERSION: &str = "2026-12-transliteration-v2";

/// The blocking keys of a record.
///
/// - `fs`: family-name Soundex and birth year; `gt`: given-name transliteration key and
///   birth year; `pd`: postcode district and birth year. A date that is only an estimate
///   (year only, 1 January, marked estimated) is often a year out, so such a record carries
///   these keys for the year before and after as well: two estimates of one child, or an
///   estimate and the real date, still meet.
/// - `gf`: given and family Soundex, both orders (name typos, swapped names, no date).
/// - `nt`: given and family transliteration keys with no date (Othman Osman and Osman
///   Othman with no date of birth, Xhesika/Jessica): every key of each name.
/// - `pf`, `pg`: the full postcode and the family or given name's Soundex.
/// - `d`: the whole date of birth when it is stated to the day and not a placeholder, which
///   brings together records whose names are both mistyped.
pub fn keys(r: &PersonRecord) -> Vec<String> {
    keys_prepared(&Prepared::new(r))
}

/// [`keys`] of a record already prepared for comparison.
pub fn keys_prepared(r: &Prepared) -> Vec<String> {
    let mut keys = Vec::new();
    each_key(r, &mut |key| keys.push(key.to_owned()));
    keys.sort();
    keys.dedup();
    keys
}

/// The blocking keys of a prepared record as 64-bit hashes (sorted, no repeats), for batch
/// linking: no key string is kept. Two different keys with one hash only add a candidate.
pub fn key_hashes(r: &Prepared) -> Vec<u64> {
    use std::hash::{BuildHasher, Hasher};
    let state =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut hashes = Vec::with_capacity(16);
    each_key(r, &mut |key| {
        let mut hasher = state.build_hasher();
        hasher.write(key.as_bytes());
        hashes.push(hasher.finish());
    });
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// Calls `emit` with every blocking key of `r` (perhaps the same key twice), built in one
/// reused buffer.
fn each_key(r: &Prepared, emit: &mut dyn FnMut(&str)) {
    use std::fmt::Write;
    let mut buf = String::with_capacity(48);
    let mut key = |args: std::fmt::Arguments<'_>| {
        buf.clear();
        // Writing to a String cannot fail.
        let _ = buf.write_fmt(args);
        emit(&buf);
    };
    let (given, family) = (&r.given.folded, &r.family.folded);
    let (given_keys, family_keys) = (&r.given.keys, &r.family.keys);
    let district = (r.postcode.len() >= 5).then(|| &r.postcode[..r.postcode.len() - 3]);
    if let Some(dob) = r.dob {
        let years = if dob.weak() {
            dob.year - 1..=dob.year + 1
        } else {
            dob.year..=dob.year
        };
        for year in years {
            if !family.is_empty() {
                key(format_args!("fs:{}:{year}", r.family.soundex));
            }
            for k in given_keys {
                key(format_args!("gt:{k}:{year}"));
            }
            if let Some(district) = district {
                key(format_args!("pd:{district}:{year}"));
            }
        }
        if let (false, Some(month), Some(day)) = (dob.weak(), dob.month, dob.day) {
            key(format_args!("d:{:04}{month:02}{day:02}", dob.year));
        }
    }
    // The same full postcode and a name that sounds the same: a record with no date of
    // birth and a slip in the other name still meets its match.
    if r.postcode.len() >= 4 {
        if !family.is_empty() {
            key(format_args!("pf:{}:{}", r.postcode, r.family.soundex));
        }
        if !given.is_empty() {
            key(format_args!("pg:{}:{}", r.postcode, r.given.soundex));
        }
    }
    if !given.is_empty() && !family.is_empty() {
        let (gs, fs) = (&r.given.soundex, &r.family.soundex);
        key(format_args!("gf:{gs}:{fs}"));
        // Given and family names swapped.
        key(format_args!("gf:{fs}:{gs}"));
        for g in given_keys {
            for f in family_keys {
                key(format_args!("nt:{g}:{f}"));
            }
        }
    }
}

/// Records by blocking key: key strings (the store's keys), or their hashes
/// ([`key_hashes`], batch linking).
#[derive(Debug)]
pub struct Index<K = String> {
    by_key: HashMap<K, Vec<usize>>,
}

impl<K> Default for Index<K> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }
}

/// Blocks that grow larger than this are too common to be useful and are skipped.
pub const MAX_BLOCK: usize = 2_000;

impl Index<String> {
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
        self.candidates_for_keys(&keys(record))
    }
}

impl<K: std::hash::Hash + Eq + Clone> Index<K> {
    /// An index over records whose keys are already computed, in order.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a Vec<K>>) -> Self
    where
        K: 'a,
    {
        let mut index = Self::default();
        for (position, keys) in keys.into_iter().enumerate() {
            for key in keys {
                index.by_key.entry(key.clone()).or_default().push(position);
            }
        }
        index
    }

    /// Positions of records sharing at least one of `keys`; blocks over [`MAX_BLOCK`] are
    /// skipped.
    pub fn candidates_for_keys(&self, keys: &[K]) -> Vec<usize> {
        let mut found: Vec<usize> = keys
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
