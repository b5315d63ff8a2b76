//! Fails when a change to `proto/kinlink/v1` breaks the published wire format.

use kinlink_proto::{FILE_DESCRIPTOR_SET, wire_lock};

const LOCK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wire.lock");

#[test]
fn contracts_keep_the_published_wire_format() -> Result<(), Box<dyn std::error::Error>> {
    let lock = std::fs::read_to_string(LOCK_PATH)?;
    let report = wire_lock::check(&lock, FILE_DESCRIPTOR_SET)?;
    assert!(
        report.breaking.is_empty(),
        "kinlink.v1 wire format broken:\n  {}",
        report.breaking.join("\n  ")
    );
    if report.lock_is_stale {
        if std::env::var_os("KINLINK_UPDATE_WIRE_LOCK").is_some() {
            std::fs::write(LOCK_PATH, wire_lock::render(FILE_DESCRIPTOR_SET)?)?;
        } else {
            panic!(
                "proto/wire.lock does not list every field yet; after an additive change run \
                 KINLINK_UPDATE_WIRE_LOCK=1 cargo test -p kinlink-proto and commit the lock"
            );
        }
    }
    Ok(())
}

#[test]
fn renumbering_retyping_and_unreserved_removal_are_caught() -> Result<(), Box<dyn std::error::Error>>
{
    let current = wire_lock::render(FILE_DESCRIPTOR_SET)?;
    let original = "field kinlink.v1.AlertRaised 1 alert_id String Optional -";
    assert!(
        current.contains(original),
        "fixture line missing from the rendered lock"
    );

    // A lock that says field 99 existed: the current contract dropped it without reserving it.
    let removed = format!("{current}field kinlink.v1.AlertRaised 99 old String Optional -\n");
    let report = wire_lock::check(&removed, FILE_DESCRIPTOR_SET)?;
    assert_eq!(report.breaking.len(), 1, "{:?}", report.breaking);

    // A lock that says field 1 was an int64: the current contract changed its type.
    let retyped = current.replace(
        original,
        "field kinlink.v1.AlertRaised 1 alert_id Int64 Optional -",
    );
    let report = wire_lock::check(&retyped, FILE_DESCRIPTOR_SET)?;
    assert_eq!(report.breaking.len(), 1, "{:?}", report.breaking);
    assert!(report.lock_is_stale);

    // A removed enum value.
    let enum_removed = format!("{current}enum kinlink.v1.Priority 7 PRIORITY_OLD\n");
    assert_eq!(
        wire_lock::check(&enum_removed, FILE_DESCRIPTOR_SET)?
            .breaking
            .len(),
        1
    );

    // The lock rendered from the contracts themselves is clean.
    let clean = wire_lock::check(&current, FILE_DESCRIPTOR_SET)?;
    assert_eq!(clean, wire_lock::Report::default());
    Ok(())
}
