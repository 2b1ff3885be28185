//! Leader election through a `coordination.k8s.io/v1` Lease: only the holder runs the
//! controller, so two replicas never run the same check twice.
//!
//! [`lease_action`] decides (pure); [`Elector`] gets, creates and updates the Lease with its
//! `resourceVersion`, so a concurrent writer gets 409 and tries again later.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use std::time::Duration;
use tracing::{debug, info, warn};

/// What to do about the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nobody holds it (none yet, released, or expired): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it; it expires in this long unless renewed.
    Wait(Duration),
}

/// Decides about `lease` for identity `me` at `now`; `duration` is our lease duration, used when
/// the Lease does not say its own.
pub fn lease_action(
    lease: Option<&Lease>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseAction {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return LeaseAction::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return LeaseAction::Acquire;
    }
    if holder == me {
        return LeaseAction::Renew;
    }
    let secs = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(duration);
    let Some(last) = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0)
    else {
        return LeaseAction::Acquire;
    };
    let expires = last
        .checked_add(SignedDuration::try_from(secs).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    if expires <= now {
        LeaseAction::Acquire
    } else {
        LeaseAction::Wait(now.duration_until(expires).unsigned_abs())
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

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    me: String,
    duration: Duration,
}

/// How often the holder renews, as a fraction of the lease duration.
const RENEW_DIVISOR: u32 = 3;

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, me: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            namespace: namespace.into(),
            me: me.into(),
            duration,
        }
    }

    /// One round: reads the Lease and acquires or renews it when it should. Returns whether we
    /// hold it now, and how long to wait before the next round.
    pub async fn try_once(&self) -> (bool, Duration) {
        let renew_every = self.duration / RENEW_DIVISOR;
        let current = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, lease = %self.name, "reading the lease");
                return (false, renew_every);
            }
        };
        let now = Timestamp::now();
        match lease_action(current.as_ref(), &self.me, now, self.duration) {
            LeaseAction::Wait(d) => {
                debug!(holder = ?current.as_ref().and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.clone()), "standing by");
                (false, d.min(renew_every).max(Duration::from_secs(1)))
            }
            action => {
                let lease = next_lease(
                    current.as_ref(),
                    &self.name,
                    &self.namespace,
                    &self.me,
                    now,
                    self.duration,
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
                    Ok(_) => {
                        if action == LeaseAction::Acquire {
                            info!(lease = %self.name, identity = %self.me, "acquired leadership");
                        }
                        (true, renew_every)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        debug!("lease changed concurrently; trying again later");
                        (false, Duration::from_secs(2))
                    }
                    Err(e) => {
                        warn!(error = %e, lease = %self.name, "writing the lease");
                        (false, renew_every)
                    }
                }
            }
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            let (held, wait) = self.try_once().await;
            if held {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews the Lease while it is held; returns when it is lost (not renewed within its
    /// duration, or taken by someone else).
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            let (held, wait) = self.try_once().await;
            if held {
                last_ok = tokio::time::Instant::now();
            } else {
                // Taken by another replica, or not renewed for a whole lease duration.
                let taken = matches!(
                    self.api.get_opt(&self.name).await,
                    Ok(Some(ref l)) if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.me.as_str())
                );
                if taken || last_ok.elapsed() >= self.duration {
                    warn!(lease = %self.name, "lost leadership");
                    return;
                }
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Gives the Lease up (on shutdown), so that another replica takes over at once.
    pub async fn release(&self) {
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
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "releasing the lease");
        }
    }
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

    #[test]
    fn lease_action_table() {
        let d = Duration::from_secs(15);
        let cases = [
            ("no lease", None, 0, LeaseAction::Acquire),
            (
                "lease without spec",
                Some(Lease::default()),
                0,
                LeaseAction::Acquire,
            ),
            (
                "released",
                Some(lease(None, Some(0), Some(15))),
                1,
                LeaseAction::Acquire,
            ),
            (
                "empty holder",
                Some(lease(Some(""), Some(0), Some(15))),
                1,
                LeaseAction::Acquire,
            ),
            (
                "mine",
                Some(lease(Some("me"), Some(0), Some(15))),
                100,
                LeaseAction::Renew,
            ),
            (
                "other, fresh",
                Some(lease(Some("other"), Some(0), Some(15))),
                5,
                LeaseAction::Wait(Duration::from_secs(10)),
            ),
            (
                "other, expired",
                Some(lease(Some("other"), Some(0), Some(15))),
                15,
                LeaseAction::Acquire,
            ),
            (
                "other, its own longer duration",
                Some(lease(Some("other"), Some(0), Some(60))),
                30,
                LeaseAction::Wait(Duration::from_secs(30)),
            ),
            (
                "other, no duration: ours",
                Some(lease(Some("other"), Some(0), None)),
                10,
                LeaseAction::Wait(Duration::from_secs(5)),
            ),
            (
                "other, never renewed",
                Some(lease(Some("other"), None, Some(15))),
                0,
                LeaseAction::Acquire,
            ),
        ];
        for (name, l, now, want) in cases {
            assert_eq!(lease_action(l.as_ref(), "me", ts(now), d), want, "{name}");
        }
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
