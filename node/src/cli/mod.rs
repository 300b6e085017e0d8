//! The `yrd` command line: runs the offline verbs (`init`, `run`, `config check`, `devnet`,
//! `regions`, `sim`, `openapi`, `doc`, `verify`) itself, and sends every other verb to the
//! running node's admin API. This file owns the dispatch ([`run`]) and the verbs about the node
//! itself; the argument types are in `args`, the errors and exit codes in `error`, shared output
//! in `output`, and the other verbs by subject (`docs`, `exchange`, `provenance`).

mod args;
pub mod client;
mod docs;
mod error;
mod exchange;
mod federation;
mod output;
mod provenance;
mod table;

use std::net::SocketAddr;

use libp2p::{Multiaddr, PeerId};

use crate::config::{CONFIG_FILE, LogFormat, NodeConfig};
use crate::identity::{self, AdminToken, KEY_FILE, TOKEN_FILE};
use crate::model::region::{self, Region};
use crate::node::{Health, NodeOptions, NodeView, PeerView};
use crate::setup::{self, InitOptions};
use client::{ApiClient, ClientError};
use output::print_json;

pub use args::{
    CatalogCommand, Cli, ClientsCommand, Command, ConfigCommand, DemandCommand, DevnetArgs,
    DocCommand, FederationCommand, GrantsCommand, InitArgs, KeyCommand, ProposeArgs,
    ProvenanceCommand, RequestsCommand, SchemaCommand, TokenCommand, WithheldCommand,
};
pub use error::{
    CliError, EXIT_DEGRADED, EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE,
};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Init(args) => init(&cli, args),
        Command::Run => run_daemon(&cli).await,
        Command::Config(ConfigCommand::Check { file }) => {
            let config = NodeConfig::load(file)?;
            if cli.json {
                print_json(
                    &serde_json::json!({ "ok": true, "file": file, "region": config.node.region }),
                )
            } else {
                println!(
                    "{}: ok ({} — {}, {} federation members)",
                    file.display(),
                    config.node.name,
                    config.node.region.label(),
                    config.federation.members.len()
                );
                Ok(())
            }
        }
        Command::Devnet(args) => devnet(&cli, args).await,
        Command::Regions => regions(&cli),
        Command::Token(TokenCommand::Rotate) => rotate_token(&cli).await,
        Command::Key(KeyCommand::Rotate) => federation::rotate_key(&cli).await,
        Command::Openapi => {
            print!("{}", crate::api::openapi_text());
            Ok(())
        }
        Command::Node => {
            let view: NodeView = client(&cli)?.get("/api/v1/node").await?;
            if cli.json {
                return print_json(&view);
            }
            println!("peer id       {}", view.peer_id);
            println!("region        {}", view.region_label);
            println!("organisation  {}", view.organisation);
            println!("started       {}", view.started_at);
            println!("version       {}", view.version);
            println!(
                "members       {} ({} connected)",
                view.members, view.connected
            );
            if let Some(c) = &view.charter {
                println!(
                    "charter       {} version {} ({}, expires {}, {} members)",
                    c.federation, c.version, c.state, c.expires, c.members
                );
                for r in &c.region_contradictions {
                    println!(
                        "  REFUSED     {} ({}) claims {}; the charter says {} ({})",
                        r.peer,
                        r.member_id,
                        r.claimed.label(),
                        r.charter.label(),
                        r.time
                    );
                }
            }
            println!("data dir      {}", view.data_dir);
            println!("admin API     {}", view.api_address.unwrap_or_default());
            for a in &view.listen_addresses {
                println!("listening     {a}");
            }
            Ok(())
        }
        Command::Health => {
            let health: Health = client(&cli)?.get("/api/v1/health").await?;
            if cli.json {
                print_json(&health)?;
            } else {
                println!(
                    "{}: up {}s, {}/{} members connected, {} refused connections",
                    health.status,
                    health.uptime_secs,
                    health.connected_members,
                    health.members,
                    health.refused_connections
                );
            }
            if health.status == "ok" {
                Ok(())
            } else {
                Err(CliError::Degraded(health.status))
            }
        }
        Command::Doc(cmd) => docs::doc(&cli, cmd),
        Command::Schema(cmd) => docs::schema(&cli, cmd).await,
        Command::Catalog(cmd) => docs::catalog(&cli, cmd).await,
        Command::Demand(cmd) => docs::demand(&cli, cmd).await,
        Command::Withheld(cmd) => docs::withheld(&cli, cmd).await,
        Command::Publish {
            dataset,
            file,
            format,
        } => docs::publish(&cli, dataset, file, format).await,
        Command::Versions { dataset } => docs::versions(&cli, dataset).await,
        Command::Fetch {
            target,
            version,
            grant,
            out,
            no_wait,
        } => {
            exchange::fetch(
                &cli,
                target,
                *version,
                grant.clone(),
                out.as_deref(),
                *no_wait,
            )
            .await
        }
        Command::Query {
            target,
            verify,
            key,
            fields,
            grant,
            purpose,
            basis,
        } => {
            exchange::query(
                &cli,
                exchange::QueryArgs {
                    target,
                    verify,
                    key,
                    fields,
                    grant,
                    purpose,
                    basis,
                },
            )
            .await
        }
        Command::Request {
            target,
            purpose,
            basis,
            fields,
        } => exchange::request(&cli, target, purpose, basis, fields).await,
        Command::Requests(cmd) => exchange::requests(&cli, cmd).await,
        Command::Grants(cmd) => exchange::grants(&cli, cmd).await,
        Command::Subscribe { target } => exchange::subscribe(&cli, target).await,
        Command::Unsubscribe { target } => exchange::unsubscribe(&cli, target).await,
        Command::Subscriptions => exchange::subscriptions(&cli).await,
        Command::Transfers { id } => exchange::transfers(&cli, id.as_deref()).await,
        Command::Receipts => exchange::receipts(&cli).await,
        Command::Clients(cmd) => exchange::clients(&cli, cmd).await,
        Command::Provenance(cmd) => provenance::provenance(&cli, cmd).await,
        Command::Verify { file, genesis } => provenance::verify(&cli, file, genesis.as_deref()),
        Command::Federation(cmd) => federation::federation(&cli, cmd).await,
        Command::Sim {
            scenario,
            nodes,
            report,
            dir,
        } => sim(&cli, scenario, *nodes, report.as_deref(), dir.as_deref()).await,
        Command::Peers => {
            let peers: Vec<PeerView> = client(&cli)?.get("/api/v1/peers").await?;
            if cli.json {
                return print_json(&peers);
            }
            let rows = peers
                .iter()
                .map(|p| {
                    vec![
                        p.short_id.clone(),
                        p.region_label
                            .clone()
                            .unwrap_or_else(|| "(unverified)".into()),
                        p.organisation.clone().unwrap_or_default(),
                        p.addresses.join(" "),
                        p.connected_since.clone(),
                        p.rtt_ms
                            .map(|r| format!("{r:.1} ms"))
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect::<Vec<_>>();
            print!(
                "{}",
                table::render(
                    &[
                        "PEER",
                        "REGION",
                        "ORGANISATION",
                        "ADDRESSES",
                        "CONNECTED SINCE",
                        "RTT"
                    ],
                    &rows
                )
            );
            if peers.is_empty() {
                println!("(no members connected)");
            }
            Ok(())
        }
    }
}

/// The admin API client for the node that `--data-dir` or `--config` names.
pub(crate) fn client(cli: &Cli) -> Result<ApiClient, CliError> {
    Ok(ApiClient::locate(
        cli.data_dir.as_deref(),
        cli.config.as_deref(),
    )?)
}

fn init(cli: &Cli, args: &InitArgs) -> Result<(), CliError> {
    let data_dir = cli
        .data_dir
        .clone()
        .ok_or_else(|| CliError::Usage("init needs --data-dir DIR".into()))?;
    let region: Region = args
        .region
        .parse()
        .map_err(|e: region::UnknownRegion| CliError::Usage(format!("--region: {e}")))?;
    let listen = parse_all::<Multiaddr>(
        &args.listen,
        "--listen",
        "a multiaddr such as /ip4/0.0.0.0/tcp/7401",
    )?;
    let bootstrap = parse_all::<Multiaddr>(
        &args.bootstrap,
        "--bootstrap",
        "a multiaddr ending in /p2p/<peer id>",
    )?;
    let members = parse_all::<PeerId>(&args.members, "--member", "a peer id such as 12D3KooW…")?;
    let api = match &args.api {
        None => None,
        Some(a) => Some(a.parse::<SocketAddr>().map_err(|e| {
            CliError::Usage(format!(
                "--api {a:?}: {e}; expected an address such as 127.0.0.1:7400"
            ))
        })?),
    };
    let report = setup::init(InitOptions {
        data_dir: data_dir.clone(),
        region,
        name: args.name.clone(),
        listen,
        api,
        members,
        bootstrap,
        mdns: false,
        key: None,
    })?;
    if cli.json {
        return print_json(&serde_json::json!({
            "peer_id": report.peer_id.to_string(),
            "region": region,
            "config": report.config_path,
            "key": report.key_path,
            "token": report.token_path,
        }));
    }
    println!("created node {} for {}", report.peer_id, region.label());
    println!("  config  {}", report.config_path.display());
    println!("  key     {} (mode 0600)", report.key_path.display());
    println!("  token   {} (mode 0600)", report.token_path.display());
    println!("Give your peer id to the other members; add theirs under [[federation.members]].");
    println!("Start it with: yrd --data-dir {} run", data_dir.display());
    Ok(())
}

fn parse_all<T: std::str::FromStr>(
    values: &[String],
    flag: &str,
    expected: &str,
) -> Result<Vec<T>, CliError>
where
    T::Err: std::fmt::Display,
{
    values
        .iter()
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| CliError::Usage(format!("{flag} {v:?}: {e}; expected {expected}")))
        })
        .collect()
}

async fn run_daemon(cli: &Cli) -> Result<(), CliError> {
    let config_path = match (&cli.config, &cli.data_dir) {
        (Some(c), _) => c.clone(),
        (None, Some(d)) => d.join(CONFIG_FILE),
        (None, None) => {
            return Err(CliError::Usage(
                "run needs --data-dir DIR or --config FILE".into(),
            ));
        }
    };
    let mut options = NodeOptions::from_config_file(&config_path)?;
    if cli.config.is_none() {
        if let Some(d) = &cli.data_dir {
            options.data_dir = d.clone();
        }
    }
    let format = cli.log_format.unwrap_or(options.config.log.format);
    crate::logging::init(&options.config.log.filter, format);
    // Refuse readable secrets before anything else starts, naming the file and the fix.
    identity::check_private(&options.data_dir.join(KEY_FILE), "the node key")
        .map_err(crate::node::NodeError::from)?;
    identity::check_private(&options.data_dir.join(TOKEN_FILE), "the admin API token")
        .map_err(crate::node::NodeError::from)?;
    let mut signals = crate::devnet::Signals::install()?;
    let mut running = crate::server::Server::start(options.clone()).await?;
    loop {
        crate::notify::notify(&format!(
            "READY=1\nSTATUS=serving; admin API on {}\nMAINPID={}",
            running.api_address,
            std::process::id()
        ));
        let restart = running.node.restart_requested();
        let tokens = [running.admin_token()];
        tokio::select! {
            _ = signals.wait(&tokens) => break,
            _ = restart.cancelled() => {}
        }
        // A key rotation: the charter now lists the next key; the start switches to it.
        crate::notify::notify("RELOADING=1\nSTATUS=restarting on the rotated node key");
        tracing::warn!("restarting the node on its rotated key");
        running.shutdown().await?;
        crate::net::wait_bindable(&options.config.network.listen, RESTART_PORTS_WITHIN).await;
        running = crate::server::Server::start(options.clone()).await?;
    }
    crate::notify::notify("STOPPING=1\nSTATUS=shutting down");
    tracing::info!("signal received; shutting down");
    running.shutdown().await?;
    Ok(())
}

/// How long a restart on a rotated key waits for the previous instance's ports (its QUIC
/// endpoint drains its connections before it lets the UDP port go).
const RESTART_PORTS_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

async fn sim(
    cli: &Cli,
    scenario: &std::path::Path,
    nodes: Option<usize>,
    report_file: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
) -> Result<(), CliError> {
    crate::logging::init(
        "warn,libp2p_kad=error",
        cli.log_format.unwrap_or(LogFormat::Text),
    );
    let report = crate::sim::run_file(scenario, nodes, dir)
        .await
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    if let Some(path) = report_file {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Output(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| CliError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    if cli.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    if report.passed {
        Ok(())
    } else {
        let failed = report.assertions.iter().filter(|a| !a.passed).count();
        Err(CliError::Invalid(format!(
            "scenario {:?}: {failed} assertion(s) failed",
            report.scenario
        )))
    }
}

async fn devnet(cli: &Cli, args: &DevnetArgs) -> Result<(), CliError> {
    crate::logging::init(
        "info,libp2p_mdns=warn",
        cli.log_format.unwrap_or(LogFormat::Text),
    );
    let mut signals = crate::devnet::Signals::install()?;
    let devnet = crate::devnet::Devnet::start(&args.dir, args.nodes).await?;
    if let Err(e) = devnet.seed().await {
        devnet.shutdown().await;
        return Err(e.into());
    }
    if cli.json {
        let nodes: Vec<_> = devnet
            .nodes
            .iter()
            .map(|(m, n)| {
                serde_json::json!({
                    "region": m.region,
                    "peer_id": m.peer_id.to_string(),
                    "admin_url": format!("http://{}", n.api_address),
                    "data_dir": m.data_dir,
                })
            })
            .collect();
        print_json(&nodes)?;
    } else {
        println!("{}", crate::devnet::describe(&devnet));
    }
    let tokens: Vec<&AdminToken> = devnet.nodes.iter().map(|(_, r)| r.admin_token()).collect();
    let waited = signals.wait(&tokens).await;
    tracing::info!("stopping the devnet");
    devnet.shutdown().await;
    waited?;
    Ok(())
}

async fn rotate_token(cli: &Cli) -> Result<(), CliError> {
    // The running node, if any, is asked to reload with the token it has now, so the client is
    // made (reading the old token) before the file is replaced.
    let old = client(cli);
    let path = match (&cli.config, &cli.data_dir) {
        (Some(config), _) => NodeOptions::from_config_file(config)?.data_dir,
        (None, Some(dir)) => dir.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "token rotate needs --data-dir DIR or --config FILE".into(),
            ));
        }
    }
    .join(TOKEN_FILE);
    identity::rotate_token(&path).map_err(crate::node::NodeError::from)?;
    let replaced = format!("the new token is in {}", path.display());
    let by_hand = "make a running node use it with `systemctl reload yrd` (SIGHUP) or a restart";
    let reloaded = match old {
        Ok(c) => match c
            .post::<_, crate::api::TokenReloaded>("/api/v1/token/reload", &serde_json::json!({}))
            .await
        {
            Ok(_) => true,
            Err(ClientError::Unreachable { .. }) => false,
            Err(e) => {
                return Err(CliError::Invalid(format!(
                    "{replaced}, but the node did not reload it ({e}); {by_hand}"
                )));
            }
        },
        Err(e) => {
            return Err(CliError::Invalid(format!(
                "{replaced}, but the old token could not be used to tell the node ({e}); {by_hand}"
            )));
        }
    };
    if cli.json {
        return print_json(&serde_json::json!({ "file": path, "reloaded": reloaded }));
    }
    println!("new admin token written to {}", path.display());
    if reloaded {
        println!("the running node uses it now; the old token no longer works");
    } else {
        println!("no node answered; it will use the new token when it starts");
    }
    Ok(())
}

fn regions(cli: &Cli) -> Result<(), CliError> {
    let all: Vec<_> = region::all().collect();
    if cli.json {
        let list: Vec<_> = all
            .iter()
            .map(|r| {
                serde_json::json!({
                    "code": r.code.to_string(), "name_zh": r.name_zh, "name_en": r.name_en,
                    "province": r.province.to_string(), "level": r.level,
                })
            })
            .collect();
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.code.to_string(),
                r.name_zh.to_string(),
                r.name_en.to_string(),
                format!("{:?}", r.level).to_lowercase(),
                r.province.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["CODE", "NAME", "ENGLISH", "LEVEL", "PROVINCE"], &rows)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
