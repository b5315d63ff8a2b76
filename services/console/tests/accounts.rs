//! Console accounts on the embedded store: passwords, lockout, reset, disable, and that
//! sessions end when an account changes.

use kinlink_console::accounts::{self, Role, SignInRefused};
use kinlink_console::sessions;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MINUTE: i64 = 60_000;

#[tokio::test]
async fn lockout_reset_and_disable() -> TestResult {
    let dir = std::env::temp_dir().join(format!("kinlink-accounts-{}", uuid::Uuid::new_v4()));
    let store = kinlink_store::Store::open_embedded(&dir).await?;
    let pw = "a long enough password";

    // Council staff need a real authority; kinlink staff none; passwords need 12 characters.
    assert!(
        accounts::create(&store, "x.y", "X", Role::Manager, "NOPE", Some(pw))
            .await
            .is_err()
    );
    assert!(
        accounts::create(&store, "x.y", "X", Role::Operator, "E10000016", Some(pw))
            .await
            .is_err()
    );
    assert!(
        accounts::create(&store, "x.y", "X", Role::Viewer, "E10000016", Some("short"))
            .await
            .is_err()
    );
    let user = accounts::create(
        &store,
        "kent.duty",
        "Kent duty",
        Role::Practitioner,
        "E10000016",
        Some(pw),
    )
    .await?;
    assert!(
        accounts::create(
            &store,
            "kent.duty",
            "Again",
            Role::Viewer,
            "E10000016",
            Some(pw)
        )
        .await
        .is_err(),
        "usernames are unique"
    );

    let check = |password: &'static str, now: i64| {
        let store = store.clone();
        async move { accounts::check_password(&store, "kent.duty", password, 3, 15 * MINUTE, now).await }
    };
    assert_eq!(
        check(pw, 0).await?.map(|u| u.user_id),
        Ok(user.user_id.clone())
    );
    // Three failures lock the account, even against the right password, until it expires.
    assert_eq!(
        check("wrong password!", 1).await?.err(),
        Some(SignInRefused::WrongCredentials)
    );
    assert_eq!(
        check("wrong password!", 2).await?.err(),
        Some(SignInRefused::WrongCredentials)
    );
    assert_eq!(
        check("wrong password!", 3).await?.err(),
        Some(SignInRefused::Locked)
    );
    assert_eq!(check(pw, 4).await?.err(), Some(SignInRefused::Locked));
    assert!(
        check(pw, 3 + 15 * MINUTE + 1).await?.is_ok(),
        "the lock expires"
    );

    // A reset unlocks and ends sessions; the old password no longer works.
    let secret = sessions::start(&store, &user, 10).await?;
    assert!(
        sessions::find(&store, &secret, 30 * MINUTE, 11)
            .await?
            .is_some()
    );
    accounts::reset(&store, "kent.duty", "another long password").await?;
    assert!(
        sessions::find(&store, &secret, 30 * MINUTE, 12)
            .await?
            .is_none()
    );
    assert!(check(pw, 13).await?.is_err());
    assert!(
        accounts::check_password(&store, "kent.duty", "another long password", 3, MINUTE, 14)
            .await?
            .is_ok()
    );

    // An idle session ends.
    let secret = sessions::start(&store, &user, 100).await?;
    assert!(
        sessions::find(&store, &secret, 30 * MINUTE, 100 + 30 * MINUTE + 1)
            .await?
            .is_none()
    );

    // Disabled: no sign-in, sessions gone.
    let secret = sessions::start(&store, &user, 200).await?;
    accounts::disable(&store, "kent.duty").await?;
    assert!(
        sessions::find(&store, &secret, 30 * MINUTE, 201)
            .await?
            .is_none()
    );
    assert_eq!(
        accounts::check_password(&store, "kent.duty", "another long password", 3, MINUTE, 202)
            .await?
            .err(),
        Some(SignInRefused::Disabled)
    );
    assert!(matches!(
        accounts::disable(&store, "nobody").await,
        Err(kinlink_console::Error::NoSuchUser)
    ));

    // An OpenID Connect-only account has no password that matches.
    accounts::create(
        &store,
        "sso@kent.example",
        "SSO",
        Role::Viewer,
        "E10000016",
        None,
    )
    .await?;
    assert!(
        accounts::check_password(&store, "sso@kent.example", "!", 3, MINUTE, 300)
            .await?
            .is_err()
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
