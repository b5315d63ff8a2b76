//! Agency authentication: a bearer token bound to one agency (`kinlink tokens create
//! --agency ID`). The agency on every event comes from here, never from the request body.

use axum::http::HeaderMap;
use kinlink_runtime::http::{AGENCY_TOKEN, Problem};

/// Token kind for agencies.
pub const TOKEN_KIND: &str = AGENCY_TOKEN.store_kind;

/// The agency a request is from.
#[derive(Debug, Clone)]
pub struct Agency {
    pub id: String,
    pub token_id: String,
}

/// Reads and checks the bearer token; a missing or wrong one is a 401 problem.
pub async fn agency(store: &kinlink_store::Store, headers: &HeaderMap) -> Result<Agency, Problem> {
    let principal = kinlink_runtime::http::authenticate(store, AGENCY_TOKEN, headers).await?;
    Ok(Agency {
        id: principal.id,
        token_id: principal.token_id,
    })
}
