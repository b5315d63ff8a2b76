//! UK postcodes as agencies type them, parsed into what the lookup table can answer: a full
//! postcode, a sector (`SW1A 2`) or a district (`SW1A`).
//!
//! Normalisation: case and spacing are ignored, and a letter O typed in the inward code's
//! digit position becomes a zero (the inward code always starts with a digit, so that reading
//! is the only valid one). Nothing else is guessed: an ambiguous or malformed postcode is an
//! error naming what is wrong, never a near match.

use std::fmt;

/// A parsed postcode query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PostcodeQuery {
    /// `SW1A 2AA`
    Full { outward: String, inward: String },
    /// `SW1A 2`
    Sector { outward: String, digit: char },
    /// `SW1A`
    District { outward: String },
}

/// Why a postcode could not be read: a triage reason, not a failure of kinlink's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostcodeError {
    Empty,
    BadCharacters,
    BadOutward,
    BadInward,
}

impl fmt::Display for PostcodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostcodeError::Empty => "postcode is empty",
            PostcodeError::BadCharacters => {
                "postcode contains characters other than letters, digits and spaces"
            }
            PostcodeError::BadOutward => {
                "outward code is not a UK pattern (A9, A99, AA9, AA99, A9A or AA9A)"
            }
            PostcodeError::BadInward => "inward code is not a digit followed by two letters",
        })
    }
}

impl PostcodeQuery {
    /// Parses a full or partial postcode.
    pub fn parse(input: &str) -> Result<Self, PostcodeError> {
        let compact: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if compact.is_empty() {
            return Err(PostcodeError::Empty);
        }
        if !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PostcodeError::BadCharacters);
        }
        // Full postcodes are 5 to 7 characters; the last three are the inward code. Try the
        // full reading first, then a sector, then a district.
        if (5..=7).contains(&compact.len()) {
            let (outward, inward) = compact.split_at(compact.len() - 3);
            let inward = fix_inward(inward);
            if valid_outward(outward) && valid_inward(&inward) {
                return Ok(Self::Full {
                    outward: outward.to_owned(),
                    inward,
                });
            }
        }
        let has_space = input.trim().contains(char::is_whitespace);
        if let Some(last) = compact.chars().last() {
            let outward = &compact[..compact.len() - 1];
            // A sector needs the space to be told apart from districts like `SW1A` / `W11`.
            if has_space && valid_outward(outward) {
                let digit = if last == 'O' { '0' } else { last };
                if digit.is_ascii_digit() {
                    return Ok(Self::Sector {
                        outward: outward.to_owned(),
                        digit,
                    });
                }
            }
        }
        if valid_outward(&compact) && !has_space {
            return Ok(Self::District { outward: compact });
        }
        if compact.len() >= 5 {
            let (outward, inward) = compact.split_at(compact.len() - 3);
            if !valid_outward(outward) {
                return Err(PostcodeError::BadOutward);
            }
            if !valid_inward(&fix_inward(inward)) {
                return Err(PostcodeError::BadInward);
            }
        }
        Err(PostcodeError::BadOutward)
    }

    /// The outward code (postcode district) of any query.
    pub fn outward(&self) -> &str {
        match self {
            Self::Full { outward, .. }
            | Self::Sector { outward, .. }
            | Self::District { outward } => outward,
        }
    }

    /// The sector key (`SW1A 2`) of a full postcode or sector.
    pub fn sector(&self) -> Option<String> {
        match self {
            Self::Full { outward, inward } => {
                inward.chars().next().map(|d| format!("{outward} {d}"))
            }
            Self::Sector { outward, digit } => Some(format!("{outward} {digit}")),
            Self::District { .. } => None,
        }
    }

    /// The unit (last two letters) of a full postcode.
    pub fn unit(&self) -> Option<&str> {
        match self {
            Self::Full { inward, .. } => inward.get(1..3),
            _ => None,
        }
    }

    /// Northern Ireland postcodes all start with BT.
    pub fn is_northern_ireland(&self) -> bool {
        let outward = self.outward();
        outward.starts_with("BT") && outward[2..].starts_with(|c: char| c.is_ascii_digit())
    }
}

impl fmt::Display for PostcodeQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { outward, inward } => write!(f, "{outward} {inward}"),
            Self::Sector { outward, digit } => write!(f, "{outward} {digit}"),
            Self::District { outward } => f.write_str(outward),
        }
    }
}

/// The inward code always starts with a digit: an `O` there can only be a zero.
fn fix_inward(inward: &str) -> String {
    let mut chars: Vec<char> = inward.chars().collect();
    if chars.first() == Some(&'O') {
        chars[0] = '0';
    }
    chars.into_iter().collect()
}

fn valid_inward(inward: &str) -> bool {
    let b = inward.as_bytes();
    // Inward letters never use C, I, K, M, O or V.
    let unit_letter = |c: u8| c.is_ascii_uppercase() && !b"CIKMOV".contains(&c);
    b.len() == 3 && b[0].is_ascii_digit() && unit_letter(b[1]) && unit_letter(b[2])
}

fn valid_outward(outward: &str) -> bool {
    let b = outward.as_bytes();
    let letter = |c: u8| c.is_ascii_uppercase();
    let digit = |c: u8| c.is_ascii_digit();
    match b {
        [a, d] => letter(*a) && digit(*d),
        [a, x, y] => {
            letter(*a) && ((digit(*x) && (digit(*y) || letter(*y))) || (letter(*x) && digit(*y)))
        }
        [a, b2, d, z] => letter(*a) && letter(*b2) && digit(*d) && (digit(*z) || letter(*z)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(o: &str, i: &str) -> PostcodeQuery {
        PostcodeQuery::Full {
            outward: o.into(),
            inward: i.into(),
        }
    }

    #[test]
    fn case_spacing_and_the_inward_o_are_normalised() {
        assert_eq!(PostcodeQuery::parse("sw1a 2aa"), Ok(full("SW1A", "2AA")));
        assert_eq!(PostcodeQuery::parse("  SW1A2AA "), Ok(full("SW1A", "2AA")));
        assert_eq!(PostcodeQuery::parse("M1 OAA"), Ok(full("M1", "0AA")));
        assert_eq!(PostcodeQuery::parse("bt1 5gs"), Ok(full("BT1", "5GS")));
        assert_eq!(PostcodeQuery::parse("W1A 0AX"), Ok(full("W1A", "0AX")));
        assert_eq!(PostcodeQuery::parse("EC1A 1BB"), Ok(full("EC1A", "1BB")));
    }

    #[test]
    fn partial_postcodes_are_sectors_or_districts() {
        assert_eq!(
            PostcodeQuery::parse("SW1A 2"),
            Ok(PostcodeQuery::Sector {
                outward: "SW1A".into(),
                digit: '2'
            })
        );
        assert_eq!(
            PostcodeQuery::parse("sw1a"),
            Ok(PostcodeQuery::District {
                outward: "SW1A".into()
            })
        );
        assert_eq!(
            PostcodeQuery::parse("W11"),
            Ok(PostcodeQuery::District {
                outward: "W11".into()
            })
        );
        assert_eq!(
            PostcodeQuery::parse("W1 1"),
            Ok(PostcodeQuery::Sector {
                outward: "W1".into(),
                digit: '1'
            })
        );
    }

    #[test]
    fn malformed_postcodes_say_what_is_wrong() {
        assert_eq!(PostcodeQuery::parse(""), Err(PostcodeError::Empty));
        assert_eq!(
            PostcodeQuery::parse("SW1A-2AA"),
            Err(PostcodeError::BadCharacters)
        );
        assert_eq!(
            PostcodeQuery::parse("1234 5AA"),
            Err(PostcodeError::BadOutward)
        );
        assert_eq!(
            PostcodeQuery::parse("SW1A 2CI"),
            Err(PostcodeError::BadInward)
        );
        assert!(PostcodeQuery::parse("NOT A POSTCODE").is_err());
    }

    #[test]
    fn northern_ireland_is_bt() {
        assert!(PostcodeQuery::parse("BT48 6DQ").is_ok_and(|q| q.is_northern_ireland()));
        assert!(PostcodeQuery::parse("B1 1AA").is_ok_and(|q| !q.is_northern_ireland()));
    }
}
