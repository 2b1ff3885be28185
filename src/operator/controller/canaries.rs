//! Pull canaries in a run (the I/O around [`crate::operator::canary`]): created with the
//! run's Jobs on the node context's planned nodes, settled (outcome read, pod deleted) as soon
//! as their outcome is known and always by the run's deadline, remembered until the run is
//! collected, and deleted with leftover runs and the check.
//!
//! A settled canary is gone from the API; its result lives in [`Memory`] until the run is
//! collected. A restarted controller has lost it and creates that canary again in the same
//! run (one more pull), which is the only cost.

use super::decide::{RunJob, annotations as run_ann, run_id};
use super::{Caches, Context, Error, current_run_now, leading, permanent_refusal};
use crate::engine::findings::{ProbeContext, Reason};
use crate::operator::aggregate::ProbeRecord;
use crate::operator::canary::{
    self, CanaryOutcome, CanaryPod, build_canary, canary_target, image_reference, outcome_record,
};
use crate::operator::crd::RegistryConnectivityCheck;
use crate::operator::jobs::labels;
use crate::operator::nodes::Target;
use crate::operator::spec::ValidSpec;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tracing::{debug, info, warn};

/// A canary whose outcome is known.
#[derive(Debug, Clone)]
pub struct Settled {
    pub member: RunJob,
    pub record: ProbeRecord,
    /// Its pod was deleted (or never existed).
    pub deleted: bool,
}

/// A run number and its settled canaries by name.
type SettledRun = (u64, BTreeMap<String, Settled>);

/// Per check uid: the run and its settled canaries by name.
#[derive(Debug, Default)]
pub struct Memory {
    settled: Mutex<HashMap<String, SettledRun>>,
}

impl Memory {
    pub fn note(&self, uid: &str, run: u64, name: &str, s: Settled) {
        if let Ok(mut m) = self.settled.lock() {
            let e = m
                .entry(uid.to_string())
                .or_insert_with(|| (run, BTreeMap::new()));
            if e.0 != run {
                *e = (run, BTreeMap::new());
            }
            e.1.insert(name.to_string(), s);
        }
    }

    /// The settled canaries of check `uid` (of the one run remembered).
    pub fn all(&self, uid: &str) -> Vec<Settled> {
        self.settled
            .lock()
            .ok()
            .and_then(|m| m.get(uid).map(|(_, s)| s.values().cloned().collect()))
            .unwrap_or_default()
    }

    /// The settled canaries of run `run` of check `uid`.
    pub fn of_run(&self, uid: &str, run: u64) -> Vec<Settled> {
        self.settled
            .lock()
            .ok()
            .and_then(|m| {
                m.get(uid)
                    .filter(|(r, _)| *r == run)
                    .map(|(_, s)| s.values().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Settled canary `name` of check `uid` whose pod is still to be deleted: `Some(false)`.
    fn deleted(&self, uid: &str, name: &str) -> Option<bool> {
        let m = self.settled.lock().ok()?;
        m.get(uid)?.1.get(name).map(|s| s.deleted)
    }

    fn mark_deleted(&self, uid: &str, name: &str) {
        if let Ok(mut m) = self.settled.lock()
            && let Some(s) = m.get_mut(uid).and_then(|(_, s)| s.get_mut(name))
        {
            s.deleted = true;
        }
    }

    fn knows(&self, uid: &str, run: u64, name: &str) -> bool {
        self.settled.lock().is_ok_and(|m| {
            m.get(uid)
                .is_some_and(|(r, s)| *r == run && s.contains_key(name))
        })
    }

    pub fn forget(&self, uid: &str) {
        if let Ok(mut m) = self.settled.lock() {
            m.remove(uid);
        }
    }
}

/// The cached canaries of check `uid` in its namespace `ns` (of run `run`, or of every run).
pub fn cached(ctx: &Context, ns: &str, uid: &str, run: Option<&str>) -> Vec<Pod> {
    Caches::select(
        &ctx.caches.pods,
        &[ns.to_string()],
        labels::CHECK_UID,
        uid,
        run.map(|r| (labels::RUN, r)),
    )
    .into_iter()
    .filter(|p| {
        p.labels().get(labels::CONTEXT).map(String::as_str) == Some(ProbeContext::Kubelet.as_str())
            && p.metadata.deletion_timestamp.is_none()
    })
    .collect()
}

fn member_of(pod: &Pod, done: bool) -> RunJob {
    let ann = pod.annotations();
    RunJob {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        run: pod.labels().get(labels::RUN).cloned().unwrap_or_default(),
        generation: ann.get(run_ann::GENERATION).and_then(|g| g.parse().ok()),
        run_now: ann.get(run_ann::RUN_NOW).cloned(),
        run_size: ann.get(run_ann::RUN_SIZE).and_then(|s| s.parse().ok()),
        done,
    }
}

fn created_at(pod: &Pod, now: Timestamp) -> Timestamp {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now)
}

/// The canaries of check `uid` as members of their runs: settled ones and cached ones, done
/// when their outcome is known from the pod alone or the deadline has passed.
pub fn members(
    ctx: &Context,
    ns: &str,
    uid: &str,
    spec: &ValidSpec,
    now: Timestamp,
) -> Vec<RunJob> {
    let settled: Vec<RunJob> = ctx
        .canaries
        .all(uid)
        .into_iter()
        .map(|s| s.member)
        .collect();
    let mut out: Vec<RunJob> = cached(ctx, ns, uid, None)
        .iter()
        .filter(|p| !settled.iter().any(|s| s.name == p.name_any()))
        .map(|p| {
            let dl = canary::deadline(spec, created_at(p, now));
            let done = now >= dl || canary::read_outcome(p, &[], dl, now).is_known();
            member_of(p, done)
        })
        .collect();
    out.extend(settled);
    out
}

/// The kubelet's Events of `pod`.
async fn events_of(ctx: &Context, pod: &Pod) -> Result<Vec<Event>, Error> {
    let ns = pod.namespace().unwrap_or_default();
    let Some(uid) = pod.metadata.uid.clone() else {
        return Ok(Vec::new());
    };
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    match events.list(&lp).await {
        Ok(l) => Ok(l.items),
        Err(source) => Err(Error::Canary {
            action: "listing the events of",
            object: format!("{ns}/{}", pod.name_any()),
            source,
        }),
    }
}

/// Whether the pod shows a failed pull whose message (the back-off's) does not say why.
fn backoff_without_reason(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .any(|w| {
            w.reason.as_deref() == Some("ImagePullBackOff")
                && w.message
                    .as_deref()
                    .is_none_or(|m| m.is_empty() || m.starts_with("Back-off pulling"))
        })
}

/// Deletes canary `pod` (already gone is fine).
async fn delete_pod(ctx: &Context, pod: &Pod) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    match leading(ctx, api.delete(&name, &DeleteParams::default())).await? {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(Error::Canary {
            action: "deleting",
            object: format!("{ns}/{name}"),
            source,
        }),
    }
}

/// Reads the outcome of every unsettled canary of run `run` (asking the kubelet's Events when
/// the pod alone does not say it, and at the deadline), remembers the known ones and deletes
/// their pods.
pub async fn settle(
    ctx: &Context,
    ns: &str,
    uid: &str,
    run: &str,
    spec: &ValidSpec,
    now: Timestamp,
) -> Result<(), Error> {
    let Some(n) = super::decide::run_number(run) else {
        return Ok(());
    };
    let image = image_reference(spec).unwrap_or_default();
    let registry = registry_authority(spec);
    for pod in cached(ctx, ns, uid, Some(run)) {
        let name = pod.name_any();
        if ctx.canaries.knows(uid, n, &name) {
            // Settled; its deletion failed before, or is on its way through the watch.
            if ctx.canaries.deleted(uid, &name) == Some(false) {
                delete_pod(ctx, &pod).await?;
                ctx.canaries.mark_deleted(uid, &name);
            }
            continue;
        }
        let dl = canary::deadline(spec, created_at(&pod, now));
        let mut outcome = canary::read_outcome(&pod, &[], dl, now);
        let definite = matches!(
            outcome,
            CanaryOutcome::Pulled { .. } | CanaryOutcome::PullFailed { .. }
        );
        if !definite && (now >= dl || backoff_without_reason(&pod)) {
            let events = events_of(ctx, &pod).await?;
            outcome = canary::read_outcome(&pod, &events, dl, now);
        }
        let Some(record) = outcome_record(&outcome, canary_target(&pod), &image, &registry) else {
            continue;
        };
        debug!(%ns, %name, ?outcome, "pull canary settled");
        ctx.canaries.note(
            uid,
            n,
            &name,
            Settled {
                member: member_of(&pod, true),
                record,
                deleted: false,
            },
        );
        delete_pod(ctx, &pod).await?;
        ctx.canaries.mark_deleted(uid, &name);
    }
    Ok(())
}

/// The results of run `run`'s settled canaries.
pub fn records(ctx: &Context, uid: &str, run: &str) -> Vec<ProbeRecord> {
    super::decide::run_number(run)
        .map(|n| ctx.canaries.of_run(uid, n))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.record)
        .collect()
}

/// The login server as the kubelet names it (`host` or `host:port`).
fn registry_authority(spec: &ValidSpec) -> String {
    let r = spec.registry();
    if r.port == 443 {
        r.host.clone()
    } else {
        format!("{}:{}", r.host, r.port)
    }
}

/// The run size stamped on planned Jobs (Jobs and canaries of the run).
pub fn run_size(planned: &[(ProbeContext, k8s_openapi::api::batch::v1::Job)]) -> usize {
    planned
        .iter()
        .find_map(|(_, j)| j.annotations().get(run_ann::RUN_SIZE)?.parse().ok())
        .unwrap_or(0)
}

/// The number of canaries of a run on `targets` nodes.
pub fn count(spec: &ValidSpec, targets: usize) -> usize {
    if spec.kubelet_enabled { targets } else { 0 }
}

/// The canaries of run `run` (none unless `spec.contexts.kubelet.enabled`): one per target of
/// the node context's plan of the run (`targets`), stamped like the run's Jobs.
pub fn plan(
    check: &RegistryConnectivityCheck,
    spec: &ValidSpec,
    targets: &[Target],
    run: u64,
    run_size: usize,
) -> Vec<Pod> {
    if !spec.kubelet_enabled {
        return Vec::new();
    }
    let id = run_id(run);
    targets
        .iter()
        .filter_map(|t| {
            let ann = run_annotations(check, t, run_size);
            build_canary(&CanaryPod {
                check,
                spec,
                run_id: &id,
                target: t,
                run_annotations: &ann,
            })
        })
        .collect()
}

fn run_annotations(
    check: &RegistryConnectivityCheck,
    t: &Target,
    run_size: usize,
) -> BTreeMap<String, String> {
    let mut ann = BTreeMap::new();
    if let Some(g) = check.metadata.generation {
        ann.insert(run_ann::GENERATION.into(), g.to_string());
    }
    if let Some(tok) = current_run_now(check) {
        ann.insert(run_ann::RUN_NOW.into(), tok);
    }
    ann.insert(run_ann::RUN_SIZE.into(), run_size.to_string());
    if let Some(p) = &t.node_pool {
        ann.insert(run_ann::NODE_POOL.into(), p.clone());
    }
    if let Some(z) = &t.zone {
        ann.insert(run_ann::ZONE.into(), z.clone());
    }
    ann
}

/// What [`create_missing`] did: canaries created, and canaries held back by
/// `--max-probe-jobs-in-flight` (created at a later reconcile; the run waits for them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CanariesCreated {
    pub created: usize,
    pub held: usize,
}

/// Creates the planned canaries of run `run` that do not exist yet (not cached, not settled,
/// not created a moment ago), as far as `--max-probe-jobs-in-flight` admits them. `token` is
/// the run-now token the run started with. A canary the API server refuses for good is a
/// `ProbeNotCreated` result.
pub async fn create_missing(
    ctx: &Context,
    ns: &str,
    uid: &str,
    run: u64,
    planned: Vec<Pod>,
    token: Option<&str>,
) -> Result<CanariesCreated, Error> {
    let id = run_id(run);
    let cached: Vec<String> = cached(ctx, ns, uid, Some(&id))
        .iter()
        .map(|p| p.name_any())
        .collect();
    let mut created = 0;
    let mut held = 0;
    for mut pod in planned {
        let name = pod.name_any();
        if cached.contains(&name)
            || ctx.canaries.knows(uid, run, &name)
            || ctx.recently_created(uid, &name)
        {
            continue;
        }
        let ann = pod.annotations_mut();
        match token {
            Some(t) => ann.insert(run_ann::RUN_NOW.into(), t.to_string()),
            None => ann.remove(run_ann::RUN_NOW),
        };
        let key = format!("{ns}/{name}");
        if !ctx.admit(&key) {
            held += 1;
            continue;
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let res = leading(ctx, api.create(&PostParams::default(), &pod)).await;
        if !super::created_or_exists(&res) {
            ctx.release(&key);
        }
        match res? {
            Ok(_) => {
                ctx.metrics.job_created(ProbeContext::Kubelet);
                ctx.note_created(uid, &name);
                created += 1;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                ctx.note_created(uid, &name);
            }
            Err(source) => {
                let Some(message) = permanent_refusal(&source) else {
                    return Err(Error::Canary {
                        action: "creating",
                        object: format!("{ns}/{name}"),
                        source,
                    });
                };
                warn!(%ns, %name, %message, "the API server refused the pull canary; it is a ProbeNotCreated result of its run");
                let record = outcome_record(
                    &CanaryOutcome::NotRun {
                        reason: Reason::ProbeNotCreated,
                        message: format!(
                            "the API server refused to create pull canary {ns}/{name}: {message}"
                        ),
                    },
                    canary_target(&pod),
                    "",
                    "",
                );
                if let Some(record) = record {
                    ctx.canaries.note(
                        uid,
                        run,
                        &name,
                        Settled {
                            member: member_of(&pod, true),
                            record,
                            deleted: true,
                        },
                    );
                }
            }
        }
    }
    if created > 0 {
        info!(run = %id, created, "pull canaries created");
    }
    if held > 0 {
        info!(run = %id, held, "pull canaries wait for room under --max-probe-jobs-in-flight");
    }
    Ok(CanariesCreated { created, held })
}

/// Deletes the cached canaries of check `uid` (of run `run`, or of every run) and forgets
/// settled ones when every run goes.
pub async fn delete_run(
    ctx: &Context,
    ns: &str,
    uid: &str,
    run: Option<&str>,
) -> Result<(), Error> {
    for pod in cached(ctx, ns, uid, run) {
        if ctx.canaries.deleted(uid, &pod.name_any()) == Some(true) {
            continue;
        }
        delete_pod(ctx, &pod).await?;
    }
    if run.is_none() {
        ctx.canaries.forget(uid);
    }
    Ok(())
}
