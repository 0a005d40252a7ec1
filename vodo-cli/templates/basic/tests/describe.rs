//! The plugin's logic, tested natively with `cargo test` (`vodo plugin:test`
//! runs these, then every sample of samples.json in the sandbox).

use {{crate}}::describe;

#[test]
fn an_order_is_described_by_its_number_and_total() {
    let line = describe(r#"{"id": "1001", "total": "49.90", "currency": "SAR"}"#);
    assert_eq!(line.as_deref(), Ok("new order 1001: 49.90 SAR"));
}

#[test]
fn a_payload_that_is_not_an_order_is_an_error() {
    assert!(describe("not json").unwrap_err().contains("not JSON"));
    assert_eq!(describe("{}").unwrap_err(), "the order has no \"id\"");
}
