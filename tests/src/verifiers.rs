//! The two offline evidence verifiers, run on a bundle file the way a bureau runs them:
//! `yrd verify` (this build's binary) and `scripts/verify_evidence.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

/// The `yrd` binary of this build (target/debug/yrd beside the test's deps directory), built
/// if it is not there yet.
pub fn yrd() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("no target directory above {}", exe.display()))?;
    let bin = dir.join(format!("yrd{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-q", "-p", "yrd-node", "--bin", "yrd"])
            .status()?;
        anyhow::ensure!(built.success(), "cargo build of yrd failed");
    }
    Ok(bin)
}

/// `yrd verify FILE`: its exit status and standard output.
pub fn yrd_verify(file: &Path) -> Result<(bool, String)> {
    let out = Command::new(yrd()?).arg("verify").arg(file).output()?;
    Ok((
        out.status.success(),
        String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?,
    ))
}

/// `python3 scripts/verify_evidence.py FILE`'s output, or `None` when its modules are missing
/// (scripts/test.sh installs them and compares the published vectors itself).
pub fn python_verify(file: &Path) -> Result<Option<(bool, String)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_evidence.py");
    let out = Command::new("python3").arg(script).arg(file).output()?;
    if out.status.code() == Some(2) {
        return Ok(None);
    }
    Ok(Some((
        out.status.success(),
        String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?,
    )))
}

/// Both verifiers accept the bundle in `file` (`what` names it in a failure) and, where the
/// Python one can run, print the same account; returns `yrd verify`'s.
pub fn both_accept(file: &Path, what: &str) -> Result<String> {
    let (ok, out) = yrd_verify(file)?;
    anyhow::ensure!(ok, "yrd verify of {what}: {out}");
    if let Some((ok, python)) = python_verify(file)? {
        anyhow::ensure!(ok, "python verifier of {what}: {python}");
        anyhow::ensure!(
            python == out,
            "the two verifiers print different accounts of {what}:\n{out}\n---\n{python}"
        );
    }
    Ok(out)
}
