//! Canonical JSON: any JSON value either has no canonical form (a non-integer number) or has one
//! that parses back, is a fixed point, and keeps its value through Go's HTML escaping. Notary's
//! canonical form writes control characters raw (not JSON; `has_control_char` is how callers
//! refuse such names), so those only have to not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustkeeper::notary::canonical;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(c) = canonical::to_vec(&v) else {
        return;
    };
    let escaped = canonical::go_escape(&c);
    if c.iter().any(|&b| b < 0x20) {
        return;
    }
    let back: serde_json::Value = serde_json::from_slice(&c).expect("canonical output is JSON");
    let again = canonical::to_vec(&back).expect("canonical output stays canonical");
    assert_eq!(c, again, "canonical form is a fixed point");
    let unescaped: serde_json::Value =
        serde_json::from_slice(&escaped).expect("Go-escaped output is JSON");
    assert_eq!(back, unescaped, "Go escaping changes no value");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = canonical::has_control_char(s);
    }
});
