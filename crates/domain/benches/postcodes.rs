//! Benchmark (not a test): how fast the shipped postcode table loads, how much memory it
//! takes, and how many postcodes per second resolve to a children's-services body.
//!
//! Run: `cargo bench -p kinlink-domain --bench postcodes`

use std::hint::black_box;
use std::time::Instant;

use kinlink_domain::routing::postcode_table::PostcodeTable;
use kinlink_domain::routing::{AuthorityResolver, Resolution};

/// Resident memory of this process in bytes (Linux), or 0 elsewhere.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let before = resident_bytes();
    let started = Instant::now();
    let table = PostcodeTable::load_shipped()?;
    let load = started.elapsed();
    let after = resident_bytes();
    println!(
        "load: {} postcodes in {:.0} ms, resident memory +{:.1} MiB",
        table.len(),
        load.as_secs_f64() * 1e3,
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0)
    );
    let mut loads = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        black_box(PostcodeTable::load_shipped()?);
        loads.push(started.elapsed().as_secs_f64() * 1e3);
    }
    loads.sort_by(f64::total_cmp);
    println!(
        "load time over 5 runs: median {:.0} ms, min {:.0} ms",
        loads[2], loads[0]
    );

    let resolver = AuthorityResolver::shipped()?;
    // Every 13th postcode (about 200,000), in lower case with the space removed, as typed.
    let queries: Vec<String> = table
        .postcodes()
        .step_by(13)
        .map(|p| p.to_ascii_lowercase().replace(' ', ""))
        .collect();
    let mut resolved = 0usize;
    let started = Instant::now();
    for query in &queries {
        if matches!(
            black_box(resolver.resolve_postcode(query)),
            Resolution::Resolved { .. }
        ) {
            resolved += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "resolve: {} postcodes in {:.0} ms = {:.0} resolutions/s ({} resolved to one body, {} named a choice)",
        queries.len(),
        elapsed.as_secs_f64() * 1e3,
        queries.len() as f64 / elapsed.as_secs_f64(),
        resolved,
        queries.len() - resolved
    );
    Ok(())
}
