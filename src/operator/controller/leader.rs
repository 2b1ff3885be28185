//! Leader election through a `coordination.k8s.io/v1` Lease: only the holder runs the
//! controller, so two replicas never run the same check at once.
//!
//! The semantics are client-go's:
//! - A candidate never compares the holder's `renewTime` with its own wall clock. It records
//!   the Lease it read (holder, `renewTime`, `resourceVersion`) and the local *monotonic*
//!   instant at which it last saw that change ([`Observer`]); the Lease has expired only when
//!   `leaseDurationSeconds` have passed on that clock since then. A candidate whose wall clock
//!   runs fast therefore cannot take a Lease that is being renewed.
//! - The holder renews every retry period; each attempt has its own short timeout and no
//!   automatic retries. When no renewal succeeded within the renew deadline, counted from the
//!   *start* of the last successful request, leadership is lost at that moment
//!   ([`Leadership`] turns false) without waiting for requests in flight. Another candidate
//!   counts the lease duration from when it *saw* that renewal, which is after its start:
//!   the holder stops at least `lease duration - renew deadline` before anyone can take over.
//! - Writes carry the `resourceVersion` read, so a concurrent writer gets 409.

use crate::engine::inputs::InputError;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Lease duration, renew deadline and retry period (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a candidate waits, on its own clock, after the last change it saw of the
    /// Lease before it takes the Lease over (`--lease-duration`).
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal (`--lease-renew-deadline`).
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate looks (`--lease-retry-period`).
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// Checks renew deadline < lease duration and retry period < renew deadline; the error
    /// names the flag.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, InputError> {
        let show = |d: Duration| crate::engine::inputs::format_duration(d);
        if lease_duration < Duration::from_secs(1) || lease_duration.subsec_nanos() != 0 {
            return Err(InputError::new(
                "--lease-duration",
                &show(lease_duration),
                "must be a whole number of seconds, at least 1s (the Lease stores seconds)",
            ));
        }
        if retry_period < Duration::from_millis(100) {
            return Err(InputError::new(
                "--lease-retry-period",
                &show(retry_period),
                "must be at least 100ms",
            ));
        }
        if renew_deadline >= lease_duration {
            return Err(InputError::new(
                "--lease-renew-deadline",
                &show(renew_deadline),
                format!(
                    "must be shorter than --lease-duration ({})",
                    show(lease_duration)
                ),
            ));
        }
        if retry_period >= renew_deadline {
            return Err(InputError::new(
                "--lease-retry-period",
                &show(retry_period),
                format!(
                    "must be shorter than --lease-renew-deadline ({})",
                    show(renew_deadline)
                ),
            ));
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    /// The timeout of one attempt (a read and a write of the Lease): half the renew deadline,
    /// so that a hung request leaves room for another attempt before the deadline.
    pub fn attempt_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }
}

/// What to do about the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nobody holds it (none yet, released, or expired): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it; it expires in this long (on our clock) unless it changes.
    Wait(Duration),
}

/// What identifies one state of the Lease: any change restarts the expiry clock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    resource_version: Option<String>,
    /// `leaseDurationSeconds` as the holder wrote it.
    duration: Option<Duration>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            acquire_time: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64)),
        }
    }
}

/// The last state of the Lease a candidate saw, and the local monotonic instant at which it
/// last changed (client-go's `observedRecord` / `observedTime`). Pure: the caller passes the
/// clock.
#[derive(Debug, Default)]
pub struct Observer {
    /// `None`: nothing read yet, or the Lease does not exist.
    seen: Option<(Record, Instant)>,
}

impl Observer {
    /// Records the Lease as read at `now`. The expiry clock restarts only when the holder,
    /// `renewTime`, `acquireTime`, `leaseDurationSeconds` or `resourceVersion` changed.
    pub fn observe(&mut self, lease: Option<&Lease>, now: Instant) {
        let Some(lease) = lease else {
            self.seen = None;
            return;
        };
        let rec = Record::of(lease);
        match &self.seen {
            Some((old, _)) if *old == rec => {}
            _ => self.seen = Some((rec, now)),
        }
    }

    /// The current holder as last seen ("" when nobody).
    pub fn holder(&self) -> &str {
        self.seen
            .as_ref()
            .map(|(r, _)| r.holder.as_str())
            .unwrap_or("")
    }

    /// What identity `me` should do at `now`; `duration` is used when the Lease does not say
    /// its own.
    pub fn action(&self, me: &str, now: Instant, duration: Duration) -> LeaseAction {
        let Some((rec, at)) = &self.seen else {
            return LeaseAction::Acquire;
        };
        if rec.holder.is_empty() {
            return LeaseAction::Acquire;
        }
        if rec.holder == me {
            return LeaseAction::Renew;
        }
        let expires = *at + rec.duration.unwrap_or(duration);
        if expires <= now {
            LeaseAction::Acquire
        } else {
            LeaseAction::Wait(expires - now)
        }
    }
}

/// Whether this replica leads, shared with the controller: every Job creation, status write
/// and deletion checks it first, and is abandoned the moment it turns false. The elector
/// publishes until when it leads (the renew deadline after its last good renewal, `None`:
/// not leading), and [`Leadership::held`] compares that with the monotonic clock itself: a
/// replica that was frozen (SIGSTOP, a paused VM) past its deadline does not lead on waking,
/// whichever task runs first.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<Option<Instant>>,
    /// Keeps the channel of [`Leadership::always`] open.
    _always: Option<Arc<watch::Sender<Option<Instant>>>>,
}

/// A deadline that never passes (no leader election, tests).
pub fn unbounded() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl Leadership {
    /// A signal the elector sets: not leading until it sends a deadline.
    pub fn channel() -> (watch::Sender<Option<Instant>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self { rx, _always: None })
    }

    /// Without leader election: always leading.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(Some(unbounded()));
        Self {
            rx,
            _always: Some(Arc::new(tx)),
        }
    }

    /// Whether this replica leads now: the elector says so, its deadline has not passed, and
    /// the elector is still there.
    pub fn held(&self) -> bool {
        self.rx.borrow().is_some_and(|until| Instant::now() < until)
            && self.rx.has_changed().is_ok()
    }

    /// Resolves once this replica does not lead (at once if it does not now): when the elector
    /// says so, or when the deadline it published passes.
    pub async fn lost(&self) {
        let mut rx = self.rx.clone();
        loop {
            let Some(until) = *rx.borrow_and_update() else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The Lease as it should be after acquiring or renewing.
pub fn next_lease(
    current: Option<&Lease>,
    name: &str,
    namespace: &str,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        spec: None,
    });
    let mut spec = lease.spec.take().unwrap_or_default();
    let renewing = spec.holder_identity.as_deref() == Some(me);
    if !renewing {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(
            spec.lease_transitions
                .unwrap_or(0)
                .saturating_add(i32::from(current.is_some())),
        );
    }
    spec.holder_identity = Some(me.into());
    spec.lease_duration_seconds = Some(duration.as_secs().clamp(1, i32::MAX as u64) as i32);
    spec.renew_time = Some(MicroTime(now));
    lease.spec = Some(spec);
    lease
}

/// The result of one attempt to acquire or renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease now (written just now).
    Held,
    /// Someone else holds it and it has not expired on our clock.
    Standby { holder: String },
    /// The read or write failed, conflicted or timed out: nothing is known.
    Failed,
}

/// How [`Elector::hold`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Not renewed within the renew deadline, or taken by another replica: [`Leadership`]
    /// was turned false at that moment.
    Lost,
    /// Told to stop (the work has stopped): still the holder, ready to release.
    Stopped,
}

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    me: String,
    timings: LeaseTimings,
    observer: std::sync::Mutex<Observer>,
    /// Only for the `acquireTime`/`renewTime` written (for people and tools); never compared.
    wall: fn() -> Timestamp,
}

impl Elector {
    /// `client` is used for the Lease only; build it without kube's retry layer
    /// ([`lease_client_config`]): each attempt is bounded by [`LeaseTimings::attempt_timeout`].
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        me: &str,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            namespace: namespace.into(),
            me: me.into(),
            timings,
            observer: std::sync::Mutex::new(Observer::default()),
            wall: Timestamp::now,
        }
    }

    /// Replaces the wall clock (tests: a clock that runs ahead).
    #[cfg(test)]
    fn with_wall_clock(mut self, wall: fn() -> Timestamp) -> Self {
        self.wall = wall;
        self
    }

    pub fn timings(&self) -> LeaseTimings {
        self.timings
    }

    fn observe(&self, lease: Option<&Lease>, now: Instant) -> LeaseAction {
        let mut o = self.observer.lock().unwrap_or_else(|e| e.into_inner());
        o.observe(lease, now);
        o.action(&self.me, now, self.timings.lease_duration)
    }

    /// One round without a time limit: reads the Lease and acquires or renews it when it
    /// should.
    async fn try_once(&self) -> Attempt {
        let current = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, lease = %self.name, "reading the lease");
                return Attempt::Failed;
            }
        };
        let action = self.observe(current.as_ref(), Instant::now());
        if let LeaseAction::Wait(left) = action {
            let holder = current
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default();
            debug!(%holder, ?left, "standing by");
            return Attempt::Standby { holder };
        }
        let lease = next_lease(
            current.as_ref(),
            &self.name,
            &self.namespace,
            &self.me,
            (self.wall)(),
            self.timings.lease_duration,
        );
        let res = if current.is_some() {
            // Carries the resourceVersion read: a concurrent update gets 409.
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match res {
            Ok(written) => {
                self.observe(Some(&written), Instant::now());
                if action == LeaseAction::Acquire {
                    info!(lease = %self.name, identity = %self.me, "acquired leadership");
                }
                Attempt::Held
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!("lease changed concurrently; reading it again next round");
                Attempt::Failed
            }
            Err(e) => {
                warn!(error = %e, lease = %self.name, "writing the lease");
                Attempt::Failed
            }
        }
    }

    /// One round, abandoned after `limit` (its requests are dropped, not retried).
    pub async fn attempt(&self, limit: Duration) -> Attempt {
        match tokio::time::timeout(limit, self.try_once()).await {
            Ok(a) => a,
            Err(_) => {
                warn!(lease = %self.name, ?limit, "lease request timed out");
                Attempt::Failed
            }
        }
    }

    /// Waits until this replica holds the Lease; returns the instant at which the successful
    /// attempt started (the renew deadline counts from there).
    pub async fn acquire(&self) -> Instant {
        loop {
            let start = Instant::now();
            if self.attempt(self.timings.attempt_timeout()).await == Attempt::Held {
                return start;
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Renews the Lease every retry period while it is held, from `since` (the start of the
    /// attempt that acquired it), until `stop` resolves or leadership is lost. On loss,
    /// `leading` is set to false at the very moment the renew deadline passes (or the Lease is
    /// seen with another holder), without waiting for the request in flight.
    pub async fn hold(
        &self,
        since: Instant,
        leading: &watch::Sender<Option<Instant>>,
        stop: impl std::future::Future<Output = ()>,
    ) -> HoldEnd {
        let t = self.timings;
        let mut last_ok = since;
        tokio::pin!(stop);
        loop {
            let deadline = last_ok + t.renew_deadline;
            leading.send_replace(Some(deadline));
            let renew = async {
                tokio::time::sleep(t.retry_period).await;
                let start = Instant::now();
                let limit = t
                    .attempt_timeout()
                    .min(deadline.saturating_duration_since(start));
                (start, self.attempt(limit).await)
            };
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => {
                    leading.send_replace(None);
                    warn!(lease = %self.name, renew_deadline = ?t.renew_deadline,
                          "lost leadership: not renewed within the renew deadline");
                    return HoldEnd::Lost;
                }
                _ = &mut stop => return HoldEnd::Stopped,
                (start, res) = renew => match res {
                    Attempt::Held => last_ok = start,
                    Attempt::Standby { holder } => {
                        leading.send_replace(None);
                        warn!(lease = %self.name, %holder, "lost leadership: the lease has another holder");
                        return HoldEnd::Lost;
                    }
                    Attempt::Failed => {}
                },
            }
        }
    }

    /// Gives the Lease up (on shutdown, after the work has stopped), so that another replica
    /// takes over at once: the holder is cleared, conditionally on the `resourceVersion` read.
    pub async fn release(&self) {
        let release = async {
            let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
                return;
            };
            let Some(spec) = lease.spec.as_mut() else {
                return;
            };
            if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
                return;
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime((self.wall)()));
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => info!(lease = %self.name, "released leadership"),
                Err(e) => warn!(error = %e, "releasing the lease"),
            }
        };
        if tokio::time::timeout(self.timings.attempt_timeout(), release)
            .await
            .is_err()
        {
            warn!(lease = %self.name, "releasing the lease timed out");
        }
    }
}

/// The configuration of the Lease client: kube's default retry policy (429/503/504 retried up
/// to 15 times with backoff) off, and read/write timeouts of one attempt, so that one renewal
/// cannot block past the renew deadline.
pub fn lease_client_config(mut cfg: kube::Config, timings: &LeaseTimings) -> kube::Config {
    let limit = timings.attempt_timeout();
    cfg.default_retry = false;
    cfg.connect_timeout = Some(cfg.connect_timeout.map_or(limit, |c| c.min(limit)));
    cfg.read_timeout = Some(limit);
    cfg.write_timeout = Some(limit);
    cfg
}

/// Our identity: the pod name (downward API `POD_NAME`), else the host name, plus the pid.
pub fn identity(env: impl Fn(&str) -> Option<String>) -> String {
    if let Some(p) = env("POD_NAME").filter(|p| !p.is_empty()) {
        return p;
    }
    let host = env("HOSTNAME")
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "regcheck".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn lease(holder: Option<&str>, renew: Option<i64>, secs: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("regcheck-controller".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renew.map(|s| MicroTime(ts(s))),
                lease_duration_seconds: secs,
                lease_transitions: Some(2),
                ..Default::default()
            }),
        }
    }

    fn with_rv(mut l: Lease, rv: &str) -> Lease {
        l.metadata.resource_version = Some(rv.into());
        l
    }

    #[test]
    fn observer_table() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (name, lease, seen at, asked at, want)
        let cases = [
            ("no lease", None, 0, 0, LeaseAction::Acquire),
            (
                "lease without spec",
                Some(Lease::default()),
                0,
                0,
                LeaseAction::Acquire,
            ),
            (
                "released",
                Some(lease(None, Some(0), Some(15))),
                0,
                1,
                LeaseAction::Acquire,
            ),
            (
                "empty holder",
                Some(lease(Some(""), Some(0), Some(15))),
                0,
                1,
                LeaseAction::Acquire,
            ),
            (
                "mine",
                Some(lease(Some("me"), Some(0), Some(15))),
                0,
                100,
                LeaseAction::Renew,
            ),
            (
                "other, seen 5s ago",
                Some(lease(Some("other"), Some(0), Some(15))),
                0,
                5,
                LeaseAction::Wait(Duration::from_secs(10)),
            ),
            (
                "other, unchanged for the whole duration",
                Some(lease(Some("other"), Some(0), Some(15))),
                0,
                15,
                LeaseAction::Acquire,
            ),
            (
                "other, its own longer duration",
                Some(lease(Some("other"), Some(0), Some(60))),
                0,
                30,
                LeaseAction::Wait(Duration::from_secs(30)),
            ),
            (
                "other, no duration: ours",
                Some(lease(Some("other"), Some(0), None)),
                0,
                10,
                LeaseAction::Wait(Duration::from_secs(5)),
            ),
            (
                // No renewTime at all: still a holder; its expiry counts from when we saw it.
                "other, never renewed",
                Some(lease(Some("other"), None, Some(15))),
                0,
                0,
                LeaseAction::Wait(Duration::from_secs(15)),
            ),
        ];
        for (name, l, seen, asked, want) in cases {
            let mut o = Observer::default();
            o.observe(l.as_ref(), at(seen));
            assert_eq!(o.action("me", at(asked), d), want, "{name}");
        }
    }

    /// The renewTime says nothing about expiry: a Lease renewed an hour ago by the holder's
    /// clock (or one that looks 15 s old to a candidate whose clock runs 15 s fast) is
    /// healthy until it stops changing for a whole duration on the candidate's own clock.
    #[test]
    fn expiry_is_judged_on_the_local_monotonic_clock_only() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut o = Observer::default();
        // renewTime far in the past by any wall clock.
        o.observe(
            Some(&with_rv(lease(Some("other"), Some(-3600), Some(15)), "1")),
            at(0),
        );
        assert_eq!(
            o.action("me", at(1), d),
            LeaseAction::Wait(Duration::from_secs(14))
        );
        // Renewed every 2 s (new renewTime and resourceVersion): never expires.
        for (i, s) in (2..=60).step_by(2).enumerate() {
            let l = with_rv(
                lease(Some("other"), Some(s as i64), Some(15)),
                &format!("{}", i + 2),
            );
            o.observe(Some(&l), at(s));
            assert_eq!(
                o.action("me", at(s + 1), d),
                LeaseAction::Wait(Duration::from_secs(14))
            );
        }
        // Read again unchanged: the clock does not restart; 15 s after the last change it
        // has expired.
        let last = with_rv(lease(Some("other"), Some(60), Some(15)), "31");
        o.observe(Some(&last), at(70));
        assert_eq!(
            o.action("me", at(74), d),
            LeaseAction::Wait(Duration::from_secs(1))
        );
        assert_eq!(o.action("me", at(75), d), LeaseAction::Acquire);
        // Only the resourceVersion changed (e.g. a label): that is a change too.
        o.observe(Some(&with_rv(last, "32")), at(76));
        assert_eq!(
            o.action("me", at(77), d),
            LeaseAction::Wait(Duration::from_secs(14))
        );
        // Another holder: a change.
        o.observe(
            Some(&with_rv(lease(Some("third"), Some(60), Some(15)), "32")),
            at(80),
        );
        assert_eq!(o.holder(), "third");
        assert_eq!(
            o.action("me", at(94), d),
            LeaseAction::Wait(Duration::from_secs(1))
        );
    }

    #[test]
    fn timings_are_validated_with_the_flag_named() {
        let s = Duration::from_secs;
        assert_eq!(
            LeaseTimings::new(s(15), s(10), s(2)).unwrap(),
            LeaseTimings::default()
        );
        assert_eq!(LeaseTimings::default().attempt_timeout(), s(5));
        let cases = [
            ((s(15), s(15), s(2)), "--lease-renew-deadline: '15s'"),
            ((s(15), s(20), s(2)), "--lease-renew-deadline: '20s'"),
            ((s(15), s(10), s(10)), "--lease-retry-period: '10s'"),
            ((s(15), s(10), Duration::ZERO), "--lease-retry-period"),
            ((Duration::ZERO, s(10), s(2)), "--lease-duration"),
            (
                (Duration::from_millis(15_500), s(10), s(2)),
                "--lease-duration",
            ),
        ];
        for ((l, r, p), want) in cases {
            let e = LeaseTimings::new(l, r, p).unwrap_err().to_string();
            assert!(e.starts_with(want), "{l:?} {r:?} {p:?}: {e}");
        }
    }

    #[test]
    fn lease_client_has_no_retries_and_short_timeouts() {
        let cfg = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        assert!(cfg.default_retry, "kube retries by default");
        let c = lease_client_config(cfg, &LeaseTimings::default());
        assert!(!c.default_retry);
        assert_eq!(c.read_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.write_timeout, Some(Duration::from_secs(5)));
        assert!(
            c.connect_timeout
                .is_some_and(|t| t <= Duration::from_secs(5))
        );
    }

    /// A replica frozen past its deadline (SIGSTOP) does not lead on waking, before the
    /// renewing task has run at all: `held` reads the deadline, `lost` resolves at it.
    #[tokio::test(start_paused = true)]
    async fn leadership_ends_at_the_published_deadline_by_itself() {
        let (tx, l) = Leadership::channel();
        tx.send_replace(Some(Instant::now() + Duration::from_secs(10)));
        assert!(l.held());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(l.held());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!l.held(), "past the deadline, nobody having said so");
        tokio::time::timeout(Duration::from_millis(1), l.lost())
            .await
            .expect("lost at once");
        // A renewal moves the deadline: lost() waits for the new one.
        tx.send_replace(Some(Instant::now() + Duration::from_secs(5)));
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.lost().await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send_replace(Some(Instant::now() + Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished(), "renewed at 3 s: leads until 8 s");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(waiting.is_finished());
    }

    #[test]
    fn leadership_signal() {
        let (tx, l) = Leadership::channel();
        assert!(!l.held());
        tx.send_replace(Some(unbounded()));
        assert!(l.held());
        tx.send_replace(None);
        assert!(!l.held());
        tx.send_replace(Some(unbounded()));
        drop(tx);
        assert!(!l.held(), "an elector that went away does not lead");
        assert!(Leadership::always().held());
    }

    #[test]
    fn next_lease_acquires_and_renews() {
        let d = Duration::from_secs(15);
        let new = next_lease(None, "l", "ops", "me", ts(0), d);
        let s = new.spec.as_ref().unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.lease_transitions, Some(0));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(new.metadata.namespace.as_deref(), Some("ops"));

        let taken = next_lease(
            Some(&lease(Some("other"), Some(0), Some(15))),
            "l",
            "ops",
            "me",
            ts(20),
            d,
        );
        let s = taken.spec.as_ref().unwrap();
        assert_eq!(s.lease_transitions, Some(3));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(20))));
        // The resourceVersion read is kept: the update is conditional.
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));

        let renewed = next_lease(Some(&taken), "l", "ops", "me", ts(25), d);
        let s = renewed.spec.as_ref().unwrap();
        assert_eq!(s.lease_transitions, Some(3));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(20))));
        assert_eq!(s.renew_time, Some(MicroTime(ts(25))));
    }

    #[test]
    fn identity_prefers_pod_name() {
        let env = |k: &str| (k == "POD_NAME").then(|| "regcheck-controller-abc".to_string());
        assert_eq!(identity(env), "regcheck-controller-abc");
        let env = |k: &str| (k == "HOSTNAME").then(|| "box".to_string());
        assert!(identity(env).starts_with("box-"));
    }
}

/// Elections against a mocked API server that stores one Lease (conditional writes, 409 on a
/// stale `resourceVersion`) and delays or throttles the writes of chosen candidates. Time is
/// tokio's paused clock: deadlines are exact and the tests cannot be timing-flaky.
#[cfg(test)]
mod mock_tests {
    use super::*;
    use ::http::{Method, Request, Response};
    use k8s_openapi::jiff::SignedDuration;
    use kube::client::Body;
    use serde_json::{Value, json};
    use std::sync::Mutex;

    const NS: &str = "ops";
    const NAME: &str = "regcheck-controller";

    /// A request as the server received it.
    #[derive(Debug, Clone)]
    struct Seen {
        at: Instant,
        who: String,
        method: Method,
    }

    /// A write the server applied.
    #[derive(Debug, Clone)]
    struct Applied {
        at: Instant,
        who: String,
        holder: Option<String>,
    }

    #[derive(Default)]
    struct Server {
        lease: Option<Value>,
        rv: u64,
        seen: Vec<Seen>,
        applied: Vec<Applied>,
    }

    /// How the server answers the `n`-th write (0-based) of candidate `who`: after this
    /// delay, with this error code (`None`: the write is applied when answered).
    type Policy = Arc<dyn Fn(&str, &Method, usize) -> (Duration, Option<u16>) + Send + Sync>;

    fn prompt() -> Policy {
        Arc::new(|_, _, _| (Duration::ZERO, None))
    }

    fn status(code: u16) -> Value {
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": format!("mock {code}"), "code": code,
        "reason": match code {
            404 => "NotFound",
            409 => "Conflict",
            429 => "TooManyRequests",
            _ => "ServiceUnavailable",
        }})
    }

    impl Server {
        fn answer(
            &mut self,
            who: &str,
            method: &Method,
            mut body: Value,
            code: Option<u16>,
        ) -> (u16, Value) {
            if *method == Method::GET {
                return match &self.lease {
                    Some(l) => (200, l.clone()),
                    None => (404, status(404)),
                };
            }
            if let Some(c) = code {
                return (c, status(c));
            }
            let stored_rv = self
                .lease
                .as_ref()
                .map(|l| l["metadata"]["resourceVersion"].clone());
            match (method.as_str(), stored_rv) {
                ("POST", Some(_)) => return (409, status(409)),
                ("PUT", None) => return (404, status(404)),
                ("PUT", Some(rv)) if body["metadata"]["resourceVersion"] != rv => {
                    return (409, status(409));
                }
                _ => {}
            }
            self.rv += 1;
            body["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.applied.push(Applied {
                at: Instant::now(),
                who: who.into(),
                holder: body["spec"]["holderIdentity"].as_str().map(String::from),
            });
            self.lease = Some(body.clone());
            (if *method == Method::POST { 201 } else { 200 }, body)
        }

        fn writes_of(&self, who: &str) -> Vec<Instant> {
            self.seen
                .iter()
                .filter(|s| s.who == who && s.method != Method::GET)
                .map(|s| s.at)
                .collect()
        }
    }

    /// A candidate `who` whose Lease requests the shared `server` answers under `policy`.
    fn candidate(server: &Arc<Mutex<Server>>, who: &str, policy: Policy) -> Elector {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (server, name) = (server.clone(), who.to_string());
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().clone();
                assert!(
                    req.uri().path().starts_with(&format!(
                        "/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
                    )),
                    "{}",
                    req.uri()
                );
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                let (delay, code) = {
                    let mut s = server.lock().unwrap();
                    let n = s.writes_of(&name).len();
                    s.seen.push(Seen {
                        at: Instant::now(),
                        who: name.clone(),
                        method: method.clone(),
                    });
                    if method == Method::GET {
                        (Duration::ZERO, None)
                    } else {
                        policy(&name, &method, n)
                    }
                };
                let (server, name) = (server.clone(), name.clone());
                // Each answer on its own: a delayed one does not hold up the next request.
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // Applied when answered, even if the client gave up waiting.
                    let (code, reply) = server.lock().unwrap().answer(&name, &method, body, code);
                    send.send_response(
                        Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                            .unwrap(),
                    );
                });
            }
        });
        Elector::new(
            Client::new(svc, "default"),
            NS,
            NAME,
            who,
            LeaseTimings::default(),
        )
    }

    fn fast_clock() -> Timestamp {
        Timestamp::now() + SignedDuration::from_secs(15)
    }

    /// Acquires within 10 minutes of (paused) time.
    async fn acquire(el: &Elector) -> Instant {
        tokio::time::timeout(Duration::from_secs(600), el.acquire())
            .await
            .expect("never acquired")
    }

    /// Holds as the controller does: `leading` turns true, `hold` renews until `stop`.
    async fn lead(
        el: &Elector,
        stop: impl std::future::Future<Output = ()>,
    ) -> (Instant, HoldEnd, Leadership, Instant) {
        let since = acquire(el).await;
        let (tx, leadership) = Leadership::channel();
        tx.send_replace(Some(unbounded()));
        let end = el.hold(since, &tx, stop).await;
        (since, end, leadership, Instant::now())
    }

    /// (a) The leader's renewals hang (answered after 60 s, longer than the renew deadline):
    /// it stops leading exactly at the renew deadline after the start of its last successful
    /// write, and a standby takes over only after that, so they never lead at once.
    #[tokio::test(start_paused = true)]
    async fn hung_renewals_lose_at_the_renew_deadline_before_a_standby_takes_over() {
        let t = LeaseTimings::default();
        let server = Arc::new(Mutex::new(Server::default()));
        let slow: Policy = Arc::new(|who, m, _| {
            if who == "a" && *m == Method::PUT {
                (Duration::from_secs(60), None)
            } else {
                (Duration::ZERO, None)
            }
        });
        let a = candidate(&server, "a", slow.clone());
        let b = Arc::new(candidate(&server, "b", slow));
        let since = acquire(&a).await;
        let (tx, leadership) = Leadership::channel();
        tx.send_replace(Some(unbounded()));
        let standby = tokio::spawn({
            let b = b.clone();
            async move {
                let start = b.acquire().await;
                (start, Instant::now())
            }
        });
        let watcher = tokio::spawn({
            let l = leadership.clone();
            async move {
                l.lost().await;
                Instant::now()
            }
        });
        assert_eq!(
            a.hold(since, &tx, std::future::pending()).await,
            HoldEnd::Lost
        );
        let lost_at = watcher.await.unwrap();
        assert!(!leadership.held());
        let after = lost_at - since;
        assert!(
            after >= t.renew_deadline && after <= t.renew_deadline + Duration::from_millis(10),
            "lost {after:?} after the last successful renewal started"
        );
        let (b_start, b_leads) = standby.await.unwrap();
        assert!(
            b_start >= lost_at + (t.lease_duration - t.renew_deadline),
            "b started taking over {:?} after a stopped",
            b_start - lost_at
        );
        assert!(b_leads - since >= t.lease_duration);
        // Let a's hung renewals arrive at the server (60 s late): they conflict.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let s = server.lock().unwrap();
        let a_applied: Vec<_> = s.applied.iter().filter(|w| w.who == "a").collect();
        assert_eq!(
            a_applied.len(),
            1,
            "only the acquiring write of a applied: {a_applied:?}"
        );
        assert!(
            s.seen.iter().all(|r| r.who != "a" || r.at <= lost_at),
            "a asked after losing"
        );
        assert_eq!(
            s.lease.as_ref().unwrap()["spec"]["holderIdentity"],
            "b",
            "b holds the lease"
        );
    }

    /// (b) Renewals answered 429 and 503: one write per retry period (no retry storm), and
    /// leadership is lost at the renew deadline.
    #[tokio::test(start_paused = true)]
    async fn throttled_renewals_are_not_retried_and_lose_at_the_deadline() {
        let t = LeaseTimings::default();
        let server = Arc::new(Mutex::new(Server::default()));
        let throttled: Policy = Arc::new(|_, m, n| {
            if *m == Method::PUT {
                (Duration::ZERO, Some(if n % 2 == 0 { 429 } else { 503 }))
            } else {
                (Duration::ZERO, None)
            }
        });
        let a = candidate(&server, "a", throttled);
        let (since, end, leadership, lost_at) = lead(&a, std::future::pending()).await;
        assert_eq!(end, HoldEnd::Lost);
        assert!(!leadership.held());
        let after = lost_at - since;
        assert!(
            after >= t.renew_deadline && after <= t.renew_deadline + Duration::from_millis(10),
            "lost {after:?} after the acquiring write started"
        );
        let s = server.lock().unwrap();
        let puts: Vec<Instant> = s
            .seen
            .iter()
            .filter(|r| r.method == Method::PUT)
            .map(|r| r.at)
            .collect();
        // Renewals at 2, 4, 6, 8 s (and perhaps one at the deadline, cut off at once).
        assert!(
            (4..=5).contains(&puts.len()),
            "{} renewals: {puts:?}",
            puts.len()
        );
        for w in puts.windows(2) {
            assert!(
                w[1] - w[0] >= t.retry_period,
                "renewals {:?} apart",
                w[1] - w[0]
            );
        }
        assert_eq!(
            s.seen.len(),
            2 + 2 * puts.len(),
            "GET+POST, then GET+PUT per attempt"
        );
    }

    /// (c) A standby whose wall clock runs 15 s ahead does not take a Lease that keeps being
    /// renewed (the holder's renewTime looks a whole duration old to it).
    #[tokio::test(start_paused = true)]
    async fn standby_with_a_fast_clock_does_not_take_a_renewed_lease() {
        let server = Arc::new(Mutex::new(Server::default()));
        let a = candidate(&server, "a", prompt());
        let b = Arc::new(candidate(&server, "b", prompt()).with_wall_clock(fast_clock));
        let since = acquire(&a).await;
        let standby = tokio::spawn({
            let b = b.clone();
            async move { tokio::time::timeout(Duration::from_secs(60), b.acquire()).await }
        });
        let (tx, leadership) = Leadership::channel();
        tx.send_replace(Some(unbounded()));
        let end = a
            .hold(since, &tx, tokio::time::sleep(Duration::from_secs(60)))
            .await;
        assert_eq!(end, HoldEnd::Stopped);
        assert!(leadership.held());
        assert!(standby.await.unwrap().is_err(), "b took a healthy lease");
        let s = server.lock().unwrap();
        assert!(s.writes_of("b").is_empty(), "b wrote the lease");
        assert!(s.writes_of("a").len() >= 29, "a renewed every 2 s");
    }

    /// (d) A Lease that stopped changing is taken over only after the full duration (its own
    /// leaseDurationSeconds) on the standby's monotonic clock since it saw it, however old
    /// its renewTime is.
    #[tokio::test(start_paused = true)]
    async fn expired_lease_is_taken_after_the_full_duration_since_observed() {
        for secs in [15u64, 30] {
            let server = Arc::new(Mutex::new(Server::default()));
            {
                let mut s = server.lock().unwrap();
                s.rv = 1;
                s.lease = Some(json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": NAME, "namespace": NS, "resourceVersion": "1"},
                    "spec": {"holderIdentity": "gone", "leaseDurationSeconds": secs,
                             "renewTime": (Timestamp::now() - SignedDuration::from_hours(1))
                                 .strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
                }));
            }
            let b = candidate(&server, "b", prompt()).with_wall_clock(fast_clock);
            let t0 = Instant::now();
            let start = b.acquire().await;
            let waited = start - t0;
            let d = Duration::from_secs(secs);
            assert!(
                waited >= d && waited <= d + LeaseTimings::default().retry_period,
                "lease of {secs}s taken after {waited:?}"
            );
            let s = server.lock().unwrap();
            assert_eq!(s.writes_of("b").len(), 1, "one write, the takeover");
            let l = s.lease.as_ref().unwrap();
            assert_eq!(l["spec"]["holderIdentity"], "b");
            assert_eq!(l["spec"]["leaseTransitions"], 1);
        }
    }

    /// On SIGTERM the leader keeps renewing while the work drains, and releases the Lease
    /// only after; a standby then takes over at its next look.
    #[tokio::test(start_paused = true)]
    async fn renews_while_draining_and_releases_after() {
        let t = LeaseTimings::default();
        let server = Arc::new(Mutex::new(Server::default()));
        let a = candidate(&server, "a", prompt());
        let b = Arc::new(candidate(&server, "b", prompt()));
        let since = acquire(&a).await;
        let standby = tokio::spawn({
            let b = b.clone();
            async move {
                b.acquire().await;
                Instant::now()
            }
        });
        let (tx, leadership) = Leadership::channel();
        tx.send_replace(Some(unbounded()));
        // The drain lasts 30 s, twice the lease duration.
        let drained = since + Duration::from_secs(30);
        let end = a.hold(since, &tx, tokio::time::sleep_until(drained)).await;
        assert_eq!(end, HoldEnd::Stopped);
        assert!(leadership.held(), "still leading at the end of the drain");
        {
            let s = server.lock().unwrap();
            let renewals: Vec<_> = s.applied.iter().filter(|w| w.who == "a").collect();
            assert!(
                renewals.len() >= 15,
                "{} writes during the drain",
                renewals.len()
            );
            assert!(renewals.last().unwrap().at >= drained - t.retry_period);
            assert!(s.writes_of("b").is_empty());
        }
        drop(tx);
        a.release().await;
        let released = Instant::now();
        let b_leads = standby.await.unwrap();
        assert!(
            b_leads - released <= t.retry_period,
            "b took over {:?} after",
            b_leads - released
        );
        let s = server.lock().unwrap();
        let last_a = s.applied.iter().rfind(|w| w.who == "a").unwrap();
        assert_eq!(last_a.holder, None, "a's last write clears the holder");
    }
}
