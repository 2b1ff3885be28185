//! regcheck: finds out why a cluster cannot reach its container registry.
//!
//! Data flows one way: input → plan of endpoints (`target`) → probes (`probe`, the only
//! network I/O) → [`evidence::Evidence`] → diagnosis (pure) → [`findings::Report`] → output.

pub mod aggregate;
pub mod authparse;
pub mod catalogue;
pub mod check;
pub mod controller;
pub mod crd;
pub mod diagnosis;
pub mod dropin;
pub mod evidence;
pub mod findings;
pub mod hostsconfig;
pub mod jobs;
pub mod mirrors;
pub mod output;
pub mod plan;
pub mod platform;
pub mod policy;
pub mod probe;
pub mod probe_cmd;
pub mod proxy;
pub mod pullerror;
pub mod reference;
pub mod spec;
pub mod target;
