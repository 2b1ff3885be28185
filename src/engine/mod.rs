//! The network diagnosis engine: what a client on this network sees on the way to a registry,
//! and why it fails. No Kubernetes types live here.

pub mod authparse;
pub mod catalogue;
pub mod check;
pub mod denial;
pub mod diagnosis;
pub mod dropin;
pub mod egress;
pub mod evidence;
pub mod findings;
pub mod hostsconfig;
pub mod inputs;
pub mod mirrors;
pub mod probe;
pub mod proxy;
pub mod pullerror;
pub mod report;
pub mod text;
