//! Findings and the report: what the diagnosis engine concludes from evidence.

use crate::evidence::{Evidence, Role};
use serde::{Deserialize, Serialize};

/// Version of the JSON report (`schemaVersion`). Bump on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Stable, CamelCase reasons. The serialised name is the API: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    Healthy,
    // DNS
    DNSNameNotFound,
    DNSServerUnreachable,
    DNSServerFailure,
    DNSAnswersDiffer,
    PrivateEndpointResolvesPublic,
    PrivateEndpointNotConfigured,
    DataEndpointDNSMissing,
    // TCP
    ConnectionTimedOut,
    ConnectionRefused,
    HostUnreachable,
    TargetAddressBlocked,
    // TLS
    TLSResetAfterClientHello,
    TLSHandshakeTimeout,
    TLSInterception,
    TLSCertificateInvalid,
    // HTTP / registry API
    HeadersTimeout,
    ConnectionClosed,
    RegistryDeniedClientIP,
    RegistryForbidden,
    RegistryChallengeInvalid,
    NotARegistry,
    Throttled,
    RegistryServerError,
    // Proxy
    ProxyDenied,
    ProxyAuthRequired,
    ProxyConnectEOF,
    ProxyUnreachable,
    ProxyBypassMissing,
    ProxyUpstreamFailed,
    // Data path
    DataEndpointBlocked,
    AuthenticationFailed,
    AuthorizationFailed,
    ImageNotFound,
    TooManyRedirects,
    PullFailed,
    // Operator: comparing contexts, and failures of the probe itself (not of the registry).
    ContextsDisagree,
    ProbeUnschedulable,
    ProbeImagePullFailed,
    ProbeCrashed,
    ProbeTimedOut,
    /// The API server refused to create the probe's Job (resource quota, admission webhook or
    /// policy engine, missing namespace): the probe never existed.
    ProbeNotCreated,
    /// The controller's target policy refuses the check (host, port or namespace not allowed);
    /// no probe ran.
    TargetNotAllowed,
}

impl Reason {
    /// Every reason, in declaration order (for tables, docs and exhaustive tests).
    pub const ALL: &'static [Reason] = &[
        Self::Healthy,
        Self::DNSNameNotFound,
        Self::DNSServerUnreachable,
        Self::DNSServerFailure,
        Self::DNSAnswersDiffer,
        Self::PrivateEndpointResolvesPublic,
        Self::PrivateEndpointNotConfigured,
        Self::DataEndpointDNSMissing,
        Self::ConnectionTimedOut,
        Self::ConnectionRefused,
        Self::HostUnreachable,
        Self::TargetAddressBlocked,
        Self::TLSResetAfterClientHello,
        Self::TLSHandshakeTimeout,
        Self::TLSInterception,
        Self::TLSCertificateInvalid,
        Self::HeadersTimeout,
        Self::ConnectionClosed,
        Self::RegistryDeniedClientIP,
        Self::RegistryForbidden,
        Self::RegistryChallengeInvalid,
        Self::NotARegistry,
        Self::Throttled,
        Self::RegistryServerError,
        Self::ProxyDenied,
        Self::ProxyAuthRequired,
        Self::ProxyConnectEOF,
        Self::ProxyUnreachable,
        Self::ProxyBypassMissing,
        Self::ProxyUpstreamFailed,
        Self::DataEndpointBlocked,
        Self::AuthenticationFailed,
        Self::AuthorizationFailed,
        Self::ImageNotFound,
        Self::TooManyRedirects,
        Self::PullFailed,
        Self::ContextsDisagree,
        Self::ProbeUnschedulable,
        Self::ProbeImagePullFailed,
        Self::ProbeCrashed,
        Self::ProbeTimedOut,
        Self::ProbeNotCreated,
        Self::TargetNotAllowed,
    ];

    /// Reasons that only the operator produces (from several probes, or from a probe that did
    /// not report); the diagnosis of one probe's evidence never does.
    pub const OPERATOR: &'static [Reason] = &[
        Self::ContextsDisagree,
        Self::ProbeUnschedulable,
        Self::ProbeImagePullFailed,
        Self::ProbeCrashed,
        Self::ProbeTimedOut,
        Self::ProbeNotCreated,
        Self::TargetNotAllowed,
    ];

    /// A failure of the probe itself, which says nothing about the registry.
    pub fn is_probe_failure(self) -> bool {
        matches!(
            self,
            Self::ProbeUnschedulable
                | Self::ProbeImagePullFailed
                | Self::ProbeCrashed
                | Self::ProbeTimedOut
                | Self::ProbeNotCreated
        )
    }

    pub fn as_str(self) -> &'static str {
        // serde gives the same names; this avoids allocating for labels and tables.
        match self {
            Self::Healthy => "Healthy",
            Self::DNSNameNotFound => "DNSNameNotFound",
            Self::DNSServerUnreachable => "DNSServerUnreachable",
            Self::DNSServerFailure => "DNSServerFailure",
            Self::DNSAnswersDiffer => "DNSAnswersDiffer",
            Self::PrivateEndpointResolvesPublic => "PrivateEndpointResolvesPublic",
            Self::PrivateEndpointNotConfigured => "PrivateEndpointNotConfigured",
            Self::DataEndpointDNSMissing => "DataEndpointDNSMissing",
            Self::ConnectionTimedOut => "ConnectionTimedOut",
            Self::ConnectionRefused => "ConnectionRefused",
            Self::HostUnreachable => "HostUnreachable",
            Self::TargetAddressBlocked => "TargetAddressBlocked",
            Self::TLSResetAfterClientHello => "TLSResetAfterClientHello",
            Self::TLSHandshakeTimeout => "TLSHandshakeTimeout",
            Self::TLSInterception => "TLSInterception",
            Self::TLSCertificateInvalid => "TLSCertificateInvalid",
            Self::HeadersTimeout => "HeadersTimeout",
            Self::ConnectionClosed => "ConnectionClosed",
            Self::RegistryDeniedClientIP => "RegistryDeniedClientIP",
            Self::RegistryForbidden => "RegistryForbidden",
            Self::RegistryChallengeInvalid => "RegistryChallengeInvalid",
            Self::NotARegistry => "NotARegistry",
            Self::Throttled => "Throttled",
            Self::RegistryServerError => "RegistryServerError",
            Self::ProxyDenied => "ProxyDenied",
            Self::ProxyAuthRequired => "ProxyAuthRequired",
            Self::ProxyConnectEOF => "ProxyConnectEOF",
            Self::ProxyUnreachable => "ProxyUnreachable",
            Self::ProxyBypassMissing => "ProxyBypassMissing",
            Self::ProxyUpstreamFailed => "ProxyUpstreamFailed",
            Self::DataEndpointBlocked => "DataEndpointBlocked",
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::AuthorizationFailed => "AuthorizationFailed",
            Self::ImageNotFound => "ImageNotFound",
            Self::TooManyRedirects => "TooManyRedirects",
            Self::PullFailed => "PullFailed",
            Self::ContextsDisagree => "ContextsDisagree",
            Self::ProbeUnschedulable => "ProbeUnschedulable",
            Self::ProbeImagePullFailed => "ProbeImagePullFailed",
            Self::ProbeCrashed => "ProbeCrashed",
            Self::ProbeTimedOut => "ProbeTimedOut",
            Self::ProbeNotCreated => "ProbeNotCreated",
            Self::TargetNotAllowed => "TargetNotAllowed",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub context: Option<crate::crd::ProbeContext>,
    /// Node an in-cluster probe ran on (`regcheck probe --node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub evidence: Evidence,
}
