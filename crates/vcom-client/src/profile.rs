//! The profile directory: everything a client keeps between runs for one user on one
//! server.
//!
//! # Layout
//! ```text
//! <profile>/                 directory, mode 0700 when created here
//!   identity.pem             private key + certificate (PEM), mode 0600, never overwritten
//!   state.json               user, pinned server fingerprint, device id, both lists
//!                            with their timestamps, the groups (extended mode);
//!                            mode 0600, replaced atomically
//!   history.sqlite3          received messages (see `History`), mode 0600
//! ```
//! A profile belongs to one user: opening it for another user identifier is refused.
//! The device identifier and the pin belong to the server it was first used with; use one
//! profile per server. This module does blocking file IO: async callers run it on a
//! blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vcom_protocol::{DeviceId, GroupId, Timestamp, UserId};

use crate::groups::Group;
use crate::identity::Identity;
use crate::sync::{Lists, UserList};

const IDENTITY_FILE: &str = "identity.pem";
const STATE_FILE: &str = "state.json";
const HISTORY_FILE: &str = "history.sqlite3";

/// What can go wrong with the profile directory or the identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Reading or writing a profile file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A profile file exists but cannot be understood.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The identity (key and certificate) is unusable.
    #[error("identity: {0}")]
    Identity(String),
    /// Importing would replace an existing identity (and lose its key).
    #[error("{} already holds an identity; remove it first to replace it", .0.display())]
    IdentityExists(PathBuf),
    /// The profile has no identity to export.
    #[error("the profile has no identity yet")]
    NoIdentity,
    /// The profile belongs to another user.
    #[error("the profile belongs to user {profile:?}, not {requested:?}")]
    WrongUser {
        /// The user the profile was created for.
        profile: String,
        /// The user asked for.
        requested: String,
    },
}

/// What the profile remembers besides the identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileState {
    /// The user this profile belongs to (set on first use).
    pub user: Option<UserId>,
    /// The pinned server certificate fingerprint (lower-case hex SHA-256 of its DER).
    pub server_fingerprint: Option<String>,
    /// The device identifier the server issued to this device.
    pub device_id: Option<DeviceId>,
    /// The friend and block lists with their timestamps.
    pub lists: Lists,
    /// The groups the user is a member of, as the server last described them
    /// (extended mode only; empty with a server that does not offer them).
    pub groups: Vec<Group>,
}

/// A profile directory and its loaded state. See the module documentation for the layout.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
    state: ProfileState,
}

impl Profile {
    /// Opens (creating it if needed) the profile directory and loads its state.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Profile, ProfileError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        let state_path = dir.join(STATE_FILE);
        let state = match fs::read(&state_path) {
            Ok(bytes) => parse_state(&state_path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProfileState::default(),
            Err(source) => {
                return Err(ProfileError::Io {
                    path: state_path,
                    source,
                });
            }
        };
        Ok(Profile { dir, state })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state as loaded or last changed.
    pub fn state(&self) -> &ProfileState {
        &self.state
    }

    /// The state, to change; call [`Profile::save`] afterwards.
    pub fn state_mut(&mut self) -> &mut ProfileState {
        &mut self.state
    }

    /// Where the message history database lives.
    pub fn history_path(&self) -> PathBuf {
        self.dir.join(HISTORY_FILE)
    }

    /// Where the identity lives.
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(IDENTITY_FILE)
    }

    /// Writes the state to `state.json` atomically (temporary file, then rename).
    pub fn save(&self) -> Result<(), ProfileError> {
        let path = self.dir.join(STATE_FILE);
        // Per process: several programs may share a profile, and each must rename a
        // whole file of its own into place.
        let tmp = self
            .dir
            .join(format!("{STATE_FILE}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(&StoredState::from(&self.state)).map_err(|e| {
            ProfileError::Corrupt {
                path: path.clone(),
                reason: format!("cannot encode the state: {e}"),
            }
        })?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ProfileError::Io { path, source }
        };
        let mut file = private_file(&tmp, false).map_err(io(&tmp))?;
        file.write_all(&json).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Checks that the profile belongs to `user`, claiming it for `user` when it belongs
    /// to nobody yet (the caller saves).
    pub fn claim(&mut self, user: &UserId) -> Result<(), ProfileError> {
        match &self.state.user {
            Some(owner) if owner != user => Err(ProfileError::WrongUser {
                profile: owner.to_string(),
                requested: user.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.state.user = Some(user.clone());
                Ok(())
            }
        }
    }

    /// The stored identity, if there is one.
    pub fn identity(&self) -> Result<Option<Identity>, ProfileError> {
        let path = self.identity_path();
        match fs::read_to_string(&path) {
            Ok(pem) => Identity::from_pem(&pem).map(Some).map_err(|e| match e {
                ProfileError::Identity(reason) => ProfileError::Corrupt { path, reason },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ProfileError::Io { path, source }),
        }
    }

    /// The stored identity, or a newly generated one for `user`, stored with mode 0600.
    pub fn identity_or_generate(&self, user: &UserId) -> Result<Identity, ProfileError> {
        if let Some(identity) = self.identity()? {
            return Ok(identity);
        }
        let identity = Identity::generate(user)?;
        self.install_identity(&identity)?;
        Ok(identity)
    }

    /// Writes the identity (private key and certificate) to `to` as one PEM file with
    /// mode 0600, for another device of the same user. Refuses to overwrite `to`.
    pub fn export_identity(&self, to: &Path) -> Result<(), ProfileError> {
        let identity = self.identity()?.ok_or(ProfileError::NoIdentity)?;
        write_new_private(to, identity.to_pem().as_bytes())
    }

    /// Installs the identity in the PEM file `from` (written by
    /// [`Profile::export_identity`]) into this profile, which must not have one yet.
    pub fn import_identity(&self, from: &Path) -> Result<Identity, ProfileError> {
        let pem = fs::read_to_string(from).map_err(|source| ProfileError::Io {
            path: from.to_owned(),
            source,
        })?;
        let identity = Identity::from_pem(&pem)?;
        self.install_identity(&identity)?;
        Ok(identity)
    }

    fn install_identity(&self, identity: &Identity) -> Result<(), ProfileError> {
        let path = self.identity_path();
        match write_new_private(&path, identity.to_pem().as_bytes()) {
            Err(ProfileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Err(ProfileError::IdentityExists(path))
            }
            other => other,
        }
    }
}

/// Creates `dir` (and its parents) if missing; a directory created here is owner-only.
fn create_private_dir(dir: &Path) -> Result<(), ProfileError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| ProfileError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Opens `path` for writing with mode 0600; `create_new` refuses an existing file.
fn private_file(path: &Path, create_new: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes a new owner-only file; never replaces an existing one.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let io = |source| ProfileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = private_file(path, true).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// `state.json` as stored: plain strings and numbers, validated when loaded.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StoredState {
    user: Option<String>,
    server_fingerprint: Option<String>,
    device_id: Option<i32>,
    friends: StoredList,
    blocks: StoredList,
    groups: Vec<StoredGroup>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StoredGroup {
    id: i32,
    name: String,
    owner: Option<String>,
    members: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StoredList {
    timestamp: i64,
    entries: Vec<String>,
}

impl From<&ProfileState> for StoredState {
    fn from(state: &ProfileState) -> Self {
        let list = |l: &UserList| StoredList {
            timestamp: l.timestamp.0,
            entries: l.entries.iter().map(|u| u.to_string()).collect(),
        };
        StoredState {
            user: state.user.as_ref().map(|u| u.to_string()),
            server_fingerprint: state.server_fingerprint.clone(),
            device_id: state.device_id.map(DeviceId::get),
            friends: list(&state.lists.friends),
            blocks: list(&state.lists.blocks),
            groups: state
                .groups
                .iter()
                .map(|g| StoredGroup {
                    id: g.id.get(),
                    name: g.name.clone(),
                    owner: g.owner.as_ref().map(UserId::to_string),
                    members: g.members.iter().map(UserId::to_string).collect(),
                })
                .collect(),
        }
    }
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<ProfileState, ProfileError> {
    let corrupt = |reason: String| ProfileError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let stored: StoredState =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
    let user_id = |s: String| UserId::new(s).map_err(|e| corrupt(format!("bad user: {e}")));
    let list = |l: StoredList| -> Result<UserList, ProfileError> {
        Ok(UserList {
            timestamp: Timestamp(l.timestamp),
            entries: l
                .entries
                .into_iter()
                .map(user_id)
                .collect::<Result<_, _>>()?,
        })
    };
    if let Some(fp) = &stored.server_fingerprint {
        crate::tls::parse_fingerprint(fp).map_err(corrupt)?;
    }
    let groups = stored
        .groups
        .into_iter()
        .map(|g| -> Result<Group, ProfileError> {
            Ok(Group {
                id: GroupId(g.id),
                name: g.name,
                owner: g.owner.map(user_id).transpose()?,
                members: g
                    .members
                    .into_iter()
                    .map(user_id)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ProfileState {
        groups,
        user: stored.user.map(user_id).transpose()?,
        server_fingerprint: stored.server_fingerprint,
        device_id: stored.device_id.map(DeviceId),
        lists: Lists {
            friends: list(stored.friends)?,
            blocks: list(stored.blocks)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn user(s: &str) -> UserId {
        UserId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> std::io::Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        Ok(fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn a_new_profile_is_empty_and_its_state_survives_a_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p");
        let mut profile = Profile::open(&path)?;
        assert_eq!(profile.state(), &ProfileState::default());
        profile.claim(&user("alice"))?;
        let state = profile.state_mut();
        state.device_id = Some(DeviceId(42));
        state.server_fingerprint = Some("ab".repeat(32));
        state.lists.friends = UserList {
            entries: vec![user("bob"), user("carol")],
            timestamp: Timestamp(123),
        };
        state.lists.blocks.timestamp = Timestamp(7);
        state.groups = vec![Group {
            id: GroupId(3),
            name: "Café crew".into(),
            owner: Some(user("alice")),
            members: vec![user("alice"), user("bob")],
        }];
        profile.save()?;
        let reopened = Profile::open(&path)?;
        assert_eq!(reopened.state(), profile.state());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_owner_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p");
        let profile = Profile::open(&path)?;
        profile.identity_or_generate(&user("alice"))?;
        profile.save()?;
        assert_eq!(mode(&path)?, 0o700);
        assert_eq!(mode(&profile.identity_path())?, 0o600);
        assert_eq!(mode(&path.join(STATE_FILE))?, 0o600);
        let export = dir.path().join("alice.pem");
        profile.export_identity(&export)?;
        assert_eq!(mode(&export)?, 0o600);
        Ok(())
    }

    #[test]
    fn the_identity_is_generated_once_and_then_reused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let profile = Profile::open(dir.path())?;
        assert!(profile.identity()?.is_none());
        let first = profile.identity_or_generate(&user("alice"))?;
        let second = profile.identity_or_generate(&user("alice"))?;
        assert_eq!(first.certificate(), second.certificate());
        Ok(())
    }

    #[test]
    fn an_exported_identity_imports_into_another_profile() -> TestResult {
        let dir = tempfile::tempdir()?;
        let laptop = Profile::open(dir.path().join("laptop"))?;
        let phone = Profile::open(dir.path().join("phone"))?;
        let original = laptop.identity_or_generate(&user("alice"))?;
        let file = dir.path().join("alice.pem");
        laptop.export_identity(&file)?;
        let imported = phone.import_identity(&file)?;
        assert_eq!(imported.public_key_sha256()?, original.public_key_sha256()?);
        let loaded = phone.identity()?.ok_or("no identity after import")?;
        assert_eq!(loaded.certificate(), original.certificate());
        Ok(())
    }

    #[test]
    fn importing_never_replaces_an_existing_identity() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = Profile::open(dir.path().join("a"))?;
        let b = Profile::open(dir.path().join("b"))?;
        a.identity_or_generate(&user("alice"))?;
        let kept = b.identity_or_generate(&user("alice"))?;
        let file = dir.path().join("a.pem");
        a.export_identity(&file)?;
        assert!(matches!(
            b.import_identity(&file),
            Err(ProfileError::IdentityExists(_))
        ));
        let still = b.identity()?.ok_or("identity vanished")?;
        assert_eq!(still.certificate(), kept.certificate());
        Ok(())
    }

    #[test]
    fn export_refuses_to_overwrite_a_file_and_needs_an_identity() -> TestResult {
        let dir = tempfile::tempdir()?;
        let profile = Profile::open(dir.path().join("p"))?;
        let target = dir.path().join("out.pem");
        assert!(matches!(
            profile.export_identity(&target),
            Err(ProfileError::NoIdentity)
        ));
        profile.identity_or_generate(&user("alice"))?;
        fs::write(&target, b"precious")?;
        assert!(profile.export_identity(&target).is_err());
        assert_eq!(fs::read(&target)?, b"precious");
        Ok(())
    }

    #[test]
    fn a_profile_refuses_a_second_user() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut profile = Profile::open(dir.path())?;
        profile.claim(&user("alice"))?;
        profile.claim(&user("alice"))?;
        assert!(matches!(
            profile.claim(&user("mallory")),
            Err(ProfileError::WrongUser { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_corrupt_state_file_is_reported_with_its_path() -> TestResult {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(STATE_FILE), b"{ not json")?;
        match Profile::open(dir.path()) {
            Err(ProfileError::Corrupt { path, .. }) => {
                assert_eq!(path, dir.path().join(STATE_FILE));
            }
            other => panic!("expected a corrupt-state error, got {other:?}"),
        }
        fs::write(
            dir.path().join(STATE_FILE),
            br#"{"server_fingerprint": "xyz"}"#,
        )?;
        assert!(matches!(
            Profile::open(dir.path()),
            Err(ProfileError::Corrupt { .. })
        ));
        Ok(())
    }
}
