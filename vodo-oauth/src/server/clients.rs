//! Partners and their apps: registration, updates, secret rotation, consent revocation.

use super::*;

impl AuthServer {
    /// Registers a partner.
    pub fn register_partner(&self, name: &str, email: &str) -> Result<Partner> {
        if name.trim().is_empty() || !email.contains('@') {
            return Err(Error::Invalid(
                "a partner needs a name and a contact email".into(),
            ));
        }
        let partner = Partner {
            id: crypto::random_id("ptn_")?,
            name: name.trim().to_owned(),
            email: email.trim().to_owned(),
            created_at: self.clock.now(),
        };
        self.store.put_partner(&partner)?;
        Ok(partner)
    }

    /// Registers an app of `partner_id`. Confidential apps get a secret,
    /// returned once.
    pub fn register_client(
        &self,
        partner_id: &str,
        name: &str,
        kind: ClientKind,
        redirect_uris: &[&str],
        scopes: ScopeSet,
    ) -> Result<(Client, Option<ClientSecret>)> {
        if self.store.get_partner(partner_id)?.is_none() {
            return Err(Error::NotFound(format!(
                "no partner `{partner_id}`: register the partner first"
            )));
        }
        if name.trim().is_empty() {
            return Err(Error::Invalid("an app needs a name".into()));
        }
        for uri in redirect_uris {
            check_redirect_uri(uri)?;
        }
        let secret = match kind {
            ClientKind::Confidential => Some(ClientSecret(crypto::random_token(SECRET_PREFIX)?)),
            ClientKind::Public => None,
        };
        let now = self.clock.now();
        let client = Client {
            id: crypto::random_id("app_")?,
            partner_id: partner_id.to_owned(),
            name: name.trim().to_owned(),
            kind,
            secrets: secret
                .iter()
                .map(|s| SecretHash {
                    hash: crypto::hash(&s.0),
                    created_at: now,
                    expires_at: None,
                })
                .collect(),
            redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
            scopes,
            account_scopes: AccountScopes::new(),
            created_at: now,
        };
        self.store.put_client(&client)?;
        Ok((client, secret))
    }

    /// Registers, or brings up to date, a first-party public client with a
    /// fixed `client_id`: a tool of the platform itself, such as the `vodo`
    /// CLI, that signs developers in with the device authorization grant
    /// and may ask for `account_scopes` (and nothing of a store). Its
    /// partner is the platform (`first-party`), created when missing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use vodo_oauth::model::{AccountScope, AccountScopes};
    /// use vodo_oauth::{AuthServer, AuthServerConfig, MemoryStore};
    ///
    /// let server = AuthServer::new(
    ///     AuthServerConfig::new("https://auth.example"),
    ///     Arc::new(MemoryStore::new()),
    ///     &vodo_core::SecretKey::generate()?,
    /// )?;
    /// let scopes: AccountScopes = [AccountScope::Publish].into();
    /// let cli = server.ensure_first_party_client("vodo-cli", "The vodo CLI", &scopes)?;
    /// assert_eq!(cli.id, "vodo-cli");
    /// assert_eq!(server.ensure_first_party_client("vodo-cli", "The vodo CLI", &scopes)?, cli);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ensure_first_party_client(
        &self,
        client_id: &str,
        name: &str,
        account_scopes: &AccountScopes,
    ) -> Result<Client> {
        const PARTNER: &str = "first-party";
        if client_id.is_empty()
            || !client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Invalid(format!(
                "client id `{client_id}`: use letters, digits, `-` and `_`"
            )));
        }
        if self.store.get_partner(PARTNER)?.is_none() {
            self.store.put_partner(&Partner {
                id: PARTNER.into(),
                name: "The platform".into(),
                email: "platform@localhost".into(),
                created_at: self.clock.now(),
            })?;
        }
        if let Some(existing) = self.store.get_client(client_id)? {
            if existing.partner_id != PARTNER {
                return Err(Error::Invalid(format!(
                    "client id `{client_id}` belongs to a partner's app"
                )));
            }
            if existing.name == name && &existing.account_scopes == account_scopes {
                return Ok(existing);
            }
        }
        let client = Client {
            id: client_id.to_owned(),
            partner_id: PARTNER.into(),
            name: name.trim().to_owned(),
            kind: ClientKind::Public,
            secrets: Vec::new(),
            redirect_uris: Vec::new(),
            scopes: ScopeSet::default(),
            account_scopes: account_scopes.clone(),
            created_at: self.clock.now(),
        };
        self.store.put_client(&client)?;
        Ok(client)
    }

    /// Changes an app's redirect URIs and the most it may ask for. Existing
    /// consents and tokens keep their scopes; new authorizations are checked
    /// against the new registration.
    pub fn update_client(
        &self,
        client_id: &str,
        redirect_uris: &[&str],
        scopes: ScopeSet,
    ) -> Result<Client> {
        let mut client = self
            .store
            .get_client(client_id)?
            .ok_or_else(|| Error::NotFound(format!("no app `{client_id}`")))?;
        for uri in redirect_uris {
            check_redirect_uri(uri)?;
        }
        client.redirect_uris = redirect_uris.iter().map(|s| (*s).to_owned()).collect();
        client.scopes = scopes;
        self.store.put_client(&client)?;
        Ok(client)
    }

    /// Issues a new secret for a confidential app; the current ones keep
    /// working for `grace`, then stop.
    pub fn rotate_secret(&self, client_id: &str, grace: Duration) -> Result<ClientSecret> {
        let mut client = self
            .store
            .get_client(client_id)?
            .ok_or_else(|| Error::NotFound(format!("no app `{client_id}`")))?;
        if client.kind == ClientKind::Public {
            return Err(Error::Invalid(
                "public apps have no secret to rotate".into(),
            ));
        }
        let now = self.clock.now();
        let until = now.plus(grace);
        for s in &mut client.secrets {
            s.expires_at = Some(s.expires_at.map_or(until, |t| t.min(until)));
        }
        client
            .secrets
            .retain(|s| s.expires_at.is_none_or(|t| t > now));
        let secret = ClientSecret(crypto::random_token(SECRET_PREFIX)?);
        client.secrets.push(SecretHash {
            hash: crypto::hash(&secret.0),
            created_at: now,
            expires_at: None,
        });
        self.store.put_client(&client)?;
        Ok(secret)
    }

    /// Every app `installation` has consented to, with what it granted.
    pub fn consents(&self, installation: &InstallationId) -> Result<Vec<Consent>> {
        self.store.list_consents(installation)
    }

    /// Revokes an installation's consent to an app and every token issued under it.
    pub fn revoke_consent(&self, installation: &InstallationId, client_id: &str) -> Result<bool> {
        let existed = self.store.delete_consent(installation, client_id)?;
        self.store.revoke_installation(installation, client_id)?;
        Ok(existed)
    }
}
