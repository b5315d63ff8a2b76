//! kinlink enricher: every subject and dependant of a referral becomes a person in the
//! registry, linked to the persons already known and to their household, with a decision on
//! whether they are treated as a child. Consumes `kinlink.referrals.received`, emits
//! `kinlink.referrals.enriched`.
//!
//! Layout: [`linking`] (pure rules), [`registry`] (person tables), this file (the stage).

pub mod linking;
pub mod registry;

use kinlink_eventlog::{Output, Record, Stage, StageError, topics};
use kinlink_proto::v1::{self, PersonLink, SubjectRole};
use sqlx::AnyConnection;

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
        "Persons resolved by method (new_person, strong_identifier, exact_name_and_dob)",
        LINKS.clone(),
    );
    process.spawn_stage(Enricher);
    Ok(axum::Router::new())
}

/// The enricher stage.
#[derive(Debug, Default, Clone)]
pub struct Enricher;

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
        let enriched = enrich(conn, &referral).await?;
        let envelope = record.envelope.derive(
            "enriched",
            SOURCE,
            &referral.referral_id,
            &referral.referral_id,
            kinlink_store::now_millis(),
            &enriched,
        );
        tracing::info!(
            referral_id = %referral.referral_id,
            persons = enriched.subjects.len(),
            children = enriched.subjects.iter().filter(|s| s.is_child).count(),
            "Referral enriched."
        );
        Ok(vec![Output::new(topics::REFERRALS_ENRICHED, envelope)])
    }
}

/// Resolves every person of the referral and links the household.
async fn enrich(
    conn: &mut AnyConnection,
    referral: &v1::ReferralReceived,
) -> Result<v1::ReferralEnriched, StageError> {
    let subject = referral
        .subject
        .as_ref()
        .ok_or_else(|| StageError::Rejected("referral has no subject".to_owned()))?;
    let received_ms = referral
        .received_at
        .as_ref()
        .map(kinlink_proto::millis_from_timestamp)
        .unwrap_or_else(kinlink_store::now_millis);
    let received = chrono::DateTime::from_timestamp_millis(received_ms)
        .unwrap_or_else(chrono::Utc::now)
        .date_naive();

    let people = std::iter::once((SubjectRole::ReferralSubject, 0u32, subject, 0i32)).chain(
        referral
            .dependants
            .iter()
            .enumerate()
            .filter_map(|(index, dependant)| {
                let index = u32::try_from(index).ok()?;
                Some((
                    SubjectRole::Dependant,
                    index,
                    dependant.person.as_ref()?,
                    dependant.relationship,
                ))
            }),
    );
    let mut subjects = Vec::new();
    for (role, index, person, _) in people.clone() {
        // Derived from the referral: a redelivered referral, or a later version of it,
        // gives the same person ids to the same subject and dependants.
        let new_id = kinlink_eventlog::envelope::derive_id(
            &referral.referral_id,
            &format!("person/{}/{index}", role as i32),
        );
        let resolved = registry::resolve(conn, person, &new_id, &referral.referral_id).await?;
        let method = resolved
            .method
            .as_str_name()
            .trim_start_matches("MATCH_METHOD_")
            .to_ascii_lowercase();
        LINKS.get_or_create(&MethodLabel { method }).inc();
        let in_own_right = registry::record_appearance(
            conn,
            &referral.referral_id,
            &resolved.person_id,
            role,
            index,
            received_ms,
        )
        .await?;
        let (is_child, basis) = linking::child_status(person, received);
        subjects.push(v1::EnrichedSubject {
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
        });
    }

    // Household: the subject and each related dependant, and siblings among the children.
    let relationships: Vec<i32> = people.map(|(_, _, _, relationship)| relationship).collect();
    let mut pairs = Vec::new();
    let mut children_of_subject = Vec::new();
    for (position, relationship) in relationships.iter().enumerate().skip(1) {
        if let Some((dependant_is, subject_is)) = linking::household_link(*relationship) {
            pairs.push((0, position, dependant_is, subject_is, *relationship));
            if dependant_is == v1::LinkKind::Child {
                children_of_subject.push(position);
            }
        }
    }
    for (i, &a) in children_of_subject.iter().enumerate() {
        for &b in &children_of_subject[i + 1..] {
            let sibling = v1::LinkKind::Sibling;
            pairs.push((a, b, sibling, sibling, v1::Relationship::Sibling as i32));
        }
    }
    for (a, b, b_is, a_is, relationship) in pairs {
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

    Ok(v1::ReferralEnriched {
        referral_id: referral.referral_id.clone(),
        agency_id: referral.agency_id.clone(),
        urgency: referral.urgency,
        consent: referral.consent,
        subjects,
        linkage_version: linking::LINKAGE_VERSION.to_owned(),
        exploitation_types: referral.exploitation_types.clone(),
        county_lines: referral.county_lines,
        version: referral.version.max(1),
        anonymous_duty_to_notify: referral.anonymous_duty_to_notify,
    })
}
