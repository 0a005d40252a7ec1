//! [`PluginServices`]: what plugins reach through the host interfaces, the
//! server's store, with each record a plugin writes or deletes published
//! as a webhook event (`{kind}.created`, `.updated`, `.deleted`), exactly
//! as a write through `/api` is.

use std::sync::Arc;

use serde_json::{Value, json};
use vodo_core::{InstallationId, PluginId};
use vodo_oauth::AuthServer;
use vodo_oauth::webhooks::{Deliverer, Endpoint};
use vodo_sandbox::{HostServices, LogLevel, ServiceResult};

use crate::store::ServerStore;

/// The store, publishing plugins' record writes to the webhook outbox.
#[derive(Debug)]
pub(crate) struct PluginServices {
    pub(crate) store: Arc<ServerStore>,
    pub(crate) webhooks: Arc<Deliverer>,
    pub(crate) oauth: Arc<AuthServer>,
}

/// Publishes a change to a record of `kind` to the endpoints of the apps
/// that `installation`'s merchant let read that kind (an app's endpoint
/// never receives the events of a store that did not consent to it); a
/// failure to write the outbox is logged (the record itself is written).
pub(crate) fn publish_record(
    webhooks: &Deliverer,
    oauth: &AuthServer,
    installation: &InstallationId,
    kind: &str,
    event_type: &str,
    data: Value,
) -> Option<String> {
    let allowed = |e: &Endpoint| match oauth.store().get_consent(installation, &e.client_id) {
        Ok(Some(consent)) => consent.scopes.can_read_entity(kind),
        Ok(None) => false,
        Err(err) => {
            tracing::error!(%installation, client_id = e.client_id, error = %err, "a consent could not be read: the event is not sent to this app");
            false
        }
    };
    match webhooks.publish_where(event_type, Some(installation), data, &allowed) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(event_type, %installation, error = %e, "a webhook event was not written to the outbox");
            None
        }
    }
}

impl HostServices for PluginServices {
    fn get_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<Option<String>> {
        self.store.get_entity(installation, kind, id)
    }

    fn put_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()> {
        let created = self.store.write_entity(installation, kind, id, json)?;
        let record: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        let event = if created { "created" } else { "updated" };
        publish_record(
            &self.webhooks,
            &self.oauth,
            installation,
            kind,
            &format!("{kind}.{event}"),
            json!({ "id": id, kind: record }),
        );
        Ok(())
    }

    fn delete_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<bool> {
        let deleted = self.store.delete_entity(installation, kind, id)?;
        if deleted {
            publish_record(
                &self.webhooks,
                &self.oauth,
                installation,
                kind,
                &format!("{kind}.deleted"),
                json!({ "id": id }),
            );
        }
        Ok(deleted)
    }

    fn trigger_hook(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        name: &str,
        payload: &str,
    ) -> ServiceResult<()> {
        self.store.trigger_hook(installation, plugin, name, payload)
    }

    fn get_user(&self, installation: &InstallationId, id: &str) -> ServiceResult<Option<String>> {
        self.store.get_user(installation, id)
    }

    fn put_user(&self, installation: &InstallationId, id: &str, json: &str) -> ServiceResult<()> {
        self.store.put_user(installation, id, json)
    }

    fn get_setting(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        key: &str,
    ) -> ServiceResult<Option<String>> {
        self.store.get_setting(installation, plugin, key)
    }

    fn set_setting(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        key: &str,
        value: &str,
    ) -> ServiceResult<()> {
        self.store.set_setting(installation, plugin, key, value)
    }

    fn waits(&self) -> bool {
        self.store.waits()
    }

    fn log(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        level: LogLevel,
        message: &str,
    ) {
        self.store.log(installation, plugin, level, message);
    }
}
