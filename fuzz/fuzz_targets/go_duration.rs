//! Go durations (`spec.validity`, `renewBefore`, `interval`, `--timeout`): parsing never panics
//! (overflow included), and a whole number of seconds prints as a duration that parses to the
//! same value (`Display` shows whole seconds only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustkeeper::api::parse_go_duration;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = parse_go_duration(s) else {
        return;
    };
    if d.0.subsec_nanos() != 0 {
        return;
    }
    let printed = d.to_string();
    let again = parse_go_duration(&printed).expect("a printed duration parses");
    assert_eq!(again, d, "{s:?} printed as {printed:?}");
});
