//! Properties of the grammar and of compiled sets, over generated and hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use vodo_scopes::{ConsentDiff, HookPattern, PluginScope, ScopeSet};

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("c".to_owned())
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..5).prop_map(|v| v.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![segment(), Just("*".to_owned())], 1..5)
        .prop_map(|v| v.join("."))
}

fn scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("entities:read".to_owned()),
        Just("entities:write".to_owned()),
        "[a-c]{1,2}".prop_map(|e| format!("entities:read:{e}")),
        "[a-c]{1,2}".prop_map(|e| format!("entities:write:{e}")),
        pattern().prop_map(|p| format!("hooks:subscribe:{p}")),
        name().prop_map(|n| format!("hooks:trigger:{n}")),
        Just("users:read".to_owned()),
        Just("users:write".to_owned()),
        Just("storage:write".to_owned()),
        Just("api:access".to_owned()),
        "[a-c]{1,2}".prop_map(|r| format!("api:access:{r}")),
        "[ab]{1,2}\\.(com|io)".prop_map(|h| format!("network:outbound:{h}")),
        "[ab]{1,2}\\.(com|io)".prop_map(|h| format!("network:outbound:*.x.{h}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_input_never_panics_and_ok_round_trips(s in "\\PC{0,80}") {
        if let Ok(scope) = s.parse::<PluginScope>() {
            prop_assert_eq!(scope.to_string().parse::<PluginScope>().ok(), Some(scope));
        }
    }

    #[test]
    fn near_miss_input_never_panics(s in "[a-z:.*_0-9\\-\\[\\]/]{0,40}") {
        if let Ok(scope) = s.parse::<PluginScope>() {
            prop_assert_eq!(scope.to_string(), s);
        }
    }

    #[test]
    fn generated_scopes_round_trip(s in scope()) {
        let parsed: PluginScope = s.parse().unwrap();
        prop_assert_eq!(parsed.to_string(), s);
    }

    #[test]
    fn compiled_matching_equals_naive_matching(granted in prop::collection::vec(pattern(), 0..6), event in name()) {
        let set: ScopeSet = granted.iter().map(|p| format!("hooks:subscribe:{p}").parse().unwrap()).collect();
        let naive = granted.iter().any(|p| HookPattern::new(p).unwrap().matches(&event));
        prop_assert_eq!(set.can_subscribe(&event), naive);
    }

    #[test]
    fn pattern_coverage_is_sound(granted in prop::collection::vec(pattern(), 0..6), requested in pattern(), probes in prop::collection::vec(name(), 30)) {
        let set: ScopeSet = granted.iter().map(|p| format!("hooks:subscribe:{p}").parse().unwrap()).collect();
        let req = HookPattern::new(&requested).unwrap();
        if set.allows(&PluginScope::HooksSubscribe(Some(req.clone()))) {
            for probe in probes.iter().filter(|n| req.matches(n)) {
                prop_assert!(set.can_subscribe(probe), "{requested} covered but {probe} not matched");
            }
        }
    }

    #[test]
    fn a_set_allows_each_of_its_scopes_and_diff_against_itself_is_empty(scopes in prop::collection::vec(scope(), 0..20)) {
        let set: ScopeSet = scopes.iter().map(|s| s.parse::<PluginScope>().unwrap()).collect();
        for s in &set {
            prop_assert!(set.allows(s), "{s}");
        }
        prop_assert!(!ConsentDiff::between(&set, &set).needs_consent());
    }

    #[test]
    fn consent_diff_added_is_exactly_what_is_not_covered(old in prop::collection::vec(scope(), 0..10), new in prop::collection::vec(scope(), 0..10)) {
        let old: ScopeSet = old.iter().map(|s| s.parse::<PluginScope>().unwrap()).collect();
        let new: ScopeSet = new.iter().map(|s| s.parse::<PluginScope>().unwrap()).collect();
        let diff = ConsentDiff::between(&old, &new);
        let mut upgraded: Vec<PluginScope> = old.iter().cloned().collect();
        upgraded.extend(diff.added.iter().cloned());
        let upgraded: ScopeSet = upgraded.into_iter().collect();
        prop_assert!(upgraded.covers(&new));
        prop_assert_eq!(diff.needs_consent(), !old.covers(&new));
    }
}

#[test]
fn thousands_of_scopes_still_answer() {
    let set: ScopeSet = (0..5000)
        .map(|i| {
            format!("entities:read:e{i}")
                .parse::<PluginScope>()
                .unwrap()
        })
        .collect();
    assert_eq!(set.len(), 5000);
    assert!(set.can_read_entity("e4999"));
    assert!(!set.can_read_entity("e5000"));
    assert!(!set.can_write_entity("e1"));
}
