//! Serde view of notary's metadata files (no update logic).
//!
//! A file is kept as its parsed `signed` value ([`Envelope::signed`], raw JSON so that members
//! we don't model survive a re-sign) plus typed read-only views ([`Root`], [`Targets`], …).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use super::canonical;
use super::error::{Error, Result};
use super::keys::PublicKey;

/// One entry of `signatures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    pub method: String,
    pub sig: String,
}

/// A parsed metadata file: `{"signed":…,"signatures":[…]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub signed: Value,
    pub signatures: Vec<Signature>,
}

impl Envelope {
    /// Parses file bytes. Member names must match exactly (Go would also accept `"Signed"`).
    pub fn parse(role: &str, bytes: &[u8]) -> Result<Envelope> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(role, format!("not JSON: {e}")))?;
        let Value::Object(mut map) = v else {
            return Err(Error::invalid(role, "not a JSON object"));
        };
        let signed = map
            .remove("signed")
            .ok_or_else(|| Error::invalid(role, "no `signed` member"))?;
        let sigs = map
            .remove("signatures")
            .ok_or_else(|| Error::invalid(role, "no `signatures` member"))?;
        if let Some(k) = map.keys().next() {
            return Err(Error::invalid(role, format!("unexpected member `{k}`")));
        }
        let signatures = match sigs {
            Value::Null => Vec::new(),
            other => serde_json::from_value(other)
                .map_err(|e| Error::invalid(role, format!("bad signatures: {e}")))?,
        };
        if !signed.is_object() {
            return Err(Error::invalid(role, "`signed` is not an object"));
        }
        Ok(Envelope { signed, signatures })
    }

    /// Canonical bytes of `signed`: what signatures cover.
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        canonical::to_vec(&self.signed).map_err(|e| Error::invalid("metadata", e.to_string()))
    }

    /// The file bytes exactly as Go's `json.Marshal` writes them.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>> {
        Ok(file_bytes(&self.signed_bytes()?, &self.signatures))
    }

    pub fn type_name(&self) -> Option<&str> {
        self.signed.get("_type").and_then(Value::as_str)
    }

    pub fn version(&self) -> u64 {
        self.signed
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// Splices canonical `signed` bytes verbatim (HTML-escaped as Go does) into the envelope.
pub fn file_bytes(signed_canonical: &[u8], signatures: &[Signature]) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed_canonical.len() + 200);
    out.extend_from_slice(b"{\"signed\":");
    out.extend_from_slice(&canonical::go_escape(signed_canonical));
    out.extend_from_slice(b",\"signatures\":[");
    for (i, s) in signatures.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Key IDs, methods and base64 never need escaping; canonical quoting handles the rest.
        let obj = serde_json::json!({"keyid": s.keyid, "method": s.method, "sig": s.sig});
        let c = canonical::to_vec(&obj).expect("strings only");
        out.extend_from_slice(&canonical::go_escape(&c));
    }
    out.extend_from_slice(b"]}");
    out
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Timestamp, D::Error> {
    let s = String::deserialize(d)?;
    super::time::parse(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("bad RFC 3339 time {s:?}")))
}

fn de_null_vec<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `{"keyids":[…],"threshold":N}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoleKeys {
    #[serde(deserialize_with = "de_null_vec")]
    pub keyids: Vec<String>,
    pub threshold: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    #[serde(deserialize_with = "de_time")]
    pub expires: Timestamp,
    pub version: u64,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<String, RoleKeys>,
}

/// `{"custom"?, "hashes", "length"}`; hashes are standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileMeta {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default)]
    pub custom: Option<Value>,
}

impl FileMeta {
    /// The sha256 digest, decoded.
    pub fn sha256(&self) -> Option<Vec<u8>> {
        self.hashes.get("sha256").and_then(|h| B64.decode(h).ok())
    }

    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256().map(hex::encode)
    }

    /// Checks `bytes` against every hash this meta announces (sha256, sha512). The length is
    /// an upper bound, as for the Go client (a download limit; the hashes are the truth): a
    /// shorter file with the right hashes is the file.
    pub fn check(&self, bytes: &[u8]) -> std::result::Result<(), String> {
        if bytes.len() as u64 > self.length {
            return Err(format!(
                "length {} above the announced {}",
                bytes.len(),
                self.length
            ));
        }
        let mut known = 0;
        for (alg, h) in &self.hashes {
            let want = B64
                .decode(h)
                .map_err(|_| format!("announced {alg} hash is not base64"))?;
            let got = match alg.as_str() {
                "sha256" => Sha256::digest(bytes).to_vec(),
                "sha512" => Sha512::digest(bytes).to_vec(),
                _ => continue,
            };
            known += 1;
            if got != want {
                return Err(format!("{alg} mismatch"));
            }
        }
        if known == 0 {
            return Err("no sha256/sha512 hash announced".into());
        }
        Ok(())
    }

    /// Meta of a file as a snapshot lists it (sha256 + sha512 + length).
    pub fn of_file(bytes: &[u8]) -> Value {
        serde_json::json!({
            "hashes": {
                "sha256": B64.encode(Sha256::digest(bytes)),
                "sha512": B64.encode(Sha512::digest(bytes)),
            },
            "length": bytes.len(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    #[serde(deserialize_with = "de_null_vec")]
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default, deserialize_with = "de_null_vec")]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Delegations {
    #[serde(default)]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(default)]
    pub roles: Vec<DelegatedRole>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Targets {
    #[serde(deserialize_with = "de_time")]
    pub expires: Timestamp,
    pub version: u64,
    #[serde(default)]
    pub targets: BTreeMap<String, FileMeta>,
    #[serde(default)]
    pub delegations: Delegations,
}

/// Snapshot and timestamp bodies.
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    #[serde(deserialize_with = "de_time")]
    pub expires: Timestamp,
    pub version: u64,
    pub meta: BTreeMap<String, FileMeta>,
}

/// Parses the typed view of `signed`, checking `_type` and `version >= 1`.
pub fn view<T: for<'de> Deserialize<'de>>(env: &Envelope, role: &str, ty: &str) -> Result<T> {
    match env.type_name() {
        Some(t) if t == ty => {}
        other => {
            return Err(Error::invalid(
                role,
                format!("expected type {ty}, not {}", other.unwrap_or("none")),
            ));
        }
    }
    if env.version() < 1 {
        return Err(Error::invalid(role, "version must be at least 1"));
    }
    // From the borrowed value: cloning the tree first cost as much as the deserialization.
    T::deserialize(&env.signed).map_err(|e| Error::invalid(role, e.to_string()))
}

/// The `_type` a role's file must carry.
pub fn type_of(role: &str) -> &'static str {
    match role {
        "root" => "Root",
        "snapshot" => "Snapshot",
        "timestamp" => "Timestamp",
        _ => "Targets",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reencodes_exactly_and_rejects_case_variants() {
        let f = br#"{"signed":{"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"2029-01-01T00:00:00Z","targets":{"a<&>b":{"hashes":{"sha256":"AA=="},"length":1}},"version":1},"signatures":[]}"#;
        let env = Envelope::parse("targets", f).unwrap();
        let out = env.to_file_bytes().unwrap();
        let expect = String::from_utf8(f.to_vec())
            .unwrap()
            .replace("a<&>b", "a\\u003c\\u0026\\u003eb");
        assert_eq!(String::from_utf8(out).unwrap(), expect);
        assert!(Envelope::parse("targets", br#"{"Signed":{},"signatures":[]}"#).is_err());
    }

    #[test]
    fn filemeta_check() {
        let m: FileMeta = serde_json::from_value(FileMeta::of_file(b"abc")).unwrap();
        assert!(m.check(b"abc").is_ok());
        assert!(m.check(b"abd").is_err());
        assert!(m.check(b"ab").is_err());
        // The length bounds the file; the hashes decide.
        let roomy = FileMeta {
            length: 1000,
            ..m.clone()
        };
        assert!(roomy.check(b"abc").is_ok());
        assert!(roomy.check(b"abd").is_err());
        let tight = FileMeta { length: 2, ..m };
        assert!(tight.check(b"abc").is_err());
    }
}
