//! [`Platform`]: a host, its sandbox, the server's store and accounts,
//! wired over one data folder, and the operations the API and the console
//! share (install with consent, enable, disable, uninstall, keys, audit).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::num::NonZeroU32;
use vodo_core::audit::{
    AuditFilter, AuditLog, AuditRecord, FileAudit, FileAuditOptions, VerifyReport, verify_file,
};
use vodo_core::health::HealthReport;
use vodo_core::keys::{ApiKey, ApiKeyRecord, IssueKey};

use vodo_core::rate::{Period, RateLimit};
use vodo_core::{Consent, Host, InstallationId, Manifest, PluginId, SecretKey};
use vodo_marketplace::catalog::InstallEvent;
use vodo_marketplace::package::Package;
use vodo_oauth::webhooks::{Deliverer, DeliveryConfig, SqliteOutbox};
use vodo_oauth::{AuthServer, AuthServerConfig};
use vodo_sandbox::{Installed, Limits, Sandbox, SandboxConfig, UsageSummary, Wasm};
use vodo_scopes::{ConsentDiff, PluginScope, ScopeSet};

use crate::accounts::{Accounts, Role};
use crate::error::ServerError;
use crate::store::{PackageRow, ServerStore};

/// The `client_id` of the `vodo` CLI, the platform's own public client:
/// `vodo login` signs a developer in with the device authorization grant
/// for `marketplace:publish`.
pub const CLI_CLIENT: &str = "vodo-cli";

/// A platform API resource: the name in `/api/{name}/...` (which a
/// manifest's `api.endpoints` grants) and the entity kind it reads and
/// writes (`entities:read:{kind}`, `entities:write:{kind}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `orders`.
    pub name: String,
    /// `order`.
    pub kind: String,
}

impl Resource {
    /// A resource named `name` over entities of `kind`.
    pub fn new(name: &str, kind: &str) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
        }
    }
}

/// How a [`Platform`] is set up.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The data folder: grants, keys, the audit trail, the server's
    /// database, packages, plugins' storage and the compiled-component cache.
    pub data: PathBuf,
    /// The platform API's resources. Default: `orders`, `products`, `customers`.
    pub resources: Vec<Resource>,
    /// Whether session cookies are `Secure` (set when served over TLS, or
    /// behind a proxy that terminates it). Default `false`, for loopback.
    pub secure_cookies: bool,
    /// How long a sign-in lasts. Default 12 hours.
    pub session_ttl: Duration,
    /// The sandbox's configuration; its storage and cache folders are set
    /// under `data` when they are `None`.
    pub sandbox: SandboxConfig,
    /// Limits of every plugin call. Default [`Limits::default`].
    pub limits: Limits,
    /// The OAuth provider's issuer: the URL this server is reached at,
    /// `https` (or `http` on loopback). Default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// How webhooks are delivered. Default [`DeliveryConfig::default`]
    /// (endpoints on private addresses refused, and `http` URLs with them).
    pub webhooks: DeliveryConfig,
    /// How many platform API requests one partner app may make for one
    /// installation. Default 120 a minute.
    pub partner_rate_limit: Option<RateLimit>,
    /// How the background updater runs. Default [`crate::UpdaterConfig::default`].
    pub updates: crate::UpdaterConfig,
}

impl PlatformConfig {
    /// The defaults over the data folder `data`.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            resources: vec![
                Resource::new("orders", "order"),
                Resource::new("products", "product"),
                Resource::new("customers", "customer"),
            ],
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            sandbox: SandboxConfig::default(),
            limits: Limits::default(),
            issuer: "http://127.0.0.1:8080".into(),
            webhooks: DeliveryConfig::default(),
            partner_rate_limit: NonZeroU32::new(120)
                .and_then(|n| RateLimit::new(n, Period::Minute).ok()),
            updates: crate::UpdaterConfig::default(),
        }
    }
}

/// One plugin of an installation, as the dashboard and the API show it.
#[derive(Debug, Clone)]
pub struct PluginView {
    /// The installation.
    pub installation: InstallationId,
    /// The plugin.
    pub plugin: PluginId,
    /// Its name and version.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Whether the merchant has it enabled.
    pub enabled: bool,
    /// The scopes granted.
    pub scopes: ScopeSet,
    /// Its breaker's report.
    pub health: HealthReport,
    /// What its calls used since it was loaded.
    pub usage: UsageSummary,
    /// Its calls and failures minute by minute, the last hour, oldest first.
    pub series: Vec<vodo_sandbox::MinuteUsage>,
}

/// The platform over one data folder. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Platform {
    /// The host components: grants, keys, rate limits, breakers, audit.
    pub host: Arc<Host>,
    /// The sandbox plugins run in.
    pub sandbox: Arc<Sandbox>,
    /// The server's database, which also serves plugins' host calls.
    pub store: Arc<ServerStore>,
    /// Accounts and sessions.
    pub accounts: Accounts,
    /// The OAuth 2.1 provider of partner apps.
    pub oauth: Arc<AuthServer>,
    /// Partner apps' webhooks: the outbox and its deliverer.
    pub webhooks: Arc<Deliverer>,
    /// The catalog merchants browse: listings, ratings and reviews,
    /// installs and uses.
    pub catalog: vodo_marketplace::catalog::Catalog,
    pub(crate) config: PlatformConfig,
    pub(crate) desk: vodo_marketplace::submissions::Desk,
    /// The signed index every install takes its packages from.
    pub(crate) index: crate::distribution::Distribution,
    /// Held while a plugin's version changes (install, upgrade, rollback, the updater).
    pub(crate) lifecycle: parking_lot::Mutex<()>,
    audit_log: Arc<FileAudit>,
    secret: SecretKey,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the data folder's secret key, creating it (owner-only) on first start.
fn secret_key(data: &Path) -> Result<SecretKey, ServerError> {
    let path = data.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(SecretKey::from_hex(text.trim())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io(&path))?;
            std::io::Write::write_all(&mut file, key.to_hex().as_bytes()).map_err(io(&path))?;
            Ok(key)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

impl Platform {
    /// Opens the platform over `config.data`, creating it on first start,
    /// and loads every plugin installed before under its recorded grant.
    pub fn open(mut config: PlatformConfig) -> Result<Self, ServerError> {
        let data = config.data.clone();
        std::fs::create_dir_all(data.join("packages")).map_err(io(&data))?;
        let secret = secret_key(&data)?;
        // The host's components, as `Host::open` makes them, keeping the
        // audit file's searchable side for the audit viewer.
        let grants = Arc::new(vodo_core::SqliteStore::open(data.join("vodo.db"))?);
        let audit = Arc::new(FileAudit::open(
            data.join("audit.jsonl"),
            &secret,
            FileAuditOptions::default(),
        )?);
        let host = Arc::new(Host::from_stores(
            grants.clone(),
            grants,
            audit.clone(),
            &secret,
        ));
        let store = Arc::new(ServerStore::open(&data.join("server.db"))?);
        if config.sandbox.storage_root.is_none() {
            config.sandbox.storage_root = Some(data.join("storage"));
        }
        if config.sandbox.cache_dir.is_none() {
            config.sandbox.cache_dir = Some(data.join("cache"));
        }
        let outbox = Arc::new(SqliteOutbox::open(data.join("webhooks.db"), &secret)?);
        let webhooks = Arc::new(Deliverer::new(outbox, config.webhooks.clone()));
        let oauth = Arc::new(
            AuthServer::new(
                AuthServerConfig::new(config.issuer.clone()),
                Arc::new(vodo_oauth::SqliteStore::open(data.join("oauth.db"))?),
                &secret,
            )?
            .with_audit(Arc::clone(&host.audit)),
        );
        oauth.ensure_first_party_client(
            CLI_CLIENT,
            "The vodo CLI",
            &[vodo_oauth::model::AccountScope::Publish].into(),
        )?;
        let services = crate::services::PluginServices {
            store: Arc::clone(&store),
            webhooks: Arc::clone(&webhooks),
            oauth: Arc::clone(&oauth),
        };
        let sandbox = Arc::new(Sandbox::new(
            config.sandbox.clone(),
            &host,
            Arc::new(services) as Arc<dyn vodo_sandbox::HostServices>,
        )?);
        let accounts = Accounts::new(Arc::clone(&store), config.session_ttl)?;
        let desk = crate::market::open_desk(&config)?;
        let catalog = vodo_marketplace::catalog::Catalog::new(Arc::new(
            vodo_marketplace::catalog::SqliteCatalog::open(Some(&data.join("catalog.db")))?,
        ))?;
        let index = crate::distribution::Distribution::open(&data)?;
        let platform = Self {
            index,
            lifecycle: parking_lot::Mutex::new(()),
            desk,
            catalog,
            oauth,
            webhooks,
            host,
            sandbox,
            store,
            accounts,
            audit_log: audit,
            config,
            secret,
        };
        platform.restore()?;
        Ok(platform)
    }

    /// Loads the plugins recorded as installed, each under its current
    /// grant. One that no longer loads is logged and left out; the rest run.
    fn restore(&self) -> Result<(), ServerError> {
        // A data folder from before the catalog or the signed index: list
        // what it can install.
        for row in self.store.packages()? {
            let Ok(m) = Manifest::parse(&row.manifest) else {
                continue;
            };
            if !self.index.lists(m.slug.as_str(), &m.version) {
                let path = self.package_path(&row.digest);
                match std::fs::read(&path) {
                    Ok(component) => {
                        let package = Package {
                            manifest: row.manifest.clone(),
                            readme: String::new(),
                            samples: row.sample.iter().cloned().collect(),
                            component,
                        };
                        self.index.publish(&package.to_bytes(), &m.version)?;
                    }
                    Err(e) => {
                        tracing::warn!(slug = row.slug, version = row.version, error = %e, "a package from before the signed index is missing");
                    }
                }
            }
            let listed = self.catalog.store().listing(m.slug.as_str())?;
            if listed
                .is_none_or(|l| semver::Version::parse(&l.version).is_ok_and(|v| v < m.version))
            {
                self.list(&m)?;
            }
        }
        for (installation, slug, version) in self.store.loaded()? {
            let loaded = semver::Version::parse(&version)
                .map_err(|e| ServerError::invalid(e.to_string()))
                .and_then(|v| self.index.fetch(&slug, &v))
                .and_then(|package| {
                    let m = Manifest::parse(&package.manifest)?;
                    Ok(self.sandbox.load(
                        &installation,
                        &m,
                        &package.component,
                        self.config.limits.clone(),
                    )?)
                });
            if let Err(e) = loaded {
                tracing::error!(%installation, slug, error = %e, "an installed plugin did not load");
            }
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    /// The resource named `name`, if the platform API has it.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.config.resources.iter().find(|r| r.name == name)
    }

    /// Adds a package the platform can install, made of its manifest
    /// (validated), component and a sample event for the console's test
    /// button: see [`publish_package`](Self::publish_package).
    pub fn add_package(
        &self,
        manifest: &str,
        component: &[u8],
        sample: Option<(String, String)>,
    ) -> Result<PackageRow, ServerError> {
        let package = Package {
            manifest: manifest.to_owned(),
            readme: String::new(),
            samples: sample.into_iter().collect(),
            component: component.to_vec(),
        };
        self.publish_package(&package.to_bytes())
    }

    /// Publishes a package file: listed in the signed index on its
    /// version's channel (`beta` for a pre-release such as `1.2.0-beta.1`,
    /// `stable` otherwise), in the packages the console shows (its first
    /// sample is the test button's event), and in the catalog. A listed
    /// version never changes: other bytes under it are refused.
    pub fn publish_package(&self, bytes: &[u8]) -> Result<PackageRow, ServerError> {
        let package = Package::parse(bytes, self.max_package())?;
        let m = Manifest::parse(&package.manifest)?;
        self.index.publish(bytes, &m.version)?;
        let row = PackageRow {
            slug: m.slug.to_string(),
            version: m.version.to_string(),
            manifest: package.manifest.clone(),
            digest: hex(ring::digest::digest(&ring::digest::SHA256, &package.component).as_ref()),
            sample: package.samples.first().cloned(),
        };
        self.store.put_package(&row)?;
        self.list(&m)?;
        Ok(row)
    }

    fn package_path(&self, digest: &str) -> PathBuf {
        self.config
            .data
            .join("packages")
            .join(format!("{digest}.wasm"))
    }

    /// The package `slug` at `version`, or its newest when `version` is `None`.
    pub fn package(
        &self,
        slug: &str,
        version: Option<&str>,
    ) -> Result<Option<PackageRow>, ServerError> {
        Ok(self
            .store
            .packages()?
            .into_iter()
            .filter(|p| p.slug == slug && version.is_none_or(|v| v == p.version))
            .max_by(|a, b| {
                let v = |p: &PackageRow| semver::Version::parse(&p.version).ok();
                v(a).cmp(&v(b))
            }))
    }

    /// What installing (or upgrading to) the newest release of `slug` on
    /// the installation's channel asks the merchant to consent to: its
    /// manifest (from the verified package) and the scopes it asks for
    /// beyond the current grant.
    pub fn consent_for(
        &self,
        installation: &InstallationId,
        slug: &str,
    ) -> Result<(Manifest, ConsentDiff, bool), ServerError> {
        let plugin = PluginId::new(slug);
        let channel = self.update_settings(installation, &plugin)?.channel;
        let version = self
            .newest_release(slug, channel)
            .map_err(|_| ServerError::not_found(format!("the package `{slug}`")))?;
        let m = self.release_manifest(slug, &version)?;
        let installed = self
            .host
            .permissions
            .registry()
            .get(installation, &m.slug)?
            .is_some();
        let diff = self
            .host
            .permissions
            .consent_needed(installation, &m.slug, m.scopes())?;
        Ok((m, diff, installed))
    }

    /// Installs (or upgrades to) the newest `slug` in `installation` with
    /// `by`'s consent to every scope its manifest asks for, and loads it.
    /// `agreed` must list exactly the scopes the consent screen showed as
    /// new: a plugin whose request changed since is refused, and the
    /// merchant is shown the screen again.
    pub fn install(
        &self,
        installation: &InstallationId,
        slug: &str,
        agreed: &[PluginScope],
        by: &str,
    ) -> Result<Arc<Installed>, ServerError> {
        let _one = self.lifecycle.lock();
        let (m, diff, _) = self.consent_for(installation, slug)?;
        let mut shown = agreed.to_vec();
        shown.sort();
        if shown != diff.added {
            return Err(ServerError::invalid(format!(
                "the consent given ({}) is not what `{slug}` asks for now ({}): open its consent screen again",
                list(&shown),
                list(&diff.added)
            )));
        }
        let package = self.index.fetch(slug, &m.version)?;
        self.store.ensure_installation(installation)?;
        let plugin = self.sandbox.install(
            installation,
            &m,
            Wasm::bytes(&package.component),
            &Consent::all(&m, by),
            self.config.limits.clone(),
        )?;
        let version = m.version.to_string();
        self.store.set_loaded(installation, slug, Some(&version))?;
        self.catalog_event(slug, &version, installation, InstallEvent::Installed);
        Ok(plugin)
    }

    /// Enables or disables a plugin, recorded with who did it.
    pub fn set_enabled(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        enabled: bool,
        by: &str,
    ) -> Result<(), ServerError> {
        self.sandbox
            .set_enabled(installation, plugin, enabled, by)?;
        Ok(())
    }

    /// Uninstalls a plugin: its grant, its keys stop working with it, its
    /// storage is removed.
    pub fn uninstall(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<(), ServerError> {
        let version = self
            .host
            .permissions
            .registry()
            .get(installation, plugin)
            .ok()
            .flatten()
            .map(|g| g.plugin_version);
        if !self.sandbox.uninstall(installation, plugin)? {
            return Err(ServerError::not_found(format!(
                "the plugin `{plugin}` in `{installation}`"
            )));
        }
        self.store.set_loaded(installation, plugin.as_str(), None)?;
        self.forget_updates(installation, plugin)?;
        self.catalog_event(
            plugin.as_str(),
            version.as_deref().unwrap_or(""),
            installation,
            InstallEvent::Uninstalled,
        );
        Ok(())
    }

    /// Every installation the server serves that `role` manages.
    pub fn installations(&self, role: &Role) -> Result<Vec<InstallationId>, ServerError> {
        Ok(self
            .store
            .installations()?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|i| role.manages(i))
            .collect())
    }

    /// The plugins of `installation` with their health and usage.
    pub fn plugins(&self, installation: &InstallationId) -> Result<Vec<PluginView>, ServerError> {
        let grants = self.host.permissions.registry().list(installation)?;
        Ok(grants
            .into_iter()
            .map(|g| {
                let loaded = self.sandbox.get(installation, &g.plugin);
                PluginView {
                    name: loaded
                        .as_ref()
                        .map_or_else(|| g.plugin.to_string(), |p| p.manifest.name.clone()),
                    version: g.plugin_version.clone(),
                    enabled: g.enabled,
                    health: self.host.health.report(installation, &g.plugin),
                    usage: loaded.as_ref().map(|p| p.usage()).unwrap_or_default(),
                    series: loaded.map(|p| p.usage_series()).unwrap_or_default(),
                    scopes: g.scopes,
                    installation: g.installation,
                    plugin: g.plugin,
                }
            })
            .collect())
    }

    /// One plugin of `installation`.
    pub fn plugin(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<PluginView, ServerError> {
        self.plugins(installation)?
            .into_iter()
            .find(|p| &p.plugin == plugin)
            .ok_or_else(|| {
                ServerError::not_found(format!("the plugin `{plugin}` in `{installation}`"))
            })
    }

    /// Sends `event` with `payload` to one plugin and reports the outcome.
    pub async fn send_event(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        event: &str,
        payload: &str,
    ) -> Result<vodo_sandbox::Call<()>, ServerError> {
        let loaded = self.loaded(installation, plugin)?;
        Ok(self.sandbox.call_event_async(&loaded, event, payload).await)
    }

    /// The plugin as loaded in `installation`'s sandbox, or not found.
    fn loaded(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Arc<Installed>, ServerError> {
        self.sandbox.get(installation, plugin).ok_or_else(|| {
            ServerError::not_found(format!("the plugin `{plugin}` in `{installation}`"))
        })
    }

    /// Sends `request` to one of the routes of a plugin loaded in
    /// `installation`, under its grant and limits, and says what it did.
    pub async fn send_request(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        request: &vodo_sandbox::Request,
    ) -> Result<vodo_sandbox::Call<vodo_sandbox::Response>, ServerError> {
        let loaded = self.loaded(installation, plugin)?;
        Ok(self.sandbox.call_request_async(&loaded, request).await)
    }

    /// Issues a key for a plugin of an installation; the key is shown once.
    pub fn issue_key(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        name: &str,
        scopes: ScopeSet,
        ttl: Option<Duration>,
    ) -> Result<(ApiKey, ApiKeyRecord), ServerError> {
        self.plugin(installation, plugin)?;
        if name.trim().is_empty() || name.len() > 100 {
            return Err(ServerError::invalid(
                "a key needs a name of 1 to 100 characters, so that people know what uses it",
            ));
        }
        Ok(self.host.keys.issue(IssueKey {
            installation: installation.clone(),
            plugin: plugin.clone(),
            name: name.trim().to_owned(),
            scopes,
            ttl,
        })?)
    }

    /// The keys of a plugin in an installation.
    pub fn keys(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Vec<ApiKeyRecord>, ServerError> {
        Ok(self.host.keys.list(installation, plugin)?)
    }

    fn own_key(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        id: &str,
    ) -> Result<ApiKeyRecord, ServerError> {
        self.keys(installation, plugin)?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| {
                ServerError::not_found(format!("the key `{id}` of `{plugin}` in `{installation}`"))
            })
    }

    /// Revokes a key of a plugin in an installation, at once.
    pub fn revoke_key(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        id: &str,
    ) -> Result<(), ServerError> {
        self.own_key(installation, plugin, id)?;
        Ok(self.host.keys.revoke(id)?)
    }

    /// Rotates a key: a new one, shown once; the old one works for `grace`.
    pub fn rotate_key(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        id: &str,
        grace: Duration,
    ) -> Result<(ApiKey, ApiKeyRecord), ServerError> {
        self.own_key(installation, plugin, id)?;
        Ok(self.host.keys.rotate(id, grace)?)
    }

    /// Audit records that pass `filter`, oldest first.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, ServerError> {
        self.host.audit.flush()?;
        Ok(self.audit_log.query(filter)?)
    }

    /// Checks the whole audit file against its chain.
    pub fn verify_audit(&self) -> Result<VerifyReport, ServerError> {
        self.host.keys.flush_usage()?;
        self.host.audit.flush()?;
        Ok(verify_file(
            self.config.data.join("audit.jsonl"),
            &self.secret,
            None,
        )?)
    }
}

/// The operations that wait on the CPU or the disk for long (Argon2,
/// compiling a component, reading the whole audit file), run on tokio's
/// blocking pool so that they never hold up a worker that serves requests.
impl Platform {
    pub(crate) async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Platform) -> T + Send + 'static,
    ) -> Result<T, ServerError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| ServerError::Interrupted {
                detail: e.to_string(),
            })
    }

    /// [`Accounts::sign_in`] on the blocking pool.
    pub async fn sign_in(
        self: &Arc<Self>,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<(crate::Session, String), crate::SignInError> {
        let (email, password, client) = (email.to_owned(), password.to_owned(), client.to_owned());
        self.blocking(move |p| p.accounts.sign_in(&email, &password, &client))
            .await?
    }

    /// [`Accounts::change_password`] on the blocking pool (Argon2 twice).
    pub async fn change_password(
        self: &Arc<Self>,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<(), crate::PasswordError> {
        let (token, current, new) = (token.to_owned(), current.to_owned(), new.to_owned());
        self.blocking(move |p| p.accounts.change_password(&token, &current, &new))
            .await?
    }

    /// [`install`](Self::install) on the blocking pool.
    pub async fn install_async(
        self: &Arc<Self>,
        installation: &InstallationId,
        slug: &str,
        agreed: Vec<PluginScope>,
        by: &str,
    ) -> Result<Arc<Installed>, ServerError> {
        let (i, slug, by) = (installation.clone(), slug.to_owned(), by.to_owned());
        self.blocking(move |p| p.install(&i, &slug, &agreed, &by))
            .await?
    }

    /// [`verify_audit`](Self::verify_audit) on the blocking pool.
    pub async fn verify_audit_async(self: &Arc<Self>) -> Result<VerifyReport, ServerError> {
        self.blocking(|p| p.verify_audit()).await?
    }
}

pub(crate) fn list(scopes: &[PluginScope]) -> String {
    if scopes.is_empty() {
        return "nothing new".into();
    }
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
