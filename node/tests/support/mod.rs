//! What the black-box tests of the `yrd` binary share (`cli.rs`, `crash.rs`): running it, reading
//! its answers, child processes killed when dropped, and polling a condition with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses some; tests may panic

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

pub const YRD: &str = env!("CARGO_BIN_EXE_yrd");
/// How long a wait gives a daemon or the devnet.
pub const WAIT: Duration = Duration::from_secs(30);

/// Runs `yrd ARGS…` with no data dir, config or log filter from the environment.
pub fn yrd(args: &[&str]) -> Output {
    Command::new(YRD)
        .args(args)
        .env_remove("YRD_DATA_DIR")
        .env_remove("YRD_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run yrd")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that `o` succeeded; returns its standard output.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
}

/// The `--json` answer of a successful command, as the view type it is.
pub fn json<T: DeserializeOwned>(o: &Output) -> T {
    ok(o);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// A path argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `yrd --data-dir DIR ARGS…`.
pub fn on(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--data-dir", arg(dir)];
    all.extend_from_slice(args);
    yrd(&all)
}

/// Polls `check` every 100 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process, killed when dropped (also when a test panics).
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Sends `sig` (a name: TERM, INT, HUP) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {sig}");
    }

    /// Waits for it to exit.
    pub fn wait_exit(&mut self, what: &str) -> ExitStatus {
        wait_until(what, WAIT, || self.0.try_wait().unwrap())
    }
}
