//! Probe Jobs (pure): the Job that runs `regcheck probe` for one context on one node.
//!
//! Node context: `hostNetwork: true` with `dnsPolicy: Default` (the node's own resolver, as
//! kubelet and containerd use), pinned to the node, tolerating the configured taints, Linux
//! only, in the operator's namespace (the one namespace that needs the privileged Pod Security
//! level). Pod context: ordinary pod network and cluster DNS in the check's own namespace, so
//! that its NetworkPolicies, proxy settings and mesh apply; the credentials Secret is mounted
//! there only. Both meet the `restricted` Pod Security profile apart from `hostNetwork`.

use crate::operator::crd::{ProbeContext, RegistryConnectivityCheck};
use crate::operator::nodes::Target;
use crate::operator::spec::{ProxySetting, ValidSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Label keys carried by probe Jobs and their pods.
pub mod labels {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Name of the check (cut and hashed when longer than a label value may be).
    pub const CHECK: &str = "regcheck.dev/check";
    pub const CHECK_NAMESPACE: &str = "regcheck.dev/check-namespace";
    /// UID of the check: the reliable selector for its Jobs in every namespace.
    pub const CHECK_UID: &str = "regcheck.dev/check-uid";
    pub const RUN: &str = "regcheck.dev/run";
    pub const CONTEXT: &str = "regcheck.dev/context";
    pub const NODE: &str = "regcheck.dev/node";
}

/// Annotations on probe Jobs: the exact values behind labels that may be cut, and the run's
/// bookkeeping, so that a restarted controller can resume a run from its Jobs alone.
pub mod annotations {
    pub const CHECK: &str = "regcheck.dev/check";
    pub const NODE: &str = "regcheck.dev/node";
    /// The `metadata.generation` of the check when the run started.
    pub const GENERATION: &str = "regcheck.dev/generation";
    /// The run-now token (see `decide::run_now_token`) when the run started.
    pub const RUN_NOW: &str = "regcheck.dev/run-now";
    /// How many Jobs the run was planned with.
    pub const RUN_SIZE: &str = "regcheck.dev/run-size";
    /// The node pool and zone of the probe's target node.
    pub const NODE_POOL: &str = "regcheck.dev/node-pool";
    pub const ZONE: &str = "regcheck.dev/zone";
}

/// The user the probe runs as (distroless `nonroot`).
pub const PROBE_UID: i64 = 65532;
/// Where the credentials Secret is mounted in pod-context probes.
pub const DOCKER_CONFIG_DIR: &str = "/var/run/regcheck/docker";
const DOCKER_CONFIG_FILE: &str = "config.json";
/// Environment variable with the node's own addresses (comma list), filled by the downward
/// API from `status.hostIP`: the probe never dials them. The node's other addresses (the
/// other family of a dual-stack node) come as `--node-ip` ([`ProbeJob::node_addresses`]).
pub const NODE_IPS_ENV: &str = "REGCHECK_NODE_IPS";
/// Slack on top of the probe's own deadline for scheduling and image pull.
pub const DEADLINE_SLACK_SECONDS: i64 = 120;
/// Finished Jobs are garbage-collected after this long if the controller has not deleted them.
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 3600;
/// Longest Job name (it becomes a label value on its pods).
pub const MAX_NAME: usize = 63;

/// Resources of one probe container.
pub const CPU_REQUEST: &str = "20m";
pub const CPU_LIMIT: &str = "200m";
pub const MEMORY_REQUEST: &str = "32Mi";
pub const MEMORY_LIMIT: &str = "64Mi";

/// What one probe Job is for.
#[derive(Debug, Clone, Copy)]
pub struct ProbeJob<'a> {
    pub check: &'a RegistryConnectivityCheck,
    /// The check's parsed spec: the probe's arguments are written from it.
    pub spec: &'a ValidSpec,
    /// Run id (a short label-safe string chosen by the controller).
    pub run_id: &'a str,
    pub context: ProbeContext,
    /// Node to pin the probe to. Node-context probes always have one; pod-context probes are
    /// pinned to the same nodes so that the two contexts can be compared node by node.
    pub target: Option<&'a Target>,
    /// The controller's own image, which carries `regcheck probe`.
    pub image: &'a str,
    /// Namespace of the operator, where node-context probes run.
    pub operator_namespace: &'a str,
    /// The target node's own addresses from its Node object (`status.addresses`, both
    /// families), passed as `--node-ip`: the probe never dials them. The downward API adds
    /// `status.hostIP` ([`NODE_IPS_ENV`]), which names one family only; `status.hostIPs`
    /// (both) is not used there because API servers before 1.28 refuse a pod that asks for it.
    pub node_addresses: &'a [std::net::IpAddr],
}

/// A required node affinity `kubernetes.io/arch In (<archs of the probe image>)`: a probe Job
/// never lands on a node its image cannot run on (and stays Pending with a clear scheduler
/// message if pinned to one).
pub fn arch_affinity(
    platforms: &crate::operator::platform::Platforms,
) -> k8s_openapi::api::core::v1::Affinity {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: crate::operator::platform::ARCH_LABEL.into(),
                        operator: "In".into(),
                        values: Some(platforms.archs("linux")),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where node probes find the host's files: each configured host path `P` is mounted
/// read-only at `/host/P`.
pub const HOST_ROOT: &str = "/host";
/// Default of `--node-containerd-config-dir`: containerd's registry `config_path`.
pub const DEFAULT_NODE_CONTAINERD_CONFIG_DIR: &str = "/etc/containerd/certs.d";
/// Default of `--node-containerd-dropin-dir`: containerd's systemd drop-ins (its proxy).
pub const DEFAULT_NODE_CONTAINERD_DROPIN_DIR: &str = "/etc/systemd/system/containerd.service.d";
/// Default of `--node-resolv-conf`: the resolver configuration containerd uses.
pub const DEFAULT_NODE_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The host files node probes read, read-only (`None`: not mounted). Nothing else of the host
/// is mounted, and pod-context probes mount none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHostFiles {
    /// containerd's registry host configuration directory (`hosts.toml` per registry).
    pub containerd_config_dir: Option<String>,
    /// containerd's systemd unit drop-in directory (`Environment=HTTPS_PROXY=...`).
    pub containerd_dropin_dir: Option<String>,
    /// The host's resolv.conf (containerd's resolver; the pod's own is the kubelet's).
    pub resolv_conf: Option<String>,
}

impl Default for NodeHostFiles {
    fn default() -> Self {
        Self {
            containerd_config_dir: Some(DEFAULT_NODE_CONTAINERD_CONFIG_DIR.into()),
            containerd_dropin_dir: Some(DEFAULT_NODE_CONTAINERD_DROPIN_DIR.into()),
            resolv_conf: Some(DEFAULT_NODE_RESOLV_CONF.into()),
        }
    }
}

/// A host path flag: empty = not mounted; otherwise an absolute, normalised path (no `.`/`..`
/// component, no empty component, no control characters), never `/` itself, at most 1024
/// bytes. Errors name `field` and the value.
pub fn parse_host_path(
    field: &str,
    value: &str,
) -> Result<Option<String>, crate::engine::inputs::InputError> {
    use crate::engine::inputs::InputError;
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| Err(InputError::new(field, value, why));
    if value.len() > 1024 {
        return bad("is longer than 1024 bytes");
    }
    if value.chars().any(|c| c.is_control()) {
        return bad("contains control characters");
    }
    if !value.starts_with('/') {
        return bad("must be an absolute path (or empty to mount nothing)");
    }
    let trimmed = value.trim_end_matches('/');
    if trimmed.is_empty() {
        return bad("must not be the host's root directory");
    }
    for part in trimmed[1..].split('/') {
        match part {
            ".." => return bad("must not contain '..'"),
            "." | "" => return bad("must be a normalised path (no '.' or empty components)"),
            _ => {}
        }
    }
    Ok(Some(trimmed.to_string()))
}

/// Where a host path is seen inside the probe pod.
pub fn host_mount_path(host_path: &str) -> String {
    format!("{HOST_ROOT}{host_path}")
}

/// The read-only hostPath volumes, their mounts and the probe arguments that use them, for a
/// node probe. Directories have no hostPath `type`: kubelet then does not check them, so a
/// node without the directory still runs the probe (the probe treats a missing or empty
/// directory as "no configuration"). The resolv.conf is `type: File` (every Linux node has
/// one). `DirectoryOrCreate`/`FileOrCreate` are never used. `inherit_proxy`: the check's proxy
/// mode is `Inherit`, so the drop-ins' proxy applies.
pub fn host_files(
    files: &NodeHostFiles,
    inherit_proxy: bool,
) -> (Vec<Volume>, Vec<VolumeMount>, Vec<String>) {
    use k8s_openapi::api::core::v1::HostPathVolumeSource;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut args = Vec::new();
    let mut add = |name: &str, path: &str, type_: Option<&str>| {
        volumes.push(Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: type_.map(String::from),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: name.into(),
            mount_path: host_mount_path(path),
            read_only: Some(true),
            ..Default::default()
        });
    };
    if let Some(d) = &files.containerd_config_dir {
        add("host-containerd-certs", d, None);
        args.extend([
            "--containerd-config-dir".to_string(),
            host_mount_path(d),
            "--host-root".to_string(),
            HOST_ROOT.to_string(),
        ]);
    }
    if let Some(d) = &files.containerd_dropin_dir
        && inherit_proxy
    {
        add("host-containerd-dropins", d, None);
        args.extend(["--runtime-proxy-from".to_string(), host_mount_path(d)]);
    }
    if let Some(f) = &files.resolv_conf {
        add("host-resolv-conf", f, Some("File"));
        args.extend(["--host-resolv-conf".to_string(), host_mount_path(f)]);
    }
    (volumes, mounts, args)
}

/// A Job's finishing condition (`Complete` or `Failed`, status `True`), if it finished.
pub fn finished_condition(job: &Job) -> Option<&k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// A Job's `Failed` condition, if it failed.
pub fn failed_condition(job: &Job) -> Option<&k8s_openapi::api::batch::v1::JobCondition> {
    finished_condition(job).filter(|c| c.type_ == "Failed")
}

/// When a Job finished: its completion time, else the time of its finishing condition.
pub fn finished_at(job: &Job) -> Option<k8s_openapi::jiff::Timestamp> {
    let s = job.status.as_ref()?;
    s.completion_time.as_ref().map(|t| t.0).or_else(|| {
        finished_condition(job)?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    })
}

/// Lowercase hex of the first `n` bytes of SHA-256 over the parts (separated by NUL).
fn hash_hex(parts: &[&str], n: usize) -> String {
    let mut joined = Vec::new();
    for p in parts {
        joined.extend_from_slice(p.as_bytes());
        joined.push(0);
    }
    crate::engine::text::sha256_hex(&joined, n)
}

/// `s` reduced to `[a-z0-9-]`, at most `max` characters, starting and ending alphanumeric.
fn dns_label_part(s: &str, max: usize) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    mapped.trim_matches('-').to_string()
}

/// A label value for `s`: `s` itself when it is a valid value, otherwise a cut, cleaned prefix
/// with a hash suffix (the exact value then goes into an annotation).
pub fn label_value(s: &str) -> String {
    let valid = s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric());
    if valid {
        return s.to_string();
    }
    let prefix = dns_label_part(s, 52);
    let h = hash_hex(&[s], 5);
    if prefix.is_empty() {
        h
    } else {
        format!("{prefix}-{h}")
    }
}

/// Whether `name` is the name [`job_name`] gives a pull canary (`rcc-...-k-<10 hex>`): the
/// kubelet's pull failures of regcheck's own canaries are not workload pull failures.
pub fn is_canary_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("rcc-") else {
        return false;
    };
    let Some((head, hash)) = rest.rsplit_once('-') else {
        return false;
    };
    hash.len() == 10
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && (head == "k" || head.ends_with("-k"))
}

/// Deterministic Job name: `rcc-<check>-<n|p|k>-<hash>`, at most 63 characters; the hash covers
/// namespace, name and UID of the check, the run, the context and the node, so names never
/// collide between checks, runs or nodes, and a restarted controller finds the same name.
pub fn job_name(p: &ProbeJob) -> String {
    let check = p.check;
    let ctx = match p.context {
        ProbeContext::Node => "n",
        ProbeContext::Pod => "p",
        ProbeContext::Kubelet => "k",
    };
    let node = p.target.map(|t| t.node.as_str()).unwrap_or("");
    let ns = check.namespace().unwrap_or_default();
    let uid = check.uid().unwrap_or_default();
    let h = hash_hex(
        &[&ns, &check.name_any(), &uid, p.run_id, ctx, node],
        5, // 10 hex digits
    );
    // "rcc-" + name + "-" + ctx + "-" + hash
    let room = MAX_NAME - 4 - 1 - ctx.len() - 1 - h.len();
    let name = dns_label_part(&check.name_any(), room);
    if name.is_empty() {
        format!("rcc-{ctx}-{h}")
    } else {
        format!("rcc-{name}-{ctx}-{h}")
    }
}

/// Arguments of `regcheck probe` for this check and context (the container's `args`).
pub fn probe_args(p: &ProbeJob) -> Vec<String> {
    let spec = p.spec;
    let hosts = &spec.input;
    let mut a: Vec<String> = vec![
        "probe".into(),
        "--registry".into(),
        hosts.registry.clone(),
        "--context".into(),
        p.context.as_str().into(),
    ];
    let mut many = |flag: &str, values: &[String]| {
        for v in values {
            a.push(flag.into());
            a.push(v.clone());
        }
    };
    many("--data-endpoint", &hosts.data_endpoints);
    many("--region", &hosts.regions);
    many("--also", &hosts.also);
    a.push("--expect".into());
    a.push(
        match p.check.spec.expect.network_access {
            crate::operator::crd::NetworkAccess::Any => "any",
            crate::operator::crd::NetworkAccess::Public => "public",
            crate::operator::crd::NetworkAccess::Private => "private",
        }
        .into(),
    );
    for ip in &spec.egress_ips {
        a.push("--egress-ip".into());
        a.push(ip.clone());
    }
    let egress = &spec.egress.input;
    for p in &egress.profiles {
        a.push("--egress-profile".into());
        a.push(p.clone());
    }
    for (k, v) in &egress.params {
        a.push("--egress-profile-param".into());
        a.push(format!("{k}={v}"));
    }
    for h in &egress.hosts {
        a.push("--egress-host".into());
        a.push(h.clone());
    }
    if let Some((image, _)) = &spec.image {
        a.push("--image".into());
        a.push(image.clone());
        if p.context == ProbeContext::Pod && p.check.spec.credentials_secret_ref.is_some() {
            a.push("--docker-config".into());
            a.push(format!("{DOCKER_CONFIG_DIR}/{DOCKER_CONFIG_FILE}"));
        }
    }
    match &spec.proxy {
        ProxySetting::Inherit => {}
        ProxySetting::None => a.push("--no-proxy".into()),
        ProxySetting::Explicit { text, no_proxy, .. } => {
            a.push("--proxy".into());
            a.push(text.clone());
            if !no_proxy.is_empty() {
                a.push("--proxy-bypass".into());
                a.push(no_proxy.join(","));
            }
        }
    }
    a.push("--timeout".into());
    a.push(format!("{}s", spec.timeout.as_secs()));
    if let Some(t) = p.target {
        a.push("--node".into());
        a.push(t.node.clone());
    }
    for ip in p.node_addresses {
        a.push("--node-ip".into());
        a.push(ip.to_string());
    }
    a
}

/// Labels of the Job and its pod.
pub fn job_labels(p: &ProbeJob) -> BTreeMap<String, String> {
    let check = p.check;
    let mut l = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        l.insert(k.to_string(), v);
    };
    put(labels::NAME, "regcheck".into());
    put(labels::COMPONENT, "probe".into());
    put(labels::MANAGED_BY, "regcheck".into());
    put(labels::CHECK, label_value(&check.name_any()));
    put(
        labels::CHECK_NAMESPACE,
        label_value(&check.namespace().unwrap_or_default()),
    );
    put(labels::CHECK_UID, check.uid().unwrap_or_default());
    put(labels::RUN, label_value(p.run_id));
    put(labels::CONTEXT, p.context.as_str().into());
    if let Some(t) = p.target {
        put(labels::NODE, label_value(&t.node));
    }
    l
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// Container security settings of the `restricted` Pod Security profile.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(PROBE_UID),
        run_as_group: Some(PROBE_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Pod security settings of the `restricted` Pod Security profile.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(PROBE_UID),
        run_as_group: Some(PROBE_UID),
        fs_group: Some(PROBE_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The probe Job.
pub fn build_job(p: &ProbeJob) -> Job {
    let check = p.check;
    let spec = &check.spec;
    let check_ns = check.namespace().unwrap_or_default();
    let namespace = match p.context {
        ProbeContext::Node => p.operator_namespace.to_string(),
        ProbeContext::Pod | ProbeContext::Kubelet => check_ns.clone(),
    };
    let labels = job_labels(p);
    let mut annotations = BTreeMap::from([(
        annotations::CHECK.to_string(),
        format!("{check_ns}/{}", check.name_any()),
    )]);
    if let Some(t) = p.target {
        annotations.insert(annotations::NODE.to_string(), t.node.clone());
    }

    let (volumes, mounts) = match (&spec.credentials_secret_ref, p.context) {
        (Some(secret), ProbeContext::Pod) => (
            Some(vec![Volume {
                name: "docker-config".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.name.clone()),
                    items: Some(vec![KeyToPath {
                        key: ".dockerconfigjson".into(),
                        path: DOCKER_CONFIG_FILE.into(),
                        mode: None,
                    }]),
                    default_mode: Some(0o440),
                    optional: Some(false),
                }),
                ..Default::default()
            }]),
            Some(vec![VolumeMount {
                name: "docker-config".into(),
                mount_path: DOCKER_CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
        ),
        _ => (None, None),
    };

    let container = Container {
        name: "probe".into(),
        image: Some(p.image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(probe_args(p)),
        env: Some(vec![EnvVar {
            name: NODE_IPS_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: "status.hostIP".into(),
                }),
                ..Default::default()
            }),
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), quantity(CPU_REQUEST)),
                ("memory".to_string(), quantity(MEMORY_REQUEST)),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), quantity(CPU_LIMIT)),
                ("memory".to_string(), quantity(MEMORY_LIMIT)),
            ])),
            ..Default::default()
        }),
        security_context: Some(container_security()),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: mounts,
        ..Default::default()
    };

    let node_ctx = p.context == ProbeContext::Node;
    let tolerations = (p.target.is_some() && !spec.contexts.node.tolerations.is_empty())
        .then(|| spec.contexts.node.tolerations.clone());
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        host_network: node_ctx.then_some(true),
        dns_policy: Some(if node_ctx { "Default" } else { "ClusterFirst" }.into()),
        node_name: p.target.map(|t| t.node.clone()),
        node_selector: Some(BTreeMap::from([(
            crate::operator::nodes::OS_LABEL.to_string(),
            "linux".to_string(),
        )])),
        tolerations,
        security_context: Some(pod_security()),
        termination_grace_period_seconds: Some(5),
        volumes,
        ..Default::default()
    };

    // Owner references cannot cross namespaces: only Jobs next to the check get one (the
    // others are cleaned up through the check's finalizer).
    let owner_references = (namespace == check_ns)
        .then(|| check.controller_owner_ref(&()))
        .flatten()
        .map(|o| vec![o]);

    Job {
        metadata: ObjectMeta {
            name: Some(job_name(p)),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references,
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            active_deadline_seconds: Some(p.spec.timeout.as_secs() as i64 + DEADLINE_SLACK_SECONDS),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{RegistryConnectivityCheckSpec, SecretRef};
    use k8s_openapi::api::core::v1::Toleration;
    use serde_json::json;

    #[test]
    fn host_paths_are_absolute_and_normalised() {
        assert_eq!(parse_host_path("--f", "").unwrap(), None);
        assert_eq!(
            parse_host_path("--f", "/etc/containerd/certs.d/")
                .unwrap()
                .as_deref(),
            Some("/etc/containerd/certs.d")
        );
        for bad in [
            "etc/containerd",
            "/",
            "//",
            "/etc/../root",
            "/etc/./x",
            "/etc//x",
            "/etc/x\n",
            "..",
        ] {
            let e = parse_host_path("--node-containerd-config-dir", bad).unwrap_err();
            assert_eq!(e.field, "--node-containerd-config-dir", "{bad}");
            assert_eq!(e.value, crate::engine::inputs::shown_value(bad), "{bad}");
        }
        assert!(parse_host_path("--f", &format!("/{}", "a".repeat(1100))).is_err());
    }

    #[test]
    fn host_files_are_read_only_and_never_created() {
        let (volumes, mounts, args) = host_files(&NodeHostFiles::default(), true);
        assert_eq!(volumes.len(), 3);
        for v in &volumes {
            let hp = v.host_path.as_ref().unwrap();
            // No *OrCreate type: nothing is created on the host by kubelet.
            assert!(hp.type_.as_deref().is_none_or(|t| t == "File"), "{hp:?}");
        }
        for m in &mounts {
            assert_eq!(m.read_only, Some(true));
            assert!(m.mount_path.starts_with(HOST_ROOT));
        }
        assert_eq!(
            args,
            [
                "--containerd-config-dir",
                "/host/etc/containerd/certs.d",
                "--host-root",
                "/host",
                "--runtime-proxy-from",
                "/host/etc/systemd/system/containerd.service.d",
                "--host-resolv-conf",
                "/host/etc/resolv.conf",
            ]
        );
        let (volumes, _, args) = host_files(&NodeHostFiles::default(), false);
        assert_eq!(volumes.len(), 2);
        assert!(!args.contains(&"--runtime-proxy-from".to_string()));
    }

    fn check(name: &str, ns: &str) -> RegistryConnectivityCheck {
        let spec: RegistryConnectivityCheckSpec = serde_json::from_value(json!({
            "registry": "myreg.azurecr.io",
            "dataEndpoints": ["myreg.westeurope.data.azurecr.io"],
            "regions": ["northeurope"],
            "extraHosts": ["mcr.microsoft.com"],
            "expect": {"networkAccess": "Private"},
            "image": "library/app:v1",
            "credentialsSecretRef": {"name": "pull"},
            "contexts": {"node": {"tolerations": [{"operator": "Exists"}]}},
            "timeoutSeconds": 15
        }))
        .unwrap();
        let mut c = RegistryConnectivityCheck::new(name, spec);
        c.metadata.namespace = Some(ns.into());
        c.metadata.uid = Some("3f0c1d2e-0000-4000-8000-000000000001".into());
        c
    }

    fn target(node: &str) -> Target {
        Target {
            node: node.into(),
            node_pool: Some("sys".into()),
            zone: Some("z1".into()),
        }
    }

    fn job(c: &RegistryConnectivityCheck, context: ProbeContext, t: &Target) -> Job {
        build_job(&ProbeJob {
            check: c,
            spec: &ValidSpec::parse(&c.spec).unwrap(),
            run_id: "r1a2b3",
            context,
            target: Some(t),
            image: "ghcr.io/x/regcheck:1",
            operator_namespace: "regcheck-system",
            node_addresses: &[],
        })
    }

    fn pod(j: &Job) -> &PodSpec {
        j.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    /// The checks of the Pod Security `restricted` profile that apply to these pods.
    fn assert_restricted(p: &PodSpec) {
        assert_ne!(p.host_pid, Some(true));
        assert_ne!(p.host_ipc, Some(true));
        assert_eq!(p.automount_service_account_token, Some(false));
        let psc = p.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        for v in p.volumes.iter().flatten() {
            assert!(v.host_path.is_none() && v.secret.is_some(), "{v:?}");
        }
        for c in &p.containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.privileged, Some(false));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.run_as_non_root, Some(true));
            assert_eq!(sc.run_as_user, Some(65532));
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
            assert!(caps.add.is_none());
            assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
            assert!(c.ports.is_none());
            let r = c.resources.as_ref().unwrap();
            for k in ["cpu", "memory"] {
                assert!(r.requests.as_ref().unwrap().contains_key(k));
                assert!(r.limits.as_ref().unwrap().contains_key(k));
            }
            assert_eq!(
                c.termination_message_policy.as_deref(),
                Some("FallbackToLogsOnError")
            );
        }
    }

    #[test]
    fn pod_context_is_restricted_and_mounts_credentials() {
        let c = check("acr", "team-a");
        let j = job(&c, ProbeContext::Pod, &target("aks-sys-1"));
        let p = pod(&j);
        assert_restricted(p);
        assert_eq!(p.host_network, None);
        assert_eq!(p.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(j.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(p.node_name.as_deref(), Some("aks-sys-1"));
        let v = &p.volumes.as_ref().unwrap()[0];
        assert_eq!(
            v.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("pull")
        );
        let m = &p.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(m.read_only, Some(true));
        let args = p.containers[0].args.as_ref().unwrap();
        assert!(
            args.windows(2).any(
                |w| w[0] == "--docker-config" && w[1] == "/var/run/regcheck/docker/config.json"
            )
        );
        // Same namespace: owned by the check.
        let o = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(o.kind, "RegistryConnectivityCheck");
        assert_eq!(o.controller, Some(true));
    }

    #[test]
    fn node_context_differs_only_by_host_network() {
        let c = check("acr", "team-a");
        let t = target("aks-sys-1");
        let n = job(&c, ProbeContext::Node, &t);
        let p = job(&c, ProbeContext::Pod, &t);
        let (np, pp) = (pod(&n), pod(&p));
        assert_eq!(np.host_network, Some(true));
        assert_eq!(np.dns_policy.as_deref(), Some("Default"));
        assert_eq!(np.node_name.as_deref(), Some("aks-sys-1"));
        assert_eq!(
            np.node_selector.as_ref().unwrap().get("kubernetes.io/os"),
            Some(&"linux".to_string())
        );
        assert_eq!(
            np.tolerations.as_ref().unwrap()[0].operator.as_deref(),
            Some("Exists")
        );
        assert_eq!(n.metadata.namespace.as_deref(), Some("regcheck-system"));
        // Apart from hostNetwork, the same security settings as the restricted pod context.
        let mut relaxed = np.clone();
        relaxed.host_network = None;
        assert_restricted(&relaxed);
        assert_eq!(np.security_context, pp.security_context);
        assert_eq!(
            np.containers[0].security_context,
            pp.containers[0].security_context
        );
        assert_eq!(np.containers[0].resources, pp.containers[0].resources);
        // No credentials and no owner reference across namespaces.
        assert!(np.volumes.is_none() && np.containers[0].volume_mounts.is_none());
        let args = np.containers[0].args.as_ref().unwrap();
        assert!(!args.contains(&"--docker-config".to_string()));
        assert!(n.metadata.owner_references.is_none());
        // Both contexts learn the node's own addresses from the downward API.
        for pod in [np, pp] {
            let env = pod.containers[0].env.as_ref().unwrap();
            let e = env.iter().find(|e| e.name == NODE_IPS_ENV).unwrap();
            let f = e.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
            assert_eq!(f.field_path, "status.hostIP");
            assert!(e.value.is_none());
        }
    }

    #[test]
    fn job_spec_and_labels() {
        let c = check("acr", "team-a");
        let j = job(&c, ProbeContext::Node, &target("aks-sys-1"));
        let s = j.spec.as_ref().unwrap();
        assert_eq!(s.backoff_limit, Some(0));
        assert_eq!(s.active_deadline_seconds, Some(15 + DEADLINE_SLACK_SECONDS));
        assert_eq!(
            s.ttl_seconds_after_finished,
            Some(TTL_SECONDS_AFTER_FINISHED)
        );
        assert_eq!(pod(&j).restart_policy.as_deref(), Some("Never"));
        let l = j.metadata.labels.as_ref().unwrap();
        assert_eq!(l[labels::CHECK], "acr");
        assert_eq!(l[labels::CHECK_NAMESPACE], "team-a");
        assert_eq!(l[labels::CHECK_UID], "3f0c1d2e-0000-4000-8000-000000000001");
        assert_eq!(l[labels::RUN], "r1a2b3");
        assert_eq!(l[labels::CONTEXT], "node");
        assert_eq!(l[labels::NODE], "aks-sys-1");
        assert_eq!(
            s.template.metadata.as_ref().unwrap().labels.as_ref(),
            Some(l)
        );
    }

    #[test]
    fn args_follow_the_spec() {
        let c = check("acr", "team-a");
        let t = target("n1");
        let valid = ValidSpec::parse(&c.spec).unwrap();
        let pj = ProbeJob {
            check: &c,
            spec: &valid,
            run_id: "r1",
            context: ProbeContext::Node,
            target: Some(&t),
            image: "img",
            operator_namespace: "ops",
            node_addresses: &[],
        };
        assert_eq!(
            probe_args(&pj),
            [
                "probe",
                "--registry",
                "myreg.azurecr.io",
                "--context",
                "node",
                "--data-endpoint",
                "myreg.westeurope.data.azurecr.io",
                "--region",
                "northeurope",
                "--also",
                "mcr.microsoft.com",
                "--expect",
                "private",
                "--image",
                "library/app:v1",
                "--timeout",
                "15s",
                "--node",
                "n1"
            ]
        );
        let mut c2 = c.clone();
        c2.spec.proxy.mode = crate::operator::crd::ProxyMode::Explicit;
        c2.spec.proxy.url = Some("http://proxy:3128".into());
        c2.spec.proxy.no_proxy = vec![".svc".into(), "10.0.0.0/8".into()];
        c2.spec.credentials_secret_ref = Some(SecretRef { name: "s".into() });
        let v2 = ValidSpec::parse(&c2.spec).unwrap();
        let a = probe_args(&ProbeJob {
            check: &c2,
            spec: &v2,
            ..pj
        });
        let s = a.join(" ");
        assert!(
            s.contains("--proxy http://proxy:3128 --proxy-bypass .svc,10.0.0.0/8"),
            "{s}"
        );
        c2.spec.proxy = crate::operator::crd::ProxySpec {
            mode: crate::operator::crd::ProxyMode::None,
            ..Default::default()
        };
        let v2 = ValidSpec::parse(&c2.spec).unwrap();
        let a = probe_args(&ProbeJob {
            check: &c2,
            spec: &v2,
            ..pj
        });
        assert!(a.contains(&"--no-proxy".to_string()));
        c2.spec.expect.egress_ips = vec!["20.1.2.3".into(), "52.0.0.0/16".into()];
        let v2 = ValidSpec::parse(&c2.spec).unwrap();
        let a = probe_args(&ProbeJob {
            check: &c2,
            spec: &v2,
            ..pj
        })
        .join(" ");
        assert!(
            a.contains("--egress-ip 20.1.2.3/32 --egress-ip 52.0.0.0/16 --image"),
            "{a}"
        );
        // The probe's own parser takes what the Job passes.
        let argv: Vec<String> = a.split(' ').map(str::to_string).collect();
        let parsed = <crate::cli::probe::ProbeArgs as clap::Parser>::try_parse_from(
            std::iter::once("regcheck-probe".to_string()).chain(argv.into_iter().skip(1)),
        )
        .unwrap();
        assert_eq!(parsed.target.egress_ips, vec!["20.1.2.3/32", "52.0.0.0/16"]);
        // spec.egress becomes the probe's egress flags, in canonical form.
        c2.spec.egress.profiles = vec!["aks".into()];
        c2.spec
            .egress
            .parameters
            .insert("region".into(), "eastus".into());
        c2.spec.egress.hosts = vec!["internal.example:8443".into()];
        let v2 = ValidSpec::parse(&c2.spec).unwrap();
        let a = probe_args(&ProbeJob {
            check: &c2,
            spec: &v2,
            ..pj
        })
        .join(" ");
        assert!(
            a.contains(
                "--egress-profile AKS --egress-profile-param region=eastus --egress-host internal.example:8443"
            ),
            "{a}"
        );
        let argv: Vec<String> = a.split(' ').map(str::to_string).collect();
        let parsed = <crate::cli::probe::ProbeArgs as clap::Parser>::try_parse_from(
            std::iter::once("regcheck-probe".to_string()).chain(argv.into_iter().skip(1)),
        )
        .unwrap();
        assert_eq!(parsed.target.egress_profiles, vec!["AKS"]);
        assert_eq!(parsed.target.egress_params, vec!["region=eastus"]);
        assert_eq!(parsed.target.egress_hosts, vec!["internal.example:8443"]);
    }

    /// The target node's own addresses of both families reach the probe as `--node-ip`, and
    /// the probe refuses to dial them (the downward API's `status.hostIP` names one family).
    #[test]
    fn node_addresses_of_both_families_become_node_ips_the_probe_never_dials() {
        let c = check("acr", "team-a");
        let t = target("n1");
        let valid = ValidSpec::parse(&c.spec).unwrap();
        let addrs: Vec<std::net::IpAddr> = vec![
            "10.224.0.4".parse().unwrap(),
            "fd00:10:224::4".parse().unwrap(),
        ];
        let args = probe_args(&ProbeJob {
            check: &c,
            spec: &valid,
            run_id: "r1",
            context: ProbeContext::Node,
            target: Some(&t),
            image: "img",
            operator_namespace: "ops",
            node_addresses: &addrs,
        });
        let joined = args.join(" ");
        assert!(
            joined.ends_with("--node n1 --node-ip 10.224.0.4 --node-ip fd00:10:224::4"),
            "{joined}"
        );
        let parsed = <crate::cli::probe::ProbeArgs as clap::Parser>::try_parse_from(
            std::iter::once("regcheck-probe".to_string()).chain(args.into_iter().skip(1)),
        )
        .unwrap();
        let env = |k: &str| (k == NODE_IPS_ENV).then(|| "10.224.0.4".to_string());
        let prepared = crate::cli::probe::prepare(&parsed, env).unwrap();
        let policy = &prepared.check.config.policy;
        for a in &addrs {
            assert!(policy.check(*a).is_err(), "{a} is the node's own");
        }
        assert!(policy.check("10.224.0.5".parse().unwrap()).is_ok());
    }

    #[test]
    fn names_are_short_deterministic_and_distinct() {
        let long = "a".repeat(200) + ".example.with-dots";
        let mut names = std::collections::BTreeSet::new();
        for (name, ns) in [
            ("acr", "team-a"),
            ("acr", "team-b"),
            (long.as_str(), "team-a"),
        ] {
            let c = check(name, ns);
            let valid = ValidSpec::parse(&c.spec).unwrap();
            for node in ["n1", &"x".repeat(250)] {
                let t = target(node);
                for ctx in [ProbeContext::Node, ProbeContext::Pod] {
                    for run in ["r1", "r2"] {
                        let pj = ProbeJob {
                            check: &c,
                            spec: &valid,
                            run_id: run,
                            context: ctx,
                            target: Some(&t),
                            image: "img",
                            operator_namespace: "ops",
                            node_addresses: &[],
                        };
                        let n = job_name(&pj);
                        assert!(n.len() <= MAX_NAME, "{n}");
                        assert!(
                            n.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                            "{n}"
                        );
                        assert!(!n.ends_with('-') && n.starts_with("rcc-"), "{n}");
                        assert_eq!(n, job_name(&pj), "deterministic");
                        assert!(names.insert(n.clone()), "collision {n}");
                        for v in job_labels(&pj).values() {
                            assert!(v.len() <= 63, "{v}");
                        }
                    }
                }
            }
        }
        assert_eq!(names.len(), 3 * 2 * 2 * 2);
    }

    #[test]
    fn canary_names_are_recognised() {
        let c = check("acr", "team-a");
        let valid = ValidSpec::parse(&c.spec).unwrap();
        let t = target("n1");
        for (ctx, canary) in [
            (ProbeContext::Kubelet, true),
            (ProbeContext::Node, false),
            (ProbeContext::Pod, false),
        ] {
            let name = job_name(&ProbeJob {
                check: &c,
                spec: &valid,
                run_id: "r1",
                context: ctx,
                target: Some(&t),
                image: "img",
                operator_namespace: "ops",
                node_addresses: &[],
            });
            assert_eq!(is_canary_name(&name), canary, "{name}");
        }
        assert!(!is_canary_name("web-k-8fb36d278a"));
        assert!(!is_canary_name("rcc-lab-k-8fb36d278z"));
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value("aks-sys-1"), "aks-sys-1");
        assert_eq!(label_value(""), "");
        let long = label_value(&"n".repeat(100));
        assert!(long.len() <= 63 && long.starts_with("nnn"));
        assert_ne!(label_value(&"n".repeat(100)), label_value(&"n".repeat(101)));
        let odd = label_value("-x/y");
        assert!(odd.bytes().next().unwrap().is_ascii_alphanumeric(), "{odd}");
    }

    #[test]
    fn pod_context_without_target_is_not_pinned() {
        let mut c = check("acr", "team-a");
        c.spec.contexts.node.tolerations = vec![Toleration::default()];
        let j = build_job(&ProbeJob {
            check: &c,
            spec: &ValidSpec::parse(&c.spec).unwrap(),
            run_id: "r",
            context: ProbeContext::Pod,
            target: None,
            image: "img",
            operator_namespace: "ops",
            node_addresses: &[],
        });
        let p = pod(&j);
        assert!(p.node_name.is_none() && p.tolerations.is_none());
        assert!(
            !j.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(labels::NODE)
        );
    }

    #[test]
    fn arch_affinity_lists_the_linux_architectures_of_the_image() {
        let p = crate::operator::platform::Platforms::parse(
            "f",
            "linux/amd64,linux/arm/v7,windows/amd64",
        )
        .unwrap();
        let a = arch_affinity(&p);
        let term = &a
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        let req = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!(req.key, "kubernetes.io/arch");
        assert_eq!(req.operator, "In");
        assert_eq!(
            req.values.as_deref(),
            Some(&["amd64".to_string(), "arm".to_string()][..])
        );
    }
}
