//! `GET /metrics`: the node's state in the Prometheus text exposition format (0.0.4), read when
//! scraped. Behind the admin token like every route (Prometheus sends it with `authorization`).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::model::message::RequestStatus;
use crate::node::access::Direction;
use crate::node::counters::Counters;
use crate::node::transfer::TransferStatus;

/// Builds the exposition text, one family at a time.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

pub(super) async fn serve(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let node = &s.node;
    let (health, net) = node.health_and_net_stats().await?;
    let mut m = Exposition::default();

    m.one(
        "yrd_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        health.uptime_secs,
    );
    m.one(
        "yrd_members",
        "gauge",
        "Federation members configured (besides this node).",
        node.member_count() as u64,
    );
    m.one(
        "yrd_members_connected",
        "gauge",
        "Federation members connected now.",
        health.connected_members as u64,
    );
    m.one(
        "yrd_refused_connections_total",
        "counter",
        "Connections refused since start because the peer is not a federation member.",
        health.refused_connections,
    );
    m.one(
        "yrd_excess_connections_total",
        "counter",
        "Connections of members refused since start because the member already held the most \
         connections one peer may hold at once.",
        health.excess_connections,
    );
    m.one(
        "yrd_refusal_records_dropped_total",
        "counter",
        "Refusal records not kept since start because the member that caused them had used up \
         its budget of refusal records per hour.",
        health.refusal_records_dropped,
    );

    m.one(
        "yrd_queries_sent_total",
        "counter",
        "Queries this node sent to providers since start.",
        net.queries_sent,
    );
    m.one(
        "yrd_query_batches_sent_total",
        "counter",
        "Batches those queries left in (/yrd/query/2); queries over batches is the mean batch \
         size.",
        net.query_batches_sent,
    );

    if let Some((version, expires, proposals, equivocated)) = node.charter_metrics() {
        m.one(
            "yrd_charter_version",
            "gauge",
            "The federation charter version in force.",
            version,
        );
        m.one(
            "yrd_charter_expires_timestamp_seconds",
            "gauge",
            "When the charter in force expires (unix seconds); alert well before it.",
            u64::try_from(expires).unwrap_or(0),
        );
        m.one(
            "yrd_charter_proposals",
            "gauge",
            "Proposals of the next charter version held (at most 32).",
            proposals as u64,
        );
        m.one(
            "yrd_charter_equivocated",
            "gauge",
            "1 when two validly signed documents of one charter version were seen (no new grants).",
            u64::from(equivocated),
        );
    }

    // A database that cannot be read makes yrd_up 0 and the families read from it 0; the scrape
    // itself still answers, so the alert on yrd_up can fire.
    let mut store_ok = health.store_ok;
    let ours = or_unreadable(node.offers(), &mut store_ok).len() as u64;
    let requests = or_unreadable(node.requests(), &mut store_ok);
    let alarms = or_unreadable(node.alarms(), &mut store_ok);
    m.one(
        "yrd_up",
        "gauge",
        "1 when the node answers and its database is readable.",
        u64::from(store_ok),
    );
    let network: u64 = node
        .network_catalogues()
        .iter()
        .map(|c| c.document.offers.len() as u64)
        .sum();
    m.family(
        "yrd_catalogue_entries",
        "gauge",
        "Offers in our own list (scope=\"own\") and in every catalogue we hold, ours included \
         (scope=\"network\").",
    );
    m.sample("yrd_catalogue_entries", &[("scope", "own")], ours);
    m.sample("yrd_catalogue_entries", &[("scope", "network")], network);
    m.one(
        "yrd_catalogues_held",
        "gauge",
        "Members' signed catalogues held, ours included.",
        node.network_catalogues().len() as u64,
    );

    let c = node.counters();
    m.family(
        "yrd_dataset_bytes_total",
        "counter",
        "Dataset bytes moved since start: sent to fetching peers, or received and verified.",
    );
    m.sample(
        "yrd_dataset_bytes_total",
        &[("direction", "sent")],
        Counters::get(&c.bytes_sent),
    );
    m.sample(
        "yrd_dataset_bytes_total",
        &[("direction", "received")],
        Counters::get(&c.bytes_received),
    );

    let transfers = node.transfers();
    let active = |d: Direction| {
        transfers
            .iter()
            .filter(|t| t.direction == d)
            .filter(|t| !matches!(t.status, TransferStatus::Done | TransferStatus::Failed))
            .count() as u64
    };
    m.family(
        "yrd_transfers_active",
        "gauge",
        "Transfers in progress: direction=\"in\" we fetch, \"out\" we serve.",
    );
    m.sample(
        "yrd_transfers_active",
        &[("direction", "in")],
        active(Direction::In),
    );
    m.sample(
        "yrd_transfers_active",
        &[("direction", "out")],
        active(Direction::Out),
    );
    m.family(
        "yrd_transfers_finished_total",
        "counter",
        "Transfers finished since start, by direction and outcome.",
    );
    for (direction, outcome, counter) in [
        ("in", "done", &c.fetches_done),
        ("in", "failed", &c.fetches_failed),
        ("out", "done", &c.serves_done),
        ("out", "failed", &c.serves_failed),
    ] {
        m.sample(
            "yrd_transfers_finished_total",
            &[("direction", direction), ("outcome", outcome)],
            Counters::get(counter),
        );
    }

    m.family(
        "yrd_access_requests",
        "gauge",
        "Access requests held, by direction (received/sent) and decision.",
    );
    for (direction, dname) in [(Direction::In, "received"), (Direction::Out, "sent")] {
        for (status, sname) in [
            (RequestStatus::Pending, "pending"),
            (RequestStatus::Granted, "granted"),
            (RequestStatus::Denied, "denied"),
        ] {
            let n = requests
                .iter()
                .filter(|r| r.direction == direction && r.status == status)
                .count() as u64;
            m.sample(
                "yrd_access_requests",
                &[("direction", dname), ("decision", sname)],
                n,
            );
        }
    }

    let log = node.provenance();
    m.one(
        "yrd_provenance_records",
        "gauge",
        "Records in this node's provenance log (the Merkle tree's size).",
        log.size(),
    );
    m.one(
        "yrd_provenance_signed_tree_size",
        "gauge",
        "Size of the latest signed tree head (lags the log by at most one signing interval).",
        log.head().map(|h| h.document.size).unwrap_or(0),
    );
    let open = alarms.iter().filter(|a| a.resolved.is_none()).count() as u64;
    m.family(
        "yrd_witness_alarms",
        "gauge",
        "Witness alarms: members whose log was seen to fork. state=\"open\" above 0 needs an \
         operator (docs/operations.md, section 9).",
    );
    m.sample("yrd_witness_alarms", &[("state", "open")], open);
    m.sample(
        "yrd_witness_alarms",
        &[("state", "resolved")],
        alarms.len() as u64 - open,
    );

    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.text,
    )
        .into_response())
}

/// The value, or its default when the database could not be read (noted in `ok`).
fn or_unreadable<T: Default>(read: Result<T, crate::node::NodeError>, ok: &mut bool) -> T {
    read.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metrics: cannot read the database");
        *ok = false;
        T::default()
    })
}
