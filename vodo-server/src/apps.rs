//! Partner apps and their webhooks: apps registered with the OAuth
//! provider, the endpoints they receive events at, the delivery log,
//! redelivery and the test tool. A partner sees only their own apps,
//! endpoints and deliveries; the platform admin sees all of them.

use std::collections::HashSet;

use serde_json::Value;
use vodo_core::audit::AuditSinkExt as _;
use vodo_core::{InstallationId, Timestamp};
use vodo_oauth::ClientSecret;
use vodo_oauth::model::{Client, ClientKind};
use vodo_oauth::webhooks::{
    Attempt, DeliveryStatus, Endpoint, Message, SignatureScheme, TestDelivery, WebhookSecret,
};
use vodo_scopes::ScopeSet;

use crate::accounts::{Role, Session};
use crate::error::ServerError;
use crate::platform::Platform;

/// The most endpoints one app may have.
pub const MAX_ENDPOINTS_PER_APP: usize = 20;

/// What a new app is registered with.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Its name, shown on the consent page.
    pub name: String,
    /// Confidential (a back end with a secret) or public (PKCE only).
    pub kind: ClientKind,
    /// Its redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The most it may ask an installation for.
    pub scopes: ScopeSet,
}

/// What a new webhook endpoint is registered with.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// The app it belongs to.
    pub client_id: String,
    /// Where to POST: `https://...` (or a private address when the
    /// platform allows them).
    pub url: String,
    /// Event types or patterns (`order.*`).
    pub event_types: Vec<String>,
    /// Only events of this installation, if set.
    pub installation: Option<InstallationId>,
}

/// One delivery of a message to one endpoint, with its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    /// The endpoint.
    pub endpoint_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
}

/// A message of the delivery log with where each of its deliveries stands.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// The message.
    pub message: Message,
    /// Its deliveries to the endpoints the viewer may see.
    pub deliveries: Vec<DeliveryView>,
}

fn forbidden(who: &Session, what: &str) -> ServerError {
    ServerError::Forbidden {
        detail: format!(
            "{what} is for partners and the platform admin; {} is a {}",
            who.email, who.role
        ),
    }
}

impl Platform {
    /// The OAuth partner `who` acts as: an admin acts as every partner
    /// (`None`), a partner as their own, registered on first use.
    fn partner_scope(&self, who: &Session, what: &str) -> Result<Option<String>, ServerError> {
        match who.role {
            Role::Admin => Ok(None),
            Role::Partner => self.own_partner(who).map(Some),
            Role::Merchant(_) | Role::Reviewer => Err(forbidden(who, what)),
        }
    }

    /// The OAuth partner of `who`'s own apps (a partner's, or the admin's
    /// first-party apps), registered on first use.
    fn own_partner(&self, who: &Session) -> Result<String, ServerError> {
        if let Some(id) = self.store.partner_of(&who.email)? {
            return Ok(id);
        }
        let partner = self.oauth.register_partner(&who.email, &who.email)?;
        self.store.set_partner_of(&who.email, &partner.id)?;
        Ok(partner.id)
    }

    /// The app `client_id`, if `who` may manage it; another partner's app
    /// is "not found", so ids cannot be probed.
    fn own_app(&self, who: &Session, client_id: &str) -> Result<Client, ServerError> {
        let partner = self.partner_scope(who, "managing apps")?;
        match self.oauth.store().get_client(client_id)? {
            Some(c) if partner.as_ref().is_none_or(|p| *p == c.partner_id) => Ok(c),
            _ => Err(ServerError::not_found(format!("the app `{client_id}`"))),
        }
    }

    /// The apps `who` may manage.
    pub fn apps(&self, who: &Session) -> Result<Vec<Client>, ServerError> {
        match self.partner_scope(who, "managing apps")? {
            Some(partner) => Ok(self.oauth.store().list_clients(&partner)?),
            None => {
                let mut all = Vec::new();
                let mut seen = HashSet::new();
                for e in self.webhooks.outbox().endpoints()? {
                    if seen.insert(e.client_id.clone())
                        && let Some(c) = self.oauth.store().get_client(&e.client_id)?
                    {
                        all.push(c);
                    }
                }
                for id in self.store.partner_ids()? {
                    for c in self.oauth.store().list_clients(&id)? {
                        if seen.insert(c.id.clone()) {
                            all.push(c);
                        }
                    }
                }
                all.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(all)
            }
        }
    }

    /// Registers an app of `who`'s partner (the admin's are the platform's
    /// own); a confidential app's secret is returned this once.
    pub fn register_app(
        &self,
        who: &Session,
        app: &NewApp,
    ) -> Result<(Client, Option<ClientSecret>), ServerError> {
        self.partner_scope(who, "registering apps")?;
        let partner = self.own_partner(who)?;
        let uris: Vec<&str> = app.redirect_uris.iter().map(String::as_str).collect();
        Ok(self
            .oauth
            .register_client(&partner, &app.name, app.kind, &uris, app.scopes.clone())?)
    }

    /// The webhook endpoints `who` may see, by id.
    pub fn endpoints(&self, who: &Session) -> Result<Vec<Endpoint>, ServerError> {
        let partner = self.partner_scope(who, "webhooks")?;
        let apps: Option<HashSet<String>> = match &partner {
            Some(p) => Some(
                self.oauth
                    .store()
                    .list_clients(p)?
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
            ),
            None => None,
        };
        Ok(self
            .webhooks
            .outbox()
            .endpoints()?
            .into_iter()
            .filter(|e| apps.as_ref().is_none_or(|a| a.contains(&e.client_id)))
            .collect())
    }

    /// The endpoint `id`, if `who` may see it.
    pub fn endpoint(&self, who: &Session, id: &str) -> Result<Endpoint, ServerError> {
        self.endpoints(who)?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| ServerError::not_found(format!("the webhook endpoint `{id}`")))
    }

    /// Adds an endpoint to one of `who`'s apps. Its signing secret
    /// (`whsec_...`) is in the returned endpoint; show it once.
    pub fn add_endpoint(&self, who: &Session, new: &NewEndpoint) -> Result<Endpoint, ServerError> {
        let app = self.own_app(who, &new.client_id)?;
        let url = url::Url::parse(&new.url)
            .map_err(|e| ServerError::invalid(format!("`{}` is not a URL: {e}", new.url)))?;
        let private_ok = self.config.webhooks.allow_private;
        if url.scheme() != "https" && !(private_ok && url.scheme() == "http") {
            return Err(ServerError::invalid(
                "a webhook URL is `https://...`: receivers must be reachable over TLS",
            ));
        }
        if new.event_types.is_empty() || new.event_types.len() > 50 {
            return Err(ServerError::invalid(
                "subscribe to 1 to 50 event types, such as `order.created` or `order.*`",
            ));
        }
        for t in &new.event_types {
            let ok = !t.is_empty()
                && t.len() <= 100
                && t.split('.').all(|s| {
                    s == "*"
                        || (!s.is_empty()
                            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                });
            if !ok {
                return Err(ServerError::invalid(format!(
                    "`{t}` is not an event type: `.`-separated names such as `order.created`, or `order.*`"
                )));
            }
        }
        if self.webhooks.outbox().endpoints_of(&app.id)?.len() >= MAX_ENDPOINTS_PER_APP {
            return Err(ServerError::invalid(format!(
                "an app has at most {MAX_ENDPOINTS_PER_APP} endpoints: remove one first"
            )));
        }
        let owner = self
            .oauth
            .store()
            .get_partner(&app.partner_id)?
            .map_or_else(|| who.email.clone(), |p| p.email);
        let endpoint = Endpoint {
            id: format!("ep_{}", crate::accounts::random_hex(12)?),
            client_id: app.id,
            url: url.to_string(),
            secrets: vec![WebhookSecret::generate()?],
            event_types: new.event_types.clone(),
            rules: Vec::new(),
            installation: new.installation.clone(),
            owner_email: owner,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: Timestamp::now(),
            scheme: SignatureScheme::Standard,
        };
        self.webhooks.outbox().put_endpoint(&endpoint)?;
        Ok(endpoint)
    }

    /// Disables an endpoint of `who`'s: no more deliveries, pending ones fail.
    pub fn disable_endpoint(&self, who: &Session, id: &str) -> Result<(), ServerError> {
        self.endpoint(who, id)?;
        self.webhooks
            .outbox()
            .disable(id, &format!("disabled by {}", who.email))?;
        Ok(())
    }

    /// A page of the delivery log, newest first, as `who` may see it: a
    /// partner, only messages sent to their endpoints.
    pub fn deliveries(
        &self,
        who: &Session,
        page: usize,
        per_page: usize,
    ) -> Result<Vec<MessageView>, ServerError> {
        let mine: Vec<String> = self.endpoints(who)?.into_iter().map(|e| e.id).collect();
        let admin = who.role == Role::Admin;
        let outbox = self.webhooks.outbox();
        let offset = page.saturating_mul(per_page);
        let messages = if admin {
            outbox.messages(offset, per_page)?
        } else {
            // Read from the deliveries' endpoint index: a partner's page
            // costs their own messages, not the whole platform's.
            outbox.messages_to(&mine, offset, per_page)?
        };
        let mine: HashSet<String> = mine.into_iter().collect();
        messages
            .into_iter()
            .map(|message| self.view(message, admin, &mine))
            .collect()
    }

    fn view(
        &self,
        message: Message,
        admin: bool,
        mine: &HashSet<String>,
    ) -> Result<MessageView, ServerError> {
        let deliveries = self
            .webhooks
            .outbox()
            .deliveries(&message.id)?
            .into_iter()
            .filter(|(e, _, _)| admin || mine.contains(e))
            .map(|(endpoint_id, status, attempts)| DeliveryView {
                endpoint_id,
                status,
                attempts,
            })
            .collect();
        Ok(MessageView {
            message,
            deliveries,
        })
    }

    /// One message with its deliveries and attempts to `who`'s endpoints.
    pub fn delivery(
        &self,
        who: &Session,
        message_id: &str,
    ) -> Result<(MessageView, Vec<Attempt>), ServerError> {
        let mine: HashSet<String> = self.endpoints(who)?.into_iter().map(|e| e.id).collect();
        let admin = who.role == Role::Admin;
        let not_found = || ServerError::not_found(format!("the webhook message `{message_id}`"));
        let message = self
            .webhooks
            .outbox()
            .message(message_id)?
            .ok_or_else(not_found)?;
        let view = self.view(message, admin, &mine)?;
        if !admin && view.deliveries.is_empty() {
            return Err(not_found());
        }
        let attempts = self
            .webhooks
            .outbox()
            .attempts(message_id)?
            .into_iter()
            .filter(|a| admin || mine.contains(&a.endpoint_id))
            .collect();
        Ok((view, attempts))
    }

    /// Sends a message to one of `who`'s endpoints again, with the same
    /// `webhook-id`, at the delivery worker's next round.
    pub fn redeliver(
        &self,
        who: &Session,
        message_id: &str,
        endpoint_id: &str,
    ) -> Result<(), ServerError> {
        let endpoint = self.endpoint(who, endpoint_id)?;
        if !endpoint.enabled {
            return Err(ServerError::invalid(format!(
                "the endpoint `{endpoint_id}` is disabled ({}): add a new one to receive events again",
                endpoint
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            )));
        }
        let (view, _) = self.delivery(who, message_id)?;
        if !view.deliveries.iter().any(|d| d.endpoint_id == endpoint_id) {
            return Err(ServerError::invalid(format!(
                "the message `{message_id}` was not sent to `{endpoint_id}`: redeliver it to an endpoint that subscribed to it"
            )));
        }
        self.webhooks
            .outbox()
            .redeliver(message_id, endpoint_id, Timestamp::now())?;
        Ok(())
    }

    /// The test tool: sends a signed sample event to one of `who`'s
    /// endpoints now, outside the delivery log, and reports what was sent
    /// and what came back. Blocks for up to the delivery timeout.
    pub fn test_endpoint(
        &self,
        who: &Session,
        endpoint_id: &str,
        event_type: &str,
        data: Value,
    ) -> Result<TestDelivery, ServerError> {
        let endpoint = self.endpoint(who, endpoint_id)?;
        let secret = endpoint
            .secrets
            .first()
            .ok_or_else(|| ServerError::invalid("the endpoint has no signing secret"))?;
        Ok(self
            .webhooks
            .send_test(&endpoint.url, secret, event_type, data)?)
    }

    /// Publishes a record event of `installation` (`{kind}.created`,
    /// `.updated`, `.deleted`) to every endpoint that subscribes to it and
    /// whose app the installation's merchant let read records of `kind`;
    /// returns the message id, or `None` (logged) if the outbox could not
    /// take it. Called after the change it reports is stored, so a failure
    /// here loses no data, only the notification.
    pub fn publish(
        &self,
        event_type: &str,
        installation: &InstallationId,
        data: Value,
    ) -> Option<String> {
        let kind = event_type
            .rsplit_once('.')
            .map_or(event_type, |(kind, _)| kind);
        crate::services::publish_record(
            &self.webhooks,
            &self.oauth,
            installation,
            kind,
            event_type,
            data,
        )
    }
}

/// An app an installation is connected to: what the merchant consented to.
#[derive(Debug, Clone)]
pub struct ConnectedApp {
    /// The consent.
    pub consent: vodo_oauth::model::Consent,
    /// The app's name, if it is still registered.
    pub name: Option<String>,
}

impl Platform {
    fn manage(who: &Session, installation: &InstallationId) -> Result<(), ServerError> {
        if who.role.manages(installation) {
            Ok(())
        } else {
            Err(ServerError::Forbidden {
                detail: format!(
                    "{} ({}) does not manage the installation `{installation}`",
                    who.email, who.role
                ),
            })
        }
    }

    /// The apps `installation` is connected to, for its merchant or the admin.
    pub fn connected_apps(
        &self,
        who: &Session,
        installation: &InstallationId,
    ) -> Result<Vec<ConnectedApp>, ServerError> {
        Self::manage(who, installation)?;
        self.oauth
            .consents(installation)?
            .into_iter()
            .map(|consent| {
                let name = self
                    .oauth
                    .store()
                    .get_client(&consent.client_id)?
                    .map(|c| c.name);
                Ok(ConnectedApp { consent, name })
            })
            .collect()
    }

    /// Disconnects an app from `installation`: its consent and every token
    /// issued under it are revoked at once (the next `/api` request with
    /// one is `401`). Audited.
    pub fn disconnect_app(
        &self,
        who: &Session,
        installation: &InstallationId,
        client_id: &str,
    ) -> Result<(), ServerError> {
        Self::manage(who, installation)?;
        if !self.oauth.revoke_consent(installation, client_id)? {
            return Err(ServerError::not_found(format!(
                "a connection of `{installation}` to the app `{client_id}`"
            )));
        }
        self.host.audit.record_or_log(
            &vodo_core::audit::AuditEvent::now(vodo_core::audit::AuditAction::AppAccess {
                client_id: client_id.to_owned(),
                change: "revoked".into(),
                by: who.email.clone(),
            })
            .installation(installation),
        );
        Ok(())
    }
}
