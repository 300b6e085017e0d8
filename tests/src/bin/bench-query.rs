//! End-to-end query calls (issue 15; run in release, driven by `scripts/bench_query.py`): the
//! load generator and its floor. Three subcommands:
//!
//! - `gen --records N --out FILE --keys-out FILE [--keys N]`: an N-record `enterprise-licence`
//!   JSON Lines file (the project's sample records) and, one a line, the `uscc` of N keys spread
//!   over it (the keys the calls look up).
//! - `serve-tls --cert-out FILE --port-out FILE [--answer-bytes N]`: the floor, a plain HTTPS
//!   server on loopback (rustls, TLS 1.3, a self-signed certificate made by rcgen, HTTP/1.1
//!   keep-alive, one thread per connection) answering every request with an N-byte JSON body.
//!   No work per call beyond TLS and HTTP.
//! - `load --url URL [--ca FILE] [--token T] --body JSON --keys FILE --concurrency C
//!   (--calls N | --secs S) [--json-out FILE]`: C callers, each on one keep-alive connection,
//!   POST `body` with `{KEY}` replaced by the next key (round robin over the file) and time
//!   each call to the end of its answer; every answer must be `200`. Prints and writes p50, p99,
//!   mean (ms) and calls/s. The same client for both ends: plain HTTP to a node's API, HTTPS (with
//!   `--ca`, the server's certificate, DER) to the floor.
//!
//! The HTTP/1.1 client and server are minimal on purpose (a request line, `Content-Length`
//! bodies only): they measure the transport, so the floor is as low as a real HTTPS round trip
//! on this machine goes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use yrd_node::samples;

fn flag(name: &str) -> Option<String> {
    yrd_tests::flag_value(name)
}

fn required(name: &str) -> Result<String> {
    flag(name).with_context(|| format!("{name} is required"))
}

fn num(name: &str, default: u64) -> Result<u64> {
    match flag(name) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{name} {v}: not a number")),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("gen") => gen_data(),
        Some("serve-tls") => serve_tls(),
        Some("load") => load(),
        _ => bail!("usage: bench-query gen|serve-tls|load … (see the source's doc comment)"),
    }
}

// ------------------------------------------------------------------------------------ gen

fn gen_data() -> Result<()> {
    let records = num("--records", 1_000_000)?.max(1);
    let keys = num("--keys", 10_000)?.clamp(1, records);
    let every = (records / keys).max(1);
    let id = "enterprise-licence";
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(required("--out")?).context("--out")?,
    );
    let mut key_out = std::io::BufWriter::new(
        std::fs::File::create(required("--keys-out")?).context("--keys-out")?,
    );
    let mut written = 0;
    for (i, r) in samples::records(id, 42)?.take(records as usize).enumerate() {
        if (i as u64).is_multiple_of(every) && written < keys {
            writeln!(key_out, "{}", r["uscc"].as_str().unwrap_or_default())?;
            written += 1;
        }
        serde_json::to_writer(&mut out, &r)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    key_out.flush()?;
    println!("{records} records, {written} keys");
    Ok(())
}

// ------------------------------------------------------------------------------ serve-tls

fn serve_tls() -> Result<()> {
    let answer_bytes = num("--answer-bytes", 1024)? as usize;
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    std::fs::write(required("--cert-out")?, cert.der().as_ref())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)?,
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // Written last: its presence says the server is ready.
    let port_out = required("--port-out")?;
    std::fs::write(format!("{port_out}.tmp"), port.to_string())?;
    std::fs::rename(format!("{port_out}.tmp"), &port_out)?;
    let body: Arc<str> = json!({ "answer": "x".repeat(answer_bytes.saturating_sub(13)) })
        .to_string()
        .into();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (config, body) = (config.clone(), body.clone());
        std::thread::spawn(move || {
            let _ = serve_connection(stream, config, &body);
        });
    }
    Ok(())
}

fn serve_connection(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    body: &str,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(config)?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, stream));
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut request_body = Vec::new();
    loop {
        if read_message(&mut tls, &mut request_body)?.is_none() {
            return Ok(());
        }
        let out = tls.get_mut();
        out.write_all(head.as_bytes())?;
        out.write_all(body.as_bytes())?;
        out.flush()?;
    }
}

// ----------------------------------------------------------------------------------- HTTP

/// Reads one HTTP/1.1 message (request or response) into `body`; returns its first line, or
/// `None` at a clean end of the connection before it.
fn read_message(r: &mut impl BufRead, body: &mut Vec<u8>) -> Result<Option<String>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut length = None;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("the connection ended in a message's headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a chunked message: this client reads Content-Length bodies only");
            }
        }
    }
    body.clear();
    body.resize(length.unwrap_or(0), 0);
    r.read_exact(body)?;
    Ok(Some(first.trim_end().to_string()))
}

// ----------------------------------------------------------------------------------- load

/// Where the calls go.
struct Target {
    host: String,
    port: u16,
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn target(url: &str, ca: Option<String>) -> Result<Target> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        let ca = ca.context("an https:// URL needs --ca (the server's certificate, DER)")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(std::fs::read(&ca).context("--ca")?))?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Some(Arc::new(config)), r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (None, r)
    } else {
        bail!("{url}: http:// or https:// only")
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority
        .rsplit_once(':')
        .context("the URL names no port")?;
    Ok(Target {
        host: host.to_string(),
        port: port.parse()?,
        path: format!("/{path}"),
        tls,
    })
}

/// One caller's connection.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn connect(t: &Target) -> Result<BufReader<Box<dyn Conn>>> {
    let stream = TcpStream::connect((t.host.as_str(), t.port))?;
    stream.set_nodelay(true)?;
    let conn: Box<dyn Conn> = match &t.tls {
        Some(config) => {
            let name = ServerName::try_from("localhost".to_string())?;
            let c = rustls::ClientConnection::new(config.clone(), name)?;
            Box::new(rustls::StreamOwned::new(c, stream))
        }
        None => Box::new(stream),
    };
    Ok(BufReader::with_capacity(64 * 1024, conn))
}

/// What one caller measured.
#[derive(Default)]
struct Caller {
    micros: Vec<u64>,
    error: Option<String>,
}

fn call_loop(
    t: &Target,
    token: &str,
    body: &str,
    keys: &[String],
    next: &AtomicUsize,
    budget: &AtomicU64,
    deadline: Option<Instant>,
) -> Caller {
    let mut me = Caller::default();
    let mut conn = match connect(t) {
        Ok(c) => c,
        Err(e) => {
            me.error = Some(format!("connect: {e}"));
            return me;
        }
    };
    let mut answer = Vec::new();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if deadline.is_none()
            && budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
        {
            break;
        }
        let key = &keys[next.fetch_add(1, Ordering::Relaxed) % keys.len()];
        let payload = body.replace("{KEY}", key);
        let request = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            t.path,
            t.host,
            payload.len()
        );
        let start = Instant::now();
        let outcome = (|| -> Result<String> {
            let w = conn.get_mut();
            w.write_all(request.as_bytes())?;
            w.flush()?;
            read_message(&mut conn, &mut answer)?.context("the server closed the connection")
        })();
        match outcome {
            Ok(status) if status.split(' ').nth(1) == Some("200") => {
                me.micros.push(start.elapsed().as_micros() as u64);
            }
            Ok(status) => {
                me.error = Some(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(400)])
                ));
                break;
            }
            Err(e) => {
                me.error = Some(e.to_string());
                break;
            }
        }
    }
    me
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn load() -> Result<()> {
    let t = Arc::new(target(&required("--url")?, flag("--ca"))?);
    let token: Arc<str> = flag("--token").unwrap_or_default().into();
    let body: Arc<str> = required("--body")?.into();
    let keys: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(required("--keys")?)
            .context("--keys")?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    );
    if keys.is_empty() {
        bail!("--keys: no key");
    }
    let concurrency = num("--concurrency", 1)?.clamp(1, 1024) as usize;
    let secs = flag("--secs").map(|s| s.parse::<f64>()).transpose()?;
    let calls = num("--calls", 1000)?;
    let next = Arc::new(AtomicUsize::new(num("--first-key", 0)? as usize));
    let budget = Arc::new(AtomicU64::new(calls));
    let started = Instant::now();
    let deadline = secs.map(|s| started + Duration::from_secs_f64(s));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (t, token, body, keys, next, budget) = (
                t.clone(),
                token.clone(),
                body.clone(),
                keys.clone(),
                next.clone(),
                budget.clone(),
            );
            std::thread::spawn(move || {
                call_loop(&t, &token, &body, &keys, &next, &budget, deadline)
            })
        })
        .collect();
    let mut micros = Vec::new();
    let mut errors = Vec::new();
    for w in workers {
        let c = w.join().map_err(|_| anyhow::anyhow!("a caller panicked"))?;
        micros.extend(c.micros);
        errors.extend(c.error);
    }
    let wall = started.elapsed().as_secs_f64();
    micros.sort_unstable();
    let n = micros.len();
    let mean = micros.iter().sum::<u64>() as f64 / n.max(1) as f64 / 1000.0;
    let out = json!({
        "url": required("--url")?,
        "concurrency": concurrency,
        "calls": n,
        "wall_s": wall,
        "calls_per_s": n as f64 / wall,
        "p50_ms": percentile_ms(&micros, 0.50),
        "p99_ms": percentile_ms(&micros, 0.99),
        "mean_ms": mean,
        "max_ms": micros.last().copied().unwrap_or(0) as f64 / 1000.0,
        "errors": errors.len(),
        "first_error": errors.first(),
    });
    println!(
        "{} calls by {concurrency} caller(s) in {wall:.2} s: {:.0} calls/s, p50 {:.3} ms, p99 {:.3} ms{}",
        n,
        n as f64 / wall,
        percentile_ms(&micros, 0.50),
        percentile_ms(&micros, 0.99),
        errors
            .first()
            .map(|e| format!(", {} caller(s) failed, first: {e}", errors.len()))
            .unwrap_or_default()
    );
    if let Some(path) = flag("--json-out") {
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
    }
    if !errors.is_empty() {
        bail!("{} caller(s) failed", errors.len());
    }
    Ok(())
}
