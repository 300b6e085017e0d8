//! Shared output of the verbs: pretty JSON for `--json`, the progress line of a long call, and
//! the short form of peer ids in tables (tables themselves are `table`).

use super::{Cli, CliError};
use crate::identity::short_peer;

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Awaits `work` (one long API call); on a terminal, and without `--json`, a line on standard
/// error shows what is being done and the seconds so far, and is cleared when it ends.
pub(crate) async fn with_progress<T>(
    cli: &Cli,
    label: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    if cli.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return work.await;
    }
    let label = label.to_string();
    let ticker = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            eprint!("\r{label} … {}s ", started.elapsed().as_secs());
        }
    });
    let out = work.await;
    ticker.abort();
    eprint!("\r\x1b[K");
    out
}

/// A peer id as tables show it (its tail); anything else that is not a peer id, its first 12
/// characters.
pub(crate) fn short_id(id: &str) -> String {
    match id.parse::<libp2p::PeerId>() {
        Ok(p) => short_peer(&p),
        Err(_) => id.chars().take(12).collect(),
    }
}
