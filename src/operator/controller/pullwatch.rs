//! The watch of the kubelet's pull failures (thin edge of [`crate::operator::pullwatch`]):
//! `core/v1` Events with the field selector `reason=Failed` in every namespace feed the index
//! and `regcheck_workload_pull_failures_total`, and trigger a reconcile of the checks whose
//! hosts failed (at most one per check per [`TRIGGER_EVERY_SECS`]); each reconcile writes
//! `status.workloadPullFailures` from the index.

use super::Context;
use super::stored::{self, StoredCheck};
use crate::operator::crd::{RegistryConnectivityCheck, WorkloadPullFailures};
use crate::operator::pullwatch::{self as core, PullEvent, Throttle};
use crate::operator::spec::ValidSpec;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The field selector of the watch (the kubelet's reason for failed pulls, among others).
pub const FIELD_SELECTOR: &str = "reason=Failed";
/// Longest wait before a check with failures in the window is reconciled again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Fewest seconds between two reconciles of one check triggered by failures.
pub const TRIGGER_EVERY_SECS: i64 = 30;
/// How long the map of checks' hosts is reused.
const HOSTS_TTL: Duration = Duration::from_secs(10);

/// The hosts of a check that workload pulls are matched on: the registry and the data
/// endpoints (also those derived from regions).
pub fn check_hosts(check: &RegistryConnectivityCheck) -> Vec<String> {
    match ValidSpec::parse(&check.spec) {
        Ok(spec) => spec
            .endpoints
            .iter()
            .map(|e| {
                let h = if e.host.contains(':') {
                    format!("[{}]", e.host)
                } else {
                    e.host.clone()
                };
                core::host_key(&format!("{h}:{}", e.port))
            })
            .collect(),
        Err(_) => vec![core::host_key(&check.spec.registry)],
    }
}

/// The check's `status.workloadPullFailures` at `now` (unix seconds).
pub fn summary_of(
    ctx: &Context,
    check: &RegistryConnectivityCheck,
    now: i64,
) -> Option<WorkloadPullFailures> {
    let ix = ctx.pull_failures.as_ref()?.lock().ok()?;
    ix.summary(&check_hosts(check), now)
}

/// The index's view of a `core/v1` Event about a pod; `None` for other objects.
pub fn pull_event(ev: &Event) -> Option<PullEvent> {
    let obj = &ev.involved_object;
    if obj.kind.as_deref() != Some("Pod") {
        return None;
    }
    // regcheck's own pull canaries are results of their check, not workloads.
    if obj
        .name
        .as_deref()
        .is_some_and(crate::operator::jobs::is_canary_name)
    {
        return None;
    }
    let series = ev.series.as_ref();
    let time = series
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| ev.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| ev.event_time.as_ref().map(|t| t.0))
        .or_else(|| ev.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let count = series
        .and_then(|s| s.count)
        .or(ev.count)
        .unwrap_or(1)
        .max(1);
    Some(PullEvent {
        uid: ev.metadata.uid.clone()?,
        count: u32::try_from(count).unwrap_or(1),
        time: time.as_second(),
        message: ev.message.clone().unwrap_or_default(),
        namespace: obj.namespace.clone().unwrap_or_default(),
        pod: obj.name.clone().unwrap_or_default(),
        node: ev
            .source
            .as_ref()
            .and_then(|s| s.host.clone())
            .or_else(|| ev.reporting_instance.clone())
            .filter(|s| !s.is_empty()),
    })
}

/// One controller's checks and the way to trigger their reconciles.
pub struct Trigger {
    pub store: Store<StoredCheck>,
    pub tx: mpsc::Sender<ObjectRef<StoredCheck>>,
}

/// Host -> (controller, check) of every check, rebuilt at most every [`HOSTS_TTL`].
#[derive(Default)]
struct Hosts {
    built: Option<Instant>,
    map: HashMap<String, Vec<(usize, ObjectRef<StoredCheck>)>>,
    named: HashSet<String>,
}

impl Hosts {
    fn refresh(&mut self, triggers: &[Trigger]) {
        if self.built.is_some_and(|t| t.elapsed() < HOSTS_TTL) {
            return;
        }
        self.map.clear();
        for (i, t) in triggers.iter().enumerate() {
            for s in t.store.state() {
                let d = stored::decode(&s);
                for h in check_hosts(&d.check) {
                    self.map
                        .entry(h)
                        .or_default()
                        .push((i, ObjectRef::from_obj(s.as_ref())));
                }
            }
        }
        self.named = self.map.keys().cloned().collect();
        self.built = Some(Instant::now());
    }
}

/// Watches the kubelet's `Failed` Events until the stream ends (it does not: the watcher
/// retries with backoff).
pub async fn watch(ctx: Arc<Context>, mut triggers: Vec<Trigger>) {
    if ctx.pull_failures.is_none() {
        return;
    }
    let api: Api<Event> = Api::all(ctx.client.clone());
    let wc = watcher::Config::default().fields(FIELD_SELECTOR);
    let mut events = watcher(api, wc).default_backoff().applied_objects().boxed();
    let mut hosts = Hosts::default();
    let mut throttle = Throttle::default();
    info!(
        selector = FIELD_SELECTOR,
        "watching the kubelet's image pull failures"
    );
    while let Some(item) = events.next().await {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %super::error_chain(&e), "watch of pull failure Events failed; retrying");
                continue;
            }
        };
        let Some(pe) = pull_event(&ev) else { continue };
        let now = Timestamp::now().as_second();
        let observed = match ctx.pull_failures.as_ref().map(|m| m.lock()) {
            Some(Ok(mut ix)) => ix.observe(&pe, now),
            _ => None,
        };
        let Some(o) = observed else { continue };
        hosts.refresh(&triggers);
        let label = core::metric_label(&o, &hosts.named);
        ctx.metrics
            .workload_pull_failure(&label, o.reason.as_str(), o.new);
        debug!(host = %o.host, reason = o.reason.as_str(), pod = %pe.pod, "workload pull failure");
        let mut targets: Vec<&(usize, ObjectRef<StoredCheck>)> = Vec::new();
        for h in std::iter::once(&o.host).chain(o.endpoint.iter()) {
            targets.extend(hosts.map.get(h).into_iter().flatten());
        }
        for (i, r) in targets {
            if throttle.allow(&r.to_string(), now, TRIGGER_EVERY_SECS)
                && let Some(t) = triggers.get_mut(*i)
            {
                // A full channel already holds a trigger: the reconcile comes anyway.
                let _ = t.tx.try_send(r.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn a_kubelet_event_becomes_a_pull_event() {
        let ev = Event {
            metadata: kube::api::ObjectMeta {
                uid: Some("u-1".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("team-a".into()),
                name: Some("web-1".into()),
                ..Default::default()
            },
            reason: Some("Failed".into()),
            message: Some("Failed to pull image \"r.io/x:1\": not found".into()),
            count: Some(4),
            last_timestamp: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
            source: Some(EventSource {
                host: Some("node-7".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pe = pull_event(&ev).unwrap();
        assert_eq!(pe.uid, "u-1");
        assert_eq!(pe.count, 4);
        assert_eq!(pe.time, 1_700_000_000);
        assert_eq!(
            (pe.namespace.as_str(), pe.pod.as_str()),
            ("team-a", "web-1")
        );
        assert_eq!(pe.node.as_deref(), Some("node-7"));
        let mut other = ev.clone();
        other.involved_object.kind = Some("Node".into());
        assert_eq!(pull_event(&other), None);
        let mut canary = ev.clone();
        canary.involved_object.name = Some("rcc-lab-k-8fb36d278a".into());
        assert_eq!(pull_event(&canary), None, "a pull canary is no workload");
    }

    #[test]
    fn a_check_matches_on_its_registry_and_data_endpoints() {
        let check = RegistryConnectivityCheck::new(
            "acr",
            serde_json::from_value(serde_json::json!({
                "registry": "MyReg.azurecr.io",
                "dataEndpoints": ["myreg.westeurope.data.azurecr.io"],
            }))
            .unwrap(),
        );
        let h = check_hosts(&check);
        assert!(h.contains(&"myreg.azurecr.io".to_string()), "{h:?}");
        assert!(
            h.contains(&"myreg.westeurope.data.azurecr.io".to_string()),
            "{h:?}"
        );
        let lab = RegistryConnectivityCheck::new(
            "lab",
            serde_json::from_value(serde_json::json!({"registry": "10.0.0.5:5000"})).unwrap(),
        );
        assert_eq!(check_hosts(&lab), vec!["10.0.0.5:5000".to_string()]);
    }
}
