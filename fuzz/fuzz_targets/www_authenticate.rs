//! `WWW-Authenticate` challenges (registry and notary token auth).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustkeeper::http_auth::challenge::parse_challenges;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for c in parse_challenges(s) {
        let _ = c.is_bearer();
        let _ = c.is_basic();
        let _ = c.param("realm");
        let _ = c.param("service");
        let _ = c.param("scope");
    }
});
