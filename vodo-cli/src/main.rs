//! The `vodo` command: tools for plugin authors and hosts.
//!
//! `vodo plugin:validate [PATH]` checks a `plugin.json` (or the one in a
//! plugin folder) and prints every problem with its JSON path, or a summary
//! of what the plugin requests. `vodo plugin:schema` prints the manifest's
//! JSON Schema for editors. `vodo plugin:package [PATH]` makes the package
//! the marketplace takes from a plugin folder, and `vodo plugin:review PKG`
//! runs the marketplace's automated review on it locally. `vodo serve`
//! runs the whole platform (API, console, plugins) on an embedded data folder.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod build;
mod files;
mod package;
mod review;
mod serve;

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
    /// Package a plugin folder for the marketplace: plugin.json, the component,
    /// README.md and samples.json (the sample events the automated review runs).
    #[command(name = "plugin:package")]
    Package {
        /// The plugin folder (default: the current folder).
        path: Option<PathBuf>,
        /// The component, if not at the manifest's `entry` in the folder.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The sample events, if not `samples.json` in the folder.
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Where to write the package (default: `{slug}-{version}.vpkg`).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Run the marketplace's automated review on a package, as it will run
    /// on submission: package, permissions, license, performance (the sample
    /// events in the sandbox), compatibility and security.
    #[command(name = "plugin:review")]
    Review {
        /// The package (`vodo plugin:package` makes it).
        package: PathBuf,
        /// The host API version to check compatibility against (default: this release's).
        #[arg(long)]
        host_api: Option<String>,
        /// Print the report as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Run the platform: the console under /admin, the API under /v1 and
    /// /api, plugins under /plugins, on an embedded SQLite data folder seeded
    /// on first start with a demo installation and the example plugin.
    ///
    /// Example: `vodo serve --port 8080 --data .vodo`
    Serve {
        /// The data folder (created on first start).
        #[arg(long, default_value = ".vodo")]
        data: PathBuf,
        /// The port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { data, port } => {
            init_tracing();
            match serve::run(&data, std::net::SocketAddr::from(([127, 0, 0, 1], port))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { path, json } => {
            validate(path.as_deref().unwrap_or(Path::new(".")), json)
        }
        Command::Schema => {
            println!("{JSON_SCHEMA}");
            ExitCode::SUCCESS
        }
        Command::Package {
            path,
            wasm,
            samples,
            out,
        } => match package::package(
            path.as_deref().unwrap_or(Path::new(".")),
            wasm.as_deref(),
            samples.as_deref(),
            out.as_deref(),
        ) {
            Ok(p) => {
                println!(
                    "packaged {} {}: {} ({} bytes, sha256 {})",
                    p.slug,
                    p.version,
                    p.path.display(),
                    p.bytes,
                    p.sha256
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Review {
            package,
            host_api,
            json,
        } => match review::run(&package, host_api.as_deref()) {
            Ok(report) => {
                if json {
                    match serde_json::to_string(&report) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    review::print(&report);
                }
                if report.errors().count() == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
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
    if !m.routes.is_empty() {
        let r: Vec<String> = m.routes.iter().map(ToString::to_string).collect();
        println!("routes: {}", r.join(", "));
    }
}

/// Logs to stderr at `info` (or at `RUST_LOG`'s level when set to one of
/// `error`, `warn`, `info`, `debug`, `trace`).
fn init_tracing() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}
