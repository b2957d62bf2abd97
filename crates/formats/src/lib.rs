//! Signature formats beside notary's TUF metadata, made from the same digests and keys:
//!
//! | module | job |
//! |---|---|
//! | [`cosign`] | the `sha256-<hex>.sig` tag layout, payloads and signatures (no I/O) |
//! | [`cosign_sign`] | reading, appending to and checking that tag in a registry |
//! | [`notation`] | Notation's certificate, JWS envelope, signature manifest, referrers index (no I/O) |
//! | [`notation_sign`] | pushing a Notation signature and its referrers entry, and checking them |
//!
//! Knows the registry client and the [`trustkeeper_notary::Signer`] seam, nothing above them.

pub mod cosign;
pub mod cosign_sign;
pub mod notation;
pub mod notation_sign;

use std::fmt;

/// A signature format a SignedImage or `trustkeeper sign --format` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Docker Content Trust (Notary v1 / TUF): the notary server's metadata.
    Notary,
    /// Sigstore cosign, the tag-based layout, key-based (no transparency log).
    Cosign,
    /// Notary Project (Notation) signatures: a JWS envelope among the registry's referrers.
    Notation,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Notary, Format::Cosign, Format::Notation];

    pub fn name(self) -> &'static str {
        match self {
            Format::Notary => "notary",
            Format::Cosign => "cosign",
            Format::Notation => "notation",
        }
    }

    /// Parses a format name (case-insensitive), saying which exist when it is none of them.
    pub fn parse(text: &str) -> Result<Format, String> {
        let t = text.trim();
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                format!("unknown signature format {t:?}: use notary, cosign or notation")
            })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
