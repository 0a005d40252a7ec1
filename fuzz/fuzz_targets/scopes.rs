//! Scope strings: from manifests, API key requests and OAuth `scope` parameters.
#![no_main]
use vodo_scopes::{PluginScope, ScopeSet};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let parsed: Vec<PluginScope> = s.split(' ').filter_map(|p| p.parse().ok()).collect();
        for p in &parsed {
            // A scope prints as a string that parses back to itself.
            let again: PluginScope = p.to_string().parse().unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(&again, p);
        }
        let set: ScopeSet = parsed.into_iter().collect();
        let _ = set.can_subscribe(s);
        let _ = set.can_connect(s, 443);
    }
});
