//! trustkeeper: keeps Docker Content Trust (Notary v1 / TUF) trust metadata signed and fresh.
//!
//! Layers, each knowing only those below it:
//! `controller` (Kubernetes glue) → `engine` (resolve → plan → apply → verify → status)
//! → `notary` (TUF metadata, keys, server API) and `registry` (references, tags, digests),
//! which share `http_auth` (challenges, the token flow, request counters) and not each other;
//! `api` holds the SignedImage resource types that the engine reports into.

pub mod api;
pub mod cli;
pub mod controller;
pub mod engine;
pub mod formats;
pub mod http_auth;
pub mod notary;
pub mod registry;

pub mod tls;
