//! The Kubernetes operator: `RegistryConnectivityCheck`s become probe Jobs on the nodes' and
//! pods' networks, and the probes' reports become status conditions, Events and metrics.

pub mod aggregate;
pub mod canary;
pub mod controller;
pub mod crd;
pub mod jobs;
pub mod names;
pub mod nodes;
pub mod platform;
pub mod policy;
pub mod pullwatch;
pub mod spec;
