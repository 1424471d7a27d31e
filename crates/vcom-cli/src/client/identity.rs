//! `identity export|import FILE`: moving the user's key and certificate to another
//! device. Both work offline, on the profile directory only.

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
