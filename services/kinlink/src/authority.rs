//! `kinlink authority <place>`: which body runs children's services for a GSS code or a
//! postcode, as routing would decide it. For on-call checks; ids and codes only.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use kinlink_domain::routing::{AuthorityResolver, Resolution};
use serde::Serialize;

use crate::AuthorityArgs;

#[derive(Debug, Serialize)]
struct AuthorityAnswer {
    query: String,
    resolved: bool,
    code: Option<String>,
    name: Option<String>,
    nation: Option<String>,
    district: Option<String>,
    terminated_postcode: bool,
    reason: Option<String>,
    candidates: Vec<String>,
    data_version: String,
}

/// `kinlink authority <place>`: exits with code 2 when the place does not resolve to one body.
pub fn lookup(args: &AuthorityArgs) -> anyhow::Result<ExitCode> {
    let resolver = AuthorityResolver::shipped().context("loading the shipped reference data")?;
    let place = args.place.trim();
    let looks_like_code = place.len() == 9 && place[1..].chars().all(|c| c.is_ascii_digit());
    let resolution = if looks_like_code {
        resolver.resolve_code(&place.to_ascii_uppercase())
    } else {
        resolver.resolve_postcode(place)
    };
    let answer = match resolution {
        Resolution::Resolved {
            body,
            district,
            terminated_postcode,
        } => AuthorityAnswer {
            query: place.to_owned(),
            resolved: true,
            code: Some(body.gss_code),
            name: Some(body.name),
            nation: Some(body.nation),
            district: body.via_district.or(if district.is_empty() {
                None
            } else {
                Some(district)
            }),
            terminated_postcode,
            reason: None,
            candidates: Vec::new(),
            data_version: resolver.version().to_owned(),
        },
        Resolution::Unresolved { reason, candidates } => AuthorityAnswer {
            query: place.to_owned(),
            resolved: false,
            code: None,
            name: None,
            nation: None,
            district: None,
            terminated_postcode: false,
            reason: Some(reason.to_string()),
            candidates: candidates
                .into_iter()
                .map(|c| format!("{} {}", c.gss_code, c.name))
                .collect(),
            data_version: resolver.version().to_owned(),
        },
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
    } else if answer.resolved {
        writeln!(
            out,
            "{} {} ({})",
            answer.code.as_deref().unwrap_or_default(),
            answer.name.as_deref().unwrap_or_default(),
            answer.nation.as_deref().unwrap_or_default()
        )?;
        if let Some(district) = &answer.district {
            writeln!(out, "  via district {district}")?;
        }
        if answer.terminated_postcode {
            writeln!(
                out,
                "  postcode is terminated: routed through its last district"
            )?;
        }
        writeln!(out, "  data: {}", answer.data_version)?;
    } else {
        writeln!(
            out,
            "unresolved: {}",
            answer.reason.as_deref().unwrap_or_default()
        )?;
        for candidate in &answer.candidates {
            writeln!(out, "  candidate: {candidate}")?;
        }
        writeln!(out, "  data: {}", answer.data_version)?;
    }
    out.flush()?;
    Ok(if answer.resolved {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
