//! kinlink's event contracts, package `kinlink.v1`.
//!
//! The `.proto` files under `proto/kinlink/v1/` are the source of truth; `build.rs` compiles
//! them with protox (no system `protoc`) and prost. Every generated message implements
//! [`prost::Name`], so its full name (`kinlink.v1.ReferralReceived`) doubles as the CloudEvents
//! `type` attribute.
//!
//! [`wire_lock`] guards the wire format: the test `tests/wire_compat.rs` fails when a change
//! renumbers a field, changes its type or removes it without reserving its number.

/// Generated `kinlink.v1` messages.
#[allow(clippy::all, missing_debug_implementations)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/kinlink.v1.rs"));
}

pub mod wire_lock;

/// The compiled `FileDescriptorSet` of every `kinlink.v1` file (protobuf binary encoding).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kinlink_descriptor.bin"));

/// The protobuf timestamp type the contracts use.
pub use prost_types::Timestamp;

/// Converts milliseconds since the Unix epoch into a protobuf timestamp.
pub fn timestamp_from_millis(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// Converts a protobuf timestamp into milliseconds since the Unix epoch.
pub fn millis_from_timestamp(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos / 1_000_000))
}

/// Namespace of kinlink's derived ids.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b69_6e6c_696e_6b2d_6576_656e_7473_2d76);

/// Derives a stable id from a parent id and a discriminator (UUID v5). Events, alerts and
/// persons derive their ids from their cause, so a retried or replayed step reuses them.
pub fn derive_id(parent: &str, discriminator: &str) -> String {
    uuid::Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{parent}/{discriminator}").as_bytes(),
    )
    .to_string()
}

/// A stable 64-bit hash (FNV-1a) of `parts` in order: the same on every machine and in every
/// release, for choices that instances must agree on (embedded-log partitions, advisory-lock
/// ids). Not for security.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(stable_hash(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(&[b"foo", b"bar"]), stable_hash(&[b"foobar"]));
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(derive_id("a", "b"), derive_id("a", "b"));
        assert_ne!(derive_id("a", "b"), derive_id("a", "c"));
    }
}
