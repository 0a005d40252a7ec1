//! The store rules, tested natively with `cargo test`.

use {{crate}}::{low_stock, note_for_order, paid, risk};

#[test]
fn low_stock_is_reported_at_the_threshold_and_not_above() {
    assert!(
        low_stock(r#"{"sku": "A-1", "stock": 5}"#)
            .unwrap()
            .unwrap()
            .contains("\"A-1\"")
    );
    assert_eq!(low_stock(r#"{"sku": "A-1", "stock": 6}"#), Ok(None));
    assert!(low_stock(r#"{"sku": "A-1"}"#).is_err());
}

#[test]
fn risky_orders_score_higher_and_say_why() {
    let calm: serde_json::Value = serde_json::json!({ "total": "49.90" });
    assert_eq!(risk(&calm), (0, vec![]));
    let risky = serde_json::json!({
        "total": "9000.00",
        "billing_address": { "country": "SA" },
        "shipping_address": { "country": "AE" },
        "customer": { "orders_count": 0 }
    });
    let (score, why) = risk(&risky);
    assert_eq!(score, 90);
    assert_eq!(why.len(), 3);
}

#[test]
fn a_captured_payment_keeps_the_score() {
    let (id, note) = note_for_order(r#"{"id": "1001", "total": "10.00"}"#).unwrap();
    assert_eq!(id, "1001");
    let after = paid(Some(&note), &serde_json::json!({ "id": "pay_1" })).unwrap();
    let n: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(n["paid"], true);
    assert_eq!(n["risk"], 0);
    assert_eq!(n["payment"], "pay_1");
}
