//! The conformance suite every [`OAuthStore`] must pass; the memory and
//! SQLite stores run it in this crate's tests, a host's own store runs it
//! with the `conformance` feature. Expects a fresh, empty store.

// A conformance suite is a test: failing loudly on the first difference is its job.
#![allow(clippy::panic, clippy::unwrap_used)]

use vodo_core::{InstallationId, Timestamp};
use vodo_scopes::{PluginScope, ScopeSet};

use crate::model::{
    AccountScope, AccountScopes, AuthCode, Client, ClientKind, Consent, DeviceCode, DeviceDecision,
    DevicePoll, Partner, SecretHash, Token, TokenKind,
};
use crate::store::{OAuthStore, Redemption};

fn scopes(v: &[&str]) -> ScopeSet {
    v.iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect()
}

fn token(hash: u8, kind: TokenKind, family: &str) -> Token {
    Token {
        hash: [hash; 32],
        kind,
        client_id: "conf-app".into(),
        installation: Some(InstallationId::new("conf-shop")),
        subject: "user-1".into(),
        scopes: scopes(&["entities:read:order", "hooks:subscribe:order.*"]),
        account_scopes: AccountScopes::new(),
        offline_access: true,
        family: family.into(),
        issued_at: Timestamp(1_000),
        expires_at: Some(Timestamp(2_000)),
        revoked: false,
        used: false,
    }
}

/// Runs every check against `store`.
pub fn oauth_store(store: &dyn OAuthStore) {
    let partner = Partner {
        id: "conf-ptn".into(),
        name: "Acme".into(),
        email: "dev@acme.example".into(),
        created_at: Timestamp(5),
    };
    store.put_partner(&partner).unwrap();
    assert_eq!(store.get_partner("conf-ptn").unwrap(), Some(partner));
    assert_eq!(store.get_partner("nope").unwrap(), None);

    let client = Client {
        id: "conf-app".into(),
        partner_id: "conf-ptn".into(),
        name: "Acme Sync".into(),
        kind: ClientKind::Confidential,
        secrets: vec![
            SecretHash {
                hash: [1; 32],
                created_at: Timestamp(1),
                expires_at: Some(Timestamp(9)),
            },
            SecretHash {
                hash: [2; 32],
                created_at: Timestamp(2),
                expires_at: None,
            },
        ],
        redirect_uris: vec![
            "https://acme.example/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        scopes: scopes(&["entities:read", "hooks:subscribe:order.*"]),
        account_scopes: AccountScopes::new(),
        created_at: Timestamp(3),
    };
    store.put_client(&client).unwrap();
    assert_eq!(
        store.get_client("conf-app").unwrap().as_ref(),
        Some(&client),
        "a client reads back whole"
    );
    let public = Client {
        id: "conf-app-2".into(),
        kind: ClientKind::Public,
        secrets: vec![],
        account_scopes: [AccountScope::Publish].into(),
        ..client.clone()
    };
    store.put_client(&public).unwrap();
    assert_eq!(
        store.get_client("conf-app-2").unwrap().as_ref(),
        Some(&public),
        "a client's account scopes read back"
    );
    let ids: Vec<String> = store
        .list_clients("conf-ptn")
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["conf-app", "conf-app-2"]);

    let shop = InstallationId::new("conf-shop");
    let consent = Consent {
        installation: shop.clone(),
        client_id: "conf-app".into(),
        scopes: scopes(&["entities:read:order"]),
        offline_access: true,
        granted_by: "user-1".into(),
        granted_at: Timestamp(7),
    };
    store.put_consent(&consent).unwrap();
    assert_eq!(
        store.get_consent(&shop, "conf-app").unwrap(),
        Some(consent.clone())
    );
    assert_eq!(store.list_consents(&shop).unwrap(), vec![consent.clone()]);
    assert!(
        store
            .list_consents(&InstallationId::new("other"))
            .unwrap()
            .is_empty(),
        "an installation lists only its own consents"
    );
    assert_eq!(
        store
            .get_consent(&InstallationId::new("other"), "conf-app")
            .unwrap(),
        None
    );

    let code = AuthCode {
        hash: [9; 32],
        client_id: "conf-app".into(),
        installation: shop.clone(),
        subject: "user-1".into(),
        redirect_uri: "https://acme.example/cb".into(),
        scopes: scopes(&["entities:read:order"]),
        offline_access: true,
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        expires_at: Timestamp(60_000),
        family: "fam-1".into(),
    };
    store.put_code(&code).unwrap();
    assert_eq!(
        store.redeem_code(&[9; 32]).unwrap(),
        Redemption::Fresh(code.clone()),
        "first redemption is fresh"
    );
    assert_eq!(
        store.redeem_code(&[9; 32]).unwrap(),
        Redemption::Reused(code),
        "second is a replay"
    );
    assert_eq!(store.redeem_code(&[8; 32]).unwrap(), Redemption::Unknown);

    let access = token(10, TokenKind::Access, "fam-1");
    let refresh = Token {
        expires_at: None,
        ..token(11, TokenKind::Refresh, "fam-1")
    };
    let other = Token {
        client_id: "conf-app-2".into(),
        installation: None,
        scopes: ScopeSet::default(),
        account_scopes: [AccountScope::Publish].into(),
        ..token(12, TokenKind::Access, "fam-2")
    };
    for t in [&access, &refresh, &other] {
        store.put_token(t).unwrap();
    }
    assert_eq!(
        store.get_token(&[12; 32]).unwrap().as_ref(),
        Some(&other),
        "a token's account scopes read back"
    );
    assert_eq!(
        store.get_token(&[10; 32]).unwrap().as_ref(),
        Some(&access),
        "a token reads back whole"
    );
    assert_eq!(
        store.use_refresh_token(&[10; 32]).unwrap(),
        Redemption::Unknown,
        "an access token is not a refresh token"
    );
    let used = Token {
        used: true,
        ..refresh.clone()
    };
    // Both answers carry the token as stored after the call: marked used.
    assert_eq!(
        store.use_refresh_token(&[11; 32]).unwrap(),
        Redemption::Fresh(used.clone())
    );
    assert_eq!(
        store.use_refresh_token(&[11; 32]).unwrap(),
        Redemption::Reused(used)
    );
    assert!(!refresh.used);
    assert_eq!(
        store.revoke_family("fam-1").unwrap(),
        2,
        "both tokens of the family"
    );
    assert_eq!(store.revoke_family("fam-1").unwrap(), 0, "already revoked");
    assert!(store.get_token(&[10; 32]).unwrap().unwrap().revoked);
    assert!(
        !store.get_token(&[12; 32]).unwrap().unwrap().revoked,
        "other families untouched"
    );
    assert!(store.revoke_token(&[12; 32]).unwrap());
    assert!(!store.revoke_token(&[13; 32]).unwrap());

    device_codes(store);

    let fresh = Token {
        revoked: false,
        ..token(14, TokenKind::Access, "fam-3")
    };
    store.put_token(&fresh).unwrap();
    assert_eq!(
        store
            .revoke_installation(&InstallationId::new("elsewhere"), "conf-app")
            .unwrap(),
        0
    );
    assert_eq!(
        store.revoke_installation(&shop, "conf-app").unwrap(),
        1,
        "only the still-active token of this installation and app"
    );
    assert!(store.get_token(&[14; 32]).unwrap().unwrap().revoked);
    assert!(store.delete_consent(&shop, "conf-app").unwrap());
    assert!(!store.delete_consent(&shop, "conf-app").unwrap());
    assert!(store.list_consents(&shop).unwrap().is_empty());
    assert!(store.delete_client("conf-app").unwrap());
    assert_eq!(store.get_client("conf-app").unwrap(), None);
    assert_eq!(
        store.get_token(&[10; 32]).unwrap(),
        None,
        "a deleted client's tokens go with it"
    );
    assert!(!store.delete_client("conf-app").unwrap());
}

fn device(hash: u8, user_code: &str, expires_at: i64) -> DeviceCode {
    DeviceCode {
        hash: [hash; 32],
        user_code: user_code.into(),
        client_id: "conf-app-2".into(),
        account_scopes: [AccountScope::Publish].into(),
        offline_access: true,
        expires_at: Timestamp(expires_at),
        interval_secs: 5,
        last_poll: None,
        decision: DeviceDecision::Pending,
        redeemed: false,
        family: format!("dev-fam-{hash}"),
    }
}

/// Device codes: stored whole, user codes unique, decided once, and polled
/// by the one rule of `poll_step` (interval, slow down, expiry, redemption).
fn device_codes(store: &dyn OAuthStore) {
    let code = device(20, "BCDFGHJK", 100_000);
    store.put_device_code(&code).unwrap();
    assert_eq!(
        store.get_device_code("BCDFGHJK").unwrap().as_ref(),
        Some(&code),
        "a device code reads back whole"
    );
    assert_eq!(store.get_device_code("ZZZZZZZZ").unwrap(), None);
    assert!(
        store
            .put_device_code(&device(21, "BCDFGHJK", 100_000))
            .is_err(),
        "a user code in use is refused"
    );
    assert_eq!(
        store
            .poll_device_code(&[20; 32], "conf-app", Timestamp(1_000))
            .unwrap(),
        DevicePoll::Unknown,
        "another client's poll finds nothing"
    );
    assert_eq!(
        store
            .poll_device_code(&[99; 32], "conf-app-2", Timestamp(1_000))
            .unwrap(),
        DevicePoll::Unknown
    );
    assert_eq!(
        store
            .poll_device_code(&[20; 32], "conf-app-2", Timestamp(1_000))
            .unwrap(),
        DevicePoll::Pending
    );
    assert_eq!(
        store
            .poll_device_code(&[20; 32], "conf-app-2", Timestamp(2_000))
            .unwrap(),
        DevicePoll::SlowDown,
        "1 s after the last poll, with a 5 s interval"
    );
    let stored = store.get_device_code("BCDFGHJK").unwrap().unwrap();
    assert_eq!(
        (stored.interval_secs, stored.last_poll),
        (10, Some(Timestamp(2_000))),
        "slow_down adds 5 s and the poll is recorded"
    );
    let approve = DeviceDecision::Approved {
        subject: "dev@acme.example".into(),
    };
    assert!(
        store
            .decide_device_code("BCDFGHJK", &approve, Timestamp(3_000))
            .unwrap()
    );
    assert!(
        !store
            .decide_device_code("BCDFGHJK", &DeviceDecision::Denied, Timestamp(3_500))
            .unwrap(),
        "decided once"
    );
    assert_eq!(
        store
            .poll_device_code(&[20; 32], "conf-app-2", Timestamp(5_000))
            .unwrap(),
        DevicePoll::SlowDown,
        "3 s after the last poll, with 10 s now"
    );
    let redeemed = DeviceCode {
        decision: approve,
        redeemed: true,
        interval_secs: 15,
        last_poll: Some(Timestamp(30_000)),
        ..code.clone()
    };
    assert_eq!(
        store
            .poll_device_code(&[20; 32], "conf-app-2", Timestamp(30_000))
            .unwrap(),
        DevicePoll::Approved(redeemed.clone()),
        "approved: redeemed by this poll"
    );
    assert_eq!(
        store
            .poll_device_code(&[20; 32], "conf-app-2", Timestamp(60_000))
            .unwrap(),
        DevicePoll::Redeemed(redeemed),
        "a second redemption is a replay"
    );

    store
        .put_device_code(&device(22, "CCCCDDDD", 10_000))
        .unwrap();
    assert!(
        store
            .decide_device_code("CCCCDDDD", &DeviceDecision::Denied, Timestamp(1_000))
            .unwrap()
    );
    assert_eq!(
        store
            .poll_device_code(&[22; 32], "conf-app-2", Timestamp(1_000))
            .unwrap(),
        DevicePoll::Denied
    );

    store
        .put_device_code(&device(23, "FFFFGGGG", 10_000))
        .unwrap();
    assert!(
        !store
            .decide_device_code("FFFFGGGG", &DeviceDecision::Denied, Timestamp(10_000))
            .unwrap(),
        "an expired code cannot be decided"
    );
    assert_eq!(
        store
            .poll_device_code(&[23; 32], "conf-app-2", Timestamp(10_000))
            .unwrap(),
        DevicePoll::Expired
    );
}

fn endpoint(id: &str, client: &str) -> crate::webhooks::Endpoint {
    crate::webhooks::Endpoint {
        id: id.into(),
        client_id: client.into(),
        url: "https://acme.example/hooks".into(),
        secrets: vec![
            crate::webhooks::WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
                .unwrap(),
        ],
        event_types: vec!["order.*".into()],
        rules: vec![crate::webhooks::Rule::Exists {
            field: "data.id".into(),
        }],
        installation: Some(InstallationId::new("conf-shop")),
        owner_email: "dev@acme.example".into(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: Timestamp(1),
        // Not the default, so that a store that drops it is caught.
        scheme: crate::webhooks::SignatureScheme::Salla,
    }
}

/// Runs every check against a webhook outbox.
pub fn webhook_outbox(outbox: &dyn crate::webhooks::Outbox) {
    use std::time::Duration;

    use crate::webhooks::{Attempt, DeliveryStatus, Message};

    let (a, b) = (
        endpoint("conf-ep-a", "conf-app"),
        endpoint("conf-ep-b", "conf-app-2"),
    );
    outbox.put_endpoint(&a).unwrap();
    outbox.put_endpoint(&b).unwrap();
    let back = outbox.endpoint("conf-ep-a").unwrap().unwrap();
    assert_eq!(
        (back.url.as_str(), back.rules.len(), back.event_types.len()),
        (a.url.as_str(), 1, 1)
    );
    assert_eq!(
        back.secrets[0].expose_secret(),
        a.secrets[0].expose_secret(),
        "secrets read back"
    );
    assert_eq!(back.scheme, a.scheme, "the signature scheme reads back");
    assert_eq!(outbox.endpoints().unwrap().len(), 2);
    assert_eq!(outbox.endpoints_of("conf-app").unwrap(), ["conf-ep-a"]);

    let message = |id: &str, at: i64| Message {
        id: id.into(),
        event_type: "order.created".into(),
        installation: None,
        body: format!(r#"{{"type":"order.created","data":{{"id":"{id}"}}}}"#),
        created_at: Timestamp(at),
    };
    outbox
        .enqueue(
            &message("m1", 100),
            &["conf-ep-a".into(), "conf-ep-b".into()],
        )
        .unwrap();
    outbox
        .enqueue(&message("m2", 200), &["conf-ep-a".into()])
        .unwrap();
    assert!(
        outbox.enqueue(&message("bad.id", 200), &[]).is_err(),
        "ids have no `.`"
    );
    assert_eq!(outbox.pending().unwrap(), 3);
    let ids = |ms: Vec<Message>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(outbox.messages(0, 10).unwrap()),
        ["m2", "m1"],
        "newest first"
    );
    assert_eq!(ids(outbox.messages(1, 10).unwrap()), ["m1"], "paged");
    assert!(outbox.messages(2, 10).unwrap().is_empty());
    let to = |eps: &[&str], offset, limit| {
        let eps: Vec<String> = eps.iter().map(|e| (*e).to_owned()).collect();
        ids(outbox.messages_to(&eps, offset, limit).unwrap())
    };
    assert_eq!(
        to(&["conf-ep-b"], 0, 10),
        ["m1"],
        "only messages sent there"
    );
    assert_eq!(to(&["conf-ep-a"], 0, 10), ["m2", "m1"]);
    assert_eq!(
        to(&["conf-ep-a", "conf-ep-b"], 0, 10),
        ["m2", "m1"],
        "a message sent to two of them is listed once"
    );
    assert_eq!(to(&["conf-ep-a"], 1, 10), ["m1"], "paged");
    assert_eq!(to(&["conf-ep-a"], 0, 1), ["m2"], "limited");
    assert!(to(&["conf-ep-a"], 0, 0).is_empty());
    assert!(to(&["nobody"], 0, 10).is_empty());
    assert!(to(&[], 0, 10).is_empty());
    assert_eq!(
        outbox.message("m1").unwrap(),
        Some(message("m1", 100)),
        "a message reads back as written"
    );
    assert_eq!(outbox.message("nope").unwrap(), None);

    assert!(
        outbox
            .claim_due(Timestamp(99), Duration::from_secs(60), 10)
            .unwrap()
            .is_empty(),
        "nothing due yet"
    );
    let claimed = outbox
        .claim_due(Timestamp(150), Duration::from_secs(60), 10)
        .unwrap();
    assert_eq!(claimed.len(), 2, "m1 to both endpoints");
    assert!(
        claimed
            .iter()
            .all(|c| c.message_id == "m1" && c.attempts == 0 && c.body.contains("\"m1\""))
    );
    assert!(
        outbox
            .claim_due(Timestamp(150), Duration::from_secs(60), 10)
            .unwrap()
            .iter()
            .all(|c| c.message_id != "m1"),
        "leased"
    );
    let attempt = |c: &crate::webhooks::Claimed, status: Option<u16>, at: i64| Attempt {
        delivery_id: c.delivery_id,
        message_id: c.message_id.clone(),
        endpoint_id: c.endpoint.id.clone(),
        at: Timestamp(at),
        status,
        latency: Duration::from_millis(12),
        error: status.is_none().then(|| "timed out".to_owned()),
        response: "ok".into(),
    };
    outbox
        .record(&attempt(&claimed[0], Some(200), 151), true, None, 1)
        .unwrap();
    outbox
        .record(
            &attempt(&claimed[1], None, 151),
            false,
            Some(Timestamp(10_000)),
            1,
        )
        .unwrap();
    let mut states = outbox.deliveries("m1").unwrap();
    states.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        states,
        [
            ("conf-ep-a".to_owned(), DeliveryStatus::Delivered, 1),
            ("conf-ep-b".to_owned(), DeliveryStatus::Pending, 1)
        ]
    );
    let log = outbox.attempts("m1").unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].latency, Duration::from_millis(12));
    assert_eq!(log[1].error.as_deref(), Some("timed out"));

    // After its lease, the retried delivery is due again at its own time only.
    let later = outbox
        .claim_due(Timestamp(9_999), Duration::from_secs(60), 10)
        .unwrap();
    assert!(later.iter().all(|c| c.message_id != "m1"));
    let retry = outbox
        .claim_due(Timestamp(10_000), Duration::from_secs(60), 10)
        .unwrap();
    assert!(
        retry
            .iter()
            .any(|c| c.message_id == "m1" && c.attempts == 1)
    );

    outbox
        .set_failing("conf-ep-b", Some(Timestamp(151)))
        .unwrap();
    outbox
        .set_failing("conf-ep-b", Some(Timestamp(500)))
        .unwrap();
    assert_eq!(
        outbox.endpoint("conf-ep-b").unwrap().unwrap().failing_since,
        Some(Timestamp(151)),
        "the first failure counts"
    );
    outbox.disable("conf-ep-b", "gone").unwrap();
    let b = outbox.endpoint("conf-ep-b").unwrap().unwrap();
    assert!(!b.enabled && b.disabled_reason.as_deref() == Some("gone"));
    assert!(
        outbox
            .deliveries("m1")
            .unwrap()
            .iter()
            .any(|d| d.1 == DeliveryStatus::Failed),
        "its pending deliveries failed"
    );
    outbox.set_failing("conf-ep-a", None).unwrap();
    assert_eq!(
        outbox.endpoint("conf-ep-a").unwrap().unwrap().failing_since,
        None
    );

    outbox
        .redeliver("m1", "conf-ep-a", Timestamp(20_000))
        .unwrap();
    assert!(
        outbox
            .redeliver("missing", "conf-ep-a", Timestamp(20_000))
            .is_err()
    );
    let again = outbox
        .claim_due(Timestamp(20_000), Duration::from_secs(60), 10)
        .unwrap();
    assert!(
        again
            .iter()
            .any(|c| c.message_id == "m1" && c.endpoint.id == "conf-ep-a" && c.attempts == 0)
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_and_sqlite_stores_conform() {
        super::oauth_store(&crate::MemoryStore::new());
        super::oauth_store(&crate::SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn memory_and_sqlite_outboxes_conform() {
        super::webhook_outbox(&crate::webhooks::MemoryOutbox::new());
        let key = vodo_core::SecretKey::from_bytes([9; 32]);
        super::webhook_outbox(&crate::webhooks::SqliteOutbox::open_in_memory(&key).unwrap());
    }
}
