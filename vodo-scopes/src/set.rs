//! [`ScopeSet`]: granted scopes compiled once for allocation-free checks.

// hashbrown with its default (foldhash, randomly seeded per process): a scope
// check is a hash lookup, and SipHash was most of its cost.
use hashbrown::{HashMap, HashSet};
use std::fmt;

use crate::scope::{HostRule, MAX_HOST_LEN, PluginScope, split_segment};

// Bits for the scopes that carry no argument, and for the broad forms of the rest.
const ENTITIES_READ_ALL: u16 = 1 << 0;
const ENTITIES_WRITE_ALL: u16 = 1 << 1;
const HOOKS_SUBSCRIBE_ALL: u16 = 1 << 2;
const HOOKS_TRIGGER_ALL: u16 = 1 << 3;
const API_ACCESS: u16 = 1 << 4;
const USERS_READ: u16 = 1 << 5;
const USERS_WRITE: u16 = 1 << 6;
const SETTINGS_READ: u16 = 1 << 7;
const SETTINGS_WRITE: u16 = 1 << 8;
const STORAGE_READ: u16 = 1 << 9;
const STORAGE_WRITE: u16 = 1 << 10;

/// A set of granted scopes, compiled for checks that allocate nothing.
///
/// # Implication rules
///
/// - **A broad scope covers its narrow forms.** `entities:read` covers
///   `entities:read:product`; `hooks:subscribe` covers every pattern;
///   `hooks:trigger` covers every hook name.
/// - **A pattern covers the patterns it contains.** `hooks:subscribe:order.*`
///   covers `hooks:subscribe:order.created` and `hooks:subscribe:order.item.*`,
///   but not `hooks:subscribe:*.created` (which also matches `user.created`).
/// - **Write implies read** for entities, users, settings and storage:
///   `entities:write:product` covers `entities:read:product`. Every platform
///   partners already know (Shopify's `write_products`, Salla's
///   `products.read_write`, GitHub's `repo`) works this way, and a write-only
///   grant is no confidentiality boundary in practice: an update returns the
///   record, and a conflict or validation error reveals its state. Splitting
///   them would only lengthen the consent screen without protecting anyone.
/// - **`api:access` covers every resource** of the platform API, and
///   `api:access:{resource}` one: `api:access:products` covers
///   `/api/products/...` and nothing else.
/// - **Nothing else implies anything.** Triggering a hook is not subscribing
///   to it, `api:access` grants no entity, and `network:outbound:*.example.com`
///   covers `api.example.com` (any depth) but not `example.com`. A host rule
///   without a port covers every port of that host; one with a port only that
///   port.
///
/// # Cost
///
/// [`allows`](Self::allows) and the `can_*` helpers are one bit test or one
/// hash lookup, except hook patterns, which walk a trie of the granted
/// patterns in time bounded by the pattern's segment count, and wildcard
/// hosts, which look up each suffix of the host once. None allocates.
///
/// ```
/// use vodo_scopes::{PluginScope, ScopeSet};
///
/// let granted: ScopeSet = ["entities:write:product", "hooks:subscribe:order.*"]
///     .iter()
///     .map(|s| s.parse::<PluginScope>())
///     .collect::<Result<_, _>>()?;
/// assert!(granted.allows(&"entities:read:product".parse()?));
/// assert!(!granted.allows(&"entities:write:customer".parse()?));
/// assert!(granted.can_subscribe("order.created"));
/// assert!(!granted.can_subscribe("customer.created"));
/// # Ok::<(), vodo_scopes::ScopeError>(())
/// ```
#[derive(Clone, Default)]
pub struct ScopeSet {
    flags: u16,
    entities_read: HashSet<Box<str>>,
    entities_write: HashSet<Box<str>>,
    triggers: HashSet<Box<str>>,
    api_resources: HashSet<Box<str>>,
    subscriptions: PatternTrie,
    hosts: HashMap<Box<str>, Ports>,
    domains: HashMap<Box<str>, Ports>,
    /// The scopes as granted, sorted and without duplicates.
    scopes: Vec<PluginScope>,
}

impl ScopeSet {
    /// An empty set: denies everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one scope. Prefer collecting from an iterator to build a set once.
    pub fn insert(&mut self, scope: PluginScope) {
        match self.scopes.binary_search(&scope) {
            Ok(_) => return,
            Err(i) => self.scopes.insert(i, scope.clone()),
        }
        self.compile(scope);
    }

    fn compile(&mut self, scope: PluginScope) {
        use PluginScope as S;
        match scope {
            S::EntitiesRead(None) => self.flags |= ENTITIES_READ_ALL,
            S::EntitiesWrite(None) => self.flags |= ENTITIES_WRITE_ALL,
            S::HooksSubscribe(None) => self.flags |= HOOKS_SUBSCRIBE_ALL,
            S::HooksTrigger(None) => self.flags |= HOOKS_TRIGGER_ALL,
            S::ApiAccess(None) => self.flags |= API_ACCESS,
            S::ApiAccess(Some(r)) => {
                self.api_resources.insert(r.as_str().into());
            }
            S::UsersRead => self.flags |= USERS_READ,
            S::UsersWrite => self.flags |= USERS_WRITE,
            S::SettingsRead => self.flags |= SETTINGS_READ,
            S::SettingsWrite => self.flags |= SETTINGS_WRITE,
            S::StorageRead => self.flags |= STORAGE_READ,
            S::StorageWrite => self.flags |= STORAGE_WRITE,
            S::EntitiesRead(Some(e)) => {
                self.entities_read.insert(e.as_str().into());
            }
            S::EntitiesWrite(Some(e)) => {
                self.entities_write.insert(e.as_str().into());
            }
            S::HooksTrigger(Some(n)) => {
                self.triggers.insert(n.as_str().into());
            }
            S::HooksSubscribe(Some(p)) => self.subscriptions.insert(p.as_str()),
            S::NetworkOutbound(rule) => {
                let map = if rule.is_wildcard() {
                    &mut self.domains
                } else {
                    &mut self.hosts
                };
                map.entry(rule.host().into()).or_default().add(rule.port());
            }
        }
    }

    /// Whether the granted scopes cover `requested`, by the rules above.
    pub fn allows(&self, requested: &PluginScope) -> bool {
        use PluginScope as S;
        match requested {
            S::EntitiesRead(None) => self.any(ENTITIES_READ_ALL | ENTITIES_WRITE_ALL),
            S::EntitiesRead(Some(e)) => self.can_read_entity(e.as_str()),
            S::EntitiesWrite(None) => self.any(ENTITIES_WRITE_ALL),
            S::EntitiesWrite(Some(e)) => self.can_write_entity(e.as_str()),
            S::HooksSubscribe(None) => self.any(HOOKS_SUBSCRIBE_ALL),
            S::HooksSubscribe(Some(p)) => {
                self.any(HOOKS_SUBSCRIBE_ALL) || self.subscriptions.covers(p.as_str())
            }
            S::HooksTrigger(None) => self.any(HOOKS_TRIGGER_ALL),
            S::HooksTrigger(Some(n)) => self.can_trigger(n.as_str()),
            S::ApiAccess(None) => self.any(API_ACCESS),
            S::ApiAccess(Some(r)) => self.can_access_resource(r.as_str()),
            S::UsersRead => self.any(USERS_READ | USERS_WRITE),
            S::UsersWrite => self.any(USERS_WRITE),
            S::SettingsRead => self.any(SETTINGS_READ | SETTINGS_WRITE),
            S::SettingsWrite => self.any(SETTINGS_WRITE),
            S::StorageRead => self.any(STORAGE_READ | STORAGE_WRITE),
            S::StorageWrite => self.any(STORAGE_WRITE),
            S::NetworkOutbound(rule) => self.allows_host_rule(rule),
        }
    }

    #[inline]
    fn any(&self, bits: u16) -> bool {
        self.flags & bits != 0
    }

    /// Whether records of kind `entity` may be read.
    pub fn can_read_entity(&self, entity: &str) -> bool {
        self.any(ENTITIES_READ_ALL | ENTITIES_WRITE_ALL)
            || self.entities_read.contains(entity)
            || self.entities_write.contains(entity)
    }

    /// Whether records of kind `entity` may be created, changed or deleted.
    pub fn can_write_entity(&self, entity: &str) -> bool {
        self.any(ENTITIES_WRITE_ALL) || self.entities_write.contains(entity)
    }

    /// Whether the concrete hook event `name` reaches a subscriber holding this set.
    pub fn can_subscribe(&self, name: &str) -> bool {
        self.any(HOOKS_SUBSCRIBE_ALL) || self.subscriptions.matches(name)
    }

    /// Whether the hook `name` may be triggered.
    pub fn can_trigger(&self, name: &str) -> bool {
        self.any(HOOKS_TRIGGER_ALL) || self.triggers.contains(name)
    }

    /// Whether the platform API resource `resource` (`products` in
    /// `/api/products/...`) may be called: `api:access` covers every
    /// resource, `api:access:{resource}` one.
    pub fn can_access_resource(&self, resource: &str) -> bool {
        self.any(API_ACCESS) || self.api_resources.contains(resource)
    }

    /// Whether any part of the platform API may be called.
    pub fn can_access_api(&self) -> bool {
        self.any(API_ACCESS) || !self.api_resources.is_empty()
    }

    /// Whether the plugin may read its own storage folder.
    pub fn can_read_storage(&self) -> bool {
        self.any(STORAGE_READ | STORAGE_WRITE)
    }

    /// Whether the plugin may write to its own storage folder.
    pub fn can_write_storage(&self) -> bool {
        self.any(STORAGE_WRITE)
    }

    /// Whether an outbound connection to `host:port` is allowed.
    ///
    /// `host` is compared without regard to ASCII case; a trailing `.` (a
    /// fully qualified name) is ignored. This only checks the name: resolving
    /// it and refusing private addresses is the sandbox's job.
    pub fn can_connect(&self, host: &str, port: u16) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() > MAX_HOST_LEN {
            return false;
        }
        let mut buf = [0u8; MAX_HOST_LEN];
        let lowered = &mut buf[..host.len()];
        lowered.copy_from_slice(host.as_bytes());
        lowered.make_ascii_lowercase();
        let Ok(host) = std::str::from_utf8(lowered) else {
            return false;
        };
        let port = Some(port);
        if self.hosts.get(host).is_some_and(|p| p.covers(port)) {
            return true;
        }
        self.domain_covers(host, port, false)
    }

    fn allows_host_rule(&self, rule: &HostRule) -> bool {
        if !rule.is_wildcard()
            && self
                .hosts
                .get(rule.host())
                .is_some_and(|p| p.covers(rule.port()))
        {
            return true;
        }
        self.domain_covers(rule.host(), rule.port(), rule.is_wildcard())
    }

    /// Whether a granted `*.domain` covers `host` (or, for a requested
    /// wildcard, the requested domain itself and everything under it).
    fn domain_covers(&self, host: &str, port: Option<u16>, requested_wildcard: bool) -> bool {
        if self.domains.is_empty() {
            return false;
        }
        if requested_wildcard && self.domains.get(host).is_some_and(|p| p.covers(port)) {
            return true;
        }
        let mut rest = host;
        while let Some((_, parent)) = rest.split_once('.') {
            if self.domains.get(parent).is_some_and(|p| p.covers(port)) {
                return true;
            }
            rest = parent;
        }
        false
    }

    /// The granted scopes, sorted, without duplicates.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &PluginScope> + '_ {
        self.scopes.iter()
    }

    /// The number of distinct scopes granted.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether any granted scope gives access to `capability`: the question
    /// a sandbox asks to decide which host interfaces to link at all.
    pub fn has_capability(&self, capability: Capability) -> bool {
        self.scopes.iter().any(|s| Capability::of(s) == capability)
    }

    /// Whether every scope of `other` is allowed by this set.
    pub fn covers(&self, other: &ScopeSet) -> bool {
        other.iter().all(|s| self.allows(s))
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.scopes.iter().map(|s| format!("{s}")))
            .finish()
    }
}

impl PartialEq for ScopeSet {
    fn eq(&self, other: &Self) -> bool {
        self.scopes == other.scopes
    }
}

impl Eq for ScopeSet {}

impl FromIterator<PluginScope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = PluginScope>>(iter: I) -> Self {
        let mut scopes: Vec<PluginScope> = iter.into_iter().collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut set = ScopeSet::default();
        for scope in &scopes {
            set.compile(scope.clone());
        }
        set.scopes = scopes;
        set
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a PluginScope;
    type IntoIter = std::slice::Iter<'a, PluginScope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.iter()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.scopes.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<PluginScope>::deserialize(d)?.into_iter().collect())
    }
}

/// A family of scopes that one host interface serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `entities:*`.
    Entities,
    /// `hooks:subscribe*`.
    HookSubscribe,
    /// `hooks:trigger*`.
    HookTrigger,
    /// `api:access[:{resource}]`.
    Api,
    /// `users:*`.
    Users,
    /// `settings:*`.
    Settings,
    /// `storage:*`.
    Storage,
    /// `network:outbound:*`.
    Network,
}

impl Capability {
    /// The capability a scope belongs to.
    pub fn of(scope: &PluginScope) -> Self {
        use PluginScope as S;
        match scope {
            S::EntitiesRead(_) | S::EntitiesWrite(_) => Self::Entities,
            S::HooksSubscribe(_) => Self::HookSubscribe,
            S::HooksTrigger(_) => Self::HookTrigger,
            S::ApiAccess(_) => Self::Api,
            S::UsersRead | S::UsersWrite => Self::Users,
            S::SettingsRead | S::SettingsWrite => Self::Settings,
            S::StorageRead | S::StorageWrite => Self::Storage,
            S::NetworkOutbound(_) => Self::Network,
        }
    }

    /// The scope a person should add to get this capability, for messages.
    pub fn example_scope(self) -> &'static str {
        match self {
            Self::Entities => "entities:read:{entity}",
            Self::HookSubscribe => "hooks:subscribe:{pattern}",
            Self::HookTrigger => "hooks:trigger:{name}",
            Self::Api => "api:access:{resource}",
            Self::Users => "users:read",
            Self::Settings => "settings:read",
            Self::Storage => "storage:read",
            Self::Network => "network:outbound:{host}",
        }
    }
}

/// Ports allowed for one host: any, or a short list.
#[derive(Clone, Debug, Default)]
enum Ports {
    #[default]
    Unset,
    Any,
    Some(Vec<u16>),
}

impl Ports {
    fn add(&mut self, port: Option<u16>) {
        match (port, &mut *self) {
            (None, _) => *self = Ports::Any,
            (Some(_), Ports::Any) => {}
            (Some(p), Ports::Unset) => *self = Ports::Some(vec![p]),
            (Some(p), Ports::Some(list)) => {
                if !list.contains(&p) {
                    list.push(p);
                }
            }
        }
    }

    fn covers(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (Ports::Any, _) => true,
            (Ports::Some(list), Some(p)) => list.contains(&p),
            _ => false,
        }
    }
}

/// Granted subscription patterns as a trie of segments.
#[derive(Clone, Debug, Default)]
struct PatternTrie {
    root: Node,
}

#[derive(Clone, Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// A `*` matching exactly one segment, followed by more segments.
    star: Option<Box<Node>>,
    /// A pattern ends here.
    terminal: bool,
    /// A pattern's trailing `*` starts here: one or more further segments match.
    tail: bool,
}

impl PatternTrie {
    fn insert(&mut self, pattern: &str) {
        let mut node = &mut self.root;
        let mut rest = Some(pattern);
        while let Some(r) = rest {
            let (seg, next) = split_segment(r);
            if seg == "*" && next.is_none() {
                node.tail = true;
                return;
            }
            node = if seg == "*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.children.entry(seg.into()).or_default()
            };
            rest = next;
        }
        node.terminal = true;
    }

    fn matches(&self, name: &str) -> bool {
        Self::match_name(&self.root, Some(name))
    }

    fn covers(&self, pattern: &str) -> bool {
        Self::cover_pattern(&self.root, Some(pattern))
    }

    // Recursion depth is bounded by MAX_HOOK_SEGMENTS for valid input; longer
    // names can only come from a caller and are walked segment by segment.
    fn match_name(node: &Node, rest: Option<&str>) -> bool {
        let Some(rest) = rest else {
            return node.terminal;
        };
        if node.tail {
            return true;
        }
        let (seg, next) = split_segment(rest);
        node.children
            .get(seg)
            .is_some_and(|c| Self::match_name(c, next))
            || node
                .star
                .as_ref()
                .is_some_and(|s| Self::match_name(s, next))
    }

    fn cover_pattern(node: &Node, rest: Option<&str>) -> bool {
        let Some(rest) = rest else {
            return node.terminal;
        };
        if node.tail {
            return true;
        }
        let (seg, next) = split_segment(rest);
        if seg == "*" {
            // A requested trailing `*` spans any number of segments: only a granted tail covers it.
            return next.is_some()
                && node
                    .star
                    .as_ref()
                    .is_some_and(|s| Self::cover_pattern(s, next));
        }
        node.children
            .get(seg)
            .is_some_and(|c| Self::cover_pattern(c, next))
            || node
                .star
                .as_ref()
                .is_some_and(|s| Self::cover_pattern(s, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(scopes: &[&str]) -> ScopeSet {
        scopes
            .iter()
            .map(|s| s.parse::<PluginScope>().unwrap())
            .collect()
    }

    fn allows(set: &ScopeSet, s: &str) -> bool {
        set.allows(&s.parse().unwrap())
    }

    #[test]
    fn empty_set_denies_everything() {
        let s = ScopeSet::new();
        for scope in crate::scope::KNOWN {
            if let Ok(scope) = scope.parse::<PluginScope>() {
                assert!(!s.allows(&scope), "{scope}");
            }
        }
        assert!(!s.can_connect("example.com", 443));
        assert!(!s.can_subscribe("order.created"));
    }

    #[test]
    fn broad_covers_narrow_but_not_reverse() {
        let s = set(&["entities:read", "hooks:trigger"]);
        assert!(allows(&s, "entities:read:product"));
        assert!(!allows(&s, "entities:write:product"));
        assert!(allows(&s, "hooks:trigger:order.created"));
        let s = set(&["entities:read:product"]);
        assert!(!allows(&s, "entities:read"));
        assert!(!allows(&s, "entities:read:order"));
    }

    #[test]
    fn write_implies_read_and_nothing_more() {
        let s = set(&[
            "entities:write:product",
            "users:write",
            "settings:write",
            "storage:write",
        ]);
        for ok in [
            "entities:read:product",
            "entities:write:product",
            "users:read",
            "settings:read",
            "storage:read",
        ] {
            assert!(allows(&s, ok), "{ok}");
        }
        for no in [
            "entities:read",
            "entities:read:order",
            "api:access",
            "hooks:trigger",
        ] {
            assert!(!allows(&s, no), "{no}");
        }
        let s = set(&["entities:write"]);
        assert!(allows(&s, "entities:read"));
        let s = set(&["users:read"]);
        assert!(!allows(&s, "users:write"));
    }

    #[test]
    fn patterns_cover_patterns() {
        let s = set(&["hooks:subscribe:order.*", "hooks:subscribe:*.deleted"]);
        for ok in [
            "hooks:subscribe:order.created",
            "hooks:subscribe:order.item.added",
            "hooks:subscribe:order.*",
            "hooks:subscribe:order.item.*",
            "hooks:subscribe:order.*.added",
            "hooks:subscribe:product.deleted",
        ] {
            assert!(allows(&s, ok), "{ok}");
        }
        for no in [
            "hooks:subscribe",
            "hooks:subscribe:*",
            "hooks:subscribe:*.created",
            "hooks:subscribe:order",
            "hooks:subscribe:product.*",
            "hooks:subscribe:product.item.deleted",
            "hooks:subscribe:*.*",
        ] {
            assert!(!allows(&s, no), "{no}");
        }
        assert!(s.can_subscribe("order.created"));
        assert!(s.can_subscribe("customer.deleted"));
        assert!(!s.can_subscribe("customer.created"));
        assert!(!s.can_subscribe("order"));
    }

    #[test]
    fn hosts_by_name_domain_and_port() {
        let s = set(&[
            "network:outbound:api.stripe.com",
            "network:outbound:*.example.com",
            "network:outbound:hooks.partner.io:8443",
        ]);
        assert!(s.can_connect("api.stripe.com", 443));
        assert!(s.can_connect("API.Stripe.COM.", 80));
        assert!(!s.can_connect("stripe.com", 443));
        assert!(!s.can_connect("evil-api.stripe.com", 443));
        assert!(!s.can_connect("api.stripe.com.evil.net", 443));
        assert!(s.can_connect("a.example.com", 443));
        assert!(s.can_connect("a.b.example.com", 443));
        assert!(!s.can_connect("example.com", 443));
        assert!(!s.can_connect("notexample.com", 443));
        assert!(s.can_connect("hooks.partner.io", 8443));
        assert!(!s.can_connect("hooks.partner.io", 443));
        assert!(!s.can_connect(&"a".repeat(300), 443));
        assert!(allows(&s, "network:outbound:*.api.example.com"));
        assert!(allows(&s, "network:outbound:*.example.com:443"));
        assert!(!allows(&s, "network:outbound:*.stripe.com"));
        assert!(!allows(&s, "network:outbound:hooks.partner.io"));
        assert!(allows(&s, "network:outbound:hooks.partner.io:8443"));
    }

    #[test]
    fn api_access_covers_every_resource_and_a_resource_only_itself() {
        let all = set(&["api:access"]);
        assert!(allows(&all, "api:access:products"));
        assert!(all.can_access_resource("customers"));
        let some = set(&["api:access:products", "api:access:orders"]);
        assert!(allows(&some, "api:access:orders"));
        assert!(!allows(&some, "api:access"));
        assert!(!allows(&some, "api:access:customers"));
        assert!(some.can_access_resource("products"));
        assert!(!some.can_access_resource("customers"));
        assert!(!some.can_access_resource("product"));
        assert!(some.can_access_api() && all.can_access_api());
        assert!(!set(&["entities:read"]).can_access_api());
        assert!(some.has_capability(Capability::Api));
        // A resource grants no entity, and an entity grants no resource.
        assert!(!allows(&some, "entities:read:product"));
        assert!(!set(&["entities:write:product"]).can_access_resource("products"));
    }

    #[test]
    fn duplicates_collapse_and_order_is_stable() {
        let a = set(&["users:read", "api:access", "users:read"]);
        let b = set(&["api:access", "users:read"]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        let mut c = ScopeSet::new();
        c.insert("users:read".parse().unwrap());
        c.insert("api:access".parse().unwrap());
        c.insert("api:access".parse().unwrap());
        assert_eq!(c, b);
    }
}
