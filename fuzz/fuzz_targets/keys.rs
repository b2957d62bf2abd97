//! Private and public key PEM: `notary key export` files (encrypted PKCS#8 with headers, legacy
//! `DEK-Info`), plain PKCS#8/SEC1, certificates. The first byte picks the passphrase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use trustkeeper::notary::{PublicKey, SigningKey};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, pem)) = data.split_first() else {
        return;
    };
    // The vector keys' delegation passphrases (tests/vectors/notary-v1/README.md).
    let pass = match pick % 4 {
        0 => None,
        1 => Some(SecretString::from("delegpass123")),
        2 => Some(SecretString::from("vectors-delegation")),
        _ => Some(SecretString::from("wrong")),
    };
    if let Ok(keys) = SigningKey::from_pem(pem, pass.as_ref()) {
        for k in &keys {
            let _ = k.key_id();
            let _ = k.notary_compatible();
            let _ = k.public().canonical_id();
            let sig = k.sign(b"message", k.key_id());
            let _ = sig;
        }
    }
    if let Ok(p) = PublicKey::from_pem(pem) {
        let _ = p.key_id();
        let _ = p.canonical_id();
        let _ = p.spki_der();
    }
});
