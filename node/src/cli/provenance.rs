//! The provenance verbs of the CLI: `provenance list|show|deliveries|alarms|head|check|export`
//! (through the node) and `verify` (offline, no node).

use std::path::Path;

use super::client::urlencode;
use super::output::{print_json, short_id, with_progress};
use super::{Cli, CliError, ProvenanceCommand, client, table};
use crate::api::provenance::ResolveBody;
use crate::api::provenance::{CheckView, HeadView};
use crate::api::query::QueryCallsBody;
use crate::model::canonical;
use crate::model::provenance::{Alarm, EvidenceBundle, ProvenanceRecord, verify_bundle_value};
use crate::node::provenance::{BundleEntryView, Delivery, ExportQuery};

/// Largest bundle `yrd verify` reads.
const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// The columns every record table starts with: SEQ, WHEN, KIND, PEER, REGION.
fn record_head(r: &ProvenanceRecord) -> Vec<String> {
    vec![
        r.seq.to_string(),
        r.time.clone(),
        r.kind.name(),
        r.counterparty.as_deref().map(short_id).unwrap_or_default(),
        r.counterparty_region.map(|g| g.label()).unwrap_or_default(),
    ]
}

fn record_rows(list: &[ProvenanceRecord]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            let mut row = record_head(r);
            row.extend([
                match (&r.dataset, r.version) {
                    (Some(d), Some(v)) => format!("{d} v{v}"),
                    (Some(d), None) => d.clone(),
                    _ => String::new(),
                },
                r.grant
                    .as_deref()
                    .map(|g| g.chars().take(12).collect())
                    .unwrap_or_default(),
                r.cause.clone().or(r.fields.clone()).unwrap_or_default(),
            ]);
            row
        })
        .collect()
}

pub(super) async fn provenance(cli: &Cli, cmd: &ProvenanceCommand) -> Result<(), CliError> {
    let c = client(cli)?;
    match cmd {
        ProvenanceCommand::List {
            dataset,
            peer,
            kind,
            since,
            until,
            limit,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("dataset", dataset),
                ("peer", peer),
                ("kind", kind),
                ("since", since),
                ("until", until),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(v)));
                }
            }
            q.push(format!("limit={limit}"));
            let list: Vec<ProvenanceRecord> = c
                .get(&format!("/api/v1/provenance?{}", q.join("&")))
                .await?;
            if cli.json {
                return print_json(&list);
            }
            print!(
                "{}",
                table::render(
                    &[
                        "SEQ", "TIME", "KIND", "PEER", "REGION", "DATASET", "GRANT", "DETAIL"
                    ],
                    &record_rows(&list)
                )
            );
            Ok(())
        }
        ProvenanceCommand::Show { seq } => {
            let v: BundleEntryView = c.get(&format!("/api/v1/provenance/{seq}")).await?;
            if cli.json {
                return print_json(&v);
            }
            let r = &v.record;
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            let mut rows = vec![
                ("record", r.seq.to_string()),
                ("time", r.time.clone()),
                ("kind", r.kind.name()),
                ("actor", format!("{} ({})", r.actor, r.actor_region.label())),
                (
                    "counterparty",
                    match (&r.counterparty, r.counterparty_region) {
                        (Some(p), Some(reg)) => format!("{p} ({})", reg.label()),
                        (p, _) => opt(p),
                    },
                ),
                ("dataset", opt(&r.dataset)),
                (
                    "version",
                    r.version.map(|v| v.to_string()).unwrap_or("-".into()),
                ),
                ("grant", opt(&r.grant)),
                ("fields", opt(&r.fields)),
                ("purpose", opt(&r.purpose)),
                ("legal basis", opt(&r.legal_basis)),
                ("data digest", opt(&r.data_digest)),
                ("cause", opt(&r.cause)),
            ];
            let h = &v.head.document;
            rows.push((
                "included in",
                format!(
                    "tree of {} records, root {}…, proof of {} hashes, head signed {}",
                    h.size,
                    h.root.get(..16).unwrap_or(&h.root),
                    v.proof.len(),
                    h.time
                ),
            ));
            let docs: Vec<String> = v.documents.iter().map(|d| d.doc_type.clone()).collect();
            rows.push((
                "documents",
                if docs.is_empty() {
                    "none".into()
                } else {
                    docs.join(", ")
                },
            ));
            print!("{}", table::fields(&rows));
            println!("(--json prints the record, its inclusion proof, the head and the documents)");
            Ok(())
        }
        ProvenanceCommand::Deliveries { dataset } => {
            let list: Vec<Delivery> = c
                .get(&format!(
                    "/api/v1/provenance/deliveries?dataset={}",
                    urlencode(dataset)
                ))
                .await?;
            if cli.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    vec![
                        d.time.clone(),
                        short_id(&d.receiver),
                        d.receiver_region.clone().unwrap_or_default(),
                        d.version.map(|v| format!("v{v}")).unwrap_or_default(),
                        sent_column(d),
                        d.fields.clone(),
                        d.purpose.clone().unwrap_or_else(|| "-".into()),
                        d.legal_basis.clone().unwrap_or_else(|| "-".into()),
                        d.receipt_at.clone().unwrap_or_else(|| "NO RECEIPT".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "WHEN", "TO", "REGION", "VERSION", "SENT", "FIELDS", "PURPOSE", "BASIS",
                        "RECEIPT"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        ProvenanceCommand::Queries {
            dataset,
            key,
            publisher,
        } => {
            let body = QueryCallsBody {
                dataset: dataset.clone(),
                key: super::exchange::field_value(key)?,
                publisher: publisher.clone(),
            };
            let list: Vec<ProvenanceRecord> = c.post("/api/v1/provenance/queries", &body).await?;
            if cli.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no calls about that key of {dataset}");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list.iter().map(query_call_row).collect();
            print!(
                "{}",
                table::render(
                    &[
                        "SEQ", "WHEN", "KIND", "PEER", "REGION", "MODE", "RESULT", "PURPOSE",
                        "BASIS", "CAUSE"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        ProvenanceCommand::Alarms => {
            let list: Vec<Alarm> = c.get("/api/v1/provenance/alarms").await?;
            if cli.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no witness alarms");
            }
            for a in &list {
                println!(
                    "{}  log {} forked: {} (held size {}, presented size {}){}",
                    a.time,
                    a.log,
                    a.cause,
                    a.held.document.size,
                    a.presented.document.size,
                    match &a.resolved {
                        Some(r) => format!(" — resolved {}: {}", r.time, r.note),
                        None => " — OPEN".into(),
                    }
                );
            }
            Ok(())
        }
        ProvenanceCommand::Resolve { log, note } => {
            let list: Vec<Alarm> = c
                .post(
                    "/api/v1/provenance/alarms/resolve",
                    &ResolveBody {
                        log: log.clone(),
                        note: note.clone(),
                    },
                )
                .await?;
            if cli.json {
                return print_json(&list);
            }
            let baseline = list
                .first()
                .and_then(|a| a.resolved.as_ref())
                .map(|r| r.baseline_size)
                .unwrap_or(0);
            println!(
                "resolved {} alarm(s) of {log}; its heads are now checked against size {baseline}",
                list.len()
            );
            Ok(())
        }
        ProvenanceCommand::Head => {
            let v: HeadView = c.get("/api/v1/provenance/head").await?;
            if cli.json {
                return print_json(&v);
            }
            match &v.head {
                Some(h) => println!(
                    "size {}  root {}  signed {}",
                    h.document.size, h.document.root, h.document.time
                ),
                None => println!("no tree head yet"),
            }
            for c in &v.cosignatures {
                println!(
                    "  witnessed by {} at size {} ({})",
                    short_id(&c.document.witness),
                    c.document.size,
                    c.document.time
                );
            }
            Ok(())
        }
        ProvenanceCommand::Check => {
            let v: CheckView = with_progress(
                cli,
                "recomputing every leaf and node of the log",
                c.post("/api/v1/provenance/check", &()),
            )
            .await?;
            if cli.json {
                return print_json(&v);
            }
            println!(
                "log verifies: {} records, root {} ({} ms)",
                v.size, v.root, v.ms
            );
            Ok(())
        }
        ProvenanceCommand::Export {
            dataset,
            seq,
            peer,
            out,
        } => {
            let (from_seq, to_seq) = match seq {
                None => (None, None),
                Some(range) => {
                    let (a, b) = range.split_once("..").ok_or_else(|| {
                        CliError::Usage(format!("--seq {range:?}: expected A..B"))
                    })?;
                    let parse = |s: &str| {
                        s.parse::<u64>()
                            .map_err(|_| CliError::Usage(format!("--seq {range:?}: expected A..B")))
                    };
                    (Some(parse(a)?), Some(parse(b)?))
                }
            };
            let q = ExportQuery {
                dataset: dataset.clone(),
                from_seq,
                to_seq,
                peer: peer.clone(),
            };
            let bundle: EvidenceBundle = with_progress(
                cli,
                "collecting records and proofs",
                c.post("/api/v1/provenance/export", &q),
            )
            .await?;
            let text = serde_json::to_string_pretty(&bundle)
                .map_err(|e| CliError::Output(e.to_string()))?;
            write_atomic(out, text.as_bytes())?;
            if !cli.json {
                println!(
                    "wrote {}: {} records, {} documents, {} witnesses, head size {}",
                    out.display(),
                    bundle.entries.len(),
                    bundle.documents.len(),
                    bundle.witnesses.len(),
                    bundle.head.document.size
                );
            }
            Ok(())
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let err = |e: std::io::Error| CliError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// `yrd verify FILE`: checks an evidence bundle offline and prints a plain account.
pub(super) fn verify(cli: &Cli, file: &Path, genesis: Option<&str>) -> Result<(), CliError> {
    let file_err = |message: String| CliError::File {
        path: file.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(file).map_err(|e| file_err(e.to_string()))?;
    if meta.len() > MAX_BUNDLE_BYTES {
        return Err(file_err(format!("larger than {MAX_BUNDLE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(file).map_err(|e| file_err(e.to_string()))?;
    let value = canonical::parse_strict(&text).map_err(|e| file_err(e.to_string()))?;
    let verified = verify_bundle_value(&value)
        .and_then(|v| v.check_genesis(genesis).map(|()| v))
        .map_err(|e| CliError::Invalid(format!("{}: DOES NOT VERIFY: {e}", file.display())))?;
    if cli.json {
        return print_json(&serde_json::json!({
            "verified": true,
            "log": verified.log.peer_id,
            "size": verified.head.size,
            "root": verified.head.root,
            "witnesses": verified.witnesses,
            "witnessed_sizes": verified.witnessed_sizes,
            "complete": verified.complete,
            "completeness": verified.completeness,
            "membership": verified.membership,
            "genesis": verified.genesis,
            "warnings": verified.warnings,
            "account": verified.account,
        }));
    }
    let cosigned = if verified.witnesses.is_empty() {
        "cosigned by no witness".to_string()
    } else {
        let sizes: Vec<String> = verified
            .witnessed_sizes
            .iter()
            .map(u64::to_string)
            .collect();
        format!(
            "cosigned by {} witness(es) at sizes {}",
            verified.witnesses.len(),
            sizes.join(", ")
        )
    };
    println!(
        "{}: verifies. Log of {} ({}), {} records at {} (root {}), {cosigned}.",
        file.display(),
        verified.log.organisation,
        verified.log.region.label(),
        verified.head.size,
        verified.head.time,
        verified.head.root,
    );
    println!("{}", verified.membership);
    for warning in &verified.warnings {
        println!("warning: {warning}");
    }
    println!("{}", verified.completeness);
    for line in &verified.account {
        println!("{line}");
    }
    Ok(())
}

/// "3/3 chunks", or "2/5 chunks, reset" for a session that did not end as the protocol says;
/// "-" for a record from before sessions were counted.
/// One row of `yrd provenance queries`: SEQ, WHEN, KIND, PEER, REGION, MODE, RESULT (found /
/// not found for an answered call, `-` for a refused one), PURPOSE, BASIS, CAUSE.
fn query_call_row(r: &ProvenanceRecord) -> Vec<String> {
    let mut row = record_head(r);
    row.extend([
        r.query_mode
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        match r.found {
            Some(true) => "found".into(),
            Some(false) => "not found".into(),
            None => "-".into(),
        },
        r.purpose.clone().unwrap_or_else(|| "-".into()),
        r.legal_basis.clone().unwrap_or_else(|| "-".into()),
        r.cause.clone().unwrap_or_default(),
    ]);
    row
}

fn sent_column(d: &Delivery) -> String {
    match (d.chunks_sent, d.chunk_count) {
        (Some(sent), Some(count)) => match d.ended {
            Some(end) if end != crate::model::provenance::SessionEnd::Closed => {
                format!("{sent}/{count} chunks, {}", end.name())
            }
            _ => format!("{sent}/{count} chunks"),
        },
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::provenance::RecordKind;

    #[test]
    fn the_call_report_says_found_or_not_found() {
        let region = "310000".parse().expect("a region");
        let mut r = ProvenanceRecord::new(RecordKind::QueryAnswered, "peer".into(), region);
        r.found = Some(false);
        assert_eq!(query_call_row(&r)[6], "not found");
        r.found = Some(true);
        assert_eq!(query_call_row(&r)[6], "found");
        r.kind = RecordKind::QueryRefused;
        r.found = None;
        assert_eq!(query_call_row(&r)[6], "-");
    }
}
