//! The `RegistryConnectivityCheck` custom resource (`regcheck.dev/v1alpha1`).
//!
//! These types are the single source of the CRD: `regcheck crdgen` prints [`crd_yaml`], and
//! `crds/regcheck.dev_registryconnectivitychecks.yaml` holds the same text (a unit test fails
//! when they drift apart). Doc comments become `kubectl explain` descriptions.
//!
//! The schema bounds every string, list and number and checks host names and the interval
//! format; CEL rules (`x-kubernetes-validations`, Kubernetes 1.25+) cover what a pattern cannot.
//! Whatever still gets through (e.g. an image reference that only the full parser rejects) is
//! reported by the controller as `Ready=False` with reason `InvalidSpec`.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;

/// API group of the resource.
pub const GROUP: &str = "regcheck.dev";
/// Path of the generated CRD in the repository.
pub const CRD_PATH: &str = "crds/regcheck.dev_registryconnectivitychecks.yaml";

/// A host name or IP literal (IPv6 in brackets) with an optional port.
const HOST_PORT_PATTERN: &str = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?$";
/// Azure region names: letters and digits.
/// An egress profile name (the controller checks it against the profile data).
const PROFILE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9-]{0,39}$";
const REGION_PATTERN: &str = r"^[a-z0-9]{1,40}$";
/// `1m`, `90s`, `1h30m`: Go duration units h, m, s.
const INTERVAL_PATTERN: &str = r"^([0-9]{1,5}(h|m|s)){1,3}$";
/// A loose image reference; the controller parses it fully.
const IMAGE_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$";
/// DNS subdomain (Secret names).
const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// `http://` or `https://` proxy URL.
const PROXY_URL_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s]*)?$";
/// A NO_PROXY entry: host, `.domain`, `*`, CIDR or IP, optionally with a port.
const EGRESS_IP_PATTERN: &str = r"^[0-9A-Fa-f.:]{2,45}(/[0-9]{1,3})?$";

const NO_PROXY_PATTERN: &str = r"^[A-Za-z0-9.*:\[\]/_-]+$";

/// Most hosts in each of `dataEndpoints`, `regions` and `extraHosts`.
pub const MAX_HOSTS: usize = 16;
/// Most entries kept in `status.results`.
pub const MAX_RESULTS: usize = 50;
/// Longest `message` of a result, in characters.
pub const RESULT_MESSAGE_CHARS: usize = 256;
/// Longest diagnosis message, in characters.
pub const DIAGNOSIS_MESSAGE_CHARS: usize = 1024;

/// What to check: the registry, its endpoints, where to probe from, and how often.
///
/// Probes run from the network of the nodes (where kubelet and containerd pull images) and of
/// the pods; the status says what breaks and why.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "regcheck.dev",
    version = "v1alpha1",
    kind = "RegistryConnectivityCheck",
    namespaced,
    shortname = "rcc",
    category = "regcheck",
    doc = "A check that the cluster can reach a container registry from its nodes and pods; the status says why not.",
    status = "RegistryConnectivityCheckStatus",
    printcolumn = r#"{"name":"Registry","type":"string","jsonPath":".spec.registry"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.diagnosis.reason"}"#,
    printcolumn = r#"{"name":"Failing","type":"integer","jsonPath":".status.counts.nodesFailing","description":"Nodes whose probes found a problem in the last run"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastRun.completionTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.regions) || size(self.regions) == 0 || self.registry.matches('(?i)^[a-z0-9-]+\\\\.azurecr\\\\.[a-z]+$')"
).message("regions only apply to Azure registries (<name>.azurecr.io); list other data endpoints in dataEndpoints"))]
#[x_kube(validation = kube::core::Rule::new(
    "duration(self.interval) >= duration('30s') && duration(self.interval) <= duration('24h')"
).message("interval must be between 30s and 24h"))]
#[x_kube(validation = kube::core::Rule::new(
    "duration(self.interval) > duration(string(self.timeoutSeconds) + 's')"
).message("interval must be longer than timeoutSeconds"))]
#[serde(rename_all = "camelCase")]
pub struct RegistryConnectivityCheckSpec {
    /// Login server of the registry: a host name or IP address with an optional port, e.g.
    /// `myregistry.azurecr.io` or `registry.example.com:5000`.
    #[schemars(length(min = 1, max = 260), pattern(HOST_PORT_PATTERN))]
    pub registry: String,

    /// Data endpoints that layer downloads are redirected to (e.g.
    /// `myregistry.westeurope.data.azurecr.io`, or a storage account host), probed like the
    /// login server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 260), pattern(HOST_PORT_PATTERN))
    )]
    pub data_endpoints: Vec<String>,

    /// Azure regions of the registry's replicas: each derives the dedicated data endpoint
    /// `<name>.<region>.data.azurecr.io`. Only for Azure registries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 40), pattern(REGION_PATTERN))
    )]
    pub regions: Vec<String>,

    /// Other registry hosts to probe as well, e.g. `mcr.microsoft.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 260), pattern(HOST_PORT_PATTERN))
    )]
    pub extra_hosts: Vec<String>,

    /// What the registry is expected to resolve to.
    #[serde(default)]
    pub expect: Expect,

    /// Hosts the cluster must reach besides its registry (an egress profile's documented
    /// FQDNs, or plain hosts), probed with DNS, TCP, TLS and one request, without registry
    /// semantics.
    #[serde(default, skip_serializing_if = "EgressSpec::is_empty")]
    pub egress: EgressSpec,

    /// Image to pull the smallest layer of, as `repository:tag` or `repository@sha256:<digest>`
    /// (optionally prefixed with the registry host). Without it only the registry API is probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(IMAGE_PATTERN))]
    pub image: Option<String>,

    /// A `kubernetes.io/dockerconfigjson` Secret in this namespace with pull credentials for
    /// `image`. It is mounted read-only into the pod-context probes only; the controller never
    /// reads Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// Where to probe from: the nodes' own network and resolver, and the pod network.
    #[serde(default)]
    pub contexts: Contexts,

    /// Which HTTPS proxy the probes use.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// Time between runs, as a duration such as `5m`, `90s` or `1h` (30s to 24h).
    #[serde(default = "default_interval")]
    #[schemars(length(min = 2, max = 18), pattern(INTERVAL_PATTERN))]
    pub interval: String,

    /// Deadline of one probe, in seconds (1 to 300).
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: u32,

    /// Consecutive failed runs before `Ready` turns `False` (1 to 100).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,

    /// Consecutive good runs before `Ready` turns `True` again (1 to 100).
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,

    /// Stops starting new runs while true; the last status is kept.
    #[serde(default)]
    pub suspend: bool,
}

fn default_interval() -> String {
    "5m".into()
}
fn default_timeout_seconds() -> u32 {
    10
}
fn default_failure_threshold() -> u32 {
    2
}
fn default_success_threshold() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

/// Expected network access to the registry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expect {
    /// `Any` (default): any address is fine. `Public`: the registry must resolve to public
    /// addresses. `Private`: it must resolve to a private endpoint (a `privatelink` name and
    /// private addresses), as with Azure Private Link.
    #[serde(default)]
    pub network_access: NetworkAccess,
    /// Addresses (or CIDRs) the cluster's traffic to the registry is expected to leave through:
    /// the NAT gateway, load balancer outbound or firewall public IPs. When the registry's
    /// network rules deny an address outside them, the traffic leaves through the wrong path;
    /// inside them, the registry's IP rule is missing.
    #[serde(default, rename = "egressIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 2, max = 49), pattern(EGRESS_IP_PATTERN))
    )]
    pub egress_ips: Vec<String>,
}

/// Expected kind of registry addresses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NetworkAccess {
    #[default]
    Any,
    Public,
    Private,
}

impl From<NetworkAccess> for crate::engine::evidence::Expect {
    fn from(n: NetworkAccess) -> Self {
        match n {
            NetworkAccess::Any => Self::Any,
            NetworkAccess::Public => Self::Public,
            NetworkAccess::Private => Self::Private,
        }
    }
}

/// A Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// The network contexts probed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("self.node.enabled || self.pod.enabled")
    .message("enable at least one of contexts.node and contexts.pod"))]
pub struct Contexts {
    /// Probes on the nodes' own network (`hostNetwork`) with the node's resolver: what kubelet
    /// and containerd see when they pull images.
    #[serde(default)]
    pub node: NodeContext,
    /// Probes from an ordinary pod in this namespace: pod network, cluster DNS, and the
    /// NetworkPolicies, proxy settings and mesh that apply to this namespace.
    #[serde(default)]
    pub pod: PodContext,
    /// Pull canaries: the kubelet itself pulls `spec.image` on the nodes the node context
    /// plans (its selector, tolerations and strategy), so node and kubelet results compare
    /// node by node. Needs `spec.image`.
    #[serde(default)]
    pub kubelet: KubeletContext,
}

/// Pull canaries: a pod per planned node whose image the kubelet pulls and never runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeletContext {
    /// Create pull canaries (default false; needs `spec.image`).
    #[serde(default)]
    pub enabled: bool,
    /// A ServiceAccount in this namespace whose `imagePullSecrets` the canaries use, so the
    /// pull has exactly the credentials of a workload. Without it the canaries have the
    /// kubelet's own credentials plus `spec.credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub service_account_name: Option<String>,
}

/// Node-network probes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.strategy == 'Sample' || !has(self.count)")
    .message("count is only used with strategy Sample"))]
#[x_kube(validation = kube::core::Rule::new("self.strategy != 'Sample' || has(self.count)")
    .message("strategy Sample needs count"))]
pub struct NodeContext {
    /// Probe from the node network (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Only nodes with all these labels are probed (Linux nodes only, always).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, size(k) <= 317 && size(self[k]) <= 63)")
        .message("label keys are at most 317 and values at most 63 characters"))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints that node probes tolerate, so that tainted node pools are probed too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// Which nodes to probe in a run. `PerNodePool` (default): one node per node pool and
    /// zone, rotating through each pool's nodes from run to run. `AllNodes`: every matching
    /// node. `Sample`: `count` nodes spread over the pools.
    #[serde(default)]
    pub strategy: Strategy,
    /// Number of nodes per run with strategy `Sample` (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<u32>,
}

impl Default for NodeContext {
    fn default() -> Self {
        Self {
            enabled: true,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            strategy: Strategy::default(),
            count: None,
        }
    }
}

/// How node targets are chosen.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Strategy {
    #[default]
    PerNodePool,
    AllNodes,
    Sample,
}

/// Pod-network probes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PodContext {
    /// Probe from the pod network (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for PodContext {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// HTTPS proxy settings of the probes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.mode == 'Explicit' ? has(self.url) : !has(self.url)")
    .message("url is required with mode Explicit and not allowed otherwise"))]
#[x_kube(validation = kube::core::Rule::new("self.mode == 'Explicit' || !has(self.noProxy) || size(self.noProxy) == 0")
    .message("noProxy is only used with mode Explicit"))]
pub struct ProxySpec {
    /// `Inherit` (default): use the proxy settings the probe finds in its environment (the
    /// node's, or those injected into pods). `Explicit`: use `url` and `noProxy`. `None`:
    /// connect directly.
    #[serde(default)]
    pub mode: ProxyMode,
    /// Proxy URL for mode `Explicit`, e.g. `http://proxy.corp:3128`. Anyone who can read this
    /// resource can read it: do not put credentials here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), pattern(PROXY_URL_PATTERN))]
    pub url: Option<String>,
    /// Hosts, domains (`.example.com`), IP addresses and CIDRs reached without the proxy, as
    /// in NO_PROXY.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 253), pattern(NO_PROXY_PATTERN))
    )]
    pub no_proxy: Vec<String>,
}

/// Egress hosts to probe besides the registry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressSpec {
    /// Egress profiles whose documented hosts are probed: `AKS` (AKS required outbound FQDNs,
    /// Azure public cloud), `AKS-AzureChinaCloud`, `AKS-AzureUSGovernment`, `EKS` (Amazon ECR
    /// through VPC endpoints; needs the parameter `region`), `GKE` (Artifact Registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        inner(length(min = 1, max = 40), pattern(PROFILE_PATTERN))
    )]
    pub profiles: Vec<String>,
    /// Parameters of the profiles: `region` (e.g. `eastus`), `apiServer` (the AKS cluster's API
    /// server FQDN), `account` (the AWS account id of an ECR registry). A rule needing a
    /// parameter that is not given is reported as not probed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, size(k) <= 40 && size(self[k]) <= 253)")
        .message("parameter names are at most 40 and values at most 253 characters"))]
    pub parameters: BTreeMap<String, String>,
    /// Other hosts (`host` or `host:port`) the cluster must reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 260), pattern(HOST_PORT_PATTERN))
    )]
    pub hosts: Vec<String>,
}

impl EgressSpec {
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.parameters.is_empty() && self.hosts.is_empty()
    }
}

/// Proxy mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ProxyMode {
    #[default]
    Inherit,
    Explicit,
    None,
}

/// Observed state of a check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryConnectivityCheckStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// `Ready` summarises; `DNSResolved`, `RegistryReachable`, `TLSVerified`,
    /// `RegistryAPIReachable`, `DataEndpointReachable`, `ContextsConsistent` and
    /// `ProbesHealthy` give detail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// The primary finding of the last run: the worst one across contexts and nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
    /// The last completed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunInfo>,
    /// Results per context and node of the last run (at most 50, failures first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub results: Vec<ProbeResult>,
    /// How many nodes and probes the last run covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// Consecutive runs that found the registry unusable.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub consecutive_failures: u32,
    /// Consecutive runs that found the registry usable.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub consecutive_successes: u32,
    /// The `regcheck.dev/run-now` annotation (its value, or a hash of a long value) that the
    /// last completed run started with; a different annotation starts a new run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub last_run_now: Option<String>,
    /// Nodes the last run could not probe and why (at most 16, by name; see
    /// `skippedNodeCount` for all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub skipped_nodes: Vec<SkippedNode>,
    /// How many nodes the last run could not probe.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub skipped_node_count: u32,
    /// Image pulls of workloads (kubelet's `Failed` Events) that failed on this check's
    /// registry or data endpoints over the last window; absent when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_pull_failures: Option<WorkloadPullFailures>,
}

/// Most entries of `status.skippedNodes`.
pub const MAX_SKIPPED_NODES: usize = 16;

/// A node a run could not probe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedNode {
    /// Name of the node.
    #[schemars(length(max = 253))]
    pub node: String,
    /// `VirtualKubelet`, `NotLinux`, `NotReady`, `Unschedulable`, `SelectorMismatch`,
    /// `UntoleratedTaint` or `PlatformNotInProbeImage`.
    #[schemars(length(max = 64))]
    pub reason: String,
    /// What is missing, e.g. the platform the probe image lacks.
    #[schemars(length(max = 512))]
    pub message: String,
}

/// Pull failures of workloads observed on a check's hosts over a window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPullFailures {
    /// Length of the window, in seconds.
    #[schemars(range(min = 0))]
    pub window_seconds: u32,
    /// Failed pulls in the window.
    #[schemars(range(min = 0))]
    pub count: u64,
    /// Distinct pods whose pulls failed in the window (at most 1000 are tracked per host).
    #[schemars(range(min = 0))]
    pub pods: u32,
    /// Failures in the window of pods that were not tracked because the set of pods was full.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub pods_not_tracked: u64,
    /// The registry host of the image that failed last.
    #[schemars(length(max = 260))]
    pub registry: String,
    /// Reason of the last failure (the catalogue's name, as in status.diagnosis).
    #[schemars(length(max = 64))]
    pub last_reason: String,
    /// The runtime's message of the last failure (capped).
    #[schemars(length(max = 1024))]
    pub last_message: String,
    /// `namespace/name` of the pod of the last failure.
    #[schemars(length(max = 317))]
    pub last_pod: String,
    /// Node of the last failure, when the Event names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub last_node: Option<String>,
    /// When the last failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<Time>,
}

fn is_zero<N: Default + PartialEq>(n: &N) -> bool {
    *n == N::default()
}

/// The primary finding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// Stable CamelCase reason, e.g. `PrivateEndpointResolvesPublic` or `Healthy`.
    #[schemars(length(max = 64))]
    pub reason: String,
    /// Root-cause family, e.g. `VirtualNetworkConfiguration`.
    #[schemars(length(max = 64))]
    pub cause: String,
    /// The matching `az acr check-health` error code, where one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub code: Option<String>,
    /// What was found, naming the host, address and evidence.
    #[schemars(length(max = 1024))]
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048))]
    pub remediation: String,
    /// Documentation links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 512)))]
    pub docs: Vec<String>,
    /// Context in which it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ProbeContext>,
    /// Node on which it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node: Option<String>,
}

/// One run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// Run id, also the `regcheck.dev/run` label of its Jobs.
    #[schemars(length(max = 63))]
    pub id: String,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the last probe of the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Duration of the run in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub duration_ms: Option<u64>,
}

pub use crate::engine::findings::ProbeContext;

/// Outcome of one probe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ResultVerdict {
    /// Every probed path works.
    Healthy,
    /// The login server works, something else does not.
    Degraded,
    /// The registry's API cannot be reached.
    Unreachable,
    /// The probe itself failed (not scheduled, image not pulled, crashed, timed out, bad
    /// report): says nothing about the registry.
    ProbeFailed,
}

/// Result of one probe (one context on one node).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    /// Network context.
    pub context: ProbeContext,
    /// Node the probe ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node: Option<String>,
    /// Node pool of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub node_pool: Option<String>,
    /// Zone of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub zone: Option<String>,
    /// Overall outcome.
    pub verdict: ResultVerdict,
    /// Reason of the probe's primary finding.
    #[schemars(length(max = 64))]
    pub reason: String,
    /// Short message of the primary finding (at most 256 characters).
    #[schemars(length(max = 256))]
    pub message: String,
    /// Time spent in each phase on the login server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<PhaseTimings>,
}

/// Milliseconds per phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTimings {
    /// DNS resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub dns_ms: Option<u64>,
    /// TCP connect (first address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tcp_ms: Option<u64>,
    /// TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tls_ms: Option<u64>,
    /// Registry API request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub http_ms: Option<u64>,
    /// Whole probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub total_ms: Option<u64>,
}

/// Coverage of the last run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Distinct nodes probed.
    #[schemars(range(min = 0))]
    pub nodes_checked: u32,
    /// Distinct nodes with at least one probe that found a problem.
    #[schemars(range(min = 0))]
    pub nodes_failing: u32,
    /// Probes run.
    #[schemars(range(min = 0))]
    pub probes: u32,
    /// Probes that failed themselves (see `ProbesHealthy`).
    #[schemars(range(min = 0))]
    pub probes_failed: u32,
}

/// The CRD as YAML, exactly as in `crds/`.
pub fn crd_yaml() -> String {
    let crd = RegistryConnectivityCheck::crd();
    // The CRD consists of strings, numbers, maps and lists only: serialising cannot fail.
    let yaml = serde_yaml::to_string(&crd).expect("the CRD serialises to YAML");
    format!("# Generated by `regcheck crdgen`: do not edit.\n---\n{yaml}")
}

/// Body of `regcheck crdgen`: writes [`crd_yaml`].
pub fn crdgen(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(crd_yaml().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn schema() -> Value {
        let crd = RegistryConnectivityCheck::crd();
        let v = serde_json::to_value(&crd).unwrap();
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn crd_file_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_PATH);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml(),
            "{CRD_PATH} differs from the types in src/operator/crd.rs: run `cargo run -- crdgen > {CRD_PATH}` and commit it"
        );
    }

    #[test]
    fn names_and_columns() {
        let crd = RegistryConnectivityCheck::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("registryconnectivitychecks.regcheck.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["rcc".to_string()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["regcheck".to_string()])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            ["Registry", "Ready", "Reason", "Failing", "Last Run", "Age"]
        );
    }

    /// Every property below spec and status has a description (`kubectl explain`).
    #[test]
    fn every_field_is_described() {
        fn walk(path: &str, s: &Value, missing: &mut Vec<String>) {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    let p = format!("{path}.{k}");
                    let own = v.get("description").is_some();
                    if !own && !p.starts_with(".status.conditions") && !p.contains("tolerations") {
                        missing.push(p.clone());
                    }
                    walk(&p, v, missing);
                }
            }
            if let Some(items) = s.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let s = schema();
        let mut missing = Vec::new();
        walk("", &s["properties"]["spec"], &mut missing);
        walk("", &s["properties"]["status"], &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
    }

    /// Every string has maxLength, every list maxItems, every map maxProperties and every
    /// integer a maximum or a non-negative minimum (spec integers both).
    #[test]
    fn every_value_is_bounded() {
        fn walk(path: &str, s: &Value, spec: bool, bad: &mut Vec<String>) {
            if path.contains("conditions[]") || path.contains("tolerations[]") {
                return;
            }
            let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
            let has = |k: &str| s.get(k).is_some();
            let ok = match ty {
                "string" => has("maxLength") || has("enum") || has("format"),
                "array" => has("maxItems"),
                "integer" => {
                    if spec {
                        has("minimum") && has("maximum")
                    } else {
                        has("minimum")
                    }
                }
                "object" => has("properties") || has("maxProperties"),
                _ => true,
            };
            if !ok {
                bad.push(path.to_string());
            }
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    walk(&format!("{path}.{k}"), v, spec, bad);
                }
            }
            if let Some(items) = s.get("items") {
                walk(&format!("{path}[]"), items, spec, bad);
            }
        }
        let s = schema();
        let mut bad = Vec::new();
        walk("spec", &s["properties"]["spec"], true, &mut bad);
        walk("status", &s["properties"]["status"], false, &mut bad);
        assert!(bad.is_empty(), "unbounded: {bad:?}");
    }

    #[test]
    fn conditions_are_a_map_keyed_by_type() {
        let c = &schema()["properties"]["status"]["properties"]["conditions"];
        assert_eq!(c["x-kubernetes-list-type"], "map");
        assert_eq!(c["x-kubernetes-list-map-keys"], json!(["type"]));
        assert_eq!(c["maxItems"], 16);
    }

    #[test]
    fn cel_rules_are_in_place() {
        let s = serde_json::to_string(&schema()).unwrap();
        for rule in [
            "self.mode == 'Explicit' ? has(self.url) : !has(self.url)",
            "self.strategy == 'Sample' || !has(self.count)",
            "self.strategy != 'Sample' || has(self.count)",
            "self.node.enabled || self.pod.enabled",
            "duration(self.interval) >= duration('30s')",
        ] {
            assert!(s.contains(rule), "missing rule {rule}");
        }
    }

    /// The schema patterns (RE2 in the apiserver; the same syntax in the regex crate).
    #[test]
    fn patterns_accept_and_reject() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                HOST_PORT_PATTERN,
                &[
                    "myregistry.azurecr.io",
                    "registry.example.com:5000",
                    "10.0.0.4",
                    "[fd00::1]:443",
                    "localhost",
                ],
                &[
                    "",
                    "-bad.example",
                    "a..b",
                    "a b",
                    "http://x",
                    "x_y.com",
                    "r.io:",
                    "r.io/x",
                ],
            ),
            (
                REGION_PATTERN,
                &["westeurope", "eastus2"],
                &["West Europe", "", "west-europe"],
            ),
            (
                INTERVAL_PATTERN,
                &["5m", "90s", "1h30m", "1h0m0s"],
                &["", "5", "5 m", "1d", "-5m", "5ms", "1.5h"],
            ),
            (
                IMAGE_PATTERN,
                &[
                    "library/nginx:1.27",
                    "app@sha256:0123abcd",
                    "r.azurecr.io/ns/app:v1",
                ],
                &["", ":tag", "app tag", "app\n"],
            ),
            (
                DNS_SUBDOMAIN_PATTERN,
                &["pull-secret", "a.b"],
                &["Pull", "-a", "a_b", ""],
            ),
            (
                PROXY_URL_PATTERN,
                &["http://proxy.corp:3128", "https://10.0.0.1:8443/"],
                &[
                    "proxy.corp:3128",
                    "socks5://p:1080",
                    "http://",
                    "http://a b",
                ],
            ),
            (
                NO_PROXY_PATTERN,
                &[
                    ".azurecr.io",
                    "10.0.0.0/8",
                    "*",
                    "[fd00::1]:443",
                    "localhost",
                ],
                &["a b", "a,b", ""],
            ),
        ];
        for (pattern, good, bad) in cases {
            let re = regex::Regex::new(pattern).unwrap();
            for g in *good {
                assert!(re.is_match(g), "{pattern} should accept {g:?}");
            }
            for b in *bad {
                assert!(!re.is_match(b), "{pattern} should reject {b:?}");
            }
        }
        // The patterns are really in the schema.
        let s = serde_json::to_string(&schema()).unwrap();
        for p in [
            HOST_PORT_PATTERN,
            REGION_PATTERN,
            INTERVAL_PATTERN,
            PROXY_URL_PATTERN,
        ] {
            assert!(s.contains(&serde_json::to_string(p).unwrap()), "{p}");
        }
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec: RegistryConnectivityCheckSpec =
            serde_json::from_value(json!({"registry": "r.azurecr.io"})).unwrap();
        assert_eq!(spec.interval, "5m");
        assert_eq!(spec.failure_threshold, 2);
        assert_eq!(spec.success_threshold, 1);
        assert_eq!(spec.timeout_seconds, 10);
        assert!(spec.contexts.node.enabled && spec.contexts.pod.enabled);
        assert_eq!(spec.contexts.node.strategy, Strategy::PerNodePool);
        assert_eq!(spec.proxy.mode, ProxyMode::Inherit);
        assert_eq!(spec.expect.network_access, NetworkAccess::Any);
        assert!(!spec.suspend);
        // Defaults are in the schema too, so the apiserver fills them.
        let s = schema();
        let p = &s["properties"]["spec"]["properties"];
        assert_eq!(p["interval"]["default"], "5m");
        assert_eq!(p["failureThreshold"]["default"], 2);
        assert_eq!(p["successThreshold"]["default"], 1);
    }

    #[test]
    fn crdgen_writes_the_yaml() {
        let mut buf = Vec::new();
        crdgen(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text, crd_yaml());
        assert!(text.contains("kind: CustomResourceDefinition"));
    }
}
