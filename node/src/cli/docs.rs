//! The document verbs of the CLI: `doc`, `schema`, `catalog`, `demand`, `withheld`.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::client::urlencode;
use super::output::{print_json, with_progress};
use super::{
    CatalogCommand, Cli, CliError, DemandCommand, DocCommand, SchemaCommand, WithheldCommand,
};
use super::{client, table};
use crate::api::routes::{OwnCatalogue, PublishSchema, PublishVersion, Removed};
use crate::model::canonical;
use crate::model::catalogue::{CatalogueEntry, Demand, OfferInput, SchemaDoc, Withheld};
use crate::model::exchange::{DataFormat, Manifest};
use crate::model::protocol_schemas;
use crate::model::signed::{AnySigned, Signed, verify_any};
use crate::node::catalogue::{MatchReport, SearchHit};
use crate::node::schemas::SchemaSummary;

/// Largest document file the CLI reads.
const MAX_FILE: u64 = 16 * 1024 * 1024;

fn read_text(path: &Path) -> Result<String, CliError> {
    let file_err = |message: String| CliError::File {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
    if meta.len() > MAX_FILE {
        return Err(file_err(format!(
            "{} bytes; the limit is {MAX_FILE}",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))
}

/// Reads a JSON (or, by extension, TOML) file into `T`, naming the file and position on error.
fn read_doc<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = read_text(path)?;
    let file_err = |message: String| CliError::File {
        path: path.to_path_buf(),
        message,
    };
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| file_err(e.to_string().trim_end().to_string()))
    } else {
        let value = canonical::parse_strict(&text).map_err(|e| file_err(e.to_string()))?;
        serde_json::from_value(value).map_err(|e| file_err(e.to_string()))
    }
}

pub(super) fn doc(cli: &Cli, cmd: &DocCommand) -> Result<(), CliError> {
    match cmd {
        DocCommand::Canon { file } => {
            let text = read_text(file)?;
            let canon = canonical::canonicalize_str(&text).map_err(|e| CliError::File {
                path: file.clone(),
                message: e.to_string(),
            })?;
            println!("{canon}");
            Ok(())
        }
        DocCommand::Verify { file } => {
            let text = read_text(file)?;
            let doc = AnySigned::from_json(&text).map_err(|e| CliError::File {
                path: file.clone(),
                message: e.to_string(),
            })?;
            let verified = verify_any(&doc);
            if cli.json {
                print_json(&verified)?;
            } else if verified.valid {
                println!(
                    "valid {} signed by {} ({})",
                    verified.doc_type,
                    verified.signer_peer.as_deref().unwrap_or("?"),
                    verified.signer
                );
            }
            if verified.valid {
                Ok(())
            } else {
                Err(CliError::Invalid(format!(
                    "{}: signature does not verify: {}",
                    file.display(),
                    verified.error.unwrap_or_default()
                )))
            }
        }
    }
}

pub(super) async fn schema(cli: &Cli, cmd: &SchemaCommand) -> Result<(), CliError> {
    match cmd {
        SchemaCommand::Export { out } => {
            std::fs::create_dir_all(out).map_err(|e| CliError::File {
                path: out.clone(),
                message: e.to_string(),
            })?;
            let all = protocol_schemas::all();
            for (name, schema) in &all {
                let path = out.join(format!("{name}.schema.json"));
                std::fs::write(&path, protocol_schemas::file_text(schema)).map_err(|e| {
                    CliError::File {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?;
            }
            println!("wrote {} schemas to {}", all.len(), out.display());
            Ok(())
        }
        SchemaCommand::Publish {
            file,
            id,
            version,
            title,
        } => {
            let text = read_text(file)?;
            let schema = canonical::parse_strict(&text).map_err(|e| CliError::File {
                path: file.clone(),
                message: e.to_string(),
            })?;
            let body = PublishSchema {
                id: id.clone(),
                version: version.clone(),
                title: title.clone(),
                schema,
            };
            let doc: Signed<SchemaDoc> = client(cli)?.post("/api/v1/schemas", &body).await?;
            if cli.json {
                return print_json(&doc);
            }
            println!(
                "published {}@{} ({}), digest {}",
                doc.document.id, doc.document.version, doc.document.title, doc.document.digest
            );
            Ok(())
        }
        SchemaCommand::List { network } => {
            let path = format!("/api/v1/schemas?network={network}");
            let list: Vec<SchemaSummary> = client(cli)?.get(&path).await?;
            if cli.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.version.clone(),
                        s.title.clone(),
                        s.region_label.clone(),
                        s.digest.chars().take(16).collect(),
                        s.published_at.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["ID", "VERSION", "TITLE", "PUBLISHER", "DIGEST", "PUBLISHED"],
                    &rows
                )
            );
            Ok(())
        }
        SchemaCommand::Show { spec } => {
            let (id, version) = match spec.split_once('@') {
                Some((i, v)) => (i, Some(v)),
                None => (spec.as_str(), None),
            };
            let mut path = format!("/api/v1/schemas/{}", urlencode(id));
            if let Some(v) = version {
                path.push_str(&format!("?version={}", urlencode(v)));
            }
            let doc: Signed<SchemaDoc> = client(cli)?.get(&path).await?;
            if cli.json {
                return print_json(&doc);
            }
            let d = &doc.document;
            println!("{}@{} — {}", d.id, d.version, d.title);
            println!("publisher  {} ({})", d.publisher, d.region.label());
            println!("published  {}", d.published_at);
            println!("digest     {}", d.digest);
            let pretty = serde_json::to_string_pretty(&d.schema)
                .map_err(|e| CliError::Output(e.to_string()))?;
            println!("{pretty}");
            Ok(())
        }
    }
}

pub(super) async fn catalog(cli: &Cli, cmd: &CatalogCommand) -> Result<(), CliError> {
    match cmd {
        CatalogCommand::Add { file } => {
            let offer: OfferInput = read_doc(file)?;
            let entry: CatalogueEntry = client(cli)?
                .post("/api/v1/catalogue/offers", &offer)
                .await?;
            if cli.json {
                return print_json(&entry);
            }
            println!(
                "offer {} added ({} {}, conforms to {}@{})",
                entry.offer.identifier,
                entry.offer.share_type.zh(),
                entry.offer.title,
                entry.conforms_to.id,
                entry.conforms_to.version
            );
            Ok(())
        }
        CatalogCommand::Remove { id } => removed(cli, "offers", id).await,
        CatalogCommand::Show => {
            let own: OwnCatalogue = client(cli)?.get("/api/v1/catalogue").await?;
            if cli.json {
                return print_json(&own);
            }
            let seq = own
                .signed
                .as_ref()
                .map(|s| s.document.sequence)
                .unwrap_or(0);
            println!("catalogue sequence {seq}");
            println!("\nOffers (共享数据清单)");
            let rows: Vec<Vec<String>> = own
                .offers
                .iter()
                .map(|o| {
                    vec![
                        o.offer.identifier.clone(),
                        o.offer.title.clone(),
                        o.offer.share_type.zh().to_string(),
                        format!("{}@{}", o.conforms_to.id, o.conforms_to.version),
                        o.latest_version
                            .map(|v| format!("v{v}"))
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["ID", "TITLE", "SHARE TYPE", "STANDARD", "LATEST"], &rows)
            );
            println!("\nDemands (履职需求数据清单)");
            let rows: Vec<Vec<String>> = own
                .demands
                .iter()
                .map(|d| {
                    vec![
                        d.identifier.clone(),
                        d.title.clone(),
                        format!("{} {}", d.schema_id, d.version_req),
                        d.purpose.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["ID", "TITLE", "STANDARD", "PURPOSE"], &rows)
            );
            println!("\nWithheld (不予共享清单)");
            let rows: Vec<Vec<String>> = own
                .withheld
                .iter()
                .map(|w| {
                    vec![
                        w.identifier.clone(),
                        w.title.clone(),
                        w.reason.clone(),
                        w.legal_basis.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["ID", "TITLE", "REASON", "LEGAL BASIS"], &rows)
            );
            Ok(())
        }
        CatalogCommand::Search {
            text,
            schema,
            region,
            share_type,
        } => {
            let mut params = Vec::new();
            for (k, v) in [
                ("text", text),
                ("schema", schema),
                ("region", region),
                ("share_type", share_type),
            ] {
                if let Some(v) = v {
                    params.push(format!("{k}={}", urlencode(v)));
                }
            }
            let path = format!("/api/v1/catalogue/search?{}", params.join("&"));
            let hits: Vec<SearchHit> = client(cli)?.get(&path).await?;
            if cli.json {
                return print_json(&hits);
            }
            let rows: Vec<Vec<String>> = hits
                .iter()
                .map(|h| {
                    vec![
                        h.region_label.clone(),
                        h.entry.offer.identifier.clone(),
                        h.entry.offer.title.clone(),
                        h.entry.offer.share_type.zh().to_string(),
                        format!("{}@{}", h.entry.conforms_to.id, h.entry.conforms_to.version),
                        h.organisation.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "REGION",
                        "ID",
                        "TITLE",
                        "SHARE TYPE",
                        "STANDARD",
                        "PUBLISHER"
                    ],
                    &rows
                )
            );
            println!("({} offers)", hits.len());
            Ok(())
        }
        CatalogCommand::Export {
            format,
            network,
            out,
        } => {
            let path = format!(
                "/api/v1/catalogue/export?format={}&network={network}",
                urlencode(format)
            );
            let text = client(cli)?.get_text(&path).await?;
            match out {
                Some(p) => std::fs::write(p, text).map_err(|e| CliError::File {
                    path: p.clone(),
                    message: e.to_string(),
                }),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
    }
}

async fn removed(cli: &Cli, list: &str, id: &str) -> Result<(), CliError> {
    let r: Removed = client(cli)?
        .delete(&format!("/api/v1/catalogue/{list}/{}", urlencode(id)))
        .await?;
    if cli.json {
        return print_json(&r);
    }
    println!("removed {} {}", r.list, r.identifier);
    Ok(())
}

pub(super) async fn demand(cli: &Cli, cmd: &DemandCommand) -> Result<(), CliError> {
    match cmd {
        DemandCommand::Add { file } => {
            let d: Demand = read_doc(file)?;
            let d: Demand = client(cli)?.post("/api/v1/catalogue/demands", &d).await?;
            if cli.json {
                return print_json(&d);
            }
            println!(
                "demand {} added ({} {})",
                d.identifier, d.schema_id, d.version_req
            );
            Ok(())
        }
        DemandCommand::Remove { id } => removed(cli, "demands", id).await,
        DemandCommand::Match => {
            let report: MatchReport = client(cli)?.get("/api/v1/demands/match").await?;
            if cli.json {
                return print_json(&report);
            }
            println!("Our demands met by others' offers");
            let rows: Vec<Vec<String>> = report
                .for_our_demands
                .iter()
                .map(|m| {
                    vec![
                        m.demand.identifier.clone(),
                        m.provider_region.clone(),
                        m.offer.clone(),
                        m.offer_title.clone(),
                        format!("{}@{}", m.demand.schema_id, m.schema_version),
                        m.share_type.zh().into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "DEMAND",
                        "PROVIDER",
                        "OFFER",
                        "TITLE",
                        "STANDARD",
                        "SHARE TYPE"
                    ],
                    &rows
                )
            );
            if !report.unmet_demands.is_empty() {
                println!("unmet: {}", report.unmet_demands.join(", "));
            }
            println!("\nOthers' demands our offers meet");
            let rows: Vec<Vec<String>> = report
                .for_our_offers
                .iter()
                .map(|m| {
                    vec![
                        m.offer.clone(),
                        m.demander_region.clone(),
                        m.demand.identifier.clone(),
                        m.demand.purpose.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["OUR OFFER", "DEMANDER", "DEMAND", "PURPOSE"], &rows)
            );
            Ok(())
        }
    }
}

pub(super) async fn withheld(cli: &Cli, cmd: &WithheldCommand) -> Result<(), CliError> {
    match cmd {
        WithheldCommand::Add { file } => {
            let w: Withheld = read_doc(file)?;
            let w: Withheld = client(cli)?.post("/api/v1/catalogue/withheld", &w).await?;
            if cli.json {
                return print_json(&w);
            }
            println!("withheld {} added ({})", w.identifier, w.reason);
            Ok(())
        }
        WithheldCommand::Remove { id } => removed(cli, "withheld", id).await,
    }
}

pub(super) async fn publish(
    cli: &Cli,
    dataset: &str,
    file: &Path,
    format: &str,
) -> Result<(), CliError> {
    let format = match format {
        "jsonl" => DataFormat::Jsonl,
        "csv" => DataFormat::Csv,
        "file" => DataFormat::File,
        other => {
            return Err(CliError::Usage(format!(
                "--format {other:?}: expected jsonl, csv or file"
            )));
        }
    };
    let file = std::fs::canonicalize(file).map_err(|e| CliError::File {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let body = PublishVersion { file, format };
    let path = format!("/api/v1/datasets/{}/versions", urlencode(dataset));
    let c = client(cli)?;
    let label = format!("validating and importing {:.1} MB", size as f64 / 1e6);
    let answer: Result<Signed<Manifest>, _> =
        with_progress(cli, &label, c.post(&path, &body)).await;
    let m = answer?;
    if cli.json {
        return print_json(&m);
    }
    let d = &m.document;
    println!(
        "published {} v{}: {} records, {} bytes, digest {}",
        d.dataset, d.version, d.record_count, d.size, d.digest
    );
    Ok(())
}

pub(super) async fn versions(cli: &Cli, dataset: &str) -> Result<(), CliError> {
    let path = format!("/api/v1/datasets/{}/versions", urlencode(dataset));
    let list: Vec<Signed<Manifest>> = client(cli)?.get(&path).await?;
    if cli.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let d = &m.document;
            vec![
                format!("v{}", d.version),
                d.record_count.to_string(),
                d.size.to_string(),
                d.digest.chars().take(16).collect(),
                d.published_at.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["VERSION", "RECORDS", "BYTES", "DIGEST", "PUBLISHED"],
            &rows
        )
    );
    Ok(())
}
