//! Schema validation rate (run by `scripts/bench.sh`, in release): records per second on one
//! core for the 15-field `enterprise-licence` standard, through the very function `yrd publish`
//! uses (`check_jsonl`: read a line, parse it borrowed, validate it), and side by side in the
//! same run the path it replaced (parse each line into an owned `serde_json::Value`, validate
//! that: issue 16) and each path's two halves apart (parse only, validate already-parsed
//! records). Every record is valid, so every record is checked in full; a run that finds a
//! problem fails the benchmark.
//!
//! Each figure is given twice: by wall-clock time, and by the CPU time the measuring thread got
//! (`/proc/thread-self/schedstat`), which is the rate per core even when other work shares the
//! machine (then the wall-clock rate is lower).
//!
//! `bench-validate [--records N] [--runs R] [--json-out FILE]`

use std::io::{BufRead, BufReader, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use yrd_node::model::borrowed_json;
use yrd_node::model::standard::{self, CompiledStandard};
use yrd_node::node::datasets::{MAX_LINE_BYTES, check_jsonl};
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

/// The publish path before issue 16, as `check_jsonl` ran it: read a line, parse it into an
/// owned `Value`, validate that. Returns the records found valid.
fn owned_publish_path(jsonl: &[u8], compiled: &CompiledStandard) -> Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, jsonl);
    let mut line = Vec::new();
    let mut valid = 0u64;
    loop {
        line.clear();
        let mut limited = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1);
        if limited.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = std::str::from_utf8(&line)?.trim();
        if text.is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(text)?;
        if compiled.validate(&record).is_ok() {
            valid += 1;
        }
    }
    Ok(valid)
}

/// CPU time this thread has run, in seconds (0 where the kernel does not say).
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// Times `f` (which returns how many records it handled): records per second of wall-clock
/// time and of this thread's CPU time.
fn rate(records: usize, f: impl FnOnce() -> Result<u64>) -> Result<(f64, f64)> {
    let cpu = thread_cpu_s();
    let t = Instant::now();
    let n = f()?;
    let wall = n as f64 / t.elapsed().as_secs_f64();
    let cpu = n as f64 / (thread_cpu_s() - cpu).max(1e-9);
    if n != records as u64 {
        bail!("{n} of {records} records handled or valid");
    }
    Ok((wall, cpu))
}

fn lines(jsonl: &[u8]) -> impl Iterator<Item = &str> {
    jsonl
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).unwrap_or(""))
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
    let texts: Vec<&str> = lines(&jsonl).collect();
    let raws: Vec<borrowed_json::Raw<'_>> = texts
        .iter()
        .map(|t| borrowed_json::parse(t).context("a generated record does not parse borrowed"))
        .collect::<Result<_>>()?;

    // Warm-up (page in the buffer, settle the allocator), then the timed runs, every figure
    // once per run in turn so that both paths see the same load.
    check_jsonl(&jsonl[..], &compiled).map_err(|p| anyhow::anyhow!("refused: {p:?}"))?;
    owned_publish_path(&jsonl, &compiled)?;
    let mut figures: [Vec<(f64, f64)>; 6] = Default::default();
    for _ in 0..runs {
        figures[0].push(rate(records, || {
            check_jsonl(&jsonl[..], &compiled)
                .map(|c| c.records)
                .map_err(|p| anyhow::anyhow!("a generated record was refused: {p:?}"))
        })?);
        figures[1].push(rate(records, || owned_publish_path(&jsonl, &compiled))?);
        figures[2].push(rate(records, || {
            let mut n = 0u64;
            for t in &texts {
                n += u64::from(borrowed_json::parse(t).is_some());
            }
            Ok(n)
        })?);
        figures[3].push(rate(records, || {
            let mut n = 0u64;
            for t in &texts {
                let v: Value = serde_json::from_str(t)?;
                n += u64::from(v.is_object());
            }
            Ok(n)
        })?);
        figures[4].push(rate(records, || {
            Ok(raws.iter().filter(|r| compiled.is_valid_raw(r)).count() as u64)
        })?);
        figures[5].push(rate(records, || {
            Ok(values.iter().filter(|v| compiled.is_valid(v)).count() as u64)
        })?);
    }
    let [full, owned, parse_b, parse_o, valid_b, valid_o] = figures.map(|runs| {
        let (wall, cpu): (Vec<f64>, Vec<f64>) = runs.into_iter().unzip();
        (median(wall), median(cpu))
    });
    let mb = |per_s: f64| per_s * bytes as f64 / records as f64 / 1e6;
    let show = |(wall, cpu): (f64, f64)| {
        format!(
            "{cpu:.0} records/s ({:.0} MB/s) per CPU-second; {wall:.0} records/s ({:.0} MB/s) wall",
            mb(cpu),
            mb(wall)
        )
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "schema validation, {fields}-field {id} records, one thread, median of {runs} runs over \
         {records} records ({:.1} MiB, {:.0} bytes a record), load average {}:",
        bytes as f64 / 1_048_576.0,
        bytes as f64 / records as f64,
        load.join(" ")
    );
    println!(
        "  publish path (read + borrowed parse + validate): {}",
        show(full)
    );
    println!(
        "  before issue 16 (read + owned Value + validate): {}",
        show(owned)
    );
    println!("  parse only, borrowed: {}", show(parse_b));
    println!("  parse only, owned Value: {}", show(parse_o));
    println!("  validate only (parsed), borrowed: {}", show(valid_b));
    println!("  validate only (parsed), Value: {}", show(valid_o));
    if let Some(path) = arg("--json-out") {
        let mut f = std::fs::File::create(&path).with_context(|| format!("create {path}"))?;
        let figures = json!({
            "standard": id, "fields": fields, "records": records, "runs": runs, "bytes": bytes,
            "load_average": load.join(" "),
            "publish_path_records_per_s": full.0.round(),
            "publish_path_mb_per_s": mb(full.0).round(),
            "publish_path_records_per_cpu_s": full.1.round(),
            "publish_path_mb_per_cpu_s": mb(full.1).round(),
            "owned_path_records_per_s": owned.0.round(),
            "owned_path_mb_per_s": mb(owned.0).round(),
            "owned_path_records_per_cpu_s": owned.1.round(),
            "owned_path_mb_per_cpu_s": mb(owned.1).round(),
            "parse_records_per_s": parse_b.0.round(),
            "parse_owned_records_per_s": parse_o.0.round(),
            "validate_records_per_s": valid_b.0.round(),
            "validate_owned_records_per_s": valid_o.0.round(),
        });
        writeln!(f, "{}", serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}
