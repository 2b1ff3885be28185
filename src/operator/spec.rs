//! A check's spec, parsed once.
//!
//! [`ValidSpec::parse`] turns the strings of a [`RegistryConnectivityCheckSpec`] into checked
//! values (endpoints, image reference, proxy, interval, thresholds, node strategy), or a
//! [`SpecError`] that names the spec field and the value. The schema (and its CEL rules)
//! already refuses most of this, but a 1.20 API server drops CEL rules and a client may bypass
//! the schema: the controller relies on this parse alone. Everything after it (the target
//! policy, the run decisions, planning and the probe Jobs' arguments) takes the parsed form.

use crate::engine::inputs::{self, Endpoint, ImageRef, InputError, InputFields, PlanInput};
use crate::engine::proxy::ProxyUrl;
use crate::operator::crd::{ProxyMode, RegistryConnectivityCheckSpec, Strategy};
use std::time::Duration;

/// Shortest and longest interval between runs.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Most nodes a `Sample` strategy may ask for.
pub const MAX_SAMPLE: u32 = 1000;

/// A spec field that cannot be used: `spec.proxy.url: 'http://p:1' is only used with mode
/// Explicit`. The field is the spec's path, never a command-line flag; the value is shown
/// escaped and cut like an [`InputError`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub value: Option<String>,
    pub problem: String,
}

impl SpecError {
    fn new(field: &str, value: &str, problem: impl Into<String>) -> Self {
        InputError::new(field, value, problem).into()
    }

    fn field(field: &str, problem: &str) -> Self {
        Self {
            field: field.into(),
            value: None,
            problem: problem.into(),
        }
    }
}

impl From<InputError> for SpecError {
    fn from(e: InputError) -> Self {
        Self {
            field: e.field,
            value: Some(e.value),
            problem: e.problem,
        }
    }
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}: '{}' {}", self.field, v, self.problem),
            None => write!(f, "{}: {}", self.field, self.problem),
        }
    }
}

impl std::error::Error for SpecError {}

/// Which nodes the node context probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStrategy {
    PerNodePool,
    AllNodes,
    Sample(u32),
}

/// The proxy the probes use.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxySetting {
    /// Whatever the probe finds in its environment.
    Inherit,
    /// Direct connections.
    None,
    /// `url` (as written, and parsed) with the `noProxy` entries.
    Explicit {
        text: String,
        url: ProxyUrl,
        no_proxy: Vec<String>,
    },
}

/// A spec whose every field has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    /// The host fields as written (the probe parses its own arguments again).
    pub input: PlanInput,
    /// Login server first, then data endpoints and extra hosts.
    pub endpoints: Vec<Endpoint>,
    /// `spec.image` as written, and parsed.
    pub image: Option<(String, ImageRef)>,
    pub proxy: ProxySetting,
    /// `spec.expect.egressIPs`, as canonical CIDRs.
    pub egress_ips: Vec<String>,
    /// `spec.egress`: the egress hosts to probe (empty when the spec names none).
    pub egress: crate::engine::egress::EgressPlan,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub node_enabled: bool,
    pub node_strategy: NodeStrategy,
    pub pod_enabled: bool,
    /// Pull canaries on the node context's planned nodes (`spec.contexts.kubelet`).
    pub kubelet_enabled: bool,
    /// `spec.contexts.kubelet.serviceAccountName`.
    pub kubelet_service_account: Option<String>,
}

impl ValidSpec {
    /// The login server.
    pub fn registry(&self) -> &Endpoint {
        &self.endpoints[0]
    }

    pub fn parse(spec: &RegistryConnectivityCheckSpec) -> Result<ValidSpec, SpecError> {
        let input = PlanInput {
            registry: spec.registry.clone(),
            data_endpoints: spec.data_endpoints.clone(),
            regions: spec.regions.clone(),
            also: spec.extra_hosts.clone(),
            fields: InputFields::SPEC,
        };
        let endpoints = inputs::plan(&input)?;
        let interval = inputs::parse_duration("spec.interval", &spec.interval, MAX_INTERVAL)?;
        if interval < MIN_INTERVAL {
            return Err(SpecError::new(
                "spec.interval",
                &spec.interval,
                "is shorter than the minimum of 30s",
            ));
        }
        if !(1..=300).contains(&spec.timeout_seconds) {
            return Err(SpecError::new(
                "spec.timeoutSeconds",
                &spec.timeout_seconds.to_string(),
                "is not between 1 and 300",
            ));
        }
        let timeout = Duration::from_secs(u64::from(spec.timeout_seconds));
        if interval <= timeout {
            return Err(SpecError::new(
                "spec.interval",
                &spec.interval,
                format!(
                    "must be longer than timeoutSeconds ({}s)",
                    spec.timeout_seconds
                ),
            ));
        }
        for (field, v) in [
            ("spec.failureThreshold", spec.failure_threshold),
            ("spec.successThreshold", spec.success_threshold),
        ] {
            if !(1..=100).contains(&v) {
                return Err(SpecError::new(
                    field,
                    &v.to_string(),
                    "is not between 1 and 100",
                ));
            }
        }
        let registry = &endpoints[0];
        let image = match &spec.image {
            Some(text) => Some((
                text.clone(),
                inputs::parse_image(
                    InputFields::SPEC.image,
                    text,
                    (&registry.host, registry.port),
                )?,
            )),
            None => None,
        };
        let ctx = &spec.contexts;
        if !ctx.node.enabled && !ctx.pod.enabled {
            return Err(SpecError::field(
                "spec.contexts",
                "both node and pod are disabled; enable at least one",
            ));
        }
        let node_strategy = match (ctx.node.strategy, ctx.node.count) {
            (Strategy::Sample, None) => {
                return Err(SpecError::field(
                    "spec.contexts.node.count",
                    "strategy Sample needs count",
                ));
            }
            (Strategy::Sample, Some(c)) if !(1..=MAX_SAMPLE).contains(&c) => {
                return Err(SpecError::new(
                    "spec.contexts.node.count",
                    &c.to_string(),
                    "is not between 1 and 1000",
                ));
            }
            (Strategy::Sample, Some(c)) => NodeStrategy::Sample(c),
            (_, Some(c)) => {
                return Err(SpecError::new(
                    "spec.contexts.node.count",
                    &c.to_string(),
                    "is only used with strategy Sample",
                ));
            }
            (Strategy::PerNodePool, None) => NodeStrategy::PerNodePool,
            (Strategy::AllNodes, None) => NodeStrategy::AllNodes,
        };
        let p = &spec.proxy;
        let proxy = match (p.mode, &p.url) {
            (ProxyMode::Explicit, None) => {
                return Err(SpecError::field(
                    "spec.proxy.url",
                    "is required with mode Explicit",
                ));
            }
            (ProxyMode::Explicit, Some(text)) => ProxySetting::Explicit {
                text: text.clone(),
                url: ProxyUrl::parse("spec.proxy.url", text)?,
                no_proxy: p.no_proxy.clone(),
            },
            (_, Some(text)) => {
                return Err(SpecError::new(
                    "spec.proxy.url",
                    text,
                    "is only used with mode Explicit",
                ));
            }
            (ProxyMode::Inherit, None) => ProxySetting::Inherit,
            (ProxyMode::None, None) => ProxySetting::None,
        };
        if p.mode != ProxyMode::Explicit && !p.no_proxy.is_empty() {
            return Err(SpecError::field(
                "spec.proxy.noProxy",
                "is only used with mode Explicit",
            ));
        }
        if let Some(bad) = p
            .no_proxy
            .iter()
            .find(|e| e.is_empty() || e.contains([',', ' ']) || e.chars().any(char::is_control))
        {
            return Err(SpecError::new(
                "spec.proxy.noProxy",
                bad,
                "is not a host, domain or CIDR",
            ));
        }
        let field = "spec.expect.egressIPs";
        if let Some(bad) = spec.expect.egress_ips.iter().find(|e| e.contains(',')) {
            return Err(SpecError::new(
                field,
                bad,
                "is one address or CIDR, not a list",
            ));
        }
        let egress_ips = crate::engine::denial::parse_egress_ips(field, &spec.expect.egress_ips)?;
        let egress = crate::engine::egress::plan(
            &crate::engine::egress::EgressInput {
                profiles: spec.egress.profiles.clone(),
                params: spec
                    .egress
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                hosts: spec.egress.hosts.clone(),
            },
            crate::engine::egress::EgressFields::SPEC,
        )?;
        let kubelet = &ctx.kubelet;
        if kubelet.enabled && image.is_none() {
            return Err(SpecError::field(
                "spec.contexts.kubelet.enabled",
                "needs spec.image (the image the kubelet pulls)",
            ));
        }
        if let Some(sa) = &kubelet.service_account_name
            && !crate::operator::names::is_dns_subdomain(sa)
        {
            return Err(SpecError::new(
                "spec.contexts.kubelet.serviceAccountName",
                sa,
                "is not a ServiceAccount name",
            ));
        }
        Ok(ValidSpec {
            input,
            endpoints,
            image,
            proxy,
            egress_ips,
            egress,
            interval,
            timeout,
            failure_threshold: spec.failure_threshold,
            success_threshold: spec.success_threshold,
            node_enabled: ctx.node.enabled,
            node_strategy,
            pod_enabled: ctx.pod.enabled,
            kubelet_enabled: kubelet.enabled,
            kubelet_service_account: kubelet.service_account_name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn validate(spec: &RegistryConnectivityCheckSpec) -> Result<(), String> {
        ValidSpec::parse(spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// An image written with the registry's host and port, for a registry on a port other
    /// than 443, is the check's own registry: the policy and the validation agree on it.
    #[test]
    fn image_with_host_and_port_of_the_registry_is_valid() {
        let v = json!({"registry": "registry.example.com:5000", "image": "registry.example.com:5000/app:1"});
        let sp = spec(v);
        assert_eq!(validate(&sp), Ok(()));
        let cfg = crate::operator::policy::PolicyConfig {
            allowed_ports: vec![5000],
            ..Default::default()
        };
        let valid = ValidSpec::parse(&sp).unwrap();
        assert_eq!(
            crate::operator::policy::evaluate(&valid, "default", &BTreeMap::new(), &cfg)
                .map_err(|v| v.to_string()),
            Ok(())
        );
        // Another port is another registry.
        let other = spec(
            json!({"registry": "registry.example.com:5000", "image": "registry.example.com:5001/app:1"}),
        );
        assert!(validate(&other).unwrap_err().contains("spec.image"));
    }

    fn spec(v: serde_json::Value) -> RegistryConnectivityCheckSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn egress_profiles_and_hosts_are_parsed_once() {
        let v = ValidSpec::parse(&spec(json!({"registry": "r.azurecr.io",
            "egress": {"profiles": ["aks"], "parameters": {"region": "eastus"},
                       "hosts": ["proxy-check.example:8443"]}})))
        .unwrap();
        assert_eq!(v.egress.input.profiles, vec!["AKS"]);
        assert!(
            v.egress
                .targets
                .iter()
                .any(|t| t.host == "eastus.data.mcr.microsoft.com")
        );
        assert!(
            v.egress
                .targets
                .iter()
                .any(|t| (t.host.as_str(), t.port) == ("proxy-check.example", 8443))
        );
        // The API server FQDN is cluster-specific: named as not probed.
        assert_eq!(v.egress.not_probed.len(), 1);
        assert!(v.egress.not_probed[0].why.contains("apiServer"));
        let none = ValidSpec::parse(&spec(json!({"registry": "r.azurecr.io"}))).unwrap();
        assert!(none.egress.targets.is_empty() && none.egress.not_probed.is_empty());
        for (egress, needle) in [
            (
                json!({"profiles": ["AKS", "FOO"]}),
                "spec.egress.profiles[1]: 'FOO' is not a known profile (AKS, AKS-AzureChinaCloud, AKS-AzureUSGovernment, EKS, GKE)",
            ),
            (
                json!({"profiles": ["EKS"]}),
                "spec.egress.parameters.region: '' profile EKS needs region=",
            ),
            (
                json!({"profiles": ["GKE"], "parameters": {"account": "1"}}),
                "spec.egress.parameters.account: 'account=1' is not a parameter of the chosen profiles (GKE: region)",
            ),
            (
                json!({"hosts": ["ok.example", "bad host"]}),
                "spec.egress.hosts[1]: 'bad host'",
            ),
        ] {
            let e =
                validate(&spec(json!({"registry": "r.azurecr.io", "egress": egress}))).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn egress_ips_are_parsed_and_bounded() {
        let v = ValidSpec::parse(&spec(json!({"registry": "r.azurecr.io",
            "expect": {"egressIPs": ["20.1.2.3", "10.240.0.0/16"]}})))
        .unwrap();
        assert_eq!(v.egress_ips, vec!["20.1.2.3/32", "10.240.0.0/16"]);
        let too_many: Vec<String> = (0..33).map(|i| format!("20.1.2.{i}")).collect();
        for (ips, needle) in [
            (
                json!(["20.1.2.300"]),
                "spec.expect.egressIPs: '20.1.2.300' is not an IP address",
            ),
            (
                json!(["20.1.2.3/24"]),
                "spec.expect.egressIPs: '20.1.2.3/24' has host bits set",
            ),
            (
                json!(["127.0.0.1"]),
                "spec.expect.egressIPs: '127.0.0.1' is not an address",
            ),
            (
                json!(["20.1.2.3,20.1.2.4"]),
                "is one address or CIDR, not a list",
            ),
            (json!(too_many), "lists more than 32"),
        ] {
            let e = validate(&spec(
                json!({"registry": "r.azurecr.io", "expect": {"egressIPs": ips}}),
            ))
            .unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn validate_accepts_good_specs() {
        for v in [
            json!({"registry": "r.azurecr.io"}),
            json!({"registry": "r.azurecr.io", "regions": ["westeurope"], "image": "app:v1",
                   "interval": "1h30m", "timeoutSeconds": 300}),
            json!({"registry": "registry.example.com:5000", "proxy": {"mode": "Explicit",
                   "url": "http://proxy.corp:3128", "noProxy": [".svc", "10.0.0.0/8"]}}),
            json!({"registry": "r.io", "contexts": {"node": {"strategy": "Sample", "count": 3}}}),
            json!({"registry": "r.io", "contexts": {"node": {"enabled": false}}}),
            json!({"registry": "r.io", "image": "app:1", "contexts": {"node": {"enabled": false},
                   "kubelet": {"enabled": true, "serviceAccountName": "builder"}}}),
        ] {
            assert_eq!(validate(&spec(v.clone())), Ok(()), "{v}");
        }
    }

    #[test]
    fn validate_names_the_field_and_value() {
        let cases = [
            (json!({"registry": "bad host"}), "spec.registry: 'bad host'"),
            (
                json!({"registry": "r.io", "dataEndpoints": ["a..b"]}),
                "spec.dataEndpoints: 'a..b'",
            ),
            (
                json!({"registry": "r.example.com", "regions": ["westeurope"]}),
                "spec.regions",
            ),
            (
                json!({"registry": "r.io", "extraHosts": ["x y"]}),
                "spec.extraHosts: 'x y'",
            ),
            (
                json!({"registry": "r.io", "image": "app@sha256:abc"}),
                "spec.image: 'app@sha256:abc'",
            ),
            (
                json!({"registry": "r.io", "interval": "10s"}),
                "spec.interval: '10s'",
            ),
            (
                json!({"registry": "r.io", "interval": "2d"}),
                "spec.interval: '2d'",
            ),
            (
                json!({"registry": "r.io", "interval": "48h"}),
                "spec.interval: '48h'",
            ),
            (
                json!({"registry": "r.io", "interval": "60s", "timeoutSeconds": 60}),
                "spec.interval: '60s' must be longer",
            ),
            (
                json!({"registry": "r.io", "timeoutSeconds": 0}),
                "spec.timeoutSeconds: '0'",
            ),
            (
                json!({"registry": "r.io", "failureThreshold": 0}),
                "spec.failureThreshold: '0'",
            ),
            (
                json!({"registry": "r.io", "successThreshold": 101}),
                "spec.successThreshold: '101'",
            ),
            (
                json!({"registry": "r.io", "contexts": {"node": {"enabled": false}, "pod": {"enabled": false}}}),
                "spec.contexts",
            ),
            (
                json!({"registry": "r.io", "contexts": {"node": {"strategy": "Sample"}}}),
                "spec.contexts.node.count",
            ),
            (
                json!({"registry": "r.io", "contexts": {"node": {"count": 2}}}),
                "spec.contexts.node.count: '2'",
            ),
            (
                json!({"registry": "r.io", "contexts": {"node": {"strategy": "Sample", "count": 0}}}),
                "spec.contexts.node.count: '0'",
            ),
            (
                json!({"registry": "r.io", "contexts": {"kubelet": {"enabled": true}}}),
                "spec.contexts.kubelet.enabled: needs spec.image",
            ),
            (
                json!({"registry": "r.io", "image": "app:1",
                       "contexts": {"kubelet": {"enabled": true, "serviceAccountName": "Bad_SA"}}}),
                "spec.contexts.kubelet.serviceAccountName: 'Bad_SA'",
            ),
            (
                json!({"registry": "r.io", "proxy": {"mode": "Explicit"}}),
                "spec.proxy.url",
            ),
            (
                json!({"registry": "r.io", "proxy": {"mode": "Explicit", "url": "ftp://p"}}),
                "spec.proxy.url",
            ),
            (
                json!({"registry": "r.io", "proxy": {"url": "http://p:1"}}),
                "spec.proxy.url: 'http://p:1'",
            ),
            (
                json!({"registry": "r.io", "proxy": {"mode": "None", "noProxy": ["x"]}}),
                "spec.proxy.noProxy",
            ),
            (
                json!({"registry": "r.io", "proxy": {"mode": "Explicit", "url": "http://p:1", "noProxy": ["a,b"]}}),
                "spec.proxy.noProxy: 'a,b'",
            ),
        ];
        for (v, want) in cases {
            let e = validate(&spec(v.clone())).unwrap_err();
            assert!(e.starts_with(want), "{v}: {e}");
        }
    }
}
