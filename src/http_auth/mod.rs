//! HTTP authentication shared by the notary and registry clients, depending on neither:
//!
//! | piece | job |
//! |---|---|
//! | [`challenge`] | the one `WWW-Authenticate` parser (RFC 7235; fuzzed) |
//! | [`token`] | the Docker token flow: realm/service/scope, Basic credentials or a refresh token, the https-only realm rule with its per-server opt-in, the bounded token response, the token cache and expiry |
//! | [`counters`] | the one request counter type ([`RequestStats`]), feeding metrics and the debug line |
//! | [`body`] | the one bounded reader of response bodies |
//!
//! Errors are typed ([`token::TokenError`]); each client maps them to its own errors, so what
//! is transient, what is retried and what the messages say stay the client's.

pub mod body;
pub mod challenge;
pub mod counters;
pub mod token;

pub use challenge::{Challenge, parse_challenges};
pub use counters::RequestStats;

#[cfg(test)]
mod tests {
    /// `http_auth` is below both clients (and becomes its own crate later): it must not reach
    /// into either, nor above them.
    #[test]
    fn knows_neither_client() {
        // Spelled in two halves so that this test does not find itself.
        let banned = [
            concat!("crate", "::notary"),
            concat!("crate", "::registry"),
            concat!("crate", "::engine"),
            concat!("crate", "::controller"),
            concat!("crate", "::cli"),
            concat!("super", "::super"),
        ];
        for (file, src) in [
            ("mod.rs", include_str!("mod.rs")),
            ("body.rs", include_str!("body.rs")),
            ("challenge.rs", include_str!("challenge.rs")),
            ("counters.rs", include_str!("counters.rs")),
            ("token.rs", include_str!("token.rs")),
        ] {
            for line in src.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for b in banned {
                    assert!(!line.contains(b), "http_auth/{file} uses {b}: {line}");
                }
            }
        }
    }
}
