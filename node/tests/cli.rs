//! Black-box tests of the `yrd` binary: init, config check, run's refusals, a daemon answering the
//! CLI, and the devnet with its reuse of identities.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const YRD: &str = env!("CARGO_BIN_EXE_yrd");

fn yrd(args: &[&str]) -> Output {
    Command::new(YRD)
        .args(args)
        .env_remove("YRD_DATA_DIR")
        .env_remove("YRD_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run yrd")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn init(dir: &Path, region: &str) -> Output {
    let d = dir.to_str().unwrap();
    yrd(&[
        "init",
        "--data-dir",
        d,
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

#[test]
fn init_creates_a_node_and_refuses_to_overwrite_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sh");
    let out = init(&dir, "310000");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("310000 上海市 Shanghai"),
        "{}",
        stdout(&out)
    );
    assert_eq!(mode(&dir.join("node.key")), 0o600);
    assert_eq!(mode(&dir.join("api.token")), 0o600);
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

    let check = yrd(&["config", "check", dir.join("yrd.toml").to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn init_refuses_bad_arguments_with_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("x");
    let d = d.to_str().unwrap();
    let out = yrd(&[
        "init",
        "--data-dir",
        d,
        "--region",
        "110000",
        "--name",
        "北京",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("110000") && stderr(&out).contains("GB/T 2260"));
    let out = yrd(&[
        "init",
        "--data-dir",
        d,
        "--region",
        "320000",
        "--name",
        "x",
        "--listen",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--listen \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = yrd(&[
        "init",
        "--data-dir",
        d,
        "--region",
        "320000",
        "--name",
        "x",
        "--member",
        "abc",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--member"), "{}", stderr(&out));
    assert!(
        !Path::new(d).join("node.key").exists(),
        "nothing created on refusal"
    );
}

#[test]
fn config_check_accepts_the_examples_and_names_what_is_wrong() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for name in ["shanghai", "jiangsu", "zhejiang", "anhui"] {
        let out = yrd(&[
            "config",
            "check",
            root.join(format!("{name}.toml")).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
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
        let out = yrd(&["config", "check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "case {i}");
        assert!(
            stderr(&out).contains(expected),
            "case {i}: {}",
            stderr(&out)
        );
    }
    let out = yrd(&[
        "config",
        "check",
        tmp.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.toml"));
}

#[test]
fn run_refuses_readable_or_corrupt_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("js");
    assert!(init(&dir, "320000").status.success());
    let d = dir.to_str().unwrap();
    let key = dir.join("node.key");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = yrd(&["--data-dir", d, "run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("node.key") && err.contains("chmod 600"),
        "{err}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = dir.join("api.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = stderr(&yrd(&["--data-dir", d, "run"]));
    assert!(
        err.contains("api.token") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::write(&key, "not a key\n").unwrap();
    let out = yrd(&["--data-dir", d, "run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("corrupt node key"),
        "{}",
        stderr(&out)
    );

    std::fs::remove_file(&key).unwrap();
    let out = yrd(&["--data-dir", d, "run"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

/// Inits a node with a fixed free API port, so the CLI finds it from the config.
fn init_with_api_port(dir: &Path, region: &str) {
    assert!(init(dir, region).status.success());
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
}

/// Waits until the daemon on `d` answers `yrd health`.
fn wait_healthy(d: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = yrd(&["--data-dir", d, "--json", "health"]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "daemon never answered: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap();
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_running_daemon_answers_the_cli_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("zj");
    init_with_api_port(&dir, "330000");
    let d = dir.to_str().unwrap();

    let unreachable = yrd(&["--data-dir", d, "health"]);
    assert_eq!(
        unreachable.status.code(),
        Some(3),
        "{}",
        stderr(&unreachable)
    );
    assert!(stderr(&unreachable).contains("cannot reach"));

    // Started as systemd's Type=notify starts it: readiness goes to $NOTIFY_SOCKET.
    let notify_path = tmp.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut daemon = Daemon(
        Command::new(YRD)
            .args(["--data-dir", d, "--log-format", "json", "run"])
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 from the daemon");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    // Ready means answering: no wait needed before the first call.
    let out = yrd(&["--data-dir", d, "health"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_healthy(d);
    let out = yrd(&["--data-dir", d, "--json", "health"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    let node = yrd(&["--data-dir", d, "--json", "node"]);
    let v: serde_json::Value = serde_json::from_slice(&node.stdout).unwrap();
    assert_eq!(v["region"], "330000");
    assert_eq!(v["region_label"], "330000 浙江省 Zhejiang");
    let peers = yrd(&["--data-dir", d, "peers"]);
    assert!(stdout(&peers).contains("PEER") && stdout(&peers).contains("RTT"));

    // A second daemon on the same data dir is refused with its cause, not a panic.
    let second = yrd(&["--data-dir", d, "run"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("in use") || stderr(&second).contains("another yrd"),
        "{}",
        stderr(&second)
    );

    // `yrd token rotate` replaces the token and the running node switches at once.
    let api = format!("http://{}", v["api_address"].as_str().unwrap());
    let token_file = dir.join("api.token");
    let old_token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token_status(&api, &old_token), 200);
    let out = yrd(&["--data-dir", d, "token", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("uses it now"), "{}", stdout(&out));
    let new_token = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(old_token, new_token);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        token_status(&api, &old_token),
        401,
        "the old token still works"
    );
    assert_eq!(token_status(&api, &new_token), 200);
    // A token replaced by hand is picked up on SIGHUP (`systemctl reload yrd`), and the
    // daemon keeps running.
    std::fs::remove_file(&token_file).unwrap();
    let by_hand = "f".repeat(64);
    yrd_node::identity::write_private_file(&token_file, by_hand.as_bytes()).unwrap();
    assert_eq!(
        token_status(&api, &new_token),
        200,
        "reloaded before the signal"
    );
    signal(&daemon.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while token_status(&api, &by_hand) != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the token");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(token_status(&api, &new_token), 401);
    assert!(yrd(&["--data-dir", d, "health"]).status.success());

    signal(&daemon.0, "TERM");
    let n = notify.recv(&mut buf).expect("STOPPING=1 from the daemon");
    assert!(buf[..n].starts_with(b"STOPPING=1"));
    let status =
        wait_exit(&mut daemon.0, Duration::from_secs(15)).expect("daemon stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("\"region\":\"330000 浙江省 Zhejiang\""),
        "structured JSON logs: {log}"
    );
    assert!(log.contains("database flushed"), "{log}");
}

#[test]
fn the_devnet_starts_four_provinces_and_reuses_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let d = dir.to_str().unwrap();
    let mut ids = Vec::new();
    for run in 0..2 {
        let mut child = Daemon(
            Command::new(YRD)
                .args(["devnet", "--dir", d, "--nodes", "4"])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut text = String::new();
        while !text.contains("340000") || text.matches("token").count() < 4 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("devnet exited early: {text}");
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
        let sh = dir.join("shanghai");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = yrd(&["--data-dir", sh.to_str().unwrap(), "--json", "peers"]);
            if o.status.success() {
                let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
                if v.iter().filter(|p| p["region"].is_string()).count() == 3 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "devnet never meshed (run {run})");
            std::thread::sleep(Duration::from_millis(200));
        }
        let node = yrd(&["--data-dir", sh.to_str().unwrap(), "--json", "node"]);
        let v: serde_json::Value = serde_json::from_slice(&node.stdout).unwrap();
        ids.push(v["peer_id"].as_str().unwrap().to_string());
        if run == 0 {
            exchange_through_the_cli(&dir, tmp.path());
        }
        signal(&child.0, "INT");
        let status =
            wait_exit(&mut child.0, Duration::from_secs(20)).expect("devnet stops on Ctrl-C");
        assert!(status.success(), "{status:?}");
    }
    assert_eq!(ids[0], ids[1], "the second run reuses the identities");
}

/// The devnet's exchange, driven only through the CLI: an unconditional fetch to a file, a
/// conditional request granted by the devnet's auto-approval rule and delivered masked, and the
/// subscriptions every province holds to Shanghai's licences picking up a new version.
fn exchange_through_the_cli(dir: &Path, tmp: &Path) {
    let sh = dir.join("shanghai");
    let js = dir.join("jiangsu");
    let zj = dir.join("zhejiang");
    let dd = |p: &Path| p.to_str().unwrap().to_string();
    let out = tmp.join("licences.jsonl");
    let o = yrd(&[
        "--data-dir",
        &dd(&js),
        "fetch",
        "310000/sh-enterprise-licence",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("fetched sh-enterprise-licence v1"),
        "{}",
        stdout(&o)
    );
    let versions = yrd(&[
        "--data-dir",
        &dd(&sh),
        "--json",
        "versions",
        "sh-enterprise-licence",
    ]);
    let versions: Vec<serde_json::Value> = serde_json::from_slice(&versions.stdout).unwrap();
    let digest = blake3::hash(&std::fs::read(&out).unwrap())
        .to_hex()
        .to_string();
    assert_eq!(versions[0]["document"]["digest"], digest.as_str());

    // Conditional data: the devnet's rule grants verification requests, masked.
    let o = yrd(&[
        "--data-dir",
        &dd(&zj),
        "--json",
        "request",
        "Shanghai/sh-medical-settlement",
        "--purpose",
        "异地就医结算核验",
        "--basis",
        "《医疗保障基金使用监督管理条例》",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "granted", "{r}");
    let masked = tmp.join("settlements.jsonl");
    let o = yrd(&[
        "--data-dir",
        &dd(&zj),
        "fetch",
        "310000/sh-medical-settlement",
        "--out",
        masked.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&masked)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let id = first["insured_id_number"].as_str().unwrap();
    assert!(id.contains("********"), "masked: {id}");
    let grants = yrd(&["--data-dir", &dd(&sh), "grants", "list"]);
    assert!(
        stdout(&grants).contains("insured_id_number=keep:6:4"),
        "{}",
        stdout(&grants)
    );
    // `show` verbs print a labelled summary by default and the API's JSON with --json.
    let grant_id = r["grant"]["document"]["id"].as_str().unwrap();
    let o = yrd(&["--data-dir", &dd(&sh), "grants", "show", grant_id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("state")
            && text.contains("valid")
            && text.contains("insured_id_number=keep:6:4")
            && text.contains("sh-medical-settlement"),
        "{text}"
    );
    let o = yrd(&[
        "--data-dir",
        &dd(&zj),
        "requests",
        "show",
        r["id"].as_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("异地就医结算核验") && text.contains("granted") && text.contains(grant_id),
        "{text}"
    );
    let o = yrd(&["--data-dir", &dd(&sh), "provenance", "show", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("included in"), "{}", stdout(&o));
    let o = yrd(&["--data-dir", &dd(&sh), "--json", "provenance", "show", "0"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["record"]["seq"], 0, "{v}");
    let o = yrd(&["--data-dir", &dd(&sh), "health"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));

    // Shanghai's evidence of that delivery, checked offline by `yrd verify`.
    let bundle = tmp.join("evidence.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = yrd(&[
            "--data-dir",
            &dd(&sh),
            "--json",
            "provenance",
            "deliveries",
            "--dataset",
            "sh-medical-settlement",
        ]);
        let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
        if list.len() == 1 && list[0]["receipt_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "no receipted delivery: {list:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = yrd(&[
        "--data-dir",
        &dd(&sh),
        "provenance",
        "export",
        "--dataset",
        "sh-medical-settlement",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = yrd(&["verify", bundle.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let account = stdout(&o);
    assert!(
        account.contains("Shanghai (310000) delivered sh-medical-settlement v1")
            && account.contains("to Zhejiang (330000)"),
        "{account}"
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    let altered = tmp.join("evidence-altered.json");
    std::fs::write(
        &altered,
        text.replacen("异地就医结算核验", "统计分析用途", 1),
    )
    .unwrap();
    let o = yrd(&["verify", altered.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("DOES NOT VERIFY"), "{}", stderr(&o));

    // Every other province subscribes to Shanghai's licences: a new version reaches them all.
    let v2 = tmp.join("licences-v2.jsonl");
    let mut text = std::fs::read_to_string(&out).unwrap();
    text.truncate(text.lines().take(500).map(|l| l.len() + 1).sum());
    std::fs::write(&v2, text).unwrap();
    let published = Instant::now();
    let o = yrd(&[
        "--data-dir",
        &dd(&sh),
        "publish",
        "sh-enterprise-licence",
        v2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in ["jiangsu", "zhejiang", "anhui"] {
        loop {
            let o = yrd(&["--data-dir", &dd(&dir.join(p)), "--json", "subscriptions"]);
            let subs: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
            if subs.iter().any(|s| s["fetched_version"] == 2) {
                break;
            }
            assert!(Instant::now() < deadline, "{p} never got version 2");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "devnet: version 2 reached all three subscribers within {} ms of `yrd publish` returning",
        published.elapsed().as_millis()
    );
}

#[test]
fn doc_canon_and_verify_work_offline() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/vectors/jcs");
    let out = yrd(&[
        "doc",
        "canon",
        vectors.join("input/structures.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = std::fs::read_to_string(vectors.join("output/structures.json")).unwrap();
    assert_eq!(stdout(&out).trim_end_matches('\n'), expected);

    let published: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/vectors/signatures.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.json");
    std::fs::write(
        &good,
        serde_json::to_string(&published[0]["envelope"]).unwrap(),
    )
    .unwrap();
    let out = yrd(&["doc", "verify", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("valid "), "{}", stdout(&out));

    let mut tampered = published[0]["envelope"].clone();
    let doc = tampered["document"].as_object_mut().unwrap();
    let key = doc.keys().next().unwrap().clone();
    doc.insert(key, serde_json::json!("changed"));
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_string(&tampered).unwrap()).unwrap();
    let out = yrd(&["doc", "verify", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));

    std::fs::write(&bad, "{\"type\": ").unwrap();
    let out = yrd(&["doc", "verify", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
}

#[test]
fn schema_and_catalogue_verbs_work_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ah");
    init_with_api_port(&dir, "340000");
    let cfg = dir.join("yrd.toml");
    let d = dir.to_str().unwrap();
    let _daemon = Daemon(
        Command::new(YRD)
            .args(["--data-dir", d, "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(d);
    let std_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/datasets/elderly-care-subsidy.schema.json");
    let out = yrd(&[
        "--data-dir",
        d,
        "schema",
        "publish",
        std_file.to_str().unwrap(),
        "--id",
        "elderly-care-subsidy",
        "--version",
        "1.0.0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = yrd(&["--data-dir", d, "schema", "list"]);
    assert!(
        stdout(&out).contains("elderly-care-subsidy") && stdout(&out).contains("340000"),
        "{}",
        stdout(&out)
    );
    let out = yrd(&[
        "--data-dir",
        d,
        "--json",
        "schema",
        "show",
        "elderly-care-subsidy@1.0.0",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "schema");
    let out = yrd(&[
        "--data-dir",
        d,
        "schema",
        "publish",
        cfg.to_str().unwrap(),
        "--id",
        "x",
        "--version",
        "1.0.0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a TOML file is not a JSON Schema"
    );

    let offer = tmp.path().join("offer.toml");
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
    let out = yrd(&["--data-dir", d, "catalog", "add", offer.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Publish a version through the CLI (records generated for the standard).
    let records = yrd_node::samples::generate("elderly-care-subsidy", 50, 3).unwrap();
    let data = tmp.path().join("subsidy.jsonl");
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&data, lines).unwrap();
    let out = yrd(&[
        "--data-dir",
        d,
        "publish",
        "ah-subsidy",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("v1: 50 records"), "{}", stdout(&out));
    let out = yrd(&["--data-dir", d, "versions", "ah-subsidy"]);
    assert!(stdout(&out).contains("v1"), "{}", stdout(&out));
    let out = yrd(&[
        "--data-dir",
        d,
        "publish",
        "ah-subsidy",
        data.to_str().unwrap(),
        "--format",
        "xls",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = yrd(&["--data-dir", d, "catalog", "show"]);
    assert!(
        stdout(&out).contains("ah-subsidy") && stdout(&out).contains("有条件共享"),
        "{}",
        stdout(&out)
    );
    let out = yrd(&[
        "--data-dir",
        d,
        "--json",
        "catalog",
        "search",
        "--text",
        "养老",
        "--region",
        "340000",
    ]);
    let hits: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits.len(), 1);
    let out = yrd(&["--data-dir", d, "catalog", "export", "--format", "csv"]);
    assert!(stdout(&out).contains("信息资源代码") && stdout(&out).contains("340000-MZT-00005"));
    let out = yrd(&["--data-dir", d, "catalog", "export", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    let bad_offer = tmp.path().join("bad.json");
    std::fs::write(&bad_offer, r#"{"identifier": "x", "title": "t"}"#).unwrap();
    let out = yrd(&[
        "--data-dir",
        d,
        "catalog",
        "add",
        bad_offer.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing field"), "{}", stderr(&out));

    let withheld = tmp.path().join("w.json");
    std::fs::write(&withheld, r#"{"identifier": "ah-dibao", "title": "低保对象明细", "reason": "涉及个人隐私", "legal_basis": "《个人信息保护法》"}"#).unwrap();
    assert!(
        yrd(&[
            "--data-dir",
            d,
            "withheld",
            "add",
            withheld.to_str().unwrap()
        ])
        .status
        .success()
    );
    let out = yrd(&["--data-dir", d, "catalog", "remove", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        yrd(&["--data-dir", d, "catalog", "remove", "ah-subsidy"])
            .status
            .success()
    );
    let out = yrd(&["--data-dir", d, "--json", "catalog", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["offers"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["withheld"].as_array().map(Vec::len), Some(1));
    assert!(v["signed"]["document"]["sequence"].as_u64().unwrap_or(0) >= 4);
}

#[test]
fn openapi_prints_the_checked_in_document_offline() {
    let out = yrd(&["openapi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/api/openapi.json"
    ))
    .unwrap();
    assert_eq!(stdout(&out), checked_in);
}
