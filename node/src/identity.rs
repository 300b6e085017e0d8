//! The node's identity: one ed25519 key whose libp2p `PeerId` is the node id and which signs every
//! document the node issues, and the private files (key, admin token) that hold secrets on disk.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use rand::RngCore;

/// File name of the node key inside a data dir.
pub const KEY_FILE: &str = "node.key";
/// File name of the admin API token inside a data dir.
pub const TOKEN_FILE: &str = "api.token";

/// Why a key or token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file does not exist.
    #[error("{path}: file not found ({what}); create a node with `yrd init`")]
    Missing {
        /// Path that was looked for.
        path: PathBuf,
        /// What the file is.
        what: &'static str,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others may read a secret.
    #[error(
        "{path}: {what} is readable by group or others (mode {mode:o}); \
         fix with: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// What the file is.
        what: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file's content is not a key.
    #[error("{path}: corrupt node key: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Refusing to overwrite a secret.
    #[error("{path}: already exists; refusing to overwrite an existing node")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// The node's ed25519 key, usable both by libp2p and for signing documents.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
    keypair: Keypair,
    /// Derived once: every record and signed answer names it.
    peer_id: PeerId,
    peer_text: Arc<str>,
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The key with this 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        // libp2p takes the same 32-byte secret; both views share one key.
        let keypair = match Keypair::ed25519_from_bytes(seed) {
            Ok(k) => k,
            // ok: a 32-byte slice is always a valid ed25519 secret; this arm is unreachable.
            Err(_) => Keypair::generate_ed25519(),
        };
        let peer_id = keypair.public().to_peer_id();
        NodeKey {
            signing,
            keypair,
            peer_id,
            peer_text: peer_id.to_string().into(),
        }
    }

    /// Loads `path`, refusing files that group or others can read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let bytes = read_private_file(path, "the node key")?;
        let text = String::from_utf8(bytes).map_err(|_| IdentityError::Corrupt {
            path: path.to_path_buf(),
            reason: "not text (expected 64 hex characters)".into(),
        })?;
        let hex_text = text.trim();
        let raw = hex::decode(hex_text).map_err(|e| IdentityError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not hex ({e}); expected 64 hex characters"),
        })?;
        let seed: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{} bytes, expected 32", raw.len()),
            })?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the key to a new file with mode 0600; refuses to overwrite.
    pub fn save_new(&self, path: &Path) -> Result<(), IdentityError> {
        let text = format!("{}\n", hex::encode(self.signing.to_bytes()));
        write_private_file(path, text.as_bytes())
    }

    /// The node id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node id as text (base58), as documents and records name it.
    pub fn peer_id_text(&self) -> &str {
        &self.peer_text
    }

    /// The libp2p view of the key.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The signing view of the key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Hex of the 32-byte public key, as documents name their signer.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "NodeKey({})", short_peer(&self.peer_id()))
    }
}

/// The libp2p peer id of a raw ed25519 public key.
pub fn peer_id_of(public: &ed25519_dalek::VerifyingKey) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(public.as_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The last ten characters of a peer id: every ed25519 id starts with "12D3KooW", so the tail is
/// what tells peers apart on a screen.
pub fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_string();
    let start = s.len().saturating_sub(10);
    format!("…{}", &s[start..])
}

/// A new random admin token (hex of 32 random bytes).
pub fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Reads the admin token, refusing a file others can read.
pub fn load_token(path: &Path) -> Result<String, IdentityError> {
    let bytes = read_private_file(path, "the admin API token")?;
    let token = String::from_utf8(bytes)
        .unwrap_or_default()
        .trim()
        .to_string();
    if token.len() < 32 {
        return Err(IdentityError::Corrupt {
            path: path.to_path_buf(),
            reason: "admin token is shorter than 32 characters".into(),
        });
    }
    Ok(token)
}

/// The admin token the API checks, read from its file and re-read from it on demand (SIGHUP,
/// `yrd token rotate`, `POST /api/v1/token/reload`). Cloning shares the cell.
#[derive(Clone)]
pub struct AdminToken {
    cell: std::sync::Arc<parking_lot::RwLock<std::sync::Arc<str>>>,
    path: std::sync::Arc<Path>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

impl AdminToken {
    /// The token in `path` (refused if others can read it, or too short).
    pub fn load(path: &Path) -> Result<AdminToken, IdentityError> {
        let token = load_token(path)?;
        Ok(AdminToken {
            cell: std::sync::Arc::new(parking_lot::RwLock::new(token.into())),
            path: path.into(),
        })
    }

    /// The token now.
    pub fn current(&self) -> std::sync::Arc<str> {
        self.cell.read().clone()
    }

    /// Re-reads the token file (with the same checks as at start) and uses it from now on; the
    /// old token keeps working if the file is refused.
    pub fn reload(&self) -> Result<(), IdentityError> {
        let token = load_token(&self.path)?;
        *self.cell.write() = token.into();
        tracing::info!(file = %self.path.display(), "admin token reloaded");
        Ok(())
    }
}

/// Writes a new random admin token to `path` (0600, fsynced, renamed over the old one, so a
/// crash leaves the old token or the new one, never half of either); returns nothing secret.
pub fn rotate_token(path: &Path) -> Result<(), IdentityError> {
    let tmp = path.with_extension("token.new");
    let _ = fs::remove_file(&tmp);
    write_private_file(&tmp, format!("{}\n", new_token()).as_bytes())?;
    fs::rename(&tmp, path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// File name of the key a rotation switches to (`yrd key rotate`), until the switch.
pub const NEXT_KEY_FILE: &str = "node.key.next";
/// Directory of the keys a rotation retired, `retired-<peer id>.key` each (0600).
pub const RETIRED_KEYS_DIR: &str = "keys";

/// The key `yrd key rotate` switches to: `DATA_DIR/node.key.next` if a rotation is under way,
/// else a new random key written there (0600). Asking twice gives the same key, so a proposal
/// submitted again names the same key.
pub fn next_key(data_dir: &Path) -> Result<NodeKey, IdentityError> {
    let path = data_dir.join(NEXT_KEY_FILE);
    if !path.exists() {
        match NodeKey::generate().save_new(&path) {
            Ok(()) | Err(IdentityError::Exists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    NodeKey::load(&path)
}

/// The key a rotation under way switches to, if there is one.
pub fn pending_next_key(data_dir: &Path) -> Result<Option<NodeKey>, IdentityError> {
    let path = data_dir.join(NEXT_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    NodeKey::load(&path).map(Some)
}

/// Where a retired key is kept.
pub fn retired_key_path(data_dir: &Path, peer: &PeerId) -> PathBuf {
    data_dir
        .join(RETIRED_KEYS_DIR)
        .join(format!("retired-{peer}.key"))
}

/// The peer ids of the keys this node ran on before (those a rotation retired under `keys/`),
/// sorted; empty when it never rotated. Names only: the files are not read. A file whose name
/// is not `retired-<peer id>.key` is ignored.
pub fn retired_peer_ids(data_dir: &Path) -> Result<Vec<PeerId>, IdentityError> {
    let dir = data_dir.join(RETIRED_KEYS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(IdentityError::Io { path: dir, source }),
    };
    let mut peers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| IdentityError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let peer = name
            .to_str()
            .and_then(|n| n.strip_prefix("retired-"))
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|n| n.parse::<PeerId>().ok());
        peers.extend(peer);
    }
    peers.sort();
    Ok(peers)
}

/// Switches the node key to `node.key.next`, in steps each of which a crash may interrupt and a
/// new call completes: (1) the current key is copied to `keys/retired-<peer>.key` (0600,
/// fsynced); (2) `node.key.next` is renamed over `node.key` (atomic) and the directory
/// fsynced. A crash before (2) leaves the old key in force and the switch is done again at the
/// next start; after it, the new key is in force and nothing is pending. Returns the new key.
pub fn switch_to_next_key(data_dir: &Path) -> Result<NodeKey, IdentityError> {
    let key_path = data_dir.join(KEY_FILE);
    let next_path = data_dir.join(NEXT_KEY_FILE);
    let current = NodeKey::load(&key_path)?;
    let next = NodeKey::load(&next_path)?;
    retire_key(data_dir, &current)?;
    fs::rename(&next_path, &key_path).map_err(|source| IdentityError::Io {
        path: next_path.clone(),
        source,
    })?;
    sync_dir(data_dir)?;
    tracing::info!(retired = %current.peer_id(), key = %next.peer_id(), "node key switched");
    Ok(next)
}

/// Step (1) of [`switch_to_next_key`]: keeps `key` under `keys/` (done again harmlessly).
pub fn retire_key(data_dir: &Path, key: &NodeKey) -> Result<(), IdentityError> {
    let dir = data_dir.join(RETIRED_KEYS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| IdentityError::Io {
            path: dir.clone(),
            source,
        })?;
    let path = retired_key_path(data_dir, &key.peer_id());
    match key.save_new(&path) {
        Ok(()) => sync_dir(&dir),
        // Kept by an interrupted switch: it must be the same key.
        Err(IdentityError::Exists { .. }) if NodeKey::load(&path)?.peer_id() == key.peer_id() => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// File name of the query secret inside a data dir (beside the node key).
pub const QUERY_SECRET_FILE: &str = "query.secret";

/// The node-local secret of query services (`DATA_DIR/query.secret`, 0600, created at the
/// first start): it keys the hash under which the provenance log names a looked-up key, so
/// that the calls about one key can be listed while the value is never kept in clear, and the
/// hash of the key index. Only this node can compute either.
#[derive(Clone)]
pub struct QuerySecret {
    key_hash: [u8; 32],
    index: [u8; 32],
}

impl fmt::Debug for QuerySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QuerySecret(..)")
    }
}

impl QuerySecret {
    /// Loads `path`, creating it (0600, 32 random bytes as hex) when it does not exist;
    /// refuses a file group or others can read.
    pub fn load_or_create(path: &Path) -> Result<QuerySecret, IdentityError> {
        if !path.exists() {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            match write_private_file(path, format!("{}\n", hex::encode(seed)).as_bytes()) {
                Ok(()) | Err(IdentityError::Exists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(QuerySecret::from_seed(&read_seed_file(
            path,
            "the query secret",
        )?))
    }

    /// The secret derived from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> QuerySecret {
        QuerySecret {
            key_hash: blake3::derive_key("yrd/v1 query key hash", seed),
            index: blake3::derive_key("yrd/v1 query key index", seed),
        }
    }

    /// The keyed hash (hex, 16 bytes) naming `value` of `field` in `dataset` of `publisher`
    /// in provenance records.
    pub fn key_hash(&self, publisher: &str, dataset: &str, field: &str, value: &str) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key_hash);
        for part in [publisher, dataset, field, value] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize().as_bytes()[..16])
    }

    /// The 64-bit hash of a key value in the key index.
    pub fn index_hash(&self, value: &str) -> u64 {
        let hash = blake3::keyed_hash(&self.index, value.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_be_bytes(first)
    }
}

/// File name of the mask secret inside a data dir (beside the node key).
pub const MASK_SECRET_FILE: &str = "mask.secret";

/// The node-local secret the mask salts of derived deliveries are drawn from
/// (`DATA_DIR/mask.secret`, 0600): it keys every pseudonym (`hmac-sha256` masks) this node hands
/// out, per grant. It is kept apart from the node key so that rotating the key (`yrd key
/// rotate`) changes no pseudonym a grantee already holds. A node created before this file
/// existed derived its salts from the node key's secret bytes: its first start writes those same
/// bytes here, so every pseudonym stays identical, and they are never taken from the key again.
/// `yrd init` writes 32 random bytes instead.
#[derive(Clone)]
pub struct MaskSecret {
    seed: [u8; 32],
}

impl fmt::Debug for MaskSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskSecret(..)")
    }
}

impl MaskSecret {
    /// Loads `path`; when it does not exist, first writes it (0600) from `key`'s secret bytes —
    /// the seed the mask salts were derived from before the file existed. Refuses a file group
    /// or others can read.
    pub fn load_or_migrate(path: &Path, key: &NodeKey) -> Result<MaskSecret, IdentityError> {
        if !path.exists() {
            let text = format!("{}\n", hex::encode(key.signing_key().to_bytes()));
            match write_private_file(path, text.as_bytes()) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "mask secret written from the node key (pseudonyms unchanged)");
                }
                Err(IdentityError::Exists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(MaskSecret {
            seed: read_seed_file(path, "the mask secret")?,
        })
    }

    /// Writes a new random mask secret to `path` (0600); refuses to overwrite.
    pub fn create_random(path: &Path) -> Result<(), IdentityError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        write_private_file(path, format!("{}\n", hex::encode(seed)).as_bytes())
    }

    /// The secret with this seed.
    pub fn from_seed(seed: [u8; 32]) -> MaskSecret {
        MaskSecret { seed }
    }

    /// The 32-byte seed the mask salts are derived from (`transfer::mask_salt`).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
}

/// Reads a 0600 file holding 32 bytes as hex (a query or mask secret).
fn read_seed_file(path: &Path, what: &'static str) -> Result<[u8; 32], IdentityError> {
    let bytes = read_private_file(path, what)?;
    let corrupt = |reason: &str| IdentityError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("{what}: {reason}"),
    };
    let text = String::from_utf8(bytes).map_err(|_| corrupt("not text"))?;
    let raw = hex::decode(text.trim()).map_err(|_| corrupt("not hex"))?;
    raw.as_slice()
        .try_into()
        .map_err(|_| corrupt("expected 32 bytes"))
}

/// Refuses a secret file that group or others can read, naming the fix.
pub fn check_private(path: &Path, what: &'static str) -> Result<(), IdentityError> {
    let meta = fs::metadata(path).map_err(|e| io_or_missing(path, what, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::TooOpen {
            path: path.to_path_buf(),
            what,
            mode,
        });
    }
    Ok(())
}

fn read_private_file(path: &Path, what: &'static str) -> Result<Vec<u8>, IdentityError> {
    check_private(path, what)?;
    fs::read(path).map_err(|e| io_or_missing(path, what, e))
}

/// Creates `path` with mode 0600 and `contents`, fsynced; refuses to overwrite.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

fn io_or_missing(path: &Path, what: &'static str, e: std::io::Error) -> IdentityError {
    if e.kind() == std::io::ErrorKind::NotFound {
        IdentityError::Missing {
            path: path.to_path_buf(),
            what,
        }
    } else {
        IdentityError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_permissions() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(KEY_FILE);
        let key = NodeKey::generate();
        key.save_new(&path)?;
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        let loaded = NodeKey::load(&path)?;
        assert_eq!(loaded.peer_id(), key.peer_id());
        assert_eq!(
            peer_id_of(&key.signing_key().verifying_key()),
            Some(key.peer_id())
        );
        assert!(matches!(
            key.save_new(&path),
            Err(IdentityError::Exists { .. })
        ));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        let err = NodeKey::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        Ok(())
    }

    #[test]
    fn the_keys_a_switch_retired_are_listed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(retired_peer_ids(dir.path())?.is_empty(), "never rotated");
        let first = NodeKey::generate();
        first.save_new(&dir.path().join(KEY_FILE))?;
        let second = next_key(dir.path())?;
        assert_eq!(switch_to_next_key(dir.path())?.peer_id(), second.peer_id());
        let third = next_key(dir.path())?;
        switch_to_next_key(dir.path())?;
        // Not a retired key: ignored.
        fs::write(dir.path().join(RETIRED_KEYS_DIR).join("notes.txt"), b"x")?;
        let mut expected = vec![first.peer_id(), second.peer_id()];
        expected.sort();
        assert_eq!(retired_peer_ids(dir.path())?, expected);
        assert!(!retired_peer_ids(dir.path())?.contains(&third.peer_id()));
        Ok(())
    }

    #[test]
    fn corrupt_key_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(KEY_FILE);
        write_private_file(&path, b"abcd\n")?;
        let err = NodeKey::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("corrupt node key") && err.contains("2 bytes"),
            "{err}"
        );
        let missing = NodeKey::load(&dir.path().join("nope"))
            .err()
            .map(|e| e.to_string());
        assert!(missing.unwrap_or_default().contains("not found"));
        Ok(())
    }

    #[test]
    fn the_mask_secret_is_migrated_from_the_key_once_and_never_rederived()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(MASK_SECRET_FILE);
        let key = NodeKey::from_seed([7; 32]);
        // First start of a node from before the file: the seed is the key's secret bytes, so the
        // salts (and every pseudonym) are the ones the key gave.
        let first = MaskSecret::load_or_migrate(&path, &key)?;
        assert_eq!(first.seed(), &key.signing_key().to_bytes());
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        // After the key changes (a rotation), the file is what counts, not the key.
        let rotated = NodeKey::from_seed([8; 32]);
        let after = MaskSecret::load_or_migrate(&path, &rotated)?;
        assert_eq!(after.seed(), first.seed());
        // A file others can read is refused, naming the fix.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
        let err = MaskSecret::load_or_migrate(&path, &rotated)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("mask secret") && err.contains("chmod 600"),
            "{err}"
        );
        // `yrd init`'s is random and never overwritten.
        let fresh = dir.path().join("fresh.secret");
        MaskSecret::create_random(&fresh)?;
        assert!(matches!(
            MaskSecret::create_random(&fresh),
            Err(IdentityError::Exists { .. })
        ));
        let random = MaskSecret::load_or_migrate(&fresh, &key)?;
        assert_ne!(random.seed(), &key.signing_key().to_bytes());
        fs::write(&fresh, b"zz\n")?;
        let corrupt = MaskSecret::load_or_migrate(&fresh, &key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(corrupt.contains("the mask secret: not hex"), "{corrupt}");
        Ok(())
    }

    /// The switch survives a crash at each step: after the retired copy is written (step 1)
    /// the old key is still in force and the switch completes at the next call; after the
    /// rename (step 2) nothing is pending.
    #[test]
    fn a_key_switch_interrupted_at_each_step_completes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let old = NodeKey::from_seed([1; 32]);
        old.save_new(&d.join(KEY_FILE))?;
        assert!(pending_next_key(d)?.is_none());
        let next = next_key(d)?;
        // Asked again (the proposal submitted again): the same key.
        assert_eq!(next_key(d)?.peer_id(), next.peer_id());
        assert_eq!(
            fs::metadata(d.join(NEXT_KEY_FILE))?.permissions().mode() & 0o777,
            0o600
        );
        // Crash after step 1: the old key is kept and still the node's; the next is pending.
        retire_key(d, &old)?;
        assert_eq!(NodeKey::load(&d.join(KEY_FILE))?.peer_id(), old.peer_id());
        assert!(pending_next_key(d)?.is_some());
        // The next start completes it.
        let switched = switch_to_next_key(d)?;
        assert_eq!(switched.peer_id(), next.peer_id());
        assert_eq!(NodeKey::load(&d.join(KEY_FILE))?.peer_id(), next.peer_id());
        assert!(pending_next_key(d)?.is_none());
        let retired = retired_key_path(d, &old.peer_id());
        assert_eq!(NodeKey::load(&retired)?.peer_id(), old.peer_id());
        assert_eq!(fs::metadata(&retired)?.permissions().mode() & 0o777, 0o600);
        // After step 2 nothing is pending: a switch asked again finds no next key.
        assert!(matches!(
            switch_to_next_key(d),
            Err(IdentityError::Missing { .. })
        ));
        // A retired file holding another key is not overwritten.
        let other = NodeKey::from_seed([3; 32]);
        fs::remove_file(&retired)?;
        other.save_new(&retired)?;
        assert!(retire_key(d, &old).is_err());
        Ok(())
    }
}
