//! Crypto-shredding: personal data in the log is sealed with per-person data keys, so that
//! erasing a person is deleting their keys, and every copy of their events (the embedded log,
//! Kafka topics and their replicas, dead-letter topics, backups) becomes unreadable at once.
//!
//! Which key seals what (key ids name the data subject, never personal data):
//! - `slot:<referral>:<role>:<index>`: a person as one referral describes them (the subject is
//!   role 1 index 0, dependant `i` is role 2 index `i`). Used by `ReferralReceived` and
//!   `ReferralEnriched` (the person and their locations).
//! - `person:<referral>:<person>`: a child in an alert (`AlertRaised` sections and the missing
//!   episode's last-seen location), once the enricher has given the child a person id.
//! - `referral:<referral>`: the referrer's free text, which is about the whole case.
//!
//! Data keys are random 256-bit AES-GCM keys, stored in `data_keys` wrapped (AES-256-GCM)
//! under the master key from settings, whose fingerprint is kept beside each key so a rotated
//! master key can still open older ones. Each seal uses a fresh random nonce, and the key id is
//! the associated data, so a sealed value moved under another key id fails to open.
//!
//! Sealing happens where events enter the log ([`crate::EventLog::append_in`] and
//! [`crate::EventLog::publish`]), opening where a stage receives one (the runner): stages see
//! plain events and need not know. Sealing is idempotent (a sealed value is left alone), so a
//! dead letter or a replay re-entering the log is not sealed twice. A value whose key is gone
//! opens as erased: the fields stay empty and `Person.erased` is set.

use std::collections::HashMap;

use prost::{Message, Name};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use kinlink_proto::v1;

use crate::{Envelope, Error, Result};

/// A 256-bit master key, and the ones it replaced (still able to open older data keys).
#[derive(Clone)]
pub struct MasterKeys {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("current", &fingerprint(&self.current))
            .field(
                "previous",
                &self.previous.iter().map(fingerprint).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A key's public name: the first 16 hex digits of its SHA-256.
pub fn fingerprint(key: &[u8; 32]) -> String {
    Sha256::digest(key)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl MasterKeys {
    pub fn new(current: [u8; 32], previous: Vec<[u8; 32]>) -> Self {
        Self { current, previous }
    }

    /// Fingerprint of the key new data keys are wrapped under.
    pub fn current_fingerprint(&self) -> String {
        fingerprint(&self.current)
    }

    /// A fresh random key (for a new embedded data directory's key file).
    pub fn generate() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    }

    /// Whether this fingerprint is one of the configured keys.
    pub fn knows(&self, wanted: &str) -> bool {
        self.by_fingerprint(wanted).is_some()
    }

    fn by_fingerprint(&self, wanted: &str) -> Option<&[u8; 32]> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| fingerprint(key) == wanted)
    }
}

fn aead(key: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Sealing("cannot use key".to_owned()))
}

fn encrypt(key: &[u8; 32], aad: &str, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut data = plain.to_vec();
    aead(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut data,
        )
        .map_err(|_| Error::Sealing("encryption failed".to_owned()))?;
    Ok((nonce.to_vec(), data))
}

fn decrypt(key: &[u8; 32], aad: &str, nonce: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = sealed.to_vec();
    let plain = aead(key)
        .ok()?
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
        .ok()?;
    Some(plain.to_vec())
}

/// Whether events of this type carry personal data to seal.
pub fn carries_personal_data(event_type: &str) -> bool {
    event_type == v1::ReferralReceived::full_name()
        || event_type == v1::ReferralEnriched::full_name()
        || event_type == v1::AlertRaised::full_name()
        || event_type == v1::AgeAssessmentRecorded::full_name()
        || event_type == v1::MissingEpisodeReported::full_name()
        || event_type == v1::FoundEpisodeReported::full_name()
}

/// The key of the person a follow-up is about.
fn subject_key(referral_id: &str, subject: Option<&v1::SubjectRef>) -> String {
    use v1::subject_ref::Target;
    match subject.and_then(|s| s.target.as_ref()) {
        Some(Target::DependantIndex(index)) => slot_key(referral_id, DEPENDANT, *index),
        Some(Target::PersonId(person)) => person_key(referral_id, person),
        Some(Target::ReferralSubject(_)) | None => slot_key(referral_id, SUBJECT, 0),
    }
}

/// Seals and opens events' personal data. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sealer {
    master: MasterKeys,
}

/// A data key as the store has it.
enum Stored {
    Live([u8; 32]),
    /// Erased: a tombstone.
    Erased,
    Missing,
}

/// Data keys looked up or made while sealing or opening one event. Never kept longer: a key
/// erased by another process must stop opening anything at once.
#[derive(Default)]
struct Keys {
    map: HashMap<String, Option<[u8; 32]>>,
    /// The event is a referral's first appearance in the log, whose keys are new.
    likely_new: bool,
}

impl Sealer {
    pub fn new(master: MasterKeys) -> Self {
        Self { master }
    }

    /// The master keys this sealer wraps and opens data keys with.
    pub fn master_keys(&self) -> &MasterKeys {
        &self.master
    }

    /// The data key `key_id`, made (and stored, in the caller's transaction) if it never
    /// existed and `create`; `None` when it was erased (a tombstone is never replaced by a
    /// new key), or never made and not `create`.
    async fn key(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        key_id: &str,
        create: bool,
    ) -> Result<Option<[u8; 32]>> {
        if let Some(known) = keys.map.get(key_id) {
            return Ok(*known);
        }
        // A new referral's keys never exist yet: insert first (one statement instead of
        // three); later events mostly find theirs.
        let mut state = if create && keys.likely_new {
            Stored::Missing
        } else {
            self.load(conn, key_id).await?
        };
        if matches!(state, Stored::Missing) && create {
            let key = MasterKeys::generate();
            let (nonce, wrapped) = encrypt(&self.master.current, key_id, &key)?;
            let mut blob = nonce;
            blob.extend(wrapped);
            let inserted = sqlx::query(
                "INSERT INTO data_keys (key_id, referral_id, master_key, wrapped, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(key_id)
            .bind(referral_of(key_id))
            .bind(fingerprint(&self.master.current))
            .bind(blob)
            .bind(kinlink_store::now_millis())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            state = if inserted == 1 {
                Stored::Live(key)
            } else {
                // Another writer made it first, or it is a tombstone: use what is stored.
                self.load(conn, key_id).await?
            };
        }
        let found = match state {
            Stored::Live(key) => Some(key),
            Stored::Missing | Stored::Erased => None,
        };
        keys.map.insert(key_id.to_owned(), found);
        Ok(found)
    }

    async fn load(&self, conn: &mut AnyConnection, key_id: &str) -> Result<Stored> {
        let Some(row) = sqlx::query(
            "SELECT master_key, wrapped, erased_at_ms FROM data_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(Stored::Missing);
        };
        if row.try_get::<Option<i64>, _>("erased_at_ms")?.is_some() {
            return Ok(Stored::Erased);
        }
        let master_id: String = row.try_get("master_key")?;
        let blob: Vec<u8> = row.try_get("wrapped")?;
        let master =
            self.master
                .by_fingerprint(&master_id)
                .ok_or_else(|| Error::MasterKeyMissing {
                    key_id: key_id.to_owned(),
                    master_key: master_id.clone(),
                })?;
        if blob.len() < NONCE_LEN {
            return Err(Error::Sealing(format!("data key {key_id} is malformed")));
        }
        let (nonce, wrapped) = blob.split_at(NONCE_LEN);
        let plain = decrypt(master, key_id, nonce, wrapped)
            .ok_or_else(|| Error::Sealing(format!("data key {key_id} does not open")))?;
        let key: [u8; 32] = plain
            .try_into()
            .map_err(|_| Error::Sealing(format!("data key {key_id} is malformed")))?;
        Ok(Stored::Live(key))
    }

    /// The value sealed, or `None` when its key was erased: the value must then be dropped,
    /// never stored in the clear nor under a new key.
    async fn seal_value<M: Message>(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        key_id: &str,
        value: &M,
    ) -> Result<Option<v1::Sealed>> {
        let Some(key) = self.key(conn, keys, key_id, true).await? else {
            return Ok(None);
        };
        let (nonce, ciphertext) = encrypt(&key, key_id, &value.encode_to_vec())?;
        Ok(Some(v1::Sealed {
            key_id: key_id.to_owned(),
            nonce,
            ciphertext,
        }))
    }

    /// The sealed value, or `None` when its key was erased.
    async fn open_value<M: Message + Default>(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        sealed: &v1::Sealed,
    ) -> Result<Option<M>> {
        let Some(key) = self.key(conn, keys, &sealed.key_id, false).await? else {
            return Ok(None);
        };
        let plain =
            decrypt(&key, &sealed.key_id, &sealed.nonce, &sealed.ciphertext).ok_or_else(|| {
                Error::Sealing(format!("a value under {} does not open", sealed.key_id))
            })?;
        M::decode(plain.as_slice()).map(Some).map_err(|e| {
            Error::Sealing(format!("a value under {} is malformed: {e}", sealed.key_id))
        })
    }

    /// Seals an optional field into its sealed twin (left alone once sealed).
    async fn seal_field<M: Message>(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        key_id: &str,
        field: &mut Option<M>,
        sealed: &mut Option<v1::Sealed>,
    ) -> Result<()> {
        if sealed.is_none()
            && let Some(value) = field.take()
        {
            *sealed = self.seal_value(conn, keys, key_id, &value).await?;
        }
        Ok(())
    }

    /// Opens a sealed twin back into its field (empty when the key was erased).
    async fn open_field<M: Message + Default>(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        field: &mut Option<M>,
        sealed: &mut Option<v1::Sealed>,
    ) -> Result<()> {
        if let Some(value) = sealed.take() {
            *field = self.open_value(conn, keys, &value).await?;
        }
        Ok(())
    }

    async fn seal_person(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        key_id: &str,
        person: &mut v1::Person,
    ) -> Result<()> {
        if person.sealed.is_some() || person.erased {
            return Ok(());
        }
        let sealed = self.seal_value(conn, keys, key_id, &*person).await?;
        *person = v1::Person {
            erased: sealed.is_none(),
            sealed,
            ..Default::default()
        };
        Ok(())
    }

    async fn open_person(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        person: &mut v1::Person,
    ) -> Result<()> {
        let Some(sealed) = person.sealed.take() else {
            return Ok(());
        };
        match self.open_value::<v1::Person>(conn, keys, &sealed).await? {
            Some(opened) => *person = opened,
            None => {
                *person = v1::Person {
                    erased: true,
                    ..Default::default()
                }
            }
        }
        Ok(())
    }

    async fn seal_text(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        key_id: &str,
        text: &mut String,
        sealed: &mut Option<v1::Sealed>,
    ) -> Result<()> {
        if text.is_empty() || sealed.is_some() {
            return Ok(());
        }
        let value = std::mem::take(text);
        *sealed = self.seal_value(conn, keys, key_id, &value).await?;
        Ok(())
    }

    async fn open_text(
        &self,
        conn: &mut AnyConnection,
        keys: &mut Keys,
        text: &mut String,
        sealed: &mut Option<v1::Sealed>,
    ) -> Result<()> {
        let Some(value) = sealed.take() else {
            return Ok(());
        };
        if let Some(opened) = self.open_value::<String>(conn, keys, &value).await? {
            *text = opened;
        }
        Ok(())
    }

    /// Seals the personal data of `envelope` in place (events without any are left alone).
    pub async fn seal(&self, conn: &mut AnyConnection, envelope: &mut Envelope) -> Result<()> {
        let keys = &mut Keys::default();
        let t = envelope.event_type.as_str();
        if t == v1::ReferralReceived::full_name() {
            let mut event: v1::ReferralReceived = envelope.decode()?;
            keys.likely_new = event.version <= 1;
            let rid = event.referral_id.clone();
            if let Some(subject) = event.subject.as_mut() {
                self.seal_person(conn, keys, &slot_key(&rid, SUBJECT, 0), subject)
                    .await?;
            }
            for (index, dependant) in event.dependants.iter_mut().enumerate() {
                if let Some(person) = dependant.person.as_mut() {
                    self.seal_person(conn, keys, &slot_key(&rid, DEPENDANT, index as u32), person)
                        .await?;
                }
            }
            self.seal_text(
                conn,
                keys,
                &referral_key(&rid),
                &mut event.concern,
                &mut event.sealed_concern,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::ReferralEnriched::full_name() {
            let mut event: v1::ReferralEnriched = envelope.decode()?;
            let rid = event.referral_id.clone();
            for subject in &mut event.subjects {
                let key_id = slot_key(&rid, subject.role, subject.dependant_index);
                if let Some(person) = subject.person.as_mut() {
                    self.seal_person(conn, keys, &key_id, person).await?;
                }
                if !subject.locations.is_empty() && subject.sealed_locations.is_none() {
                    let locations = v1::Person {
                        locations: std::mem::take(&mut subject.locations),
                        ..Default::default()
                    };
                    subject.sealed_locations =
                        self.seal_value(conn, keys, &key_id, &locations).await?;
                }
            }
            self.seal_text(
                conn,
                keys,
                &referral_key(&rid),
                &mut event.concern,
                &mut event.sealed_concern,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::AlertRaised::full_name() {
            let mut event: v1::AlertRaised = envelope.decode()?;
            let rid = event.referral_id.clone();
            for section in &mut event.sections {
                let key_id = person_key(&rid, &section.person_id);
                if let Some(child) = section.child.as_mut() {
                    self.seal_person(conn, keys, &key_id, child).await?;
                }
            }
            if let Some(episode) = event.missing_episode.as_mut() {
                let key_id = person_key(&rid, &event.person_id);
                self.seal_field(
                    conn,
                    keys,
                    &key_id,
                    &mut episode.last_seen,
                    &mut episode.sealed_last_seen,
                )
                .await?;
            }
            self.seal_text(
                conn,
                keys,
                &referral_key(&rid),
                &mut event.concern,
                &mut event.sealed_concern,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::AgeAssessmentRecorded::full_name() {
            let mut event: v1::AgeAssessmentRecorded = envelope.decode()?;
            let key_id = subject_key(&event.referral_id, event.subject.as_ref());
            self.seal_field(
                conn,
                keys,
                &key_id,
                &mut event.assessed_date_of_birth,
                &mut event.sealed_assessed_date_of_birth,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::MissingEpisodeReported::full_name() {
            let mut event: v1::MissingEpisodeReported = envelope.decode()?;
            let key_id = subject_key(&event.referral_id, event.subject.as_ref());
            self.seal_field(
                conn,
                keys,
                &key_id,
                &mut event.last_seen,
                &mut event.sealed_last_seen,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::FoundEpisodeReported::full_name() {
            let mut event: v1::FoundEpisodeReported = envelope.decode()?;
            let key_id = subject_key(&event.referral_id, event.subject.as_ref());
            self.seal_field(
                conn,
                keys,
                &key_id,
                &mut event.found_location,
                &mut event.sealed_found_location,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        }
        Ok(())
    }

    /// Opens what [`Sealer::seal`] sealed; values whose key was erased stay empty.
    pub async fn open(&self, conn: &mut AnyConnection, envelope: &mut Envelope) -> Result<()> {
        let keys = &mut Keys::default();
        let t = envelope.event_type.as_str();
        if t == v1::ReferralReceived::full_name() {
            let mut event: v1::ReferralReceived = envelope.decode()?;
            if let Some(subject) = event.subject.as_mut() {
                self.open_person(conn, keys, subject).await?;
            }
            for dependant in &mut event.dependants {
                if let Some(person) = dependant.person.as_mut() {
                    self.open_person(conn, keys, person).await?;
                }
            }
            self.open_text(conn, keys, &mut event.concern, &mut event.sealed_concern)
                .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::ReferralEnriched::full_name() {
            let mut event: v1::ReferralEnriched = envelope.decode()?;
            for subject in &mut event.subjects {
                if let Some(person) = subject.person.as_mut() {
                    self.open_person(conn, keys, person).await?;
                }
                if let Some(sealed) = subject.sealed_locations.take()
                    && let Some(holder) = self.open_value::<v1::Person>(conn, keys, &sealed).await?
                {
                    subject.locations = holder.locations;
                }
            }
            self.open_text(conn, keys, &mut event.concern, &mut event.sealed_concern)
                .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::AlertRaised::full_name() {
            let mut event: v1::AlertRaised = envelope.decode()?;
            for section in &mut event.sections {
                if let Some(child) = section.child.as_mut() {
                    self.open_person(conn, keys, child).await?;
                }
            }
            if let Some(episode) = event.missing_episode.as_mut() {
                self.open_field(
                    conn,
                    keys,
                    &mut episode.last_seen,
                    &mut episode.sealed_last_seen,
                )
                .await?;
            }
            self.open_text(conn, keys, &mut event.concern, &mut event.sealed_concern)
                .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::AgeAssessmentRecorded::full_name() {
            let mut event: v1::AgeAssessmentRecorded = envelope.decode()?;
            self.open_field(
                conn,
                keys,
                &mut event.assessed_date_of_birth,
                &mut event.sealed_assessed_date_of_birth,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::MissingEpisodeReported::full_name() {
            let mut event: v1::MissingEpisodeReported = envelope.decode()?;
            self.open_field(
                conn,
                keys,
                &mut event.last_seen,
                &mut event.sealed_last_seen,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        } else if t == v1::FoundEpisodeReported::full_name() {
            let mut event: v1::FoundEpisodeReported = envelope.decode()?;
            self.open_field(
                conn,
                keys,
                &mut event.found_location,
                &mut event.sealed_found_location,
            )
            .await?;
            envelope.data = event.encode_to_vec();
        }
        Ok(())
    }
}

const SUBJECT: i32 = v1::SubjectRole::ReferralSubject as i32;
const DEPENDANT: i32 = v1::SubjectRole::Dependant as i32;

/// The key of a person as one referral describes them.
pub fn slot_key(referral_id: &str, role: i32, index: u32) -> String {
    format!("slot:{referral_id}:{role}:{index}")
}

/// The key of a child in the alerts of one referral.
pub fn person_key(referral_id: &str, person_id: &str) -> String {
    format!("person:{referral_id}:{person_id}")
}

/// The key of a referral's free text.
pub fn referral_key(referral_id: &str) -> String {
    format!("referral:{referral_id}")
}

fn referral_of(key_id: &str) -> &str {
    key_id.split(':').nth(1).unwrap_or_default()
}

/// Erases data keys: each becomes a tombstone (its wrapped key gone), and ids that were
/// never used get one too, so no key can be made under them later. Returns how many live
/// keys were erased. The one writer of `data_keys` besides [`Sealer`].
pub async fn erase_keys(conn: &mut AnyConnection, key_ids: &[String]) -> Result<u64> {
    let now = kinlink_store::now_millis();
    let mut erased = 0;
    for key_id in key_ids {
        erased += sqlx::query(
            "UPDATE data_keys SET master_key = '', wrapped = $1, erased_at_ms = $2 \
             WHERE key_id = $3 AND erased_at_ms IS NULL",
        )
        .bind(Vec::<u8>::new())
        .bind(now)
        .bind(key_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO data_keys (key_id, referral_id, master_key, wrapped, created_at_ms, erased_at_ms) \
             VALUES ($1, $2, '', $3, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(key_id)
        .bind(referral_of(key_id))
        .bind(Vec::<u8>::new())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(erased)
}

/// Deletes every data key of a referral (retention). Returns how many there were.
pub async fn erase_referral_keys(conn: &mut AnyConnection, referral_id: &str) -> Result<u64> {
    let erased = sqlx::query(
        "UPDATE data_keys SET master_key = '', wrapped = $1, erased_at_ms = $2 \
         WHERE referral_id = $3 AND erased_at_ms IS NULL",
    )
    .bind(Vec::<u8>::new())
    .bind(kinlink_store::now_millis())
    .bind(referral_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // The referral's free text can never be sealed again either.
    erase_keys(conn, &[referral_key(referral_id)]).await?;
    Ok(erased)
}

/// Whether data key `key_id` exists and has not been erased.
pub async fn key_exists(conn: &mut AnyConnection, key_id: &str) -> Result<bool> {
    Ok(
        sqlx::query(
            "SELECT 1 AS present FROM data_keys WHERE key_id = $1 AND erased_at_ms IS NULL",
        )
        .bind(key_id)
        .fetch_optional(conn)
        .await?
        .is_some(),
    )
}

/// After a master key rotation: re-wraps up to `batch` data keys still wrapped under an older
/// master key with the current one, in the caller's transaction. Returns how many were
/// re-wrapped (0: none left), so the caller commits batch by batch. The data keys themselves
/// do not change, so nothing sealed needs touching.
pub async fn rewrap_keys(conn: &mut AnyConnection, master: &MasterKeys, batch: i64) -> Result<u64> {
    let current = fingerprint(&master.current);
    let rows = sqlx::query(
        "SELECT key_id, master_key, wrapped FROM data_keys WHERE master_key <> $1 \
         AND erased_at_ms IS NULL ORDER BY key_id LIMIT $2",
    )
    .bind(&current)
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    let mut done = 0;
    for row in rows {
        let key_id: String = row.try_get("key_id")?;
        let old: String = row.try_get("master_key")?;
        let blob: Vec<u8> = row.try_get("wrapped")?;
        let old_key = master
            .by_fingerprint(&old)
            .ok_or_else(|| Error::MasterKeyMissing {
                key_id: key_id.clone(),
                master_key: old.clone(),
            })?;
        if blob.len() < NONCE_LEN {
            return Err(Error::Sealing(format!("data key {key_id} is malformed")));
        }
        let (nonce, wrapped) = blob.split_at(NONCE_LEN);
        let key = decrypt(old_key, &key_id, nonce, wrapped)
            .ok_or_else(|| Error::Sealing(format!("data key {key_id} does not open")))?;
        let (nonce, wrapped) = encrypt(&master.current, &key_id, &key)?;
        let mut blob = nonce;
        blob.extend(wrapped);
        sqlx::query("UPDATE data_keys SET master_key = $1, wrapped = $2 WHERE key_id = $3")
            .bind(&current)
            .bind(blob)
            .bind(&key_id)
            .execute(&mut *conn)
            .await?;
        done += 1;
    }
    Ok(done)
}

/// How many data keys each master key (by fingerprint) wraps.
pub async fn keys_by_master(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query(
        "SELECT master_key, COUNT(*) AS n FROM data_keys WHERE erased_at_ms IS NULL \
         GROUP BY master_key ORDER BY master_key",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("master_key")?, r.try_get("n")?)))
    .collect::<Result<_, sqlx::Error>>()?)
}
