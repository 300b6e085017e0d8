//! Schema validation rate (run by `scripts/bench.sh`, in release): records per second on one
//! core for the 15-field `enterprise-licence` standard, through the very function `yrd publish`
//! uses (`check_jsonl`: read a line, parse it, validate it), and its two halves apart (parse
//! only, validate already-parsed records). Every record is valid, so every record is checked
//! in full; a run that finds a problem fails the benchmark.
//!
//! `bench-validate [--records N] [--runs R] [--json-out FILE]`

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use yrd_node::model::standard;
use yrd_node::node::datasets::check_jsonl;
use yrd_node::samples;

fn arg(name: &str) -> Option<String> {
    yrd_tests::flag_value(name)
}

fn num(name: &str, default: usize) -> Result<usize> {
    match arg(name) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{name} {v}: not a number")),
        None => Ok(default),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let records = num("--records", 200_000)?.max(1);
    let runs = num("--runs", 5)?.max(1);
    let id = "enterprise-licence";
    let schema: Value = serde_json::from_str(samples::schema_json(id).context("standard")?)?;
    let fields = schema
        .get("properties")
        .and_then(Value::as_object)
        .map_or(0, |p| p.len());
    let compiled = standard::compile(&schema)?;

    let values = samples::generate(id, records, 42)?;
    let mut jsonl = Vec::new();
    for v in &values {
        serde_json::to_writer(&mut jsonl, v)?;
        jsonl.push(b'\n');
    }
    let bytes = jsonl.len();

    // Warm-up (page in the buffer, settle the allocator), then the timed runs.
    check_jsonl(&jsonl[..], &compiled).map_err(|p| anyhow::anyhow!("refused: {p:?}"))?;
    let (mut full, mut parse, mut validate) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let checked = check_jsonl(&jsonl[..], &compiled)
            .map_err(|p| anyhow::anyhow!("a generated record was refused: {p:?}"))?;
        full.push(checked.records as f64 / t.elapsed().as_secs_f64());
        if checked.records != records as u64 {
            bail!("{} records checked, {records} expected", checked.records);
        }

        let t = Instant::now();
        let mut parsed = 0usize;
        for line in jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line)?;
            parsed += usize::from(v.is_object());
        }
        parse.push(parsed as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut valid = 0usize;
        for v in &values {
            valid += usize::from(compiled.is_valid(v));
        }
        validate.push(valid as f64 / t.elapsed().as_secs_f64());
        if valid != records {
            bail!("{valid} of {records} records valid");
        }
    }
    let (full, parse, validate) = (median(full), median(parse), median(validate));
    println!(
        "schema validation, {fields}-field {id} records, one thread, median of {runs} runs over {records} records ({:.1} MiB):",
        bytes as f64 / 1_048_576.0
    );
    println!(
        "  publish path (read + parse + validate): {full:.0} records/s ({:.0} MB/s)",
        full * bytes as f64 / records as f64 / 1e6
    );
    println!("  parse only: {parse:.0} records/s; validate only (parsed): {validate:.0} records/s");
    if let Some(path) = arg("--json-out") {
        let mut f = std::fs::File::create(&path).with_context(|| format!("create {path}"))?;
        let figures = json!({
            "standard": id, "fields": fields, "records": records, "runs": runs, "bytes": bytes,
            "publish_path_records_per_s": full.round(),
            "parse_records_per_s": parse.round(),
            "validate_records_per_s": validate.round(),
        });
        writeln!(f, "{}", serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}
