//! The person registry in the store: finding the person a referral's subject or dependant is
//! (strong identifier first, then probabilistic linkage over the blocking index), creating
//! new persons, opening review tasks, and recording household links. All calls run inside the
//! enricher's transaction, so a referral's persons, links and review tasks appear together or
//! not at all.

use std::collections::{BTreeMap, HashMap};

use kinlink_linkage::compare::{Prepared, compare_prepared};
use kinlink_linkage::model::{
    Evidence, FULL_NAME_TOTAL, Frequencies, counted_names, full_name_key,
};
use kinlink_linkage::normalise::fold;
use kinlink_linkage::{Dob, Model, PersonRecord, blocking};
use kinlink_proto::v1::{self, MatchMethod};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use kinlink_domain::linking::{self, Candidate, IdentifierPrecedence, normalise_identifier};

/// The person a referral's subject or dependant resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub person_id: String,
    pub method: MatchMethod,
    /// 1 for a strong identifier, the model's probability for a probabilistic link, 0 for a
    /// new person.
    pub probability: f64,
    /// Review tasks opened by this decision (empty when the record was decided before).
    pub opened: Vec<v1::LinkageReviewOpened>,
    /// The persons this decision left for a person to compare (the review candidates), for
    /// the household context of the referral's dependants.
    pub review_candidates: Vec<String>,
}

/// A subject or dependant of a referral as linkage sees them, with the ids derived from
/// their place in it.
#[derive(Debug, Clone)]
pub struct RecordPlace<'a> {
    pub referral_id: &'a str,
    /// The person as linkage compares them. Its id is the record id: stable for the same
    /// subject or dependant of the same referral version.
    pub record: PersonRecord,
    /// The record's blocking keys, computed once for the lock, the candidate search and the
    /// index.
    pub keys: Vec<String>,
    /// The id a new person gets.
    pub new_person_id: String,
    /// The adult of an anonymous Duty-to-Notify report (s52(3)): never linked to anyone and
    /// never a candidate, so the registry cannot tie the report to a known person.
    pub anonymous: bool,
}

/// Finds the registered person this record is, or registers a new one.
///
/// Strong identifiers decide first: one person behind them is a match; identifiers pointing at
/// two different persons conflict, and a new person is made with nothing merged. Without an
/// identifier match, the record is scored against the records sharing a blocking key with it;
/// `exclude` holds persons already resolved on this referral (two people on one referral are
/// never the same person). A record decided before (a redelivery, a replay or a later version
/// of its referral) keeps its decision. `household` is set for a child of the referral's
/// subject (see [`Household`]).
pub async fn resolve(
    conn: &mut AnyConnection,
    model: &Model,
    person: &v1::Person,
    place: &RecordPlace<'_>,
    exclude: &[String],
    household: Option<&Household>,
) -> Result<Resolved, sqlx::Error> {
    if let Some(row) = sqlx::query(
        "SELECT person_id, method, match_probability FROM linkage_records WHERE record_id = $1",
    )
    .bind(&place.record.id)
    .fetch_optional(&mut *conn)
    .await?
    {
        let person_id = canonical(conn, &row.try_get::<String, _>("person_id")?).await?;
        return Ok(Resolved {
            person_id,
            method: linking::method_from_column(row.try_get("method")?),
            probability: row.try_get("match_probability")?,
            opened: Vec::new(),
            review_candidates: Vec::new(),
        });
    }

    let record = &place.record;
    let mut by_identifier: Vec<String> = Vec::new();
    for identifier in &person.identifiers {
        let row =
            sqlx::query("SELECT person_id FROM person_identifiers WHERE kind = $1 AND value = $2")
                .bind(i64::from(identifier.kind))
                .bind(normalise_identifier(&identifier.value))
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(row) = row {
            let id = canonical(conn, &row.try_get::<String, _>("person_id")?).await?;
            if !by_identifier.contains(&id) {
                by_identifier.push(id);
            }
        }
    }

    let mut evidence: Vec<Evidence> = Vec::new();
    let mut matched_record: Option<String> = None;
    let mut weight = 0.0;
    let mut review: Vec<Candidate> = Vec::new();
    let (person_id, method, probability) =
        match linking::identifier_precedence(place.anonymous, &by_identifier) {
            IdentifierPrecedence::Anonymous => {
                (place.new_person_id.clone(), MatchMethod::NewPerson, 0.0)
            }
            IdentifierPrecedence::Identified(one) => {
                (one.to_owned(), MatchMethod::StrongIdentifier, 1.0)
            }
            IdentifierPrecedence::Score => {
                let candidates =
                    score_candidates(conn, model, place, person, exclude, household).await?;
                let decision = linking::decide(candidates);
                review = decision.review;
                match decision.link {
                    Some(link) => {
                        evidence = link.scored.evidence;
                        weight = link.scored.weight;
                        matched_record = Some(link.record_id);
                        (
                            link.person_id,
                            MatchMethod::Probabilistic,
                            link.scored.probability,
                        )
                    }
                    None => (place.new_person_id.clone(), MatchMethod::NewPerson, 0.0),
                }
            }
            IdentifierPrecedence::Conflicting => {
                tracing::warn!(
                    referral_id = %place.referral_id,
                    record_id = %record.id,
                    "Conflicting strong identifiers; not merging, creating a new person."
                );
                (place.new_person_id.clone(), MatchMethod::NewPerson, 0.0)
            }
        };

    if method == MatchMethod::NewPerson {
        sqlx::query(
            "INSERT INTO persons (person_id, match_key, first_referral_id, referred_in_own_right, created_at_ms) \
             VALUES ($1, NULL, $2, 0, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&person_id)
        .bind(place.referral_id)
        .bind(kinlink_store::now_millis())
        .execute(&mut *conn)
        .await?;
    }
    insert_record(
        conn,
        place,
        &person_id,
        place.referral_id,
        method,
        matched_record.as_deref(),
        probability,
        weight,
        &evidence,
        &model.version,
    )
    .await?;
    for identifier in person.identifiers.iter().filter(|_| !place.anonymous) {
        sqlx::query("INSERT INTO person_identifiers (kind, value, person_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(i64::from(identifier.kind))
            .bind(normalise_identifier(&identifier.value))
            .bind(&person_id)
            .execute(&mut *conn)
            .await?;
    }
    let mut opened = Vec::new();
    let mut review_candidates = Vec::new();
    for candidate in review {
        if candidate.person_id == person_id {
            continue;
        }
        opened.push(open_review(conn, place, &person_id, &candidate, &model.version).await?);
        review_candidates.push(candidate.person_id);
    }
    Ok(Resolved {
        person_id,
        method,
        probability,
        opened,
        review_candidates,
    })
}

/// Makes sure every record's blocking keys were made by this build's [`blocking::keys`]
/// ([`blocking::KEYS_VERSION`]); if not, re-keys every record that has keys (anonymous
/// adults have none and keep none) and records the version. Returns how many records were
/// re-keyed, or `None` when the keys were current. Several enrichers on one database: the
/// first takes the row lock and re-keys, the others wait for it and find the version current.
pub async fn ensure_current_keys(conn: &mut AnyConnection) -> Result<Option<usize>, sqlx::Error> {
    async fn current(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
        let value: Option<String> =
            sqlx::query("SELECT value FROM linkage_meta WHERE name = 'blocking_keys'")
                .fetch_optional(conn)
                .await?
                .map(|r| r.try_get("value"))
                .transpose()?;
        Ok(value.as_deref() == Some(blocking::KEYS_VERSION))
    }
    if current(&mut *conn).await? {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO linkage_meta (name, value) VALUES ('blocking_keys', '') \
         ON CONFLICT (name) DO NOTHING",
    )
    .execute(&mut *conn)
    .await?;
    // The row lock: a second enricher waits here until the first commits.
    sqlx::query("UPDATE linkage_meta SET value = value WHERE name = 'blocking_keys'")
        .execute(&mut *conn)
        .await?;
    if current(&mut *conn).await? {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT r.record_id, r.given_name, r.family_name, r.aliases, r.date_of_birth, \
         r.dob_estimated, r.sex, r.postcode, r.nationality FROM linkage_records r \
         WHERE EXISTS (SELECT 1 FROM linkage_keys k WHERE k.record_id = r.record_id)",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let record = stored_record(row)?;
        sqlx::query("DELETE FROM linkage_keys WHERE record_id = $1")
            .bind(&record.id)
            .execute(&mut *conn)
            .await?;
        for key in blocking::keys(&record) {
            sqlx::query(
                "INSERT INTO linkage_keys (block_key, record_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&key)
            .bind(&record.id)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("UPDATE linkage_meta SET value = $1 WHERE name = 'blocking_keys'")
        .bind(blocking::KEYS_VERSION)
        .execute(&mut *conn)
        .await?;
    Ok(Some(rows.len()))
}

/// Household context of a dependant who is a child of the referral's subject.
#[derive(Debug, Clone, Default)]
pub struct Household {
    /// The person the referral's subject resolved to (new or known).
    pub subject_person_id: String,
    /// The persons already known as that person's children.
    pub known_children: Vec<String>,
    /// Persons the subject may be but was not linked to (its review candidates). A child
    /// known as the child of one of them is not "another household's child": the household
    /// is undecided, not in disagreement, so the child's own evidence decides (a repeat
    /// referral of a household whose adult's name was re-spelt would otherwise send every
    /// child to review).
    pub possible_subjects: Vec<String>,
}

/// Serialises linkage decisions that could see each other: on PostgreSQL (several enricher
/// instances), takes a transaction-scoped advisory lock per blocking key, in sorted order so
/// two referrals never deadlock. Two referrals of the same child share a key, so the second
/// waits for the first to commit and then finds its record; without this both could create
/// a new person. SQLite has one writer at a time already.
pub async fn lock_blocking_keys(
    conn: &mut AnyConnection,
    places: &[RecordPlace<'_>],
) -> Result<(), sqlx::Error> {
    if conn.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    let mut locks: Vec<i64> = places
        .iter()
        .flat_map(|place| &place.keys)
        .map(|key| lock_id(key))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    for id in locks {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A stable 64-bit id for a blocking key (FNV-1a), the same in every instance.
fn lock_id(key: &str) -> i64 {
    let hash = kinlink_proto::stable_hash(&[b"kinlink-linkage:", key.as_bytes()]);
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The person an id stands for now: a merged person resolves to the one it was merged into.
/// Merges repoint earlier merges, so one step is enough.
pub async fn canonical(conn: &mut AnyConnection, person_id: &str) -> Result<String, sqlx::Error> {
    let merged: Option<String> =
        sqlx::query("SELECT merged_into FROM persons WHERE person_id = $1")
            .bind(person_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get::<Option<String>, _>("merged_into"))
            .transpose()?
            .flatten();
    Ok(merged.unwrap_or_else(|| person_id.to_owned()))
}

/// Scores the new record against every earlier record sharing a blocking key with it.
async fn score_candidates(
    conn: &mut AnyConnection,
    model: &Model,
    place: &RecordPlace<'_>,
    person: &v1::Person,
    exclude: &[String],
    household: Option<&Household>,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let record = &place.record;
    // One statement brings, for every blocking key, up to one record more than a usable
    // block holds, with each record's current person: a decision costs one indexed lookup
    // per key in a single round trip, however large the registry is.
    let limit = i64::try_from(blocking::MAX_BLOCK + 1).unwrap_or(i64::MAX);
    let mut found: BTreeMap<String, (String, PersonRecord)> = BTreeMap::new();
    if place.keys.is_empty() {
        return Ok(Vec::new());
    }
    let per_key: Vec<String> = (0..place.keys.len())
        .map(|i| {
            format!(
                "SELECT * FROM (SELECT CAST({i} AS BIGINT) AS key_no, r.record_id, r.given_name, \
                 r.family_name, r.aliases, r.date_of_birth, r.dob_estimated, r.sex, r.postcode, \
                 r.nationality, COALESCE(p.merged_into, r.person_id) AS current_person_id \
                 FROM linkage_keys k JOIN linkage_records r ON r.record_id = k.record_id \
                 JOIN persons p ON p.person_id = r.person_id WHERE k.block_key = ${} LIMIT $1) AS block_{i}",
                i + 2
            )
        })
        .collect();
    let statement = per_key.join(" UNION ALL ");
    let mut query = sqlx::query(&statement).bind(limit);
    for key in &place.keys {
        query = query.bind(key);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut block_sizes = vec![0usize; place.keys.len()];
    for row in &rows {
        let key_no = usize::try_from(row.try_get::<i64, _>("key_no")?).unwrap_or(usize::MAX);
        if let Some(size) = block_sizes.get_mut(key_no) {
            *size += 1;
        }
    }
    for row in &rows {
        let key_no = usize::try_from(row.try_get::<i64, _>("key_no")?).unwrap_or(usize::MAX);
        // A key shared by too many records says little; the other keys still find a match.
        if block_sizes
            .get(key_no)
            .is_none_or(|size| *size > blocking::MAX_BLOCK)
        {
            continue;
        }
        let earlier = stored_record(row)?;
        if !found.contains_key(&earlier.id) {
            let person_id: String = row.try_get("current_person_id")?;
            found.insert(earlier.id.clone(), (person_id, earlier));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let frequencies = frequencies(conn, record).await?;
    // The new record is prepared for comparison once, not once per candidate; identifiers
    // and parents are looked up once per candidate person, not once per record of theirs.
    let prepared = Prepared::new(record);
    let mut identifiers: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    let mut candidates = Vec::new();
    for (id, (person_id, earlier)) in found {
        if exclude.contains(&person_id) {
            continue;
        }
        let comparison = compare_prepared(&prepared, &Prepared::new(&earlier));
        let mut scored = model.score_comparison(&comparison, record, Some(&frequencies));
        if let Some(household) = household {
            if household.known_children.contains(&person_id) {
                scored = model.with_household(scored);
            } else {
                if !parents.contains_key(&person_id) {
                    let known = known_parents(conn, &person_id).await?;
                    parents.insert(person_id.clone(), known);
                }
                if parents.get(&person_id).is_some_and(|known| {
                    !known.is_empty()
                        && !known.contains(&household.subject_person_id)
                        && !known
                            .iter()
                            .any(|parent| household.possible_subjects.contains(parent))
                }) {
                    scored = model.with_other_household(scored);
                }
            }
        }
        let identifier_conflict = if person.identifiers.is_empty() {
            false
        } else {
            if !identifiers.contains_key(&person_id) {
                let held = person_identifiers(conn, &person_id).await?;
                identifiers.insert(person_id.clone(), held);
            }
            identifiers
                .get(&person_id)
                .is_some_and(|held| linking::identifier_conflict(&person.identifiers, held))
        };
        candidates.push(Candidate {
            person_id,
            record_id: id,
            scored,
            identifier_conflict,
        });
    }
    Ok(candidates)
}

async fn person_identifiers(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query("SELECT kind, value FROM person_identifiers WHERE person_id = $1")
        .bind(person_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("kind")?, row.try_get("value")?)))
        .collect()
}

/// Counts of the record's two names and its full name (and their totals), for
/// term-frequency adjustment.
async fn frequencies(
    conn: &mut AnyConnection,
    record: &PersonRecord,
) -> Result<Frequencies, sqlx::Error> {
    let (given, family) = (fold(&record.given), fold(&record.family));
    let full = full_name_key(&given, &family).unwrap_or_default();
    let names = [
        String::new(),
        given,
        family,
        FULL_NAME_TOTAL.to_owned(),
        full,
    ];
    let found: HashMap<String, i64> = sqlx::query(
        "SELECT name, occurrences FROM linkage_name_counts WHERE name IN ($1, $2, $3, $4, $5)",
    )
    .bind(&names[0])
    .bind(&names[1])
    .bind(&names[2])
    .bind(&names[3])
    .bind(&names[4])
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("name")?, row.try_get("occurrences")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let count =
        |name: &str| u32::try_from(found.get(name).copied().unwrap_or(0)).unwrap_or(u32::MAX);
    let total = count("");
    let counts = names
        .iter()
        .filter(|name| !name.is_empty())
        .map(|name| (name.clone(), count(name)))
        .collect::<Vec<_>>();
    Ok(Frequencies::from_counts(counts, total))
}

/// A linkage record read back from the store.
pub fn stored_record(row: &AnyRow) -> Result<PersonRecord, sqlx::Error> {
    let aliases: String = row.try_get("aliases")?;
    let dob: String = row.try_get("date_of_birth")?;
    let estimated: i64 = row.try_get("dob_estimated")?;
    Ok(PersonRecord {
        id: row.try_get("record_id")?,
        given: row.try_get("given_name")?,
        family: row.try_get("family_name")?,
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
        dob: Dob::parse(&dob).map(|mut d| {
            d.estimated = estimated != 0;
            d
        }),
        sex: row.try_get("sex")?,
        postcode: row.try_get("postcode")?,
        nationality: row.try_get("nationality")?,
    })
}

fn dob_text(dob: Option<Dob>) -> String {
    match dob {
        None => String::new(),
        Some(Dob {
            year, month: None, ..
        }) => format!("{year:04}"),
        Some(Dob {
            year,
            month: Some(month),
            day: None,
            ..
        }) => format!("{year:04}-{month:02}"),
        Some(Dob {
            year,
            month: Some(month),
            day: Some(day),
            ..
        }) => format!("{year:04}-{month:02}-{day:02}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_record(
    conn: &mut AnyConnection,
    place: &RecordPlace<'_>,
    person_id: &str,
    referral_id: &str,
    method: MatchMethod,
    matched_record_id: Option<&str>,
    probability: f64,
    weight: f64,
    evidence: &[Evidence],
    model_version: &str,
) -> Result<(), sqlx::Error> {
    let record = &place.record;
    let encode = |e: serde_json::Error| sqlx::Error::Encode(Box::new(e));
    sqlx::query(
        "INSERT INTO linkage_records (record_id, person_id, referral_id, given_name, family_name, \
         aliases, date_of_birth, dob_estimated, sex, nationality, postcode, method, \
         matched_record_id, match_probability, match_weight, evidence, model_version, decided_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&record.id)
    .bind(person_id)
    .bind(referral_id)
    .bind(&record.given)
    .bind(&record.family)
    .bind(serde_json::to_string(&record.aliases).map_err(encode)?)
    .bind(dob_text(record.dob))
    .bind(i64::from(record.dob.is_some_and(|d| d.estimated)))
    .bind(&record.sex)
    .bind(&record.nationality)
    .bind(&record.postcode)
    .bind(method as i64)
    .bind(matched_record_id)
    .bind(probability)
    .bind(weight)
    .bind(serde_json::to_string(evidence).map_err(encode)?)
    .bind(model_version)
    .bind(kinlink_store::now_millis())
    .execute(&mut *conn)
    .await?;
    // An anonymous report's adult is neither a candidate nor counted.
    if place.anonymous {
        return Ok(());
    }
    // The record's keys in one statement, its name counts in another.
    if !place.keys.is_empty() {
        let values: Vec<String> = (0..place.keys.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let statement = format!(
            "INSERT INTO linkage_keys (block_key, record_id) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut query = sqlx::query(&statement);
        for key in &place.keys {
            query = query.bind(key).bind(&record.id);
        }
        query.execute(&mut *conn).await?;
    }
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for key in counted_names(&fold(&record.given), &fold(&record.family)) {
        *counts.entry(key).or_default() += 1;
    }
    if !counts.is_empty() {
        let values: Vec<String> = (0..counts.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let statement = format!(
            "INSERT INTO linkage_name_counts (name, occurrences) VALUES {} \
             ON CONFLICT (name) DO UPDATE SET occurrences = linkage_name_counts.occurrences + excluded.occurrences",
            values.join(", ")
        );
        let mut query = sqlx::query(&statement);
        for (name, count) in counts {
            query = query.bind(name).bind(count);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn open_review(
    conn: &mut AnyConnection,
    place: &RecordPlace<'_>,
    person_id: &str,
    candidate: &Candidate,
    model_version: &str,
) -> Result<v1::LinkageReviewOpened, sqlx::Error> {
    let task_id = kinlink_eventlog::envelope::derive_id(
        &place.record.id,
        &format!("review/{}", candidate.person_id),
    );
    let evidence = serde_json::to_string(&candidate.scored.evidence)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO linkage_reviews (task_id, referral_id, record_id, person_id, candidate_record_id, \
         candidate_person_id, match_probability, match_weight, evidence, model_version, state, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11) ON CONFLICT DO NOTHING",
    )
    .bind(&task_id)
    .bind(place.referral_id)
    .bind(&place.record.id)
    .bind(person_id)
    .bind(&candidate.record_id)
    .bind(&candidate.person_id)
    .bind(candidate.scored.probability)
    .bind(candidate.scored.weight)
    .bind(evidence)
    .bind(model_version)
    .bind(kinlink_store::now_millis())
    .execute(&mut *conn)
    .await?;
    Ok(v1::LinkageReviewOpened {
        task_id,
        referral_id: place.referral_id.to_owned(),
        person_id: person_id.to_owned(),
        candidate_person_id: candidate.person_id.clone(),
        match_probability: candidate.scored.probability,
        match_weight: candidate.scored.weight,
        model_version: model_version.to_owned(),
    })
}

/// Persons known as children of `person_id` (through any earlier referral).
pub async fn known_children(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT COALESCE(p.merged_into, p.person_id) AS child FROM person_links l \
         JOIN persons p ON p.person_id = l.to_person_id WHERE l.from_person_id = $1 AND l.kind = $2",
    )
    .bind(person_id)
    .bind(v1::LinkKind::Child as i64)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|row| row.try_get("child")).collect()
}

/// The persons a person is known as the child of (merges followed on both sides).
pub async fn known_parents(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT COALESCE(p.merged_into, p.person_id) AS parent FROM person_links l \
         JOIN persons p ON p.person_id = l.from_person_id \
         WHERE l.kind = $2 AND l.to_person_id IN \
         (SELECT person_id FROM persons WHERE person_id = $1 OR merged_into = $1)",
    )
    .bind(person_id)
    .bind(v1::LinkKind::Child as i64)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|row| row.try_get("parent")).collect()
}

/// Open review tasks about a person (either side), oldest first.
pub async fn open_reviews(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    // Two indexed lookups; sorted here so the planner is not tempted by the state index.
    let rows = sqlx::query(
        "SELECT task_id, created_at_ms FROM linkage_reviews WHERE person_id = $1 AND state = 'open' \
         UNION SELECT task_id, created_at_ms FROM linkage_reviews \
         WHERE candidate_person_id = $1 AND state = 'open'",
    )
    .bind(person_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut tasks = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("created_at_ms")?,
                row.try_get("task_id")?,
            ))
        })
        .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?;
    tasks.sort();
    Ok(tasks.into_iter().map(|(_, task)| task).collect())
}

/// Other referrals the person (or a person merged into them) was on, oldest first.
pub async fn earlier_referrals(
    conn: &mut AnyConnection,
    person_id: &str,
    referral_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT referral_id, MIN(seen_at_ms) AS first_seen FROM referral_persons \
         WHERE person_id IN (SELECT person_id FROM persons WHERE person_id = $1 OR merged_into = $1) \
         AND referral_id <> $2 GROUP BY referral_id ORDER BY first_seen, referral_id",
    )
    .bind(person_id)
    .bind(referral_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| row.try_get("referral_id"))
    .collect()
}

/// Records that `person_id` appears on the referral in `role` at `index` (a later version of
/// the referral replaces who is there); for the referral's own subject, also that the person
/// has been referred in their own right.
pub async fn record_appearance(
    conn: &mut AnyConnection,
    referral_id: &str,
    person_id: &str,
    role: v1::SubjectRole,
    index: u32,
    seen_at_ms: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO referral_persons (referral_id, person_id, role, dependant_index, seen_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (referral_id, role, dependant_index) \
         DO UPDATE SET person_id = excluded.person_id",
    )
    .bind(referral_id)
    .bind(person_id)
    .bind(role as i64)
    .bind(i64::from(index))
    .bind(seen_at_ms)
    .execute(&mut *conn)
    .await?;
    if role == v1::SubjectRole::ReferralSubject {
        sqlx::query("UPDATE persons SET referred_in_own_right = 1 WHERE person_id = $1")
            .bind(person_id)
            .execute(&mut *conn)
            .await?;
    }
    let row = sqlx::query("SELECT referred_in_own_right FROM persons WHERE person_id = $1")
        .bind(person_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<i64, _>("referred_in_own_right")? != 0)
}

/// Records a directed link: `to` is `kind` of `from`.
pub async fn link(
    conn: &mut AnyConnection,
    from: &str,
    to: &str,
    kind: v1::LinkKind,
    relationship: i32,
    referral_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO person_links (from_person_id, to_person_id, kind, relationship, referral_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(from)
    .bind(to)
    .bind(kind as i64)
    .bind(i64::from(relationship))
    .bind(referral_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the latest age assessment of the person (or of a person merged into them) decided,
/// if any. Written by the alerter from `AgeAssessmentRecorded` events.
pub async fn latest_assessment(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Option<kinlink_domain::child::AssessedAge>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT outcome FROM age_assessments WHERE person_id IN \
         (SELECT person_id FROM persons WHERE person_id = $1 OR merged_into = $1) \
         ORDER BY assessed_at_ms DESC, event_id DESC LIMIT 1",
    )
    .bind(person_id)
    .fetch_optional(conn)
    .await?;
    Ok(row
        .map(|r| r.try_get::<String, _>("outcome"))
        .transpose()?
        .and_then(|outcome| kinlink_domain::child::AssessedAge::parse(&outcome)))
}

/// Where a person appears: (referral id, role, dependant index) of each of their records.
pub async fn appearances(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<(String, i32, u32)>, sqlx::Error> {
    sqlx::query(
        "SELECT referral_id, role, dependant_index FROM referral_persons WHERE person_id = $1 \
         ORDER BY referral_id, role, dependant_index",
    )
    .bind(person_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("referral_id")?,
            i32::try_from(row.try_get::<i64, _>("role")?).unwrap_or_default(),
            u32::try_from(row.try_get::<i64, _>("dependant_index")?).unwrap_or_default(),
        ))
    })
    .collect()
}

/// Erasure: the person's records keep their ids and decisions (so the registry's history and
/// the figures still add up) but lose every personal value; their blocking keys and strong
/// identifiers go. Returns how many records were scrubbed.
pub async fn erase_person(conn: &mut AnyConnection, person_id: &str) -> Result<u64, sqlx::Error> {
    erase_records(conn, ErasureScope::Person, person_id).await
}

/// Retention: the records one referral made lose their personal values, whoever they belong
/// to (a person's records from later referrals stay).
pub async fn erase_referral(
    conn: &mut AnyConnection,
    referral_id: &str,
) -> Result<u64, sqlx::Error> {
    erase_records(conn, ErasureScope::Referral, referral_id).await
}

#[derive(Debug, Clone, Copy)]
enum ErasureScope {
    Person,
    Referral,
}

async fn erase_records(
    conn: &mut AnyConnection,
    scope: ErasureScope,
    id: &str,
) -> Result<u64, sqlx::Error> {
    let column = match scope {
        ErasureScope::Person => "person_id",
        ErasureScope::Referral => "referral_id",
    };
    let person_id = id;
    // The name counters (term frequencies) forget the person's names too: a full name
    // counted once is itself personal data.
    let names = sqlx::query(&format!(
        "SELECT given_name, family_name FROM linkage_records WHERE {column} = $1"
    ))
    .bind(person_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for row in &names {
        let (given, family): (String, String) =
            (row.try_get("given_name")?, row.try_get("family_name")?);
        for key in counted_names(&fold(&given), &fold(&family)) {
            *counts.entry(key).or_default() += 1;
        }
    }
    for (name, count) in counts {
        sqlx::query(
            "UPDATE linkage_name_counts SET occurrences = occurrences - $1 WHERE name = $2",
        )
        .bind(count)
        .bind(&name)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM linkage_name_counts WHERE name = $1 AND occurrences <= 0")
            .bind(&name)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(&format!(
        "DELETE FROM linkage_keys WHERE record_id IN \
         (SELECT record_id FROM linkage_records WHERE {column} = $1)"
    ))
    .bind(person_id)
    .execute(&mut *conn)
    .await?;
    match scope {
        ErasureScope::Person => {
            sqlx::query("DELETE FROM person_identifiers WHERE person_id = $1")
                .bind(person_id)
                .execute(&mut *conn)
                .await?;
        }
        // The persons whose only records these are lose their strong identifiers too (they
        // are kept with the person, not the record): done after the scrub below.
        ErasureScope::Referral => {}
    }
    let scrubbed = sqlx::query(&format!(
        "UPDATE linkage_records SET given_name = '', family_name = '', aliases = '[]', \
         date_of_birth = '', dob_estimated = 0, sex = '', nationality = '', postcode = '' \
         WHERE {column} = $1"
    ))
    .bind(person_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if let ErasureScope::Referral = scope {
        sqlx::query(
            "DELETE FROM person_identifiers WHERE person_id IN \
             (SELECT person_id FROM linkage_records WHERE referral_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM linkage_records r \
                 WHERE r.person_id = person_identifiers.person_id \
                 AND (r.given_name <> '' OR r.family_name <> '' OR r.date_of_birth <> ''))",
        )
        .bind(person_id)
        .execute(conn)
        .await?;
    }
    Ok(scrubbed)
}
