//! Findings and the report: what the diagnosis engine concludes from evidence.

use crate::engine::evidence::{Evidence, Role};
use serde::{Deserialize, Serialize};

/// Version of the JSON report (`schemaVersion`). Bump on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

pub use crate::engine::catalogue::Reason;

/// Root-cause families of Microsoft's "Troubleshoot network issues with registry".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cause {
    None,
    ClientFirewallOrProxy,
    PublicNetworkAccessRules,
    VirtualNetworkConfiguration,
    RegistryAuthentication,
    RegistryThrottling,
    RegistryUnavailable,
    /// The probe itself failed (scheduling, image, crash, deadline): nothing is known about
    /// the registry.
    ProbeInfrastructure,
    /// The operator's own target policy refused the check: a cluster administrator's choice,
    /// not a network fault. Nothing is known about the registry.
    OperatorPolicy,
    /// The check's own spec is unusable: nothing was probed.
    CheckConfiguration,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::ClientFirewallOrProxy => "ClientFirewallOrProxy",
            Self::PublicNetworkAccessRules => "PublicNetworkAccessRules",
            Self::VirtualNetworkConfiguration => "VirtualNetworkConfiguration",
            Self::RegistryAuthentication => "RegistryAuthentication",
            Self::RegistryThrottling => "RegistryThrottling",
            Self::RegistryUnavailable => "RegistryUnavailable",
            Self::ProbeInfrastructure => "ProbeInfrastructure",
            Self::OperatorPolicy => "OperatorPolicy",
            Self::CheckConfiguration => "CheckConfiguration",
        }
    }
}

/// How bad a finding is. `Error` breaks pulls; `Warning` is a risk or a partial failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "Error",
            Self::Warning => "Warning",
            Self::Info => "Info",
        }
    }
}

/// One conclusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub reason: Reason,
    pub cause: Cause,
    pub severity: Severity,
    /// The matching `az acr check-health` code, where one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The endpoint host the finding is about.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// One line naming the host, address and evidence.
    pub message: String,
    /// What to do. Left out of the compact form (the catalogue can restore it from `reason`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remediation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<String>,
}

/// Overall verdict of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Every probed path works.
    Healthy,
    /// The login server works, but something else does not (a data endpoint, an extra host,
    /// DNS servers that disagree): some pulls fail, or will.
    Degraded,
    /// The registry's API cannot be reached from here.
    Unreachable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Degraded => "Degraded",
            Self::Unreachable => "Unreachable",
        }
    }
}

/// The versioned report printed by `regcheck check --output json` and written by probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema_version: u32,
    pub verdict: Verdict,
    /// Primary finding first.
    pub findings: Vec<Finding>,
    /// Network context of an in-cluster probe (`regcheck probe --context`); absent for
    /// `regcheck check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ProbeContext>,
    /// Node an in-cluster probe ran on (`regcheck probe --node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub evidence: Evidence,
}

/// Network context of a probe.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
pub enum ProbeContext {
    /// Node network and node resolver (`hostNetwork`, `dnsPolicy: Default`).
    Node,
    /// Pod network and cluster DNS.
    Pod,
    /// The kubelet's own image pull (a pull canary pod): the runtime's network, proxy,
    /// mirrors, trust store and credentials.
    Kubelet,
}

impl ProbeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Pod => "pod",
            Self::Kubelet => "kubelet",
        }
    }
}
