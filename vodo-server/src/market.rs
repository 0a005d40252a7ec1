//! The marketplace as the platform runs it: partners submit packages, the
//! automated review runs each in a sandbox of its own (a throwaway host, so
//! that trials never touch the platform's grants or audit trail), reviewers
//! approve or reject with feedback, and an approved package is published to
//! the platform's catalog, where merchants activate it.

use std::sync::Arc;

use vodo_core::{Host, InstallationId, Manifest, SecretKey, Timestamp};
use vodo_marketplace::catalog::{InstallEvent, Listing, Page, Query, Rating};
use vodo_marketplace::package::Package;
use vodo_marketplace::pricing::Pricing;
use vodo_marketplace::review::Policy;
use vodo_marketplace::submissions::{Desk, SqliteSubmissions, SubmissionFilter};
use vodo_marketplace::workflow::{Actor, Role as MarketRole, State, Submission};
use vodo_sandbox::{MemoryServices, Sandbox, SandboxConfig};

use crate::accounts::{Role, Session};
use crate::error::ServerError;
use crate::platform::Platform;

/// The most plugins one page of the catalog holds.
pub const MAX_CATALOG_PAGE: usize = 100;

/// The longest review, in bytes.
pub const MAX_REVIEW: usize = 4000;

/// The actor that publishes approved packages on the reviewers' behalf.
pub const PUBLISHER: &str = "platform";

impl From<vodo_marketplace::Error> for ServerError {
    fn from(e: vodo_marketplace::Error) -> Self {
        use vodo_marketplace::Error as E;
        match e {
            E::NotFound(what) => ServerError::NotFound { what },
            E::Invalid(detail) | E::Conflict(detail) => ServerError::Invalid { detail },
            E::Workflow(w) => ServerError::Invalid {
                detail: w.to_string(),
            },
            E::Index(e) => ServerError::Index(e),
            other => ServerError::Store {
                detail: other.to_string(),
            },
        }
    }
}

impl From<vodo_marketplace::package::PackageError> for ServerError {
    fn from(e: vodo_marketplace::package::PackageError) -> Self {
        ServerError::Invalid {
            detail: e.to_string(),
        }
    }
}

/// The desk, with the sandbox its trials run in.
pub(crate) fn open_desk(config: &crate::PlatformConfig) -> Result<Desk, ServerError> {
    let trials = Host::in_memory(&SecretKey::generate()?);
    let sandbox = Arc::new(Sandbox::new(
        SandboxConfig {
            storage_root: Some(config.data.join("market-trials")),
            cache_dir: config.sandbox.cache_dir.clone(),
            max_concurrent: 8,
            ..SandboxConfig::default()
        },
        &trials,
        Arc::new(MemoryServices::new()),
    )?);
    let store = SqliteSubmissions::open(Some(&config.data.join("market.db")))?;
    Ok(Desk::new(Arc::new(store), Policy::default(), sandbox))
}

fn developer(s: &Session) -> Result<Actor, ServerError> {
    match s.role {
        Role::Partner | Role::Admin => Ok(Actor {
            id: s.email.clone(),
            role: MarketRole::Developer,
        }),
        _ => Err(ServerError::Forbidden {
            detail: format!(
                "submitting plugins is for partners; {} is a {}",
                s.email, s.role
            ),
        }),
    }
}

fn reviewer(s: &Session) -> Result<Actor, ServerError> {
    match s.role {
        Role::Reviewer | Role::Admin => Ok(Actor {
            id: s.email.clone(),
            role: MarketRole::Reviewer,
        }),
        _ => Err(ServerError::Forbidden {
            detail: format!(
                "reviewing submissions is for reviewers; {} is a {}",
                s.email, s.role
            ),
        }),
    }
}

impl Platform {
    /// The largest package a partner may upload.
    pub fn max_package(&self) -> u64 {
        Policy::default().max_package_bytes
    }

    /// A partner submits `package`: a draft, then the automated review,
    /// whose report comes back with the submission (one with errors is
    /// rejected at once, its errors as the feedback).
    pub fn submit(&self, who: &Session, package: &[u8]) -> Result<Submission, ServerError> {
        let dev = developer(who)?;
        let now = Timestamp::now();
        let draft = self.desk.draft(&dev, package, now)?;
        Ok(self.desk.submit(&draft.id, &dev, now)?)
    }

    /// Submissions `who` may see: a reviewer's or an admin's, all of them
    /// (in `state` if given); a partner's, their own.
    pub fn submissions(
        &self,
        who: &Session,
        state: Option<State>,
    ) -> Result<Vec<Submission>, ServerError> {
        let owner = match who.role {
            Role::Reviewer | Role::Admin => None,
            Role::Partner => Some(who.email.clone()),
            Role::Merchant(_) => {
                return Err(ServerError::Forbidden {
                    detail: format!(
                        "submissions are for partners and reviewers; {} is a {}",
                        who.email, who.role
                    ),
                });
            }
        };
        Ok(self.desk.list(&SubmissionFilter {
            state,
            plugin: None,
            owner,
        })?)
    }

    /// One submission, if `who` may see it.
    pub fn submission(&self, who: &Session, id: &str) -> Result<Submission, ServerError> {
        let s = self.desk.get(id)?;
        match who.role {
            Role::Reviewer | Role::Admin => Ok(s),
            Role::Partner if s.owner == who.email => Ok(s),
            _ => Err(ServerError::not_found(format!("the submission `{id}`"))),
        }
    }

    /// A reviewer's decision on a submitted package. Approval takes it
    /// through review and testing, publishes it, and adds it to the catalog;
    /// rejection sends it back with `feedback`, which is then required.
    pub fn decide(
        &self,
        who: &Session,
        id: &str,
        approve: bool,
        feedback: &str,
    ) -> Result<Submission, ServerError> {
        let reviewer = reviewer(who)?;
        let feedback = feedback.trim();
        if !approve && feedback.is_empty() {
            return Err(ServerError::invalid(
                "a rejection needs feedback that tells the partner what to change",
            ));
        }
        let now = Timestamp::now();
        let s = self.desk.get(id)?;
        if s.state != State::Submitted {
            return Err(ServerError::invalid(format!(
                "the submission `{id}` is {:?}, not waiting for review",
                s.state
            )));
        }
        self.desk
            .transition(id, State::InReview, &reviewer, feedback, now)?;
        if !approve {
            return Ok(self
                .desk
                .transition(id, State::Rejected, &reviewer, feedback, now)?);
        }
        self.desk
            .transition(id, State::Testing, &reviewer, feedback, now)?;
        self.desk
            .transition(id, State::Approved, &reviewer, feedback, now)?;
        let bytes = self.desk.package(id)?;
        let package = Package::parse(&bytes, self.max_package())?;
        Manifest::parse(&package.manifest)?;
        let published = self.desk.transition(
            id,
            State::Published,
            &Actor {
                id: PUBLISHER.into(),
                role: MarketRole::Admin,
            },
            "",
            now,
        )?;
        self.publish_package(&bytes)?;
        Ok(published)
    }

    /// Lists `m` in the catalog, unless a newer version is listed already.
    /// A pre-release (a beta) is listed only while no stable release is.
    pub(crate) fn list(&self, m: &Manifest) -> Result<(), ServerError> {
        if let Some(current) = self.catalog.store().listing(m.slug.as_str())?
            && semver::Version::parse(&current.version).is_ok_and(|v| {
                match (v.pre.is_empty(), m.version.pre.is_empty()) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => v > m.version,
                }
            })
        {
            return Ok(());
        }
        let listing = Listing {
            plugin: m.slug.to_string(),
            name: m.name.clone(),
            summary: m.description.clone().unwrap_or_default(),
            category: "general".into(),
            tags: Vec::new(),
            pricing: Pricing::Free,
            scopes: m.scopes().iter().map(ToString::to_string).collect(),
            version: m.version.to_string(),
        };
        Ok(self.catalog.publish(&listing)?)
    }

    /// Records an installation event in the catalog's analytics; a failure
    /// is logged (the install itself has happened).
    pub(crate) fn catalog_event(
        &self,
        slug: &str,
        version: &str,
        installation: &InstallationId,
        event: InstallEvent,
    ) {
        if let Err(e) =
            self.catalog
                .store()
                .record(slug, version, installation, event, Timestamp::now())
        {
            tracing::error!(slug, %installation, error = %e, "the catalog did not record an install event");
        }
    }

    /// A page of the catalog: listings matching `query`'s words and
    /// filters, exact name or slug matches first, then by rating.
    pub fn catalog(&self, query: &Query) -> Result<Page, ServerError> {
        if !(1..=MAX_CATALOG_PAGE).contains(&query.limit) {
            return Err(ServerError::invalid(format!(
                "a page holds 1 to {MAX_CATALOG_PAGE} plugins"
            )));
        }
        Ok(self.catalog.search(query))
    }

    /// A plugin's listing and its ratings, newest first.
    pub fn listing(&self, slug: &str) -> Result<(Listing, Vec<Rating>), ServerError> {
        let listing =
            self.catalog.store().listing(slug)?.ok_or_else(|| {
                ServerError::not_found(format!("the plugin `{slug}` in the catalog"))
            })?;
        let mut ratings = self.catalog.store().ratings(slug)?;
        ratings.reverse();
        Ok((listing, ratings))
    }

    /// A merchant rates (and reviews) a plugin their installation has
    /// used; rating again replaces the earlier rating.
    pub fn rate(
        &self,
        who: &Session,
        slug: &str,
        stars: u8,
        text: &str,
    ) -> Result<(), ServerError> {
        let Role::Merchant(installation) = &who.role else {
            return Err(ServerError::Forbidden {
                detail: format!(
                    "ratings are written by merchants for their installation; {} is a {}",
                    who.email, who.role
                ),
            });
        };
        if text.len() > MAX_REVIEW {
            return Err(ServerError::invalid(format!(
                "a review is at most {MAX_REVIEW} bytes"
            )));
        }
        // A plugin that has run in the installation has been used: the
        // first rating records it, so calls need not write to the catalog.
        let store = self.catalog.store();
        if !store.used(slug, installation)?
            && let Some(loaded) = self
                .sandbox
                .get(installation, &vodo_core::PluginId::new(slug))
            && loaded.usage().calls > 0
        {
            store.record(
                slug,
                &loaded.manifest.version.to_string(),
                installation,
                InstallEvent::Used,
                Timestamp::now(),
            )?;
        }
        Ok(self
            .catalog
            .rate(slug, installation, stars, text, Timestamp::now())?)
    }
}
