//! Creating a new node's data dir: key, admin token and config, refusing to touch an existing
//! node. Used by `yrd init`, the devnet and the test harness.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libp2p::{Multiaddr, PeerId};

use crate::config::{
    ApiSection, CONFIG_FILE, FederationSection, LogSection, Member, NetworkSection, NodeConfig,
    NodeSection,
};
use crate::identity::{self, IdentityError, KEY_FILE, NodeKey, TOKEN_FILE};
use crate::model::region::Region;

/// Why a node could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The data dir already holds a node.
    #[error(
        "{path} already exists: refusing to overwrite an existing node (use another --data-dir)"
    )]
    Exists {
        /// The file found.
        path: PathBuf,
    },
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the key or token failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The resulting config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The config could not be serialised.
    #[error("cannot write the config: {0}")]
    Serialize(String),
}

/// What `yrd init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where the node lives.
    pub data_dir: PathBuf,
    /// Its region.
    pub region: Region,
    /// Its organisation.
    pub name: String,
    /// libp2p listen addresses (defaults when empty).
    pub listen: Vec<Multiaddr>,
    /// Admin API address (default 127.0.0.1:7400).
    pub api: Option<SocketAddr>,
    /// Federation members.
    pub members: Vec<PeerId>,
    /// Bootstrap addresses.
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS on/off.
    pub mdns: bool,
    /// Use this key instead of a fresh one (the harness pre-generates keys).
    pub key: Option<NodeKey>,
}

/// What `yrd init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The new node id.
    pub peer_id: PeerId,
    /// The config file.
    pub config_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// The token file.
    pub token_path: PathBuf,
}

/// Creates the data dir, key (0600), token (0600) and config.
pub fn init(options: InitOptions) -> Result<InitReport, SetupError> {
    let dir = &options.data_dir;
    let key_path = dir.join(KEY_FILE);
    let token_path = dir.join(TOKEN_FILE);
    let config_path = dir.join(CONFIG_FILE);
    for p in [
        &key_path,
        &token_path,
        &config_path,
        &dir.join(identity::MASK_SECRET_FILE),
        &dir.join(crate::store::DB_DIR),
    ] {
        if p.exists() {
            return Err(SetupError::Exists { path: p.clone() });
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SetupError::Io {
            path: dir.clone(),
            source,
        })?;

    let key = options.key.unwrap_or_else(NodeKey::generate);
    let mut network = NetworkSection::default();
    if !options.listen.is_empty() {
        network.listen = options.listen;
    }
    network.bootstrap = options.bootstrap;
    network.mdns = options.mdns;
    let config = NodeConfig {
        node: NodeSection {
            name: options.name,
            region: options.region,
            data_dir: None,
        },
        network,
        federation: FederationSection {
            members: options
                .members
                .into_iter()
                .map(|peer_id| Member {
                    peer_id,
                    name: None,
                })
                .collect(),
            charter: None,
        },
        api: ApiSection {
            listen: options.api.unwrap_or(ApiSection::default().listen),
            ..ApiSection::default()
        },
        exchange: Default::default(),
        sync: Default::default(),
        store: Default::default(),
        log: LogSection::default(),
    };
    config.check(&config_path)?;
    write_config(&config_path, &config)?;
    key.save_new(&key_path)?;
    identity::MaskSecret::create_random(&dir.join(identity::MASK_SECRET_FILE))?;
    identity::write_private_file(
        &token_path,
        format!("{}\n", identity::new_token()).as_bytes(),
    )?;
    Ok(InitReport {
        peer_id: key.peer_id(),
        config_path,
        key_path,
        token_path,
    })
}

/// Writes `config` to `path` (replacing it) with a header pointing at the documentation.
pub fn write_config(path: &Path, config: &NodeConfig) -> Result<(), SetupError> {
    let body = config
        .to_toml()
        .map_err(|e| SetupError::Serialize(e.to_string()))?;
    let text = format!(
        "# YRD Node configuration. Every field is described in docs/configuration.md.\n\
         # Check a change with: yrd config check {}\n\n{body}",
        path.display()
    );
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(|source| SetupError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    })
}
