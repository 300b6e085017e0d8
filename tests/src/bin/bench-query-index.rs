//! Key index of query services (issue 15; run in release): on an N-record `enterprise-licence`
//! JSON Lines file (default 1,000,000), the time to build the key indexes of `uscc` and the
//! legal representative's ID number (the very function publish runs), their size, and the
//! latency of keyed lookups through them (index read + record read + parse), each of which must
//! find its record. No network, no signing: the index's own cost.
//!
//! `bench-query-index [--records N] [--lookups N] [--json-out FILE]`

use std::io::{BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use yrd_node::identity::QuerySecret;
use yrd_node::model::exchange::DataFormat;
use yrd_node::model::standard;
use yrd_node::node::query::index::{build, index_check, read_records};
use yrd_node::samples;
use yrd_node::store::query_index::{KeyIndex, index_path};

fn num(name: &str, default: usize) -> Result<usize> {
    match yrd_tests::flag_value(name) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{name} {v}: not a number")),
        None => Ok(default),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let records = num("--records", 1_000_000)?.max(1);
    let lookups = num("--lookups", 10_000)?.max(1);
    let id = "enterprise-licence";
    let schema: Value = serde_json::from_str(samples::schema_json(id).context("standard")?)?;
    let compiled = standard::compile(&schema)?;
    let dir = tempfile::tempdir()?;
    let blob = dir.path().join("licences.jsonl");
    let every = (records / lookups).max(1);
    let mut keys = Vec::new();
    {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&blob)?);
        for (i, r) in samples::records(id, 42)?.take(records).enumerate() {
            if i % every == 0 && keys.len() < lookups {
                keys.push(r["uscc"].as_str().unwrap_or_default().to_string());
            }
            serde_json::to_writer(&mut out, &r)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    let bytes = std::fs::metadata(&blob)?.len();
    let secret = QuerySecret::from_seed(&[7; 32]);
    let fields = vec![
        "uscc".to_string(),
        "legal_representative_id_number".to_string(),
    ];
    let index_dir = dir.path().join("index");
    let t = Instant::now();
    let indexed = build(
        &blob,
        "bench",
        DataFormat::Jsonl,
        &fields,
        &compiled,
        &secret,
        &index_dir,
    )?;
    let build_s = t.elapsed().as_secs_f64();
    if indexed != records as u64 {
        bail!("indexed {indexed} of {records} records");
    }
    let path = index_path(&index_dir, "bench", "uscc");
    let index_bytes = std::fs::metadata(&path)?.len();
    let index = KeyIndex::open(&path, index_check(&secret))?.context("index")?;

    let mut lat = Vec::with_capacity(keys.len());
    for key in &keys {
        let t = Instant::now();
        let positions = index.lookup(secret.index_hash(key))?;
        let found = read_records(&blob, DataFormat::Jsonl, &positions, &compiled)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if !found
            .iter()
            .any(|r| r["uscc"] == Value::String(key.clone()))
        {
            bail!("key {key} not found");
        }
    }
    lat.sort_by(f64::total_cmp);
    let report = json!({
        "records": records,
        "file_mib": bytes as f64 / 1048576.0,
        "build_two_keys_s": build_s,
        "build_records_per_s": records as f64 / build_s,
        "index_mib_per_key": index_bytes as f64 / 1048576.0,
        "lookups": lat.len(),
        "lookup_p50_us": percentile(&lat, 0.5),
        "lookup_p99_us": percentile(&lat, 0.99),
        "lookup_max_us": percentile(&lat, 1.0),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(out) = yrd_tests::flag_value("--json-out") {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
