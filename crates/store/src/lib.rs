//! kinlink's relational store.
//!
//! One [`Store`] type over two backends, chosen by URL:
//! - `sqlite://PATH` — the embedded default. The database file also holds the embedded event
//!   log, so a consumer's state change and its offset commit share one transaction.
//! - `postgres://...` — the scale-out shape, shared by several instances of a service.
//!
//! Queries go through sqlx's `Any` driver with `$N` placeholders and SQL both engines accept,
//! so every service has one code path for either backend. Each backend has its own migrations
//! (`migrations/sqlite`, `migrations/postgres`) because column types differ.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub mod audit;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod tokens;

/// A transaction on either backend.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported store URL scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("could not create the data directory: {0}")]
    DataDir(#[source] std::io::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which engine a [`Store`] talks to. Callers rarely need it: the few engine-specific
/// statements (row locking for the outbox relay) branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool plus the backend it talks to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Reads outside any transaction: on SQLite a read-only pool of its own, which WAL lets
    /// run beside the one writer; on PostgreSQL the same pool.
    reader: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens (creating if needed) the embedded SQLite database in `data_dir`.
    pub async fn open_embedded(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(Error::DataDir)?;
        let path = data_dir.join("kinlink.db");
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Connects to the store at `url` and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::UnsupportedUrl);
        };
        let mut options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        // Diagnostics: `KINLINK_SLOW_SQL_MS=5` logs (at warn, target `sqlx::query`) every
        // statement slower than that, to find the query a slow stage waits on.
        if let Some(ms) = std::env::var("KINLINK_SLOW_SQL_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            options =
                options.log_slow_statements(log::LevelFilter::Warn, Duration::from_millis(ms));
        }
        let pool = match backend {
            // One connection: SQLite has a single writer anyway, and serialising in the pool
            // avoids "database is locked" upgrades between concurrent deferred transactions.
            // Other processes (the ops CLI) wait on the busy timeout instead.
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                 PRAGMA secure_delete = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options.clone())
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let reader = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => pool.clone(),
        };
        tracing::debug!(?backend, "store ready");
        Ok(Self {
            pool,
            reader,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool that writes (on SQLite, the one writer connection).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for reads that need no transaction and may see the state as of the last
    /// commit (API lookups, token checks, status pages). On SQLite they no longer queue
    /// behind the writer; on PostgreSQL this is [`Store::pool`].
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Checks the store answers (used by `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection, waiting for in-flight queries.
    pub async fn close(&self) {
        self.reader.close().await;
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch: the one time representation in the store, so both
/// backends compare and sort times the same way.
/// Where a stage or worker reads the time, in milliseconds since the Unix epoch: the system
/// clock in service, a controlled one in tests. Decisions take the time as an argument (see
/// `kinlink-domain`); this is where services get it from.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(std::sync::Arc::new(now_millis))
    }

    /// A clock that reads `now` (tests).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(now))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }

    /// The time as a date-time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

/// The system time in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
