//! Agency authentication: a bearer token bound to one agency (`kinlink tokens create
//! --agency ID`). The agency on every event comes from here, never from the request body.

use axum::http::{HeaderMap, StatusCode, header};

use crate::problem::Problem;

/// Token kind for agencies.
pub const TOKEN_KIND: &str = "agency";

/// The agency a request is from.
#[derive(Debug, Clone)]
pub struct Agency {
    pub id: String,
    pub token_id: String,
}

/// Reads and checks the bearer token; a missing or wrong one is a 401 problem.
pub async fn agency(store: &kinlink_store::Store, headers: &HeaderMap) -> Result<Agency, Problem> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Send the agency's API token as a bearer token.",
            )
        })?;
    match kinlink_store::tokens::authenticate(store, TOKEN_KIND, secret).await {
        Ok(Some((id, token_id))) => Ok(Agency { id, token_id }),
        Ok(None) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unknown or revoked API token.",
        )),
        Err(error) => {
            tracing::error!(%error, "Token check failed.");
            Err(Problem::unavailable())
        }
    }
}
