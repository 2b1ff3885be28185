//! `kubectl regcheck`: request a run of a check and wait for its result (`run`), and show the
//! checks (`status`). The same binary is the kubectl plugin when it is called as
//! `kubectl-regcheck` (a link or copy on the PATH), or as `regcheck kubectl ...`.
//!
//! Rendering is pure ([`CheckView`] → text or JSON); the thin I/O edge ([`main`]) reads and
//! annotates checks through the Kubernetes API with kubectl's kubeconfig, context and
//! namespace flags.

use crate::engine::catalogue::Phase;
use crate::engine::findings::Reason;
use crate::operator::crd::{
    ProbeContext, ProbeResult, RegistryConnectivityCheckStatus, ResultVerdict,
};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of `kubectl regcheck`.
pub mod exit {
    /// `run --wait`: the requested run found the registry healthy; otherwise success.
    pub const HEALTHY: i32 = 0;
    /// `run --wait`: the requested run found a problem (or its probes failed).
    pub const PROBLEM: i32 = 1;
    /// Bad arguments, no such check, or the Kubernetes API refused or failed.
    pub const ERROR: i32 = 2;
    /// `run --wait`: the requested run did not complete within `--timeout`.
    pub const TIMEOUT: i32 = 3;
}

/// Longest `--timeout` of `run --wait`.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How often `run --wait` looks at the check.
const POLL: Duration = Duration::from_secs(2);

/// Flags shared by every subcommand, as kubectl users expect them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeFlags {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the check (default: the context's namespace, else `default`)
    #[arg(long, short = 'n', global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

/// `kubectl regcheck` (also `regcheck kubectl`).
#[derive(clap::Args, Debug)]
pub struct KubectlArgs {
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(subcommand)]
    pub command: KubectlCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KubectlCommand {
    /// Request a run of a check now (the regcheck.dev/run-now annotation); with --wait, wait
    /// for that run and print its result. Exit 0 healthy, 1 problem, 2 error, 3 timeout
    Run(RunArgs),
    /// One line per check (reason, failing nodes per context, age of the last run); with a
    /// NAME, the node × context × phase matrix of that check's last run
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Name of the RegistryConnectivityCheck
    pub name: String,
    /// Wait for the requested run to complete and print its result
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 2m or 90s
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub timeout: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    Table,
    Wide,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Show only this check, as a per-node matrix
    pub name: Option<String>,
    /// Checks of all namespaces
    #[arg(long, short = 'A', conflicts_with = "name")]
    pub all_namespaces: bool,
    /// Output format: table (default), wide or json
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: StatusOutput,
}

/// What the plugin reads of a check: tolerant of a spec the controller would refuse, so that
/// such a check is still listed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub registry: String,
    pub interval: String,
    pub suspend: bool,
    pub generation: Option<i64>,
    pub run_now: Option<String>,
    pub status: RegistryConnectivityCheckStatus,
}

impl CheckView {
    /// From a check as the API returns it (JSON). A status that does not decode (another
    /// version of the CRD) is shown as empty rather than hiding the check.
    pub fn from_json(obj: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let meta = &obj["metadata"];
        let spec = &obj["spec"];
        Self {
            namespace: s(&meta["namespace"]),
            name: s(&meta["name"]),
            uid: s(&meta["uid"]),
            registry: s(&spec["registry"]),
            interval: spec["interval"].as_str().unwrap_or("5m").to_string(),
            suspend: spec["suspend"].as_bool().unwrap_or(false),
            generation: meta["generation"].as_i64(),
            run_now: meta["annotations"][crate::operator::controller::decide::RUN_NOW_ANNOTATION]
                .as_str()
                .map(str::to_string),
            status: serde_json::from_value(obj["status"].clone()).unwrap_or_default(),
        }
    }

    fn condition(&self, t: &str) -> Option<&str> {
        self.status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.as_str())
    }

    fn reason(&self) -> &str {
        self.status
            .diagnosis
            .as_ref()
            .map(|d| d.reason.as_str())
            .unwrap_or("")
    }

    fn last_completed(&self) -> Option<Timestamp> {
        self.status
            .last_run
            .as_ref()
            .and_then(|r| r.completion_time.as_ref())
            .map(|t| t.0)
    }
}

/// A run-now value unique to this request (at most 64 characters, so that the controller
/// records it unchanged in `status.lastRunNow`).
pub fn new_token(now: Timestamp, pid: u32) -> String {
    format!(
        "kubectl-regcheck-{}-{pid}",
        now.as_nanosecond().unsigned_abs()
    )
}

/// How a requested run ended, once it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Healthy,
    Problem,
}

impl RunOutcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Healthy => exit::HEALTHY,
            Self::Problem => exit::PROBLEM,
        }
    }
}

/// The outcome of the run requested with `token`, or `None` while it has not completed. The
/// controller records the run-now value a run *started* with in `status.lastRunNow` together
/// with `status.lastRun`, so an older run (even one that was in flight when the annotation was
/// set) never matches.
pub fn requested_run_outcome(check: &CheckView, token: &str) -> Option<RunOutcome> {
    let st = &check.status;
    if st.last_run_now.as_deref() != Some(token) {
        return None;
    }
    st.last_run.as_ref()?.completion_time.as_ref()?;
    Some(if check.reason() == Reason::Healthy.as_str() {
        RunOutcome::Healthy
    } else {
        RunOutcome::Problem
    })
}

/// The controller's refusal of the check's current spec (`InvalidSpec`, or `TargetNotAllowed`
/// by the target policy): no run will start until the spec changes.
pub fn refusal(check: &CheckView) -> Option<&crate::operator::crd::Diagnosis> {
    let d = check.status.diagnosis.as_ref()?;
    let refused = [Reason::InvalidSpec, Reason::TargetNotAllowed]
        .iter()
        .any(|r| r.as_str() == d.reason);
    (refused && check.generation.is_some() && check.status.observed_generation == check.generation)
        .then_some(d)
}

/// kubectl's age format: `45s`, `12m`, `5h`, `3d`.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let s = then.duration_until(now).as_secs().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `1m30s`-style text of a duration (whole seconds).
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// Nodes with a problem / nodes probed, per context, of the last run.
pub fn failing_per_context(results: &[ProbeResult]) -> BTreeMap<ProbeContext, (usize, usize)> {
    let mut nodes: BTreeMap<ProbeContext, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        // A probe without a node (never scheduled) still counts once.
        let node = r.node.clone().unwrap_or_else(|| format!("\0{i}"));
        let e = nodes.entry(r.context).or_default();
        e.0.insert(node.clone());
        if r.verdict != ResultVerdict::Healthy {
            e.1.insert(node);
        }
    }
    nodes
        .into_iter()
        .map(|(c, (all, failing))| (c, (failing.len(), all.len())))
        .collect()
}

fn failing_text(results: &[ProbeResult]) -> String {
    let m = failing_per_context(results);
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(c, (f, n))| format!("{}:{f}/{n}", c.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Left-aligned columns separated by three spaces, as kubectl prints them.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}   ", w = widths[i]);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// `kubectl regcheck status`: one line per check.
pub fn render_status(
    checks: &[CheckView],
    all_namespaces: bool,
    wide: bool,
    now: Timestamp,
) -> String {
    let mut header: Vec<&str> = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "REGISTRY", "READY", "REASON", "FAILING", "LAST RUN"]);
    if wide {
        header.extend(["RUN", "INTERVAL", "CAUSE", "MESSAGE"]);
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for c in checks {
        let mut row = Vec::new();
        if all_namespaces {
            row.push(c.namespace.clone());
        }
        row.push(c.name.clone());
        row.push(or_dash(&c.registry));
        row.push(c.condition("Ready").unwrap_or("Unknown").to_string());
        row.push(or_dash(c.reason()));
        row.push(failing_text(&c.status.results));
        row.push(
            c.last_completed()
                .map(|t| age(now, t))
                .unwrap_or_else(|| "never".into()),
        );
        if wide {
            row.push(
                c.status
                    .last_run
                    .as_ref()
                    .map(|r| r.id.clone())
                    .unwrap_or_else(|| "-".into()),
            );
            row.push(if c.suspend {
                format!("{} (suspended)", c.interval)
            } else {
                c.interval.clone()
            });
            let d = c.status.diagnosis.as_ref();
            row.push(or_dash(d.map(|d| d.cause.as_str()).unwrap_or("")));
            row.push(or_dash(&one_line(
                d.map(|d| d.message.as_str()).unwrap_or(""),
                100,
            )));
        }
        rows.push(row);
    }
    if checks.is_empty() {
        return "No RegistryConnectivityChecks found.\n".into();
    }
    table(&rows)
}

/// `kubectl regcheck status -o json`.
pub fn status_json(checks: &[CheckView], now: Timestamp) -> Value {
    let items: Vec<Value> = checks
        .iter()
        .map(|c| {
            let failing: BTreeMap<&str, Value> = failing_per_context(&c.status.results)
                .into_iter()
                .map(|(ctx, (f, n))| (ctx.as_str(), json!({"failing": f, "checked": n})))
                .collect();
            let d = c.status.diagnosis.as_ref();
            json!({
                "namespace": c.namespace,
                "name": c.name,
                "registry": c.registry,
                "interval": c.interval,
                "suspend": c.suspend,
                "ready": c.condition("Ready").unwrap_or("Unknown"),
                "reason": d.map(|d| d.reason.as_str()),
                "cause": d.map(|d| d.cause.as_str()),
                "message": d.map(|d| d.message.as_str()),
                "failingNodes": failing,
                "lastRun": c.status.last_run.as_ref().map(|r| r.id.as_str()),
                "lastRunCompletion": c.last_completed().map(|t| t.to_string()),
                "lastRunAgeSeconds": c.last_completed().map(|t| t.duration_until(now).as_secs().max(0)),
            })
        })
        .collect();
    json!({ "items": items })
}

/// Phase columns of the matrix.
const PHASES: [(&str, Phase); 5] = [
    ("DNS", Phase::Dns),
    ("TCP", Phase::Tcp),
    ("TLS", Phase::Tls),
    ("API", Phase::RegistryApi),
    ("DATA", Phase::DataPath),
];

fn reason_of(name: &str) -> Option<Reason> {
    Reason::ALL.iter().copied().find(|r| r.as_str() == name)
}

/// The cells of one probe for [`PHASES`]: `ok` (with its time where measured), `FAIL` where
/// the primary finding is, `warn` for a finding that did not stop the pull, `-` for phases
/// not reached, `?` when the probe itself failed.
pub fn phase_cells(r: &ProbeResult) -> Vec<String> {
    let t = r.timings.clone().unwrap_or_default();
    let ms = [t.dns_ms, t.tcp_ms, t.tls_ms, t.http_ms, None];
    let ok = |i: usize| match ms[i] {
        Some(m) => format!("ok {m}ms"),
        None => "ok".into(),
    };
    if r.verdict == ResultVerdict::ProbeFailed {
        return vec!["?".into(); PHASES.len()];
    }
    if r.verdict == ResultVerdict::Healthy {
        return (0..PHASES.len()).map(ok).collect();
    }
    let phase = reason_of(&r.reason).map(|x| x.phase());
    // A proxy is in the path of the TCP connection.
    let at = match phase {
        Some(Phase::Proxy) => PHASES.iter().position(|(_, p)| *p == Phase::Tcp),
        Some(p) => PHASES.iter().position(|(_, q)| *q == p),
        None => None,
    };
    let Some(at) = at else {
        // Whole-path or operator findings name no single phase.
        return vec!["?".into(); PHASES.len()];
    };
    (0..PHASES.len())
        .map(|i| match (r.verdict, i.cmp(&at)) {
            (ResultVerdict::Degraded, std::cmp::Ordering::Equal) => "warn".into(),
            (_, std::cmp::Ordering::Equal) => "FAIL".into(),
            (ResultVerdict::Unreachable, std::cmp::Ordering::Greater) => "-".into(),
            _ => ok(i),
        })
        .collect()
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn results_sorted(results: &[ProbeResult]) -> Vec<&ProbeResult> {
    let mut v: Vec<&ProbeResult> = results.iter().collect();
    v.sort_by(|a, b| (a.node.as_deref(), a.context).cmp(&(b.node.as_deref(), b.context)));
    v
}

/// The node × context × phase matrix of the last run.
pub fn render_matrix(c: &CheckView) -> String {
    let mut header = vec!["NODE", "POOL", "ZONE", "CONTEXT"];
    header.extend(PHASES.iter().map(|(h, _)| *h));
    header.push("RESULT");
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for r in results_sorted(&c.status.results) {
        let mut row = vec![
            or_dash(r.node.as_deref().unwrap_or("")),
            or_dash(r.node_pool.as_deref().unwrap_or("")),
            or_dash(r.zone.as_deref().unwrap_or("")),
            r.context.as_str().to_string(),
        ];
        row.extend(phase_cells(r));
        row.push(r.reason.clone());
        rows.push(row);
    }
    if rows.len() == 1 {
        return "No probe results yet.\n".into();
    }
    table(&rows)
}

/// Header, results, diagnosis and remediation of a check's last run: what `run --wait` and
/// `status NAME` print.
pub fn render_check(c: &CheckView, now: Timestamp) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Check:     {}/{}   registry {}   interval {}{}",
        c.namespace,
        c.name,
        or_dash(&c.registry),
        c.interval,
        if c.suspend { " (suspended)" } else { "" }
    );
    let _ = writeln!(
        s,
        "Ready:     {}   consecutive failures {}, successes {}",
        c.condition("Ready").unwrap_or("Unknown"),
        c.status.consecutive_failures,
        c.status.consecutive_successes
    );
    match &c.status.last_run {
        Some(r) => {
            let _ = writeln!(
                s,
                "Last run:  {}   completed {}{}",
                r.id,
                c.last_completed()
                    .map(|t| format!("{} ago ({t})", age(now, t)))
                    .unwrap_or_else(|| "-".into()),
                r.duration_ms
                    .map(|ms| format!("   took {:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(s, "Last run:  none yet");
        }
    }
    s.push('\n');
    s.push_str(&render_matrix(c));
    let msgs: Vec<Vec<String>> = results_sorted(&c.status.results)
        .into_iter()
        .filter(|r| r.verdict != ResultVerdict::Healthy)
        .map(|r| {
            vec![
                or_dash(r.node.as_deref().unwrap_or("")),
                r.context.as_str().to_string(),
                one_line(&r.message, 160),
            ]
        })
        .collect();
    if !msgs.is_empty() {
        s.push('\n');
        let mut rows = vec![vec!["NODE".into(), "CONTEXT".into(), "MESSAGE".into()]];
        rows.extend(msgs);
        s.push_str(&table(&rows));
    }
    if let Some(d) = &c.status.diagnosis {
        s.push('\n');
        let mut where_ = String::new();
        if let Some(ctx) = d.context {
            let _ = write!(where_, " in the {} context", ctx.as_str());
        }
        if let Some(n) = &d.node {
            let _ = write!(where_, " on node {n}");
        }
        let _ = writeln!(
            s,
            "Diagnosis: {} (cause {}{}){where_}",
            d.reason,
            d.cause,
            d.code
                .as_ref()
                .map(|c| format!(", code {c}"))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "  {}", one_line(&d.message, 1024));
        if !d.remediation.is_empty() {
            let _ = writeln!(s, "Remediation:\n  {}", one_line(&d.remediation, 2048));
        }
        for doc in &d.docs {
            let _ = writeln!(s, "  see {doc}");
        }
    }
    s
}

/// Probe Jobs of a run, for the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub done: usize,
    pub total: usize,
}

/// The progress line of `run --wait`.
pub fn progress_line(
    c: &CheckView,
    jobs: Option<(&str, JobProgress)>,
    elapsed: Duration,
    timeout: Duration,
) -> String {
    let state = match jobs {
        Some((run, p)) if p.total > 0 => {
            format!("run {run}: {}/{} probe Jobs done", p.done, p.total)
        }
        _ if c.suspend => "the check is suspended (spec.suspend): no run will start".into(),
        _ => "waiting for the controller to start the run".into(),
    };
    format!(
        "{}/{}: {state} … {} of {}",
        c.namespace,
        c.name,
        short_duration(elapsed),
        short_duration(timeout)
    )
}

/// Jobs (as JSON objects) of this check (by its UID) of runs newer than the check's last run, by run: the newest run's
/// progress.
pub fn job_progress(c: &CheckView, jobs: &[Value]) -> Option<(String, JobProgress)> {
    use crate::operator::controller::decide::run_number;
    let last = c
        .status
        .last_run
        .as_ref()
        .and_then(|r| run_number(&r.id))
        .unwrap_or(0);
    let mut runs: BTreeMap<u64, JobProgress> = BTreeMap::new();
    for j in jobs {
        let labels = &j["metadata"]["labels"];
        if labels[crate::operator::jobs::labels::CHECK_UID].as_str() != Some(c.uid.as_str()) {
            continue;
        }
        let Some(n) = labels[crate::operator::jobs::labels::RUN]
            .as_str()
            .and_then(run_number)
        else {
            continue;
        };
        if n <= last {
            continue;
        }
        let st = &j["status"];
        let done = st["succeeded"].as_i64().unwrap_or(0) > 0
            || st["failed"].as_i64().unwrap_or(0) > 0
            || st["completionTime"].is_string();
        let p = runs.entry(n).or_default();
        p.total += 1;
        p.done += usize::from(done);
    }
    runs.pop_last()
        .map(|(n, p)| (crate::operator::controller::decide::run_id(n), p))
}

// ---------------------------------------------------------------------------------------------
// I/O edge.

/// Errors of the plugin, printed as `kubectl-regcheck: ...` with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("RegistryConnectivityCheck {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

async fn client(flags: &KubeFlags) -> Result<(kube::Client, String), Error> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let opts = KubeConfigOptions {
        context: flags.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("--kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::Config(format!("--kubeconfig {}: {e}", path.display())))?
        }
        None if flags.context.is_some() => Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    let ns = flags
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok((client, ns))
}

fn checks_api(client: &kube::Client, ns: Option<&str>) -> kube::Api<kube::core::DynamicObject> {
    let ar = kube::core::ApiResource::erase::<crate::operator::crd::RegistryConnectivityCheck>(&());
    match ns {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    }
}

async fn get_check(client: &kube::Client, ns: &str, name: &str) -> Result<CheckView, Error> {
    match checks_api(client, Some(ns)).get_opt(name).await? {
        Some(obj) => Ok(CheckView::from_json(
            &serde_json::to_value(obj).unwrap_or_default(),
        )),
        None => Err(Error::NotFound {
            namespace: ns.into(),
            name: name.into(),
        }),
    }
}

/// The entry point: returns the exit code.
pub fn main(args: KubectlArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubectl-regcheck: cannot start the runtime: {e}");
            return exit::ERROR;
        }
    };
    let result = runtime.block_on(async {
        match &args.command {
            KubectlCommand::Run(r) => run(&args.kube, r).await,
            KubectlCommand::Status(s) => status(&args.kube, s).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl-regcheck: {e}");
            exit::ERROR
        }
    }
}

async fn status(flags: &KubeFlags, args: &StatusArgs) -> Result<i32, Error> {
    let (client, ns) = client(flags).await?;
    let now = Timestamp::now();
    let out = if let Some(name) = &args.name {
        let c = get_check(&client, &ns, name).await?;
        match args.output {
            StatusOutput::Json => {
                let mut v = status_json(std::slice::from_ref(&c), now)["items"][0].clone();
                v["results"] = serde_json::to_value(&c.status.results).unwrap_or_default();
                format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
            }
            _ => render_check(&c, now),
        }
    } else {
        let api = checks_api(&client, (!args.all_namespaces).then_some(ns.as_str()));
        let list = api.list(&Default::default()).await?;
        let mut checks: Vec<CheckView> = list
            .items
            .iter()
            .map(|o| CheckView::from_json(&serde_json::to_value(o).unwrap_or_default()))
            .collect();
        checks.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        match args.output {
            StatusOutput::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&status_json(&checks, now)).unwrap_or_default()
            ),
            o => render_status(&checks, args.all_namespaces, o == StatusOutput::Wide, now),
        }
    };
    print!("{out}");
    Ok(exit::HEALTHY)
}

async fn run(flags: &KubeFlags, args: &RunArgs) -> Result<i32, Error> {
    use std::io::{IsTerminal, Write as _};
    let timeout = crate::engine::inputs::parse_duration("--timeout", &args.timeout, MAX_TIMEOUT)
        .map_err(|e| Error::Input(e.to_string()))?;
    let (client, ns) = client(flags).await?;
    // The check must exist before it is annotated (a merge patch of a missing object fails
    // with a less helpful message).
    let before = get_check(&client, &ns, &args.name).await?;
    let token = new_token(Timestamp::now(), std::process::id());
    let patch = json!({"metadata": {"annotations": {
        crate::operator::controller::decide::RUN_NOW_ANNOTATION: token
    }}});
    checks_api(&client, Some(&ns))
        .patch(
            &args.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    eprintln!(
        "requested a run of {ns}/{} ({}={token})",
        args.name,
        crate::operator::controller::decide::RUN_NOW_ANNOTATION
    );
    if !args.wait {
        return Ok(exit::HEALTHY);
    }
    let jobs_api: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::all(client.clone());
    let selector = format!(
        "{}={}",
        crate::operator::jobs::labels::CHECK_UID,
        before.uid
    );
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut last_line = String::new();
    let mut jobs_visible = true;
    loop {
        let c = get_check(&client, &ns, &args.name).await?;
        if let Some(outcome) = requested_run_outcome(&c, &token) {
            if tty {
                eprint!("\r\x1b[2K");
            }
            print!("{}", render_check(&c, Timestamp::now()));
            return Ok(outcome.exit_code());
        }
        if let Some(d) = refusal(&c) {
            if tty {
                eprint!("\r\x1b[2K");
            }
            print!("{}", render_check(&c, Timestamp::now()));
            eprintln!(
                "kubectl-regcheck: no run will start: the controller refuses this spec of {ns}/{} ({}); fix the spec and run again",
                args.name, d.reason
            );
            return Ok(exit::PROBLEM);
        }
        // Progress from the run's Jobs, where this user may list them.
        let progress = if jobs_visible {
            match jobs_api
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
            {
                Ok(l) => {
                    let v: Vec<Value> = l
                        .items
                        .iter()
                        .filter_map(|j| serde_json::to_value(j).ok())
                        .collect();
                    job_progress(&c, &v)
                }
                Err(_) => {
                    jobs_visible = false;
                    None
                }
            }
        } else {
            None
        };
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            if tty {
                eprint!("\r\x1b[2K");
            }
            eprintln!(
                "kubectl-regcheck: timed out after {} waiting for the run of {ns}/{} requested with {token}; the last completed run was {}",
                short_duration(timeout),
                args.name,
                c.status
                    .last_run
                    .as_ref()
                    .map(|r| r.id.as_str())
                    .unwrap_or("none"),
            );
            return Ok(exit::TIMEOUT);
        }
        let line = progress_line(
            &c,
            progress.as_ref().map(|(r, p)| (r.as_str(), *p)),
            elapsed,
            timeout,
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else {
            // Without a terminal: a line whenever the state changes (not the clock).
            let state = line.split(" … ").next().unwrap_or("").to_string();
            if state != last_line {
                eprintln!("{line}");
                last_line = state;
            }
        }
        tokio::time::sleep(
            POLL.min(timeout.saturating_sub(elapsed))
                .max(Duration::from_millis(100)),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn result(node: &str, ctx: &str, verdict: &str, reason: &str) -> Value {
        json!({"context": ctx, "node": node, "nodePool": "pool", "verdict": verdict,
               "reason": reason, "message": format!("{reason} on {node}"),
               "timings": {"dnsMs": 2, "tcpMs": 3, "tlsMs": 9, "httpMs": 20}})
    }

    fn check_json(
        name: &str,
        run_now_status: Option<&str>,
        reason: &str,
        results: Vec<Value>,
    ) -> Value {
        let ready = if reason == "Healthy" { "True" } else { "False" };
        json!({
            "apiVersion": "regcheck.dev/v1alpha1", "kind": "RegistryConnectivityCheck",
            "metadata": {"namespace": "team-a", "name": name, "uid": "u-1",
                         "annotations": {"regcheck.dev/run-now": "tok"}},
            "spec": {"registry": "10.0.0.5:5000", "interval": "1m"},
            "status": {
                "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": "",
                                "lastTransitionTime": "2026-01-01T10:00:00Z"}],
                "diagnosis": {"reason": reason, "cause": "ClientFirewallOrProxy",
                              "message": "TCP connect to 10.0.0.5:5000 timed out",
                              "remediation": "Open port 5000 in the firewall.",
                              "context": "Pod", "node": "n2"},
                "lastRun": {"id": "r4", "startTime": "2026-01-01T10:00:00Z",
                            "completionTime": "2026-01-01T10:00:05Z", "durationMs": 5000},
                "lastRunNow": run_now_status,
                "results": results,
            }
        })
    }

    fn failing() -> CheckView {
        CheckView::from_json(&check_json(
            "acr",
            Some("tok"),
            "ConnectionTimedOut",
            vec![
                result("n1", "Node", "Healthy", "Healthy"),
                result("n1", "Pod", "Healthy", "Healthy"),
                result("n2", "Node", "Healthy", "Healthy"),
                result("n2", "Pod", "Unreachable", "ConnectionTimedOut"),
            ],
        ))
    }

    #[test]
    fn view_reads_the_check_and_tolerates_a_foreign_status() {
        let c = failing();
        assert_eq!(c.namespace, "team-a");
        assert_eq!(c.registry, "10.0.0.5:5000");
        assert_eq!(c.run_now.as_deref(), Some("tok"));
        assert_eq!(c.status.results.len(), 4);
        let odd = CheckView::from_json(&json!({"metadata": {"name": "x", "namespace": "n"},
            "spec": {"registry": "r.io"}, "status": {"results": "not a list"}}));
        assert_eq!(odd.status, RegistryConnectivityCheckStatus::default());
        assert_eq!(odd.interval, "5m");
    }

    #[test]
    fn only_the_requested_run_ends_the_wait() {
        // An older run (another token, or none) does not count.
        let older = CheckView::from_json(&check_json("a", Some("earlier"), "Healthy", vec![]));
        assert_eq!(requested_run_outcome(&older, "tok"), None);
        let none = CheckView::from_json(&check_json("a", None, "Healthy", vec![]));
        assert_eq!(requested_run_outcome(&none, "tok"), None);
        // The requested run, completed: its diagnosis decides.
        let healthy = CheckView::from_json(&check_json("a", Some("tok"), "Healthy", vec![]));
        assert_eq!(
            requested_run_outcome(&healthy, "tok"),
            Some(RunOutcome::Healthy)
        );
        assert_eq!(RunOutcome::Healthy.exit_code(), 0);
        assert_eq!(
            requested_run_outcome(&failing(), "tok"),
            Some(RunOutcome::Problem)
        );
        assert_eq!(RunOutcome::Problem.exit_code(), 1);
        // The token matches but the run has no completion time: still waiting.
        let mut open = healthy.clone();
        open.status.last_run.as_mut().unwrap().completion_time = None;
        assert_eq!(requested_run_outcome(&open, "tok"), None);
    }

    #[test]
    fn a_refused_spec_of_this_generation_ends_the_wait() {
        let mut v = check_json("a", Some("earlier"), "InvalidSpec", vec![]);
        v["metadata"]["generation"] = json!(3);
        v["status"]["observedGeneration"] = json!(3);
        let c = CheckView::from_json(&v);
        assert_eq!(refusal(&c).map(|d| d.reason.as_str()), Some("InvalidSpec"));
        v["status"]["diagnosis"]["reason"] = json!("TargetNotAllowed");
        assert!(refusal(&CheckView::from_json(&v)).is_some());
        // A newer spec that the controller has not looked at yet may be fine.
        v["metadata"]["generation"] = json!(4);
        assert_eq!(refusal(&CheckView::from_json(&v)), None);
        // Any other finding is a run's result, not a refusal.
        v["metadata"]["generation"] = json!(3);
        v["status"]["diagnosis"]["reason"] = json!("ConnectionTimedOut");
        assert_eq!(refusal(&CheckView::from_json(&v)), None);
    }

    #[test]
    fn tokens_are_unique_and_recorded_verbatim() {
        let now = ts("2026-01-01T10:00:00Z");
        let a = new_token(now, 7);
        assert_ne!(a, new_token(now, 8));
        assert_ne!(a, new_token(ts("2026-01-01T10:00:00.000000001Z"), 7));
        // The controller keeps values of at most 64 characters as they are.
        assert_eq!(
            crate::operator::controller::decide::run_now_token(Some(&a)).as_deref(),
            Some(a.as_str())
        );
        let far = new_token(ts("2262-01-01T00:00:00Z"), u32::MAX);
        assert!(far.len() <= 64, "{far}");
    }

    #[test]
    fn ages_as_kubectl_prints_them() {
        let t = ts("2026-01-01T10:00:00Z");
        let at = |s: i64| Timestamp::from_second(t.as_second() + s).unwrap();
        assert_eq!(age(at(45), t), "45s");
        assert_eq!(age(at(150), t), "2m");
        assert_eq!(age(at(3 * 3600), t), "3h");
        assert_eq!(age(at(5 * 86_400), t), "5d");
        // A clock behind the server's: never a negative age.
        assert_eq!(age(at(-5), t), "0s");
    }

    #[test]
    fn failing_nodes_per_context() {
        let m = failing_per_context(&failing().status.results);
        assert_eq!(m[&ProbeContext::Node], (0, 2));
        assert_eq!(m[&ProbeContext::Pod], (1, 2));
        assert_eq!(failing_text(&failing().status.results), "node:0/2 pod:1/2");
        assert_eq!(failing_text(&[]), "-");
    }

    #[test]
    fn status_table_normal_all_namespaces_and_wide() {
        let now = ts("2026-01-01T10:03:05Z");
        let never =
            CheckView::from_json(&json!({"metadata": {"name": "new", "namespace": "team-b"},
            "spec": {"registry": "r.io", "suspend": true}}));
        let checks = vec![failing(), never];
        let t = render_status(&checks, false, false, now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NAME", "REGISTRY", "READY", "REASON", "FAILING", "LAST", "RUN"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "acr",
                "10.0.0.5:5000",
                "False",
                "ConnectionTimedOut",
                "node:0/2",
                "pod:1/2",
                "3m"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["new", "r.io", "Unknown", "-", "-", "never"]
        );
        // Columns line up: REASON starts at the same place on every line.
        let col = lines[0].find("REASON").unwrap();
        assert_eq!(&lines[1][col..col + 18], "ConnectionTimedOut");
        let a = render_status(&checks, true, false, now);
        assert!(a.lines().next().unwrap().starts_with("NAMESPACE"));
        assert!(a.lines().nth(1).unwrap().starts_with("team-a"));
        let w = render_status(&checks, false, true, now);
        let l1: Vec<&str> = w.lines().nth(1).unwrap().split_whitespace().collect();
        assert!(
            l1.contains(&"r4") && l1.contains(&"1m") && l1.contains(&"ClientFirewallOrProxy"),
            "{w}"
        );
        assert!(w.contains("TCP connect to 10.0.0.5:5000 timed out"));
        assert!(w.contains("5m (suspended)"), "{w}");
        assert_eq!(
            render_status(&[], false, false, now),
            "No RegistryConnectivityChecks found.\n"
        );
    }

    #[test]
    fn status_json_has_the_columns() {
        let now = ts("2026-01-01T10:03:05Z");
        let v = status_json(&[failing()], now);
        let i = &v["items"][0];
        assert_eq!(i["name"], "acr");
        assert_eq!(i["ready"], "False");
        assert_eq!(i["reason"], "ConnectionTimedOut");
        assert_eq!(
            i["failingNodes"]["pod"],
            json!({"failing": 1, "checked": 2})
        );
        assert_eq!(
            i["failingNodes"]["node"],
            json!({"failing": 0, "checked": 2})
        );
        assert_eq!(i["lastRun"], "r4");
        assert_eq!(i["lastRunAgeSeconds"], 180);
    }

    fn probe(verdict: &str, reason: &str) -> ProbeResult {
        serde_json::from_value(result("n", "Node", verdict, reason)).unwrap()
    }

    #[test]
    fn phase_cells_follow_the_failing_phase() {
        assert_eq!(
            phase_cells(&probe("Healthy", "Healthy")),
            ["ok 2ms", "ok 3ms", "ok 9ms", "ok 20ms", "ok"]
        );
        // Unreachable at TCP: DNS passed, later phases were not reached.
        assert_eq!(
            phase_cells(&probe("Unreachable", "ConnectionTimedOut")),
            ["ok 2ms", "FAIL", "-", "-", "-"]
        );
        assert_eq!(
            phase_cells(&probe("Unreachable", "DNSNameNotFound")),
            ["FAIL", "-", "-", "-", "-"]
        );
        assert_eq!(
            phase_cells(&probe("Unreachable", "TLSInterception")),
            ["ok 2ms", "ok 3ms", "FAIL", "-", "-"]
        );
        // Degraded: the login server works, the finding is a warning where it belongs.
        let d = phase_cells(&probe("Degraded", "DataEndpointBlocked"));
        assert_eq!(d[4], "warn", "{d:?}");
        assert_eq!(d[..4], ["ok 2ms", "ok 3ms", "ok 9ms", "ok 20ms"]);
        // The probe itself failed: nothing is known.
        assert_eq!(phase_cells(&probe("ProbeFailed", "ProbeCrashed")), ["?"; 5]);
        // An unknown reason (a newer controller) names no phase.
        assert_eq!(phase_cells(&probe("Unreachable", "SomethingNew")), ["?"; 5]);
    }

    #[test]
    fn matrix_and_run_result() {
        let c = failing();
        let m = render_matrix(&c);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NODE", "POOL", "ZONE", "CONTEXT", "DNS", "TCP", "TLS", "API", "DATA", "RESULT"
            ]
        );
        assert_eq!(lines.len(), 5);
        // Sorted by node, then context (node before pod).
        assert!(
            lines[1].starts_with("n1") && lines[1].contains(" node "),
            "{m}"
        );
        assert!(
            lines[4].starts_with("n2") && lines[4].contains(" pod "),
            "{m}"
        );
        assert!(
            lines[4].contains("FAIL") && lines[4].ends_with("ConnectionTimedOut"),
            "{m}"
        );
        let out = render_check(&c, ts("2026-01-01T10:03:05Z"));
        assert!(
            out.contains("Check:     team-a/acr   registry 10.0.0.5:5000   interval 1m"),
            "{out}"
        );
        assert!(out.contains("Last run:  r4   completed 3m ago"), "{out}");
        assert!(out.contains("took 5.0s"), "{out}");
        assert!(out.contains("Diagnosis: ConnectionTimedOut (cause ClientFirewallOrProxy) in the pod context on node n2"), "{out}");
        assert!(
            out.contains("Remediation:\n  Open port 5000 in the firewall."),
            "{out}"
        );
        // The message of each failing probe, none of the healthy ones.
        assert!(out.contains("ConnectionTimedOut on n2"), "{out}");
        assert!(!out.contains("Healthy on n1"), "{out}");
        let empty = CheckView::from_json(&json!({"metadata": {"name": "x", "namespace": "n"}}));
        assert_eq!(render_matrix(&empty), "No probe results yet.\n");
        assert!(render_check(&empty, ts("2026-01-01T10:03:05Z")).contains("Last run:  none yet"));
    }

    #[test]
    fn progress_names_the_run_and_its_jobs() {
        let c = failing();
        let job = |uid: &str, run: &str, done: bool| {
            json!({"metadata": {"labels": {"regcheck.dev/check-uid": uid, "regcheck.dev/run": run}},
                   "status": if done { json!({"succeeded": 1}) } else { json!({"active": 1}) }})
        };
        let jobs = vec![
            job("u-1", "r5", true),
            job("u-1", "r5", false),
            job("u-1", "r4", true),   // the last completed run
            job("other", "r9", true), // another check
        ];
        let p = job_progress(&c, &jobs).unwrap();
        assert_eq!(p, ("r5".to_string(), JobProgress { done: 1, total: 2 }));
        let line = progress_line(
            &c,
            Some(("r5", p.1)),
            Duration::from_secs(75),
            Duration::from_secs(120),
        );
        assert_eq!(
            line,
            "team-a/acr: run r5: 1/2 probe Jobs done … 1m15s of 2m"
        );
        assert_eq!(job_progress(&c, &jobs[2..]), None);
        let waiting = progress_line(&c, None, Duration::from_secs(3), Duration::from_secs(120));
        assert!(waiting.contains("waiting for the controller"), "{waiting}");
        let mut s = c.clone();
        s.suspend = true;
        assert!(
            progress_line(&s, None, Duration::ZERO, Duration::from_secs(60)).contains("suspended")
        );
    }
}
