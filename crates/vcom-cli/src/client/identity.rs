//! `identity export|import FILE`: moving the user's key and certificate to another
//! device; `identity fingerprint`: the key's SHA-256, for the administrator to bind
//! (`vcom-server admin user reset-key USER --fingerprint SHA256`). All work offline, on
//! the profile directory only.

use anyhow::Context;

use super::connect::open_profile;
use super::{Global, IdentityAction};

/// Runs an identity command.
pub(crate) async fn run(global: &Global, action: IdentityAction) -> anyhow::Result<()> {
    match action {
        IdentityAction::Export { file } => {
            let profile = open_profile(global, true).await?;
            let to = file.clone();
            tokio::task::spawn_blocking(move || profile.export_identity(&to))
                .await
                .context("the export task failed")?
                .with_context(|| format!("cannot export the identity to {}", file.display()))?;
            println!(
                "exported the identity of {} to {} (keep it secret: it holds the private key)",
                global.user,
                file.display()
            );
        }
        IdentityAction::Fingerprint => {
            // A profile without a key gets one now: a user who lost their key can hand
            // the new one to the administrator before its first login, so no login
            // ever finds the identifier unbound.
            let profile = open_profile(global, false).await?;
            let user = global.user.clone();
            let dir = profile.dir().to_owned();
            let (fingerprint, generated) = tokio::task::spawn_blocking(
                move || -> Result<(String, bool), vcom_client::ProfileError> {
                    let generated = profile.identity()?.is_none();
                    let identity = profile.identity_or_generate(&user)?;
                    Ok((identity.public_key_sha256()?, generated))
                },
            )
            .await
            .context("the fingerprint task failed")?
            .with_context(|| format!("cannot read the identity in {}", dir.display()))?;
            if generated {
                eprintln!(
                    "generated a new key for {} in {} (this profile can no longer import one)",
                    global.user,
                    dir.display()
                );
            }
            println!("{fingerprint}");
        }
        IdentityAction::Import { file } => {
            let profile = open_profile(global, false).await?;
            let from = file.clone();
            let dir = profile.dir().to_owned();
            tokio::task::spawn_blocking(move || profile.import_identity(&from))
                .await
                .context("the import task failed")?
                .with_context(|| format!("cannot import the identity from {}", file.display()))?;
            println!(
                "imported the identity of {} into {}",
                global.user,
                dir.display()
            );
        }
    }
    Ok(())
}
