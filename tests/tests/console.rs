//! The web console in a real browser: headless Chromium driven over the W3C WebDriver protocol
//! (chromedriver, plain HTTP with reqwest), against a two-node devnet. The requester logs in
//! (after a wrong token is refused), finds the provider's conditional offer in the network
//! catalogue and requests it; the provider approves with a mask on one field; the requester
//! fetches and sees the transfer complete; the provider sees the delivery in its provenance
//! timeline and deliveries report and downloads the evidence bundle; on the queries page the
//! requester makes a verify call that is found and one that is not (and a lookup its grant
//! refuses), and the provider's call log by key lists them.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`); without them the test is skipped, unless `YRD_REQUIRE_BROWSER=1`, which
//! makes it fail. `YRD_CONSOLE_SCREENSHOTS=DIR` saves PNGs of the main pages in DIR (a relative
//! DIR is taken from the workspace root), as checked in under `docs/console/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tempfile::TempDir;
use yrd_node::api::exchange::ApproveBody;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::charter::SignedCharter;
use yrd_node::model::message::RequestStatus;
use yrd_node::model::provenance::ProvenanceRecord;
use yrd_node::model::provenance::{EvidenceBundle, RecordKind};
use yrd_node::model::query::{AccessMode, FieldValue};
use yrd_node::node::access::{Direction, GrantState};
use yrd_node::node::transfer::TransferStatus;
use yrd_tests::charter::{founders, genesis, member};
use yrd_tests::fixtures::{
    COND, COND_CONDITIONS, DEMAND, FIELDS, SECRET, SECRET_REASON, STANDARD, WITHHELD,
    WITHHELD_REASON, offer, provider, publish_sample_version, request_body,
};
use yrd_tests::{TestNet, WAIT, wait_until};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of a web element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page gives it.
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// The field the provider masks.
const MASKED: &str = "legal_representative_id_number";
/// The provider's conditional offer with a query service (query key `uscc`).
const QUERIED: &str = "sh-query";
/// The purpose the requester states for its queries.
const QUERY_PURPOSE: &str = "企业开办资格核验";

// ------------------------------------------------------------------------------------------------
// A minimal WebDriver client

/// chromedriver and one browser session; ended on drop (session deleted, driver killed), also
/// when the test fails or panics.
struct Browser {
    http: reqwest::Client,
    driver_addr: SocketAddr,
    session: String,
    driver: Child,
    _profile: TempDir,
    downloads: TempDir,
    shots: Option<PathBuf>,
    ended: bool,
}

impl Browser {
    async fn start(shots: Option<PathBuf>) -> Result<Browser> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let driver_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so the browsers it starts can be ended with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let downloads = tempfile::tempdir()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut browser = Browser {
            http,
            driver_addr,
            session: String::new(),
            driver,
            _profile: profile,
            downloads,
            shots,
            ended: false,
        };
        // Wait for the driver to listen.
        wait_until(
            &format!("chromedriver to listen on port {port}"),
            PAGE_WAIT,
            || async {
                let status = browser
                    .http
                    .get(format!("http://{driver_addr}/status"))
                    .send()
                    .await?;
                Ok(status.status().is_success())
            },
        )
        .await?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                    "--no-proxy-server", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                    "--window-size=1280,900",
                ],
                "prefs": {
                    "download.default_directory": browser.downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let answer = browser.raw("POST", "/session", Some(caps)).await?;
        browser.session = answer["sessionId"]
            .as_str()
            .context("no sessionId in the new session answer")?
            .to_string();
        Ok(browser)
    }

    /// One WebDriver command; its `value`, or an error naming the WebDriver error.
    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("http://{}{path}", self.driver_addr);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!(
                "webdriver {method} {path}: {} ({})",
                answer["value"]["error"],
                answer["value"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
        }
        Ok(answer["value"].clone())
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await?;
        Ok(())
    }

    async fn find_all(&self, css: &str) -> Result<Vec<String>> {
        let found = self
            .cmd(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn text(&self, element: &str) -> Result<String> {
        Ok(self
            .cmd("GET", &format!("/element/{element}/text"), None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    async fn displayed(&self, element: &str) -> Result<bool> {
        Ok(self
            .cmd("GET", &format!("/element/{element}/displayed"), None)
            .await?
            .as_bool()
            .unwrap_or(false))
    }

    async fn click(&self, element: &str) -> Result<()> {
        self.cmd("POST", &format!("/element/{element}/click"), None)
            .await?;
        Ok(())
    }

    async fn clear(&self, element: &str) -> Result<()> {
        self.cmd("POST", &format!("/element/{element}/clear"), None)
            .await?;
        Ok(())
    }

    async fn type_text(&self, element: &str, text: &str) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await?;
        Ok(())
    }

    async fn script(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until a displayed element matches `css` and its text contains every one of
    /// `texts`; returns it. A timeout says what the last such element and the page said.
    async fn wait_for(&self, css: &str, texts: &[&str]) -> Result<String> {
        let last = std::sync::Mutex::new(String::new());
        let found = wait_until(&format!("{css} with {texts:?}"), PAGE_WAIT, || async {
            // Elements go stale when the page re-renders: any error means "not yet".
            for element in self.find_all(css).await? {
                let Ok(true) = self.displayed(&element).await else {
                    continue;
                };
                let Ok(text) = self.text(&element).await else {
                    continue;
                };
                if texts.iter().all(|t| text.contains(t)) {
                    return Ok(Some(element));
                }
                if let Ok(mut l) = last.lock() {
                    *l = text;
                }
            }
            Ok(None)
        })
        .await;
        match found {
            Ok(element) => Ok(element),
            Err(e) => {
                let page = self
                    .script("return document.body.innerText", json!([]))
                    .await
                    .unwrap_or_default();
                let page: String = page
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(1500)
                    .collect();
                let last = last.lock().map(|l| l.clone()).unwrap_or_default();
                Err(e.context(format!(
                    "the last such element said {last:?}; the page says: {page}"
                )))
            }
        }
    }

    /// Waits for `css` and clicks it.
    async fn click_on(&self, css: &str) -> Result<()> {
        let element = self.wait_for(css, &[]).await?;
        self.click(&element).await
    }

    /// Waits for the input `css`, empties it and types `text`.
    async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let element = self.wait_for(css, &[]).await?;
        self.clear(&element).await?;
        self.type_text(&element, text).await
    }

    /// Saves a PNG of the page as `name`.png when screenshots were asked for: the whole page,
    /// 1280 px wide (the viewport is stretched to the page's height through DevTools).
    async fn shot(&self, name: &str) -> Result<()> {
        let Some(dir) = &self.shots else {
            return Ok(());
        };
        let height = self
            .script(
                "return Math.ceil(document.documentElement.scrollHeight)",
                json!([]),
            )
            .await?
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 4000);
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        // Let layout settle at the new size (two animation frames).
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));", "args": []})),
        )
        .await?;
        let png = self.cmd("GET", "/screenshot", None).await;
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await?;
        let png = png?;
        let bytes = base64_decode(png.as_str().context("screenshot is not a string")?)?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{name}.png")), bytes)?;
        Ok(())
    }

    /// A Chrome DevTools command, through chromedriver.
    async fn cdp(&self, command: &str, params: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
        .await
    }

    /// The browser's console messages since the last call (chromedriver's log endpoint).
    async fn console_log(&self) -> Result<Vec<String>> {
        let entries = self
            .cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .await?;
        Ok(entries
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ends the session (the browser quits) and the driver.
    async fn quit(mut self) {
        if !self.session.is_empty() {
            let _ = self.cmd("DELETE", "", None).await;
            self.session.clear();
        }
        self.end_driver();
    }

    fn end_driver(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Whatever chromedriver started and left behind is in its process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // No runtime to rely on here: a plain HTTP DELETE.
            let _ = delete_session_blocking(self.driver_addr, &self.session);
        }
        self.end_driver();
    }
}

fn delete_session_blocking(addr: SocketAddr, session: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Ok(())
}

/// Standard base64 (screenshots), without a crate for it.
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => bail!("not base64: {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Every console asset is served without the token, with its type and the CSP.
async fn check_assets(base: &str) -> Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    for (path, content_type) in yrd_node::console::PATHS {
        let r = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers();
        assert_eq!(headers["content-type"], *content_type, "{path}");
        assert_eq!(
            headers["content-security-policy"],
            yrd_node::console::CSP,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    // The API itself still wants the token.
    let r = http.get(format!("{base}/api/v1/node")).send().await?;
    assert_eq!(r.status(), 401);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The test

/// Whether chromium or chromedriver is missing (the test is then skipped, said on stderr); an
/// error instead when `YRD_REQUIRE_BROWSER=1`.
fn browser_missing() -> Result<bool> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        if std::env::var("YRD_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            bail!(
                "{missing:?} not found and YRD_REQUIRE_BROWSER=1: apt-get install chromium \
                 chromium-driver"
            );
        }
        eprintln!(
            "console browser test skipped: {missing:?} not found (apt-get install chromium \
             chromium-driver; YRD_REQUIRE_BROWSER=1 makes this a failure)"
        );
        return Ok(true);
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_drives_a_conditional_exchange_in_a_real_browser() -> Result<()> {
    if browser_missing()? {
        return Ok(());
    }
    let shots = std::env::var_os("YRD_CONSOLE_SCREENSHOTS").map(|d| {
        let d = PathBuf::from(d);
        if d.is_absolute() {
            d
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(d)
        }
    });
    let started = Instant::now();
    let mut net = TestNet::meshed(2).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 200).await?;
    eprintln!("devnet ready in {:?}", started.elapsed());

    let browser = Browser::start(shots).await?;
    let outcome = flow(&net, &browser).await;
    browser.quit().await;
    net.stop_all().await?;
    eprintln!("console test took {:?}", started.elapsed());
    outcome
}

async fn flow(net: &TestNet, b: &Browser) -> Result<()> {
    let (sh_node, js_node) = (&net.nodes[0], &net.nodes[1]);
    let sh_url = sh_node.api_url()?;
    let js_url = js_node.api_url()?;
    let sh_api = sh_node.api()?;
    let js_api = js_node.api()?;
    let sh_peer = sh_node.peer_id().to_string();
    let js_peer = js_node.peer_id().to_string();
    check_assets(&js_url).await?;

    // --- Requester (Jiangsu): a wrong token is refused with the API's message, then log in.
    b.goto(&format!("{js_url}/")).await?;
    b.wait_for("#login-form", &["YRD"]).await?;
    b.fill("#login-token", "not-the-admin-token").await?;
    b.click_on("#login-submit").await?;
    b.wait_for(
        "#login-error",
        &["令牌被拒绝", "missing or wrong bearer token"],
    )
    .await?;
    b.shot("login").await?;
    b.fill("#login-token", &js_node.token()?).await?;
    b.click_on("#login-submit").await?;
    b.wait_for("[data-testid=node-id]", &[&js_peer]).await?;
    b.wait_for("[data-testid=node-region]", &["320000"]).await?;
    // Peers grouped by region: Shanghai's node, verified.
    b.wait_for("[data-testid=peer-group]", &["310000", &sh_peer[..20]])
        .await?;
    let stored = b
        .script(
            "return [sessionStorage.getItem('yrd.console.token') !== null, JSON.stringify(localStorage)]",
            json!([]),
        )
        .await?;
    assert_eq!(stored[0], true, "the token is kept in sessionStorage");
    assert!(
        !stored[1]
            .as_str()
            .unwrap_or_default()
            .contains(&js_node.token()?),
        "the token must not reach localStorage"
    );
    assert_eq!(
        b.script("return document.documentElement.lang", json!([]))
            .await?,
        "zh-CN"
    );
    b.shot("overview").await?;

    // --- Search the network catalogue for the conditional offer and request it.
    b.click_on("#nav-catalogue").await?;
    b.wait_for("tr[data-testid=hit][data-dataset=sh-open]", &["无条件共享"])
        .await?;
    b.wait_for(
        &format!("tr[data-testid=hit][data-dataset={SECRET}]"),
        &["不予共享", SECRET_REASON],
    )
    .await?;
    b.fill("#search-text", "营业执照").await?;
    b.click_on("#search-share-type option[value=conditional]")
        .await?;
    b.click_on("[data-testid=search-submit]").await?;
    let hit = "tr[data-testid=hit][data-dataset=sh-cond]";
    b.wait_for(hit, &["310000", "有条件共享", COND_CONDITIONS, "v1"])
        .await?;
    b.wait_for("[data-testid=search-count]", &["1"]).await?;
    assert!(
        b.find_all("tr[data-testid=hit][data-dataset=sh-open]")
            .await?
            .is_empty(),
        "the share type filter leaves out the unconditional offer"
    );
    b.click_on(&format!("{hit} [data-testid=request-open]"))
        .await?;
    b.wait_for("[data-testid=request-form]", &["sh-cond"])
        .await?;
    b.fill("[data-testid=request-purpose]", "跨省通办企业开办材料核验")
        .await?;
    b.fill(
        "[data-testid=request-basis]",
        "《优化营商环境条例》第三十七条",
    )
    .await?;
    b.click_on("[data-testid=request-form] [data-testid=fields-none]")
        .await?;
    for f in FIELDS {
        b.click_on(&format!(
            "[data-testid=request-form] [data-testid=field-{f}]"
        ))
        .await?;
    }
    b.shot("catalogue").await?;
    b.click_on("[data-testid=request-submit]").await?;
    b.wait_for("[data-testid=flash-ok]", &["sh-cond", "待审批"])
        .await?;
    b.wait_for(&format!("{hit} [data-testid=request-pending]"), &[])
        .await?;
    let sent = js_api.requests(Some(Direction::Out), None).await?;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].status, RequestStatus::Pending);
    assert_eq!(sent[0].request.document.fields, FIELDS);
    let request_id = sent[0].id.clone();

    // --- Provider (Shanghai): log in, open the pending request, approve with a mask.
    b.goto(&format!("{sh_url}/#/requests?status=pending"))
        .await?;
    b.fill("#login-token", &sh_node.token()?).await?;
    b.click_on("#login-submit").await?;
    let row = format!("tr[data-testid=request-in][data-id='{request_id}']");
    b.wait_for(
        &row,
        &["sh-cond", "跨省通办企业开办材料核验", "320000", "待审批"],
    )
    .await?;
    b.click_on(&format!("{row} [data-testid=approve-open]"))
        .await?;
    b.wait_for("[data-testid=approve-form]", &[MASKED]).await?;
    b.click_on(&format!(
        "[data-testid=approve-form] [data-testid=mask-{MASKED}] option[value=keep]"
    ))
    .await?;
    b.fill(&format!("[data-testid=mask-first-{MASKED}]"), "6")
        .await?;
    b.fill(&format!("[data-testid=mask-last-{MASKED}]"), "4")
        .await?;
    b.fill("[data-testid=approve-expires]", "30d").await?;
    b.shot("requests-approve").await?;
    b.click_on("[data-testid=approve-submit]").await?;
    b.wait_for("[data-testid=flash-ok]", &["已签发授权"])
        .await?;
    // Decided: it left the pending filter; every request shows it granted, masks in words.
    b.wait_for("[data-testid=requests-in-none]", &[]).await?;
    b.click_on("[data-testid=filter-all]").await?;
    b.wait_for(
        &format!("tr[data-testid=request-in][data-id='{request_id}'][data-status=granted]"),
        &["已批准", "保留前 6 后 4"],
    )
    .await?;
    let issued = sh_api.grants(Some(Direction::Out)).await?;
    assert_eq!(issued.len(), 1, "{issued:?}");
    let grant = &issued[0].record.grant.document;
    assert_eq!(grant.fields, FIELDS);
    // The name, granted without a rule, takes its standard's default.
    assert_eq!(
        grant.masks,
        vec![
            format!("{MASKED}=keep:6:4").parse()?,
            "legal_representative=keep:1:0".parse()?
        ]
    );
    let grant_id = issued[0].record.id.clone();

    // --- Requester: the grant arrived; fetch from the catalogue hit; the transfer completes.
    wait_until("the grant reaches the requester", WAIT, || async {
        let held = js_api.grants(Some(Direction::In)).await?;
        Ok(held
            .iter()
            .any(|g| g.record.id == grant_id && g.state == GrantState::Valid))
    })
    .await?;
    b.goto(&format!("{js_url}/#/catalogue?text=sh-cond"))
        .await?;
    b.wait_for(
        &format!("{hit} [data-testid=grant-held]"),
        &[&grant_id[..8]],
    )
    .await?;
    b.click_on(&format!("{hit} [data-testid=fetch]")).await?;
    // The page moves to the transfers, which refresh themselves until the fetch is done.
    b.wait_for("[data-testid=flash-ok]", &["sh-cond"]).await?;
    b.wait_for(
        "tr[data-testid=transfer][data-dataset=sh-cond][data-status=done]",
        &["已完成", "脱敏交付", "100%", "310000"],
    )
    .await?;
    b.wait_for("[data-testid=no-refresh]", &[]).await?;
    b.shot("transfers").await?;
    let transfers = js_api.transfers().await?;
    let fetched = transfers
        .iter()
        .find(|t| t.dataset == COND && t.direction == Direction::In)
        .ok_or_else(|| anyhow!("no fetch of sh-cond: {transfers:?}"))?;
    assert_eq!(fetched.status, TransferStatus::Done, "{fetched:?}");
    assert!(fetched.derived, "{fetched:?}");
    assert_eq!(fetched.grant.as_deref(), Some(grant_id.as_str()));
    // The grant it held, and a subscription added and removed.
    b.goto(&format!("{js_url}/#/grants")).await?;
    b.wait_for(
        &format!("tr[data-testid=grant-in][data-id='{grant_id}'][data-state=valid]"),
        &["sh-cond", "有效", "保留前 6 后 4"],
    )
    .await?;
    b.goto(&format!("{js_url}/#/subscriptions")).await?;
    b.fill("[data-testid=subscribe-target]", "310000/sh-open")
        .await?;
    b.click_on("[data-testid=subscribe-submit]").await?;
    let subscription = "tr[data-testid=subscription][data-dataset=sh-open]";
    b.wait_for(subscription, &["310000"]).await?;
    b.click_on(&format!("{subscription} [data-testid=unsubscribe]"))
        .await?;
    b.wait_for("[data-testid=subscriptions-none]", &[]).await?;
    let subscriptions = js_api.subscriptions().await?;
    assert!(subscriptions.is_empty(), "{subscriptions:?}");

    // --- Provider: the delivery in the provenance timeline and the deliveries report.
    wait_until("the receipt reaches the provider", WAIT, || async {
        let d = sh_api.deliveries(COND).await?;
        Ok(d.len() == 1 && d[0].receipt_at.is_some())
    })
    .await?;
    b.goto(&format!(
        "{sh_url}/#/provenance?kind=delivery-served&dataset=sh-cond"
    ))
    .await?;
    b.wait_for(
        "li[data-testid=record][data-kind=delivery-served][data-dataset=sh-cond]",
        &[
            "完成数据交付",
            "320000",
            "跨省通办企业开办材料核验",
            &js_peer[..16],
        ],
    )
    .await?;
    b.wait_for("[data-testid=prov-count]", &["1"]).await?;
    b.goto(&format!("{sh_url}/#/provenance")).await?;
    b.wait_for(
        "li[data-testid=record][data-kind=receipt-received]",
        &["收到签收回执", "sh-cond"],
    )
    .await?;
    b.wait_for(
        "li[data-testid=record][data-kind=grant-issued]",
        &["sh-cond"],
    )
    .await?;
    b.shot("provenance").await?;
    b.goto(&format!("{sh_url}/#/deliveries?dataset=sh-cond"))
        .await?;
    b.wait_for(
        "tr[data-testid=delivery]",
        &[
            "320000",
            "v1",
            "跨省通办企业开办材料核验",
            "keep first 6 last 4",
            &grant_id[..8],
        ],
    )
    .await?;
    b.wait_for("tr[data-testid=delivery] [data-testid=receipt]", &["#"])
        .await?;
    // What left: the whole file, closed by the receiver, counted in chunks.
    b.wait_for(
        "tr[data-testid=delivery] [data-testid=sent] [data-testid=sent-whole]",
        &["完整发送"],
    )
    .await?;
    b.wait_for("tr[data-testid=delivery] [data-testid=sent]", &["1/1 块"])
        .await?;
    b.shot("deliveries").await?;
    // The evidence bundle of the dataset, downloaded as a file.
    b.click_on("[data-testid=deliveries-export]").await?;
    b.wait_for("[data-testid=flash-ok]", &["evidence-sh-cond.json"])
        .await?;
    let saved = b.downloads.path().join("evidence-sh-cond.json");
    wait_until("the evidence bundle is downloaded", WAIT, || async {
        Ok(saved.exists())
    })
    .await?;
    let bundle: EvidenceBundle = serde_json::from_slice(&std::fs::read(&saved)?)?;
    let kinds: Vec<RecordKind> = bundle.entries.iter().map(|e| e.record.kind).collect();
    assert!(kinds.contains(&RecordKind::DeliveryServed), "{kinds:?}");

    // --- Query services: a verify call found and one not found, a refused lookup, and the
    // provider's call log by key.
    queries(net, b).await?;

    // --- Provider: the grant it issued, its standard, no alarm; its lists; then English, then
    // log out.
    b.goto(&format!("{sh_url}/#/grants")).await?;
    b.wait_for(
        &format!("tr[data-testid=grant-out][data-id='{grant_id}'][data-state=valid]"),
        &["sh-cond", "320000"],
    )
    .await?;
    b.goto(&format!("{sh_url}/#/schemas?id={STANDARD}")).await?;
    b.wait_for("[data-testid=schema-doc]", &[STANDARD, "1.0.0", MASKED])
        .await?;
    b.goto(&format!("{sh_url}/#/alarms")).await?;
    b.wait_for("[data-testid=alarms-none]", &[]).await?;
    b.goto(&format!("{sh_url}/#/lists")).await?;
    b.wait_for("tr[data-testid=offer][data-id=sh-cond]", &["有条件共享"])
        .await?;
    b.wait_for(&format!("tr[data-testid=demand][data-id={DEMAND}]"), &[])
        .await?;
    b.wait_for(
        &format!("tr[data-testid=withheld][data-id={WITHHELD}]"),
        &[WITHHELD_REASON],
    )
    .await?;
    b.shot("lists").await?;
    b.click_on("#lang option[value=en]").await?;
    b.wait_for("#nav-lists", &["Our lists"]).await?;
    b.wait_for("tr[data-testid=offer][data-id=sh-cond]", &["Conditional"])
        .await?;
    assert_eq!(
        b.script("return document.documentElement.lang", json!([]))
            .await?,
        "en"
    );
    b.click_on("#logout").await?;
    b.wait_for("#login-error", &["Logged out"]).await?;
    assert_eq!(
        b.script(
            "return sessionStorage.getItem('yrd.console.token')",
            json!([])
        )
        .await?,
        Value::Null
    );

    // No CSP violation, script error or missing asset on the way (a 401 is the wrong token's,
    // the 502 of /api/v1/query the provider's refusal of the lookup).
    let log = b
        .console_log()
        .await
        .context("reading the browser's console log (chromedriver's /se/log)")?;
    let bad: Vec<&String> = log
        .iter()
        .filter(|m| {
            m.contains("SEVERE")
                && !m.contains("401")
                && !(m.contains("/api/v1/query ") && m.contains("502"))
        })
        .collect();
    assert!(bad.is_empty(), "browser console errors: {bad:#?}");
    Ok(())
}

/// Shanghai offers [`QUERIED`] with query key `uscc` and grants Jiangsu verify only. On
/// Jiangsu's queries page: a verify of an existing licence (number and name) is found and
/// matches field by field, a verify of an unknown number is a signed "not found", a lookup
/// under the verify-only grant is refused with its code. On Shanghai's call log: the calls
/// about each key, with caller region, mode, purpose and outcome, as its log holds them.
async fn queries(net: &TestNet, b: &Browser) -> Result<()> {
    let (sh_node, js_node) = (&net.nodes[0], &net.nodes[1]);
    let (sh_url, js_url) = (sh_node.api_url()?, js_node.api_url()?);
    let (sh_api, js_api) = (sh_node.api()?, js_node.api()?);
    let dir = tempfile::tempdir()?;
    let mut o = offer(
        QUERIED,
        STANDARD,
        ShareType::Conditional,
        Some(COND_CONDITIONS),
    );
    o.query_keys = vec!["uscc".into()];
    sh_api.add_offer(&o).await?;
    let (file, _) = publish_sample_version(&sh_api, dir.path(), QUERIED, STANDARD, 50, 3).await?;
    net.wait_catalogue_of(0).await?;
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&file)?
            .lines()
            .next()
            .context("no record published")?,
    )?;
    let uscc = first["uscc"].as_str().context("no uscc")?.to_string();
    let name = first["enterprise_name"]
        .as_str()
        .context("no enterprise_name")?
        .to_string();
    let unknown = "91310000ZZZZZZZZ0X";
    let approval = ApproveBody {
        fields: None,
        masks: Vec::new(),
        expires: None,
        modes: vec![AccessMode::Verify],
        query_limits: None,
    };
    let grant = yrd_tests::fixtures::grant(
        &sh_api,
        &js_api,
        &request_body(QUERIED, "跨省通办企业开办材料核验", &FIELDS),
        &approval,
    )
    .await?;
    let grant_id = grant.document.id.clone();

    // --- Requester: verify an existing licence, number and name.
    b.goto(&format!("{js_url}/#/queries")).await?;
    b.wait_for("#nav-queries", &["数据核验"]).await?;
    b.wait_for("[data-testid=query-form]", &[]).await?;
    b.fill("[data-testid=query-target]", &format!("310000/{QUERIED}"))
        .await?;
    b.fill(
        "[data-testid=query-key]",
        &format!("uscc={uscc}; enterprise_name={name}"),
    )
    .await?;
    b.fill("[data-testid=query-purpose]", QUERY_PURPOSE).await?;
    b.click_on("[data-testid=query-submit]").await?;
    b.wait_for(
        "[data-testid=query-answer][data-found=true][data-mode=verify][data-matched=true]",
        &[
            "存在",
            "一致",
            "uscc ✓",
            "enterprise_name ✓",
            QUERIED,
            "v1",
            &grant_id[..8],
        ],
    )
    .await?;
    b.shot("queries").await?;
    // --- An unknown number: the provider signs "not found".
    b.fill("[data-testid=query-key]", &format!("uscc={unknown}"))
        .await?;
    b.click_on("[data-testid=query-submit]").await?;
    b.wait_for(
        "[data-testid=query-answer][data-found=false][data-mode=verify]",
        &["不存在", "uscc ✗"],
    )
    .await?;
    // --- A lookup under the verify-only grant: refused, with the provider's code.
    b.click_on("[data-testid=query-mode] option[value=lookup]")
        .await?;
    b.fill("[data-testid=query-key]", &format!("uscc={uscc}"))
        .await?;
    b.fill("[data-testid=query-grant]", &grant_id).await?;
    b.click_on("[data-testid=query-submit]").await?;
    b.wait_for(
        "[data-testid=query-refused][data-code=mode-not-granted]",
        &["mode-not-granted"],
    )
    .await?;
    // The key values stayed out of the page's address.
    let href = b.script("return location.href", json!([])).await?;
    let href = href.as_str().unwrap_or_default();
    assert!(!href.contains(&uscc) && !href.contains(unknown), "{href}");

    // --- Provider: the call log of each key, as its log holds it.
    let sh = sh_node.node()?;
    let calls = |value: &str| -> Result<Vec<ProvenanceRecord>> {
        Ok(sh.provenance_query_calls(
            QUERIED,
            &FieldValue {
                field: "uscc".into(),
                value: value.into(),
            },
            None,
        )?)
    };
    let found_calls = wait_until("the provider logs the calls", WAIT, || async {
        let list = calls(&uscc)?;
        Ok((list.len() >= 2 && calls(unknown)?.len() == 1).then_some(list))
    })
    .await?;
    let kinds: Vec<RecordKind> = found_calls.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [RecordKind::QueryAnswered, RecordKind::QueryRefused],
        "{found_calls:?}"
    );
    b.goto(&format!("{sh_url}/#/queries?tab=log")).await?;
    b.wait_for("[data-testid=calls-form]", &[]).await?;
    b.fill("[data-testid=calls-dataset]", QUERIED).await?;
    b.fill("[data-testid=calls-key]", &format!("uscc={uscc}"))
        .await?;
    b.click_on("[data-testid=calls-submit]").await?;
    b.wait_for("[data-testid=calls-count]", &["2"]).await?;
    b.wait_for(
        "tr[data-testid=call][data-kind=query-answered][data-mode=verify]",
        &["320000", "核验", QUERY_PURPOSE, "已应答", "查得", "v1"],
    )
    .await?;
    b.wait_for(
        "tr[data-testid=call][data-kind=query-refused][data-mode=lookup]",
        &["320000", "查询", "已拒绝"],
    )
    .await?;
    b.shot("queries-log").await?;
    b.fill("[data-testid=calls-key]", &format!("uscc={unknown}"))
        .await?;
    b.click_on("[data-testid=calls-submit]").await?;
    b.wait_for("[data-testid=calls-count]", &["1"]).await?;
    // Its one call: answered "not found" (the key itself is in no record).
    b.wait_for(
        "tr[data-testid=call][data-kind=query-answered][data-mode=verify]",
        &["320000", QUERY_PURPOSE, "已应答", "查无此记录"],
    )
    .await?;
    // A key nobody asked about: no call.
    b.fill("[data-testid=calls-key]", "uscc=91310000AAAAAAAA0X")
        .await?;
    b.click_on("[data-testid=calls-submit]").await?;
    b.wait_for("[data-testid=calls-none]", &[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_the_charter_and_signs_a_proposal() -> Result<()> {
    if browser_missing()? {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let keys: Vec<NodeKey> = (0..2).map(|_| NodeKey::generate()).collect();
    let members = vec![member(&keys[0], 310000, 1)?, member(&keys[1], 320000, 2)?];
    let mut g = SignedCharter::draft(genesis(members, 2));
    for k in &keys {
        g.sign(k.signing_key())?;
    }
    let nodes = founders(root.path(), &keys, &g).await?;
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;
    let browser = Browser::start(None).await?;
    let outcome = charter_flow(&net, &g, &browser).await;
    browser.quit().await;
    net.stop_all().await?;
    outcome
}

/// Shanghai's operator sees the members by region and a proposal lacking both signatures, signs
/// it with the button; once Jiangsu signs too it is applied and the history shows version 2.
async fn charter_flow(net: &TestNet, g: &SignedCharter, b: &Browser) -> Result<()> {
    use yrd_node::model::charter::{Change, Role};
    let node = &net.nodes[0];
    let url = node.api_url()?;
    let mut city = member(&NodeKey::generate(), 320500, 9)?;
    city.role = Role::Member;
    let v2 = g.document.next(
        &[Change::AddMember(city)],
        "2026-02-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?;
    let digest = net
        .api(0)?
        .submit_proposal(&SignedCharter::draft(v2))
        .await?
        .digest;
    b.goto(&format!("{url}/")).await?;
    b.fill("#login-token", &node.token()?).await?;
    b.click_on("#login-submit").await?;
    b.wait_for("[data-testid=node-id]", &[]).await?;
    b.goto(&format!("{url}/#/federation")).await?;
    b.wait_for(
        "[data-testid=federation-state]",
        &["测试联盟", "有效", "2 名创始成员"],
    )
    .await?;
    b.wait_for(
        "table[data-testid=members]",
        &["310000", "320000", "创始成员"],
    )
    .await?;
    b.wait_for("tr[data-testid=proposal]", &[&digest[..16], "0 of the 2"])
        .await?;
    b.click_on("[data-testid=proposal-sign]").await?;
    b.wait_for("[data-testid=flash-ok]", &[&digest[..16]])
        .await?;
    b.wait_for("tr[data-testid=proposal]", &["1 of the 2"])
        .await?;
    // Jiangsu signs on its own node: the proposal is applied on both.
    let js = net.api(1)?;
    wait_until("Jiangsu holds the signed proposal", WAIT, || async {
        Ok(js
            .proposals()
            .await?
            .iter()
            .any(|p| p.digest == digest && p.signers.len() == 1))
    })
    .await?;
    js.sign_proposal(&digest).await?;
    let sh = net.api(0)?;
    wait_until("version 2 in force in Shanghai", WAIT, || async {
        Ok(sh.federation().await?.charter.version == 2)
    })
    .await?;
    b.goto(&format!("{url}/#/overview")).await?;
    b.goto(&format!("{url}/#/federation")).await?;
    b.wait_for("[data-testid=proposals-none]", &[]).await?;
    b.wait_for("tr[data-testid=charter-version]", &["2", &digest[..16]])
        .await?;
    b.wait_for("table[data-testid=members]", &["320500"])
        .await?;
    Ok(())
}
