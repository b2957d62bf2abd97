//! Image references: parsing never panics, and what parses re-parses to the same repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustkeeper::registry::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = ImageRef::parse(s) else {
        return;
    };
    let gun = r.gun();
    let again = ImageRef::parse(&gun).expect("a GUN is a reference");
    assert_eq!(again.gun(), gun);
    assert_eq!(again.repository(), r.repository());
    let _ = r.api_host();
    let _ = r.repository_only();
    if let Some(t) = r.tag() {
        let t2 = r.with_tag(t).expect("its own tag is valid");
        assert_eq!(t2.tag(), Some(t));
    }
    let _ = r.with_tag("latest");
});
