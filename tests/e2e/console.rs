//! The web console in a real browser: Debian's Chromium driven through ChromeDriver
//! (WebDriver), against `kinlink up` on the embedded default. Council staff sign in, see their
//! own authority's alerts and nobody else's, acknowledge, decline a hand-off and resolve; a form
//! without its CSRF token changes nothing; an operator routes a triage item that the council
//! then sees; a reviewer merges a review pair and the next alert carries the merged history.
//! axe-core checks every page for WCAG 2.2 A/AA violations in the same browser, and the tests
//! write screenshots (to `KINLINK_SCREENSHOTS`, default `target/screenshots`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";
const PASSWORD: &str = "correct horse battery staple";

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> TestResult<Self> {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port()?;
        let child = std::process::Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start {binary} ({e}): install Debian's chromium and chromium-driver (.ci/run does)")
            })?;
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await
                && r.status().is_success()
            {
                return Ok(driver);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("chromedriver did not answer".into())
    }

    async fn browser(&self) -> TestResult<Browser> {
        let mut caps = serde_json::Map::new();
        let mut options = serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", "--lang=en-GB"]
        });
        if let Ok(chromium) = std::env::var("CHROMIUM") {
            options["binary"] = chromium.into();
        } else if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        caps.insert("goog:chromeOptions".into(), options);
        // ChromeDriver speaks plain HTTP on loopback: no TLS stack needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await?;
        Ok(Browser { client })
    }
}

struct Browser {
    client: Client,
}

/// The folder screenshots go to.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("KINLINK_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"))
}

impl Browser {
    async fn goto(&self, url: &str) -> TestResult {
        self.client.goto(url).await?;
        Ok(())
    }

    async fn text(&self, css: &str) -> TestResult<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    async fn exists(&self, css: &str) -> TestResult<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    async fn click(&self, css: &str) -> TestResult {
        self.client.find(Locator::Css(css)).await?.click().await?;
        Ok(())
    }

    /// Clicks something that loads a new page, and waits until the new page has replaced the
    /// old one (a click returns before the navigation it starts).
    async fn submit(&self, css: &str) -> TestResult {
        let old = self.client.find(Locator::Css("html")).await?;
        self.client.find(Locator::Css(css)).await?.click().await?;
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                let ready = self
                    .client
                    .execute("return document.readyState", vec![])
                    .await?;
                if ready == "complete" {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("clicking {css} loaded no new page").into())
    }

    async fn fill(&self, css: &str, value: &str) -> TestResult {
        let field = self.client.find(Locator::Css(css)).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    async fn title(&self) -> TestResult<String> {
        Ok(self.client.title().await?)
    }

    async fn sign_in(&self, base: &str, username: &str) -> TestResult {
        self.goto(&format!("{base}/console/sign-in")).await?;
        self.fill("#username", username).await?;
        self.fill("#password", PASSWORD).await?;
        self.submit("button[type=submit]").await?;
        Ok(())
    }

    async fn sign_out(&self) -> TestResult {
        self.submit(".moj-identity-bar form button").await
    }

    /// Runs axe-core on the page: no violation of WCAG 2.0, 2.1 or 2.2 at level A or AA.
    async fn assert_accessible(&self, page: &str) -> TestResult {
        let axe = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/assets/axe.min.js"),
        )?;
        self.client.execute(&axe, vec![]).await?;
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag', values:
                   ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa'] } })
                   .then(r => done({ violations: r.violations.map(v => v.id + ' (' + v.impact + '): '
                       + v.nodes.length + ' node(s): ' + v.nodes.map(n => n.target.join(' ')).join(', ')),
                     passes: r.passes.length }))
                   .catch(e => done({ error: String(e) }));",
                vec![],
            )
            .await?;
        assert!(
            result.get("error").is_none(),
            "axe failed on {page}: {result}"
        );
        let violations = result["violations"].as_array().cloned().unwrap_or_default();
        assert!(
            violations.is_empty(),
            "axe found WCAG 2.2 A/AA violations on {page}: {violations:#?}"
        );
        assert!(
            result["passes"].as_u64().unwrap_or(0) > 0,
            "axe checked nothing on {page}"
        );
        Ok(())
    }

    async fn screenshot(&self, name: &str) -> TestResult {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let png = self.client.screenshot().await?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// Reloads `url` until `css` matches (the pipeline is asynchronous).
    async fn wait_for(&self, url: &str, css: &str) -> TestResult {
        for _ in 0..120 {
            self.goto(url).await?;
            if self.exists(css).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("{css} never appeared on {url}").into())
    }
}

fn create_user(
    data: &Path,
    config: &Path,
    username: &str,
    role: &str,
    authority: &str,
) -> TestResult {
    let output = std::process::Command::new(kinlink_bin())
        .args(["users", "create", username, "--role", role, "--name"])
        .arg(format!("Test {username}"))
        .args([
            "--authority",
            authority,
            "--password-env",
            "TEST_PASSWORD",
            "--data-dir",
        ])
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("TEST_PASSWORD", PASSWORD)
        .output()?;
    if !output.status.success() {
        return Err(format!("users create failed: {output:?}").into());
    }
    Ok(())
}

async fn count(url: &str, sql: &str) -> TestResult<i64> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let n: i64 = sqlx::query(sql).fetch_one(&mut conn).await?.try_get(0)?;
    conn.close().await?;
    Ok(n)
}

fn person(given: &str, family: &str, dob: &str, postcode: &str) -> serde_json::Value {
    serde_json::json!({ "given_name": given, "family_name": family, "nationalities": ["AL"],
        "date_of_birth": { "value": dob, "precision": "exact" },
        "locations": [{ "role": "lives", "postcode": postcode }] })
}

fn family(
    reference: &str,
    adult: serde_json::Value,
    child: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({ "external_reference": reference, "subject": adult,
        "dependants": [{ "person": child, "relationship": "child", "with_subject": true }],
        "exploitation_types": ["labour"], "consent": "given" })
}

async fn referral_id(kinlink: &Kinlink, referral: &serde_json::Value) -> TestResult<String> {
    Ok(kinlink.post_referral(referral).await?["referral_id"]
        .as_str()
        .ok_or("no referral_id")?
        .to_owned())
}

#[tokio::test]
async fn council_operator_and_reviewer_work_in_the_browser() -> TestResult {
    sqlx::any::install_default_drivers();
    let dir = TempDir::new("e2e-console")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let base = kinlink.base_url.clone();
    let db = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    create_user(&data, &config, "kent.manager", "manager", KENT)?;
    create_user(
        &data,
        &config,
        "wm.practitioner",
        "practitioner",
        WESTMINSTER,
    )?;
    create_user(&data, &config, "ops", "operator", "")?;
    create_user(&data, &config, "reviewer", "reviewer", "")?;
    let driver = Driver::start().await?;
    let browser = driver.browser().await?;
    let outcome = scenario(&browser, &kinlink, &receiver, &base, &db).await;
    let _ = browser.client.close().await;
    kinlink.interrupt().await?;
    outcome
}

async fn scenario(
    browser: &Browser,
    kinlink: &Kinlink,
    receiver: &WebhookReceiver,
    base: &str,
    db: &str,
) -> TestResult {
    // A child who lives in Kent (Canterbury) and was found in Westminster: both are alerted,
    // and Kent is asked to take responsibility.
    let handoff = serde_json::json!({
        "subject": { "given_name": "Femi", "family_name": "Adeyemi", "date_of_birth": { "value": "1985-05-05" } },
        "dependants": [{ "relationship": "child", "person": { "given_name": "Tobi", "family_name": "Adeyemi",
            "claimed_age": 12, "locations": [
                { "role": "lives", "postcode": "CT1 2RR" }, { "role": "found", "postcode": "SW1A 2AA" }] } }],
        "urgency": "routine", "consent": "given", "concern": "Seen with an unrelated adult at night." });
    kinlink.post_referral(&handoff).await?;
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| r.len() >= 2)
        .await?;
    let alert_of = |code: &str| {
        received
            .iter()
            .find(|r| r.authority == code)
            .map(|r| r.webhook_id.clone())
            .ok_or(format!("no alert for {code}"))
    };
    let (kent_alert, westminster_alert) = (alert_of(KENT)?, alert_of(WESTMINSTER)?);

    // The sign-in page, and a wrong password.
    browser.goto(&format!("{base}/console/sign-in")).await?;
    browser.assert_accessible("sign-in").await?;
    browser.fill("#username", "kent.manager").await?;
    browser.fill("#password", "not the password").await?;
    browser.submit("button[type=submit]").await?;
    assert!(
        browser.exists(".govuk-error-summary").await?,
        "a wrong password is refused"
    );
    browser.assert_accessible("sign-in with an error").await?;

    // Kent's inbox has Kent's alert and not Westminster's.
    browser.sign_in(base, "kent.manager").await?;
    browser
        .wait_for(
            &format!("{base}/console/inbox"),
            &format!("tr[data-alert-id='{kent_alert}']"),
        )
        .await?;
    assert!(
        !browser
            .exists(&format!("tr[data-alert-id='{westminster_alert}']"))
            .await?
    );
    browser.assert_accessible("inbox").await?;
    browser.screenshot("inbox").await?;

    // Another authority's alert is a 404, and the attempt is audited.
    browser
        .goto(&format!("{base}/console/alerts/{westminster_alert}"))
        .await?;
    assert!(
        browser.title().await?.starts_with("Page not found"),
        "{}",
        browser.title().await?
    );
    browser.assert_accessible("not found").await?;
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'access_denied' AND actor = 'user:kent.manager'").await?,
        1
    );

    // Acknowledge.
    let kent_page = format!("{base}/console/alerts/{kent_alert}");
    browser.goto(&kent_page).await?;
    assert!(
        browser.text("main").await?.contains("Tobi Adeyemi"),
        "the council sees its child"
    );
    browser.assert_accessible("alert").await?;
    browser.screenshot("alert").await?;
    browser.submit("#acknowledge").await?;
    assert!(browser.text("#flash").await?.contains("acknowledged"));
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#alert-state"))
            .await?
            .attr("data-state")
            .await?
            .as_deref(),
        Some("acknowledged")
    );
    browser
        .assert_accessible("alert after acknowledging")
        .await?;

    // A form without its CSRF token is refused and changes nothing.
    browser
        .client
        .execute(
            "document.querySelector('form[action$=\"/resolve\"] input[name=csrf_token]').remove();",
            vec![],
        )
        .await?;
    browser.submit("#resolve").await?;
    assert_eq!(browser.text("h1").await?, "This form has expired");
    browser.goto(&kent_page).await?;
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#alert-state"))
            .await?
            .attr("data-state")
            .await?
            .as_deref(),
        Some("acknowledged")
    );
    // And so is a cross-site post with no session (SameSite=Strict keeps the cookie home).
    let refused = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("{kent_page}/resolve"))
        .form(&[("outcome_code", "duplicate")])
        .send()
        .await?;
    assert_eq!(refused.status(), 303, "no session: sent to sign in");

    // Decline the hand-off with a reason, then resolve.
    browser.fill("#decline-reason", "not_resident").await?;
    browser.submit("#decline").await?;
    assert!(
        browser
            .text("#flash")
            .await?
            .contains("declined responsibility")
    );
    browser.click("#outcome option[value=early_help]").await?;
    browser.submit("#resolve").await?;
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#alert-state"))
            .await?
            .attr("data-state")
            .await?
            .as_deref(),
        Some("resolved")
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM audit_log WHERE actor = 'user:kent.manager' AND action IN ('acknowledged', 'handoff_declined', 'resolved')").await?,
        3,
        "each action audited with the person's identity"
    );
    browser.sign_out().await?;

    // Another child who lives in Kent and was found in Westminster: this time Kent accepts.
    let mut second = handoff.clone();
    second["dependants"][0]["person"]["given_name"] = "Kemi".into();
    second["concern"] = "Found alone at a station.".into();
    let second_id = referral_id(kinlink, &second).await?;
    let second_alert = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| {
                x.authority == KENT && x.body["referral_id"].as_str() == Some(second_id.as_str())
            })
        })
        .await?
        .into_iter()
        .find(|x| x.authority == KENT && x.body["referral_id"].as_str() == Some(second_id.as_str()))
        .ok_or("no Kent alert for the second hand-off")?
        .webhook_id;
    browser.sign_in(base, "kent.manager").await?;
    browser
        .goto(&format!("{base}/console/alerts/{second_alert}"))
        .await?;
    browser.submit("#accept").await?;
    assert!(
        browser
            .text("#flash")
            .await?
            .contains("accepted responsibility")
    );
    assert!(!browser.exists("#accept").await?, "decided once");
    browser.sign_out().await?;

    // Westminster is told of the decision in its own alert.
    browser.sign_in(base, "wm.practitioner").await?;
    browser
        .wait_for(
            &format!("{base}/console/alerts/{westminster_alert}"),
            "#handoff",
        )
        .await?;
    assert!(
        browser.text("#handoff").await?.contains("Declined"),
        "{}",
        browser.text("#handoff").await?
    );
    assert!(
        !browser.exists("#decline").await?,
        "the found authority does not decide"
    );
    browser.sign_out().await?;

    // An operator routes a triage item (an ambiguous postcode sector); Kent then sees it.
    let tran = serde_json::json!({
        "subject": { "given_name": "Adult", "family_name": "Tran", "date_of_birth": { "value": "1988-01-01" } },
        "dependants": [{ "relationship": "child", "person": { "given_name": "Lien", "family_name": "Tran", "claimed_age": 6,
            "locations": [{ "role": "found", "postcode": "BS16 1" }] } }] });
    kinlink.post_referral(&tran).await?;
    browser.sign_in(base, "ops").await?;
    browser
        .wait_for(&format!("{base}/console/triage"), "tr[data-alert-id]")
        .await?;
    browser.assert_accessible("triage queue").await?;
    browser.screenshot("triage").await?;
    let triage_alert = browser
        .client
        .find(Locator::Css("tr[data-alert-id]"))
        .await?
        .attr("data-alert-id")
        .await?
        .ok_or("no alert id")?;
    browser
        .goto(&format!("{base}/console/triage/{triage_alert}?q=kent"))
        .await?;
    browser.assert_accessible("triage item").await?;
    assert!(
        !browser.text("main").await?.contains("Lien"),
        "operators see no child's details"
    );
    browser.click(&format!("#match-{KENT}")).await?;
    browser.submit("#route-button").await?;
    assert!(browser.text("#flash").await?.contains(KENT));
    // Delivery health: each authority's webhook, none given up.
    browser.goto(&format!("{base}/console/deliveries")).await?;
    assert!(
        browser
            .exists(&format!("tr[data-authority='{KENT}']"))
            .await?
    );
    assert!(browser.exists("#given-up-empty").await?);
    browser.assert_accessible("delivery health").await?;
    // Stage status: every stage listed, none stalled.
    browser.goto(&format!("{base}/console/status")).await?;
    for stage in ["intake", "enricher", "alerter", "notifier"] {
        assert!(
            browser.exists(&format!("tr[data-stage='{stage}']")).await?,
            "{stage}"
        );
    }
    assert!(!browser.text("#stages").await?.contains("Stalled"));
    browser.assert_accessible("stage status").await?;
    browser
        .goto(&format!("{base}/console/dead-letters"))
        .await?;
    assert!(browser.exists("#dead-letters-empty").await?);
    browser.assert_accessible("dead letters").await?;
    // Returns: this year's figures, every small count hidden; a wrong date is named.
    browser.goto(&format!("{base}/console/returns")).await?;
    let headlines = browser.text("#headlines").await?;
    assert!(headlines.contains("Referrals received"), "{headlines}");
    assert!(
        browser.exists("#children_by_authority_and_basis").await?,
        "the authority table is shown"
    );
    browser.assert_accessible("returns").await?;
    browser.fill("#from", "2026-13-45").await?;
    browser.submit("#show").await?;
    let problem = browser.text(".govuk-error-summary").await?;
    assert!(problem.contains("first day"), "{problem}");
    browser.assert_accessible("returns with an error").await?;
    browser.sign_out().await?;
    browser.sign_in(base, "kent.manager").await?;
    browser
        .wait_for(
            &format!("{base}/console/inbox"),
            &format!("tr[data-alert-id='{triage_alert}']"),
        )
        .await?;
    browser.sign_out().await?;

    // Two boys with the same name and date of birth in different households: a review task.
    let kent_family = referral_id(
        kinlink,
        &family(
            "CON-1",
            person("Arta", "Berisha", "1985-01-17", "CT1 1AA"),
            person("Dion", "Berisha", "2017-05-09", "CT1 1AA"),
        ),
    )
    .await?;
    let london = || {
        family(
            "CON-2",
            person("Ilir", "Berisha", "1979-11-03", "SW1A 2AA"),
            person("Dion", "Berisha", "2017-05-09", "SW1A 2AA"),
        )
    };
    referral_id(kinlink, &london()).await?;
    browser.sign_in(base, "reviewer").await?;
    browser
        .wait_for(&format!("{base}/console/reviews"), "tr[data-task-id]")
        .await?;
    browser.assert_accessible("review queue").await?;
    browser.submit("tr[data-task-id] a").await?;
    assert!(browser.text("#comparison").await?.contains("Berisha"));
    browser.assert_accessible("review comparison").await?;
    browser.screenshot("review").await?;
    browser.click("#verdict-same").await?;
    browser.submit("#decide").await?;
    assert!(browser.text("#flash").await?.contains("Merged"));
    let person_page = browser
        .client
        .find(Locator::Css("#merged-person"))
        .await?
        .attr("href")
        .await?
        .ok_or("no link to the merged person")?;
    browser.sign_out().await?;

    // The next referral of the boy carries the merged history: both families' referrals.
    let mut again = london();
    again["external_reference"] = "CON-3".into();
    let later = referral_id(kinlink, &again).await?;
    let alert = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().any(|x| {
                x.authority == WESTMINSTER && x.body["referral_id"].as_str() == Some(later.as_str())
            })
        })
        .await?
        .into_iter()
        .find(|x| {
            x.authority == WESTMINSTER && x.body["referral_id"].as_str() == Some(later.as_str())
        })
        .ok_or("no alert for the later referral")?;
    browser.sign_in(base, "wm.practitioner").await?;
    browser
        .goto(&format!("{base}/console/alerts/{}", alert.webhook_id))
        .await?;
    let earlier = browser.text("[data-earlier-referrals]").await?;
    assert!(earlier.contains(&kent_family), "merged history: {earlier}");
    browser.sign_out().await?;

    // The merge was wrong after all: the reviewer splits the Kent boy's record off again.
    let kent_record: String = {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::AnyConnection::connect(db).await?;
        let row = sqlx::query(
            "SELECT record_id FROM linkage_records WHERE referral_id = $1 AND given_name = 'Dion'",
        )
        .bind(&kent_family)
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        row.try_get("record_id")?
    };
    browser.sign_in(base, "reviewer").await?;
    browser.goto(&format!("{base}{person_page}")).await?;
    browser.assert_accessible("a person's records").await?;
    browser.click(&format!("#record-{kent_record}")).await?;
    browser.fill("#reason", "wrong_merge").await?;
    browser.submit("#split-button").await?;
    assert!(
        browser.text("#flash").await?.contains("Split"),
        "{}",
        browser.text("main").await?
    );
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT COUNT(*) FROM linkage_records WHERE record_id = '{kent_record}' AND person_id <> \
                 (SELECT person_id FROM linkage_records WHERE referral_id = '{later}' AND given_name = 'Dion')"
            )
        )
        .await?,
        1,
        "the Kent boy's record is a person of its own again"
    );
    Ok(())
}

/// Signs in over plain HTTP (as a browser without JavaScript would) and returns the session
/// cookie.
async fn http_sign_in(base: &str, username: &str) -> TestResult<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = client.get(format!("{base}/console/sign-in")).send().await?;
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("no sign-in cookie")?
        .to_owned();
    let html = page.text().await?;
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no csrf token in the form")?
        .to_owned();
    let signed_in = client
        .post(format!("{base}/console/sign-in"))
        .header("cookie", cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await?;
    assert_eq!(signed_in.status(), 303, "signed in");
    Ok(signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("kinlink_session="))
        .and_then(|v| v.split(';').next())
        .ok_or("no session cookie")?
        .to_owned())
}

/// An authority with 10,000 alerts: every inbox page (first, middle, filtered) renders in
/// under 100 ms (median of five, end to end over HTTP, debug build).
#[tokio::test]
async fn an_inbox_of_ten_thousand_alerts_pages_in_under_100_ms() -> TestResult {
    use prost::Message;
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let dir = TempDir::new("e2e-console-inbox")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[KENT], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    create_user(&data, &config, "kent.viewer", "viewer", KENT)?;

    // 10,000 alerts filed straight into the store, as the notifier files them.
    let url = format!("sqlite://{}", data.join("kinlink.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let mut tx = conn.begin().await?;
    let now = chrono::Utc::now().timestamp_millis();
    let rags = ["red", "amber", "green"];
    for i in 0..10_000i64 {
        let alert_id = format!("load-{i:05}");
        let alert = kinlink_proto::v1::AlertRaised {
            alert_id: alert_id.clone(),
            referral_id: format!("ref-{i:05}"),
            authority_code: KENT.to_owned(),
            rule: "child_referral".to_owned(),
            ..Default::default()
        };
        sqlx::query(
            "INSERT INTO alerts (alert_id, referral_id, authority_code, state, deadline_ms, alert, created_at_ms, \
             rag, rule, basis, priority, child_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&alert_id)
        .bind(&alert.referral_id)
        .bind(KENT)
        .bind(if i % 4 == 0 { "acknowledged" } else { "open" })
        .bind(now + i * 60_000)
        .bind(alert.encode_to_vec())
        .bind(now)
        .bind(rags[usize::try_from(i % 3)?])
        .bind("child_referral")
        .bind(if i % 2 == 0 { "lives" } else { "found" })
        .bind(if i % 5 == 0 { "urgent" } else { "standard" })
        .bind(1 + i % 3)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    conn.close().await?;

    let session = http_sign_in(&kinlink.base_url, "kent.viewer").await?;
    let client = reqwest::Client::new();
    let mut timings = Vec::new();
    for query in [
        "",
        "?page=100",
        "?page=200",
        "?rag=red&priority=urgent&basis=lives",
        "?state=all&page=150",
    ] {
        // Five requests each; the median is the figure (the test shares two cores with others).
        let mut runs = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let response = client
                .get(format!("{}/console/inbox{query}", kinlink.base_url))
                .header("cookie", &session)
                .send()
                .await?;
            assert_eq!(response.status(), 200, "{query}");
            let html = response.text().await?;
            let elapsed = started.elapsed();
            assert!(
                html.contains("data-alert-id=\"load-"),
                "{query}: no alerts shown"
            );
            runs.push(elapsed);
        }
        runs.sort();
        timings.push((query, runs[2]));
    }
    println!("inbox of 10,000 alerts: {timings:?}");
    for (query, elapsed) in &timings {
        assert!(
            elapsed.as_millis() < 100,
            "inbox{query} took {elapsed:?} with 10,000 alerts"
        );
    }
    kinlink.interrupt().await?;
    Ok(())
}
