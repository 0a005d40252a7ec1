//! `plugin.json`: the manifest format, its validation and what it requests.
//!
//! A manifest is read in two steps. First the bytes become a JSON tree, with
//! duplicate keys refused (`strict.rs`). Then one walk over the tree
//! (`validate.rs`) checks everything and collects **every** problem, each
//! with its JSON path and a message that says what to write instead, so an
//! author fixes a manifest in one round. Unknown keys are errors: a misspelt
//! permission must never be silently ignored.
//!
//! The format is the platform roadmap's own; this manifest, the one every
//! plugin author starts from, validates as it stands:
//!
//! ```
//! # use vodo_core::Manifest;
//! let manifest = Manifest::parse(r#"{
//!     "name": "My Plugin",
//!     "slug": "my-plugin",
//!     "version": "1.0.0",
//!     "permissions": {
//!         "entities": ["read:*", "write:product", "write:order"],
//!         "hooks": ["subscribe:order.*", "subscribe:user.created"],
//!         "api": { "rate_limit": "100/minute", "endpoints": ["products", "orders"] },
//!         "storage": { "max_size": "50MB", "allowed_types": ["json", "csv", "pdf"] },
//!         "network": { "outbound": ["api.stripe.com", "api.sendgrid.com"] }
//!     }
//! }"#)?;
//! assert_eq!(manifest.entry, "plugin.wasm");
//! assert!(manifest.scopes().can_access_resource("products"));
//! assert!(!manifest.scopes().can_access_resource("customers"));
//! # Ok::<(), vodo_core::ManifestError>(())
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `name`, `slug`, `version` | required: display name, stable id (`a-z`, `0-9`, `-`), semver |
//! | `description`, `author`, `license` | optional here; the marketplace's review requires a description and an SPDX license |
//! | `entry` | the component inside the plugin folder, default `plugin.wasm` |
//! | `host_api` | the host API versions the plugin works with, such as `^0.1` |
//! | `routes` | the plugin's own HTTP endpoints: `["GET /status", "POST /orders/{id}/notes"]` |
//! | `permissions.entities` | `read:{kind}` / `write:{kind}`, `*` for every kind (write implies read) |
//! | `permissions.hooks` | `subscribe:{pattern}` (`order.*`) and `trigger:{name}` |
//! | `permissions.api` | `rate_limit` (`100/minute`) and `endpoints`: the platform API resources the plugin's key may call (`products` for `/api/products/...`); without `endpoints`, every resource |
//! | `permissions.storage` | `max_size` (`50MB`), `allowed_types` (`json`, `.csv`, `application/pdf`), `read_only` |
//! | `permissions.network` | `outbound`: hosts (`api.stripe.com`, `*.example.com`, `host:8443`) |
//! | `permissions.users`, `permissions.settings` | `"read"` or `"write"` |
//!
//! `entities` and `hooks` may also be written as objects of lists keyed by
//! action (`{ "read": ["*"], "write": ["product"] }`), meaning the same
//! scopes. The JSON Schema in [`JSON_SCHEMA`] describes the format for editors.

mod strict;
mod units;
mod validate;

pub use units::slugify;

use std::fmt;
use std::path::Path;

use serde_json::Value;
use vodo_scopes::{HostRule, Resource, ScopeSet};

use crate::rate::RateLimit;
use crate::{Error, PluginId, Result};

/// The JSON Schema (draft 2020-12) of `plugin.json`, for editors.
pub const JSON_SCHEMA: &str = include_str!("../../schema/plugin.schema.json");

/// The largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The most entries any one list in a manifest may have.
pub const MAX_LIST_LEN: usize = 1000;
/// The largest storage quota a manifest may ask for (1 TiB).
pub const MAX_STORAGE_BYTES: u64 = 1 << 40;
/// The component a manifest without `entry` names.
pub const DEFAULT_ENTRY: &str = "plugin.wasm";

/// A validated `plugin.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Stable identifier: 3 to 64 of `a-z`, `0-9`, `-`, starting with a letter.
    pub slug: PluginId,
    /// The plugin's version (semver).
    pub version: semver::Version,
    /// What the plugin does, 1 to 1,000 characters. The marketplace requires it.
    pub description: Option<String>,
    /// Who publishes it.
    pub author: Option<Author>,
    /// Its license, as an SPDX expression (`MIT`, `Apache-2.0 OR MIT`). The
    /// marketplace requires it.
    pub license: Option<String>,
    /// Path of the WebAssembly component inside the plugin folder
    /// ([`DEFAULT_ENTRY`] when the manifest does not say).
    pub entry: String,
    /// The host API versions the plugin works with (a semver requirement).
    pub host_api: Option<semver::VersionReq>,
    /// The plugin's own HTTP endpoints; a request to any other is refused.
    pub routes: Vec<Route>,
    /// What the plugin asks to be allowed.
    pub permissions: Permissions,
    scopes: ScopeSet,
}

/// The publisher of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// Person or company name.
    pub name: String,
    /// Contact address.
    pub email: Option<String>,
    /// Web site.
    pub url: Option<String>,
}

/// The `permissions` object of a manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Permissions {
    /// Entity kinds read and written; `"*"` stands for every kind.
    pub entities: EntityPermissions,
    /// Hooks subscribed to and triggered.
    pub hooks: HookPermissions,
    /// Access to the host's user records.
    pub users: Option<Access>,
    /// Access to the plugin's settings.
    pub settings: Option<Access>,
    /// Calls to the platform API.
    pub api: Option<ApiPermissions>,
    /// The plugin's own storage folder.
    pub storage: Option<StoragePermissions>,
    /// Outbound HTTP.
    pub network: NetworkPermissions,
}

/// `permissions.entities`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityPermissions {
    /// Kinds read.
    pub read: Vec<String>,
    /// Kinds created, changed or deleted.
    pub write: Vec<String>,
}

/// `permissions.hooks`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookPermissions {
    /// Patterns of hook events delivered to the plugin.
    pub subscribe: Vec<String>,
    /// Hooks the plugin may trigger.
    pub trigger: Vec<String>,
}

/// `"read"` or `"write"` (which includes read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write.
    Write,
}

/// `permissions.api`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPermissions {
    /// How often the plugin may call the platform API, per installation:
    /// its API keys and its own host calls share this one budget.
    pub rate_limit: RateLimit,
    /// The platform API resources the plugin may call (`products` for
    /// `/api/products/...`), each granted as `api:access:{resource}`. Empty
    /// means every resource (`api:access`).
    pub endpoints: Vec<Resource>,
}

/// One HTTP endpoint a plugin serves, from `routes`: `GET /status`,
/// `POST /orders/{id}/notes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Path under the plugin's mount point, starting with `/`; a segment
    /// `{name}` matches any one non-empty segment.
    pub path: String,
}

impl Route {
    /// Whether a request for `method` and `path` (a query string is
    /// ignored) is this route. Segments compare exactly; `{param}` matches
    /// one non-empty segment.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method != method {
            return false;
        }
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let mut want = self.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// `permissions.storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePermissions {
    /// Quota in bytes.
    pub max_size: u64,
    /// File types the plugin may store.
    pub allowed_types: Vec<FileType>,
    /// Whether the plugin may only read its folder.
    pub read_only: bool,
}

/// A file type a plugin may store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A media type, such as `application/json`.
    Mime(String),
    /// Every subtype of a type, such as `image/*` (stored as `image`).
    MimeFamily(String),
    /// A file name extension, written `csv` or `.csv` (stored as `csv`).
    Extension(String),
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileType::Mime(m) => f.write_str(m),
            FileType::MimeFamily(t) => write!(f, "{t}/*"),
            FileType::Extension(e) => write!(f, ".{e}"),
        }
    }
}

/// `permissions.network`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPermissions {
    /// Hosts the plugin may send HTTP requests to.
    pub outbound: Vec<HostRule>,
}

/// The limits a manifest requests, beside its scopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestedLimits {
    /// Platform API rate limit, if the plugin uses the API.
    pub rate_limit: Option<RateLimit>,
    /// Storage quota in bytes, if the plugin uses storage.
    pub storage_quota: Option<u64>,
    /// File types allowed in storage.
    pub allowed_types: Vec<FileType>,
}

impl Manifest {
    /// Parses and validates a manifest from its bytes.
    ///
    /// On failure the error lists every problem found.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::one(
                "$",
                format!(
                    "the manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} bytes allowed: a manifest describes a plugin, it does not carry data",
                    bytes.len()
                ),
            ));
        }
        let value = match strict::parse(bytes) {
            Ok(v) => v,
            Err(e) => {
                let message = if e.is_eof() {
                    format!(
                        "the JSON ends too early at line {} column {}: check for a missing `}}`, `]` or `\"`",
                        e.line(),
                        e.column()
                    )
                } else {
                    format!("not valid JSON: {e}")
                };
                return Err(ManifestError::one("$", message));
            }
        };
        Self::from_value(&value)
    }

    /// Parses and validates a manifest from a string.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        Self::from_slice(text.as_bytes())
    }

    /// Reads `plugin.json` from a file, or from a plugin folder.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("plugin.json")
        } else {
            path.to_path_buf()
        };
        let meta = std::fs::metadata(&file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!(
                "`{}` is not a file: pass a plugin.json file or a plugin folder",
                file.display()
            )));
        }
        if meta.len() > MAX_MANIFEST_BYTES as u64 {
            return Err(ManifestError::one(
                "$",
                format!(
                    "the manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} bytes allowed",
                    meta.len()
                ),
            )
            .into());
        }
        let bytes = std::fs::read(&file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        Ok(Self::from_slice(&bytes)?)
    }

    /// Validates an already parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Self, ManifestError> {
        let mut w = validate::Walker::default();
        let manifest = w.manifest(value);
        match manifest {
            Some(m) if w.problems.is_empty() => Ok(m),
            _ => Err(ManifestError {
                problems: w.problems,
            }),
        }
    }

    /// Every scope the manifest requests, compiled.
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// The limits the manifest requests beside its scopes.
    pub fn limits(&self) -> RequestedLimits {
        let p = &self.permissions;
        RequestedLimits {
            rate_limit: p.api.as_ref().map(|a| a.rate_limit),
            storage_quota: p.storage.as_ref().map(|s| s.max_size),
            allowed_types: p
                .storage
                .as_ref()
                .map(|s| s.allowed_types.clone())
                .unwrap_or_default(),
        }
    }

    /// The declared route a request for `method` and `path` is for, if any.
    pub fn route(&self, method: &str, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(method, path))
    }
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a JSON path: `$.permissions.entities[2]`.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A refused manifest, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

impl ManifestError {
    fn one(path: &str, message: String) -> Self {
        Self {
            problems: vec![Problem {
                path: path.into(),
                message,
            }],
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid plugin manifest ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The roadmap's own example, unchanged.
    const ROADMAP: &str = test_support::ROADMAP_MANIFEST;

    const GOOD: &str = r#"{
        "$schema": "https://vodo.dev/schema/plugin.json",
        "name": "Order Notifier",
        "slug": "order-notifier",
        "version": "1.2.0",
        "description": "Posts new orders to a chat channel.",
        "author": { "name": "Acme Apps", "email": "dev@acme.example", "url": "https://acme.example" },
        "license": "MIT OR Apache-2.0",
        "entry": "target/plugin.wasm",
        "host_api": "^0.1",
        "routes": ["GET /status", "POST /orders/{id}/notify"],
        "permissions": {
            "entities": { "read": ["order", "customer"], "write": ["order_note"] },
            "hooks": { "subscribe": ["order.*"], "trigger": ["order.notified"] },
            "api": { "rate_limit": "100/minute", "endpoints": ["orders"] },
            "storage": { "max_size": "10MB", "allowed_types": ["application/json", "image/*", ".csv"], "read_only": false },
            "network": { "outbound": ["hooks.slack.com", "*.acme.example:8443"] },
            "settings": "read",
            "users": "write"
        }
    }"#;

    fn problems(json: &str) -> Vec<String> {
        Manifest::parse(json)
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    fn scope_strings(m: &Manifest) -> Vec<String> {
        m.scopes().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_roadmap_example_validates_and_means_exactly_what_it_says() {
        let m = Manifest::parse(ROADMAP).unwrap();
        assert_eq!(
            scope_strings(&m),
            [
                "entities:read",
                "entities:write:order",
                "entities:write:product",
                "hooks:subscribe:order.*",
                "hooks:subscribe:user.created",
                "api:access:orders",
                "api:access:products",
                "storage:write",
                "network:outbound:api.sendgrid.com",
                "network:outbound:api.stripe.com",
            ]
        );
        assert!(m.scopes().allows(&"storage:read".parse().unwrap()));
        let limits = m.limits();
        assert_eq!(limits.rate_limit.unwrap().to_string(), "100/minute");
        assert_eq!(limits.storage_quota, Some(50_000_000));
        assert_eq!(
            limits.allowed_types,
            ["json", "csv", "pdf"].map(|e| FileType::Extension(e.into()))
        );
        assert_eq!(
            m.permissions
                .network
                .outbound
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["api.stripe.com", "api.sendgrid.com"]
        );
        assert_eq!(m.entry, DEFAULT_ENTRY);
        assert_eq!(
            (&m.description, &m.author, &m.license),
            (&None, &None, &None)
        );
        assert!(m.routes.is_empty());
        assert!(m.scopes().can_access_resource("orders"));
        assert!(!m.scopes().can_access_resource("customers"));
        assert_eq!(m.permissions.entities.read, ["*"]);
        assert_eq!(m.permissions.entities.write, ["product", "order"]);
    }

    #[test]
    fn each_roadmap_field_given_a_wrong_value_is_refused_naming_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#""My Plugin""#, r#""""#, "$.name"),
            (r#""my-plugin""#, r#""My Plugin""#, "$.slug"),
            (r#""1.0.0""#, r#""1.0""#, "$.version"),
            (r#""read:*""#, r#""delete:*""#, "$.permissions.entities[0]"),
            (
                r#""write:product""#,
                r#""write:Product""#,
                "$.permissions.entities[1]",
            ),
            (
                r#""write:order""#,
                r#""order""#,
                "$.permissions.entities[2]",
            ),
            (
                r#""subscribe:order.*""#,
                r#""subscribe:ord*""#,
                "$.permissions.hooks[0]",
            ),
            (
                r#""subscribe:user.created""#,
                r#""listen:user.created""#,
                "$.permissions.hooks[1]",
            ),
            (
                r#""100/minute""#,
                r#""100 a minute""#,
                "$.permissions.api.rate_limit",
            ),
            (
                r#""products""#,
                r#""GET /products""#,
                "$.permissions.api.endpoints[0]",
            ),
            (
                r#""orders""#,
                r#""Orders""#,
                "$.permissions.api.endpoints[1]",
            ),
            (
                r#""50MB""#,
                r#""50 parsecs""#,
                "$.permissions.storage.max_size",
            ),
            (
                r#""json""#,
                r#""*/*""#,
                "$.permissions.storage.allowed_types[0]",
            ),
            (
                r#""csv""#,
                r#""CSV""#,
                "$.permissions.storage.allowed_types[1]",
            ),
            (r#""pdf""#, r#"7"#, "$.permissions.storage.allowed_types[2]"),
            (
                r#""api.stripe.com""#,
                r#""https://api.stripe.com""#,
                "$.permissions.network.outbound[0]",
            ),
            (
                r#""api.sendgrid.com""#,
                r#""*""#,
                "$.permissions.network.outbound[1]",
            ),
        ];
        for (good, bad, path) in cases {
            assert_eq!(ROADMAP.matches(good).count(), 1, "{good} is not unique");
            let p = problems(&ROADMAP.replacen(good, bad, 1));
            assert_eq!(p.len(), 1, "{good} -> {bad}: {p:#?}");
            assert!(
                p[0].starts_with(&format!("{path}: ")),
                "{good} -> {bad}: {p:?}"
            );
        }
        // Whole sections of the wrong shape.
        for (good, bad, path) in [
            (
                r#""entities": ["#,
                r#""entities": 3, "x": ["#,
                "$.permissions.entities",
            ),
            (
                r#""hooks": ["#,
                r#""hooks": "order.*", "y": ["#,
                "$.permissions.hooks",
            ),
            (
                r#""endpoints": ["products", "orders"]"#,
                r#""endpoints": []"#,
                "$.permissions.api.endpoints",
            ),
        ] {
            let p = problems(&ROADMAP.replacen(good, bad, 1));
            assert!(
                p.iter().any(|p| p.starts_with(&format!("{path}: "))),
                "{bad}: {p:#?}"
            );
        }
    }

    #[test]
    fn a_route_among_the_api_resources_is_refused_with_a_hint_to_move_it() {
        let p = problems(&ROADMAP.replace(r#""products", "orders""#, r#""GET /status""#));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("move it to the top-level `routes` list")
                && p[0].contains(r#""routes": ["GET /status"]"#),
            "{p:?}"
        );
        // Without `endpoints`, `api` grants every resource.
        let mut without: Value = serde_json::from_str(ROADMAP).unwrap();
        without["permissions"]["api"]
            .as_object_mut()
            .unwrap()
            .remove("endpoints");
        let all = Manifest::from_value(&without).unwrap();
        assert!(scope_strings(&all).contains(&"api:access".to_owned()));
        assert!(all.scopes().can_access_resource("customers"));
    }

    #[test]
    fn a_complete_manifest_in_the_object_form_parses_into_scopes_limits_and_routes() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.slug.as_str(), "order-notifier");
        assert_eq!(
            scope_strings(&m),
            [
                "entities:read:customer",
                "entities:read:order",
                "entities:write:order_note",
                "hooks:subscribe:order.*",
                "hooks:trigger:order.notified",
                "api:access:orders",
                "users:write",
                "settings:read",
                "storage:write",
                "network:outbound:*.acme.example:8443",
                "network:outbound:hooks.slack.com",
            ]
        );
        let limits = m.limits();
        assert_eq!(limits.rate_limit.unwrap().to_string(), "100/minute");
        assert_eq!(limits.storage_quota, Some(10_000_000));
        assert_eq!(limits.allowed_types.len(), 3);
        assert_eq!(m.routes[1].to_string(), "POST /orders/{id}/notify");
        assert_eq!(m.license.as_deref(), Some("MIT OR Apache-2.0"));
        assert_eq!(m.entry, "target/plugin.wasm");
    }

    #[test]
    fn both_forms_of_entities_and_hooks_mean_the_same_scopes() {
        let list = Manifest::parse(&ROADMAP.replace(
            r#"["subscribe:order.*", "subscribe:user.created"]"#,
            r#"["subscribe:order.*", "subscribe:user.created", "trigger:order.noted"]"#,
        ))
        .unwrap();
        let object = Manifest::parse(
            &ROADMAP
                .replace(
                    r#"["read:*", "write:product", "write:order"]"#,
                    r#"{ "read": ["*"], "write": ["product", "order"] }"#,
                )
                .replace(
                    r#"["subscribe:order.*", "subscribe:user.created"]"#,
                    r#"{ "subscribe": ["order.*", "user.created"], "trigger": ["order.noted"] }"#,
                ),
        )
        .unwrap();
        assert_eq!(list.scopes(), object.scopes());
        assert_eq!(list.permissions, object.permissions);
    }

    #[test]
    fn routes_match_method_and_path_with_parameters() {
        let m = Manifest::parse(GOOD).unwrap();
        assert!(m.route("GET", "/status").is_some());
        assert!(m.route("GET", "/status?verbose=1").is_some());
        assert!(m.route("POST", "/orders/17/notify").is_some());
        for (method, path) in [
            ("POST", "/status"),
            ("GET", "/status/"),
            ("GET", "/statuses"),
            ("POST", "/orders//notify"),
            ("POST", "/orders/17/notify/again"),
            ("GET", "/"),
            ("get", "/status"),
        ] {
            assert!(m.route(method, path).is_none(), "{method} {path}");
        }
        let p = problems(&GOOD.replace(
            r#""GET /status", "#,
            r#""GET /status", "GET /status", "BREW /pot", "#,
        ));
        assert!(
            p.iter()
                .any(|p| p.starts_with("$.routes[1]: `GET /status` is already listed")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("$.routes[2]: invalid route `BREW /pot`")),
            "{p:?}"
        );
    }

    fn keys(v: &Value, schema: bool, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if schema
                        && k == "properties"
                        && let Value::Object(props) = child
                    {
                        out.extend(props.keys().cloned());
                    }
                    if !schema {
                        out.insert(k.clone());
                    }
                    keys(child, schema, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| keys(i, schema, out)),
            _ => {}
        }
    }

    #[test]
    fn the_json_schema_knows_exactly_the_keys_the_validator_knows() {
        let schema: Value = serde_json::from_str(JSON_SCHEMA).unwrap();
        let good: Value = serde_json::from_str(GOOD).unwrap();
        let (mut in_schema, mut in_manifest) = Default::default();
        keys(&schema, true, &mut in_schema);
        keys(&good, false, &mut in_manifest);
        assert_eq!(in_schema, in_manifest);
    }

    #[test]
    fn minimal_manifest_requests_nothing() {
        let m = Manifest::parse(r#"{"name":"X","slug":"xyz","version":"0.1.0"}"#).unwrap();
        assert!(m.scopes().is_empty());
        assert_eq!(m.limits(), RequestedLimits::default());
        assert_eq!(m.entry, "plugin.wasm");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let p = problems(
            r#"{
            "name": "",
            "slug": "Order Notifier",
            "version": "1.0",
            "author": { "name": "A", "emial": "x" },
            "license": "MIT; rm -rf",
            "entry": "../evil.wasm",
            "permisions": {},
            "routes": ["GET status"],
            "permissions": {
                "entities": { "read": ["order", "order", "Bad"], "delete": ["x"] },
                "hooks": { "subscribe": ["ord*"], "trigger": ["a.*"] },
                "api": { "rate_limit": "100/fortnight", "endpoints": ["GET /status"] },
                "storage": { "max_size": 0, "allowed_types": ["*/*"] },
                "network": { "outbound": ["*", "https://x.com"] },
                "users": "admin"
            }
        }"#,
        );
        let expect = [
            "$.name: the name is empty",
            "$.slug: invalid slug `Order Notifier`",
            "write `order-notifier`",
            "$.version: `1.0` is not a semantic version",
            "$.author.emial: unknown key `emial`: did you mean `email`?",
            "$.license: `MIT; rm -rf` is not an SPDX",
            "$.entry: invalid entry `../evil.wasm`",
            "$.permisions: unknown key `permisions`: did you mean `permissions`?",
            "$.routes[0]: invalid route `GET status`",
            "$.permissions.entities.delete: unknown key",
            "$.permissions.entities.read[1]: `order` is already listed at index 0",
            "$.permissions.entities.read[2]: invalid entity `Bad`",
            "$.permissions.hooks.subscribe[0]: invalid hook pattern `ord*`",
            "$.permissions.hooks.trigger[0]: invalid hook name `a.*`",
            "$.permissions.api.rate_limit: `100/fortnight`",
            "$.permissions.api.endpoints[0]: invalid resource `GET /status`",
            "$.permissions.storage.max_size: a quota of zero bytes",
            "$.permissions.storage.allowed_types[0]: invalid file type `*/*`",
            "$.permissions.network.outbound[0]: invalid host `*`",
            "$.permissions.network.outbound[1]: invalid host `https://x.com`",
            "$.permissions.users: expected `\"read\"` or `\"write\"`",
        ];
        for e in expect {
            assert!(p.iter().any(|p| p.contains(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len() - 1, "{p:#?}");
    }

    #[test]
    fn list_entries_say_which_form_to_write() {
        let p = problems(&ROADMAP.replace(r#""read:*", "#, r#""read", "remove:order", "#));
        assert!(
            p.iter()
                .any(|p| p.starts_with("$.permissions.entities[0]") && p.contains("`read:{kind}`")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.starts_with("$.permissions.entities[1]")
                && p.contains("`remove` is not an action")),
            "{p:?}"
        );
        let p = problems(&ROADMAP.replace("subscribe:user.created", "subscrbe:user.created"));
        assert!(p[0].contains("did you mean `subscribe:`?"), "{p:?}");
        let p = problems(&ROADMAP.replace("subscribe:user.created", "trigger:user.*"));
        assert!(
            p[0].starts_with("$.permissions.hooks[1]: invalid hook permission `trigger:user.*`"),
            "{p:?}"
        );
    }

    #[test]
    fn optional_fields_are_checked_when_present() {
        let with = |extra: &str| ROADMAP.replacen('{', &format!("{{ {extra},"), 1);
        let m = Manifest::parse(&with(
            r#""description": "d", "author": "Me", "license": "MIT", "entry": "out/p.wasm""#,
        ))
        .unwrap();
        assert_eq!(m.description.as_deref(), Some("d"));
        assert_eq!(m.author.map(|a| a.name).as_deref(), Some("Me"));
        assert_eq!(m.entry, "out/p.wasm");
        for (extra, path) in [
            (r#""description": """#, "$.description"),
            (r#""author": 7"#, "$.author"),
            (r#""license": "MIT; x""#, "$.license"),
            (r#""entry": "/etc/p.wasm""#, "$.entry"),
        ] {
            let p = problems(&with(extra));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with(path), "{p:?}");
        }
    }

    #[test]
    fn duplicate_keys_and_bad_json_are_refused() {
        let p = problems(r#"{"name":"a","name":"b"}"#);
        assert!(p[0].contains("duplicate key `name`"), "{p:?}");
        let p = problems(r#"{"name": "a""#);
        assert!(p[0].contains("ends too early"), "{p:?}");
        let p = problems("[1, 2]");
        assert_eq!(p, ["$: expected an object, found an array"]);
        let p = problems("\u{feff}{}");
        assert!(p[0].starts_with("$: not valid JSON"), "{p:?}");
        assert!(Manifest::from_slice(&[0xff, 0xfe, 0x00]).is_err());
    }

    #[test]
    fn wildcards_map_to_broad_scopes() {
        for permissions in [
            r#"{"entities":{"write":["*"]},"hooks":{"subscribe":["*"],"trigger":["*"]}}"#,
            r#"{"entities":["write:*"],"hooks":["subscribe:*","trigger:*"]}"#,
        ] {
            let m = Manifest::parse(&format!(
                r#"{{"name":"X","slug":"xyz","version":"0.1.0","permissions":{permissions}}}"#
            ))
            .unwrap();
            assert_eq!(
                scope_strings(&m),
                ["entities:write", "hooks:subscribe", "hooks:trigger"]
            );
        }
    }
}
