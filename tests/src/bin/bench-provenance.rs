//! Provenance log benchmarks (run by `scripts/bench.sh`, in release), and the appender the
//! crash test kills:
//! - `bench-provenance all [--records 1000000] [--appends 200000] [--append-runs 3]
//!   [--concurrency 1024] [--cache-mib 64] [--json-out FILE]`:
//!   durable appends per second (group commit, every append acknowledged after its flush),
//!   inclusion proof generation and verification, consistency proofs, query by dataset, and
//!   full-log verification rate, on a real sled log in a temp dir;
//! - `bench-provenance burst --dir DIR`: appends until killed, printing `acked SEQ TAG` for
//!   every acknowledged record (the crash test SIGKILLs it and checks the log after).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use yrd_node::identity::NodeKey;
use yrd_node::model::merkle;
use yrd_node::model::provenance::{ProvenanceRecord, Query, RecordKind, SessionEnd};
use yrd_node::model::region::Region;
use yrd_node::store::provenance::{NewRecord, ProvenanceLog};

fn arg(name: &str) -> Option<String> {
    yrd_tests::flag_value(name)
}

fn num(name: &str, default: usize) -> usize {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A typical delivery record; `i` makes it unique and spreads it over 1,000 datasets.
pub fn sample(i: u64, region: Region) -> NewRecord {
    NewRecord {
        record: ProvenanceRecord {
            seq: 0,
            kind: if i.is_multiple_of(2) {
                RecordKind::DeliveryServed
            } else {
                RecordKind::ReceiptReceived
            },
            time: String::new(),
            actor: String::new(),
            actor_region: region,
            counterparty: Some(format!("peer-{}", i % 40)),
            counterparty_region: Some(region),
            dataset: Some(format!("dataset-{}", i % 1000)),
            version: Some(i / 1000 + 1),
            grant: Some(format!("{i:032x}")),
            fields: Some("fields uscc, name (hash), id_number (keep first 6 last 4)".into()),
            purpose: Some("跨省通办企业核验".into()),
            legal_basis: Some("《优化营商环境条例》第三十七条".into()),
            data_digest: Some(format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            cause: None,
            chunks_sent: i.is_multiple_of(2).then_some(3),
            chunk_count: i.is_multiple_of(2).then_some(3),
            bytes_sent: i.is_multiple_of(2).then_some(2_500_000),
            ended: i.is_multiple_of(2).then_some(SessionEnd::Closed),
            query_mode: None,
            key_hash: None,
            found: None,
            client: None,

            prev_about_dataset: None,
            documents: Vec::new(),
        },
        documents: Vec::new(),
    }
}

/// Opens the log as a node does: sled in high-throughput mode, its page cache bounded to
/// `--cache-mib` (default the node's `[store] cache_mib` default; sled's own would be 1 GiB).
fn open(dir: &std::path::Path) -> Result<(sled::Db, ProvenanceLog)> {
    let cache_mib = num("--cache-mib", yrd_node::store::DEFAULT_CACHE_MIB as usize) as u64;
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_mib.saturating_mul(1 << 20))
        .open()?;
    let key = NodeKey::from_seed([7; 32]);
    let log = ProvenanceLog::open(
        &db,
        key.signing_key().clone(),
        key.peer_id().to_string(),
        Region::from_code(310000)?,
    )?;
    Ok((db, log))
}

/// Appends `total` records from `concurrency` tasks; returns the wall time.
async fn append_many(log: &ProvenanceLog, total: u64, concurrency: u64, offset: u64) -> Duration {
    let region = Region::from_code(310000).unwrap_or_else(|_| std::process::abort());
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let log = log.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Err(e) = log.append(sample(offset + i, region)).await {
                    eprintln!("append failed: {e}");
                    break;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn all() -> Result<()> {
    let records = num("--records", 1_000_000) as u64;
    let appends = num("--appends", 200_000) as u64;
    let concurrency = num("--concurrency", 1024) as u64;
    let tmp = tempfile::tempdir()?;
    let (_db, log) = open(tmp.path())?;

    // 1. Durable appends per second, acknowledged after their flush (group commit); the median
    // of `--append-runs` runs, each on the growing log.
    let runs = num("--append-runs", 3).max(1) as u64;
    let mut rates = Vec::new();
    for r in 0..runs {
        let wall = append_many(&log, appends, concurrency, r * appends).await;
        rates.push(appends as f64 / wall.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let rate = rates[rates.len() / 2];
    println!(
        "durable appends: {appends} records from {concurrency} concurrent appenders, median of {runs} runs = {rate:.0} appends/s (runs: {})",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let single = append_many(&log, 2_000, 1, runs * appends).await;
    let single_rate = 2_000.0 / single.as_secs_f64();
    println!(
        "one appender (each append waits for its own flush): {single_rate:.0} appends/s, {:.2} ms per append",
        single.as_secs_f64() * 1000.0 / 2_000.0
    );
    // Fill to `records` for the proof, query and verification figures.
    let have = log.size();
    if records > have {
        let fill = append_many(&log, records - have, concurrency, have).await;
        println!(
            "filled to {records} records in {:.1} s ({:.0} appends/s)",
            fill.as_secs_f64(),
            (records - have) as f64 / fill.as_secs_f64()
        );
    }
    let size = log.size();
    let root = log.root(size)?;

    // 2. Inclusion proofs: generation and verification, random leaves, median of 1,000.
    let mut gen_t = Vec::new();
    let mut ver_t = Vec::new();
    let mut x: u64 = 0x1234_5678;
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let seq = x % size;
        let t = Instant::now();
        let proof = log.inclusion_proof(seq, size)?;
        gen_t.push(t.elapsed());
        let record = log.record(seq)?.context("record")?;
        let leaf = record.leaf_hash()?;
        let t = Instant::now();
        merkle::verify_inclusion(&leaf, seq, size, &proof, &root)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ver_t.push(t.elapsed());
    }
    let (gen_us, ver_us) = (us(median(gen_t)), us(median(ver_t)));
    println!(
        "inclusion proof in a {size}-record log: generate p50 {gen_us:.1} µs, verify p50 {ver_us:.1} µs"
    );
    let mut cons_t = Vec::new();
    for k in 1..=200u64 {
        let old = size * k / 201;
        let t = Instant::now();
        let p = log.consistency_proof(old, size)?;
        cons_t.push(t.elapsed());
        let old_root = log.root(old)?;
        merkle::verify_consistency(old, size, &old_root, &root, &p)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let cons_us = us(median(cons_t));
    println!("consistency proof to size {size}: generate p50 {cons_us:.1} µs");

    // 3. Query by dataset: each dataset has size/1000 records.
    let mut q_t = Vec::new();
    let mut hits = 0;
    for d in 0..200 {
        let t = Instant::now();
        let found = log.query(&Query {
            dataset: Some(format!("dataset-{}", d * 5)),
            limit: Some(100_000),
            ..Query::default()
        })?;
        q_t.push(t.elapsed());
        hits = found.len();
    }
    let query_ms = median(q_t).as_secs_f64() * 1000.0;
    println!("query by dataset ({hits} records each) in a {size}-record log: p50 {query_ms:.2} ms");

    // 4. Full-log verification: every record re-canonicalised and re-hashed, every node checked.
    let t = Instant::now();
    let (checked, _) = log.verify_all()?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "full-log verification: {checked} records in {secs:.1} s = {:.0} records/s",
        checked as f64 / secs
    );
    log.close();
    if let Some(path) = arg("--json-out") {
        let figures = serde_json::json!({
            "appends_per_s": rate.round(), "append_runs": rates, "appenders": concurrency,
            "single_appender_per_s": single_rate.round(), "log_size": size,
            "inclusion_generate_us": gen_us, "inclusion_verify_us": ver_us,
            "consistency_generate_us": cons_us, "query_by_dataset_ms": query_ms,
            "query_hits": hits, "verify_records_per_s": (checked as f64 / secs).round(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("write {path}"))?;
    }
    Ok(())
}

async fn burst() -> Result<()> {
    let dir = arg("--dir").context("--dir DIR")?;
    let (_db, log) = open(std::path::Path::new(&dir))?;
    let start = log.size();
    let region = Region::from_code(310000)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, u64)>(65_536);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(start));
    for _ in 0..256 {
        let log = log.clone();
        let next = next.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match log.append(sample(i, region)).await {
                    Ok(seq) => {
                        if tx.send((seq, i)).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some((seq, tag)) = rx.recv().await {
        writeln!(out, "acked {seq} {tag}")?;
        out.flush()?;
    }
    bail!("appenders stopped")
}

#[tokio::main]
async fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("all") => all().await,
        Some("burst") => burst().await,
        _ => bail!("usage: bench-provenance all|burst [options]"),
    }
}
