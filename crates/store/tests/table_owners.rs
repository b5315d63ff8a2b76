#![allow(clippy::panic)] // A broken fixture fails the test.
//! Each table has one owning component (`migrations/owners.txt`), and only the files listed
//! there write it. Scans every Rust source of the workspace outside tests for `INSERT INTO`,
//! `UPDATE` and `DELETE FROM` statements.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// table -> (owner, writer files)
fn owners() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let text = read(&root().join("crates/store/migrations/owners.txt"));
    let mut owners = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut words = line.split_whitespace();
        let (Some(table), Some(owner)) = (words.next(), words.next()) else {
            panic!("owners.txt line without an owner: {line}");
        };
        let files: BTreeSet<String> = words.map(str::to_owned).collect();
        for file in &files {
            assert!(
                file.starts_with(&format!("{owner}/")),
                "{table}: {file} is outside its owner {owner}"
            );
        }
        assert!(
            owners
                .insert(table.to_owned(), (owner.to_owned(), files))
                .is_none(),
            "{table} listed twice"
        );
    }
    owners
}

fn created_tables(dir: &str) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        panic!("no {dir}");
    };
    for entry in entries.flatten() {
        let sql = read(&entry.path()).to_ascii_lowercase();
        for part in sql.split("create table").skip(1) {
            let name = part
                .trim_start()
                .trim_start_matches("if not exists")
                .trim_start()
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default()
                .to_owned();
            tables.insert(name);
        }
        // A table built under a temporary name and renamed is the renamed one.
        for part in sql.split("alter table").skip(1) {
            let words: Vec<&str> = part.split_whitespace().take(4).collect();
            if let [from, "rename", "to", _] = words.as_slice() {
                tables.remove(*from);
            }
        }
    }
    tables
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "benches" | "target" | "data") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "test_support.rs" {
            out.push(path);
        }
    }
}

/// Tables written by a source text.
fn written(text: &str) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    for verb in ["INSERT INTO ", "UPDATE ", "DELETE FROM "] {
        for part in text.split(verb).skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                tables.insert(name);
            }
        }
    }
    tables
}

#[test]
fn every_table_has_an_owner_and_only_its_files_write_it() {
    let owners = owners();
    for dir in [
        "crates/store/migrations/sqlite",
        "crates/store/migrations/postgres",
    ] {
        for table in created_tables(dir) {
            assert!(
                owners.contains_key(&table),
                "{table} ({dir}) has no owner in owners.txt"
            );
        }
    }
    let root = root();
    let mut files = Vec::new();
    sources(&root.join("services"), &mut files);
    sources(&root.join("crates"), &mut files);
    let mut violations = Vec::new();
    let mut writers_seen = 0;
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        for table in written(&read(&file)) {
            let Some((owner, writers)) = owners.get(&table) else {
                continue; // not a table (e.g. "UPDATE " in prose)
            };
            writers_seen += 1;
            if !writers.contains(&relative) {
                violations.push(format!("{relative} writes {table}, owned by {owner}"));
            }
        }
    }
    assert!(
        writers_seen > 20,
        "the scan found almost no writers: is it reading the sources?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scan_sees_statements() {
    let tables = written("sqlx::query(\"UPDATE deliveries SET x\"); \"INSERT INTO alerts (a)\"");
    assert_eq!(
        tables.into_iter().collect::<Vec<_>>(),
        ["alerts", "deliveries"]
    );
}
