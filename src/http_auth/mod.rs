//! HTTP authentication shared by the notary and registry clients, depending on neither:
//!
//! | piece | job |
//! |---|---|
//! | [`challenge`] | the one `WWW-Authenticate` parser (RFC 7235; fuzzed) |
//! | [`token`] | the Docker token flow: realm/service/scope, Basic credentials or a refresh token, the https-only realm rule with its per-server opt-in, the bounded token response, the token cache and expiry |
//! | [`counters`] | the one request counter type ([`RequestStats`]), feeding metrics and the debug line |
//!
//! Errors are typed ([`token::TokenError`]); each client maps them to its own errors, so what
//! is transient, what is retried and what the messages say stay the client's.

pub mod challenge;
pub mod counters;
pub mod token;

pub use challenge::{Challenge, parse_challenges};
pub use counters::RequestStats;
