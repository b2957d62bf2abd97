//! Per-client request counters (for tests, metrics and the engine's debug line).

use std::sync::atomic::{AtomicU64, Ordering};

/// How many HTTP requests a client sent, by kind. Every attempt counts, including retries and
/// requests answered 401. A notary client sends GETs, POSTs and token requests; a registry
/// client HEADs, GETs, tag-list pages and token requests; the other kinds stay 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `HEAD /v2/<repo>/manifests/<ref>`.
    pub head: u64,
    /// GETs: registry manifests, notary metadata and keys.
    pub get: u64,
    /// POSTs (notary publishes, key rotations, registry blob uploads started).
    pub post: u64,
    /// PUTs (registry blob uploads finished, manifests pushed).
    pub put: u64,
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
    /// All requests sent to the server and its token endpoint.
    pub fn total(&self) -> u64 {
        self.head + self.get + self.post + self.put + self.tag_list + self.token
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Head,
    Get,
    Post,
    Put,
    TagList,
    Token,
}

/// The live counters behind a [`RequestStats`]: one atomic add per request.
#[derive(Debug, Default)]
pub struct Counters {
    head: AtomicU64,
    get: AtomicU64,
    post: AtomicU64,
    put: AtomicU64,
    tag_list: AtomicU64,
    token: AtomicU64,
    retries: AtomicU64,
    unauthorized: AtomicU64,
}

impl Counters {
    pub fn sent(&self, kind: Kind) {
        let c = match kind {
            Kind::Head => &self.head,
            Kind::Get => &self.get,
            Kind::Post => &self.post,
            Kind::Put => &self.put,
            Kind::TagList => &self.tag_list,
            Kind::Token => &self.token,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> RequestStats {
        RequestStats {
            head: self.head.load(Ordering::Relaxed),
            get: self.get.load(Ordering::Relaxed),
            post: self.post.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            tag_list: self.tag_list.load(Ordering::Relaxed),
            token: self.token.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_totals_requests_only() {
        let c = Counters::default();
        for k in [
            Kind::Head,
            Kind::Get,
            Kind::Get,
            Kind::Post,
            Kind::Put,
            Kind::TagList,
            Kind::Token,
        ] {
            c.sent(k);
        }
        c.retry();
        c.unauthorized();
        let s = c.snapshot();
        assert_eq!(
            s,
            RequestStats {
                head: 1,
                get: 2,
                post: 1,
                put: 1,
                tag_list: 1,
                token: 1,
                retries: 1,
                unauthorized: 1,
            }
        );
        // retries and 401s are attempts already counted by kind
        assert_eq!(s.total(), 7);
    }
}
