//! regcheck: finds out why a cluster cannot reach its container registry.
//!
//! Two domains and the programs over them:
//! - [`engine`]: the network diagnosis, with no Kubernetes types. Input → endpoint plan
//!   ([`engine::inputs`]) → probes ([`engine::probe`], the only network I/O) →
//!   [`engine::evidence::Evidence`] → [`engine::diagnosis`] (pure) → [`engine::findings::Report`]
//!   → [`engine::report`] (table, JSON, and the compact termination-message form).
//! - [`operator`]: the Kubernetes operator. Check → [`operator::spec::ValidSpec`] →
//!   [`operator::policy`] → node plan ([`operator::nodes`]) → probe Jobs ([`operator::jobs`]) →
//!   probe reports → [`operator::aggregate`] (pure) → status, Events, metrics
//!   ([`operator::controller`], the API calls).
//! - [`cli`]: the `regcheck` subcommands (`check`, `probe`, `explain`, `controller`, `crdgen`).
//! - [`generate`]: `docs/reasons.md` and the Prometheus alert rules, from the catalogue.

pub mod cli;
pub mod engine;
pub mod generate;
pub mod operator;
