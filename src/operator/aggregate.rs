//! Aggregation (pure): probe termination messages and pod states → per-probe results → the
//! run's diagnosis, results, counts and conditions.
//!
//! Failures of the probe itself (not scheduled, image not pulled, crash, deadline, unreadable
//! report) are kept apart from registry failures: they set `ProbesHealthy=False` and never
//! turn `Ready` False. `Ready` follows `failureThreshold`/`successThreshold` consecutive runs.

use crate::engine::catalogue::{StatusCondition, restore};
use crate::engine::evidence::Role;
use crate::engine::findings::{Finding, Reason, Report, SCHEMA_VERSION, Severity, Verdict};
use crate::operator::crd::{
    Counts, DIAGNOSIS_MESSAGE_CHARS, Diagnosis, MAX_RESULTS, PhaseTimings, ProbeContext,
    ProbeResult, RESULT_MESSAGE_CHARS, RegistryConnectivityCheckSpec,
    RegistryConnectivityCheckStatus, ResultVerdict, RunInfo,
};
use crate::operator::nodes::Target;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Largest termination message Kubernetes keeps.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

/// Condition types.
pub mod conditions {
    pub const READY: &str = "Ready";
    use crate::engine::catalogue::StatusCondition;
    pub const DNS_RESOLVED: &str = StatusCondition::DnsResolved.type_name();
    pub const REGISTRY_REACHABLE: &str = StatusCondition::RegistryReachable.type_name();
    pub const TLS_VERIFIED: &str = StatusCondition::TlsVerified.type_name();
    pub const REGISTRY_API_REACHABLE: &str = StatusCondition::RegistryApiReachable.type_name();
    pub const DATA_ENDPOINT_REACHABLE: &str = StatusCondition::DataEndpointReachable.type_name();
    /// Only on checks with `spec.egress`.
    pub const EGRESS_REACHABLE: &str = StatusCondition::EgressReachable.type_name();
    pub const CONTEXTS_CONSISTENT: &str = "ContextsConsistent";
    pub const PROBES_HEALTHY: &str = "ProbesHealthy";
    /// The kubelet's own pulls (pull canaries, `spec.contexts.kubelet`).
    pub const IMAGE_PULLABLE: &str = "ImagePullable";
}

/// Condition reasons that are not finding reasons.
pub mod reasons {
    pub const PROBES_RAN: &str = "ProbesRan";
    pub const CONTEXTS_AGREE: &str = "ContextsAgree";
    pub const NOT_COMPARED: &str = "NotCompared";
    pub const NO_RESULTS: &str = "NoResults";
    pub const AWAITING_THRESHOLD: &str = "AwaitingThreshold";
    pub const NO_FINDING: &str = "NoFinding";
    pub const IMAGE_PULLED: &str = "ImagePulled";
}

/// Why a termination message is not a usable report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the termination message is empty")]
    Empty,
    #[error("the termination message has {0} bytes, more than {MAX_TERMINATION_MESSAGE}")]
    TooLarge(usize),
    #[error("the termination message is not a regcheck report: {0}")]
    Malformed(String),
    #[error("the report has schemaVersion {0}, this controller reads {SCHEMA_VERSION}")]
    UnsupportedVersion(u64),
}

/// Parses a probe's termination message (the compact JSON report) and restores what the
/// compact form leaves out. Never panics.
pub fn parse_termination_message(msg: &str) -> Result<Report, MessageError> {
    if msg.len() > MAX_TERMINATION_MESSAGE {
        return Err(MessageError::TooLarge(msg.len()));
    }
    let msg = msg.trim();
    // From the log tail (`FallbackToLogsOnError`, when the probe could not write its
    // termination log): the report is the last line, after what the probe said on stderr.
    if let Some((_, last)) = msg.rsplit_once('\n')
        && last.trim_start().starts_with('{')
        && let Ok(r) = parse_one(last.trim())
    {
        return Ok(r);
    }
    parse_one(msg)
}

fn parse_one(msg: &str) -> Result<Report, MessageError> {
    if msg.is_empty() {
        return Err(MessageError::Empty);
    }
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
    }
    let cut = |e: serde_json::Error| {
        MessageError::Malformed(crate::engine::text::clip_line(&e.to_string(), 200))
    };
    let header: Header = serde_json::from_str(msg).map_err(cut)?;
    match header.schema_version {
        None => return Err(MessageError::Malformed("no schemaVersion".into())),
        Some(v) if v != u64::from(SCHEMA_VERSION) => {
            return Err(MessageError::UnsupportedVersion(v));
        }
        Some(_) => {}
    }
    let mut report: Report = serde_json::from_str(msg).map_err(cut)?;
    if report.findings.is_empty() {
        return Err(MessageError::Malformed("no findings".into()));
    }
    report.findings.iter_mut().for_each(restore);
    Ok(report)
}

/// How one probe ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    /// Still pending or running.
    Running,
    /// The probe reported.
    Report(Box<Report>),
    /// The probe itself failed; `reason` is one of the probe-failure reasons.
    Failed { reason: Reason, message: String },
}

/// Waiting reasons of a container whose image cannot be pulled.
const IMAGE_PULL_REASONS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
];
/// Those of them that the kubelet retries (with backoff): final only after
/// [`PULL_RETRY_GRACE`] from the pod's start.
const RETRIED_PULL_REASONS: [&str; 3] = ["ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"];
/// How long a probe pod may retry pulling its image before the failure is its outcome (the
/// kubelet retries after 10s, 20s, 40s; the Job deadline is at least two minutes).
pub const PULL_RETRY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// Pod failure reasons of a pod that the kubelet did not admit or lost.
pub const UNSCHEDULABLE_POD_REASONS: [&str; 7] = [
    "OutOfcpu",
    "OutOfmemory",
    "OutOfpods",
    "NodeAffinity",
    "NodeLost",
    "UnexpectedAdmissionError",
    "Evicted",
];

/// The outcome of a probe from its Job and (if it still exists) its pod, once nothing more
/// will change (an image pull failure is final).
pub fn outcome(job: &Job, pod: Option<&Pod>) -> ProbeOutcome {
    outcome_at(job, pod, None)
}

/// The outcome of a probe from its Job and (if it still exists) its pod at `now` (`None`:
/// once nothing more will change): an image pull that the kubelet retries is still running
/// within [`PULL_RETRY_GRACE`] of the pod's start, unless the Job has failed.
pub fn outcome_at(
    job: &Job,
    pod: Option<&Pod>,
    now: Option<k8s_openapi::jiff::Timestamp>,
) -> ProbeOutcome {
    if let Some(pod) = pod {
        let o = pod_outcome_at(pod, now);
        if o != ProbeOutcome::Running {
            return o;
        }
    }
    let job_failed = crate::operator::jobs::failed_condition(job).is_some();
    if job_failed
        && now.is_some()
        && let Some(pod) = pod
        && let o @ ProbeOutcome::Failed { .. } = pod_outcome_at(pod, None)
    {
        return o;
    }
    let failed = crate::operator::jobs::failed_condition(job);
    match failed {
        Some(c) if c.reason.as_deref() == Some("DeadlineExceeded") => ProbeOutcome::Failed {
            reason: Reason::ProbeTimedOut,
            message: "the probe Job ran into its deadline".into(),
        },
        Some(c) => ProbeOutcome::Failed {
            reason: Reason::ProbeCrashed,
            message: format!(
                "the probe Job failed ({})",
                crate::engine::text::clip_line(c.reason.as_deref().unwrap_or("no reason"), 80)
            ),
        },
        None => ProbeOutcome::Running,
    }
}

/// The outcome of a probe from its pod alone, once nothing more will change.
pub fn pod_outcome(pod: &Pod) -> ProbeOutcome {
    pod_outcome_at(pod, None)
}

/// The outcome of a probe from its pod alone at `now` (see [`outcome_at`]).
pub fn pod_outcome_at(pod: &Pod, now: Option<k8s_openapi::jiff::Timestamp>) -> ProbeOutcome {
    let Some(status) = pod.status.as_ref() else {
        return ProbeOutcome::Running;
    };
    let cs = status
        .container_statuses
        .as_ref()
        .and_then(|v| v.iter().find(|c| c.name == "probe"));
    if let Some(state) = cs.and_then(|c| c.state.as_ref()) {
        if let Some(t) = &state.terminated {
            let msg = t.message.as_deref().unwrap_or("");
            return match parse_termination_message(msg) {
                Ok(r) => ProbeOutcome::Report(Box::new(r)),
                Err(e) => {
                    let why = match t.reason.as_deref() {
                        Some("OOMKilled") => {
                            "the probe was killed for using too much memory".into()
                        }
                        _ => format!("the probe exited with code {}: {e}", t.exit_code),
                    };
                    ProbeOutcome::Failed {
                        reason: Reason::ProbeCrashed,
                        message: why,
                    }
                }
            };
        }
        if let Some(w) = &state.waiting
            && let Some(r) = w.reason.as_deref()
            && IMAGE_PULL_REASONS.contains(&r)
        {
            let retrying = RETRIED_PULL_REASONS.contains(&r)
                && now.is_some_and(|now| {
                    status.start_time.as_ref().is_none_or(|t| {
                        t.0.checked_add(PULL_RETRY_GRACE)
                            .is_ok_and(|until| now < until)
                    })
                });
            if retrying {
                return ProbeOutcome::Running;
            }
            return ProbeOutcome::Failed {
                reason: Reason::ProbeImagePullFailed,
                message: format!(
                    "the probe image cannot be pulled ({r}): {}",
                    crate::engine::text::clip_line(w.message.as_deref().unwrap_or(""), 160)
                ),
            };
        }
    }
    let pod_reason = status.reason.as_deref().unwrap_or("");
    if status.phase.as_deref() == Some("Failed") {
        if pod_reason == "DeadlineExceeded" {
            return ProbeOutcome::Failed {
                reason: Reason::ProbeTimedOut,
                message: "the probe ran into its deadline".into(),
            };
        }
        if UNSCHEDULABLE_POD_REASONS.contains(&pod_reason) {
            return ProbeOutcome::Failed {
                reason: Reason::ProbeUnschedulable,
                message: format!(
                    "the node did not run the probe ({pod_reason}): {}",
                    crate::engine::text::clip_line(status.message.as_deref().unwrap_or(""), 160)
                ),
            };
        }
        return ProbeOutcome::Failed {
            reason: Reason::ProbeCrashed,
            message: format!(
                "the probe pod failed ({})",
                crate::engine::text::clip_line(pod_reason, 80)
            ),
        };
    }
    let unschedulable = status.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if unschedulable {
        return ProbeOutcome::Failed {
            reason: Reason::ProbeUnschedulable,
            message: "the probe pod cannot be scheduled".into(),
        };
    }
    ProbeOutcome::Running
}

/// One finished or running probe of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    pub context: ProbeContext,
    pub target: Option<Target>,
    pub outcome: ProbeOutcome,
}

impl ProbeRecord {
    fn node(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.node.as_str())
    }
    fn report(&self) -> Option<&Report> {
        match &self.outcome {
            ProbeOutcome::Report(r) => Some(r),
            _ => None,
        }
    }
}

/// The registry's state according to one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunVerdict {
    /// Every report is healthy.
    Healthy,
    /// At least one report found a problem.
    Failing,
    /// No probe reported: nothing is known about the registry.
    Unknown,
}

/// Node and pod context on one node that reached different results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub node: String,
    pub node_reason: Reason,
    pub pod_reason: Reason,
}

/// Everything a run says, before it is folded into the status.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub verdict: RunVerdict,
    /// The worst finding across contexts and nodes, with where it was found.
    pub primary: Option<(Finding, ProbeContext, Option<String>)>,
    /// The worst probe failure, if any.
    pub probe_failure: Option<(Reason, String)>,
    pub disagreements: Vec<Disagreement>,
    /// Whether both contexts reported on at least one common node.
    pub compared: bool,
    /// The pull canaries (context `kubelet`).
    pub kubelet: crate::operator::canary::KubeletSummary,
    /// Error findings (all reports), for the detail conditions.
    pub errors: Vec<Finding>,
    pub results: Vec<ProbeResult>,
    pub counts: Counts,
}

fn verdict_rank(v: Verdict) -> u8 {
    match v {
        Verdict::Unreachable => 0,
        Verdict::Degraded => 1,
        Verdict::Healthy => 2,
    }
}

fn result_verdict(o: &ProbeOutcome) -> Option<ResultVerdict> {
    match o {
        ProbeOutcome::Running => None,
        ProbeOutcome::Failed { .. } => Some(ResultVerdict::ProbeFailed),
        ProbeOutcome::Report(r) => Some(match r.verdict {
            Verdict::Healthy => ResultVerdict::Healthy,
            Verdict::Degraded => ResultVerdict::Degraded,
            Verdict::Unreachable => ResultVerdict::Unreachable,
        }),
    }
}

fn result_rank(v: ResultVerdict) -> u8 {
    match v {
        ResultVerdict::Unreachable => 0,
        ResultVerdict::Degraded => 1,
        ResultVerdict::ProbeFailed => 2,
        ResultVerdict::Healthy => 3,
    }
}

/// Phase timings of the login server in a report.
pub fn timings(r: &Report) -> PhaseTimings {
    let ev = &r.evidence;
    let login = ev.endpoints.iter().find(|e| e.role == Role::LoginServer);
    PhaseTimings {
        dns_ms: login.map(|e| e.dns.system.ms),
        tcp_ms: login.and_then(|e| e.tcp.first()).map(|t| t.ms),
        tls_ms: login.and_then(|e| e.tls.as_ref()).map(|t| t.ms),
        http_ms: login.and_then(|e| e.http.as_ref()).map(|h| h.ms),
        total_ms: Some(ev.ms),
    }
}

/// Folds the records of one run into a summary. Running probes are ignored.
pub fn aggregate(records: &[ProbeRecord]) -> RunSummary {
    // Kubelet pulls that differ from the node probe on their node get the reason naming it.
    let refined = crate::operator::canary::compare_with_node(records);
    let records = refined.as_slice();
    let done: Vec<&ProbeRecord> = records
        .iter()
        .filter(|r| r.outcome != ProbeOutcome::Running)
        .collect();
    let reports: Vec<(&ProbeRecord, &Report)> = done
        .iter()
        .filter_map(|r| r.report().map(|rep| (*r, rep)))
        .collect();

    let verdict = if reports.is_empty() {
        RunVerdict::Unknown
    } else if reports.iter().all(|(_, r)| r.verdict == Verdict::Healthy) {
        RunVerdict::Healthy
    } else {
        RunVerdict::Failing
    };

    // Worst report first: verdict, then severity of its primary finding, node context first
    // (what image pulls use), then node name for determinism.
    let primary = reports
        .iter()
        .min_by_key(|(rec, r)| {
            (
                verdict_rank(r.verdict),
                r.findings[0].severity,
                rec.context,
                rec.node().map(str::to_string),
            )
        })
        .map(|(rec, r)| {
            (
                r.findings[0].clone(),
                rec.context,
                rec.node().map(str::to_string),
            )
        });

    let probe_failure = done
        .iter()
        .filter_map(|r| match &r.outcome {
            ProbeOutcome::Failed { reason, message } => Some((*reason, message.clone(), r.node())),
            _ => None,
        })
        .min_by_key(|(reason, _, node)| (*reason, node.map(str::to_string)))
        .map(|(reason, message, node)| {
            let on = node.map(|n| format!("{n}: ")).unwrap_or_default();
            (reason, format!("{on}{message}"))
        });

    // Node vs pod on the same node.
    let mut by_node: BTreeMap<&str, (Option<&Report>, Option<&Report>)> = BTreeMap::new();
    for (rec, r) in &reports {
        if let Some(n) = rec.node() {
            let e = by_node.entry(n).or_default();
            match rec.context {
                ProbeContext::Node => e.0 = Some(r),
                ProbeContext::Pod => e.1 = Some(r),
                ProbeContext::Kubelet => {}
            }
        }
    }
    let mut compared = false;
    let mut disagreements = Vec::new();
    for (node, pair) in &by_node {
        if let (Some(n), Some(p)) = pair {
            compared = true;
            let (nr, pr) = (n.findings[0].reason, p.findings[0].reason);
            if n.verdict != p.verdict || nr != pr {
                disagreements.push(Disagreement {
                    node: node.to_string(),
                    node_reason: nr,
                    pod_reason: pr,
                });
            }
        }
    }

    let errors: Vec<Finding> = reports
        .iter()
        .flat_map(|(_, r)| r.findings.iter())
        .filter(|f| f.severity == Severity::Error)
        .cloned()
        .collect();

    let mut results: Vec<ProbeResult> = done
        .iter()
        .filter_map(|rec| {
            let verdict = result_verdict(&rec.outcome)?;
            let (reason, message, timings) = match &rec.outcome {
                ProbeOutcome::Report(r) => (
                    r.findings[0].reason,
                    r.findings[0].message.clone(),
                    Some(timings(r)),
                ),
                ProbeOutcome::Failed { reason, message } => (*reason, message.clone(), None),
                ProbeOutcome::Running => return None,
            };
            Some(ProbeResult {
                context: rec.context,
                node: rec.node().map(str::to_string),
                node_pool: rec.target.as_ref().and_then(|t| t.node_pool.clone()),
                zone: rec.target.as_ref().and_then(|t| t.zone.clone()),
                verdict,
                reason: reason.as_str().into(),
                message: crate::engine::text::clip_line(&message, RESULT_MESSAGE_CHARS),
                timings,
            })
        })
        .collect();
    results.sort_by(|a, b| {
        (result_rank(a.verdict), &a.node, a.context).cmp(&(
            result_rank(b.verdict),
            &b.node,
            b.context,
        ))
    });
    results.truncate(MAX_RESULTS);

    let nodes_checked: BTreeSet<&str> = reports.iter().filter_map(|(rec, _)| rec.node()).collect();
    let nodes_failing: BTreeSet<&str> = reports
        .iter()
        .filter(|(_, r)| r.verdict != Verdict::Healthy)
        .filter_map(|(rec, _)| rec.node())
        .collect();
    let counts = Counts {
        nodes_checked: nodes_checked.len() as u32,
        nodes_failing: nodes_failing.len() as u32,
        probes: done.len() as u32,
        probes_failed: (done.len() - reports.len()) as u32,
    };

    RunSummary {
        verdict,
        primary,
        probe_failure,
        disagreements,
        compared,
        kubelet: crate::operator::canary::summarize(records),
        errors,
        results,
        counts,
    }
}

/// The diagnosis for the status: the primary finding, or, when no probe reported, the worst
/// probe failure.
pub fn diagnosis(summary: &RunSummary) -> Option<Diagnosis> {
    if let Some((f, ctx, node)) = &summary.primary {
        return Some(finding_diagnosis(f, Some(*ctx), node.clone()));
    }
    summary
        .probe_failure
        .as_ref()
        .map(|(reason, message)| operator_diagnosis(*reason, message))
}

/// A diagnosis the operator makes itself (an invalid spec, a refusal by the target policy, a
/// probe that did not report): cause, code, remediation and docs come from the catalogue.
pub fn operator_diagnosis(reason: Reason, message: &str) -> Diagnosis {
    finding_diagnosis(&Finding::catalogued(reason, "", None, message), None, None)
}

fn finding_diagnosis(
    f: &Finding,
    context: Option<ProbeContext>,
    node: Option<String>,
) -> Diagnosis {
    Diagnosis {
        reason: f.reason.as_str().into(),
        cause: f.cause.as_str().into(),
        code: f.code.clone(),
        message: crate::engine::text::clip_line(&f.message, DIAGNOSIS_MESSAGE_CHARS),
        remediation: crate::engine::text::clip_line(&f.remediation, 2048),
        docs: f.docs.iter().take(8).cloned().collect(),
        context,
        node,
    }
}

/// Which detail condition a finding belongs to (the catalogue's, `DataEndpointReachable` for
/// any finding on a data endpoint, `EgressReachable` for any finding on an egress host).
fn detail_condition(f: &Finding) -> Option<&'static str> {
    if f.role == Some(Role::DataEndpoint) {
        return Some(conditions::DATA_ENDPOINT_REACHABLE);
    }
    if f.role == Some(Role::Egress) {
        return Some(conditions::EGRESS_REACHABLE);
    }
    f.reason.entry().condition.map(StatusCondition::type_name)
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: crate::engine::text::clip_line(&message, 1024),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Puts `new` into `conditions`, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// The status after a finished run: counters, `Ready` with hysteresis, detail conditions,
/// diagnosis, results and counts.
pub fn next_status(
    prev: &RegistryConnectivityCheckStatus,
    spec: &RegistryConnectivityCheckSpec,
    generation: Option<i64>,
    summary: &RunSummary,
    run: RunInfo,
    now: &Time,
) -> RegistryConnectivityCheckStatus {
    let mut st = prev.clone();
    st.observed_generation = generation;
    // A probe the API server refused to create left its context unprobed: healthy reports
    // from the others do not make the run good (a registry problem found elsewhere still
    // counts).
    let not_created = (summary.verdict == RunVerdict::Healthy)
        .then(|| {
            summary
                .results
                .iter()
                .find(|r| r.reason == Reason::ProbeNotCreated.as_str())
        })
        .flatten();
    let verdict = match not_created {
        Some(_) => RunVerdict::Unknown,
        None => summary.verdict,
    };
    match verdict {
        RunVerdict::Failing => {
            st.consecutive_failures = st.consecutive_failures.saturating_add(1);
            st.consecutive_successes = 0;
        }
        RunVerdict::Healthy => {
            st.consecutive_successes = st.consecutive_successes.saturating_add(1);
            st.consecutive_failures = 0;
        }
        RunVerdict::Unknown => {}
    }
    let diag = match not_created {
        Some(r) => {
            let reason = Reason::ProbeNotCreated;
            let on = r
                .node
                .as_ref()
                .map(|n| format!("{n}: "))
                .unwrap_or_default();
            Some(Diagnosis {
                reason: reason.as_str().into(),
                cause: reason.cause().as_str().into(),
                code: None,
                message: crate::engine::text::clip_line(
                    &format!("{on}{}", r.message),
                    DIAGNOSIS_MESSAGE_CHARS,
                ),
                remediation: reason.remediation().into(),
                docs: reason.docs().iter().map(|d| d.to_string()).collect(),
                context: Some(r.context),
                node: r.node.clone(),
            })
        }
        None => diagnosis(summary),
    };
    let c = |t: &str, s: &str, r: &str, m: String| condition(t, s, r, m, generation, now);
    let conds = &mut st.conditions;

    // Ready.
    let reason = diag
        .as_ref()
        .map(|d| d.reason.clone())
        .unwrap_or_else(|| reasons::NO_RESULTS.into());
    let message = diag.as_ref().map(|d| d.message.clone()).unwrap_or_default();
    let prev_ready = prev
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY);
    let ready = match summary.verdict {
        _ if not_created.is_some() => c(
            conditions::READY,
            "Unknown",
            &reason,
            format!(
                "a probe could not be created, so the registry is not known to be reachable from every context: {message}"
            ),
        ),
        RunVerdict::Unknown => c(
            conditions::READY,
            "Unknown",
            &reason,
            format!("no probe reported, so nothing is known about the registry: {message}"),
        ),
        RunVerdict::Failing if st.consecutive_failures >= spec.failure_threshold => {
            c(conditions::READY, "False", &reason, message)
        }
        RunVerdict::Healthy if st.consecutive_successes >= spec.success_threshold => {
            c(conditions::READY, "True", Reason::Healthy.as_str(), message)
        }
        _ => {
            let (n, of, what) = match summary.verdict {
                RunVerdict::Failing => (st.consecutive_failures, spec.failure_threshold, "failed"),
                _ => (st.consecutive_successes, spec.success_threshold, "good"),
            };
            let note = format!(
                "{n} of {of} consecutive {what} runs before Ready changes; last run: {reason}: {message}"
            );
            match prev_ready {
                Some(p) if p.status != "Unknown" => Condition {
                    message: crate::engine::text::clip_line(&note, 1024),
                    observed_generation: generation,
                    ..p.clone()
                },
                _ => c(
                    conditions::READY,
                    "Unknown",
                    reasons::AWAITING_THRESHOLD,
                    note,
                ),
            }
        }
    };
    set_condition(conds, ready);

    // Detail conditions, from the error findings of all reports. `EgressReachable` only on
    // checks that name egress hosts.
    if spec.egress.is_empty() {
        conds.retain(|c| c.type_ != conditions::EGRESS_REACHABLE);
    }
    let egress = (!spec.egress.is_empty()).then_some(conditions::EGRESS_REACHABLE);
    for t in [
        conditions::DNS_RESOLVED,
        conditions::REGISTRY_REACHABLE,
        conditions::TLS_VERIFIED,
        conditions::REGISTRY_API_REACHABLE,
        conditions::DATA_ENDPOINT_REACHABLE,
    ]
    .into_iter()
    .chain(egress)
    {
        let new = if summary.verdict == RunVerdict::Unknown {
            c(
                t,
                "Unknown",
                reasons::NO_RESULTS,
                "no probe reported".into(),
            )
        } else {
            match summary
                .errors
                .iter()
                .filter(|f| detail_condition(f) == Some(t))
                .min_by_key(|f| f.reason)
            {
                Some(f) => c(t, "False", f.reason.as_str(), f.message.clone()),
                None => c(t, "True", reasons::NO_FINDING, String::new()),
            }
        };
        set_condition(conds, new);
    }

    // Contexts.
    let contexts = if let Some(d) = summary.disagreements.first() {
        c(
            conditions::CONTEXTS_CONSISTENT,
            "False",
            Reason::ContextsDisagree.as_str(),
            format!(
                "{} node(s) disagree; on {}: node network {}, pod network {}",
                summary.disagreements.len(),
                d.node,
                d.node_reason,
                d.pod_reason
            ),
        )
    } else if let Some(d) = summary.kubelet.disagreements.first() {
        c(
            conditions::CONTEXTS_CONSISTENT,
            "False",
            d.kubelet_reason.as_str(),
            format!(
                "{} node(s) differ between the node probe and the kubelet's pull; on {}: node network {}, kubelet pull {}: {}",
                summary.kubelet.disagreements.len(),
                d.node,
                d.node_reason,
                d.kubelet_reason,
                d.message
            ),
        )
    } else if summary.compared || summary.kubelet.compared {
        c(
            conditions::CONTEXTS_CONSISTENT,
            "True",
            reasons::CONTEXTS_AGREE,
            String::new(),
        )
    } else {
        c(
            conditions::CONTEXTS_CONSISTENT,
            "Unknown",
            reasons::NOT_COMPARED,
            "no node was probed from both contexts".into(),
        )
    };
    set_condition(conds, contexts);

    // The kubelet's own pulls.
    if spec.contexts.kubelet.enabled {
        let k = &summary.kubelet;
        let pullable = match &k.worst {
            Some((reason, node, message)) => c(
                conditions::IMAGE_PULLABLE,
                "False",
                reason.as_str(),
                format!(
                    "{} of {} kubelet pull(s) failed; on {node}: {message}",
                    k.failed, k.reported
                ),
            ),
            None if k.reported > 0 => c(
                conditions::IMAGE_PULLABLE,
                "True",
                reasons::IMAGE_PULLED,
                format!("the kubelet pulled the image on {} node(s)", k.pulled),
            ),
            None => c(
                conditions::IMAGE_PULLABLE,
                "Unknown",
                reasons::NO_RESULTS,
                "no pull canary reported".into(),
            ),
        };
        set_condition(conds, pullable);
    } else {
        conds.retain(|c| c.type_ != conditions::IMAGE_PULLABLE);
    }

    // Probes.
    let probes = match &summary.probe_failure {
        Some((reason, message)) => c(
            conditions::PROBES_HEALTHY,
            "False",
            reason.as_str(),
            format!(
                "{} of {} probe(s) failed; {message}",
                summary.counts.probes_failed, summary.counts.probes
            ),
        ),
        None => c(
            conditions::PROBES_HEALTHY,
            "True",
            reasons::PROBES_RAN,
            String::new(),
        ),
    };
    set_condition(conds, probes);

    st.diagnosis = diag;
    st.last_run = Some(run);
    st.results = summary.results.clone();
    st.counts = Some(summary.counts.clone());
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evidence::{Evidence, Expect};
    use crate::engine::findings::Cause;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        PodCondition, PodStatus,
    };
    use proptest::prelude::*;

    fn report(verdict: Verdict, reason: Reason, role: Role) -> Report {
        let sev = if reason == Reason::Healthy {
            Severity::Info
        } else {
            reason.default_severity()
        };
        Report {
            schema_version: SCHEMA_VERSION,
            verdict,
            findings: vec![
                Finding::catalogued(
                    reason,
                    "r.azurecr.io",
                    Some(role),
                    format!("r.azurecr.io: {reason}"),
                )
                .with_severity(sev),
            ],
            context: None,
            node: None,
            evidence: Evidence {
                ip_family: None,
                registry: "r.azurecr.io".into(),
                expect: Expect::Any,
                egress_ips: Vec::new(),
                endpoints: vec![],
                pull: None,
                containerd: None,
                proxy_source: None,
                resolvers: None,
                egress: None,
                ms: 42,
            },
        }
    }

    fn healthy() -> Report {
        report(Verdict::Healthy, Reason::Healthy, Role::LoginServer)
    }

    fn compact_json(r: &Report) -> String {
        crate::engine::report::to_compact_json(r)
    }

    fn rec(ctx: ProbeContext, node: &str, outcome: ProbeOutcome) -> ProbeRecord {
        ProbeRecord {
            context: ctx,
            target: Some(Target {
                node: node.into(),
                node_pool: Some("sys".into()),
                zone: Some("z1".into()),
            }),
            outcome,
        }
    }

    fn rep(r: Report) -> ProbeOutcome {
        ProbeOutcome::Report(Box::new(r))
    }

    fn failed(reason: Reason) -> ProbeOutcome {
        ProbeOutcome::Failed {
            reason,
            message: "x".into(),
        }
    }

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap())
    }

    fn spec(failure: u32, success: u32) -> RegistryConnectivityCheckSpec {
        let mut s: RegistryConnectivityCheckSpec =
            serde_json::from_value(serde_json::json!({"registry": "r.azurecr.io"})).unwrap();
        s.failure_threshold = failure;
        s.success_threshold = success;
        s
    }

    fn ready(st: &RegistryConnectivityCheckStatus) -> &Condition {
        st.conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .unwrap()
    }

    fn cond<'a>(st: &'a RegistryConnectivityCheckStatus, t: &str) -> &'a Condition {
        st.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn parses_compact_reports_and_restores_remediation() {
        let r = report(
            Verdict::Unreachable,
            Reason::ConnectionTimedOut,
            Role::LoginServer,
        );
        let json = compact_json(&r);
        assert!(json.len() <= MAX_TERMINATION_MESSAGE);
        let back = parse_termination_message(&json).unwrap();
        assert_eq!(back.verdict, Verdict::Unreachable);
        assert_eq!(back.findings[0].reason, Reason::ConnectionTimedOut);
        assert!(!back.findings[0].remediation.is_empty() && !back.findings[0].docs.is_empty());
        // Surrounding whitespace (a trailing newline) is fine.
        assert!(parse_termination_message(&format!("{json}\n")).is_ok());
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let good = compact_json(&healthy());
        type Check = fn(&MessageError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("".into(), |e| *e == MessageError::Empty),
            ("  \n".into(), |e| *e == MessageError::Empty),
            ("x".repeat(4097), |e| *e == MessageError::TooLarge(4097)),
            ("panic: runtime error".into(), |e| {
                matches!(e, MessageError::Malformed(_))
            }),
            ("{}".into(), |e| matches!(e, MessageError::Malformed(_))),
            ("[1,2]".into(), |e| matches!(e, MessageError::Malformed(_))),
            (
                good.replace("\"schemaVersion\":1", "\"schemaVersion\":2"),
                |e| *e == MessageError::UnsupportedVersion(2),
            ),
            (
                good.replace("\"schemaVersion\":1", "\"schemaVersion\":\"1\""),
                |e| matches!(e, MessageError::Malformed(_)),
            ),
            (good[..good.len() / 2].to_string(), |e| {
                matches!(e, MessageError::Malformed(_))
            }),
            (good.replace("\"Healthy\"", "\"NoSuchVerdict\""), |e| {
                matches!(e, MessageError::Malformed(_))
            }),
        ];
        for (msg, ok) in cases {
            let e = parse_termination_message(&msg).unwrap_err();
            assert!(
                ok(&e),
                "{:?} → {e:?}",
                crate::engine::text::clip_line(&msg, 60)
            );
        }
        let mut no_findings = healthy();
        no_findings.findings.clear();
        assert!(matches!(
            parse_termination_message(&compact_json(&no_findings)),
            Err(MessageError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,5000}") {
            let _ = parse_termination_message(&s);
        }

        #[test]
        fn parser_survives_mutated_reports(cut in 0usize..400, byte in any::<u8>(), pos in 0usize..400) {
            let mut b = compact_json(&report(Verdict::Degraded, Reason::DataEndpointBlocked, Role::DataEndpoint)).into_bytes();
            let pos = pos % b.len();
            b[pos] = byte;
            b.truncate(b.len().saturating_sub(cut));
            let s = String::from_utf8_lossy(&b);
            let _ = parse_termination_message(&s);
        }
    }

    fn pod_with(state: ContainerState, phase: &str, reason: Option<&str>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(Into::into),
                container_statuses: Some(vec![ContainerStatus {
                    name: "probe".into(),
                    state: Some(state),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(msg: &str, code: i32, reason: Option<&str>) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                message: Some(msg.into()),
                reason: reason.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_outcomes() {
        let good = compact_json(&healthy());
        let waiting = |r: &str| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(r.into()),
                message: Some("not found".into()),
            }),
            ..Default::default()
        };
        let reason_of = |o: ProbeOutcome| match o {
            ProbeOutcome::Failed { reason, .. } => Some(reason),
            _ => None,
        };
        assert!(matches!(
            pod_outcome(&pod_with(terminated(&good, 1, None), "Failed", None)),
            ProbeOutcome::Report(_)
        ));
        let cases = [
            (
                pod_with(terminated("garbage", 2, Some("Error")), "Failed", None),
                Some(Reason::ProbeCrashed),
            ),
            (
                pod_with(terminated("", 137, Some("OOMKilled")), "Failed", None),
                Some(Reason::ProbeCrashed),
            ),
            (
                pod_with(waiting("ImagePullBackOff"), "Pending", None),
                Some(Reason::ProbeImagePullFailed),
            ),
            (
                pod_with(waiting("ErrImagePull"), "Pending", None),
                Some(Reason::ProbeImagePullFailed),
            ),
            (
                pod_with(waiting("ContainerCreating"), "Pending", None),
                None,
            ),
            (
                pod_with(ContainerState::default(), "Failed", Some("OutOfcpu")),
                Some(Reason::ProbeUnschedulable),
            ),
            (
                pod_with(
                    ContainerState::default(),
                    "Failed",
                    Some("DeadlineExceeded"),
                ),
                Some(Reason::ProbeTimedOut),
            ),
            (
                pod_with(ContainerState::default(), "Failed", Some("Weird")),
                Some(Reason::ProbeCrashed),
            ),
            (Pod::default(), None),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            assert_eq!(reason_of(pod_outcome(&p)), want, "case {i}");
        }
        let mut pending = pod_with(ContainerState::default(), "Pending", None);
        pending.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            ..Default::default()
        }]);
        assert_eq!(
            reason_of(pod_outcome(&pending)),
            Some(Reason::ProbeUnschedulable)
        );
    }

    /// Pull failures the kubelet retries are final after PULL_RETRY_GRACE, or once the Job
    /// failed; without a time (`outcome`) they are final at once.
    #[test]
    fn retried_image_pulls_are_final_after_the_grace_or_the_job() {
        let at = |s: i64| k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap();
        let mut p = pod_with(
            ContainerState {
                waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                    reason: Some("ErrImagePull".into()),
                    message: Some("rpc error".into()),
                }),
                ..Default::default()
            },
            "Pending",
            None,
        );
        p.status.as_mut().unwrap().start_time = Some(Time(at(0)));
        let running = Job::default();
        let failed: Job = serde_json::from_value(serde_json::json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}))
        .unwrap();
        let pull = Some(Reason::ProbeImagePullFailed);
        let reason_of = |o: ProbeOutcome| match o {
            ProbeOutcome::Failed { reason, .. } => Some(reason),
            _ => None,
        };
        assert_eq!(
            reason_of(outcome_at(&running, Some(&p), Some(at(59)))),
            None
        );
        assert_eq!(
            reason_of(outcome_at(&running, Some(&p), Some(at(60)))),
            pull
        );
        assert_eq!(reason_of(outcome_at(&failed, Some(&p), Some(at(5)))), pull);
        assert_eq!(reason_of(outcome(&running, Some(&p))), pull);
    }

    #[test]
    fn job_deadline_without_pod_is_a_timeout() {
        let job = |reason: &str| Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            outcome(&job("DeadlineExceeded"), None),
            ProbeOutcome::Failed {
                reason: Reason::ProbeTimedOut,
                ..
            }
        ));
        assert!(matches!(
            outcome(&job("BackoffLimitExceeded"), None),
            ProbeOutcome::Failed {
                reason: Reason::ProbeCrashed,
                ..
            }
        ));
        assert_eq!(outcome(&Job::default(), None), ProbeOutcome::Running);
        // A report in the pod wins over the Job's failure.
        let p = pod_with(
            terminated(&compact_json(&healthy()), 0, None),
            "Succeeded",
            None,
        );
        assert!(matches!(
            outcome(&job("DeadlineExceeded"), Some(&p)),
            ProbeOutcome::Report(_)
        ));
    }

    #[test]
    fn worst_finding_across_contexts_and_nodes() {
        let recs = vec![
            rec(ProbeContext::Node, "n1", rep(healthy())),
            rec(
                ProbeContext::Pod,
                "n1",
                rep(report(
                    Verdict::Degraded,
                    Reason::DataEndpointBlocked,
                    Role::DataEndpoint,
                )),
            ),
            rec(
                ProbeContext::Node,
                "n2",
                rep(report(
                    Verdict::Unreachable,
                    Reason::PrivateEndpointResolvesPublic,
                    Role::LoginServer,
                )),
            ),
            rec(
                ProbeContext::Pod,
                "n2",
                rep(report(
                    Verdict::Unreachable,
                    Reason::PrivateEndpointResolvesPublic,
                    Role::LoginServer,
                )),
            ),
            rec(
                ProbeContext::Node,
                "n3",
                failed(Reason::ProbeImagePullFailed),
            ),
            rec(ProbeContext::Node, "n4", ProbeOutcome::Running),
        ];
        let s = aggregate(&recs);
        assert_eq!(s.verdict, RunVerdict::Failing);
        let (f, ctx, node) = s.primary.clone().unwrap();
        assert_eq!(f.reason, Reason::PrivateEndpointResolvesPublic);
        assert_eq!((ctx, node.as_deref()), (ProbeContext::Node, Some("n2")));
        assert_eq!(
            s.probe_failure.as_ref().unwrap().0,
            Reason::ProbeImagePullFailed
        );
        assert_eq!(
            s.disagreements,
            vec![Disagreement {
                node: "n1".into(),
                node_reason: Reason::Healthy,
                pod_reason: Reason::DataEndpointBlocked
            }]
        );
        assert!(s.compared);
        assert_eq!(
            s.counts,
            Counts {
                nodes_checked: 2,
                nodes_failing: 2,
                probes: 5,
                probes_failed: 1
            }
        );
        // Failures first, then probe failures, healthy last; running probes left out.
        let order: Vec<(ResultVerdict, Option<&str>)> = s
            .results
            .iter()
            .map(|r| (r.verdict, r.node.as_deref()))
            .collect();
        assert_eq!(
            order,
            [
                (ResultVerdict::Unreachable, Some("n2")),
                (ResultVerdict::Unreachable, Some("n2")),
                (ResultVerdict::Degraded, Some("n1")),
                (ResultVerdict::ProbeFailed, Some("n3")),
                (ResultVerdict::Healthy, Some("n1")),
            ]
        );
        assert_eq!(s.results[0].timings.as_ref().unwrap().total_ms, Some(42));
        let d = diagnosis(&s).unwrap();
        assert_eq!(d.reason, "PrivateEndpointResolvesPublic");
        assert_eq!(d.cause, Cause::VirtualNetworkConfiguration.as_str());
        assert!(!d.remediation.is_empty());
    }

    #[test]
    fn contexts_disagree_on_same_verdict_with_other_reason() {
        let s = aggregate(&[
            rec(
                ProbeContext::Node,
                "n1",
                rep(report(
                    Verdict::Unreachable,
                    Reason::ConnectionTimedOut,
                    Role::LoginServer,
                )),
            ),
            rec(
                ProbeContext::Pod,
                "n1",
                rep(report(
                    Verdict::Unreachable,
                    Reason::DNSNameNotFound,
                    Role::LoginServer,
                )),
            ),
        ]);
        assert_eq!(s.disagreements.len(), 1);
        let agree = aggregate(&[
            rec(ProbeContext::Node, "n1", rep(healthy())),
            rec(ProbeContext::Pod, "n1", rep(healthy())),
            rec(
                ProbeContext::Pod,
                "n2",
                rep(report(
                    Verdict::Unreachable,
                    Reason::DNSNameNotFound,
                    Role::LoginServer,
                )),
            ),
        ]);
        assert!(agree.disagreements.is_empty() && agree.compared);
    }

    #[test]
    fn results_are_bounded_and_messages_cut() {
        let mut r = report(
            Verdict::Unreachable,
            Reason::ConnectionTimedOut,
            Role::LoginServer,
        );
        r.findings[0].message = "m".repeat(1000);
        let recs: Vec<ProbeRecord> = (0..120)
            .map(|i| rec(ProbeContext::Node, &format!("n{i:03}"), rep(r.clone())))
            .collect();
        let s = aggregate(&recs);
        assert_eq!(s.results.len(), MAX_RESULTS);
        assert!(
            s.results
                .iter()
                .all(|r| r.message.chars().count() <= RESULT_MESSAGE_CHARS)
        );
        assert_eq!(s.counts.nodes_failing, 120);
        assert!(diagnosis(&s).unwrap().message.chars().count() <= DIAGNOSIS_MESSAGE_CHARS);
    }

    fn run(id: &str) -> RunInfo {
        RunInfo {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ready_follows_thresholds() {
        let sp = spec(2, 2);
        let bad = aggregate(&[rec(
            ProbeContext::Node,
            "n1",
            rep(report(
                Verdict::Unreachable,
                Reason::ConnectionTimedOut,
                Role::LoginServer,
            )),
        )]);
        let good = aggregate(&[rec(ProbeContext::Node, "n1", rep(healthy()))]);
        // Sequence of runs → expected Ready status after each.
        let steps: [(&RunSummary, &str); 7] = [
            (&good, "Unknown"), // 1 of 2 good runs
            (&good, "True"),
            (&bad, "True"), // 1 of 2 failed runs
            (&bad, "False"),
            (&good, "False"),
            (&bad, "False"),
            (&good, "False"),
        ];
        let mut st = RegistryConnectivityCheckStatus::default();
        for (i, (s, want)) in steps.iter().enumerate() {
            st = next_status(&st, &sp, Some(1), s, run(&format!("r{i}")), &t(i as i64));
            assert_eq!(ready(&st).status, *want, "step {i}: {:?}", ready(&st));
        }
        st = next_status(&st, &sp, Some(1), &good, run("r8"), &t(8));
        assert_eq!(ready(&st).status, "True");
        assert_eq!(ready(&st).reason, "Healthy");
        assert_eq!(st.consecutive_successes, 2);
        assert_eq!(st.consecutive_failures, 0);
        // Thresholds of 1 switch at once.
        let once = next_status(
            &RegistryConnectivityCheckStatus::default(),
            &spec(1, 1),
            None,
            &bad,
            run("x"),
            &t(0),
        );
        assert_eq!(ready(&once).status, "False");
        assert_eq!(ready(&once).reason, "ConnectionTimedOut");
        assert_eq!(cond(&once, conditions::REGISTRY_REACHABLE).status, "False");
        assert_eq!(cond(&once, conditions::DNS_RESOLVED).status, "True");
    }

    #[test]
    fn egress_reachable_only_on_checks_with_egress_hosts() {
        let mut blocked = report(Verdict::Degraded, Reason::EgressHostBlocked, Role::Egress);
        blocked.findings[0].endpoint = "packages.aks.azure.com".into();
        blocked.findings[0].message =
            "packages.aks.azure.com: egress host blocked at TLS, required by AKS".into();
        let run_of = |r: Report| aggregate(&[rec(ProbeContext::Node, "n1", rep(r))]);
        let mut sp = spec(1, 1);
        sp.egress.profiles = vec!["AKS".into()];
        let st = next_status(
            &RegistryConnectivityCheckStatus::default(),
            &sp,
            Some(1),
            &run_of(blocked.clone()),
            run("r1"),
            &t(0),
        );
        let c = cond(&st, conditions::EGRESS_REACHABLE);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "EgressHostBlocked")
        );
        assert!(c.message.contains("packages.aks.azure.com"), "{c:?}");
        // The registry's own conditions stay True: the finding is about another host.
        assert_eq!(cond(&st, conditions::REGISTRY_REACHABLE).status, "True");
        assert_eq!(cond(&st, conditions::TLS_VERIFIED).status, "True");
        let st = next_status(&st, &sp, Some(1), &run_of(healthy()), run("r2"), &t(1));
        assert_eq!(cond(&st, conditions::EGRESS_REACHABLE).status, "True");
        // Without spec.egress the condition is absent (and removed when the spec drops it).
        let st = next_status(
            &st,
            &spec(1, 1),
            Some(2),
            &run_of(healthy()),
            run("r3"),
            &t(2),
        );
        assert!(
            !st.conditions
                .iter()
                .any(|c| c.type_ == conditions::EGRESS_REACHABLE)
        );
    }

    #[test]
    fn probe_failures_never_make_ready_false() {
        let sp = spec(1, 1);
        let only_failures = aggregate(&[
            rec(ProbeContext::Node, "n1", failed(Reason::ProbeUnschedulable)),
            rec(ProbeContext::Pod, "n1", failed(Reason::ProbeCrashed)),
        ]);
        assert_eq!(only_failures.verdict, RunVerdict::Unknown);
        let mut prev = RegistryConnectivityCheckStatus {
            consecutive_successes: 3,
            ..Default::default()
        };
        let good = aggregate(&[rec(ProbeContext::Node, "n1", rep(healthy()))]);
        prev = next_status(&prev, &sp, Some(1), &good, run("a"), &t(0));
        assert_eq!(ready(&prev).status, "True");
        let st = next_status(&prev, &sp, Some(1), &only_failures, run("b"), &t(10));
        assert_eq!(ready(&st).status, "Unknown");
        assert_eq!(ready(&st).reason, "ProbeUnschedulable");
        let ph = cond(&st, conditions::PROBES_HEALTHY);
        assert_eq!(
            (ph.status.as_str(), ph.reason.as_str()),
            ("False", "ProbeUnschedulable")
        );
        assert_eq!(
            st.consecutive_failures, 0,
            "probe failures are not registry failures"
        );
        assert_eq!(st.diagnosis.as_ref().unwrap().cause, "ProbeInfrastructure");
        // Mixed: a report plus a probe failure keeps Ready from the report.
        let mixed = aggregate(&[
            rec(ProbeContext::Node, "n1", rep(healthy())),
            rec(ProbeContext::Node, "n2", failed(Reason::ProbeTimedOut)),
        ]);
        let st = next_status(&prev, &sp, Some(1), &mixed, run("c"), &t(20));
        assert_eq!(ready(&st).status, "True");
        assert_eq!(cond(&st, conditions::PROBES_HEALTHY).status, "False");
    }

    /// A probe whose Job the API server refused leaves its context unprobed: healthy reports
    /// from the others do not make the check Ready (Unknown, named ProbeNotCreated), and do
    /// not count as a good run; a registry problem found elsewhere still decides Ready.
    #[test]
    fn a_probe_not_created_keeps_ready_unknown_unless_a_registry_problem_was_found() {
        let sp = spec(1, 1);
        let not_created = || ProbeOutcome::Failed {
            reason: Reason::ProbeNotCreated,
            message: "the API server refused to create probe job x: exceeded quota".into(),
        };
        let prev = RegistryConnectivityCheckStatus::default();
        let mixed = aggregate(&[
            rec(ProbeContext::Node, "n1", rep(healthy())),
            rec(ProbeContext::Pod, "n1", not_created()),
        ]);
        let st = next_status(&prev, &sp, Some(1), &mixed, run("a"), &t(0));
        assert_eq!(ready(&st).status, "Unknown");
        assert_eq!(ready(&st).reason, "ProbeNotCreated");
        assert!(
            ready(&st).message.contains("exceeded quota"),
            "{:?}",
            ready(&st)
        );
        assert_eq!(st.consecutive_successes, 0);
        let d = st.diagnosis.as_ref().unwrap();
        assert_eq!(
            (d.reason.as_str(), d.cause.as_str()),
            ("ProbeNotCreated", "ProbeInfrastructure")
        );
        assert_eq!(
            cond(&st, conditions::PROBES_HEALTHY).reason,
            "ProbeNotCreated"
        );
        let failing = aggregate(&[
            rec(
                ProbeContext::Node,
                "n1",
                rep(report(
                    Verdict::Unreachable,
                    Reason::ConnectionTimedOut,
                    Role::LoginServer,
                )),
            ),
            rec(ProbeContext::Pod, "n1", not_created()),
        ]);
        let st = next_status(&prev, &sp, Some(1), &failing, run("b"), &t(0));
        assert_eq!(ready(&st).status, "False");
        assert_eq!(ready(&st).reason, "ConnectionTimedOut");
    }

    #[test]
    fn last_transition_time_moves_only_on_status_change() {
        let sp = spec(1, 1);
        let good = aggregate(&[rec(ProbeContext::Node, "n1", rep(healthy()))]);
        let bad = aggregate(&[rec(
            ProbeContext::Node,
            "n1",
            rep(report(
                Verdict::Unreachable,
                Reason::ConnectionTimedOut,
                Role::LoginServer,
            )),
        )]);
        let s1 = next_status(&Default::default(), &sp, Some(1), &good, run("1"), &t(0));
        let s2 = next_status(&s1, &sp, Some(2), &good, run("2"), &t(100));
        assert_eq!(ready(&s2).last_transition_time, t(0));
        assert_eq!(ready(&s2).observed_generation, Some(2));
        assert_eq!(s2.observed_generation, Some(2));
        let s3 = next_status(&s2, &sp, Some(2), &bad, run("3"), &t(200));
        assert_eq!(ready(&s3).last_transition_time, t(200));
        assert_eq!(
            cond(&s3, conditions::PROBES_HEALTHY).last_transition_time,
            t(0)
        );
        // One condition per type.
        let types: BTreeSet<&str> = s3.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types.len(), s3.conditions.len());
        assert_eq!(types.len(), 8);
    }

    #[test]
    fn contexts_condition() {
        let sp = spec(1, 1);
        let s = aggregate(&[
            rec(ProbeContext::Node, "n1", rep(healthy())),
            rec(
                ProbeContext::Pod,
                "n1",
                rep(report(
                    Verdict::Unreachable,
                    Reason::PrivateEndpointResolvesPublic,
                    Role::LoginServer,
                )),
            ),
        ]);
        let st = next_status(&Default::default(), &sp, None, &s, run("1"), &t(0));
        let c = cond(&st, conditions::CONTEXTS_CONSISTENT);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ContextsDisagree")
        );
        assert!(
            c.message.contains("n1") && c.message.contains("PrivateEndpointResolvesPublic"),
            "{}",
            c.message
        );
        let only_node = aggregate(&[rec(ProbeContext::Node, "n1", rep(healthy()))]);
        let st = next_status(&Default::default(), &sp, None, &only_node, run("1"), &t(0));
        assert_eq!(cond(&st, conditions::CONTEXTS_CONSISTENT).status, "Unknown");
    }
}
