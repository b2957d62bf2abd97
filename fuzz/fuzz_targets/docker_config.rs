//! Docker config documents (`config.json`, `.dockerconfigjson`, legacy `.dockercfg`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trustkeeper::registry::DockerConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = DockerConfig::from_json(data) {
        for host in [
            "docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "127.0.0.1:5000",
            "notary.example.com:4443",
        ] {
            let _ = c.credentials_for(host);
        }
    }
});
