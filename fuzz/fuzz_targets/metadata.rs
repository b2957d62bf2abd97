//! Notary metadata envelopes and role bodies: parse, typed views, canonical bytes, signature
//! counting over the keys the document itself lists. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustkeeper::notary::client::count_valid;
use trustkeeper::notary::metadata::{self, Envelope, Meta, Root, Targets};

fuzz_target!(|data: &[u8]| {
    for role in ["root", "targets", "targets/releases", "snapshot", "timestamp"] {
        let Ok(env) = Envelope::parse(role, data) else {
            return;
        };
        let _ = env.signed_bytes();
        let _ = env.to_file_bytes();
        let _ = env.version();
        let ty = metadata::type_of(role);
        match ty {
            "Root" => {
                if let Ok(root) = metadata::view::<Root>(&env, role, ty) {
                    for (id, key) in &root.keys {
                        let _ = key.canonical_id();
                        let _ = key.spki_der();
                        let _ = key.certificate();
                        let listed = vec![id.clone()];
                        let _ = count_valid(&env, &root.keys, &listed);
                    }
                }
            }
            "Targets" => {
                if let Ok(t) = metadata::view::<Targets>(&env, role, ty) {
                    let listed: Vec<String> = t.delegations.keys.keys().cloned().collect();
                    let _ = count_valid(&env, &t.delegations.keys, &listed);
                    for meta in t.targets.values() {
                        let _ = meta.sha256_hex();
                        let _ = meta.check(data);
                    }
                }
            }
            _ => {
                if let Ok(m) = metadata::view::<Meta>(&env, role, ty) {
                    for meta in m.meta.values() {
                        let _ = meta.sha256();
                        let _ = meta.check(data);
                    }
                }
            }
        }
    }
});
