//! The `vodo` command: tools for plugin authors and hosts.
//!
//! `vodo plugin:validate [PATH]` checks a `plugin.json` (or the one in a
//! plugin folder) and prints every problem with its JSON path, or a summary
//! of what the plugin requests. `vodo plugin:schema` prints the manifest's
//! JSON Schema for editors.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vodo_core::Manifest;
use vodo_core::manifest::{JSON_SCHEMA, ManifestError};

#[derive(Parser)]
#[command(
    name = "vodo",
    version,
    about = "Build, check and publish Vodo plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a plugin.json: every problem with its JSON path, or what the plugin requests.
    #[command(name = "plugin:validate")]
    Validate {
        /// A plugin.json file or a plugin folder (default: the current folder).
        path: Option<PathBuf>,
        /// Print the result as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of plugin.json, for editors.
    #[command(name = "plugin:schema")]
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { path, json } => {
            validate(path.as_deref().unwrap_or(Path::new(".")), json)
        }
        Command::Schema => {
            println!("{JSON_SCHEMA}");
            ExitCode::SUCCESS
        }
    }
}

fn validate(path: &Path, json: bool) -> ExitCode {
    match Manifest::load(path) {
        Ok(m) => {
            if json {
                let out = serde_json::json!({
                    "valid": true,
                    "slug": m.slug.as_str(),
                    "version": m.version.to_string(),
                    "scopes": m.scopes().iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                print_summary(&m);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let problems = match &e {
                vodo_core::Error::Manifest(ManifestError { problems }) => problems
                    .iter()
                    .map(|p| (p.path.clone(), p.message.clone()))
                    .collect(),
                vodo_core::Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    vec![(
                        "$".to_owned(),
                        format!(
                            "{e}: run this in a plugin folder, or pass the path of a plugin.json"
                        ),
                    )]
                }
                other => vec![("$".to_owned(), other.to_string())],
            };
            if json {
                let out = serde_json::json!({
                    "valid": false,
                    "problems": problems.iter().map(|(p, m)| serde_json::json!({"path": p, "message": m})).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                let n = problems.len();
                eprintln!(
                    "error: `{}` is not a valid plugin manifest ({n} problem{})",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                );
                for (p, m) in &problems {
                    eprintln!("  {p}: {m}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn print_summary(m: &Manifest) {
    println!("ok: {} {} ({})", m.slug, m.version, m.name);
    let scopes = m.scopes();
    if scopes.is_empty() {
        println!("requests no permissions");
    } else {
        println!(
            "requests {} scope{}:",
            scopes.len(),
            if scopes.len() == 1 { "" } else { "s" }
        );
        for s in scopes {
            println!("  {s}");
        }
    }
    let limits = m.limits();
    if let Some(r) = limits.rate_limit {
        println!("api rate limit: {r}");
    }
    if let Some(q) = limits.storage_quota {
        let types: Vec<String> = limits
            .allowed_types
            .iter()
            .map(ToString::to_string)
            .collect();
        println!("storage quota: {q} bytes ({})", types.join(", "));
    }
    if !limits.endpoints.is_empty() {
        let e: Vec<String> = limits.endpoints.iter().map(ToString::to_string).collect();
        println!("endpoints: {}", e.join(", "));
    }
}
