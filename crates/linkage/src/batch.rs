//! Linking whole files: deduplicate one, or link two against each other only.

use serde::Serialize;

use crate::blocking::Index;
use crate::compare::PersonRecord;
use crate::model::{Frequencies, Model};

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
    let index = Index::build(target);
    let mut links = Vec::new();
    for (i, a) in left.iter().enumerate() {
        for j in index.candidates(a) {
            if right.is_none() && j <= i {
                continue;
            }
            let b = &target[j];
            let scored = model.score(a, b, Some(&freq));
            if scored.probability >= threshold {
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
