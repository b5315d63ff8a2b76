//! `kinlink link`, `kinlink model train` and `kinlink synth`: the linkage engine on files,
//! for evaluation and re-linking.
//!
//! Input CSV header: `id,given_name,family_name,date_of_birth,sex,postcode,nationality`
//! (other columns ignored, empty cells unknown; dates `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-MM` or
//! `YYYY`). Output: `id_l,id_r,match_probability,match_weight`.

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
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub output: PathBuf,
    /// Version written into the model.
    #[arg(long, default_value = "trained")]
    pub version: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
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
fn write_referrals(records: &[synth::Synthetic], dir: &Path) -> anyhow::Result<()> {
    fn person(s: &synth::Synthetic) -> serde_json::Value {
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
        let adult = !subject.true_person.contains("-child");
        let referral = serde_json::json!({
            "external_reference": subject.referral,
            "subject": person(subject),
            "dependants": dependants.iter().map(|d| serde_json::json!({
                "person": person(d),
                "relationship": "child",
                "with_subject": true,
            })).collect::<Vec<_>>(),
            "exploitation_types": ["labour"],
            "consent": if adult { "given" } else { "not_required_child" },
        });
        writeln!(lines, "{referral}")?;
        truth.write_record([&subject.referral, "subject", "0", &subject.true_person])?;
        for (index, d) in dependants.iter().enumerate() {
            truth.write_record([&d.referral, "dependant", &index.to_string(), &d.true_person])?;
        }
    }
    lines.flush()?;
    truth.flush()?;
    Ok(())
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

/// Reads a persons CSV; errors name the line and column, never the value.
pub fn read_persons(path: &Path) -> anyhow::Result<Vec<PersonRecord>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let id = column("id").ok_or_else(|| anyhow::anyhow!("{}: no `id` column", path.display()))?;
    let cols = FIELD_COLUMNS.map(column);
    let mut records = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: line {}", path.display(), line + 2))?;
        let cell = |c: Option<usize>| {
            c.and_then(|c| row.get(c))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let record_id = cell(Some(id));
        anyhow::ensure!(
            !record_id.is_empty(),
            "{}: line {}: empty id",
            path.display(),
            line + 2
        );
        records.push(PersonRecord {
            dob: dob_cell(&record_id, &cell(cols[2]))
                .with_context(|| format!("{}: line {}", path.display(), line + 2))?,
            id: record_id,
            given: cell(cols[0]),
            family: cell(cols[1]),
            sex: cell(cols[3]).to_ascii_lowercase().chars().take(1).collect(),
            postcode: cell(cols[4]),
            nationality: cell(cols[5]),
            aliases: Vec::new(),
        });
    }
    Ok(records)
}

pub fn link(args: &LinkArgs) -> anyhow::Result<()> {
    let model = load_model(args.model.as_deref())?;
    let left = read_persons(&args.input[0])?;
    let right = args.input.get(1).map(|p| read_persons(p)).transpose()?;
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
        "{} pair(s) at or above {} written to {} (model {})",
        links.len(),
        args.threshold,
        args.output.display(),
        model.version
    )?;
    Ok(())
}

pub fn train_model(args: &TrainArgs) -> anyhow::Result<()> {
    let records = read_persons(&args.input)?;
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
    persons.write_record(std::iter::once("id").chain(FIELD_COLUMNS))?;
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
