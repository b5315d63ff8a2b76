//! Benchmark (not a test): linkage quality on synthetic households with ground truth
//! (precision, recall and F1 of automatic links, size of the review band) for the shipped
//! model and one trained by EM on the same unlabelled records, batch throughput, and
//! link-decision latency with 100,000 and 1,000,000 persons indexed.
//!
//! Run: `cargo bench -p kinlink-linkage --bench quality`. With `QUALITY_DIAGNOSE=1` it also
//! lists the comparison patterns behind the most false automatic links and missed true pairs,
//! which is where tuning the model starts.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use kinlink_linkage::blocking::Index;
use kinlink_linkage::compare::compare;
use kinlink_linkage::model::Frequencies;
use kinlink_linkage::{Model, PersonRecord, batch, synth};

fn peak_memory_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Exactly `n` synthetic records (households are generated until there are enough).
fn population(n: usize, seed: u64) -> Vec<PersonRecord> {
    // About 5 records per household; a quarter of `n` households always gives enough.
    let mut records: Vec<PersonRecord> = synth::generate(n / 4 + 1, seed)
        .into_iter()
        .map(|s| s.record)
        .collect();
    records.truncate(n);
    records
}

fn pattern(a: &PersonRecord, b: &PersonRecord) -> String {
    let levels: Vec<&str> = compare(a, b).iter().map(|l| l.unwrap_or("-")).collect();
    levels.join(",")
}

fn top(counts: HashMap<String, usize>, n: usize) -> Vec<(String, usize)> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    counts.truncate(n);
    counts
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::shipped()?;
    let diagnose = std::env::var_os("QUALITY_DIAGNOSE").is_some();

    // Quality on 10,000 households, with the shipped model and with one trained (EM) on the
    // same unlabelled records.
    let data = synth::generate(10_000, 7);
    let records: Vec<PersonRecord> = data.iter().map(|s| s.record.clone()).collect();
    let truth: HashMap<&str, &str> = data
        .iter()
        .map(|s| (s.record.id.as_str(), s.true_person.as_str()))
        .collect();
    let by_id: HashMap<&str, &PersonRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut by_person: HashMap<&str, Vec<&PersonRecord>> = HashMap::new();
    for s in &data {
        by_person
            .entry(s.true_person.as_str())
            .or_default()
            .push(&s.record);
    }
    let true_pairs: usize = by_person
        .values()
        .map(|v| v.len() * (v.len() - 1) / 2)
        .sum();
    let started = Instant::now();
    let trained = kinlink_linkage::train::train(&model, &records, "synthetic-em", 3);
    println!(
        "training (u by sampling, m by EM in a date-of-birth and a name session) on {} records: {:.1} s; prior {:.2e} (shipped {:.2e})",
        records.len(),
        started.elapsed().as_secs_f64(),
        trained.prior,
        model.prior
    );
    for (label, model) in [("shipped model", &model), ("EM-trained model", &trained)] {
        let links = batch::link(model, &records, None, model.lower);
        let auto: Vec<_> = links
            .iter()
            .filter(|l| l.match_probability >= model.upper)
            .collect();
        let review = links.len() - auto.len();
        let true_auto = auto
            .iter()
            .filter(|l| truth[l.id_l.as_str()] == truth[l.id_r.as_str()])
            .count();
        let precision = true_auto as f64 / auto.len().max(1) as f64;
        let recall = true_auto as f64 / true_pairs.max(1) as f64;
        let f1 = 2.0 * precision * recall / (precision + recall).max(f64::EPSILON);
        println!(
            "quality, {label} (10,000 households, {} records, {} true pairs): precision {:.3}, recall {:.3}, F1 {:.3}; {} automatic links, review band (lower <= p < upper) {} pairs",
            records.len(),
            true_pairs,
            precision,
            recall,
            f1,
            auto.len(),
            review
        );
        if diagnose {
            let mut false_links: HashMap<String, usize> = HashMap::new();
            for l in auto
                .iter()
                .filter(|l| truth[l.id_l.as_str()] != truth[l.id_r.as_str()])
            {
                let (a, b) = (by_id[l.id_l.as_str()], by_id[l.id_r.as_str()]);
                let household = |p: &str| p.split('-').next().unwrap_or_default().to_owned();
                let same = household(truth[l.id_l.as_str()]) == household(truth[l.id_r.as_str()]);
                let key = format!(
                    "{} {}",
                    if same {
                        "same household "
                    } else {
                        "other household"
                    },
                    pattern(a, b)
                );
                *false_links.entry(key).or_default() += 1;
            }
            println!(
                "  most frequent false automatic links (given,family,dob,sex,nationality,postcode):"
            );
            for (key, n) in top(false_links, 10) {
                println!("    {n:6} {key}");
            }
            let freq = Frequencies::from_records(&records);
            let mut missed: HashMap<String, usize> = HashMap::new();
            for group in by_person.values() {
                for (i, a) in group.iter().enumerate() {
                    for b in &group[i + 1..] {
                        if model.score(a, b, Some(&freq)).probability < model.upper {
                            *missed.entry(pattern(a, b)).or_default() += 1;
                        }
                    }
                }
            }
            println!("  most frequent true pairs scored below upper (blocking aside):");
            for (key, n) in top(missed, 10) {
                println!("    {n:6} {key}");
            }
        }
    }

    // Batch throughput: deduplicating a file, every candidate pair scored.
    for n in [10_000usize, 100_000] {
        let file = population(n, 5);
        let started = Instant::now();
        let links = batch::link(&model, &file, None, model.lower);
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "batch::link dedupe, shipped model: {n} records in {elapsed:.2} s = {:.0} records/s ({} pairs at or above lower); peak memory {:.0} MiB",
            n as f64 / elapsed,
            links.len(),
            peak_memory_mib()
        );
    }

    // Decision latency against an index of N persons: candidates from the index, each scored
    // with term frequencies, best probability taken.
    let probes = population(1_000, 99);
    for n in [100_000usize, 1_000_000] {
        let population = population(n, 11);
        let build = Instant::now();
        let index = Index::build(&population);
        let freq = Frequencies::from_records(&population);
        let build_s = build.elapsed().as_secs_f64();
        let mut latencies = Vec::with_capacity(probes.len());
        let mut seen = HashSet::new();
        for probe in &probes {
            let started = Instant::now();
            let best = index
                .candidates(probe)
                .into_iter()
                .map(|i| model.score(probe, &population[i], Some(&freq)).probability)
                .fold(0.0, f64::max);
            latencies.push(started.elapsed().as_secs_f64() * 1e6);
            // Keeps the scoring from being optimised away.
            seen.insert(model.band(best) as u8);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "decision latency with {} persons indexed (index built in {:.1} s): p50 {:.0} µs, p99 {:.0} µs over {} probes; peak memory (VmHWM) {:.0} MiB",
            population.len(),
            build_s,
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 99 / 100],
            latencies.len(),
            peak_memory_mib()
        );
        std::hint::black_box(&seen);
    }
    Ok(())
}
