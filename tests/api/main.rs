//! authlab's integration tests: one binary (so it links once), one module per concern.
//! Each test starts the real app with `spawn_app()` and talks to it over HTTP, against the
//! machine's Redis and PostgreSQL (see README for what the suite needs).

mod at_rest;
mod binary;
mod client_cache;
mod cluster;
mod contract;
mod demo_page;
mod doc_facts;
mod doc_transcripts;
mod faults;
mod helpers;
mod http_defences;
mod http_edges;
mod idempotent_revocation;
mod jwt_forgery;
mod jwt_keys;
mod lifecycle;
mod metrics;
mod openapi;
mod password_policy;
mod postgres;
mod redis_cluster;
mod redis_pool;
mod scale_out;
mod sentinel;
mod shard_loss;
mod silent_replacement;
mod throttle;
mod users;
