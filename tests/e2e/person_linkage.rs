//! Person linkage through the whole pipeline: an adult referred with two children, then one
//! of the children referred in her own right under a transliterated name with an estimated
//! date of birth. The second alert names the same person and says how she was recognised;
//! `kinlink explain` shows the evidence; an uncertain match waits in `kinlink review`.

use std::time::Duration;

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";

fn child(
    given: &str,
    family: &str,
    dob: &str,
    precision: &str,
    postcode: &str,
) -> serde_json::Value {
    serde_json::json!({
        "given_name": given,
        "family_name": family,
        "date_of_birth": { "value": dob, "precision": precision },
        "sex": "female",
        "nationalities": ["AL"],
        "locations": [{ "role": "lives", "postcode": postcode }]
    })
}

fn cli(
    args: &[&str],
    data: &std::path::Path,
    config: &std::path::Path,
) -> TestResult<serde_json::Value> {
    let output = std::process::Command::new(crate::helpers::kinlink_bin())
        .args(args)
        .arg("--json")
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .output()?;
    if !output.status.success() {
        return Err(format!("kinlink {args:?} failed: {output:?}").into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Posts a referral and returns its id.
async fn refer(kinlink: &Kinlink, referral: serde_json::Value) -> TestResult<String> {
    let accepted = kinlink.post_referral(&referral).await?;
    Ok(accepted["referral_id"]
        .as_str()
        .ok_or("no referral_id")?
        .to_owned())
}

/// Waits for `authority`'s alert about `referral_id` and returns its body.
async fn alert_for(
    receiver: &WebhookReceiver,
    authority: &str,
    referral_id: &str,
) -> TestResult<serde_json::Value> {
    alert_where(receiver, authority, |body| {
        body["referral_id"].as_str() == Some(referral_id)
    })
    .await
}

/// Waits for an alert to `authority` whose body satisfies `wanted` and returns the body.
async fn alert_where(
    receiver: &WebhookReceiver,
    authority: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> TestResult<serde_json::Value> {
    let about = |x: &Received| x.authority == authority && wanted(&x.body);
    receiver
        .wait_for(Duration::from_secs(60), |r| r.iter().any(about))
        .await?;
    Ok(receiver
        .received()
        .into_iter()
        .find(about)
        .ok_or("no alert")?
        .body)
}

#[tokio::test]
async fn a_child_referred_in_her_own_right_under_a_transliterated_name_is_recognised() -> TestResult
{
    let dir = TempDir::new("e2e-person-linkage")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(
        &dir.0,
        &receiver,
        &[KENT, WESTMINSTER],
        "\n[ops]\napi_token = \"test-operator-token\"\n",
    )?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;

    // An adult referred by the police with her two daughters, all living in Canterbury.
    let family_id = refer(
        &kinlink,
        serde_json::json!({
            "external_reference": "LINK-1",
            "subject": child("Elira", "Hoxha", "1986-05-20", "exact", "CT1 2RR"),
            "dependants": [
                { "person": child("Besa", "Hoxha", "2016-03-04", "exact", "CT1 2RR"),
                  "relationship": "child", "with_subject": true },
                { "person": child("Drita", "Hoxha", "2012-07-09", "exact", "CT1 2RR"),
                  "relationship": "child", "with_subject": true }
            ],
            "exploitation_types": ["labour"],
            "consent": "given"
        }),
    )
    .await?;
    alert_for(&receiver, KENT, &family_id).await?;
    let store_url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    let besa = dependant_person_id(&store_url, &family_id, 0).await?;
    let drita_id = dependant_person_id(&store_url, &family_id, 1).await?;

    // Months later a charity refers "Bessa Hoxhaj", born in 2016 by her own estimate, found
    // in the next street.
    let own_id = refer(
        &kinlink,
        serde_json::json!({
            "external_reference": "LINK-2",
            "subject": child("Bessa", "Hoxhaj", "2016-01-01", "estimated", "CT1 2AB"),
            "exploitation_types": ["criminal"],
            "consent": "not_required_child"
        }),
    )
    .await?;
    let alert = alert_for(&receiver, KENT, &own_id).await?;
    let section = &alert["children"][0];
    assert_eq!(alert["person_id"].as_str(), Some(besa.as_str()), "{alert}");
    assert_eq!(section["person_id"].as_str(), Some(besa.as_str()));
    assert_eq!(section["recognised_by"], "probabilistic", "{section}");
    assert!(section["match_probability"].as_f64().unwrap_or(0.0) >= 0.95);
    assert_eq!(
        section["earlier_referral_ids"],
        serde_json::json!([family_id])
    );
    assert_eq!(section["ever_referred_in_own_right"], true);
    let rules: Vec<&str> = section["rules"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
        .unwrap_or_default();
    assert!(rules.contains(&"repeat_referral"), "{rules:?}");
    assert!(!rules.contains(&"unrecognised_dependant"), "{rules:?}");

    // The evidence behind the link, with no names or dates in it.
    let explained = cli(&["explain", &besa], &data, &config)?;
    let records = explained["records"].as_array().ok_or("no records")?;
    assert_eq!(records.len(), 2, "{explained}");
    assert_eq!(records[0]["method"], "new_person");
    assert_eq!(records[1]["method"], "probabilistic");
    assert_eq!(records[1]["referral_id"], own_id.as_str());
    assert!(
        records[1]["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|f| f["field"] == "family_name")),
        "{explained}"
    );
    let text = explained.to_string();
    for personal in ["Besa", "Hoxha", "2016-03-04", "CT1"] {
        assert!(!text.contains(personal), "explain leaks {personal}: {text}");
    }

    // The referral's trace shows the linkage decision.
    let trace = cli(&["ops", "trace", &own_id], &data, &config)?;
    assert!(
        trace
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s["kind"] == "linkage"
                && s["what"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("probabilistic"))
                && s["ids"][1] == besa.as_str())),
        "{trace}"
    );

    // Nothing waits for review yet; the list answers.
    let open = cli(&["review", "list"], &data, &config)?;
    assert_eq!(open, serde_json::json!([]));

    // Her sister is reported found in Westminster, living somewhere in Canterbury, with no
    // date of birth: maybe Drita, maybe not. Nothing is merged; a person is asked.
    let mut drita = child("Drita", "Hoxha", "2012", "year", "CT1 9ZZ");
    drita.as_object_mut().map(|p| p.remove("date_of_birth"));
    drita["locations"] = serde_json::json!([
        { "role": "lives", "postcode": "CT1 9ZZ" },
        { "role": "found", "authority_code": WESTMINSTER }
    ]);
    let found_id = refer(
        &kinlink,
        serde_json::json!({
            "external_reference": "LINK-3",
            "subject": drita,
            "exploitation_types": ["criminal"],
            "consent": "not_required_child"
        }),
    )
    .await?;
    alert_for(&receiver, WESTMINSTER, &found_id).await?;
    let open = cli(&["review", "list"], &data, &config)?;
    let tasks = open.as_array().ok_or("review list is not an array")?;
    assert_eq!(tasks.len(), 1, "{open}");
    assert_eq!(tasks[0]["candidate_person_id"], drita_id.as_str());
    let task_id = tasks[0]["task_id"].as_str().ok_or("no task id")?.to_owned();

    // The API lists the same task (ids and weights, no names) to operators' integrations.
    let http = reqwest::Client::new();
    let listed: serde_json::Value = http
        .get(format!("{}/v1/reviews", kinlink.base_url))
        .bearer_auth("test-operator-token")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed[0]["task_id"], task_id.as_str(), "{listed}");
    assert!(!listed.to_string().contains("Drita"), "{listed}");
    let decision = |task: &str| {
        http.post(format!("{}/v1/reviews/{task}/decision", kinlink.base_url))
            .bearer_auth("test-operator-token")
            .json(&serde_json::json!({ "verdict": "same", "reviewer": "op-17" }))
            .send()
    };
    assert_eq!(decision("no-such-task").await?.status(), 404);

    // The social worker confirms it is Drita: one merge, by an operator id.
    let decided = cli(
        &["review", "decide", &task_id, "--same", "--by", "op-17"],
        &data,
        &config,
    )?;
    assert_eq!(decided["surviving_person_id"], drita_id.as_str());
    assert_eq!(decision(&task_id).await?.status(), 409, "decided once only");

    // Kent and Westminster each hear that the child is known to the other.
    for body in [KENT, WESTMINSTER] {
        let alert = alert_where(&receiver, body, |b| {
            b["rule"] == "cross_authority_reappearance"
        })
        .await?;
        assert_eq!(alert["person_id"], drita_id.as_str(), "{alert}");
        let codes = &alert["children"][0]["previous_authority_codes"];
        assert!(
            [KENT, WESTMINSTER]
                .iter()
                .all(|c| codes.as_array().is_some_and(|a| a.iter().any(|x| x == c))),
            "{alert}"
        );
    }

    // Drita is referred again at home: Kent's alert now knows Westminster found her before.
    let again_id = refer(
        &kinlink,
        serde_json::json!({
            "external_reference": "LINK-4",
            "subject": child("Drita", "Hoxha", "2012-07-09", "exact", "CT1 2RR"),
            "exploitation_types": ["criminal"],
            "consent": "not_required_child"
        }),
    )
    .await?;
    let alert = alert_for(&receiver, KENT, &again_id).await?;
    let section = &alert["children"][0];
    assert_eq!(section["person_id"], drita_id.as_str(), "{section}");
    assert_eq!(
        section["earlier_referral_ids"],
        serde_json::json!([family_id, found_id]),
        "{section}"
    );
    assert!(
        section["previous_authority_codes"]
            .as_array()
            .is_some_and(|codes| codes.iter().any(|c| c == WESTMINSTER)),
        "{section}"
    );
    let explained = cli(&["explain", &drita_id], &data, &config)?;
    assert_eq!(explained["changes"][0]["kind"], "merge", "{explained}");
    assert_eq!(explained["changes"][0]["decided_by"], "op-17");

    let status = kinlink.interrupt().await?;
    assert!(status.success(), "{status:?}");
    Ok(())
}

/// Synthetic referrals with ground truth through `kinlink import` and the running pipeline:
/// the persons the streaming enricher resolves agree with the truth (precision at least 0.95,
/// recall of automatic links at least 0.65; seen: 1.000 and 0.685).
#[tokio::test]
async fn synthetic_referrals_imported_resolve_to_their_true_persons() -> TestResult {
    use sqlx::{Connection, Row};
    let dir = TempDir::new("e2e-synth-import")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let synth = dir.0.join("synth");
    let run = |args: &[&str]| -> TestResult<std::process::Output> {
        Ok(std::process::Command::new(crate::helpers::kinlink_bin())
            .args(args)
            .output()?)
    };
    let synth_dir = synth.to_string_lossy().to_string();
    let out = run(&[
        "synth",
        "--households",
        "60",
        "--seed",
        "5",
        "--out-dir",
        &synth_dir,
    ])?;
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(crate::helpers::kinlink_bin())
        .arg("import")
        .arg(synth.join("referrals.jsonl"))
        .args(["--agency", "synthetic", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(out.status.success(), "{out:?}");

    let truth: Vec<Vec<String>> = std::fs::read_to_string(synth.join("referral_truth.csv"))?
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let rows = loop {
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        let rows: Vec<(String, i64, i64, String)> = sqlx::query(
            "SELECT i.external_reference, rp.role, rp.dependant_index, \
             COALESCE(p.merged_into, p.person_id) AS person FROM referral_persons rp \
             JOIN intake_referrals i ON i.referral_id = rp.referral_id \
             JOIN persons p ON p.person_id = rp.person_id",
        )
        .fetch_all(&mut conn)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("external_reference")?,
                r.try_get("role")?,
                r.try_get("dependant_index")?,
                r.try_get("person")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        conn.close().await?;
        if rows.len() >= truth.len() || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(rows.len(), truth.len(), "every record enriched");

    let true_person: std::collections::HashMap<(String, i64, i64), String> = truth
        .iter()
        .map(|t| {
            let role = if t[1] == "subject" { 1 } else { 2 };
            let index = t[2].parse().unwrap_or(-1);
            ((t[0].clone(), role, index), t[3].clone())
        })
        .collect();
    let labelled: Vec<(&str, &str)> = rows
        .iter()
        .filter_map(|(r, role, i, person)| {
            true_person
                .get(&(r.clone(), *role, *i))
                .map(|t| (person.as_str(), t.as_str()))
        })
        .collect();
    assert_eq!(labelled.len(), truth.len());
    let (mut linked, mut correct, mut true_pairs) = (0usize, 0usize, 0usize);
    for (i, a) in labelled.iter().enumerate() {
        for b in &labelled[i + 1..] {
            let same_person = a.0 == b.0;
            let same_truth = a.1 == b.1;
            linked += usize::from(same_person);
            correct += usize::from(same_person && same_truth);
            true_pairs += usize::from(same_truth);
        }
    }
    let precision = correct as f64 / linked.max(1) as f64;
    let recall = correct as f64 / true_pairs.max(1) as f64;
    eprintln!(
        "streaming linkage, 60 synthetic households: precision {precision:.3}, recall {recall:.3} \
         ({correct} of {linked} linked pairs true, {true_pairs} true pairs)"
    );
    assert!(true_pairs > 50, "the synthetic set has repeat referrals");
    assert!(
        precision >= 0.95,
        "precision {precision} ({correct}/{linked})"
    );
    // Automatic links only: two persons in the link band, or a child known only in another
    // household at another address, go to review instead (seen: 0.685 on this set; 0.783 on
    // 4,000 households in the streaming bench).
    assert!(recall >= 0.65, "recall {recall} ({correct}/{true_pairs})");

    // Streaming equals batch, store included: each record the enricher stored, read back as
    // the enricher reads a candidate, is the record `kinlink link` reads from persons.csv.
    let batch = read_persons_csv(&synth.join("persons.csv"))?;
    let mut position: std::collections::HashMap<(String, i64, i64), usize> =
        std::collections::HashMap::new();
    for line in std::fs::read_to_string(synth.join("referrals.jsonl"))?.lines() {
        let referral: serde_json::Value = serde_json::from_str(line)?;
        let reference = referral["external_reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let next = position.len();
        position.insert((reference.clone(), 1, 0), next);
        for i in 0..referral["dependants"].as_array().map_or(0, Vec::len) {
            let next = position.len();
            position.insert((reference.clone(), 2, i64::try_from(i)?), next);
        }
    }
    assert_eq!(position.len(), batch.len());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let stored = sqlx::query(
        "SELECT i.external_reference, rp.role, rp.dependant_index, lr.* FROM linkage_records lr \
         JOIN referral_persons rp ON rp.referral_id = lr.referral_id AND rp.person_id = lr.person_id \
         JOIN intake_referrals i ON i.referral_id = lr.referral_id",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    assert_eq!(
        stored.len(),
        batch.len(),
        "one linkage record per person record"
    );
    for row in &stored {
        let key: (String, i64, i64) = (
            row.try_get("external_reference")?,
            row.try_get("role")?,
            row.try_get("dependant_index")?,
        );
        let from_store = kinlink_enricher::registry::stored_record(row)?;
        let from_file = &batch[position[&key]];
        assert_eq!(
            kinlink_linkage::compare::Prepared::new(&from_store),
            kinlink_linkage::compare::Prepared::new(from_file),
            "{key:?}"
        );
    }

    // Linking the registry again with the same model: every record is there, and any merge
    // it proposes is of one true person.
    let diff = std::process::Command::new(crate::helpers::kinlink_bin())
        .args(["model", "diff", "--json", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(diff.status.success(), "{diff:?}");
    let diff: serde_json::Value = serde_json::from_slice(&diff.stdout)?;
    assert_eq!(diff["records"], truth.len(), "{diff}");
    let truth_of: std::collections::HashMap<&str, &str> = labelled.iter().copied().collect();
    for group in diff["merges"].as_array().ok_or("no merges array")? {
        let truths: std::collections::BTreeSet<&str> = group
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().and_then(|p| truth_of.get(p).copied()))
            .collect();
        assert_eq!(
            truths.len(),
            1,
            "a proposed merge of different people: {group}"
        );
    }

    let status = kinlink.interrupt().await?;
    assert!(status.success(), "{status:?}");
    Ok(())
}
