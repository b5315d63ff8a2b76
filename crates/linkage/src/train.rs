//! Estimating the model from data: u from random pairs (almost all non-matches), m and the
//! prior by expectation maximisation over blocked candidate pairs.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::IndexedRandom;

use crate::blocking::Index;
use crate::compare::{Comparison, FIELDS, PersonRecord, compare};
use crate::model::Model;

/// Trains `start` on `records`; the result is named `version`.
pub fn train(start: &Model, records: &[PersonRecord], version: &str, seed: u64) -> Model {
    let mut model = start.clone();
    model.version = version.to_owned();
    if records.len() < 2 {
        return model;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // u: level frequencies among random pairs.
    let samples = 20_000.min(records.len() * records.len());
    let mut counts: Vec<BTreeMap<&'static str, f64>> = vec![BTreeMap::new(); FIELDS.len()];
    for _ in 0..samples {
        let (Some(a), Some(b)) = (records.choose(&mut rng), records.choose(&mut rng)) else {
            continue;
        };
        if a.id == b.id {
            continue;
        }
        tally(&mut counts, &compare(a, b), 1.0);
    }
    for (f, field) in FIELDS.iter().enumerate() {
        let total: f64 = counts[f].values().sum();
        if let Some(levels) = model.fields.get_mut(*field) {
            for (level, [_, u]) in levels.iter_mut() {
                // Laplace smoothing keeps unseen levels finite.
                *u = (counts[f].get(level.as_str()).copied().unwrap_or(0.0) + 1.0) / (total + 10.0);
            }
        }
    }
    // m and prior: EM over blocked pairs.
    let index = Index::build(records);
    let mut pairs: Vec<Comparison> = Vec::new();
    for (i, a) in records.iter().enumerate() {
        for j in index.candidates(a) {
            if j > i {
                pairs.push(compare(a, &records[j]));
            }
        }
    }
    if pairs.is_empty() {
        return model;
    }
    for _ in 0..15 {
        let mut m_counts: Vec<BTreeMap<&'static str, f64>> = vec![BTreeMap::new(); FIELDS.len()];
        let mut matches = 0.0;
        for comparison in &pairs {
            let dummy = PersonRecord::default();
            let g = model.score_comparison(comparison, &dummy, None).probability;
            matches += g;
            tally(&mut m_counts, comparison, g);
        }
        model.prior = (matches / pairs.len() as f64).clamp(1e-6, 0.5);
        for (f, field) in FIELDS.iter().enumerate() {
            let total: f64 = m_counts[f].values().sum();
            if total <= 0.0 {
                continue;
            }
            if let Some(levels) = model.fields.get_mut(*field) {
                for (level, [m, _]) in levels.iter_mut() {
                    *m = (m_counts[f].get(level.as_str()).copied().unwrap_or(0.0) + 0.01)
                        / (total + 0.1);
                }
            }
        }
    }
    model
}

fn tally(counts: &mut [BTreeMap<&'static str, f64>], comparison: &Comparison, weight: f64) {
    for (f, level) in comparison.iter().enumerate() {
        if let Some(level) = level {
            *counts[f].entry(*level).or_default() += weight;
        }
    }
}
