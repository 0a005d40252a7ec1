//! Conditional webhooks: a subscription may carry rules over the event's
//! fields, so that an app receives only what it asked for
//! (`data.total > 100`, `data.payment_method in [mada, visa]`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One condition on a field of the event. Fields are dotted paths into the
/// event's JSON (`data.customer.city`); every rule of a subscription must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Rule {
    /// The field equals the value.
    Equals {
        /// Dotted path.
        field: String,
        /// Expected value.
        value: Value,
    },
    /// The field equals one of the values.
    In {
        /// Dotted path.
        field: String,
        /// Accepted values.
        values: Vec<Value>,
    },
    /// The field is a number greater than the value.
    GreaterThan {
        /// Dotted path.
        field: String,
        /// The bound.
        value: f64,
    },
    /// The field is present and not null.
    Exists {
        /// Dotted path.
        field: String,
    },
}

fn lookup<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(event, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A number, from a JSON number or a numeric string (`"49.90"`, as money often is).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Rule {
    /// Whether `event` satisfies this rule.
    pub fn matches(&self, event: &Value) -> bool {
        match self {
            Rule::Equals { field, value } => lookup(event, field) == Some(value),
            Rule::In { field, values } => lookup(event, field).is_some_and(|v| values.contains(v)),
            Rule::GreaterThan { field, value } => lookup(event, field)
                .and_then(number)
                .is_some_and(|n| n > *value),
            Rule::Exists { field } => lookup(event, field).is_some_and(|v| !v.is_null()),
        }
    }
}

/// Whether `event` satisfies every rule (no rules: every event).
pub fn all_match(rules: &[Rule], event: &Value) -> bool {
    rules.iter().all(|r| r.matches(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_operator() {
        let e = json!({ "type": "order.created", "data": { "total": "149.50", "method": "mada", "items": [{"sku": "A"}], "note": null } });
        let eq = Rule::Equals {
            field: "data.method".into(),
            value: json!("mada"),
        };
        let within = Rule::In {
            field: "data.method".into(),
            values: vec![json!("visa"), json!("mada")],
        };
        let gt = Rule::GreaterThan {
            field: "data.total".into(),
            value: 100.0,
        };
        let exists = Rule::Exists {
            field: "data.items.0.sku".into(),
        };
        for r in [&eq, &within, &gt, &exists] {
            assert!(r.matches(&e), "{r:?}");
        }
        assert!(
            !Rule::GreaterThan {
                field: "data.total".into(),
                value: 200.0
            }
            .matches(&e)
        );
        assert!(
            !Rule::Equals {
                field: "data.method".into(),
                value: json!("visa")
            }
            .matches(&e)
        );
        assert!(
            !Rule::In {
                field: "data.missing".into(),
                values: vec![json!(null)]
            }
            .matches(&e)
        );
        assert!(
            !Rule::Exists {
                field: "data.note".into()
            }
            .matches(&e)
        );
        assert!(
            !Rule::GreaterThan {
                field: "data.method".into(),
                value: 0.0
            }
            .matches(&e)
        );
        assert!(all_match(&[], &e));
        assert!(!all_match(
            &[
                eq,
                Rule::Exists {
                    field: "data.refund".into()
                }
            ],
            &e
        ));
    }

    #[test]
    fn rules_serialize_with_an_op_tag() {
        let r: Rule =
            serde_json::from_str(r#"{"op":"greater_than","field":"data.total","value":50}"#)
                .unwrap();
        assert_eq!(
            r,
            Rule::GreaterThan {
                field: "data.total".into(),
                value: 50.0
            }
        );
    }
}
