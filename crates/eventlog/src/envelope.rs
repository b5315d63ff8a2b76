//! The CloudEvents 1.0 envelope every kinlink event travels in.
//!
//! On Kafka the envelope uses the binary content mode of the CloudEvents Kafka binding: the
//! attributes are `ce_*` headers, `content-type` is `application/protobuf` and the message
//! value is the protobuf-encoded event. The embedded log stores the same attributes in columns.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use prost::{Message, Name};
use uuid::Uuid;

use crate::Error;

/// CloudEvents `specversion`.
pub const SPEC_VERSION: &str = "1.0";
/// `datacontenttype` of every kinlink event.
pub const CONTENT_TYPE: &str = "application/protobuf";
/// Namespace for event ids derived from other ids, so a replay derives the same ids.
/// Extension attribute carrying the W3C trace context (CloudEvents distributed tracing).
pub const TRACEPARENT: &str = "traceparent";
/// Extension attribute set on dead letters: why the stage rejected the event.
pub const DLQ_REASON: &str = "kinlinkdlqreason";
/// Extension attribute set on dead letters: the stage that rejected the event.
pub const DLQ_STAGE: &str = "kinlinkdlqstage";

/// One event with its CloudEvents attributes. `data` is the protobuf encoding of the message
/// named by `event_type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `id`: unique per event, and the same on every retry or replay of it.
    pub id: String,
    /// `source`: the service that produced the event, e.g. `/kinlink/intake`.
    pub source: String,
    /// `type`: the protobuf full name, e.g. `kinlink.v1.ReferralReceived`.
    pub event_type: String,
    /// `subject`: the id of the case the event is about (referral or alert id). Never personal data.
    pub subject: String,
    /// `time` in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// `partitionkey` (CloudEvents partitioning extension): events with one key stay in order.
    pub partition_key: String,
    /// Further extension attributes (`traceparent`, dead-letter reasons).
    pub extensions: BTreeMap<String, String>,
    /// The protobuf-encoded event.
    pub data: Vec<u8>,
}

impl Envelope {
    /// Wraps a new event that starts a trace (an intake event).
    pub fn new<M: Message + Name>(
        id: String,
        source: &str,
        subject: &str,
        partition_key: &str,
        time_ms: i64,
        message: &M,
    ) -> Self {
        let mut extensions = BTreeMap::new();
        extensions.insert(TRACEPARENT.to_owned(), new_traceparent());
        Self {
            id,
            source: source.to_owned(),
            event_type: M::full_name(),
            subject: subject.to_owned(),
            time_ms,
            partition_key: partition_key.to_owned(),
            extensions,
            data: message.encode_to_vec(),
        }
    }

    /// Wraps an event caused by this one. Its id is derived from this event's id and
    /// `discriminator`, so processing the same input again yields the same output ids, and
    /// the trace continues with a child span.
    pub fn derive<M: Message + Name>(
        &self,
        discriminator: &str,
        source: &str,
        subject: &str,
        partition_key: &str,
        time_ms: i64,
        message: &M,
    ) -> Self {
        let id = derive_id(&self.id, discriminator);
        let mut extensions = BTreeMap::new();
        if let Some(parent) = self.extensions.get(TRACEPARENT) {
            extensions.insert(TRACEPARENT.to_owned(), child_traceparent(parent, &id));
        }
        Self {
            id,
            source: source.to_owned(),
            event_type: M::full_name(),
            subject: subject.to_owned(),
            time_ms,
            partition_key: partition_key.to_owned(),
            extensions,
            data: message.encode_to_vec(),
        }
    }

    /// Decodes the payload as `M`, checking the `type` attribute first.
    pub fn decode<M: Message + Name + Default>(&self) -> Result<M, Error> {
        if self.event_type != M::full_name() {
            return Err(Error::UnexpectedType {
                expected: M::full_name(),
                found: self.event_type.clone(),
            });
        }
        M::decode(self.data.as_slice()).map_err(|source| Error::Decode {
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// `time` as an RFC 3339 string.
    pub fn time_rfc3339(&self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.time_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The Kafka headers of binary content mode.
    pub fn kafka_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut headers = vec![
            (
                "ce_specversion".to_owned(),
                SPEC_VERSION.as_bytes().to_vec(),
            ),
            ("ce_id".to_owned(), self.id.clone().into_bytes()),
            ("ce_source".to_owned(), self.source.clone().into_bytes()),
            ("ce_type".to_owned(), self.event_type.clone().into_bytes()),
            ("ce_subject".to_owned(), self.subject.clone().into_bytes()),
            ("ce_time".to_owned(), self.time_rfc3339().into_bytes()),
            (
                "ce_partitionkey".to_owned(),
                self.partition_key.clone().into_bytes(),
            ),
            ("content-type".to_owned(), CONTENT_TYPE.as_bytes().to_vec()),
        ];
        for (name, value) in &self.extensions {
            headers.push((format!("ce_{name}"), value.clone().into_bytes()));
        }
        // Plain W3C header too, for tracing tools that do not know CloudEvents.
        if let Some(traceparent) = self.extensions.get(TRACEPARENT) {
            headers.push((TRACEPARENT.to_owned(), traceparent.clone().into_bytes()));
        }
        headers
    }

    /// Rebuilds an envelope from Kafka headers and value. Names the missing attribute on error.
    pub fn from_kafka<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        payload: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let mut attributes = BTreeMap::new();
        for (name, value) in headers {
            if let Some(attribute) = name.strip_prefix("ce_") {
                let value = value.unwrap_or_default();
                let text = std::str::from_utf8(value).map_err(|_| Error::BadAttribute {
                    attribute: attribute.to_owned(),
                })?;
                attributes.insert(attribute.to_owned(), text.to_owned());
            }
        }
        let mut take = |name: &str| {
            attributes
                .remove(name)
                .ok_or_else(|| Error::MissingAttribute {
                    attribute: name.to_owned(),
                })
        };
        let spec = take("specversion")?;
        if spec != SPEC_VERSION {
            return Err(Error::BadAttribute {
                attribute: "specversion".to_owned(),
            });
        }
        let id = take("id")?;
        let source = take("source")?;
        let event_type = take("type")?;
        let subject = take("subject")?;
        let time = take("time")?;
        let partition_key = take("partitionkey")?;
        let time_ms = DateTime::parse_from_rfc3339(&time)
            .map_err(|_| Error::BadAttribute {
                attribute: "time".to_owned(),
            })?
            .timestamp_millis();
        Ok(Self {
            id,
            source,
            event_type,
            subject,
            time_ms,
            partition_key,
            extensions: attributes,
            data: payload.unwrap_or_default().to_vec(),
        })
    }

    /// The extensions as JSON, for the embedded log's `attributes` column.
    pub(crate) fn extensions_json(&self) -> String {
        serde_json::to_string(&self.extensions).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Derives a stable event id from a parent id and a discriminator (UUID v5); the rule lives
/// with the event contracts so pure code can derive ids too.
pub use kinlink_proto::derive_id;

/// A new W3C trace context with a random trace id, sampled.
pub fn new_traceparent() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let span = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// Keeps the trace id of `parent` and gives the child a span id derived from its event id.
fn child_traceparent(parent: &str, child_event_id: &str) -> String {
    let mut parts = parent.split('-');
    let (Some(version), Some(trace), Some(_span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return new_traceparent();
    };
    let span: String = child_event_id
        .chars()
        .filter(|c| *c != '-')
        .take(16)
        .collect();
    format!("{version}-{trace}-{span}-{flags}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinlink_proto::v1::AlertAcknowledged;

    fn sample() -> Envelope {
        let message = AlertAcknowledged {
            alert_id: "a1".into(),
            authority_code: "E10000016".into(),
            acknowledged_at: None,
        };
        Envelope::new(
            "ev-1".into(),
            "/kinlink/test",
            "a1",
            "a1",
            1_700_000_000_123,
            &message,
        )
    }

    #[test]
    fn kafka_headers_round_trip() -> Result<(), Error> {
        let envelope = sample();
        let headers = envelope.kafka_headers();
        let back = Envelope::from_kafka(
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            Some(&envelope.data),
        )?;
        assert_eq!(back, envelope);
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == b"application/protobuf")
        );
        Ok(())
    }

    #[test]
    fn missing_attribute_is_named() {
        let envelope = sample();
        let headers: Vec<_> = envelope
            .kafka_headers()
            .into_iter()
            .filter(|(k, _)| k != "ce_subject")
            .collect();
        let err = Envelope::from_kafka(
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            Some(&envelope.data),
        )
        .err();
        assert!(
            matches!(err, Some(Error::MissingAttribute { attribute }) if attribute == "subject")
        );
    }

    #[test]
    fn derived_ids_are_stable_and_keep_the_trace() {
        let parent = sample();
        let message = AlertAcknowledged::default();
        let a = parent.derive("x", "/s", "sub", "k", 1, &message);
        let b = parent.derive("x", "/s", "sub", "k", 2, &message);
        let c = parent.derive("y", "/s", "sub", "k", 1, &message);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let trace = |e: &Envelope| {
            e.extensions[TRACEPARENT]
                .split('-')
                .nth(1)
                .map(str::to_owned)
        };
        assert_eq!(trace(&a), trace(&parent));
        assert_ne!(a.extensions[TRACEPARENT], parent.extensions[TRACEPARENT]);
    }

    #[test]
    fn decode_checks_the_type() {
        let envelope = sample();
        assert!(
            envelope
                .decode::<kinlink_proto::v1::AlertResolved>()
                .is_err()
        );
        assert!(envelope.decode::<AlertAcknowledged>().is_ok());
    }
}
