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
//! | `--node-context-namespaces` | `REGCHECK_NODE_CONTEXT_NAMESPACES` | `*` (all), a comma list of namespaces (`team-a,team-b`), or one label `key=value` that the namespace must carry (`regcheck.dev/node-probes=true`) | `*` |
//! | `--allowed-registries` | `REGCHECK_ALLOWED_REGISTRIES` | `*` (any), or a comma list of host patterns: `myreg.azurecr.io` (exact), `*.azurecr.io` (any name below `azurecr.io`), IP literals | `*` |
//! | `--allowed-ports` | `REGCHECK_ALLOWED_PORTS` | comma list of ports | `443` |
//! | `--allowed-proxies` | `REGCHECK_ALLOWED_PROXIES` | `*` (any), or a comma list of host patterns (as for registries) that `spec.proxy.url` of an `Explicit` proxy may name; any port | `*` |
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
//! by calling it a proxy. `Inherit` uses the administrator's `--node-proxy` or the pod's own
//! environment; `None` connects directly.

use crate::engine::findings::Reason;
use crate::engine::inputs::{self, HTTPS_PORT, InputError};
use crate::engine::probe::TargetPolicy;
use crate::operator::spec::{ProxySetting, ValidSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const FLAG_NODE_CONTEXT_NAMESPACES: &str = "--node-context-namespaces";
pub const ENV_NODE_CONTEXT_NAMESPACES: &str = "REGCHECK_NODE_CONTEXT_NAMESPACES";
pub const FLAG_ALLOWED_REGISTRIES: &str = "--allowed-registries";
pub const ENV_ALLOWED_REGISTRIES: &str = "REGCHECK_ALLOWED_REGISTRIES";
pub const FLAG_ALLOWED_PORTS: &str = "--allowed-ports";
pub const ENV_ALLOWED_PORTS: &str = "REGCHECK_ALLOWED_PORTS";
pub const FLAG_ALLOWED_PROXIES: &str = "--allowed-proxies";
pub const ENV_ALLOWED_PROXIES: &str = "REGCHECK_ALLOWED_PROXIES";

/// Rule names carried in [`Violation::rule`] (stable: they appear in status messages).
pub mod rules {
    pub const NODE_CONTEXT_NAMESPACES: &str = "node-context-namespaces";
    pub const ALLOWED_REGISTRIES: &str = "allowed-registries";
    pub const ALLOWED_PORTS: &str = "allowed-ports";
    pub const ALLOWED_PROXIES: &str = "allowed-proxies";
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
}

impl NamespaceRule {
    /// `*` (or empty) → all; `key=value` → label; otherwise a comma list of namespace names.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        const F: &str = FLAG_NODE_CONTEXT_NAMESPACES;
        let t = s.trim();
        if t.is_empty() || t == "*" {
            return Ok(Self::All);
        }
        if let Some((k, v)) = t.split_once('=') {
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
            return Ok(Self::Label {
                key: k.to_string(),
                value: v.to_string(),
            });
        }
        let mut out: Vec<String> = Vec::new();
        for part in t.split(',') {
            let ns = part.trim();
            if ns.is_empty() {
                return Err(InputError::new(
                    F,
                    s,
                    "has an empty entry; give namespaces separated by commas, '*' for all, or key=value",
                ));
            }
            if ns == "*" {
                return Err(InputError::new(
                    F,
                    s,
                    "mixes '*' with namespace names; give '*' alone",
                ));
            }
            if !crate::operator::names::is_dns_label(ns) {
                return Err(InputError::new(
                    F,
                    s,
                    format!(
                        "has '{}', which is not a namespace name (lowercase letters, digits and '-', at most 63)",
                        inputs::shown_value(ns)
                    ),
                ));
            }
            if !out.iter().any(|o| o == ns) {
                out.push(ns.to_string());
            }
        }
        if out.len() > MAX_ENTRIES {
            return Err(InputError::new(
                F,
                s,
                format!("lists more than {MAX_ENTRIES} namespaces; use a namespace label instead"),
            ));
        }
        Ok(Self::List(out))
    }

    pub fn allows(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::All => true,
            Self::List(l) => l.iter().any(|n| n == namespace),
            Self::Label { key, value } => labels.get(key) == Some(value),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::All => "all namespaces".into(),
            Self::List(l) => format!("namespaces {}", l.join(", ")),
            Self::Label { key, value } => format!("namespaces labelled {key}={value}"),
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
                    "contains a port; give host patterns only (a proxy may use any port)"
                        .to_string()
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
    /// Hosts an `Explicit` proxy may name.
    pub proxy_hosts: Vec<HostPattern>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            node_context_namespaces: NamespaceRule::All,
            registry_hosts: vec![HostPattern::Any],
            allowed_ports: vec![HTTPS_PORT],
            proxy_hosts: vec![HostPattern::Any],
        }
    }
}

/// `*` or empty → any host; otherwise comma-separated [`HostPattern`]s.
pub fn parse_registry_hosts(s: &str) -> Result<Vec<HostPattern>, InputError> {
    parse_host_patterns(FLAG_ALLOWED_REGISTRIES, s)
}

/// `*` or empty → any proxy host; otherwise comma-separated [`HostPattern`]s.
pub fn parse_proxy_hosts(s: &str) -> Result<Vec<HostPattern>, InputError> {
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
    const F: &str = FLAG_ALLOWED_PORTS;
    let t = s.trim();
    if t.is_empty() {
        return Err(InputError::new(
            F,
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
                    F,
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
        })
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
        })
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.registry_hosts.iter().any(|p| p.matches(host))
    }

    /// Whether the node-context namespace rule needs the namespace's labels (the controller
    /// reads the Namespace only then).
    pub fn needs_namespace_labels(&self, spec: &ValidSpec) -> bool {
        spec.node_enabled && matches!(self.node_context_namespaces, NamespaceRule::Label { .. })
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
}
