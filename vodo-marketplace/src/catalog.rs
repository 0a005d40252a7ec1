//! The catalog: listings, search, ratings, reviews and installation analytics.
//!
//! Ratings rank by a Bayesian average: every plugin starts with
//! [`PRIOR_WEIGHT`] phantom votes of [`PRIOR_MEAN`] stars, so two five-star
//! votes (3.33) do not outrank five hundred votes averaging four and a half
//! (4.47). The prior is the middle of the scale, not the catalog-wide mean:
//! in a catalog whose best-known plugin dominates the votes, the catalog
//! mean is that plugin's mean, and every newcomer would tie with it. Reviews are accepted only from installations that used the plugin.
//! Search pages are stable: the cursor is the last result's sort key, so
//! listings added or changed meanwhile neither repeat nor skip results.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use vodo_core::{InstallationId, Timestamp};

use crate::pricing::Pricing;
use crate::{Error, Result};

/// Phantom votes added to every plugin's ratings.
pub const PRIOR_WEIGHT: f64 = 10.0;
/// The stars of each phantom vote: the middle of the 1 to 5 scale.
pub const PRIOR_MEAN: f64 = 3.0;

/// The most tags a listing may carry (as the WordPress.org directory allows).
pub const MAX_TAGS: usize = 12;

/// A plugin as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The plugin's slug.
    pub plugin: String,
    /// Display name.
    pub name: String,
    /// One line.
    pub summary: String,
    /// Its one category, such as `shipping`, or a sub-category under its
    /// parent, such as `shipping::labels` (lowercase words, digits and `-`,
    /// joined by `::`). Filtering by a category includes its sub-categories.
    pub category: String,
    /// Tags, at most [`MAX_TAGS`]; stored in lowercase, with spaces as `-`.
    pub tags: Vec<String>,
    /// What it costs.
    pub pricing: Pricing,
    /// The scopes its latest version requests.
    pub scopes: Vec<String>,
    /// The latest published version.
    pub version: String,
}

/// One installation's rating, with an optional review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// The installation that rated.
    pub installation: InstallationId,
    /// One to five.
    pub stars: u8,
    /// The review text, if any.
    pub text: String,
    /// When.
    pub at: Timestamp,
}

/// Something that happened to an installation of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallEvent {
    /// Installed (or updated to a version).
    Installed,
    /// Uninstalled.
    Uninstalled,
    /// Used (the plugin handled a call).
    Used,
}

/// Installs, updates, uninstalls and active installations per version.
///
/// Counted from the event history so that a host reporting an event twice
/// (a retry) changes nothing: an `Installed` for an installation that runs
/// the plugin is an update when the version changed and a repeat when it
/// did not; an `Uninstalled` for one that does not run it is a repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analytics {
    /// New installations (a reinstall after an uninstall counts again).
    pub installs: u64,
    /// Installations moved to another version.
    pub updates: u64,
    /// Uninstallations.
    pub uninstalls: u64,
    /// Installations active now, by the version they run.
    pub active_by_version: BTreeMap<String, u64>,
}

/// Where the catalog lives. Implementations must pass
/// `conformance::catalog_store`.
///
/// ```
/// use vodo_core::{InstallationId, Timestamp};
/// use vodo_marketplace::catalog::{CatalogStore, InstallEvent, MemoryCatalog, Rating};
///
/// let catalog: Box<dyn CatalogStore> = Box::new(MemoryCatalog::new());
/// let shop = InstallationId::new("shop-1");
/// catalog.record("gift-messages", "1.0.0", &shop, InstallEvent::Installed, Timestamp(0))?;
/// assert!(!catalog.used("gift-messages", &shop)?, "installed is not used yet");
/// catalog.record("gift-messages", "1.0.0", &shop, InstallEvent::Used, Timestamp(1))?;
/// assert!(catalog.used("gift-messages", &shop)?);
/// catalog.put_rating("gift-messages", &Rating {
///     installation: shop.clone(),
///     stars: 5,
///     text: "does what it says".into(),
///     at: Timestamp(2),
/// })?;
/// assert_eq!(catalog.ratings("gift-messages")?.len(), 1);
/// assert_eq!(catalog.analytics("gift-messages")?.installs, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait CatalogStore: fmt::Debug + Send + Sync {
    /// Adds or replaces a listing.
    fn put_listing(&self, listing: &Listing) -> Result<()>;
    /// A listing by plugin.
    fn listing(&self, plugin: &str) -> Result<Option<Listing>>;
    /// Every listing, by plugin.
    fn listings(&self) -> Result<Vec<Listing>>;
    /// Adds or replaces an installation's rating of a plugin.
    fn put_rating(&self, plugin: &str, rating: &Rating) -> Result<()>;
    /// A plugin's ratings, oldest first.
    fn ratings(&self, plugin: &str) -> Result<Vec<Rating>>;
    /// Records an installation event for a plugin version.
    fn record(
        &self,
        plugin: &str,
        version: &str,
        installation: &InstallationId,
        event: InstallEvent,
        at: Timestamp,
    ) -> Result<()>;
    /// Whether an installation has used a plugin.
    fn used(&self, plugin: &str, installation: &InstallationId) -> Result<bool>;
    /// A plugin's analytics.
    fn analytics(&self, plugin: &str) -> Result<Analytics>;
}

#[derive(Debug, Default)]
struct MemInner {
    listings: BTreeMap<String, Listing>,
    ratings: HashMap<String, Vec<Rating>>,
    events: HashMap<String, Vec<(String, InstallationId, InstallEvent)>>,
}

/// The catalog in memory.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    inner: Mutex<MemInner>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }
}

fn analytics_of(events: &[(String, InstallationId, InstallEvent)]) -> Analytics {
    let mut a = Analytics::default();
    let mut current: HashMap<&InstallationId, &str> = HashMap::new();
    for (version, inst, event) in events {
        match event {
            InstallEvent::Installed => match current.insert(inst, version) {
                None => a.installs += 1,
                Some(before) if before != version => a.updates += 1,
                Some(_) => {}
            },
            InstallEvent::Uninstalled => {
                if current.remove(inst).is_some() {
                    a.uninstalls += 1;
                }
            }
            InstallEvent::Used => {}
        }
    }
    for v in current.values() {
        *a.active_by_version.entry((*v).to_owned()).or_default() += 1;
    }
    a
}

impl CatalogStore for MemoryCatalog {
    fn put_listing(&self, l: &Listing) -> Result<()> {
        self.inner
            .lock()
            .listings
            .insert(l.plugin.clone(), l.clone());
        Ok(())
    }

    fn listing(&self, plugin: &str) -> Result<Option<Listing>> {
        Ok(self.inner.lock().listings.get(plugin).cloned())
    }

    fn listings(&self) -> Result<Vec<Listing>> {
        Ok(self.inner.lock().listings.values().cloned().collect())
    }

    fn put_rating(&self, plugin: &str, rating: &Rating) -> Result<()> {
        let mut inner = self.inner.lock();
        let list = inner.ratings.entry(plugin.to_owned()).or_default();
        list.retain(|r| r.installation != rating.installation);
        list.push(rating.clone());
        Ok(())
    }

    fn ratings(&self, plugin: &str) -> Result<Vec<Rating>> {
        let mut out = self
            .inner
            .lock()
            .ratings
            .get(plugin)
            .cloned()
            .unwrap_or_default();
        out.sort_by(|a, b| (a.at, a.installation.as_str()).cmp(&(b.at, b.installation.as_str())));
        Ok(out)
    }

    fn record(
        &self,
        plugin: &str,
        version: &str,
        installation: &InstallationId,
        event: InstallEvent,
        _at: Timestamp,
    ) -> Result<()> {
        let mut inner = self.inner.lock();
        let events = inner.events.entry(plugin.to_owned()).or_default();
        // "Used" is a fact, not a counter: keep one.
        let known_use = event == InstallEvent::Used
            && events
                .iter()
                .any(|(_, i, ev)| i == installation && *ev == InstallEvent::Used);
        if !known_use {
            events.push((version.to_owned(), installation.clone(), event));
        }
        Ok(())
    }

    fn used(&self, plugin: &str, installation: &InstallationId) -> Result<bool> {
        Ok(self.inner.lock().events.get(plugin).is_some_and(|e| {
            e.iter()
                .any(|(_, i, ev)| i == installation && *ev == InstallEvent::Used)
        }))
    }

    fn analytics(&self, plugin: &str) -> Result<Analytics> {
        Ok(self
            .inner
            .lock()
            .events
            .get(plugin)
            .map(|e| analytics_of(e))
            .unwrap_or_default())
    }
}

/// The catalog in SQLite.
#[derive(Debug)]
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
}

impl SqliteCatalog {
    /// Opens (or creates) the catalog at `path`; `None` for a private one in memory.
    pub fn open(path: Option<&std::path::Path>) -> Result<Self> {
        let conn = vodo_core::open_sqlite(path).map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS catalog_listings (plugin TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS catalog_ratings (
                plugin TEXT NOT NULL, installation TEXT NOT NULL, stars INTEGER NOT NULL, text TEXT NOT NULL,
                at INTEGER NOT NULL, PRIMARY KEY (plugin, installation));
             CREATE TABLE IF NOT EXISTS catalog_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT, plugin TEXT NOT NULL, version TEXT NOT NULL,
                installation TEXT NOT NULL, event TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS catalog_events_by_plugin ON catalog_events (plugin, id);",
        )
        .map_err(sql)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

fn sql(e: rusqlite::Error) -> Error {
    Error::storage("catalog store", e)
}

fn event_name(e: InstallEvent) -> &'static str {
    match e {
        InstallEvent::Installed => "installed",
        InstallEvent::Uninstalled => "uninstalled",
        InstallEvent::Used => "used",
    }
}

impl CatalogStore for SqliteCatalog {
    fn put_listing(&self, l: &Listing) -> Result<()> {
        let body = serde_json::to_string(l).map_err(|e| Error::Invalid(e.to_string()))?;
        self.conn
            .lock()
            .execute(
                "INSERT OR REPLACE INTO catalog_listings (plugin, body) VALUES (?1, ?2)",
                params![l.plugin, body],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn listing(&self, plugin: &str) -> Result<Option<Listing>> {
        let body: Option<String> = self
            .conn
            .lock()
            .query_row(
                "SELECT body FROM catalog_listings WHERE plugin = ?1",
                params![plugin],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        body.map(|b| serde_json::from_str(&b).map_err(|e| Error::Invalid(e.to_string())))
            .transpose()
    }

    fn listings(&self) -> Result<Vec<Listing>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body FROM catalog_listings ORDER BY plugin")
            .map_err(sql)?;
        let bodies: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| Error::Invalid(e.to_string())))
            .collect()
    }

    fn put_rating(&self, plugin: &str, r: &Rating) -> Result<()> {
        self.conn
            .lock()
            .execute(
                "INSERT OR REPLACE INTO catalog_ratings (plugin, installation, stars, text, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![plugin, r.installation.as_str(), r.stars, r.text, r.at.0],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn ratings(&self, plugin: &str) -> Result<Vec<Rating>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT installation, stars, text, at FROM catalog_ratings WHERE plugin = ?1 ORDER BY at, installation")
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![plugin], |r| {
                Ok(Rating {
                    installation: InstallationId::new(r.get::<_, String>(0)?),
                    stars: r.get(1)?,
                    text: r.get(2)?,
                    at: Timestamp(r.get(3)?),
                })
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        Ok(rows)
    }

    fn record(
        &self,
        plugin: &str,
        version: &str,
        installation: &InstallationId,
        event: InstallEvent,
        at: Timestamp,
    ) -> Result<()> {
        // "Used" is a fact, not a counter: keep one row, however often it is reported.
        self.conn
            .lock()
            .execute(
                "INSERT INTO catalog_events (plugin, version, installation, event, at)
                 SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE ?4 <> 'used' OR NOT EXISTS (
                    SELECT 1 FROM catalog_events WHERE plugin = ?1 AND installation = ?3 AND event = 'used')",
                params![plugin, version, installation.as_str(), event_name(event), at.0],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn used(&self, plugin: &str, installation: &InstallationId) -> Result<bool> {
        let n: i64 = self
            .conn
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM catalog_events WHERE plugin = ?1 AND installation = ?2 AND event = 'used'",
                params![plugin, installation.as_str()],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(n > 0)
    }

    fn analytics(&self, plugin: &str) -> Result<Analytics> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT version, installation, event FROM catalog_events WHERE plugin = ?1 ORDER BY id")
            .map_err(sql)?;
        let events: Vec<(String, InstallationId, InstallEvent)> = stmt
            .query_map(params![plugin], |r| {
                let ev: String = r.get(2)?;
                Ok((
                    r.get(0)?,
                    InstallationId::new(r.get::<_, String>(1)?),
                    match ev.as_str() {
                        "installed" => InstallEvent::Installed,
                        "uninstalled" => InstallEvent::Uninstalled,
                        _ => InstallEvent::Used,
                    },
                ))
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        Ok(analytics_of(&events))
    }
}

/// What to search for. Every field narrows; the default lists everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Words that must all appear in the name, summary, category or tags.
    pub text: String,
    /// Only this category.
    pub category: Option<String>,
    /// Only free plugins.
    pub free_only: bool,
    /// Only plugins costing at most this many minor units (free ones included).
    pub max_price_minor: Option<i64>,
    /// Only plugins whose ranking score is at least this.
    pub min_rating: Option<f64>,
    /// Only plugins that request none of these scope prefixes (such as `network:`).
    pub without_scopes: Vec<String>,
    /// Results per page (1 to 100; default 20).
    pub limit: usize,
    /// The cursor of the previous page.
    pub after: Option<Cursor>,
}

/// Where a page ended: the sort key of its last result.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    exact: bool,
    score: f64,
    plugin: String,
}

impl Cursor {
    /// The cursor as text, for a `next` link: `{exact}.{score bits in
    /// hex}.{plugin}`. [`parse`](Self::parse) reads it back.
    pub fn token(&self) -> String {
        format!(
            "{}.{:016x}.{}",
            u8::from(self.exact),
            self.score.to_bits(),
            self.plugin
        )
    }

    /// Reads a [`token`](Self::token) back; anything else is
    /// [`Error::Invalid`].
    pub fn parse(token: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(
                "`after` is not a cursor from a previous page: leave it out to start again".into(),
            )
        };
        let mut parts = token.splitn(3, '.');
        let exact = match parts.next() {
            Some("0") => false,
            Some("1") => true,
            _ => return Err(bad()),
        };
        let bits = parts
            .next()
            .filter(|b| b.len() == 16)
            .and_then(|b| u64::from_str_radix(b, 16).ok())
            .ok_or_else(bad)?;
        let score = f64::from_bits(bits);
        let plugin = parts
            .next()
            .filter(|p| !p.is_empty() && p.len() <= 128)
            .ok_or_else(bad)?;
        if !score.is_finite() {
            return Err(bad());
        }
        Ok(Self {
            exact,
            score,
            plugin: plugin.to_owned(),
        })
    }
}

/// A listing with its ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The listing.
    pub listing: Listing,
    /// The query is the listing's whole name or slug; such hits come first.
    pub exact: bool,
    /// The Bayesian average the ranking uses.
    pub score: f64,
    /// Number of ratings.
    pub votes: usize,
    /// Plain mean of the ratings.
    pub mean: f64,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The results, best first.
    pub hits: Vec<Hit>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The listing as the catalog stores it, or what is wrong with it.
fn checked(l: &Listing) -> Result<Listing> {
    if !is_slug(&l.plugin) {
        return Err(Error::Invalid(format!(
            "`{}` is not a plugin slug: use lowercase letters, digits and `-`",
            l.plugin
        )));
    }
    if l.name.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "`{}` needs a display name",
            l.plugin
        )));
    }
    if !l.category.split("::").all(is_slug) {
        return Err(Error::Invalid(format!(
            "`{}` is not a category: use lowercase words such as `shipping`, or `shipping::labels` under a parent",
            l.category
        )));
    }
    let mut tags: Vec<String> = Vec::with_capacity(l.tags.len());
    for t in &l.tags {
        let tag = t
            .trim()
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-");
        if tag.is_empty() {
            return Err(Error::Invalid("a tag is empty: remove it".into()));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(Error::Invalid(format!(
            "`{}` has {} tags; keep the {MAX_TAGS} that describe it best",
            l.plugin,
            tags.len()
        )));
    }
    l.pricing.validate()?;
    Ok(Listing { tags, ..l.clone() })
}

/// Arabic short vowels and other marks written over or under letters, and
/// the tatweel (a stretching stroke): they do not change the word.
fn is_arabic_mark(c: char) -> bool {
    matches!(c, '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06ED}' | '\u{0640}')
}

/// One word folded for matching: lowercase, and the Arabic letters people
/// type interchangeably mapped to one form (alef with hamza or madda to
/// alef, alef maqsura to ya, ta marbuta to ha).
fn fold(word: &str) -> String {
    word.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'آ' | 'أ' | 'إ' | 'ٱ' => 'ا',
            'ى' => 'ي',
            'ة' => 'ه',
            c => c,
        })
        .collect()
}

/// The searchable words of a text, in English, Arabic or any other script.
fn tokens(s: &str) -> Vec<String> {
    let unmarked: String = s.chars().filter(|c| !is_arabic_mark(*c)).collect();
    unmarked
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(fold)
        .collect()
}

/// The folded name and slug of a listing, which an exact query matches.
fn listing_names(l: &Listing) -> [String; 2] {
    [tokens(&l.name).join(" "), tokens(&l.plugin).join(" ")]
}

/// Files `plugin` under each key (a word or a name).
fn link(
    map: &mut BTreeMap<String, HashSet<String>>,
    keys: impl IntoIterator<Item = String>,
    plugin: &str,
) {
    for key in keys {
        map.entry(key).or_default().insert(plugin.to_owned());
    }
}

/// Takes `plugin` out from under each key, dropping keys left empty.
fn unlink(
    map: &mut BTreeMap<String, HashSet<String>>,
    keys: impl IntoIterator<Item = String>,
    plugin: &str,
) {
    for key in keys {
        if let Some(set) = map.get_mut(&key) {
            set.remove(plugin);
            if set.is_empty() {
                map.remove(&key);
            }
        }
    }
}

/// Every word of a listing that search matches.
fn listing_words(l: &Listing) -> HashSet<String> {
    let mut words: HashSet<String> = tokens(&l.name).into_iter().collect();
    words.extend(tokens(&l.summary));
    words.extend(tokens(&l.category));
    words.extend(l.tags.iter().flat_map(|t| tokens(t)));
    words.extend(tokens(&l.plugin));
    words
}

#[derive(Debug, Default)]
struct Index {
    /// word -> plugins, sorted so that a prefix is a range
    words: BTreeMap<String, HashSet<String>>,
    /// plugin -> its words (kept for the prefix check of a search)
    words_of: HashMap<String, Vec<String>>,
    /// folded name or slug -> plugins, for exact matches
    by_name: BTreeMap<String, HashSet<String>>,
    listings: HashMap<String, Listing>,
    /// plugin -> (sum of stars, votes)
    votes: HashMap<String, (u64, u64)>,
}

/// The catalog service: a store plus an in-memory search index rebuilt
/// from it on start and kept current by this type's writes.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<dyn CatalogStore>,
    index: RwLock<Index>,
}

impl Catalog {
    /// A catalog over `store`, indexing what it holds.
    pub fn new(store: Arc<dyn CatalogStore>) -> Result<Self> {
        let catalog = Self {
            store,
            index: RwLock::new(Index::default()),
        };
        for l in catalog.store.listings()? {
            let ratings = catalog.store.ratings(&l.plugin)?;
            catalog.index_listing(&l);
            let mut idx = catalog.index.write();
            let sum: u64 = ratings.iter().map(|r| u64::from(r.stars)).sum();
            idx.votes
                .insert(l.plugin.clone(), (sum, ratings.len() as u64));
        }
        Ok(catalog)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CatalogStore> {
        &self.store
    }

    fn index_listing(&self, l: &Listing) {
        let mut guard = self.index.write();
        let idx = &mut *guard;
        let plugin = &l.plugin;
        if let Some(old) = idx.listings.remove(plugin) {
            let old_words = idx.words_of.remove(plugin).unwrap_or_default();
            unlink(&mut idx.words, old_words, plugin);
            unlink(&mut idx.by_name, listing_names(&old), plugin);
        }
        let words: Vec<String> = listing_words(l).into_iter().collect();
        link(&mut idx.words, words.iter().cloned(), plugin);
        idx.words_of.insert(plugin.clone(), words);
        link(&mut idx.by_name, listing_names(l), plugin);
        idx.listings.insert(plugin.clone(), l.clone());
    }

    /// Adds or replaces a listing.
    ///
    /// The listing is checked (a slug, a name, a well-formed category, at
    /// most [`MAX_TAGS`] tags, a valid price) and stored with its tags
    /// normalized.
    pub fn publish(&self, listing: &Listing) -> Result<()> {
        let listing = checked(listing)?;
        self.store.put_listing(&listing)?;
        self.index_listing(&listing);
        Ok(())
    }

    /// Records a rating (and optional review) from an installation. Only an
    /// installation that has used the plugin may rate it; rating again
    /// replaces its earlier rating.
    pub fn rate(
        &self,
        plugin: &str,
        installation: &InstallationId,
        stars: u8,
        text: &str,
        at: Timestamp,
    ) -> Result<()> {
        if !(1..=5).contains(&stars) {
            return Err(Error::Invalid("a rating is 1 to 5 stars".into()));
        }
        if self.store.listing(plugin)?.is_none() {
            return Err(Error::NotFound(format!(
                "no plugin `{plugin}` in the catalog"
            )));
        }
        if !self.store.used(plugin, installation)? {
            return Err(Error::Invalid(format!(
                "installation `{installation}` has not used `{plugin}`: only installations that used a plugin may review it"
            )));
        }
        let previous = self
            .store
            .ratings(plugin)?
            .into_iter()
            .find(|r| &r.installation == installation);
        self.store.put_rating(
            plugin,
            &Rating {
                installation: installation.clone(),
                stars,
                text: text.trim().to_owned(),
                at,
            },
        )?;
        let mut idx = self.index.write();
        let (old_stars, old_vote) = previous.map_or((0, 0), |r| (u64::from(r.stars), 1));
        let entry = idx.votes.entry(plugin.to_owned()).or_default();
        entry.0 = entry.0 - old_stars + u64::from(stars);
        entry.1 = entry.1 - old_vote + 1;
        Ok(())
    }

    fn score(idx: &Index, plugin: &str) -> (f64, usize, f64) {
        let (sum, n) = idx.votes.get(plugin).copied().unwrap_or((0, 0));
        let mean = if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        (
            (PRIOR_WEIGHT * PRIOR_MEAN + sum as f64) / (PRIOR_WEIGHT + n as f64),
            n as usize,
            mean,
        )
    }

    /// Searches: the listings that pass every filter, ranked with exact
    /// name or slug matches first, then by score, then by plugin id.
    pub fn search(&self, q: &Query) -> Page {
        let idx = self.index.read();
        let words = tokens(&q.text);
        let candidates: Vec<&String> = match words.split_last() {
            None => idx.listings.keys().collect(),
            Some((last, whole)) => {
                // Every word but the last must match a whole word; the last
                // may be the start of one (the user may still be typing).
                let mut sets: Vec<&HashSet<String>> = Vec::with_capacity(whole.len());
                for w in whole {
                    match idx.words.get(w) {
                        Some(s) => sets.push(s),
                        None => {
                            return Page {
                                hits: Vec::new(),
                                next: None,
                            };
                        }
                    }
                }
                let range: Vec<&HashSet<String>> = idx
                    .words
                    .range::<str, _>((Bound::Included(last.as_str()), Bound::Unbounded))
                    .take_while(|(w, _)| w.starts_with(last.as_str()))
                    .map(|(_, plugins)| plugins)
                    .collect();
                if range.is_empty() {
                    return Page {
                        hits: Vec::new(),
                        next: None,
                    };
                }
                if let [only] = range[..] {
                    // One word starts so: an exact match like the others.
                    sets.push(only);
                }
                sets.sort_by_key(|s| s.len());
                let partial = range.len() > 1;
                let total: usize = range.iter().map(|s| s.len()).sum();
                // Whether `p` has a word the last query word starts.
                let starts = |p: &String| {
                    if range.len() <= 8 {
                        range.iter().any(|s| s.contains(p))
                    } else {
                        idx.words_of
                            .get(p)
                            .is_some_and(|ws| ws.iter().any(|w| w.starts_with(last.as_str())))
                    }
                };
                match sets.first() {
                    // Walk the fewest candidates and test the rest on each.
                    Some(smallest) if !partial || smallest.len() <= total => smallest
                        .iter()
                        .filter(|p| sets[1..].iter().all(|s| s.contains(*p)))
                        .filter(|p| !partial || starts(p))
                        .collect(),
                    // The words the last one starts hold fewer plugins: gather those.
                    _ => {
                        let mut started: HashSet<&String> = HashSet::with_capacity(total);
                        for plugins in &range {
                            started.extend(plugins.iter());
                        }
                        started
                            .into_iter()
                            .filter(|p| sets.iter().all(|s| s.contains(*p)))
                            .collect()
                    }
                }
            }
        };
        // The whole query, folded, for exact name and slug matches.
        let exact_matches = (!words.is_empty())
            .then(|| idx.by_name.get(&words.join(" ")))
            .flatten();
        let exact = |plugin: &String| exact_matches.is_some_and(|set| set.contains(plugin));
        // Rank references first; clone only the page.
        let mut ranked: Vec<(bool, i64, &Listing, usize, f64)> = candidates
            .into_iter()
            .filter_map(|p| idx.listings.get(p))
            .filter(|l| {
                q.category.as_ref().is_none_or(|c| {
                    l.category
                        .strip_prefix(c.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
                })
            })
            .filter(|l| !q.free_only || l.pricing == Pricing::Free)
            .filter(|l| {
                q.max_price_minor
                    .is_none_or(|max| l.pricing.price().is_none_or(|p| p.minor <= max))
            })
            .filter(|l| {
                !l.scopes
                    .iter()
                    .any(|s| q.without_scopes.iter().any(|w| s.starts_with(w.as_str())))
            })
            .map(|l| {
                let (score, votes, mean) = Self::score(&idx, &l.plugin);
                (exact(&l.plugin), ordered(score), l, votes, mean)
            })
            .filter(|(_, score, ..)| q.min_rating.is_none_or(|m| *score >= ordered(m)))
            .collect();
        // Exact name or slug matches first, then best score, then plugin id:
        // a total order, so pages are stable.
        let cmp = |a: (bool, i64, &str), b: (bool, i64, &str)| {
            b.0.cmp(&a.0)
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.2.cmp(b.2))
        };
        ranked.sort_unstable_by(|a, b| cmp((a.0, a.1, &a.2.plugin), (b.0, b.1, &b.2.plugin)));
        let start = match &q.after {
            Some(after) => {
                let k = (after.exact, ordered(after.score), after.plugin.as_str());
                ranked.partition_point(|r| {
                    cmp((r.0, r.1, &r.2.plugin), k) != std::cmp::Ordering::Greater
                })
            }
            None => 0,
        };
        let limit = if q.limit == 0 { 20 } else { q.limit.min(100) };
        let page = &ranked[start.min(ranked.len())..];
        let hits: Vec<Hit> = page
            .iter()
            .take(limit)
            .map(|(exact, score, l, votes, mean)| Hit {
                listing: (*l).clone(),
                exact: *exact,
                score: *score as f64 / 1e9,
                votes: *votes,
                mean: *mean,
            })
            .collect();
        let next = (page.len() > limit).then(|| {
            let last = &hits[limit - 1];
            Cursor {
                exact: last.exact,
                score: last.score,
                plugin: last.listing.plugin.clone(),
            }
        });
        Page { hits, next }
    }
}

/// An `f64` score as a totally ordered integer key (scores are finite, 0 to 5).
fn ordered(score: f64) -> i64 {
    (score * 1e9).round() as i64
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    #[test]
    fn cursors_read_back_from_their_tokens_and_nothing_else_parses() {
        let c = Cursor {
            exact: true,
            score: 4.125,
            plugin: "order.notes-pro".into(),
        };
        assert_eq!(Cursor::parse(&c.token()).ok(), Some(c));
        for bad in [
            "",
            "2.0000000000000000.x",
            "1.zz.x",
            "1.0000000000000000.",
            "1.7ff8000000000000.x",
            "1.3ff0000000000000",
        ] {
            assert!(
                matches!(Cursor::parse(bad), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_sqlite_catalogs_conform() {
        crate::conformance::catalog_store(&MemoryCatalog::new());
        crate::conformance::catalog_store(&SqliteCatalog::open(None).unwrap());
    }
}
