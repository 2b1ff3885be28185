//! Pull canaries (context `kubelet`): a pod per planned node whose image the kubelet pulls and
//! never runs, so that the kubelet's own pull (containerd's network, proxy, mirrors, trust
//! store and credentials) can be compared with the node probe on the same node.
//!
//! Pure: [`build_canary`] writes the pod, [`read_outcome`] reads what its container status and
//! the kubelet's Events say, [`outcome_record`] turns that into a [`ProbeRecord`], and
//! [`compare_with_node`] names the difference between a kubelet pull and the node probe on the
//! same node. The controller's I/O lives in `controller/canaries.rs`.

use crate::engine::catalogue::StatusCondition;
use crate::engine::evidence::{Evidence, Expect, Role};
use crate::engine::findings::{Finding, ProbeContext, Reason, Report, SCHEMA_VERSION, Verdict};
use crate::engine::pullerror;
use crate::engine::text::clip_line as truncate;
use crate::operator::aggregate::{ProbeOutcome, ProbeRecord};
use crate::operator::crd::{RESULT_MESSAGE_CHARS, RegistryConnectivityCheck};
use crate::operator::jobs::{
    self, ProbeJob, annotations, container_security, job_labels, job_name, labels, pod_security,
};
use crate::operator::nodes::Target;
use crate::operator::spec::ValidSpec;
use k8s_openapi::api::core::v1::{
    Affinity, Container, Event, LocalObjectReference, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::time::Duration;

/// The canary's only container.
pub const CONTAINER: &str = "pull-canary";
/// `app.kubernetes.io/component` of canaries (probe Jobs have `probe`).
pub const COMPONENT: &str = "pull-canary";
/// A command that exists in no image: the runtime pulls the image, then fails to start it.
pub const COMMAND: &str = "/regcheck-pull-canary/never-runs";
/// Tiny resources: the container never runs.
pub const CPU: &str = "1m";
pub const MEMORY: &str = "8Mi";
/// The pod's own `activeDeadlineSeconds` beyond the run's deadline: a backstop should the
/// controller be away when the deadline passes.
pub const BACKSTOP_SECONDS: i64 = 60;

/// What one canary is for.
#[derive(Debug, Clone, Copy)]
pub struct CanaryPod<'a> {
    pub check: &'a RegistryConnectivityCheck,
    pub spec: &'a ValidSpec,
    pub run_id: &'a str,
    pub target: &'a Target,
    /// Bookkeeping annotations of the run (generation, run-now token, run size, node pool,
    /// zone), as the controller stamps them on Jobs.
    pub run_annotations: &'a BTreeMap<String, String>,
}

/// The reference the kubelet pulls: `spec.image` with the registry's host (and port).
pub fn image_reference(spec: &ValidSpec) -> Option<String> {
    let (_, image) = spec.image.as_ref()?;
    let r = spec.registry();
    let host = if r.host.contains(':') {
        format!("[{}]", r.host)
    } else {
        r.host.clone()
    };
    Some(if r.port == 443 {
        format!("{host}/{image}")
    } else {
        format!("{host}:{}/{image}", r.port)
    })
}

/// The run's deadline for a canary created at `created`: the probe Jobs' (the check's
/// timeout plus the Jobs' slack for scheduling and pulling).
pub fn deadline(spec: &ValidSpec, created: Timestamp) -> Timestamp {
    let d = spec.timeout + Duration::from_secs(jobs::DEADLINE_SLACK_SECONDS as u64);
    created.checked_add(d).unwrap_or(created)
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// The pull canary pod for one node. `None` without `spec.image` (the spec refuses that).
pub fn build_canary(p: &CanaryPod) -> Option<Pod> {
    let check = p.check;
    let image = image_reference(p.spec)?;
    let check_ns = check.namespace().unwrap_or_default();
    let probe = ProbeJob {
        check,
        spec: p.spec,
        run_id: p.run_id,
        context: ProbeContext::Kubelet,
        target: Some(p.target),
        image: &image,
        operator_namespace: &check_ns,
        node_addresses: &[],
    };
    let mut labels = job_labels(&probe);
    labels.insert(labels::COMPONENT.into(), COMPONENT.into());
    let mut ann = p.run_annotations.clone();
    ann.insert(
        annotations::CHECK.into(),
        format!("{check_ns}/{}", check.name_any()),
    );
    ann.insert(annotations::NODE.into(), p.target.node.clone());

    // With a ServiceAccount, the pull has exactly its imagePullSecrets (admission copies them
    // into a pod that names none); otherwise the check's own Secret, if any.
    let image_pull_secrets = match (
        &p.spec.kubelet_service_account,
        &check.spec.credentials_secret_ref,
    ) {
        (None, Some(s)) => Some(vec![LocalObjectReference {
            name: s.name.clone(),
        }]),
        _ => None,
    };
    let resources = BTreeMap::from([
        ("cpu".to_string(), quantity(CPU)),
        ("memory".to_string(), quantity(MEMORY)),
    ]);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(image.clone()),
        image_pull_policy: Some("Always".into()),
        command: Some(vec![COMMAND.into()]),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            ..Default::default()
        }),
        security_context: Some(container_security()),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    };
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![p.target.node.clone()]),
                    }]),
                    match_expressions: None,
                }],
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Default::default()
    };
    let tolerations = &check.spec.contexts.node.tolerations;
    let deadline =
        p.spec.timeout.as_secs() as i64 + jobs::DEADLINE_SLACK_SECONDS + BACKSTOP_SECONDS;
    let owner = OwnerReference {
        api_version: RegistryConnectivityCheck::api_version(&()).into(),
        kind: RegistryConnectivityCheck::kind(&()).into(),
        name: check.name_any(),
        uid: check.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(job_name(&probe)),
            namespace: Some(check_ns),
            labels: Some(labels),
            annotations: Some(ann),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            service_account_name: p.spec.kubelet_service_account.clone(),
            image_pull_secrets,
            enable_service_links: Some(false),
            affinity: Some(affinity),
            node_selector: Some(BTreeMap::from([(
                crate::operator::nodes::OS_LABEL.to_string(),
                "linux".to_string(),
            )])),
            tolerations: (!tolerations.is_empty()).then(|| tolerations.clone()),
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(1),
            active_deadline_seconds: Some(deadline),
            ..Default::default()
        }),
        status: None,
    })
}

/// What a canary says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryOutcome {
    /// Not known yet.
    Pending,
    /// The kubelet pulled the image. `detail` says how it is known.
    Pulled { detail: String },
    /// The kubelet's pull failed with this message (the runtime's error).
    PullFailed { message: String },
    /// Still pulling at the deadline.
    Stalled { detail: String },
    /// The canary never got to pull (not scheduled, not admitted, no sandbox): probe
    /// infrastructure, nothing is known about the registry.
    NotRun { reason: Reason, message: String },
}

impl CanaryOutcome {
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// Waiting reasons after the pull: the image is there, the container could not be made or
/// started (as intended).
const AFTER_PULL_WAITING: [&str; 4] = [
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
    "StartError",
];
/// Waiting reasons of a failed pull (the message is the runtime's error, or for the back-off
/// only `Back-off pulling image "<ref>"`).
const PULL_FAILED_WAITING: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RegistryUnavailable",
];

/// The kubelet's events of this pod (by UID, or by name when the event has no UID), oldest
/// first.
fn pod_events<'a>(pod: &Pod, events: &'a [Event]) -> Vec<&'a Event> {
    let uid = pod.metadata.uid.as_deref();
    let name = pod.metadata.name.as_deref();
    let mut out: Vec<&Event> = events
        .iter()
        .filter(|e| {
            let o = &e.involved_object;
            match (o.uid.as_deref(), uid) {
                (Some(a), Some(b)) => a == b,
                _ => o.name.as_deref() == name && o.kind.as_deref().is_none_or(|k| k == "Pod"),
            }
        })
        .collect();
    out.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
    });
    out
}

/// The latest failed-pull message among the kubelet's events (`Failed` with `Failed to pull
/// image ...`, or an `ErrImagePull` text), if any.
fn failed_pull_event(events: &[&Event]) -> Option<String> {
    events
        .iter()
        .rev()
        .filter(|e| e.reason.as_deref() == Some("Failed"))
        .filter_map(|e| e.message.clone())
        .find(|m| m.starts_with("Failed to pull image") || m.contains("rpc error"))
}

/// What the canary `pod` (and the kubelet's `events`, which may be empty) says at `now`,
/// with `deadline` the run's deadline for it.
pub fn read_outcome(
    pod: &Pod,
    events: &[Event],
    deadline: Timestamp,
    now: Timestamp,
) -> CanaryOutcome {
    let evs = pod_events(pod, events);
    let status = pod.status.clone().unwrap_or_default();
    let cs = status
        .container_statuses
        .as_ref()
        .and_then(|v| v.iter().find(|c| c.name == CONTAINER).or(v.first()));
    if let Some(c) = cs {
        if !c.image_id.is_empty() {
            return CanaryOutcome::Pulled {
                detail: format!("the kubelet pulled {} ({})", c.image, c.image_id),
            };
        }
        let state = c.state.clone().unwrap_or_default();
        if state.running.is_some() {
            return CanaryOutcome::Pulled {
                detail: "the container started, so its image was pulled".into(),
            };
        }
        if let Some(t) = &state.terminated {
            return CanaryOutcome::Pulled {
                detail: format!(
                    "the container was created and ended ({}), so its image was pulled",
                    t.reason.as_deref().unwrap_or("terminated")
                ),
            };
        }
        if let Some(w) = &state.waiting {
            let reason = w.reason.as_deref().unwrap_or("");
            let message = w.message.clone().unwrap_or_default();
            if AFTER_PULL_WAITING.contains(&reason) {
                return CanaryOutcome::Pulled {
                    detail: format!(
                        "the image is on the node; the container could not start as intended ({reason})"
                    ),
                };
            }
            if PULL_FAILED_WAITING.contains(&reason) {
                // The back-off's message names only the image: the error is in the Events.
                let backoff_only = message.is_empty() || message.starts_with("Back-off pulling");
                let message = if backoff_only {
                    match failed_pull_event(&evs) {
                        Some(m) => m,
                        // Known to have failed, but not yet why: ask the Events first,
                        // unless the deadline has come.
                        None if now < deadline => return CanaryOutcome::Pending,
                        None => format!("{reason}: {message}"),
                    }
                } else {
                    message
                };
                return CanaryOutcome::PullFailed { message };
            }
        }
    }
    // No container status says it: the Events can (a status update may trail them).
    if evs.iter().any(|e| e.reason.as_deref() == Some("Pulled")) {
        return CanaryOutcome::Pulled {
            detail: "the kubelet's Event says the image was pulled".into(),
        };
    }
    if let Some(m) = failed_pull_event(&evs) {
        return CanaryOutcome::PullFailed { message: m };
    }
    let phase_reason = status.reason.as_deref().unwrap_or("");
    if status.phase.as_deref() == Some("Failed")
        && crate::operator::aggregate::UNSCHEDULABLE_POD_REASONS.contains(&phase_reason)
    {
        return CanaryOutcome::NotRun {
            reason: Reason::ProbeUnschedulable,
            message: format!(
                "the kubelet did not run the pull canary ({phase_reason}): {}",
                status.message.clone().unwrap_or_default()
            ),
        };
    }
    let deadline_exceeded =
        status.phase.as_deref() == Some("Failed") && phase_reason == "DeadlineExceeded";
    if now < deadline && !deadline_exceeded {
        return CanaryOutcome::Pending;
    }
    // The deadline has come without an answer.
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let scheduled = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if !assigned && scheduled.is_none_or(|c| c.status != "True") {
        let why = scheduled
            .and_then(|c| c.message.clone())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return CanaryOutcome::NotRun {
            reason: Reason::ProbeUnschedulable,
            message: format!("the pull canary was not scheduled before the deadline{why}"),
        };
    }
    let pulling = evs.iter().any(|e| e.reason.as_deref() == Some("Pulling"));
    if pulling {
        return CanaryOutcome::Stalled {
            detail:
                "the kubelet began pulling (Event Pulling) and had not finished at the deadline"
                    .into(),
        };
    }
    let sandbox = evs
        .iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
        .and_then(|e| e.message.clone());
    CanaryOutcome::NotRun {
        reason: Reason::ProbeTimedOut,
        message: match sandbox {
            Some(m) => {
                format!("the pull canary's sandbox was not created before the deadline: {m}")
            }
            None => {
                "the kubelet had not begun pulling the pull canary's image at the deadline".into()
            }
        },
    }
}

/// The node, pool and zone a canary was planned for, from its annotations.
pub fn canary_target(pod: &Pod) -> Option<Target> {
    let ann = pod.annotations();
    Some(Target {
        node: ann.get(annotations::NODE)?.clone(),
        node_pool: ann.get(NODE_POOL).cloned(),
        zone: ann.get(ZONE).cloned(),
    })
}

/// Where the node pool and zone are kept (as on Jobs).
pub const NODE_POOL: &str = "regcheck.dev/node-pool";
pub const ZONE: &str = "regcheck.dev/zone";

fn kubelet_report(finding: Finding, verdict: Verdict, registry: &str, node: &str) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        verdict,
        findings: vec![finding],
        context: Some(ProbeContext::Kubelet),
        node: Some(node.to_string()),
        evidence: Evidence {
            registry: registry.to_string(),
            expect: Expect::Any,
            endpoints: Vec::new(),
            pull: None,
            ms: 0,
            egress_ips: Vec::new(),
            ip_family: None,
            containerd: None,
            proxy_source: None,
            resolvers: None,
            egress: None,
        },
    }
}

/// The probe record of a known canary outcome. `image` is the reference pulled, `registry`
/// the login server (`host` or `host:port`).
pub fn outcome_record(
    outcome: &CanaryOutcome,
    target: Option<Target>,
    image: &str,
    registry: &str,
) -> Option<ProbeRecord> {
    let node = target.as_ref().map(|t| t.node.clone()).unwrap_or_default();
    let outcome = match outcome {
        CanaryOutcome::Pending => return None,
        CanaryOutcome::Pulled { detail } => {
            let f = Finding::catalogued(
                Reason::Healthy,
                registry,
                Some(Role::LoginServer),
                format!("{registry}: the kubelet on {node} pulled {image}: {detail}"),
            );
            ProbeOutcome::Report(Box::new(kubelet_report(
                f,
                Verdict::Healthy,
                registry,
                &node,
            )))
        }
        CanaryOutcome::PullFailed { message } => {
            let c = pullerror::classify(message);
            let mut r = pullerror::to_report(&c);
            r.context = Some(ProbeContext::Kubelet);
            r.node = Some(node.clone());
            if r.findings[0].reason == Reason::Healthy {
                // A message the classifier reads as a success cannot be a failed pull.
                r.findings[0] = Finding::catalogued(
                    Reason::PullFailed,
                    registry,
                    Some(Role::LoginServer),
                    format!("{registry}: the kubelet on {node} failed to pull {image}: {message}"),
                );
                r.verdict = Verdict::Unreachable;
            }
            for f in &mut r.findings {
                f.message = truncate(
                    &format!("kubelet pull on {node}: {}", f.message),
                    RESULT_MESSAGE_CHARS * 2,
                );
            }
            ProbeOutcome::Report(Box::new(r))
        }
        CanaryOutcome::Stalled { detail } => {
            let f = Finding::catalogued(
                Reason::KubeletPullStalled,
                registry,
                Some(Role::LoginServer),
                format!(
                    "{registry}: the kubelet on {node} was still pulling {image} at the check's deadline: {detail}"
                ),
            );
            ProbeOutcome::Report(Box::new(kubelet_report(
                f,
                Verdict::Degraded,
                registry,
                &node,
            )))
        }
        CanaryOutcome::NotRun { reason, message } => ProbeOutcome::Failed {
            reason: *reason,
            message: truncate(message, RESULT_MESSAGE_CHARS),
        },
    };
    Some(ProbeRecord {
        context: ProbeContext::Kubelet,
        target,
        outcome,
    })
}

/// Proxy reasons of a kubelet pull.
const PROXY_REASONS: [Reason; 6] = [
    Reason::ProxyDenied,
    Reason::ProxyAuthRequired,
    Reason::ProxyConnectEOF,
    Reason::ProxyUnreachable,
    Reason::ProxyBypassMissing,
    Reason::ProxyUpstreamFailed,
];

/// The kubelet-specific reason for a kubelet finding `kubelet` next to the node probe's report
/// `node` on the same node, when the two differ in a way that names the runtime: the node
/// probe reaches the registry API and the kubelet gets 401/403 (pull rights), or the node
/// verifies TLS and containerd does not, or containerd's proxy fails where the node does not
/// need it.
pub fn kubelet_difference(node: &Report, kubelet: Reason) -> Option<Reason> {
    let api_reached = node.verdict != Verdict::Unreachable;
    let node_tls_ok = !node.findings.iter().any(|f| {
        f.severity == crate::engine::findings::Severity::Error
            && f.reason.entry().condition == Some(StatusCondition::TlsVerified)
    });
    match kubelet {
        Reason::AuthenticationFailed | Reason::AuthorizationFailed | Reason::RegistryForbidden
            if api_reached =>
        {
            Some(Reason::KubeletPullUnauthorized)
        }
        Reason::TLSCertificateInvalid | Reason::TLSInterception if api_reached && node_tls_ok => {
            Some(Reason::KubeletTLSUntrusted)
        }
        r if PROXY_REASONS.contains(&r) && api_reached => Some(Reason::KubeletProxyDiffers),
        _ => None,
    }
}

/// The node probes' reports of `records`, by node.
fn node_reports(records: &[ProbeRecord]) -> BTreeMap<&str, &Report> {
    records
        .iter()
        .filter(|r| r.context == ProbeContext::Node)
        .filter_map(|r| match (&r.target, &r.outcome) {
            (Some(t), ProbeOutcome::Report(rep)) => Some((t.node.as_str(), rep.as_ref())),
            _ => None,
        })
        .collect()
}

/// The records with each kubelet finding that differs from the node probe on its node in a
/// way [`kubelet_difference`] names replaced by that reason (the message keeps the runtime's
/// words and names the node probe's result).
pub fn compare_with_node(records: &[ProbeRecord]) -> Vec<ProbeRecord> {
    let node_reports = node_reports(records);
    records
        .iter()
        .map(|rec| {
            let mut rec = rec.clone();
            if rec.context != ProbeContext::Kubelet {
                return rec;
            }
            let Some(node) = rec.target.as_ref().map(|t| t.node.clone()) else {
                return rec;
            };
            let Some(node_report) = node_reports.get(node.as_str()) else {
                return rec;
            };
            if let ProbeOutcome::Report(r) = &mut rec.outcome {
                let first = &r.findings[0];
                if let Some(reason) = kubelet_difference(node_report, first.reason) {
                    let message = format!(
                        "the node probe on {node} got {} but the kubelet's pull failed with {}: {}",
                        node_report.findings[0].reason, first.reason, first.message
                    );
                    r.findings[0] =
                        Finding::catalogued(reason, first.endpoint.clone(), first.role, message);
                }
            }
            rec
        })
        .collect()
}

#[cfg(test)]
mod tests;

/// A kubelet pull that differs from the node probe on the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletDisagreement {
    pub node: String,
    pub node_reason: Reason,
    /// A `Kubelet*` reason ([`kubelet_difference`]), or the kubelet's own when the node probe
    /// failed to reach the API and the kubelet pulled.
    pub kubelet_reason: Reason,
    pub message: String,
}

/// What the run's pull canaries say, for the `ImagePullable` and `ContextsConsistent`
/// conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeletSummary {
    /// Canaries with a pull result (pulled, failed or stalled).
    pub reported: u32,
    pub pulled: u32,
    /// The worst failed pull: reason, node and message.
    pub worst: Option<(Reason, String, String)>,
    pub failed: u32,
    pub disagreements: Vec<KubeletDisagreement>,
    /// A node had both a node report and a kubelet result.
    pub compared: bool,
}

/// Summarises the kubelet records of `records` (already through [`compare_with_node`]).
pub fn summarize(records: &[ProbeRecord]) -> KubeletSummary {
    let mut s = KubeletSummary::default();
    let node_reports = node_reports(records);
    let mut failures: Vec<(Reason, String, String)> = Vec::new();
    for rec in records
        .iter()
        .filter(|r| r.context == ProbeContext::Kubelet)
    {
        let ProbeOutcome::Report(r) = &rec.outcome else {
            continue;
        };
        let node = rec
            .target
            .as_ref()
            .map(|t| t.node.clone())
            .unwrap_or_default();
        let f = &r.findings[0];
        s.reported += 1;
        if r.verdict == Verdict::Healthy {
            s.pulled += 1;
        } else {
            s.failed += 1;
            failures.push((f.reason, node.clone(), f.message.clone()));
        }
        let Some(n) = node_reports.get(node.as_str()) else {
            continue;
        };
        s.compared = true;
        let node_reason = n.findings[0].reason;
        let differs = f.reason.phase() == crate::engine::catalogue::Phase::OperatorKubelet
            && f.reason != Reason::KubeletPullStalled
            || (n.verdict == Verdict::Unreachable && r.verdict == Verdict::Healthy);
        if differs {
            s.disagreements.push(KubeletDisagreement {
                node,
                node_reason,
                kubelet_reason: f.reason,
                message: f.message.clone(),
            });
        }
    }
    failures.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    s.worst = failures.into_iter().next();
    s
}
