//! What the notary and registry clients share, depending on neither: HTTP authentication, TLS
//! and the Go duration syntax both speak.
//!
//! | piece | job |
//! |---|---|
//! | [`challenge`] | the one `WWW-Authenticate` parser (RFC 7235; fuzzed) |
//! | [`token`] | the Docker token flow: realm/service/scope, Basic credentials or a refresh token, the https-only realm rule with its per-server opt-in, the bounded token response, the token cache and expiry |
//! | [`counters`] | the one request counter type ([`RequestStats`]), feeding metrics and the debug line |
//! | [`body`] | the one bounded reader of response bodies |
//! | [`tls`] | the one rustls provider, CA bundles added to the system roots, redirect policy |
//! | [`duration`] | Go durations (`720h`, `1h30m`) parsed, and written back for messages |
//!
//! Errors are typed ([`token::TokenError`]); each client maps them to its own errors, so what
//! is transient, what is retried and what the messages say stay the client's.

pub mod body;
pub mod challenge;
pub mod counters;
pub mod duration;
pub mod tls;
pub mod token;

pub use challenge::{Challenge, parse_challenges};
pub use counters::RequestStats;
pub use duration::human as human_duration;
