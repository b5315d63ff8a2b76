//! `kinlink link`, `kinlink model train` and `kinlink synth`: the linkage engine on files,
//! for evaluation and re-linking.
//!
//! Input CSV header: `id,given_name,family_name,date_of_birth,sex,postcode,nationality`,
//! optionally `date_of_birth_estimated,aliases` (other columns ignored, empty cells unknown; dates `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-MM` or
//! `YYYY`). Output: `id_l,id_r,match_probability,match_weight`. A value that cannot be read
//! (a date of birth of `1955-11-92`, say) is treated as missing and reported by field and
//! line at the end; `--strict` aborts instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kinlink_linkage::model::dob_cell;
use kinlink_linkage::{Model, PersonRecord, batch, synth, train};

#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// One file deduplicates; two link across the files only.
    #[arg(long, required = true, num_args = 1..=2)]
    pub input: Vec<PathBuf>,
    #[arg(long)]
    pub output: PathBuf,
    /// Model file (default: the shipped model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Smallest match probability written.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Also write `id,cluster_id`.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Abort on the first value that cannot be read instead of treating it as missing.
    #[arg(long)]
    pub strict: bool,
    /// Where the prior (the probability that two records drawn at random are one person)
    /// comes from: estimated from the input files (`file`, as Splink does), or the model's
    /// own (`model`: a registry's, for comparing with what the enricher would decide).
    #[arg(long, value_enum, default_value_t = PriorSource::File)]
    pub prior: PriorSource,
    /// Write what was read and what could not be (counts and lines per field) as JSON here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
}

/// Where `kinlink link` takes its prior from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorSource {
    File,
    Model,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// One or more persons files (two files to be linked train on both).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    #[arg(long)]
    pub output: PathBuf,
    /// Version written into the model.
    #[arg(long, default_value = "trained")]
    pub version: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Abort on the first value that cannot be read instead of treating it as missing.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    #[arg(long)]
    pub households: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Writes persons.csv (records), truth.csv (`id,true_person_id`), referrals.jsonl (the
    /// same records as referrals, for `kinlink import`) and referral_truth.csv
    /// (`external_reference,role,dependant_index,true_person_id`) here.
    #[arg(long)]
    pub out_dir: PathBuf,
}

fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    Ok(match path {
        Some(path) => Model::from_json(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => Model::shipped()?,
    })
}

/// The synthetic records as referrals in the `POST /v1/referrals` JSON shape, one per line,
/// with the true person of every subject and dependant beside them.
/// `kinlink synth`'s households as referral bodies for `POST /v1/referrals`, one per referral,
/// in order (also what `kinlink bench` sends).
pub fn synth_referrals(records: &[synth::Synthetic]) -> Vec<serde_json::Value> {
    records
        .chunk_by(|a, b| a.referral == b.referral)
        .filter_map(|group| {
            let (subject, dependants) = group.split_first()?;
            Some(referral_body(subject, dependants))
        })
        .collect()
}

fn referral_body(subject: &synth::Synthetic, dependants: &[synth::Synthetic]) -> serde_json::Value {
    let adult = !subject.true_person.contains("-child");
    serde_json::json!({
        "external_reference": subject.referral,
        "subject": synth_person(subject),
        "dependants": dependants.iter().map(|d| serde_json::json!({
            "person": synth_person(d),
            "relationship": "child",
            "with_subject": true,
        })).collect::<Vec<_>>(),
        "exploitation_types": ["labour"],
        "consent": if adult { "given" } else { "not_required_child" },
    })
}

fn write_referrals(records: &[synth::Synthetic], dir: &Path) -> anyhow::Result<()> {
    let mut lines = std::io::BufWriter::new(std::fs::File::create(dir.join("referrals.jsonl"))?);
    let mut truth = csv::Writer::from_path(dir.join("referral_truth.csv"))?;
    truth.write_record([
        "external_reference",
        "role",
        "dependant_index",
        "true_person_id",
    ])?;
    for group in records.chunk_by(|a, b| a.referral == b.referral) {
        let Some((subject, dependants)) = group.split_first() else {
            continue;
        };
        writeln!(lines, "{}", referral_body(subject, dependants))?;
        truth.write_record([&subject.referral, "subject", "0", &subject.true_person])?;
        for (index, d) in dependants.iter().enumerate() {
            truth.write_record([&d.referral, "dependant", &index.to_string(), &d.true_person])?;
        }
    }
    lines.flush()?;
    truth.flush()?;
    Ok(())
}

fn synth_person(s: &synth::Synthetic) -> serde_json::Value {
    let r = &s.record;
    let mut person = serde_json::json!({
        "given_name": r.given,
        "family_name": r.family,
        "nationalities": if r.nationality.is_empty() { vec![] } else { vec![r.nationality.clone()] },
        "sex": match r.sex.as_str() { "f" => "female", "m" => "male", _ => "unknown" },
        "locations": [if r.postcode.is_empty() {
            serde_json::json!({ "role": "lives", "no_fixed_abode": true })
        } else {
            serde_json::json!({ "role": "lives", "postcode": r.postcode })
        }],
    });
    if !r.aliases.is_empty() {
        person["aliases"] = serde_json::json!(r.aliases);
    }
    if let Some(age) = s.claimed_age {
        person["claimed_age"] = serde_json::json!(age);
    }
    if let Some(d) = r.dob {
        let (value, precision) = match (d.month, d.day) {
            (Some(m), Some(day)) => (format!("{:04}-{m:02}-{day:02}", d.year), "exact"),
            (Some(m), None) => (format!("{:04}-{m:02}", d.year), "month"),
            _ => (format!("{:04}", d.year), "year"),
        };
        person["date_of_birth"] = serde_json::json!({
            "value": value,
            "precision": if d.estimated { "estimated" } else { precision },
        });
    }
    person
}

/// The persons CSV columns after `id`, in the order `kinlink synth` writes them.
const FIELD_COLUMNS: [&str; 6] = [
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "nationality",
];

/// Optional columns: whether the date of birth is an estimate (`true`/`false`), and other
/// names the person is known by, separated by `;`. With them a file carries everything the
/// streaming enricher compares, so `kinlink link` scores a pair as the enricher does.
const OPTIONAL_COLUMNS: [&str; 2] = ["date_of_birth_estimated", "aliases"];

/// What a persons CSV held that could not be read, by field and line (1-based, header = 1).
/// Values are never kept, so the report can be printed and shared.
#[derive(Debug, Default, serde::Serialize)]
pub struct Unreadable {
    /// field -> (file, line) of each value read as missing.
    pub values: std::collections::BTreeMap<&'static str, Vec<(String, usize)>>,
    /// Rows skipped whole (malformed CSV, no id), with why.
    pub rows: Vec<(String, usize, &'static str)>,
}

impl Unreadable {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.rows.is_empty()
    }

    /// Counts per field, for a summary line.
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts: std::collections::BTreeMap<&'static str, usize> =
            self.values.iter().map(|(f, v)| (*f, v.len())).collect();
        if !self.rows.is_empty() {
            counts.insert("row", self.rows.len());
        }
        counts
    }

    /// The report printed at the end of a run (to stderr): per field, how many and on which
    /// lines (the first few).
    pub fn summary(&self) -> String {
        const SHOWN: usize = 10;
        let mut out = String::new();
        for (field, places) in &self.values {
            let lines: Vec<String> = places
                .iter()
                .take(SHOWN)
                .map(|(file, line)| format!("{file}:{line}"))
                .collect();
            let more = places.len().saturating_sub(SHOWN);
            out.push_str(&format!(
                "{} value(s) of `{field}` could not be read and were treated as missing: {}{}\n",
                places.len(),
                lines.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        for (file, line, why) in self.rows.iter().take(SHOWN) {
            out.push_str(&format!("{file}:{line}: row skipped ({why})\n"));
        }
        if self.rows.len() > SHOWN {
            out.push_str(&format!(
                "{} more row(s) skipped\n",
                self.rows.len() - SHOWN
            ));
        }
        out
    }
}

/// Reads a persons CSV. A value that cannot be read (an impossible date of birth, say) is
/// treated as missing and recorded in `unreadable` by field and line; a row with no id or
/// broken CSV is skipped and recorded. With `strict`, the first such problem is an error
/// naming the file, line and field. Errors and reports never carry the value itself.
pub fn read_persons(
    path: &Path,
    strict: bool,
    unreadable: &mut Unreadable,
) -> anyhow::Result<Vec<PersonRecord>> {
    let file = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("reading {file}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: line 1: header"))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let id = column("id").ok_or_else(|| anyhow::anyhow!("{file}: no `id` column"))?;
    let cols = FIELD_COLUMNS.map(column);
    let optional = OPTIONAL_COLUMNS.map(column);
    let mut records = Vec::new();
    let mut row = csv::StringRecord::new();
    let mut line = 1;
    loop {
        line += 1;
        match reader.read_record(&mut row) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Skip past a row the CSV reader cannot read (bad UTF-8, say); its position
                // names the line. Other errors (I/O) end the run.
                if let csv::ErrorKind::Utf8 { pos, .. } = e.kind() {
                    let at = pos.as_ref().map_or(line, |p| p.line() as usize);
                    anyhow::ensure!(!strict, "{file}: line {at}: not UTF-8");
                    unreadable.rows.push((file.clone(), at, "not UTF-8"));
                    continue;
                }
                return Err(anyhow::anyhow!("{file}: line {line}: {e}"));
            }
        }
        if let Some(pos) = row.position() {
            line = pos.line() as usize;
        }
        let cell = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or_default().trim();
        let record_id = cell(Some(id)).to_owned();
        if record_id.is_empty() {
            anyhow::ensure!(!strict, "{file}: line {line}: empty `id`");
            unreadable.rows.push((file.clone(), line, "empty id"));
            continue;
        }
        let dob = match dob_cell(&record_id, cell(cols[2])) {
            Ok(dob) => dob,
            Err(_) if !strict => {
                unreadable
                    .values
                    .entry("date_of_birth")
                    .or_default()
                    .push((file.clone(), line));
                None
            }
            Err(_) => anyhow::bail!(
                "{file}: line {line}: `date_of_birth` is not a date (YYYY-MM-DD, YYYYMMDD, \
                 YYYY-MM or YYYY); --strict is set, so nothing was linked"
            ),
        };
        let estimated = matches!(
            cell(optional[0]).to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "y"
        );
        let aliases: Vec<String> = cell(optional[1])
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        records.push(PersonRecord {
            dob: dob.map(|mut d| {
                d.estimated |= estimated;
                d
            }),
            aliases,
            id: record_id,
            given: cell(cols[0]).to_owned(),
            family: cell(cols[1]).to_owned(),
            sex: cell(cols[3]).to_ascii_lowercase().chars().take(1).collect(),
            postcode: cell(cols[4]).to_owned(),
            nationality: cell(cols[5]).to_owned(),
        });
    }
    Ok(records)
}

/// Reads every input file, then prints what could not be read (to stderr) and writes the
/// report as JSON when asked.
fn read_inputs(
    paths: &[PathBuf],
    strict: bool,
    report: Option<&Path>,
) -> anyhow::Result<Vec<Vec<PersonRecord>>> {
    let mut unreadable = Unreadable::default();
    let files = paths
        .iter()
        .map(|p| read_persons(p, strict, &mut unreadable))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !unreadable.is_empty() {
        write!(std::io::stderr(), "{}", unreadable.summary())?;
    }
    if let Some(path) = report {
        let records: usize = files.iter().map(Vec::len).sum();
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({
                "records": records,
                "unreadable": unreadable.counts(),
                "detail": unreadable,
            }))?,
        )?;
    }
    Ok(files)
}

pub fn link(args: &LinkArgs) -> anyhow::Result<()> {
    let mut model = load_model(args.model.as_deref())?;
    let mut files = read_inputs(&args.input, args.strict, args.report_json.as_deref())?;
    let right = (files.len() > 1).then(|| files.remove(1));
    let left = files.remove(0);
    if args.prior == PriorSource::File
        && let Some(prior) = batch::estimate_prior(&model, &left, right.as_deref())
    {
        model.prior = prior;
    }
    let links = batch::link(&model, &left, right.as_deref(), args.threshold);
    let mut out = csv::Writer::from_path(&args.output)?;
    out.write_record(["id_l", "id_r", "match_probability", "match_weight"])?;
    for l in &links {
        out.write_record([
            l.id_l.as_str(),
            l.id_r.as_str(),
            &format!("{:.6}", l.match_probability),
            &format!("{:.4}", l.match_weight),
        ])?;
    }
    out.flush()?;
    if let Some(path) = &args.clusters {
        let ids: Vec<String> = left
            .iter()
            .chain(right.iter().flatten())
            .map(|r| r.id.clone())
            .collect();
        let mut out = csv::Writer::from_path(path)?;
        out.write_record(["id", "cluster_id"])?;
        for (id, cluster) in batch::clusters(&ids, &links) {
            out.write_record([id, cluster])?;
        }
        out.flush()?;
    }
    writeln!(
        std::io::stdout(),
        "{} pair(s) at or above {} written to {} (model {}, prior {:.3e})",
        links.len(),
        args.threshold,
        args.output.display(),
        model.version,
        model.prior
    )?;
    Ok(())
}

pub fn train_model(args: &TrainArgs) -> anyhow::Result<()> {
    let files = read_inputs(&args.input, args.strict, None)?;
    let records: Vec<PersonRecord> = files.into_iter().flatten().collect();
    let model = train::train(&Model::shipped()?, &records, &args.version, args.seed);
    std::fs::write(&args.output, serde_json::to_string_pretty(&model)?)?;
    writeln!(
        std::io::stdout(),
        "model {} trained on {} record(s): {}",
        model.version,
        records.len(),
        args.output.display()
    )?;
    Ok(())
}

pub fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let records = synth::generate(args.households, args.seed);
    let mut persons = csv::Writer::from_path(args.out_dir.join("persons.csv"))?;
    persons.write_record(
        std::iter::once("id")
            .chain(FIELD_COLUMNS)
            .chain(OPTIONAL_COLUMNS),
    )?;
    let mut truth = csv::Writer::from_path(args.out_dir.join("truth.csv"))?;
    truth.write_record(["id", "true_person_id"])?;
    for s in &records {
        let r = &s.record;
        let dob = r.dob.map(|d| match (d.month, d.day) {
            (Some(m), Some(day)) => format!("{:04}-{m:02}-{day:02}", d.year),
            (Some(m), None) => format!("{:04}-{m:02}", d.year),
            _ => format!("{:04}", d.year),
        });
        persons.write_record([
            r.id.as_str(),
            &r.given,
            &r.family,
            dob.as_deref().unwrap_or(""),
            &r.sex,
            &r.postcode,
            &r.nationality,
            if r.dob.is_some_and(|d| d.estimated) {
                "true"
            } else {
                "false"
            },
            &r.aliases.join(";"),
        ])?;
        truth.write_record([r.id.as_str(), &s.true_person])?;
    }
    persons.flush()?;
    truth.flush()?;
    write_referrals(&records, &args.out_dir)?;
    writeln!(
        std::io::stdout(),
        "{} record(s) of {} household(s) in {}",
        records.len(),
        args.households,
        args.out_dir.display()
    )?;
    Ok(())
}
