//! Per-client request counters (for tests and metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// How many HTTP requests a [`super::RegistryClient`] sent, by kind. Every attempt counts,
/// including retries and requests answered 401.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `HEAD /v2/<repo>/manifests/<ref>`.
    pub head: u64,
    /// `GET /v2/<repo>/manifests/<ref>`.
    pub get: u64,
    /// `GET /v2/<repo>/tags/list` (one per page).
    pub tag_list: u64,
    /// Token endpoint requests.
    pub token: u64,
    /// Attempts repeated after a transient failure (429, 5xx, timeout, connection error).
    pub retries: u64,
    /// Responses with status 401 (first challenge, expired token or bad credentials).
    pub unauthorized: u64,
}

impl RequestStats {
    /// All requests sent to the registry and its token endpoint.
    pub fn total(&self) -> u64 {
        self.head + self.get + self.tag_list + self.token
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Head,
    Get,
    TagList,
    Token,
}

#[derive(Default)]
pub(crate) struct Counters {
    head: AtomicU64,
    get: AtomicU64,
    tag_list: AtomicU64,
    token: AtomicU64,
    retries: AtomicU64,
    unauthorized: AtomicU64,
}

impl Counters {
    pub(crate) fn sent(&self, kind: Kind) {
        let c = match kind {
            Kind::Head => &self.head,
            Kind::Get => &self.get,
            Kind::TagList => &self.tag_list,
            Kind::Token => &self.token,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> RequestStats {
        RequestStats {
            head: self.head.load(Ordering::Relaxed),
            get: self.get.load(Ordering::Relaxed),
            tag_list: self.tag_list.load(Ordering::Relaxed),
            token: self.token.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
        }
    }
}
