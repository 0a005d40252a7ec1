//! The widget's data and its fragment, tested natively with `cargo test`.

use {{crate}}::{Sales, cents};

#[test]
fn orders_add_up_per_day_and_survive_storage() {
    let mut s = Sales::default();
    s.add(r#"{"created_at": "2026-12-04T10:00:00Z", "total": "49.90"}"#)
        .unwrap();
    s.add(r#"{"created_at": "2026-12-04T11:00:00Z", "total": "10"}"#)
        .unwrap();
    s.add(r#"{"created_at": "2026-12-05T09:00:00Z", "total": "5.5"}"#)
        .unwrap();
    assert_eq!(s.days["2026-12-04"], (2, 5990));
    assert_eq!(s.days["2026-12-05"], (1, 550));
    assert_eq!(Sales::from_json(s.to_json().as_bytes()).unwrap(), s);
}

#[test]
fn the_widget_shows_each_day_and_an_empty_state() {
    assert!(Sales::default().widget().contains("No orders yet"));
    let mut s = Sales::default();
    s.add(r#"{"created_at": "2026-12-04T10:00:00Z", "total": "49.90"}"#)
        .unwrap();
    let html = s.widget();
    assert!(
        html.contains("<th scope=\"row\">2026-12-04</th><td>1</td><td>49.90</td>"),
        "{html}"
    );
}

#[test]
fn amounts_are_read_exactly_or_refused() {
    assert_eq!(cents("49.90"), Ok(4990));
    assert_eq!(cents("7"), Ok(700));
    assert!(cents("1.234").is_err());
    assert!(cents("abc").is_err());
    assert!(Sales::default().add(r#"{"total": "1"}"#).is_err());
}
