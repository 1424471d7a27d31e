//! `vcom-server check`: what would stop, or surprise, a server started with this
//! configuration and data directory, found before it starts and without changing
//! anything.

use std::path::Path;

use crate::ServerConfig;
use crate::tls::ServerTls;

/// One thing checked: what was found, and whether the server can start with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// False when the server would refuse to start, or fail, because of it.
    pub ok: bool,
    /// What was checked.
    pub subject: &'static str,
    /// What was found.
    pub detail: String,
}

fn finding(ok: bool, subject: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        ok,
        subject,
        detail: detail.into(),
    }
}

/// Checks the TLS files, the data directory, the database and the listening address of
/// a configuration that is already valid (loading it validated its values).
pub fn check(config: &ServerConfig) -> Vec<Finding> {
    let mut findings = vec![
        match ServerTls::check(config) {
            Ok(Some(sha256)) => finding(
                true,
                "tls",
                format!("certificate and key load and match (cert-sha256={sha256})"),
            ),
            Ok(None) => finding(
                true,
                "tls",
                "no certificate yet: a self-signed one will be generated at the first start",
            ),
            Err(e) => finding(false, "tls", e.to_string()),
        },
        data_dir(&config.data_dir),
        match config.store.backend {
            crate::StoreBackend::Sqlite => database(&config.database_path()),
            crate::StoreBackend::Postgres => finding(
                true,
                "database",
                "PostgreSQL (store.postgres_url): not checked here; the server connects, and \
                 creates or migrates the schema, when it starts",
            ),
        },
    ];
    let running = std::os::unix::net::UnixStream::connect(config.admin_socket_path()).is_ok();
    findings.push(if running {
        finding(
            false,
            "server",
            format!(
                "a vcom-server is running with data directory {}: a second one would be refused",
                config.data_dir.display()
            ),
        )
    } else {
        match std::net::TcpListener::bind(config.listen) {
            Ok(_) => finding(true, "listen", format!("{} is free", config.listen)),
            Err(e) => finding(
                false,
                "listen",
                format!("cannot listen on {}: {e}", config.listen),
            ),
        }
    });
    findings
}

fn data_dir(dir: &Path) -> Finding {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return finding(
            true,
            "data directory",
            format!(
                "{} does not exist: it will be created (mode 0700)",
                dir.display()
            ),
        );
    };
    if !meta.is_dir() {
        return finding(
            false,
            "data directory",
            format!("{} is not a directory", dir.display()),
        );
    }
    let probe = dir.join(format!(".check-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"") {
        return finding(
            false,
            "data directory",
            format!("{} is not writable: {e}", dir.display()),
        );
    }
    let _ = std::fs::remove_file(&probe);
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return finding(
            true,
            "data directory",
            format!(
                "{} is writable, but readable by other users (mode {mode:o}); `chmod 700` it",
                dir.display()
            ),
        );
    }
    finding(
        true,
        "data directory",
        format!("{} is writable and private", dir.display()),
    )
}

fn database(path: &Path) -> Finding {
    if !path.exists() {
        return finding(
            true,
            "database",
            format!("{} does not exist: it will be created", path.display()),
        );
    }
    match vcom_store::check_backup(path) {
        Ok(report) => {
            let current = vcom_store::SqliteStore::SCHEMA_VERSION;
            let migration = if report.schema_version < current {
                format!("; it will be migrated to version {current} (a copy is kept first)")
            } else {
                String::new()
            };
            finding(
                true,
                "database",
                format!(
                    "{} is whole: schema version {}, {} users{migration}",
                    path.display(),
                    report.schema_version,
                    report.users
                ),
            )
        }
        Err(e) => finding(false, "database", format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_directory_is_fine_and_says_what_will_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::new(dir.path().join("data"));
        let findings = check(&config);
        assert!(findings.iter().all(|f| f.ok), "{findings:?}");
        assert!(
            findings
                .iter()
                .any(|f| f.detail.contains("will be generated"))
        );
        assert!(
            findings
                .iter()
                .any(|f| f.detail.contains("will be created"))
        );
    }

    #[test]
    fn a_damaged_database_a_missing_certificate_and_a_file_for_a_directory_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("data"));
        std::fs::create_dir(&config.data_dir).unwrap();
        std::fs::write(config.database_path(), b"not a database at all").unwrap();
        config.tls.cert = Some(dir.path().join("missing-cert.pem"));
        config.tls.key = Some(dir.path().join("missing-key.pem"));
        let findings = check(&config);
        let failed: Vec<_> = findings
            .iter()
            .filter(|f| !f.ok)
            .map(|f| f.subject)
            .collect();
        assert_eq!(failed, ["tls", "database"], "{findings:?}");

        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let findings = check(&ServerConfig::new(&file));
        assert!(
            findings
                .iter()
                .any(|f| !f.ok && f.subject == "data directory"),
            "{findings:?}"
        );
    }
}
