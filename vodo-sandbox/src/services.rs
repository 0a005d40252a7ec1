//! [`HostServices`]: the host application's side of the plugin interfaces.
//!
//! The sandbox checks every call against the plugin's grant before it
//! reaches these methods, so an implementation only does the work: read a
//! record from the host's database, emit a hook, and so on. What fails is a
//! [`ServiceError`], passed on to the plugin; an
//! [`Unavailable`](ServiceError::Unavailable) host service never counts
//! against the plugin's health.

use std::fmt;
use std::sync::Arc;

use std::hash::{Hash, Hasher};

use dashmap::DashMap;
use hashbrown::Equivalent;
use parking_lot::{Mutex, RwLock};
use vodo_core::{InstallationId, PluginId};

/// A log line a plugin wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

impl LogLevel {
    /// `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Why a host service did not do what a plugin asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The thing does not exist (a delete of a missing record, say).
    #[error("not found: {0}")]
    NotFound(String),
    /// The plugin's arguments were refused (a record that is not valid JSON, say).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The host could not serve the call (its database is down, say); the
    /// plugin is told, and its health is not blamed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// `Result` of a host service.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// The data and effects plugins reach through the host interfaces.
/// Errors go back to the plugin; they are not violations.
///
/// [`MemoryServices`] keeps everything in memory; a host implements this
/// trait over its own database (the server's `ServerStore` does):
///
/// ```
/// use vodo_core::{InstallationId, PluginId};
/// use vodo_sandbox::{HostServices, MemoryServices};
///
/// let services: Box<dyn HostServices> = Box::new(MemoryServices::new());
/// let shop = InstallationId::new("shop-1");
/// services.put_entity(&shop, "order", "1001", r#"{"total":"49.90"}"#)?;
/// assert_eq!(services.get_entity(&shop, "order", "1001")?.as_deref(), Some(r#"{"total":"49.90"}"#));
/// // Each installation sees its own records only.
/// assert_eq!(services.get_entity(&InstallationId::new("shop-2"), "order", "1001")?, None);
/// let plugin = PluginId::new("notifier");
/// services.set_setting(&shop, &plugin, "threshold", "5")?;
/// assert_eq!(services.get_setting(&shop, &plugin, "threshold")?.as_deref(), Some("5"));
/// # Ok::<(), vodo_sandbox::ServiceError>(())
/// ```
pub trait HostServices: fmt::Debug + Send + Sync {
    /// A record as JSON, or `None`.
    fn get_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<Option<String>>;
    /// Creates or replaces a record.
    fn put_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()>;
    /// Deletes a record; whether there was one.
    fn delete_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<bool>;
    /// Emits a hook event on behalf of `plugin`.
    fn trigger_hook(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        name: &str,
        payload: &str,
    ) -> ServiceResult<()>;
    /// A user record as JSON, or `None`.
    fn get_user(&self, installation: &InstallationId, id: &str) -> ServiceResult<Option<String>>;
    /// Creates or replaces a user record.
    fn put_user(&self, installation: &InstallationId, id: &str, json: &str) -> ServiceResult<()>;
    /// A setting of `plugin` in `installation`.
    fn get_setting(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        key: &str,
    ) -> ServiceResult<Option<String>>;
    /// Sets a setting of `plugin` in `installation`.
    fn set_setting(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        key: &str,
        value: &str,
    ) -> ServiceResult<()>;
    /// Whether these services may wait on I/O (a database, a network). On
    /// the asynchronous call path ([`Sandbox::call_event_async`](crate::Sandbox::call_event_async)
    /// and its siblings), the host calls of services that may wait run on
    /// the sandbox's bounded blocking pool instead of the runtime's worker;
    /// services that answer from memory return `false` and are called in
    /// place. The default is `true`, the safe answer.
    fn waits(&self) -> bool {
        true
    }
    /// A log line from `plugin` in `installation`. Called in place on every
    /// call path, so it must not wait: hand the line to a logger that buffers.
    fn log(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        level: LogLevel,
        message: &str,
    ) {
        match level {
            LogLevel::Debug => {
                tracing::debug!(target: "vodo::plugin", %installation, plugin = %plugin, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "vodo::plugin", %installation, plugin = %plugin, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "vodo::plugin", %installation, plugin = %plugin, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "vodo::plugin", %installation, plugin = %plugin, "{message}")
            }
        }
    }
}

impl<T: HostServices + ?Sized> HostServices for Arc<T> {
    fn get_entity(
        &self,
        i: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<Option<String>> {
        (**self).get_entity(i, kind, id)
    }
    fn put_entity(
        &self,
        i: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()> {
        (**self).put_entity(i, kind, id, json)
    }
    fn delete_entity(&self, i: &InstallationId, kind: &str, id: &str) -> ServiceResult<bool> {
        (**self).delete_entity(i, kind, id)
    }
    fn trigger_hook(
        &self,
        i: &InstallationId,
        p: &PluginId,
        name: &str,
        payload: &str,
    ) -> ServiceResult<()> {
        (**self).trigger_hook(i, p, name, payload)
    }
    fn get_user(&self, i: &InstallationId, id: &str) -> ServiceResult<Option<String>> {
        (**self).get_user(i, id)
    }
    fn put_user(&self, i: &InstallationId, id: &str, json: &str) -> ServiceResult<()> {
        (**self).put_user(i, id, json)
    }
    fn get_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        key: &str,
    ) -> ServiceResult<Option<String>> {
        (**self).get_setting(i, p, key)
    }
    fn set_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        key: &str,
        value: &str,
    ) -> ServiceResult<()> {
        (**self).set_setting(i, p, key, value)
    }
    fn waits(&self) -> bool {
        (**self).waits()
    }
    fn log(&self, i: &InstallationId, p: &PluginId, level: LogLevel, message: &str) {
        (**self).log(i, p, level, message)
    }
}

/// Host services in memory, for tests, demos and embedding. Triggered hooks
/// and log lines are kept so that they can be inspected.
#[derive(Debug, Default)]
pub struct MemoryServices {
    /// Records by (installation, kind, id), looked up without allocating.
    entities: RwLock<hashbrown::HashMap<EntityKey, String>>,
    users: DashMap<(InstallationId, String), String>,
    settings: DashMap<(InstallationId, PluginId, String), String>,
    /// Hooks triggered: (installation, plugin, name, payload).
    pub triggered: Mutex<Vec<(InstallationId, PluginId, String, String)>>,
    /// Log lines: (plugin, level, message).
    pub logs: Mutex<Vec<(PluginId, LogLevel, String)>>,
}

type EntityKey = (InstallationId, Box<str>, Box<str>);

/// A borrowed [`EntityKey`]: hashes and compares as the owned one does.
struct EntityRef<'a>(&'a str, &'a str, &'a str);

impl Hash for EntityRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
        self.2.hash(state);
    }
}

impl Equivalent<EntityKey> for EntityRef<'_> {
    fn equivalent(&self, key: &EntityKey) -> bool {
        self.0 == key.0.as_str() && self.1 == &*key.1 && self.2 == &*key.2
    }
}

impl MemoryServices {
    /// Empty services.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a user record.
    pub fn add_user(&self, installation: &InstallationId, id: &str, json: &str) {
        self.users
            .insert((installation.clone(), id.to_owned()), json.to_owned());
    }

    /// A user record, as a plugin last wrote it.
    pub fn user(&self, installation: &InstallationId, id: &str) -> Option<String> {
        self.users
            .get(&(installation.clone(), id.to_owned()))
            .map(|v| v.clone())
    }
}

impl HostServices for MemoryServices {
    /// Memory never waits: every host call is answered in place.
    fn waits(&self) -> bool {
        false
    }
    fn get_entity(
        &self,
        i: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<Option<String>> {
        Ok(self
            .entities
            .read()
            .get(&EntityRef(i.as_str(), kind, id))
            .cloned())
    }

    fn put_entity(
        &self,
        i: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()> {
        self.entities
            .write()
            .insert((i.clone(), kind.into(), id.into()), json.to_owned());
        Ok(())
    }

    fn delete_entity(&self, i: &InstallationId, kind: &str, id: &str) -> ServiceResult<bool> {
        Ok(self
            .entities
            .write()
            .remove(&EntityRef(i.as_str(), kind, id))
            .is_some())
    }

    fn trigger_hook(
        &self,
        i: &InstallationId,
        p: &PluginId,
        name: &str,
        payload: &str,
    ) -> ServiceResult<()> {
        self.triggered
            .lock()
            .push((i.clone(), p.clone(), name.to_owned(), payload.to_owned()));
        Ok(())
    }

    fn get_user(&self, i: &InstallationId, id: &str) -> ServiceResult<Option<String>> {
        Ok(self
            .users
            .get(&(i.clone(), id.to_owned()))
            .map(|v| v.clone()))
    }

    fn put_user(&self, i: &InstallationId, id: &str, json: &str) -> ServiceResult<()> {
        self.add_user(i, id, json);
        Ok(())
    }

    fn get_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        key: &str,
    ) -> ServiceResult<Option<String>> {
        Ok(self
            .settings
            .get(&(i.clone(), p.clone(), key.to_owned()))
            .map(|v| v.clone()))
    }

    fn set_setting(
        &self,
        i: &InstallationId,
        p: &PluginId,
        key: &str,
        value: &str,
    ) -> ServiceResult<()> {
        self.settings
            .insert((i.clone(), p.clone(), key.to_owned()), value.to_owned());
        Ok(())
    }

    fn log(&self, _: &InstallationId, p: &PluginId, level: LogLevel, message: &str) {
        self.logs
            .lock()
            .push((p.clone(), level, message.to_owned()));
    }
}
