//! Linkage safety through the running pipeline (embedded default): children re-referred
//! under a re-spelt or transliterated name with an estimated date are never silently made new
//! persons, and two unrelated children with the same name and date of birth in different
//! households are never merged (so no council hears about another family's child). Also: the
//! streaming enricher and `kinlink link` see and score the same pair alike.

use std::time::Duration;

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

fn person(
    given: &str,
    family: &str,
    dob: Option<(&str, &str)>,
    postcode: &str,
) -> serde_json::Value {
    let mut p = serde_json::json!({
        "given_name": given,
        "family_name": family,
        "nationalities": ["AL"],
        "locations": [{ "role": "lives", "postcode": postcode }]
    });
    if let Some((value, precision)) = dob {
        p["date_of_birth"] = serde_json::json!({ "value": value, "precision": precision });
    }
    p
}

fn family(
    reference: &str,
    adult: serde_json::Value,
    children: &[serde_json::Value],
) -> serde_json::Value {
    serde_json::json!({
        "external_reference": reference,
        "subject": adult,
        "dependants": children.iter().map(|c| serde_json::json!({
            "person": c, "relationship": "child", "with_subject": true
        })).collect::<Vec<_>>(),
        "exploitation_types": ["labour"],
        "consent": "given"
    })
}

fn alone(reference: &str, child: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "external_reference": reference,
        "subject": child,
        "exploitation_types": ["criminal"],
        "consent": "not_required_child"
    })
}

async fn refer(kinlink: &Kinlink, referral: serde_json::Value) -> TestResult<String> {
    let accepted = kinlink.post_referral(&referral).await?;
    Ok(accepted["referral_id"]
        .as_str()
        .ok_or("no referral_id")?
        .to_owned())
}

/// The person and match method of one record of a referral (role 1 subject, 2 dependant).
async fn resolved(
    url: &str,
    referral_id: &str,
    role: i64,
    index: i64,
) -> TestResult<(String, i64)> {
    use sqlx::{Connection, Row};
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        let row = sqlx::query(
            "SELECT COALESCE(p.merged_into, p.person_id) AS person, lr.method \
             FROM referral_persons rp JOIN persons p ON p.person_id = rp.person_id \
             JOIN linkage_records lr ON lr.referral_id = rp.referral_id \
              AND lr.person_id = rp.person_id \
             WHERE rp.referral_id = $1 AND rp.role = $2 AND rp.dependant_index = $3",
        )
        .bind(referral_id)
        .bind(role)
        .bind(index)
        .fetch_optional(&mut conn)
        .await?;
        conn.close().await?;
        if let Some(row) = row {
            return Ok((row.try_get("person")?, row.try_get("method")?));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("referral {referral_id} not enriched").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Open review tasks as (person, candidate person) pairs.
async fn open_reviews(url: &str) -> TestResult<Vec<(String, String)>> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let rows = sqlx::query(
        "SELECT person_id, candidate_person_id FROM linkage_reviews WHERE state = 'open'",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("person_id")?, r.try_get("candidate_person_id")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

#[tokio::test]
async fn respelt_children_are_recognised_and_namesakes_in_other_households_are_not_merged()
-> TestResult {
    sqlx::any::install_default_drivers();
    let dir = TempDir::new("e2e-linkage-safety")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());

    // Two families in Canterbury: Othman with no date of birth (a claimed age only), and
    // Xhesika with an exact date.
    let first = refer(
        &kinlink,
        family(
            "SAFE-1",
            person("Amira", "Ahmed", Some(("1984-02-11", "exact")), "CT1 2RR"),
            &[{
                let mut othman = person("Othman", "Ahmed", None, "CT1 2RR");
                othman["claimed_age"] = serde_json::json!(9);
                othman
            }],
        ),
    )
    .await?;
    let second = refer(
        &kinlink,
        family(
            "SAFE-2",
            person("Mirela", "Hoxha", Some(("1988-09-30", "exact")), "CT2 7NZ"),
            &[person(
                "Xhesika",
                "Hoxha",
                Some(("2014-04-11", "exact")),
                "CT2 7NZ",
            )],
        ),
    )
    .await?;
    let (othman, _) = resolved(&url, &first, 2, 0).await?;
    let (xhesika, _) = resolved(&url, &second, 2, 0).await?;

    // Later, each child is referred alone, re-spelt, with an estimated date a year out and a
    // new address: "Osman Ahmed, about 2016" and "Jessica Hoxha, about 2013".
    let osman_referral = refer(
        &kinlink,
        alone(
            "SAFE-3",
            person("Osman", "Ahmed", Some(("2016", "estimated")), "CT1 3AB"),
        ),
    )
    .await?;
    let jessica_referral = refer(
        &kinlink,
        alone(
            "SAFE-4",
            person("Jessica", "Hoxha", Some(("2013", "estimated")), "CT2 8AA"),
        ),
    )
    .await?;
    for (referral, earlier) in [(&osman_referral, &othman), (&jessica_referral, &xhesika)] {
        let (now, method) = resolved(&url, referral, 1, 0).await?;
        let reviews = open_reviews(&url).await?;
        let asked = reviews
            .iter()
            .any(|(p, c)| (p == &now && c == earlier) || (p == earlier && c == &now));
        assert!(
            now == *earlier || asked,
            "referral {referral}: a new person (method {method}) and no review task against \
             {earlier}: {reviews:?}"
        );
    }

    // An unrelated family in Westminster whose son has the same name and date of birth as a
    // boy already known in Kent with his mother.
    let kent_family = refer(
        &kinlink,
        family(
            "SAFE-5",
            person("Arta", "Berisha", Some(("1985-01-17", "exact")), "CT1 1AA"),
            &[person(
                "Dion",
                "Berisha",
                Some(("2017-05-09", "exact")),
                "CT1 1AA",
            )],
        ),
    )
    .await?;
    let (kent_dion, _) = resolved(&url, &kent_family, 2, 0).await?;
    let london_family = refer(
        &kinlink,
        family(
            "SAFE-6",
            person("Ilir", "Berisha", Some(("1979-11-03", "exact")), "SW1A 2AA"),
            &[person(
                "Dion",
                "Berisha",
                Some(("2017-05-09", "exact")),
                "SW1A 2AA",
            )],
        ),
    )
    .await?;
    let (london_dion, method) = resolved(&url, &london_family, 2, 0).await?;
    assert_ne!(
        london_dion, kent_dion,
        "namesakes in different households merged (method {method})"
    );
    let reviews = open_reviews(&url).await?;
    assert!(
        reviews
            .iter()
            .any(|(p, c)| p == &london_dion && c == &kent_dion),
        "the pair is left to a person: {reviews:?}"
    );
    // Westminster hears of its child; Kent is told nothing about the other family's boy.
    receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| {
                x.authority == WESTMINSTER
                    && x.body["referral_id"].as_str() == Some(london_family.as_str())
            })
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let told_kent: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| {
            r.authority == KENT && r.body["referral_id"].as_str() == Some(london_family.as_str())
        })
        .collect();
    assert!(
        told_kent.is_empty(),
        "Kent told about another family: {told_kent:?}"
    );

    // A reviewer decides the two boys are not the same child: when the London family is
    // referred again, the boy links to his own earlier record and the pair is not asked
    // about again.
    let task = {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        let row = sqlx::query(
            "SELECT task_id FROM linkage_reviews WHERE state = 'open' AND person_id = $1 AND candidate_person_id = $2",
        )
        .bind(&london_dion)
        .bind(&kent_dion)
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        row.try_get::<String, _>("task_id")?
    };
    let decided = std::process::Command::new(kinlink_bin())
        .args([
            "review",
            "decide",
            &task,
            "--different",
            "--by",
            "reviewer-1",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(decided.status.success(), "{decided:?}");
    let again = refer(
        &kinlink,
        family(
            "SAFE-7",
            person("Ilir", "Berisha", Some(("1979-11-03", "exact")), "SW1A 2AA"),
            &[person(
                "Dion",
                "Berisha",
                Some(("2017-05-09", "exact")),
                "SW1A 2AA",
            )],
        ),
    )
    .await?;
    let (dion_again, _) = resolved(&url, &again, 2, 0).await?;
    assert_eq!(dion_again, london_dion, "the boy is his own earlier record");
    let reviews = open_reviews(&url).await?;
    assert!(
        !reviews
            .iter()
            .any(|(p, c)| (p == &london_dion && c == &kent_dion)
                || (p == &kent_dion && c == &london_dion)),
        "a pair decided distinct was asked about again: {reviews:?}"
    );

    let status = kinlink.interrupt().await?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

/// Streaming equals batch: `kinlink synth` writes the same persons as referrals (what the
/// enricher sees, through intake's parser and the enricher's record) and as a persons CSV
/// (what `kinlink link` reads). For every pair sharing a blocking key, both paths build the
/// same comparison record and the same keys, so with the same model and name counts they
/// score the pair alike. (The streaming enricher's name counts are those of the records
/// registered before the decision, a file's are the whole file's; exact-name weights differ
/// by at most the term-frequency clamp, 4 bits down and 2 up per name.)
#[test]
fn streaming_and_batch_score_every_pair_alike() -> TestResult {
    use kinlink_linkage::compare::Prepared;
    use kinlink_linkage::model::Frequencies;
    use kinlink_linkage::{Model, blocking};

    let dir = TempDir::new("linkage-agreement")?;
    let out = std::process::Command::new(crate::helpers::kinlink_bin())
        .args(["synth", "--households", "150", "--seed", "23", "--out-dir"])
        .arg(&dir.0)
        .output()?;
    assert!(out.status.success(), "{out:?}");
    let batch = read_persons_csv(&dir.0.join("persons.csv"))?;
    let received_at =
        chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")?.timestamp_millis();
    let mut streaming = Vec::new();
    for (n, line) in std::fs::read_to_string(dir.0.join("referrals.jsonl"))?
        .lines()
        .enumerate()
    {
        let request = kinlink_intake::request::parse_body(line.as_bytes())
            .map_err(|e| format!("line {n}: {e:?}"))?;
        let event = kinlink_intake::request::into_event(request, "r", "synthetic", received_at)
            .map_err(|e| format!("line {n}: {e:?}"))?;
        let subject = event.subject.as_ref().ok_or("no subject")?;
        for p in std::iter::once(subject)
            .chain(event.dependants.iter().filter_map(|d| d.person.as_ref()))
        {
            streaming.push(kinlink_domain::linking::person_record("", p));
        }
    }
    assert_eq!(streaming.len(), batch.len());
    let model = Model::shipped()?;
    let freq = Frequencies::from_records(&batch);
    let (mut pairs, mut keyed) = (0usize, 0usize);
    for (s, b) in streaming.iter().zip(&batch) {
        assert_eq!(Prepared::new(s), Prepared::new(b), "record {}", b.id);
        assert_eq!(blocking::keys(s), blocking::keys(b), "record {}", b.id);
    }
    let index = blocking::Index::build(&batch);
    for (i, b) in batch.iter().enumerate() {
        for j in index.candidates(b).into_iter().filter(|&j| j > i) {
            keyed += 1;
            let from_stream = model.score(&streaming[i], &streaming[j], Some(&freq));
            let from_file = model.score(b, &batch[j], Some(&freq));
            assert_eq!(from_stream, from_file, "pair {} {}", b.id, batch[j].id);
            pairs += 1;
        }
    }
    assert!(keyed > 500, "only {keyed} candidate pairs");
    eprintln!(
        "streaming and batch agree on {pairs} candidate pairs of {} records",
        batch.len()
    );
    Ok(())
}
