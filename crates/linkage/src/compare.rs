//! Comparison levels: how two records agree on each field. Missing values give no level
//! (neutral: no evidence either way).

use crate::normalise::{fold, soundex, transliteration_keys};

/// A date of birth as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dob {
    pub year: i32,
    pub month: Option<u32>,
    pub day: Option<u32>,
    /// Given as an estimate.
    pub estimated: bool,
}

impl Dob {
    /// `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-MM` or `YYYY`.
    pub fn parse(value: &str) -> Option<Self> {
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        let year = digits.get(0..4)?.parse().ok()?;
        let month = digits
            .get(4..6)
            .and_then(|m| m.parse().ok())
            .filter(|m| (1..=12).contains(m));
        let day = digits
            .get(6..8)
            .and_then(|d| d.parse().ok())
            .filter(|d| (1..=days_in_month(year, month.unwrap_or(1))).contains(d));
        let expected = match (month, day) {
            (None, _) => 4,
            (Some(_), None) => 6,
            (Some(_), Some(_)) => 8,
        };
        (digits.len() == expected).then_some(Self {
            year,
            month,
            day,
            estimated: false,
        })
    }

    /// Year only, estimated, or 1 January (the usual placeholder): agreement means less.
    pub fn weak(&self) -> bool {
        self.estimated || self.day.is_none() || (self.month == Some(1) && self.day == Some(1))
    }

    fn digits(&self) -> String {
        format!(
            "{:04}{:02}{:02}",
            self.year,
            self.month.unwrap_or(0),
            self.day.unwrap_or(0)
        )
    }
}

/// Days in a month of the Gregorian calendar (31 for a month out of range, which
/// [`Dob::parse`] rejects anyway).
fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// A person as linkage sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonRecord {
    pub id: String,
    pub given: String,
    pub family: String,
    pub aliases: Vec<String>,
    pub dob: Option<Dob>,
    /// `f`, `m` or empty.
    pub sex: String,
    pub postcode: String,
    pub nationality: String,
}

/// The fields compared, in a fixed order.
pub const FIELDS: [&str; 6] = [
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "nationality",
    "postcode",
];

/// Level of each field for a pair; `None` where a value is missing.
pub type Comparison = [Option<&'static str>; 6];

/// Jaro–Winkler similarity. Folded names are short ASCII strings, and this runs for every
/// candidate pair and every pair sampled in training, so those are compared on the stack;
/// anything else goes to `strsim` (the same result, checked by a property test).
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    const MAX: usize = 64;
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if !a.is_ascii() || !b.is_ascii() || x.len() > MAX || y.len() > MAX {
        return strsim::jaro_winkler(a, b);
    }
    if x.is_empty() && y.is_empty() {
        return 1.0;
    }
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let window = (x.len().max(y.len()) / 2).saturating_sub(1);
    let mut x_matched = [false; MAX];
    let mut y_matched = [false; MAX];
    let mut matches = 0usize;
    for (i, &c) in x.iter().enumerate() {
        let start = i.saturating_sub(window);
        let end = (i + window + 1).min(y.len());
        for j in start..end {
            if !y_matched[j] && y[j] == c {
                x_matched[i] = true;
                y_matched[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0;
    for (i, &c) in x.iter().enumerate() {
        if !x_matched[i] {
            continue;
        }
        while !y_matched[j] {
            j += 1;
        }
        if c != y[j] {
            transpositions += 1;
        }
        j += 1;
    }
    let m = matches as f64;
    let jaro =
        (m / x.len() as f64 + m / y.len() as f64 + (m - (transpositions / 2) as f64) / m) / 3.0;
    if jaro <= 0.7 {
        return jaro;
    }
    let prefix = x.iter().zip(y).take(4).take_while(|(p, q)| p == q).count();
    jaro + 0.1 * prefix as f64 * (1.0 - jaro)
}

/// Whether two different strings are one edit apart: a character inserted, deleted or
/// replaced, or two neighbours swapped.
fn one_edit_apart(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    match long.len() - short.len() {
        0 => {
            let rest = prefix + 1;
            short[rest..] == long[rest..]
                || (rest < short.len()
                    && short[prefix] == long[rest]
                    && short[rest] == long[prefix]
                    && short[rest + 1..] == long[rest + 1..])
        }
        1 => short[prefix..] == long[prefix + 1..],
        _ => false,
    }
}

/// A name made ready for comparison once, not once per pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreparedName {
    pub folded: String,
    pub keys: Vec<String>,
    pub soundex: String,
    /// Hashes of `folded` and of each key, so most comparisons are of two integers.
    folded_hash: u64,
    key_hashes: Vec<u64>,
}

fn hash_of(text: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(text)
}

impl PreparedName {
    pub fn new(name: &str) -> Self {
        let folded = fold(name);
        if folded.is_empty() {
            return Self::default();
        }
        let keys = transliteration_keys(&folded);
        Self {
            key_hashes: keys.iter().map(|k| hash_of(k)).collect(),
            keys,
            soundex: soundex(&folded),
            folded_hash: hash_of(&folded),
            folded,
        }
    }

    /// The same folded name.
    fn same(&self, other: &Self) -> bool {
        self.folded_hash == other.folded_hash && self.folded == other.folded
    }
}

/// A record made ready for comparison: folded names, their transliteration keys and
/// Soundex, the postcode without spaces. Batch linking and training prepare every record
/// once; comparing two prepared records allocates nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    pub given: PreparedName,
    pub family: PreparedName,
    pub aliases: Vec<String>,
    pub dob: Option<Dob>,
    pub sex: String,
    pub nationality: String,
    pub postcode: String,
}

impl Prepared {
    pub fn new(r: &PersonRecord) -> Self {
        Self {
            given: PreparedName::new(&r.given),
            family: PreparedName::new(&r.family),
            aliases: r.aliases.iter().map(|a| fold(a)).collect(),
            dob: r.dob,
            sex: r.sex.trim().to_ascii_lowercase(),
            nationality: r.nationality.trim().to_ascii_lowercase(),
            postcode: r
                .postcode
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_uppercase(),
        }
    }
}

fn shares_key(a: &PreparedName, b: &PreparedName) -> bool {
    a.key_hashes.iter().any(|k| b.key_hashes.contains(k))
}

fn name_level(
    a: &PreparedName,
    b: &PreparedName,
    a_aliases: &[String],
    b_aliases: &[String],
) -> Option<&'static str> {
    let (fa, fb) = (&a.folded, &b.folded);
    if fa.is_empty() || fb.is_empty() {
        return None;
    }
    if a.same(b) {
        return Some("exact");
    }
    if shares_key(a, b) {
        return Some("translit");
    }
    let jw = jaro_winkler(fa, fb);
    if jw >= 0.94 {
        return Some("jw_high");
    }
    if a_aliases.contains(fb) || b_aliases.contains(fa) {
        return Some("alias");
    }
    if jw >= 0.88 {
        return Some("jw_mid");
    }
    if a.soundex == b.soundex {
        return Some("phonetic");
    }
    if jw >= 0.7 {
        return Some("jw_low");
    }
    Some("else")
}

/// Whether two names are the same name written with a slip: equal, a transliteration, or
/// close by Jaro–Winkler. Used to recognise given and family names written the other way
/// round with a typo in one of them.
fn close(a: &PreparedName, b: &PreparedName) -> bool {
    !a.folded.is_empty()
        && !b.folded.is_empty()
        && (a.same(b) || shares_key(a, b) || jaro_winkler(&a.folded, &b.folded) >= 0.88)
}

fn dob_level(a: Option<Dob>, b: Option<Dob>) -> Option<&'static str> {
    let (a, b) = (a?, b?);
    let weak = a.weak() || b.weak();
    if a.year == b.year && a.month == b.month && a.day == b.day {
        return Some(if weak { "exact_weak" } else { "exact" });
    }
    let years_apart = (a.year - b.year).abs();
    if !weak {
        // Both dates are stated to the day and neither is a placeholder, so a difference is
        // either a clerical slip (one digit, day and month swapped) or a different person:
        // siblings and cousins are born months or years apart, never "about the same time".
        let (da, db) = (a.digits(), b.digits());
        let differing = da.chars().zip(db.chars()).filter(|(x, y)| x != y).count();
        if differing == 1 {
            return Some("typo");
        }
        if a.year == b.year && a.month == b.day && a.day == b.month {
            return Some("swapped");
        }
        if a.year == b.year && a.month == b.month {
            return Some("same_month");
        }
        // Precise dates apart by up to a few years are still sometimes one person (an age
        // assessment replaces a claimed date of birth), so this is not as strong as `else`.
        return Some(if years_apart <= 5 {
            "precise_differ"
        } else {
            "else"
        });
    }
    // At least one date is an estimate (year only, 1 January, marked estimated): agreement
    // on what both state is all that can be asked, and estimates are often a year or more out.
    match years_apart {
        0 if a.month.is_some()
            && a.month == b.month
            && !is_placeholder(a)
            && !is_placeholder(b) =>
        {
            Some("same_month")
        }
        0 => Some("same_year"),
        1 => Some("within_year"),
        2..=5 => Some("within_5_years"),
        // A parent and a child with the same name differ by decades.
        _ => Some("else"),
    }
}

/// 1 January: the usual placeholder, whose month says nothing.
fn is_placeholder(d: Dob) -> bool {
    d.month == Some(1) && d.day == Some(1)
}

fn postcode_level(a: &str, b: &str) -> Option<&'static str> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    if a == b {
        return Some("full");
    }
    // Outward code (district) and the sector digit of a UK postcode; other countries'
    // postcodes (four digits) have neither and compare whole.
    fn split(p: &str) -> (Option<&str>, Option<&str>) {
        if p.len() >= 5 {
            (p.get(..p.len() - 3), p.get(p.len() - 3..p.len() - 2))
        } else {
            (None, None)
        }
    }
    let ((da, sa), (db, sb)) = (split(a), split(b));
    if da.is_some() && da == db && sa.is_some() && sa == sb {
        return Some("sector");
    }
    if da.is_some() && da == db {
        return Some("district");
    }
    // One character mistyped or two swapped.
    if one_edit_apart(a.as_bytes(), b.as_bytes()) {
        return Some("typo");
    }
    Some("else")
}

fn equal_or_else(a: &str, b: &str) -> Option<&'static str> {
    if a.is_empty() || b.is_empty() {
        None
    } else if a == b {
        Some("match")
    } else {
        Some("else")
    }
}

/// Compares two records field by field.
pub fn compare(a: &PersonRecord, b: &PersonRecord) -> Comparison {
    compare_prepared(&Prepared::new(a), &Prepared::new(b))
}

/// Compares two prepared records field by field.
pub fn compare_prepared(a: &Prepared, b: &Prepared) -> Comparison {
    let mut given = name_level(&a.given, &b.given, &a.aliases, &b.aliases);
    let mut family = name_level(&a.family, &b.family, &a.aliases, &b.aliases);
    // Given and family names recorded the other way round (with a slip in one at most).
    if !matches!(given, Some("exact" | "translit" | "jw_high"))
        && !matches!(family, Some("exact" | "translit" | "jw_high"))
        && (a.given.same(&b.family) || a.family.same(&b.given))
        && close(&a.given, &b.family)
        && close(&a.family, &b.given)
    {
        given = Some("swapped");
        family = Some("swapped");
    }
    [
        given,
        family,
        dob_level(a.dob, b.dob),
        equal_or_else(&a.sex, &b.sex),
        equal_or_else(&a.nationality, &b.nationality),
        postcode_level(&a.postcode, &b.postcode),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, family: &str, dob: &str) -> PersonRecord {
        PersonRecord {
            given: given.into(),
            family: family.into(),
            dob: Dob::parse(dob),
            ..Default::default()
        }
    }

    #[test]
    fn name_levels() {
        let level =
            |a: &str, b: &str| name_level(&PreparedName::new(a), &PreparedName::new(b), &[], &[]);
        assert_eq!(level("Elira", "ELIRA"), Some("exact"));
        assert_eq!(level("Mohammed", "Muhammad"), Some("translit"));
        assert_eq!(level("Christina", "Christine"), Some("translit"));
        assert_eq!(level("Martha", "Marhta"), Some("jw_high"));
        assert_eq!(level("Mirela", "Mirena"), Some("jw_mid"));
        assert_eq!(level("Bahar", "Bahir"), Some("translit"));
        // Same Soundex, spelled too differently for the other levels.
        assert_eq!(level("Robert", "Rupert"), Some("phonetic"));
        assert_eq!(level("Elira", "Besa"), Some("else"));
        assert_eq!(level("", "Besa"), None);
        assert_eq!(
            name_level(
                &PreparedName::new("Lena"),
                &PreparedName::new("Helena"),
                &[],
                &["lena".into()]
            ),
            Some("alias")
        );
        assert_eq!(level("Xhesika", "Jessica"), Some("translit"));
        assert_eq!(level("Othman", "Osman"), Some("translit"));
    }

    #[test]
    fn swapped_names() {
        let c = compare(
            &person("Nguyen", "Lan", "2015-03-02"),
            &person("Lan", "Nguyen", "2015-03-02"),
        );
        assert_eq!((c[0], c[1]), (Some("swapped"), Some("swapped")));
        // Swapped with a slip in one of them.
        let c = compare(
            &person("Crea", "Lauren", "1996-06-13"),
            &person("Laurdn", "Crea", "1996-06-13"),
        );
        assert_eq!((c[0], c[1]), (Some("swapped"), Some("swapped")));
    }

    #[test]
    fn date_levels() {
        let level = |a: &str, b: &str| dob_level(Dob::parse(a), Dob::parse(b));
        assert_eq!(level("2015-03-02", "20150302"), Some("exact"));
        assert_eq!(level("2015-01-01", "2015-01-01"), Some("exact_weak"));
        assert_eq!(level("2015", "2015"), Some("exact_weak"));
        assert_eq!(level("2015-03-02", "2015-03-07"), Some("typo"));
        assert_eq!(level("2015-03-02", "2015-02-03"), Some("swapped"));
        assert_eq!(level("2015-03-02", "2015-03-29"), Some("same_month"));
        assert_eq!(level("2015-03-02", "2015-03"), Some("same_month"));
        assert_eq!(level("2015-03-02", "2015"), Some("same_year"));
        assert_eq!(level("2015-03-02", "2015-01-01"), Some("same_year"));
        assert_eq!(level("2015-03-02", "2016"), Some("within_year"));
        assert_eq!(level("2015-03-02", "2011"), Some("within_5_years"));
        assert_eq!(level("2015", "1985-07-20"), Some("else"));
        // Two precise dates apart: different people unless an age was reassessed.
        assert_eq!(level("2015-03-02", "2016-07-20"), Some("precise_differ"));
        assert_eq!(level("2015-03-02", "2011-07-20"), Some("precise_differ"));
        assert_eq!(level("2015-03-02", "1985-07-20"), Some("else"));
        // A digit slip in a placeholder is not a typo of a real date.
        assert_eq!(level("1984-01-01", "1988-01-01"), Some("within_5_years"));
        assert_eq!(level("2015-03-02", ""), None);
        assert_eq!(Dob::parse("2015-13-01"), None);
        assert_eq!(Dob::parse("1955-11-92"), None);
        assert_eq!(Dob::parse("2015-02-29"), None);
        assert_eq!(Dob::parse("2016-02-29").map(|d| d.day), Some(Some(29)));
        assert_eq!(Dob::parse("2015-04-31"), None);
    }

    proptest::proptest! {
        #[test]
        fn jaro_winkler_agrees_with_strsim(a in "[a-z ]{0,12}", b in "[a-z ]{0,12}") {
            let (ours, theirs) = (jaro_winkler(&a, &b), strsim::jaro_winkler(&a, &b));
            proptest::prop_assert!((ours - theirs).abs() < 1e-12, "{a} {b}: {ours} {theirs}");
        }

        #[test]
        fn one_edit_agrees_with_damerau_levenshtein(a in "[a-c0-2]{0,6}", b in "[a-c0-2]{0,6}") {
            proptest::prop_assert_eq!(
                one_edit_apart(a.as_bytes(), b.as_bytes()),
                strsim::damerau_levenshtein(&a, &b) == 1
            );
        }
    }

    #[test]
    fn postcode_levels() {
        let level = |a: &str, b: &str| {
            let prepared = |p: &str| {
                Prepared::new(&PersonRecord {
                    postcode: p.into(),
                    ..Default::default()
                })
                .postcode
            };
            postcode_level(&prepared(a), &prepared(b))
        };
        assert_eq!(level("ct1 2rr", "CT12RR"), Some("full"));
        assert_eq!(level("CT1 2RR", "CT1 2AB"), Some("sector"));
        assert_eq!(level("CT1 2RR", "CT1 9AB"), Some("district"));
        assert_eq!(level("CT1 2RR", "B1 1BB"), Some("else"));
        assert_eq!(level("2255", "2250"), Some("typo"));
        assert_eq!(level("2255", "2525"), Some("typo"));
        assert_eq!(level("2255", "3081"), Some("else"));
        assert_eq!(level("", "B1 1BB"), None);
    }
}
