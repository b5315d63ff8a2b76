//! The linkage engine on files: `kinlink synth` writes what `kinlink link` reads, the links
//! it finds are checked against the synthetic ground truth, and bad input is refused with
//! the line and field named but not the value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::helpers::*;

fn kinlink(args: &[&str], dir: &Path) -> TestResult<std::process::Output> {
    Ok(std::process::Command::new(crate::helpers::kinlink_bin())
        .args(args)
        .current_dir(dir)
        .output()?)
}

fn read_csv(path: &Path) -> TestResult<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .skip(1)
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect())
}

#[test]
fn synth_then_link_finds_most_true_pairs() -> TestResult {
    let dir = TempDir::new("linkage-cli")?;
    let out = kinlink(
        &[
            "synth",
            "--households",
            "40",
            "--seed",
            "7",
            "--out-dir",
            "synth",
        ],
        &dir.0,
    )?;
    assert!(out.status.success(), "{out:?}");
    let out = kinlink(
        &[
            "link",
            "--input",
            "synth/persons.csv",
            "--output",
            "links.csv",
            "--clusters",
            "clusters.csv",
        ],
        &dir.0,
    )?;
    assert!(out.status.success(), "{out:?}");

    let truth: BTreeMap<String, String> = read_csv(&dir.0.join("synth/truth.csv"))?
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let mut true_pairs = BTreeSet::new();
    let ids: Vec<&String> = truth.keys().collect();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            if truth[*a] == truth[*b] {
                true_pairs.insert(((*a).clone(), (*b).clone()));
            }
        }
    }
    assert!(!true_pairs.is_empty(), "the synthetic data has repeats");

    let links = read_csv(&dir.0.join("links.csv"))?;
    let found: BTreeSet<(String, String)> = links
        .iter()
        .map(|row| {
            let (a, b) = (row[0].clone(), row[1].clone());
            if a < b { (a, b) } else { (b, a) }
        })
        .collect();
    for row in &links {
        let p: f64 = row[2].parse()?;
        assert!(
            (0.5..=1.0).contains(&p),
            "probability {p} under the threshold"
        );
    }
    let pair_recall = found.intersection(&true_pairs).count() as f64 / true_pairs.len() as f64;

    // Every record gets a cluster, and linked records share one.
    let clusters: BTreeMap<String, String> = read_csv(&dir.0.join("clusters.csv"))?
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    assert_eq!(clusters.len(), truth.len());
    for (a, b) in &found {
        assert_eq!(clusters[a], clusters[b], "{a} and {b} linked but split");
    }
    // The clusters are the answer: pairs of records in one cluster against the true pairs.
    let (mut clustered, mut correct) = (0usize, 0usize);
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            if clusters[*a] == clusters[*b] {
                clustered += 1;
                correct += usize::from(truth[*a] == truth[*b]);
            }
        }
    }
    let precision = correct as f64 / clustered.max(1) as f64;
    let recall = correct as f64 / true_pairs.len() as f64;
    eprintln!(
        "kinlink link, 40 synthetic households: clusters precision {precision:.3}, recall \
         {recall:.3}; pairs at or above 0.5 recall {pair_recall:.3}"
    );
    assert!(
        recall > 0.75 && precision > 0.9,
        "cluster precision {precision:.3}, recall {recall:.3} over {} true pairs",
        true_pairs.len()
    );
    Ok(())
}

#[test]
fn a_bad_date_of_birth_names_the_line_not_the_value() -> TestResult {
    let dir = TempDir::new("linkage-cli-bad")?;
    std::fs::write(
        dir.0.join("persons.csv"),
        "id,given_name,family_name,date_of_birth,sex,postcode,nationality\n\
         r1,Elira,Hoxha,2016-01-01,f,CT1 2RR,AL\n\
         r2,Arben,Hoxha,31/02/1987,m,CT1 2RR,AL\n",
    )?;
    let out = kinlink(
        &["link", "--input", "persons.csv", "--output", "links.csv"],
        &dir.0,
    )?;
    assert!(!out.status.success(), "a bad date is refused: {out:?}");
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("line 3") && stderr.contains("date_of_birth"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("31/02/1987") && !stderr.contains("Arben"),
        "personal data in the error: {stderr}"
    );
    assert!(
        !dir.0.join("links.csv").exists(),
        "nothing written on bad input"
    );
    Ok(())
}
