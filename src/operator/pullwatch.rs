//! Workload pull failures, observed: the kubelet's `Failed` Events whose message is a failed
//! image pull, classified with [`crate::engine::pullerror::classify`] and indexed by the
//! registry host of the image (pure: no I/O; the watch lives in the controller).
//!
//! Memory is bounded however many Events arrive: at most [`MAX_HOSTS`] hosts, each with
//! [`BUCKETS`] per-minute counters, at most [`MAX_PODS`] distinct pods (as 64-bit hashes) and
//! [`MAX_ENDPOINTS`] data endpoints, one last failure (message capped at [`MESSAGE_CHARS`]);
//! and at most [`MAX_EVENTS_SEEN`] Event uids (hashes) to tell a new occurrence from a
//! re-delivered one. [`Index::approx_bytes`] gives the size.
//!
//! Only the kubelet's `Failed to pull image "<ref>": ...` form is counted: its companions
//! `Error: ErrImagePull` and `Error: ImagePullBackOff` repeat the same failure without naming
//! the image, so counting them would count one failure two or three times.

use crate::engine::findings::Reason;
use crate::engine::pullerror;
use crate::operator::crd::WorkloadPullFailures;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// Length of a bucket, in seconds.
pub const BUCKET_SECS: i64 = 60;
/// Buckets of the window (15 minutes).
pub const BUCKETS: usize = 15;
/// The window, in seconds.
pub const WINDOW_SECS: i64 = BUCKET_SECS * BUCKETS as i64;
/// Most registry hosts indexed; the least recently failed one makes room.
pub const MAX_HOSTS: usize = 64;
/// Most distinct pods tracked per host.
pub const MAX_PODS: usize = 1000;
/// Most data endpoints remembered per host.
pub const MAX_ENDPOINTS: usize = 4;
/// Most Event uids remembered (oldest forgotten first).
pub const MAX_EVENTS_SEEN: usize = 10_000;
/// Longest message kept, in characters (the status field's bound).
pub const MESSAGE_CHARS: usize = 1024;
/// Longest `namespace/name` or node kept.
const NAME_CHARS: usize = 317;

/// One kubelet Event, reduced to what the index needs (the controller builds it from a
/// `core/v1` Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    /// `metadata.uid` of the Event (one Event object counts repeats in `count`).
    pub uid: String,
    /// Occurrences so far (`count`, or `series.count`; at least 1).
    pub count: u32,
    /// Unix seconds of the last occurrence.
    pub time: i64,
    pub message: String,
    /// Namespace and name of the pod (`involvedObject`).
    pub namespace: String,
    pub pod: String,
    /// The node (`source.host` or `reportingInstance`).
    pub node: Option<String>,
}

/// What [`Index::observe`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Registry host of the image (`host` or `host:port`, lowercase; port 443 dropped).
    pub host: String,
    /// The host the pull failed on when it is another one (a data endpoint).
    pub endpoint: Option<String>,
    pub reason: Reason,
    /// New occurrences (the increase of the Event's count since it was last seen).
    pub new: u64,
}

#[derive(Debug, Clone)]
struct Last {
    reason: Reason,
    message: String,
    pod: String,
    node: Option<String>,
    time: i64,
}

#[derive(Debug, Clone)]
struct HostEntry {
    /// `(minute, count)` per slot `minute % BUCKETS`.
    buckets: [(i64, u64); BUCKETS],
    /// Hash of `namespace/name` -> unix seconds last seen.
    pods: HashMap<u64, i64>,
    /// Failures of pods refused because `pods` was full, per minute like `buckets`.
    not_tracked: [(i64, u64); BUCKETS],
    endpoints: VecDeque<String>,
    last: Last,
}

/// The index of pull failures by registry host.
#[derive(Debug, Default)]
pub struct Index {
    hosts: HashMap<String, HostEntry>,
    seen: HashMap<u64, u32>,
    seen_order: VecDeque<u64>,
    /// Hosts dropped to make room.
    pub evicted_hosts: u64,
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn cap(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The form hosts are compared in: lowercase, without a default port 443.
pub fn host_key(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    match h.strip_suffix(":443") {
        Some(bare) if !bare.is_empty() => bare.to_string(),
        _ => h,
    }
}

/// Whether an Event message is the kubelet's report of a failed pull that names the image.
pub fn is_pull_failure(message: &str) -> bool {
    message
        .get(..message.len().min(4096))
        .unwrap_or(message)
        .to_ascii_lowercase()
        .contains("failed to pull image \"")
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hosts indexed.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Event uids remembered.
    pub fn events_seen(&self) -> usize {
        self.seen.len()
    }

    /// Distinct pods tracked over all hosts.
    pub fn pods(&self) -> usize {
        self.hosts.values().map(|e| e.pods.len()).sum()
    }

    /// Approximate heap size in bytes (strings by length, maps by entries).
    pub fn approx_bytes(&self) -> usize {
        let entry = |k: &String, e: &HostEntry| {
            k.len()
                + std::mem::size_of::<HostEntry>()
                + e.pods.capacity() * 24
                + e.endpoints.iter().map(|s| s.len() + 24).sum::<usize>()
                + e.last.message.len()
                + e.last.pod.len()
                + e.last.node.as_ref().map_or(0, String::len)
        };
        self.hosts.iter().map(|(k, e)| entry(k, e)).sum::<usize>()
            + self.seen.capacity() * 16
            + self.seen_order.capacity() * 8
    }

    fn remember(&mut self, uid: &str, count: u32) -> u64 {
        let key = hash(uid);
        match self.seen.get_mut(&key) {
            Some(prev) => {
                let new = count.saturating_sub(*prev);
                *prev = (*prev).max(count);
                u64::from(new)
            }
            None => {
                while self.seen.len() >= MAX_EVENTS_SEEN {
                    match self.seen_order.pop_front() {
                        Some(old) => {
                            self.seen.remove(&old);
                        }
                        None => break,
                    }
                }
                self.seen.insert(key, count);
                self.seen_order.push_back(key);
                // First sight (a new Event, or one listed after a restart): its latest
                // occurrence. Earlier ones may be up to an hour old.
                1
            }
        }
    }

    /// Records one Event; `None` when it is not a pull failure naming an image, has been seen
    /// with this count already, or is older than the window.
    pub fn observe(&mut self, ev: &PullEvent, now: i64) -> Option<Observed> {
        if !is_pull_failure(&ev.message) {
            return None;
        }
        let new = self.remember(&ev.uid, ev.count.max(1));
        if new == 0 || ev.time <= now - WINDOW_SECS {
            return None;
        }
        let c = pullerror::classify(&ev.message);
        if c.reason == Reason::Healthy {
            return None;
        }
        let image = c.image.as_deref()?;
        let host = host_key(&pullerror::registry_of(image));
        let endpoint = c.host.as_deref().map(host_key).filter(|h| *h != host);
        let time = ev.time.min(now);
        if !self.hosts.contains_key(&host) && self.hosts.len() >= MAX_HOSTS {
            self.evict(now);
        }
        let pod = cap(&format!("{}/{}", ev.namespace, ev.pod), NAME_CHARS);
        let last = Last {
            reason: c.reason,
            message: cap(&c.message, MESSAGE_CHARS),
            pod: pod.clone(),
            node: ev.node.as_deref().map(|n| cap(n, 253)),
            time,
        };
        let e = self.hosts.entry(host.clone()).or_insert_with(|| HostEntry {
            buckets: [(i64::MIN, 0); BUCKETS],
            pods: HashMap::new(),
            not_tracked: [(i64::MIN, 0); BUCKETS],
            endpoints: VecDeque::new(),
            last: last.clone(),
        });
        let minute = time.div_euclid(BUCKET_SECS);
        add(&mut e.buckets, minute, new);
        let pk = hash(&pod);
        if let Some(t) = e.pods.get_mut(&pk) {
            *t = (*t).max(time);
        } else {
            if e.pods.len() >= MAX_PODS {
                e.pods.retain(|_, t| *t > now - WINDOW_SECS);
            }
            if e.pods.len() < MAX_PODS {
                e.pods.insert(pk, time);
            } else {
                add(&mut e.not_tracked, minute, new);
            }
        }
        if let Some(ep) = &endpoint
            && !e.endpoints.contains(ep)
        {
            if e.endpoints.len() >= MAX_ENDPOINTS {
                e.endpoints.pop_front();
            }
            e.endpoints.push_back(cap(ep, 260));
        }
        if time >= e.last.time {
            e.last = last;
        }
        Some(Observed {
            host,
            endpoint,
            reason: c.reason,
            new,
        })
    }

    /// Drops hosts without failures in the window; if none, the least recently failed one.
    fn evict(&mut self, now: i64) {
        let before = self.hosts.len();
        self.hosts.retain(|_, e| e.last.time > now - WINDOW_SECS);
        if self.hosts.len() == before
            && let Some(k) = self
                .hosts
                .iter()
                .min_by_key(|(_, e)| e.last.time)
                .map(|(k, _)| k.clone())
        {
            self.hosts.remove(&k);
        }
        self.evicted_hosts += (before - self.hosts.len()) as u64;
    }

    /// Failures over the window on any of `hosts` (registry host of the image, or the data
    /// endpoint the pull failed on); `None` when there were none.
    pub fn summary(&self, hosts: &[String], now: i64) -> Option<WorkloadPullFailures> {
        let keys: HashSet<String> = hosts.iter().map(|h| host_key(h)).collect();
        let from = (now - WINDOW_SECS).div_euclid(BUCKET_SECS);
        let mut count = 0u64;
        let mut pods = HashSet::new();
        let mut not_tracked = 0u64;
        let mut last: Option<(&String, &Last)> = None;
        for (host, e) in &self.hosts {
            if !keys.contains(host) && !e.endpoints.iter().any(|p| keys.contains(p)) {
                continue;
            }
            let n = in_window(&e.buckets, from, now);
            if n == 0 {
                continue;
            }
            count += n;
            pods.extend(
                e.pods
                    .iter()
                    .filter(|(_, t)| **t > now - WINDOW_SECS)
                    .map(|(k, _)| *k),
            );
            not_tracked += in_window(&e.not_tracked, from, now);
            if last.is_none_or(|(_, l)| e.last.time > l.time) {
                last = Some((host, &e.last));
            }
        }
        let (host, l) = last?;
        Some(WorkloadPullFailures {
            window_seconds: WINDOW_SECS as u32,
            count,
            pods: pods.len() as u32,
            pods_not_tracked: not_tracked,
            registry: host.clone(),
            last_reason: l.reason.as_str().to_string(),
            last_message: l.message.clone(),
            last_pod: l.pod.clone(),
            last_node: l.node.clone(),
            last_time: k8s_openapi::jiff::Timestamp::from_second(l.time)
                .ok()
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        })
    }
}

/// Adds `n` to the slot of `minute` (an occurrence older than what its slot holds now is
/// outside the window).
fn add(buckets: &mut [(i64, u64); BUCKETS], minute: i64, n: u64) {
    let slot = &mut buckets[minute.rem_euclid(BUCKETS as i64) as usize];
    if slot.0 == minute {
        slot.1 += n;
    } else if slot.0 < minute {
        *slot = (minute, n);
    }
}

/// The sum of the buckets after minute `from` up to `now`.
fn in_window(buckets: &[(i64, u64); BUCKETS], from: i64, now: i64) -> u64 {
    buckets
        .iter()
        .filter(|(m, _)| *m > from && *m <= now.div_euclid(BUCKET_SECS))
        .map(|(_, c)| c)
        .sum()
}

/// The `registry` label of `regcheck_workload_pull_failures_total`: the image's registry host
/// or the failing data endpoint when some check names it, else `other` (bounded labels).
pub fn metric_label(o: &Observed, named: &HashSet<String>) -> String {
    if named.contains(&o.host) {
        return o.host.clone();
    }
    match &o.endpoint {
        Some(ep) if named.contains(ep) => ep.clone(),
        _ => "other".into(),
    }
}

/// Per check, when its status was last refreshed for pull failures: at most one refresh per
/// `every` seconds (the status keeps up through the check's own reconciles meanwhile).
#[derive(Debug, Default)]
pub struct Throttle {
    last: HashMap<String, i64>,
}

impl Throttle {
    /// Whether `key` may be triggered at `now`; remembers it when so. Forgets keys older than
    /// the window, so the map stays as small as the set of recently failing checks.
    pub fn allow(&mut self, key: &str, now: i64, every: i64) -> bool {
        if self.last.len() > 4096 {
            self.last.retain(|_, t| *t > now - WINDOW_SECS);
        }
        match self.last.get(key) {
            Some(t) if now - *t < every => false,
            _ => {
                self.last.insert(key.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn msg(image: &str, tail: &str) -> String {
        format!("Failed to pull image \"{image}\": {tail}")
    }

    fn ev(uid: &str, count: u32, time: i64, message: &str, pod: &str) -> PullEvent {
        PullEvent {
            uid: uid.into(),
            count,
            time,
            message: message.into(),
            namespace: "team-a".into(),
            pod: pod.into(),
            node: Some("node-1".into()),
        }
    }

    const NOT_FOUND: &str = "rpc error: code = NotFound desc = failed to pull and unpack image \"reg.example.com/nope:1\": failed to resolve reference \"reg.example.com/nope:1\": reg.example.com/nope:1: not found";
    const TIMEOUT: &str = "rpc error: code = DeadlineExceeded desc = failed to pull and unpack image \"myreg.azurecr.io/app:1\": failed to copy: httpReadSeeker: failed open: failed to do request: Get \"https://myreg.westeurope.data.azurecr.io/docker/registry/v2/blobs/sha256/aa\": dial tcp 10.1.2.3:443: i/o timeout";

    #[test]
    fn counts_a_pull_failure_by_the_registry_of_its_image() {
        let mut ix = Index::new();
        let o = ix
            .observe(
                &ev("u1", 1, T0, &msg("reg.example.com/nope:1", NOT_FOUND), "p1"),
                T0,
            )
            .unwrap();
        assert_eq!(o.host, "reg.example.com");
        assert_eq!(o.reason, Reason::ImageNotFound);
        assert_eq!(o.new, 1);
        let s = ix.summary(&["reg.example.com".into()], T0 + 5).unwrap();
        assert_eq!((s.count, s.pods), (1, 1));
        assert_eq!(s.last_reason, "ImageNotFound");
        assert_eq!(s.last_pod, "team-a/p1");
        assert_eq!(s.last_node.as_deref(), Some("node-1"));
        assert_eq!(s.window_seconds, 900);
        assert!(s.last_message.contains("not found"), "{}", s.last_message);
        assert!(ix.summary(&["other.example.com".into()], T0).is_none());
    }

    #[test]
    fn skips_events_that_are_not_pull_failures_naming_an_image() {
        let mut ix = Index::new();
        for m in [
            "Error: ErrImagePull",
            "Error: ImagePullBackOff",
            "Failed to create pod sandbox: rpc error",
            "Error: failed to create containerd container",
        ] {
            assert_eq!(ix.observe(&ev("u", 1, T0, m, "p"), T0), None, "{m}");
        }
        assert_eq!(ix.hosts(), 0);
    }

    #[test]
    fn repeats_of_one_event_count_by_its_count_and_redeliveries_not_at_all() {
        let mut ix = Index::new();
        let m = msg("reg.example.com/nope:1", NOT_FOUND);
        assert_eq!(ix.observe(&ev("u1", 1, T0, &m, "p1"), T0).unwrap().new, 1);
        // The same Event again (a relist): nothing new.
        assert_eq!(ix.observe(&ev("u1", 1, T0, &m, "p1"), T0), None);
        // The kubelet counted two more.
        assert_eq!(
            ix.observe(&ev("u1", 3, T0 + 60, &m, "p1"), T0 + 60)
                .unwrap()
                .new,
            2
        );
        let s = ix.summary(&["reg.example.com".into()], T0 + 60).unwrap();
        assert_eq!((s.count, s.pods), (3, 1));
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let mut ix = Index::new();
        let m = msg("reg.example.com/nope:1", NOT_FOUND);
        ix.observe(&ev("u1", 1, T0, &m, "p1"), T0).unwrap();
        ix.observe(&ev("u2", 1, T0 + 600, &m, "p2"), T0 + 600)
            .unwrap();
        let h = ["reg.example.com".to_string()];
        assert_eq!(ix.summary(&h, T0 + 600).unwrap().count, 2);
        let s = ix.summary(&h, T0 + 1000).unwrap();
        assert_eq!((s.count, s.pods), (1, 1));
        assert!(ix.summary(&h, T0 + 600 + WINDOW_SECS + 60).is_none());
        // An Event older than the window (listed after a restart) is not counted.
        assert_eq!(ix.observe(&ev("u3", 4, T0, &m, "p3"), T0 + 3600), None);
    }

    #[test]
    fn a_data_endpoint_failure_shows_on_a_check_naming_the_endpoint() {
        let mut ix = Index::new();
        let o = ix
            .observe(
                &ev("u1", 1, T0, &msg("myreg.azurecr.io/app:1", TIMEOUT), "p1"),
                T0,
            )
            .unwrap();
        assert_eq!(o.host, "myreg.azurecr.io");
        assert_eq!(
            o.endpoint.as_deref(),
            Some("myreg.westeurope.data.azurecr.io")
        );
        assert_eq!(o.reason, Reason::DataEndpointBlocked);
        let s = ix
            .summary(&["MYREG.westeurope.data.azurecr.io:443".into()], T0)
            .unwrap();
        assert_eq!(s.registry, "myreg.azurecr.io");
        let named: HashSet<String> = ["myreg.westeurope.data.azurecr.io".to_string()].into();
        assert_eq!(metric_label(&o, &named), "myreg.westeurope.data.azurecr.io");
        assert_eq!(metric_label(&o, &HashSet::new()), "other");
    }

    #[test]
    fn host_keys_drop_the_default_port_only() {
        assert_eq!(host_key("Reg.IO:443"), "reg.io");
        assert_eq!(host_key("reg.io:5000"), "reg.io:5000");
        assert_eq!(host_key("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn throttle_lets_one_trigger_through_per_period() {
        let mut t = Throttle::default();
        assert!(t.allow("ns/a", T0, 30));
        assert!(!t.allow("ns/a", T0 + 29, 30));
        assert!(t.allow("ns/b", T0 + 29, 30));
        assert!(t.allow("ns/a", T0 + 30, 30));
    }

    /// 1,000,000 Events, one per 10 ms of simulated time, with 1,000,000 uids and pods drawn
    /// from 5,000,000: the first half over 2,000 hosts (hosts are evicted), the second over 64
    /// (each host's set of pods fills up). The index stays within its caps.
    #[test]
    fn memory_stays_bounded_under_a_million_events() {
        let mut ix = Index::new();
        let long = "x".repeat(5_000);
        let mut counted = 0u64;
        for i in 0..1_000_000u64 {
            let now = T0 + (i / 100) as i64;
            let hosts = if i < 500_000 { 2000 } else { MAX_HOSTS as u64 };
            let host = format!("reg{}.example.com", i % hosts);
            let tail = if i % 1000 == 0 { long.as_str() } else { "" };
            let image = format!("{host}/img:{}", i % 7);
            let m = msg(
                &image,
                &format!(
                    "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": {image}: not found {tail}"
                ),
            );
            let pod = format!("pod-{}", i.wrapping_mul(2_654_435_761) % 5_000_000);
            if let Some(o) = ix.observe(&ev(&format!("uid-{i}"), 1, now, &m, &pod), now) {
                counted += o.new;
            }
            assert!(ix.hosts() <= MAX_HOSTS);
        }
        let end = T0 + 10_000;
        assert_eq!(counted, 1_000_000);
        assert!(ix.hosts() <= MAX_HOSTS, "{}", ix.hosts());
        assert!(ix.pods() <= MAX_HOSTS * MAX_PODS, "{}", ix.pods());
        assert!(ix.events_seen() <= MAX_EVENTS_SEEN, "{}", ix.events_seen());
        assert!(ix.evicted_hosts > 0);
        let s = ix.summary(&["reg63.example.com".into()], end).unwrap();
        assert!(s.last_message.chars().count() <= MESSAGE_CHARS);
        assert!(s.pods as usize <= MAX_PODS, "{s:?}");
        assert!(s.pods_not_tracked > 0, "{s:?}");
        println!(
            "pullwatch bound: {} events -> {} hosts, {} pods, {} uids, ~{} KiB",
            counted,
            ix.hosts(),
            ix.pods(),
            ix.events_seen(),
            ix.approx_bytes() / 1024
        );
    }
}
