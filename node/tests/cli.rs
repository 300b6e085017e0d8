//! Black-box tests of the `yrd` binary: init, config check, run's refusals, a daemon answering the
//! CLI, and the devnet with its reuse of identities and an exchange driven only through the CLI.
//! `--json` answers are read as the node's own view types.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use support::{Process, WAIT, YRD, arg, json, ok, on, stderr, stdout, wait_until, yrd};
use tempfile::TempDir;
use yrd_node::api::routes::OwnCatalogue;
use yrd_node::model::catalogue::SchemaDoc;
use yrd_node::model::exchange::Manifest;
use yrd_node::model::message::RequestStatus;
use yrd_node::model::signed::Signed;
use yrd_node::node::access::RequestRecord;
use yrd_node::node::catalogue::SearchHit;
use yrd_node::node::provenance::{BundleEntryView, Delivery};
use yrd_node::node::transfer::Subscription;
use yrd_node::node::{Health, NodeView, PeerView};

fn init(dir: &Path, region: &str) -> Output {
    yrd(&[
        "init",
        "--data-dir",
        arg(dir),
        "--region",
        region,
        "--name",
        "测试局",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
    ])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ------------------------------------------------------------------------------------------------
// init, config check, run's refusals

#[test]
fn init_creates_a_node_with_owner_only_secrets_and_a_valid_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sh");
    let out = ok(&init(&dir, "310000"));
    assert!(out.contains("310000 上海市 Shanghai"), "{out}");
    assert_eq!(mode(&dir.join("node.key")), 0o600);
    assert_eq!(mode(&dir.join("api.token")), 0o600);
    assert_eq!(mode(&dir.join("mask.secret")), 0o600);
    // A new node's mask secret is random, not a copy of its key.
    assert_ne!(
        std::fs::read(dir.join("mask.secret")).unwrap(),
        std::fs::read(dir.join("node.key")).unwrap()
    );
    ok(&yrd(&["config", "check", arg(&dir.join("yrd.toml"))]));
}

#[test]
fn init_refuses_to_overwrite_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sh");
    ok(&init(&dir, "310000"));
    let key_before = std::fs::read(dir.join("node.key")).unwrap();
    let again = init(&dir, "310000");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(dir.join("node.key")).unwrap(),
        key_before,
        "key untouched"
    );
}

#[test]
fn init_refuses_bad_arguments_with_their_cause_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("x");
    let d = arg(&d);
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "a region outside the delta",
            &["--region", "110000"],
            &["110000", "GB/T 2260"],
        ),
        (
            "a bad listen address",
            &["--region", "320000", "--listen", "nope"],
            &["--listen \"nope\""],
        ),
        (
            "a bad member",
            &["--region", "320000", "--member", "abc"],
            &["--member"],
        ),
    ];
    for (case, extra, says) in cases {
        let mut args = vec!["init", "--data-dir", d, "--name", "x"];
        args.extend_from_slice(extra);
        let out = yrd(&args);
        assert_eq!(out.status.code(), Some(2), "{case}");
        let err = stderr(&out);
        assert!(says.iter().all(|s| err.contains(s)), "{case}: {err}");
    }
    assert!(
        !Path::new(d).join("node.key").exists(),
        "nothing created on refusal"
    );
}

#[test]
fn config_check_accepts_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for name in ["shanghai", "jiangsu", "zhejiang", "anhui"] {
        let out = yrd(&["config", "check", arg(&root.join(format!("{name}.toml")))]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
}

#[test]
fn config_check_names_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("[node]\nname = \"x\"\nregion = \"999999\"\n", "999999"),
        (
            "[node]\nname = \"x\"\nregion = \"310000\"\ncolour = 1\n",
            "unknown field `colour`",
        ),
        (
            "[node]\nname = \"x\"\nregion = \"310000\"\n[network]\nlisten = [\"/ip4/1.2.3.4/tcp/x\"]\n",
            "invalid multiaddr",
        ),
        (
            "[node]\nname = \"x\"\nregion = \"310000\"\n[network]\nping_interval_secs = 0\n",
            "network.ping_interval_secs",
        ),
        (
            "[node]\nname = \"x\"\nregion = \"310000\"\n[log]\nformat = \"xml\"\n",
            "xml",
        ),
        ("[node\n", "TOML parse error"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = yrd(&["config", "check", arg(&path)]);
        assert_eq!(out.status.code(), Some(1), "case {i}");
        assert!(
            stderr(&out).contains(expected),
            "case {i}: {}",
            stderr(&out)
        );
    }
    let out = yrd(&["config", "check", arg(&tmp.path().join("missing.toml"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.toml"));
}

/// An initialised node in a temp dir.
fn initialised(region: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(region);
    ok(&init(&dir, region));
    (tmp, dir)
}

/// `yrd run` on `dir`, expected to be refused: its error output.
fn run_refused(dir: &Path) -> String {
    let out = on(dir, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn run_refuses_a_key_readable_by_others() {
    let (_tmp, dir) = initialised("320000");
    let key = dir.join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = run_refused(&dir);
    assert!(
        err.contains("node.key") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_token_readable_by_the_group() {
    let (_tmp, dir) = initialised("320000");
    let token = dir.join("api.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = run_refused(&dir);
    assert!(
        err.contains("api.token") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_corrupt_or_missing_key() {
    let (_tmp, dir) = initialised("320000");
    let key = dir.join("node.key");
    std::fs::write(&key, "not a key\n").unwrap();
    let err = run_refused(&dir);
    assert!(err.contains("corrupt node key"), "{err}");
    std::fs::remove_file(&key).unwrap();
    let err = stderr(&on(&dir, &["run"]));
    assert!(err.contains("not found"), "{err}");
}

// ------------------------------------------------------------------------------------------------
// A daemon

/// `yrd run` on a node initialised with a fixed free API port (so the CLI finds it from the
/// config), started as systemd's Type=notify starts it, its JSON logs in a file.
struct Daemon {
    _tmp: TempDir,
    dir: PathBuf,
    process: Process,
    notify: UnixDatagram,
    log: PathBuf,
}

impl Daemon {
    /// Inits a node for `region` and starts it; returns once it reported READY=1.
    fn start(region: &str) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(region);
        ok(&init(&dir, region));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.join("yrd.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(&cfg, text).unwrap();
        let notify_path = tmp.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(WAIT)).unwrap();
        let log = tmp.path().join("daemon.log");
        let process = Process(
            Command::new(YRD)
                .args(["--data-dir", arg(&dir), "--log-format", "json", "run"])
                .env("NOTIFY_SOCKET", &notify_path)
                .env_remove("RUST_LOG")
                .env_remove("MALLOC_ARENA_MAX")
                .stdout(Stdio::null())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let daemon = Daemon {
            _tmp: tmp,
            dir,
            process,
            notify,
            log,
        };
        let ready = daemon.notification("READY=1 from the daemon");
        assert!(ready.starts_with("READY=1\n"), "{ready}");
        daemon
    }

    /// The next message on the notify socket.
    fn notification(&self, what: &str) -> String {
        let mut buf = [0u8; 512];
        let n = self.notify.recv(&mut buf).expect(what);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Runs `yrd --data-dir DIR ARGS…` against it.
    fn yrd(&self, args: &[&str]) -> Output {
        on(&self.dir, args)
    }

    /// Its admin API base URL.
    fn api(&self) -> String {
        let view: NodeView = json(&self.yrd(&["--json", "node"]));
        format!("http://{}", view.api_address.unwrap())
    }

    /// Stops it with SIGTERM as systemd does; returns how it ended and its log.
    fn stop(mut self) -> (String, ExitStatus, String) {
        self.process.signal("TERM");
        let stopping = self.notification("STOPPING=1 from the daemon");
        let status = self.process.wait_exit("the daemon to stop on SIGTERM");
        let log = std::fs::read_to_string(&self.log).unwrap();
        (stopping, status, log)
    }
}

/// The status of `GET /api/v1/node` with `token`.
fn token_status(api: &str, token: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{api}/api/v1/node"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn the_cli_says_when_no_daemon_answers() {
    let (_tmp, dir) = initialised("330000");
    let unreachable = on(&dir, &["health"]);
    assert_eq!(
        unreachable.status.code(),
        Some(3),
        "{}",
        stderr(&unreachable)
    );
    assert!(stderr(&unreachable).contains("cannot reach"));
}

/// glibc's malloc arenas are bounded for a daemon started without the variable: it re-executes
/// itself with it, keeping its process id (the one the service manager and this test hold).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_daemon_bounds_its_malloc_arenas_in_the_same_process() {
    let daemon = Daemon::start("320000");
    let pid = daemon.process.0.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    for var in ["MALLOC_ARENA_MAX=2", "MALLOC_MMAP_THRESHOLD_=131072"] {
        assert!(
            vars.contains(&var.as_bytes()),
            "daemon {pid} runs without {var}"
        );
    }
    let health: Health = json(&daemon.yrd(&["--json", "health"]));
    assert_eq!(health.status, "ok");
}

#[test]
fn a_daemon_answers_the_cli_as_soon_as_it_reports_ready() {
    let daemon = Daemon::start("330000");
    // Ready means answering: no wait before the first call.
    let health: Health = json(&daemon.yrd(&["--json", "health"]));
    assert_eq!(health.status, "ok");
    let node: NodeView = json(&daemon.yrd(&["--json", "node"]));
    assert_eq!(node.region.code(), 330000);
    assert_eq!(node.region_label, "330000 浙江省 Zhejiang");
    let peers = ok(&daemon.yrd(&["peers"]));
    assert!(peers.contains("PEER") && peers.contains("RTT"), "{peers}");
    let text = ok(&daemon.yrd(&["health"]));
    assert!(text.starts_with("ok: "), "{text}");
}

#[test]
fn a_second_daemon_on_the_same_data_dir_is_refused_with_its_cause() {
    let daemon = Daemon::start("330000");
    let second = daemon.yrd(&["run"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("in use") || stderr(&second).contains("another yrd"),
        "{}",
        stderr(&second)
    );
}

#[test]
fn token_rotate_replaces_the_token_and_the_running_node_switches_at_once() {
    let daemon = Daemon::start("330000");
    let api = daemon.api();
    let token_file = daemon.dir.join("api.token");
    let old_token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token_status(&api, &old_token), 200);
    let out = ok(&daemon.yrd(&["token", "rotate"]));
    assert!(out.contains("uses it now"), "{out}");
    let new_token = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(old_token, new_token);
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(
        token_status(&api, &old_token),
        401,
        "the old token still works"
    );
    assert_eq!(token_status(&api, &new_token), 200);
}

#[test]
fn sighup_reloads_a_token_replaced_by_hand_and_the_daemon_keeps_running() {
    let daemon = Daemon::start("330000");
    let api = daemon.api();
    let token_file = daemon.dir.join("api.token");
    let old_token = std::fs::read_to_string(&token_file).unwrap();
    std::fs::remove_file(&token_file).unwrap();
    let by_hand = "f".repeat(64);
    yrd_node::identity::write_private_file(&token_file, by_hand.as_bytes()).unwrap();
    assert_eq!(
        token_status(&api, &old_token),
        200,
        "reloaded before the signal"
    );
    // `systemctl reload yrd`.
    daemon.process.signal("HUP");
    wait_until("SIGHUP to reload the token", WAIT, || {
        (token_status(&api, &by_hand) == 200).then_some(())
    });
    assert_eq!(token_status(&api, &old_token), 401);
    ok(&daemon.yrd(&["health"]));
}

#[test]
fn sigterm_stops_the_daemon_cleanly_with_structured_logs() {
    let daemon = Daemon::start("330000");
    let (stopping, status, log) = daemon.stop();
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert!(status.success(), "{status:?}");
    assert!(
        log.contains("\"region\":\"330000 浙江省 Zhejiang\""),
        "structured JSON logs: {log}"
    );
    assert!(log.contains("database flushed"), "{log}");
}

// ------------------------------------------------------------------------------------------------
// Standards and the catalogue through a daemon

/// A daemon holding the elderly-care standard.
fn with_standard() -> Daemon {
    let daemon = Daemon::start("340000");
    let std_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/datasets/elderly-care-subsidy.schema.json");
    ok(&daemon.yrd(&[
        "schema",
        "publish",
        arg(&std_file),
        "--id",
        "elderly-care-subsidy",
        "--version",
        "1.0.0",
    ]));
    daemon
}

/// [`with_standard`] and its conditional offer `ah-subsidy`.
fn with_offer() -> Daemon {
    let daemon = with_standard();
    let offer = daemon.dir.join("offer.toml");
    std::fs::write(
        &offer,
        r#"
identifier = "ah-subsidy"
title = "安徽省养老服务补贴发放记录"
description = "高龄津贴发放明细"
media_type = "application/jsonl"
resource_code = "340000-MZT-00005"
share_type = "conditional"
share_conditions = "仅用于补贴资格比对"
share_method = "file"
update_cycle = "monthly"
schema_id = "elderly-care-subsidy"
schema_version = "1.0.0"
"#,
    )
    .unwrap();
    ok(&daemon.yrd(&["catalog", "add", arg(&offer)]));
    daemon
}

#[test]
fn schema_verbs_publish_list_and_show_a_standard() {
    let daemon = with_standard();
    let list = ok(&daemon.yrd(&["schema", "list"]));
    assert!(
        list.contains("elderly-care-subsidy") && list.contains("340000"),
        "{list}"
    );
    let shown: Signed<SchemaDoc> =
        json(&daemon.yrd(&["--json", "schema", "show", "elderly-care-subsidy@1.0.0"]));
    assert_eq!(
        (shown.document.id.as_str(), shown.document.version.as_str()),
        ("elderly-care-subsidy", "1.0.0")
    );
    let toml = daemon.yrd(&[
        "schema",
        "publish",
        arg(&daemon.dir.join("yrd.toml")),
        "--id",
        "x",
        "--version",
        "1.0.0",
    ]);
    assert_eq!(
        toml.status.code(),
        Some(1),
        "a TOML file is not a JSON Schema"
    );
}

#[test]
fn publish_makes_a_version_of_an_offer_from_a_file() {
    let daemon = with_offer();
    let records = yrd_node::samples::generate("elderly-care-subsidy", 50, 3).unwrap();
    let data = daemon.dir.join("subsidy.jsonl");
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&data, lines).unwrap();
    let out = ok(&daemon.yrd(&["publish", "ah-subsidy", arg(&data)]));
    assert!(out.contains("v1: 50 records"), "{out}");
    let versions: Vec<Signed<Manifest>> = json(&daemon.yrd(&["--json", "versions", "ah-subsidy"]));
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].document.record_count, 50);
    let out = daemon.yrd(&["publish", "ah-subsidy", arg(&data), "--format", "xls"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn catalog_verbs_show_search_and_export_an_offer() {
    let daemon = with_offer();
    let shown = ok(&daemon.yrd(&["catalog", "show"]));
    assert!(
        shown.contains("ah-subsidy") && shown.contains("有条件共享"),
        "{shown}"
    );
    let hits: Vec<SearchHit> = json(&daemon.yrd(&[
        "--json", "catalog", "search", "--text", "养老", "--region", "340000",
    ]));
    assert_eq!(hits.len(), 1, "{hits:?}");
    let csv = ok(&daemon.yrd(&["catalog", "export", "--format", "csv"]));
    assert!(
        csv.contains("信息资源代码") && csv.contains("340000-MZT-00005"),
        "{csv}"
    );
    let out = daemon.yrd(&["catalog", "export", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

#[test]
fn catalog_add_refuses_an_incomplete_offer() {
    let daemon = with_standard();
    let bad_offer = daemon.dir.join("bad.json");
    std::fs::write(&bad_offer, r#"{"identifier": "x", "title": "t"}"#).unwrap();
    let out = daemon.yrd(&["catalog", "add", arg(&bad_offer)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing field"), "{}", stderr(&out));
}

#[test]
fn withheld_add_and_catalog_remove_change_the_signed_catalogue() {
    let daemon = with_offer();
    let withheld = daemon.dir.join("w.json");
    std::fs::write(&withheld, r#"{"identifier": "ah-dibao", "title": "低保对象明细", "reason": "涉及个人隐私", "legal_basis": "《个人信息保护法》"}"#).unwrap();
    ok(&daemon.yrd(&["withheld", "add", arg(&withheld)]));
    let out = daemon.yrd(&["catalog", "remove", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    ok(&daemon.yrd(&["catalog", "remove", "ah-subsidy"]));
    let catalogue: OwnCatalogue = json(&daemon.yrd(&["--json", "catalog", "show"]));
    assert!(catalogue.offers.is_empty(), "{catalogue:?}");
    assert_eq!(catalogue.withheld.len(), 1);
    // A snapshot each for the offer, the withheld entry and the removal.
    let sequence = catalogue.signed.map(|s| s.document.sequence);
    assert!(sequence >= Some(3), "{sequence:?}");
}

// ------------------------------------------------------------------------------------------------
// Offline verbs

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/vectors")
}

#[test]
fn doc_canon_prints_the_rfc_8785_form() {
    let jcs = vectors().join("jcs");
    let out = ok(&yrd(&[
        "doc",
        "canon",
        arg(&jcs.join("input/structures.json")),
    ]));
    let expected = std::fs::read_to_string(jcs.join("output/structures.json")).unwrap();
    assert_eq!(out.trim_end_matches('\n'), expected);
}

/// The first published signature vector's envelope.
fn signed_vector() -> serde_json::Value {
    let text = std::fs::read_to_string(vectors().join("signatures.json")).unwrap();
    let published: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    published[0]["envelope"].clone()
}

#[test]
fn doc_verify_accepts_a_signed_document() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.json");
    std::fs::write(&good, serde_json::to_string(&signed_vector()).unwrap()).unwrap();
    let out = ok(&yrd(&["doc", "verify", arg(&good)]));
    assert!(out.starts_with("valid "), "{out}");
}

#[test]
fn doc_verify_refuses_a_changed_or_unreadable_document() {
    let tmp = tempfile::tempdir().unwrap();
    // The envelope's JSON is changed on purpose: a document no type would let us build.
    let mut tampered = signed_vector();
    let doc = tampered["document"].as_object_mut().unwrap();
    let key = doc.keys().next().unwrap().clone();
    doc.insert(key, serde_json::json!("changed"));
    let bad = tmp.path().join("bad.json");
    for (case, text, says) in [
        (
            "changed",
            serde_json::to_string(&tampered).unwrap(),
            "does not verify",
        ),
        ("unreadable", "{\"type\": ".to_string(), "bad.json"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = yrd(&["doc", "verify", arg(&bad)]);
        assert_eq!(out.status.code(), Some(1), "{case}");
        assert!(stderr(&out).contains(says), "{case}: {}", stderr(&out));
    }
}

#[test]
fn openapi_prints_the_checked_in_document_offline() {
    let out = ok(&yrd(&["openapi"]));
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/api/openapi.json"
    ))
    .unwrap();
    assert_eq!(out, checked_in);
}

// ------------------------------------------------------------------------------------------------
// The devnet

/// `yrd devnet --nodes 4` in a dir, once every province is meshed.
struct Devnet {
    dir: PathBuf,
    process: Process,
    _one_at_a_time: Option<MutexGuard<'static, ()>>,
}

/// A devnet picks free ports when it creates its dirs and binds them when its nodes start (and
/// again on a second run): two devnets at once could take each other's ports in between.
static DEVNETS: Mutex<()> = Mutex::new(());

fn devnet_turn() -> MutexGuard<'static, ()> {
    // A devnet test that failed poisons nothing the next one needs.
    DEVNETS.lock().unwrap_or_else(|p| p.into_inner())
}

impl Devnet {
    fn start(dir: &Path) -> Devnet {
        let turn = devnet_turn();
        let mut devnet = Devnet::start_in_turn(dir);
        devnet._one_at_a_time = Some(turn);
        devnet
    }

    /// Starts a devnet; the caller holds the turn ([`devnet_turn`]).
    fn start_in_turn(dir: &Path) -> Devnet {
        let log = File::create(dir.with_extension("log")).unwrap();
        let mut process = Process(
            Command::new(YRD)
                .args(["devnet", "--dir", arg(dir), "--nodes", "4"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(process.0.stdout.take().unwrap());
        let mut text = String::new();
        while !text.contains("340000") || text.matches("token").count() < 4 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
                panic!("devnet exited early: {text}\nits log:\n{log}");
            }
            text.push_str(&line);
        }
        for region in [
            "310000 上海市",
            "320000 江苏省",
            "330000 浙江省",
            "340000 安徽省",
        ] {
            assert!(text.contains(region), "{text}");
        }
        let devnet = Devnet {
            dir: dir.to_path_buf(),
            process,
            _one_at_a_time: None,
        };
        wait_until("the devnet to mesh", WAIT, || {
            let o = devnet.yrd("shanghai", &["--json", "peers"]);
            let peers: Vec<PeerView> = serde_json::from_slice(&o.stdout).ok()?;
            (peers.iter().filter(|p| p.region.is_some()).count() == 3).then_some(())
        });
        devnet
    }

    /// A province's data dir.
    fn node(&self, province: &str) -> PathBuf {
        self.dir.join(province)
    }

    /// Runs `yrd --data-dir PROVINCE ARGS…`.
    fn yrd(&self, province: &str, args: &[&str]) -> Output {
        on(&self.node(province), args)
    }

    /// Stops it with Ctrl-C.
    fn stop(mut self) {
        self.process.signal("INT");
        let status = self.process.wait_exit("the devnet to stop on Ctrl-C");
        assert!(status.success(), "{status:?}");
    }
}

/// A devnet in a fresh temp dir.
fn devnet() -> (TempDir, Devnet) {
    let tmp = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(&tmp.path().join("devnet"));
    (tmp, devnet)
}

#[test]
fn the_devnet_starts_four_provinces_and_reuses_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let mut ids = Vec::new();
    let mut charters = Vec::new();
    // The second run binds the ports the first chose: no other devnet may start in between.
    let _turn = devnet_turn();
    for _ in 0..2 {
        let devnet = Devnet::start_in_turn(&dir);
        let view: NodeView = json(&devnet.yrd("shanghai", &["--json", "node"]));
        ids.push(view.peer_id);
        // The nodes run on a genesis charter of the four provinces, signed by 3 of them.
        let charter = view.charter.expect("the devnet runs on a charter");
        assert_eq!((charter.version, charter.members), (1, 4));
        assert_eq!(charter.state, "in-force");
        charters.push(charter.digest);
        devnet.stop();
    }
    assert_eq!(ids[0], ids[1], "the second run reuses the identities");
    assert_eq!(charters[0], charters[1], "and the charter");
    let file = dir.join("charter.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let signed = yrd_node::model::charter::SignedCharter::from_json(&text).unwrap();
    assert_eq!(signed.signatures.len(), 3);
    assert_eq!(signed.document.policy.threshold, 3);
    let shown = ok(&yrd(&[
        "--data-dir",
        arg(&dir.join("shanghai")),
        "federation",
        "show",
    ]));
    assert!(
        shown.contains("340000 安徽省 Anhui") && shown.contains("founder"),
        "{shown}"
    );
}

/// Jiangsu fetches Shanghai's licences to `out`. The devnet subscribes Jiangsu to them, so its
/// subscription may have fetched v1 first: the CLI then writes the version it holds.
fn fetch_licences(devnet: &Devnet, out: &Path) {
    let o = ok(&devnet.yrd(
        "jiangsu",
        &["fetch", "310000/sh-enterprise-licence", "--out", arg(out)],
    ));
    assert!(
        o.contains("fetched sh-enterprise-licence v1")
            || (o.contains("sh-enterprise-licence v1 from") && o.contains("was already held here")),
        "{o}"
    );
    assert!(o.contains(&format!("wrote {}", out.display())), "{o}");
}

#[test]
fn an_unconditional_fetch_through_the_cli_writes_every_record_personal_fields_masked() {
    let (tmp, devnet) = devnet();
    let out = tmp.path().join("licences.jsonl");
    fetch_licences(&devnet, &out);
    let versions: Vec<Signed<Manifest>> =
        json(&devnet.yrd("shanghai", &["--json", "versions", "sh-enterprise-licence"]));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines().count() as u64,
        versions[0].document.record_count
    );
    // The legal representative's ID number leaves masked by its standard's default.
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let id = first["legal_representative_id_number"].as_str().unwrap();
    assert!(id.contains("********"), "masked: {id}");
    devnet.stop();
}

/// Zhejiang asks Shanghai for its medical settlements (the devnet's rule grants verification
/// requests, masked) and fetches them to `out`; returns the request.
fn masked_delivery(devnet: &Devnet, out: &Path) -> RequestRecord {
    let r: RequestRecord = json(&devnet.yrd(
        "zhejiang",
        &[
            "--json",
            "request",
            "Shanghai/sh-medical-settlement",
            "--purpose",
            "异地就医结算核验",
            "--basis",
            "《医疗保障基金使用监督管理条例》",
        ],
    ));
    assert_eq!(r.status, RequestStatus::Granted, "{r:?}");
    ok(&devnet.yrd(
        "zhejiang",
        &["fetch", "310000/sh-medical-settlement", "--out", arg(out)],
    ));
    r
}

#[test]
fn a_conditional_request_is_granted_by_the_devnet_rule_and_delivered_masked() {
    let (tmp, devnet) = devnet();
    let masked = tmp.path().join("settlements.jsonl");
    masked_delivery(&devnet, &masked);
    let text = std::fs::read_to_string(&masked).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let id = first["insured_id_number"].as_str().unwrap();
    assert!(id.contains("********"), "masked: {id}");
    let grants = ok(&devnet.yrd("shanghai", &["grants", "list"]));
    assert!(grants.contains("insured_id_number=keep:6:4"), "{grants}");
    devnet.stop();
}

#[test]
fn show_verbs_print_a_labelled_summary_and_with_json_the_apis_answer() {
    let (tmp, devnet) = devnet();
    let r = masked_delivery(&devnet, &tmp.path().join("settlements.jsonl"));
    let grant_id = r.grant.as_ref().unwrap().document.id.clone();
    let text = ok(&devnet.yrd("shanghai", &["grants", "show", &grant_id]));
    assert!(
        text.contains("state")
            && text.contains("valid")
            && text.contains("insured_id_number=keep:6:4")
            && text.contains("sh-medical-settlement"),
        "{text}"
    );
    let text = ok(&devnet.yrd("zhejiang", &["requests", "show", &r.id]));
    assert!(
        text.contains("异地就医结算核验") && text.contains("granted") && text.contains(&grant_id),
        "{text}"
    );
    let text = ok(&devnet.yrd("shanghai", &["provenance", "show", "0"]));
    assert!(text.contains("included in"), "{text}");
    let entry: BundleEntryView =
        json(&devnet.yrd("shanghai", &["--json", "provenance", "show", "0"]));
    assert_eq!(entry.record.seq, 0, "{entry:?}");
    devnet.stop();
}

#[test]
fn the_evidence_of_a_delivery_verifies_offline_and_not_once_altered() {
    let (tmp, devnet) = devnet();
    masked_delivery(&devnet, &tmp.path().join("settlements.jsonl"));
    wait_until("Shanghai to hold the receipted delivery", WAIT, || {
        let list: Vec<Delivery> = json(&devnet.yrd(
            "shanghai",
            &[
                "--json",
                "provenance",
                "deliveries",
                "--dataset",
                "sh-medical-settlement",
            ],
        ));
        (list.len() == 1 && list[0].receipt_at.is_some()).then_some(())
    });
    let bundle = tmp.path().join("evidence.json");
    ok(&devnet.yrd(
        "shanghai",
        &[
            "provenance",
            "export",
            "--dataset",
            "sh-medical-settlement",
            "--out",
            arg(&bundle),
        ],
    ));
    devnet.stop();
    let account = ok(&yrd(&["verify", arg(&bundle)]));
    assert!(
        account.contains("Shanghai (310000) delivered sh-medical-settlement v1")
            && account.contains("to Zhejiang (330000)"),
        "{account}"
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    let altered = tmp.path().join("evidence-altered.json");
    std::fs::write(
        &altered,
        text.replacen("异地就医结算核验", "统计分析用途", 1),
    )
    .unwrap();
    let o = yrd(&["verify", arg(&altered)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("DOES NOT VERIFY"), "{}", stderr(&o));
}

#[test]
fn a_new_version_reaches_every_province_subscribed_to_it() {
    let (tmp, devnet) = devnet();
    // Shanghai's own records: what Jiangsu received has its personal fields masked.
    let v1 = devnet
        .node("shanghai")
        .join("samples/sh-enterprise-licence.jsonl");
    let v2 = tmp.path().join("licences-v2.jsonl");
    let mut text = std::fs::read_to_string(&v1).unwrap();
    text.truncate(text.lines().take(500).map(|l| l.len() + 1).sum());
    std::fs::write(&v2, text).unwrap();
    let published = Instant::now();
    ok(&devnet.yrd("shanghai", &["publish", "sh-enterprise-licence", arg(&v2)]));
    for p in ["jiangsu", "zhejiang", "anhui"] {
        wait_until(&format!("{p} to fetch version 2"), WAIT, || {
            let subs: Vec<Subscription> = json(&devnet.yrd(p, &["--json", "subscriptions"]));
            subs.iter().any(|s| s.fetched_version == 2).then_some(())
        });
    }
    eprintln!(
        "devnet: version 2 reached all three subscribers within {} ms of `yrd publish` returning",
        published.elapsed().as_millis()
    );
    devnet.stop();
}

#[test]
fn a_charter_change_is_submitted_approved_and_applied_through_the_running_nodes() {
    use yrd_node::node::CharterVersionView;
    use yrd_node::node::charter_sync::ProposalView;
    let (tmp, devnet) = devnet();
    let charter = devnet.dir.join("charter.json");
    let draft = tmp.path().join("v2.json");
    let city = yrd_node::identity::NodeKey::generate().peer_id();
    let suzhou: yrd_node::model::region::Region = "320500".parse().unwrap();
    let spec = format!(
        "{},320500,member,{city},苏州市大数据管理局",
        yrd_node::devnet::fictitious_member_id(suzhou, 9)
    );
    ok(&yrd(&[
        "federation",
        "propose",
        "--from",
        arg(&charter),
        "--member",
        &spec,
        "--out",
        arg(&draft),
    ]));
    let submitted: ProposalView =
        json(&devnet.yrd("shanghai", &["--json", "federation", "submit", arg(&draft)]));
    assert!(!submitted.ready);
    let digest = submitted.digest.clone();
    for province in ["shanghai", "jiangsu", "zhejiang"] {
        wait_until("the proposal held", WAIT, || {
            let o = devnet.yrd(province, &["--json", "federation", "proposals"]);
            let list: Vec<ProposalView> = serde_json::from_slice(&o.stdout).ok()?;
            list.iter().any(|p| p.digest == digest).then_some(())
        });
        let shown = ok(&devnet.yrd(province, &["federation", "approve", &digest]));
        assert!(shown.contains(&digest), "{shown}");
    }
    // Anhui follows without signing.
    wait_until("version 2 in force in Anhui", WAIT, || {
        let o = devnet.yrd("anhui", &["--json", "federation", "history"]);
        let history: Vec<CharterVersionView> = serde_json::from_slice(&o.stdout).ok()?;
        (history.len() == 2).then_some(())
    });
    let table = ok(&devnet.yrd("anhui", &["federation", "history"]));
    assert!(
        table.contains("VERSION") && table.lines().count() == 3,
        "{table}"
    );
    // Applying an older document is refused naming the rule.
    let mut other = yrd_node::model::charter::SignedCharter::from_json(
        &std::fs::read_to_string(&charter).unwrap(),
    )
    .unwrap();
    other.document.federation.name = "另一个联盟".into();
    let file = tmp.path().join("other.json");
    std::fs::write(&file, other.to_json_pretty().unwrap()).unwrap();
    let err = stderr(&devnet.yrd("anhui", &["federation", "apply", arg(&file)]));
    assert!(err.contains("rollback"), "{err}");
    devnet.stop();
}
