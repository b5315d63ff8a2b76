//! Benchmark (not a test): linkage quality on synthetic households with ground truth
//! (precision, recall and F1 of automatic links, size of the review band), batch throughput,
//! and link-decision latency with 100k and 1M persons indexed.
//!
//! Run: `cargo bench -p kinlink-linkage --bench quality`

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use kinlink_linkage::blocking::Index;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::shipped()?;

    // Quality on 10,000 households, with the shipped model and with one trained (EM) on the
    // same unlabelled records.
    let data = synth::generate(10_000, 7);
    let records: Vec<PersonRecord> = data.iter().map(|s| s.record.clone()).collect();
    let truth: HashMap<&str, &str> = data
        .iter()
        .map(|s| (s.record.id.as_str(), s.true_person.as_str()))
        .collect();
    let mut by_person: HashMap<&str, usize> = HashMap::new();
    for s in &data {
        *by_person.entry(s.true_person.as_str()).or_default() += 1;
    }
    let true_pairs: usize = by_person.values().map(|n| n * (n - 1) / 2).sum();
    let started = Instant::now();
    let trained = kinlink_linkage::train::train(&model, &records, "synthetic-em", 3);
    println!(
        "training (u by sampling, m by EM) on {} records: {:.1} s",
        records.len(),
        started.elapsed().as_secs_f64()
    );
    for (label, model) in [("shipped model", &model), ("EM-trained model", &trained)] {
        let started = Instant::now();
        let links = batch::link(model, &records, None, model.lower);
        let elapsed = started.elapsed().as_secs_f64();
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
            "quality, {label} (10,000 households, {} records, {} true pairs): precision {:.3}, recall {:.3}, F1 {:.3}; {} automatic links, {} pairs in the review band",
            records.len(),
            true_pairs,
            precision,
            recall,
            f1,
            auto.len(),
            review
        );
        println!(
            "batch dedupe, {label}: {} records in {:.2} s = {:.0} records/s",
            records.len(),
            elapsed,
            records.len() as f64 / elapsed
        );
    }

    // Decision latency against an index of N persons.
    for households in [30_000usize, 300_000] {
        let population: Vec<PersonRecord> = synth::generate(households, 11)
            .into_iter()
            .map(|s| s.record)
            .collect();
        let build = Instant::now();
        let index = Index::build(&population);
        let freq = Frequencies::from_records(&population);
        let build_s = build.elapsed().as_secs_f64();
        let probes: Vec<PersonRecord> = synth::generate(1_000, 99)
            .into_iter()
            .map(|s| s.record)
            .collect();
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
            seen.insert((best * 100.0) as u32);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "decision latency with {} persons indexed (index built in {:.1} s): p50 {:.0} µs, p99 {:.0} µs; peak memory {:.0} MiB",
            population.len(),
            build_s,
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 99 / 100],
            peak_memory_mib()
        );
    }
    Ok(())
}
