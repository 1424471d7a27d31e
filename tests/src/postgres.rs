//! A PostgreSQL database of its own for each test, on the server named by
//! `VCOM_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), created
//! fresh and dropped when the test ends.
//!
//! This is test support: a server that does not answer fails the test with a message
//! saying what is needed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

/// A PostgreSQL database created for one test, dropped when this is dropped.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The database's URL, for `[store] postgres_url`.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database with a name no other test uses.
    pub async fn create() -> TestDatabase {
        let admin_url = std::env::var("VCOM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("vcom_server_test_{}", crate::unique_suffix());
        admin(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("the test database is created (its user needs CREATEDB)");
        let base = admin_url.split('?').next().unwrap_or(&admin_url);
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = format!("{server}/{name}");
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    admin(&url)
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                })
        })
        .join();
    }
}

/// A connection to the administrative database, or a plain failure saying what is
/// needed.
async fn admin(url: &str) -> tokio_postgres::Client {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => panic!(
            "these tests need a PostgreSQL server and none answered ({e}); start one, or set \
             VCOM_TEST_POSTGRES_URL to a database URL whose user may CREATE DATABASE"
        ),
    }
}
