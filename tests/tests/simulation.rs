//! The shipped scenarios run as tests (`yrd sim` on real in-process nodes), a failing assertion
//! fails the run, and a bad scenario file is refused with its line and reason.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cities_verifying_licences_scenario_passes_at_five_nodes() -> Result<()> {
    let report = run_file(&scenario("cities-41-verify"), Some(5), None).await?;
    eprintln!("{}", report.render());
    assert!(report.passed, "{}", report.render());
    assert_eq!(report.nodes, 5);
    // 4 callers × 10 calls, 2 each with an unknown uscc: a signed "not found".
    assert_eq!(report.query_calls, 40);
    assert_eq!(report.query_not_found, 8);
    assert_eq!(report.query_failed, 0);
    let (p50, p99) = (report.query_p50_ms.unwrap(), report.query_p99_ms.unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{p50} {p99}");
    let logged = report
        .assertions
        .iter()
        .find(|a| a.condition.starts_with("query calls"))
        .expect("the queries_answered assertion");
    assert!(logged.passed, "{logged:?}");
    assert!(logged.detail.contains("40 calls by 4 nodes"), "{logged:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_calls_without_a_grant_fail_the_queries_answered_assertion() -> Result<()> {
    // A conditional offer and no grant: every call is refused before it leaves the caller,
    // and the assertion names the first one and why.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("no-grant.toml");
    std::fs::write(
        &path,
        "name = \"no grant\"\nnodes = 2\n\n[[step]]\naction = \"publish_schema\"\nnode = 0\n\
         standard = \"enterprise-licence\"\n\n[[step]]\naction = \"add_offer\"\nnode = 0\n\
         dataset = \"lic\"\nstandard = \"enterprise-licence\"\nshare = \"conditional\"\n\
         query_keys = [\"uscc\"]\n\n[[step]]\naction = \"publish\"\nnode = 0\n\
         dataset = \"lic\"\nrecords = 20\n\n[[step]]\naction = \"query\"\nnodes = [1]\n\
         provider = 0\ndataset = \"lic\"\nkey = \"uscc\"\ncalls = 3\n\n[[step]]\n\
         action = \"assert\"\n\
         condition = { check = \"queries_answered\", provider = 0, dataset = \"lic\" }\n",
    )?;
    let report = run_file(&path, None, None).await?;
    assert!(!report.passed, "{}", report.render());
    assert_eq!((report.query_calls, report.query_failed), (3, 3));
    let a = &report.assertions[0];
    assert!(!a.passed);
    assert!(
        a.detail
            .contains("3 of 3 calls without a valid signed answer")
            && a.detail.contains("grant"),
        "{a:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_only_grant_answers_verify_calls_and_the_lookup_under_it_fails_the_check()
-> Result<()> {
    // A conditional offer: node 1 asks, node 0 approves with modes = ["verify"]; its verify
    // calls are answered (one signed "not found"), and its one lookup has no grant allowing it.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("verify-grant.toml");
    let query = |mode: &str, calls: u32, unknown: u32| {
        format!(
            "\n[[step]]\naction = \"query\"\nnodes = [1]\nprovider = 0\ndataset = \"lic\"\n\
             key = \"uscc\"\nmode = \"{mode}\"\ncalls = {calls}\nunknown = {unknown}\n"
        )
    };
    let text = format!(
        "name = \"verify grant\"\nnodes = 2\n\n[[step]]\naction = \"publish_schema\"\nnode = 0\n\
         standard = \"enterprise-licence\"\n\n[[step]]\naction = \"add_offer\"\nnode = 0\n\
         dataset = \"lic\"\nstandard = \"enterprise-licence\"\nshare = \"conditional\"\n\
         query_keys = [\"uscc\"]\n\n[[step]]\naction = \"publish\"\nnode = 0\n\
         dataset = \"lic\"\nrecords = 50\n\n[[step]]\naction = \"request\"\nnode = 1\n\
         provider = 0\ndataset = \"lic\"\npurpose = \"核验\"\nbasis = \"条例\"\n\n[[step]]\n\
         action = \"approve\"\nnode = 0\nmodes = [\"verify\"]\n{}\n[[step]]\n\
         action = \"assert\"\n\
         condition = {{ check = \"queries_answered\", provider = 0, dataset = \"lic\" }}\n{}\n\
         [[step]]\naction = \"assert\"\n\
         condition = {{ check = \"queries_answered\", provider = 0, dataset = \"lic\" }}\n",
        query("verify", 4, 1),
        query("lookup", 1, 0),
    );
    std::fs::write(&path, text)?;
    let report = run_file(&path, None, None).await?;
    assert!(!report.passed, "{}", report.render());
    assert_eq!(
        (
            report.query_calls,
            report.query_not_found,
            report.query_failed
        ),
        (5, 1, 1)
    );
    let (verified, looked_up) = (&report.assertions[0], &report.assertions[1]);
    assert!(verified.passed, "{verified:?}");
    assert!(
        verified.detail.contains("4 calls by 1 nodes"),
        "{verified:?}"
    );
    assert!(!looked_up.passed);
    assert!(looked_up.detail.contains("allows lookup"), "{looked_up:?}");
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
        (
            "name = \"x\"\n[[step]]\naction = \"query\"\nnodes = \"others\"\nprovider = 0\n\
             dataset = \"d\"\nkey = \"uscc\"\ncalls = 2\nunknown = 3\n",
            "line 2",
            "more than calls",
        ),
        (
            "name = \"x\"\n[[step]]\naction = \"query\"\nnodes = \"others\"\nprovider = 0\n\
             dataset = \"d\"\nkey = \"uscc\"\nmode = \"guess\"\n",
            "line",
            "guess",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cities_join_and_one_is_removed_through_charter_changes() -> Result<()> {
    // charter-45.toml in small: four founders, three cities join one at a time, one rotates its
    // key, one leaves.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("charter.toml");
    let mut text = String::from(
        "name = \"charter small\"\nnodes = 7\nregions = [\"310000\", \"320000\", \"330000\", \
         \"340000\"]\n\n[charter]\nfounders = 4\nthreshold = 3\nmembers = 4\n",
    );
    for i in 4..7 {
        text.push_str(&format!(
            "\n[[step]]\naction = \"charter_join\"\nnode = {i}\n"
        ));
    }
    text.push_str(
        "\n[[step]]\naction = \"publish_schema\"\nnode = 0\nstandard = \"enterprise-licence\"\n\
         \n[[step]]\naction = \"add_offer\"\nnode = 5\ndataset = \"city-licences\"\n\
         standard = \"enterprise-licence\"\n\
         \n[[step]]\naction = \"wait_until\"\ncondition = { check = \"catalogue_converged\" }\n\
         \n[[step]]\naction = \"charter_rotate\"\nnode = 4\n\
         \n[[step]]\naction = \"charter_remove\"\nnode = 6\n\
         \n[[step]]\naction = \"assert\"\ncondition = { check = \"no_alarms\" }\n",
    );
    std::fs::write(&path, text)?;
    let report = run_file(&path, None, None).await?;
    assert!(report.passed, "{}", report.render());
    // Three joins, the rotation's two changes and a removal, each applied by every member.
    assert_eq!(
        report.charter_propagation_ms.len(),
        6,
        "{}",
        report.render()
    );
    assert!(report.charter_propagation_p99_ms.is_some());
    assert!(report.render().contains("charter changes: 6"));
    assert_eq!(report.key_rotation_ms.len(), 1, "{}", report.render());
    Ok(())
}

#[test]
fn a_charter_step_needs_a_charter_table() {
    let text = "name = \"x\"\nnodes = 5\n\n[[step]]\naction = \"charter_join\"\nnode = 4\n";
    let err = Scenario::parse(text, None).expect_err("refused");
    assert!(err.contains("need a [charter] table"), "{err}");
    let text = "name = \"x\"\nnodes = 5\n\n[[step]]\naction = \"charter_rotate\"\nnode = 4\n";
    let err = Scenario::parse(text, None).expect_err("refused");
    assert!(err.contains("need a [charter] table"), "{err}");
    let text = "name = \"x\"\nnodes = 5\n\n[charter]\nfounders = 4\nthreshold = 3\n\n\
                [[step]]\naction = \"charter_rotate\"\nnode = 9\n";
    let err = Scenario::parse(text, None).expect_err("refused");
    assert!(err.contains('9'), "{err}");
    let text = "name = \"x\"\nnodes = 5\n\n[charter]\nfounders = 2\nthreshold = 3\n\n\
                [[step]]\naction = \"charter_join\"\nnode = 4\n";
    let err = Scenario::parse(text, None).expect_err("refused");
    assert!(err.contains("threshold = 3"), "{err}");
}
