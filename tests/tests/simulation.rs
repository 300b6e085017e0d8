//! The shipped scenarios run as tests (`yrd sim` on real in-process nodes), and a bad scenario
//! file is refused with its line and reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::path::PathBuf;

use anyhow::Result;
use yrd_node::sim::{Scenario, run_file};

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../scripts/scenarios/{name}.toml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_provinces_scenario_passes() -> Result<()> {
    let report = run_file(&scenario("four-provinces"), None, None).await?;
    eprintln!("{}", report.render());
    assert!(report.passed, "{}", report.render());
    assert_eq!(report.nodes, 4);
    assert_eq!(report.transfers.len(), 3);
    assert!(report.assertions.len() >= 5);
    assert!(report.convergence_p50_ms.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_and_heal_scenario_passes() -> Result<()> {
    let report = run_file(&scenario("partition-heal"), None, None).await?;
    eprintln!("{}", report.render());
    assert!(report.passed, "{}", report.render());
    // The partition held (the change did not cross it) until the heal.
    assert!(
        report
            .assertions
            .iter()
            .any(|a| a.condition.starts_with("NOT") && a.passed)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_assertion_fails_the_scenario() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fails.toml");
    std::fs::write(
        &path,
        "name = \"fails\"\nnodes = 2\n\n[[step]]\naction = \"publish_schema\"\nnode = 0\n\
         standard = \"enterprise-licence\"\n\n[[step]]\naction = \"assert\"\n\
         condition = { check = \"digest_equal\", provider = 0, dataset = \"none\", nodes = [1] }\n",
    )?;
    let report = run_file(&path, None, None).await?;
    assert!(!report.passed);
    assert!(!report.assertions[0].passed);
    assert!(
        report.assertions[0].detail.contains("no version of none"),
        "{:?}",
        report.assertions
    );
    Ok(())
}

#[test]
fn bad_scenarios_are_refused_with_the_line_and_the_reason() {
    let cases = [
        (
            "name = \"x\"\n[[step]]\naction = \"fly\"\n",
            "line 3",
            "fly",
        ),
        (
            "name = \"x\"\nnodes = 3\n\n[[step]]\naction = \"kill\"\nnodes = [7]\n",
            "line 4",
            "node 7 does not exist",
        ),
        (
            "name = \"x\"\n[[step]]\naction = \"approve\"\nnode = 0\nmasks = [\"id=keep:x\"]\n",
            "line 2",
            "mask",
        ),
        ("name = \"x\"\n", "", "at least one step"),
        (
            "name = \"x\"\nnodes = 1000\n[[step]]\naction = \"heal\"\n",
            "",
            "expected 1 to",
        ),
        ("name = \"x\"\n[[step]\n", "line 2", ""),
        (
            "name = \"x\"\ntransport = \"udp\"\n[[step]]\naction = \"heal\"\n",
            "",
            "expected \"tcp\" or \"quic\"",
        ),
    ];
    for (text, line, reason) in cases {
        let err = Scenario::parse(text, None).expect_err(text);
        assert!(
            err.contains(line) && err.contains(reason),
            "{text:?}: {err}"
        );
    }
}
