//! Sealing personal data for crypto-shredding, on a real store: a sealed event holds no
//! personal value in the clear and opens to the original; sealing twice changes nothing; once
//! a key is erased its values open as erased and every other value still opens; a data key
//! wrapped under a master key the process lacks is named, not guessed at; a tampered value
//! is refused.

use kinlink_eventlog::sealing::{self, slot_key};
use kinlink_eventlog::{Envelope, Error, MasterKeys, Sealer};
use kinlink_proto::v1;
use kinlink_store::Store;
use kinlink_test_kit::TestResult;
use prost::Message;

fn referral() -> v1::ReferralReceived {
    let person = |given: &str, postcode: &str| v1::Person {
        given_name: given.to_owned(),
        family_name: "Qerimi".to_owned(),
        locations: vec![v1::Location {
            postcode: postcode.to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    };
    v1::ReferralReceived {
        referral_id: "r-seal".to_owned(),
        subject: Some(person("Drita", "ME1 1AA")),
        dependants: vec![
            v1::Dependant {
                person: Some(person("Besa", "CT1 2BB")),
                ..Default::default()
            },
            v1::Dependant {
                person: Some(person("Luan", "CT1 2BB")),
                ..Default::default()
            },
        ],
        concern: "a free-text account".to_owned(),
        ..Default::default()
    }
}

fn envelope(event: &v1::ReferralReceived) -> Envelope {
    Envelope::new("e-1".into(), "/test", "r-seal", "r-seal", 0, event)
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test]
async fn sealed_values_open_until_their_key_is_erased() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-sealing-{}", std::process::id()));
    let store = Store::open_embedded(&dir).await?;
    let sealer = Sealer::new(MasterKeys::new([1; 32], vec![]));
    let original = referral();
    let mut sealed = envelope(&original);
    let mut tx = store.begin().await?;
    sealer.seal(&mut tx, &mut sealed).await?;
    for text in ["Drita", "Besa", "Luan", "Qerimi", "CT1 2BB", "free-text"] {
        assert!(!holds(&sealed.data, text), "{text} left in the clear");
    }
    // Sealing again changes nothing (dead letters and replays re-enter the log sealed).
    let mut again = sealed.clone();
    sealer.seal(&mut tx, &mut again).await?;
    assert_eq!(again.data, sealed.data);

    let mut opened = sealed.clone();
    sealer.open(&mut tx, &mut opened).await?;
    assert_eq!(opened.decode::<v1::ReferralReceived>()?, original);

    // Erase Besa (dependant 0): her details open as erased, the others' still open.
    let erased = sealing::erase_keys(&mut tx, &[slot_key("r-seal", 2, 0)]).await?;
    assert_eq!(erased, 1);
    let mut after = sealed.clone();
    sealer.open(&mut tx, &mut after).await?;
    let after: v1::ReferralReceived = after.decode()?;
    assert_eq!(
        after.dependants[0].person,
        Some(v1::Person {
            erased: true,
            ..Default::default()
        })
    );
    assert_eq!(after.dependants[1].person, original.dependants[1].person);
    assert_eq!(after.subject, original.subject);
    assert_eq!(after.concern, original.concern);
    // Her erased key is a tombstone: a later event naming her again (a replay, an update in
    // flight) cannot make a new key under it, and drops her details instead of sealing them.
    let mut later = envelope(&original);
    sealer.seal(&mut tx, &mut later).await?;
    assert!(!holds(&later.data, "Besa"));
    let later: v1::ReferralReceived = later.decode()?;
    assert_eq!(
        later.dependants[0].person,
        Some(v1::Person {
            erased: true,
            ..Default::default()
        })
    );
    assert!(!sealing::key_exists(&mut tx, &slot_key("r-seal", 2, 0)).await?);
    assert!(sealing::key_exists(&mut tx, &slot_key("r-seal", 2, 1)).await?);

    // Another master key cannot open the data keys, and says which one it needs.
    let stranger = Sealer::new(MasterKeys::new([2; 32], vec![]));
    let mut foreign = sealed.clone();
    match stranger.open(&mut tx, &mut foreign).await {
        Err(Error::MasterKeyMissing { master_key, .. }) => {
            assert_eq!(master_key, sealing::fingerprint(&[1; 32]));
        }
        other => panic!("expected MasterKeyMissing, got {other:?}"),
    }
    // After a rotation the old key, listed as previous, still opens them.
    let rotated = Sealer::new(MasterKeys::new([2; 32], vec![[1; 32]]));
    let mut reopened = sealed.clone();
    rotated.open(&mut tx, &mut reopened).await?;
    assert_eq!(
        reopened.decode::<v1::ReferralReceived>()?.subject,
        original.subject
    );

    // A tampered value is refused rather than opened wrong.
    let mut event: v1::ReferralReceived = sealed.decode()?;
    if let Some(sealed_subject) = event.subject.as_mut().and_then(|s| s.sealed.as_mut()) {
        sealed_subject.ciphertext[0] ^= 1;
    }
    let mut tampered = sealed.clone();
    tampered.data = event.encode_to_vec();
    assert!(matches!(
        sealer.open(&mut tx, &mut tampered).await,
        Err(Error::Sealing(_))
    ));
    drop(tx);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn a_rotation_rewraps_every_data_key_under_the_new_master_key() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-rotation-{}", std::process::id()));
    let store = Store::open_embedded(&dir).await?;
    let (old, new) = ([3; 32], [4; 32]);
    let before = Sealer::new(MasterKeys::new(old, vec![]));
    let mut sealed = envelope(&referral());
    let mut tx = store.begin().await?;
    before.seal(&mut tx, &mut sealed).await?;
    // Three people and the free text: four data keys under the old master key.
    let counts = sealing::keys_by_master(&mut tx).await?;
    assert_eq!(counts, vec![(sealing::fingerprint(&old), 4)]);

    let rotating = MasterKeys::new(new, vec![old]);
    let mut total = 0;
    loop {
        let done = sealing::rewrap_keys(&mut tx, &rotating, 3).await?;
        if done == 0 {
            break;
        }
        total += done;
    }
    assert_eq!(total, 4);
    assert_eq!(
        sealing::keys_by_master(&mut tx).await?,
        vec![(sealing::fingerprint(&new), 4)]
    );
    // The old master key can go: the new one alone opens everything sealed before.
    let after = Sealer::new(MasterKeys::new(new, vec![]));
    let mut opened = sealed.clone();
    after.open(&mut tx, &mut opened).await?;
    assert_eq!(opened.decode::<v1::ReferralReceived>()?, referral());
    drop(tx);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn follow_ups_seal_where_the_child_was_seen() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-followups-{}", std::process::id()));
    let store = Store::open_embedded(&dir).await?;
    let sealer = Sealer::new(MasterKeys::new([5; 32], vec![]));
    let missing = v1::MissingEpisodeReported {
        referral_id: "r-missing".to_owned(),
        subject: Some(v1::SubjectRef {
            target: Some(v1::subject_ref::Target::DependantIndex(1)),
        }),
        last_seen: Some(v1::Location {
            postcode: "ZZ9 9ZZ".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut sealed = Envelope::new("e-m".into(), "/test", "r-missing", "r-missing", 0, &missing);
    let mut tx = store.begin().await?;
    sealer.seal(&mut tx, &mut sealed).await?;
    assert!(!holds(&sealed.data, "ZZ9 9ZZ"));
    let mut opened = sealed.clone();
    sealer.open(&mut tx, &mut opened).await?;
    assert_eq!(opened.decode::<v1::MissingEpisodeReported>()?, missing);
    // Sealed under the child's slot on that referral: erasing it loses the place.
    sealing::erase_keys(&mut tx, &[slot_key("r-missing", 2, 1)]).await?;
    let mut after = sealed.clone();
    sealer.open(&mut tx, &mut after).await?;
    assert_eq!(
        after.decode::<v1::MissingEpisodeReported>()?.last_seen,
        None
    );
    drop(tx);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
