//! What every kinlink HTTP API shares: one error type (RFC 9457 problem details, always
//! `application/problem+json`), one way to read and check a bearer token, and one OpenAPI
//! security definition per kind of token. Agencies, authorities and operators each get
//! their own token kind, but the same rules: a missing or wrong token is a 401 problem, a
//! storage failure a 503, and no error message carries a token or personal data.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One field that failed validation, by JSON pointer. The value itself is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer of the field, e.g. `/dependants/1/date_of_birth/value`.
    pub pointer: String,
    pub reason: String,
}

/// An RFC 9457 problem: what every error response of every kinlink API is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<kind>`, stable for clients to match on.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every failing field, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra headers (`WWW-Authenticate` on 401s); not part of the body.
    #[serde(skip)]
    #[schema(ignore)]
    www_authenticate: bool,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: &str) -> Self {
        Self {
            problem_type: format!("/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.to_owned(),
            errors: Vec::new(),
            www_authenticate: false,
        }
    }

    /// A 503: nothing was done; retry later. The cause is logged, never returned.
    pub fn unavailable(detail: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// A 503 for a storage or log failure, logging the cause (which names ids only).
    pub fn storage(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "Request failed on storage.");
        Self::unavailable("Nothing was changed; try again shortly.")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("No such {what}."),
        )
    }

    pub fn conflict(detail: &str) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn bad_request(detail: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// A 401, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: &str) -> Self {
        Self {
            www_authenticate: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        }
    }

    /// A 400 listing every failing field.
    pub fn invalid(kind: &str, detail: &str, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::BAD_REQUEST, kind, detail)
        }
    }

    /// A 400 naming one failing field of a request: nothing was done.
    pub fn invalid_field(detail: &str, pointer: &str, reason: &str) -> Self {
        Self::invalid(
            "invalid-request",
            detail,
            vec![FieldError {
                pointer: pointer.to_owned(),
                reason: reason.to_owned(),
            }],
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A kind of bearer token: its name in the token store and in the OpenAPI document, and what
/// a caller is told to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenKind {
    /// `kind` in the token store.
    pub store_kind: &'static str,
    /// Security scheme name in the OpenAPI document.
    pub scheme: &'static str,
    /// Shown in the OpenAPI document and in 401 problems.
    pub description: &'static str,
}

/// Agencies' tokens (`kinlink tokens create --agency ID`).
pub const AGENCY_TOKEN: TokenKind = TokenKind {
    store_kind: "agency",
    scheme: "agency_token",
    description: "Agency API token (kinlink tokens create --agency ID)",
};

/// Authorities' tokens (`kinlink tokens create --authority CODE`).
pub const AUTHORITY_TOKEN: TokenKind = TokenKind {
    store_kind: "authority",
    scheme: "authority_token",
    description: "Authority API token (kinlink tokens create --authority CODE)",
};

/// The operators' token (`ops.api_token`, from the environment).
pub const OPERATOR_TOKEN: TokenKind = TokenKind {
    store_kind: "operator",
    scheme: "operator_token",
    description: "ops.api_token",
};

/// The bearer token of a request, if it carries one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Who a stored token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The agency id or authority code the token is bound to.
    pub id: String,
    /// The token's own id, for the audit log.
    pub token_id: String,
}

/// Checks the request's bearer token against the token store: a missing, unknown or revoked
/// token is a 401 problem, a store failure a 503.
pub async fn authenticate(
    store: &kinlink_store::Store,
    kind: TokenKind,
    headers: &HeaderMap,
) -> Result<Principal, Problem> {
    let secret = bearer_token(headers).ok_or_else(|| {
        Problem::unauthorized(&format!("Send a bearer token: {}.", kind.description))
    })?;
    match kinlink_store::tokens::authenticate(store, kind.store_kind, secret).await {
        Ok(Some((id, token_id))) => Ok(Principal { id, token_id }),
        Ok(None) => Err(Problem::unauthorized("Unknown or revoked API token.")),
        Err(error) => Err(Problem::storage(error)),
    }
}

/// Checks the request's bearer token against one configured secret (operators), in constant
/// time so response timing does not reveal it.
pub fn check_configured(headers: &HeaderMap, expected: &str) -> Result<(), Problem> {
    let given = bearer_token(headers).unwrap_or_default();
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Problem::unauthorized(&format!(
            "Send a bearer token: {}.",
            OPERATOR_TOKEN.description
        )))
    }
}

/// Adds a token kind's bearer security scheme to an OpenAPI document: the one definition
/// every API uses (`modifiers(&AGENCY_SECURITY)`).
#[derive(Debug, Clone, Copy)]
pub struct BearerSecurity(pub TokenKind);

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            self.0.scheme,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(self.0.description))
                    .build(),
            ),
        );
    }
}

/// The agencies' security scheme, for `modifiers(&...)`.
pub const AGENCY_SECURITY: BearerSecurity = BearerSecurity(AGENCY_TOKEN);
/// The authorities' security scheme.
pub const AUTHORITY_SECURITY: BearerSecurity = BearerSecurity(AUTHORITY_TOKEN);
/// The operators' security scheme.
pub const OPERATOR_SECURITY: BearerSecurity = BearerSecurity(OPERATOR_TOKEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        assert!(check_configured(&headers, "abc").is_ok());
        assert!(check_configured(&headers, "abd").is_err());
        assert!(check_configured(&headers, "abcd").is_err());
        headers.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn problems_are_problem_json_with_a_stable_type() {
        let response = Problem::unauthorized("no").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&header::HeaderValue::from_static(
                "application/problem+json"
            ))
        );
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&header::HeaderValue::from_static("Bearer"))
        );
        let problem = Problem::invalid(
            "invalid-referral",
            "fix them",
            vec![FieldError {
                pointer: "/subject".into(),
                reason: "missing".into(),
            }],
        );
        let json = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(json["type"], "/problems/invalid-referral");
        assert_eq!(json["status"], 400);
        assert_eq!(json["errors"][0]["pointer"], "/subject");
    }
}
