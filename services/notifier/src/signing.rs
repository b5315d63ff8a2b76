//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): `webhook-signature` is
//! `v1,` + base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")). Secrets are
//! written `whsec_<base64>`. During a rotation an endpoint has several secrets and every one
//! signs, space-separated, so receivers holding either the old or the new secret verify.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing secret. Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Why a configured secret is unusable. Never includes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("signing secret must start with `whsec_`")]
    Prefix,
    #[error("signing secret is not valid base64 after `whsec_`")]
    Base64,
    #[error("signing secret must be 24 to 64 bytes")]
    Length,
    #[error("signing secret refers to environment variable {0}, which is not set")]
    MissingEnv(String),
}

impl SigningSecret {
    /// Parses `whsec_<base64>`, or `env:NAME` to read that form from the environment, so
    /// secrets stay out of configuration files.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        let value =
            kinlink_runtime::settings::secret_value(value).map_err(SecretError::MissingEnv)?;
        let encoded = value.strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length);
        }
        Ok(Self(bytes))
    }

    fn sign(&self, content: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(content);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

/// The `webhook-signature` header value for a message, signed with every secret.
pub fn signature_header(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    secrets
        .iter()
        .map(|secret| format!("v1,{}", secret.sign(&content)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    /// The independent implementation: the Standard Webhooks reference library.
    fn verify(secret: &str, id: &str, ts: i64, body: &[u8], header: &str) -> bool {
        let Ok(webhook) = standardwebhooks::Webhook::new(secret) else {
            return false;
        };
        let mut headers = http::HeaderMap::new();
        let insert = |h: &mut http::HeaderMap, k: &'static str, v: String| {
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        };
        insert(&mut headers, "webhook-id", id.to_owned());
        insert(&mut headers, "webhook-timestamp", ts.to_string());
        insert(&mut headers, "webhook-signature", header.to_owned());
        webhook.verify(body, &headers).is_ok()
    }

    #[test]
    fn signatures_verify_with_the_reference_implementation() -> Result<(), SecretError> {
        let secrets = [SigningSecret::parse(OLD)?];
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"alert_id":"a1"}"#;
        let header = signature_header(&secrets, "a1", now, body);
        assert!(header.starts_with("v1,"));
        assert!(verify(OLD, "a1", now, body, &header));
        assert!(
            !verify(NEW, "a1", now, body, &header),
            "another secret must not verify"
        );
        assert!(
            !verify(OLD, "a1", now, br#"{"alert_id":"a2"}"#, &header),
            "a changed body must not verify"
        );
        assert!(
            !verify(OLD, "a2", now, body, &header),
            "a changed id must not verify"
        );
        Ok(())
    }

    #[test]
    fn during_rotation_both_secrets_verify() -> Result<(), SecretError> {
        let secrets = [SigningSecret::parse(OLD)?, SigningSecret::parse(NEW)?];
        let now = chrono::Utc::now().timestamp();
        let header = signature_header(&secrets, "a1", now, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(OLD, "a1", now, b"{}", &header));
        assert!(verify(NEW, "a1", now, b"{}", &header));
        Ok(())
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(),
            Some(SecretError::Prefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!!").err(),
            Some(SecretError::Base64)
        );
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ=").err(),
            Some(SecretError::Length)
        );
        assert_eq!(
            SigningSecret::parse("env:KINLINK_TEST_UNSET_SECRET").err(),
            Some(SecretError::MissingEnv("KINLINK_TEST_UNSET_SECRET".into()))
        );
        assert!(!format!("{:?}", SigningSecret::parse(OLD)).contains("MfKQ"));
    }
}
