//! Linking the whole registry again with a model, to see what a new model or new thresholds
//! would change before switching to them: which persons would merge and which would split.
//! Nothing is changed; merges and splits stay decisions a person makes (`kinlink review`,
//! `kinlink person split`).
//!
//! The rules are the enricher's: automatic links only (the link band, so the twins cap
//! holds), never two people of one referral, records of anonymous reports left out.
//!
//! - **Splits:** every automatic link made so far is scored again (record against the record
//!   it matched, with the household evidence it had); a link the model would no longer make
//!   means its person would split.
//! - **Merges:** records of different persons that the model would link automatically (the
//!   household context of a referral is not known here, so this errs on the side of fewer
//!   merges).

use std::collections::{BTreeMap, BTreeSet};

use kinlink_linkage::blocking::Index;
use kinlink_linkage::model::{Frequencies, KNOWN_CHILD_OF_SUBJECT};
use kinlink_linkage::{Band, Model, PersonRecord, batch};
use kinlink_proto::v1::MatchMethod;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::registry;

/// A record of the registry with where it belongs now.
#[derive(Debug, Clone)]
pub struct Registered {
    pub record: PersonRecord,
    pub person_id: String,
    pub referral_id: String,
    /// For an automatic link: the record it matched, and whether household context counted.
    pub linked_to: Option<(String, bool)>,
}

/// What linking again would change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Proposal {
    pub model_version: String,
    pub records: usize,
    pub persons_now: usize,
    /// Automatic links made so far, scored again.
    pub links_checked: usize,
    /// Groups of current persons the model would make one.
    pub merges: Vec<Vec<String>>,
    /// Current persons holding an automatic link the model would not make (a review, not
    /// proof of a wrong link: names grow more common as the registry grows, for one).
    pub splits: Vec<String>,
}

/// Every indexed linkage record (anonymous reports are never indexed) with its person now.
pub async fn load(conn: &mut AnyConnection) -> Result<Vec<Registered>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.record_id, r.given_name, r.family_name, r.aliases, r.date_of_birth, \
         r.dob_estimated, r.sex, r.postcode, r.nationality, r.referral_id, r.method, \
         r.matched_record_id, r.evidence, \
         COALESCE(p.merged_into, r.person_id) AS current_person_id \
         FROM linkage_records r JOIN persons p ON p.person_id = r.person_id \
         WHERE EXISTS (SELECT 1 FROM linkage_keys k WHERE k.record_id = r.record_id) \
         ORDER BY r.record_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let automatic = row.try_get::<i64, _>("method")? == MatchMethod::Probabilistic as i64;
            let matched: Option<String> = row.try_get("matched_record_id")?;
            let evidence: String = row.try_get("evidence")?;
            let household = evidence.contains(&format!("\"{KNOWN_CHILD_OF_SUBJECT}\""));
            Ok(Registered {
                record: registry::stored_record(row)?,
                person_id: row.try_get("current_person_id")?,
                referral_id: row.try_get("referral_id")?,
                linked_to: matched.filter(|_| automatic).map(|m| (m, household)),
            })
        })
        .collect()
}

/// Links `registered` again with `model` and compares the result with the persons now.
pub fn propose(model: &Model, registered: &[Registered]) -> Proposal {
    let records: Vec<PersonRecord> = registered.iter().map(|r| r.record.clone()).collect();
    let frequencies = Frequencies::from_records(&records);
    let position: BTreeMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();

    // Splits: links made so far that the model would not make.
    let mut splits: BTreeSet<String> = BTreeSet::new();
    let mut links_checked = 0;
    for r in registered {
        let Some((matched, household)) = &r.linked_to else {
            continue;
        };
        let Some(&j) = position.get(matched.as_str()) else {
            continue;
        };
        links_checked += 1;
        let mut scored = model.score(&r.record, &records[j], Some(&frequencies));
        if *household {
            scored = model.with_household(scored);
        }
        if scored.band != Band::Link {
            splits.insert(r.person_id.clone());
        }
    }

    // Merges: records of different persons the model would link.
    let index = Index::build(&records);
    let mut links = Vec::new();
    for (i, a) in records.iter().enumerate() {
        for j in index.candidates(a) {
            let (x, y) = (&registered[i], &registered[j]);
            if j <= i || x.referral_id == y.referral_id || x.person_id == y.person_id {
                continue;
            }
            if model.score(a, &records[j], Some(&frequencies)).band == Band::Link {
                links.push(batch::Link {
                    id_l: x.person_id.clone(),
                    id_r: y.person_id.clone(),
                    match_probability: 1.0,
                    match_weight: 0.0,
                });
            }
        }
    }
    let persons: Vec<String> = registered
        .iter()
        .map(|r| r.person_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (person, group) in batch::clusters(&persons, &links) {
        groups.entry(group).or_default().push(person);
    }
    Proposal {
        model_version: model.version.clone(),
        records: registered.len(),
        persons_now: persons.len(),
        links_checked,
        merges: groups.into_values().filter(|g| g.len() > 1).collect(),
        splits: splits.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinlink_linkage::Dob;

    fn registered(record: &str, person: &str, referral: &str, given: &str) -> Registered {
        Registered {
            linked_to: None,
            record: PersonRecord {
                id: record.into(),
                given: given.into(),
                family: "Hoxha".into(),
                dob: Dob::parse("2016-03-04"),
                sex: "f".into(),
                postcode: "CT1 2RR".into(),
                nationality: "AL".into(),
                ..Default::default()
            },
            person_id: person.into(),
            referral_id: referral.into(),
        }
    }

    #[test]
    fn reports_merges_and_splits_against_the_persons_now() -> Result<(), kinlink_linkage::Error> {
        let model = Model::shipped()?;
        let linked = |mut r: Registered, to: &str| {
            r.linked_to = Some((to.to_owned(), false));
            r
        };
        let proposal = propose(
            &model,
            &[
                // Two persons now, the same girl: a merge.
                registered("a", "p1", "r1", "Besa"),
                registered("b", "p2", "r2", "Besa"),
                // A link made earlier between two different girls (say under a looser
                // model): a split.
                registered("c", "p3", "r3", "Zana"),
                linked(registered("d", "p3", "r4", "Flutra"), "c"),
                // A link the model still makes: nothing.
                registered("e", "p4", "r5", "Mirela"),
                linked(registered("f", "p4", "r6", "Mirela"), "e"),
            ],
        );
        assert_eq!(proposal.merges, [vec!["p1".to_owned(), "p2".to_owned()]]);
        assert_eq!(proposal.splits, ["p3"]);
        assert_eq!(proposal.links_checked, 2);
        assert_eq!((proposal.persons_now, proposal.records), (4, 6));
        Ok(())
    }

    #[test]
    fn two_people_of_one_referral_are_never_proposed_as_one() -> Result<(), kinlink_linkage::Error>
    {
        let model = Model::shipped()?;
        let proposal = propose(
            &model,
            &[
                registered("a", "p1", "r1", "Besa"),
                registered("b", "p2", "r1", "Besa"),
            ],
        );
        assert!(proposal.merges.is_empty());
        Ok(())
    }
}
