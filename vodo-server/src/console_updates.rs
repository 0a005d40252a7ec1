//! The console's updates section of a plugin's page: the channel, policy
//! and pin; the releases in the signed index with upgrade and roll-back
//! buttons; the pending update with what it asks for in plain language; a
//! held release and why; a watched update; and the updater's recent steps
//! from the audit trail. Admins can run the updater from here.

#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use vodo_core::audit::{AuditAction, AuditFilter, AuditKind, LifecycleChange};
use vodo_core::{InstallationId, PluginId};
use vodo_marketplace::installer::{Channel, UpdatePolicy};

use crate::accounts::{Role, Session};
use crate::api::parse_scopes;
use crate::console::{ConsoleSession, error_page, form_urlencoded, ids, submitted, utc};
use crate::updates::UpdateOutcome;
use crate::updates_api::{channel_str, policy_str};
use crate::{Platform, Problem};

type Shared = Arc<Platform>;

/// How many of the plugin's recent lifecycle steps the section lists.
const STEPS: usize = 8;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/admin/installations/{installation}/plugins/{plugin}/updates/settings",
            post(settings),
        )
        .route(
            "/admin/installations/{installation}/plugins/{plugin}/updates/upgrade",
            post(upgrade),
        )
        .route(
            "/admin/installations/{installation}/plugins/{plugin}/updates/rollback",
            post(rollback),
        )
        .route(
            "/admin/installations/{installation}/plugins/{plugin}/updates/run",
            post(run),
        )
}

fn change_label(c: LifecycleChange) -> &'static str {
    match c {
        LifecycleChange::Installed => "installed",
        LifecycleChange::Granted => "grant changed",
        LifecycleChange::Enabled => "enabled",
        LifecycleChange::Disabled => "disabled",
        LifecycleChange::Upgraded => "upgraded",
        LifecycleChange::UpgradeRefused => "upgrade refused",
        LifecycleChange::Uninstalled => "uninstalled",
        LifecycleChange::UpdateHeld => "update held",
        LifecycleChange::RolledBack => "rolled back",
    }
}

/// The updates section of the plugin page of `pl` in `i`.
pub(crate) fn section(p: &Platform, s: &Session, i: &InstallationId, pl: &PluginId) -> Markup {
    let v = match p.updates(i, pl) {
        Ok(v) => v,
        Err(e) => {
            return html! {
                h2 { "Updates" }
                div.card { p.muted { "Updates cannot be shown: " (e.problem().detail) } }
            };
        }
    };
    let steps: Vec<_> = p
        .audit(&AuditFilter {
            installation: Some(i.clone()),
            plugin: Some(pl.clone()),
            kinds: vec![AuditKind::Lifecycle],
            ..AuditFilter::default()
        })
        .unwrap_or_default()
        .into_iter()
        .rev()
        .take(STEPS)
        .collect();
    let url = format!("/admin/installations/{i}/plugins/{pl}/updates");
    let held = v.settings.held.as_ref().map(|h| h.version.clone());
    html! {
        h2 { "Updates" }
        div.card #updates {
            p {
                "Running " strong #running-version { (v.current) }
                " · channel " strong { (channel_str(v.settings.channel)) }
                " · policy " strong { (policy_str(v.settings.policy)) }
                @if v.settings.pinned { " · " span.badge.degraded #pinned { "pinned" } }
            }
            @if let Some(h) = &v.settings.held {
                p #held { span.badge.unhealthy { "held" } " " strong { (h.version) } ": " (h.reason) }
            }
            @if let Some(w) = &v.settings.watch {
                p #watch.muted { "Installed by the updater at " (utc(w.since)) " UTC; until " (utc(w.until))
                    " UTC it goes back to " (w.previous) " if its circuit opens." }
            }
            @if let Some(next) = &v.pending {
                div #pending {
                    p { "Update available: " strong { (next) } }
                    @if !v.pending_consent.is_empty() {
                        p { "It also asks to:" }
                        ul.scopes #pending-asks { @for sc in &v.pending_consent { li { (sc.describe()) " " code { (sc) } } } }
                    }
                    form.inline method="post" action={ (url) "/upgrade" } {
                        input type="hidden" name="csrf" value=(s.csrf);
                        input type="hidden" name="version" value=(next);
                        input type="hidden" name="consent" value=(v.pending_consent.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
                        button #upgrade type="submit" {
                            @if v.pending_consent.is_empty() { "Upgrade to " (next) } @else { "Agree and upgrade to " (next) }
                        }
                    }
                }
            }
            form.row method="post" action={ (url) "/settings" } {
                input type="hidden" name="csrf" value=(s.csrf);
                label for="channel" { "Channel " }
                select #channel name="channel" {
                    @for c in [Channel::Stable, Channel::Beta] {
                        option value=(channel_str(c)) selected[c == v.settings.channel] { (channel_str(c)) }
                    }
                }
                " "
                label for="policy" { "Automatic updates " }
                select #policy name="policy" {
                    @for (pol, text) in [(UpdatePolicy::None, "none"), (UpdatePolicy::Patch, "patch releases"), (UpdatePolicy::Minor, "minor and patch releases")] {
                        option value=(policy_str(pol)) selected[pol == v.settings.policy] { (text) }
                    }
                }
                " "
                label { input #pin type="checkbox" name="pinned" value="on" checked[v.settings.pinned]; " pinned" }
                " "
                button.plain #save-updates type="submit" { "Save" }
            }
            table #releases {
                tr { th { "Release" } th { "Channel" } th { "State" } th {} }
                @for r in v.releases.iter().rev() {
                    tr.release data-version=(r.version) {
                        td { code { (r.version) } }
                        td { (r.channel) }
                        td {
                            @if r.version == v.current { span.badge.healthy { "running" } }
                            @else if r.yanked { span.badge.unhealthy { "yanked" } }
                            @else if held.as_deref() == Some(r.version.to_string().as_str()) { span.badge.degraded { "held" } }
                        }
                        td {
                            @if !r.yanked && r.version < v.current {
                                form.inline method="post" action={ (url) "/rollback" } {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    input type="hidden" name="version" value=(r.version);
                                    button.plain.rollback type="submit" { "Roll back to " (r.version) }
                                }
                            } @else if !r.yanked && r.version > v.current && v.pending.as_ref() != Some(&r.version) {
                                form.inline method="post" action={ (url) "/upgrade" } {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    input type="hidden" name="version" value=(r.version);
                                    button.plain.upgrade-to type="submit" { "Upgrade to " (r.version) }
                                }
                            }
                        }
                    }
                }
            }
            @if s.role == Role::Admin {
                form.inline method="post" action={ (url) "/run" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.plain #run-updates type="submit" { "Run the updater now" }
                }
            }
            @if !steps.is_empty() {
                p { strong { "Recent steps" } }
                ul #update-steps {
                    @for r in &steps {
                        @if let AuditAction::Lifecycle { change, detail } = &r.event.action {
                            li { span.muted { (utc(r.event.at)) " UTC " } strong { (change_label(*change)) } " " (detail) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    channel: Channel,
    policy: UpdatePolicy,
    #[serde(default)]
    pinned: Option<String>,
}

#[derive(Deserialize)]
struct VersionForm {
    csrf: String,
    version: String,
    #[serde(default)]
    consent: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

fn back(i: &InstallationId, pl: &PluginId, msg: &str) -> Response {
    let mut url = format!("/admin/installations/{i}/plugins/{pl}?flash=");
    url.extend(form_urlencoded(msg));
    Redirect::to(&url).into_response()
}

fn failed(
    p: &Platform,
    s: &Session,
    i: &InstallationId,
    pl: &PluginId,
    e: &crate::ServerError,
) -> Response {
    let problem = e.problem();
    crate::console::render_plugin(p, s, i, pl, Some(&problem.detail), None, problem.status)
}

fn version(s: &Session, text: &str) -> Result<semver::Version, Response> {
    semver::Version::parse(text).map_err(|e| {
        error_page(
            Some(s),
            &Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_version",
                format!("`{text}` is not a version like 1.2.3: {e}"),
            ),
        )
    })
}

async fn settings(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
    f: Result<Form<SettingsForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match p.set_update_settings(&i, &pl, f.channel, f.policy, f.pinned.is_some()) {
        Ok(u) => back(
            &i,
            &pl,
            &format!(
                "{pl} follows the {} channel with {} updates{}.",
                channel_str(u.channel),
                policy_str(u.policy),
                if u.pinned { ", pinned" } else { "" }
            ),
        ),
        Err(e) => failed(&p, &s, &i, &pl, &e),
    }
}

async fn upgrade(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
    f: Result<Form<VersionForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let to = match version(&s, &f.version) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let consent: Vec<String> = f.consent.split_whitespace().map(str::to_owned).collect();
    let agreed = match parse_scopes(&consent) {
        Ok(a) => a,
        Err(problem) => return error_page(Some(&s), &problem),
    };
    let (i2, pl2, by, to2) = (i.clone(), pl.clone(), s.email.clone(), to.clone());
    match p
        .blocking(move |p| p.upgrade_to(&i2, &pl2, &to2, &agreed, &by))
        .await
        .and_then(|r| r)
    {
        Ok(()) => back(&i, &pl, &format!("{pl} now runs {to}.")),
        Err(e) => failed(&p, &s, &i, &pl, &e),
    }
}

async fn rollback(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
    f: Result<Form<VersionForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let to = match version(&s, &f.version) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (i2, pl2, by, to2) = (i.clone(), pl.clone(), s.email.clone(), to.clone());
    match p
        .blocking(move |p| p.rollback(&i2, &pl2, &to2, &by))
        .await
        .and_then(|r| r)
    {
        Ok(()) => back(
            &i,
            &pl,
            &format!(
                "{pl} was rolled back to {to} and pinned there: automatic updates are paused until you unpin it."
            ),
        ),
        Err(e) => failed(&p, &s, &i, &pl, &e),
    }
}

async fn run(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(r) = submitted(&s, f, |f| &f.csrf) {
        return r;
    }
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if s.role != Role::Admin {
        return error_page(
            Some(&s),
            &Problem::new(
                StatusCode::FORBIDDEN,
                "role",
                format!(
                    "running the updater is for admins; {} is a {}",
                    s.email, s.role
                ),
            ),
        );
    }
    match p.blocking(|p| p.run_updates()).await.and_then(|r| r) {
        Ok(report) if report.is_empty() => back(&i, &pl, "The updater ran: nothing to do."),
        Ok(report) => {
            let lines: Vec<String> = report
                .iter()
                .map(|r| {
                    let what = match &r.outcome {
                        UpdateOutcome::Updated { from, to } => format!("updated {from} -> {to}"),
                        UpdateOutcome::Held { version, reason } => {
                            format!("held {version}: {reason}")
                        }
                        UpdateOutcome::RolledBack { from, to, .. } => {
                            format!("rolled back {from} -> {to}")
                        }
                    };
                    format!("{} in {}: {what}", r.plugin, r.installation)
                })
                .collect();
            back(&i, &pl, &format!("The updater ran: {}.", lines.join("; ")))
        }
        Err(e) => failed(&p, &s, &i, &pl, &e),
    }
}
