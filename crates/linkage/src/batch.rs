//! Linking whole files: deduplicate one, or link two against each other only.

use serde::Serialize;

use std::collections::HashMap;

use crate::blocking::{Index, keys_prepared};
use crate::compare::{PersonRecord, Prepared, compare_prepared};
use crate::model::{Frequencies, Model};
use crate::normalise::fold;

/// A scored pair of record ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub id_l: String,
    pub id_r: String,
    pub match_probability: f64,
    pub match_weight: f64,
}

/// Every candidate pair scoring at or above `threshold`. With `right`, only pairs across the
/// two sets; without, pairs within `left`.
pub fn link(
    model: &Model,
    left: &[PersonRecord],
    right: Option<&[PersonRecord]>,
    threshold: f64,
) -> Vec<Link> {
    let freq = Frequencies::from_records(left.iter().chain(right.unwrap_or_default()));
    let target = right.unwrap_or(left);
    let left_prepared: Vec<Prepared> = left.iter().map(Prepared::new).collect();
    let left_keys: Vec<Vec<String>> = left_prepared.iter().map(keys_prepared).collect();
    let (target_prepared, target_keys) = match right {
        Some(right) => {
            let prepared: Vec<Prepared> = right.iter().map(Prepared::new).collect();
            let keys: Vec<Vec<String>> = prepared.iter().map(keys_prepared).collect();
            (prepared, keys)
        }
        None => (Vec::new(), Vec::new()),
    };
    let (target_prepared, target_keys) = if right.is_some() {
        (&target_prepared, &target_keys)
    } else {
        (&left_prepared, &left_keys)
    };
    let index = Index::from_keys(target_keys);
    let mut links = Vec::new();
    for (i, a) in left.iter().enumerate() {
        let pa = &left_prepared[i];
        let shares = [
            freq.share_folded(&pa.given.folded),
            freq.share_folded(&pa.family.folded),
        ];
        for j in index.candidates_for_keys(&left_keys[i]) {
            if right.is_none() && j <= i {
                continue;
            }
            let comparison = compare_prepared(pa, &target_prepared[j]);
            let scored = model.score_with_shares(&comparison, shares);
            if scored.probability >= threshold {
                let b = &target[j];
                links.push(Link {
                    id_l: a.id.clone(),
                    id_r: b.id.clone(),
                    match_probability: scored.probability,
                    match_weight: scored.weight,
                });
            }
        }
    }
    links.sort_by(|x, y| (&x.id_l, &x.id_r).cmp(&(&y.id_l, &y.id_r)));
    links
}

/// The probability that two records drawn at random from these files are one person, the
/// way Splink estimates it: the pairs a near-certain rule finds (exact given and family
/// name and a date of birth stated to the day) divided by the share of all true pairs that
/// rule can see (the model's m of exact agreement on those three fields) and by the number
/// of pairs. `None` when the rule finds nothing. A file's prior depends on how many repeats
/// it holds, which no shipped model can know: a deduplication benchmark built of originals
/// and their copies is far denser in matches than a registry.
pub fn estimate_prior(
    model: &Model,
    left: &[PersonRecord],
    right: Option<&[PersonRecord]>,
) -> Option<f64> {
    fn key(r: &PersonRecord) -> Option<String> {
        let dob = r.dob.filter(|d| !d.weak())?;
        let (g, f) = (fold(&r.given), fold(&r.family));
        (!g.is_empty() && !f.is_empty()).then(|| format!("{g}|{f}|{dob:?}"))
    }
    let mut counts: HashMap<String, [f64; 2]> = HashMap::new();
    for r in left {
        if let Some(k) = key(r) {
            counts.entry(k).or_default()[0] += 1.0;
        }
    }
    for r in right.unwrap_or_default() {
        if let Some(k) = key(r) {
            counts.entry(k).or_default()[1] += 1.0;
        }
    }
    let (found, pairs) = match right {
        None => {
            let n = left.len() as f64;
            (
                counts.values().map(|[l, _]| l * (l - 1.0) / 2.0).sum::<f64>(),
                n * (n - 1.0) / 2.0,
            )
        }
        Some(right) => (
            counts.values().map(|[l, r]| l * r).sum::<f64>(),
            left.len() as f64 * right.len() as f64,
        ),
    };
    let m_exact = |field: &str| {
        model
            .fields
            .get(field)
            .and_then(|levels| levels.get("exact"))
            .map_or(0.0, |[m, _]| *m)
    };
    let recall = m_exact("given_name") * m_exact("family_name") * m_exact("date_of_birth");
    (found >= 1.0 && recall > 1e-3 && pairs >= 1.0)
        .then(|| (found / recall / pairs).clamp(1e-9, 0.5))
}

/// Connected components of the links: `(id, cluster_id)` for every id, the cluster id being
/// the smallest id in it, so clusters do not depend on input order.
pub fn clusters(ids: &[String], links: &[Link]) -> Vec<(String, String)> {
    let position: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..ids.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for l in links {
        if let (Some(&a), Some(&b)) = (position.get(l.id_l.as_str()), position.get(l.id_r.as_str()))
        {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            if ra != rb {
                parent[rb] = ra;
            }
        }
    }
    let roots: Vec<usize> = (0..ids.len()).map(|i| find(&mut parent, i)).collect();
    let mut smallest: std::collections::HashMap<usize, &String> = std::collections::HashMap::new();
    for (i, root) in roots.iter().enumerate() {
        let entry = smallest.entry(*root).or_insert(&ids[i]);
        if ids[i] < **entry {
            *entry = &ids[i];
        }
    }
    roots
        .iter()
        .enumerate()
        .map(|(i, root)| (ids[i].clone(), smallest[root].clone()))
        .collect()
}
