//! The command line's shape (clap): the global flags, every verb and its arguments, with the
//! help text `yrd --help` shows. Parsing only; `super::run` acts on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

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
    /// The node key: `yrd key rotate` proposes the charter change to a new key; the node
    /// switches once it is applied.
    #[command(subcommand)]
    Key(KeyCommand),
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
    /// Ask a provider one query about single records: verify (核验: does a record with these
    /// values exist? yes/no and which fields matched) or lookup (the records with a key,
    /// projected and masked as the grant says). Prints the signed answer.
    Query {
        /// REGION_OR_PEER/DATASET.
        target: String,
        /// Verify: FIELD=VALUE (repeatable; at least one a query key of the offer).
        #[arg(long, conflicts_with = "key", required_unless_present = "key")]
        verify: Vec<String>,
        /// Lookup: FIELD=VALUE of a query key (repeatable: every one must match).
        #[arg(long)]
        key: Vec<String>,
        /// Lookup: the fields wanted, comma-separated (default: all the grant delivers).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// The grant to call under (default: the latest valid one allowing the mode).
        #[arg(long)]
        grant: Option<String>,
        /// Why (default: the grant's purpose).
        #[arg(long)]
        purpose: Option<String>,
        /// The legal basis (default: the grant's).
        #[arg(long)]
        basis: Option<String>,
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
    /// Scoped API clients (information systems calling this node): add, list, remove.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// The provenance log: records, deliveries, alarms, evidence bundles.
    #[command(subcommand)]
    Provenance(ProvenanceCommand),
    /// Check an evidence bundle offline (no node needed) and print what it proves.
    Verify {
        /// The bundle (JSON) written by `yrd provenance export`.
        file: PathBuf,
        /// Your federation's genesis digest (64 hex, e.g. from `yrd federation show`), obtained
        /// out of band: the bundle must carry a charter chain starting from it.
        #[arg(long, value_name = "DIGEST")]
        genesis: Option<String>,
    },
    /// The federation charter: offline (propose a version, sign it, assemble signatures, verify
    /// a chain, show one) and on the running node (history, proposals, submit, approve, apply);
    /// docs/charter.md.
    #[command(subcommand)]
    Federation(FederationCommand),
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

/// `yrd federation …`: the charter's verbs; offline ones take and write files, online ones talk
/// to the running node.
#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Write a draft charter (no signatures): a genesis (--genesis) or version N+1 of --from.
    Propose(Box<ProposeArgs>),
    /// Add this node's signature to a charter file (in place, or to --out). Refused unless the
    /// key belongs to a member of the signing role of the charter or of --previous.
    Sign {
        /// The charter (draft or partly signed).
        file: PathBuf,
        /// The key file to sign with (default: the node key in --data-dir).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Version N, when FILE is N+1 (lets N's signers that N+1 removes sign it).
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Write the signed charter here instead of over FILE.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Merge the signatures of copies of one charter and check the rules (genesis, or against
    /// --chain for a later version); writes the result to --out only if it passes.
    Assemble {
        /// Copies of one charter, each with some signatures.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The versions before it, genesis first (needed after version 1).
        #[arg(long, num_args = 1..)]
        chain: Vec<PathBuf>,
        /// Where to write the assembled charter.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a chain of charters, genesis first, and print who signed each version.
    Verify {
        /// The charters, genesis first, one per version.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show a charter's members by region (default: the charter of --config / --data-dir).
    Show {
        /// A charter file.
        file: Option<PathBuf>,
    },
    /// The running node's applied charter versions: number, digest, expiry, who signed.
    History,
    /// Write every version the running node applied, genesis first, as one chain file (what a
    /// bureau joining the federation sets as `[federation] charter`).
    Chain {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// The proposals of the next version the running node holds, and what each lacks.
    Proposals,
    /// Give the running node a proposal (a draft or a signed copy): it stores it, merges its
    /// signatures, gossips it, and applies it once signed enough.
    Submit {
        /// The charter file.
        file: PathBuf,
    },
    /// Make the running node sign a proposal it holds with its own key (refused unless the key
    /// is a signer of the proposal or of the version in force).
    Approve {
        /// The proposal's digest (`yrd federation proposals`).
        digest: String,
    },
    /// Apply a fully signed next version on the running node (it then spreads to the others).
    Apply {
        /// The charter file.
        file: PathBuf,
    },
}

/// `yrd federation propose`.
#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// Write a genesis (version 1).
    #[arg(long, conflicts_with = "from", required_unless_present = "from")]
    pub genesis: bool,
    /// Write version N+1 of this charter (version N).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Where to write the draft.
    #[arg(long)]
    pub out: PathBuf,
    /// Genesis: the federation's id (lowercase kebab-case).
    #[arg(long, requires = "genesis")]
    pub id: Option<String>,
    /// Genesis: the federation's name.
    #[arg(long, requires = "genesis")]
    pub name: Option<String>,
    /// A member to add: MEMBER_ID,REGION,ROLE,KEY,ORGANISATION — KEY a peer id or hex public key;
    /// ORGANISATION last (it may hold commas). Repeat for each member.
    #[arg(long = "member", value_name = "SPEC")]
    pub members: Vec<String>,
    /// A member to remove (its member id).
    #[arg(long = "remove-member", value_name = "MEMBER_ID")]
    pub remove: Vec<String>,
    /// MEMBER_ID=REGION: move a member.
    #[arg(long = "set-region", value_name = "MEMBER_ID=REGION")]
    pub set_region: Vec<String>,
    /// MEMBER_ID=ROLE: founder, member or observer.
    #[arg(long = "set-role", value_name = "MEMBER_ID=ROLE")]
    pub set_role: Vec<String>,
    /// MEMBER_ID=KEY: replace a member's keys by KEY.
    #[arg(long = "rotate-key", value_name = "MEMBER_ID=KEY")]
    pub rotate_key: Vec<String>,
    /// MEMBER_ID=KEY: give a member one more key.
    #[arg(long = "add-key", value_name = "MEMBER_ID=KEY")]
    pub add_key: Vec<String>,
    /// The role that signs changes (genesis default: founder).
    #[arg(long)]
    pub signers: Option<String>,
    /// How many members of that role must sign (genesis: required).
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Validity from now: 365d, 12h… (default 365d).
    #[arg(long, default_value = "365d")]
    pub expires_in: String,
}

/// `yrd token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a new random admin token to DATA_DIR/api.token (0600) and, if the node is running,
    /// make it switch to the new token at once (the old one stops working).
    Rotate,
}

/// `yrd key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make the next node key (DATA_DIR/node.key.next, 0600) and submit the charter change that
    /// adds it to this member's keys; once the founders approve it and it is applied, the node
    /// restarts on the new key, keeping its data, grants and log (the old key is kept as
    /// DATA_DIR/keys/retired-PEER.key), and proposes the old key's removal, which this command
    /// then shows. Asked again, it shows the same proposal.
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
    /// Who queried one key of a dataset, when, for what purpose: the calls about it (answered,
    /// refused; or, with --publisher, the ones we made). The key is hashed, never stored.
    Queries {
        /// The dataset.
        #[arg(long)]
        dataset: String,
        /// The key, FIELD=VALUE (e.g. id_number=…).
        #[arg(long)]
        key: String,
        /// The dataset's publisher (peer id), for calls we made as a caller.
        #[arg(long)]
        publisher: Option<String>,
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

/// `yrd clients …`.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Make a client with a token of its own that allows only what --allow names (never the
    /// admin routes); prints the token once.
    Add {
        /// Its name, named in the provenance records of its calls.
        name: String,
        /// query:DATASET or fetch:DATASET (DATASET may be *), repeatable.
        #[arg(long, required = true)]
        allow: Vec<String>,
    },
    /// List the clients.
    List,
    /// Remove a client: its token stops working at once.
    Remove {
        /// Its name.
        name: String,
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
        /// What the grantee may do, comma-separated: fetch, verify, lookup (default: fetch).
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
        /// Query calls allowed per UTC day (default: unlimited).
        #[arg(long)]
        calls_per_day: Option<u32>,
        /// Query calls allowed per minute (default: unlimited).
        #[arg(long)]
        calls_per_minute: Option<u32>,
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
