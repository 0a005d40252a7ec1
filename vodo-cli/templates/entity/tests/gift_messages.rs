//! The entity's rules and its page, tested natively with `cargo test`.

use {{crate}}::{from_order, id_of, page, record};

#[test]
fn an_order_with_a_gift_message_makes_a_record() {
    let (id, json) =
        from_order(r#"{"id": "1001", "gift_message": {"to": "Sara", "text": "Happy birthday!"}}"#)
            .unwrap()
            .unwrap();
    assert_eq!(id, "1001");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["to"], "Sara");
    assert_eq!(r["text"], "Happy birthday!");
    assert_eq!(from_order(r#"{"id": "1002"}"#), Ok(None));
}

#[test]
fn bad_messages_are_refused_with_a_reason() {
    let empty = serde_json::json!({ "text": "  " });
    assert!(record("1", &empty).unwrap_err().contains("1 to 500"));
    let long = serde_json::json!({ "text": "x".repeat(501) });
    assert!(record("1", &long).is_err());
    assert!(record("1", &serde_json::json!({})).is_err());
}

#[test]
fn the_page_escapes_what_a_customer_wrote() {
    let json = record(
        "7",
        &serde_json::json!({ "to": "<b>", "text": "<script>x</script>" }),
    )
    .unwrap();
    let html = page(&json).unwrap();
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"));
}

#[test]
fn routes_take_one_id() {
    assert_eq!(id_of("/gift-messages/1001"), Some("1001"));
    assert_eq!(id_of("/gift-messages/1001?x=1"), Some("1001"));
    assert_eq!(id_of("/gift-messages/"), None);
    assert_eq!(id_of("/gift-messages/a/b"), None);
}
