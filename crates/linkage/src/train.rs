//! Estimating the model from unlabelled data, the way Splink does it:
//!
//! - u from random pairs, which are almost all non-matches; fixed afterwards.
//! - m by expectation maximisation in separate sessions, each over the pairs one blocking
//!   rule brings together: records with the same precise date of birth (estimates the name,
//!   sex, nationality and postcode m's) and records with the same given and family name
//!   (estimates the date-of-birth and postcode m's). A session never
//!   estimates the fields it blocks on: every pair in it agrees on them, so they carry no
//!   information there, and letting EM use them is what made a single session over all
//!   candidate pairs learn "same household" instead of "same person".
//! - Each session has its own share of matches among its pairs; that share is not the model's
//!   prior. The prior is the probability that two records drawn at random are one person,
//!   estimated from the expected matches in the name session divided by how many of all
//!   matches that session can see (the m of exact agreement on both names) and by the number
//!   of possible pairs.
//! - The thresholds (`upper`, `lower`) stay those of the start model: they are policy.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};

use crate::compare::{Comparison, FIELDS, PersonRecord, Prepared, compare_prepared};
use crate::model::{Model, counted_elsewhere};

/// Random pairs drawn to estimate u (fewer when there are fewer possible pairs). 50,000 gave
/// the same F1 as 200,000 on every set of scripts/compare-splink.sh, in a quarter of the time.
const U_SAMPLES: usize = 50_000;
/// Chunks the sampling is split into (threads).
const U_CHUNKS: usize = 4;
/// Groups sharing a session key larger than this are skipped: their pairs would dominate the
/// session and cost quadratic time, and a key that common says little.
const MAX_GROUP: usize = 2_000;
/// EM iterations per session at most; it usually settles well before.
const MAX_ITERATIONS: usize = 50;
const GIVEN: usize = 0;
const FAMILY: usize = 1;
const DOB: usize = 2;
const SEX: usize = 3;
const NATIONALITY: usize = 4;

/// Trains `start` on `records`; the result is named `version`.
pub fn train(start: &Model, records: &[PersonRecord], version: &str, seed: u64) -> Model {
    let mut model = start.clone();
    model.version = version.to_owned();
    if records.len() < 2 {
        return model;
    }
    let prepared: Vec<Prepared> = records.iter().map(Prepared::new).collect();
    estimate_u(&mut model, &prepared, seed);

    // Session 1: same precise date of birth. Session 2: same given and family name.
    let by_dob = session_pairs(&prepared, |r| {
        r.dob
            .filter(|d| !d.weak())
            .map(|d| format!("{}-{:?}-{:?}", d.year, d.month, d.day))
    });
    let by_name = session_pairs(&prepared, |r| {
        let (g, f) = (&r.given.folded, &r.family.folded);
        (!g.is_empty() && !f.is_empty()).then(|| format!("{g}|{f}"))
    });
    let dob_session = em_session(&model, &by_dob, &[DOB]);
    // Names say where someone is from and, outside synthetic data, usually their sex: two
    // different people with the same name agree on nationality far more often than random
    // pairs do, so u from random pairs would make that agreement look like evidence of a
    // match, and EM would call every namesake a match. Those fields are learnt in the
    // date-of-birth session only.
    let name_session = em_session(&model, &by_name, &[GIVEN, FAMILY, SEX, NATIONALITY]);

    // Each field's m is the mean over the sessions that estimated it.
    for (f, field) in FIELDS.iter().enumerate() {
        let estimates: Vec<&BTreeMap<String, f64>> = [&dob_session, &name_session]
            .iter()
            .filter_map(|s| s.as_ref()?.m[f].as_ref())
            .collect();
        if estimates.is_empty() {
            continue;
        }
        if let Some(levels) = model.fields.get_mut(*field) {
            for (level, [m, _]) in levels.iter_mut() {
                let sum: f64 = estimates.iter().filter_map(|e| e.get(level.as_str())).sum();
                *m = sum / estimates.len() as f64;
            }
        }
    }

    // Prior: matches the name session saw, scaled up by the share of matches it can see.
    if let Some(session) = &name_session {
        let m_of = |field: &str| {
            model
                .fields
                .get(field)
                .and_then(|l| l.get("exact"))
                .map_or(0.0, |[m, _]| *m)
        };
        let visible = m_of("given_name") * m_of("family_name");
        let n = records.len() as f64;
        let all_pairs = n * (n - 1.0) / 2.0;
        if visible > 1e-3 && session.expected_matches > 0.0 {
            model.prior = (session.expected_matches / visible / all_pairs).clamp(1e-9, 0.5);
        }
    }
    model
}

/// u: how often each level occurs among random pairs, Laplace-smoothed so unseen levels stay
/// finite.
fn estimate_u(model: &mut Model, records: &[Prepared], seed: u64) {
    let samples = U_SAMPLES.min(records.len().saturating_mul(records.len()));
    // Fixed chunks, each with its own seed, so the result does not depend on how many
    // cores the machine has; the chunks run on threads of their own.
    let chunks: Vec<u64> = (0..U_CHUNKS as u64).collect();
    let per_chunk = samples.div_ceil(U_CHUNKS);
    let partial: Vec<Vec<BTreeMap<&'static str, f64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|&chunk| {
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(
                        seed.wrapping_mul(U_CHUNKS as u64).wrapping_add(chunk),
                    );
                    let mut counts: Vec<BTreeMap<&'static str, f64>> =
                        vec![BTreeMap::new(); FIELDS.len()];
                    for _ in 0..per_chunk {
                        let i = rng.random_range(0..records.len());
                        let j = rng.random_range(0..records.len());
                        if i == j {
                            continue;
                        }
                        let comparison = compare_prepared(&records[i], &records[j]);
                        for (f, level) in comparison.iter().enumerate() {
                            if let Some(level) =
                                level.filter(|_| !counted_elsewhere(&comparison, f))
                            {
                                *counts[f].entry(level).or_default() += 1.0;
                            }
                        }
                    }
                    counts
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic while sampling is a bug: carry it to the caller rather than train on
            // fewer pairs without saying so.
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut counts: Vec<BTreeMap<&'static str, f64>> = vec![BTreeMap::new(); FIELDS.len()];
    for chunk in partial {
        for (f, levels) in chunk.into_iter().enumerate() {
            for (level, n) in levels {
                *counts[f].entry(level).or_default() += n;
            }
        }
    }
    for (f, field) in FIELDS.iter().enumerate() {
        let total: f64 = counts[f].values().sum();
        if let Some(levels) = model.fields.get_mut(*field) {
            let n_levels = levels.len() as f64;
            for (level, [_, u]) in levels.iter_mut() {
                *u = (counts[f].get(level.as_str()).copied().unwrap_or(0.0) + 1.0)
                    / (total + n_levels);
            }
        }
    }
}

/// Comparison patterns of all pairs sharing a key, with how often each occurs.
fn session_pairs(
    records: &[Prepared],
    key: impl Fn(&Prepared) -> Option<String>,
) -> BTreeMap<Comparison, f64> {
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(k) = key(r) {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut patterns: BTreeMap<Comparison, f64> = BTreeMap::new();
    for members in groups.values().filter(|g| g.len() <= MAX_GROUP) {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                *patterns
                    .entry(compare_prepared(&records[i], &records[j]))
                    .or_default() += 1.0;
            }
        }
    }
    patterns
}

/// What one EM session estimated.
#[derive(Debug)]
struct Session {
    /// Per field: m per level, or `None` for the fields the session blocks on.
    m: Vec<Option<BTreeMap<String, f64>>>,
    /// Expected number of matches among the session's pairs.
    expected_matches: f64,
}

/// EM over one session's pairs, leaving out the `blocked` fields entirely.
fn em_session(
    start: &Model,
    patterns: &BTreeMap<Comparison, f64>,
    blocked: &[usize],
) -> Option<Session> {
    let pairs: f64 = patterns.values().sum();
    if pairs < 1.0 {
        return None;
    }
    let free: Vec<usize> = (0..FIELDS.len()).filter(|f| !blocked.contains(f)).collect();
    // field -> level -> [m, u], only the fields this session estimates.
    let mut params: Vec<BTreeMap<String, [f64; 2]>> = FIELDS
        .iter()
        .map(|f| start.fields.get(*f).cloned().unwrap_or_default())
        .collect();
    // The share of matches among the session's pairs; set by the first maximisation step.
    let mut lambda: f64 = 0.5;
    let mut expected_matches = 0.0;
    let no_record = PersonRecord::default();
    for iteration in 0..MAX_ITERATIONS {
        let mut m_counts: Vec<BTreeMap<&'static str, f64>> = vec![BTreeMap::new(); FIELDS.len()];
        let mut matches = 0.0;
        for (comparison, count) in patterns {
            // The first expectation step takes the start model's match probability of each
            // pair, blocked fields and prior included: a guess of how many pairs in the
            // session match that is in the right range. An even split instead lets EM settle
            // on "most pairs in the block match", which is the household, not the person.
            let g = if iteration == 0 {
                start
                    .score_comparison(comparison, &no_record, None)
                    .probability
            } else {
                let mut weight = (lambda / (1.0 - lambda)).log2();
                for &f in &free {
                    if let Some([m, u]) = comparison[f]
                        .filter(|_| !counted_elsewhere(comparison, f))
                        .and_then(|l| params[f].get(l))
                    {
                        weight += (m.max(1e-12) / u.max(1e-12)).log2();
                    }
                }
                1.0 / (1.0 + (-weight).exp2())
            };
            matches += g * count;
            for &f in &free {
                if let Some(level) = comparison[f].filter(|_| !counted_elsewhere(comparison, f)) {
                    *m_counts[f].entry(level).or_default() += g * count;
                }
            }
        }
        let new_lambda = (matches / pairs).clamp(1e-9, 1.0 - 1e-9);
        let mut change = (new_lambda - lambda).abs();
        lambda = new_lambda;
        expected_matches = matches;
        for &f in &free {
            let total: f64 = m_counts[f].values().sum();
            if total <= 0.0 {
                continue;
            }
            let n_levels = params[f].len() as f64;
            for (level, [m, _]) in params[f].iter_mut() {
                // A tiny pseudo-count keeps levels unseen in the session from a weight of
                // minus infinity.
                let new = (m_counts[f].get(level.as_str()).copied().unwrap_or(0.0) + 0.01)
                    / (total + 0.01 * n_levels);
                change = change.max((new - *m).abs());
                *m = new;
            }
        }
        if change < 1e-6 {
            break;
        }
    }
    Some(Session {
        m: (0..FIELDS.len())
            .map(|f| {
                free.contains(&f).then(|| {
                    params[f]
                        .iter()
                        .map(|(level, [m, _])| (level.clone(), *m))
                        .collect()
                })
            })
            .collect(),
        expected_matches,
    })
}
