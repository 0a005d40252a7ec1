//! The JSON API of updates and distribution: a plugin's channel, policy and
//! pin, upgrades and rollbacks through the signed index, yanking a release,
//! running the updater, and the signed index's files under `/index/`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vodo_marketplace::installer::{Channel, UpdatePolicy};

use crate::accounts::Role;
use crate::api::{ProblemDoc, ids, parse_scopes, view_json};
use crate::updates::{UpdateOutcome, UpdateReport, UpdateSettings, UpdatesView};
use crate::web::{ApiSession, JsonBody, manages};
use crate::{Platform, Problem};

type Shared = Arc<Platform>;
type ApiResult = Result<Response, Problem>;

/// Adds the routes of this module to `router`.
pub(crate) fn add(router: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    router
        .routes(routes!(updates, set_updates))
        .routes(routes!(upgrade))
        .routes(routes!(rollback))
        .routes(routes!(yank))
        .routes(routes!(run_updates))
        .routes(routes!(index_file))
        .routes(routes!(index_package))
}

pub(crate) fn channel_str(c: Channel) -> &'static str {
    match c {
        Channel::Stable => "stable",
        Channel::Beta => "beta",
    }
}

pub(crate) fn policy_str(p: UpdatePolicy) -> &'static str {
    match p {
        UpdatePolicy::None => "none",
        UpdatePolicy::Patch => "patch",
        UpdatePolicy::Minor => "minor",
    }
}

fn settings_json(s: &UpdateSettings) -> Value {
    json!({
        "channel": channel_str(s.channel),
        "policy": policy_str(s.policy),
        "pinned": s.pinned,
        "held": s.held.as_ref().map(|h| json!({
            "version": h.version, "reason": h.reason, "at": h.at.as_millis(),
        })),
        "watch": s.watch.as_ref().map(|w| json!({
            "previous": w.previous, "since": w.since.as_millis(), "until": w.until.as_millis(),
        })),
    })
}

fn view(v: &UpdatesView) -> Value {
    let mut out = settings_json(&v.settings);
    out["current"] = v.current.to_string().into();
    out["releases"] = v
        .releases
        .iter()
        .map(|r| json!({ "version": r.version.to_string(), "channel": r.channel, "yanked": r.yanked }))
        .collect::<Vec<_>>()
        .into();
    out["pending"] = v.pending.as_ref().map(ToString::to_string).into();
    out["pending_consent"] = crate::api::scope_list(&v.pending_consent);
    out
}

fn report_json(r: &UpdateReport) -> Value {
    let mut v = match &r.outcome {
        UpdateOutcome::Updated { from, to } => {
            json!({ "outcome": "updated", "from": from, "to": to })
        }
        UpdateOutcome::Held { version, reason } => {
            json!({ "outcome": "held", "version": version, "reason": reason })
        }
        UpdateOutcome::RolledBack { from, to, reason } => {
            json!({ "outcome": "rolled_back", "from": from, "to": to, "reason": reason })
        }
    };
    v["installation"] = r.installation.as_str().into();
    v["plugin"] = r.plugin.as_str().into();
    v
}

fn version(text: &str) -> Result<semver::Version, Problem> {
    semver::Version::parse(text).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_version",
            format!("`{text}` is not a version like 1.2.3 or 1.3.0-beta.1: {e}"),
        )
    })
}

/// A plugin's updates: its channel, policy and pin, the releases in the
/// signed index, and what the updater would install next.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins/{plugin}/updates", tag = "updates",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "Settings, the running version, every release (beta ones too), the pending update and what it asks for beyond the grant, a held release and why, a watched update", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, or not its role", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Not installed there", body = ProblemDoc, content_type = "application/problem+json")))]
async fn updates(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let v = p
        .blocking(move |p| p.updates(&i, &pl))
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    Ok(Json(view(&v)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    /// `stable`, or `beta` (beta and stable releases).
    #[schema(value_type = String)]
    channel: Channel,
    /// `none` (only when asked), `patch` (1.2.3 to 1.2.4) or `minor` (1.2.3 to 1.3.0, never a new major).
    #[schema(value_type = String)]
    policy: UpdatePolicy,
    /// No automatic updates. Unpinning also forgets a held release.
    pinned: bool,
}

/// Set a plugin's channel, update policy and pin.
#[utoipa::path(put, path = "/v1/installations/{installation}/plugins/{plugin}/updates", tag = "updates",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    request_body = SettingsBody,
    responses((status = 200, description = "The settings now", body = Object),
        (status = 400, description = "A body that is not these settings (an unknown channel or policy, a field too many)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Not installed there", body = ProblemDoc, content_type = "application/problem+json")))]
async fn set_updates(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    JsonBody(body): JsonBody<SettingsBody>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let settings = p
        .set_update_settings(&i, &pl, body.channel, body.policy, body.pinned)
        .map_err(|e| e.problem())?;
    Ok(Json(settings_json(&settings)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    /// A later release in the signed index, beta or stable.
    version: String,
    /// Exactly what the release asks for beyond the current grant (the
    /// updates view's `pending_consent`, or the consent screen's `added`); empty if nothing.
    #[serde(default)]
    consent: Vec<String>,
}

/// Upgrade a plugin to a chosen later release, through the signed index.
/// A release that asks for nothing new answers its health probe first; the
/// running version stays if it fails.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/upgrade", tag = "updates",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    request_body = UpgradeBody,
    responses((status = 200, description = "Upgraded: the plugin now", body = Object),
        (status = 400, description = "Not a version, or a malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Not installed there, or no such release", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not later than the running version, yanked, a consent that is not what it asks for, or a release that failed its health probe", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The signed index refused the package (it does not match its signed hash)", body = ProblemDoc, content_type = "application/problem+json")))]
async fn upgrade(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpgradeBody>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let to = version(&body.version)?;
    let agreed = parse_scopes(&body.consent)?;
    let (i2, pl2) = (i.clone(), pl.clone());
    p.blocking(move |p| p.upgrade_to(&i2, &pl2, &to, &agreed, &s.email))
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    let v = p.plugin(&i, &pl).map_err(|e| e.problem())?;
    Ok(Json(view_json(&v)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// An earlier release the signed index lists and has not yanked.
    version: String,
}

/// Roll a plugin back to an earlier release and pin it there.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/rollback", tag = "updates",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    request_body = RollbackBody,
    responses((status = 200, description = "Rolled back and pinned: the plugin now", body = Object),
        (status = 400, description = "Not a version, or a malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Not installed there, or no such release", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not earlier than the running version, yanked, or it failed its health probe", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The signed index refused the package", body = ProblemDoc, content_type = "application/problem+json")))]
async fn rollback(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    JsonBody(body): JsonBody<RollbackBody>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let to = version(&body.version)?;
    let (i2, pl2) = (i.clone(), pl.clone());
    p.blocking(move |p| p.rollback(&i2, &pl2, &to, &s.email))
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    let v = p.plugin(&i, &pl).map_err(|e| e.problem())?;
    Ok(Json(view_json(&v)).into_response())
}

/// Yank a release: it stays listed (installations can verify it and roll
/// back to others) but is no longer installed or updated to. For reviewers
/// and admins.
#[utoipa::path(post, path = "/v1/catalog/{slug}/releases/{version}/yank", tag = "updates",
    params(("slug" = String, Path, description = "The plugin's slug"), ("version" = String, Path, description = "The release, such as `1.2.0`")),
    responses((status = 200, description = "Yanked: the plugin's releases now", body = Object),
        (status = 400, description = "Not a version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a reviewer or an admin, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such release in the signed index", body = ProblemDoc, content_type = "application/problem+json")))]
async fn yank(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((slug, v)): Path<(String, String)>,
) -> ApiResult {
    if !matches!(s.role, Role::Reviewer | Role::Admin) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "role",
            format!(
                "yanking releases is for reviewers and admins; {} is a {}",
                s.email, s.role
            ),
        ));
    }
    let v = version(&v)?;
    let slug2 = slug.clone();
    p.blocking(move |p| p.yank(&slug2, &v, &s.email))
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    let releases = p.releases(&slug);
    Ok(Json(json!({
        "plugin": slug,
        "releases": releases.iter().map(|r| json!({ "version": r.version.to_string(), "channel": r.channel, "yanked": r.yanked })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// Run the updater now, over every installation, and see what it did. For admins.
#[utoipa::path(post, path = "/v1/updates/run", tag = "updates",
    responses((status = 200, description = "What the run did: `updated`, `held` (and why) or `rolled_back` (and why), per plugin and installation", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn run_updates(State(p): State<Shared>, ApiSession(s): ApiSession) -> ApiResult {
    if s.role != Role::Admin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "role",
            format!(
                "running the updater is for admins; {} is a {}",
                s.email, s.role
            ),
        ));
    }
    let report = p
        .blocking(|p| p.run_updates())
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    Ok(
        Json(json!({ "report": report.iter().map(report_json).collect::<Vec<_>>() }))
            .into_response(),
    )
}

/// A metadata file of the signed index: `timestamp.json` (cached for a
/// minute), `N.root.json`, `N.snapshot.json`, `N.targets.json`,
/// `N.{publisher}.targets.json` (immutable). Strong `ETag`; `304` for a
/// matching `If-None-Match`. No sign-in: hosts and CDNs read it.
#[utoipa::path(get, path = "/index/{file}", tag = "updates",
    params(("file" = String, Path, description = "`timestamp.json`, or a version-named file such as `1.root.json`")),
    responses((status = 200, description = "The file, with `ETag` and `Cache-Control`", body = Object),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        (status = 404, description = "Not a file of the signed index", body = ProblemDoc, content_type = "application/problem+json")))]
async fn index_file(
    State(p): State<Shared>,
    Path(file): Path<String>,
    request: Request,
) -> Response {
    crate::distribution::serve_file(p.index.dir().to_path_buf(), file, request).await
}

/// A package, content-addressed: `targets/{sha256}.vpkg`, immutable, with
/// its hash as a strong `ETag`; ranges are served. Check it against the
/// signed targets before use.
#[utoipa::path(get, path = "/index/targets/{package}", tag = "updates",
    params(("package" = String, Path, description = "`{sha256}.vpkg`, the hash the signed targets list")),
    responses((status = 200, description = "The package's bytes", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for"),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such package", body = ProblemDoc, content_type = "application/problem+json")))]
async fn index_package(
    State(p): State<Shared>,
    Path(package): Path<String>,
    request: Request,
) -> Response {
    crate::distribution::serve_file(
        p.index.dir().to_path_buf(),
        format!("targets/{package}"),
        request,
    )
    .await
}
