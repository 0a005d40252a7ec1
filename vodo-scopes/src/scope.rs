//! The scope grammar: [`PluginScope`] and the validated names it carries.

use std::fmt;
use std::str::FromStr;

use crate::ScopeError;

/// The longest scope string accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 300;
/// The longest entity name accepted, in bytes.
pub const MAX_ENTITY_LEN: usize = 64;
/// The longest hook name or pattern accepted, in bytes.
pub const MAX_HOOK_LEN: usize = 128;
/// The most `.`-separated segments a hook name or pattern may have.
pub const MAX_HOOK_SEGMENTS: usize = 8;
/// The longest host name accepted, in bytes (DNS limit).
pub const MAX_HOST_LEN: usize = 253;

/// Every scope without its argument, as written in scope strings.
pub(crate) const KNOWN: [&str; 12] = [
    "entities:read",
    "entities:write",
    "hooks:subscribe",
    "hooks:trigger",
    "api:access",
    "users:read",
    "users:write",
    "settings:read",
    "settings:write",
    "storage:read",
    "storage:write",
    "network:outbound",
];

pub(crate) const KNOWN_LIST: &str = "`entities:read[:{entity}]`, `entities:write[:{entity}]`, \
`hooks:subscribe[:{pattern}]`, `hooks:trigger[:{name}]`, `api:access[:{resource}]`, `users:read`, `users:write`, \
`settings:read`, `settings:write`, `storage:read`, `storage:write`, `network:outbound:{host}`";

/// A name of an entity kind, such as `product` or `order_item`.
///
/// One to 64 bytes of `a-z`, `0-9` and `_`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity(Box<str>);

impl Entity {
    /// Validates an entity name.
    pub fn new(name: &str) -> Result<Self, String> {
        check_name(name, "entity", "product", MAX_ENTITY_LEN, "")?;
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest platform API resource name accepted, in bytes.
pub const MAX_RESOURCE_LEN: usize = 64;

/// A resource of the platform API, as its paths name it: `products` in
/// `/api/products/...`.
///
/// One to 64 bytes of `a-z`, `0-9` and `_`, starting with a letter
/// (`[a-z][a-z0-9_]*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource(Box<str>);

impl Resource {
    /// Validates a resource name.
    pub fn new(name: &str) -> Result<Self, String> {
        check_name(
            name,
            "resource",
            "products",
            MAX_RESOURCE_LEN,
            ", as the platform API writes it in its paths (`products`, `order_notes`)",
        )?;
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a name of `a-z`, `0-9` and `_`, starting with a letter, at most
/// `max` bytes (entity kinds and API resources); `what` and `example` word
/// the messages, `hint` ends the one about characters.
fn check_name(name: &str, what: &str, example: &str, max: usize, hint: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "write {} {what} name such as `{example}`",
            if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            }
        ));
    }
    if name.len() > max {
        return Err(format!("{what} names are at most {max} bytes long"));
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!("{what} names start with a lower-case letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "`{}` is not allowed: use only `a-z`, `0-9` and `_`{hint}",
            c.escape_default()
        ));
    }
    Ok(())
}

/// A concrete hook name, such as `order.created`.
///
/// One to eight `.`-separated segments of `a-z`, `0-9` and `_`, at most 128
/// bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookName(Box<str>);

impl HookName {
    /// Validates a hook name.
    pub fn new(name: &str) -> Result<Self, String> {
        check_hook(name, false)?;
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A hook subscription pattern, such as `order.*` or `*.created`.
///
/// The grammar of [`HookName`], where a whole segment may also be `*`:
///
/// - `*` as the **last** segment matches one or more segments, so `order.*`
///   matches `order.created` and `order.item.added` but not `order`;
/// - `*` anywhere else matches exactly one segment, so `*.created` matches
///   `order.created` but not `order.item.created`.
///
/// A partial wildcard such as `ord*` is refused rather than guessed at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookPattern(Box<str>);

impl HookPattern {
    /// Validates a hook pattern.
    pub fn new(pattern: &str) -> Result<Self, String> {
        check_hook(pattern, true)?;
        Ok(Self(pattern.into()))
    }

    /// The pattern as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this pattern contains no wildcard (it names one hook).
    pub fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    /// Whether the concrete hook `name` matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        pattern_matches(&self.0, name)
    }
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, p_rest) = split_segment(pattern);
    let (n, n_rest) = split_segment(name);
    if p == "*" && p_rest.is_none() {
        return true; // a trailing `*` takes every remaining segment, and there is at least `n`
    }
    if p != "*" && p != n {
        return false;
    }
    match (p_rest, n_rest) {
        (None, None) => true,
        (Some(p), Some(n)) => pattern_matches(p, n),
        _ => false,
    }
}

/// Splits the first `.`-separated segment off `s`.
pub(crate) fn split_segment(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (s, None),
    }
}

fn check_hook(name: &str, pattern: bool) -> Result<(), String> {
    let example = if pattern { "order.*" } else { "order.created" };
    if name.is_empty() {
        return Err(format!("write a hook name such as `{example}`"));
    }
    if name.len() > MAX_HOOK_LEN {
        return Err(format!("hook names are at most {MAX_HOOK_LEN} bytes long"));
    }
    let mut count = 0;
    for seg in name.split('.') {
        count += 1;
        if seg.is_empty() {
            return Err(format!(
                "empty segment: separate segments with a single `.`, as in `{example}`"
            ));
        }
        if seg == "*" {
            if !pattern {
                return Err(
                    "`*` is only allowed in subscription patterns: name one hook, such as `order.created`"
                        .into(),
                );
            }
            continue;
        }
        if seg.contains('*') {
            return Err(format!(
                "`{seg}` mixes `*` with other characters: a wildcard must be a whole segment, as in `order.*`"
            ));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(format!(
                "`{}` is not allowed: use only `a-z`, `0-9`, `_` and `.`",
                c.escape_default()
            ));
        }
    }
    if count > MAX_HOOK_SEGMENTS {
        return Err(format!(
            "hook names have at most {MAX_HOOK_SEGMENTS} segments"
        ));
    }
    Ok(())
}

/// An outbound host a plugin may reach: `api.example.com`, a whole domain
/// `*.example.com`, and optionally one port (`api.example.com:8443`).
///
/// Without a port any port of the host is allowed. `*.example.com` matches
/// every subdomain of `example.com` at any depth, but not `example.com`
/// itself. A wildcard must sit above at least two labels (`*.com` is refused),
/// and a bare `*` is refused: a plugin lists the hosts it talks to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostRule {
    host: Box<str>,
    wildcard: bool,
    port: Option<u16>,
}

impl HostRule {
    /// Parses `host`, `*.domain` or either with `:port`.
    pub fn new(spec: &str) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("write a host such as `api.example.com`".into());
        }
        if spec.starts_with('[') || spec.matches(':').count() > 1 {
            return Err(
                "IPv6 literals are not supported: write the host name the plugin connects to"
                    .into(),
            );
        }
        if spec.contains("://") || spec.contains('/') {
            return Err(
                "write only the host (and an optional `:port`), without a scheme or path, as in `api.example.com`"
                    .into(),
            );
        }
        let (host, port) = match spec.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("`{p}` is not a port: write a number from 1 to 65535")
                })?;
                (h, Some(port))
            }
            None => (spec, None),
        };
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if host == "*" {
            return Err(
                "a bare `*` would allow every host: list each host the plugin talks to".into(),
            );
        }
        if name.len() > MAX_HOST_LEN {
            return Err(format!("host names are at most {MAX_HOST_LEN} bytes long"));
        }
        if name.ends_with('.') {
            return Err("remove the trailing `.`".into());
        }
        let mut labels = 0;
        for label in name.split('.') {
            labels += 1;
            if label.is_empty() {
                return Err("empty label: separate labels with a single `.`".into());
            }
            if label.len() > 63 {
                return Err(format!("label `{label}` is longer than 63 bytes"));
            }
            if label.contains('*') {
                return Err(
                    "a wildcard is only allowed as the whole first label, as in `*.example.com`"
                        .into(),
                );
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("label `{label}` starts or ends with `-`"));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(format!(
                    "`{}` is not allowed in a host name: use only `a-z`, `0-9`, `-` and `.`",
                    c.escape_default()
                ));
            }
        }
        if wildcard && labels < 2 {
            return Err(format!(
                "`*.{name}` covers a whole top-level domain: name the domain, as in `*.{name}` -> `*.example.{name}`"
            ));
        }
        Ok(Self {
            host: name.into(),
            wildcard,
            port,
        })
    }

    /// The host name, without the `*.` of a wildcard.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether this rule covers every subdomain of [`host`](Self::host).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The one port allowed, or `None` for any port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// One permission a plugin can ask for.
///
/// Scopes are written `category:action[:argument]`, always in lower case. The
/// broad form of a scope (no argument) covers all of its narrow forms;
/// see [`ScopeSet`](crate::ScopeSet) for the full implication rules.
///
/// ```
/// use vodo_scopes::PluginScope;
///
/// let scope: PluginScope = "entities:write:product".parse()?;
/// assert_eq!(scope.to_string(), "entities:write:product");
/// assert!("entities:wrte".parse::<PluginScope>().unwrap_err().to_string().contains("did you mean"));
/// # Ok::<(), vodo_scopes::ScopeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginScope {
    /// `entities:read` (every kind) or `entities:read:{entity}`.
    EntitiesRead(Option<Entity>),
    /// `entities:write` (every kind) or `entities:write:{entity}`; implies the matching read.
    EntitiesWrite(Option<Entity>),
    /// `hooks:subscribe` (every hook) or `hooks:subscribe:{pattern}`.
    HooksSubscribe(Option<HookPattern>),
    /// `hooks:trigger` (every hook) or `hooks:trigger:{name}`.
    HooksTrigger(Option<HookName>),
    /// `api:access` (every resource) or `api:access:{resource}`: call the
    /// platform API, within the rate limit the manifest declares.
    ApiAccess(Option<Resource>),
    /// `users:read`.
    UsersRead,
    /// `users:write`; implies `users:read`.
    UsersWrite,
    /// `settings:read`.
    SettingsRead,
    /// `settings:write`; implies `settings:read`.
    SettingsWrite,
    /// `storage:read`: read files in the plugin's own folder.
    StorageRead,
    /// `storage:write`: write files in the plugin's own folder; implies `storage:read`.
    StorageWrite,
    /// `network:outbound:{host}`: outbound HTTP to one host or domain.
    NetworkOutbound(HostRule),
}

impl PluginScope {
    /// The scope without its argument, such as `entities:read`.
    pub fn base(&self) -> &'static str {
        match self {
            Self::EntitiesRead(_) => KNOWN[0],
            Self::EntitiesWrite(_) => KNOWN[1],
            Self::HooksSubscribe(_) => KNOWN[2],
            Self::HooksTrigger(_) => KNOWN[3],
            Self::ApiAccess(_) => KNOWN[4],
            Self::UsersRead => KNOWN[5],
            Self::UsersWrite => KNOWN[6],
            Self::SettingsRead => KNOWN[7],
            Self::SettingsWrite => KNOWN[8],
            Self::StorageRead => KNOWN[9],
            Self::StorageWrite => KNOWN[10],
            Self::NetworkOutbound(_) => KNOWN[11],
        }
    }

    /// Parses a scope string; the same as `s.parse()`.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        s.parse()
    }

    /// What the scope lets a plugin do, in plain language, for the person
    /// asked to consent to it.
    ///
    /// ```
    /// use vodo_scopes::PluginScope;
    ///
    /// let s: PluginScope = "entities:write:order".parse().unwrap();
    /// assert_eq!(s.describe(), "Read and change your order records");
    /// let s: PluginScope = "network:outbound:api.example.com".parse().unwrap();
    /// assert_eq!(s.describe(), "Send data to api.example.com over the internet");
    /// ```
    pub fn describe(&self) -> String {
        match self {
            Self::EntitiesRead(None) => "Read all of your store's records".into(),
            Self::EntitiesRead(Some(e)) => format!("Read your {} records", e.as_str()),
            Self::EntitiesWrite(None) => "Read and change all of your store's records".into(),
            Self::EntitiesWrite(Some(e)) => format!("Read and change your {} records", e.as_str()),
            Self::HooksSubscribe(None) => {
                "Be told about everything that happens in your store".into()
            }
            Self::HooksSubscribe(Some(p)) => format!("Be told when `{}` happens", p.as_str()),
            Self::HooksTrigger(None) => "Announce any event in your store".into(),
            Self::HooksTrigger(Some(n)) => format!("Announce `{}` events", n.as_str()),
            Self::ApiAccess(None) => "Call every part of the platform API with its own keys".into(),
            Self::ApiAccess(Some(r)) => {
                format!("Call the platform API's {} with its own keys", r.as_str())
            }
            Self::UsersRead => "See your customers' and staff accounts".into(),
            Self::UsersWrite => "See and change your customers' and staff accounts".into(),
            Self::SettingsRead => "Read its own settings".into(),
            Self::SettingsWrite => "Read and change its own settings".into(),
            Self::StorageRead => "Read files in its own folder".into(),
            Self::StorageWrite => "Keep files in its own folder".into(),
            Self::NetworkOutbound(h) => format!("Send data to {h} over the internet"),
        }
    }
}

impl fmt::Display for PluginScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base())?;
        match self {
            Self::EntitiesRead(Some(e)) | Self::EntitiesWrite(Some(e)) => {
                write!(f, ":{}", e.as_str())
            }
            Self::HooksSubscribe(Some(p)) => write!(f, ":{}", p.as_str()),
            Self::HooksTrigger(Some(n)) => write!(f, ":{}", n.as_str()),
            Self::ApiAccess(Some(r)) => write!(f, ":{}", r.as_str()),
            Self::NetworkOutbound(h) => write!(f, ":{h}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for PluginScope {
    type Err = ScopeError;

    fn from_str(input: &str) -> Result<Self, ScopeError> {
        if input.trim().is_empty() {
            return Err(ScopeError::Empty);
        }
        if input.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong {
                len: input.len(),
                max: MAX_SCOPE_LEN,
            });
        }
        let canonical_chars = input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*:/[]".contains(&b));
        if !canonical_chars {
            let folded = input.trim().to_ascii_lowercase();
            let canonical = (folded != input
                && folded.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*:/[]".contains(&b)
                }))
            .then_some(folded);
            return Err(ScopeError::NotCanonical {
                scope: input.to_owned(),
                canonical,
            });
        }

        let mut parts = input.splitn(3, ':');
        let category = parts.next().unwrap_or_default();
        let action = parts.next();
        let argument = parts.next();
        let base = match action {
            Some(action) => KNOWN.iter().copied().find(|k| {
                k.len() == category.len() + 1 + action.len()
                    && k.starts_with(category)
                    && k.ends_with(action)
                    && k.as_bytes()[category.len()] == b':'
            }),
            None => None,
        };
        let Some(base) = base else {
            let head = match action {
                Some(a) => &input[..category.len() + 1 + a.len()],
                None => category,
            };
            return Err(ScopeError::Unknown {
                scope: input.to_owned(),
                suggestion: suggest(head),
            });
        };

        let invalid = |what: &'static str, arg: &str, reason: String| ScopeError::InvalidArgument {
            scope: input.to_owned(),
            what,
            argument: arg.to_owned(),
            reason,
        };
        let no_arg = |scope: Self| match argument {
            None => Ok(scope),
            Some(_) => Err(ScopeError::UnexpectedArgument {
                scope: input.to_owned(),
                base,
            }),
        };
        match base {
            "entities:read" | "entities:write" => {
                let entity = argument
                    .map(|a| Entity::new(a).map_err(|r| invalid("entity name", a, r)))
                    .transpose()?;
                Ok(if base == "entities:read" {
                    Self::EntitiesRead(entity)
                } else {
                    Self::EntitiesWrite(entity)
                })
            }
            "hooks:subscribe" => Ok(Self::HooksSubscribe(
                argument
                    .map(|a| HookPattern::new(a).map_err(|r| invalid("hook pattern", a, r)))
                    .transpose()?,
            )),
            "hooks:trigger" => Ok(Self::HooksTrigger(
                argument
                    .map(|a| HookName::new(a).map_err(|r| invalid("hook name", a, r)))
                    .transpose()?,
            )),
            "network:outbound" => match argument {
                None => Err(ScopeError::MissingArgument {
                    scope: input.to_owned(),
                    expected: "a host",
                }),
                Some(a) => HostRule::new(a)
                    .map(Self::NetworkOutbound)
                    .map_err(|r| invalid("host", a, r)),
            },
            "api:access" => Ok(Self::ApiAccess(
                argument
                    .map(|a| Resource::new(a).map_err(|r| invalid("resource name", a, r)))
                    .transpose()?,
            )),
            "users:read" => no_arg(Self::UsersRead),
            "users:write" => no_arg(Self::UsersWrite),
            "settings:read" => no_arg(Self::SettingsRead),
            "settings:write" => no_arg(Self::SettingsWrite),
            "storage:read" => no_arg(Self::StorageRead),
            _ => no_arg(Self::StorageWrite),
        }
    }
}

/// The known scope closest to `head`, if it is close enough to be a typo.
fn suggest(head: &str) -> Option<&'static str> {
    // A bare category (`entities`) or a familiar synonym gets its most common scope.
    let by_prefix = KNOWN.iter().copied().find(|k| {
        k.split(':').next() == Some(head) || k.split(':').next() == Some(head.trim_end_matches(':'))
    });
    if by_prefix.is_some() {
        return by_prefix;
    }
    crate::did_you_mean(head, &KNOWN)
}

/// Edit distance over bytes, counting a swap of two neighbours as one edit
/// (optimal string alignment), since `emial` is one slip from `email`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 0..a.len() {
        cur[0] = i + 1;
        for j in 0..b.len() {
            let cost = usize::from(a[i] != b[j]);
            let mut d = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                d = d.min(before[j - 1] + 1);
            }
            cur[j + 1] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(feature = "serde")]
impl serde::Serialize for PluginScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for PluginScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        s.parse::<PluginScope>().unwrap_err().to_string()
    }

    #[test]
    fn every_form_round_trips() {
        for s in [
            "entities:read",
            "entities:read:product",
            "entities:write",
            "entities:write:order_item",
            "hooks:subscribe",
            "hooks:subscribe:order.*",
            "hooks:subscribe:*.created",
            "hooks:subscribe:*",
            "hooks:trigger",
            "hooks:trigger:order.note_added",
            "api:access",
            "api:access:products",
            "api:access:order_notes",
            "users:read",
            "users:write",
            "settings:read",
            "settings:write",
            "storage:read",
            "storage:write",
            "network:outbound:api.stripe.com",
            "network:outbound:*.stripe.com",
            "network:outbound:hooks.example.com:8443",
            "network:outbound:localhost",
        ] {
            let scope: PluginScope = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(scope.to_string(), s);
        }
    }

    #[test]
    fn typos_get_suggestions() {
        assert!(err("entity:read").contains("did you mean `entities:read`"));
        assert!(err("entities:wrte").contains("did you mean `entities:write`"));
        assert!(err("hook:subscribe:order.*").contains("did you mean `hooks:subscribe`"));
        assert!(err("entities").contains("did you mean `entities:read`"));
        assert!(err("network").contains("`network:outbound`"));
        assert!(err("root:all").contains("known scopes are"));
    }

    #[test]
    fn arguments_are_checked() {
        assert!(err("users:read:all").contains("takes no argument"));
        assert!(err("api:access:9lives").contains("start with a lower-case letter"));
        assert!(err("api:access:order-notes").contains("resource name"));
        assert!(err("api:access:").contains("resource name"));
        assert!(err("network:outbound").contains("needs a host"));
        assert!(err("network:outbound:*").contains("every host"));
        assert!(err("network:outbound:*.com").contains("top-level"));
        assert!(err("network:outbound:https://x.com").contains("without a scheme"));
        assert!(err("network:outbound:x.com:0").contains("not a port"));
        assert!(err("network:outbound:x.com:70000").contains("not a port"));
        assert!(err("network:outbound:a..b").contains("empty label"));
        assert!(err("network:outbound:[::1]").contains("IPv6"));
        assert!(err("network:outbound:-a.com").contains("starts or ends"));
        assert!(err("network:outbound:a.*.com").contains("first label"));
        assert!(err("entities:read:Product").contains("canonical"));
        assert!(err("entities:read:9lives").contains("start with a lower-case letter"));
        assert!(err("entities:read:").contains("entity name"));
        assert!(err("hooks:trigger:order.*").contains("only allowed in subscription"));
        assert!(err("hooks:subscribe:ord*").contains("whole segment"));
        assert!(err("hooks:subscribe:order..x").contains("empty segment"));
        assert!(err("hooks:subscribe:a.b.c.d.e.f.g.h.i").contains("at most 8 segments"));
        assert!(err(" entities:read").contains("canonical"));
        assert!(err("ENTITIES:READ").contains("write `entities:read`"));
        assert!(err("").contains("empty scope"));
        assert!(err(&"a".repeat(400)).contains("longer than"));
        assert!(err("entities:read:caf\u{e9}").contains("characters no scope may contain"));
    }

    #[test]
    fn patterns_match_by_segment() {
        let p = HookPattern::new("order.*").unwrap();
        assert!(p.matches("order.created"));
        assert!(p.matches("order.item.added"));
        assert!(!p.matches("order"));
        assert!(!p.matches("orders.created"));
        let p = HookPattern::new("*.created").unwrap();
        assert!(p.matches("order.created"));
        assert!(!p.matches("order.item.created"));
        assert!(!p.matches("created"));
        assert!(HookPattern::new("*").unwrap().matches("a.b.c"));
    }
}
