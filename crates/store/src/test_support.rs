//! Throw-away databases for tests: a fresh SQLite file or a fresh PostgreSQL database that is
//! dropped afterwards. PostgreSQL comes from `KINLINK_TEST_POSTGRES_URL` (default: the local
//! server with trust auth). Under `CI=true` a missing server fails the test instead of
//! skipping it.

use sqlx::Connection;

use crate::{Error, Result, Store};

/// The server every PostgreSQL test database is created on.
pub fn postgres_admin_url() -> String {
    std::env::var("KINLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A PostgreSQL database created for one test and dropped by [`TempPostgres::drop_database`].
#[derive(Debug)]
pub struct TempPostgres {
    pub name: String,
    pub url: String,
}

impl TempPostgres {
    /// Creates an empty database with a unique name.
    pub async fn create() -> Result<Self> {
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let name = format!("kinlink_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .ok_or(Error::UnsupportedUrl)?;
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Connects a migrated [`Store`] to this database.
    pub async fn store(&self) -> Result<Store> {
        Store::connect(&self.url).await
    }

    /// Drops the database, closing other sessions on it first.
    pub async fn drop_database(self) -> Result<()> {
        let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url()).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}
