//! Synthetic referrals with ground truth, for evaluating linkage. Households of an adult
//! with children, referred again later (children sometimes in their own right), written with
//! the variation real records show: transliterations, typos, swapped name order, aliases,
//! estimated dates (1 January, year only), claimed ages, moves between areas.
//! Deterministic for a given seed.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::compare::{Dob, PersonRecord};

/// (given names, family names, nationality) by origin.
const ORIGINS: &[(&[&str], &[&str], &str)] = &[
    (
        &[
            "Elira", "Besa", "Arben", "Dritan", "Erion", "Fatjona", "Gentiana", "Ilir", "Klodian",
            "Mirela",
        ],
        &[
            "Hoxha", "Gashi", "Krasniqi", "Shehu", "Berisha", "Leka", "Dervishi",
        ],
        "AL",
    ),
    (
        &[
            "Minh", "Lan", "Huong", "Tuan", "Thu", "Bao", "Linh", "Quang", "Hoa", "Khanh",
        ],
        &["Nguyen", "Tran", "Le", "Pham", "Hoang", "Phan", "Vu"],
        "VN",
    ),
    (
        &[
            "Yonas", "Selam", "Hana", "Tesfay", "Mebrat", "Filmon", "Senait", "Dawit", "Rahel",
            "Yohannes",
        ],
        &[
            "Tesfay",
            "Gebremariam",
            "Haile",
            "Kidane",
            "Berhe",
            "Tekle",
            "Negash",
        ],
        "ER",
    ),
    (
        &[
            "Mohammed", "Fatima", "Ahmed", "Khadija", "Yusuf", "Aisha", "Omar", "Maryam", "Hassan",
            "Zainab",
        ],
        &[
            "Al-Hassan",
            "Khalil",
            "Haddad",
            "Mansour",
            "Saleh",
            "Abdullah",
            "Nasser",
        ],
        "SY",
    ),
    (
        &[
            "Ionut", "Andreea", "Mihai", "Elena", "Stefan", "Ioana", "Florin", "Alina", "Cristian",
            "Gabriela",
        ],
        &[
            "Popescu",
            "Ionescu",
            "Stefanescu",
            "Dumitru",
            "Stan",
            "Munteanu",
            "Rusu",
        ],
        "RO",
    ),
];

/// Outward codes postcodes are made in (real districts across the UK).
const DISTRICTS: &[&str] = &[
    "CT1", "CT9", "ME7", "TN23", "B1", "B10", "B21", "BS1", "BS5", "OX1", "OX4", "NR2", "CB2",
    "HG1", "TA1", "CF10", "CF24", "EH1", "EH6", "G1", "G42", "M8", "M14", "L8", "LS8", "BD3", "S2",
    "NG7", "LE4", "CV1", "SW1A", "E1", "E6", "E13", "N15", "N17", "SE15", "SE18", "W12", "NW10",
    "HA0", "IG1", "RM8", "CR0", "SL1", "LU1", "MK9", "PE1", "NE4", "SR1", "HU3", "DN31", "PL1",
    "EX1", "SO14", "PO1", "BN1", "BT1", "BT12", "AB10",
];
const UNIT_LETTERS: &[char] = &[
    'A', 'B', 'D', 'E', 'F', 'G', 'H', 'J', 'L', 'N', 'P', 'Q', 'R', 'S', 'T', 'U', 'W', 'X', 'Y',
    'Z',
];

fn postcode(rng: &mut impl Rng) -> String {
    let district = DISTRICTS.choose(rng).copied().unwrap_or("B1");
    let a = UNIT_LETTERS.choose(rng).copied().unwrap_or('A');
    let b = UNIT_LETTERS.choose(rng).copied().unwrap_or('B');
    format!("{district} {}{a}{b}", rng.random_range(0..10))
}

fn pick(list: &[&str], rng: &mut impl Rng) -> String {
    list.choose(rng).copied().unwrap_or_default().to_owned()
}

/// Family names made from syllables typical of each origin, so a population has the spread
/// of surnames real ones have (Vietnamese keeps its few very common surnames).
fn family_name(origin: usize, rng: &mut impl Rng) -> String {
    match origin {
        0 => {
            pick(
                &[
                    "Ho", "Ga", "Kra", "She", "Be", "Le", "Der", "Mu", "Zeq", "Ba", "Ke", "Ra",
                    "Du", "Me",
                ],
                rng,
            ) + &pick(
                &[
                    "xha", "shi", "sniqi", "hu", "risha", "ka", "vishi", "ja", "iri", "mi", "lla",
                    "ni",
                ],
                rng,
            )
        }
        1 => pick(ORIGINS[1].1, rng),
        2 => {
            pick(
                &[
                    "Tes", "Ge", "Hai", "Ki", "Ber", "Tek", "Ne", "Ab", "Ha", "Ye", "Me", "Go",
                ],
                rng,
            ) + &pick(
                &[
                    "fay", "bre", "le", "dane", "he", "lu", "gash", "raha", "gos", "mane", "kel",
                    "tom",
                ],
                rng,
            )
        }
        3 => {
            "Al-".to_owned()
                + &pick(
                    &[
                        "Has", "Kha", "Had", "Man", "Sa", "Ab", "Nas", "Ra", "Ja", "Za", "Fa", "Ka",
                    ],
                    rng,
                )
                + &pick(
                    &[
                        "san", "lil", "dad", "sour", "leh", "dul", "ser", "shid", "bir", "ki",
                        "rouk", "mal",
                    ],
                    rng,
                )
        }
        _ => {
            pick(
                &[
                    "Po", "Io", "Ste", "Du", "Sta", "Mun", "Ru", "Con", "Vla", "Ghe", "Ma", "Ni",
                ],
                rng,
            ) + &pick(
                &[
                    "pescu", "nescu", "fanescu", "mitru", "nciu", "teanu", "su", "stantin",
                    "dimir", "orghe", "rin", "colae",
                ],
                rng,
            )
        }
    }
}

/// Spelling variants transliteration produces.
fn transliterate(name: &str, rng: &mut impl Rng) -> String {
    let swaps: &[(&str, &str)] = &[
        ("Mohammed", "Muhammad"),
        ("Yonas", "Jonas"),
        ("Yohannes", "Johannes"),
        ("Khadija", "Hadija"),
        ("Aisha", "Ayesha"),
        ("Yusuf", "Yousef"),
        ("Elira", "Elyra"),
        ("Nguyen", "Nguyễn"),
        ("Huong", "Hương"),
        ("Tesfay", "Tesfaye"),
        ("Stefanescu", "Ștefănescu"),
        ("Ionut", "Ionuț"),
        ("Hoxha", "Hodja"),
        ("Selam", "Salem"),
        ("Senait", "Senayt"),
    ];
    for (a, b) in swaps {
        if name == *a && rng.random_bool(0.7) {
            return (*b).to_owned();
        }
    }
    name.to_owned()
}

fn typo(name: &str, rng: &mut impl Rng) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    if chars.len() > 3 {
        let i = rng.random_range(1..chars.len() - 1);
        chars.swap(i, i + 1);
    }
    chars.into_iter().collect()
}

/// One synthetic record and the true person it is.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub true_person: String,
    pub record: PersonRecord,
    /// The referral the record is on (records of one referral are consecutive).
    pub referral: String,
    /// The referral's subject; otherwise a dependant of the subject.
    pub subject: bool,
    /// The age the person claims (in 2026) when no date of birth was taken.
    pub claimed_age: Option<u32>,
}

/// `households` households, deterministic for `seed`.
pub fn generate(households: usize, seed: u64) -> Vec<Synthetic> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut next_record = 0usize;
    for h in 0..households {
        let origin = rng.random_range(0..ORIGINS.len());
        let (givens, _, nationality) = ORIGINS[origin];
        let family = family_name(origin, &mut rng);
        let home = postcode(&mut rng);
        let mut people = vec![(
            format!("h{h}-adult"),
            givens.choose(&mut rng).copied().unwrap_or("A").to_owned(),
            (
                1975 + rng.random_range(0..25),
                rng.random_range(1..=12u32),
                rng.random_range(1..=28u32),
            ),
            rng.random_bool(0.7),
        )];
        for c in 0..rng.random_range(1..=3) {
            // Siblings and parents do not share a given name.
            let taken: Vec<String> = people.iter().map(|p| p.1.clone()).collect();
            let free: Vec<&str> = givens
                .iter()
                .copied()
                .filter(|g| !taken.iter().any(|t| t == g))
                .collect();
            let given = free.choose(&mut rng).copied().unwrap_or("C").to_owned();
            people.push((
                format!("h{h}-child{c}"),
                given,
                (
                    2008 + rng.random_range(0..17),
                    rng.random_range(1..=12u32),
                    rng.random_range(1..=28u32),
                ),
                rng.random_bool(0.5),
            ));
        }
        // How many referrals mention this household (1 to 3), each a fresh set of records.
        let mentions = rng.random_range(1..=3);
        for mention in 0..mentions {
            let postcode = if mention > 0 && rng.random_bool(0.3) {
                postcode(&mut rng)
            } else {
                home.clone()
            };
            // Later referrals are sometimes of one child alone, in their own right.
            let alone = (mention > 0 && people.len() > 1 && rng.random_bool(0.5))
                .then(|| rng.random_range(1..people.len()));
            let referral = format!("h{h}-m{mention}");
            for (index, (person, given, (year, month, day), female)) in people.iter().enumerate() {
                if alone.is_some_and(|only| only != index) {
                    continue;
                }
                let (month, day) = (*month, *day);
                let original = given;
                let mut given = original.clone();
                let mut fam = family.clone();
                if rng.random_bool(0.25) {
                    given = transliterate(&given, &mut rng);
                    fam = transliterate(&fam, &mut rng);
                }
                if rng.random_bool(0.08) {
                    given = typo(&given, &mut rng);
                }
                // Sometimes the name the person was known by before is noted as an alias.
                let alias = (given != *original && rng.random_bool(0.3)).then(|| original.clone());
                let mut record = PersonRecord {
                    id: format!("r{next_record}"),
                    sex: if *female { "f".into() } else { "m".into() },
                    postcode: if rng.random_bool(0.85) {
                        postcode.clone()
                    } else {
                        String::new()
                    },
                    nationality: nationality.to_owned(),
                    ..Default::default()
                };
                if rng.random_bool(0.05) {
                    std::mem::swap(&mut given, &mut fam);
                }
                record.given = given;
                record.family = fam;
                record.aliases.extend(alias);
                record.dob = match rng.random_range(0..10) {
                    0 => Some(Dob {
                        year: *year,
                        month: Some(1),
                        day: Some(1),
                        estimated: true,
                    }),
                    1 => Some(Dob {
                        year: *year,
                        month: None,
                        day: None,
                        estimated: false,
                    }),
                    // Day and month the other way round: only possible when the day could
                    // be a month, or the form would have rejected the date.
                    2 if day <= 12 => Some(Dob {
                        year: *year,
                        month: Some(day),
                        day: Some(month),
                        estimated: false,
                    }),
                    3 => None,
                    // One digit of the day mistyped.
                    4 => Some(Dob {
                        year: *year,
                        month: Some(month),
                        day: Some(if day <= 18 { day + 10 } else { day - 10 }),
                        estimated: false,
                    }),
                    _ => Some(Dob {
                        year: *year,
                        month: Some(month),
                        day: Some(day),
                        estimated: false,
                    }),
                };
                // Without a date of birth, the age the person gives (off by one at times).
                let claimed_age = record.dob.is_none().then(|| {
                    let age = u32::try_from(2026 - *year).unwrap_or(0);
                    if rng.random_bool(0.3) { age + 1 } else { age }
                });
                next_record += 1;
                out.push(Synthetic {
                    true_person: person.clone(),
                    record,
                    referral: referral.clone(),
                    subject: index == 0 || alone.is_some(),
                    claimed_age,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_with_every_kind_of_variation() {
        let a = generate(300, 9);
        let b = generate(300, 9);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.record == y.record));
        assert_ne!(
            generate(300, 10).first().map(|s| s.record.clone()),
            a.first().map(|s| s.record.clone())
        );
        // Each referral has exactly one subject, first, and its records are together.
        for group in a.chunk_by(|x, y| x.referral == y.referral) {
            assert!(group[0].subject);
            assert!(group[1..].iter().all(|s| !s.subject));
        }
        let referrals: std::collections::HashSet<&str> =
            a.iter().map(|s| s.referral.as_str()).collect();
        assert_eq!(
            referrals.len(),
            a.chunk_by(|x, y| x.referral == y.referral).count()
        );
        // Children referred alone, aliases, claimed ages, estimated and year-only dates.
        assert!(
            a.iter()
                .any(|s| s.subject && s.true_person.contains("-child"))
        );
        assert!(a.iter().any(|s| !s.record.aliases.is_empty()));
        assert!(
            a.iter()
                .all(|s| s.claimed_age.is_some() == s.record.dob.is_none())
        );
        assert!(a.iter().any(|s| s.record.dob.is_some_and(|d| d.estimated)));
        assert!(
            a.iter()
                .any(|s| s.record.dob.is_some_and(|d| d.month.is_none()))
        );
    }
}
