//! Controller-side target policy: which checks a cluster administrator lets users run.
//!
//! Pure: configuration parsing and evaluation, no I/O. The probe applies its own address rules
//! again ([`crate::engine::probe::TargetPolicy`]), so a forged Job spec gains nothing; this module is
//! the first gate, which refuses a spec before any Job is created.
//!
//! # Controller flags (each also as an environment variable)
//!
//! | flag | env | value | default |
//! |------|-----|-------|---------|
//! | `--node-context-namespaces` | `REGCHECK_NODE_CONTEXT_NAMESPACES` | `*` (all), or a comma list of namespaces (`team-a,team-b`) and namespace labels `key=value` (`regcheck.dev/node-probes=true`): a namespace that is listed or carries one of the labels may | `*` |
//! | `--allowed-registries` | `REGCHECK_ALLOWED_REGISTRIES` | `*` (any), or a comma list of host patterns: `myreg.azurecr.io` (exact), `*.azurecr.io` (any name below `azurecr.io`), IP literals | `*` |
//! | `--allowed-ports` | `REGCHECK_ALLOWED_PORTS` | comma list of ports | `443` |
//! | `--allowed-proxies` | `REGCHECK_ALLOWED_PROXIES` | `*` (any), empty (none: no `Explicit` proxy), or a comma list of host patterns (as for registries) that `spec.proxy.url` of an `Explicit` proxy may name | `*` |
//! | `--allowed-proxy-ports` | `REGCHECK_ALLOWED_PROXY_PORTS` | comma list of ports `spec.proxy.url` may use | `3128,8080,80,443` |
//! | `--allowed-node-strategies` | `REGCHECK_ALLOWED_NODE_STRATEGIES` | comma list of `PerNodePool`, `AllNodes`, `Sample` (`spec.contexts.node.strategy`) | all three |
//! | `--max-sample-nodes` | `REGCHECK_MAX_SAMPLE_NODES` | most nodes `spec.contexts.node.count` may ask for (1 to 1000) | `1000` |
//! | `--max-nodes-per-run` | `REGCHECK_MAX_NODES_PER_RUN` | most nodes a run of strategy `AllNodes` may plan; 0: no cap | `0` |
//! | `--min-interval` | `REGCHECK_MIN_INTERVAL` | shortest `spec.interval` (30s to 24h) | `30s` |
//!
//! Every cap refuses: a check beyond one gets `Ready=False`, reason `TargetNotAllowed`, a
//! message naming the spec field, its value and the flag. Nothing is silently clamped, so what
//! a check's status shows is what ran. `--max-nodes-per-run` needs the node inventory and is
//! checked when a run is planned ([`check_planned`]); the others before anything is planned.
//! The binary's defaults are the permissive ones above (older manifests keep working); the
//! Helm chart and `deploy/` set the multi-tenant ones (docs/install.md, "Multi-tenant
//! defaults and what to open up").
//!
//! Wiring in the controller (clap):
//! ```ignore
//! #[arg(long, env = policy::ENV_NODE_CONTEXT_NAMESPACES, default_value = "*")]
//! node_context_namespaces: String,
//! #[arg(long, env = policy::ENV_ALLOWED_REGISTRIES, default_value = "*")]
//! allowed_registries: String,
//! #[arg(long, env = policy::ENV_ALLOWED_PORTS, default_value = "443")]
//! allowed_ports: String,
//! #[arg(long, env = policy::ENV_ALLOWED_PROXIES, default_value = "*")]
//! allowed_proxies: String,
//! // ...
//! let policy = PolicyConfig::parse(&a.node_context_namespaces, &a.allowed_registries,
//!     &a.allowed_ports, &a.allowed_proxies)?;
//! ```
//!
//! Every host a check names is checked: the registry, its data endpoints, the data endpoints
//! derived from `regions`, the extra hosts, the egress hosts (`spec.egress`: each profile
//! rule's probed host and each plain host) and the image's registry prefix. Hosts reached only
//! at run time (a blob redirect to a storage account, a token realm) cannot be known here; the
//! probe's address rules cover them.
//!
//! A proxy is a host the probes connect to as well: with proxy mode `Explicit`, the host of
//! `spec.proxy.url` must match `--allowed-proxies` (and must not be an address probes never
//! dial), so that a user cannot make node probes open connections to an arbitrary host:port
//! by calling it a proxy, and its port must be in `--allowed-proxy-ports`. `Inherit` uses the administrator's `--node-proxy` or the pod's own
//! environment; `None` connects directly.

use crate::engine::findings::Reason;
use crate::engine::inputs::{self, HTTPS_PORT, InputError};
use crate::engine::probe::TargetPolicy;
use crate::operator::crd::Strategy;
use crate::operator::spec::{
    MAX_INTERVAL, MAX_SAMPLE, MIN_INTERVAL, NodeStrategy, ProxySetting, ValidSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

pub const FLAG_NODE_CONTEXT_NAMESPACES: &str = "--node-context-namespaces";
pub const ENV_NODE_CONTEXT_NAMESPACES: &str = "REGCHECK_NODE_CONTEXT_NAMESPACES";
pub const FLAG_ALLOWED_REGISTRIES: &str = "--allowed-registries";
pub const ENV_ALLOWED_REGISTRIES: &str = "REGCHECK_ALLOWED_REGISTRIES";
pub const FLAG_ALLOWED_PORTS: &str = "--allowed-ports";
pub const ENV_ALLOWED_PORTS: &str = "REGCHECK_ALLOWED_PORTS";
pub const FLAG_ALLOWED_PROXIES: &str = "--allowed-proxies";
pub const ENV_ALLOWED_PROXIES: &str = "REGCHECK_ALLOWED_PROXIES";
pub const FLAG_ALLOWED_PROXY_PORTS: &str = "--allowed-proxy-ports";
pub const ENV_ALLOWED_PROXY_PORTS: &str = "REGCHECK_ALLOWED_PROXY_PORTS";
pub const FLAG_ALLOWED_NODE_STRATEGIES: &str = "--allowed-node-strategies";
pub const ENV_ALLOWED_NODE_STRATEGIES: &str = "REGCHECK_ALLOWED_NODE_STRATEGIES";
pub const FLAG_MAX_SAMPLE_NODES: &str = "--max-sample-nodes";
pub const ENV_MAX_SAMPLE_NODES: &str = "REGCHECK_MAX_SAMPLE_NODES";
pub const FLAG_MAX_NODES_PER_RUN: &str = "--max-nodes-per-run";
pub const ENV_MAX_NODES_PER_RUN: &str = "REGCHECK_MAX_NODES_PER_RUN";
pub const FLAG_MIN_INTERVAL: &str = "--min-interval";
pub const ENV_MIN_INTERVAL: &str = "REGCHECK_MIN_INTERVAL";

/// Default of `--allowed-proxy-ports`: the usual ports of forward proxies (squid, the
/// common alternative, plain HTTP and HTTPS).
pub const DEFAULT_PROXY_PORTS: &str = "3128,8080,80,443";
/// Default of `--allowed-node-strategies`.
pub const DEFAULT_NODE_STRATEGIES: &str = "PerNodePool,AllNodes,Sample";

/// Rule names carried in [`Violation::rule`] (stable: they appear in status messages).
pub mod rules {
    pub const NODE_CONTEXT_NAMESPACES: &str = "node-context-namespaces";
    pub const ALLOWED_REGISTRIES: &str = "allowed-registries";
    pub const ALLOWED_PORTS: &str = "allowed-ports";
    pub const ALLOWED_PROXIES: &str = "allowed-proxies";
    pub const ALLOWED_PROXY_PORTS: &str = "allowed-proxy-ports";
    pub const ALLOWED_NODE_STRATEGIES: &str = "allowed-node-strategies";
    pub const MAX_SAMPLE_NODES: &str = "max-sample-nodes";
    pub const MAX_NODES_PER_RUN: &str = "max-nodes-per-run";
    pub const MIN_INTERVAL: &str = "min-interval";
    /// An IP literal that is one of the cluster's nodes' own addresses.
    pub const NODE_ADDRESS: &str = "node-address";
    /// An IP literal of a forbidden class (loopback, link-local/metadata, platform, ...).
    pub const FORBIDDEN_ADDRESS: &str = "forbidden-address";
}

/// Most entries accepted in one list flag (a bound on hostile configuration, not a real limit).
const MAX_ENTRIES: usize = 256;

/// Which namespaces may request node-context probes (they run on the nodes' own network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceRule {
    All,
    List(Vec<String>),
    /// The namespace must carry this label with this value.
    Label {
        key: String,
        value: String,
    },
    /// The namespace is one of `names` or carries one of `labels` (`key`, `value`).
    Either {
        names: Vec<String>,
        labels: Vec<(String, String)>,
    },
}

impl NamespaceRule {
    /// `*` (or empty) → all; otherwise a comma list whose entries are namespace names or
    /// labels `key=value`: names only → a list, one label alone → a label, else either.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        const F: &str = FLAG_NODE_CONTEXT_NAMESPACES;
        let t = s.trim();
        if t.is_empty() || t == "*" {
            return Ok(Self::All);
        }
        let mut names: Vec<String> = Vec::new();
        let mut labels: Vec<(String, String)> = Vec::new();
        for part in t.split(',') {
            let entry = part.trim();
            if entry.is_empty() {
                return Err(InputError::new(
                    F,
                    s,
                    "has an empty entry; give namespaces or labels key=value separated by commas, or '*' for all",
                ));
            }
            if entry == "*" {
                return Err(InputError::new(
                    F,
                    s,
                    "mixes '*' with namespace names; give '*' alone",
                ));
            }
            if let Some((k, v)) = entry.split_once('=') {
                let (k, v) = (k.trim(), v.trim());
                if !valid_label_key(k) {
                    return Err(InputError::new(
                        F,
                        s,
                        "is not a label selector key=value: the key must be a Kubernetes label key ([prefix/]name, name up to 63 of letters, digits, '-', '_', '.')",
                    ));
                }
                if !crate::operator::names::is_label_value(v) {
                    return Err(InputError::new(
                        F,
                        s,
                        "has an invalid label value: up to 63 letters, digits, '-', '_', '.', starting and ending alphanumeric",
                    ));
                }
                let l = (k.to_string(), v.to_string());
                if !labels.contains(&l) {
                    labels.push(l);
                }
                continue;
            }
            if !crate::operator::names::is_dns_label(entry) {
                return Err(InputError::new(
                    F,
                    s,
                    format!(
                        "has '{}', which is not a namespace name (lowercase letters, digits and '-', at most 63)",
                        inputs::shown_value(entry)
                    ),
                ));
            }
            if !names.iter().any(|o| o == entry) {
                names.push(entry.to_string());
            }
        }
        if names.len() + labels.len() > MAX_ENTRIES {
            return Err(InputError::new(
                F,
                s,
                format!("lists more than {MAX_ENTRIES} entries; use a namespace label instead"),
            ));
        }
        Ok(match (names.is_empty(), labels.len()) {
            (_, 0) => Self::List(names),
            (true, 1) => {
                let (key, value) = labels.remove(0);
                Self::Label { key, value }
            }
            _ => Self::Either { names, labels },
        })
    }

    pub fn allows(&self, namespace: &str, ns_labels: &BTreeMap<String, String>) -> bool {
        let has = |k: &String, v: &String| ns_labels.get(k) == Some(v);
        match self {
            Self::All => true,
            Self::List(l) => l.iter().any(|n| n == namespace),
            Self::Label { key, value } => has(key, value),
            Self::Either { names, labels } => {
                names.iter().any(|n| n == namespace) || labels.iter().any(|(k, v)| has(k, v))
            }
        }
    }

    /// Whether deciding needs the namespace's labels.
    fn uses_labels(&self) -> bool {
        matches!(self, Self::Label { .. } | Self::Either { .. })
    }

    fn describe(&self) -> String {
        match self {
            Self::All => "all namespaces".into(),
            Self::List(l) => format!("namespaces {}", l.join(", ")),
            Self::Label { key, value } => format!("namespaces labelled {key}={value}"),
            Self::Either { names, labels } => {
                let mut parts = Vec::new();
                if !names.is_empty() {
                    parts.push(format!("namespaces {}", names.join(", ")));
                }
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                parts.push(format!("namespaces labelled {}", l.join(" or ")));
                parts.join(" or ")
            }
        }
    }
}

/// One allowed host: exact name, `*.suffix` (any name below the suffix, at any depth), an IP
/// literal, or anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// Stored without the `*.`: `azurecr.io` matches `a.azurecr.io` and `a.b.azurecr.io`, not
    /// `azurecr.io` itself.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        let t = s.trim();
        if t == "*" {
            return Ok(Self::Any);
        }
        if let Some(rest) = t.strip_prefix("*.") {
            if rest.contains('*') {
                return Err(InputError::new(
                    field,
                    s,
                    "has '*' other than as the whole first label (*.example.com)",
                ));
            }
            let name = inputs::validate_host(field, rest)?;
            if name.parse::<IpAddr>().is_ok() {
                return Err(InputError::new(
                    field,
                    s,
                    "puts '*.' before an IP address; give IP addresses alone",
                ));
            }
            if !name.contains('.') {
                return Err(InputError::new(
                    field,
                    s,
                    "is too broad: '*.' needs a domain with at least two labels (*.azurecr.io)",
                ));
            }
            return Ok(Self::Suffix(name));
        }
        if t.contains('*') {
            return Err(InputError::new(
                field,
                s,
                "has '*' other than as the whole first label (*.example.com) or alone",
            ));
        }
        if t.contains(':')
            && !t.contains("://")
            && !t.starts_with('[')
            && t.parse::<IpAddr>().is_err()
        {
            return Err(InputError::new(
                field,
                s,
                if field == FLAG_ALLOWED_PROXIES {
                    format!(
                        "contains a port; give host patterns only and proxy ports in {FLAG_ALLOWED_PROXY_PORTS}"
                    )
                } else {
                    format!(
                        "contains a port; give host patterns only and ports in {FLAG_ALLOWED_PORTS}"
                    )
                },
            ));
        }
        Ok(Self::Exact(inputs::validate_host(field, t)?))
    }

    /// `host` must already be validated (lowercase, no trailing dot, IPv6 unbracketed).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => e == host,
            Self::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(e) => f.write_str(e),
            Self::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

/// The controller's target policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub node_context_namespaces: NamespaceRule,
    pub registry_hosts: Vec<HostPattern>,
    pub allowed_ports: Vec<u16>,
    /// Hosts an `Explicit` proxy may name (empty: no `Explicit` proxy).
    pub proxy_hosts: Vec<HostPattern>,
    /// Ports an `Explicit` proxy may use.
    pub proxy_ports: Vec<u16>,
    pub caps: Caps,
}

/// The administrator's caps on how much a check may ask of the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// Allowed `spec.contexts.node.strategy` values.
    pub node_strategies: Vec<Strategy>,
    /// Most nodes a `Sample` strategy may ask for.
    pub max_sample_nodes: u32,
    /// Most nodes a run of strategy `AllNodes` may plan (0: no cap).
    pub max_nodes_per_run: u32,
    /// Shortest `spec.interval`.
    pub min_interval: Duration,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            node_strategies: vec![Strategy::PerNodePool, Strategy::AllNodes, Strategy::Sample],
            max_sample_nodes: MAX_SAMPLE,
            max_nodes_per_run: 0,
            min_interval: MIN_INTERVAL,
        }
    }
}

impl Caps {
    /// From the flag values (see the module documentation).
    pub fn parse(
        strategies: &str,
        max_sample_nodes: u32,
        max_nodes_per_run: u32,
        min_interval: &str,
    ) -> Result<Self, InputError> {
        if !(1..=MAX_SAMPLE).contains(&max_sample_nodes) {
            return Err(InputError::new(
                FLAG_MAX_SAMPLE_NODES,
                &max_sample_nodes.to_string(),
                format!("is not between 1 and {MAX_SAMPLE}"),
            ));
        }
        let min = inputs::parse_duration(FLAG_MIN_INTERVAL, min_interval, MAX_INTERVAL)?;
        if min < MIN_INTERVAL {
            return Err(InputError::new(
                FLAG_MIN_INTERVAL,
                min_interval,
                "is shorter than 30s, the shortest interval a check may have anyway",
            ));
        }
        Ok(Self {
            node_strategies: parse_strategies(strategies)?,
            max_sample_nodes,
            max_nodes_per_run,
            min_interval: min,
        })
    }
}

/// Comma-separated strategy names (`PerNodePool`, `AllNodes`, `Sample`, any case); at least
/// one.
pub fn parse_strategies(s: &str) -> Result<Vec<Strategy>, InputError> {
    const F: &str = FLAG_ALLOWED_NODE_STRATEGIES;
    let mut out = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        let st = match p.to_ascii_lowercase().as_str() {
            "pernodepool" => Strategy::PerNodePool,
            "allnodes" => Strategy::AllNodes,
            "sample" => Strategy::Sample,
            _ => {
                return Err(InputError::new(
                    F,
                    s,
                    format!(
                        "has '{}', which is not a strategy: give PerNodePool, AllNodes and/or Sample, comma separated",
                        inputs::shown_value(p)
                    ),
                ));
            }
        };
        if !out.contains(&st) {
            out.push(st);
        }
    }
    Ok(out)
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::PerNodePool => "PerNodePool",
        Strategy::AllNodes => "AllNodes",
        Strategy::Sample => "Sample",
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            node_context_namespaces: NamespaceRule::All,
            registry_hosts: vec![HostPattern::Any],
            allowed_ports: vec![HTTPS_PORT],
            proxy_hosts: vec![HostPattern::Any],
            proxy_ports: parse_proxy_ports(DEFAULT_PROXY_PORTS).expect("valid default"),
            caps: Caps::default(),
        }
    }
}

/// `*` or empty → any registry host; otherwise comma-separated [`HostPattern`]s.
pub fn parse_registry_hosts(s: &str) -> Result<Vec<HostPattern>, InputError> {
    parse_host_patterns(FLAG_ALLOWED_REGISTRIES, s)
}

/// `*` → any proxy host; empty → none (no `Explicit` proxy is allowed); otherwise
/// comma-separated [`HostPattern`]s.
pub fn parse_proxy_hosts(s: &str) -> Result<Vec<HostPattern>, InputError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    parse_host_patterns(FLAG_ALLOWED_PROXIES, s)
}

fn parse_host_patterns(flag: &str, s: &str) -> Result<Vec<HostPattern>, InputError> {
    let t = s.trim();
    if t.is_empty() || t == "*" {
        return Ok(vec![HostPattern::Any]);
    }
    let mut out = Vec::new();
    for part in t.split(',') {
        if part.trim().is_empty() {
            return Err(InputError::new(
                flag,
                s,
                "has an empty entry; give host patterns separated by commas, or '*' for any",
            ));
        }
        let p = HostPattern::parse(flag, part)?;
        if p == HostPattern::Any {
            return Err(InputError::new(
                flag,
                s,
                "mixes '*' with host patterns; give '*' alone",
            ));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.len() > MAX_ENTRIES {
        return Err(InputError::new(
            flag,
            s,
            format!("lists more than {MAX_ENTRIES} patterns; use *.domain patterns"),
        ));
    }
    Ok(out)
}

/// Comma-separated ports (1 to 65535); at least one.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, InputError> {
    parse_port_list(FLAG_ALLOWED_PORTS, s)
}

/// Comma-separated proxy ports (1 to 65535); at least one.
pub fn parse_proxy_ports(s: &str) -> Result<Vec<u16>, InputError> {
    parse_port_list(FLAG_ALLOWED_PROXY_PORTS, s)
}

fn parse_port_list(flag: &str, s: &str) -> Result<Vec<u16>, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(InputError::new(
            flag,
            s,
            "is empty; give at least one port, e.g. 443",
        ));
    }
    let mut out = Vec::new();
    for part in t.split(',') {
        let p = part.trim();
        let port = match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && p.bytes().all(|b| b.is_ascii_digit()) => n as u16,
            _ => {
                return Err(InputError::new(
                    flag,
                    s,
                    format!(
                        "has '{}', which is not a port (1 to 65535)",
                        inputs::shown_value(p)
                    ),
                ));
            }
        };
        if !out.contains(&port) {
            out.push(port);
        }
    }
    Ok(out)
}

impl PolicyConfig {
    /// From the three flag values (see the module documentation).
    pub fn parse(
        node_context_namespaces: &str,
        allowed_registries: &str,
        allowed_ports: &str,
        allowed_proxies: &str,
    ) -> Result<Self, InputError> {
        Ok(Self {
            node_context_namespaces: NamespaceRule::parse(node_context_namespaces)?,
            registry_hosts: parse_registry_hosts(allowed_registries)?,
            allowed_ports: parse_ports(allowed_ports)?,
            proxy_hosts: parse_proxy_hosts(allowed_proxies)?,
            proxy_ports: parse_proxy_ports(DEFAULT_PROXY_PORTS)?,
            caps: Caps::default(),
        })
    }

    /// With `--allowed-proxy-ports`.
    pub fn with_proxy_ports(mut self, ports: &str) -> Result<Self, InputError> {
        self.proxy_ports = parse_proxy_ports(ports)?;
        Ok(self)
    }

    /// With the caps.
    pub fn with_caps(mut self, caps: Caps) -> Self {
        self.caps = caps;
        self
    }

    /// From environment variables only (unset → default).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, InputError> {
        let or = |k: &str, d: &str| get(k).unwrap_or_else(|| d.to_string());
        let named = |e: InputError, env: &str| InputError {
            field: env.into(),
            ..e
        };
        Ok(Self {
            node_context_namespaces: NamespaceRule::parse(&or(ENV_NODE_CONTEXT_NAMESPACES, "*"))
                .map_err(|e| named(e, ENV_NODE_CONTEXT_NAMESPACES))?,
            registry_hosts: parse_registry_hosts(&or(ENV_ALLOWED_REGISTRIES, "*"))
                .map_err(|e| named(e, ENV_ALLOWED_REGISTRIES))?,
            allowed_ports: parse_ports(&or(ENV_ALLOWED_PORTS, "443"))
                .map_err(|e| named(e, ENV_ALLOWED_PORTS))?,
            proxy_hosts: parse_proxy_hosts(&or(ENV_ALLOWED_PROXIES, "*"))
                .map_err(|e| named(e, ENV_ALLOWED_PROXIES))?,
            proxy_ports: parse_proxy_ports(&or(ENV_ALLOWED_PROXY_PORTS, DEFAULT_PROXY_PORTS))
                .map_err(|e| named(e, ENV_ALLOWED_PROXY_PORTS))?,
            caps: {
                let number = |env: &str, d: u32| -> Result<u32, InputError> {
                    let v = or(env, &d.to_string());
                    v.trim()
                        .parse()
                        .map_err(|_| InputError::new(env, &v, "is not a whole number"))
                };
                Caps::parse(
                    &or(ENV_ALLOWED_NODE_STRATEGIES, DEFAULT_NODE_STRATEGIES),
                    number(ENV_MAX_SAMPLE_NODES, MAX_SAMPLE)?,
                    number(ENV_MAX_NODES_PER_RUN, 0)?,
                    &or(ENV_MIN_INTERVAL, "30s"),
                )
                .map_err(|e| {
                    let env = match e.field.as_str() {
                        FLAG_ALLOWED_NODE_STRATEGIES => ENV_ALLOWED_NODE_STRATEGIES,
                        FLAG_MAX_SAMPLE_NODES => ENV_MAX_SAMPLE_NODES,
                        _ => ENV_MIN_INTERVAL,
                    };
                    named(e, env)
                })?
            },
        })
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.registry_hosts.iter().any(|p| p.matches(host))
    }

    /// Whether the node-context namespace rule needs the namespace's labels (the controller
    /// reads the Namespace only then).
    pub fn needs_namespace_labels(&self, spec: &ValidSpec) -> bool {
        spec.node_enabled && self.node_context_namespaces.uses_labels()
    }
}

/// Why a spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {message}")]
pub struct Violation {
    /// One of [`rules`].
    pub rule: &'static str,
    /// Names the host/port/namespace and the rule's setting.
    pub message: String,
}

impl Violation {
    /// The finding reason of a refused spec.
    pub const REASON: Reason = Reason::TargetNotAllowed;

    /// `Ready=False`, reason `TargetNotAllowed`, message naming the rule.
    pub fn ready_condition(&self, generation: Option<i64>, now: &Time) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: Self::REASON.as_str().into(),
            message: crate::engine::text::clip_line(&self.to_string(), 1024),
            observed_generation: generation,
            last_transition_time: now.clone(),
        }
    }
}

/// Checks a spec against the policy: every host it names against the allowed host patterns
/// and ports, IP literals against the addresses probes never dial, and node-context probes
/// against the namespace rule. The first violation found is returned.
pub fn evaluate(
    spec: &ValidSpec,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    cfg: &PolicyConfig,
) -> Result<(), Violation> {
    let addresses = TargetPolicy::in_cluster(Vec::new());
    // The egress hosts are dialled like the registry: the same rules apply to them.
    let egress = spec.egress.targets.iter().map(|t| {
        let what = if t.rule.fqdn == t.host {
            format!("egress host {} ({})", t.host, t.rule.source)
        } else {
            format!(
                "egress host {} ({} rule {})",
                t.host, t.rule.source, t.rule.fqdn
            )
        };
        (what, t.host.as_str(), t.port)
    });
    let hosts = spec
        .endpoints
        .iter()
        .map(|ep| {
            (
                format!("{} {}", role_name(ep.role), ep.host),
                ep.host.as_str(),
                ep.port,
            )
        })
        .chain(egress);
    for (what, host, port) in hosts {
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Err(rule) = addresses.check(ip)
        {
            return Err(Violation {
                rule: rules::FORBIDDEN_ADDRESS,
                message: format!("{what} is refused: {rule}"),
            });
        }
        if !cfg.host_allowed(host) {
            let list: Vec<String> = cfg.registry_hosts.iter().map(|p| p.to_string()).collect();
            return Err(Violation {
                rule: rules::ALLOWED_REGISTRIES,
                message: format!(
                    "{what} matches none of the allowed registry hosts ({FLAG_ALLOWED_REGISTRIES}={})",
                    inputs::shown_value(&list.join(","))
                ),
            });
        }
        if !cfg.allowed_ports.contains(&port) {
            let list: Vec<String> = cfg.allowed_ports.iter().map(|p| p.to_string()).collect();
            return Err(Violation {
                rule: rules::ALLOWED_PORTS,
                message: format!(
                    "{what} uses port {}, which is not allowed ({FLAG_ALLOWED_PORTS}={})",
                    port,
                    list.join(",")
                ),
            });
        }
    }
    if let ProxySetting::Explicit { url: proxy, .. } = &spec.proxy {
        let host = proxy.host.trim_end_matches('.');
        let what = format!("proxy {host}");
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Err(rule) = addresses.check(ip)
        {
            return Err(Violation {
                rule: rules::FORBIDDEN_ADDRESS,
                message: format!("{what} is refused: {rule}"),
            });
        }
        if cfg.proxy_hosts.is_empty() {
            return Err(Violation {
                rule: rules::ALLOWED_PROXIES,
                message: format!(
                    "{what} (spec.proxy.url) is refused: no Explicit proxy is allowed ({FLAG_ALLOWED_PROXIES} is empty); use proxy mode Inherit (the administrator's --node-proxy) or None, or ask for the proxy to be allowed"
                ),
            });
        }
        if !cfg.proxy_hosts.iter().any(|p| p.matches(host)) {
            let list: Vec<String> = cfg.proxy_hosts.iter().map(|p| p.to_string()).collect();
            return Err(Violation {
                rule: rules::ALLOWED_PROXIES,
                message: format!(
                    "{what} (spec.proxy.url) matches none of the allowed proxy hosts ({FLAG_ALLOWED_PROXIES}={})",
                    inputs::shown_value(&list.join(","))
                ),
            });
        }
        if !cfg.proxy_ports.contains(&proxy.port) {
            let list: Vec<String> = cfg.proxy_ports.iter().map(|p| p.to_string()).collect();
            return Err(Violation {
                rule: rules::ALLOWED_PROXY_PORTS,
                message: format!(
                    "{what} (spec.proxy.url) uses port {}, which is not an allowed proxy port ({FLAG_ALLOWED_PROXY_PORTS}={})",
                    proxy.port,
                    list.join(",")
                ),
            });
        }
    }
    if spec.node_enabled
        && !cfg
            .node_context_namespaces
            .allows(namespace, namespace_labels)
    {
        return Err(Violation {
            rule: rules::NODE_CONTEXT_NAMESPACES,
            message: format!(
                "namespace {} may not request node-context probes (allowed: {}, {FLAG_NODE_CONTEXT_NAMESPACES}); set spec.contexts.node.enabled=false",
                inputs::shown_value(namespace),
                cfg.node_context_namespaces.describe()
            ),
        });
    }
    evaluate_caps(spec, &cfg.caps)
}

/// The administrator's caps that the spec alone decides: interval, strategy, sample size.
fn evaluate_caps(spec: &ValidSpec, caps: &Caps) -> Result<(), Violation> {
    if spec.interval < caps.min_interval {
        let min = inputs::format_duration(caps.min_interval);
        return Err(Violation {
            rule: rules::MIN_INTERVAL,
            message: format!(
                "spec.interval {} is shorter than the administrator's minimum ({FLAG_MIN_INTERVAL}={min}); set spec.interval to {min} or more",
                inputs::format_duration(spec.interval)
            ),
        });
    }
    let strategy = match spec.node_strategy {
        NodeStrategy::PerNodePool => Strategy::PerNodePool,
        NodeStrategy::AllNodes => Strategy::AllNodes,
        NodeStrategy::Sample(_) => Strategy::Sample,
    };
    if !caps.node_strategies.contains(&strategy) {
        let list: Vec<&str> = caps
            .node_strategies
            .iter()
            .map(|s| strategy_name(*s))
            .collect();
        return Err(Violation {
            rule: rules::ALLOWED_NODE_STRATEGIES,
            message: format!(
                "spec.contexts.node.strategy {} is not allowed ({FLAG_ALLOWED_NODE_STRATEGIES}={})",
                strategy_name(strategy),
                list.join(",")
            ),
        });
    }
    if let NodeStrategy::Sample(n) = spec.node_strategy
        && n > caps.max_sample_nodes
    {
        return Err(Violation {
            rule: rules::MAX_SAMPLE_NODES,
            message: format!(
                "spec.contexts.node.count {n} is more than the administrator allows ({FLAG_MAX_SAMPLE_NODES}={}); ask for {} nodes or fewer",
                caps.max_sample_nodes, caps.max_sample_nodes
            ),
        });
    }
    Ok(())
}

/// The caps that need the run's plan: strategy `AllNodes` planned `nodes` nodes. Refused, not
/// truncated: a run over part of "all nodes" would look like a run over all of them.
pub fn check_planned(spec: &ValidSpec, nodes: usize, caps: &Caps) -> Result<(), Violation> {
    let max = caps.max_nodes_per_run as usize;
    if spec.node_strategy == NodeStrategy::AllNodes && max > 0 && nodes > max {
        return Err(Violation {
            rule: rules::MAX_NODES_PER_RUN,
            message: format!(
                "spec.contexts.node.strategy AllNodes plans {nodes} nodes, more than the administrator allows in one run ({FLAG_MAX_NODES_PER_RUN}={max}); narrow spec.contexts.node.nodeSelector, or use strategy PerNodePool or Sample"
            ),
        });
    }
    Ok(())
}

/// Refuses IP literals among the spec's hosts and its Explicit proxy that are one of the
/// cluster's nodes' own addresses (`node_addresses`, both families): a probe on one node's
/// host network must not be pointed at another node. The probe refuses its own node's
/// addresses again ([`TargetPolicy`]). `node_addresses` is called only when some host is an
/// IP literal (the inventory's addresses are not collected for every run of every check).
pub fn check_node_addresses(
    spec: &ValidSpec,
    node_addresses: impl FnOnce() -> Vec<IpAddr>,
) -> Result<(), Violation> {
    let proxy = match &spec.proxy {
        ProxySetting::Explicit { url, .. } => Some(("proxy", url.host.trim_end_matches('.'))),
        _ => None,
    };
    let literals: Vec<(&str, &str, IpAddr)> = spec
        .endpoints
        .iter()
        .map(|ep| (role_name(ep.role), ep.host.as_str()))
        .chain(proxy)
        .filter_map(|(role, host)| Some((role, host, host.parse::<IpAddr>().ok()?)))
        .collect();
    if literals.is_empty() {
        return Ok(());
    }
    let own = TargetPolicy::in_cluster(node_addresses());
    for (role, host, ip) in literals {
        if own.check(ip) == Err(crate::engine::probe::NODE_ADDRESS_RULE) {
            return Err(Violation {
                rule: rules::NODE_ADDRESS,
                message: format!(
                    "{role} {host} is refused: it is an address of one of the cluster's nodes, which probes never dial"
                ),
            });
        }
    }
    Ok(())
}

fn role_name(role: crate::engine::evidence::Role) -> &'static str {
    match role {
        crate::engine::evidence::Role::LoginServer => "registry",
        crate::engine::evidence::Role::DataEndpoint => "data endpoint",
        crate::engine::evidence::Role::Extra => "extra host",
        crate::engine::evidence::Role::Mirror => "mirror",
        crate::engine::evidence::Role::Egress => "egress host",
    }
}

fn valid_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p.split('.').all(|l| {
                crate::operator::names::is_dns_label(&l.to_ascii_lowercase())
                    && l == l.to_ascii_lowercase()
            }))
    {
        return false;
    }
    !name.is_empty() && crate::operator::names::is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::RegistryConnectivityCheckSpec;

    /// What a spec that does not even parse gets in these tables: the controller refuses it
    /// as InvalidSpec before the policy is asked.
    const INVALID_TARGET: &str = "invalid-target";

    /// The policy's answer for a spec as a user wrote it.
    fn evaluate(
        spec: &RegistryConnectivityCheckSpec,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        cfg: &PolicyConfig,
    ) -> Result<(), Violation> {
        let valid = ValidSpec::parse(spec).map_err(|e| Violation {
            rule: INVALID_TARGET,
            message: e.to_string(),
        })?;
        super::evaluate(&valid, namespace, labels, cfg)
    }

    fn spec(registry: &str) -> RegistryConnectivityCheckSpec {
        serde_json::from_value(serde_json::json!({ "registry": registry })).unwrap()
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespace_rules_parse() {
        let ok = [
            ("", NamespaceRule::All),
            ("*", NamespaceRule::All),
            (" * ", NamespaceRule::All),
            (
                "team-a, team-b,team-a",
                NamespaceRule::List(vec!["team-a".into(), "team-b".into()]),
            ),
            (
                "regcheck.dev/node-probes=true",
                NamespaceRule::Label {
                    key: "regcheck.dev/node-probes".into(),
                    value: "true".into(),
                },
            ),
            (
                "tier=",
                NamespaceRule::Label {
                    key: "tier".into(),
                    value: "".into(),
                },
            ),
        ];
        for (s, want) in ok {
            assert_eq!(NamespaceRule::parse(s).unwrap(), want, "{s:?}");
        }
        let bad = [
            ("a,,b", "empty entry"),
            ("*,team-a", "mixes '*'"),
            ("Team-A", "not a namespace name"),
            ("-a", "not a namespace name"),
            ("=x", "label key"),
            ("a b=c", "label key"),
            ("k=-bad", "label value"),
            ("k=a b", "label value"),
            ("Bad_Prefix./k=v", "label key"),
        ];
        for (s, want) in bad {
            let e = NamespaceRule::parse(s).unwrap_err();
            assert_eq!(e.field, FLAG_NODE_CONTEXT_NAMESPACES, "{s:?}");
            assert!(e.to_string().contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn namespace_rules_allow() {
        let list = NamespaceRule::parse("team-a").unwrap();
        let label = NamespaceRule::parse("probes=yes").unwrap();
        let cases = [
            (&NamespaceRule::All, "x", labels(&[]), true),
            (&list, "team-a", labels(&[]), true),
            (&list, "team-b", labels(&[]), false),
            (&label, "x", labels(&[("probes", "yes")]), true),
            (&label, "x", labels(&[("probes", "no")]), false),
            (&label, "x", labels(&[]), false),
        ];
        for (rule, ns, l, want) in cases {
            assert_eq!(rule.allows(ns, &l), want, "{rule:?} {ns}");
        }
    }

    #[test]
    fn host_patterns() {
        let cases = [
            ("*", "anything.example", true),
            ("*.azurecr.io", "myreg.azurecr.io", true),
            ("*.azurecr.io", "myreg.westeurope.data.azurecr.io", true),
            ("*.azurecr.io", "azurecr.io", false),
            ("*.azurecr.io", "evilazurecr.io", false),
            ("*.azurecr.io", "myreg.azurecr.io.evil.com", false),
            ("myreg.azurecr.io", "myreg.azurecr.io", true),
            ("MyReg.AzureCR.io.", "myreg.azurecr.io", true),
            ("myreg.azurecr.io", "other.azurecr.io", false),
            ("myreg.azurecr.io", "a.myreg.azurecr.io", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("[fd00::1]", "fd00::1", true),
        ];
        for (p, host, want) in cases {
            let pat = HostPattern::parse("--allowed-registries", p).unwrap();
            assert_eq!(pat.matches(host), want, "{p} vs {host}");
        }
    }

    #[test]
    fn registry_lists_parse_with_errors_naming_the_flag() {
        assert_eq!(parse_registry_hosts("").unwrap(), vec![HostPattern::Any]);
        assert_eq!(
            parse_registry_hosts("*.azurecr.io, registry.example.com").unwrap(),
            vec![
                HostPattern::Suffix("azurecr.io".into()),
                HostPattern::Exact("registry.example.com".into())
            ]
        );
        let bad = [
            ("*.azurecr.io,", "empty entry"),
            ("*,a.io", "mixes '*'"),
            ("a.*.io", "'*'"),
            ("*.*.io", "'*'"),
            ("*.io", "too broad"),
            ("*.10.0.0.1", "IP address"),
            ("reg.io:5000", "contains a port"),
            ("https://reg.io", "URL scheme"),
            ("reg io", "whitespace"),
        ];
        for (s, want) in bad {
            let e = parse_registry_hosts(s).unwrap_err();
            assert_eq!(e.field, FLAG_ALLOWED_REGISTRIES, "{s:?}");
            assert!(e.to_string().contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn ports_parse() {
        assert_eq!(parse_ports("443").unwrap(), vec![443]);
        assert_eq!(parse_ports(" 443, 5000 ,443").unwrap(), vec![443, 5000]);
        for s in ["", "0", "65536", "https", "443,", "+443", "44 3", "-1"] {
            let e = parse_ports(s).unwrap_err();
            assert_eq!(e.field, FLAG_ALLOWED_PORTS, "{s:?}");
            assert!(e.to_string().contains("--allowed-ports"), "{e}");
        }
    }

    #[test]
    fn from_env_defaults_and_names_the_variable() {
        let cfg = PolicyConfig::from_env(|_| None).unwrap();
        assert_eq!(cfg, PolicyConfig::default());
        let e = PolicyConfig::from_env(|k| (k == ENV_ALLOWED_PORTS).then(|| "x".to_string()))
            .unwrap_err();
        assert_eq!(e.field, ENV_ALLOWED_PORTS);
        let e = PolicyConfig::from_env(|k| (k == ENV_ALLOWED_PROXIES).then(|| "*.io".to_string()))
            .unwrap_err();
        assert_eq!(e.field, ENV_ALLOWED_PROXIES);
        let cfg = PolicyConfig::from_env(|k| match k {
            ENV_NODE_CONTEXT_NAMESPACES => Some("ops".into()),
            ENV_ALLOWED_REGISTRIES => Some("*.azurecr.io".into()),
            ENV_ALLOWED_PORTS => Some("443,5000".into()),
            ENV_ALLOWED_PROXIES => Some("proxy.corp".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            cfg,
            PolicyConfig::parse("ops", "*.azurecr.io", "443,5000", "proxy.corp").unwrap()
        );
    }

    #[test]
    fn egress_violations_name_the_profile_rule() {
        let acr = PolicyConfig::parse("*", "*.azurecr.io,mcr.microsoft.com", "443", "*").unwrap();
        let mut s = spec("myreg.azurecr.io");
        s.egress.profiles = vec!["AKS".into()];
        s.egress
            .parameters
            .insert("region".into(), "westeurope".into());
        let e = evaluate(&s, "x", &labels(&[]), &acr).unwrap_err();
        assert_eq!(e.rule, rules::ALLOWED_REGISTRIES);
        // mcr.microsoft.com is allowed; the first refused host is the data endpoint probed
        // for the wildcard rule.
        assert!(
            e.message.starts_with(
                "egress host westeurope.data.mcr.microsoft.com (AKS rule *.data.mcr.microsoft.com) matches none"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn evaluate_table() {
        let acr =
            PolicyConfig::parse("team-a", "*.azurecr.io,mcr.microsoft.com", "443", "*").unwrap();
        let open = PolicyConfig::default();
        let exact = PolicyConfig::parse("*", "myreg.azurecr.io", "443", "*").unwrap();
        let with = |f: &dyn Fn(&mut RegistryConnectivityCheckSpec)| {
            let mut s = spec("myreg.azurecr.io");
            s.contexts.node.enabled = false;
            f(&mut s);
            s
        };
        let none = labels(&[]);
        // (name, spec, namespace, config, expected rule or None)
        let cases: Vec<(
            &str,
            RegistryConnectivityCheckSpec,
            &str,
            &PolicyConfig,
            Option<&str>,
        )> = vec![
            ("acr allowed", with(&|_| {}), "x", &acr, None),
            (
                "default policy allows any host on 443",
                spec("registry.example.com"),
                "x",
                &open,
                None,
            ),
            (
                "default refuses port 5000",
                spec("registry.example.com:5000"),
                "x",
                &open,
                Some(rules::ALLOWED_PORTS),
            ),
            (
                "host outside the list",
                with(&|s| s.registry = "docker.io".into()),
                "x",
                &acr,
                Some(rules::ALLOWED_REGISTRIES),
            ),
            (
                "data endpoint outside",
                with(&|s| s.data_endpoints = vec!["x.blob.core.windows.net".into()]),
                "x",
                &acr,
                Some(rules::ALLOWED_REGISTRIES),
            ),
            (
                "data endpoint port",
                with(&|s| s.data_endpoints = vec!["myreg.westeurope.data.azurecr.io:8443".into()]),
                "x",
                &acr,
                Some(rules::ALLOWED_PORTS),
            ),
            (
                "extra host allowed",
                with(&|s| s.extra_hosts = vec!["mcr.microsoft.com".into()]),
                "x",
                &acr,
                None,
            ),
            (
                "extra host outside",
                with(&|s| s.extra_hosts = vec!["internal.corp".into()]),
                "x",
                &acr,
                Some(rules::ALLOWED_REGISTRIES),
            ),
            (
                "egress profile outside the allowed hosts",
                with(&|s| s.egress.profiles = vec!["AKS".into()]),
                "x",
                &acr,
                Some(rules::ALLOWED_REGISTRIES),
            ),
            (
                "egress profile with every host allowed",
                with(&|s| s.egress.profiles = vec!["AKS".into()]),
                "x",
                &open,
                None,
            ),
            (
                "egress host outside",
                with(&|s| s.egress.hosts = vec!["internal.corp".into()]),
                "x",
                &acr,
                Some(rules::ALLOWED_REGISTRIES),
            ),
            (
                "egress host port",
                with(&|s| s.egress.hosts = vec!["mcr.microsoft.com:8443".into()]),
                "x",
                &acr,
                Some(rules::ALLOWED_PORTS),
            ),
            (
                "egress metadata literal",
                with(&|s| s.egress.hosts = vec!["169.254.169.254".into()]),
                "x",
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "derived region endpoint",
                with(&|s| s.regions = vec!["westeurope".into()]),
                "x",
                &acr,
                None,
            ),
            (
                "region derivation checked against an exact list",
                {
                    let mut s = spec("myreg.azurecr.io");
                    s.regions = vec!["westeurope".into()];
                    s
                },
                "team-a",
                &exact,
                Some(rules::ALLOWED_REGISTRIES),
            ),
            (
                "metadata literal",
                spec("169.254.169.254"),
                "x",
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "loopback literal",
                spec("127.0.0.1"),
                "x",
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "platform literal",
                spec("168.63.129.16"),
                "x",
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "v6 loopback data endpoint",
                with(&|s| s.data_endpoints = vec!["[::1]".into()]),
                "x",
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "private literal allowed",
                spec("10.1.2.3"),
                "x",
                &open,
                None,
            ),
            (
                "node context in listed namespace",
                with(&|s| s.contexts.node.enabled = true),
                "team-a",
                &acr,
                None,
            ),
            (
                "node context elsewhere",
                with(&|s| s.contexts.node.enabled = true),
                "team-b",
                &acr,
                Some(rules::NODE_CONTEXT_NAMESPACES),
            ),
            (
                "pod context only elsewhere",
                with(&|_| {}),
                "team-b",
                &acr,
                None,
            ),
            (
                "schema bypass: bad registry",
                spec("http://x/"),
                "x",
                &open,
                Some(INVALID_TARGET),
            ),
            (
                "schema bypass: image of another registry",
                with(&|s| s.image = Some("evil.io/x:1".into())),
                "x",
                &acr,
                Some(INVALID_TARGET),
            ),
            (
                "schema bypass: region on non-azure",
                {
                    let mut s = spec("registry.example.com");
                    s.regions = vec!["westeurope".into()];
                    s
                },
                "x",
                &open,
                Some(INVALID_TARGET),
            ),
        ];
        for (name, s, ns, cfg, want) in cases {
            let got = evaluate(&s, ns, &none, cfg);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(rule), Err(v)) => {
                    assert_eq!(v.rule, rule, "{name}: {v}");
                    assert!(!v.message.is_empty(), "{name}");
                }
                (w, g) => panic!("{name}: expected {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn node_context_by_namespace_label() {
        let cfg = PolicyConfig::parse("regcheck.dev/node-probes=true", "*", "443", "*").unwrap();
        let s = spec("myreg.azurecr.io");
        assert!(s.contexts.node.enabled, "node context is on by default");
        assert!(
            evaluate(
                &s,
                "a",
                &labels(&[("regcheck.dev/node-probes", "true")]),
                &cfg
            )
            .is_ok()
        );
        let v = evaluate(&s, "a", &labels(&[]), &cfg).unwrap_err();
        assert_eq!(v.rule, rules::NODE_CONTEXT_NAMESPACES);
        assert!(v.message.contains("regcheck.dev/node-probes=true"), "{v}");
        assert!(v.message.contains("--node-context-namespaces"), "{v}");
    }

    #[test]
    fn messages_name_the_rule_and_host() {
        let cfg = PolicyConfig::parse("*", "*.azurecr.io", "443", "*").unwrap();
        let v = evaluate(&spec("docker.io"), "x", &BTreeMap::new(), &cfg).unwrap_err();
        assert!(v.message.contains("docker.io"), "{v}");
        assert!(
            v.message.contains("--allowed-registries=*.azurecr.io"),
            "{v}"
        );
        let c = v.ready_condition(
            Some(3),
            &Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()),
        );
        assert_eq!(c.reason, "TargetNotAllowed");
        assert_eq!(c.status, "False");
        assert!(
            c.message.starts_with("allowed-registries: "),
            "{}",
            c.message
        );
        assert_eq!(c.observed_generation, Some(3));
    }

    fn with_proxy(mode: &str, url: Option<&str>) -> RegistryConnectivityCheckSpec {
        let mut proxy = serde_json::json!({ "mode": mode });
        if let Some(u) = url {
            proxy["url"] = u.into();
        }
        serde_json::from_value(serde_json::json!({
            "registry": "myreg.azurecr.io",
            "proxy": proxy,
        }))
        .unwrap()
    }

    #[test]
    fn proxy_lists_parse_with_errors_naming_the_flag() {
        assert_eq!(parse_proxy_hosts(" * ").unwrap(), vec![HostPattern::Any]);
        assert_eq!(
            parse_proxy_hosts("proxy.corp.example,*.proxies.example,10.0.0.9").unwrap(),
            vec![
                HostPattern::Exact("proxy.corp.example".into()),
                HostPattern::Suffix("proxies.example".into()),
                HostPattern::Exact("10.0.0.9".into()),
            ]
        );
        for (s, want) in [
            ("proxy.corp:3128", "contains a port"),
            ("*,proxy.corp", "mixes '*'"),
            ("a,,b", "empty entry"),
            ("*.corp", "too broad"),
        ] {
            let e = parse_proxy_hosts(s).unwrap_err();
            assert_eq!(e.field, FLAG_ALLOWED_PROXIES, "{s:?}");
            assert!(e.to_string().contains(want), "{s:?}: {e}");
        }
        let e = PolicyConfig::parse("*", "*", "443", "http://p").unwrap_err();
        assert_eq!(e.field, FLAG_ALLOWED_PROXIES);
    }

    #[test]
    fn explicit_proxy_host_is_checked() {
        let corp = PolicyConfig::parse("*", "*", "443", "proxy.corp.example,*.px.example").unwrap();
        let open = PolicyConfig::default();
        let none = labels(&[]);
        // (name, spec, config, expected rule or None)
        let cases: Vec<(
            &str,
            RegistryConnectivityCheckSpec,
            &PolicyConfig,
            Option<&str>,
        )> = vec![
            (
                "listed proxy, any port",
                with_proxy("Explicit", Some("http://proxy.corp.example:3128")),
                &corp,
                None,
            ),
            (
                "proxy below a listed domain",
                with_proxy("Explicit", Some("http://eu1.px.example:8080")),
                &corp,
                None,
            ),
            (
                "host name case and trailing dot do not matter",
                with_proxy("Explicit", Some("http://PROXY.corp.example.:3128")),
                &corp,
                None,
            ),
            (
                "unlisted proxy",
                with_proxy("Explicit", Some("http://10.1.2.3:22")),
                &corp,
                Some(rules::ALLOWED_PROXIES),
            ),
            (
                "lookalike of a listed domain",
                with_proxy("Explicit", Some("http://evilpx.example:3128")),
                &corp,
                Some(rules::ALLOWED_PROXIES),
            ),
            (
                "default allows any proxy host",
                with_proxy("Explicit", Some("http://10.1.2.3:3128")),
                &open,
                None,
            ),
            (
                "metadata address as a proxy, whatever the list",
                with_proxy("Explicit", Some("http://169.254.169.254:80")),
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "loopback proxy",
                with_proxy("Explicit", Some("http://[::1]:3128")),
                &open,
                Some(rules::FORBIDDEN_ADDRESS),
            ),
            (
                "Inherit is the administrator's proxy",
                with_proxy("Inherit", None),
                &corp,
                None,
            ),
            ("no proxy", with_proxy("None", None), &corp, None),
            (
                "schema bypass: unparsable proxy URL",
                with_proxy("Explicit", Some("socks5://p:1")),
                &open,
                Some(INVALID_TARGET),
            ),
        ];
        for (name, s, cfg, want) in cases {
            match (want, evaluate(&s, "x", &none, cfg)) {
                (None, Ok(())) => {}
                (Some(rule), Err(v)) => assert_eq!(v.rule, rule, "{name}: {v}"),
                (w, g) => panic!("{name}: expected {w:?}, got {g:?}"),
            }
        }
        let v = evaluate(
            &with_proxy("Explicit", Some("http://10.1.2.3:22")),
            "x",
            &none,
            &corp,
        )
        .unwrap_err();
        assert!(v.message.contains("proxy 10.1.2.3"), "{v}");
        assert!(
            v.message
                .contains("--allowed-proxies=proxy.corp.example,*.px.example"),
            "{v}"
        );
    }

    #[test]
    fn namespace_labels_needed_only_for_the_label_rule_and_node_context() {
        let label = PolicyConfig::parse("probes=yes", "*", "443", "*").unwrap();
        let list = PolicyConfig::parse("team-a", "*", "443", "*").unwrap();
        let node = spec("myreg.azurecr.io");
        let mut pod_only = node.clone();
        pod_only.contexts.node.enabled = false;
        let node = ValidSpec::parse(&node).unwrap();
        let pod_only = ValidSpec::parse(&pod_only).unwrap();
        assert!(label.needs_namespace_labels(&node));
        assert!(!label.needs_namespace_labels(&pod_only));
        assert!(!list.needs_namespace_labels(&node));
        assert!(!PolicyConfig::default().needs_namespace_labels(&node));
    }

    #[test]
    fn proxy_port_outside_the_allowed_ports_is_refused_naming_the_field_and_port() {
        let cfg = PolicyConfig::parse("*", "*", "443", "proxy.corp.example").unwrap();
        assert_eq!(cfg.proxy_ports, vec![3128, 8080, 80, 443]);
        let none = labels(&[]);
        for port in [3128, 8080, 80, 443] {
            let url = format!("http://proxy.corp.example:{port}");
            assert!(
                evaluate(&with_proxy("Explicit", Some(&url)), "x", &none, &cfg).is_ok(),
                "{port}"
            );
        }
        // A listed proxy host on a port of another service (ssh) is no proxy.
        let v = evaluate(
            &with_proxy("Explicit", Some("http://proxy.corp.example:22")),
            "x",
            &none,
            &cfg,
        )
        .unwrap_err();
        assert_eq!(v.rule, rules::ALLOWED_PROXY_PORTS);
        assert!(v.message.contains("spec.proxy.url"), "{v}");
        assert!(v.message.contains("port 22"), "{v}");
        assert!(
            v.message.contains("--allowed-proxy-ports=3128,8080,80,443"),
            "{v}"
        );
        // The default policy (any proxy host) checks the port too.
        let v = evaluate(
            &with_proxy("Explicit", Some("http://10.1.2.3:6443")),
            "x",
            &none,
            &PolicyConfig::default(),
        )
        .unwrap_err();
        assert_eq!(v.rule, rules::ALLOWED_PROXY_PORTS);
        let wide = cfg.clone().with_proxy_ports("3128,8888").unwrap();
        assert!(
            evaluate(
                &with_proxy("Explicit", Some("http://proxy.corp.example:8888")),
                "x",
                &none,
                &wide
            )
            .is_ok()
        );
        let e = cfg.with_proxy_ports("3128,ssh").unwrap_err();
        assert_eq!(e.field, FLAG_ALLOWED_PROXY_PORTS);
        let e = parse_proxy_hosts("proxy.corp:3128").unwrap_err();
        assert!(e.to_string().contains("--allowed-proxy-ports"), "{e}");
    }

    #[test]
    fn empty_proxy_list_allows_no_explicit_proxy() {
        let cfg = PolicyConfig::parse("*", "*", "443", "").unwrap();
        assert!(cfg.proxy_hosts.is_empty());
        let none = labels(&[]);
        let v = evaluate(
            &with_proxy("Explicit", Some("http://proxy.corp.example:3128")),
            "x",
            &none,
            &cfg,
        )
        .unwrap_err();
        assert_eq!(v.rule, rules::ALLOWED_PROXIES);
        assert!(v.message.contains("no Explicit proxy is allowed"), "{v}");
        assert!(evaluate(&with_proxy("Inherit", None), "x", &none, &cfg).is_ok());
        assert!(evaluate(&with_proxy("None", None), "x", &none, &cfg).is_ok());
        // Unset stays any host.
        assert_eq!(
            PolicyConfig::from_env(|_| None).unwrap().proxy_hosts,
            vec![HostPattern::Any]
        );
        let from_env =
            PolicyConfig::from_env(|k| (k == ENV_ALLOWED_PROXIES).then(String::new)).unwrap();
        assert!(from_env.proxy_hosts.is_empty());
    }

    #[test]
    fn namespace_list_and_labels_together() {
        let r = NamespaceRule::parse("regcheck-system, regcheck.dev/node-probes=true").unwrap();
        assert_eq!(
            r,
            NamespaceRule::Either {
                names: vec!["regcheck-system".into()],
                labels: vec![("regcheck.dev/node-probes".into(), "true".into())],
            }
        );
        assert!(r.allows("regcheck-system", &labels(&[])));
        assert!(r.allows("default", &labels(&[("regcheck.dev/node-probes", "true")])));
        assert!(!r.allows("default", &labels(&[("regcheck.dev/node-probes", "false")])));
        assert!(!r.allows("team-a", &labels(&[])));
        let two = NamespaceRule::parse("a=1,b=2").unwrap();
        assert!(two.allows("x", &labels(&[("b", "2")])));
        assert!(!two.allows("x", &labels(&[("a", "2")])));
        let cfg = PolicyConfig::parse(
            "regcheck-system,regcheck.dev/node-probes=true",
            "*",
            "443",
            "*",
        )
        .unwrap();
        let node = ValidSpec::parse(&spec("myreg.azurecr.io")).unwrap();
        assert!(cfg.needs_namespace_labels(&node));
        let v = super::evaluate(&node, "team-a", &labels(&[]), &cfg).unwrap_err();
        assert_eq!(v.rule, rules::NODE_CONTEXT_NAMESPACES);
        assert!(
            v.message.contains(
                "namespaces regcheck-system or namespaces labelled regcheck.dev/node-probes=true"
            ),
            "{v}"
        );
        for (s, want) in [
            ("a,k=-x", "label value"),
            ("a,*", "mixes '*'"),
            ("a,,k=v", "empty entry"),
        ] {
            let e = NamespaceRule::parse(s).unwrap_err();
            assert!(e.to_string().contains(want), "{s:?}: {e}");
        }
    }

    fn caps(strategies: &str, sample: u32, per_run: u32, min: &str) -> PolicyConfig {
        PolicyConfig::default().with_caps(Caps::parse(strategies, sample, per_run, min).unwrap())
    }

    fn node_spec(v: serde_json::Value) -> ValidSpec {
        let mut base = serde_json::json!({"registry": "myreg.azurecr.io"});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        ValidSpec::parse(&serde_json::from_value(base).unwrap()).unwrap()
    }

    #[test]
    fn caps_refuse_naming_the_field_the_value_and_the_flag() {
        let none = labels(&[]);
        let cfg = caps("PerNodePool,Sample", 10, 50, "5m");
        let sample = |n: u32| {
            node_spec(serde_json::json!({"contexts": {"node": {"strategy": "Sample", "count": n}}}))
        };
        // (name, spec, expected rule and message parts or None)
        type Case<'a> = (&'a str, ValidSpec, Option<(&'a str, &'a [&'a str])>);
        let cases: Vec<Case> = vec![
            (
                "default strategy, default interval",
                node_spec(serde_json::json!({})),
                None,
            ),
            ("sample at the cap", sample(10), None),
            (
                "sample over the cap",
                sample(11),
                Some((
                    rules::MAX_SAMPLE_NODES,
                    &["spec.contexts.node.count 11", "--max-sample-nodes=10"],
                )),
            ),
            (
                "strategy not allowed",
                node_spec(serde_json::json!({"contexts": {"node": {"strategy": "AllNodes"}}})),
                Some((
                    rules::ALLOWED_NODE_STRATEGIES,
                    &[
                        "spec.contexts.node.strategy AllNodes",
                        "--allowed-node-strategies=PerNodePool,Sample",
                    ],
                )),
            ),
            (
                "interval below the minimum",
                node_spec(serde_json::json!({"interval": "90s"})),
                Some((
                    rules::MIN_INTERVAL,
                    &["spec.interval 1m30s", "--min-interval=5m", "5m or more"],
                )),
            ),
            (
                "interval at the minimum",
                node_spec(serde_json::json!({"interval": "5m"})),
                None,
            ),
            (
                "pod context only: the strategy still picks the nodes",
                node_spec(
                    serde_json::json!({"contexts": {"node": {"enabled": false, "strategy": "AllNodes"}}}),
                ),
                Some((rules::ALLOWED_NODE_STRATEGIES, &["AllNodes"])),
            ),
        ];
        for (name, s, want) in cases {
            match (want, super::evaluate(&s, "x", &none, &cfg)) {
                (None, Ok(())) => {}
                (Some((rule, parts)), Err(v)) => {
                    assert_eq!(v.rule, rule, "{name}: {v}");
                    for p in parts {
                        assert!(v.message.contains(p), "{name}: {p:?} in {v}");
                    }
                }
                (w, g) => panic!("{name}: expected {w:?}, got {g:?}"),
            }
        }
        // The binary's defaults keep what the CRD allows.
        let open = PolicyConfig::default();
        for s in [
            sample(1000),
            node_spec(
                serde_json::json!({"interval": "30s", "contexts": {"node": {"strategy": "AllNodes"}}}),
            ),
        ] {
            assert!(super::evaluate(&s, "x", &none, &open).is_ok());
        }
    }

    #[test]
    fn all_nodes_beyond_the_per_run_cap_is_refused_not_truncated() {
        let all = node_spec(serde_json::json!({"contexts": {"node": {"strategy": "AllNodes"}}}));
        let per_pool = node_spec(serde_json::json!({}));
        let c = caps("PerNodePool,AllNodes,Sample", 10, 50, "30s").caps;
        assert!(check_planned(&all, 50, &c).is_ok());
        let v = check_planned(&all, 51, &c).unwrap_err();
        assert_eq!(v.rule, rules::MAX_NODES_PER_RUN);
        for p in [
            "spec.contexts.node.strategy AllNodes plans 51 nodes",
            "--max-nodes-per-run=50",
        ] {
            assert!(v.message.contains(p), "{p:?} in {v}");
        }
        // Other strategies are bounded otherwise; 0 is no cap.
        assert!(check_planned(&per_pool, 500, &c).is_ok());
        assert!(check_planned(&all, 5000, &Caps::default()).is_ok());
    }

    #[test]
    fn caps_flags_parse_with_errors_naming_the_flag() {
        let c = Caps::parse(" sample , PerNodePool,sample", 10, 0, "5m").unwrap();
        assert_eq!(
            c.node_strategies,
            vec![Strategy::Sample, Strategy::PerNodePool]
        );
        assert_eq!(c.min_interval, Duration::from_secs(300));
        for (args, field) in [
            (("Some", 10, "5m"), FLAG_ALLOWED_NODE_STRATEGIES),
            (("", 10, "5m"), FLAG_ALLOWED_NODE_STRATEGIES),
            (("Sample", 0, "5m"), FLAG_MAX_SAMPLE_NODES),
            (("Sample", 1001, "5m"), FLAG_MAX_SAMPLE_NODES),
            (("Sample", 10, "10s"), FLAG_MIN_INTERVAL),
            (("Sample", 10, "soon"), FLAG_MIN_INTERVAL),
            (("Sample", 10, "48h"), FLAG_MIN_INTERVAL),
        ] {
            let e = Caps::parse(args.0, args.1, 0, args.2).unwrap_err();
            assert_eq!(e.field, field, "{args:?}: {e}");
        }
        let e = PolicyConfig::from_env(|k| (k == ENV_MIN_INTERVAL).then(|| "1s".to_string()))
            .unwrap_err();
        assert_eq!(e.field, ENV_MIN_INTERVAL);
        let e = PolicyConfig::from_env(|k| (k == ENV_MAX_NODES_PER_RUN).then(|| "x".to_string()))
            .unwrap_err();
        assert_eq!(e.field, ENV_MAX_NODES_PER_RUN);
        let c = PolicyConfig::from_env(|k| match k {
            ENV_ALLOWED_NODE_STRATEGIES => Some("PerNodePool".into()),
            ENV_MAX_SAMPLE_NODES => Some("10".into()),
            ENV_MAX_NODES_PER_RUN => Some("50".into()),
            ENV_MIN_INTERVAL => Some("5m".into()),
            ENV_ALLOWED_PROXY_PORTS => Some("3128".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.caps, Caps::parse("PerNodePool", 10, 50, "5m").unwrap());
        assert_eq!(c.proxy_ports, vec![3128]);
    }

    #[test]
    fn node_addresses_of_both_families_are_refused_as_targets() {
        let nodes: Vec<IpAddr> = ["10.224.0.4", "fd00:10:224::4", "10.224.0.5"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let sp =
            |v: serde_json::Value| ValidSpec::parse(&serde_json::from_value(v).unwrap()).unwrap();
        for (what, s) in [
            (
                "v4 registry",
                sp(serde_json::json!({"registry": "10.224.0.5"})),
            ),
            (
                "v6 registry",
                sp(serde_json::json!({"registry": "[fd00:10:224::4]"})),
            ),
            (
                "v4-mapped v6 of a v4 node address",
                sp(serde_json::json!({"registry": "[::ffff:10.224.0.4]"})),
            ),
            (
                "data endpoint",
                sp(
                    serde_json::json!({"registry": "r.example.com", "dataEndpoints": ["[fd00:10:224::4]"]}),
                ),
            ),
            (
                "explicit proxy",
                sp(
                    serde_json::json!({"registry": "r.example.com", "proxy": {"mode": "Explicit", "url": "http://[fd00:10:224::4]:3128"}}),
                ),
            ),
        ] {
            let v = check_node_addresses(&s, || nodes.clone()).unwrap_err();
            assert_eq!(v.rule, rules::NODE_ADDRESS, "{what}");
            assert!(
                v.message.contains("address of one of the cluster's nodes"),
                "{what}: {v}"
            );
        }
        for s in [
            sp(serde_json::json!({"registry": "10.224.0.6"})),
            sp(serde_json::json!({"registry": "r.example.com"})),
        ] {
            assert!(check_node_addresses(&s, || nodes.clone()).is_ok());
        }
    }
}
