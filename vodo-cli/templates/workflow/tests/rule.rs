//! The workflow's condition and actions, tested natively with `cargo test`.

use {{crate}}::{Rule, run};

#[test]
fn defaults_apply_until_the_merchant_sets_them() {
    let r = Rule::from_settings(None, None, None).unwrap();
    assert_eq!(
        r,
        Rule {
            min_total: 500.0,
            country: None,
            tag: "high-value".into()
        }
    );
    assert!(
        Rule::from_settings(Some("lots"), None, None)
            .unwrap_err()
            .contains("min_total")
    );
    assert!(Rule::from_settings(Some("-1"), None, None).is_err());
}

#[test]
fn the_condition_checks_the_total_and_the_country() {
    let r = Rule::from_settings(Some("100"), Some("sa"), Some("vip")).unwrap();
    let big_sa = r#"{"id": "1", "total": "150.00", "shipping_address": {"country": "SA"}}"#;
    let big_ae = r#"{"id": "2", "total": "150.00", "shipping_address": {"country": "AE"}}"#;
    let small = r#"{"id": "3", "total": "99.99", "shipping_address": {"country": "SA"}}"#;
    let a = run(&r, big_sa).unwrap().unwrap();
    assert_eq!(a.order, "1");
    assert!(a.tag.contains("\"vip\""));
    assert!(a.event.contains("\"150.00\""));
    assert_eq!(run(&r, big_ae), Ok(None));
    assert_eq!(run(&r, small), Ok(None));
    assert!(run(&r, "[]").is_err());
}
