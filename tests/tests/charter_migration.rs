//! Migrating a running federation from member lists to a charter (docs/federation.md,
//! "Moving from member lists to a charter"): the nodes are restarted one at a time on a genesis
//! that lists the same keys, while the others still run on their lists. Nothing is lost — the
//! log still verifies and keeps every record, a grant issued before the move is honoured after
//! it — and a node the lists trusted but the charter does not name is cut off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use anyhow::Result;
use yrd_node::model::charter::{Charter, SignedCharter};
use yrd_node::model::region::Region;
use yrd_tests::charter::{genesis, member};
use yrd_tests::fixtures::{self, COND};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

/// The four provinces of `net` (nodes 0–3) as founders, 3 of them to sign changes.
fn genesis_of_provinces(net: &TestNet) -> Result<Charter> {
    let members = net.nodes[..4]
        .iter()
        .enumerate()
        .map(|(n, node)| member(&node.key, node.region.code(), n + 1))
        .collect::<Result<Vec<_>>>()?;
    Ok(genesis(members, 3))
}

/// Restarts `node` on `charter`; its bootstrap addresses of peers the charter leaves out
/// (`outside`) are dropped, as an operator must (a node refuses to start otherwise).
async fn restart_on_charter(
    node: &mut TestNode,
    charter: &std::path::Path,
    outside: &str,
) -> Result<()> {
    node.stop().await?;
    node.edit_config(|c| {
        c.federation.members.clear();
        c.network
            .bootstrap
            .retain(|a| !a.to_string().contains(outside));
        c.federation.charter = Some(charter.to_path_buf());
    })?;
    node.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_moves_from_member_lists_to_a_charter_one_node_at_a_time() -> Result<()> {
    // Four provinces and a city, all trusting each other by member lists.
    let mut net = TestNet::meshed(5).await?;
    let city = net.nodes[4].peer_id().to_string();
    assert_eq!(
        net.nodes[4].region.code() / 10000,
        32,
        "node 4 is a Jiangsu city"
    );
    let dir = tempfile::tempdir()?;
    let (grant, before) = fixtures::granted_fetch(&net, dir.path(), "迁移前的授权").await?;

    // What each node's log holds before the move.
    let mut sizes = Vec::new();
    for i in 0..5 {
        sizes.push(net.api(i)?.check().await?.size);
    }

    // The genesis: the four provinces, signed offline by three of them. The city is left out:
    // it joins later by a charter change, not by the move.
    let mut charter = SignedCharter::draft(genesis_of_provinces(&net)?);
    for node in &net.nodes[..3] {
        charter.sign(node.key.signing_key())?;
    }
    let path = net.root.path().join("charter.json");
    std::fs::write(&path, charter.to_json_pretty()?)?;

    // One node at a time; after each restart the provinces are meshed again, the ones on
    // lists and the ones on the charter side by side.
    for i in 0..4 {
        restart_on_charter(&mut net.nodes[i], &path, &city).await?;
        let view = net.api(i)?.node().await?;
        let c = view.charter.expect("restarted on the charter");
        assert_eq!((c.version, c.members, c.state.as_str()), (1, 4, "in-force"));
        wait_until("the provinces meshed again", WAIT, || async {
            for a in 0..4 {
                let peers = net.nodes[a].peers().await?;
                for b in 0..4 {
                    let id = net.nodes[b].peer_id().to_string();
                    if a != b && !peers.iter().any(|p| p.peer_id == id && p.region.is_some()) {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
        .await?;
    }

    // The restarts gave each node a new API port.
    let (sh, js) = (net.api(0)?, net.api(1)?);
    // Nothing lost: every log verifies and has at least what it had (the restart adds records).
    for (i, before) in sizes.iter().enumerate().take(4) {
        let after = net.api(i)?.check().await?.size;
        assert!(after >= *before, "node {i}: {after} records < {before}");
    }
    // The grant issued under the member lists is still valid and honoured: a new version of
    // the dataset is fetched with it.
    assert_eq!(
        js.grant(&grant.document.id).await?.state,
        yrd_node::node::access::GrantState::Valid
    );
    fixtures::publish_sample_version(&sh, dir.path(), COND, fixtures::STANDARD, 30, 7).await?;
    let after = fixtures::fetch_newer(&js, &format!("310000/{COND}"), before.version).await?;
    assert_eq!(after.grant.as_deref(), Some(grant.document.id.as_str()));
    // Regions now come from the charter (the same as the lists' NodeInfos here).
    let peers = sh.peers().await?;
    let js_id = net.nodes[1].peer_id().to_string();
    assert_eq!(
        peers
            .iter()
            .find(|p| p.peer_id == js_id)
            .and_then(|p| p.region)
            .map(Region::code),
        Some(320000)
    );

    // The city, trusted by the old lists but not named by the charter, is cut off by every
    // province and refused when it dials again.
    wait_until("the city cut off by the provinces", WAIT, || async {
        for i in 0..4 {
            if net.nodes[i]
                .peers()
                .await?
                .iter()
                .any(|p| p.peer_id == city)
            {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let refused_before = sh.health().await?.refused_connections;
    net.nodes[4].restart().await?;
    wait_until("the city refused at the gate", WAIT, || async {
        Ok(sh.health().await?.refused_connections > refused_before)
    })
    .await?;
    net.stop_all().await
}
