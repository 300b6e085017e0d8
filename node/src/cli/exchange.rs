//! The exchange verbs of the CLI: `fetch`, `request`, `requests`, `grants`, `subscribe`,
//! `unsubscribe`, `subscriptions`, `transfers`, `receipts`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::client::urlencode;
use super::output::{print_json, short_id};
use super::{Cli, CliError, ClientsCommand, GrantsCommand, RequestsCommand, client, table};
use crate::api::exchange::{
    ApproveBody, FetchBody, GrantView, ReasonBody, RequestBody, TargetBody,
};
use crate::api::query::ClientBody;
use crate::api::routes::Removed;
use crate::model::exchange::{Denial, Grant, Receipt};
use crate::model::masking::FieldMask;
use crate::model::query::{AccessMode, FieldValue, QueryLimits, QueryMode};
use crate::model::signed::Signed;
use crate::node::access::{Direction, RequestRecord};
use crate::node::clients::{ClientView, NewClient};
use crate::node::query::{QueryInput, QueryOutcome};
use crate::node::transfer::{Subscription, TransferStatus, TransferView};

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One line of progress: bar, bytes, rate, ETA.
fn progress_line(v: &TransferView, rate: f64) -> String {
    let total = v.bytes_total.max(1);
    let frac = (v.bytes_done as f64 / total as f64).clamp(0.0, 1.0);
    let width = 30;
    let filled = (frac * width as f64).round() as usize;
    let eta = if rate > 0.0 && v.bytes_total > v.bytes_done {
        format!("ETA {:.0} s", (v.bytes_total - v.bytes_done) as f64 / rate)
    } else {
        String::new()
    };
    format!(
        "\r[{}{}] {:>5.1}%  {} / {}  {}/s  {}  {:?}   ",
        "#".repeat(filled),
        "-".repeat(width - filled),
        frac * 100.0,
        human_bytes(v.bytes_done),
        human_bytes(v.bytes_total),
        human_bytes(rate as u64),
        eta,
        v.status
    )
}

/// `yrd fetch`: starts the fetch, follows it (a progress bar on a terminal), then writes the
/// verified file to `--out` if given.
pub(super) async fn fetch(
    cli: &Cli,
    target: &str,
    version: Option<u64>,
    grant: Option<String>,
    out: Option<&Path>,
    no_wait: bool,
) -> Result<(), CliError> {
    let c = client(cli)?;
    let body = FetchBody {
        target: target.to_string(),
        version,
        grant,
    };
    let mut view: TransferView = c.post("/api/v1/fetch", &body).await?;
    if no_wait {
        return if cli.json {
            print_json(&view)
        } else {
            println!("fetch started: transfer {}", view.id);
            Ok(())
        };
    }
    let tty = !cli.json && std::io::stderr().is_terminal();
    let path = format!("/api/v1/transfers/{}", view.id);
    let mut last = (Instant::now(), view.bytes_done);
    let mut rate = 0.0f64;
    // Long-poll: the node answers as soon as the transfer finishes, so a small fetch returns
    // without a polling delay; on a terminal, every half second for the progress bar.
    let wait = format!("{path}?wait_ms={}", if tty { 500 } else { 1000 });
    while !matches!(view.status, TransferStatus::Done | TransferStatus::Failed) {
        let asked = Instant::now();
        view = c.get(&wait).await?;
        // A node that does not wait (older than `wait_ms`) answers at once: poll it gently
        // rather than in a tight loop.
        if asked.elapsed() < Duration::from_millis(5)
            && !matches!(view.status, TransferStatus::Done | TransferStatus::Failed)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let dt = last.0.elapsed().as_secs_f64();
        if dt >= 0.5 {
            let now_rate = view.bytes_done.saturating_sub(last.1) as f64 / dt;
            rate = if rate == 0.0 {
                now_rate
            } else {
                0.7 * rate + 0.3 * now_rate
            };
            last = (Instant::now(), view.bytes_done);
        }
        if tty {
            eprint!("{}", progress_line(&view, rate));
            let _ = std::io::stderr().flush();
        }
    }
    if tty {
        eprintln!();
    }
    if view.status == TransferStatus::Failed {
        return Err(CliError::Invalid(format!(
            "fetch of {target} failed: {}",
            view.error.as_deref().unwrap_or("no reason recorded")
        )));
    }
    if let Some(out) = out {
        let (bytes, digest) = c.download(&format!("{path}/content"), out).await?;
        if !cli.json {
            println!("wrote {} ({bytes} bytes, digest {digest})", out.display());
        }
    }
    if cli.json {
        return print_json(&view);
    }
    if view.transfer_ms == 0 && view.bytes_total > 0 {
        println!(
            "{} v{} from {} was already held here (digest {}); nothing moved",
            view.dataset,
            view.version.unwrap_or(0),
            short_id(&view.peer),
            view.digest.as_deref().unwrap_or("")
        );
        return Ok(());
    }
    let secs = view.transfer_ms.max(1) as f64 / 1000.0;
    println!(
        "fetched {} v{} from {}: {} in {:.2} s ({}/s){}; digest {}",
        view.dataset,
        view.version.unwrap_or(0),
        short_id(&view.peer),
        human_bytes(view.bytes_total),
        secs,
        human_bytes((view.bytes_total as f64 / secs) as u64),
        match (view.derived, view.grant.as_deref()) {
            (true, Some(grant)) => format!(", masked under grant {grant}"),
            // An unconditional offer's copy: its personal fields leave masked by default.
            (true, None) => ", personal fields masked".to_string(),
            (false, _) => String::new(),
        },
        view.digest.as_deref().unwrap_or("")
    );
    Ok(())
}

pub(super) async fn transfers(cli: &Cli, id: Option<&str>) -> Result<(), CliError> {
    let c = client(cli)?;
    let list: Vec<TransferView> = match id {
        Some(id) => vec![
            c.get(&format!("/api/v1/transfers/{}", urlencode(id)))
                .await?,
        ],
        None => c.get("/api/v1/transfers").await?,
    };
    if cli.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                match v.direction {
                    Direction::In => "in".into(),
                    Direction::Out => "out".into(),
                },
                short_id(&v.peer),
                v.peer_region.map(|r| r.label()).unwrap_or_default(),
                format!(
                    "{}{}",
                    v.dataset,
                    v.version.map(|n| format!(" v{n}")).unwrap_or_default()
                ),
                format!("{:?}", v.status).to_lowercase(),
                format!(
                    "{} / {}",
                    human_bytes(v.bytes_done),
                    human_bytes(v.bytes_total)
                ),
                v.refetched_chunks.to_string(),
                v.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "ID",
                "DIR",
                "PEER",
                "REGION",
                "DATASET",
                "STATUS",
                "BYTES",
                "REFETCHED",
                "NOTE"
            ],
            &rows
        )
    );
    Ok(())
}

pub(super) async fn request(
    cli: &Cli,
    target: &str,
    purpose: &str,
    basis: &str,
    fields: &[String],
) -> Result<(), CliError> {
    let body = RequestBody {
        target: target.to_string(),
        purpose: purpose.to_string(),
        basis: basis.to_string(),
        fields: fields.to_vec(),
    };
    let r: RequestRecord = client(cli)?.post("/api/v1/requests", &body).await?;
    if cli.json {
        return print_json(&r);
    }
    println!(
        "request {} for {} sent to {}: {:?}{}",
        r.id,
        r.request.document.dataset,
        short_id(&r.peer),
        r.status,
        r.grant
            .as_ref()
            .map(|g| format!(" (grant {})", g.document.id))
            .unwrap_or_default()
    );
    Ok(())
}

fn request_rows(list: &[RequestRecord]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            let d = &r.request.document;
            vec![
                r.id.clone(),
                match r.direction {
                    Direction::In => "in".into(),
                    Direction::Out => "out".into(),
                },
                short_id(&r.peer),
                d.requester_region.label(),
                d.dataset.clone(),
                format!("{:?}", r.status).to_lowercase(),
                if d.fields.is_empty() {
                    "(all)".into()
                } else {
                    d.fields.join(",")
                },
                d.purpose.clone(),
            ]
        })
        .collect()
}

pub(super) async fn requests(cli: &Cli, cmd: &RequestsCommand) -> Result<(), CliError> {
    let c = client(cli)?;
    match cmd {
        RequestsCommand::List {
            inbound,
            outbound,
            pending,
        } => {
            let mut query = Vec::new();
            if *inbound {
                query.push("direction=in");
            }
            if *outbound {
                query.push("direction=out");
            }
            if *pending {
                query.push("status=pending");
            }
            let path = if query.is_empty() {
                "/api/v1/requests".to_string()
            } else {
                format!("/api/v1/requests?{}", query.join("&"))
            };
            let list: Vec<RequestRecord> = c.get(&path).await?;
            if cli.json {
                return print_json(&list);
            }
            print!(
                "{}",
                table::render(
                    &[
                        "ID",
                        "DIR",
                        "PEER",
                        "REQUESTER REGION",
                        "DATASET",
                        "STATUS",
                        "FIELDS",
                        "PURPOSE"
                    ],
                    &request_rows(&list)
                )
            );
            Ok(())
        }
        RequestsCommand::Show { id } => {
            let r: RequestRecord = c
                .get(&format!("/api/v1/requests/{}", urlencode(id)))
                .await?;
            if cli.json {
                return print_json(&r);
            }
            let q = &r.request.document;
            let mut rows = vec![
                ("request", r.id.clone()),
                ("direction", lower(&r.direction)),
                ("status", lower(&r.status)),
                ("peer", r.peer.clone()),
                (
                    "requester",
                    format!("{} ({})", q.requester_region.label(), q.requester),
                ),
                ("dataset", q.dataset.clone()),
                ("purpose", q.purpose.clone()),
                ("legal basis", q.legal_basis.clone()),
                ("fields", or_all(&q.fields)),
                ("requested", q.requested_at.clone()),
                ("recorded", r.recorded_at.clone()),
            ];
            if let Some(d) = &r.decided_at {
                rows.push(("decided", d.clone()));
            }
            if let Some(g) = &r.grant {
                rows.push(("grant", g.document.id.clone()));
                rows.push(("expires", g.document.expires_at.clone()));
            }
            if let Some(d) = &r.denial {
                rows.push(("denied because", d.document.reason.clone()));
            }
            print!("{}", table::fields(&rows));
            Ok(())
        }
        RequestsCommand::Approve {
            id,
            fields,
            mask,
            expires,
            modes,
            calls_per_day,
            calls_per_minute,
        } => {
            let modes = modes
                .iter()
                .map(|m| {
                    serde_json::from_value::<AccessMode>(serde_json::Value::String(m.clone()))
                        .map_err(|_| {
                            CliError::Usage(format!(
                                "--modes {m:?}: expected fetch, verify or lookup"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let query_limits =
                (calls_per_day.is_some() || calls_per_minute.is_some()).then_some(QueryLimits {
                    calls_per_day: *calls_per_day,
                    calls_per_minute: *calls_per_minute,
                });
            let masks = mask
                .iter()
                .map(|m| {
                    m.parse::<FieldMask>()
                        .map_err(|e| CliError::Usage(format!("--mask {m:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let body = ApproveBody {
                fields: (!fields.is_empty()).then(|| fields.clone()),
                masks,
                expires: expires.clone(),
                modes,
                query_limits,
            };
            let g: Signed<Grant> = c
                .post(
                    &format!("/api/v1/requests/{}/approve", urlencode(id)),
                    &body,
                )
                .await?;
            if cli.json {
                return print_json(&g);
            }
            let d = &g.document;
            println!(
                "granted {} to {}: grant {}, fields {}, masks [{}], until {}",
                d.dataset,
                short_id(&d.grantee),
                d.id,
                d.fields.join(","),
                d.masks
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                d.expires_at
            );
            Ok(())
        }
        RequestsCommand::Deny { id, reason } => {
            let body = ReasonBody {
                reason: reason.clone(),
            };
            let d: Signed<Denial> = c
                .post(&format!("/api/v1/requests/{}/deny", urlencode(id)), &body)
                .await?;
            if cli.json {
                return print_json(&d);
            }
            println!("denied request {} ({})", id, d.document.reason);
            Ok(())
        }
    }
}

pub(super) async fn grants(cli: &Cli, cmd: &GrantsCommand) -> Result<(), CliError> {
    let c = client(cli)?;
    match cmd {
        GrantsCommand::List => {
            let list: Vec<GrantView> = c.get("/api/v1/grants").await?;
            if cli.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|g| {
                    let d = &g.record.grant.document;
                    vec![
                        g.record.id.clone(),
                        match g.record.direction {
                            Direction::In => "to us".into(),
                            Direction::Out => "issued".into(),
                        },
                        short_id(&d.provider),
                        short_id(&d.grantee),
                        d.dataset.clone(),
                        format!("{:?}", g.state).to_lowercase(),
                        d.fields.join(","),
                        d.masks
                            .iter()
                            .map(|m| m.to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                        d.expires_at.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "ID", "DIR", "PROVIDER", "GRANTEE", "DATASET", "STATE", "FIELDS", "MASKS",
                        "EXPIRES"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        GrantsCommand::Show { id } => {
            let g: GrantView = c.get(&format!("/api/v1/grants/{}", urlencode(id))).await?;
            if cli.json {
                return print_json(&g);
            }
            let d = &g.record.grant.document;
            let masks: Vec<String> = d.masks.iter().map(|m| m.to_string()).collect();
            let mut rows = vec![
                ("grant", g.record.id.clone()),
                ("state", lower(&g.state)),
                ("direction", lower(&g.record.direction)),
                ("dataset", d.dataset.clone()),
                ("provider", d.provider.clone()),
                ("grantee", d.grantee.clone()),
                ("purpose", d.purpose.clone()),
                ("legal basis", d.legal_basis.clone()),
                ("fields", or_all(&d.fields)),
                (
                    "masks",
                    if masks.is_empty() {
                        "none".into()
                    } else {
                        masks.join(", ")
                    },
                ),
                ("valid", format!("{} .. {}", d.not_before, d.expires_at)),
                ("issued", format!("{} by {}", d.issued_at, d.decided_by)),
                ("request", d.request_id.clone()),
            ];
            if let Some(r) = &g.record.revocation {
                rows.push((
                    "revoked",
                    format!("{} ({})", r.document.revoked_at, r.document.reason),
                ));
            }
            print!("{}", table::fields(&rows));
            Ok(())
        }
        GrantsCommand::Revoke { id, reason } => {
            let body = ReasonBody {
                reason: reason.clone(),
            };
            let g: GrantView = c
                .post(&format!("/api/v1/grants/{}/revoke", urlencode(id)), &body)
                .await?;
            if cli.json {
                return print_json(&g);
            }
            println!("revoked grant {id}");
            Ok(())
        }
    }
}

pub(super) async fn subscribe(cli: &Cli, target: &str) -> Result<(), CliError> {
    let body = TargetBody {
        target: target.to_string(),
    };
    let s: Subscription = client(cli)?.post("/api/v1/subscriptions", &body).await?;
    if cli.json {
        return print_json(&s);
    }
    println!(
        "subscribed to {} of {} ({}); each new version is fetched as it is published",
        s.dataset,
        short_id(&s.publisher),
        s.region.label()
    );
    Ok(())
}

pub(super) async fn unsubscribe(cli: &Cli, target: &str) -> Result<(), CliError> {
    let path = format!("/api/v1/subscriptions?target={}", urlencode(target));
    let r: Removed = client(cli)?.delete(&path).await?;
    if cli.json {
        return print_json(&r);
    }
    println!("unsubscribed from {target}");
    Ok(())
}

pub(super) async fn subscriptions(cli: &Cli) -> Result<(), CliError> {
    let list: Vec<Subscription> = client(cli)?.get("/api/v1/subscriptions").await?;
    if cli.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.region.label(),
                short_id(&s.publisher),
                s.dataset.clone(),
                if s.fetched_version == 0 {
                    "-".into()
                } else {
                    format!("v{}", s.fetched_version)
                },
                s.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["REGION", "PUBLISHER", "DATASET", "FETCHED", "NOTE"],
            &rows
        )
    );
    Ok(())
}

pub(super) async fn receipts(cli: &Cli) -> Result<(), CliError> {
    let list: Vec<Signed<Receipt>> = client(cli)?.get("/api/v1/receipts").await?;
    if cli.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let d = &r.document;
            vec![
                short_id(&d.receiver),
                format!("{} v{}", d.dataset, d.version),
                d.data_digest.chars().take(16).collect(),
                d.grant_id.clone().unwrap_or_else(|| "-".into()),
                d.received_at.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["RECEIVER", "DATASET", "DIGEST", "GRANT", "RECEIVED"],
            &rows
        )
    );
    Ok(())
}

/// A serde enum's wire name (`in`, `pending`, `not-yet-valid`) for tables.
fn lower<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn or_all(fields: &[String]) -> String {
    if fields.is_empty() {
        "all".into()
    } else {
        fields.join(", ")
    }
}

/// The arguments of `yrd query`.
pub(super) struct QueryArgs<'a> {
    pub target: &'a str,
    pub verify: &'a [String],
    pub key: &'a [String],
    pub fields: &'a [String],
    pub grant: &'a Option<String>,
    pub purpose: &'a Option<String>,
    pub basis: &'a Option<String>,
}

/// `FIELD=VALUE` as a query gives it.
pub(super) fn field_value(text: &str) -> Result<FieldValue, CliError> {
    let (field, value) = text
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("{text:?}: expected FIELD=VALUE")))?;
    Ok(FieldValue {
        field: field.trim().to_string(),
        value: value.to_string(),
    })
}

/// `yrd query`: one verify or lookup; prints the answer (and the records of a lookup).
pub(super) async fn query(cli: &Cli, a: QueryArgs<'_>) -> Result<(), CliError> {
    let c = client(cli)?;
    let (mode, pairs) = if a.verify.is_empty() {
        (QueryMode::Lookup, a.key)
    } else {
        (QueryMode::Verify, a.verify)
    };
    if mode == QueryMode::Verify && !a.fields.is_empty() {
        return Err(CliError::Usage(
            "--fields is for lookups: a verify returns no field values".into(),
        ));
    }
    let input = QueryInput {
        target: a.target.to_string(),
        mode,
        key: pairs
            .iter()
            .map(|p| field_value(p))
            .collect::<Result<_, _>>()?,
        fields: a.fields.to_vec(),
        purpose: a.purpose.clone(),
        legal_basis: a.basis.clone(),
        grant: a.grant.clone(),
    };
    let out: QueryOutcome = c.post("/api/v1/query", &input).await?;
    if cli.json {
        return print_json(&out);
    }
    let d = &out.answer.document;
    let mut rows = vec![
        ("dataset", format!("{} v{}", d.dataset, d.version)),
        ("provider", short_id(&d.provider)),
        ("grant", d.grant.clone().unwrap_or_else(|| "-".into())),
        ("found", d.found.to_string()),
    ];
    if let Some(m) = d.matched {
        rows.push(("matched", if m { "yes" } else { "no" }.to_string()));
        rows.push(("matched fields", d.matched_fields.join(", ")));
    }
    if mode == QueryMode::Lookup {
        rows.push(("records", d.record_count.to_string()));
        if d.truncated {
            rows.push(("truncated", "yes (more records matched)".into()));
        }
    }
    rows.push(("answer digest", out.answer.digest_hex().unwrap_or_default()));
    print!("{}", table::fields(&rows));
    for r in &out.records {
        println!("{r}");
    }
    Ok(())
}

/// `yrd clients …`.
pub(super) async fn clients(cli: &Cli, cmd: &ClientsCommand) -> Result<(), CliError> {
    let c = client(cli)?;
    match cmd {
        ClientsCommand::Add { name, allow } => {
            let made: NewClient = c
                .post(
                    "/api/v1/clients",
                    &ClientBody {
                        name: name.clone(),
                        allow: allow.clone(),
                    },
                )
                .await?;
            if cli.json {
                return print_json(&made);
            }
            println!(
                "client {} may {}; its token (shown once, keep it):\n{}",
                made.client.name,
                made.client.allowed(),
                made.token
            );
        }
        ClientsCommand::List => {
            let list: Vec<ClientView> = c.get("/api/v1/clients").await?;
            if cli.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|v| vec![v.name.clone(), v.allowed(), v.created_at.clone()])
                .collect();
            print!("{}", table::render(&["NAME", "ALLOWED", "CREATED"], &rows));
        }
        ClientsCommand::Remove { name } => {
            let removed: ClientView = c
                .delete(&format!("/api/v1/clients/{}", urlencode(name)))
                .await?;
            if cli.json {
                return print_json(&removed);
            }
            println!("client {} removed; its token no longer works", removed.name);
        }
    }
    Ok(())
}
