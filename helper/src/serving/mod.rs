//! Serving tenants: the accept loop, one connection's requests and their
//! frames, admission and fair scheduling per tenant, the shared service
//! state, counters and the audit log.

pub(crate) mod accounting;
pub(crate) mod admission;
pub(crate) mod audit;
pub(crate) mod connection;
pub(crate) mod fair_queue;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod stats;
pub(crate) mod wire;
