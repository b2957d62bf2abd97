//! The `notation` referee (TRUSTKEEPER_REFEREES): the command with a private home, and a trust
//! store and policy for one certificate.

use std::path::Path;
use std::process::{Command, Output};

use super::{Testbed, parse_env_file};

/// The real `notation` with `home` as its HOME and config dir, trusting the testbed CA.
pub fn notation(home: &Path) -> Command {
    let dir = std::env::var("TRUSTKEEPER_REFEREES")
        .expect("TRUSTKEEPER_REFEREES is not set: these tests need the real notation binary");
    let env = parse_env_file(&Path::new(&dir).join("env"));
    let tool = env
        .get("NOTATION")
        .unwrap_or_else(|| panic!("{dir}/env names no NOTATION: reinstall the referees"));
    assert!(Path::new(tool).is_file(), "NOTATION={tool} is missing");
    let mut c = Command::new(tool);
    c.env("SSL_CERT_FILE", Testbed::get().var("CA_CERT"))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"));
    c
}

/// A command's status and both outputs, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A notation config in `home` trusting `cert` (store `store`) for every registry scope.
pub fn trust(home: &Path, store: &str, cert: &Path) {
    let o = notation(home)
        .args(["cert", "add", "--type", "ca", "--store", store])
        .arg(cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "cert add: {}", text(&o));
    let policy = home.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"version": "1.0", "trustPolicies": [{
            "name": "testbed", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": [format!("ca:{store}")], "trustedIdentities": ["*"]}]})
        .to_string(),
    )
    .unwrap();
    let o = notation(home)
        .args(["policy", "import", "--force"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(o.status.success(), "policy import: {}", text(&o));
}

/// The PEM of a self-signed Notation signing certificate for `key`, `CN=<name>`, valid from
/// `now` (less the builder's five minutes of skew) for 10 years.
pub fn self_signed_pem(
    key: &trustkeeper::notary::SigningKey,
    name: &str,
    now: jiff::Timestamp,
) -> String {
    let der = trustkeeper::formats::notation::self_signed_certificate(
        key,
        &format!("CN={name}"),
        3650,
        std::time::SystemTime::from(now),
    )
    .expect("a signing certificate for the key");
    pem::encode(&pem::Pem::new("CERTIFICATE", der))
}
