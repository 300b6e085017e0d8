//! The network simulator (`yrd sim`): N real nodes (real libp2p on loopback, real sled in temp
//! dirs) in one process, driven by a TOML scenario of steps — publish, request, approve, fetch,
//! subscribe, query, partition, heal, kill, restart, delay, wait and assert — and a report of
//! what happened: convergence times, transfers, query latencies, traffic per node and assertion
//! results. See `docs/simulation.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::clock::now_rfc3339;
use crate::config::{CONFIG_FILE, NodeConfig};
use crate::identity::NodeKey;
use crate::model::catalogue::ShareType;
use crate::model::charter::{
    Change, ChangePolicy, Charter, CharterMember, Federation, MemberKey, Role, SignedCharter,
};
use crate::model::exchange::DataFormat;
use crate::model::masking::FieldMask;
use crate::model::provenance::{Query, RecordKind};
use crate::model::query::{AccessMode, FieldValue, QueryMode, value_text};
use crate::model::region::{self, Region};
use crate::node::access::{Approval, Direction};
use crate::node::query::QueryInput;
use crate::node::transfer::TransferStatus;
use crate::node::{Node, NodeOptions};
use crate::server::Server;
use crate::setup::{self, InitOptions};

/// Most nodes one simulation runs.
pub const MAX_NODES: usize = 200;
/// Largest scenario file read.
const MAX_SCENARIO_BYTES: u64 = 1 << 20;
/// Most query calls one `query` step makes per node.
const MAX_QUERY_CALLS: usize = 10_000;
/// Most published records kept per dataset to draw query keys from.
const MAX_KEY_RECORDS: usize = 1000;

/// Why a simulation could not run (an assertion failing is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file is unreadable or invalid; names the line and the reason.
    #[error("{path}: {message}")]
    Scenario {
        /// The file.
        path: String,
        /// Line and reason.
        message: String,
    },
    /// A node could not be created or started.
    #[error("node {index}: {message}")]
    Node {
        /// Which node.
        index: usize,
        /// Why.
        message: String,
    },
    /// A step failed to run (not an assertion: e.g. a fetch that was refused).
    #[error("step {step} (line {line}, {action}): {message}")]
    Step {
        /// Step number, from 1.
        step: usize,
        /// Line in the scenario file.
        line: usize,
        /// Its action.
        action: String,
        /// Why.
        message: String,
    },
    /// The temp dir could not be made.
    #[error("cannot create the simulation's directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Which nodes a step applies to: a list of indexes, or `"all"`, `"others"` (all but node 0),
/// `"third"` (every third node: 1, 4, 7, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NodeSet {
    /// Explicit indexes.
    List(Vec<usize>),
    /// A named set.
    Named(String),
}

impl NodeSet {
    fn resolve(&self, n: usize) -> Result<Vec<usize>, String> {
        match self {
            NodeSet::List(l) => {
                if let Some(bad) = l.iter().find(|i| **i >= n) {
                    return Err(format!(
                        "node {bad} does not exist (nodes are 0 to {})",
                        n - 1
                    ));
                }
                Ok(l.clone())
            }
            NodeSet::Named(s) => match s.as_str() {
                "all" => Ok((0..n).collect()),
                "others" => Ok((1..n).collect()),
                "third" => Ok((0..n).filter(|i| i % 3 == 1).collect()),
                other => Err(format!(
                    "nodes = {other:?}: expected a list of indexes, \"all\", \"others\" or \"third\""
                )),
            },
        }
    }
}

/// A condition checked by `wait_until` and `assert`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every running node holds every running node's latest catalogue.
    CatalogueConverged,
    /// Every listed running node holds the provider's latest version of the dataset (for a
    /// masked delivery: a derivation of that version).
    DigestEqual {
        /// The publishing node.
        provider: usize,
        /// The dataset.
        dataset: String,
        /// The receivers.
        nodes: NodeSet,
    },
    /// Provenance of both sides agrees: every delivery a running provider served has the
    /// receiver's dataset-received record and the provider's receipt-received record.
    ProvenanceAgrees,
    /// No running node raised a witness alarm.
    NoAlarms,
    /// Every listed node's subscription to the dataset has fetched at least this version.
    Subscribed {
        /// The publishing node.
        provider: usize,
        /// The dataset.
        dataset: String,
        /// The subscribers.
        nodes: NodeSet,
        /// The version.
        version: u64,
    },
    /// Every call the `query` steps made to the provider's dataset got an answer signed by
    /// the provider, "found" exactly when the key was one of the published records; the
    /// provider's log holds a `query-answered` record and the caller's a `query-sent` record
    /// per call.
    QueriesAnswered {
        /// The provider.
        provider: usize,
        /// The dataset.
        dataset: String,
    },
}

fn default_records() -> usize {
    200
}

fn default_timeout() -> u64 {
    60
}

fn default_expect() -> bool {
    true
}

fn default_share() -> String {
    "unconditional".into()
}

fn default_query_mode() -> QueryMode {
    QueryMode::Verify
}

fn default_calls() -> usize {
    10
}

/// One step of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// A node publishes one of the sample data standards (`schemas/datasets/`).
    PublishSchema {
        /// The publishing node.
        node: usize,
        /// Standard id, e.g. `enterprise-licence`.
        standard: String,
    },
    /// A node adds an offer of a standard it holds.
    AddOffer {
        /// The node.
        node: usize,
        /// Offer identifier.
        dataset: String,
        /// Standard id.
        standard: String,
        /// `unconditional`, `conditional` or `not-shared`.
        #[serde(default = "default_share")]
        share: String,
        /// Query keys of the offer (fields a record can be verified or looked up by).
        #[serde(default)]
        query_keys: Vec<String>,
    },
    /// A node publishes a new version of its offer from generated sample records.
    Publish {
        /// The node.
        node: usize,
        /// Offer identifier.
        dataset: String,
        /// Records generated.
        #[serde(default = "default_records")]
        records: usize,
    },
    /// A node asks a provider for conditional data.
    Request {
        /// The requester.
        node: usize,
        /// The provider.
        provider: usize,
        /// Offer identifier.
        dataset: String,
        /// Purpose.
        purpose: String,
        /// Legal basis.
        basis: String,
    },
    /// A node approves every pending request it holds, with these masks.
    Approve {
        /// The provider.
        node: usize,
        /// Masks, `FIELD=redact|hash|keep:N:M`.
        #[serde(default)]
        masks: Vec<String>,
        /// Access modes granted (`fetch`, `verify`, `lookup`; default: fetch only).
        #[serde(default)]
        modes: Vec<AccessMode>,
    },
    /// Nodes fetch the provider's latest version and wait for it.
    Fetch {
        /// The fetchers.
        nodes: NodeSet,
        /// The provider.
        provider: usize,
        /// Offer identifier.
        dataset: String,
        /// Seconds to wait.
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
    /// Nodes subscribe to a provider's dataset.
    Subscribe {
        /// The subscribers.
        nodes: NodeSet,
        /// The provider.
        provider: usize,
        /// Offer identifier.
        dataset: String,
    },
    /// Nodes call a provider's query service (`/yrd/query/1`), one call after another each and
    /// all nodes at once, with keys drawn from the records the provider published in this
    /// scenario; `unknown` of each node's calls use a key nobody has. A call that gets no
    /// signed answer does not stop the run: the `queries_answered` check judges it.
    Query {
        /// The callers.
        nodes: NodeSet,
        /// The provider.
        provider: usize,
        /// Offer identifier.
        dataset: String,
        /// `verify` (default) or `lookup`.
        #[serde(default = "default_query_mode")]
        mode: QueryMode,
        /// The query key field, e.g. `uscc`.
        key: String,
        /// Calls per node.
        #[serde(default = "default_calls")]
        calls: usize,
        /// Of them, calls with a key nobody has (a signed "not found").
        #[serde(default)]
        unknown: usize,
    },
    /// Splits the network: nodes of different groups cannot reach each other. Nodes in no
    /// group keep reaching everyone.
    Partition {
        /// The groups.
        groups: Vec<Vec<usize>>,
    },
    /// Ends every partition.
    Heal,
    /// Stops nodes (their data stays).
    Kill {
        /// Which.
        nodes: NodeSet,
    },
    /// Starts stopped nodes again on the same data dirs and ports.
    Restart {
        /// Which.
        nodes: NodeSet,
    },
    /// Adds latency to everything the nodes answer (requests and dataset chunks).
    Delay {
        /// Which.
        nodes: NodeSet,
        /// Milliseconds added (0 removes the delay).
        ms: u64,
    },
    /// Waits until a condition holds (fails the scenario if it does not in time).
    WaitUntil {
        /// The condition.
        condition: Condition,
        /// Seconds.
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
    },
    /// Checks a condition now; with `expect = false`, checks that it does NOT hold (e.g. that
    /// a partition really keeps a change from the other side).
    Assert {
        /// The condition.
        condition: Condition,
        /// Whether the condition should hold.
        #[serde(default = "default_expect")]
        expect: bool,
    },
    /// Waits a fixed time.
    Sleep {
        /// Milliseconds.
        ms: u64,
    },
    /// A node not yet in the charter joins: the next version adding it is proposed at the
    /// first founder and approved by `threshold` founders; once every charter node applies it,
    /// the node restarts on the chain (docs/simulation.md).
    CharterJoin {
        /// The joining node.
        node: usize,
    },
    /// A member is removed by the next version; every other member cuts it off.
    CharterRemove {
        /// The removed node.
        node: usize,
    },
    /// A member rotates its key (`yrd key rotate`): the next key is added by one version, the
    /// node restarts on it, and the earlier key is removed by the next (docs/federation.md).
    CharterRotate {
        /// The rotating node.
        node: usize,
    },
}

impl Step {
    fn action(&self) -> &'static str {
        match self {
            Step::PublishSchema { .. } => "publish_schema",
            Step::AddOffer { .. } => "add_offer",
            Step::Publish { .. } => "publish",
            Step::Request { .. } => "request",
            Step::Approve { .. } => "approve",
            Step::Fetch { .. } => "fetch",
            Step::Subscribe { .. } => "subscribe",
            Step::Query { .. } => "query",
            Step::Partition { .. } => "partition",
            Step::Heal => "heal",
            Step::Kill { .. } => "kill",
            Step::Restart { .. } => "restart",
            Step::Delay { .. } => "delay",
            Step::WaitUntil { .. } => "wait_until",
            Step::Assert { .. } => "assert",
            Step::Sleep { .. } => "sleep",
            Step::CharterJoin { .. } => "charter_join",
            Step::CharterRemove { .. } => "charter_remove",
            Step::CharterRotate { .. } => "charter_rotate",
        }
    }
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Nodes (the command line's `--nodes` overrides it).
    #[serde(default)]
    pub nodes: Option<usize>,
    /// Regions of the first nodes (codes); the rest come from the 41-city table in order.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// `tcp` or `quic`; default: TCP up to 40 nodes, QUIC above (one UDP socket per node
    /// instead of one TCP socket per connection keeps a big mesh within the process's file
    /// descriptor limit).
    #[serde(default)]
    pub transport: Option<String>,
    /// Run the nodes on a federation charter instead of member lists.
    #[serde(default)]
    pub charter: Option<SimCharter>,
    /// The steps, in order.
    #[serde(rename = "step", default)]
    pub steps: Vec<toml::Spanned<Step>>,
}

/// How long a charter change may take to reach every member before the step fails.
const CHARTER_APPLY_SECS: u64 = 300;

/// `[charter]` of a scenario: a genesis of the first `members` nodes, the first `founders` of
/// them founders, `threshold` founders to sign each change; the other nodes start on member
/// lists (refused by the charter's members) until a `charter_join` adds them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCharter {
    /// Founders (nodes 0 to founders − 1).
    #[serde(default = "default_founders")]
    pub founders: usize,
    /// Founder signatures a change needs.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Nodes in the genesis (default: all).
    #[serde(default)]
    pub members: Option<usize>,
}

fn default_founders() -> usize {
    4
}

fn default_threshold() -> u32 {
    3
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

impl Scenario {
    /// Reads and checks a scenario file for `nodes` nodes (None: the file's own count).
    pub fn load(path: &Path, nodes: Option<usize>) -> Result<(Scenario, usize), SimError> {
        let err = |message: String| SimError::Scenario {
            path: path.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_SCENARIO_BYTES {
            return Err(err(format!("larger than {MAX_SCENARIO_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Scenario::parse(&text, nodes).map_err(err)
    }

    /// Parses and checks scenario text; an error names the line and the reason.
    pub fn parse(text: &str, nodes: Option<usize>) -> Result<(Scenario, usize), String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            format!("line {line}: {}", e.message())
        })?;
        let n = nodes.or(scenario.nodes).unwrap_or(4);
        if n == 0 || n > MAX_NODES {
            return Err(format!("{n} nodes: expected 1 to {MAX_NODES}"));
        }
        if let Some(t) = scenario.transport.as_deref() {
            if t != "tcp" && t != "quic" {
                return Err(format!("transport = {t:?}: expected \"tcp\" or \"quic\""));
            }
        }
        if scenario.steps.is_empty() {
            return Err("no [[step]]: a scenario needs at least one step".into());
        }
        if let Some(c) = &scenario.charter {
            let members = c.members.unwrap_or(n);
            if c.founders == 0 || c.founders > members || members > n {
                return Err(format!(
                    "[charter]: founders = {}, members = {members} with {n} nodes: expected \
                     1 <= founders <= members <= nodes",
                    c.founders
                ));
            }
            if c.threshold == 0 || c.threshold as usize > c.founders {
                return Err(format!(
                    "[charter] threshold = {}: expected 1 to founders ({})",
                    c.threshold, c.founders
                ));
            }
        }
        let charter_step = scenario.steps.iter().any(|s| {
            matches!(
                s.get_ref(),
                Step::CharterJoin { .. } | Step::CharterRemove { .. } | Step::CharterRotate { .. }
            )
        });
        if charter_step && scenario.charter.is_none() {
            return Err(
                "charter_join, charter_remove and charter_rotate need a [charter] table".into(),
            );
        }
        for (i, s) in scenario.steps.iter().enumerate() {
            let line = line_of(text, s.span().start);
            check_step(s.get_ref(), n).map_err(|m| {
                format!(
                    "line {line}: step {} ({}): {m}",
                    i + 1,
                    s.get_ref().action()
                )
            })?;
        }
        Ok((scenario, n))
    }
}

fn check_node(i: usize, n: usize) -> Result<(), String> {
    if i >= n {
        Err(format!(
            "node {i} does not exist (nodes are 0 to {})",
            n - 1
        ))
    } else {
        Ok(())
    }
}

fn check_condition(c: &Condition, n: usize) -> Result<(), String> {
    match c {
        Condition::DigestEqual {
            provider, nodes, ..
        }
        | Condition::Subscribed {
            provider, nodes, ..
        } => {
            check_node(*provider, n)?;
            nodes.resolve(n).map(|_| ())
        }
        Condition::QueriesAnswered { provider, .. } => check_node(*provider, n),
        _ => Ok(()),
    }
}

fn check_step(step: &Step, n: usize) -> Result<(), String> {
    match step {
        Step::PublishSchema { node, standard } => {
            check_node(*node, n)?;
            if crate::samples::schema_json(standard).is_none() {
                return Err(format!(
                    "standard {standard:?} is not one of the sample standards ({})",
                    crate::samples::STANDARDS
                        .iter()
                        .map(|s| s.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Ok(())
        }
        Step::AddOffer { node, share, .. } => {
            check_node(*node, n)?;
            parse_share(share).map(|_| ())
        }
        Step::Publish { node, records, .. } => {
            check_node(*node, n)?;
            if *records == 0 || *records > 5_000_000 {
                return Err("records must be 1 to 5,000,000".into());
            }
            Ok(())
        }
        Step::Request { node, provider, .. } => {
            check_node(*node, n)?;
            check_node(*provider, n)
        }
        Step::Approve { node, masks, .. } => {
            check_node(*node, n)?;
            for m in masks {
                m.parse::<FieldMask>()
                    .map_err(|e| format!("mask {m:?}: {e}"))?;
            }
            Ok(())
        }
        Step::Fetch {
            nodes, provider, ..
        }
        | Step::Subscribe {
            nodes, provider, ..
        } => {
            check_node(*provider, n)?;
            nodes.resolve(n).map(|_| ())
        }
        Step::Query {
            nodes,
            provider,
            calls,
            unknown,
            ..
        } => {
            check_node(*provider, n)?;
            if *calls == 0 || *calls > MAX_QUERY_CALLS {
                return Err(format!("calls must be 1 to {MAX_QUERY_CALLS}"));
            }
            if unknown > calls {
                return Err(format!("unknown = {unknown} is more than calls = {calls}"));
            }
            nodes.resolve(n).map(|_| ())
        }
        Step::Partition { groups } => {
            let mut seen = std::collections::HashSet::new();
            for g in groups {
                for i in g {
                    check_node(*i, n)?;
                    if !seen.insert(*i) {
                        return Err(format!("node {i} is in two groups"));
                    }
                }
            }
            if groups.len() < 2 {
                return Err("a partition needs at least two groups".into());
            }
            Ok(())
        }
        Step::Kill { nodes } | Step::Restart { nodes } | Step::Delay { nodes, .. } => {
            nodes.resolve(n).map(|_| ())
        }
        Step::WaitUntil { condition, .. } | Step::Assert { condition, .. } => {
            check_condition(condition, n)
        }
        Step::Heal | Step::Sleep { .. } => Ok(()),
        Step::CharterJoin { node }
        | Step::CharterRemove { node }
        | Step::CharterRotate { node } => check_node(*node, n),
    }
}

fn parse_share(s: &str) -> Result<ShareType, String> {
    match s {
        "unconditional" => Ok(ShareType::Unconditional),
        "conditional" => Ok(ShareType::Conditional),
        "not-shared" => Ok(ShareType::NotShared),
        other => Err(format!(
            "share {other:?}: expected unconditional, conditional or not-shared"
        )),
    }
}

/// One assertion's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionResult {
    /// Step number.
    pub step: usize,
    /// Line in the file.
    pub line: usize,
    /// The condition, as written.
    pub condition: String,
    /// Whether it held.
    pub passed: bool,
    /// Why not, or what was seen.
    pub detail: String,
}

/// One transfer the scenario made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferFigure {
    /// Receiving node.
    pub node: usize,
    /// Providing node.
    pub provider: usize,
    /// Dataset.
    pub dataset: String,
    /// Bytes.
    pub bytes: u64,
    /// Milliseconds, request to verified.
    pub ms: u64,
}

/// Traffic of one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeFigure {
    /// Index.
    pub node: usize,
    /// Its region.
    pub region: String,
    /// Dataset bytes received.
    pub bytes_in: u64,
    /// Dataset bytes served.
    pub bytes_out: u64,
    /// Requests it answered.
    pub requests_answered: u64,
    /// Gossip messages it received.
    pub gossip_received: u64,
    /// Whether it was running at the end.
    pub running: bool,
}

/// What a simulation reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Nodes.
    pub nodes: usize,
    /// Seconds to start every node and reach a full mesh.
    pub startup_secs: f64,
    /// Of `startup_secs`, the seconds until the last node was started (one after another);
    /// the rest is the wait for every node to verify the members it keeps connected.
    #[serde(default)]
    pub nodes_started_secs: f64,
    /// Milliseconds from each catalogue change to every running node holding it.
    pub convergence_ms: Vec<f64>,
    /// p50 of `convergence_ms`.
    pub convergence_p50_ms: Option<f64>,
    /// p99 of `convergence_ms`.
    pub convergence_p99_ms: Option<f64>,
    /// Transfers.
    pub transfers: Vec<TransferFigure>,
    /// Per node.
    pub per_node: Vec<NodeFigure>,
    /// Query calls the `query` steps made.
    #[serde(default)]
    pub query_calls: u64,
    /// Of them, answered with a signed "not found".
    #[serde(default)]
    pub query_not_found: u64,
    /// Of them, without a valid signed answer as expected.
    #[serde(default)]
    pub query_failed: u64,
    /// p50 of the calls' milliseconds, query to checked answer.
    #[serde(default)]
    pub query_p50_ms: Option<f64>,
    /// p99 of the calls' milliseconds.
    #[serde(default)]
    pub query_p99_ms: Option<f64>,
    /// Milliseconds from the approval that completes each charter change to every running
    /// charter member applying it.
    #[serde(default)]
    pub charter_propagation_ms: Vec<f64>,
    /// p50 of `charter_propagation_ms`.
    #[serde(default)]
    pub charter_propagation_p50_ms: Option<f64>,
    /// p99 of `charter_propagation_ms`.
    #[serde(default)]
    pub charter_propagation_p99_ms: Option<f64>,
    /// Milliseconds of each `charter_rotate`: from `yrd key rotate` to every member holding the
    /// version that retires the earlier key (two changes and the node's restart).
    #[serde(default)]
    pub key_rotation_ms: Vec<f64>,
    /// Assertions and waits.
    pub assertions: Vec<AssertionResult>,
    /// Whether every assertion passed.
    pub passed: bool,
    /// Total seconds.
    pub total_secs: f64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}

impl Report {
    /// The human table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "scenario {:?}: {} nodes, started and meshed in {:.1} s (the last started at {:.1} s), ran {:.1} s — {}\n",
            self.scenario,
            self.nodes,
            self.startup_secs,
            self.nodes_started_secs,
            self.total_secs,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        if !self.convergence_ms.is_empty() {
            out.push_str(&format!(
                "catalogue convergence over {} changes: p50 {:.1} ms, p99 {:.1} ms\n",
                self.convergence_ms.len(),
                self.convergence_p50_ms.unwrap_or(0.0),
                self.convergence_p99_ms.unwrap_or(0.0)
            ));
        }
        for t in &self.transfers {
            out.push_str(&format!(
                "transfer: node {} ← node {} {}: {} bytes in {} ms\n",
                t.node, t.provider, t.dataset, t.bytes, t.ms
            ));
        }
        if !self.charter_propagation_ms.is_empty() {
            out.push_str(&format!(
                "charter changes: {}, applied by every member in p50 {:.1} ms, p99 {:.1} ms\n",
                self.charter_propagation_ms.len(),
                self.charter_propagation_p50_ms.unwrap_or(0.0),
                self.charter_propagation_p99_ms.unwrap_or(0.0)
            ));
        }
        for ms in &self.key_rotation_ms {
            out.push_str(&format!(
                "key rotation: both charter changes applied everywhere in {ms:.0} ms\n"
            ));
        }
        if self.query_calls > 0 {
            out.push_str(&format!(
                "queries: {} calls ({} not found, {} failed): p50 {:.1} ms, p99 {:.1} ms\n",
                self.query_calls,
                self.query_not_found,
                self.query_failed,
                self.query_p50_ms.unwrap_or(0.0),
                self.query_p99_ms.unwrap_or(0.0)
            ));
        }
        out.push_str("assertions:\n");
        for a in &self.assertions {
            out.push_str(&format!(
                "  [{}] step {} (line {}): {} — {}\n",
                if a.passed { "ok" } else { "FAIL" },
                a.step,
                a.line,
                a.condition,
                a.detail
            ));
        }
        out.push_str(
            "node  region                    in B        out B       requests  gossip  running\n",
        );
        for f in &self.per_node {
            out.push_str(&format!(
                "{:<5} {:<24}  {:<10}  {:<10}  {:<8}  {:<6}  {}\n",
                f.node,
                f.region,
                f.bytes_in,
                f.bytes_out,
                f.requests_answered,
                f.gossip_received,
                f.running
            ));
        }
        out
    }
}

/// One call a `query` step made.
struct QueryCall {
    caller: usize,
    provider: usize,
    dataset: String,
    key: FieldValue,
    /// Whether the key is one of the published records.
    expect_found: bool,
    /// Ok(found) for a valid signed answer as expected, Err(why not).
    result: Result<bool, String>,
    ms: f64,
}

struct SimNode {
    region: Region,
    data_dir: PathBuf,
    running: Option<Server>,
}

impl SimNode {
    fn node(&self) -> Option<&Node> {
        self.running.as_ref().map(|r| &r.node)
    }
}

/// A running simulation.
pub struct Sim {
    _root: Option<tempfile::TempDir>,
    nodes: Vec<SimNode>,
    ids: Vec<PeerId>,
    report: Report,
    text: String,
    /// The current partition's groups, if any.
    partition: Option<Vec<Vec<usize>>>,
    /// The first records of each (node, dataset)'s latest `publish`, to draw query keys from.
    published: std::collections::HashMap<(usize, String), Vec<serde_json::Value>>,
    /// The calls of the `query` steps.
    query_calls: Vec<QueryCall>,
    /// The charter the nodes run on, if the scenario has one.
    charter: Option<CharterRun>,
}

/// What a scenario on a charter keeps: the keys (founders sign with them through their
/// nodes), who runs on the charter, and where the chain file goes.
struct CharterRun {
    setup: SimCharter,
    keys: Vec<NodeKey>,
    on_charter: Vec<bool>,
    chain_file: PathBuf,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

fn region_for(i: usize, scenario: &Scenario) -> Region {
    if let Some(r) = scenario.regions.get(i) {
        return *r;
    }
    let cities: Vec<Region> = region::all()
        .filter(|r| r.code % 10000 != 0)
        .filter_map(|r| Region::from_code(r.code).ok())
        .collect();
    match cities.get(i % cities.len().max(1)) {
        Some(r) => *r,
        // The table always has cities; a Region is only ever built from the table.
        None => scenario.regions.first().copied().unwrap_or_else(shanghai),
    }
}

fn shanghai() -> Region {
    match "310000".parse() {
        Ok(r) => r,
        Err(_) => unreachable!("310000 is in the region table"),
    }
}

/// The node's listen address with the port the OS chose (TCP or QUIC).
async fn tcp_address(node: &Node) -> Option<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    for _ in 0..500 {
        if let Ok(addrs) = node.net().listen_addresses().await {
            if let Some(a) = addrs.into_iter().find(|a| {
                a.iter()
                    .any(|p| matches!(p, Protocol::Tcp(port) | Protocol::Udp(port) if port != 0))
            }) {
                return Some(a);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

impl Sim {
    /// Creates and starts `n` nodes under `dir` (a temp dir when None), each trusting the
    /// others and bootstrapping to node 0, and waits for every node to know every other.
    pub async fn start(
        scenario: &Scenario,
        n: usize,
        dir: Option<&Path>,
        text: &str,
    ) -> Result<Sim, SimError> {
        let started = Instant::now();
        let (root, base) = match dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.to_path_buf())
            }
            None => {
                let t = tempfile::tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let quic = match scenario.transport.as_deref() {
            Some("quic") => true,
            Some("tcp") => false,
            _ => n > 40,
        };
        let listen = if quic {
            "/ip4/127.0.0.1/udp/0/quic-v1"
        } else {
            "/ip4/127.0.0.1/tcp/0"
        };
        let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
        let ids: Vec<PeerId> = keys.iter().map(NodeKey::peer_id).collect();
        let charter = match &scenario.charter {
            Some(setup) => Some(charter_genesis(setup, scenario, &keys, &base)?),
            None => None,
        };
        let mut nodes = Vec::new();
        let mut bootstrap: Vec<Multiaddr> = Vec::new();
        for (i, key) in keys.clone().into_iter().enumerate() {
            let on_charter = charter.as_ref().is_some_and(|c| c.on_charter[i]);
            let region = region_for(i, scenario);
            let data_dir = base.join(format!("node{i:03}-{}", region.code()));
            let node_err = |message: String| SimError::Node { index: i, message };
            setup::init(InitOptions {
                data_dir: data_dir.clone(),
                region,
                name: format!("{} sim node {i}", region.name_zh()),
                listen: vec![listen.parse().map_err(|_| node_err("address".into()))?],
                api: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
                // A node on the charter drops the list right after (`set_charter`).
                members: ids
                    .iter()
                    .copied()
                    .filter(|p| *p != key.peer_id())
                    .collect(),
                bootstrap: bootstrap.clone(),
                mdns: false,
                key: Some(key.clone()),
            })
            .map_err(|e| node_err(e.to_string()))?;
            if let (true, Some(c)) = (on_charter, &charter) {
                set_charter(&data_dir, &c.chain_file, false).map_err(node_err)?;
            }
            let mut sim_node = SimNode {
                region,
                data_dir,
                running: None,
            };
            start_node(&mut sim_node, i).await?;
            if i == 0 {
                if let Some(node) = sim_node.node() {
                    if let Some(a) = tcp_address(node).await {
                        if let Ok(a) = a.with_p2p(ids[0]) {
                            bootstrap.push(a);
                        }
                    }
                }
            }
            nodes.push(sim_node);
        }
        let nodes_started_secs = started.elapsed().as_secs_f64();
        let mut sim = Sim {
            _root: root,
            nodes,
            ids,
            report: Report {
                scenario: scenario.name.clone(),
                nodes: n,
                nodes_started_secs,
                passed: true,
                ..Report::default()
            },
            text: text.to_string(),
            partition: None,
            published: std::collections::HashMap::new(),
            query_calls: Vec::new(),
            charter,
        };
        // Every node has verified every other's NodeInfo: the network is up.
        let deadline = Instant::now() + Duration::from_secs(60 + n as u64);
        // A small network meshes fully; in a larger one each node keeps a bounded set of
        // members connected (`network.kept_members`), and is ready when it has verified that
        // many: gossip then reaches everyone across the members' connection graph.
        // On a charter, the nodes not yet in it are refused by its members: not waited for.
        let waited: Vec<bool> = (0..n)
            .map(|i| sim.charter.as_ref().is_none_or(|c| c.on_charter[i]))
            .collect();
        let kept = crate::config::NetworkSection::default().kept_members;
        let ready_peers = (waited.iter().filter(|w| **w).count().max(1) - 1).min(kept);
        loop {
            let mut meshed = true;
            for (i, s) in sim.nodes.iter().enumerate() {
                if !waited[i] {
                    continue;
                }
                if let Some(node) = s.node() {
                    if node.connected_members_with_region().await.unwrap_or(0) < ready_peers {
                        meshed = false;
                        break;
                    }
                }
            }
            if meshed {
                break;
            }
            if Instant::now() > deadline {
                return Err(SimError::Node {
                    index: 0,
                    message: format!(
                        "the {n} nodes did not each reach {ready_peers} verified members within {} s",
                        60 + n
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sim.report.startup_secs = started.elapsed().as_secs_f64();
        Ok(sim)
    }

    fn node(&self, i: usize) -> Result<&Node, String> {
        self.nodes
            .get(i)
            .and_then(SimNode::node)
            .ok_or_else(|| format!("node {i} is not running"))
    }

    fn running(&self) -> Vec<(usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node().map(|n| (i, n)))
            .collect()
    }

    /// Runs every step; returns the report (assertion failures are in it, not errors).
    pub async fn run(mut self, scenario: &Scenario) -> Result<Report, SimError> {
        let started = Instant::now();
        for (i, spanned) in scenario.steps.iter().enumerate() {
            let line = line_of(&self.text, spanned.span().start);
            let step = spanned.get_ref();
            tracing::info!(step = i + 1, line, action = step.action(), "sim step");
            if let Err(message) = self.step(i + 1, line, step).await {
                self.shutdown().await;
                return Err(SimError::Step {
                    step: i + 1,
                    line,
                    action: step.action().into(),
                    message,
                });
            }
        }
        self.collect_figures().await;
        let mut sorted = self.report.convergence_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        self.report.convergence_p50_ms = percentile(&sorted, 0.5);
        self.report.convergence_p99_ms = percentile(&sorted, 0.99);
        let mut sorted = self.report.charter_propagation_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        self.report.charter_propagation_p50_ms = percentile(&sorted, 0.5);
        self.report.charter_propagation_p99_ms = percentile(&sorted, 0.99);
        let mut ms: Vec<f64> = self.query_calls.iter().map(|c| c.ms).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        self.report.query_p50_ms = percentile(&ms, 0.5);
        self.report.query_p99_ms = percentile(&ms, 0.99);
        self.report.query_calls = self.query_calls.len() as u64;
        self.report.query_not_found = self
            .query_calls
            .iter()
            .filter(|c| c.result == Ok(false))
            .count() as u64;
        self.report.query_failed = self
            .query_calls
            .iter()
            .filter(|c| c.result.is_err())
            .count() as u64;
        self.report.total_secs = started.elapsed().as_secs_f64();
        let report = self.report.clone();
        self.shutdown().await;
        Ok(report)
    }

    async fn shutdown(&mut self) {
        for s in &mut self.nodes {
            if let Some(r) = s.running.take() {
                let _ = r.shutdown().await;
            }
        }
    }

    async fn collect_figures(&mut self) {
        let mut per_node = Vec::new();
        for (i, s) in self.nodes.iter().enumerate() {
            let mut f = NodeFigure {
                node: i,
                region: s.region.label(),
                running: s.running.is_some(),
                ..NodeFigure::default()
            };
            if let Some(node) = s.node() {
                for t in node.transfers() {
                    match t.direction {
                        Direction::In => f.bytes_in += t.bytes_done,
                        Direction::Out => f.bytes_out += t.bytes_done,
                    }
                }
                if let Ok(stats) = node.net().stats().await {
                    f.requests_answered = stats.inbound_requests;
                    f.gossip_received = stats.gossip_received;
                }
            }
            per_node.push(f);
        }
        self.report.per_node = per_node;
    }

    /// Time until every running node holds node `i`'s latest catalogue.
    async fn converge_from(&mut self, i: usize) -> Result<(), String> {
        let started = Instant::now();
        let node = self.node(i)?.clone();
        let seq = node
            .own_catalogue()
            .map_err(|e| e.to_string())?
            .map(|c| c.document.sequence)
            .unwrap_or(0);
        let id = self.ids[i];
        let deadline = Instant::now() + Duration::from_secs(60);
        // Only the nodes on this side of a partition can converge now.
        let group_of = |k: usize| {
            self.partition
                .as_ref()
                .and_then(|g| g.iter().position(|x| x.contains(&k)))
        };
        let reachable = |j: usize| match (group_of(i), group_of(j)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        loop {
            let done = self
                .running()
                .iter()
                .filter(|(j, _)| reachable(*j))
                .all(|(_, n)| n.held_catalogue_sequence(&id) >= seq);
            if done {
                self.report
                    .convergence_ms
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                return Ok(());
            }
            if Instant::now() > deadline {
                // Partitioned nodes cannot converge; the scenario's waits judge that.
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn step(&mut self, number: usize, line: usize, step: &Step) -> Result<(), String> {
        let n = self.nodes.len();
        match step {
            Step::PublishSchema { node, standard } => {
                let text = crate::samples::schema_json(standard).ok_or("unknown standard")?;
                let schema: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| e.to_string())?;
                let version = crate::samples::STANDARDS
                    .iter()
                    .find(|s| s.id == standard)
                    .map(|s| s.version)
                    .unwrap_or("1.0.0");
                self.node(*node)?
                    .publish_schema(standard, version, None, schema)
                    .await
                    .map_err(|e| e.to_string())?;
                // Offers need the standard on the node that adds them: wait for it to spread.
                let deadline = Instant::now() + Duration::from_secs(60);
                while self
                    .running()
                    .iter()
                    .any(|(_, x)| x.schema_doc(standard, Some(version)).is_err())
                {
                    if Instant::now() > deadline {
                        return Err(format!("standard {standard} did not reach every node"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Step::AddOffer {
                node,
                dataset,
                standard,
                share,
                query_keys,
            } => {
                let share = parse_share(share)?;
                let version = crate::samples::STANDARDS
                    .iter()
                    .find(|s| s.id == standard)
                    .map(|s| s.version)
                    .unwrap_or("1.0.0");
                let mut offer = serde_json::json!({
                    "identifier": dataset, "title": format!("{dataset} ({standard})"),
                    "description": "simulated offer", "media_type": "application/jsonl",
                    "resource_code": format!("SIM-{dataset}"), "share_type": share,
                    "share_method": "file", "update_cycle": "daily",
                    "schema_id": standard, "schema_version": version
                });
                if share != ShareType::Unconditional {
                    offer["share_conditions"] = serde_json::json!("simulated conditions");
                }
                if !query_keys.is_empty() {
                    offer["query_keys"] = serde_json::json!(query_keys);
                }
                let input = serde_json::from_value(offer).map_err(|e| e.to_string())?;
                self.node(*node)?
                    .add_offer(input)
                    .await
                    .map_err(|e| e.to_string())?;
                self.converge_from(*node).await?;
            }
            Step::Publish {
                node,
                dataset,
                records,
            } => {
                let x = self.node(*node)?.clone();
                let offer = x
                    .offers()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|o| o.offer.identifier == *dataset)
                    .ok_or_else(|| format!("node {node} has no offer {dataset}"))?;
                let version = x.manifests(None, dataset).map_err(|e| e.to_string())?.len() as u64;
                let seed = (number as u64) << 32 | version;
                let recs = crate::samples::generate(&offer.conforms_to.id, *records, seed)
                    .map_err(|e| e.to_string())?;
                let dir = self.nodes[*node].data_dir.join("sim-files");
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let file = dir.join(format!("{dataset}-{number}.jsonl"));
                let text: String = recs.iter().map(|r| format!("{r}\n")).collect();
                std::fs::write(&file, text).map_err(|e| e.to_string())?;
                x.publish_dataset(dataset, &file, DataFormat::Jsonl)
                    .await
                    .map_err(|e| e.to_string())?;
                self.published.insert(
                    (*node, dataset.clone()),
                    recs.into_iter().take(MAX_KEY_RECORDS).collect(),
                );
                self.converge_from(*node).await?;
            }
            Step::Request {
                node,
                provider,
                dataset,
                purpose,
                basis,
            } => {
                let target = format!("{}/{dataset}", self.ids[*provider]);
                self.node(*node)?
                    .request_access(&target, purpose, basis, Vec::new())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Step::Approve { node, masks, modes } => {
                let x = self.node(*node)?.clone();
                let masks: Vec<FieldMask> = masks.iter().filter_map(|m| m.parse().ok()).collect();
                for r in x.requests().map_err(|e| e.to_string())? {
                    if r.direction == Direction::In
                        && r.status == crate::model::message::RequestStatus::Pending
                    {
                        x.approve_request(
                            &r.id,
                            Approval {
                                fields: None,
                                masks: masks.clone(),
                                expires_in_secs: None,
                                modes: modes.clone(),
                                ..Approval::default()
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    }
                }
                // The grants travel to the requesters.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Step::Fetch {
                nodes,
                provider,
                dataset,
                timeout_secs,
            } => {
                let target = format!("{}/{dataset}", self.ids[*provider]);
                let mut started = Vec::new();
                for i in nodes.resolve(n)? {
                    if i == *provider {
                        continue;
                    }
                    let x = self.node(i)?.clone();
                    let view = x
                        .fetch(&target, None, None)
                        .await
                        .map_err(|e| format!("node {i}: {e}"))?;
                    started.push((i, x, view.id, Instant::now()));
                }
                let deadline = Instant::now() + Duration::from_secs(*timeout_secs);
                for (i, x, id, t0) in started {
                    loop {
                        let v = x.transfer(&id).map_err(|e| e.to_string())?;
                        match v.status {
                            TransferStatus::Done => {
                                self.report.transfers.push(TransferFigure {
                                    node: i,
                                    provider: *provider,
                                    dataset: dataset.clone(),
                                    bytes: v.bytes_total,
                                    ms: t0.elapsed().as_millis() as u64,
                                });
                                break;
                            }
                            TransferStatus::Failed => {
                                return Err(format!(
                                    "node {i}: fetch failed: {}",
                                    v.error.unwrap_or_default()
                                ));
                            }
                            _ => {}
                        }
                        if Instant::now() > deadline {
                            return Err(format!("node {i}: fetch not done in {timeout_secs} s"));
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            Step::Subscribe {
                nodes,
                provider,
                dataset,
            } => {
                let target = format!("{}/{dataset}", self.ids[*provider]);
                for i in nodes.resolve(n)? {
                    if i == *provider {
                        continue;
                    }
                    self.node(i)?
                        .subscribe(&target)
                        .await
                        .map_err(|e| format!("node {i}: {e}"))?;
                }
            }
            Step::Query {
                nodes,
                provider,
                dataset,
                mode,
                key,
                calls,
                unknown,
            } => {
                let calls = self
                    .query(
                        nodes.resolve(n)?,
                        *provider,
                        dataset,
                        *mode,
                        key,
                        *calls,
                        *unknown,
                    )
                    .await?;
                self.query_calls.extend(calls);
            }
            Step::Partition { groups } => {
                let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
                for (i, s) in self.nodes.iter().enumerate() {
                    let Some(node) = s.node() else { continue };
                    let allowed: Vec<PeerId> = (0..n)
                        .filter(|j| *j != i)
                        .filter(|j| match (group_of(i), group_of(*j)) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        })
                        .map(|j| self.ids[j])
                        .collect();
                    node.members().replace(allowed);
                    let _ = node.net().disconnect_non_members().await;
                }
                self.partition = Some(groups.clone());
            }
            Step::Heal => {
                self.partition = None;
                for (i, s) in self.nodes.iter().enumerate() {
                    let Some(node) = s.node() else { continue };
                    node.members().replace(
                        self.ids
                            .iter()
                            .copied()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, p)| p),
                    );
                }
            }
            Step::Kill { nodes } => {
                for i in nodes.resolve(n)? {
                    if let Some(r) = self.nodes[i].running.take() {
                        r.shutdown().await.map_err(|e| format!("node {i}: {e}"))?;
                    }
                }
            }
            Step::Restart { nodes } => {
                for i in nodes.resolve(n)? {
                    if self.nodes[i].running.is_none() {
                        start_node(&mut self.nodes[i], i)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Step::Delay { nodes, ms } => {
                for i in nodes.resolve(n)? {
                    self.node(i)?.set_link_delay(Duration::from_millis(*ms));
                }
            }
            Step::WaitUntil {
                condition,
                timeout_secs,
            } => {
                let started = Instant::now();
                let deadline = started + Duration::from_secs(*timeout_secs);
                let mut last;
                loop {
                    last = self.check(condition).await;
                    if last.is_ok() || Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let passed = last.is_ok();
                self.report.passed &= passed;
                self.report.assertions.push(AssertionResult {
                    step: number,
                    line,
                    condition: format!("wait_until {}", describe(condition)),
                    passed,
                    detail: match last {
                        Ok(d) => format!(
                            "{d} after {:.0} ms",
                            started.elapsed().as_secs_f64() * 1000.0
                        ),
                        Err(e) => format!("not within {timeout_secs} s: {e}"),
                    },
                });
            }
            Step::Assert { condition, expect } => {
                let r = self.check(condition).await;
                let passed = r.is_ok() == *expect;
                self.report.passed &= passed;
                self.report.assertions.push(AssertionResult {
                    step: number,
                    line,
                    condition: if *expect {
                        describe(condition)
                    } else {
                        format!("NOT {}", describe(condition))
                    },
                    passed,
                    detail: r.unwrap_or_else(|e| e),
                });
            }
            Step::Sleep { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Step::CharterJoin { node } => self.charter_join(*node).await?,
            Step::CharterRemove { node } => self.charter_remove(*node).await?,
            Step::CharterRotate { node } => self.charter_rotate(*node).await?,
        }
        Ok(())
    }

    /// The version in force at the first founder, signed.
    fn charter_in_force(&self) -> Result<SignedCharter, String> {
        let founder = self.node(0)?;
        let version = founder
            .federation()
            .map_err(|e| e.to_string())?
            .charter
            .version;
        founder
            .federation_version(version)
            .map_err(|e| e.to_string())
    }

    /// Proposes `change` at the first founder, has the founders approve it through their nodes,
    /// and times it from the approval that completes it until every running member applied it.
    async fn charter_change(&mut self, change: Change) -> Result<u64, String> {
        let current = self.charter_in_force()?;
        let next = current
            .document
            .next(&[change], now_rfc3339(), current.document.expires.clone())
            .map_err(|e| e.to_string())?;
        self.approve_and_spread(SignedCharter::draft(next)).await
    }

    /// Has `threshold` founders approve `draft` through their nodes and waits until every
    /// running member applied it; records the time from the last approval.
    async fn approve_and_spread(&mut self, draft: SignedCharter) -> Result<u64, String> {
        let run = self
            .charter
            .as_ref()
            .ok_or("the scenario has no [charter]")?;
        let threshold = run.setup.threshold as usize;
        let version = draft.document.version;
        let mut started = Instant::now();
        for f in 0..threshold {
            // Each founder is handed the draft (as a bureau reviews the file it is sent) and
            // signs it through its node; the signatures meet by gossip.
            let proposal = self
                .node(f)?
                .submit_proposal(draft.clone())
                .await
                .map_err(|e| format!("proposal at founder node {f}: {e}"))?;
            started = Instant::now();
            let signed = self
                .node(f)?
                .sign_proposal(&proposal.digest)
                .await
                .map_err(|e| format!("founder node {f} approving: {e}"))?;
            tracing::debug!(
                founder = f,
                signers = signed.signers.len(),
                ready = signed.ready,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "charter proposal signed"
            );
        }
        let members: Vec<usize> = (0..self.nodes.len())
            .filter(|i| run.on_charter[*i] && self.nodes[*i].running.is_some())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(CHARTER_APPLY_SECS);
        loop {
            let behind = members
                .iter()
                .filter(|i| {
                    // The head only: building the whole view of a hundred members, every
                    // 2 ms on every node, would load the nodes being timed.
                    self.nodes[**i]
                        .node()
                        .and_then(|n| n.charter_head())
                        .is_none_or(|h| h.version < version)
                })
                .count();
            if behind == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "charter version {version}: {behind} of {} members had not applied it within \
                     {CHARTER_APPLY_SECS} s",
                    members.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.report
            .charter_propagation_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        Ok(version)
    }

    async fn charter_join(&mut self, i: usize) -> Result<(), String> {
        let run = self
            .charter
            .as_ref()
            .ok_or("the scenario has no [charter]")?;
        if run.on_charter[i] {
            return Err(format!("node {i} is already a member"));
        }
        let member = sim_member(i, self.nodes[i].region, &run.keys[i], Role::Member);
        let version = self.charter_change(Change::AddMember(member)).await?;
        // The node restarts on the chain, as a bureau joining is given it.
        let founder = self.node(0)?;
        let chain = (1..=version)
            .map(|v| founder.federation_version(v).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let chain_file = {
            let run = self
                .charter
                .as_mut()
                .ok_or("the scenario has no [charter]")?;
            run.on_charter[i] = true;
            run.chain_file.clone()
        };
        write_chain(&chain_file, &chain)?;
        if let Some(r) = self.nodes[i].running.take() {
            r.shutdown().await.map_err(|e| format!("node {i}: {e}"))?;
        }
        set_charter(&self.nodes[i].data_dir, &chain_file, true)
            .map_err(|e| format!("node {i}: {e}"))?;
        start_node(&mut self.nodes[i], i)
            .await
            .map_err(|e| e.to_string())?;
        // Joined once it has verified the members it keeps connected, as at start: the next
        // step does not run while it connects (bureaus join days apart, not back to back).
        let members = self
            .charter
            .as_ref()
            .map(|c| c.on_charter.iter().filter(|m| **m).count())
            .unwrap_or(0);
        let wanted = members
            .saturating_sub(1)
            .min(crate::config::NetworkSection::default().kept_members);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let verified = match self.nodes[i].node() {
                Some(n) => n.connected_members_with_region().await.unwrap_or(0),
                None => 0,
            };
            if verified >= wanted {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {i} joined but verified only {verified} of {wanted} members within 60 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The charter of the run, with node `i` a member of it.
    fn charter_member(&self, i: usize) -> Result<&CharterRun, String> {
        let run = self
            .charter
            .as_ref()
            .ok_or("the scenario has no [charter]")?;
        if !run.on_charter[i] {
            return Err(format!("node {i} is not a member"));
        }
        Ok(run)
    }

    async fn charter_rotate(&mut self, i: usize) -> Result<(), String> {
        self.charter_member(i)?;
        let started = Instant::now();
        // Stage 1: the next key added; the node asks to restart on it once that applies.
        let add = self.rotation_proposal(i).await?;
        self.approve_and_spread(add).await?;
        let restart = self.node(i)?.restart_requested();
        tokio::time::timeout(Duration::from_secs(30), restart.cancelled())
            .await
            .map_err(|_| format!("node {i} did not ask to restart on its next key within 30 s"))?;
        // As `yrd run` does: the same data dir started again, which switches to the next key.
        if let Some(r) = self.nodes[i].running.take() {
            r.shutdown().await.map_err(|e| format!("node {i}: {e}"))?;
        }
        start_node(&mut self.nodes[i], i)
            .await
            .map_err(|e| e.to_string())?;
        let key = NodeKey::load(&self.nodes[i].data_dir.join(crate::identity::KEY_FILE))
            .map_err(|e| format!("node {i}: {e}"))?;
        if key.peer_id() == self.ids[i] {
            return Err(format!("node {i} restarted on its old key"));
        }
        self.ids[i] = key.peer_id();
        if let Some(c) = self.charter.as_mut() {
            c.keys[i] = key;
        }
        // Stage 2: the earlier key retired.
        let retire = self.rotation_proposal(i).await?;
        self.approve_and_spread(retire).await?;
        self.report
            .key_rotation_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        Ok(())
    }

    /// The proposal of node `i`'s next rotation stage (`yrd key rotate`), as the founders get it.
    async fn rotation_proposal(&self, i: usize) -> Result<SignedCharter, String> {
        let node = self.node(i)?;
        let view = node
            .rotate_key()
            .await
            .map_err(|e| format!("node {i} rotating its key: {e}"))?;
        node.federation_proposal(&view.proposal.digest)
            .map_err(|e| format!("node {i}: {e}"))
    }

    async fn charter_remove(&mut self, i: usize) -> Result<(), String> {
        let run = self.charter_member(i)?;
        let current = self.charter_in_force()?;
        let key = run.keys[i].public_hex();
        let member = current
            .document
            .member_of_key(&key)
            .map(|m| m.member_id.clone())
            .ok_or_else(|| format!("node {i}'s key is not in the charter"))?;
        if let Some(c) = self.charter.as_mut() {
            c.on_charter[i] = false;
        }
        self.charter_change(Change::RemoveMember(member)).await?;
        // Every member cuts it off.
        let removed = self.ids[i].to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut connected = 0;
            for (j, n) in self.running() {
                if j != i
                    && n.peers()
                        .await
                        .is_ok_and(|p| p.iter().any(|v| v.peer_id == removed))
                {
                    connected += 1;
                }
            }
            if connected == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {i} removed, but still connected to {connected} members after 30 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The calls of one `query` step: every caller makes its calls one after another, all
    /// callers at once.
    #[allow(clippy::too_many_arguments)]
    async fn query(
        &self,
        callers: Vec<usize>,
        provider: usize,
        dataset: &str,
        mode: QueryMode,
        field: &str,
        calls: usize,
        unknown: usize,
    ) -> Result<Vec<QueryCall>, String> {
        let known: Vec<String> = self
            .published
            .get(&(provider, dataset.to_string()))
            .map(|recs| {
                recs.iter()
                    .filter_map(|r| r.get(field).and_then(value_text))
                    .map(|v| v.into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if known.is_empty() && calls > unknown {
            return Err(format!(
                "node {provider} published no record of {dataset} with a {field} in this scenario"
            ));
        }
        let pid = self.ids[provider].to_string();
        let target = format!("{pid}/{dataset}");
        let mut work = Vec::new();
        for i in callers {
            if i == provider {
                continue;
            }
            let x = self.node(i)?.clone();
            // The last `unknown` calls use a key nobody has; the others spread over the records.
            let keys: Vec<(String, bool)> = (0..calls)
                .map(|c| match known.len() {
                    k if c + unknown < calls && k > 0 => {
                        (known[(i * 7919 + c * 104_729) % k].clone(), true)
                    }
                    _ => (format!("91SIM{i:05}{c:07}X"), false),
                })
                .collect();
            let (target, pid) = (target.clone(), pid.clone());
            work.push(async move {
                let mut out = Vec::with_capacity(keys.len());
                for (value, expect_found) in keys {
                    let kv = FieldValue {
                        field: field.to_string(),
                        value,
                    };
                    let t0 = Instant::now();
                    let r = x
                        .query(
                            QueryInput {
                                target: target.clone(),
                                mode,
                                key: vec![kv.clone()],
                                fields: Vec::new(),
                                purpose: Some("simulated verification".into()),
                                legal_basis: Some("simulated legal basis".into()),
                                grant: None,
                            },
                            None,
                        )
                        .await;
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    let result = match r {
                        Err(e) => Err(e.to_string()),
                        Ok(o) => {
                            let a = &o.answer.document;
                            if let Err(e) = o.answer.verify() {
                                Err(format!("answer signature: {e}"))
                            } else if a.provider != pid {
                                Err(format!("answer signed by {}, not the provider", a.provider))
                            } else if a.found != expect_found {
                                Err(format!("found = {}, expected {expect_found}", a.found))
                            } else if mode == QueryMode::Lookup && a.found && o.records.is_empty() {
                                Err("a lookup found the key but returned no record".into())
                            } else {
                                Ok(a.found)
                            }
                        }
                    };
                    out.push(QueryCall {
                        caller: i,
                        provider,
                        dataset: dataset.to_string(),
                        key: kv,
                        expect_found,
                        result,
                        ms,
                    });
                }
                out
            });
        }
        Ok(futures::future::join_all(work)
            .await
            .into_iter()
            .flatten()
            .collect())
    }

    /// Whether the provider's and the callers' logs hold a record of each query call.
    fn check_queries(&self, provider: usize, dataset: &str) -> Result<String, String> {
        let calls: Vec<&QueryCall> = self
            .query_calls
            .iter()
            .filter(|c| c.provider == provider && c.dataset == dataset)
            .collect();
        if calls.is_empty() {
            return Err(format!("no query call to node {provider}'s {dataset}"));
        }
        let failed: Vec<&&QueryCall> = calls.iter().filter(|c| c.result.is_err()).collect();
        if let Some(c) = failed.first() {
            return Err(format!(
                "{} of {} calls without a valid signed answer; first: node {} ({} {}, {}): {}",
                failed.len(),
                calls.len(),
                c.caller,
                c.key.field,
                c.key.value,
                if c.expect_found { "known" } else { "unknown" },
                c.result.as_ref().err().map(String::as_str).unwrap_or("")
            ));
        }
        // Calls per (caller, key): the logs must hold at least as many records of them.
        let mut per_key: std::collections::BTreeMap<(usize, &str), usize> =
            std::collections::BTreeMap::new();
        for c in &calls {
            *per_key.entry((c.caller, c.key.value.as_str())).or_default() += 1;
        }
        let p = self.node(provider)?;
        let pid = self.ids[provider].to_string();
        let field = calls[0].key.field.clone();
        let count = |x: &Node, kv: &FieldValue, publisher: Option<&str>, kind, peer: &str| {
            x.provenance_query_calls(dataset, kv, publisher)
                .map(|recs| {
                    recs.iter()
                        .filter(|r| r.kind == kind && r.counterparty.as_deref() == Some(peer))
                        .count()
                })
                .map_err(|e| e.to_string())
        };
        for ((caller, value), n) in &per_key {
            let kv = FieldValue {
                field: field.clone(),
                value: value.to_string(),
            };
            let cid = self.ids[*caller].to_string();
            let answered = count(p, &kv, None, RecordKind::QueryAnswered, &cid)?;
            if answered < *n {
                return Err(format!(
                    "node {provider}'s log holds {answered} query-answered records of node \
                     {caller}'s {n} calls with {field} {value}"
                ));
            }
            if let Ok(x) = self.node(*caller) {
                let sent = count(x, &kv, Some(&pid), RecordKind::QuerySent, &pid)?;
                if sent < *n {
                    return Err(format!(
                        "node {caller}'s log holds {sent} query-sent records of its {n} calls \
                         with {field} {value}"
                    ));
                }
            }
        }
        let not_found = calls.iter().filter(|c| c.result == Ok(false)).count();
        let callers: std::collections::BTreeSet<usize> = calls.iter().map(|c| c.caller).collect();
        Ok(format!(
            "{} calls by {} nodes, each signed by node {provider} ({not_found} not found, as \
             expected) with its query-answered and query-sent records",
            calls.len(),
            callers.len()
        ))
    }

    /// Ok(what was seen) if the condition holds, Err(why not) otherwise.
    async fn check(&self, c: &Condition) -> Result<String, String> {
        let n = self.nodes.len();
        let running = self.running();
        match c {
            Condition::CatalogueConverged => {
                for (i, a) in &running {
                    let own = a
                        .own_catalogue()
                        .map_err(|e| e.to_string())?
                        .map(|c| c.document.sequence)
                        .unwrap_or(0);
                    for (j, b) in &running {
                        let held = b.held_catalogue_sequence(&self.ids[*i]);
                        if i != j && held < own {
                            return Err(format!(
                                "node {j} holds node {i}'s catalogue {held}, node {i} is at {own}"
                            ));
                        }
                    }
                }
                Ok(format!(
                    "{} running nodes hold every catalogue",
                    running.len()
                ))
            }
            Condition::DigestEqual {
                provider,
                dataset,
                nodes,
            } => {
                let p = self.node(*provider)?;
                let latest = p
                    .manifests(None, dataset)
                    .map_err(|e| e.to_string())?
                    .pop()
                    .ok_or_else(|| format!("node {provider} has no version of {dataset}"))?;
                let pid = self.ids[*provider].to_string();
                let mut checked = 0;
                for i in nodes.resolve(n)? {
                    if i == *provider {
                        continue;
                    }
                    let Ok(x) = self.node(i) else { continue };
                    let held = x
                        .manifests(Some(&pid), dataset)
                        .map_err(|e| e.to_string())?;
                    let ok = held.iter().any(|m| {
                        m.document.version == latest.document.version
                            && (m.document.digest == latest.document.digest
                                || m.document
                                    .derived_from
                                    .as_ref()
                                    .is_some_and(|d| d.original_digest == latest.document.digest))
                            && x.blobs().contains(&m.document.digest)
                    });
                    if !ok {
                        return Err(format!(
                            "node {i} does not hold {dataset} v{}",
                            latest.document.version
                        ));
                    }
                    checked += 1;
                }
                Ok(format!(
                    "{checked} nodes hold {dataset} v{} ({}…)",
                    latest.document.version,
                    latest.document.digest.get(..12).unwrap_or("")
                ))
            }
            Condition::ProvenanceAgrees => {
                let mut deliveries = 0;
                for (i, p) in &running {
                    let served = p
                        .provenance_query(&Query {
                            kind: Some(RecordKind::DeliveryServed.name()),
                            limit: Some(100_000),
                            ..Query::default()
                        })
                        .map_err(|e| e.to_string())?;
                    let receipts = p
                        .provenance_query(&Query {
                            kind: Some(RecordKind::ReceiptReceived.name()),
                            limit: Some(100_000),
                            ..Query::default()
                        })
                        .map_err(|e| e.to_string())?;
                    for d in served {
                        let receiver = d.counterparty.clone().unwrap_or_default();
                        let Some(j) = self.ids.iter().position(|x| x.to_string() == receiver)
                        else {
                            return Err(format!("node {i} served an unknown peer {receiver}"));
                        };
                        let has_receipt = receipts.iter().any(|r| {
                            r.counterparty == d.counterparty
                                && r.data_digest == d.data_digest
                                && r.version == d.version
                        });
                        if !has_receipt {
                            return Err(format!(
                                "node {i}'s delivery {} (seq {}) to node {j} has no receipt",
                                d.dataset.clone().unwrap_or_default(),
                                d.seq
                            ));
                        }
                        if let Ok(r) = self.node(j) {
                            let received = r
                                .provenance_query(&Query {
                                    kind: Some(RecordKind::DatasetReceived.name()),
                                    peer: Some(self.ids[*i].to_string()),
                                    limit: Some(100_000),
                                    ..Query::default()
                                })
                                .map_err(|e| e.to_string())?;
                            if !received.iter().any(|x| x.data_digest == d.data_digest) {
                                return Err(format!(
                                    "node {j} has no dataset-received record of node {i}'s delivery seq {}",
                                    d.seq
                                ));
                            }
                        }
                        deliveries += 1;
                    }
                }
                Ok(format!(
                    "{deliveries} deliveries, each received and receipted"
                ))
            }
            Condition::NoAlarms => {
                for (i, x) in &running {
                    let alarms = x.alarms().map_err(|e| e.to_string())?;
                    if let Some(a) = alarms.first() {
                        return Err(format!(
                            "node {i}: {} alarm(s), first: {}",
                            alarms.len(),
                            a.cause
                        ));
                    }
                }
                Ok("no witness alarm".into())
            }
            Condition::Subscribed {
                provider,
                dataset,
                nodes,
                version,
            } => {
                let pid = self.ids[*provider].to_string();
                let mut count = 0;
                for i in nodes.resolve(n)? {
                    if i == *provider {
                        continue;
                    }
                    let Ok(x) = self.node(i) else { continue };
                    let subs = x.subscriptions().map_err(|e| e.to_string())?;
                    let got = subs
                        .iter()
                        .find(|s| s.publisher == pid && s.dataset == *dataset)
                        .map(|s| s.fetched_version)
                        .unwrap_or(0);
                    if got < *version {
                        return Err(format!("node {i} has fetched v{got} of {dataset}"));
                    }
                    count += 1;
                }
                Ok(format!("{count} subscribers have v{version}"))
            }
            Condition::QueriesAnswered { provider, dataset } => {
                self.check_queries(*provider, dataset)
            }
        }
    }
}

fn describe(c: &Condition) -> String {
    match c {
        Condition::CatalogueConverged => "catalogue converged".into(),
        Condition::DigestEqual {
            provider, dataset, ..
        } => format!("digest of {dataset} (node {provider}) equal on the nodes"),
        Condition::ProvenanceAgrees => "provenance of both sides agrees".into(),
        Condition::NoAlarms => "no witness alarm".into(),
        Condition::Subscribed {
            provider,
            dataset,
            version,
            ..
        } => format!("subscribers have {dataset} v{version} of node {provider}"),
        Condition::QueriesAnswered { provider, dataset } => {
            format!("query calls to {dataset} (node {provider}) answered, signed and logged")
        }
    }
}

/// The genesis of a scenario's `[charter]`, written as a chain file under `base`.
fn charter_genesis(
    setup: &SimCharter,
    scenario: &Scenario,
    keys: &[NodeKey],
    base: &Path,
) -> Result<CharterRun, SimError> {
    let err = |message: String| SimError::Node { index: 0, message };
    let members = setup.members.unwrap_or(keys.len()).min(keys.len());
    let genesis = Charter {
        federation: Federation {
            id: "yrd-sim".into(),
            name: format!("{} (simulation)", scenario.name),
        },
        version: 1,
        previous: None,
        issued: now_rfc3339(),
        expires: "2099-01-01T00:00:00Z".into(),
        members: (0..members)
            .map(|i| {
                sim_member(
                    i,
                    region_for(i, scenario),
                    &keys[i],
                    if i < setup.founders {
                        Role::Founder
                    } else {
                        Role::Member
                    },
                )
            })
            .collect(),
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold: setup.threshold,
        },
    };
    let mut signed = SignedCharter::draft(genesis);
    for key in keys.iter().take(setup.threshold as usize) {
        signed
            .sign(key.signing_key())
            .map_err(|e| err(e.to_string()))?;
    }
    let chain_file = base.join("charter-chain.json");
    write_chain(&chain_file, &[signed]).map_err(err)?;
    Ok(CharterRun {
        setup: setup.clone(),
        keys: keys.to_vec(),
        on_charter: (0..keys.len()).map(|i| i < members).collect(),
        chain_file,
    })
}

/// Node `i` as a charter member (a fictitious 统一社会信用代码).
fn sim_member(i: usize, region: Region, key: &NodeKey, role: Role) -> CharterMember {
    CharterMember {
        member_id: crate::model::charter::fictitious_member_id(region, i % 100),
        organisation: format!("{} sim node {i}", region.name_zh()),
        region,
        role,
        keys: vec![MemberKey::ed25519_hex(key.public_hex())],
    }
}

/// Writes `versions` as a chain file (a JSON array, genesis first).
fn write_chain(path: &Path, versions: &[SignedCharter]) -> Result<(), String> {
    let text = serde_json::to_string_pretty(versions).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Points node `data_dir`'s config at the chain file and drops its member list; with
/// `fresh_port`, its listen addresses go back to port 0 (a restarted node's old UDP port may
/// not be free yet; it dials the members itself, so they learn the new one).
fn set_charter(data_dir: &Path, chain_file: &Path, fresh_port: bool) -> Result<(), String> {
    use libp2p::multiaddr::Protocol;
    let path = data_dir.join(CONFIG_FILE);
    let mut config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
    config.federation.members.clear();
    config.federation.charter = Some(chain_file.to_path_buf());
    if fresh_port {
        for addr in &mut config.network.listen {
            *addr = addr
                .iter()
                .map(|p| match p {
                    Protocol::Tcp(_) => Protocol::Tcp(0),
                    Protocol::Udp(_) => Protocol::Udp(0),
                    other => other,
                })
                .collect();
        }
    }
    setup::write_config(&path, &config).map_err(|e| e.to_string())
}

async fn start_node(s: &mut SimNode, index: usize) -> Result<(), SimError> {
    let node_err = |message: String| SimError::Node { index, message };
    let config_path = s.data_dir.join(CONFIG_FILE);
    let mut config = NodeConfig::load(&config_path).map_err(|e| node_err(e.to_string()))?;
    let first = config.network.listen.iter().any(|a| {
        a.iter().any(|p| {
            matches!(
                p,
                libp2p::multiaddr::Protocol::Tcp(0) | libp2p::multiaddr::Protocol::Udp(0)
            )
        })
    });
    // A restart in this process (a rejoin, a key rotation) may find the previous instance's
    // QUIC endpoint still holding its port while its connections drain.
    crate::net::wait_bindable(&config.network.listen, Duration::from_secs(10)).await;
    // The simulation runs many nodes on few cores: anti-entropy and pings stay at defaults.
    let running = Server::start(NodeOptions {
        config: config.clone(),
        data_dir: s.data_dir.clone(),
    })
    .await
    .map_err(|e| node_err(e.to_string()))?;
    if first {
        // Keep the port the OS chose, so peers reach a restarted node where they knew it.
        if let Some(mut a) = tcp_address(&running.node).await {
            if matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                a.pop();
            }
            config.network.listen = vec![a];
            let _ = setup::write_config(&config_path, &config);
        }
    }
    s.running = Some(running);
    Ok(())
}

/// Runs a scenario file: loads it, starts the nodes, runs the steps, returns the report.
pub async fn run_file(
    path: &Path,
    nodes: Option<usize>,
    dir: Option<&Path>,
) -> Result<Report, SimError> {
    let (scenario, n) = Scenario::load(path, nodes)?;
    let text = std::fs::read_to_string(path)?;
    let sim = Sim::start(&scenario, n, dir, &text).await?;
    sim.run(&scenario).await
}
