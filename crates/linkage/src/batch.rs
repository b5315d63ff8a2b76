//! Linking whole files: deduplicate one, or link two against each other only.

use serde::Serialize;

use std::collections::HashMap;

use crate::blocking::{Index, key_hashes};
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
/// two sets; without, pairs within `left`. Records are prepared, and pairs scored, on every
/// core; the result is the same in any case (sorted by id pair).
pub fn link(
    model: &Model,
    left: &[PersonRecord],
    right: Option<&[PersonRecord]>,
    threshold: f64,
) -> Vec<Link> {
    let target = right.unwrap_or(left);
    let prepare = |_: usize, r: &PersonRecord| {
        let prepared = Prepared::new(r);
        let keys = key_hashes(&prepared);
        (prepared, keys)
    };
    let left_prepared: Vec<(Prepared, Vec<u64>)> = parallel_map(left, prepare);
    let right_prepared: Vec<(Prepared, Vec<u64>)> = match right {
        Some(right) => parallel_map(right, prepare),
        None => Vec::new(),
    };
    let target_prepared = if right.is_some() {
        &right_prepared
    } else {
        &left_prepared
    };
    let mut freq = Frequencies::default();
    for (p, _) in left_prepared.iter().chain(&right_prepared) {
        freq.add_record_folded(&p.given.folded, &p.family.folded);
    }
    let index: Index<u64> = Index::from_keys(target_prepared.iter().map(|(_, keys)| keys));
    let per_record: Vec<Vec<Link>> = parallel_map(&left_prepared, |i, (pa, keys)| {
        let shares = freq.shares_folded(&pa.given.folded, &pa.family.folded);
        let mut links = Vec::new();
        for j in index.candidates_for_keys(keys) {
            if right.is_none() && j <= i {
                continue;
            }
            let comparison = compare_prepared(pa, &target_prepared[j].0);
            let weight = model.weight_with_shares(&comparison, shares);
            let probability = 1.0 / (1.0 + (-weight).exp2());
            if probability >= threshold {
                links.push(Link {
                    id_l: left[i].id.clone(),
                    id_r: target[j].id.clone(),
                    match_probability: probability,
                    match_weight: weight,
                });
            }
        }
        links
    });
    let mut links: Vec<Link> = per_record.into_iter().flatten().collect();
    links.sort_by(|x, y| (&x.id_l, &x.id_r).cmp(&(&y.id_l, &y.id_r)));
    links
}

/// `f` over `items` on scoped threads (one chunk per core, at most 8), results in order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    if threads == 1 || items.len() < 1_000 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(k, t)| f(c * chunk + k, t))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(part) => part,
                // A panic in `f` is a bug; carry it to the caller rather than lose records.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Fewer records than this and the rule finds too few pairs for an estimate (a few dozen
/// households put the prior anywhere within two orders of magnitude): the model's prior
/// stands.
pub const MIN_RECORDS_FOR_PRIOR: usize = 1_000;

/// The probability that two records drawn at random from these files are one person, the
/// way Splink estimates it: the pairs a near-certain rule finds (exact given and family
/// name and a date of birth stated to the day) divided by the share of all true pairs that
/// rule can see (the model's m of exact agreement on those three fields) and by the number
/// of pairs. `None` when the rule finds nothing or the files hold fewer than
/// [`MIN_RECORDS_FOR_PRIOR`] records. A file's prior depends on how many repeats
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
                counts
                    .values()
                    .map(|[l, _]| l * (l - 1.0) / 2.0)
                    .sum::<f64>(),
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
    let records = left.len() + right.map_or(0, <[PersonRecord]>::len);
    (records >= MIN_RECORDS_FOR_PRIOR && found >= 1.0 && recall > 1e-3 && pairs >= 1.0)
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
