//! The controller's decisions (pure): is the spec usable, and what does a check need now —
//! wait for its run, collect it, start one, replace a stale one, or nothing until later.
//!
//! Runs are numbered per check (`r1`, `r2`, ...); the number is the `regcheck.dev/run` label of
//! the run's Jobs and the id in `status.lastRun`. The Jobs also carry, as annotations, the spec
//! generation and the run-now annotation the run started with, and how many Jobs the run has,
//! so that a restarted controller can resume a run from its Jobs alone.

use crate::operator::crd::RegistryConnectivityCheck;
use crate::operator::jobs::labels;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// The run bookkeeping annotations live with the Job builder's.
pub use crate::operator::jobs::annotations;

/// The annotation on a check that starts a run whenever its value changes.
pub const RUN_NOW_ANNOTATION: &str = "regcheck.dev/run-now";

/// How often a running run is looked at even without a Job event (pods that cannot be
/// scheduled or pulled do not change their Job).
pub const POLL_RUNNING: Duration = Duration::from_secs(15);
/// Jitter is at most this fraction (1/n) of the interval.
const JITTER_DIVISOR: u32 = 10;

/// What is recorded for the run-now annotation: its value, or `sha256:<hex>` of a long one, so
/// that it fits the status field.
pub fn run_now_token(value: Option<&str>) -> Option<String> {
    let v = value?;
    if v.len() <= 64 && !v.chars().any(char::is_control) {
        return Some(v.to_string());
    }
    Some(format!(
        "sha256:{}",
        crate::engine::text::sha256_hex(v.as_bytes(), 16)
    ))
}

/// Run id of run number `n`.
pub fn run_id(n: u64) -> String {
    format!("r{n}")
}

/// Run number of a run id (`r12` → 12).
pub fn run_number(id: &str) -> Option<u64> {
    id.strip_prefix('r')?.parse().ok()
}

/// Deterministic jitter of run `run` of the check with `uid`: up to a tenth of the interval,
/// so that many checks created together spread out instead of probing in lockstep.
pub fn jitter(uid: &str, run: u64, interval: Duration) -> Duration {
    jitter_below(uid, run, interval / JITTER_DIVISOR)
}

/// Longest delay of a check's first run after its creation.
pub const FIRST_RUN_JITTER_MAX: Duration = Duration::from_secs(30);

/// Deterministic delay of the first run of the check with `uid` after its creation: below
/// min(interval / 10, [`FIRST_RUN_JITTER_MAX`]), so that checks created together (a chart
/// install, a GitOps sync of hundreds of checks) spread their first runs instead of all
/// planning and creating Jobs at once.
pub fn first_run_jitter(uid: &str, interval: Duration) -> Duration {
    // Run numbers start at 1: 0 salts the first run's delay apart from every interval jitter.
    jitter_below(
        uid,
        0,
        (interval / JITTER_DIVISOR).min(FIRST_RUN_JITTER_MAX),
    )
}

fn jitter_below(uid: &str, run: u64, max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{uid}\0{run}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    Duration::from_millis(u64::from_be_bytes(b) % max_ms)
}

/// What the controller knows about one probe Job.
#[derive(Debug, Clone, PartialEq)]
pub struct RunJob {
    pub namespace: String,
    pub name: String,
    /// The `regcheck.dev/run` label.
    pub run: String,
    pub generation: Option<i64>,
    pub run_now: Option<String>,
    pub run_size: Option<usize>,
    /// The probe has an outcome (report or failure): nothing more will come.
    pub done: bool,
}

impl RunJob {
    /// From a Job and whether its probe is done.
    pub fn from_job(job: &Job, done: bool) -> Self {
        let ann = job.annotations();
        Self {
            namespace: job.namespace().unwrap_or_default(),
            name: job.name_any(),
            run: job.labels().get(labels::RUN).cloned().unwrap_or_default(),
            generation: ann
                .get(annotations::GENERATION)
                .and_then(|g| g.parse().ok()),
            run_now: ann.get(annotations::RUN_NOW).cloned(),
            run_size: ann.get(annotations::RUN_SIZE).and_then(|s| s.parse().ok()),
            done,
        }
    }
}

/// Why a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    FirstRun,
    SpecChanged,
    RunNow,
    Interval,
}

impl StartReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstRun => "first run",
            Self::SpecChanged => "spec changed",
            Self::RunNow => "run-now annotation changed",
            Self::Interval => "interval elapsed",
        }
    }
}

/// What a check needs now.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run `run` is in progress. `top_up`: it has fewer Jobs than planned and room for more
    /// (the concurrency limit, or a restart between creating its Jobs).
    Wait {
        run: String,
        top_up: bool,
        requeue_after: Duration,
    },
    /// Every probe of `run` is done: read the results, write the status, delete the Jobs.
    Collect { run: String },
    /// Start run number `run`.
    Start { run: u64, reason: StartReason },
    /// The spec changed during runs `stale`: delete their Jobs and start run `start` (none
    /// while the check is suspended).
    Supersede {
        stale: Vec<String>,
        start: Option<u64>,
    },
    /// Nothing to do until `requeue_after` (none: until the check changes).
    Idle { requeue_after: Option<Duration> },
}

/// An [`Action`] plus the Jobs of runs that were already collected (a restart between writing
/// the status and deleting them) or abandoned: they are deleted first.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub leftovers: Vec<String>,
}

/// Settings that decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecideConfig {
    /// Most unfinished Jobs of one run at a time.
    pub max_concurrent_jobs: usize,
}

/// Decides what `check` needs, given its interval (from its parsed spec), its Jobs (all
/// namespaces) and the time.
pub fn decide(
    check: &RegistryConnectivityCheck,
    every: Duration,
    jobs: &[RunJob],
    now: Timestamp,
    cfg: &DecideConfig,
) -> Decision {
    let status = check.status.clone().unwrap_or_default();
    let spec = &check.spec;
    let generation = check.metadata.generation;
    let last = status
        .last_run
        .as_ref()
        .and_then(|r| run_number(&r.id))
        .unwrap_or(0);

    let mut runs: BTreeMap<u64, Vec<&RunJob>> = BTreeMap::new();
    let mut leftovers: Vec<String> = Vec::new();
    for j in jobs {
        match run_number(&j.run) {
            Some(n) if n > last => runs.entry(n).or_default().push(j),
            _ => {
                if !leftovers.contains(&j.run) {
                    leftovers.push(j.run.clone());
                }
            }
        }
    }
    let highest = runs.keys().next_back().copied().unwrap_or(0).max(last);
    let next = highest + 1;

    // Only the newest unfinished run counts; older ones were abandoned.
    let current = runs.pop_last();
    leftovers.extend(runs.keys().map(|n| run_id(*n)));
    leftovers.sort();

    if let Some((n, members)) = current {
        let run = run_id(n);
        let run_generation = members.iter().find_map(|j| j.generation);
        if run_generation != generation {
            return Decision {
                action: Action::Supersede {
                    stale: vec![run],
                    start: (!spec.suspend).then_some(next),
                },
                leftovers,
            };
        }
        let size = members.iter().filter_map(|j| j.run_size).max().unwrap_or(0);
        let all_done = members.iter().all(|j| j.done);
        let active = members.iter().filter(|j| !j.done).count();
        let action = if all_done && members.len() >= size {
            Action::Collect { run }
        } else {
            Action::Wait {
                run,
                top_up: members.len() < size && active < cfg.max_concurrent_jobs,
                requeue_after: POLL_RUNNING,
            }
        };
        return Decision { action, leftovers };
    }

    if spec.suspend {
        return Decision {
            action: Action::Idle {
                requeue_after: None,
            },
            leftovers,
        };
    }
    let run_now = run_now_token(
        check
            .annotations()
            .get(RUN_NOW_ANNOTATION)
            .map(String::as_str),
    );
    let start = |reason| Decision {
        action: Action::Start { run: next, reason },
        leftovers: leftovers.clone(),
    };
    let Some(last_run) = status.last_run.as_ref() else {
        // The first run waits its jitter after the check's creation; a run-now request, or a
        // check older than that (a restarted controller), starts at once.
        let created = check.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if run_now.is_none()
            && let Some(created) = created
            && let Ok(due) =
                created.checked_add(first_run_jitter(&check.uid().unwrap_or_default(), every))
            && due > now
        {
            let wait = now
                .duration_until(due)
                .unsigned_abs()
                .max(Duration::from_millis(100));
            return Decision {
                action: Action::Idle {
                    requeue_after: Some(wait),
                },
                leftovers,
            };
        }
        return start(StartReason::FirstRun);
    };
    if status.observed_generation != generation {
        return start(StartReason::SpecChanged);
    }
    if run_now != status.last_run_now {
        return start(StartReason::RunNow);
    }
    let base = last_run
        .start_time
        .as_ref()
        .or(last_run.completion_time.as_ref())
        .map(|t| t.0);
    let Some(base) = base else {
        return start(StartReason::Interval);
    };
    let due = base
        .checked_add(every + jitter(&check.uid().unwrap_or_default(), next, every))
        .unwrap_or(base);
    if due <= now {
        return start(StartReason::Interval);
    }
    let wait = now
        .duration_until(due)
        .unsigned_abs()
        .max(Duration::from_secs(1));
    Decision {
        action: Action::Idle {
            requeue_after: Some(wait),
        },
        leftovers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{RegistryConnectivityCheckStatus, RunInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    const UID: &str = "6d1f0a52-0000-4000-8000-00000000000a";

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn check(
        generation: i64,
        status: Option<RegistryConnectivityCheckStatus>,
    ) -> RegistryConnectivityCheck {
        let spec: crate::operator::crd::RegistryConnectivityCheckSpec =
            serde_json::from_value(json!({"registry": "r.azurecr.io", "interval": "5m"})).unwrap();
        let mut c = RegistryConnectivityCheck::new("acr", spec);
        c.metadata.namespace = Some("team-a".into());
        c.metadata.uid = Some(UID.into());
        c.metadata.generation = Some(generation);
        c.status = status;
        c
    }

    fn ran(id: &str, generation: i64, start: i64) -> RegistryConnectivityCheckStatus {
        RegistryConnectivityCheckStatus {
            observed_generation: Some(generation),
            last_run: Some(RunInfo {
                id: id.into(),
                start_time: Some(Time(ts(start))),
                completion_time: Some(Time(ts(start + 20))),
                duration_ms: Some(20_000),
            }),
            ..Default::default()
        }
    }

    fn job(run: &str, generation: i64, size: usize, done: bool) -> RunJob {
        RunJob {
            namespace: "regcheck-system".into(),
            name: format!("rcc-acr-n-{run}-{done}"),
            run: run.into(),
            generation: Some(generation),
            run_now: None,
            run_size: Some(size),
            done,
        }
    }

    /// The interval of [`check`]'s spec.
    const EVERY: Duration = Duration::from_secs(300);

    const CFG: DecideConfig = DecideConfig {
        max_concurrent_jobs: 50,
    };

    fn act(c: &RegistryConnectivityCheck, jobs: &[RunJob], now: i64) -> Action {
        let every = crate::operator::spec::ValidSpec::parse(&c.spec)
            .unwrap()
            .interval;
        decide(c, every, jobs, ts(now), &CFG).action
    }

    #[test]
    fn decide_table() {
        let every = Duration::from_secs(300);
        let j2 = jitter(UID, 2, every).as_secs() as i64;
        let mut suspended = check(1, Some(ran("r1", 1, 0)));
        suspended.spec.suspend = true;
        let mut run_now = check(1, Some(ran("r1", 1, 0)));
        run_now
            .annotations_mut()
            .insert(RUN_NOW_ANNOTATION.into(), "2024-06-01T10:00".into());
        let mut run_now_seen = run_now.clone();
        run_now_seen.status.as_mut().unwrap().last_run_now = Some("2024-06-01T10:00".into());
        let mut suspended_mid_run = check(2, Some(ran("r1", 1, 0)));
        suspended_mid_run.spec.suspend = true;

        type Case<'a> = (&'a str, RegistryConnectivityCheck, Vec<RunJob>, i64, Action);
        let cases: Vec<Case> = vec![
            (
                "first run",
                check(1, None),
                vec![],
                0,
                Action::Start {
                    run: 1,
                    reason: StartReason::FirstRun,
                },
            ),
            (
                "run in progress",
                check(1, None),
                vec![job("r1", 1, 2, true), job("r1", 1, 2, false)],
                5,
                Action::Wait {
                    run: "r1".into(),
                    top_up: false,
                    requeue_after: POLL_RUNNING,
                },
            ),
            (
                "run partly created (restart, or the concurrency limit)",
                check(1, None),
                vec![job("r1", 1, 3, true)],
                5,
                Action::Wait {
                    run: "r1".into(),
                    top_up: true,
                    requeue_after: POLL_RUNNING,
                },
            ),
            (
                "all finished",
                check(1, None),
                vec![job("r1", 1, 2, true), job("r1", 1, 2, true)],
                30,
                Action::Collect { run: "r1".into() },
            ),
            (
                "spec change mid-run",
                check(2, Some(ran("r1", 1, 0))),
                vec![job("r2", 1, 2, false), job("r2", 1, 2, true)],
                30,
                Action::Supersede {
                    stale: vec!["r2".into()],
                    start: Some(3),
                },
            ),
            (
                "spec change to suspend mid-run",
                suspended_mid_run,
                vec![job("r2", 1, 2, false)],
                30,
                Action::Supersede {
                    stale: vec!["r2".into()],
                    start: None,
                },
            ),
            (
                "spec changed since the last run",
                check(2, Some(ran("r1", 1, 0))),
                vec![],
                30,
                Action::Start {
                    run: 2,
                    reason: StartReason::SpecChanged,
                },
            ),
            (
                "run-now annotation",
                run_now,
                vec![],
                30,
                Action::Start {
                    run: 2,
                    reason: StartReason::RunNow,
                },
            ),
            (
                "run-now annotation already handled",
                run_now_seen,
                vec![],
                30,
                Action::Idle {
                    requeue_after: Some(Duration::from_secs((300 + j2 - 30) as u64)),
                },
            ),
            (
                "suspended",
                suspended,
                vec![],
                100_000,
                Action::Idle {
                    requeue_after: None,
                },
            ),
            (
                "interval not yet elapsed",
                check(1, Some(ran("r1", 1, 0))),
                vec![],
                299,
                Action::Idle {
                    requeue_after: Some(Duration::from_secs((300 + j2 - 299) as u64)),
                },
            ),
            (
                "interval elapsed with jitter",
                check(1, Some(ran("r1", 1, 0))),
                vec![],
                300 + j2 + 1,
                Action::Start {
                    run: 2,
                    reason: StartReason::Interval,
                },
            ),
        ];
        for (name, c, jobs, now, want) in cases {
            let got = act(&c, &jobs, now);
            // Idle waits are compared to the second (jitter has millisecond resolution).
            let got = match got {
                Action::Idle {
                    requeue_after: Some(d),
                } => Action::Idle {
                    requeue_after: Some(Duration::from_secs(d.as_secs())),
                },
                g => g,
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn leftovers_of_collected_and_abandoned_runs_are_deleted() {
        // r1 was collected (status) but its Jobs survived a restart; r2 was abandoned; r3 runs.
        let c = check(1, Some(ran("r1", 1, 0)));
        let d = decide(
            &c,
            EVERY,
            &[
                job("r1", 1, 1, true),
                job("r2", 1, 1, false),
                job("r3", 1, 1, false),
            ],
            ts(10),
            &CFG,
        );
        assert_eq!(d.leftovers, vec!["r1".to_string(), "r2".to_string()]);
        assert!(matches!(d.action, Action::Wait { ref run, .. } if run == "r3"));
        // Only leftovers: the next run is numbered after them, never reusing r1.
        let d = decide(
            &check(1, Some(ran("r1", 1, 0))),
            EVERY,
            &[job("r1", 1, 1, true)],
            ts(100_000),
            &CFG,
        );
        assert_eq!(d.leftovers, vec!["r1".to_string()]);
        assert_eq!(
            d.action,
            Action::Start {
                run: 2,
                reason: StartReason::Interval
            }
        );
    }

    #[test]
    fn concurrency_limit_stops_top_up() {
        let c = check(1, None);
        let jobs: Vec<RunJob> = (0..3).map(|_| job("r1", 1, 10, false)).collect();
        let cfg = DecideConfig {
            max_concurrent_jobs: 3,
        };
        let d = decide(&c, EVERY, &jobs, ts(0), &cfg);
        assert!(matches!(d.action, Action::Wait { top_up: false, .. }));
        let cfg = DecideConfig {
            max_concurrent_jobs: 4,
        };
        let d = decide(&c, EVERY, &jobs, ts(0), &cfg);
        assert!(matches!(d.action, Action::Wait { top_up: true, .. }));
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let every = Duration::from_secs(300);
        let mut distinct = std::collections::BTreeSet::new();
        for run in 0..200 {
            let j = jitter(UID, run, every);
            assert_eq!(j, jitter(UID, run, every));
            assert!(j < every / 10);
            distinct.insert(j);
        }
        assert!(distinct.len() > 150, "jitter varies with the run");
        assert_ne!(jitter("a", 1, every), jitter("b", 1, every));
        assert_eq!(jitter(UID, 1, Duration::from_millis(5)), Duration::ZERO);
    }

    /// A new check's first run waits a deterministic delay after its creation, below
    /// min(interval / 10, 30 s); then it starts. A run-now request does not wait.
    #[test]
    fn first_run_waits_its_jitter_after_creation() {
        let mut c = check(1, None);
        c.metadata.creation_timestamp = Some(Time(ts(0)));
        let j = first_run_jitter(UID, EVERY);
        assert!(j > Duration::ZERO && j < Duration::from_secs(30), "{j:?}");
        match act(&c, &[], 0) {
            Action::Idle {
                requeue_after: Some(d),
            } => assert!(
                d <= j && d + Duration::from_millis(1) >= j,
                "{d:?} vs {j:?}"
            ),
            other => panic!("first run before its jitter: {other:?}"),
        }
        let after = j.as_secs() as i64 + 1;
        assert_eq!(
            act(&c, &[], after),
            Action::Start {
                run: 1,
                reason: StartReason::FirstRun
            }
        );
        // Created long ago (the controller was down): at once.
        assert!(matches!(act(&c, &[], 3600), Action::Start { run: 1, .. }));
        // Run-now: at once.
        let mut now = c.clone();
        now.annotations_mut()
            .insert(RUN_NOW_ANNOTATION.into(), "2024-06-01T10:00".into());
        assert!(matches!(act(&now, &[], 0), Action::Start { run: 1, .. }));
        // No creation time known: at once (as before).
        assert!(matches!(
            act(&check(1, None), &[], 0),
            Action::Start { run: 1, .. }
        ));
    }

    #[test]
    fn first_run_jitter_is_bounded_and_spread() {
        for (interval, bound) in [(300, 30), (3600, 30), (60, 6)] {
            let every = Duration::from_secs(interval);
            let bound = Duration::from_secs(bound);
            let js: Vec<Duration> = (0..1000)
                .map(|i| first_run_jitter(&format!("uid-{i}"), every))
                .collect();
            assert!(js.iter().all(|j| *j < bound), "interval {interval}");
            assert_eq!(js[7], first_run_jitter("uid-7", every), "deterministic");
            if interval == 3600 {
                // bench/scale_nodes.py computes the same value.
                assert_eq!(js[7], Duration::from_millis(11989));
            }
            // Spread over the window: each tenth of it gets some of 1,000 checks.
            for k in 0..10 {
                let lo = bound * k / 10;
                let hi = bound * (k + 1) / 10;
                let n = js.iter().filter(|j| **j >= lo && **j < hi).count();
                assert!((50..=150).contains(&n), "tenth {k} of {bound:?}: {n}");
            }
        }
        assert_eq!(
            first_run_jitter(UID, Duration::from_millis(5)),
            Duration::ZERO
        );
    }

    #[test]
    fn run_ids_and_tokens() {
        assert_eq!(run_id(7), "r7");
        assert_eq!(run_number("r7"), Some(7));
        assert_eq!(run_number("x7"), None);
        assert_eq!(run_number("r"), None);
        assert_eq!(run_now_token(None), None);
        assert_eq!(run_now_token(Some("now")).as_deref(), Some("now"));
        let long = "x".repeat(500);
        let t = run_now_token(Some(&long)).unwrap();
        assert!(t.starts_with("sha256:") && t.len() <= 128);
        assert_ne!(t, run_now_token(Some(&"x".repeat(501))).unwrap());
    }
}
