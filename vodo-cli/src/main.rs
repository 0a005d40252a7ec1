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

mod account;
mod admin;
mod build;
mod create;
mod dev;
mod files;
mod logs;
mod package;
mod plugin_test;
mod remote;
mod review;
mod serve;
mod tinker;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use vodo_core::Manifest;
use vodo_core::manifest::{JSON_SCHEMA, ManifestError};

#[derive(Parser)]
#[command(
    name = "vodo",
    version,
    about = "Build, check and publish Vodo plugins",
    after_help = "Exit codes: 0 success; 1 the command failed or found problems (an invalid manifest, a failed test or sample, review errors), with the reason on stderr; 2 a usage error, or plugin:review could not read its package."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a plugin folder from a starter template: plugin.json, Cargo.toml,
    /// src, tests, samples.json, README and the plugin kit in vendor/. It builds
    /// and passes its own tests at once.
    ///
    /// Templates: basic, entity, integration, dashboard, ecommerce, workflow.
    /// Without --template, asks when a terminal is attached (else basic).
    ///
    /// Example: `vodo plugin:create gift-messages --template entity`
    #[command(name = "plugin:create")]
    Create {
        /// The plugin's name: a slug (`gift-messages`) or a display name ("Gift Messages").
        name: String,
        /// The starter template.
        #[arg(long, short)]
        template: Option<String>,
        /// Print what was made as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Create a plugin in the current folder, refusing to overwrite any file.
    ///
    /// Example: `mkdir gift-messages && cd gift-messages && vodo plugin:init --template basic`
    #[command(name = "plugin:init")]
    Init {
        /// The plugin's name (default: the folder's).
        #[arg(long)]
        name: Option<String>,
        /// The starter template.
        #[arg(long, short)]
        template: Option<String>,
        /// Print what was made as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Build the plugin for wasm32-wasip2 (adding the target when missing) and
    /// write its package: the component is found from cargo's own output.
    ///
    /// Example: `vodo plugin:build` in a plugin folder, then `vodo plugin:review *.vpkg`
    #[command(name = "plugin:build")]
    Build {
        /// The plugin folder (default: the current folder).
        path: Option<PathBuf>,
        /// Where to write the package (default: `{slug}-{version}.vpkg` in the folder).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Print the result as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Run the plugin's tests (`cargo test`), then build it and run every
    /// sample of samples.json in the sandbox with the manifest's permissions,
    /// printing each result with its log lines, writes, files, network
    /// attempts, usage and audit events, and what to change when a limit or a
    /// permission stopped it. Exit 1 when a test or a sample fails.
    ///
    /// Example: `vodo plugin:test`, or `vodo plugin:test --no-cargo-test --json`
    #[command(name = "plugin:test")]
    Test {
        /// The plugin folder (default: the current folder).
        path: Option<PathBuf>,
        /// Skip `cargo test`; only the samples.
        #[arg(long)]
        no_cargo_test: bool,
        /// Memory per call in MiB (default: the platform's).
        #[arg(long)]
        memory_mib: Option<u64>,
        /// Wall time per call in milliseconds (default: the platform's).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Print the runs as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
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
    /// Upload the plugin's package to a marketplace server (built first
    /// unless --package is given), then show the automated review and the
    /// submission's state. Needs `vodo login` first.
    ///
    /// Example: `vodo plugin:publish`, or `vodo plugin:publish --package gift-messages-0.1.0.vpkg`
    #[command(name = "plugin:publish")]
    Publish {
        /// The plugin folder (default: the current folder).
        path: Option<PathBuf>,
        /// A package to upload instead of building one.
        #[arg(long)]
        package: Option<PathBuf>,
        /// The server (default: the one signed in to last).
        #[arg(long)]
        server: Option<String>,
        /// Print the submission as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// A submission's state, the reviewer's feedback and its history.
    ///
    /// Example: `vodo plugin:status sub_3kTqZ8v1`
    #[command(name = "plugin:status")]
    Status {
        /// The submission's id (`vodo plugin:publish` prints it).
        id: String,
        /// The server (default: the one signed in to last).
        #[arg(long)]
        server: Option<String>,
        /// Print the submission as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Sign in to a marketplace server with its OAuth provider's device
    /// grant: the CLI shows a code and a page, you approve in a browser
    /// where you are signed in. The tokens are kept in your config folder
    /// (`$VODO_CONFIG_DIR`, else `~/.config/vodo`), readable by you only,
    /// and renewed when they expire.
    ///
    /// Example: `vodo login --server https://market.example.com`
    Login {
        /// The server (default: `$VODO_SERVER`, else http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// Print the code and the result as JSON lines, for tools.
        #[arg(long)]
        json: bool,
    },
    /// A prompt to drive one plugin of an installation on a running server:
    /// send it events and requests, and see its answer, usage, log lines and
    /// audit records; read and write records and its settings. Signs in with
    /// a console account (password from $VODO_PASSWORD, or asked).
    ///
    /// Example: `vodo tinker order-logger --email admin@vodo.local`
    Tinker {
        /// The plugin's slug.
        plugin: String,
        /// The installation (default: the dev installation, `demo`).
        #[arg(long, default_value = "demo")]
        installation: String,
        /// The account to sign in as.
        #[arg(long, default_value = "admin@vodo.local")]
        email: String,
        /// The server (default: `$VODO_SERVER`, else http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
    },
    /// Sign out: revoke the tokens at the server and forget them.
    ///
    /// Example: `vodo logout`
    Logout {
        /// The server (default: the one signed in to last).
        #[arg(long)]
        server: Option<String>,
    },
    /// Who you are signed in as, and your role.
    ///
    /// Example: `vodo whoami --json`
    Whoami {
        /// The server (default: the one signed in to last).
        #[arg(long)]
        server: Option<String>,
        /// Print it as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's log lines and audit events from a `vodo serve` data
    /// folder, oldest first, interleaved by time; --follow keeps printing
    /// them as they come.
    ///
    /// Examples: `vodo logs order-notifier --follow`,
    /// `vodo logs order-notifier --kind permission_denied --since 1h --json`
    Logs {
        /// The plugin's slug.
        plugin: String,
        #[command(flatten)]
        at: Target,
        /// Only this installation.
        #[arg(long)]
        installation: Option<String>,
        /// `log` for log lines only, or an audit kind (`permission_denied`,
        /// `sandbox_violation`, `network_request`, `lifecycle`, ...) for those only.
        #[arg(long)]
        kind: Option<String>,
        /// Only since this time (`2026-12-04T10:00:00Z`) or for this long (`10m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new lines until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line, for tools.
        #[arg(long)]
        json: bool,
    },
    /// API keys of a plugin in an installation, on a `vodo serve` data folder.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// People's accounts on a `vodo serve` data folder: a developer to sign
    /// in with `vodo login`, a reviewer, a merchant.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// The audit trail of a `vodo serve` data folder: verify its chain, or query it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the platform: the console under /admin, the API under /v1 and
    /// /api, plugins under /plugins, on an embedded SQLite data folder seeded
    /// on first start with a demo installation and the example plugin.
    ///
    /// With --plugins (or in a plugin folder), the plugins being developed
    /// are built and loaded into the demo installation, and rebuilt and
    /// reloaded whenever their folder changes; a failed rebuild keeps the
    /// previous version serving.
    ///
    /// Example: `vodo serve --port 8080 --data .vodo --plugins ./my-plugin`
    Serve {
        /// A plugin folder, or a folder of them, to load and watch (default:
        /// the current folder when it holds a plugin.json).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// The data folder (created on first start).
        #[arg(long, default_value = ".vodo")]
        data: PathBuf,
        /// The port on 127.0.0.1 (0 picks a free one).
        #[arg(long, env = "VODO_PORT", default_value_t = 8080)]
        port: u16,
    },
}

/// Where `vodo keys`, `vodo audit` and `vodo logs` read: a data folder of
/// `vodo serve`, or a running server.
#[derive(clap::Args)]
struct Target {
    /// The data folder of `vodo serve`.
    #[arg(long, default_value = ".vodo")]
    data: PathBuf,
    /// A running server to ask instead of a data folder (signs in as
    /// --email, with $VODO_PASSWORD or asked).
    #[arg(long)]
    server: Option<String>,
    /// The account to sign in as, with --server.
    #[arg(long, default_value = "admin@vodo.local")]
    email: String,
}

impl Target {
    /// A signed-in session with the server, if one was named.
    fn session(&self) -> anyhow::Result<Option<remote::Session>> {
        self.server
            .as_deref()
            .map(|server| remote::Session::connect(server, &self.email))
            .transpose()
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key; the key is printed once and only its hash is kept.
    ///
    /// Example: `vodo keys issue order-notifier --installation demo --name ci --scope entities:read:order`
    Issue {
        /// The plugin's slug.
        plugin: String,
        /// The installation.
        #[arg(long, default_value = "demo")]
        installation: String,
        /// What the key is for, shown in lists.
        #[arg(long)]
        name: String,
        /// A scope the key carries (repeat; default: all the plugin's grant has).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Days until it expires (default: never).
        #[arg(long)]
        ttl_days: Option<u64>,
        #[command(flatten)]
        at: Target,
        /// Print the result as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// List a plugin's keys (never their secrets).
    ///
    /// Example: `vodo keys list order-notifier --installation demo`
    List {
        /// The plugin's slug.
        plugin: String,
        /// The installation.
        #[arg(long, default_value = "demo")]
        installation: String,
        #[command(flatten)]
        at: Target,
        /// Print the result as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key: a new one is printed once, the old one works for the grace period.
    ///
    /// Example: `vodo keys rotate 3kTqZ8v1mRb2XyW9 --grace-hours 24`
    Rotate {
        /// The key's id.
        id: String,
        /// With --server: the key's plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// With --server: the key's installation.
        #[arg(long, default_value = "demo")]
        installation: String,
        /// How long the old key keeps working.
        #[arg(long, default_value_t = 24)]
        grace_hours: u64,
        #[command(flatten)]
        at: Target,
        /// Print the result as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once.
    ///
    /// Example: `vodo keys revoke 3kTqZ8v1mRb2XyW9`
    Revoke {
        /// The key's id.
        id: String,
        /// With --server: the key's plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// With --server: the key's installation.
        #[arg(long, default_value = "demo")]
        installation: String,
        #[command(flatten)]
        at: Target,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Add an account with a one-time password, printed once (only its
    /// hash is kept; change it at /admin/account).
    ///
    /// Example: `vodo accounts add dev@example.com --role partner`
    Add {
        /// The email address the person signs in with.
        email: String,
        /// admin, reviewer, partner (builds and publishes plugins) or merchant.
        #[arg(long)]
        role: String,
        /// For a merchant: the installation (store) they manage.
        #[arg(long)]
        installation: Option<String>,
        /// Replace an existing account's role and password.
        #[arg(long)]
        replace: bool,
        /// The data folder of `vodo serve`.
        #[arg(long, default_value = ".vodo")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the chain of every record: exit 0 if it holds, 1 with the first broken line.
    ///
    /// Example: `vodo audit verify --data .vodo`
    Verify {
        #[command(flatten)]
        at: Target,
        /// Print the result as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Records matching the filters, oldest first.
    ///
    /// Example: `vodo audit query --plugin order-notifier --kind permission_denied --since 1d`
    Query {
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Only this installation.
        #[arg(long)]
        installation: Option<String>,
        /// Only this kind (`permission_denied`, `lifecycle`, `key_revoked`, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only since this time (`2026-12-04T10:00:00Z`) or for this long (`10m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        at: Target,
        /// One JSON object per record, for tools.
        #[arg(long)]
        json: bool,
    },
}

/// An issued key's JSON, as the API answers it, with its owner and the key.
fn issued(key: &str, r: &vodo_core::keys::ApiKeyRecord) -> serde_json::Value {
    let mut v = admin::key_json(r);
    v["key"] = key.into();
    v
}

/// Prints a new key: the key alone on stdout (or the JSON), what it is on stderr.
fn print_issued(v: &serde_json::Value, json: bool) {
    if json {
        println!("{v}");
    } else {
        println!("{}", v["key"].as_str().unwrap_or(""));
        eprintln!(
            "key {} for {} in {}: shown only now, store it as a secret",
            v["id"].as_str().unwrap_or("?"),
            v["plugin"].as_str().unwrap_or("?"),
            v["installation"].as_str().unwrap_or("?")
        );
    }
}

/// A key's line in `vodo keys list`, from its JSON.
fn key_line(k: &serde_json::Value) -> String {
    let state = if !k["revoked_at"].is_null() {
        "revoked".to_owned()
    } else if let Some(next) = k["replaced_by"].as_str() {
        format!("rotated to {next}")
    } else {
        "active".to_owned()
    };
    let scopes: Vec<&str> = k["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    format!(
        "{}  {:20} {:8} {} uses  {}",
        k["id"].as_str().unwrap_or("?"),
        k["name"].as_str().unwrap_or(""),
        state,
        k["usage_count"],
        scopes.join(" ")
    )
}

const NEEDS_PLUGIN: &str = "with --server, name the key's plugin with --plugin";

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Issue {
            plugin,
            installation,
            name,
            scopes,
            ttl_days,
            at,
            json,
        } => {
            let key = match at.session()? {
                Some(s) => {
                    remote::keys_issue(&s, &installation, &plugin, &name, &scopes, ttl_days)?
                }
                None => {
                    let ttl =
                        ttl_days.map(|d| std::time::Duration::from_secs(d.saturating_mul(86_400)));
                    let (key, r) =
                        admin::issue(&at.data, &installation, &plugin, &name, &scopes, ttl)?;
                    issued(&key, &r)
                }
            };
            print_issued(&key, json);
        }
        KeysCommand::List {
            plugin,
            installation,
            at,
            json,
        } => {
            let keys = match at.session()? {
                Some(s) => remote::keys_list(&s, &installation, &plugin)?,
                None => admin::list(&at.data, &installation, &plugin)?
                    .iter()
                    .map(admin::key_json)
                    .collect(),
            };
            if json {
                println!("{}", serde_json::Value::from(keys));
            } else if keys.is_empty() {
                println!(
                    "{plugin} has no keys in {installation}: `vodo keys issue {plugin} --installation {installation} --name ...` makes one"
                );
            } else {
                for k in &keys {
                    println!("{}", key_line(k));
                }
            }
        }
        KeysCommand::Rotate {
            id,
            plugin,
            installation,
            grace_hours,
            at,
            json,
        } => {
            let grace = std::time::Duration::from_secs(grace_hours.saturating_mul(3600));
            let key = match at.session()? {
                Some(s) => remote::keys_rotate(
                    &s,
                    &installation,
                    &plugin.context(NEEDS_PLUGIN)?,
                    &id,
                    grace,
                )?,
                None => {
                    let (key, r) = admin::rotate(&at.data, &id, grace)?;
                    issued(&key, &r)
                }
            };
            print_issued(&key, json);
        }
        KeysCommand::Revoke {
            id,
            plugin,
            installation,
            at,
        } => {
            match at.session()? {
                Some(s) => {
                    remote::keys_revoke(&s, &installation, &plugin.context(NEEDS_PLUGIN)?, &id)?;
                }
                None => admin::revoke(&at.data, &id)?,
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { at, json } => {
            let (records, last) = match at.session()? {
                Some(s) => remote::audit_verify(&s)?,
                None => admin::verify(&at.data)?,
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "valid": true, "records": records, "last_seq": last })
                );
            } else {
                println!("the audit trail verifies: {records} records, the last #{last}");
            }
        }
        AuditCommand::Query {
            plugin,
            installation,
            kind,
            since,
            limit,
            at,
            json,
        } => {
            let since = since
                .map(|s| logs::since(&s, vodo_core::Timestamp::now()))
                .transpose()?;
            let records = match at.session()? {
                Some(s) => remote::audit_records(
                    &s,
                    &remote::AuditFilter {
                        plugin: plugin.as_deref(),
                        installation: installation.as_deref(),
                        kind: kind.as_deref(),
                        since,
                    },
                    0,
                    limit,
                )?,
                None => admin::query(
                    &at.data,
                    plugin.as_deref(),
                    installation.as_deref(),
                    kind.as_deref(),
                    since,
                    limit,
                )?,
            };
            for r in records {
                let action = serde_json::to_value(&r.event.action).unwrap_or_default();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "seq": r.seq,
                            "at": r.event.at.as_millis(),
                            "plugin": r.event.plugin.as_ref().map(vodo_core::PluginId::as_str),
                            "installation": r.event.installation.as_ref().map(vodo_core::InstallationId::as_str),
                            "event": action,
                        })
                    );
                } else {
                    println!(
                        "#{} {} {} [{}] {}",
                        r.seq,
                        logs::rfc3339(r.event.at),
                        r.event
                            .plugin
                            .as_ref()
                            .map_or("-", vodo_core::PluginId::as_str),
                        r.event
                            .installation
                            .as_ref()
                            .map_or("-", vodo_core::InstallationId::as_str),
                        action
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys(command) => report(keys(command)),
        Command::Accounts(AccountsCommand::Add {
            email,
            role,
            installation,
            replace,
            data,
        }) => report(
            admin::add_account(&data, &email, &role, installation.as_deref(), replace).map(
                |password| {
                    println!("{password}");
                    eprintln!(
                        "account {email} ({role}) on {}: that is its one-time password, shown only now; change it at /admin/account",
                        data.display()
                    );
                },
            ),
        ),
        Command::Login { server, json } => report(account::login(
            &server.unwrap_or_else(account::default_server),
            json,
        )),
        Command::Tinker {
            plugin,
            installation,
            email,
            server,
        } => report(tinker::run(&tinker::Options {
            server: server.unwrap_or_else(account::default_server),
            email,
            installation,
            plugin,
        })),
        Command::Logout { server } => report(account::logout(server.as_deref())),
        Command::Whoami { server, json } => report(account::whoami(server.as_deref(), json)),
        Command::Status { id, server, json } => {
            report(account::status(&id, server.as_deref(), json))
        }
        Command::Publish {
            path,
            package,
            server,
            json,
        } => report((|| {
            let package = match package {
                Some(p) => p,
                None => {
                    let dir = path.unwrap_or_else(|| PathBuf::from("."));
                    let manifest = load_manifest(&dir)?;
                    let component = build::build(&dir, None)?;
                    let out = dir.join(format!("{}-{}.vpkg", manifest.slug, manifest.version));
                    package::package(&dir, Some(&component), None, Some(&out))?.path
                }
            };
            account::publish(&package, server.as_deref(), json)
        })()),
        Command::Audit(command) => report(audit(command)),
        Command::Logs {
            plugin,
            at,
            installation,
            kind,
            since,
            follow,
            json,
        } => report((|| {
            let filter = logs::Filter {
                plugin: vodo_core::PluginId::new(&plugin),
                installation: installation.map(vodo_core::InstallationId::new),
                kind,
                since: since
                    .map(|s| logs::since(&s, vodo_core::Timestamp::now()))
                    .transpose()?,
            };
            match at.session()? {
                Some(s) => remote::logs(&s, &filter, follow, json),
                None => logs::run(&at.data, &filter, follow, json),
            }
        })()),
        Command::Create {
            name,
            template,
            json,
        } => report(
            create::choose(template.as_deref())
                .and_then(|t| create::create(Path::new("."), &name, t))
                .map(|c| created(&c, json)),
        ),
        Command::Init {
            name,
            template,
            json,
        } => report(
            create::choose(template.as_deref())
                .and_then(|t| create::init(Path::new("."), name.as_deref(), t))
                .map(|c| created(&c, json)),
        ),
        Command::Build { path, out, json } => report(build_plugin(
            path.as_deref().unwrap_or(Path::new(".")),
            out.as_deref(),
            json,
        )),
        Command::Test {
            path,
            no_cargo_test,
            memory_mib,
            timeout_ms,
            json,
        } => {
            let mut limits = plugin_test::TestLimits::default();
            if let Some(m) = memory_mib {
                limits.memory = m.saturating_mul(1 << 20);
            }
            if let Some(t) = timeout_ms {
                limits.timeout = std::time::Duration::from_millis(t);
            }
            match test_plugin(
                path.as_deref().unwrap_or(Path::new(".")),
                !no_cargo_test,
                limits,
                json,
            ) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            data,
            port,
            plugins,
        } => {
            init_tracing();
            let plugins = plugins.or_else(|| {
                Path::new("plugin.json")
                    .is_file()
                    .then(|| PathBuf::from("."))
            });
            match serve::run(
                &data,
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                plugins.as_deref(),
            ) {
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

/// Exit 0 on success; otherwise the error, and exit 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn created(c: &create::Created, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "dir": c.dir.display().to_string(),
                "slug": c.slug,
                "template": c.template,
                "files": c.files,
            })
        );
        return;
    }
    println!(
        "created {} from the `{}` template in {}",
        c.slug,
        c.template,
        c.dir.display()
    );
    for f in &c.files {
        println!("  {f}");
    }
    let cd = if c.dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", c.dir.display())
    };
    println!("next: {cd}vodo plugin:test && vodo plugin:build");
}

/// Loads the manifest of the plugin folder `dir`, with a hint when it is not one.
fn load_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    Manifest::load(dir).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is not a plugin folder with a valid plugin.json ({e}): run `vodo plugin:validate` there, or `vodo plugin:create` to start one",
            dir.display()
        )
    })
}

fn build_plugin(dir: &Path, out: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let manifest = load_manifest(dir)?;
    let component = build::build(dir, None)?;
    let out = out.map_or_else(
        || dir.join(format!("{}-{}.vpkg", manifest.slug, manifest.version)),
        Path::to_path_buf,
    );
    let p = package::package(dir, Some(&component), None, Some(&out))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "component": component.display().to_string(),
                "package": p.path.display().to_string(),
                "bytes": p.bytes,
                "sha256": p.sha256,
                "slug": p.slug,
                "version": p.version,
            })
        );
    } else {
        println!("built {}", component.display());
        println!(
            "packaged {} {}: {} ({} bytes, sha256 {})",
            p.slug,
            p.version,
            p.path.display(),
            p.bytes,
            p.sha256
        );
        println!("next: vodo plugin:review {}", p.path.display());
    }
    Ok(())
}

/// `vodo plugin:test`; the number of failures.
fn test_plugin(
    dir: &Path,
    cargo_test: bool,
    limits: plugin_test::TestLimits,
    json: bool,
) -> anyhow::Result<usize> {
    let manifest = load_manifest(dir)?;
    let samples_file = dir.join("samples.json");
    let max = vodo_marketplace::review::Policy::default().max_package_bytes;
    let samples = if samples_file.is_file() {
        plugin_test::samples(&samples_file, max)?
    } else {
        Vec::new()
    };
    if cargo_test {
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["test", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                // In JSON mode stdout is the report's alone.
                .stdout(if json {
                    std::process::Stdio::null()
                } else {
                    std::process::Stdio::inherit()
                })
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .map_err(|e| anyhow::anyhow!("cannot run `cargo test`: {e}"))?;
        if !status.success() {
            anyhow::bail!(
                "the plugin's tests failed (cargo's output is above): fix them, then run `vodo plugin:test` again"
            );
        }
    }
    if samples.is_empty() {
        eprintln!(
            "warning: `{}` has no samples: add {{\"event\": ..., \"payload\": ...}} items so that the sandbox runs them here and in the marketplace's review",
            samples_file.display()
        );
    }
    let component = build::build(dir, None)?;
    let wasm = files::read_at_most(&component, max, "the component")?;
    let runs = plugin_test::run_samples(&manifest, &wasm, &samples, limits)?;
    let failed = runs
        .iter()
        .filter(|r| !matches!(r.outcome, plugin_test::Outcome::Ok))
        .count();
    if json {
        println!(
            "{}",
            serde_json::json!({ "samples": runs, "failed": failed })
        );
    } else {
        plugin_test::print(&runs);
        println!("{} sample(s), {failed} failed", runs.len());
    }
    Ok(failed)
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
