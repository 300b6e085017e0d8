//! The `yrd` command line: parses arguments, runs the offline verbs (`init`, `run`, `config
//! check`, `devnet`, `regions`) itself, and sends every other verb to the running node's admin API.

pub mod client;
mod docs;
mod exchange;
mod provenance;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use libp2p::{Multiaddr, PeerId};

use crate::config::{CONFIG_FILE, LogFormat, NodeConfig};
use crate::identity::{self, KEY_FILE, TOKEN_FILE};
use crate::model::region::{self, Region};
use crate::node::{Health, Node, NodeOptions, NodeView, PeerView};
use crate::setup::{self, InitOptions};
use client::{ApiClient, ClientError};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command failed (bad input, refused, internal error).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad command-line usage (clap).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the node's admin API could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: the node refused the request (4xx, including a wrong token).
pub const EXIT_REFUSED: u8 = 4;
/// Exit code: `yrd health` reached the node and it reports itself degraded.
pub const EXIT_DEGRADED: u8 = 5;

/// YRD Node: peer-to-peer government data sharing for the Yangtze River Delta.
#[derive(Debug, Parser)]
#[command(name = "yrd", version, about)]
pub struct Cli {
    /// The node's data dir (key, token, config, database).
    #[arg(long, global = true, env = "YRD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node's config file (its data dir is resolved from it).
    #[arg(long, global = true, env = "YRD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format for `run` and `devnet` (overrides the config's `log.format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new node: key (0600), admin token (0600) and config in --data-dir.
    Init(InitArgs),
    /// Run the node daemon until SIGINT or SIGTERM.
    Run,
    /// Config file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a local network of in-process nodes (Shanghai, Jiangsu, Zhejiang, Anhui, …).
    Devnet(DevnetArgs),
    /// List the GB/T 2260 regions a node may serve.
    Regions,
    /// The admin token: `yrd token rotate` writes a new one and makes the running node use it.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the admin API's OpenAPI 3.1 document (offline; a running node serves the same at
    /// /api/v1/openapi.json).
    Openapi,
    /// Show the running node.
    Node,
    /// Show the running node's health.
    Health,
    /// List connected federation members.
    Peers,
    /// Signed documents, offline: canonical form and signature checks.
    #[command(subcommand)]
    Doc(DocCommand),
    /// Data standards (JSON Schemas): publish, list, show; export the protocol's own schemas.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Our offers (共享数据清单) and the network's catalogue.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Our demands (履职需求数据清单) and matching them against offers.
    #[command(subcommand)]
    Demand(DemandCommand),
    /// Our withheld list (不予共享清单).
    #[command(subcommand)]
    Withheld(WithheldCommand),
    /// Publish a new version of one of our offers from a file (validated against its standard).
    Publish {
        /// The offer identifier.
        dataset: String,
        /// The file: JSON Lines (one record per line), CSV (a header row naming the standard's
        /// fields), or any file with --format file.
        file: PathBuf,
        /// jsonl, csv or file (opaque, not validated).
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
    /// List the published versions of one of our datasets.
    Versions {
        /// The offer identifier.
        dataset: String,
    },
    /// Fetch a dataset version from its publisher, verified chunk by chunk (resumable).
    Fetch {
        /// REGION_OR_PEER/DATASET: a region code or name (320000, Jiangsu) or a peer id, then
        /// the offer identifier.
        target: String,
        /// The version (default: the latest).
        #[arg(long)]
        version: Option<u64>,
        /// The grant to fetch under (default: the latest valid one we hold).
        #[arg(long)]
        grant: Option<String>,
        /// Write the verified file here (temp file, fsync, rename).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Start the fetch and return at once (follow it with `yrd transfers ID`).
        #[arg(long)]
        no_wait: bool,
    },
    /// Ask a provider for conditional data with a signed AccessRequest.
    Request {
        /// REGION_OR_PEER/DATASET.
        target: String,
        /// Why the data is needed (履职事项).
        #[arg(long)]
        purpose: String,
        /// The legal basis (法律依据).
        #[arg(long)]
        basis: String,
        /// Fields wanted, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// Access requests we received or sent: list, show, approve, deny.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Grants we issued or hold: list, show, revoke.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Fetch each new version of a dataset as it is published.
    Subscribe {
        /// REGION_OR_PEER/DATASET.
        target: String,
    },
    /// End a subscription.
    Unsubscribe {
        /// REGION_OR_PEER/DATASET.
        target: String,
    },
    /// List our subscriptions.
    Subscriptions,
    /// Transfers in progress and finished, both ways (or one, by id).
    Transfers {
        /// A transfer id.
        id: Option<String>,
    },
    /// Receipts receivers signed for our data.
    Receipts,
    /// The provenance log: records, deliveries, alarms, evidence bundles.
    #[command(subcommand)]
    Provenance(ProvenanceCommand),
    /// Check an evidence bundle offline (no node needed) and print what it proves.
    Verify {
        /// The bundle (JSON) written by `yrd provenance export`.
        file: PathBuf,
    },
    /// Simulate a network of N real nodes in this process, driven by a scenario file.
    Sim {
        /// The scenario (TOML), e.g. scripts/scenarios/four-provinces.toml.
        #[arg(long)]
        scenario: PathBuf,
        /// Nodes (default: the scenario's `nodes`, else 4).
        #[arg(long)]
        nodes: Option<usize>,
        /// Also write the report as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Keep the nodes' data dirs here instead of a temp dir removed at the end.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `yrd token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a new random admin token to DATA_DIR/api.token (0600) and, if the node is running,
    /// make it switch to the new token at once (the old one stops working).
    Rotate,
}

/// `yrd provenance …`.
#[derive(Debug, Subcommand)]
pub enum ProvenanceCommand {
    /// List records, oldest first.
    List {
        /// Only records about this dataset (or standard).
        #[arg(long)]
        dataset: Option<String>,
        /// Only records with this counterparty (peer id).
        #[arg(long)]
        peer: Option<String>,
        /// Only this kind, e.g. delivery-served, grant-issued, refused.
        #[arg(long)]
        kind: Option<String>,
        /// At or after (RFC 3339, or a date: from its start, UTC).
        #[arg(long)]
        since: Option<String>,
        /// At or before (RFC 3339, or a date: to its end, UTC).
        #[arg(long)]
        until: Option<String>,
        /// Most records.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show one record with its inclusion proof and documents.
    Show {
        /// The record number.
        seq: u64,
    },
    /// Every delivery of a dataset: to whom, which version, fields and masking, purpose, legal
    /// basis, when, and whether a signed receipt came back.
    Deliveries {
        /// The dataset.
        #[arg(long)]
        dataset: String,
    },
    /// Witness alarms: members whose log forked.
    Alarms,
    /// Resolve the open witness alarms of a member's log once you know what happened (e.g. it
    /// restored a backup): its newest head becomes the baseline its next heads must extend.
    Resolve {
        /// The log's owner (peer id), as `provenance alarms` shows it.
        log: String,
        /// What you found and who confirmed it (kept in the provenance log).
        #[arg(long)]
        note: String,
    },
    /// The latest signed tree head and who witnessed it.
    Head,
    /// Recompute every leaf and node of the log.
    Check,
    /// Write an evidence bundle for `yrd verify`.
    Export {
        /// Every record about this dataset.
        #[arg(long, conflicts_with = "seq")]
        dataset: Option<String>,
        /// Or a range of records, A..B (inclusive).
        #[arg(long)]
        seq: Option<String>,
        /// Only records with this counterparty.
        #[arg(long)]
        peer: Option<String>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `yrd requests …`.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests (both directions unless one is chosen).
    List {
        /// Only requests we received.
        #[arg(long = "in")]
        inbound: bool,
        /// Only requests we sent.
        #[arg(long = "out")]
        outbound: bool,
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
    },
    /// Show one request with its signed documents.
    Show {
        /// The request id.
        id: String,
    },
    /// Approve a pending request: sign a grant and send it to the requester.
    Approve {
        /// The request id.
        id: String,
        /// Fields granted, comma-separated (default: as requested).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Mask a granted field: FIELD=redact, FIELD=hash or FIELD=keep:N:M (repeatable).
        #[arg(long)]
        mask: Vec<String>,
        /// Validity: 90d, 12h, 30m (default: exchange.default_grant_days).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Deny a pending request with a reason the requester reads.
    Deny {
        /// The request id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `yrd grants …`.
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List grants issued by us and to us, with their state.
    List,
    /// Show one grant with its signed documents.
    Show {
        /// The grant id.
        id: String,
    },
    /// Withdraw a grant we issued and tell the grantee.
    Revoke {
        /// The grant id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `yrd doc …`.
#[derive(Debug, Subcommand)]
pub enum DocCommand {
    /// Print the RFC 8785 canonical form of a JSON file.
    Canon {
        /// The JSON file.
        file: PathBuf,
    },
    /// Check the signature of a signed document file (any type), offline.
    Verify {
        /// The signed envelope (JSON).
        file: PathBuf,
    },
}

/// `yrd schema …`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Write a JSON Schema for every protocol document and message (offline).
    Export {
        /// Output directory.
        #[arg(long, default_value = "schemas/protocol")]
        out: PathBuf,
    },
    /// Publish a data standard: FILE is a JSON Schema (draft 2020-12).
    Publish {
        /// The JSON Schema file.
        file: PathBuf,
        /// Standard id, e.g. enterprise-licence.
        #[arg(long)]
        id: String,
        /// Semantic version, e.g. 1.0.0.
        #[arg(long)]
        version: String,
        /// Title (default: the schema's own title).
        #[arg(long)]
        title: Option<String>,
    },
    /// List standards: ours, or with --network every one this node holds.
    List {
        /// Include other members' standards.
        #[arg(long)]
        network: bool,
    },
    /// Show a standard: ID or ID@VERSION (default: the highest version).
    Show {
        /// ID[@VERSION].
        spec: String,
    },
}

/// `yrd catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Add (or replace) an offer from a JSON or TOML file.
    Add {
        /// The offer file.
        file: PathBuf,
    },
    /// Remove an offer.
    Remove {
        /// Offer identifier.
        id: String,
    },
    /// Show our three lists and our latest signed catalogue's sequence.
    Show,
    /// Search every member's catalogue, locally.
    Search {
        /// Words to look for (title, description, keywords, themes, identifier, resource code).
        #[arg(long)]
        text: Option<String>,
        /// Standard id.
        #[arg(long)]
        schema: Option<String>,
        /// Publisher region code (a province also matches its cities).
        #[arg(long)]
        region: Option<String>,
        /// unconditional, conditional or not-shared.
        #[arg(long = "share-type")]
        share_type: Option<String>,
    },
    /// Export the catalogue: DCAT-AP 3 JSON-LD or the national template's CSV.
    Export {
        /// dcat or csv.
        #[arg(long)]
        format: String,
        /// Export every member's offers, not only ours.
        #[arg(long)]
        network: bool,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `yrd demand …`.
#[derive(Debug, Subcommand)]
pub enum DemandCommand {
    /// Add (or replace) a demand from a JSON or TOML file.
    Add {
        /// The demand file.
        file: PathBuf,
    },
    /// Remove a demand.
    Remove {
        /// Demand identifier.
        id: String,
    },
    /// Offers that meet our demands, and demands our offers meet.
    Match,
}

/// `yrd withheld …`.
#[derive(Debug, Subcommand)]
pub enum WithheldCommand {
    /// Add (or replace) a withheld entry from a JSON or TOML file.
    Add {
        /// The entry file.
        file: PathBuf,
    },
    /// Remove a withheld entry.
    Remove {
        /// Identifier.
        id: String,
    },
}

/// `yrd init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// GB/T 2260 region code (e.g. 310000 Shanghai; `yrd regions` lists them).
    #[arg(long)]
    pub region: String,
    /// Organisation name, e.g. "上海市大数据中心".
    #[arg(long)]
    pub name: String,
    /// libp2p listen address (repeatable); default TCP and QUIC on port 7401.
    #[arg(long = "listen")]
    pub listen: Vec<String>,
    /// Admin API address (default 127.0.0.1:7400).
    #[arg(long)]
    pub api: Option<String>,
    /// Peer id of a federation member (repeatable).
    #[arg(long = "member")]
    pub members: Vec<String>,
    /// Bootstrap address ending in /p2p/<member peer id> (repeatable).
    #[arg(long = "bootstrap")]
    pub bootstrap: Vec<String>,
}

/// `yrd config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file; prints what is wrong, exits non-zero if anything is.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// `yrd devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Where the nodes' data dirs live (reused by a second run).
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// How many nodes: the four provinces first, then cities.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
}

/// A CLI failure with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad argument value.
    #[error("{0}")]
    Usage(String),
    /// Talking to the node failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Creating a node failed.
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    /// A config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The node failed.
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// The daemon could not start or stop.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// The devnet failed.
    #[error(transparent)]
    Devnet(#[from] crate::devnet::DevnetError),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(String),
    /// An input file could not be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A signed document does not verify.
    #[error("{0}")]
    Invalid(String),
    /// The node answers but is not healthy.
    #[error("the node is {0}")]
    Degraded(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Degraded(_) => EXIT_DEGRADED,
            CliError::Client(ClientError::Unreachable { .. }) => EXIT_UNREACHABLE,
            CliError::Client(ClientError::Api { status, .. }) if *status < 500 => EXIT_REFUSED,
            _ => EXIT_FAILED,
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Init(args) => init(&cli, args),
        Command::Run => run_daemon(&cli).await,
        Command::Config(ConfigCommand::Check { file }) => {
            let config = NodeConfig::load(file)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "file": file, "region": config.node.region }),
                )
            } else {
                println!(
                    "{}: ok ({} — {}, {} federation members)",
                    file.display(),
                    config.node.name,
                    config.node.region.label(),
                    config.federation.members.len()
                );
                Ok(())
            }
        }
        Command::Devnet(args) => devnet(&cli, args).await,
        Command::Regions => regions(&cli),
        Command::Token(TokenCommand::Rotate) => rotate_token(&cli).await,
        Command::Openapi => {
            print!("{}", crate::api::openapi_text());
            Ok(())
        }
        Command::Node => {
            let view: NodeView = client(&cli)?.get("/api/v1/node").await?;
            if cli.json {
                return print_json(&view);
            }
            println!("peer id       {}", view.peer_id);
            println!("region        {}", view.region_label);
            println!("organisation  {}", view.organisation);
            println!("started       {}", view.started_at);
            println!("version       {}", view.version);
            println!(
                "members       {} ({} connected)",
                view.members, view.connected
            );
            println!("data dir      {}", view.data_dir);
            println!("admin API     {}", view.api_address.unwrap_or_default());
            for a in &view.listen_addresses {
                println!("listening     {a}");
            }
            Ok(())
        }
        Command::Health => {
            let health: Health = client(&cli)?.get("/api/v1/health").await?;
            if cli.json {
                print_json(&health)?;
            } else {
                println!(
                    "{}: up {}s, {}/{} members connected, {} refused connections",
                    health.status,
                    health.uptime_secs,
                    health.connected_members,
                    health.members,
                    health.refused_connections
                );
            }
            if health.status == "ok" {
                Ok(())
            } else {
                Err(CliError::Degraded(health.status))
            }
        }
        Command::Doc(cmd) => docs::doc(&cli, cmd),
        Command::Schema(cmd) => docs::schema(&cli, cmd).await,
        Command::Catalog(cmd) => docs::catalog(&cli, cmd).await,
        Command::Demand(cmd) => docs::demand(&cli, cmd).await,
        Command::Withheld(cmd) => docs::withheld(&cli, cmd).await,
        Command::Publish {
            dataset,
            file,
            format,
        } => docs::publish(&cli, dataset, file, format).await,
        Command::Versions { dataset } => docs::versions(&cli, dataset).await,
        Command::Fetch {
            target,
            version,
            grant,
            out,
            no_wait,
        } => {
            exchange::fetch(
                &cli,
                target,
                *version,
                grant.clone(),
                out.as_deref(),
                *no_wait,
            )
            .await
        }
        Command::Request {
            target,
            purpose,
            basis,
            fields,
        } => exchange::request(&cli, target, purpose, basis, fields).await,
        Command::Requests(cmd) => exchange::requests(&cli, cmd).await,
        Command::Grants(cmd) => exchange::grants(&cli, cmd).await,
        Command::Subscribe { target } => exchange::subscribe(&cli, target).await,
        Command::Unsubscribe { target } => exchange::unsubscribe(&cli, target).await,
        Command::Subscriptions => exchange::subscriptions(&cli).await,
        Command::Transfers { id } => exchange::transfers(&cli, id.as_deref()).await,
        Command::Receipts => exchange::receipts(&cli).await,
        Command::Provenance(cmd) => provenance::provenance(&cli, cmd).await,
        Command::Verify { file } => provenance::verify(&cli, file),
        Command::Sim {
            scenario,
            nodes,
            report,
            dir,
        } => sim(&cli, scenario, *nodes, report.as_deref(), dir.as_deref()).await,
        Command::Peers => {
            let peers: Vec<PeerView> = client(&cli)?.get("/api/v1/peers").await?;
            if cli.json {
                return print_json(&peers);
            }
            let rows = peers
                .iter()
                .map(|p| {
                    vec![
                        p.short_id.clone(),
                        p.region_label
                            .clone()
                            .unwrap_or_else(|| "(unverified)".into()),
                        p.organisation.clone().unwrap_or_default(),
                        p.addresses.join(" "),
                        p.connected_since.clone(),
                        p.rtt_ms
                            .map(|r| format!("{r:.1} ms"))
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect::<Vec<_>>();
            print!(
                "{}",
                table::render(
                    &[
                        "PEER",
                        "REGION",
                        "ORGANISATION",
                        "ADDRESSES",
                        "CONNECTED SINCE",
                        "RTT"
                    ],
                    &rows
                )
            );
            if peers.is_empty() {
                println!("(no members connected)");
            }
            Ok(())
        }
    }
}

pub(crate) fn client(cli: &Cli) -> Result<ApiClient, CliError> {
    Ok(ApiClient::locate(
        cli.data_dir.as_deref(),
        cli.config.as_deref(),
    )?)
}

/// Awaits `work` (one long API call); on a terminal, and without `--json`, a line on standard
/// error shows what is being done and the seconds so far, and is cleared when it ends.
pub(crate) async fn with_progress<T>(
    cli: &Cli,
    label: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    if cli.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return work.await;
    }
    let label = label.to_string();
    let ticker = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            eprint!("\r{label} … {}s ", started.elapsed().as_secs());
        }
    });
    let out = work.await;
    ticker.abort();
    eprint!("\r\x1b[K");
    out
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn init(cli: &Cli, args: &InitArgs) -> Result<(), CliError> {
    let data_dir = cli
        .data_dir
        .clone()
        .ok_or_else(|| CliError::Usage("init needs --data-dir DIR".into()))?;
    let region: Region = args
        .region
        .parse()
        .map_err(|e: region::UnknownRegion| CliError::Usage(format!("--region: {e}")))?;
    let listen = parse_all::<Multiaddr>(
        &args.listen,
        "--listen",
        "a multiaddr such as /ip4/0.0.0.0/tcp/7401",
    )?;
    let bootstrap = parse_all::<Multiaddr>(
        &args.bootstrap,
        "--bootstrap",
        "a multiaddr ending in /p2p/<peer id>",
    )?;
    let members = parse_all::<PeerId>(&args.members, "--member", "a peer id such as 12D3KooW…")?;
    let api = match &args.api {
        None => None,
        Some(a) => Some(a.parse::<SocketAddr>().map_err(|e| {
            CliError::Usage(format!(
                "--api {a:?}: {e}; expected an address such as 127.0.0.1:7400"
            ))
        })?),
    };
    let report = setup::init(InitOptions {
        data_dir: data_dir.clone(),
        region,
        name: args.name.clone(),
        listen,
        api,
        members,
        bootstrap,
        mdns: false,
        key: None,
    })?;
    if cli.json {
        return print_json(&serde_json::json!({
            "peer_id": report.peer_id.to_string(),
            "region": region,
            "config": report.config_path,
            "key": report.key_path,
            "token": report.token_path,
        }));
    }
    println!("created node {} for {}", report.peer_id, region.label());
    println!("  config  {}", report.config_path.display());
    println!("  key     {} (mode 0600)", report.key_path.display());
    println!("  token   {} (mode 0600)", report.token_path.display());
    println!("Give your peer id to the other members; add theirs under [[federation.members]].");
    println!("Start it with: yrd --data-dir {} run", data_dir.display());
    Ok(())
}

fn parse_all<T: std::str::FromStr>(
    values: &[String],
    flag: &str,
    expected: &str,
) -> Result<Vec<T>, CliError>
where
    T::Err: std::fmt::Display,
{
    values
        .iter()
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| CliError::Usage(format!("{flag} {v:?}: {e}; expected {expected}")))
        })
        .collect()
}

async fn run_daemon(cli: &Cli) -> Result<(), CliError> {
    let config_path = match (&cli.config, &cli.data_dir) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d.join(CONFIG_FILE),
        (None, None) => {
            return Err(CliError::Usage(
                "run needs --data-dir DIR or --config FILE".into(),
            ));
        }
    };
    let mut options = NodeOptions::from_config_file(&config_path)?;
    if cli.config.is_none() {
        if let Some(d) = &cli.data_dir {
            options.data_dir = d.clone();
        }
    }
    let format = cli.log_format.unwrap_or(options.config.log.format);
    crate::logging::init(&options.config.log.filter, format);
    // Refuse readable secrets before anything else starts, naming the file and the fix.
    identity::check_private(&options.data_dir.join(KEY_FILE), "the node key")
        .map_err(crate::node::NodeError::from)?;
    identity::check_private(&options.data_dir.join(TOKEN_FILE), "the admin API token")
        .map_err(crate::node::NodeError::from)?;
    let signals = crate::devnet::Signals::install()?;
    let running = crate::server::Server::start(options).await?;
    crate::notify::notify(&format!(
        "READY=1\nSTATUS=serving; admin API on {}\nMAINPID={}",
        running.api_address,
        std::process::id()
    ));
    let _ = signals.wait(&[&running.node]).await;
    crate::notify::notify("STOPPING=1\nSTATUS=shutting down");
    tracing::info!("signal received; shutting down");
    running.shutdown().await?;
    Ok(())
}

async fn sim(
    cli: &Cli,
    scenario: &std::path::Path,
    nodes: Option<usize>,
    report_file: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
) -> Result<(), CliError> {
    crate::logging::init(
        "warn,libp2p_kad=error",
        cli.log_format.unwrap_or(LogFormat::Text),
    );
    let report = crate::sim::run_file(scenario, nodes, dir)
        .await
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    if let Some(path) = report_file {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Output(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| CliError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    if cli.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    if report.passed {
        Ok(())
    } else {
        let failed = report.assertions.iter().filter(|a| !a.passed).count();
        Err(CliError::Invalid(format!(
            "scenario {:?}: {failed} assertion(s) failed",
            report.scenario
        )))
    }
}

async fn devnet(cli: &Cli, args: &DevnetArgs) -> Result<(), CliError> {
    crate::logging::init(
        "info,libp2p_mdns=warn",
        cli.log_format.unwrap_or(LogFormat::Text),
    );
    let signals = crate::devnet::Signals::install()?;
    let devnet = crate::devnet::Devnet::start(&args.dir, args.nodes).await?;
    if let Err(e) = devnet.seed().await {
        devnet.shutdown().await;
        return Err(e.into());
    }
    if cli.json {
        let nodes: Vec<_> = devnet
            .nodes
            .iter()
            .map(|(m, n)| {
                serde_json::json!({
                    "region": m.region,
                    "peer_id": m.peer_id.to_string(),
                    "admin_url": format!("http://{}", n.api_address),
                    "data_dir": m.data_dir,
                })
            })
            .collect();
        print_json(&nodes)?;
    } else {
        println!("{}", crate::devnet::describe(&devnet));
    }
    let nodes: Vec<&Node> = devnet.nodes.iter().map(|(_, r)| &r.node).collect();
    let waited = signals.wait(&nodes).await;
    tracing::info!("stopping the devnet");
    devnet.shutdown().await;
    waited?;
    Ok(())
}

async fn rotate_token(cli: &Cli) -> Result<(), CliError> {
    // The running node, if any, is asked to reload with the token it has now, so the client is
    // made (reading the old token) before the file is replaced.
    let old = client(cli);
    let path = match (&cli.config, &cli.data_dir) {
        (Some(config), _) => NodeOptions::from_config_file(config)?.data_dir,
        (None, Some(dir)) => dir.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "token rotate needs --data-dir DIR or --config FILE".into(),
            ));
        }
    }
    .join(TOKEN_FILE);
    identity::rotate_token(&path).map_err(crate::node::NodeError::from)?;
    let replaced = format!("the new token is in {}", path.display());
    let by_hand = "make a running node use it with `systemctl reload yrd` (SIGHUP) or a restart";
    let reloaded = match old {
        Ok(c) => match c
            .post::<_, crate::api::TokenReloaded>("/api/v1/token/reload", &serde_json::json!({}))
            .await
        {
            Ok(_) => true,
            Err(ClientError::Unreachable { .. }) => false,
            Err(e) => {
                return Err(CliError::Invalid(format!(
                    "{replaced}, but the node did not reload it ({e}); {by_hand}"
                )));
            }
        },
        Err(e) => {
            return Err(CliError::Invalid(format!(
                "{replaced}, but the old token could not be used to tell the node ({e}); {by_hand}"
            )));
        }
    };
    if cli.json {
        return print_json(&serde_json::json!({ "file": path, "reloaded": reloaded }));
    }
    println!("new admin token written to {}", path.display());
    if reloaded {
        println!("the running node uses it now; the old token no longer works");
    } else {
        println!("no node answered; it will use the new token when it starts");
    }
    Ok(())
}

fn regions(cli: &Cli) -> Result<(), CliError> {
    let all: Vec<_> = region::all().collect();
    if cli.json {
        let list: Vec<_> = all
            .iter()
            .map(|r| {
                serde_json::json!({
                    "code": r.code.to_string(), "name_zh": r.name_zh, "name_en": r.name_en,
                    "province": r.province.to_string(), "level": r.level,
                })
            })
            .collect();
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.code.to_string(),
                r.name_zh.to_string(),
                r.name_en.to_string(),
                format!("{:?}", r.level).to_lowercase(),
                r.province.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["CODE", "NAME", "ENGLISH", "LEVEL", "PROVINCE"], &rows)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
