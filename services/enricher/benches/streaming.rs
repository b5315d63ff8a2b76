//! Benchmark (not a test): the streaming enricher, as `kinlink up` runs it, over synthetic
//! referrals with ground truth, on the embedded store. Reports the quality of the persons it
//! resolves (pairwise precision, recall and F1 against the true persons, review tasks
//! opened), throughput, and the latency of one referral's decision (all its persons, one
//! transaction) as the registry grows.
//!
//! Run: `cargo bench -p kinlink-enricher --bench streaming`
//! (`KINLINK_BENCH_HOUSEHOLDS`, default 20000, about 100,000 person records;
//! `KINLINK_BENCH_LINK_THRESHOLD` overrides the model's automatic-link threshold;
//! `QUALITY_DIAGNOSE=1` prints the evidence of review tasks and false links;
//! `KINLINK_BENCH_KEEP=1` keeps the store).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kinlink_enricher::Enricher;
use kinlink_eventlog::{Envelope, Record, Stage, topics};
use kinlink_linkage::synth::{self, Synthetic};
use kinlink_proto::v1;
use sqlx::Row;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn person(s: &Synthetic) -> v1::Person {
    let r = &s.record;
    v1::Person {
        given_name: r.given.clone(),
        family_name: r.family.clone(),
        date_of_birth: r.dob.map(|d| {
            let (value, precision) = match (d.month, d.day) {
                (Some(m), Some(day)) => (
                    format!("{:04}-{m:02}-{day:02}", d.year),
                    v1::DobPrecision::Exact,
                ),
                (Some(m), None) => (format!("{:04}-{m:02}", d.year), v1::DobPrecision::Month),
                _ => (format!("{:04}", d.year), v1::DobPrecision::Year),
            };
            v1::DateOfBirth {
                value,
                precision: if d.estimated {
                    v1::DobPrecision::Estimated as i32
                } else {
                    precision as i32
                },
            }
        }),
        sex: match r.sex.as_str() {
            "f" => v1::Sex::Female as i32,
            "m" => v1::Sex::Male as i32,
            _ => v1::Sex::Unknown as i32,
        },
        aliases: r.aliases.clone(),
        claimed_age: s.claimed_age,
        nationalities: vec![r.nationality.clone()],
        locations: vec![v1::Location {
            role: v1::LocationRole::Lives as i32,
            postcode: r.postcode.clone(),
            no_fixed_abode: r.postcode.is_empty(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A decision's stored evidence as `field=level,...`, for counting decisions alike.
fn evidence_pattern(evidence: &str) -> Result<String> {
    let levels: Vec<serde_json::Value> = serde_json::from_str(evidence)?;
    Ok(levels
        .iter()
        .map(|e| {
            format!(
                "{}={}",
                e["field"].as_str().unwrap_or("?"),
                e["level"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(","))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let households: usize = std::env::var("KINLINK_BENCH_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(households))
}

async fn run(households: usize) -> Result<()> {
    let data = synth::generate(households, 11);
    let dir = std::env::temp_dir().join(format!("kinlink-bench-streaming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = kinlink_store::Store::open_embedded(&dir).await?;
    // `KINLINK_BENCH_LINK_THRESHOLD` tries another automatic-link threshold.
    let settings = kinlink_runtime::settings::EnricherSettings {
        link_threshold: std::env::var("KINLINK_BENCH_LINK_THRESHOLD")
            .ok()
            .and_then(|v| v.parse().ok()),
        ..Default::default()
    };
    let enricher = Enricher::from_settings(&settings)?;
    println!(
        "{} synthetic records in {} households, model {}, link threshold {}",
        data.len(),
        households,
        enricher.model().version,
        enricher.model().upper
    );

    // Latency of each referral, by how many persons were registered when it was decided.
    let mut latencies: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let bucket = |persons: usize| match persons {
        0..10_000 => 0,
        10_000..50_000 => 10_000,
        50_000..100_000 => 50_000,
        _ => 100_000,
    };
    let mut truth: HashMap<(String, i64, i64), String> = HashMap::new();
    let mut registered = 0usize;
    let mut referrals = 0usize;
    let started = Instant::now();
    for group in data.chunk_by(|a, b| a.referral == b.referral) {
        let Some((subject, dependants)) = group.split_first() else {
            continue;
        };
        let event = v1::ReferralReceived {
            referral_id: subject.referral.clone(),
            subject: Some(person(subject)),
            dependants: dependants
                .iter()
                .map(|d| v1::Dependant {
                    person: Some(person(d)),
                    relationship: v1::Relationship::Child as i32,
                    with_subject: true,
                })
                .collect(),
            received_at: Some(kinlink_proto::timestamp_from_millis(1_795_000_000_000)),
            ..Default::default()
        };
        truth.insert(
            (subject.referral.clone(), 1, 0),
            subject.true_person.clone(),
        );
        for (i, d) in dependants.iter().enumerate() {
            truth.insert(
                (d.referral.clone(), 2, i64::try_from(i)?),
                d.true_person.clone(),
            );
        }
        let record = Record {
            topic: topics::REFERRALS_RECEIVED.into(),
            partition: 0,
            offset: 0,
            envelope: Envelope::new(
                format!("bench-{}", subject.referral),
                "/bench",
                &subject.referral,
                &subject.referral,
                0,
                &event,
            ),
        };
        let t = Instant::now();
        let mut tx = store.begin().await?;
        enricher.handle(&mut tx, &record).await?;
        tx.commit().await?;
        latencies
            .entry(bucket(registered))
            .or_default()
            .push(t.elapsed().as_secs_f64() * 1000.0);
        registered += group.len();
        referrals += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "enriched {referrals} referrals ({registered} person records) in {elapsed:.1} s: \
         {:.0} referrals/s, {:.0} records/s",
        referrals as f64 / elapsed,
        registered as f64 / elapsed
    );
    for (from, mut values) in latencies {
        values.sort_by(f64::total_cmp);
        println!(
            "  with {from}+ records registered: p50 {:.2} ms, p99 {:.2} ms per referral ({} referrals)",
            percentile(&values, 0.5),
            percentile(&values, 0.99),
            values.len()
        );
    }

    // Quality: every pair of records resolved to the same person, against the truth.
    let mut conn = store.begin().await?;
    let rows = sqlx::query(
        "SELECT rp.referral_id, rp.role, rp.dependant_index, COALESCE(p.merged_into, p.person_id) AS person \
         FROM referral_persons rp JOIN persons p ON p.person_id = rp.person_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let review_rows = sqlx::query(
        "SELECT person_id, candidate_person_id, evidence FROM linkage_reviews WHERE state = 'open'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let reviews = review_rows.len();
    drop(conn);
    let mut by_person: HashMap<String, Vec<&str>> = HashMap::new();
    let mut by_truth: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in &rows {
        let key = (
            row.try_get::<String, _>("referral_id")?,
            row.try_get::<i64, _>("role")?,
            row.try_get::<i64, _>("dependant_index")?,
        );
        if let Some(t) = truth.get(&key) {
            keys.push((row.try_get("person")?, t.clone()));
        }
    }
    for (person, t) in &keys {
        by_person.entry(person.clone()).or_default().push(t);
        by_truth.entry(t).or_default().push(person);
    }
    let pairs = |n: usize| n * n.saturating_sub(1) / 2;
    let predicted: usize = by_person.values().map(|v| pairs(v.len())).sum();
    let true_pairs: usize = by_truth.values().map(|v| pairs(v.len())).sum();
    // A predicted pair is true when both records share the true person.
    let correct: usize = by_person
        .values()
        .map(|truths| {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for t in truths {
                *counts.entry(t).or_default() += 1;
            }
            counts.values().map(|n| pairs(*n)).sum::<usize>()
        })
        .sum();
    // Review tasks: how many ask about one true person (a missed link) and how many about
    // two (work that finds nothing), and the evidence behind the most common of the latter.
    let mut truths_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (person, t) in &keys {
        truths_of
            .entry(person.as_str())
            .or_default()
            .push(t.as_str());
    }
    let (mut same, mut different) = (0usize, 0usize);
    let mut patterns: HashMap<String, usize> = HashMap::new();
    for row in &review_rows {
        let a: String = row.try_get("person_id")?;
        let b: String = row.try_get("candidate_person_id")?;
        let (ta, tb) = (
            truths_of.get(a.as_str()).cloned().unwrap_or_default(),
            truths_of.get(b.as_str()).cloned().unwrap_or_default(),
        );
        let one = ta.iter().any(|t| tb.contains(t));
        if one {
            same += 1;
        } else {
            different += 1;
        }
        let pattern = evidence_pattern(&row.try_get::<String, _>("evidence")?)?;
        let kind = if one { "same person" } else { "two persons" };
        *patterns.entry(format!("{kind}: {pattern}")).or_default() += 1;
    }
    println!(
        "review tasks: {same} about one true person, {different} about two (1 per {:.1} records)",
        keys.len() as f64 / reviews.max(1) as f64
    );
    if std::env::var_os("QUALITY_DIAGNOSE").is_some() {
        let mut patterns: Vec<_> = patterns.into_iter().collect();
        patterns.sort_by_key(|p| std::cmp::Reverse(p.1));
        for (pattern, n) in patterns.iter().take(30) {
            println!("  {n:5} {pattern}");
        }
    }
    if std::env::var_os("QUALITY_DIAGNOSE").is_some() {
        // False automatic links: a record attached to an earlier record of another true
        // person, by the evidence of that decision.
        let truth_of_record: HashMap<String, &str> = truth
            .iter()
            .map(|((referral, role, index), t)| {
                (
                    kinlink_eventlog::envelope::derive_id(
                        referral,
                        &format!("record/{role}/{index}/v1"),
                    ),
                    t.as_str(),
                )
            })
            .collect();
        let mut conn = store.begin().await?;
        let linked = sqlx::query(
            "SELECT record_id, matched_record_id, evidence FROM linkage_records \
             WHERE matched_record_id IS NOT NULL",
        )
        .fetch_all(&mut *conn)
        .await?;
        drop(conn);
        let mut false_links: HashMap<String, usize> = HashMap::new();
        let mut wrong = 0usize;
        for row in &linked {
            let record: String = row.try_get("record_id")?;
            let matched: Option<String> = row.try_get("matched_record_id")?;
            let (Some(a), Some(b)) = (
                truth_of_record.get(&record),
                matched.and_then(|m| truth_of_record.get(&m)),
            ) else {
                continue;
            };
            if a == b {
                continue;
            }
            wrong += 1;
            let pattern = evidence_pattern(&row.try_get::<String, _>("evidence")?)?;
            *false_links.entry(pattern).or_default() += 1;
        }
        println!(
            "false automatic links: {wrong} of {} linked records",
            linked.len()
        );
        let mut false_links: Vec<_> = false_links.into_iter().collect();
        false_links.sort_by_key(|p| std::cmp::Reverse(p.1));
        for (pattern, n) in false_links.iter().take(15) {
            println!("  {n:5} {pattern}");
        }
    }
    let precision = correct as f64 / predicted.max(1) as f64;
    let recall = correct as f64 / true_pairs.max(1) as f64;
    println!(
        "quality over {} records: precision {precision:.3}, recall {recall:.3}, F1 {:.3} \
         ({correct} of {predicted} linked pairs true, {true_pairs} true pairs); {reviews} review tasks open; \
         {} persons for {} true persons",
        keys.len(),
        2.0 * precision * recall / (precision + recall).max(f64::EPSILON),
        by_person.len(),
        by_truth.len()
    );
    store.close().await;
    // `KINLINK_BENCH_KEEP` keeps the store for a closer look at its decisions.
    if std::env::var_os("KINLINK_BENCH_KEEP").is_some() {
        println!("store kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
