//! Probabilistic person linkage in the enricher, against a real (SQLite) store and embedded
//! log: a child first seen as a dependant and later referred under a transliterated name with
//! an estimated date of birth is the same person; an uncertain match opens a review task and
//! merges nothing; deciding it merges (an event), a split undoes it (an event), and every
//! decision can be explained.

use kinlink_enricher::Enricher;
use kinlink_enricher::review::{self, Verdict};
use kinlink_eventlog::{Envelope, EventLog, Output, Record, Stage, topics};
use kinlink_proto::v1::{self, MatchMethod};
use kinlink_store::Store;
use kinlink_test_kit::{TestResult, referral_record};

/// Each scenario runs on the embedded store (SQLite) and on PostgreSQL (the scale-out store).
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $scenario() -> super::TestResult {
                super::$scenario(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() -> super::TestResult {
                super::$scenario(super::Backend::Postgres).await
            })*
        }
    };
}

on_both_stores!(
    a_dependant_referred_later_under_a_transliterated_name_is_the_same_child,
    an_uncertain_match_opens_a_review_then_merge_and_split_are_events,
    conflicting_strong_identifiers_block_an_automatic_link,
    an_anonymous_duty_to_notify_adult_is_never_linked,
    a_later_version_with_dependants_reordered_keeps_each_child,
    an_erased_dependant_becomes_nobody,
    a_known_mother_vouches_for_her_children_on_a_repeat_referral,
    a_registry_keyed_by_another_build_is_rekeyed_before_the_next_decision
);

fn person(given: &str, family: &str, dob: Option<(&str, v1::DobPrecision)>) -> v1::Person {
    v1::Person {
        given_name: given.into(),
        family_name: family.into(),
        date_of_birth: dob.map(|(value, precision)| v1::DateOfBirth {
            value: value.into(),
            precision: precision as i32,
        }),
        sex: v1::Sex::Female as i32,
        nationalities: vec!["AL".into()],
        locations: vec![v1::Location {
            role: v1::LocationRole::Lives as i32,
            postcode: "CT1 2RR".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn at(person: v1::Person, postcode: &str) -> v1::Person {
    v1::Person {
        locations: vec![v1::Location {
            role: v1::LocationRole::Found as i32,
            postcode: postcode.into(),
            ..Default::default()
        }],
        ..person
    }
}

struct Harness {
    store: Store,
    log: EventLog,
    enricher: Enricher,
    dir: std::path::PathBuf,
    postgres: Option<kinlink_store::test_support::TempPostgres>,
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Harness {
    async fn new(name: &str, backend: Backend) -> TestResult<Self> {
        let dir =
            std::env::temp_dir().join(format!("kinlink-{name}-{backend:?}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut settings = kinlink_runtime::settings::Settings {
            data_dir: dir.clone(),
            ..Default::default()
        };
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let database = kinlink_store::test_support::TempPostgres::create()
                    .await
                    .map_err(|e| format!("PostgreSQL is required for this test: {e}"))?;
                settings.store.url = Some(database.url.clone());
                Some(database)
            }
        };
        let (store, log) =
            kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default())
                .await?;
        Ok(Self {
            store,
            log,
            enricher: Enricher::shipped()?,
            dir,
            postgres,
        })
    }

    async fn enrich(
        &self,
        record: &Record,
    ) -> Result<(v1::ReferralEnriched, Vec<Output>), Box<dyn std::error::Error + Send + Sync>> {
        let mut tx = self.store.begin().await?;
        let mut outputs = self.enricher.handle(&mut tx, record).await?;
        tx.commit().await?;
        if outputs.is_empty() {
            return Err("no output".into());
        }
        let enriched = outputs.remove(0);
        assert_eq!(enriched.topic, topics::REFERRALS_ENRICHED);
        Ok((enriched.envelope.decode()?, outputs))
    }

    async fn close(self) {
        self.store.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(database) = self.postgres {
            let _ = database.drop_database().await;
        }
    }
}

async fn a_dependant_referred_later_under_a_transliterated_name_is_the_same_child(
    backend: Backend,
) -> TestResult {
    let h = Harness::new("linkage-translit", backend).await?;
    let (first, _) = h
        .enrich(&referral_record(
            "r1",
            person(
                "Elira",
                "Hoxha",
                Some(("1986-05-20", v1::DobPrecision::Exact)),
            ),
            vec![
                person(
                    "Besa",
                    "Hoxha",
                    Some(("2016-03-04", v1::DobPrecision::Exact)),
                ),
                person(
                    "Drita",
                    "Hoxha",
                    Some(("2012-07-09", v1::DobPrecision::Exact)),
                ),
            ],
        ))
        .await?;
    let [mother, besa, drita] = first.subjects.as_slice() else {
        return Err("expected three persons".into());
    };
    // Sisters with the same surname and address are different people.
    assert_ne!(besa.person_id, drita.person_id);
    assert!(!besa.ever_referred_in_own_right);

    // Besa referred in her own right: transliterated names, estimated year of birth, found
    // in the next street.
    let own_right = referral_record(
        "r2",
        at(
            person("Bessa", "Hoxhaj", Some(("2016", v1::DobPrecision::Year))),
            "CT1 2AB",
        ),
        vec![],
    );
    let (second, reviews) = h.enrich(&own_right).await?;
    let own = &second.subjects[0];
    assert_eq!(own.person_id, besa.person_id, "the same child");
    assert_eq!(own.match_method, MatchMethod::Probabilistic as i32);
    assert!(own.match_probability >= h.enricher.model().upper);
    assert!(own.ever_referred_in_own_right);
    assert_eq!(own.earlier_referral_ids, ["r1"]);
    assert!(reviews.is_empty(), "a clear match opens no review");
    assert_ne!(own.person_id, drita.person_id);
    assert_ne!(own.person_id, mother.person_id);
    assert!(second.linkage_version.starts_with("default"));

    // The evidence is stored and explained, with no names or dates in it.
    let mut conn = h.store.begin().await?;
    let explained = review::explain(&mut conn, &besa.person_id).await?;
    drop(conn);
    assert_eq!(explained.records.len(), 2);
    let link = &explained.records[1];
    assert_eq!(link.method, "probabilistic");
    assert_eq!(link.referral_id, "r2");
    let fields: Vec<&str> = link.evidence.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"given_name") && fields.contains(&"date_of_birth"));
    let text = serde_json::to_string(&explained)?;
    // The year as a date, a string or a number of its own; not inside a millisecond
    // timestamp such as `decided_at_ms` (1796402016220 once failed the bare "2016").
    for personal in [
        "Besa", "Bessa", "Hoxha", "2016-", "\"2016\"", ":2016,", ":2016}",
    ] {
        assert!(
            !text.contains(personal),
            "explanation leaks {personal}: {text}"
        );
    }

    // Redelivery or replay of the same referral keeps the decision.
    let (again, reviews) = h.enrich(&own_right).await?;
    assert_eq!(again.subjects[0].person_id, besa.person_id);
    assert!(reviews.is_empty());
    h.close().await;
    Ok(())
}

async fn an_uncertain_match_opens_a_review_then_merge_and_split_are_events(
    backend: Backend,
) -> TestResult {
    let h = Harness::new("linkage-review", backend).await?;
    let (first, _) = h
        .enrich(&referral_record(
            "r1",
            person(
                "Teuta",
                "Krasniqi",
                Some(("1990-02-02", v1::DobPrecision::Exact)),
            ),
            vec![v1::Person {
                sex: v1::Sex::Male as i32,
                ..person(
                    "Arber",
                    "Krasniqi",
                    Some(("2015-09-14", v1::DobPrecision::Exact)),
                )
            }],
        ))
        .await?;
    let arber = first.subjects[1].person_id.clone();

    // Same names, no date of birth, found across town: maybe the same boy.
    let (second, reviews) = h
        .enrich(&referral_record(
            "r2",
            v1::Person {
                sex: v1::Sex::Male as i32,
                ..at(person("Arber", "Krasniqi", None), "CT1 9ZZ")
            },
            vec![],
        ))
        .await?;
    let maybe = &second.subjects[0];
    assert_eq!(maybe.match_method, MatchMethod::NewPerson as i32);
    assert_ne!(maybe.person_id, arber, "never merged without a decision");
    assert_eq!(
        reviews.len(),
        1,
        "one review task; explained: {:?}",
        review::explain(&mut *h.store.begin().await?, &maybe.person_id).await?
    );
    assert_eq!(reviews[0].topic, topics::PERSONS_CHANGES);
    let opened: v1::LinkageReviewOpened = reviews[0].envelope.decode()?;
    assert_eq!(opened.candidate_person_id, arber);
    assert_eq!(opened.person_id, maybe.person_id);
    assert!(opened.match_probability >= h.enricher.model().lower);
    assert!(opened.match_probability < h.enricher.model().upper);
    assert_eq!(maybe.review_task_ids, std::slice::from_ref(&opened.task_id));

    let mut tx = h.store.begin().await?;
    let open = review::list(&mut tx, false).await?;
    assert_eq!(open.len(), 1);
    // A person decides they are the same boy.
    let merged = review::decide(&mut tx, &h.log, &opened.task_id, Verdict::Same, "op-7")
        .await?
        .ok_or("expected a merge")?;
    tx.commit().await?;
    assert_eq!(merged.surviving_person_id, arber);
    assert_eq!(merged.merged_person_id, maybe.person_id);

    // Deciding twice is refused.
    let mut tx = h.store.begin().await?;
    assert!(
        review::decide(&mut tx, &h.log, &opened.task_id, Verdict::Different, "op-7")
            .await
            .is_err()
    );
    drop(tx);

    // The merged id now resolves to the survivor; a new referral of him finds both referrals.
    let mut conn = h.store.begin().await?;
    let explained = review::explain(&mut conn, &maybe.person_id).await?;
    drop(conn);
    assert_eq!(explained.person_id, arber);
    assert_eq!(
        explained.merged_person_ids,
        std::slice::from_ref(&maybe.person_id)
    );
    assert_eq!(explained.records.len(), 2);
    assert_eq!(explained.changes.len(), 1);
    assert_eq!(explained.reviews[0].state, "merged");

    // The merge was wrong after all: split the second record off again.
    let second_record = explained.records[1].record_id.clone();
    let mut tx = h.store.begin().await?;
    let split = review::split(
        &mut tx,
        &h.log,
        &arber,
        std::slice::from_ref(&second_record),
        "different child",
        "op-9",
    )
    .await?;
    tx.commit().await?;
    assert_eq!(split.from_person_id, arber);
    assert_eq!(split.record_ids, [second_record]);
    let mut conn = h.store.begin().await?;
    let after = review::explain(&mut conn, &arber).await?;
    let moved = review::explain(&mut conn, &split.new_person_id).await?;
    // Splitting a record that is not the person's is refused, naming the record.
    let refused = review::split(&mut conn, &h.log, &arber, &["nope".into()], "x", "op-9")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    drop(conn);
    assert_eq!(after.records.len(), 1);
    assert_eq!(moved.records.len(), 1);
    assert!(refused.contains("record nope"), "{refused}");

    // Both decisions are events on kinlink.persons.changes, in order (this test calls the
    // stage directly, so the review event it returned is not in the log).
    assert_eq!(
        persons_changes(&h.store).await?,
        ["kinlink.v1.PersonsMerged", "kinlink.v1.PersonSplit"]
    );
    h.close().await;
    Ok(())
}

async fn conflicting_strong_identifiers_block_an_automatic_link(backend: Backend) -> TestResult {
    let h = Harness::new("linkage-ids", backend).await?;
    let with_nhs = |n: &str| v1::Person {
        identifiers: vec![v1::Identifier {
            kind: v1::IdentifierKind::NhsNumber as i32,
            value: n.into(),
        }],
        ..person(
            "Lule",
            "Berisha",
            Some(("2014-11-02", v1::DobPrecision::Exact)),
        )
    };
    let (first, _) = h
        .enrich(&referral_record("r1", with_nhs("4857773456"), vec![]))
        .await?;
    // Everything agrees except the NHS number: not linked, a person must look.
    let (second, reviews) = h
        .enrich(&referral_record("r2", with_nhs("9434765919"), vec![]))
        .await?;
    assert_ne!(second.subjects[0].person_id, first.subjects[0].person_id);
    assert_eq!(
        second.subjects[0].match_method,
        MatchMethod::NewPerson as i32
    );
    assert_eq!(reviews.len(), 1);
    h.close().await;
    Ok(())
}

async fn an_anonymous_duty_to_notify_adult_is_never_linked(backend: Backend) -> TestResult {
    use sqlx::Row;
    let h = Harness::new("linkage-anonymous", backend).await?;
    // What an anonymous report may carry about the adult: nothing identifying.
    let anonymous_adult = v1::Person {
        sex: v1::Sex::Female as i32,
        nationalities: vec!["AL".into()],
        date_of_birth: Some(v1::DateOfBirth {
            value: "1990".into(),
            precision: v1::DobPrecision::Year as i32,
        }),
        ..Default::default()
    };
    let mut persons = Vec::new();
    for id in ["r1", "r2"] {
        let mut record = referral_record(id, anonymous_adult.clone(), vec![]);
        let mut event: v1::ReferralReceived = record.envelope.decode()?;
        event.anonymous_duty_to_notify = true;
        record.envelope = Envelope::new(format!("event-{id}"), "/test", id, id, 0, &event);
        let (enriched, reviews) = h.enrich(&record).await?;
        assert!(reviews.is_empty());
        assert_eq!(
            enriched.subjects[0].match_method,
            MatchMethod::NewPerson as i32
        );
        persons.push(enriched.subjects[0].person_id.clone());
    }
    assert_ne!(
        persons[0], persons[1],
        "two anonymous reports are never tied"
    );
    let mut conn = h.store.begin().await?;
    let keys: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM linkage_keys k JOIN linkage_records r ON r.record_id = k.record_id \
         WHERE r.person_id = $1 OR r.person_id = $2",
    )
    .bind(&persons[0])
    .bind(&persons[1])
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    drop(conn);
    assert_eq!(keys, 0, "never a candidate for anyone");
    h.close().await;
    Ok(())
}

async fn a_later_version_with_dependants_reordered_keeps_each_child(
    backend: Backend,
) -> TestResult {
    let h = Harness::new("linkage-versions", backend).await?;
    let mother = || {
        person(
            "Teuta",
            "Krasniqi",
            Some(("1990-02-02", v1::DobPrecision::Exact)),
        )
    };
    let arber = || {
        person(
            "Arber",
            "Krasniqi",
            Some(("2015-09-14", v1::DobPrecision::Exact)),
        )
    };
    let blerta = || {
        person(
            "Blerta",
            "Krasniqi",
            Some(("2013-01-20", v1::DobPrecision::Exact)),
        )
    };
    let (first, _) = h
        .enrich(&referral_record("r1", mother(), vec![arber(), blerta()]))
        .await?;
    // Version 2 lists the children the other way round.
    let mut update = referral_record("r1", mother(), vec![blerta(), arber()]);
    let mut event: v1::ReferralReceived = update.envelope.decode()?;
    event.version = 2;
    update.envelope = Envelope::new("event-r1-v2".into(), "/test", "r1", "r1", 0, &event);
    let (second, reviews) = h.enrich(&update).await?;
    assert!(reviews.is_empty());
    assert_eq!(second.subjects[0].person_id, first.subjects[0].person_id);
    assert_eq!(
        second.subjects[1].person_id, first.subjects[2].person_id,
        "Blerta"
    );
    assert_eq!(
        second.subjects[2].person_id, first.subjects[1].person_id,
        "Arber"
    );
    assert_eq!(second.version, 2);
    h.close().await;
    Ok(())
}

/// Two enricher instances deciding referrals of the same child at the same moment: the second
/// waits for the first to commit, then links to the person it made, instead of both making a
/// new person.
#[tokio::test]
async fn concurrent_referrals_of_one_child_on_postgres_make_one_person() -> TestResult {
    let h = Harness::new("linkage-concurrent", Backend::Postgres).await?;
    let besa = || {
        person(
            "Besa",
            "Hoxha",
            Some(("2016-03-04", v1::DobPrecision::Exact)),
        )
    };
    let mut first = h.store.begin().await?;
    let outputs = h
        .enricher
        .handle(&mut first, &referral_record("r1", besa(), vec![]))
        .await?;
    let one: v1::ReferralEnriched = outputs.first().ok_or("no output")?.envelope.decode()?;

    // The other instance starts while the first has not committed.
    let store = h.store.clone();
    let enricher = h.enricher.clone();
    let second = tokio::spawn(async move {
        let mut tx = store.begin().await?;
        let outputs = enricher
            .handle(&mut tx, &referral_record("r2", besa(), vec![]))
            .await?;
        tx.commit().await?;
        let enriched: v1::ReferralEnriched =
            outputs.first().ok_or("no output")?.envelope.decode()?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(enriched)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second decision waits for the first"
    );
    first.commit().await?;
    let two = second.await?.map_err(|e| e.to_string())?;
    assert_eq!(two.subjects[0].person_id, one.subjects[0].person_id);
    assert_eq!(
        two.subjects[0].match_method,
        MatchMethod::Probabilistic as i32
    );
    h.close().await;
    Ok(())
}

/// Event types on the persons-changes topic of the embedded log, in order.
async fn persons_changes(store: &Store) -> TestResult<Vec<String>> {
    use sqlx::Row;
    let mut conn = store.begin().await?;
    let rows = sqlx::query("SELECT event_type FROM log_events WHERE topic = $1 ORDER BY seq")
        .bind(topics::PERSONS_CHANGES)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>("event_type"))
        .collect::<Result<_, _>>()?)
}

async fn a_known_mother_vouches_for_her_children_on_a_repeat_referral(
    backend: Backend,
) -> TestResult {
    let h = Harness::new("linkage-household", backend).await?;
    let boy = |dob: Option<(&str, v1::DobPrecision)>| v1::Person {
        sex: v1::Sex::Male as i32,
        ..person("Arber", "Krasniqi", dob)
    };
    let (first, _) = h
        .enrich(&referral_record(
            "r1",
            person(
                "Teuta",
                "Krasniqi",
                Some(("1990-02-02", v1::DobPrecision::Exact)),
            ),
            vec![
                boy(Some(("2015-09-14", v1::DobPrecision::Exact))),
                person(
                    "Blerta",
                    "Krasniqi",
                    Some(("2013-01-20", v1::DobPrecision::Exact)),
                ),
            ],
        ))
        .await?;
    let (mother, arber, blerta) = (
        first.subjects[0].person_id.clone(),
        first.subjects[1].person_id.clone(),
        first.subjects[2].person_id.clone(),
    );

    // The family is referred again from a new address; the children's dates of birth were not
    // taken this time.
    let (second, _) = h
        .enrich(&referral_record(
            "r2",
            at(
                person(
                    "Teuta",
                    "Krasniqi",
                    Some(("1990-02-02", v1::DobPrecision::Exact)),
                ),
                "M8 7DE",
            ),
            vec![
                at(boy(None), "M8 7DE"),
                at(person("Blerta", "Krasniqi", None), "M8 7DE"),
            ],
        ))
        .await?;
    assert_eq!(second.subjects[0].person_id, mother);
    assert_eq!(second.subjects[1].person_id, arber);
    assert_eq!(second.subjects[2].person_id, blerta);
    let mut conn = h.store.begin().await?;
    let explained = review::explain(&mut conn, &arber).await?;
    drop(conn);
    assert!(
        explained.records[1]
            .evidence
            .iter()
            .any(|e| e.field == "household" && e.level == "known_child_of_subject"),
        "{explained:?}"
    );

    // The same name and no date of birth, with an adult nobody knows, somewhere else: not
    // enough on its own.
    let (third, _) = h
        .enrich(&referral_record(
            "r3",
            at(person("Zana", "Morina", None), "B1 1BB"),
            vec![at(boy(None), "B1 1BB")],
        ))
        .await?;
    assert_ne!(third.subjects[1].person_id, arber);
    assert_eq!(
        third.subjects[1].match_method,
        MatchMethod::NewPerson as i32
    );
    h.close().await;
    Ok(())
}

/// A registry whose blocking keys were made by an earlier build (other keys, another
/// version) is re-keyed before the next decision, so a re-spelt child registered then is
/// still found; the version is recorded and the next referral does not re-key again.
async fn a_registry_keyed_by_another_build_is_rekeyed_before_the_next_decision(
    backend: Backend,
) -> TestResult {
    use sqlx::Row;
    let h = Harness::new("linkage-rekey", backend).await?;
    let (first, _) = h
        .enrich(&referral_record(
            "r1",
            person(
                "Mirela",
                "Hoxha",
                Some(("1988-09-30", v1::DobPrecision::Exact)),
            ),
            vec![person(
                "Xhesika",
                "Hoxha",
                Some(("2014-04-11", v1::DobPrecision::Exact)),
            )],
        ))
        .await?;
    let xhesika = first.subjects[1].person_id.clone();
    // What an earlier build left: one made-up key per record and an older version.
    {
        let mut tx = h.store.begin().await?;
        sqlx::query("DELETE FROM linkage_keys")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO linkage_keys (block_key, record_id) \
             SELECT 'old:' || record_id, record_id FROM linkage_records",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE linkage_meta SET value = 'old' WHERE name = 'blocking_keys'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    // Re-spelt, an estimate a year out, across the district: found only through the current
    // keys (the made-up ones share nothing).
    let (later, _) = h
        .enrich(&referral_record(
            "r2",
            at(
                person(
                    "Jessica",
                    "Hoxha",
                    Some(("2013", v1::DobPrecision::Estimated)),
                ),
                "CT1 3AB",
            ),
            vec![],
        ))
        .await?;
    let found = &later.subjects[0];
    assert!(
        found.person_id == xhesika || !found.review_task_ids.is_empty(),
        "the re-keyed registry did not find her: {found:?}"
    );
    let mut tx = h.store.begin().await?;
    let old: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM linkage_keys WHERE block_key LIKE 'old:%'")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
    assert_eq!(old, 0, "keys of the earlier build left behind");
    let version: String =
        sqlx::query("SELECT value FROM linkage_meta WHERE name = 'blocking_keys'")
            .fetch_one(&mut *tx)
            .await?
            .try_get("value")?;
    assert_eq!(version, kinlink_linkage::blocking::KEYS_VERSION);
    // Every record's keys are this build's.
    let mut conn = tx;
    for row in sqlx::query(
        "SELECT record_id, given_name, family_name, aliases, date_of_birth, dob_estimated, \
         sex, postcode, nationality FROM linkage_records",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let record = kinlink_enricher::registry::stored_record(&row)?;
        let mut stored: Vec<String> =
            sqlx::query("SELECT block_key FROM linkage_keys WHERE record_id = $1")
                .bind(&record.id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get("block_key"))
                .collect::<Result<_, _>>()?;
        stored.sort();
        assert_eq!(stored, kinlink_linkage::blocking::keys(&record));
    }
    conn.commit().await?;
    h.close().await;
    Ok(())
}

/// A dependant whose data key was erased arrives with `erased` set and nothing else: the
/// enricher makes no person of it (a blank, age-unknown "child" would otherwise be alerted
/// to triage), while the rest of the household is enriched as before.
async fn an_erased_dependant_becomes_nobody(backend: Backend) -> TestResult {
    let h = Harness::new("linkage-erased", backend).await?;
    let erased = v1::Person {
        erased: true,
        ..Default::default()
    };
    let (enriched, _) = h
        .enrich(&referral_record(
            "r-erased",
            person(
                "Teuta",
                "Krasniqi",
                Some(("1990-02-02", v1::DobPrecision::Exact)),
            ),
            vec![
                erased,
                person(
                    "Blerta",
                    "Krasniqi",
                    Some(("2013-01-20", v1::DobPrecision::Exact)),
                ),
            ],
        ))
        .await?;
    let places: Vec<(i32, u32)> = enriched
        .subjects
        .iter()
        .map(|s| (s.role, s.dependant_index))
        .collect();
    assert_eq!(
        places,
        vec![
            (v1::SubjectRole::ReferralSubject as i32, 0),
            (v1::SubjectRole::Dependant as i32, 1)
        ]
    );
    h.close().await;
    Ok(())
}
