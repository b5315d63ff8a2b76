//! The scale-out shape over encrypted, authenticated connections: a tansu broker that requires
//! SASL (a SCRAM-SHA-512 user) behind TLS with its own certificate authority, PostgreSQL over TLS with
//! the server's certificate checked (`sslmode=verify-full`), and `kinlink up` on both with
//! `[log.kafka.security]` and the password from the environment. Direct client checks first
//! show the broker and the database really refuse what they should (no TLS, a wrong password,
//! an unknown CA), so the pipeline test cannot pass on a peer that accepts anything.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::process::{Child, Command};

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";
const USER: &str = "kinlink-e2e";
const PASSWORD_ENV: &str = "KINLINK_E2E_KAFKA_PASSWORD";

/// A throwaway CA and a server certificate for `localhost` signed by it, made with the
/// `openssl` command (on every Debian machine; the project links OpenSSL for rdkafka anyway).
struct Certificates {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> TestResult {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn make_certificates(dir: &Path) -> TestResult<Certificates> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (name, subject) in [
        ("ca", "/CN=kinlink e2e CA"),
        ("other-ca", "/CN=unrelated CA"),
    ] {
        let key = format!("{name}.key");
        let cert = format!("{name}.pem");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &args)?;
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &args)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    )?;
    Ok(Certificates {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    })
}

fn tansu_bin() -> String {
    std::env::var("KINLINK_TANSU_BIN").unwrap_or_else(|_| "tansu".into())
}

async fn wait_listening(child: &mut Child, address: &str) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait()?.is_some() {
            return Err("tansu exited before listening".into());
        }
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("tansu did not start listening within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Terminates TLS for `localhost` with the server certificate on a free loopback port and
/// forwards each connection's bytes to `upstream`. tansu 0.6 cannot serve TLS itself (its
/// `--cert` and `--key` flags are declared mutually exclusive), so the proxy plays the
/// broker's TLS listener: a client without TLS, or one that does not trust the CA, fails the
/// handshake exactly as against a TLS broker, and SASL runs inside the TLS session.
async fn start_tls_proxy(
    certificates: &Certificates,
    upstream: String,
) -> TestResult<(u16, tokio::task::JoinHandle<()>)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let chain =
        CertificateDer::pem_file_iter(&certificates.server_cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&certificates.server_key)?;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut broker) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
    Ok((port, task))
}

/// Starts tansu on SQLite storage in `dir`: first open (to create the SCRAM user, which tansu
/// stores with its topics), then again on the same storage with authentication required,
/// behind the TLS proxy and advertised as `localhost:<proxy port>`, so every client
/// connection goes through TLS and the certificate's name is checked.
async fn start_secure_tansu(
    dir: &Path,
    certificates: &Certificates,
    password: &str,
) -> TestResult<SecureBroker> {
    let bin = tansu_bin();
    let spawn = |port: u16, advertised: u16, authenticated: bool| -> TestResult<Child> {
        let mut command = Command::new(&bin);
        command
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://localhost:{advertised}"))
            .arg("--storage-engine")
            .arg("sqlite://tansu.db");
        if authenticated {
            command.arg("--authentication");
        }
        Ok(command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start tansu ({bin}): {e}"))?)
    };

    let port = free_port()?;
    let mut open = spawn(port, port, false)?;
    wait_listening(&mut open, &format!("127.0.0.1:{port}")).await?;
    let created = Command::new(&bin)
        .args(["user", "create", "--broker"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .args(["--mechanism", "scram512", USER, password])
        .stdin(Stdio::null())
        .output()
        .await?;
    if !created.status.success() {
        return Err(format!(
            "tansu user create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        )
        .into());
    }
    open.kill().await?;

    let port = free_port()?;
    let (tls_port, proxy) = start_tls_proxy(certificates, format!("127.0.0.1:{port}")).await?;
    let mut secure = spawn(port, tls_port, true)?;
    wait_listening(&mut secure, &format!("127.0.0.1:{port}")).await?;
    Ok(SecureBroker {
        _tansu: secure,
        proxy,
        bootstrap: format!("localhost:{tls_port}"),
    })
}

/// tansu requiring SASL, reachable only through the TLS proxy.
struct SecureBroker {
    _tansu: Child,
    proxy: tokio::task::JoinHandle<()>,
    bootstrap: String,
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

/// Whether a client with these properties can read the cluster's metadata.
async fn can_read_metadata(properties: Vec<(&'static str, String)>) -> TestResult<bool> {
    Ok(tokio::task::spawn_blocking(move || {
        let mut config = ClientConfig::new();
        for (key, value) in &properties {
            config.set(*key, value);
        }
        config.set("group.id", "kinlink-e2e-security-probe");
        config.set("log_level", "0");
        match config.create::<BaseConsumer>() {
            Ok(consumer) => consumer
                .fetch_metadata(None, Duration::from_secs(6))
                .is_ok(),
            Err(_) => false,
        }
    })
    .await?)
}

#[tokio::test]
async fn scale_out_runs_over_tls_with_scram_to_kafka_and_verified_tls_to_postgres() -> TestResult {
    let dir = TempDir::new("e2e-kafka-tls")?;
    let certificates = make_certificates(&dir.0)?;
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let broker = start_secure_tansu(&dir.0, &certificates, &password).await?;
    let bootstrap = broker.bootstrap.clone();

    let client = |protocol: &str, ca: &Path, password: &str| {
        vec![
            ("bootstrap.servers", bootstrap.clone()),
            ("security.protocol", protocol.to_owned()),
            ("ssl.ca.location", ca.display().to_string()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
            ("sasl.username", USER.to_owned()),
            ("sasl.password", password.to_owned()),
        ]
    };
    let (right, no_tls, wrong_password, unknown_ca) = tokio::join!(
        can_read_metadata(client("sasl_ssl", &certificates.ca, &password)),
        can_read_metadata(vec![
            ("bootstrap.servers", bootstrap.clone()),
            ("security.protocol", "plaintext".to_owned()),
        ]),
        can_read_metadata(client("sasl_ssl", &certificates.ca, "not-the-password")),
        can_read_metadata(client("sasl_ssl", &certificates.other_ca, &password)),
    );
    assert!(
        right?,
        "TLS with the CA and the right SCRAM password reads metadata"
    );
    assert!(!no_tls?, "the broker refuses a client without TLS");
    assert!(
        !wrong_password?,
        "the broker refuses a wrong SCRAM password"
    );
    assert!(
        !unknown_ca?,
        "the client refuses a broker its CA did not sign"
    );

    let database = kinlink_store::test_support::TempPostgres::create()
        .await
        .map_err(|e| format!("PostgreSQL is required: {e}"))?;
    // The same database over TLS, by the name its certificate carries.
    let postgres_ca = postgres_ca();
    let tls_url = |ca: &Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            database.url.replacen("@127.0.0.1:", "@localhost:", 1),
            ca.display()
        )
    };
    let store_url = tls_url(&postgres_ca);
    assert!(
        kinlink_store::Store::connect(&tls_url(&certificates.other_ca))
            .await
            .is_err(),
        "the store refuses a database server its CA did not sign"
    );
    let receiver = WebhookReceiver::start().await?;
    let extra = format!(
        "\n[log]\nbackend = \"kafka\"\npartitions = 2\n\n[log.kafka]\nbrokers = \"{bootstrap}\"\ngroup_prefix = \"tls-{}-\"\n\n[log.kafka.security]\nprotocol = \"sasl_ssl\"\nca_file = \"{}\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"{USER}\"\nsasl_password = \"env:{PASSWORD_ENV}\"\n\n[store]\nurl = \"{}\"\n",
        database.name,
        certificates.ca.display(),
        store_url
    ) + &test_master_key_settings();
    let config = write_config(&dir.0, &receiver, &[KENT, WESTMINSTER], &extra)?;
    let settings_text = std::fs::read_to_string(&config)?;
    assert!(
        !settings_text.contains(&password),
        "the settings file holds no secret"
    );

    let data = dir.0.join("data");
    let kinlink = Kinlink::up_with_env(&data, &config, &[(PASSWORD_ENV, &password)]).await?;
    let mut outcome =
        super::family_reaches_both_authorities(&kinlink, &receiver, &database.url).await;
    if outcome.is_ok() {
        outcome = database_sessions_all_use_tls(&database.url, &database.name).await;
    }
    let status = kinlink.interrupt().await?;
    database.drop_database().await?;
    outcome?;
    assert!(status.success(), "drains and exits cleanly: {status:?}");
    Ok(())
}

/// The certificate authority of the local PostgreSQL server: `KINLINK_TEST_POSTGRES_CA`, or
/// the self-signed certificate Debian's postgresql package makes for `localhost`.
fn postgres_ca() -> PathBuf {
    std::env::var_os("KINLINK_TEST_POSTGRES_CA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem"))
}

/// Every session kinlink holds on its database is encrypted (and there is at least one).
async fn database_sessions_all_use_tls(admin_url: &str, database: &str) -> TestResult {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let sessions: Vec<(bool,)> = sqlx::query_as(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    assert!(
        !sessions.is_empty(),
        "kinlink holds sessions on its database"
    );
    assert!(
        sessions.iter().all(|(ssl,)| *ssl),
        "every kinlink session uses TLS: {sessions:?}"
    );
    Ok(())
}
