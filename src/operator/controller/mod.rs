//! The operator: reconciles `RegistryConnectivityCheck`s into runs of probe Jobs and folds the
//! probes' reports into the status.
//!
//! [`reconcile`] is thin: kube's `finalizer` helper dispatches to [`apply`] and [`cleanup`].
//! `apply` reads the check's Jobs (and, for a run in progress, their pods) from the
//! controller's watch caches ([`Caches`]: no LIST per reconcile), asks the pure
//! [`decide::decide`] what to do, and carries it out. Everything else that can be pure is:
//! planning ([`crate::operator::nodes`]), building Jobs ([`crate::operator::jobs`]), aggregating results and
//! computing conditions ([`crate::operator::aggregate`]).

pub mod api_count;
pub mod canaries;
pub mod decide;
pub mod http;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock_tests;
pub mod node_cache;
pub mod pullwatch;
pub mod slim;
pub mod stored;
pub mod watch_backoff;

use crate::engine::findings::Reason;
use crate::operator::aggregate::{self, ProbeOutcome, ProbeRecord, conditions};
use crate::operator::crd::{
    ProbeContext, ProxyMode, RegistryConnectivityCheck, RegistryConnectivityCheckStatus, RunInfo,
};
use crate::operator::jobs::{self, ProbeJob, labels};
use crate::operator::nodes::{NodeInventory, Target};
use crate::operator::policy::{self, PolicyConfig};
use crate::operator::spec::{NodeStrategy, ValidSpec};
use decide::{Action, DecideConfig, Decision, RunJob, annotations as run_ann};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use stored::StoredCheck;
use tracing::{Instrument, debug, info, info_span, warn};

/// Finalizer that removes the check's Jobs in every namespace.
pub const FINALIZER: &str = "regcheck.dev/cleanup";
/// The one field manager of the status.
pub const FIELD_MANAGER: &str = "regcheck-controller";
/// Condition reason of a spec the controller cannot use.
pub const INVALID_SPEC: &str = Reason::InvalidSpec.as_str();
/// Selector of every probe Job.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=regcheck";

/// Errors of a reconciliation. Each has a fixed metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing nodes")]
    ListNodes {
        #[source]
        source: kube::Error,
    },
    #[error("reading namespace {namespace} (for its labels: --node-context-namespaces)")]
    GetNamespace {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating probe job {namespace}/{name}")]
    CreateJob {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting probe jobs in {namespace}")]
    DeleteJobs {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status of {namespace}/{name}")]
    PatchStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} pull canary {object}")]
    Canary {
        action: &'static str,
        /// `namespace/name`.
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("the check has no {0}")]
    MissingField(&'static str),
    /// Leadership was lost: no Job is created, no status written, nothing deleted.
    #[error("not the leader (the lease was lost): writes stopped")]
    NotLeader,
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Fixed label for metrics: never error text.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::ListNodes { .. } => "list_nodes",
            Self::GetNamespace { .. } => "get_namespace",
            Self::CreateJob { .. } => "create_job",
            Self::DeleteJobs { .. } => "delete_jobs",
            Self::PatchStatus { .. } => "patch_status",
            Self::Canary { .. } => "pull_canary",
            Self::MissingField(_) => "missing_field",
            Self::NotLeader => "not_leader",
            Self::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                F::AddFinalizer(_) => "add_finalizer",
                F::RemoveFinalizer(_) => "remove_finalizer",
                _ => "finalizer",
            },
        }
    }
}

/// Settings of the controller (from flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub probe_image: String,
    pub probe_image_pull_policy: String,
    /// Where node-context Jobs run, and the Lease lives.
    pub probe_namespace: String,
    /// Watched namespaces (empty: all).
    pub namespaces: Vec<String>,
    pub max_concurrent_jobs: usize,
    /// The nodes' proxy, for node-context probes of checks with proxy mode `Inherit`.
    pub node_proxy: Option<String>,
    pub node_no_proxy: Option<String>,
    /// What users may ask probes to reach ([`crate::operator::policy`]).
    pub policy: PolicyConfig,
    /// How long a listed node inventory is reused for planning (zero: list for every run).
    pub node_cache_ttl: Duration,
    /// Platforms the probe image is built for: nodes of other architectures are skipped and
    /// probe Jobs require one of these architectures.
    pub probe_image_platforms: crate::operator::platform::Platforms,
    /// Watch the kubelet's pull failures ([`crate::operator::pullwatch`]).
    pub observe_pull_failures: bool,
    /// Most reconciles at a time (per controller: one per watched namespace, or one).
    pub max_concurrent_reconciles: usize,
    /// Most probe Jobs and pull canaries unfinished at once over all checks (0: no cap);
    /// [`Context::reserve`].
    pub max_probe_jobs_in_flight: usize,
    /// The host files node probes mount read-only (`--node-containerd-config-dir`, ...).
    pub node_host_files: jobs::NodeHostFiles,
}

/// Default of [`Config::node_cache_ttl`]: checks that start within this long of each other
/// share one LIST of the nodes and one grouping per distinct node selector/tolerations.
pub const NODE_CACHE_TTL: Duration = Duration::from_secs(10);

/// Default of [`Config::max_probe_jobs_in_flight`].
pub const MAX_PROBE_JOBS_IN_FLIGHT: usize = 100;

/// How long a run that found no room under [`Config::max_probe_jobs_in_flight`] waits before
/// it tries again.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// Default of [`Config::max_concurrent_reconciles`].
pub const MAX_CONCURRENT_RECONCILES: usize = 16;

impl Config {
    fn decide(&self) -> DecideConfig {
        DecideConfig {
            max_concurrent_jobs: self.max_concurrent_jobs.max(1),
        }
    }
}

/// One watch of probe Jobs or pods: a namespace (`None`: all) and a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchScope {
    /// Index of the controller (one per watched namespace, or one for all) it triggers.
    pub controller: usize,
    pub namespace: Option<String>,
    pub selector: String,
}

/// The watches of probe Jobs (and the same ones of their pods): every managed object when all
/// namespaces are watched; else, per watched namespace, the managed objects in it and those of
/// its checks in the probe namespace.
pub fn watch_scopes(cfg: &Config) -> Vec<WatchScope> {
    if cfg.namespaces.is_empty() {
        return vec![WatchScope {
            controller: 0,
            namespace: None,
            selector: MANAGED_BY_SELECTOR.into(),
        }];
    }
    let mut out = Vec::new();
    for (i, ns) in cfg.namespaces.iter().enumerate() {
        out.push(WatchScope {
            controller: i,
            namespace: Some(ns.clone()),
            selector: MANAGED_BY_SELECTOR.into(),
        });
        if *ns != cfg.probe_namespace {
            out.push(WatchScope {
                controller: i,
                namespace: Some(cfg.probe_namespace.clone()),
                selector: format!("{MANAGED_BY_SELECTOR},{}={ns}", labels::CHECK_NAMESPACE),
            });
        }
    }
    out
}

/// The writers of [`Caches`]' stores, one per [`WatchScope`] and kind.
pub type CacheWriters = (Vec<Writer<Job>>, Vec<Writer<Pod>>);

/// The reflector stores of probe Jobs and pods, one per [`WatchScope`] (a store holds one
/// watch's objects: two watches cannot share one). Reconciles read these instead of LISTing.
/// They can lag behind what this controller just did; see [`Context::note_collected`],
/// [`Context::note_created`] and `create_jobs` (409 AlreadyExists) for why that is safe.
pub struct Caches {
    pub scopes: Vec<WatchScope>,
    jobs: Vec<Store<Job>>,
    pods: Vec<Store<Pod>>,
    /// Taken by [`run`] (or by tests, to fill the stores).
    writers: std::sync::Mutex<Option<CacheWriters>>,
    /// Every store has its first full list.
    ready: AtomicBool,
}

impl Caches {
    fn new(scopes: Vec<WatchScope>) -> Self {
        let (mut jobs, mut pods, mut jw, mut pw) = (vec![], vec![], vec![], vec![]);
        for _ in &scopes {
            let (r, w) = reflector::store::<Job>();
            jobs.push(r);
            jw.push(w);
            let (r, w) = reflector::store::<Pod>();
            pods.push(r);
            pw.push(w);
        }
        Self {
            scopes,
            jobs,
            pods,
            writers: std::sync::Mutex::new(Some((jw, pw))),
            ready: AtomicBool::new(false),
        }
    }

    /// The writers of the stores (once).
    pub fn take_writers(&self) -> Option<CacheWriters> {
        self.writers.lock().ok()?.take()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Puts `jobs` and `pods` into the first store of each kind, as a watch would.
    #[cfg(test)]
    pub(crate) fn fill(&self, jobs: &[Job], pods: &[Pod]) {
        let mut guard = self.writers.lock().unwrap();
        let (jw, pw) = guard
            .as_mut()
            .expect("the writers are here until run() takes them");
        for j in jobs {
            jw[0].apply_watcher_event(&watcher::Event::Apply(j.clone()));
        }
        for p in pods {
            pw[0].apply_watcher_event(&watcher::Event::Apply(p.clone()));
        }
    }

    /// Removes `jobs` from the first Job store, as a watch would when they are deleted.
    #[cfg(test)]
    pub(crate) fn forget_jobs(&self, jobs: &[Job]) {
        let mut guard = self.writers.lock().unwrap();
        let (jw, _) = guard
            .as_mut()
            .expect("the writers are here until run() takes them");
        for j in jobs {
            jw[0].apply_watcher_event(&watcher::Event::Delete(j.clone()));
        }
    }

    /// Cached objects in `namespaces` labelled `key=value`, once each, ordered by the
    /// namespace's place in `namespaces`, then by name (the order a LIST per namespace gives).
    fn select<K: Resource<DynamicType = ()> + Clone>(
        stores: &[Store<K>],
        namespaces: &[String],
        key: &str,
        value: &str,
        extra: Option<(&str, &str)>,
    ) -> Vec<K> {
        let mut out: BTreeMap<(usize, String), K> = BTreeMap::new();
        for s in stores {
            for o in s.state_filter(|o| {
                o.labels().get(key).map(String::as_str) == Some(value)
                    && extra.is_none_or(|(k, v)| o.labels().get(k).map(String::as_str) == Some(v))
            }) {
                let ns = o.meta().namespace.clone().unwrap_or_default();
                if let Some(i) = namespaces.iter().position(|n| *n == ns) {
                    out.entry((i, o.name_any()))
                        .or_insert_with(|| o.as_ref().clone());
                }
            }
        }
        out.into_values().collect()
    }

    /// Every cached probe Job and pod as `namespace/name`, and of them those in flight:
    /// unfinished probe Jobs and pull canaries not yet finished, neither being deleted.
    /// Watches can overlap (the probe namespace watched as well): each object counts once.
    fn probe_objects(&self) -> (HashSet<String>, HashSet<String>) {
        let key = |m: &kube::api::ObjectMeta| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or_default(),
                m.name.as_deref().unwrap_or_default()
            )
        };
        let (mut all, mut in_flight) = (HashSet::new(), HashSet::new());
        for s in &self.jobs {
            for j in s.state() {
                let k = key(&j.metadata);
                if !job_finished(&j) && j.metadata.deletion_timestamp.is_none() {
                    in_flight.insert(k.clone());
                }
                all.insert(k);
            }
        }
        for s in &self.pods {
            for p in s.state() {
                let k = key(&p.metadata);
                let canary = p.labels().get(labels::CONTEXT).map(String::as_str)
                    == Some(ProbeContext::Kubelet.as_str());
                let ended = p
                    .status
                    .as_ref()
                    .and_then(|st| st.phase.as_deref())
                    .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
                if canary && !ended && p.metadata.deletion_timestamp.is_none() {
                    in_flight.insert(k.clone());
                }
                all.insert(k);
            }
        }
        (all, in_flight)
    }

    /// The check's Jobs (label check-uid) in `namespaces`.
    pub fn jobs(&self, namespaces: &[String], uid: &str) -> Vec<Job> {
        Self::select(&self.jobs, namespaces, labels::CHECK_UID, uid, None)
    }

    /// The pods of run `run` of the check in `namespaces`.
    pub fn pods(&self, namespaces: &[String], uid: &str, run: &str) -> Vec<Pod> {
        Self::select(
            &self.pods,
            namespaces,
            labels::CHECK_UID,
            uid,
            Some((labels::RUN, run)),
        )
    }
}

/// How long [`Context::note_collected`] outranks the cached check and Jobs: far longer than
/// a watch takes to deliver a status write and the deletion of Jobs.
pub const COLLECTED_MEMORY: Duration = Duration::from_secs(60);

/// Shared state of reconciliations.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<metrics::Metrics>,
    pub recorder: Recorder,
    /// Watch caches of probe Jobs and pods.
    pub caches: Caches,
    /// Workload pull failures by registry host (`None`: not observed).
    pub pull_failures: Option<std::sync::Mutex<crate::operator::pullwatch::Index>>,
    /// The node inventory, paged and single-flight (see [`Config::node_cache_ttl`]).
    nodes: node_cache::NodeCache,
    /// Per check uid: the last run this process collected (status written, Jobs deleted), and
    /// when. Until the watches show that, the cached check and Jobs are older than it.
    collected: std::sync::Mutex<HashMap<String, (u64, Instant)>>,
    /// Per check uid: the Jobs this process created (or found existing) lately, and when the
    /// last one was. The cache can lack them for a moment; they are not created again.
    created: std::sync::Mutex<HashMap<String, (std::collections::BTreeSet<String>, Instant)>>,
    /// Whether this replica leads: every write checks it ([`leading`]).
    pub leadership: leader::Leadership,
    /// Per check uid: the Jobs of one run that the API server refused to create for good
    /// ([`permanent_refusal`]), by name. They are results of that run, not created again in it.
    refused: std::sync::Mutex<HashMap<String, RefusedRun>>,
    /// Per check (`namespace/name`): reconcile errors in a row, for [`error_policy`]'s backoff.
    errors_in_a_row: std::sync::Mutex<HashMap<String, u32>>,
    /// Per check uid: the nodes the run this process started could not probe
    /// (`status.skippedNodes`, `status.skippedNodeCount`).
    skipped: std::sync::Mutex<HashMap<String, (Vec<crate::operator::crd::SkippedNode>, u32)>>,
    /// Settled pull canaries of the run in progress ([`canaries::Memory`]).
    canaries: canaries::Memory,
    /// Probe Jobs and canaries (`namespace/name`) admitted under
    /// [`Config::max_probe_jobs_in_flight`] that the caches do not show yet, and when.
    admitted: std::sync::Mutex<HashMap<String, Instant>>,
}

/// Longest wait before retrying a check whose reconciles keep failing.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A run number and its refused Jobs by name.
type RefusedRun = (u64, BTreeMap<String, Refused>);

/// A probe Job the API server refused to create for good, and its answer.
#[derive(Debug, Clone)]
pub struct Refused {
    pub context: ProbeContext,
    /// The Job as planned (its annotations say the run, target, generation and run size).
    pub job: Job,
    pub message: String,
}

impl Refused {
    fn record(&self) -> ProbeRecord {
        ProbeRecord {
            context: self.context,
            target: job_target(&self.job),
            outcome: ProbeOutcome::Failed {
                reason: Reason::ProbeNotCreated,
                message: crate::engine::text::clip_line(
                    &format!(
                        "the API server refused to create probe job {}/{}: {}",
                        self.job.namespace().unwrap_or_default(),
                        self.job.name_any(),
                        self.message
                    ),
                    crate::operator::crd::RESULT_MESSAGE_CHARS,
                ),
            },
        }
    }
}

/// The API's message when `e` refuses a create for good: a 4xx other than 401 (credentials),
/// 408 (timeout), 409 (exists) and 429 (throttled): a ResourceQuota, an admission webhook or
/// policy engine, a missing namespace. 5xx, 429 and transport errors are transient.
pub fn permanent_refusal(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s)
            if (400..500).contains(&s.code) && ![401, 408, 409, 429].contains(&s.code) =>
        {
            Some(if s.message.is_empty() {
                format!("{} ({})", s.reason, s.code)
            } else {
                s.message.clone()
            })
        }
        _ => None,
    }
}

impl Context {
    pub fn new(client: Client, config: Config, metrics: Arc<metrics::Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches: Caches::new(watch_scopes(&config)),
            pull_failures: config
                .observe_pull_failures
                .then(|| std::sync::Mutex::new(crate::operator::pullwatch::Index::new())),
            nodes: node_cache::NodeCache::new(
                config.node_cache_ttl,
                config.probe_image_platforms.clone(),
            ),
            config,
            metrics,
            collected: std::sync::Mutex::new(HashMap::new()),
            created: std::sync::Mutex::new(HashMap::new()),
            leadership: leader::Leadership::always(),
            skipped: std::sync::Mutex::new(HashMap::new()),
            refused: std::sync::Mutex::new(HashMap::new()),
            errors_in_a_row: std::sync::Mutex::new(HashMap::new()),
            canaries: canaries::Memory::default(),
            admitted: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Admits one more probe Job or canary (`namespace/name`) under
    /// `--max-probe-jobs-in-flight`: the unfinished ones in the caches, plus those admitted
    /// lately that the caches do not show yet, must stay below the cap. One lock for the count
    /// and the admission, so that reconciles running at once cannot overshoot together.
    /// `false`: no room; the object waits for a later reconcile.
    pub fn admit(&self, key: &str) -> bool {
        let max = self.config.max_probe_jobs_in_flight;
        if max == 0 {
            return true;
        }
        let Ok(mut admitted) = self.admitted.lock() else {
            return true;
        };
        let (all, in_flight) = self.caches.probe_objects();
        // Shown by the caches now (counted from there), or too old to be on its way.
        admitted.retain(|k, at| !all.contains(k) && at.elapsed() < COLLECTED_MEMORY);
        if in_flight.contains(key) || admitted.contains_key(key) {
            return true;
        }
        if in_flight.len() + admitted.len() >= max {
            self.metrics.probe_jobs_held();
            return false;
        }
        admitted.insert(key.to_string(), Instant::now());
        true
    }

    /// Gives back an admission whose object was not created.
    pub fn release(&self, key: &str) {
        if let Ok(mut m) = self.admitted.lock() {
            m.remove(key);
        }
    }

    /// Remembers that the API server refused Job `r.job` of run `run` of check `uid` for good.
    fn note_refused(&self, uid: &str, run: u64, r: Refused) {
        if let Ok(mut m) = self.refused.lock() {
            let e = m
                .entry(uid.to_string())
                .or_insert_with(|| (run, BTreeMap::new()));
            if e.0 != run {
                *e = (run, BTreeMap::new());
            }
            e.1.insert(r.job.name_any(), r);
        }
    }

    /// The Jobs of run `run` of check `uid` that were refused.
    fn refused(&self, uid: &str, run: u64) -> Vec<Refused> {
        self.refused
            .lock()
            .ok()
            .and_then(|m| {
                m.get(uid)
                    .filter(|(n, _)| *n == run)
                    .map(|(_, r)| r.values().cloned().collect())
            })
            .unwrap_or_default()
    }

    fn forget_refused(&self, uid: &str) {
        if let Ok(mut m) = self.refused.lock() {
            m.remove(uid);
        }
    }

    /// Writes only while `leadership` is held (leader election).
    pub fn with_leadership(mut self, leadership: leader::Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// Remembers that run `run` of check `uid` was collected.
    fn note_collected(&self, uid: &str, run: u64) {
        if let Ok(mut m) = self.collected.lock() {
            m.retain(|_, (_, at)| at.elapsed() < COLLECTED_MEMORY);
            m.insert(uid.to_string(), (run, Instant::now()));
        }
    }

    /// The run of check `uid` collected in the last [`COLLECTED_MEMORY`], if any.
    fn recently_collected(&self, uid: &str) -> Option<u64> {
        let m = self.collected.lock().ok()?;
        m.get(uid)
            .filter(|(_, at)| at.elapsed() < COLLECTED_MEMORY)
            .map(|(n, _)| *n)
    }

    fn forget(&self, uid: &str) {
        if let Ok(mut m) = self.collected.lock() {
            m.remove(uid);
        }
        if let Ok(mut m) = self.created.lock() {
            m.remove(uid);
        }
        self.forget_refused(uid);
    }

    /// Remembers that Job `name` of check `uid` exists (created now, or 409).
    fn note_created(&self, uid: &str, name: &str) {
        if let Ok(mut m) = self.created.lock() {
            m.retain(|_, (_, at)| at.elapsed() < COLLECTED_MEMORY);
            let e = m
                .entry(uid.to_string())
                .or_insert_with(|| (Default::default(), Instant::now()));
            e.0.insert(name.to_string());
            e.1 = Instant::now();
        }
    }

    /// Whether Job `name` of check `uid` was created in the last [`COLLECTED_MEMORY`].
    fn recently_created(&self, uid: &str, name: &str) -> bool {
        self.created.lock().is_ok_and(|m| {
            m.get(uid)
                .is_some_and(|(names, at)| at.elapsed() < COLLECTED_MEMORY && names.contains(name))
        })
    }
}

/// Runs `write` (a request that changes the cluster) only while this replica leads, and
/// abandons it the moment leadership is lost, without waiting for its answer.
async fn leading<T>(
    ctx: &Context,
    write: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    if !ctx.leadership.held() {
        return Err(Error::NotLeader);
    }
    tokio::select! {
        biased;
        _ = ctx.leadership.lost() => Err(Error::NotLeader),
        res = write => Ok(res),
    }
}

/// Reconciles one check through the finalizer. The check arrives undecoded
/// ([`stored::StoredCheck`]); [`apply`] gets it typed, or a check whose spec does not decode
/// gets `InvalidSpec` without ever being planned.
pub async fn reconcile(check: Arc<StoredCheck>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let ns = check
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let span = info_span!("reconcile", namespace = %ns, name = %check.name_any());
    let api: Api<StoredCheck> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{}", check.name_any());
    // The whole reconciliation (with the finalizer's own patches) stops when leadership is
    // lost; each write below checks again.
    let lead = ctx.leadership.clone();
    let res = leading(
        &ctx,
        finalizer(&api, FINALIZER, check, |event| async {
            match event {
                Finalizer::Apply(c) => {
                    let d = stored::decode(&c);
                    if let Some(e) = &d.status_error {
                        warn!(error = %e, "the stored status cannot be read; it will be replaced");
                    }
                    match &d.spec_error {
                        None => apply(&d.check, &ctx).await,
                        Some(msg) => {
                            let st = invalid_status(
                                &d.check.status.clone().unwrap_or_default(),
                                d.check.metadata.generation,
                                msg,
                                &Time(Timestamp::now()),
                            );
                            refuse(&d.check, &ctx, st, msg, Requeue::await_change()).await
                        }
                    }
                }
                Finalizer::Cleanup(c) => cleanup(&stored::decode(&c).check, &ctx).await,
            }
        }),
    )
    .instrument(span)
    .await?
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(Error::NotLeader)
        | kube::runtime::finalizer::Error::CleanupFailed(Error::NotLeader) => Error::NotLeader,
        e if !lead.held() => {
            debug!(error = %error_chain(&e), "failed after leadership was lost");
            Error::NotLeader
        }
        e => Error::Finalizer(Box::new(e)),
    });
    if res.is_ok()
        && let Ok(mut m) = ctx.errors_in_a_row.lock()
    {
        // The backoff of error_policy starts over.
        m.remove(&key);
    }
    res
}

/// Logs, counts and requeues a failed reconciliation (backoff by the error's kind: API
/// throttling and conflicts are retried soon, everything else a little later).
pub fn error_policy(check: Arc<StoredCheck>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let label = error.metric_label();
    warn!(
        namespace = %check.namespace().unwrap_or_default(),
        name = %check.name_any(),
        error = %error_chain(error),
        "reconcile failed"
    );
    ctx.metrics.reconcile_error(label);
    let key = format!(
        "{}/{}",
        check.namespace().unwrap_or_default(),
        check.name_any()
    );
    let n = ctx
        .errors_in_a_row
        .lock()
        .map(|mut m| {
            let n = m.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    Requeue::requeue(backoff(retry_after(error), n))
}

/// The wait before retry number `n` (1: the first) after errors whose first wait is `first`:
/// doubled per error in a row, at most [`MAX_RETRY_AFTER`].
pub fn backoff(first: Duration, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(MAX_RETRY_AFTER)
}

/// How long to wait before retrying after `error`.
pub fn retry_after(error: &Error) -> Duration {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(kube::Error::Api(s)) = e.downcast_ref::<kube::Error>() {
            return match s.code {
                409 | 429 => Duration::from_secs(5),
                500..=599 => Duration::from_secs(15),
                _ => Duration::from_secs(60),
            };
        }
        source = e.source();
    }
    Duration::from_secs(30)
}

/// The error and its sources on one line, each once: an error whose text already ends with
/// its source's (kube's finalizer errors) does not get it again, and an API error reads as
/// its code, reason and message (kube's own text repeats the message and dumps the Status).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let api = match err.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(st)) => Some(format!(
                "API error {} {}: {}",
                st.code, st.reason, st.message
            )),
            _ => None,
        };
        let text = api.clone().unwrap_or_else(|| err.to_string());
        if !s.ends_with(&text) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&text);
        }
        if api.is_some() {
            break;
        }
        next = err.source();
    }
    s
}

fn check_uid(check: &RegistryConnectivityCheck) -> Result<String, Error> {
    check.uid().ok_or(Error::MissingField("metadata.uid"))
}

/// Namespaces that hold a check's Jobs: the probe namespace, then the check's own.
fn job_namespaces(check_ns: &str, cfg: &Config) -> Vec<String> {
    let mut v = vec![cfg.probe_namespace.clone()];
    if check_ns != cfg.probe_namespace {
        v.push(check_ns.to_string());
    }
    v
}

/// The check's Jobs from the cache, without those of a run this process collected already
/// (the cache may still show them for a moment).
fn cached_jobs(ctx: &Context, check_ns: &str, uid: &str) -> Vec<Job> {
    let mut jobs = ctx.caches.jobs(&job_namespaces(check_ns, &ctx.config), uid);
    if let Some(done) = ctx.recently_collected(uid) {
        jobs.retain(|j| {
            j.labels()
                .get(labels::RUN)
                .and_then(|r| decide::run_number(r))
                .is_none_or(|n| n > done)
        });
    }
    jobs
}

/// The refused Jobs ([`Context::note_refused`]) of a run of check `uid` after run `last` (the
/// last collected), except those the cache shows after all.
fn refused_members(ctx: &Context, uid: &str, last: u64, jobs: &[Job]) -> Vec<Refused> {
    let Some(run) = ctx
        .refused
        .lock()
        .ok()
        .and_then(|m| m.get(uid).map(|(n, _)| *n))
    else {
        return vec![];
    };
    if run <= last {
        return vec![];
    }
    ctx.refused(uid, run)
        .into_iter()
        .filter(|r| {
            !jobs
                .iter()
                .any(|j| j.name_any() == r.job.name_any() && j.namespace() == r.job.namespace())
        })
        .collect()
}

/// Deletes the Jobs (and through background propagation their pods) of `run`, or of every run
/// of the check, in `namespaces`.
async fn delete_jobs(
    ctx: &Context,
    namespaces: &[String],
    uid: &str,
    run: Option<&str>,
) -> Result<(), Error> {
    let mut sel = format!("{}={uid}", labels::CHECK_UID);
    if let Some(r) = run {
        sel.push_str(&format!(",{}={r}", labels::RUN));
    }
    let lp = ListParams::default().labels(&sel);
    for ns in namespaces {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
        match leading(ctx, api.delete_collection(&DeleteParams::background(), &lp)).await? {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(source) => {
                return Err(Error::DeleteJobs {
                    namespace: ns.clone(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Namespaces (in [`job_namespaces`] order) holding Jobs of `run`.
fn namespaces_of(jobs: &[Job], run: &str, order: &[String]) -> Vec<String> {
    order
        .iter()
        .filter(|ns| {
            jobs.iter().any(|j| {
                j.namespace().as_deref() == Some(ns.as_str())
                    && j.labels().get(labels::RUN).map(String::as_str) == Some(run)
            })
        })
        .cloned()
        .collect()
}

fn job_finished(job: &Job) -> bool {
    jobs::finished_condition(job).is_some()
}

/// The Job (of `jobs`) that controls `pod`: a controller owner reference with the Job's UID
/// (not its name: a run number reused after a refusal or suspension names the same Job, whose
/// old pod must not count for the new one).
fn controlling_job<'a>(jobs: &'a [Job], pod: &Pod) -> Option<&'a Job> {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Job")?;
    jobs.iter().find(|j| {
        j.metadata.uid.as_deref() == Some(owner.uid.as_str()) && j.namespace() == pod.namespace()
    })
}

/// Why `pod` is not the probe pod of one of `jobs`, if it is not: not controlled by one of
/// them (by UID), being deleted, or not running what its Job's template runs (image, command,
/// arguments, node). Anyone who can create pods next to a probe can label one like it and
/// give it a crafted termination message; such a pod must not be credited.
pub fn not_the_probe_pod(jobs: &[Job], pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("it is being deleted".into());
    }
    let Some(job) = controlling_job(jobs, pod) else {
        return Some(
            "no probe Job of the run controls it (controller owner reference by UID)".into(),
        );
    };
    let template = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let probe = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| {
        spec.and_then(|s| s.containers.iter().find(|c| c.name == "probe"))
            .map(|c| (c.image.clone(), c.command.clone(), c.args.clone()))
    };
    let node =
        |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| spec.and_then(|s| s.node_name.clone());
    let spec = pod.spec.as_ref();
    if probe(spec).is_none() || probe(spec) != probe(template) {
        return Some(format!(
            "its probe container's image, command or arguments are not those of Job {}",
            job.name_any()
        ));
    }
    if node(template).is_some() && node(spec) != node(template) {
        return Some(format!(
            "it is not on the node of Job {} ({})",
            job.name_any(),
            node(template).unwrap_or_default()
        ));
    }
    None
}

/// The pods of `pods` that are the probe pods of `jobs` ([`not_the_probe_pod`]); the others
/// are logged at warn and ignored.
fn probe_pods(jobs: &[Job], pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter(|p| match not_the_probe_pod(jobs, p) {
            None => true,
            Some(why) => {
                warn!(
                    pod = %p.name_any(),
                    pod_namespace = %p.namespace().unwrap_or_default(),
                    %why,
                    "ignoring a pod labelled as a probe of this check"
                );
                false
            }
        })
        .collect()
}

/// The pod of a Job (controlled by it, by UID), the one with an outcome first. `pods` are
/// [`probe_pods`].
fn pod_of<'a>(job: &Job, pods: &'a [Pod]) -> Option<&'a Pod> {
    let mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| controlling_job(std::slice::from_ref(job), p).is_some())
        .collect();
    mine.iter()
        .find(|p| aggregate::pod_outcome(p) != ProbeOutcome::Running)
        .or(mine.first())
        .copied()
}

/// How long a finished Job may lack its pod in the cache before the pod counts as gone: far
/// longer than the pod's watch event takes.
pub const POD_CACHE_GRACE: Duration = Duration::from_secs(30);

/// When `job` finished: its completion time, else the time of its Complete or Failed
/// condition.
fn job_finished_at(job: &Job) -> Option<Timestamp> {
    jobs::finished_at(job)
}

/// How the probe of `job` ended at `now`: [`aggregate::outcome_at`], plus a Job that
/// finished more than [`POD_CACHE_GRACE`] ago but whose pod (and so its report) is gone.
pub fn probe_outcome(job: &Job, pod: Option<&Pod>, now: Timestamp) -> ProbeOutcome {
    let o = aggregate::outcome_at(job, pod, Some(now));
    if o == ProbeOutcome::Running && pod.is_none() && job_finished(job) {
        let settled = job_finished_at(job)
            .and_then(|t| t.checked_add(POD_CACHE_GRACE).ok())
            .is_none_or(|until| now >= until);
        if !settled {
            // The pod's watch event can trail the Job's.
            return ProbeOutcome::Running;
        }
        return ProbeOutcome::Failed {
            reason: Reason::ProbeCrashed,
            message: "the probe Job finished but its pod is gone, and with it the report".into(),
        };
    }
    o
}

/// The target a Job probed, from its annotations.
fn job_target(job: &Job) -> Option<Target> {
    let ann = job.annotations();
    let node = ann.get(jobs::annotations::NODE)?.clone();
    Some(Target {
        node,
        node_pool: ann.get(run_ann::NODE_POOL).cloned(),
        zone: ann.get(run_ann::ZONE).cloned(),
    })
}

fn job_context(job: &Job) -> ProbeContext {
    match job.labels().get(labels::CONTEXT).map(String::as_str) {
        Some("pod") => ProbeContext::Pod,
        _ => ProbeContext::Node,
    }
}

/// The finished parts of a Job that the controller adds to [`jobs::build_job`]'s: run
/// bookkeeping annotations, the image pull policy and, for node-context probes of a check
/// with proxy mode `Inherit`, the nodes' proxy.
pub fn stamp_job(
    mut job: Job,
    check: &RegistryConnectivityCheck,
    context: ProbeContext,
    target: Option<&Target>,
    run_size: usize,
    cfg: &Config,
) -> Job {
    let ann = job.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if let Some(g) = check.metadata.generation {
        ann.insert(run_ann::GENERATION.into(), g.to_string());
    }
    if let Some(t) = current_run_now(check) {
        ann.insert(run_ann::RUN_NOW.into(), t);
    }
    ann.insert(run_ann::RUN_SIZE.into(), run_size.to_string());
    if let Some(t) = target {
        if let Some(p) = &t.node_pool {
            ann.insert(run_ann::NODE_POOL.into(), p.clone());
        }
        if let Some(z) = &t.zone {
            ann.insert(run_ann::ZONE.into(), z.clone());
        }
    }
    let inherit_node_proxy =
        context == ProbeContext::Node && check.spec.proxy.mode == ProxyMode::Inherit;
    if let Some(c) = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
    {
        c.image_pull_policy = Some(cfg.probe_image_pull_policy.clone());
        if inherit_node_proxy && let Some(args) = c.args.as_mut() {
            if let Some(p) = &cfg.node_proxy {
                args.push("--proxy".into());
                args.push(p.clone());
            }
            if let Some(np) = cfg
                .node_no_proxy
                .as_ref()
                .filter(|_| cfg.node_proxy.is_some())
            {
                args.push("--proxy-bypass".into());
                args.push(np.clone());
            }
        }
    }
    if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.affinity = Some(jobs::arch_affinity(&cfg.probe_image_platforms));
        if context == ProbeContext::Node {
            let (volumes, mounts, args) =
                jobs::host_files(&cfg.node_host_files, inherit_node_proxy);
            if !volumes.is_empty() {
                pod.volumes.get_or_insert_with(Vec::new).extend(volumes);
            }
            if let Some(c) = pod.containers.first_mut() {
                if !mounts.is_empty() {
                    c.volume_mounts.get_or_insert_with(Vec::new).extend(mounts);
                }
                c.args.get_or_insert_with(Vec::new).extend(args);
            }
        }
    }
    job
}

/// The Jobs of run `run` on `targets` (the node context's plan of the run on `nodes`, whose
/// addresses the node probes are given): node-context Jobs (one per target) first, then
/// pod-context Jobs.
pub fn plan_jobs(
    check: &RegistryConnectivityCheck,
    spec: &ValidSpec,
    nodes: &NodeInventory,
    targets: &[Target],
    run: u64,
    cfg: &Config,
) -> Vec<(ProbeContext, Job)> {
    let run_id = decide::run_id(run);
    let mut contexts = Vec::new();
    if spec.node_enabled {
        contexts.push(ProbeContext::Node);
    }
    if spec.pod_enabled {
        contexts.push(ProbeContext::Pod);
    }
    let size = contexts.len() * targets.len() + canaries::count(spec, targets.len());
    let mut out = Vec::with_capacity(size);
    for context in contexts {
        for t in targets {
            let job = jobs::build_job(&ProbeJob {
                check,
                spec,
                run_id: &run_id,
                context,
                target: Some(t),
                image: &cfg.probe_image,
                operator_namespace: &cfg.probe_namespace,
                node_addresses: nodes.addresses_of(&t.node),
            });
            out.push((context, stamp_job(job, check, context, Some(t), size, cfg)));
        }
    }
    out
}

/// What [`create_jobs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Created {
    /// Created now.
    created: usize,
    /// Created now or found existing (409).
    exist: usize,
    /// Refused for good ([`permanent_refusal`]); remembered with [`Context::note_refused`].
    refused: usize,
    /// Not tried: no room left (in the run, or under `--max-probe-jobs-in-flight`).
    untried: usize,
    /// Of `untried`, those held back by `--max-probe-jobs-in-flight`.
    held: usize,
}

/// Creates `jobs` until `room` of them exist. 409 AlreadyExists is fine: that is how a
/// restarted controller resumes a run without duplicates. A Job refused for good (quota,
/// admission, policy, missing namespace) becomes a `ProbeNotCreated` result of its run and
/// takes no room; a transient error (429, 5xx, transport) fails the reconcile.
async fn create_jobs(
    ctx: &Context,
    jobs: Vec<(ProbeContext, Job)>,
    room: usize,
) -> Result<Created, Error> {
    let mut out = Created::default();
    let total = jobs.len();
    for (i, (context, job)) in jobs.into_iter().enumerate() {
        if out.exist >= room {
            out.untried = total - i;
            break;
        }
        let ns = job.namespace().unwrap_or_default();
        let name = job.name_any();
        let key = format!("{ns}/{name}");
        if !ctx.admit(&key) {
            out.untried = total - i;
            out.held = out.untried;
            break;
        }
        let uid = job
            .labels()
            .get(labels::CHECK_UID)
            .cloned()
            .unwrap_or_default();
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let res = leading(ctx, api.create(&PostParams::default(), &job)).await;
        if !created_or_exists(&res) {
            ctx.release(&key);
        }
        match res? {
            Ok(_) => {
                ctx.metrics.job_created(context);
                ctx.note_created(&uid, &name);
                out.created += 1;
                out.exist += 1;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                ctx.note_created(&uid, &name);
                out.exist += 1;
                debug!(%ns, %name, "probe job exists already");
            }
            Err(source) => {
                let Some(message) = permanent_refusal(&source) else {
                    return Err(Error::CreateJob {
                        namespace: ns,
                        name,
                        source,
                    });
                };
                warn!(%ns, %name, %message, "the API server refused the probe job; it is a ProbeNotCreated result of its run");
                let run = job
                    .labels()
                    .get(labels::RUN)
                    .and_then(|r| decide::run_number(r))
                    .unwrap_or(0);
                ctx.note_refused(
                    &uid,
                    run,
                    Refused {
                        context,
                        job,
                        message,
                    },
                );
                out.refused += 1;
            }
        }
    }
    Ok(out)
}

/// Whether a create's answer means the object exists now (created, or 409 AlreadyExists):
/// otherwise its admission under `--max-probe-jobs-in-flight` is given back.
pub(crate) fn created_or_exists<T>(res: &Result<Result<T, kube::Error>, Error>) -> bool {
    match res {
        Ok(Ok(_)) => true,
        Ok(Err(kube::Error::Api(s))) => s.code == 409,
        _ => false,
    }
}

/// The node inventory: listed again (in pages, one refresh for all callers) when the cached
/// one is older than [`Config::node_cache_ttl`].
async fn list_nodes(ctx: &Context) -> Result<Arc<NodeInventory>, Error> {
    ctx.nodes
        .get(|| node_cache::list_node_infos(ctx.client.clone()))
        .await
        .map_err(|source| Error::ListNodes { source })
}

/// The labels of namespace `ns`, read only when the policy's namespace rule is a label.
async fn namespace_labels(
    ctx: &Context,
    spec: &ValidSpec,
    ns: &str,
) -> Result<BTreeMap<String, String>, Error> {
    if !ctx.config.policy.needs_namespace_labels(spec) {
        return Ok(BTreeMap::new());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let namespace = api.get(ns).await.map_err(|source| Error::GetNamespace {
        namespace: ns.to_string(),
        source,
    })?;
    Ok(namespace.metadata.labels.unwrap_or_default())
}

/// The status, ignoring timestamps: equal ones are not written again.
pub fn same_except_timestamps(
    a: &RegistryConnectivityCheckStatus,
    b: &RegistryConnectivityCheckStatus,
) -> bool {
    fn strip(s: &RegistryConnectivityCheckStatus) -> RegistryConnectivityCheckStatus {
        let mut s = s.clone();
        let epoch = Time(Timestamp::UNIX_EPOCH);
        for c in &mut s.conditions {
            c.last_transition_time = epoch.clone();
        }
        if let Some(r) = s.last_run.as_mut() {
            r.start_time = None;
            r.completion_time = None;
            r.duration_ms = None;
        }
        s
    }
    strip(a) == strip(b)
}

/// Writes the status with server-side apply, unless only timestamps would change. Returns
/// whether it wrote.
async fn write_status(
    ctx: &Context,
    check: &RegistryConnectivityCheck,
    new: &RegistryConnectivityCheckStatus,
) -> Result<bool, Error> {
    let old = check.status.clone().unwrap_or_default();
    let mut new = new.clone();
    new.workload_pull_failures = pullwatch::summary_of(ctx, check, Timestamp::now().as_second());
    let new = &new;
    if check.status.is_some() && same_except_timestamps(&old, new) {
        debug!("status unchanged");
        return Ok(false);
    }
    let ns = check.namespace().unwrap_or_default();
    let name = check.name_any();
    // The server answers with the whole object, whose spec may not decode (that can be why
    // this status is written): read the answer undecoded.
    let api: Api<StoredCheck> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": RegistryConnectivityCheck::api_version(&()),
        "kind": RegistryConnectivityCheck::kind(&()),
        "status": new,
    });
    leading(
        ctx,
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        ),
    )
    .await?
    .map_err(|source| Error::PatchStatus {
        namespace: ns,
        name,
        source,
    })?;
    Ok(true)
}

fn ready_of(st: &RegistryConnectivityCheckStatus) -> Option<&Condition> {
    st.conditions.iter().find(|c| c.type_ == conditions::READY)
}

/// The Event for a status change, if any: a transition of `Ready`, else a changed diagnosis.
pub fn transition_event(
    old: &RegistryConnectivityCheckStatus,
    new: &RegistryConnectivityCheckStatus,
) -> Option<Event> {
    let (o, n) = (ready_of(old), ready_of(new)?);
    let diag_reason =
        |s: &RegistryConnectivityCheckStatus| s.diagnosis.as_ref().map(|d| d.reason.clone());
    let note = |n: &Condition| {
        Some(crate::engine::text::clip_line(
            &format!("Ready={}: {}: {}", n.status, n.reason, n.message),
            1024,
        ))
    };
    if o.map(|c| c.status.as_str()) != Some(n.status.as_str()) {
        let reason_or = |fallback: &str| {
            Some(n.reason.clone())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| fallback.into())
        };
        let (type_, reason) = match n.status.as_str() {
            "True" => (EventType::Normal, "Ready".to_string()),
            "False" => (
                EventType::Warning,
                Some(n.reason.clone())
                    .filter(|r| !r.is_empty() && r != aggregate::reasons::AWAITING_THRESHOLD)
                    .unwrap_or_else(|| "NotReady".into()),
            ),
            // Unknown is not "not ready": a failure still below failureThreshold is news, not
            // an alarm; a broken probe is a warning about the probe, named by its reason.
            _ if n.reason == aggregate::reasons::AWAITING_THRESHOLD => {
                (EventType::Normal, reason_or("ReadyUnknown"))
            }
            _ => (EventType::Warning, reason_or("ReadyUnknown")),
        };
        return Some(Event {
            type_,
            reason,
            note: note(n),
            action: "Check".into(),
            secondary: None,
        });
    }
    if diag_reason(old) != diag_reason(new) {
        let healthy = n.status == "True";
        return Some(Event {
            type_: if healthy {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: "DiagnosisChanged".into(),
            note: Some(crate::engine::text::clip_line(
                &format!(
                    "{} → {}: {}",
                    diag_reason(old).unwrap_or_else(|| "none".into()),
                    diag_reason(new).unwrap_or_else(|| "none".into()),
                    new.diagnosis
                        .as_ref()
                        .map(|d| d.message.as_str())
                        .unwrap_or("")
                ),
                1024,
            )),
            action: "Check".into(),
            secondary: None,
        });
    }
    None
}

async fn publish(ctx: &Context, check: &RegistryConnectivityCheck, ev: Option<Event>) {
    if let Some(ev) = ev
        && let Ok(Err(e)) = leading(ctx, ctx.recorder.publish(&ev, &check.object_ref(&()))).await
    {
        // Events are best effort: the status says the same.
        warn!(error = %e, reason = %ev.reason, "cannot publish event");
    }
}

/// The conditions other than `Ready` of a check on which no probe runs: Unknown, with `reason`
/// (what they said came from an earlier run and says nothing now).
fn no_probes_conditions(
    st: &mut RegistryConnectivityCheckStatus,
    generation: Option<i64>,
    reason: &str,
    now: &Time,
) {
    let types: Vec<String> = st
        .conditions
        .iter()
        .filter(|c| c.type_ != conditions::READY)
        .map(|c| c.type_.clone())
        .collect();
    for type_ in types {
        aggregate::set_condition(
            &mut st.conditions,
            Condition {
                type_,
                status: "Unknown".into(),
                reason: reason.into(),
                message: "no probe runs (see the Ready condition)".into(),
                observed_generation: generation,
                last_transition_time: now.clone(),
            },
        );
    }
}

/// The status of a check whose spec is unusable.
pub fn invalid_status(
    prev: &RegistryConnectivityCheckStatus,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> RegistryConnectivityCheckStatus {
    let mut st = prev.clone();
    st.observed_generation = generation;
    no_probes_conditions(&mut st, generation, INVALID_SPEC, now);
    aggregate::set_condition(
        &mut st.conditions,
        Condition {
            type_: conditions::READY.into(),
            status: "False".into(),
            reason: INVALID_SPEC.into(),
            message: crate::engine::text::clip_line(message, 1024),
            observed_generation: generation,
            last_transition_time: now.clone(),
        },
    );
    st.diagnosis = Some(aggregate::operator_diagnosis(Reason::InvalidSpec, message));
    st
}

/// The status of a check that the target policy refuses: `Ready=False`, reason
/// `TargetNotAllowed`, the message naming the rule ([`policy::Violation::ready_condition`]).
pub fn refused_status(
    prev: &RegistryConnectivityCheckStatus,
    generation: Option<i64>,
    violation: &policy::Violation,
    now: &Time,
) -> RegistryConnectivityCheckStatus {
    let mut st = prev.clone();
    st.observed_generation = generation;
    let reason = policy::Violation::REASON;
    no_probes_conditions(&mut st, generation, reason.as_str(), now);
    aggregate::set_condition(
        &mut st.conditions,
        violation.ready_condition(generation, now),
    );
    st.diagnosis = Some(aggregate::operator_diagnosis(
        policy::Violation::REASON,
        &violation.to_string(),
    ));
    st
}

/// A check that must not run (its spec is unusable, or the policy refuses it): its Jobs go,
/// `st` is written (and, when that changes the status, counted as an `invalid_spec` run with
/// an Event on the transition).
async fn refuse(
    check: &RegistryConnectivityCheck,
    ctx: &Context,
    st: RegistryConnectivityCheckStatus,
    msg: &str,
    requeue: Requeue,
) -> Result<Requeue, Error> {
    let ns = check
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = check_uid(check)?;
    if !ctx.caches.is_ready() {
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    let order = job_namespaces(&ns, &ctx.config);
    ctx.forget_refused(&uid);
    let jobs = cached_jobs(ctx, &ns, &uid);
    if !jobs.is_empty() {
        let holding: Vec<String> = order
            .iter()
            .filter(|n| {
                jobs.iter()
                    .any(|j| j.namespace().as_deref() == Some(n.as_str()))
            })
            .cloned()
            .collect();
        delete_jobs(ctx, &holding, &uid, None).await?;
    }
    let prev = check.status.clone().unwrap_or_default();
    if write_status(ctx, check, &st).await? {
        let reason = ready_of(&st).map(|c| c.reason.clone()).unwrap_or_default();
        info!(%msg, %reason, "not running the check");
        ctx.metrics.run(metrics::RunResult::InvalidSpec);
        publish(ctx, check, transition_event(&prev, &st)).await;
    }
    set_metrics(ctx, check, &st);
    Ok(requeue)
}

fn set_metrics(
    ctx: &Context,
    check: &RegistryConnectivityCheck,
    st: &RegistryConnectivityCheckStatus,
) {
    let (ns, name) = (check.namespace().unwrap_or_default(), check.name_any());
    ctx.metrics.set_check(&ns, &name, &check.spec.registry, st);
    // What CheckStale measures the age of the last run against.
    let interval = crate::engine::inputs::parse_duration(
        "spec.interval",
        &check.spec.interval,
        crate::operator::spec::MAX_INTERVAL,
    )
    .ok();
    ctx.metrics.set_interval(&ns, &name, interval);
}

/// Brings a check forward one step.
pub async fn apply(check: &RegistryConnectivityCheck, ctx: &Context) -> Result<Requeue, Error> {
    let ns = check
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = check_uid(check)?;
    let now = Timestamp::now();
    let order = job_namespaces(&ns, &ctx.config);
    let prev = check.status.clone().unwrap_or_default();
    if !ctx.caches.is_ready() {
        debug!("the caches of probe jobs and pods are not filled yet");
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }

    let spec = match ValidSpec::parse(&check.spec) {
        Ok(spec) => spec,
        Err(e) => {
            let msg = e.to_string();
            let st = invalid_status(&prev, check.metadata.generation, &msg, &Time(now));
            return refuse(check, ctx, st, &msg, Requeue::await_change()).await;
        }
    };
    // The target policy, before anything is planned or created. The namespace's labels can
    // change without an event here, and the policy with a restart: look again each interval.
    let labels = namespace_labels(ctx, &spec, &ns).await?;
    if let Err(v) = policy::evaluate(&spec, &ns, &labels, &ctx.config.policy) {
        let st = refused_status(&prev, check.metadata.generation, &v, &Time(now));
        let again = Requeue::requeue(spec.interval);
        return refuse(check, ctx, st, &v.to_string(), again).await;
    }

    // The cached check can predate the status this process wrote when it collected a run:
    // deciding on it would collect or start that run again. Its watch event is on the way.
    let last = prev
        .last_run
        .as_ref()
        .and_then(|r| decide::run_number(&r.id))
        .unwrap_or(0);
    if ctx.recently_collected(&uid).is_some_and(|done| done > last) {
        debug!("the cached check predates the last collected run");
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    let jobs = cached_jobs(ctx, &ns, &uid);
    let cfg = ctx.config.decide();
    // Jobs of a run in progress that the API server refused: members of their run, done.
    let refused: Vec<RunJob> = refused_members(ctx, &uid, last, &jobs)
        .iter()
        .map(|r| RunJob::from_job(&r.job, true))
        .collect();
    let by_job_status: Vec<RunJob> = jobs
        .iter()
        .map(|j| RunJob::from_job(j, job_finished(j)))
        .chain(refused.iter().cloned())
        .chain(canaries::members(ctx, &ns, &uid, &spec, now))
        .collect();
    let mut decision = decide::decide(check, spec.interval, &by_job_status, now, &cfg);
    // A run in progress: its pods say more than its Jobs (a pod that cannot be scheduled or
    // pulled leaves its Job running until the deadline), and hold the reports.
    let mut pods = Vec::new();
    if let Action::Wait { run, .. } | Action::Collect { run } = &decision.action {
        // Pull canaries with an outcome are read and deleted now.
        canaries::settle(ctx, &ns, &uid, run, &spec, now).await?;
        pods = probe_pods(
            &jobs,
            ctx.caches
                .pods(&namespaces_of(&jobs, run, &order), &uid, run),
        );
        let by_outcome: Vec<RunJob> = jobs
            .iter()
            .map(|j| {
                let done = probe_outcome(j, pod_of(j, &pods), now) != ProbeOutcome::Running;
                RunJob::from_job(j, done)
            })
            .chain(refused.iter().cloned())
            .chain(canaries::members(ctx, &ns, &uid, &spec, now))
            .collect();
        decision = decide::decide(check, spec.interval, &by_outcome, now, &cfg);
    }
    let Decision { action, leftovers } = decision;
    debug!(?action, ?leftovers, "decided");
    for run in &leftovers {
        delete_jobs(ctx, &namespaces_of(&jobs, run, &order), &uid, Some(run)).await?;
        canaries::delete_run(ctx, &ns, &uid, Some(run)).await?;
    }
    set_metrics(ctx, check, &prev);

    match action {
        Action::Idle { requeue_after } => {
            // Pull failures of workloads change without a run: written when they differ,
            // and looked at again while the window holds some.
            let fresh = pullwatch::summary_of(ctx, check, now.as_second());
            if check.status.is_some() && fresh != prev.workload_pull_failures {
                write_status(ctx, check, &prev).await?;
            }
            let requeue_after = match (&fresh, requeue_after) {
                (Some(_), Some(d)) => Some(d.min(pullwatch::REFRESH)),
                (Some(_), None) => Some(pullwatch::REFRESH),
                (None, d) => d,
            };
            Ok(requeue_after
                .map(Requeue::requeue)
                .unwrap_or_else(Requeue::await_change))
        }
        Action::Wait {
            run,
            top_up,
            requeue_after,
        } => {
            if top_up {
                let n = decide::run_number(&run).unwrap_or(1);
                let nodes = list_nodes(ctx).await?;
                let targets = nodes.plan(&check.spec.contexts.node, n);
                let planned = plan_jobs(check, &spec, &nodes, &targets, n, &ctx.config);
                let size = canaries::run_size(&planned);
                // Refused Jobs are results of this run: not asked for again in it.
                let existing: Vec<String> = jobs
                    .iter()
                    .map(|j| j.name_any())
                    .chain(ctx.refused(&uid, n).iter().map(|r| r.job.name_any()))
                    .collect();
                let active = jobs
                    .iter()
                    .filter(|j| {
                        j.labels().get(labels::RUN) == Some(&run)
                            && probe_outcome(j, pod_of(j, &pods), now) == ProbeOutcome::Running
                    })
                    .count();
                // Jobs added to the run carry the run-now token the run started with.
                let token = jobs
                    .iter()
                    .filter(|j| j.labels().get(labels::RUN) == Some(&run))
                    .find_map(|j| j.annotations().get(run_ann::RUN_NOW).cloned());
                let missing: Vec<(ProbeContext, Job)> = planned
                    .into_iter()
                    .filter(|(_, j)| !existing.contains(&j.name_any()))
                    .map(|(c, mut j)| {
                        let ann = j.annotations_mut();
                        match &token {
                            Some(t) => ann.insert(run_ann::RUN_NOW.into(), t.clone()),
                            None => ann.remove(run_ann::RUN_NOW),
                        };
                        (c, j)
                    })
                    .collect();
                let planned_canaries = canaries::plan(check, &spec, &targets, n, size);
                let canaries_created =
                    canaries::create_missing(ctx, &ns, &uid, n, planned_canaries, token.as_deref())
                        .await?;
                let canaries_active = canaries::members(ctx, &ns, &uid, &spec, now)
                    .iter()
                    .filter(|m| m.run == run && !m.done)
                    .count();
                if missing.is_empty()
                    && active == 0
                    && canaries_created.created == 0
                    && canaries_created.held == 0
                    && canaries_active == 0
                {
                    // Nodes went away since the run was planned: what ran is the run.
                    return collect(check, &spec, ctx, &run, &jobs, &pods, &order, now).await;
                }
                // Jobs created a moment ago that the cache does not show yet: running.
                let (pending, missing): (Vec<_>, Vec<_>) = missing
                    .into_iter()
                    .partition(|(_, j)| ctx.recently_created(&uid, &j.name_any()));
                let active = active + pending.len();
                if missing.is_empty() {
                    debug!(%run, pending = pending.len(), "waiting for the cache to show the jobs");
                } else {
                    let room = ctx.config.max_concurrent_jobs.max(1).saturating_sub(active);
                    let c = create_jobs(ctx, missing, room).await?;
                    info!(%run, created = c.created, refused = c.refused, held = c.held, "continued run");
                }
            }
            Ok(Requeue::requeue(requeue_after))
        }
        Action::Collect { run } => {
            collect(check, &spec, ctx, &run, &jobs, &pods, &order, now).await
        }
        Action::Start { run, reason } => {
            info!(run = %decide::run_id(run), reason = reason.as_str(), "starting run");
            start(check, &spec, ctx, run, now).await
        }
        Action::Supersede { stale, start: next } => {
            ctx.forget_refused(&uid);
            for run in &stale {
                info!(%run, "spec changed during the run: deleting its probe jobs");
                delete_jobs(ctx, &namespaces_of(&jobs, run, &order), &uid, Some(run)).await?;
            }
            canaries::delete_run(ctx, &ns, &uid, None).await?;
            match next {
                Some(n) => start(check, &spec, ctx, n, now).await,
                None => Ok(Requeue::await_change()),
            }
        }
    }
}

async fn start(
    check: &RegistryConnectivityCheck,
    spec: &ValidSpec,
    ctx: &Context,
    run: u64,
    now: Timestamp,
) -> Result<Requeue, Error> {
    let nodes = list_nodes(ctx).await?;
    // The caps that need the inventory: nothing is created for a refused plan.
    let caps = &ctx.config.policy.caps;
    // The node context's plan of the run, made once: the Jobs and canaries are built on it.
    let targets = nodes.plan(&check.spec.contexts.node, run);
    let planned_nodes =
        if spec.node_strategy == NodeStrategy::AllNodes && caps.max_nodes_per_run > 0 {
            targets.len()
        } else {
            0
        };
    if let Err(v) = policy::check_planned(spec, planned_nodes, caps)
        .and_then(|()| policy::check_node_addresses(spec, || nodes.all_addresses()))
    {
        let prev = check.status.clone().unwrap_or_default();
        let st = refused_status(&prev, check.metadata.generation, &v, &Time(now));
        return refuse(
            check,
            ctx,
            st,
            &v.to_string(),
            Requeue::requeue(spec.interval),
        )
        .await;
    }
    let planned = plan_jobs(check, spec, &nodes, &targets, run, &ctx.config);
    let (skipped, skipped_count) = nodes.skipped_status(&check.spec.contexts.node);
    if let Ok(uid) = check_uid(check)
        && let Ok(mut m) = ctx.skipped.lock()
    {
        m.insert(uid, (skipped.clone(), skipped_count));
    }
    let size = canaries::run_size(&planned);
    if planned.is_empty() {
        // Nothing can run: the run ends at once with that as its result.
        let run_id = decide::run_id(run);
        let record = ProbeRecord {
            context: ProbeContext::Node,
            target: None,
            outcome: ProbeOutcome::Failed {
                reason: Reason::ProbeUnschedulable,
                message: format!(
                    "no Linux node is Ready, schedulable, matches spec.contexts.node.nodeSelector, tolerates its taints (see spec.contexts.node.tolerations) and has a platform of the probe image ({}){}",
                    ctx.config.probe_image_platforms,
                    skipped
                        .iter()
                        .take(3)
                        .map(|s| format!("; {}", s.message))
                        .collect::<String>()
                ),
            },
        };
        let info = RunInfo {
            id: run_id,
            start_time: Some(Time(now)),
            completion_time: Some(Time(now)),
            duration_ms: Some(0),
        };
        finish_run(
            check,
            ctx,
            &[record],
            info,
            check.metadata.generation,
            current_run_now(check),
            now,
        )
        .await?;
        ctx.note_collected(&check_uid(check)?, run);
        return Ok(after_run(check, spec, ctx, now));
    }
    // A cached check or Jobs older than this process's last start of this very run: its Jobs
    // exist, the cache does not show them yet.
    let uid = check_uid(check)?;
    let refused: Vec<String> = ctx
        .refused(&uid, run)
        .iter()
        .map(|r| r.job.name_any())
        .collect();
    let (pending, planned): (Vec<_>, Vec<_>) = planned
        .into_iter()
        .filter(|(_, j)| !refused.contains(&j.name_any()))
        .partition(|(_, j)| ctx.recently_created(&uid, &j.name_any()));
    // Jobs created a moment ago that the cache does not show yet are running: they count
    // against the concurrency limit.
    let room = ctx
        .config
        .max_concurrent_jobs
        .max(1)
        .saturating_sub(pending.len());
    if (planned.is_empty() || room == 0) && !pending.is_empty() {
        debug!(run = %decide::run_id(run), "run started already; waiting for the cache");
        return Ok(Requeue::requeue(decide::POLL_RUNNING));
    }
    let c = create_jobs(ctx, planned, room).await?;
    if pending.is_empty() && c.exist == 0 && c.refused == 0 && c.held > 0 {
        // Nothing admitted under --max-probe-jobs-in-flight: the run starts at a later
        // reconcile, when other checks' probes have finished.
        info!(run = %decide::run_id(run), held = c.held, max = ctx.config.max_probe_jobs_in_flight,
              "no room for the run's probe jobs under --max-probe-jobs-in-flight: waiting");
        return Ok(Requeue::requeue(IN_FLIGHT_WAIT));
    }
    info!(run = %decide::run_id(run), created = c.created, refused = c.refused, held = c.held, "run started");
    if pending.is_empty() && c.exist == 0 && c.untried == 0 {
        // Every probe was refused: there is nothing to wait for, the run ends now.
        let records: Vec<ProbeRecord> =
            ctx.refused(&uid, run).iter().map(Refused::record).collect();
        let info = RunInfo {
            id: decide::run_id(run),
            start_time: Some(Time(now)),
            completion_time: Some(Time(now)),
            duration_ms: Some(0),
        };
        let st = finish_run(
            check,
            ctx,
            &records,
            info,
            check.metadata.generation,
            current_run_now(check),
            now,
        )
        .await?;
        ctx.forget_refused(&uid);
        ctx.note_collected(&uid, run);
        let mut with_status = check.clone();
        with_status.status = Some(st);
        return Ok(after_run(&with_status, spec, ctx, now));
    }
    let ns = check.namespace().unwrap_or_default();
    let planned_canaries = canaries::plan(check, spec, &targets, run, size);
    let token = current_run_now(check);
    canaries::create_missing(ctx, &ns, &uid, run, planned_canaries, token.as_deref()).await?;
    Ok(Requeue::requeue(decide::POLL_RUNNING))
}

/// The check's run-now token now (recorded on the Jobs of a run that starts now).
fn current_run_now(check: &RegistryConnectivityCheck) -> Option<String> {
    decide::run_now_token(
        check
            .annotations()
            .get(decide::RUN_NOW_ANNOTATION)
            .map(String::as_str),
    )
}

/// Writes the status, metrics and Events of a finished run. `run_now` is the run-now token
/// the run started with (from its Jobs), recorded as `status.lastRunNow`.
async fn finish_run(
    check: &RegistryConnectivityCheck,
    ctx: &Context,
    records: &[ProbeRecord],
    info: RunInfo,
    generation: Option<i64>,
    run_now: Option<String>,
    now: Timestamp,
) -> Result<RegistryConnectivityCheckStatus, Error> {
    let prev = check.status.clone().unwrap_or_default();
    let summary = aggregate::aggregate(records);
    let run_id = info.id.clone();
    let mut st = aggregate::next_status(&prev, &check.spec, generation, &summary, info, &Time(now));
    // The nodes the run started by this process skipped (after a restart mid-run, the
    // previous value stays).
    if let Ok(uid) = check_uid(check)
        && let Ok(m) = ctx.skipped.lock()
        && let Some((list, count)) = m.get(&uid)
    {
        st.skipped_nodes = list.clone();
        st.skipped_node_count = *count;
    }
    // The token the run started with: a request made during the run is still to be served.
    st.last_run_now = run_now;
    write_status(ctx, check, &st).await?;
    let result = metrics::run_result(&summary);
    ctx.metrics.run(result);
    for r in records {
        if let ProbeOutcome::Report(rep) = &r.outcome {
            ctx.metrics.observe_report(r.context, rep);
        }
    }
    set_metrics(ctx, check, &st);
    info!(
        run = %run_id,
        result = result.as_str(),
        reason = st.diagnosis.as_ref().map(|d| d.reason.as_str()).unwrap_or(""),
        "run finished"
    );
    publish(ctx, check, transition_event(&prev, &st)).await;
    Ok(st)
}

/// When to look again after a run finished.
fn after_run(
    check: &RegistryConnectivityCheck,
    spec: &ValidSpec,
    ctx: &Context,
    now: Timestamp,
) -> Requeue {
    // The status just written is what the next decision starts from; until the watch
    // delivers it, decide on a copy.
    match decide::decide(check, spec.interval, &[], now, &ctx.config.decide()).action {
        Action::Idle {
            requeue_after: Some(d),
        } => Requeue::requeue(d),
        Action::Idle {
            requeue_after: None,
        } => Requeue::await_change(),
        _ => Requeue::requeue(Duration::from_secs(1)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn collect(
    check: &RegistryConnectivityCheck,
    spec: &ValidSpec,
    ctx: &Context,
    run: &str,
    jobs: &[Job],
    pods: &[Pod],
    order: &[String],
    now: Timestamp,
) -> Result<Requeue, Error> {
    let uid = check_uid(check)?;
    let mine: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.labels().get(labels::RUN).map(String::as_str) == Some(run))
        .collect();
    let refused: Vec<Refused> = decide::run_number(run)
        .map(|n| ctx.refused(&uid, n))
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !mine.iter().any(|j| j.name_any() == r.job.name_any()))
        .collect();
    let records: Vec<ProbeRecord> = mine
        .iter()
        .map(|j| ProbeRecord {
            context: job_context(j),
            target: job_target(j),
            outcome: probe_outcome(j, pod_of(j, pods), now),
        })
        .chain(refused.iter().map(Refused::record))
        .chain(canaries::records(ctx, &uid, run))
        .collect();
    let start = mine
        .iter()
        .filter_map(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .min()
        .unwrap_or(now);
    let end = mine
        .iter()
        .filter_map(|j| jobs::finished_at(j))
        .max()
        .unwrap_or(now)
        .max(start);
    let generation = mine
        .iter()
        .copied()
        .chain(refused.iter().map(|r| &r.job))
        .find_map(|j| {
            j.annotations()
                .get(run_ann::GENERATION)
                .and_then(|g| g.parse().ok())
        });
    // The token the run's Jobs were created with (none: the check had no annotation then).
    let run_now = mine
        .iter()
        .copied()
        .chain(refused.iter().map(|r| &r.job))
        .find_map(|j| j.annotations().get(run_ann::RUN_NOW).cloned());
    let info = RunInfo {
        id: run.to_string(),
        start_time: Some(Time(start)),
        completion_time: Some(Time(end)),
        duration_ms: Some(end.duration_since(start).as_millis().max(0) as u64),
    };
    let mut with_status = check.clone();
    let st = finish_run(check, ctx, &records, info, generation, run_now, now).await?;
    with_status.status = Some(st);
    ctx.forget_refused(&uid);
    // Collected once the status is written: a failed deletion must not collect it again
    // while the watches still show the run (its Jobs go later, as leftovers).
    if let Some(n) = decide::run_number(run) {
        ctx.note_collected(&uid, n);
    }
    delete_jobs(ctx, &namespaces_of(jobs, run, order), &uid, Some(run)).await?;
    let ns = check.namespace().unwrap_or_default();
    canaries::delete_run(ctx, &ns, &uid, None).await?;
    Ok(after_run(&with_status, spec, ctx, now))
}

/// Deletes the check's Jobs in every namespace; then the finalizer goes.
pub async fn cleanup(check: &RegistryConnectivityCheck, ctx: &Context) -> Result<Requeue, Error> {
    let ns = check
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = check_uid(check)?;
    delete_jobs(ctx, &job_namespaces(&ns, &ctx.config), &uid, None).await?;
    canaries::delete_run(ctx, &ns, &uid, None).await?;
    ctx.forget(&uid);
    ctx.metrics.remove_check(&ns, &check.name_any());
    info!("deleted; probe jobs removed");
    Ok(Requeue::await_change())
}

/// The check a probe Job belongs to (owner references cannot cross namespaces, so the
/// labels and the exact-name annotation say it).
pub fn check_of_job(job: &Job) -> Option<ObjectRef<StoredCheck>> {
    check_of(job)
}

/// The check a probe Job or its pod (whose template carries the same labels and
/// annotations) belongs to.
pub fn check_of<K: Resource>(job: &K) -> Option<ObjectRef<StoredCheck>> {
    if let Some((ns, name)) = job
        .annotations()
        .get(jobs::annotations::CHECK)
        .and_then(|v| v.split_once('/'))
    {
        return Some(ObjectRef::new(name).within(ns));
    }
    let l = job.labels();
    let name = l.get(labels::CHECK)?;
    let ns = l.get(labels::CHECK_NAMESPACE)?;
    Some(ObjectRef::new(name).within(ns))
}

type ReadyFut = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
/// Makes a future that resolves when a store has its first list (false: its writer is gone).
type ReadyProbe = Box<dyn Fn() -> ReadyFut + Send>;

fn ready_probe<K>(s: Store<K>) -> ReadyProbe
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    Box::new(move || {
        let s = s.clone();
        Box::pin(async move { s.wait_until_ready().await.is_ok() })
    })
}

/// The controllers' settings: at most [`Config::max_concurrent_reconciles`] reconciles at a
/// time (kube's default is unbounded: 1,000 new checks were 1,000 reconciles at once).
pub fn controller_config(cfg: &Config) -> kube::runtime::controller::Config {
    let n = cfg.max_concurrent_reconciles.clamp(1, u16::MAX as usize) as u16;
    kube::runtime::controller::Config::default().concurrency(n)
}

/// Runs the controller until `shutdown` resolves; sets `ready` once every watch has listed.
pub async fn run(
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    // Every watch backs off by itself ([`watch_backoff`]): a 410 re-lists at once, waits are
    // bounded and reset on success; the controller adds no backoff over all of them.
    let checks_controller = |api: Api<StoredCheck>| {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            // The store keeps no managed fields or last-applied copy ([`slim::check`]).
            watch_backoff::bounded(watcher(api, watcher::Config::default())).modify(slim::check),
        )
        .applied_objects();
        Controller::for_stream(stream, reader).trigger_backoff(watch_backoff::NoDelay)
    };
    let mut controllers = Vec::new();
    if ctx.config.namespaces.is_empty() {
        controllers.push(checks_controller(Api::<StoredCheck>::all(client.clone())));
    } else {
        for ns in &ctx.config.namespaces {
            controllers.push(checks_controller(Api::<StoredCheck>::namespaced(
                client.clone(),
                ns,
            )));
        }
    }
    // One watch per scope and kind feeds both a cache (read by reconciles) and the
    // controller's triggers.
    let Some((job_writers, pod_writers)) = ctx.caches.take_writers() else {
        warn!("the controller runs once per context");
        return;
    };
    let scopes = ctx.caches.scopes.clone();
    for ((scope, jw), pw) in scopes.iter().zip(job_writers).zip(pod_writers) {
        let wc = watcher::Config::default().labels(&scope.selector);
        let jobs: Api<Job> = match &scope.namespace {
            None => Api::all(client.clone()),
            Some(ns) => Api::namespaced(client.clone(), ns),
        };
        let pods: Api<Pod> = match &scope.namespace {
            None => Api::all(client.clone()),
            Some(ns) => Api::namespaced(client.clone(), ns),
        };
        // The stores keep only what reconciles read (no managed fields, no pod spec details).
        let job_stream = reflector::reflector(
            jw,
            watch_backoff::bounded(watcher(jobs, wc.clone())).modify(slim::job),
        )
        .touched_objects();
        let pod_stream = reflector::reflector(
            pw,
            watch_backoff::bounded(watcher(pods, wc)).modify(slim::pod),
        )
        .touched_objects();
        let i = scope.controller;
        let c = controllers.remove(i);
        let c = c
            .watches_stream(job_stream, |j| check_of(&j))
            .watches_stream(pod_stream, |p| check_of(&p));
        controllers.insert(i, c);
    }
    // Pull failures of workloads trigger the reconcile of the checks of their hosts.
    let mut pull_watch = None;
    if ctx.pull_failures.is_some() {
        let mut triggers = Vec::new();
        controllers = controllers
            .into_iter()
            .map(|c| {
                let (tx, rx) = futures::channel::mpsc::channel(256);
                triggers.push(pullwatch::Trigger {
                    store: c.store(),
                    tx,
                });
                c.reconcile_on(rx)
            })
            .collect();
        pull_watch = Some(tokio::spawn(pullwatch::watch(ctx.clone(), triggers)));
    }
    let mut stores: Vec<ReadyProbe> = controllers.iter().map(|c| ready_probe(c.store())).collect();
    stores.extend(ctx.caches.jobs.iter().map(|s| ready_probe(s.clone())));
    stores.extend(ctx.caches.pods.iter().map(|s| ready_probe(s.clone())));
    let rctx = ctx.clone();
    let readiness = tokio::spawn(async move {
        for s in stores {
            // The store's readiness signal (a futures oneshot behind kube's DelayedInit) keeps
            // only the most recent waker: the controller's own applier waits on it too, and
            // this task would never be woken. Poll it again every second instead.
            loop {
                match tokio::time::timeout(Duration::from_secs(1), s()).await {
                    Ok(true) => break,
                    Ok(false) => return,
                    Err(_) => continue,
                }
            }
        }
        rctx.caches.set_ready();
        ready.store(true, Ordering::SeqCst);
        info!("watches started");
    });
    let concurrency = controller_config(&ctx.config);
    let runs = controllers.into_iter().map(|c| {
        c.with_config(concurrency.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|res| async move {
                use kube::runtime::controller::Error as C;
                match res {
                    Ok((o, _)) => debug!(object = %o, "reconciled"),
                    // Logged and counted by error_policy.
                    Err(C::ReconcilerFailed(..) | C::ObjectNotFound(_)) => {
                        debug!("reconcile failed")
                    }
                    // A watch that cannot list or decode: the controller goes on (with
                    // backoff), but it is blind until this stops.
                    Err(e) => warn!(error = %error_chain(&e), "watch failed; retrying"),
                }
            })
    });
    futures::future::join_all(runs).await;
    readiness.abort();
    if let Some(w) = pull_watch {
        w.abort();
    }
}
