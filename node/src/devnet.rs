//! The local devnet: N in-process nodes (Shanghai, Jiangsu, Zhejiang, Anhui first, then cities)
//! on loopback, each trusting the others, kept in one directory so a second run reuses identities.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use libp2p::{Multiaddr, PeerId};

use crate::config::{CONFIG_FILE, NodeConfig};
use crate::identity::{self, AdminToken, KEY_FILE, NodeKey, TOKEN_FILE};
use crate::model::charter::{
    ChangePolicy, Charter, CharterMember, Federation, MemberKey, Role, SignedCharter,
    verify_genesis,
};
use crate::model::region::{self, Region, RegionInfo};
use crate::node::{NodeError, NodeOptions};
use crate::server::{Server, ServerError};
use crate::setup::{self, InitOptions, SetupError};

/// Why the devnet could not run.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A node dir could not be created or updated.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A node's config is unreadable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A node's key or token is unusable.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// A node failed to start.
    #[error("node {region}: {source}")]
    Start {
        /// Which node.
        region: String,
        /// Why.
        source: ServerError,
    },
    /// A node refused a step of the devnet's setup.
    #[error("node {region}: {source}")]
    Node {
        /// Which node.
        region: String,
        /// Why.
        source: NodeError,
    },
    /// The embedded seed data does not parse (a bug in this build).
    #[error("node {region}: embedded devnet seed data unreadable: {source}")]
    SeedData {
        /// Which node.
        region: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// Sample records could not be generated for a dataset.
    #[error("sample records of {dataset}: {source}")]
    Samples {
        /// The dataset.
        dataset: String,
        /// Why.
        source: crate::samples::SampleError,
    },
    /// A devnet file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Too many or too few nodes.
    #[error("--nodes {0}: expected 1 to {max}", max = max_nodes())]
    NodeCount(usize),
    /// No free port could be found.
    #[error("no free port on 127.0.0.1: {0}")]
    Ports(std::io::Error),
    /// Waiting for a signal failed.
    #[error("cannot wait for a signal: {0}")]
    Signal(std::io::Error),
}

/// The most nodes a devnet can have: one per region of the table.
pub fn max_nodes() -> usize {
    region::all().count()
}

/// One devnet node, prepared but not started.
#[derive(Debug, Clone)]
pub struct DevnetMember {
    /// Its region.
    pub region: Region,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its config.
    pub config: NodeConfig,
}

/// A started devnet.
#[derive(Debug)]
pub struct Devnet {
    /// The running nodes, in region order.
    pub nodes: Vec<(DevnetMember, Server)>,
}

fn slug(info: &RegionInfo) -> String {
    info.name_en
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

fn organisation(info: &RegionInfo) -> String {
    match info.code {
        310000 => "上海市大数据中心".into(),
        320000 => "江苏省大数据管理中心".into(),
        330000 => "浙江省大数据发展管理局".into(),
        340000 => "安徽省数据资源管理局".into(),
        _ => format!("{}数据资源管理局", info.name_zh),
    }
}

/// Where devnet ports are picked: below Linux's ephemeral range (32768–60999), so that neither
/// another process binding port 0 nor an outgoing connection's local port takes a devnet's port
/// between the moment it is picked and the moment its node binds it (a devnet keeps its ports
/// across runs, so they cannot be chosen by binding port 0 at start).
const DEVNET_PORTS: std::ops::Range<u16> = 20_000..32_000;

fn free_port_pair() -> Result<u16, DevnetError> {
    use rand::Rng;
    // A port free for both TCP and UDP, so TCP and QUIC share one number.
    let mut rng = rand::thread_rng();
    for _ in 0..256 {
        let port = rng.gen_range(DEVNET_PORTS);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(DevnetError::Ports(std::io::Error::other(format!(
        "no port in {}..{} free for both TCP and UDP",
        DEVNET_PORTS.start, DEVNET_PORTS.end
    ))))
}

fn ports_free(config: &NodeConfig) -> bool {
    let api_free = TcpListener::bind(config.api.listen).is_ok();
    api_free
        && config.network.listen.iter().all(|addr| {
            let parts: Vec<_> = addr.iter().collect();
            match parts.as_slice() {
                [_, libp2p::multiaddr::Protocol::Tcp(p)] => {
                    TcpListener::bind(("127.0.0.1", *p)).is_ok()
                }
                [_, libp2p::multiaddr::Protocol::Udp(p), _] => {
                    UdpSocket::bind(("127.0.0.1", *p)).is_ok()
                }
                _ => false,
            }
        })
}

fn listen_addrs(port: u16) -> Vec<Multiaddr> {
    [
        format!("/ip4/127.0.0.1/tcp/{port}"),
        format!("/ip4/127.0.0.1/udp/{port}/quic-v1"),
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

/// Creates the node dirs that do not exist yet, keeps the identities of those that do, and
/// rewrites every config so each node trusts and bootstraps to all the others.
pub fn prepare(dir: &Path, nodes: usize) -> Result<Vec<DevnetMember>, DevnetError> {
    if nodes == 0 || nodes > max_nodes() {
        return Err(DevnetError::NodeCount(nodes));
    }
    let regions: Vec<RegionInfo> = region::all().take(nodes).collect();
    let mut members = Vec::new();
    for info in &regions {
        let data_dir = dir.join(slug(info));
        let region = Region::from_code(info.code)
            .map_err(|e| DevnetError::Setup(SetupError::Serialize(e.to_string())))?;
        let config_path = data_dir.join(CONFIG_FILE);
        if !data_dir.join(KEY_FILE).exists() {
            let port = free_port_pair()?;
            let api_port = free_port_pair()?;
            setup::init(InitOptions {
                data_dir: data_dir.clone(),
                region,
                name: organisation(info),
                listen: listen_addrs(port),
                api: Some(SocketAddr::from(([127, 0, 0, 1], api_port))),
                members: Vec::new(),
                bootstrap: Vec::new(),
                mdns: true,
                key: None,
            })?;
        }
        let key = NodeKey::load(&data_dir.join(KEY_FILE))?;
        identity::check_private(&data_dir.join(TOKEN_FILE), "the admin API token")?;
        let mut config = NodeConfig::load(&config_path)?;
        if !ports_free(&config) {
            config.network.listen = listen_addrs(free_port_pair()?);
            config.api.listen = SocketAddr::from(([127, 0, 0, 1], free_port_pair()?));
        }
        members.push(DevnetMember {
            region,
            data_dir,
            peer_id: key.peer_id(),
            config,
        });
    }
    let all: Vec<(PeerId, Vec<Multiaddr>, String)> = members
        .iter()
        .map(|m| {
            (
                m.peer_id,
                m.config.network.listen.clone(),
                m.config.node.name.clone(),
            )
        })
        .collect();
    let charter = genesis_charter(dir, &members)?;
    for m in &mut members {
        m.config.network.mdns = true;
        // The nodes run on the devnet's genesis charter, not on member lists.
        m.config.federation.members = Vec::new();
        m.config.federation.charter = Some(
            Path::new("..").join(
                charter
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(CHARTER_FILE)),
            ),
        );
        m.config.network.bootstrap = all
            .iter()
            .filter(|(p, _, _)| *p != m.peer_id)
            .filter_map(|(p, addrs, _)| addrs.first().and_then(|a| a.clone().with_p2p(*p).ok()))
            .collect();
        m.config.exchange.auto_approve = devnet_rules(m.region.code());
        let path = m.data_dir.join(CONFIG_FILE);
        m.config.check(&path)?;
        setup::write_config(&path, &m.config)?;
    }
    Ok(members)
}

/// The devnet's charter, next to the node dirs.
pub const CHARTER_FILE: &str = "charter.json";

pub use crate::model::charter::fictitious_member_id;

/// The genesis charter of `nodes` (keys in their data dirs): the provinces are founders and the
/// cities members; changes need 3 founders (or all of them, when fewer run), and the genesis
/// is signed by that many, the first founders in region order (3 of 4 for the usual devnet).
pub fn devnet_genesis(nodes: &[(Region, String, NodeKey)]) -> Result<SignedCharter, String> {
    use crate::model::region::RegionLevel;
    let is_founder =
        |r: Region| region::all().any(|i| i.code == r.code() && i.level == RegionLevel::Province);
    let members: Vec<CharterMember> = nodes
        .iter()
        .enumerate()
        .map(|(i, (r, name, key))| CharterMember {
            member_id: fictitious_member_id(*r, i + 1),
            organisation: name.clone(),
            region: *r,
            role: if is_founder(*r) {
                Role::Founder
            } else {
                Role::Member
            },
            keys: vec![MemberKey::ed25519_hex(key.public_hex())],
        })
        .collect();
    let founders = members.iter().filter(|m| m.role == Role::Founder).count();
    let threshold = founders.clamp(1, 3);
    let now = std::time::SystemTime::now();
    let year = std::time::Duration::from_secs(365 * 86_400);
    let doc = Charter {
        federation: Federation {
            id: "yrd-devnet".into(),
            name: "长三角政务数据共享联盟（开发网）".into(),
        },
        version: 1,
        previous: None,
        issued: crate::clock::format_system_time(now),
        expires: crate::clock::format_system_time(now + year),
        members,
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold: threshold as u32,
        },
    };
    let mut signed = SignedCharter::draft(doc);
    for (r, _, key) in nodes
        .iter()
        .filter(|(r, _, _)| is_founder(*r))
        .take(threshold)
    {
        signed
            .sign(key.signing_key())
            .map_err(|e| format!("{}: {e}", r.label()))?;
    }
    verify_genesis(&signed).map_err(|e| e.to_string())?;
    Ok(signed)
}

/// Keeps `dir/charter.json` if it is a valid, unexpired genesis of exactly these nodes (same keys
/// and regions, so a second run reuses it with the identities); writes a new one otherwise.
fn genesis_charter(dir: &Path, members: &[DevnetMember]) -> Result<PathBuf, DevnetError> {
    let path = dir.join(CHARTER_FILE);
    let io = |source: std::io::Error| DevnetError::Io {
        path: path.clone(),
        source,
    };
    let mut nodes = Vec::new();
    for m in members {
        nodes.push((
            m.region,
            m.config.node.name.clone(),
            NodeKey::load(&m.data_dir.join(KEY_FILE))?,
        ));
    }
    let wanted: Vec<(String, Region)> =
        nodes.iter().map(|(r, _, k)| (k.public_hex(), *r)).collect();
    let reusable = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| SignedCharter::from_json(&t).ok())
        .filter(|c| verify_genesis(c).is_ok())
        .filter(|c| {
            c.document
                .expires_at()
                .is_some_and(|t| t > time::OffsetDateTime::now_utc() + time::Duration::days(30))
        })
        .filter(|c| {
            let held: Vec<(String, Region)> = c
                .document
                .members
                .iter()
                .flat_map(|m| m.keys.iter().map(move |k| (k.public_key.clone(), m.region)))
                .collect();
            held == wanted
        });
    if reusable.is_none() {
        let charter = devnet_genesis(&nodes)
            .map_err(|e| io(std::io::Error::other(format!("devnet charter: {e}"))))?;
        let text = charter
            .to_json_pretty()
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(path)
}

impl Devnet {
    /// Prepares and starts every node.
    pub async fn start(dir: &Path, nodes: usize) -> Result<Devnet, DevnetError> {
        let members = prepare(dir, nodes)?;
        let mut running = Vec::new();
        for m in members {
            let options = NodeOptions {
                config: m.config.clone(),
                data_dir: m.data_dir.clone(),
            };
            match Server::start(options).await {
                Ok(node) => running.push((m, node)),
                Err(source) => {
                    for (_, n) in running {
                        let _ = n.shutdown().await;
                    }
                    return Err(DevnetError::Start {
                        region: m.region.label(),
                        source,
                    });
                }
            }
        }
        Ok(Devnet { nodes: running })
    }

    /// Stops every node cleanly.
    pub async fn shutdown(self) {
        for (m, node) in self.nodes {
            if let Err(e) = node.shutdown().await {
                tracing::error!(region = %m.region.label(), error = %e, "shutdown failed");
            }
        }
    }
}

/// A text table of the nodes: region, peer id, console and API URLs, data dir, token.
pub fn describe(devnet: &Devnet) -> String {
    let mut out = String::from("YRD devnet is running. Ctrl-C stops every node cleanly.\n");
    if let Some((m, _)) = devnet.nodes.first() {
        if let Some(c) = &m.config.federation.charter {
            out.push_str(&format!(
                "Federation charter: {} (genesis, fictitious member ids; `yrd federation show FILE`)\n",
                m.data_dir.join(c).display()
            ));
        }
    }
    out.push('\n');
    for (m, node) in &devnet.nodes {
        let token = identity::load_token(&m.data_dir.join(TOKEN_FILE)).unwrap_or_default();
        out.push_str(&format!(
            "{}  {}\n  peer     {}\n  console  http://{}/\n  metrics  http://{}/metrics\n  data dir {}\n  token    {}\n  try      yrd --data-dir {} peers\n\n",
            m.region.label(),
            m.config.node.name,
            m.peer_id,
            node.api_address,
            node.api_address,
            m.data_dir.display(),
            token,
            m.data_dir.display(),
        ));
    }
    out
}

/// The signals a running node answers, installed before it reports itself ready, so that no
/// SIGTERM or SIGHUP can arrive while the default action (terminating without the clean
/// shutdown) still applies.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers for SIGTERM and SIGHUP (SIGINT is handled when waiting).
    pub fn install() -> Result<Signals, DevnetError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(DevnetError::Signal)?,
            hup: signal(SignalKind::hangup()).map_err(DevnetError::Signal)?,
        })
    }

    /// Waits for SIGINT or SIGTERM. SIGHUP (`systemctl reload`) re-reads each node's admin
    /// token (after `yrd token rotate`); the config is read only at start.
    pub async fn wait(&mut self, tokens: &[&AdminToken]) -> Result<(), DevnetError> {
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        loop {
            tokio::select! {
                r = &mut interrupt => return r.map_err(DevnetError::Signal),
                _ = self.term.recv() => return Ok(()),
                _ = self.hup.recv() => {
                    tracing::info!(
                        "SIGHUP: reloading the admin token; the config is read only at start \
                         (restart the node to apply config changes)"
                    );
                    for token in tokens {
                        if let Err(e) = token.reload() {
                            tracing::error!(error = %e, "admin token not reloaded; the old one stays in force");
                        }
                    }
                }
            }
        }
    }
}

/// The sample catalogue of one devnet region: (offers, demands, withheld), as JSON.
fn sample_lists(
    code: u32,
) -> (
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
) {
    use serde_json::json;
    let offer = |id: &str,
                 title: &str,
                 desc: &str,
                 std: &str,
                 share: &str,
                 cond: Option<&str>,
                 code: &str,
                 theme: &str| {
        let mut v = json!({
            "identifier": id, "title": title, "description": desc,
            "theme": [theme], "keyword": [std, title],
            "media_type": "application/jsonl", "resource_code": code,
            "share_type": share, "share_method": "file", "open_attribute": "not-open",
            "update_cycle": "daily", "schema_id": std, "schema_version": "1.0.0",
            "license": "长三角政务数据共享协议 / YRD government data sharing agreement",
            "issued": "2026-01-01"
        });
        if let Some(c) = cond {
            v["share_conditions"] = json!(c);
        }
        v
    };
    let demand = |id: &str, title: &str, std: &str, purpose: &str, basis: &str| {
        json!({"identifier": id, "title": title, "schema_id": std, "version_req": "^1.0",
               "purpose": purpose, "legal_basis": basis, "frequency": "daily"})
    };
    let withheld = |id: &str, title: &str, reason: &str, basis: &str| json!({"identifier": id, "title": title, "reason": reason, "legal_basis": basis});
    let pipl = "《中华人民共和国个人信息保护法》第十三条、第二十八条";
    match code {
        310000 => (
            vec![
                offer(
                    "sh-enterprise-licence",
                    "上海市企业营业执照信息",
                    "上海市市场监督管理局登记的企业营业执照基本信息，含统一社会信用代码。",
                    "enterprise-licence",
                    "unconditional",
                    None,
                    "310000-SCJG-00001",
                    "市场监管",
                ),
                offer(
                    "sh-medical-settlement",
                    "上海市异地就医直接结算记录",
                    "参保人在上海定点医疗机构发生的跨省异地就医直接结算明细。",
                    "medical-insurance-settlement",
                    "conditional",
                    Some("仅用于参保地医保部门的结算核验与基金监管，需经上海市医疗保障局审批"),
                    "310000-YBJ-00012",
                    "医疗保障",
                ),
            ],
            vec![demand(
                "sh-need-provident-fund",
                "长三角住房公积金缴存记录",
                "housing-provident-fund",
                "跨省公积金贷款资格审核",
                "《住房公积金管理条例》第二十六条",
            )],
            vec![withheld(
                "sh-household-detail",
                "户籍人口明细信息",
                "涉及大量敏感个人信息，不予共享",
                pipl,
            )],
        ),
        320000 => (
            vec![
                offer(
                    "js-social-insurance",
                    "江苏省社会保险缴费记录",
                    "江苏省参保单位及个人的社会保险缴费明细。",
                    "social-insurance-contribution",
                    "conditional",
                    Some("仅用于社保关系跨省转移接续与待遇资格核验"),
                    "320000-RSJ-00003",
                    "社会保障",
                ),
                offer(
                    "js-enterprise-licence",
                    "江苏省企业营业执照信息",
                    "江苏省市场监督管理局登记的企业营业执照基本信息。",
                    "enterprise-licence",
                    "unconditional",
                    None,
                    "320000-SCJG-00001",
                    "市场监管",
                ),
            ],
            vec![demand(
                "js-need-medical-settlement",
                "异地就医直接结算记录",
                "medical-insurance-settlement",
                "异地就医结算清算与基金监管",
                "《医疗保障基金使用监督管理条例》第四条",
            )],
            vec![withheld(
                "js-tax-detail",
                "个人纳税明细",
                "属于税收保密信息，不予共享",
                "《中华人民共和国税收征收管理法》第八条",
            )],
        ),
        330000 => (
            vec![
                offer(
                    "zj-provident-fund",
                    "浙江省住房公积金缴存记录",
                    "浙江省住房公积金缴存职工的缴存明细。",
                    "housing-provident-fund",
                    "conditional",
                    Some("仅用于跨省公积金贷款及提取业务审核"),
                    "330000-GJJ-00007",
                    "住房保障",
                ),
                offer(
                    "zj-electronic-licences",
                    "浙江省电子证照目录",
                    "浙江省政务服务平台签发的电子证照目录索引。",
                    "electronic-licence-index",
                    "unconditional",
                    None,
                    "330000-DSJ-00021",
                    "政务服务",
                ),
            ],
            vec![demand(
                "zj-need-enterprise-licence",
                "长三角企业营业执照信息",
                "enterprise-licence",
                "跨省通办企业登记信息核验",
                "《优化营商环境条例》第三十七条",
            )],
            vec![withheld(
                "zj-medical-records",
                "电子病历",
                "涉及个人健康信息，不予共享",
                pipl,
            )],
        ),
        340000 => (
            vec![offer(
                "ah-elderly-care-subsidy",
                "安徽省养老服务补贴发放记录",
                "安徽省高龄津贴及养老服务补贴发放明细。",
                "elderly-care-subsidy",
                "conditional",
                Some("仅用于补贴发放资格跨省比对，防止重复领取"),
                "340000-MZT-00005",
                "民政",
            )],
            vec![demand(
                "ah-need-social-insurance",
                "长三角社会保险缴费记录",
                "social-insurance-contribution",
                "养老保险关系跨省转移接续",
                "《社会保险法》第十九条",
            )],
            vec![withheld(
                "ah-minimum-living",
                "最低生活保障对象明细",
                "涉及困难群众个人隐私，不予共享",
                pipl,
            )],
        ),
        _ => (Vec::new(), Vec::new(), Vec::new()),
    }
}

/// The devnet's auto-approval rules: each conditional sample offer is granted without an
/// operator when the purpose is a verification (核验), with the standard's personal fields
/// masked (ID numbers keep 6 + 4 characters, other personal fields are hashed). Any other
/// request waits for `yrd requests approve|deny`.
fn devnet_rules(code: u32) -> Vec<crate::config::AutoRule> {
    let (offers, _, _) = sample_lists(code);
    offers
        .iter()
        .filter(|o| o["share_type"] == "conditional")
        .filter_map(|o| {
            let id = o["identifier"].as_str()?;
            let standard = o["schema_id"].as_str()?;
            let info = crate::samples::STANDARDS
                .iter()
                .find(|s| s.id == standard)?;
            let masks = info
                .personal_fields
                .iter()
                .map(|f| {
                    if f.ends_with("id_number") {
                        format!("{f}=keep:6:4")
                    } else {
                        format!("{f}=hash")
                    }
                })
                .collect();
            Some(crate::config::AutoRule {
                name: format!("{id}-verification"),
                decision: crate::config::AutoDecision::Approve,
                datasets: vec![id.to_string()],
                regions: Vec::new(),
                purposes: vec!["核验".into(), "verification".into()],
                fields: Vec::new(),
                masks,
                expires_days: Some(30),
                reason: None,
            })
        })
        .collect()
}

/// A stable seed per dataset, so every devnet gets the same sample records.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Devnet {
    /// Gives a new devnet something to look at: Shanghai publishes the shared data standards,
    /// and each province adds sample offers, demands and withheld entries, and publishes a first
    /// version of each offer from generated records. Idempotent.
    pub async fn seed(&self) -> Result<(), DevnetError> {
        let node_err = |region: Region, source: NodeError| DevnetError::Node {
            region: region.label(),
            source,
        };
        // The seed data is embedded in the binary: failing to read it is a bug, said as such.
        let seed_err = |region: Region, source: serde_json::Error| DevnetError::SeedData {
            region: region.label(),
            source,
        };
        let Some((first, integrator)) = self.nodes.first() else {
            return Ok(());
        };
        for info in crate::samples::STANDARDS {
            let Some(text) = crate::samples::schema_json(info.id) else {
                continue;
            };
            let schema: serde_json::Value =
                serde_json::from_str(text).map_err(|e| seed_err(first.region, e))?;
            let title = format!("{} / {}", info.title_zh, info.title_en);
            integrator
                .node
                .publish_schema(info.id, info.version, Some(title), schema)
                .await
                .map_err(|e| node_err(first.region, e))?;
        }
        for (member, running) in &self.nodes {
            let node = &running.node;
            let (offers, demands, withheld) = sample_lists(member.region.code());
            if offers.is_empty()
                || !node
                    .offers()
                    .map_err(|e| node_err(member.region, e))?
                    .is_empty()
            {
                continue;
            }
            // The standards travel by gossip and anti-entropy; wait for them before offering.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while crate::samples::STANDARDS
                .iter()
                .any(|s| node.schema_doc(s.id, Some(s.version)).is_err())
            {
                if std::time::Instant::now() > deadline {
                    return Err(node_err(
                        member.region,
                        NodeError::NotFound(
                            "the sample standards did not arrive within 30 s".into(),
                        ),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            for o in offers {
                let input = serde_json::from_value(o).map_err(|e| seed_err(member.region, e))?;
                node.add_offer(input)
                    .await
                    .map_err(|e| node_err(member.region, e))?;
            }
            for d in demands {
                let d = serde_json::from_value(d).map_err(|e| seed_err(member.region, e))?;
                node.add_demand(d)
                    .await
                    .map_err(|e| node_err(member.region, e))?;
            }
            for w in withheld {
                let w = serde_json::from_value(w).map_err(|e| seed_err(member.region, e))?;
                node.add_withheld(w)
                    .await
                    .map_err(|e| node_err(member.region, e))?;
            }
            // A first version of every offer, from the standards' sample generators.
            let samples = member.data_dir.join("samples");
            std::fs::create_dir_all(&samples).map_err(|source| DevnetError::Io {
                path: samples.clone(),
                source,
            })?;
            for offer in node.offers().map_err(|e| node_err(member.region, e))? {
                let id = offer.offer.identifier;
                let records = crate::samples::generate(&offer.conforms_to.id, 1000, seed_of(&id))
                    .map_err(|source| DevnetError::Samples {
                    dataset: id.clone(),
                    source,
                })?;
                let text: String = records.iter().map(|r| format!("{r}\n")).collect();
                let file = samples.join(format!("{id}.jsonl"));
                std::fs::write(&file, text).map_err(|source| DevnetError::Io {
                    path: file.clone(),
                    source,
                })?;
                node.publish_dataset(&id, &file, crate::model::exchange::DataFormat::Jsonl)
                    .await
                    .map_err(|e| node_err(member.region, e))?;
            }
        }
        // Every other member subscribes to Shanghai's enterprise licences: each version
        // Shanghai publishes is fetched by all of them within moments.
        let target = format!("{}/sh-enterprise-licence", first.peer_id);
        for (member, running) in self.nodes.iter().skip(1) {
            let node = &running.node;
            if node
                .subscriptions()
                .map_err(|e| node_err(member.region, e))?
                .iter()
                .any(|s| s.dataset == "sh-enterprise-licence")
            {
                continue;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                match node.subscribe(&target).await {
                    Ok(_) => break,
                    Err(e) if std::time::Instant::now() > deadline => {
                        return Err(node_err(member.region, e));
                    }
                    // Shanghai's catalogue is still on its way.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }
}
