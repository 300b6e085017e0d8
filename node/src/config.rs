//! The node's configuration file (TOML): what each field means, its default, and the checks that
//! refuse a bad value with the field, the value and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::region::Region;
use crate::net::{TcpSecurity, peer_of};

/// File name of the config inside a data dir, as `yrd init` writes it.
pub const CONFIG_FILE: &str = "yrd.toml";

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown field, or a value of the wrong shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account, with line, column and field.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{path}: field `{field}` = {value}: {expected}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted path of the field, e.g. `network.bootstrap[1]`.
        field: String,
        /// The value found.
        value: String,
        /// What is expected instead.
        expected: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Who this node is.
    pub node: NodeSection,
    /// libp2p listening, bootstrap and discovery.
    #[serde(default)]
    pub network: NetworkSection,
    /// The federation: the peers allowed to connect.
    #[serde(default)]
    pub federation: FederationSection,
    /// The admin HTTP API.
    #[serde(default)]
    pub api: ApiSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// Dataset exchange: limits, timeouts and auto-approval rules.
    #[serde(default)]
    pub exchange: ExchangeSection,
    /// Catalogue and standard sync, witnessing: rounds, per-peer budgets and timeouts, quotas.
    #[serde(default)]
    pub sync: SyncSection,
    /// The database: how much memory it may keep.
    #[serde(default)]
    pub store: StoreSection,
}

/// `[store]`: the node's sled database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Most memory sled's page cache may hold, in MiB. sled's own default is 1 GiB, which a
    /// node reaches slowly (every record and grant it reads stays cached) and looks like a leak;
    /// the log, grants and catalogues a node reads often fit well within the default 64.
    pub cache_mib: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            cache_mib: crate::store::DEFAULT_CACHE_MIB,
        }
    }
}

/// `[sync]`: how this node keeps catalogues and standards in step with the members and shows
/// them its tree head, and what one member may make it do or hold. Each peer has a budget of its
/// own, so no member can hold up the sync or the witnessing of the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// Seconds between two anti-entropy rounds.
    pub anti_entropy_secs: u64,
    /// Timeout of one sync or witnessing request to a peer (heads, a catalogue, a standard, a
    /// consistency proof, a tree head), in seconds; shorter than `network.request_timeout_secs`
    /// wins.
    pub request_timeout_secs: u64,
    /// Longest time one sync with one peer may take, all its pulls included, in seconds.
    pub peer_deadline_secs: u64,
    /// Most documents pulled from one peer in one sync (standards it lists, catalogues it holds).
    pub max_pulls_per_peer: usize,
    /// Most standard versions kept from one other member; more are refused.
    pub max_standards_per_member: usize,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            anti_entropy_secs: 30,
            request_timeout_secs: 10,
            peer_deadline_secs: 60,
            max_pulls_per_peer: 64,
            max_standards_per_member: 1000,
        }
    }
}

/// `[exchange]`: how this node serves and fetches datasets and answers access requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeSection {
    /// Transfers one peer may have running from this node at once; more are refused as "busy".
    pub max_transfers_per_peer: usize,
    /// Access requests from one peer that may wait for an operator at once; more are refused.
    pub max_pending_requests_per_peer: usize,
    /// A transfer stream that makes no progress for this long is closed, in seconds.
    pub stall_timeout_secs: u64,
    /// How long a fetch keeps retrying an unreachable provider before it fails, in seconds
    /// (it resumes from the chunks it has).
    pub fetch_retry_secs: u64,
    /// Validity of a grant when the approval names none, in days.
    pub default_grant_days: u64,
    /// Rules that answer access requests without an operator, tried in order; the first that
    /// matches decides. A request no rule matches waits for `yrd requests approve|deny`.
    pub auto_approve: Vec<AutoRule>,
}

impl Default for ExchangeSection {
    fn default() -> Self {
        ExchangeSection {
            max_transfers_per_peer: 4,
            max_pending_requests_per_peer: 32,
            stall_timeout_secs: 30,
            fetch_retry_secs: 600,
            default_grant_days: 365,
            auto_approve: Vec::new(),
        }
    }
}

/// What an auto-approval rule decides.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoDecision {
    /// Issue a grant.
    Approve,
    /// Issue a denial with the rule's `reason`.
    Deny,
}

/// `[[exchange.auto_approve]]`: one rule. Every condition given must hold for it to match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoRule {
    /// Name of the rule; a grant it issues says `decided_by = "auto:<name>"`.
    pub name: String,
    /// `approve` or `deny`.
    pub decision: AutoDecision,
    /// Dataset identifiers it applies to; empty means every conditional offer.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// Requester regions it applies to; a province's code also covers its cities. Empty means
    /// any member.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// The request's purpose must contain one of these (ignoring case); empty means any.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Fields granted; empty means the fields requested (or all, if the request names none).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Masks, in the CLI form `FIELD=redact|hash|keep:N:M`.
    #[serde(default)]
    pub masks: Vec<String>,
    /// Validity of the grant in days (default: `default_grant_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_days: Option<u64>,
    /// The reason a `deny` rule gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AutoRule {
    /// Whether the rule applies to a request for `dataset` from `region` for `purpose`.
    pub fn matches(&self, dataset: &str, region: Region, purpose: &str) -> bool {
        let dataset_ok = self.datasets.is_empty() || self.datasets.iter().any(|d| d == dataset);
        let region_ok = self.regions.is_empty()
            || self
                .regions
                .iter()
                .any(|r| *r == region || (*r == r.province() && region.province() == *r));
        let purpose = purpose.to_lowercase();
        let purpose_ok = self.purposes.is_empty()
            || self
                .purposes
                .iter()
                .any(|p| purpose.contains(&p.to_lowercase()));
        dataset_ok && region_ok && purpose_ok
    }
}

/// `[node]`: the organisation running this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Organisation name, e.g. "上海市大数据中心".
    pub name: String,
    /// GB/T 2260 region code of a Delta province or city.
    pub region: Region,
    /// Data dir (key, token, database, blobs). Relative paths are relative to the config file's
    /// directory; absent means the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// `[network]`: libp2p settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Addresses to listen on: TCP (`/ip4/0.0.0.0/tcp/7401`) and QUIC
    /// (`/ip4/0.0.0.0/udp/7401/quic-v1`). Port 0 picks a free port.
    #[serde(serialize_with = "ser_addrs", deserialize_with = "de_addrs")]
    pub listen: Vec<Multiaddr>,
    /// Addresses to announce to peers besides the listen addresses (e.g. a NAT's public address).
    #[serde(serialize_with = "ser_addrs", deserialize_with = "de_addrs")]
    pub external_addresses: Vec<Multiaddr>,
    /// Peers to dial at start and redial with backoff while disconnected. Each address ends in
    /// `/p2p/<peer id>` of a federation member.
    #[serde(serialize_with = "ser_addrs", deserialize_with = "de_addrs")]
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS (off in production, on in the devnet).
    pub mdns: bool,
    /// Longest wait between two redials of an unreachable member, in seconds.
    pub redial_max_secs: u64,
    /// How many members this node keeps connected at all times; 0 keeps every member. In a
    /// federation of more members, each node keeps its neighbours on a ring of all members and
    /// chords chosen by key hash (docs/architecture.md, "Connections"), gossip crosses that
    /// graph, and any other member is dialled when needed. Every node must reach the others
    /// through it, so keep it at 4 or more.
    pub kept_members: usize,
    /// Close a connection idle for this long, in seconds.
    pub idle_timeout_secs: u64,
    /// Seconds between pings of each connected peer.
    pub ping_interval_secs: u64,
    /// Timeout of one request to a peer (documents, not datasets), in seconds.
    pub request_timeout_secs: u64,
    /// Security of TCP connections offered first when dialling: `noise` or `tls` (a listener
    /// accepts both, so members may differ).
    pub tcp_security: TcpSecurity,
    /// QUIC flow-control window per connection (and per stream), in MiB. One stream's
    /// throughput is at most window ÷ round-trip time.
    pub quic_window_mib: u32,
    /// How far the streams of one TCP connection may grow their Yamux receive windows
    /// together, in MiB, beyond each stream's first 256 KiB (at most 256 streams a
    /// connection). One stream's throughput is at most its window ÷ round-trip time; what a
    /// peer can make this node buffer for one connection is at most 64 MiB + this.
    pub tcp_window_mib: u32,
    /// Send and answer queries in batches on `/yrd/query/2` (docs/protocol.md, "Batches").
    /// Off, this node speaks only `/yrd/query/1`, one query per substream, as nodes before
    /// batches did; members that batch see that and send it their queries one by one.
    pub query_batches: bool,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![
                default_addr("/ip4/0.0.0.0/tcp/7401"),
                default_addr("/ip4/0.0.0.0/udp/7401/quic-v1"),
            ],
            external_addresses: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            redial_max_secs: 60,
            kept_members: 12,
            idle_timeout_secs: 300,
            ping_interval_secs: 15,
            request_timeout_secs: 30,
            tcp_security: TcpSecurity::Noise,
            quic_window_mib: 8,
            tcp_window_mib: 8,
            query_batches: true,
        }
    }
}

fn default_addr(s: &str) -> Multiaddr {
    s.parse().unwrap_or_else(|_| Multiaddr::empty())
}

/// `[federation]`: who may connect — a signed charter, or (without one) a list of peer ids.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// The members this node accepts connections from. Any other peer is disconnected right
    /// after its handshake, logged and counted. Not with `charter`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// The federation's signed charter (genesis, or the version to start from): its members'
    /// keys are the members, and each one's region is the charter's, never its own claim
    /// (docs/charter.md). Relative to the config file's directory. Not with `members`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charter: Option<PathBuf>,
}

/// One federation member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's libp2p peer id (`12D3KooW…`), as `yrd init` printed it.
    #[serde(serialize_with = "ser_peer", deserialize_with = "de_peer")]
    pub peer_id: PeerId,
    /// A label for people reading this file, e.g. "江苏省大数据管理中心". Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `[api]`: the admin HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address the admin API listens on. Must be a loopback address unless `allow_remote` is set.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` (and `metrics_listen`) address (put TLS in front of it).
    pub allow_remote: bool,
    /// A second address that serves only `GET /metrics`, without the token, for a scraper that
    /// cannot send one. Off when absent. Must be a loopback address unless `allow_remote` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            allow_remote: false,
            metrics_listen: None,
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `RUST_LOG`-style filter, e.g. "info" or "info,yrd_node::net=debug". `RUST_LOG` overrides it.
    pub filter: String,
    /// "text" or "json".
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl NodeConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks config text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// The checks that serde cannot express.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, value: String, expected: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            value,
            expected: expected.to_string(),
        };
        if self.node.name.trim().is_empty() || self.node.name.chars().count() > 200 {
            return Err(invalid(
                "node.name".into(),
                format!("{:?}", self.node.name),
                "the organisation's name, 1 to 200 characters",
            ));
        }
        if self.network.listen.is_empty() {
            return Err(invalid(
                "network.listen".into(),
                "[]".into(),
                "at least one address, e.g. \"/ip4/0.0.0.0/tcp/7401\"",
            ));
        }
        for (i, addr) in self.network.listen.iter().enumerate() {
            if !is_supported_listen(addr) {
                return Err(invalid(
                    format!("network.listen[{i}]"),
                    format!("\"{addr}\""),
                    "/ip4|ip6/<ip>/tcp/<port> or /ip4|ip6/<ip>/udp/<port>/quic-v1",
                ));
            }
        }
        if self.federation.charter.is_some() && !self.federation.members.is_empty() {
            return Err(invalid(
                "federation.charter".into(),
                format!(
                    "{:?} with {} [[federation.members]]",
                    self.federation.charter.as_deref().unwrap_or(Path::new("")),
                    self.federation.members.len()
                ),
                "either a charter or a member list, not both: the charter's keys are the members",
            ));
        }
        let members: Vec<PeerId> = self.federation.members.iter().map(|m| m.peer_id).collect();
        // With a charter the node checks the bootstrap peers against it when it starts.
        let charter = self.federation.charter.is_some();
        for (i, addr) in self.network.bootstrap.iter().enumerate() {
            match peer_of(addr) {
                None => {
                    return Err(invalid(
                        format!("network.bootstrap[{i}]"),
                        format!("\"{addr}\""),
                        "an address ending in /p2p/<peer id of a federation member>",
                    ));
                }
                Some(peer) if !charter && !members.contains(&peer) => {
                    return Err(invalid(
                        format!("network.bootstrap[{i}]"),
                        format!("\"{addr}\""),
                        "a federation member: add its peer id to [[federation.members]]",
                    ));
                }
                Some(_) => {}
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.federation.members.iter().enumerate() {
            if !seen.insert(m.peer_id) {
                return Err(invalid(
                    format!("federation.members[{i}].peer_id"),
                    format!("\"{}\"", m.peer_id),
                    "each member listed once",
                ));
            }
        }
        if !self.api.allow_remote && !self.api.listen.ip().is_loopback() {
            return Err(invalid(
                "api.listen".into(),
                format!("\"{}\"", self.api.listen),
                "a loopback address such as 127.0.0.1:7400 (or set api.allow_remote = true)",
            ));
        }
        if let Some(m) = self.api.metrics_listen {
            if !self.api.allow_remote && !m.ip().is_loopback() {
                return Err(invalid(
                    "api.metrics_listen".into(),
                    format!("\"{m}\""),
                    "a loopback address such as 127.0.0.1:9400 (or set api.allow_remote = true)",
                ));
            }
            if m == self.api.listen && m.port() != 0 {
                return Err(invalid(
                    "api.metrics_listen".into(),
                    format!("\"{m}\""),
                    "an address other than api.listen",
                ));
            }
        }
        if (1..4).contains(&self.network.kept_members) {
            return Err(invalid(
                "network.kept_members".into(),
                self.network.kept_members.to_string(),
                "0 (every member) or from 4 (fewer cannot keep the members' graph connected)",
            ));
        }
        let secs = [
            (
                "network.redial_max_secs",
                self.network.redial_max_secs,
                1,
                86_400,
            ),
            (
                "network.idle_timeout_secs",
                self.network.idle_timeout_secs,
                10,
                86_400,
            ),
            (
                "network.ping_interval_secs",
                self.network.ping_interval_secs,
                1,
                3_600,
            ),
            (
                "network.request_timeout_secs",
                self.network.request_timeout_secs,
                1,
                600,
            ),
        ];
        for (field, value, min, max) in secs {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    field.into(),
                    value.to_string(),
                    &format!("a number of seconds from {min} to {max}"),
                ));
            }
        }
        for (field, mib) in [
            ("network.quic_window_mib", self.network.quic_window_mib),
            ("network.tcp_window_mib", self.network.tcp_window_mib),
        ] {
            if !(1..=1024).contains(&mib) {
                return Err(invalid(
                    field.into(),
                    mib.to_string(),
                    "a window from 1 to 1024 MiB",
                ));
            }
        }
        let (x, y) = (&self.exchange, &self.sync);
        let limits = [
            (
                "exchange.max_transfers_per_peer",
                x.max_transfers_per_peer,
                1,
                64,
            ),
            (
                "exchange.max_pending_requests_per_peer",
                x.max_pending_requests_per_peer,
                1,
                10_000,
            ),
        ];
        for (field, value, min, max) in limits {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    field.into(),
                    value.to_string(),
                    &format!("a number from {min} to {max}"),
                ));
            }
        }
        let secs = [
            (
                "exchange.stall_timeout_secs",
                x.stall_timeout_secs,
                1,
                3_600,
            ),
            (
                "exchange.fetch_retry_secs",
                x.fetch_retry_secs,
                0,
                7 * 86_400,
            ),
            (
                "exchange.default_grant_days",
                x.default_grant_days,
                1,
                3_650,
            ),
            ("sync.anti_entropy_secs", y.anti_entropy_secs, 1, 86_400),
            ("sync.request_timeout_secs", y.request_timeout_secs, 1, 600),
            ("sync.peer_deadline_secs", y.peer_deadline_secs, 1, 3_600),
            (
                "sync.max_pulls_per_peer",
                y.max_pulls_per_peer as u64,
                1,
                100_000,
            ),
            (
                "sync.max_standards_per_member",
                y.max_standards_per_member as u64,
                1,
                1_000_000,
            ),
            ("store.cache_mib", self.store.cache_mib, 8, 65_536),
        ];
        for (field, value, min, max) in secs {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    field.into(),
                    value.to_string(),
                    &format!("a number from {min} to {max}"),
                ));
            }
        }
        for (i, rule) in x.auto_approve.iter().enumerate() {
            let at = |f: &str| format!("exchange.auto_approve[{i}].{f}");
            if rule.name.trim().is_empty() || rule.name.len() > 64 {
                return Err(invalid(
                    at("name"),
                    format!("{:?}", rule.name),
                    "a rule name of 1 to 64 characters",
                ));
            }
            for (j, m) in rule.masks.iter().enumerate() {
                if let Err(e) = m.parse::<crate::model::masking::FieldMask>() {
                    return Err(invalid(
                        format!("{}[{j}]", at("masks")),
                        format!("{m:?}"),
                        &e.to_string(),
                    ));
                }
            }
            if rule.expires_days.is_some_and(|d| !(1..=3_650).contains(&d)) {
                return Err(invalid(
                    at("expires_days"),
                    format!("{:?}", rule.expires_days),
                    "a number of days from 1 to 3650",
                ));
            }
            if rule.decision == AutoDecision::Deny
                && rule.reason.as_deref().is_none_or(|r| r.trim().is_empty())
            {
                return Err(invalid(
                    at("reason"),
                    "(none)".into(),
                    "a deny rule must give the reason the requester will read",
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(invalid(
                "log.filter".into(),
                format!("{:?}", self.log.filter),
                &format!("a RUST_LOG-style filter such as \"info\" ({e})"),
            ));
        }
        Ok(())
    }

    /// The data dir this config points at, resolved against the config file's directory.
    pub fn data_dir(&self, config_path: &Path) -> PathBuf {
        let base = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        match &self.node.data_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => base.join(d),
            None => base,
        }
    }

    /// The charter file, resolved against the config file's directory.
    pub fn charter_path(&self, config_path: &Path) -> Option<PathBuf> {
        let base = config_path.parent().unwrap_or(Path::new(""));
        self.federation.charter.as_ref().map(|c| base.join(c))
    }

    /// The peer ids of the federation members.
    pub fn member_ids(&self) -> Vec<PeerId> {
        self.federation.members.iter().map(|m| m.peer_id).collect()
    }

    /// The TOML text of this config.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

fn is_supported_listen(addr: &Multiaddr) -> bool {
    let parts: Vec<Protocol> = addr.iter().collect();
    matches!(
        parts.as_slice(),
        [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Tcp(_)]
            | [
                Protocol::Ip4(_) | Protocol::Ip6(_),
                Protocol::Udp(_),
                Protocol::QuicV1
            ]
    )
}

fn ser_addrs<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addrs.iter().map(|a| a.to_string()))
}

fn de_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| {
            Multiaddr::from_str(s).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid multiaddr {s:?} ({e}); expected e.g. \"/ip4/127.0.0.1/tcp/7401\""
                ))
            })
        })
        .collect()
}

fn ser_peer<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&peer.to_string())
}

fn de_peer<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
    let raw = String::deserialize(d)?;
    PeerId::from_str(&raw).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid peer id {raw:?} ({e}); expected a libp2p peer id such as \"12D3KooW…\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "上海市大数据中心"
region = "310000"

[network]
listen = ["/ip4/127.0.0.1/tcp/0"]
"#;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn good_config_parses_with_defaults() -> Result<(), ConfigError> {
        let c = parse(GOOD)?;
        assert_eq!(c.node.region.code(), 310000);
        assert_eq!(c.api.listen.port(), 7400);
        assert!(!c.network.mdns);
        Ok(())
    }

    fn refusal(text: &str) -> String {
        match parse(text) {
            Ok(_) => String::from("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_values_name_field_value_and_expectation() {
        let e = refusal(&GOOD.replace("310000", "110000"));
        assert!(
            e.contains("region") && e.contains("110000") && e.contains("GB/T 2260"),
            "{e}"
        );
        let e = refusal(&format!("{GOOD}\nmdsn = true\n"));
        assert!(e.contains("unknown field") && e.contains("mdsn"), "{e}");
        let e = refusal(&GOOD.replace("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcpx/0"));
        assert!(e.contains("invalid multiaddr"), "{e}");
        let e = refusal(&format!("{GOOD}\n[api]\nlisten = \"0.0.0.0:7400\"\n"));
        assert!(e.contains("api.listen") && e.contains("loopback"), "{e}");
        let e = refusal(&format!(
            "{GOOD}\n[api]\nmetrics_listen = \"0.0.0.0:9400\"\n"
        ));
        assert!(
            e.contains("api.metrics_listen") && e.contains("loopback"),
            "{e}"
        );
        let e = refusal(&format!(
            "{GOOD}\n[api]\nmetrics_listen = \"127.0.0.1:7400\"\n"
        ));
        assert!(e.contains("other than api.listen"), "{e}");
        let ok = parse(&format!(
            "{GOOD}\n[api]\nmetrics_listen = \"127.0.0.1:9400\"\n"
        ));
        assert!(ok.is_ok_and(|c| c.api.metrics_listen.is_some_and(|m| m.port() == 9400)));
        let e = refusal(&format!("{GOOD}bootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n"));
        assert!(
            e.contains("network.bootstrap[0]") && e.contains("/p2p/"),
            "{e}"
        );
        let e = refusal(&format!("{GOOD}kept_members = 2\n"));
        assert!(
            e.contains("network.kept_members") && e.contains("from 4"),
            "{e}"
        );
        let e = refusal(&format!("{GOOD}redial_max_secs = 0\n"));
        assert!(
            e.contains("network.redial_max_secs") && e.contains("from 1"),
            "{e}"
        );
        for field in ["tcp_window_mib", "quic_window_mib"] {
            let e = refusal(&format!("{GOOD}{field} = 0\n"));
            assert!(
                e.contains(&format!("network.{field}")) && e.contains("from 1 to 1024 MiB"),
                "{e}"
            );
        }
        let e = refusal(&format!("{GOOD}\n[sync]\nmax_pulls_per_peer = 0\n"));
        assert!(
            e.contains("sync.max_pulls_per_peer") && e.contains("from 1"),
            "{e}"
        );
        let e = refusal(&format!("{GOOD}\n[store]\ncache_mib = 1\n"));
        assert!(
            e.contains("store.cache_mib") && e.contains("from 8 to 65536"),
            "{e}"
        );
        let e = refusal(&GOOD.replace("\"310000\"", "310000"));
        assert!(e.contains("region"), "{e}");
        let e = refusal("[node]\nname = \"x\"\n");
        assert!(e.contains("missing field") && e.contains("region"), "{e}");
    }

    #[test]
    fn bootstrap_must_be_a_member() {
        let peer = PeerId::random();
        let text = format!("{GOOD}bootstrap = [\"/ip4/127.0.0.1/tcp/1/p2p/{peer}\"]\n");
        let e = refusal(&text);
        assert!(e.contains("federation member"), "{e}");
        let ok = format!("{text}\n[[federation.members]]\npeer_id = \"{peer}\"\n");
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn a_charter_and_a_member_list_are_refused_together() {
        let peer = PeerId::random();
        let charter = format!("{GOOD}\n[federation]\ncharter = \"charter.json\"\n");
        let ok = parse(&charter);
        assert!(
            ok.is_ok_and(|c| c.charter_path(Path::new("/etc/yrd/yrd.toml"))
                == Some(PathBuf::from("/etc/yrd/charter.json")))
        );
        let both = format!("{charter}\n[[federation.members]]\npeer_id = \"{peer}\"\n");
        let e = refusal(&both);
        assert!(
            e.contains("federation.charter") && e.contains("not both"),
            "{e}"
        );
        // With a charter, bootstrap peers are checked against it at start, not here.
        let boot = charter.replace(
            "[federation]",
            &format!("bootstrap = [\"/ip4/127.0.0.1/tcp/1/p2p/{peer}\"]\n[federation]"),
        );
        assert!(parse(&boot).is_ok(), "{}", refusal(&boot));
    }

    #[test]
    fn round_trip_through_toml() -> Result<(), Box<dyn std::error::Error>> {
        let c = parse(GOOD)?;
        let again = parse(&c.to_toml()?)?;
        assert_eq!(c, again);
        Ok(())
    }
}
