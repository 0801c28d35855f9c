//! `mljm clusters list|show NAME`: the SLURM clusters of a running server's config.toml, and
//! one cluster's partitions with their GPUs by type. A cluster that does not answer (an
//! unknown host key, a refused key, a controller that is down) is an error naming why.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::jobs::{Client, ServerOpts};

#[derive(Args, Debug)]
pub struct ClustersArgs {
    #[command(flatten)]
    pub opts: ServerOpts,
    #[command(subcommand)]
    pub command: ClustersCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClustersCommand {
    /// The clusters and whether each answers.
    List,
    /// A cluster's partitions: nodes, CPUs, GPUs by type (total / allocated / free).
    Show { name: String },
}

pub async fn run(args: ClustersArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.opts.server);
    match args.command {
        ClustersCommand::List => {
            let list: Value = c
                .send(c.http.get(c.url("/clusters/")))
                .await?
                .json()
                .await?;
            if args.opts.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows = list.as_array().cloned().unwrap_or_default();
            println!("{:<20}  {:<6}  STATE", "NAME", "SUBMIT");
            for r in &rows {
                let state = match r["error"].as_str() {
                    Some(e) => format!("not answering: {e}"),
                    None => "answers".into(),
                };
                println!(
                    "{:<20}  {:<6}  {state}",
                    r["name"].as_str().unwrap_or_default(),
                    r["submit"].as_str().unwrap_or_default()
                );
            }
            if rows.is_empty() {
                eprintln!("no clusters: config.toml declares none ([[clusters]])");
            }
        }
        ClustersCommand::Show { name } => {
            let path = format!("/clusters/{}", urlencoding(&name));
            let info: Value = c.send(c.http.get(c.url(&path))).await?.json().await?;
            if args.opts.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(());
            }
            println!(
                "{:<16}  {:<6}  {:>5}  {:>13}  GPUS (type total/allocated/free)",
                "PARTITION", "STATE", "NODES", "CPUS (idle)"
            );
            for p in info["partitions"].as_array().into_iter().flatten() {
                let gpus: Vec<String> = p["gpus"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| {
                        format!(
                            "{} {}/{}/{}",
                            g["type"]
                                .as_str()
                                .filter(|t| !t.is_empty())
                                .unwrap_or("gpu"),
                            g["total"],
                            g["allocated"],
                            g["free"]
                        )
                    })
                    .collect();
                let name = format!(
                    "{}{}",
                    p["name"].as_str().unwrap_or_default(),
                    if p["default"] == true { "*" } else { "" }
                );
                println!(
                    "{:<16}  {:<6}  {:>5}  {:>13}  {}",
                    name,
                    p["state"].as_str().unwrap_or_default(),
                    p["nodes"],
                    format!("{} ({})", p["cpus"], p["cpus_idle"]),
                    if gpus.is_empty() {
                        "-".into()
                    } else {
                        gpus.join(", ")
                    }
                );
            }
        }
    }
    Ok(())
}

/// A cluster name as one path segment (names are plain words; anything else is escaped).
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
