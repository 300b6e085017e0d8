//! Catalogue benchmarks (run by `scripts/bench.sh`, in release):
//! 1. a catalogue change on one node until it is visible on every node of an in-process
//!    network (default 16 nodes, 50 changes): p50 and p99;
//! 2. local search over 10,000 offers held from 100 members: p50 and p99 per query shape.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::{Catalogue, CatalogueEntry, ShareType};
use yrd_node::model::region::{self, Region};
use yrd_node::model::signed::Signed;
use yrd_node::node::catalogue::SearchQuery;
use yrd_tests::fixtures::{offer, sample_schema};
use yrd_tests::{TestNet, TestNode, WAIT};

fn arg(name: &str, default: usize) -> usize {
    yrd_tests::flag_value(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn propagation(nodes: usize, changes: usize) -> Result<()> {
    let started = Instant::now();
    let mut net = TestNet::line(nodes).await?;
    net.wait_full_mesh().await?;
    eprintln!(
        "{nodes} nodes meshed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let standard = yrd_tests::fixtures::STANDARD;
    net.nodes[0]
        .node()?
        .publish_schema(standard, "1.0.0", None, sample_schema(standard)?)
        .await?;
    net.wait_schema(standard, "1.0.0").await?;
    let mut latencies = Vec::new();
    for i in 0..changes {
        let origin = &net.nodes[i % nodes];
        let publisher = origin.peer_id().to_string();
        let t0 = Instant::now();
        origin
            .node()?
            .add_offer(offer(
                &format!("offer-{i}"),
                standard,
                ShareType::Unconditional,
                None,
            ))
            .await?;
        let seq = origin
            .node()?
            .own_catalogue()?
            .map(|c| c.document.sequence)
            .unwrap_or(0);
        // Polled every millisecond rather than through `wait_until`: this is the measurement.
        loop {
            let all = net.nodes.iter().all(|n| {
                n.node()
                    .map(|n| {
                        n.network_catalogues().iter().any(|c| {
                            c.document.publisher == publisher && c.document.sequence >= seq
                        })
                    })
                    .unwrap_or(false)
            });
            if all {
                break;
            }
            if t0.elapsed() > WAIT {
                bail!("change {i} not visible everywhere after {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    if let Some(path) = yrd_tests::flag_value("--json-out") {
        let figures = json!({
            "nodes": nodes, "changes": changes,
            "p50_ms": ms(percentile(&latencies, 0.5)), "p99_ms": ms(percentile(&latencies, 0.99)),
            "max_ms": ms(percentile(&latencies, 1.0)),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&figures)? + "\n")
            .with_context(|| format!("write {path}"))?;
    }
    println!(
        "catalogue propagation, {nodes} nodes, {changes} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );
    net.stop_all().await
}

async fn search(members: usize, per_member: usize) -> Result<()> {
    let root = tempfile::tempdir()?;
    let keys: Vec<NodeKey> = (0..members).map(|_| NodeKey::generate()).collect();
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let mut node = TestNode::create(root.path(), 0, NodeKey::generate(), &ids, Vec::new())?;
    node.start().await?;
    let regions: Vec<Region> = region::all()
        .filter_map(|r| Region::from_code(r.code).ok())
        .collect();
    let schemas = [
        "enterprise-licence",
        "social-insurance-contribution",
        "housing-provident-fund",
    ];
    for (m, key) in keys.iter().enumerate() {
        let region = regions[m % regions.len()];
        let offers: Vec<CatalogueEntry> = (0..per_member)
            .map(|i| {
                let schema = schemas[(m + i) % schemas.len()];
                serde_json::from_value(json!({
                    "offer": {
                        "identifier": format!("m{m}-o{i}"),
                        "title": if i % 10 == 0 { format!("第{i}号 企业营业执照信息") } else { format!("第{i}号 社保缴费记录") },
                        "description": "基准测试用的共享数据目录条目，描述文字长度与真实目录相当。",
                        "theme": ["市场监管"], "keyword": ["benchmark", schema],
                        "media_type": "application/jsonl", "resource_code": format!("{}-B-{i:05}", region.code()),
                        "share_type": if i % 3 == 0 { "conditional" } else { "unconditional" },
                        "share_conditions": "仅限履职使用", "share_method": "file", "update_cycle": "daily",
                        "schema_id": schema, "schema_version": "1.0.0", "spatial": [region]
                    },
                    "publisher": "bench", "conforms_to": {"id": schema, "version": "1.0.0", "digest": "00"},
                    "information_items": [], "modified": "2026-11-26T00:00:00Z"
                }))
            })
            .collect::<Result<_, _>>()?;
        let doc = Catalogue {
            publisher: key.peer_id().to_string(),
            region,
            organisation: format!("bench member {m}"),
            sequence: 1,
            issued_at: "2026-11-26T00:00:00Z".into(),
            offers,
            demands: Vec::new(),
            withheld: Vec::new(),
        };
        let signed = Signed::sign(doc, key.signing_key())?;
        node.node()?.accept_catalogue(key.peer_id(), signed).await?;
    }
    let svc = node.node()?;
    let total: usize = svc
        .network_catalogues()
        .iter()
        .map(|c| c.document.offers.len())
        .sum();
    let queries: Vec<(&str, SearchQuery)> = vec![
        (
            "text \"营业执照\"",
            SearchQuery {
                text: Some("营业执照".into()),
                ..Default::default()
            },
        ),
        (
            "schema",
            SearchQuery {
                schema: Some("housing-provident-fund".into()),
                ..Default::default()
            },
        ),
        (
            "schema, every hit (limit 10000)",
            SearchQuery {
                schema: Some("housing-provident-fund".into()),
                limit: Some(10_000),
                ..Default::default()
            },
        ),
        (
            "region 320000 (province + cities)",
            SearchQuery {
                region: Some("320000".parse()?),
                ..Default::default()
            },
        ),
        (
            "text + share type + region",
            SearchQuery {
                text: Some("社保 benchmark".into()),
                share_type: Some(yrd_node::model::catalogue::ShareType::Conditional),
                region: Some("330000".parse()?),
                ..Default::default()
            },
        ),
    ];
    println!("search over {total} offers from {members} members (default limit 500 hits):");
    for (label, q) in queries {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..200 {
            let t0 = Instant::now();
            hits = svc.search(&q).len();
            times.push(t0.elapsed());
        }
        times.sort();
        println!(
            "  {label:<36} {hits:>5} hits  p50 {:.2} ms  p99 {:.2} ms",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
    node.stop().await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "propagation" || what == "all" {
        propagation(arg("--nodes", 16), arg("--changes", 50)).await?;
    }
    if what == "search" || what == "all" {
        search(arg("--members", 100), arg("--per-member", 100)).await?;
    }
    Ok(())
}
