//! Prometheus metrics of the controller (prefix `regcheck_`). Label values come from small
//! fixed sets (reason, cause, verdict, context, phase, result, error) plus the namespace and
//! name of each check: never node names or free text.

use crate::engine::findings::{Report, Verdict};
use crate::operator::crd::{ProbeContext, RegistryConnectivityCheckStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub namespace: String,
    pub name: String,
    pub registry: String,
    pub reason: String,
    pub cause: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub context: &'static str,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContextLabels {
    pub context: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullFailureLabels {
    /// A host some check names, else `other`.
    pub registry: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub verb: &'static str,
    pub resource: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<PhaseLabels, Histogram, fn() -> Histogram>;

fn phase_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Result of a run, the `result` label of `regcheck_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Healthy,
    Degraded,
    Unreachable,
    ProbeFailed,
    InvalidSpec,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unreachable => "unreachable",
            Self::ProbeFailed => "probe_failed",
            Self::InvalidSpec => "invalid_spec",
        }
    }
}

/// Every metric of the controller, and the registry that serves them.
pub struct Metrics {
    pub registry: Registry,
    check_ready: Family<CheckLabels, Gauge>,
    check_info: Family<InfoLabels, Gauge>,
    consecutive_failures: Family<CheckLabels, Gauge>,
    failing_nodes: Family<CheckLabels, Gauge>,
    nodes_checked: Family<CheckLabels, Gauge>,
    contexts_consistent: Family<CheckLabels, Gauge>,
    probes_healthy: Family<CheckLabels, Gauge>,
    last_run_timestamp: Family<CheckLabels, F64Gauge>,
    run_duration: Family<CheckLabels, F64Gauge>,
    interval: Family<CheckLabels, Gauge>,
    phase_duration: HistogramFamily,
    runs: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    jobs_created: Family<ContextLabels, Counter>,
    /// Probe Jobs and canaries that waited for room under --max-probe-jobs-in-flight.
    jobs_held: Counter,
    api_requests: Family<ApiLabels, Counter>,
    workload_pull_failures: Family<PullFailureLabels, Counter>,
    /// The one `check_info` series of each check, so that the old one goes when labels change.
    info_series: Mutex<HashMap<CheckLabels, InfoLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("regcheck");
        let m = Self {
            registry: Registry::default(),
            check_ready: Family::default(),
            check_info: Family::default(),
            consecutive_failures: Family::default(),
            failing_nodes: Family::default(),
            nodes_checked: Family::default(),
            contexts_consistent: Family::default(),
            probes_healthy: Family::default(),
            last_run_timestamp: Family::default(),
            run_duration: Family::default(),
            interval: Family::default(),
            phase_duration: Family::new_with_constructor(phase_histogram as fn() -> Histogram),
            runs: Family::default(),
            reconcile_errors: Family::default(),
            jobs_created: Family::default(),
            jobs_held: Counter::default(),
            api_requests: Family::default(),
            workload_pull_failures: Family::default(),
            info_series: Mutex::new(HashMap::new()),
        };
        registry.register(
            "check_ready",
            "Whether the check is Ready: 1 ready, 0 not ready, -1 unknown",
            m.check_ready.clone(),
        );
        registry.register(
            "check_info",
            "The check's registry and primary diagnosis (value 1)",
            m.check_info.clone(),
        );
        registry.register(
            "check_consecutive_failures",
            "Consecutive runs that found the registry unusable",
            m.consecutive_failures.clone(),
        );
        registry.register(
            "check_failing_nodes",
            "Nodes whose probes found a problem in the last run",
            m.failing_nodes.clone(),
        );
        registry.register(
            "check_nodes_checked",
            "Nodes probed in the last run",
            m.nodes_checked.clone(),
        );
        registry.register(
            "check_contexts_consistent",
            "Whether node and pod network agreed in the last run (1, 0, -1 unknown)",
            m.contexts_consistent.clone(),
        );
        registry.register(
            "check_probes_healthy",
            "Whether every probe of the last run ran (1, 0, -1 unknown)",
            m.probes_healthy.clone(),
        );
        registry.register(
            "check_last_run_timestamp_seconds",
            "Unix time of the completion of the last run",
            m.last_run_timestamp.clone(),
        );
        registry.register(
            "check_run_duration_seconds",
            "Duration of the last run",
            m.run_duration.clone(),
        );
        registry.register(
            "check_interval_seconds",
            "The check's spec.interval: CheckStale fires after a multiple of it",
            m.interval.clone(),
        );
        registry.register(
            "probe_phase_duration_seconds",
            "Time probes spent per phase on the login server",
            m.phase_duration.clone(),
        );
        registry.register("runs", "Completed runs by result", m.runs.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "probe_jobs_created",
            "Probe Jobs created by context",
            m.jobs_created.clone(),
        );
        registry.register(
            "probe_jobs_held",
            "Probe Jobs and pull canaries not created at once because --max-probe-jobs-in-flight were unfinished (they are created at a later reconcile)",
            m.jobs_held.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb and resource",
            m.api_requests.clone(),
        );
        registry.register(
            "workload_pull_failures",
            "Image pulls of workloads that failed (kubelet Events), by registry host a check names (else other) and reason",
            m.workload_pull_failures.clone(),
        );
        Self { registry, ..m }
    }

    /// One request to the API server ([`super::api_count`]).
    pub fn api_request(&self, verb: &'static str, resource: &'static str) {
        self.api_requests
            .get_or_create(&ApiLabels { verb, resource })
            .inc();
    }

    /// `n` failed pulls of workloads ([`crate::operator::pullwatch`]).
    pub fn workload_pull_failure(&self, registry: &str, reason: &'static str, n: u64) {
        self.workload_pull_failures
            .get_or_create(&PullFailureLabels {
                registry: registry.to_string(),
                reason,
            })
            .inc_by(n);
    }

    pub fn reconcile_error(&self, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { error })
            .inc();
    }

    pub fn job_created(&self, context: ProbeContext) {
        self.jobs_created
            .get_or_create(&ContextLabels {
                context: context.as_str(),
            })
            .inc();
    }

    /// A probe Job or canary waits for room under `--max-probe-jobs-in-flight`.
    pub fn probe_jobs_held(&self) {
        self.jobs_held.inc();
    }

    pub fn run(&self, result: RunResult) {
        self.runs
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// Phase durations of one probe report.
    pub fn observe_report(&self, context: ProbeContext, report: &Report) {
        let t = crate::operator::aggregate::timings(report);
        let pull = report.evidence.pull.as_ref().map(|p| p.blob.ms);
        for (phase, ms) in [
            ("dns", t.dns_ms),
            ("tcp", t.tcp_ms),
            ("tls", t.tls_ms),
            ("http", t.http_ms),
            ("pull", pull),
        ] {
            if let Some(ms) = ms {
                self.phase_duration
                    .get_or_create(&PhaseLabels {
                        context: context.as_str(),
                        phase,
                    })
                    .observe(ms as f64 / 1000.0);
            }
        }
    }

    /// Sets the per-check gauges from its status.
    pub fn set_check(
        &self,
        namespace: &str,
        name: &str,
        registry: &str,
        status: &RegistryConnectivityCheckStatus,
    ) {
        let l = CheckLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let cond = |t: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status.as_str())
        };
        use crate::operator::aggregate::conditions as c;
        let ready = match cond(c::READY) {
            Some("True") => 1,
            Some("False") => 0,
            _ => -1,
        };
        self.check_ready.get_or_create(&l).set(ready);
        // 1 true, 0 false, -1 not known yet (no run, an invalid spec): an unknown must never
        // look like a failure to an alert.
        let bit = |t: &str| match cond(t) {
            Some("True") => 1,
            Some("False") => 0,
            _ => -1,
        };
        self.contexts_consistent
            .get_or_create(&l)
            .set(bit(c::CONTEXTS_CONSISTENT));
        self.probes_healthy
            .get_or_create(&l)
            .set(bit(c::PROBES_HEALTHY));
        self.consecutive_failures
            .get_or_create(&l)
            .set(i64::from(status.consecutive_failures));
        let counts = status.counts.clone().unwrap_or_default();
        self.failing_nodes
            .get_or_create(&l)
            .set(i64::from(counts.nodes_failing));
        self.nodes_checked
            .get_or_create(&l)
            .set(i64::from(counts.nodes_checked));
        if let Some(run) = &status.last_run {
            if let Some(t) = &run.completion_time {
                self.last_run_timestamp
                    .get_or_create(&l)
                    .set(t.0.as_millisecond() as f64 / 1000.0);
            }
            if let Some(ms) = run.duration_ms {
                self.run_duration.get_or_create(&l).set(ms as f64 / 1000.0);
            }
        }
        let diag = status.diagnosis.as_ref();
        let verdict = match (ready, diag.map(|d| d.reason.as_str())) {
            (_, Some("InvalidSpec")) => "InvalidSpec",
            (_, None) => "Unknown",
            (_, Some(r)) if r == crate::engine::findings::Reason::Healthy.as_str() => {
                Verdict::Healthy.as_str()
            }
            _ => match status.results.first().map(|r| r.verdict) {
                Some(crate::operator::crd::ResultVerdict::Unreachable) => {
                    Verdict::Unreachable.as_str()
                }
                Some(crate::operator::crd::ResultVerdict::ProbeFailed) => "ProbeFailed",
                _ => Verdict::Degraded.as_str(),
            },
        };
        let info = InfoLabels {
            namespace: namespace.into(),
            name: name.into(),
            registry: registry.into(),
            reason: diag.map(|d| d.reason.clone()).unwrap_or_default(),
            cause: diag.map(|d| d.cause.clone()).unwrap_or_default(),
            verdict: verdict.into(),
        };
        let mut series = self.info_series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = series.insert(l, info.clone())
            && old != info
        {
            self.check_info.remove(&old);
        }
        self.check_info.get_or_create(&info).set(1);
    }

    /// Sets the check's interval (`None`: a spec whose interval cannot be used; the series goes).
    pub fn set_interval(&self, namespace: &str, name: &str, interval: Option<std::time::Duration>) {
        let l = CheckLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        match interval {
            Some(d) => {
                self.interval
                    .get_or_create(&l)
                    .set(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            }
            None => {
                self.interval.remove(&l);
            }
        }
    }

    /// Removes every series of a deleted check.
    pub fn remove_check(&self, namespace: &str, name: &str) {
        let l = CheckLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        for f in [
            &self.check_ready,
            &self.consecutive_failures,
            &self.failing_nodes,
            &self.nodes_checked,
            &self.contexts_consistent,
            &self.probes_healthy,
            &self.interval,
        ] {
            f.remove(&l);
        }
        self.last_run_timestamp.remove(&l);
        self.run_duration.remove(&l);
        let mut series = self.info_series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = series.remove(&l) {
            self.check_info.remove(&old);
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `result` of a run from its verdict and worst report.
pub fn run_result(summary: &crate::operator::aggregate::RunSummary) -> RunResult {
    use crate::operator::aggregate::RunVerdict;
    match summary.verdict {
        RunVerdict::Healthy => RunResult::Healthy,
        RunVerdict::Unknown => RunResult::ProbeFailed,
        RunVerdict::Failing => {
            if summary
                .results
                .iter()
                .any(|r| r.verdict == crate::operator::crd::ResultVerdict::Unreachable)
            {
                RunResult::Unreachable
            } else {
                RunResult::Degraded
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{Counts, Diagnosis, RunInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn status(ready: &str, reason: &str) -> RegistryConnectivityCheckStatus {
        let t = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let cond = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: t.clone(),
        };
        RegistryConnectivityCheckStatus {
            conditions: vec![
                cond("Ready", ready),
                cond("ContextsConsistent", "True"),
                cond("ProbesHealthy", "False"),
            ],
            diagnosis: Some(Diagnosis {
                reason: reason.into(),
                cause: "Network".into(),
                ..Default::default()
            }),
            last_run: Some(RunInfo {
                id: "r3".into(),
                start_time: Some(t.clone()),
                completion_time: Some(t),
                duration_ms: Some(2500),
            }),
            counts: Some(Counts {
                nodes_checked: 3,
                nodes_failing: 1,
                probes: 6,
                probes_failed: 0,
            }),
            consecutive_failures: 2,
            ..Default::default()
        }
    }

    /// Sample lines (not comments) of the rendered text.
    fn samples(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn renders_contract_series() {
        let m = Metrics::new();
        m.set_check(
            "team-a",
            "acr",
            "r.azurecr.io",
            &status("False", "ConnectionTimedOut"),
        );
        m.set_interval("team-a", "acr", Some(std::time::Duration::from_secs(3600)));
        m.run(RunResult::Unreachable);
        m.reconcile_error("create_job");
        m.job_created(ProbeContext::Node);
        m.workload_pull_failure("r.azurecr.io", "ImageNotFound", 3);
        let text = m.render();
        let s = samples(&text);
        let has = |want: &str| assert!(s.iter().any(|l| l == want), "missing {want} in\n{text}");
        has(r#"regcheck_check_ready{namespace="team-a",name="acr"} 0"#);
        has(
            r#"regcheck_check_info{namespace="team-a",name="acr",registry="r.azurecr.io",reason="ConnectionTimedOut",cause="Network",verdict="Degraded"} 1"#,
        );
        has(r#"regcheck_check_consecutive_failures{namespace="team-a",name="acr"} 2"#);
        has(r#"regcheck_check_failing_nodes{namespace="team-a",name="acr"} 1"#);
        has(r#"regcheck_check_nodes_checked{namespace="team-a",name="acr"} 3"#);
        has(r#"regcheck_check_contexts_consistent{namespace="team-a",name="acr"} 1"#);
        has(r#"regcheck_check_probes_healthy{namespace="team-a",name="acr"} 0"#);
        has(
            r#"regcheck_check_last_run_timestamp_seconds{namespace="team-a",name="acr"} 1700000000.0"#,
        );
        has(r#"regcheck_check_run_duration_seconds{namespace="team-a",name="acr"} 2.5"#);
        has(r#"regcheck_check_interval_seconds{namespace="team-a",name="acr"} 3600"#);
        has(r#"regcheck_runs_total{result="unreachable"} 1"#);
        has(r#"regcheck_reconcile_errors_total{error="create_job"} 1"#);
        has(r#"regcheck_probe_jobs_created_total{context="node"} 1"#);
        has(
            r#"regcheck_workload_pull_failures_total{registry="r.azurecr.io",reason="ImageNotFound"} 3"#,
        );
        // Counters end in _total exactly once, and every series carries the prefix.
        for l in &s {
            if l.starts_with("# EOF") || l.is_empty() {
                continue;
            }
            assert!(l.starts_with("regcheck_"), "{l}");
            assert!(!l.contains("_total_total"), "{l}");
        }
        assert!(text.contains("# TYPE regcheck_runs counter"), "{text}");
    }

    #[test]
    fn unknown_conditions_are_minus_one_not_failures() {
        let m = Metrics::new();
        m.set_check(
            "ns",
            "new",
            "r.io",
            &RegistryConnectivityCheckStatus::default(),
        );
        let s = samples(&m.render());
        for series in [
            "check_ready",
            "check_contexts_consistent",
            "check_probes_healthy",
        ] {
            let want = format!(r#"regcheck_{series}{{namespace="ns",name="new"}} -1"#);
            assert!(s.contains(&want), "missing {want} in {s:#?}");
        }
    }

    #[test]
    fn info_series_is_replaced_and_removed() {
        let m = Metrics::new();
        m.set_check("ns", "c", "r.io", &status("False", "ConnectionTimedOut"));
        m.set_check("ns", "c", "r.io", &status("True", "Healthy"));
        m.set_interval("ns", "c", Some(std::time::Duration::from_secs(60)));
        assert!(
            m.render()
                .contains(r#"regcheck_check_interval_seconds{namespace="ns",name="c"} 60"#)
        );
        // An unusable interval removes the series instead of keeping a stale value.
        m.set_interval("ns", "c", None);
        assert!(!m.render().contains("regcheck_check_interval_seconds{"));
        m.set_interval("ns", "c", Some(std::time::Duration::from_secs(60)));
        let text = m.render();
        let info: Vec<String> = samples(&text)
            .into_iter()
            .filter(|l| l.starts_with("regcheck_check_info"))
            .collect();
        assert_eq!(info.len(), 1, "{info:?}");
        assert!(
            info[0].contains(r#"reason="Healthy""#) && info[0].contains(r#"verdict="Healthy""#)
        );
        assert!(
            samples(&text)
                .contains(&r#"regcheck_check_ready{namespace="ns",name="c"} 1"#.to_string())
        );
        m.remove_check("ns", "c");
        let text = m.render();
        assert!(!text.contains(r#"name="c""#), "{text}");
    }

    #[test]
    fn phase_histogram_by_context_and_phase() {
        let m = Metrics::new();
        let report = crate::operator::aggregate::parse_termination_message(include_str!(
            "testdata/healthy-report.json"
        ))
        .unwrap();
        m.observe_report(ProbeContext::Pod, &report);
        let text = m.render();
        for phase in ["dns", "tcp", "tls", "http", "pull"] {
            let want = format!(
                r#"regcheck_probe_phase_duration_seconds_count{{context="pod",phase="{phase}"}} 1"#
            );
            assert!(samples(&text).contains(&want), "{want} in\n{text}");
        }
        assert!(!text.contains(r#"context="node""#));
        assert!(
            text.contains("# TYPE regcheck_probe_phase_duration_seconds histogram"),
            "{text}"
        );
    }
}
