//! Fixtures shared by the notifier's tests: Kent's endpoint settings and a worker on a test
//! clock.
#![allow(dead_code)] // Each test file uses the part it needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kinlink_eventlog::EventLog;
use kinlink_notifier::DeliveryWorker;
use kinlink_notifier::directory::Directory;
use kinlink_runtime::settings::{AuthorityEndpoint, NotifierSettings, OnCallSettings};
use kinlink_store::Store;
use prometheus_client::registry::Registry;

pub const KENT: &str = "E10000016";

/// Kent's webhook at `<base>/<primary>`, its secondary contact at `<base>/<secondary>` when
/// given, and on-call at `<base>/pagerduty` when `on_call`.
pub fn kent_settings(
    base: &str,
    primary: &str,
    secondary: Option<&str>,
    on_call: bool,
) -> NotifierSettings {
    NotifierSettings {
        authorities: vec![AuthorityEndpoint {
            code: KENT.into(),
            webhook_url: format!("{base}/{primary}"),
            signing_secrets: vec![],
            secondary_webhook_url: secondary.map(|path| format!("{base}/{path}")),
            full_payload: false,
            on_call_after_seconds: Some(1800),
            email: vec![],
            sms: vec![],
            email_via: Default::default(),
        }],
        on_call: if on_call {
            OnCallSettings {
                events_url: Some(format!("{base}/pagerduty")),
                routing_key: Some("key".into()),
            }
        } else {
            OnCallSettings::default()
        },
        ..NotifierSettings::default()
    }
}

/// A delivery worker reading the time from `clock` (milliseconds).
pub fn clocked_worker(
    store: &Store,
    log: &EventLog,
    directory: &Arc<Directory>,
    settings: &NotifierSettings,
    clock: &Arc<AtomicI64>,
) -> Result<DeliveryWorker, kinlink_notifier::Error> {
    let clock = clock.clone();
    Ok(DeliveryWorker::new(
        store.clone(),
        log.clone(),
        directory.clone(),
        settings,
        &mut Registry::default(),
    )?
    .with_clock(kinlink_store::Clock::from_fn(move || {
        clock.load(Ordering::SeqCst)
    })))
}
