//! The crash matrix (issue 13): for each named fail point across publish, grant, fetch, receipt
//! and append, two real `yrd run` daemons (Shanghai providing, Jiangsu fetching) run an exchange,
//! the process of one is stopped at the point and killed with SIGKILL, restarted on the same data
//! dir, and the test checks that nothing acknowledged before the kill was lost, that both logs
//! verify, that each node's state and log agree, that the start-time collection left no orphan
//! partial download or unnamed blob, and that the interrupted operation, retried, succeeds.
//!
//! A point is armed by writing its name to `<data_dir>/failpoint.arm` (`yrd_node::failpoint`):
//! only a `yrd` built with the `test-hooks` feature reads it, so this target requires that
//! feature (node/Cargo.toml); `cargo test --workspace` enables it through the `yrd-tests` crate.
//! docs/crash-matrix.md lists what each case found.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde_json::Value;
use support::{Process, WAIT, YRD, arg, json, ok, on, stderr, wait_until};
use tempfile::TempDir;
use yrd_node::failpoint::{ARM_FILE, HIT_FILE, POINTS};
use yrd_node::model::signed::AnySigned;

const PROVIDER: &str = "shanghai";
const FETCHER: &str = "jiangsu";
/// Shanghai's unconditional offer Jiangsu subscribes to (each version is fetched at once).
const SUBSCRIBED: &str = "sh-enterprise-licence";
/// Shanghai's conditional offer.
const CONDITIONAL: &str = "sh-medical-settlement";
/// What the devnet logs when its start-time collection removed something.
const COLLECTED: &str = "removed partial downloads and files no record names";

// ------------------------------------------------------------------------------------------------
// Two daemons on a copy of a seeded two-node devnet

/// A seeded two-node devnet (standards, offers, a first version of each, Jiangsu subscribed to
/// Shanghai's licences and holding v1 with its receipt acknowledged), stopped; every case runs
/// on a copy of it.
struct Template {
    _tmp: TempDir,
    dir: PathBuf,
}

fn template() -> &'static Path {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    &TEMPLATE.get_or_init(make_template).dir
}

fn make_template() -> Template {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let log = File::create(tmp.path().join("devnet.log")).unwrap();
    let mut devnet = Process(
        Command::new(YRD)
            .args(["devnet", "--dir", arg(&dir), "--nodes", "2"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(devnet.0.stdout.take().unwrap());
    let mut text = String::new();
    while text.matches("token").count() < 2 {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "devnet exited early: {text}"
        );
        text.push_str(&line);
    }
    let js = dir.join(FETCHER);
    let sh = dir.join(PROVIDER);
    // The devnet subscribes Jiangsu as soon as it has published; should Jiangsu's copy of
    // Shanghai's catalogue not name v1 yet, the subscription waits for the next announcement.
    let mut polls = 0u32;
    wait_until("Jiangsu to fetch v1 of the licences", WAIT, || {
        polls += 1;
        nudge(&js, 1, polls);
        let subs: Vec<Value> = json(&on(&js, &["--json", "subscriptions"]));
        (subs.first()?["fetched_version"] == 1).then_some(())
    });
    wait_until("Shanghai to hold Jiangsu's receipt of v1", WAIT, || {
        let receipts: Vec<Value> = json(&on(&sh, &["--json", "receipts"]));
        (!receipts.is_empty()).then_some(())
    });
    devnet.signal("INT");
    assert!(devnet.wait_exit("the devnet to stop").success());
    Template { _tmp: tmp, dir }
}

/// The cases share the template's ports: one at a time.
static TURN: Mutex<()> = Mutex::new(());

/// One `yrd run` daemon on a data dir, its JSON log in a file per run.
struct Daemon {
    dir: PathBuf,
    process: Option<Process>,
    runs: u32,
}

impl Daemon {
    fn log_path(&self) -> PathBuf {
        self.dir.with_extension(format!("run{}.log", self.runs))
    }

    /// Starts it; returns once its API answers.
    fn start(&mut self) {
        assert!(self.process.is_none());
        self.runs += 1;
        let log = File::create(self.log_path()).unwrap();
        self.process = Some(Process(
            Command::new(YRD)
                .args(["--data-dir", arg(&self.dir), "--log-format", "json", "run"])
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
        wait_until("the daemon's API", WAIT, || {
            if let Some(Some(status)) = self.process.as_mut().map(|p| p.0.try_wait().unwrap()) {
                panic!("daemon exited ({status}): {}", self.log());
            }
            self.yrd(&["node"]).status.success().then_some(())
        });
    }

    /// The current run's log.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn yrd(&self, args: &[&str]) -> Output {
        on(&self.dir, args)
    }

    /// The `--json` answer of `yrd ARGS…`.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        json(&self.yrd(&all))
    }

    /// Starts `yrd ARGS…` against it without waiting (the command the kill interrupts).
    fn spawn(&self, args: &[&str]) -> Process {
        Process(
            Command::new(YRD)
                .args(["--data-dir", arg(&self.dir)])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Arms crash point `point`: the process stops there the next time it reaches it.
    fn arm(&self, point: &str) {
        assert!(POINTS.contains(&point), "unknown point {point}");
        std::fs::write(self.dir.join(ARM_FILE), point).unwrap();
    }

    /// Waits for the process to stop at `point`, then kills it with SIGKILL. With `fetcher`, the
    /// step is Jiangsu's subscription fetch of version 2: see [`nudge`].
    fn kill_at(&mut self, point: &str, fetcher: Option<&Path>) {
        let hit = self.dir.join(HIT_FILE);
        let mut polls = 0u32;
        wait_until(&format!("the daemon to reach {point}"), WAIT, || {
            polls += 1;
            if let Some(js) = fetcher {
                nudge(js, 2, polls);
            }
            std::fs::read_to_string(&hit).ok()
        });
        let name = std::fs::read_to_string(&hit).unwrap();
        assert_eq!(name, point);
        let mut process = self.process.take().unwrap();
        process.0.kill().unwrap();
        let status = process.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        std::fs::remove_file(&hit).unwrap();
    }

    /// Stops it cleanly (SIGTERM).
    fn stop(&mut self) {
        let mut process = self.process.take().unwrap();
        process.signal("TERM");
        assert!(process.wait_exit("the daemon to stop").success());
    }

    /// The files under `blobs/DIR` (objects, partial, tmp), as paths relative to it.
    fn blob_files(&self, dir: &str) -> Vec<String> {
        fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(at) else {
                return;
            };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let root = self.dir.join("blobs").join(dir);
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// The partial downloads on disk.
    fn partial_downloads(&self) -> usize {
        std::fs::read_dir(self.dir.join("blobs/partial"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// What the start-time collection of the current run removed: (partials, blobs).
    fn collected(&self) -> (u64, u64) {
        let log = self.log();
        let Some(line) = log.lines().find(|l| l.contains(COLLECTED)) else {
            return (0, 0);
        };
        let v: Value = serde_json::from_str(line).unwrap();
        (
            v["partials"].as_u64().unwrap_or(0),
            v["blobs"].as_u64().unwrap_or(0),
        )
    }

    /// Every record of its log, oldest first.
    fn records(&self) -> Vec<Value> {
        let v = self.json(&["provenance", "list", "--limit", "1000"]);
        v.as_array().unwrap().clone()
    }
}

/// Every 2 s (`polls` counts 100 ms polls), while the subscriber at `js` has no fetch of
/// `version` of the licences, has it look again for a new version: an announcement published
/// before the two daemons' gossip mesh formed reaches no one, and the next anti-entropy round is
/// 30 s away. Once a fetch exists it is left alone (subscribing again between its end and the
/// subscription noting it would start a second one).
fn nudge(js: &Path, version: u64, polls: u32) {
    if polls % 20 != 0 {
        return;
    }
    let Ok(list) = serde_json::from_slice::<Value>(&on(js, &["--json", "transfers"]).stdout) else {
        return;
    };
    let fetching = list.as_array().is_some_and(|l| {
        l.iter().any(|t| {
            t["direction"] == "in" && t["dataset"] == SUBSCRIBED && t["version"] == version
        })
    });
    if !fetching {
        let _ = on(js, &["subscribe", &format!("310000/{SUBSCRIBED}")]);
    }
}

/// Shanghai and Jiangsu running on a fresh copy of the template, connected.
/// Fields drop in order: the daemons are killed before their dirs go and before the next case
/// may take the ports.
struct Net {
    sh: Daemon,
    js: Daemon,
    _tmp: TempDir,
    _turn: MutexGuard<'static, ()>,
}

fn net() -> Net {
    let template = template();
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .args(["-a", arg(template), arg(&tmp.path().join("net"))])
        .status()
        .unwrap();
    assert!(copy.success());
    let daemon = |name: &str| Daemon {
        dir: tmp.path().join("net").join(name),
        process: None,
        runs: 0,
    };
    let mut net = Net {
        _turn: turn,
        sh: daemon(PROVIDER),
        js: daemon(FETCHER),
        _tmp: tmp,
    };
    net.sh.start();
    net.js.start();
    net.connected();
    net
}

impl Net {
    /// Waits until each sees the other as a verified member.
    fn connected(&self) {
        for d in [&self.sh, &self.js] {
            wait_until("the two daemons to connect", WAIT, || {
                let peers = d.json(&["peers"]);
                peers
                    .as_array()?
                    .iter()
                    .any(|p| !p["region"].is_null())
                    .then_some(())
            });
        }
    }

    /// Restarts `who` (killed) on its data dir and waits for the two to reconnect.
    fn restart(&mut self, who: Who) {
        self.daemon(who).start();
        self.connected();
    }

    fn daemon(&mut self, who: Who) -> &mut Daemon {
        match who {
            Who::Provider => &mut self.sh,
            Who::Fetcher => &mut self.js,
        }
    }

    /// A larger version of the licences (4 chunks of 1 MiB), in the case's dir.
    fn big_version(&self) -> PathBuf {
        let v1 = self
            .sh
            .dir
            .join("samples")
            .join(format!("{SUBSCRIBED}.jsonl"));
        let text = std::fs::read_to_string(v1).unwrap();
        let file = self.sh.dir.with_file_name("licences-v2.jsonl");
        std::fs::write(&file, text.repeat(4)).unwrap();
        file
    }

    /// Publishes the larger version with `yrd publish`, waiting for the answer.
    fn publish(&self, file: &Path) -> Output {
        self.sh.yrd(&["publish", SUBSCRIBED, arg(file)])
    }

    /// Jiangsu asks for Shanghai's conditional offer for a purpose no rule decides (so the
    /// request waits for the operator); returns the request's id.
    fn pending_request(&self) -> String {
        let r = self.js.json(&[
            "request",
            &format!("310000/{CONDITIONAL}"),
            "--purpose",
            "统计分析",
            "--basis",
            "《数据安全法》",
        ]);
        assert_eq!(r["status"], "pending", "{r}");
        let id = r["id"].as_str().unwrap().to_string();
        wait_until("Shanghai to hold the request", WAIT, || {
            let list = self.sh.json(&["requests", "list"]);
            list.as_array()?.iter().any(|q| q["id"] == id).then_some(())
        });
        id
    }

    /// Waits until Jiangsu holds a finished fetch of `version` of the licences, and Shanghai
    /// Jiangsu's receipt for it.
    fn fetched_and_receipted(&self, version: u64) {
        let mut polls = 0u32;
        // Longer than WAIT: about one run in ten of the fetch.* cases, the fetch after the
        // restart completes only ~30 s later (cause not yet found; docs/crash-matrix.md). The
        // invariant checked is that it resumes and completes, not how fast.
        let within = WAIT * 3;
        wait_until(&format!("Jiangsu to fetch v{version}"), within, || {
            polls += 1;
            nudge(&self.js.dir, version, polls);
            let list = self.js.json(&["transfers"]);
            list.as_array()?
                .iter()
                .any(|t| {
                    t["direction"] == "in"
                        && t["dataset"] == SUBSCRIBED
                        && t["version"] == version
                        && t["status"] == "done"
                })
                .then_some(())
        });
        wait_until(
            &format!("Shanghai to hold the receipt of v{version}"),
            WAIT,
            || {
                let list = self.sh.json(&["receipts"]);
                list.as_array()?
                    .iter()
                    .any(|r| r["document"]["version"] == version)
                    .then_some(())
            },
        );
    }

    /// The checks every case ends with, on both nodes: the log verifies, kept every record it
    /// held before the case's step, and agrees with the state; the evidence bundle of the
    /// licences verifies offline and is complete; no partial download or temporary
    /// file is left; and a clean restart finds nothing more to collect.
    fn check(&mut self, before: &Before) {
        for (d, kept) in [(&self.sh, &before.sh), (&self.js, &before.js)] {
            ok(&d.yrd(&["provenance", "check"]));
            let records = d.records();
            assert!(
                records.len() >= kept.len(),
                "{}: log shrank",
                d.dir.display()
            );
            for (old, now) in kept.iter().zip(&records) {
                assert_eq!(
                    old,
                    now,
                    "{}: an acknowledged record changed",
                    d.dir.display()
                );
            }
            agree(d, &records);
            // The evidence of the dataset the cases touch verifies offline, and is whole.
            let bundle = d.dir.with_extension("evidence.json");
            ok(&d.yrd(&[
                "provenance",
                "export",
                "--dataset",
                SUBSCRIBED,
                "--out",
                arg(&bundle),
            ]));
            let account = ok(&support::yrd(&["verify", arg(&bundle)]));
            assert!(
                account.contains(&format!("complete: every record about {SUBSCRIBED}")),
                "{account}"
            );
            assert_eq!(
                d.blob_files("partial"),
                Vec::<String>::new(),
                "{}",
                d.dir.display()
            );
            assert_eq!(
                d.blob_files("tmp"),
                Vec::<String>::new(),
                "{}",
                d.dir.display()
            );
        }
        for who in [Who::Provider, Who::Fetcher] {
            let d = self.daemon(who);
            d.stop();
            d.start();
            assert_eq!(d.collected(), (0, 0), "{}: {}", d.dir.display(), d.log());
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Provider,
    Fetcher,
}

/// Each node's records before the case's step: acknowledged, so never lost.
struct Before {
    sh: Vec<Value>,
    js: Vec<Value>,
}

fn before(net: &Net) -> Before {
    Before {
        sh: net.sh.records(),
        js: net.js.records(),
    }
}

fn has_record(records: &[Value], kind: &str, matches: impl Fn(&Value) -> bool) -> bool {
    records.iter().any(|r| r["kind"] == kind && matches(r))
}

fn count_records(records: &[Value], kind: &str, matches: impl Fn(&Value) -> bool) -> usize {
    records
        .iter()
        .filter(|r| r["kind"] == kind && matches(r))
        .count()
}

/// State and log agree: our catalogue has its `catalogue-issued` record; each version we
/// published its `dataset-published` record and its blob; each grant we issued or hold its `grant-issued` / `grant-received` record; each receipt
/// we hold its `receipt-received` record; each dataset we fetched its `dataset-received` record
/// and its blob; each decided request exactly one grant or denial.
fn agree(d: &Daemon, records: &[Value]) {
    let at = d.dir.display();
    let blob = |digest: &str| {
        d.dir
            .join("blobs/objects")
            .join(&digest[..2])
            .join(digest)
            .exists()
    };
    let own = d.json(&["catalog", "show"]);
    let catalogue: AnySigned = serde_json::from_value(own["signed"].clone()).unwrap();
    let digest = hex::encode(catalogue.digest().unwrap());
    assert!(
        has_record(records, "catalogue-issued", |r| {
            r["documents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|doc| doc["digest"] == digest)
        }),
        "{at}: our catalogue {} is stored with no catalogue-issued record",
        catalogue.document["sequence"]
    );
    for offer in own["offers"].as_array().unwrap() {
        let dataset = offer["offer"]["identifier"].as_str().unwrap();
        let versions = d.json(&["versions", dataset]);
        let mut seen = Vec::new();
        for m in versions.as_array().unwrap() {
            let m = &m["document"];
            let digest = m["digest"].as_str().unwrap();
            assert!(
                has_record(records, "dataset-published", |r| {
                    r["dataset"] == dataset
                        && r["version"] == m["version"]
                        && r["data_digest"] == digest
                }),
                "{at}: {dataset} v{} is stored with no dataset-published record",
                m["version"]
            );
            assert!(
                blob(digest),
                "{at}: the blob of {dataset} v{} is gone",
                m["version"]
            );
            assert!(
                !seen.contains(&m["version"]),
                "{at}: {dataset}: a version twice"
            );
            seen.push(m["version"].clone());
        }
    }
    let grants = d.json(&["grants", "list"]);
    for g in grants.as_array().unwrap() {
        let kind = if g["direction"] == "out" {
            "grant-issued"
        } else {
            "grant-received"
        };
        assert!(
            has_record(records, kind, |r| r["grant"] == g["id"]),
            "{at}: grant {} is stored with no {kind} record",
            g["id"]
        );
    }
    for q in d.json(&["requests", "list"]).as_array().unwrap() {
        let grants_of = grants
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["grant"]["document"]["request_id"] == q["id"] && g["direction"] == "out")
            .count();
        if q["direction"] == "in" {
            let expected = usize::from(q["status"] == "granted");
            assert_eq!(grants_of, expected, "{at}: request {q}");
        }
    }
    for rc in d.json(&["receipts"]).as_array().unwrap() {
        let doc = &rc["document"];
        assert!(
            has_record(records, "receipt-received", |r| {
                r["dataset"] == doc["dataset"]
                    && r["version"] == doc["version"]
                    && r["data_digest"] == doc["data_digest"]
                    && r["counterparty"] == doc["receiver"]
            }),
            "{at}: a receipt is stored with no receipt-received record: {doc}"
        );
    }
    for t in d.json(&["transfers"]).as_array().unwrap() {
        if t["direction"] != "in" || t["status"] != "done" {
            continue;
        }
        let digest = t["digest"].as_str().unwrap();
        assert!(
            has_record(records, "dataset-received", |r| {
                r["dataset"] == t["dataset"]
                    && r["version"] == t["version"]
                    && r["data_digest"] == digest
            }),
            "{at}: a fetch is done with no dataset-received record: {t}"
        );
        assert!(blob(digest), "{at}: a fetched blob is gone: {t}");
    }
}

/// Prints one line of the matrix's findings (the test output docs/crash-matrix.md quotes).
fn found(point: &str, what: String) {
    eprintln!("crash matrix: {point}: {what}");
}

// ------------------------------------------------------------------------------------------------
// Publish

/// Shanghai is killed while `yrd publish` runs; restarted, it holds no version the log does not
/// record, and the publish, retried, makes version 2.
fn publish_case(point: &str) {
    let mut net = net();
    let before = before(&net);
    let file = net.big_version();
    let objects = net.sh.blob_files("objects").len();
    net.sh.arm(point);
    let _cli = net.sh.spawn(&["publish", SUBSCRIBED, arg(&file)]);
    net.sh.kill_at(point, None);
    let left = net.sh.blob_files("objects").len() - objects;
    net.restart(Who::Provider);
    let (_, blobs) = net.sh.collected();
    let versions = net.sh.json(&["versions", SUBSCRIBED]);
    let held = versions.as_array().unwrap().len();
    // Retried, the publish makes version 2 (or finds it made, when the crash came after).
    let again = net.publish(&file);
    if held == 1 {
        ok(&again);
    } else {
        assert!(
            stderr(&again).contains("identical to version 2"),
            "{}",
            stderr(&again)
        );
    }
    net.fetched_and_receipted(2);
    net.check(&before);
    let records = net.sh.records();
    let published = count_records(&records, "dataset-published", |r| {
        r["dataset"] == SUBSCRIBED && r["version"] == 2
    });
    found(
        point,
        format!(
            "{left} new blob(s) on disk at the kill, {blobs} collected at restart; \
             {} version(s) held after restart; {published} dataset-published record(s) of v2 \
             after the retry",
            held
        ),
    );
}

#[test]
fn publish_killed_after_the_blob_is_written() {
    publish_case("publish.after_blob");
}

#[test]
fn publish_killed_after_the_record() {
    publish_case("publish.after_record");
}

// ------------------------------------------------------------------------------------------------
// Grant

/// Shanghai is killed while the operator approves Jiangsu's request; restarted, the request has
/// at most one grant, every stored grant its record, and approving again either grants (once) or
/// says it is decided; Jiangsu ends up holding the one grant.
fn grant_case(point: &str) {
    let mut net = net();
    let id = net.pending_request();
    let before = before(&net);
    net.sh.arm(point);
    let _cli = net.sh.spawn(&["requests", "approve", &id]);
    net.sh.kill_at(point, None);
    net.restart(Who::Provider);
    let status = |d: &Daemon| {
        d.json(&["requests", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    let after_restart = status(&net.sh);
    let again = net.sh.yrd(&["requests", "approve", &id]);
    if after_restart == "pending" {
        ok(&again);
    } else {
        assert!(stderr(&again).contains("already"), "{}", stderr(&again));
    }
    wait_until("Jiangsu to hold the grant", WAIT, || {
        (status(&net.js) == "granted").then_some(())
    });
    net.check(&before);
    let issued = count_records(&net.sh.records(), "grant-issued", |r| {
        r["dataset"] == CONDITIONAL
    });
    found(
        point,
        format!(
            "request {after_restart} after restart; approving again {}; {issued} grant-issued \
             record(s), one grant stored",
            if again.status.success() {
                "granted"
            } else {
                "was refused (already decided)"
            }
        ),
    );
}

#[test]
fn grant_killed_before_the_request_state() {
    grant_case("grant.before_request_state");
}

#[test]
fn grant_killed_after_the_record() {
    grant_case("grant.after_record");
}

#[test]
fn grant_killed_after_the_request_state() {
    grant_case("grant.after_request_state");
}

/// The same, when the devnet's rule decides: Shanghai is killed while it grants Jiangsu's
/// verification request automatically (Jiangsu's `yrd request` fails with the connection);
/// restarted, no grant is held without its record, and Jiangsu, asking again, is granted.
#[test]
fn automatic_grant_killed_after_the_record() {
    let point = "grant.after_record";
    let mut net = net();
    let before = before(&net);
    let js = net.js.dir.clone();
    let ask = || {
        on(
            &js,
            &[
                "--json",
                "request",
                &format!("310000/{CONDITIONAL}"),
                "--purpose",
                "跨省就医结算核验",
                "--basis",
                "《医疗保障基金使用监督管理条例》",
            ],
        )
    };
    net.sh.arm(point);
    let first = std::thread::scope(|s| {
        let asking = s.spawn(ask);
        net.sh.kill_at(point, None);
        asking.join().unwrap()
    });
    assert!(
        !first.status.success(),
        "the first request fails with the connection"
    );
    net.restart(Who::Provider);
    let again: Value = json(&ask());
    assert_eq!(again["status"], "granted", "{again}");
    net.check(&before);
    let records = net.sh.records();
    let issued = count_records(&records, "grant-issued", |r| r["dataset"] == CONDITIONAL);
    let pending = net.sh.json(&["requests", "list"]);
    let pending = pending
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["status"] == "pending")
        .count();
    found(
        "grant.after_record (rule)",
        format!(
            "the requester's call failed; after restart {pending} request(s) left pending, no \
             grant stored; asked again, granted: {issued} grant-issued record(s), one grant held"
        ),
    );
}

// ------------------------------------------------------------------------------------------------
// Fetch and receipt

/// `who` is killed at `point` while Jiangsu fetches version 2 (its subscription starts the fetch
/// when Shanghai publishes); restarted, the fetch resumes and completes, Shanghai gets the receipt.
fn exchange_case(point: &str, who: Who) {
    let mut net = net();
    let file = net.big_version();
    // What each had acknowledged before the step: the armed one's records now, the other's
    // once the publish is answered.
    let armed = net.daemon(who).records();
    net.daemon(who).arm(point);
    ok(&net.publish(&file));
    let before = match who {
        Who::Provider => Before {
            sh: armed,
            js: net.js.records(),
        },
        Who::Fetcher => Before {
            sh: net.sh.records(),
            js: armed,
        },
    };
    let js = net.js.dir.clone();
    net.daemon(who).kill_at(point, Some(&js));
    let partials = net.js.partial_downloads();
    net.restart(who);
    let (collected_partials, collected_blobs) = net.daemon(who).collected();
    let resumed = net.js.log().contains("resuming fetch");
    let started = Instant::now();
    net.fetched_and_receipted(2);
    let settled = started.elapsed().as_millis();
    if point.starts_with("fetch.") {
        // The fetch the kill cut is the one that resumes and finishes: no second one.
        assert!(resumed, "{}", net.js.log());
        let fetches = net.js.json(&["transfers"]);
        let of_v2 = fetches
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["direction"] == "in" && t["version"] == 2)
            .count();
        assert_eq!(of_v2, 1, "{fetches}");
    }
    if matches!(point, "fetch.mid_transfer" | "fetch.before_commit") {
        assert_eq!(
            (partials, collected_partials),
            (1, 0),
            "the partial is kept to resume"
        );
    }
    net.check(&before);
    let (js, sh) = (net.js.records(), net.sh.records());
    let received = count_records(&js, "dataset-received", |r| {
        r["version"] == 2 && r["dataset"] == SUBSCRIBED
    });
    let receipts = count_records(&sh, "receipt-received", |r| {
        r["version"] == 2 && r["dataset"] == SUBSCRIBED
    });
    found(
        point,
        format!(
            "{partials} partial download(s) on disk at the kill; collected at restart: \
             {collected_partials} partial(s), {collected_blobs} blob(s); fetch and receipt \
             complete {settled} ms after restart; {received} dataset-received and {receipts} \
             receipt-received record(s) of v2"
        ),
    );
}

#[test]
fn fetch_killed_mid_transfer() {
    exchange_case("fetch.mid_transfer", Who::Fetcher);
}

#[test]
fn fetch_killed_before_commit() {
    exchange_case("fetch.before_commit", Who::Fetcher);
}

#[test]
fn fetch_killed_after_commit() {
    exchange_case("fetch.after_commit", Who::Fetcher);
}

#[test]
fn fetch_killed_after_the_received_record() {
    exchange_case("fetch.after_record", Who::Fetcher);
}

#[test]
fn receipt_killed_before_it_is_sent() {
    exchange_case("receipt.before_send", Who::Fetcher);
}

#[test]
fn provider_killed_after_the_receipt_record() {
    exchange_case("receipt.after_record", Who::Provider);
}

// ------------------------------------------------------------------------------------------------
// Append

#[test]
fn append_killed_before_the_flush() {
    publish_case("append.before_flush");
}

#[test]
fn append_killed_after_the_flush() {
    publish_case("append.after_flush");
}

// ------------------------------------------------------------------------------------------------
// The matrix is whole

/// Every crash point of `failpoint::POINTS` has a case here (the two `start.*` points fail a
/// start in-process, `server.rs`'s tests), and every point is checked somewhere in the node.
#[test]
fn every_fail_point_is_in_the_matrix_and_in_the_code() {
    let matrix = include_str!("crash.rs");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut code = String::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("failpoint.rs") {
                code.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    for point in POINTS {
        let quoted = format!("\"{point}\"");
        assert!(
            code.contains(&quoted),
            "{point} is checked nowhere in node/src"
        );
        if !point.starts_with("start.") {
            assert!(
                matrix.contains(&quoted),
                "{point} has no case in the crash matrix"
            );
        }
    }
}
