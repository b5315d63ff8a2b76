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

/// A dirty file (impossible dates, as in real agency exports and the FEBRL benchmark sets):
/// the unreadable values are treated as missing, everything else is linked, and the report
/// names field and line but never the value. `--strict` refuses the file instead.
#[test]
fn dirty_input_is_linked_with_unreadable_values_reported() -> TestResult {
    let dir = TempDir::new("linkage-cli-dirty")?;
    std::fs::write(
        dir.0.join("persons.csv"),
        "id,given_name,family_name,date_of_birth,sex,postcode,nationality\n\
         r1,Elira,Hoxha,2016-03-04,f,CT1 2RR,AL\n\
         r2,Elira,Hoxha,31/02/1987,f,CT1 2RR,AL\n\
         r3,Arben,Krasniqi,19551192,m,B1 1BB,AL\n\
         ,Nobody,Noid,2001-01-01,m,B1 1BB,AL\n\
         r4,Arben,Krasniqi,1955-11-12,m,B1 1BB,AL\n",
    )?;
    for command in [
        vec![
            "link",
            "--input",
            "persons.csv",
            "--output",
            "links.csv",
            "--report-json",
            "report.json",
        ],
        vec![
            "model",
            "train",
            "--input",
            "persons.csv",
            "--output",
            "model.json",
        ],
    ] {
        let out = kinlink(&command, &dir.0)?;
        assert!(out.status.success(), "{command:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr)?;
        assert!(
            stderr.contains("2 value(s) of `date_of_birth`")
                && stderr.contains("persons.csv:3")
                && stderr.contains("persons.csv:4")
                && stderr.contains("persons.csv:5: row skipped (empty id)"),
            "{command:?}: {stderr}"
        );
        for value in ["31/02/1987", "19551192", "Elira", "Arben", "Nobody"] {
            assert!(
                !stderr.contains(value),
                "personal data in the report: {stderr}"
            );
        }
    }
    // The records with unreadable dates were still linked on what could be read.
    let links = read_csv(&dir.0.join("links.csv"))?;
    let pairs: BTreeSet<(String, String)> =
        links.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert!(pairs.contains(&("r1".into(), "r2".into())), "{links:?}");
    assert!(pairs.contains(&("r3".into(), "r4".into())), "{links:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("report.json"))?)?;
    assert_eq!(report["records"], 4);
    assert_eq!(report["unreadable"]["date_of_birth"], 2);
    assert_eq!(report["unreadable"]["row"], 1);

    // --strict: the first problem aborts the run, naming line and field, and nothing is written.
    let out = kinlink(
        &[
            "link",
            "--strict",
            "--input",
            "persons.csv",
            "--output",
            "strict.csv",
        ],
        &dir.0,
    )?;
    assert!(
        !out.status.success(),
        "--strict refuses a bad date: {out:?}"
    );
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("line 3") && stderr.contains("date_of_birth"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("31/02/1987") && !stderr.contains("Elira"),
        "personal data in the error: {stderr}"
    );
    assert!(
        !dir.0.join("strict.csv").exists(),
        "nothing written on bad input"
    );
    Ok(())
}
