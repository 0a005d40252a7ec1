//! `plugin.json`: the manifest format, its validation and what it requests.
//!
//! A manifest is read in two steps. First the bytes become a JSON tree, with
//! duplicate keys refused (two `"permissions"` keys would otherwise mean
//! whatever the last one says, and different tools would disagree). Then one
//! walk over the tree checks everything and collects **every** problem, each
//! with its JSON path and a message that says what to write instead, so an
//! author fixes a manifest in one round. Unknown keys are errors: a misspelt
//! permission must never be silently ignored.
//!
//! ```json
//! {
//!   "name": "Order Notifier",
//!   "slug": "order-notifier",
//!   "version": "1.2.0",
//!   "description": "Posts new orders to a chat channel.",
//!   "author": { "name": "Acme Apps", "email": "dev@acme.example" },
//!   "license": "MIT",
//!   "entry": "plugin.wasm",
//!   "host_api": "^0.1",
//!   "permissions": {
//!     "entities": { "read": ["order", "customer"], "write": ["order_note"] },
//!     "hooks": { "subscribe": ["order.*"], "trigger": ["order.notified"] },
//!     "api": { "rate_limit": "100/minute", "endpoints": ["GET /status"] },
//!     "storage": { "max_size": "10MB", "allowed_types": ["application/json", ".csv"] },
//!     "network": { "outbound": ["hooks.slack.com"] },
//!     "settings": "read"
//!   }
//! }
//! ```
//!
//! The JSON Schema in [`JSON_SCHEMA`] describes the same format for editors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use vodo_scopes::{Entity, HookName, HookPattern, HostRule, PluginScope, ScopeSet};

use crate::rate::RateLimit;
use crate::{Error, PluginId, Result};

/// The JSON Schema (draft 2020-12) of `plugin.json`, for editors.
pub const JSON_SCHEMA: &str = include_str!("../schema/plugin.schema.json");

/// The largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The most entries any one list in a manifest may have.
pub const MAX_LIST_LEN: usize = 1000;
/// The largest storage quota a manifest may ask for (1 TiB).
pub const MAX_STORAGE_BYTES: u64 = 1 << 40;

/// A validated `plugin.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Stable identifier: 3 to 64 of `a-z`, `0-9`, `-`, starting with a letter.
    pub slug: PluginId,
    /// The plugin's version (semver).
    pub version: semver::Version,
    /// What the plugin does, 1 to 1,000 characters.
    pub description: String,
    /// Who publishes it.
    pub author: Author,
    /// Its license, as an SPDX expression (`MIT`, `Apache-2.0 OR MIT`).
    pub license: String,
    /// Path of the WebAssembly component inside the plugin folder.
    pub entry: String,
    /// The host API versions the plugin works with (a semver requirement).
    pub host_api: Option<semver::VersionReq>,
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
    /// Calls to the host API and the plugin's own endpoints.
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
    /// How often the plugin may call the host API, per installation.
    pub rate_limit: RateLimit,
    /// The endpoints the plugin serves, such as `GET /status`.
    pub endpoints: Vec<Endpoint>,
}

/// One HTTP endpoint a plugin serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Path under the plugin's mount point, starting with `/`; `{name}` marks a parameter.
    pub path: String,
}

impl fmt::Display for Endpoint {
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
    /// A file name extension, such as `csv` (written `.csv`).
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
    /// Host API rate limit, if the plugin uses the API.
    pub rate_limit: Option<RateLimit>,
    /// Storage quota in bytes, if the plugin uses storage.
    pub storage_quota: Option<u64>,
    /// File types allowed in storage.
    pub allowed_types: Vec<FileType>,
    /// Endpoints the plugin serves.
    pub endpoints: Vec<Endpoint>,
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
        let value = match serde_json::from_slice::<StrictValue>(bytes) {
            Ok(v) => v.0,
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
        let mut w = Walker::default();
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
            endpoints: p
                .api
                .as_ref()
                .map(|a| a.endpoints.clone())
                .unwrap_or_default(),
        }
    }
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a JSON path: `$.permissions.entities.read[2]`.
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

/// The walk over the JSON tree that collects problems and builds the manifest.
#[derive(Default)]
struct Walker {
    problems: Vec<Problem>,
}

const TOP_KEYS: &[&str] = &[
    "name",
    "slug",
    "version",
    "description",
    "author",
    "license",
    "entry",
    "host_api",
    "permissions",
    "$schema",
];
const PERMISSION_KEYS: &[&str] = &[
    "entities", "hooks", "users", "settings", "api", "storage", "network",
];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

impl Walker {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `v` as an object whose keys are all in `known`; unknown keys are reported.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.problem(path, format!("expected an object, found {}", kind(v)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = match vodo_scopes::did_you_mean(key, known) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!(
                        "known keys here are {}",
                        known
                            .iter()
                            .filter(|k| !k.starts_with('$'))
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.problem(
                    child(path, &printable(key)),
                    format!("unknown key `{}`: {hint}", printable(key)),
                );
            }
        }
        Some(map)
    }

    fn string<'v>(&mut self, v: &'v Value, path: &str, what: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.problem(
                    path,
                    format!("{what} must be a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    fn required<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
        example: &str,
    ) -> Option<&'v Value> {
        let v = map.get(key);
        if v.is_none() {
            self.problem(
                child(path, key),
                format!("missing required key `{key}`: add `\"{key}\": {example}`"),
            );
        }
        v
    }

    fn text(&mut self, v: &Value, path: &str, what: &str, max: usize) -> Option<String> {
        let s = self.string(v, path, what)?;
        let trimmed = s.trim();
        if trimmed.is_empty() {
            self.problem(path, format!("{what} is empty: write one"));
            return None;
        }
        let chars = trimmed.chars().count();
        if chars > max {
            self.problem(
                path,
                format!("{what} is {chars} characters long: shorten it to at most {max}"),
            );
            return None;
        }
        if trimmed.chars().any(char::is_control) {
            self.problem(
                path,
                format!("{what} contains control characters: remove them"),
            );
            return None;
        }
        Some(trimmed.to_owned())
    }

    fn list<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v [Value]> {
        match v {
            Value::Array(items) if items.len() > MAX_LIST_LEN => {
                self.problem(
                    path,
                    format!(
                        "{} entries is more than the {MAX_LIST_LEN} allowed",
                        items.len()
                    ),
                );
                None
            }
            Value::Array(items) => Some(items),
            other => {
                self.problem(path, format!("expected an array, found {}", kind(other)));
                None
            }
        }
    }

    /// Each string of a list, parsed by `parse`, with duplicates reported.
    fn each_string<T>(
        &mut self,
        v: &Value,
        path: &str,
        what: &str,
        mut parse: impl FnMut(&str) -> std::result::Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let Some(items) = self.list(v, path) else {
            return out;
        };
        let mut seen = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(s) = self.string(item, &p, what) else {
                continue;
            };
            if let Some(first) = seen.insert(s, i) {
                self.problem(
                    &p,
                    format!(
                        "`{}` is already listed at index {first}: remove one",
                        printable(s)
                    ),
                );
                continue;
            }
            match parse(s) {
                Ok(t) => out.push(t),
                Err(reason) => {
                    self.problem(&p, format!("invalid {what} `{}`: {reason}", printable(s)))
                }
            }
        }
        out
    }

    fn manifest(&mut self, v: &Value) -> Option<Manifest> {
        let map = self.object(v, "$", TOP_KEYS)?;
        let name = self
            .required(map, "$", "name", "\"My Plugin\"")
            .and_then(|v| self.text(v, "$.name", "the name", 100));
        let slug = self
            .required(map, "$", "slug", "\"my-plugin\"")
            .and_then(|v| self.slug(v));
        let version = self
            .required(map, "$", "version", "\"0.1.0\"")
            .and_then(|v| self.version(v));
        let description = self
            .required(map, "$", "description", "\"What the plugin does\"")
            .and_then(|v| self.text(v, "$.description", "the description", 1000));
        let author = self
            .required(map, "$", "author", "{ \"name\": \"Your Name\" }")
            .and_then(|v| self.author(v));
        let license = self
            .required(map, "$", "license", "\"MIT\"")
            .and_then(|v| self.license(v));
        let entry = self
            .required(map, "$", "entry", "\"plugin.wasm\"")
            .and_then(|v| self.entry(v));
        let host_api = map.get("host_api").and_then(|v| {
            let s = self.string(v, "$.host_api", "host_api")?;
            match semver::VersionReq::parse(s) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problem(
                        "$.host_api",
                        format!(
                            "`{}` is not a version requirement ({e}): write one such as `^0.1`",
                            printable(s)
                        ),
                    );
                    None
                }
            }
        });
        if let Some(v) = map.get("$schema") {
            self.string(v, "$.$schema", "$schema");
        }
        let (permissions, scopes) = match map.get("permissions") {
            Some(v) => self.permissions(v)?,
            None => (Permissions::default(), ScopeSet::new()),
        };
        Some(Manifest {
            name: name?,
            slug: slug?,
            version: version?,
            description: description?,
            author: author?,
            license: license?,
            entry: entry?,
            host_api,
            permissions,
            scopes,
        })
    }

    fn slug(&mut self, v: &Value) -> Option<PluginId> {
        let s = self.string(v, "$.slug", "the slug")?;
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let reason = if !(3..=64).contains(&s.len()) {
            Some("it must be 3 to 64 characters long")
        } else if !ok_chars {
            Some("use only `a-z`, `0-9` and `-`")
        } else if !s.as_bytes()[0].is_ascii_lowercase() {
            Some("it must start with a letter")
        } else if s.ends_with('-') || s.contains("--") {
            Some("`-` separates words: no `--` and no trailing `-`")
        } else {
            None
        };
        match reason {
            None => Some(PluginId::new(s)),
            Some(r) => {
                let suggestion = slugify(s);
                let hint = if suggestion.len() >= 3 {
                    format!(": write `{suggestion}`")
                } else {
                    String::new()
                };
                self.problem(
                    "$.slug",
                    format!("invalid slug `{}`: {r}{hint}", printable(s)),
                );
                None
            }
        }
    }

    fn version(&mut self, v: &Value) -> Option<semver::Version> {
        let s = self.string(v, "$.version", "the version")?;
        match semver::Version::parse(s) {
            Ok(ver) => Some(ver),
            Err(e) => {
                self.problem(
                    "$.version",
                    format!(
                        "`{}` is not a semantic version ({e}): write `MAJOR.MINOR.PATCH`, such as `1.0.0`",
                        printable(s)
                    ),
                );
                None
            }
        }
    }

    fn author(&mut self, v: &Value) -> Option<Author> {
        if let Value::String(_) = v {
            let name = self.text(v, "$.author", "the author", 100)?;
            return Some(Author {
                name,
                email: None,
                url: None,
            });
        }
        if !v.is_object() {
            self.problem(
                "$.author",
                format!(
                    "expected a name or an object with `name`, found {}: write `\"Your Name\"`",
                    kind(v)
                ),
            );
            return None;
        }
        let map = self.object(v, "$.author", &["name", "email", "url"])?;
        let name = self
            .required(map, "$.author", "name", "\"Your Name\"")
            .and_then(|v| self.text(v, "$.author.name", "the author's name", 100));
        let email = map.get("email").and_then(|v| {
            let e = self.text(v, "$.author.email", "the email", 254)?;
            let valid = e
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !e.contains(' '));
            if !valid {
                self.problem(
                    "$.author.email",
                    format!(
                        "`{}` is not an email address: write one such as `dev@example.com`",
                        printable(&e)
                    ),
                );
                return None;
            }
            Some(e)
        });
        let url = map.get("url").and_then(|v| {
            let u = self.text(v, "$.author.url", "the url", 2000)?;
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(' ') {
                self.problem(
                    "$.author.url",
                    format!(
                        "`{}` is not a web address: write one starting with `https://`",
                        printable(&u)
                    ),
                );
                return None;
            }
            Some(u)
        });
        let has_email_problem = map.contains_key("email") && email.is_none();
        let has_url_problem = map.contains_key("url") && url.is_none();
        if has_email_problem || has_url_problem {
            return None;
        }
        Some(Author {
            name: name?,
            email,
            url,
        })
    }

    fn license(&mut self, v: &Value) -> Option<String> {
        let s = self.text(v, "$.license", "the license", 200)?;
        // The full SPDX check (known identifiers, policy) is the marketplace's;
        // here the expression only has to be well formed.
        let ok = s.split_whitespace().all(|tok| {
            matches!(tok, "AND" | "OR" | "WITH")
                || tok
                    .trim_matches(|c| c == '(' || c == ')')
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.+:".contains(&b))
        });
        if !ok {
            self.problem(
                "$.license",
                format!(
                    "`{}` is not an SPDX license expression: write an identifier such as `MIT` or `Apache-2.0 OR MIT`",
                    printable(&s)
                ),
            );
            return None;
        }
        Some(s)
    }

    fn entry(&mut self, v: &Value) -> Option<String> {
        let s = self.string(v, "$.entry", "the entry")?;
        let reason = if s.is_empty() {
            Some("it is empty")
        } else if s.starts_with('/') || s.starts_with('\\') || s.contains(':') {
            Some("it must be a relative path inside the plugin folder")
        } else if s.split(['/', '\\']).any(|c| c == ".." || c.is_empty()) {
            Some("it must not contain `..` or empty path segments")
        } else if !s.ends_with(".wasm") {
            Some("it must name a `.wasm` component")
        } else if s.len() > 255 || s.chars().any(char::is_control) {
            Some("it must be a short path without control characters")
        } else {
            None
        };
        match reason {
            None => Some(s.to_owned()),
            Some(r) => {
                self.problem(
                    "$.entry",
                    format!(
                        "invalid entry `{}`: {r}; write a path such as `plugin.wasm`",
                        printable(s)
                    ),
                );
                None
            }
        }
    }

    fn permissions(&mut self, v: &Value) -> Option<(Permissions, ScopeSet)> {
        let path = "$.permissions";
        let map = self.object(v, path, PERMISSION_KEYS)?;
        let mut scopes = Vec::new();
        let mut perms = Permissions::default();

        if let Some(v) = map.get("entities") {
            let p = "$.permissions.entities";
            if let Some(m) = self.object(v, p, &["read", "write"]) {
                for (key, write) in [("read", false), ("write", true)] {
                    let Some(list) = m.get(key) else { continue };
                    let names = self.each_string(list, &child(p, key), "entity", |s| {
                        if s == "*" {
                            return Ok(None);
                        }
                        Entity::new(s).map(Some)
                    });
                    for e in names {
                        let name = e.as_ref().map_or("*", |e| e.as_str()).to_owned();
                        if write {
                            perms.entities.write.push(name);
                            scopes.push(PluginScope::EntitiesWrite(e));
                        } else {
                            perms.entities.read.push(name);
                            scopes.push(PluginScope::EntitiesRead(e));
                        }
                    }
                }
            }
        }

        if let Some(v) = map.get("hooks") {
            let p = "$.permissions.hooks";
            if let Some(m) = self.object(v, p, &["subscribe", "trigger"]) {
                if let Some(list) = m.get("subscribe") {
                    for pat in self.each_string(list, &child(p, "subscribe"), "hook pattern", |s| {
                        if s == "*" {
                            return Ok(None);
                        }
                        HookPattern::new(s).map(Some)
                    }) {
                        perms
                            .hooks
                            .subscribe
                            .push(pat.as_ref().map_or("*", |p| p.as_str()).to_owned());
                        scopes.push(PluginScope::HooksSubscribe(pat));
                    }
                }
                if let Some(list) = m.get("trigger") {
                    for name in self.each_string(list, &child(p, "trigger"), "hook name", |s| {
                        if s == "*" {
                            return Ok(None);
                        }
                        HookName::new(s).map(Some)
                    }) {
                        perms
                            .hooks
                            .trigger
                            .push(name.as_ref().map_or("*", |n| n.as_str()).to_owned());
                        scopes.push(PluginScope::HooksTrigger(name));
                    }
                }
            }
        }

        for (key, read, write) in [
            ("users", PluginScope::UsersRead, PluginScope::UsersWrite),
            (
                "settings",
                PluginScope::SettingsRead,
                PluginScope::SettingsWrite,
            ),
        ] {
            let Some(v) = map.get(key) else { continue };
            let p = child(path, key);
            let access = match v.as_str() {
                Some("read") => Some(Access::Read),
                Some("write") => Some(Access::Write),
                _ => {
                    self.problem(
                        &p,
                        format!("expected `\"read\"` or `\"write\"`, found {}", describe(v)),
                    );
                    None
                }
            };
            if let Some(a) = access {
                scopes.push(if a == Access::Read { read } else { write });
                if key == "users" {
                    perms.users = Some(a);
                } else {
                    perms.settings = Some(a);
                }
            }
        }

        if let Some(v) = map.get("api") {
            let p = "$.permissions.api";
            if let Some(m) = self.object(v, p, &["rate_limit", "endpoints"]) {
                let rate = self
                    .required(m, p, "rate_limit", "\"100/minute\"")
                    .and_then(|v| {
                        let s = self.string(v, "$.permissions.api.rate_limit", "the rate limit")?;
                        match s.parse::<RateLimit>() {
                            Ok(r) => Some(r),
                            Err(e) => {
                                self.problem("$.permissions.api.rate_limit", e.to_string());
                                None
                            }
                        }
                    });
                let endpoints = match m.get("endpoints") {
                    Some(list) => self.each_string(
                        list,
                        "$.permissions.api.endpoints",
                        "endpoint",
                        parse_endpoint,
                    ),
                    None => Vec::new(),
                };
                if let Some(rate_limit) = rate {
                    scopes.push(PluginScope::ApiAccess);
                    perms.api = Some(ApiPermissions {
                        rate_limit,
                        endpoints,
                    });
                }
            }
        }

        if let Some(v) = map.get("storage") {
            let p = "$.permissions.storage";
            if let Some(m) = self.object(v, p, &["max_size", "allowed_types", "read_only"]) {
                let max =
                    self.required(m, p, "max_size", "\"10MB\"")
                        .and_then(|v| match parse_size(v) {
                            Ok(n) => Some(n),
                            Err(e) => {
                                self.problem("$.permissions.storage.max_size", e);
                                None
                            }
                        });
                let types = self
                    .required(m, p, "allowed_types", "[\"application/json\"]")
                    .map(|v| {
                        let path = "$.permissions.storage.allowed_types";
                        let types = self.each_string(v, path, "file type", parse_file_type);
                        if types.is_empty() && v.as_array().is_some_and(Vec::is_empty) {
                            self.problem(
                                path,
                                "list at least one file type, such as `application/json` or `.csv`",
                            );
                        }
                        types
                    });
                let read_only = match m.get("read_only") {
                    None => Some(false),
                    Some(Value::Bool(b)) => Some(*b),
                    Some(other) => {
                        self.problem(
                            "$.permissions.storage.read_only",
                            format!("expected `true` or `false`, found {}", kind(other)),
                        );
                        None
                    }
                };
                if let (Some(max_size), Some(allowed_types), Some(read_only)) =
                    (max, types, read_only)
                {
                    scopes.push(if read_only {
                        PluginScope::StorageRead
                    } else {
                        PluginScope::StorageWrite
                    });
                    perms.storage = Some(StoragePermissions {
                        max_size,
                        allowed_types,
                        read_only,
                    });
                }
            }
        }

        if let Some(v) = map.get("network") {
            let p = "$.permissions.network";
            if let Some(m) = self.object(v, p, &["outbound"])
                && let Some(list) = m.get("outbound")
            {
                for rule in self.each_string(
                    list,
                    "$.permissions.network.outbound",
                    "host",
                    HostRule::new,
                ) {
                    scopes.push(PluginScope::NetworkOutbound(rule.clone()));
                    perms.network.outbound.push(rule);
                }
            }
        }

        Some((perms, scopes.into_iter().collect()))
    }
}

/// A JSON value as a person reads it in a message, shortened.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`\"{}\"`", printable(s)),
        other => kind(other).to_owned(),
    }
}

/// User input made safe to echo: control characters escaped, long input cut.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(64) {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out
        .trim_matches('-')
        .trim_start_matches(|c: char| c.is_ascii_digit());
    trimmed.trim_start_matches('-').to_owned()
}

fn parse_endpoint(s: &str) -> std::result::Result<Endpoint, String> {
    let Some((method, path)) = s.split_once(' ') else {
        return Err("write a method and a path, such as `GET /status`".into());
    };
    if !matches!(method, "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
        return Err(format!(
            "`{}` is not a method: use `GET`, `POST`, `PUT`, `PATCH` or `DELETE`",
            printable(method)
        ));
    }
    if !path.starts_with('/') || path.len() > 200 {
        return Err("the path must start with `/` and be at most 200 characters".into());
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err("the path must not contain `.` or `..` segments".into());
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-_.~{}".contains(*c)))
    {
        return Err(format!(
            "`{}` is not allowed in a path: use letters, digits, `/`, `-`, `_`, `.`, `~` and `{{param}}`",
            c.escape_default()
        ));
    }
    Ok(Endpoint {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

fn parse_file_type(s: &str) -> std::result::Result<FileType, String> {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    if let Some(ext) = s.strip_prefix('.') {
        if !ext.is_empty()
            && ext.len() <= 16
            && ext
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Ok(FileType::Extension(ext.to_owned()));
        }
        return Err(
            "an extension is `.` and up to 16 lower-case letters or digits, such as `.csv`".into(),
        );
    }
    match s.split_once('/') {
        Some(("*", _)) => Err("`*/*` would allow any file: list the types the plugin stores".into()),
        Some((t, "*")) if token(t) => Ok(FileType::MimeFamily(t.to_owned())),
        Some((t, sub)) if token(t) && token(sub) => Ok(FileType::Mime(s.to_owned())),
        _ => Err("write a media type such as `application/json` or `image/*`, or an extension such as `.csv` (lower case)".into()),
    }
}

/// Parses a byte size: a whole number of bytes, or a string such as `10MB`
/// (units `B`, `KB`, `MB`, `GB`, decimal, and `KiB`, `MiB`, `GiB`, binary).
fn parse_size(v: &Value) -> std::result::Result<u64, String> {
    let hint = "write a size such as `\"10MB\"`, `\"512KiB\"` or a number of bytes";
    let bytes = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("`{n}` is not a whole, positive number of bytes: {hint}"))?,
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                other => {
                    return Err(format!("unknown unit `{}`: {hint}", printable(other)));
                }
            };
            let n: u64 = num.parse().map_err(|_| {
                format!(
                    "`{}` does not start with a whole number: {hint}",
                    printable(s)
                )
            })?;
            n.checked_mul(mult)
                .ok_or_else(|| format!("`{}` is too large", printable(s)))?
        }
        other => return Err(format!("expected a size, found {}: {hint}", kind(other))),
    };
    if bytes == 0 {
        return Err(format!(
            "a quota of zero bytes allows nothing: {hint}, or remove `storage`"
        ));
    }
    if bytes > MAX_STORAGE_BYTES {
        return Err(format!(
            "{bytes} bytes is more than the {MAX_STORAGE_BYTES} bytes (1 TiB) a plugin may ask for"
        ));
    }
    Ok(bytes)
}

/// A JSON value that refuses duplicate object keys.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> std::result::Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}`: keep one",
                    printable(&key)
                )));
            }
            let StrictValue(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        "permissions": {
            "entities": { "read": ["order", "customer"], "write": ["order_note"] },
            "hooks": { "subscribe": ["order.*"], "trigger": ["order.notified"] },
            "api": { "rate_limit": "100/minute", "endpoints": ["GET /status", "POST /orders/{id}/notify"] },
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

    #[test]
    fn a_complete_manifest_parses_into_scopes_and_limits() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.slug.as_str(), "order-notifier");
        let scopes: Vec<String> = m.scopes().iter().map(ToString::to_string).collect();
        assert_eq!(
            scopes,
            [
                "entities:read:customer",
                "entities:read:order",
                "entities:write:order_note",
                "hooks:subscribe:order.*",
                "hooks:trigger:order.notified",
                "api:access",
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
        assert_eq!(limits.endpoints[1].to_string(), "POST /orders/{id}/notify");
    }

    fn keys(v: &Value, schema: bool, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if schema && k == "properties" {
                        if let Value::Object(props) = child {
                            out.extend(props.keys().cloned());
                        }
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
        let m = Manifest::parse(
            r#"{"name":"X","slug":"xyz","version":"0.1.0","description":"d","author":"Me","license":"MIT","entry":"p.wasm"}"#,
        )
        .unwrap();
        assert!(m.scopes().is_empty());
        assert_eq!(m.limits(), RequestedLimits::default());
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
            "permissions": {
                "entities": { "read": ["order", "order", "Bad"], "delete": ["x"] },
                "hooks": { "subscribe": ["ord*"], "trigger": ["a.*"] },
                "api": { "rate_limit": "100/fortnight" },
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
            "$.description: missing required key `description`",
            "$.author.emial: unknown key `emial`: did you mean `email`?",
            "$.license: `MIT; rm -rf` is not an SPDX",
            "$.entry: invalid entry `../evil.wasm`",
            "$.permisions: unknown key `permisions`: did you mean `permissions`?",
            "$.permissions.entities.delete: unknown key",
            "$.permissions.entities.read[1]: `order` is already listed at index 0",
            "$.permissions.entities.read[2]: invalid entity `Bad`",
            "$.permissions.hooks.subscribe[0]: invalid hook pattern `ord*`",
            "$.permissions.hooks.trigger[0]: invalid hook name `a.*`",
            "$.permissions.api.rate_limit: `100/fortnight`",
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
        let m = Manifest::parse(
            r#"{"name":"X","slug":"xyz","version":"0.1.0","description":"d","author":"Me","license":"MIT","entry":"p.wasm",
            "permissions":{"entities":{"write":["*"]},"hooks":{"subscribe":["*"],"trigger":["*"]}}}"#,
        )
        .unwrap();
        let scopes: Vec<String> = m.scopes().iter().map(ToString::to_string).collect();
        assert_eq!(
            scopes,
            ["entities:write", "hooks:subscribe", "hooks:trigger"]
        );
    }

    #[test]
    fn sizes_and_types() {
        assert_eq!(parse_size(&Value::from("512KiB")), Ok(524_288));
        assert_eq!(parse_size(&Value::from("1 GB")), Ok(1_000_000_000));
        assert_eq!(parse_size(&Value::from(2048)), Ok(2048));
        assert!(parse_size(&Value::from(-1)).is_err());
        assert!(parse_size(&Value::from(1.5)).is_err());
        assert!(parse_size(&Value::from("99999999999999999999GB")).is_err());
        assert!(parse_size(&Value::from("2TiB")).is_err());
        assert!(parse_size(&Value::from("10 parsecs")).is_err());
        assert_eq!(
            parse_file_type("image/*"),
            Ok(FileType::MimeFamily("image".into()))
        );
        assert!(parse_file_type("IMAGE/PNG").is_err());
        assert!(parse_file_type(".").is_err());
    }
}
