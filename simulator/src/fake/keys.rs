//! Signing keys kept in a directory, so that they survive an issuer restart and so that a second
//! process (`simulator token`) signs with the key the running issuer publishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::issuer::{
    DEFAULT_AUDIENCE, DEFAULT_ISSUER, Hostile, IdentitySpec, IssuerMode, IssuerState, MintOptions,
    SigningKey, key_from_pair, new_key, sign_token,
};

/// The file naming the published keys, the signing one, and the issuer and audience to sign for.
const INDEX_FILE: &str = "keys.json";

/// What `DIR/keys.json` holds. Each key's private half is `DIR/<kid>.pem`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIndex {
    generation: u64,
    /// Oldest first, as the JWKS lists them.
    published: Vec<String>,
    signing: String,
    issuer: String,
    audience: String,
}

/// A directory of signing keys shared by the issuer process and `simulator token`: private keys
/// as PKCS#8 PEM files readable by their owner only (0600), and an index written atomically
/// (write, then rename), so a reader never sees half a rotation.
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: PathBuf,
}

impl KeyDir {
    /// Opens `path`, creating it (0700) if it does not exist.
    pub fn open(path: &Path) -> Result<KeyDir, String> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(path)
            .map_err(|e| format!("cannot create the key directory `{}`: {e}", path.display()))?;
        Ok(KeyDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_index(&self) -> Result<Option<KeyIndex>, String> {
        let file = self.path.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read `{}`: {e}", file.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("`{}` is not a key index: {e}", file.display()))
    }

    fn read_key(&self, kid: &str) -> Result<SigningKey, String> {
        let file = self.key_file(kid)?;
        let pem = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        let pair = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| format!("`{}` is not a PEM private key: {e}", file.display()))?;
        key_from_pair(kid.to_string(), &pair)
    }

    /// `DIR/<kid>.pem`, refusing a kid that would name a file elsewhere (the index is input).
    fn key_file(&self, kid: &str) -> Result<PathBuf, String> {
        if kid.is_empty() || !kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "`{kid}` in {INDEX_FILE} is not a key id this issuer writes"
            ));
        }
        Ok(self.path.join(format!("{kid}.pem")))
    }

    /// The saved key set, or a new one (a single fresh key) if the directory holds none.
    pub(super) fn load_or_create(&self) -> Result<IssuerState, String> {
        match self.read_index()? {
            Some(index) => {
                let published = index
                    .published
                    .iter()
                    .map(|kid| self.read_key(kid).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()?;
                let signing = published
                    .iter()
                    .find(|k| k.kid == index.signing)
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "{INDEX_FILE}: the signing key `{}` is not published",
                            index.signing
                        )
                    })?;
                Ok(IssuerState {
                    published,
                    signing,
                    mode: IssuerMode::Up,
                    generation: index.generation,
                })
            }
            None => {
                let first = Arc::new(new_key(0)?);
                let state = IssuerState {
                    published: vec![first.clone()],
                    signing: first,
                    mode: IssuerMode::Up,
                    generation: 0,
                };
                self.save(&state, None)?;
                Ok(state)
            }
        }
    }

    /// Writes every published key not yet on disk, then the index; removes the files of keys no
    /// longer published. `names` replaces the recorded issuer and audience.
    pub(super) fn save(
        &self,
        state: &IssuerState,
        names: Option<(&str, &str)>,
    ) -> Result<(), String> {
        for key in &state.published {
            let file = self.key_file(&key.kid)?;
            if !file.exists() {
                write_private(&file, key.private_pem.as_bytes())?;
            }
        }
        let previous = self.read_index()?;
        let (issuer, audience) = match (names, &previous) {
            (Some((i, a)), _) => (i.to_string(), a.to_string()),
            (None, Some(p)) => (p.issuer.clone(), p.audience.clone()),
            (None, None) => (DEFAULT_ISSUER.to_string(), DEFAULT_AUDIENCE.to_string()),
        };
        let index = KeyIndex {
            generation: state.generation,
            published: state.published.iter().map(|k| k.kid.clone()).collect(),
            signing: state.signing.kid.clone(),
            issuer,
            audience,
        };
        let text = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
        let file = self.path.join(INDEX_FILE);
        let staging = self.path.join(format!("{INDEX_FILE}.tmp"));
        std::fs::write(&staging, text)
            .and_then(|()| std::fs::rename(&staging, &file))
            .map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
        for retired in previous.iter().flat_map(|p| &p.published) {
            if !index.published.contains(retired) {
                if let Ok(file) = self.key_file(retired) {
                    let _ = std::fs::remove_file(file);
                }
            }
        }
        Ok(())
    }

    /// The issuer and audience tokens are signed for, as the issuer process last recorded them.
    pub fn names(&self) -> Result<(String, String), String> {
        self.load_or_create()?;
        let index = self
            .read_index()?
            .ok_or_else(|| format!("no {INDEX_FILE} in `{}`", self.path.display()))?;
        Ok((index.issuer, index.audience))
    }

    /// A token signed with the directory's current signing key (a fresh key set is made if the
    /// directory holds none). `issuer` and `audience` default to the recorded ones.
    pub fn mint(
        &self,
        who: &IdentitySpec,
        now_unix: u64,
        lifetime: Duration,
        hostile: Option<Hostile>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<String, String> {
        let state = self.load_or_create()?;
        let index = self
            .read_index()?
            .ok_or_else(|| format!("no {INDEX_FILE} in `{}`", self.path.display()))?;
        let (recorded_issuer, recorded_audience) = (index.issuer, index.audience);
        let options = MintOptions {
            hostile,
            ..MintOptions::valid(now_unix, lifetime)
        };
        sign_token(
            &state.signing,
            issuer.unwrap_or(&recorded_issuer),
            audience.unwrap_or(&recorded_audience),
            who,
            &options,
        )
    }

    /// The directory's current signing key with the issuer and audience it signs for, read once:
    /// a caller minting many tokens keeps it until [`KeyDir::stamp`] changes.
    pub fn current(&self) -> Result<CurrentKey, String> {
        let state = self.load_or_create()?;
        let index = self
            .read_index()?
            .ok_or_else(|| format!("no {INDEX_FILE} in `{}`", self.path.display()))?;
        Ok(CurrentKey {
            key: state.signing,
            issuer: index.issuer,
            audience: index.audience,
        })
    }

    /// When the index was last written (every rotation rewrites it); `None` when it cannot be
    /// read, which a caller treats as "changed".
    pub fn stamp(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.path.join(INDEX_FILE))
            .and_then(|m| m.modified())
            .ok()
    }
}

/// A signing key read from a [`KeyDir`], with the names its tokens carry.
pub struct CurrentKey {
    key: Arc<SigningKey>,
    pub issuer: String,
    pub audience: String,
}

impl CurrentKey {
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// A token for `who` as `options` say, for the recorded issuer and audience.
    pub fn mint(&self, who: &IdentitySpec, options: &MintOptions) -> Result<String, String> {
        sign_token(&self.key, &self.issuer, &self.audience, who, options)
    }
}

/// Creates `file` readable and writable by its owner only: it holds a private key.
fn write_private(file: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(file)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("cannot write `{}`: {e}", file.display()))
}
