//! kinlink enricher: every subject and dependant of a referral becomes a person in the
//! registry, linked to the persons already known and to their household, with a decision on
//! whether they are treated as a child. Consumes `kinlink.referrals.received`, emits
//! `kinlink.referrals.enriched`.
//!
//! The rules (child status, linkage records, identifier precedence, the link/review/new
//! decision, household links) are in [`kinlink_domain::child`] and [`kinlink_domain::linking`];
//! this crate loads candidates, calls them and writes the result. Layout: [`registry`] (person
//! tables and the blocking index), [`review`] (review tasks, merges, splits and explanations
//! for operators), [`relink`] (what another model would change), this file (the stage).

pub mod registry;
pub mod relink;
pub mod review;
pub mod review_api;

use std::sync::Arc;

use kinlink_domain::linking;
use kinlink_eventlog::{Output, Record, Stage, StageError, topics};
use kinlink_linkage::Model;
use kinlink_proto::v1::{self, PersonLink, SubjectRole};
use kinlink_runtime::settings::EnricherSettings;
use sqlx::AnyConnection;

/// Errors of the enricher library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("linkage model: {0}")]
    Model(#[from] kinlink_linkage::Error),
    #[error("reading linkage model file {path}: {source}")]
    ModelFile {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] kinlink_eventlog::Error),
    #[error(transparent)]
    Audit(#[from] kinlink_store::Error),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
}

/// CloudEvents `source` of events the enricher emits.
pub const SOURCE: &str = "/kinlink/enricher";

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// How each person was resolved (linkage band counts), shared by every enricher in a process.
static LINKS: std::sync::LazyLock<
    prometheus_client::metrics::family::Family<
        MethodLabel,
        prometheus_client::metrics::counter::Counter,
    >,
> = std::sync::LazyLock::new(Default::default);

/// Adds the enricher stage to a process.
pub fn install(
    process: &mut kinlink_runtime::Process,
) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
    process.registry.register(
        "kinlink_enricher_links",
        "Persons resolved by method (new_person, strong_identifier, probabilistic)",
        LINKS.clone(),
    );
    process.registry.register(
        "kinlink_enricher_reviews_opened",
        "Linkage review tasks opened (a possible match between the thresholds; nothing merged)",
        REVIEWS.clone(),
    );
    let enricher = Enricher::from_settings(&process.settings.enricher)
        .map_err(|error| Box::new(error) as kinlink_runtime::process::TaskError)?;
    tracing::info!(model = %enricher.model.version, "Linkage model loaded.");
    process.spawn_stage(enricher);
    process.add_openapi(review_api::openapi());
    Ok(review_api::router(
        process.store.clone(),
        process.log.clone(),
        process.settings.ops.api_token.clone(),
    ))
}

static REVIEWS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// The enricher stage, with the linkage model it decides with.
#[derive(Debug, Clone)]
pub struct Enricher {
    model: Arc<Model>,
    clock: kinlink_store::Clock,
    /// Seen committed: the registry's blocking keys are this build's.
    keys_current: Arc<std::sync::atomic::AtomicBool>,
}

impl Enricher {
    /// With the model kinlink ships.
    pub fn shipped() -> Result<Self, Error> {
        Ok(Self::new(Model::shipped()?))
    }

    pub fn new(model: Model) -> Self {
        Self {
            model: Arc::new(model),
            clock: kinlink_store::Clock::system(),
            keys_current: Arc::default(),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: kinlink_store::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The model file and thresholds of the settings (the shipped model when no file).
    pub fn from_settings(settings: &EnricherSettings) -> Result<Self, Error> {
        let mut model = match &settings.model_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::ModelFile {
                    path: path.display().to_string(),
                    source,
                })?;
                Model::from_json(&text)?
            }
            None => Model::shipped()?,
        };
        if let Some(link) = settings.link_threshold {
            model.upper = link;
        }
        if let Some(review) = settings.review_threshold {
            model.lower = review;
        }
        Ok(Self::new(model))
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl Stage for Enricher {
    fn name(&self) -> &'static str {
        "enricher"
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        let referral: v1::ReferralReceived = record.envelope.decode()?;
        let now_ms = self.clock.now_ms();
        // Before the first decision: a registry keyed by another build is re-keyed (in this
        // transaction). Once the current version is seen committed, the check stops.
        use std::sync::atomic::Ordering;
        if !self.keys_current.load(Ordering::Relaxed) {
            match registry::ensure_current_keys(conn).await? {
                None => self.keys_current.store(true, Ordering::Relaxed),
                Some(0) => {}
                Some(records) => tracing::info!(
                    records,
                    version = kinlink_linkage::blocking::KEYS_VERSION,
                    "Blocking keys rebuilt for the registry."
                ),
            }
        }
        let (enriched, opened) = enrich(conn, &self.model, &referral, now_ms).await?;
        let mut reviews = Vec::new();
        for review in &opened {
            REVIEWS.inc();
            reviews.push(Output::new(
                topics::PERSONS_CHANGES,
                record.envelope.derive(
                    &format!("review/{}", review.task_id),
                    SOURCE,
                    &review.person_id,
                    &review.person_id,
                    now_ms,
                    review,
                ),
            ));
        }
        let envelope = record.envelope.derive(
            "enriched",
            SOURCE,
            &referral.referral_id,
            &referral.referral_id,
            now_ms,
            &enriched,
        );
        tracing::info!(
            referral_id = %referral.referral_id,
            persons = enriched.subjects.len(),
            children = enriched.subjects.iter().filter(|s| s.is_child).count(),
            reviews = opened.len(),
            "Referral enriched."
        );
        let mut outputs = vec![Output::new(topics::REFERRALS_ENRICHED, envelope)];
        outputs.append(&mut reviews);
        Ok(outputs)
    }
}

/// Resolves every person of the referral and links the household.
async fn enrich(
    conn: &mut AnyConnection,
    model: &Model,
    referral: &v1::ReferralReceived,
    now_ms: i64,
) -> Result<(v1::ReferralEnriched, Vec<v1::LinkageReviewOpened>), StageError> {
    let subject = referral
        .subject
        .as_ref()
        .ok_or_else(|| StageError::Rejected("referral has no subject".to_owned()))?;
    let received_ms = referral
        .received_at
        .as_ref()
        .map_or(now_ms, kinlink_proto::millis_from_timestamp);
    let received = chrono::DateTime::from_timestamp_millis(received_ms)
        .unwrap_or_default()
        .date_naive();

    let people = std::iter::once((SubjectRole::ReferralSubject, 0u32, subject, 0i32)).chain(
        referral
            .dependants
            .iter()
            .enumerate()
            .filter_map(|(index, dependant)| {
                let index = u32::try_from(index).ok()?;
                // An erased dependant (their data key is gone: an event still in flight,
                // or a replay, after `kinlink erase person`) is nobody any more: no person,
                // no alert, never a blank child in triage.
                Some((
                    SubjectRole::Dependant,
                    index,
                    dependant.person.as_ref().filter(|p| !p.erased)?,
                    dependant.relationship,
                ))
            }),
    );
    // Ids derived from the referral, its version and the place in it: a redelivered or
    // replayed referral keeps its decisions. A later version is decided afresh, because its
    // dependants may be corrected or reordered; its unchanged persons match their records of
    // the earlier version. The adult of an anonymous report is never linked, so it keeps one
    // person across versions and has no blocking keys.
    let places: Vec<registry::RecordPlace<'_>> = people
        .clone()
        .map(|(role, index, person, _)| {
            let anonymous =
                referral.anonymous_duty_to_notify && role == SubjectRole::ReferralSubject;
            let place_key = if anonymous {
                format!("{}/{index}", role as i32)
            } else {
                format!("{}/{index}/v{}", role as i32, referral.version.max(1))
            };
            let derive = |what: &str| {
                kinlink_eventlog::envelope::derive_id(
                    &referral.referral_id,
                    &format!("{what}/{place_key}"),
                )
            };
            let record = linking::person_record(&derive("record"), person);
            registry::RecordPlace {
                referral_id: &referral.referral_id,
                keys: if anonymous {
                    Vec::new()
                } else {
                    kinlink_linkage::blocking::keys(&record)
                },
                record,
                new_person_id: derive("person"),
                anonymous,
            }
        })
        .collect();
    registry::lock_blocking_keys(conn, &places).await?;
    let mut subjects: Vec<v1::EnrichedSubject> = Vec::new();
    let mut opened = Vec::new();
    // The subject's person and known children: a dependant who is one of those children is
    // far more likely the same child; one known only as another adult's child is never
    // linked automatically.
    let mut household = registry::Household::default();
    for ((role, index, person, relationship), place) in people.clone().zip(&places) {
        // Two people on one referral are never the same person.
        let exclude: Vec<String> = subjects.iter().map(|s| s.person_id.clone()).collect();
        let is_child_of_subject = role == SubjectRole::Dependant
            && linking::household_link(relationship)
                .is_some_and(|(kind, _)| kind == v1::LinkKind::Child);
        let context =
            (is_child_of_subject && !household.subject_person_id.is_empty()).then_some(&household);
        let mut resolved = registry::resolve(conn, model, person, place, &exclude, context).await?;
        if role == SubjectRole::ReferralSubject && !place.anonymous {
            household.subject_person_id = resolved.person_id.clone();
            household.possible_subjects = resolved.review_candidates.clone();
            if resolved.method != v1::MatchMethod::NewPerson {
                household.known_children =
                    registry::known_children(conn, &resolved.person_id).await?;
            }
        }
        opened.append(&mut resolved.opened);
        LINKS
            .get_or_create(&MethodLabel {
                method: linking::method_name(resolved.method),
            })
            .inc();
        let in_own_right = registry::record_appearance(
            conn,
            &referral.referral_id,
            &resolved.person_id,
            role,
            index,
            received_ms,
        )
        .await?;
        // Anyone who may be under 18 is a child until an age assessment says otherwise.
        let assessed = registry::latest_assessment(conn, &resolved.person_id).await?;
        let (is_child, basis) =
            kinlink_domain::child::child_status_assessed(person, received, assessed);
        let earlier_referral_ids =
            registry::earlier_referrals(conn, &resolved.person_id, &referral.referral_id).await?;
        let review_task_ids = registry::open_reviews(conn, &resolved.person_id).await?;
        subjects.push(v1::EnrichedSubject {
            sealed_locations: None,
            person_id: resolved.person_id,
            role: role as i32,
            dependant_index: index,
            is_child,
            child_basis: basis as i32,
            match_method: resolved.method as i32,
            links: Vec::new(),
            locations: person.locations.clone(),
            ever_referred_in_own_right: in_own_right,
            person: Some(person.clone()),
            match_probability: resolved.probability,
            earlier_referral_ids,
            review_task_ids,
        });
    }

    // Household: the subject and each related dependant, and siblings among the children.
    let relationships: Vec<i32> = people
        .skip(1)
        .map(|(_, _, _, relationship)| relationship)
        .collect();
    for pair in linking::household_pairs(&relationships) {
        let linking::HouseholdPair {
            a,
            b,
            b_is,
            a_is,
            relationship,
        } = pair;
        let (id_a, id_b) = (subjects[a].person_id.clone(), subjects[b].person_id.clone());
        // The same person twice on one referral (a data error) links to nobody.
        if id_a == id_b {
            continue;
        }
        registry::link(
            conn,
            &id_a,
            &id_b,
            b_is,
            relationship,
            &referral.referral_id,
        )
        .await?;
        registry::link(
            conn,
            &id_b,
            &id_a,
            a_is,
            relationship,
            &referral.referral_id,
        )
        .await?;
        subjects[a].links.push(PersonLink {
            kind: b_is as i32,
            person_id: id_b,
            relationship,
        });
        subjects[b].links.push(PersonLink {
            kind: a_is as i32,
            person_id: id_a,
            relationship,
        });
    }

    let enriched = v1::ReferralEnriched {
        sealed_concern: None,
        referral_id: referral.referral_id.clone(),
        agency_id: referral.agency_id.clone(),
        urgency: referral.urgency,
        consent: referral.consent,
        subjects,
        linkage_version: model.version.clone(),
        exploitation_types: referral.exploitation_types.clone(),
        county_lines: referral.county_lines,
        version: referral.version.max(1),
        anonymous_duty_to_notify: referral.anonymous_duty_to_notify,
        received_at: Some(kinlink_proto::timestamp_from_millis(received_ms)),
        concern: referral.concern.clone(),
    };
    Ok((enriched, opened))
}
