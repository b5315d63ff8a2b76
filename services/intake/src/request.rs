//! The JSON shape of `POST /v1/referrals`, and its one-way conversion into the
//! `kinlink.v1.ReferralReceived` event. Parsing collects every failing field (by JSON
//! pointer) rather than stopping at the first, so an integrator fixes a request in one go.
//! Messages name fields, never echo their values: values may be personal data.

use kinlink_proto::v1;
use serde::Deserialize;

/// One problem with one field of a request (shared by every kinlink API).
pub use kinlink_runtime::http::FieldError;

const MAX_NAME: usize = 200;
const MAX_LIST: usize = 20;
const MAX_DEPENDANTS: usize = 30;
const MAX_CONCERN: usize = 20_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralRequest {
    #[serde(default)]
    pub external_reference: String,
    pub subject: PersonRequest,
    #[serde(default)]
    pub dependants: Vec<DependantRequest>,
    #[serde(default)]
    pub exploitation_types: Vec<ExploitationType>,
    #[serde(default)]
    pub county_lines: bool,
    #[serde(default)]
    pub exploitation_location: Option<ExploitationLocation>,
    #[serde(default)]
    pub urgency: Option<Urgency>,
    #[serde(default)]
    pub pregnant: bool,
    #[serde(default)]
    pub consent: Option<Consent>,
    #[serde(default)]
    pub concern: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonRequest {
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub date_of_birth: Option<DateOfBirthRequest>,
    #[serde(default)]
    pub claimed_age: Option<u32>,
    #[serde(default)]
    pub sex: Option<Sex>,
    #[serde(default)]
    pub nationalities: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub identifiers: Vec<IdentifierRequest>,
    #[serde(default)]
    pub locations: Vec<LocationRequest>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DependantRequest {
    pub person: PersonRequest,
    pub relationship: Relationship,
    #[serde(default)]
    pub with_subject: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateOfBirthRequest {
    pub value: String,
    #[serde(default)]
    pub precision: Option<DobPrecision>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifierRequest {
    pub kind: IdentifierKind,
    pub value: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationRequest {
    pub role: LocationRole,
    #[serde(default)]
    pub postcode: String,
    #[serde(default)]
    pub authority_code: String,
    #[serde(default)]
    pub overseas: bool,
    #[serde(default)]
    pub no_fixed_abode: bool,
}

/// A protobuf enum number the contract does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownEnumValue;

macro_rules! wire_enum {
    ($name:ident => $proto:path { $($variant:ident => $proto_variant:ident),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }
        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                use $proto as P;
                match value { $($name::$variant => P::$proto_variant as i32),+ }
            }
        }
        impl $name {
            /// From the protobuf form: 0 (unspecified) is `None`; an unknown value is an error.
            pub fn from_wire(value: i32) -> Result<Option<Self>, UnknownEnumValue> {
                use $proto as P;
                if value == 0 {
                    return Ok(None);
                }
                $(if value == P::$proto_variant as i32 { return Ok(Some($name::$variant)); })+
                Err(UnknownEnumValue)
            }
        }
    };
}

wire_enum!(DobPrecision => v1::DobPrecision { Exact => Exact, Month => Month, Year => Year, Estimated => Estimated });
wire_enum!(Sex => v1::Sex { Female => Female, Male => Male, Other => Other, Unknown => Unknown });
wire_enum!(IdentifierKind => v1::IdentifierKind {
    NhsNumber => NhsNumber, HomeOfficeReference => HomeOfficeReference, Upn => Upn, LaChildId => LaChildId
});
wire_enum!(LocationRole => v1::LocationRole { Lives => Lives, Found => Found, PlacingAuthority => PlacingAuthority });
wire_enum!(Relationship => v1::Relationship {
    Child => Child, Stepchild => Stepchild, Sibling => Sibling, Grandchild => Grandchild,
    OtherRelative => OtherRelative, Unrelated => Unrelated
});
wire_enum!(ExploitationType => v1::ExploitationType {
    Labour => Labour, Sexual => Sexual, Criminal => Criminal, DomesticServitude => DomesticServitude,
    OrganHarvesting => OrganHarvesting, Unknown => Unknown
});
wire_enum!(ExploitationLocation => v1::ExploitationLocation { Uk => Uk, Overseas => Overseas, Both => Both });
wire_enum!(Urgency => v1::Urgency { Routine => Routine, Urgent => Urgent, Immediate => Immediate });
wire_enum!(Consent => v1::Consent { Given => Given, NotGiven => NotGiven, NotRequiredChild => NotRequiredChild });

impl ReferralRequest {
    /// The protobuf form of a referral, read into the same shape as the JSON form so both
    /// go through one validation. Unknown enum values are errors naming the field.
    /// Returns the request with what could be read, and the wire-level errors (unknown enum
    /// values); callers validate the request too, so every failing field is reported.
    pub fn from_submission(submission: v1::ReferralSubmission) -> (Self, Vec<FieldError>) {
        let mut errors = Vec::new();
        let subject = match submission.subject {
            Some(subject) => person_from_wire(subject, "/subject", &mut errors),
            None => {
                errors.push(error("/subject", "missing field `subject`"));
                person_from_wire(v1::Person::default(), "/subject", &mut errors)
            }
        };
        let mut dependants = Vec::new();
        for (i, dependant) in submission.dependants.into_iter().enumerate() {
            let at = format!("/dependants/{i}");
            let relationship = enum_field(
                Relationship::from_wire(dependant.relationship),
                &format!("{at}/relationship"),
                &mut errors,
            );
            let Some(relationship) = relationship else {
                errors.push(error(
                    &format!("{at}/relationship"),
                    "missing field `relationship`",
                ));
                continue;
            };
            dependants.push(DependantRequest {
                person: person_from_wire(
                    dependant.person.unwrap_or_default(),
                    &format!("{at}/person"),
                    &mut errors,
                ),
                relationship,
                with_subject: dependant.with_subject,
            });
        }
        let mut exploitation_types = Vec::new();
        for (i, t) in submission.exploitation_types.into_iter().enumerate() {
            if let Some(t) = enum_field(
                ExploitationType::from_wire(t),
                &format!("/exploitation_types/{i}"),
                &mut errors,
            ) {
                exploitation_types.push(t);
            }
        }
        let request = Self {
            external_reference: submission.external_reference,
            subject,
            dependants,
            exploitation_types,
            county_lines: submission.county_lines,
            exploitation_location: enum_field(
                ExploitationLocation::from_wire(submission.exploitation_location),
                "/exploitation_location",
                &mut errors,
            ),
            urgency: enum_field(
                Urgency::from_wire(submission.urgency),
                "/urgency",
                &mut errors,
            ),
            pregnant: submission.pregnant,
            consent: enum_field(
                Consent::from_wire(submission.consent),
                "/consent",
                &mut errors,
            ),
            concern: submission.concern,
        };
        (request, errors)
    }
}

fn enum_field<T>(
    value: Result<Option<T>, UnknownEnumValue>,
    pointer: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    value.unwrap_or_else(|UnknownEnumValue| {
        errors.push(error(pointer, "unknown enum value"));
        None
    })
}

fn person_from_wire(p: v1::Person, at: &str, errors: &mut Vec<FieldError>) -> PersonRequest {
    let date_of_birth = p.date_of_birth.map(|d| DateOfBirthRequest {
        value: d.value,
        precision: enum_field(
            DobPrecision::from_wire(d.precision),
            &format!("{at}/date_of_birth/precision"),
            errors,
        ),
    });
    let identifiers = p
        .identifiers
        .into_iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let kind = enum_field(
                IdentifierKind::from_wire(id.kind),
                &format!("{at}/identifiers/{i}/kind"),
                errors,
            )?;
            Some(IdentifierRequest {
                kind,
                value: id.value,
            })
        })
        .collect();
    let locations = p
        .locations
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let pointer = format!("{at}/locations/{i}/role");
            let role = enum_field(LocationRole::from_wire(l.role), &pointer, errors);
            if role.is_none() {
                errors.push(error(&pointer, "missing field `role`"));
            }
            Some(LocationRequest {
                role: role?,
                postcode: l.postcode,
                authority_code: l.authority_code,
                overseas: l.overseas,
                no_fixed_abode: l.no_fixed_abode,
            })
        })
        .collect();
    PersonRequest {
        given_name: p.given_name,
        family_name: p.family_name,
        aliases: p.aliases,
        date_of_birth,
        claimed_age: p.claimed_age,
        sex: enum_field(Sex::from_wire(p.sex), &format!("{at}/sex"), errors),
        nationalities: p.nationalities,
        languages: p.languages,
        identifiers,
        locations,
    }
}

/// Parses a request body, naming the field on a type error (wrong type, unknown field,
/// unknown enum value).
pub fn parse_body(body: &[u8]) -> Result<ReferralRequest, FieldError> {
    parse_json(body)
}

/// A serde message without the offending value (it may be personal data).
fn describe_serde_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if text.starts_with("unknown variant") || text.starts_with("unknown field") {
        // "unknown variant `x`, expected one of ..." -> keep the expected list only.
        match text.split_once(", expected") {
            Some((kind, expected)) => {
                let kind = kind.split('`').next().unwrap_or("unknown value").trim();
                format!(
                    "{kind}; expected{}",
                    expected.split(" at line").next().unwrap_or("")
                )
            }
            None => "unknown value".to_owned(),
        }
    } else if text.starts_with("missing field") {
        text.split(" at line")
            .next()
            .unwrap_or("missing field")
            .to_owned()
    } else if text.starts_with("invalid type") {
        text.split(" at line")
            .next()
            .unwrap_or("invalid type")
            .split(':')
            .next()
            .unwrap_or("invalid type")
            .to_owned()
    } else if error.is_syntax() || error.is_eof() {
        "body is not valid JSON".to_owned()
    } else {
        "invalid value".to_owned()
    }
}

/// Data-quality warnings returned with a 202: accepted, but routing or linking may suffer.
pub fn warnings(request: &ReferralRequest) -> Vec<String> {
    let mut warnings = Vec::new();
    let people = std::iter::once(("/subject".to_owned(), &request.subject)).chain(
        request
            .dependants
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("/dependants/{i}/person"), &d.person)),
    );
    for (pointer, person) in people {
        if person.date_of_birth.is_none() && person.claimed_age.is_none() {
            warnings.push(format!(
                "{pointer}: no date of birth or claimed age; treated as a child"
            ));
        }
        if !person
            .locations
            .iter()
            .any(|l| !l.postcode.is_empty() || !l.authority_code.is_empty())
        {
            warnings.push(format!(
                "{pointer}: no postcode or authority code; routing will need triage"
            ));
        }
    }
    let subject_may_be_adult = request.subject.claimed_age.is_some_and(|a| a >= 18)
        || request.subject.date_of_birth.is_some();
    if request.dependants.is_empty() && subject_may_be_adult {
        warnings.push(
            "/dependants: adult subject with no dependants recorded; ask whether they have children".to_owned(),
        );
    }
    warnings
}

/// Warnings about age that follow from the same rule the pipeline applies (s51): a person
/// whose date of birth or claimed age leaves them possibly under 18 is treated as a child
/// until an age assessment says otherwise, and the agency is told so.
pub fn age_warnings(event: &v1::ReferralReceived) -> Vec<String> {
    let received_on = event
        .received_at
        .as_ref()
        .and_then(|t| {
            chrono::DateTime::from_timestamp_millis(kinlink_proto::millis_from_timestamp(t))
        })
        .unwrap_or_default()
        .date_naive();
    let people = event
        .subject
        .iter()
        .map(|p| ("/subject".to_owned(), p))
        .chain(event.dependants.iter().enumerate().filter_map(|(i, d)| {
            d.person
                .as_ref()
                .map(|p| (format!("/dependants/{i}/person"), p))
        }));
    people
        .filter(|(_, person)| person.date_of_birth.is_some())
        .filter(|(_, person)| {
            kinlink_domain::child::child_status(person, received_on).1
                == v1::ChildBasis::AgeUncertain
        })
        .map(|(pointer, _)| {
            format!("{pointer}/date_of_birth: age uncertain; treated as a child until assessed")
        })
        .collect()
}

/// A protobuf submission to an event: wire errors and validation errors reported together.
pub fn submission_into_event(
    submission: v1::ReferralSubmission,
    referral_id: &str,
    agency_id: &str,
    received_at_ms: i64,
) -> Result<v1::ReferralReceived, Vec<FieldError>> {
    let (request, mut errors) = ReferralRequest::from_submission(submission);
    match into_event(request, referral_id, agency_id, received_at_ms) {
        Ok(event) if errors.is_empty() => Ok(event),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// Checks limits and formats, then builds the event. Every failing field is reported.
pub fn into_event(
    request: ReferralRequest,
    referral_id: &str,
    agency_id: &str,
    received_at_ms: i64,
) -> Result<v1::ReferralReceived, Vec<FieldError>> {
    let mut errors = Vec::new();
    let consent_refused = request.consent == Some(Consent::NotGiven);
    let subject_named = !request.subject.given_name.trim().is_empty()
        || !request.subject.family_name.trim().is_empty()
        || !request.subject.aliases.is_empty();
    let subject = person(request.subject, "/subject", false, &mut errors);
    let received_on = chrono::DateTime::from_timestamp_millis(received_at_ms)
        .unwrap_or_default()
        .date_naive();
    // Anyone who may be under 18 is a child and needs no consent (s51); an adult who did not
    // consent is reported anonymously (s52(3)).
    let (subject_is_child, _) = kinlink_domain::child::child_status(&subject, received_on);
    let anonymous =
        kinlink_domain::child::anonymous_duty_to_notify(subject_is_child, consent_refused);
    if anonymous {
        refuse_identifying_fields(&subject, &mut errors);
    } else if !subject_named {
        errors.push(error(
            "/subject/given_name",
            "a given name, family name or alias is required",
        ));
    }
    let mut dependants = Vec::new();
    if request.dependants.len() > MAX_DEPENDANTS {
        errors.push(error(
            "/dependants",
            &format!("at most {MAX_DEPENDANTS} dependants"),
        ));
    }
    for (index, dependant) in request.dependants.into_iter().enumerate() {
        let pointer = format!("/dependants/{index}/person");
        dependants.push(v1::Dependant {
            person: Some(person(dependant.person, &pointer, true, &mut errors)),
            relationship: dependant.relationship.into(),
            with_subject: dependant.with_subject,
        });
    }
    check_len(
        &request.external_reference,
        100,
        "/external_reference",
        &mut errors,
    );
    check_len(&request.concern, MAX_CONCERN, "/concern", &mut errors);
    if request.exploitation_types.len() > 6 {
        errors.push(error("/exploitation_types", "at most 6 exploitation types"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(v1::ReferralReceived {
        sealed_concern: None,
        referral_id: referral_id.to_owned(),
        agency_id: agency_id.to_owned(),
        external_reference: request.external_reference,
        subject: Some(subject),
        dependants,
        exploitation_types: request
            .exploitation_types
            .into_iter()
            .map(i32::from)
            .collect(),
        county_lines: request.county_lines,
        exploitation_location: request
            .exploitation_location
            .map(i32::from)
            .unwrap_or_default(),
        urgency: request
            .urgency
            .map(i32::from)
            .unwrap_or(v1::Urgency::Routine as i32),
        pregnant: request.pregnant,
        consent: request.consent.map(i32::from).unwrap_or_default(),
        received_at: Some(kinlink_proto::timestamp_from_millis(received_at_ms)),
        concern: request.concern,
        version: 1,
        anonymous_duty_to_notify: anonymous,
    })
}

/// In an anonymous Duty-to-Notify report nothing may identify the adult: names, aliases, a
/// date of birth finer than the year, identifiers, or a full postcode.
fn refuse_identifying_fields(subject: &v1::Person, errors: &mut Vec<FieldError>) {
    const WHY: &str = "identifying fields are refused in an anonymous Duty to Notify report (adult without consent, Modern Slavery Act s52(3))";
    for (field, present) in [
        ("given_name", !subject.given_name.is_empty()),
        ("family_name", !subject.family_name.is_empty()),
        ("aliases", !subject.aliases.is_empty()),
        ("identifiers", !subject.identifiers.is_empty()),
        (
            "date_of_birth",
            subject
                .date_of_birth
                .as_ref()
                .is_some_and(|d| d.value.len() > 4),
        ),
    ] {
        if present {
            errors.push(error(&format!("/subject/{field}"), WHY));
        }
    }
    for (i, location) in subject.locations.iter().enumerate() {
        if location.postcode.replace(' ', "").len() > 4 {
            errors.push(error(&format!("/subject/locations/{i}/postcode"), WHY));
        }
    }
}

/// Checks and converts a person's locations; `at` is the JSON pointer of the list.
pub fn convert_locations(
    list: Vec<LocationRequest>,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<v1::Location> {
    if list.len() > 10 {
        errors.push(error(at, "at most 10 locations"));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, location)| {
            let here = format!("{at}/{i}");
            let postcode = location.postcode.trim().to_owned();
            let authority_code = location.authority_code.trim().to_ascii_uppercase();
            if postcode.chars().count() > 10
                || !postcode
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ')
            {
                errors.push(error(
                    &format!("{here}/postcode"),
                    "not a UK postcode (letters, digits, one space)",
                ));
            }
            if !authority_code.is_empty() && !valid_gss_code(&authority_code) {
                errors.push(error(
                    &format!("{here}/authority_code"),
                    "expected a GSS code such as E06000023",
                ));
            }
            if postcode.is_empty()
                && authority_code.is_empty()
                && !location.overseas
                && !location.no_fixed_abode
            {
                errors.push(error(
                    &here,
                    "give a postcode or authority code, or set overseas or no_fixed_abode",
                ));
            }
            v1::Location {
                role: location.role.into(),
                postcode,
                authority_code,
                overseas: location.overseas,
                no_fixed_abode: location.no_fixed_abode,
            }
        })
        .collect()
}

/// Checks and converts dependants added by an update; pointers start at `/add_dependants`.
pub fn convert_dependants(
    list: Vec<DependantRequest>,
) -> Result<Vec<v1::Dependant>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if list.len() > MAX_DEPENDANTS {
        errors.push(error(
            "/add_dependants",
            &format!("at most {MAX_DEPENDANTS} dependants"),
        ));
    }
    let dependants = list
        .into_iter()
        .enumerate()
        .map(|(index, dependant)| v1::Dependant {
            person: Some(person(
                dependant.person,
                &format!("/add_dependants/{index}/person"),
                true,
                &mut errors,
            )),
            relationship: dependant.relationship.into(),
            with_subject: dependant.with_subject,
        })
        .collect();
    if errors.is_empty() {
        Ok(dependants)
    } else {
        Err(errors)
    }
}

/// Parses any JSON body into `T`, naming the field on a type error.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let pointer = if path == "." {
            String::new()
        } else {
            format!(
                "/{}",
                path.replace('.', "/")
                    .replace(['[', ']'], "/")
                    .replace("//", "/")
            )
            .trim_end_matches('/')
            .to_owned()
        };
        FieldError {
            pointer,
            reason: describe_serde_error(error.inner()),
        }
    })
}

fn error(pointer: &str, reason: &str) -> FieldError {
    FieldError {
        pointer: pointer.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check_len(value: &str, max: usize, pointer: &str, errors: &mut Vec<FieldError>) {
    if value.chars().count() > max {
        errors.push(error(pointer, &format!("longer than {max} characters")));
    }
}

fn person(
    request: PersonRequest,
    at: &str,
    require_name: bool,
    errors: &mut Vec<FieldError>,
) -> v1::Person {
    if require_name
        && request.given_name.trim().is_empty()
        && request.family_name.trim().is_empty()
        && request.aliases.is_empty()
    {
        errors.push(error(
            &format!("{at}/given_name"),
            "a given name, family name or alias is required",
        ));
    }
    check_len(
        &request.given_name,
        MAX_NAME,
        &format!("{at}/given_name"),
        errors,
    );
    check_len(
        &request.family_name,
        MAX_NAME,
        &format!("{at}/family_name"),
        errors,
    );
    for (name, list) in [
        ("aliases", &request.aliases),
        ("nationalities", &request.nationalities),
        ("languages", &request.languages),
    ] {
        if list.len() > MAX_LIST {
            errors.push(error(
                &format!("{at}/{name}"),
                &format!("at most {MAX_LIST} entries"),
            ));
        }
        for (i, item) in list.iter().enumerate() {
            check_len(item, MAX_NAME, &format!("{at}/{name}/{i}"), errors);
        }
    }
    let date_of_birth = request.date_of_birth.map(|dob| {
        if !valid_partial_date(&dob.value) {
            errors.push(error(
                &format!("{at}/date_of_birth/value"),
                "expected YYYY-MM-DD, YYYY-MM or YYYY",
            ));
        }
        let precision = dob
            .precision
            .map(i32::from)
            .unwrap_or_else(|| match dob.value.len() {
                4 => v1::DobPrecision::Year as i32,
                7 => v1::DobPrecision::Month as i32,
                _ => v1::DobPrecision::Exact as i32,
            });
        v1::DateOfBirth {
            value: dob.value,
            precision,
        }
    });
    if request.claimed_age.is_some_and(|age| age > 130) {
        errors.push(error(
            &format!("{at}/claimed_age"),
            "must be between 0 and 130",
        ));
    }
    if request.identifiers.len() > MAX_LIST {
        errors.push(error(
            &format!("{at}/identifiers"),
            &format!("at most {MAX_LIST} entries"),
        ));
    }
    let identifiers = request
        .identifiers
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let value = id.value.trim().to_owned();
            if value.is_empty() || value.chars().count() > 64 {
                errors.push(error(
                    &format!("{at}/identifiers/{i}/value"),
                    "must be 1 to 64 characters",
                ));
            }
            v1::Identifier {
                kind: id.kind.into(),
                value,
            }
        })
        .collect();
    let locations = convert_locations(request.locations, &format!("{at}/locations"), errors);
    v1::Person {
        erased: false,
        sealed: None,
        given_name: request.given_name.trim().to_owned(),
        family_name: request.family_name.trim().to_owned(),
        aliases: request.aliases,
        date_of_birth,
        claimed_age: request.claimed_age,
        sex: request.sex.map(i32::from).unwrap_or_default(),
        nationalities: request.nationalities,
        languages: request.languages,
        identifiers,
        locations,
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, a real calendar date, not in the future.
fn valid_partial_date(value: &str) -> bool {
    let today = chrono::Utc::now().date_naive();
    let parsed = match value.len() {
        4 => chrono::NaiveDate::parse_from_str(&format!("{value}-01-01"), "%Y-%m-%d"),
        7 => chrono::NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d"),
        10 => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d"),
        _ => return false,
    };
    parsed.is_ok_and(|date| date <= today && date.format("%Y").to_string().as_str() >= "1890")
}

/// A 9-character GSS code: a letter, then 8 digits (E06000023, W06000015, S12000036, N09000003).
pub fn valid_gss_code(code: &str) -> bool {
    code.len() == 9
        && code.starts_with(['E', 'W', 'S', 'N'])
        && code[1..].chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// The warnings a subject with this date of birth gets, received on 2026-11-23.
    fn age_warnings_for(dob: serde_json::Value) -> Vec<String> {
        let request = parse_body(&body(serde_json::json!({
            "subject": { "given_name": "A", "date_of_birth": dob },
            "consent": "given"
        })));
        let Ok(request) = request else {
            return vec!["did not parse".to_owned()];
        };
        match into_event(request, "r", "a", 1_795_392_000_000) {
            Ok(event) => age_warnings(&event),
            Err(_) => vec!["refused".to_owned()],
        }
    }

    #[test]
    fn the_age_warning_says_what_the_pipeline_does() {
        let uncertain =
            ["/subject/date_of_birth: age uncertain; treated as a child until assessed"];
        // An estimate that says 19 may be a child: warned, and treated as one.
        assert_eq!(
            age_warnings_for(
                serde_json::json!({ "value": "2007-06-01", "precision": "estimated" })
            ),
            uncertain
        );
        // An estimate that says 40 cannot be: no promise of child treatment.
        assert!(
            age_warnings_for(
                serde_json::json!({ "value": "1986-06-01", "precision": "estimated" })
            )
            .is_empty()
        );
        // An exact adult date: nothing to warn about.
        assert!(age_warnings_for(serde_json::json!({ "value": "2000-01-01" })).is_empty());
    }

    #[test]
    fn unknown_enum_value_names_the_field_without_echoing_it() {
        let raw = body(serde_json::json!({
            "subject": { "given_name": "A", "locations": [{ "role": "somewhere-secret" }] }
        }));
        let err = parse_body(&raw).err();
        let err = err.as_ref();
        assert_eq!(
            err.map(|e| e.pointer.as_str()),
            Some("/subject/locations/0/role")
        );
        assert!(
            err.is_some_and(|e| !e.reason.contains("somewhere-secret")),
            "{err:?}"
        );
    }

    #[test]
    fn every_failing_field_is_reported() {
        let raw = body(serde_json::json!({
            "subject": { "date_of_birth": { "value": "1990-13-40" } },
            "dependants": [{ "person": { "given_name": "B", "locations": [{ "role": "lives", "authority_code": "X1" }] },
                             "relationship": "child" }]
        }));
        let request = parse_body(&raw).map_err(|e| e.reason);
        let Ok(request) = request else {
            panic!("parse failed: {request:?}")
        };
        let errors = into_event(request, "r", "a", 0).err().unwrap_or_default();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/subject/date_of_birth/value",
                "/subject/given_name",
                "/dependants/0/person/locations/0/authority_code"
            ]
        );
    }

    #[test]
    fn precision_defaults_from_the_date_shape() {
        let raw = body(
            serde_json::json!({ "subject": { "given_name": "A", "date_of_birth": { "value": "2019" } } }),
        );
        let event = parse_body(&raw)
            .ok()
            .and_then(|r| into_event(r, "r", "a", 0).ok());
        let precision = event
            .and_then(|e| e.subject)
            .and_then(|s| s.date_of_birth)
            .map(|d| d.precision);
        assert_eq!(precision, Some(v1::DobPrecision::Year as i32));
    }
}
