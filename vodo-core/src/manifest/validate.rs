//! The walk over a manifest's JSON tree: it checks everything, collects
//! **every** problem with its JSON path and a message that says what to
//! write instead, and builds the [`Manifest`] and the scopes it requests.
//!
//! Unknown keys are errors: a misspelt permission must never be silently
//! ignored.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use vodo_scopes::{Entity, HookName, HookPattern, HostRule, PluginScope, Resource, ScopeSet};

use super::units::{
    describe, kind, looks_like_route, parse_file_type, parse_route, parse_size, printable, slugify,
};
use super::{
    Access, ApiPermissions, Author, DEFAULT_ENTRY, MAX_LIST_LEN, Manifest, Permissions, Problem,
    StoragePermissions,
};
use crate::PluginId;
use crate::rate::RateLimit;

const TOP_KEYS: &[&str] = &[
    "name",
    "slug",
    "version",
    "description",
    "author",
    "license",
    "entry",
    "host_api",
    "routes",
    "permissions",
    "$schema",
];
const PERMISSION_KEYS: &[&str] = &[
    "entities", "hooks", "users", "settings", "api", "storage", "network",
];

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

/// Collects problems while it builds.
#[derive(Default)]
pub(super) struct Walker {
    pub(super) problems: Vec<Problem>,
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

    /// An optional key: `Ok(None)` when absent, `Err(())` when present but refused.
    fn optional<T>(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        check: impl FnOnce(&mut Self, &Value) -> Option<T>,
    ) -> Result<Option<T>, ()> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => check(self, v).map(Some).ok_or(()),
        }
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
    /// Every entry that parsed is returned, with its path.
    fn each_string<T>(
        &mut self,
        v: &Value,
        path: &str,
        what: &str,
        mut parse: impl FnMut(&str) -> Result<T, String>,
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

    pub(super) fn manifest(&mut self, v: &Value) -> Option<Manifest> {
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
        let description = self.optional(map, "description", |w, v| {
            w.text(v, "$.description", "the description", 1000)
        });
        let author = self.optional(map, "author", Self::author);
        let license = self.optional(map, "license", Self::license);
        let entry = self.optional(map, "entry", Self::entry);
        let host_api = self.optional(map, "host_api", |w, v| {
            let s = w.string(v, "$.host_api", "host_api")?;
            match semver::VersionReq::parse(s) {
                Ok(r) => Some(r),
                Err(e) => {
                    w.problem(
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
        let routes = match map.get("routes") {
            Some(v) => self.each_string(v, "$.routes", "route", parse_route),
            None => Vec::new(),
        };
        let (permissions, scopes) = match map.get("permissions") {
            Some(v) => self.permissions(v)?,
            None => (Permissions::default(), ScopeSet::new()),
        };
        Some(Manifest {
            name: name?,
            slug: slug?,
            version: version?,
            description: description.ok()?,
            author: author.ok()?,
            license: license.ok()?,
            entry: entry.ok()?.unwrap_or_else(|| DEFAULT_ENTRY.to_owned()),
            host_api: host_api.ok()?,
            routes,
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
        let email = self.optional(map, "email", |w, v| {
            let e = w.text(v, "$.author.email", "the email", 254)?;
            let valid = e
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !e.contains(' '));
            if !valid {
                w.problem(
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
        let url = self.optional(map, "url", |w, v| {
            let u = w.text(v, "$.author.url", "the url", 2000)?;
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(' ') {
                w.problem(
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
        Some(Author {
            name: name?,
            email: email.ok()?,
            url: url.ok()?,
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
            for scope in self.actions(
                v,
                "$.permissions.entities",
                ["entity permission", "entity"],
                &["read", "write"],
                "`read:{kind}` or `write:{kind}`, such as `read:order` or `write:product` (`*` for every kind)",
                |action, s| {
                    let entity = match s {
                        "*" => None,
                        s => Some(Entity::new(s)?),
                    };
                    Ok(if action == 0 {
                        PluginScope::EntitiesRead(entity)
                    } else {
                        PluginScope::EntitiesWrite(entity)
                    })
                },
            ) {
                let name = |e: &Option<Entity>| e.as_ref().map_or("*", |e| e.as_str()).to_owned();
                match &scope {
                    PluginScope::EntitiesRead(e) => perms.entities.read.push(name(e)),
                    PluginScope::EntitiesWrite(e) => perms.entities.write.push(name(e)),
                    _ => {}
                }
                scopes.push(scope);
            }
        }

        if let Some(v) = map.get("hooks") {
            for scope in self.actions(
                v,
                "$.permissions.hooks",
                ["hook permission", "hook pattern", "hook name"],
                &["subscribe", "trigger"],
                "`subscribe:{pattern}` or `trigger:{name}`, such as `subscribe:order.*` or `trigger:order.noted` (`*` for every hook)",
                |action, s| {
                    Ok(match (action, s) {
                        (0, "*") => PluginScope::HooksSubscribe(None),
                        (0, s) => PluginScope::HooksSubscribe(Some(
                            HookPattern::new(s)?,
                        )),
                        (_, "*") => PluginScope::HooksTrigger(None),
                        (_, s) => PluginScope::HooksTrigger(Some(
                            HookName::new(s)?,
                        )),
                    })
                },
            ) {
                match &scope {
                    PluginScope::HooksSubscribe(p) => perms
                        .hooks
                        .subscribe
                        .push(p.as_ref().map_or("*", |p| p.as_str()).to_owned()),
                    PluginScope::HooksTrigger(n) => perms
                        .hooks
                        .trigger
                        .push(n.as_ref().map_or("*", |n| n.as_str()).to_owned()),
                    _ => {}
                }
                scopes.push(scope);
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
            self.api(v, &mut perms, &mut scopes);
        }

        if let Some(v) = map.get("storage") {
            self.storage(v, &mut perms, &mut scopes);
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

    /// `entities` or `hooks`, in either form, each entry parsed by
    /// `argument(action index, argument)`: the roadmap's list
    /// (`["read:*", "write:product"]`), or an object of lists keyed by action
    /// (`{ "read": ["*"], "write": ["product"] }`), which means the same.
    fn actions<T>(
        &mut self,
        v: &Value,
        path: &str,
        what: impl AsRef<[&'static str]>,
        actions: &[&str],
        form: &str,
        mut argument: impl FnMut(usize, &str) -> Result<T, String>,
    ) -> Vec<T> {
        // `what[0]` names an entry of the list form; `what[1 + i]` (or the
        // last) an entry of the object form's list for action `i`.
        let what = what.as_ref();
        let label = |i: usize| what.get(1 + i).or(what.last()).copied().unwrap_or("entry");
        match v {
            Value::Array(_) => {
                self.each_string(v, path, what.first().copied().unwrap_or("entry"), |s| {
                    let Some((action, arg)) = s.split_once(':') else {
                        return Err(format!("write {form}"));
                    };
                    let Some(i) = actions.iter().position(|a| *a == action) else {
                        let hint = vodo_scopes::did_you_mean(action, actions).map_or_else(
                            || format!("write {form}"),
                            |a| format!("did you mean `{a}:`?"),
                        );
                        return Err(format!("`{}` is not an action: {hint}", printable(action)));
                    };
                    argument(i, arg)
                })
            }
            Value::Object(_) => {
                let Some(m) = self.object(v, path, actions) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                for (i, action) in actions.iter().enumerate() {
                    if let Some(list) = m.get(*action) {
                        let p = child(path, action);
                        out.extend(self.each_string(list, &p, label(i), |s| argument(i, s)));
                    }
                }
                out
            }
            other => {
                self.problem(
                    path,
                    format!("expected a list such as {form}, found {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn api(&mut self, v: &Value, perms: &mut Permissions, scopes: &mut Vec<PluginScope>) {
        let p = "$.permissions.api";
        let Some(m) = self.object(v, p, &["rate_limit", "endpoints"]) else {
            return;
        };
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
        let path = "$.permissions.api.endpoints";
        let endpoints = match m.get("endpoints") {
            None => Some(Vec::new()),
            Some(list) => {
                let before = self.problems.len();
                let resources = self.each_string(list, path, "resource", |s| {
                    if looks_like_route(s) {
                        return Err(format!(
                            "this is a route the plugin serves, not a platform API resource: move it to the top-level `routes` list (`\"routes\": [\"{}\"]`); `api.endpoints` names the resources of the platform API the plugin's key may call, such as `products` or `orders`",
                            printable(s)
                        ));
                    }
                    Resource::new(s)
                });
                if resources.is_empty() && list.as_array().is_some_and(Vec::is_empty) {
                    self.problem(
                        path,
                        "an empty list allows no resource: list the resources the plugin calls, such as `[\"products\"]`, or remove `endpoints` to allow every resource",
                    );
                }
                (self.problems.len() == before).then_some(resources)
            }
        };
        if let (Some(rate_limit), Some(endpoints)) = (rate, endpoints) {
            if endpoints.is_empty() {
                scopes.push(PluginScope::ApiAccess(None));
            }
            scopes.extend(
                endpoints
                    .iter()
                    .cloned()
                    .map(|r| PluginScope::ApiAccess(Some(r))),
            );
            perms.api = Some(ApiPermissions {
                rate_limit,
                endpoints,
            });
        }
    }

    fn storage(&mut self, v: &Value, perms: &mut Permissions, scopes: &mut Vec<PluginScope>) {
        let p = "$.permissions.storage";
        let Some(m) = self.object(v, p, &["max_size", "allowed_types", "read_only"]) else {
            return;
        };
        let max = self
            .required(m, p, "max_size", "\"10MB\"")
            .and_then(|v| match parse_size(v) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.problem("$.permissions.storage.max_size", e);
                    None
                }
            });
        let types = self.required(m, p, "allowed_types", "[\"json\"]").map(|v| {
            let path = "$.permissions.storage.allowed_types";
            let types = self.each_string(v, path, "file type", parse_file_type);
            if types.is_empty() && v.as_array().is_some_and(Vec::is_empty) {
                self.problem(
                    path,
                    "list at least one file type, such as `json`, `csv` or `application/pdf`",
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
        if let (Some(max_size), Some(allowed_types), Some(read_only)) = (max, types, read_only) {
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
