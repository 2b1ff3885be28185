//! Faults on the real cluster (issue "trustworthy under faults"): a quota that refuses the
//! probe Jobs, the API server stopped and started again mid-run, and two controllers whose
//! leader is frozen.

use super::*;

/// A namespace whose ResourceQuota allows no Job: the pod-context probe cannot be created.
/// Within the check's first run it is `Ready=Unknown` with `ProbeNotCreated` naming the quota
/// (the node context, in the operator's namespace, runs and is healthy), with an Event.
pub fn fault_quota_refusing_probe_jobs_is_ready_unknown_naming_the_quota() {
    let c = &fixture().cluster;
    let _g = shared();
    let ns = Ns::fresh(c, "quota");
    c.apply(&json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "no-jobs", "namespace": ns.name},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }))
    .unwrap();
    // The quota controller fills in status.hard before admission enforces it.
    wait_for("the quota to be in force", Duration::from_secs(30), || {
        let q = c
            .get_json(&["resourcequota", "-n", &ns.name, "no-jobs"])
            .ok()?;
        (!q["status"]["hard"].is_null()).then_some(())
    })
    .unwrap();
    let created = Instant::now();
    ns.check("quota", json!({"registry": LOGIN, "interval": "10m"}));
    let v = ns.wait_check("quota", "the first run's verdict", RUN_WAIT, |v| {
        last_run(v).is_some() && ready(v).is_some()
    });
    say(&format!(
        "quota: first verdict {:?} after {:?}",
        reason(&v),
        created.elapsed()
    ));
    let st = &v["status"];
    assert_eq!(ready(&v), Some("Unknown"), "{st:#}");
    assert_eq!(reason(&v), Some("ProbeNotCreated"), "{st:#}");
    let message = st["diagnosis"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("quota") && message.contains("no-jobs"),
        "the API server's answer names the quota: {st:#}"
    );
    assert_eq!(
        condition(&v, "ProbesHealthy").unwrap()["status"],
        "False",
        "{st:#}"
    );
    let results = st["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .any(|r| r["context"] == "Node" && r["verdict"] == "Healthy"),
        "the node context ran: {st:#}"
    );
    assert!(
        results
            .iter()
            .any(|r| r["context"] == "Pod" && r["reason"] == "ProbeNotCreated"),
        "{st:#}"
    );
    assert!(
        ns.events("quota").iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r == "ProbeNotCreated")
            || e["message"].as_str().is_some_and(|m| m.contains("quota"))),
        "an Event says so: {:#?}",
        ns.events("quota")
    );
    // No Job of the check exists in its namespace (the quota refused them all).
    let uid = uid(&v);
    assert!(
        ns.jobs(&uid)
            .iter()
            .all(|j| j["metadata"]["namespace"] != ns.name.as_str()),
        "{:#?}",
        ns.jobs(&uid)
    );
}

/// The API server stops while a run is in flight (its probes finish during the outage) and
/// comes back: the status is current again (the interrupted run collected, or a later one)
/// within one interval plus 15 s of the API server's return.
pub fn fault_api_server_restart_mid_run_status_current_within_interval_plus_15s() {
    let c = &fixture().cluster;
    if !matches!(c.mode, Mode::Shared { .. }) {
        say(
            "api_server_restart_mid_run: only on the shared test cluster (it stops the API server)",
        );
        return;
    }
    let _g = fixture()
        .controller_lock
        .write()
        .unwrap_or_else(|e| e.into_inner());
    const INTERVAL: Duration = Duration::from_secs(30);
    let ns = Ns::fresh(c, "apiserver-restart");
    // The probes wait 20 s for headers that never come: the run is in flight for that long.
    let check = ns.check(
        "hang",
        json!({"registry": HANG, "timeoutSeconds": 20, "interval": "30s"}),
    );
    let uid = uid(&check);
    let jobs = wait_for("the first run's Jobs", RUN_WAIT, || {
        let jobs = ns.jobs(&uid);
        (jobs.len() == 2).then_some(jobs)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", controller_logs(c)));
    let in_flight = run_number(label(&jobs[0], LABEL_RUN).unwrap());

    // Stop the API server (SIGTERM; it stops listening at once, the process lingers).
    let pid_file = cluster_dir().join("run/pids/kube-apiserver.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
        .trim()
        .to_string();
    run(Command::new("kill").arg(&pid)).unwrap();
    let stopped = Instant::now();
    wait_for(
        "the API server process to exit",
        Duration::from_secs(240),
        || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
    )
    .unwrap();
    // Keep it down long enough for the run's probes to finish and the watches to fail.
    let min_outage = Duration::from_secs(45);
    if let Some(rest) = min_outage.checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    run(Command::new(Path::new(ROOT).join("tests/e2e/cluster.sh")).arg("up"))
        .unwrap_or_else(|e| panic!("restarting the API server: {e}"));
    wait_for("the API server answers", Duration::from_secs(120), || {
        c.k(&["get", "--raw", "/readyz"]).ok()
    })
    .unwrap();
    let back = Instant::now();
    say(&format!(
        "API server down for {:?}; run {in_flight} was in flight",
        back - stopped
    ));
    let limit = INTERVAL + Duration::from_secs(15);
    let v = wait_for("the status to be current again", limit, || {
        let v = ns.get("hang")?;
        (last_run(&v).map(run_number) >= Some(in_flight)).then_some(v)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e} (limit {limit:?} after the API server's return)\nstatus: {:#}\n{}",
            ns.get("hang").unwrap_or_default()["status"],
            controller_logs(c)
        )
    });
    say(&format!(
        "status current {:?} after the API server's return (run {:?})",
        back.elapsed(),
        last_run(&v)
    ));
    // What the first run after the return found can be the node itself: after a long outage
    // the node lifecycle controller marks the node NotReady until the kubelet's next heartbeat
    // (seen: ProbeUnschedulable, "localhost: not Ready"). That is current too; then the
    // registry's own problem is back within two more intervals.
    let v = ns.wait_check(
        "hang",
        "the registry's verdict again",
        2 * INTERVAL + Duration::from_secs(30),
        |v| reason(v) == Some("HeadersTimeout"),
    );
    say(&format!(
        "HeadersTimeout again {:?} after the API server's return (run {:?})",
        back.elapsed(),
        last_run(&v)
    ));
    // Its runs every 30 s would outlive the test: the check goes (its Jobs with it).
    c.k(&[
        "delete",
        "rcc",
        "-n",
        &ns.name,
        "hang",
        "--wait=true",
        "--timeout=60s",
    ])
    .unwrap();
    // The controller is still the one pod, ready.
    wait_for("controller /readyz", Duration::from_secs(60), || {
        c.http_get("/readyz").ok().filter(|(s, _)| *s == 200)
    })
    .unwrap();
}

/// Identity of the second controller the frozen-leader test starts on the host.
const STANDBY: &str = "e2e-standby";
/// The leader-election Lease in the operator namespace (`--lease-name`, default).
const LEASE: &str = "regcheck-controller";

/// The second controller: the same binary and settings as the Deployment's, on the host with
/// the admin kubeconfig, its metrics on another loopback port, and probe Jobs created with
/// `imagePullPolicy: IfNotPresent` instead of the Deployment's `Never` (the image is loaded,
/// both run it): so every Job says which controller created it.
struct Standby {
    child: std::process::Child,
    log: PathBuf,
}

impl Standby {
    fn start(c: &Cluster) -> Standby {
        let dep = c
            .get_json(&["deployment", "-n", OPERATOR_NS, "regcheck-controller"])
            .unwrap();
        let container = &dep["spec"]["template"]["spec"]["containers"][0];
        let log = Path::new(TMP).join("e2e-standby.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(REGCHECK);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("KUBECONFIG", &c.kubeconfig);
        for e in container["env"].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                cmd.env(k, v);
            }
        }
        cmd.env("POD_NAMESPACE", OPERATOR_NS)
            .env("POD_NAME", STANDBY)
            .env("REGCHECK_METRICS_ADDR", "127.0.0.1:18081")
            .env("REGCHECK_PROBE_IMAGE_PULL_POLICY", "IfNotPresent")
            .env("REGCHECK_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .args(
                container["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("start the standby controller");
        Standby { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        // SIGTERM: it releases the lease if it holds it, so the Deployment's replica leads again.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PID (on this host) of the Deployment's controller process.
fn deployment_controller_pid(standby: u32) -> Option<u32> {
    let out = run(Command::new("pgrep").args(["-f", "regcheck controller"])).ok()?;
    out.lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .filter(|&p| p != standby)
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"/regcheck\0controller"))
        })
}

/// Every Job of a check, as `kubectl get --watch` streams them (Jobs of finished runs are
/// deleted within seconds: a poll would miss them).
struct JobWatch {
    child: std::process::Child,
    out: PathBuf,
}

impl JobWatch {
    fn start(c: &Cluster, uid: &str) -> JobWatch {
        let out = Path::new(TMP).join("e2e-frozen-leader-jobs.json");
        let file = std::fs::File::create(&out).unwrap();
        let child = c
            .kubectl()
            .args(["get", "jobs", "-A", "--watch", "-o", "json", "-l"])
            .arg(format!("{LABEL_CHECK_UID}={uid}"))
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get --watch");
        JobWatch { child, out }
    }

    /// Stops the watch; every Job seen, by UID, as first seen.
    fn finish(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut seen = BTreeMap::new();
        for v in serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map_while(Result::ok)
        {
            let items = match v["kind"].as_str() {
                Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
                _ => vec![v],
            };
            for j in items {
                if let Some(uid) = j["metadata"]["uid"].as_str() {
                    seen.entry(uid.to_string()).or_insert(j);
                }
            }
        }
        seen.into_values().collect()
    }
}

fn lease_holder(c: &Cluster) -> Option<String> {
    let l = c.get_json(&["lease", "-n", OPERATOR_NS, LEASE]).ok()?;
    l["spec"]["holderIdentity"].as_str().map(String::from)
}

/// Seconds since the epoch of an RFC 3339 UTC time as the API server writes it
/// (`2026-12-04T21:30:15Z`; jiff, as k8s-openapi's `Time` uses).
fn epoch_seconds(t: &str) -> Option<u64> {
    let ts: k8s_openapi::jiff::Timestamp = t.parse().ok()?;
    u64::try_from(ts.as_second()).ok()
}

fn now_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Two controllers; the leader (the Deployment's) is frozen with SIGSTOP for 20 s, longer
/// than the lease (15 s): the standby takes the lease and runs the check (a run-now request
/// made while the leader is frozen); the old leader, woken, creates no Job and starts no run
/// before it gives up. Every Job says who created it (pull policy), and its creation time is
/// compared with the moment the lease changed hands.
pub fn fault_frozen_leader_loses_the_lease_and_one_controller_writes_at_a_time() {
    let c = &fixture().cluster;
    if !matches!(c.mode, Mode::Shared { .. }) {
        say("frozen_leader: only on the shared test cluster (it signals the controller process)");
        return;
    }
    let _g = fixture()
        .controller_lock
        .write()
        .unwrap_or_else(|e| e.into_inner());
    let ns = Ns::fresh(c, "frozen-leader");
    let leader = wait_for("a leader", Duration::from_secs(60), || {
        lease_holder(c).filter(|h| !h.is_empty() && h != STANDBY)
    })
    .unwrap();
    let check = ns.check(
        "lab",
        json!({"registry": LOGIN, "interval": "30s", "contexts": {"pod": {"enabled": false}}}),
    );
    let uid = uid(&check);
    let watch = JobWatch::start(c, &uid);
    ns.wait_check("lab", "the first run", RUN_WAIT, |v| last_run(v).is_some());
    let standby = Standby::start(c);
    wait_for("the standby to serve", Duration::from_secs(60), || {
        http_get_at("127.0.0.1:18081", "/healthz")
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", standby.log()));
    assert_eq!(lease_holder(c).as_deref(), Some(leader.as_str()));
    let pid = deployment_controller_pid(standby.child.id()).expect("the leader's process");

    run(Command::new("kill").args(["-STOP", &pid.to_string()])).unwrap();
    let frozen = Instant::now();
    // When the standby took the lease: its acquireTime (same host clock), else when seen.
    let taken = wait_for(
        "the standby to take the lease",
        Duration::from_secs(40),
        || {
            let l = c.get_json(&["lease", "-n", OPERATOR_NS, LEASE]).ok()?;
            (l["spec"]["holderIdentity"] == STANDBY).then(|| {
                l["spec"]["acquireTime"]
                    .as_str()
                    .and_then(|t| epoch_seconds(&format!("{}Z", t.get(..19)?)))
                    .unwrap_or_else(now_epoch)
            })
        },
    );
    // Ask for a run now: only the new leader may start it.
    let asked = c.k(&[
        "annotate",
        "--overwrite",
        "rcc",
        "-n",
        &ns.name,
        "lab",
        "regcheck.dev/run-now=e2e-frozen",
    ]);
    if let Some(rest) = Duration::from_secs(20).checked_sub(frozen.elapsed()) {
        std::thread::sleep(rest);
    }
    let woke = now_epoch();
    run(Command::new("kill").args(["-CONT", &pid.to_string()])).unwrap();
    let taken = taken.unwrap_or_else(|e| panic!("{e}\nstandby:\n{}", standby.log()));
    asked.unwrap();
    say(&format!(
        "frozen leader: lease taken by {STANDBY} {} s after the freeze",
        taken.saturating_sub(woke - 20)
    ));
    let v = ns.wait_check("lab", "the run-now request served", RUN_WAIT, |v| {
        v["status"]["lastRunNow"] == "e2e-frozen"
    });
    // Let the woken controller do whatever it would do.
    std::thread::sleep(Duration::from_secs(10));
    let old_log = [
        c.k(&[
            "logs",
            "-n",
            OPERATOR_NS,
            "-l",
            CONTROLLER_SELECTOR,
            "--previous",
            "--tail=-1",
        ])
        .unwrap_or_default(),
        controller_logs(c),
    ]
    .join("\n");

    // Who created which Job, and when.
    let jobs = watch.finish();
    say(&format!("frozen leader: {} Jobs seen", jobs.len()));
    let mut runs = BTreeSet::new();
    for j in &jobs {
        let name = j["metadata"]["name"].as_str().unwrap_or("");
        let created = j["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(epoch_seconds)
            .unwrap();
        let policy = j["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"].as_str();
        let key = (
            label(j, LABEL_RUN).unwrap_or("").to_string(),
            label(j, LABEL_CONTEXT).unwrap_or("").to_string(),
        );
        assert!(runs.insert(key.clone()), "two Jobs for {key:?}: {jobs:#?}");
        match policy {
            Some("Never") => assert!(
                created <= taken + 1,
                "the old leader created {name} at {created}, after the lease changed hands at {taken}\nold leader:\n{old_log}"
            ),
            Some("IfNotPresent") => assert!(
                created + 1 >= taken,
                "the standby created {name} at {created}, before it held the lease ({taken})\nstandby:\n{}",
                standby.log()
            ),
            other => panic!("Job {name} with pull policy {other:?}"),
        }
    }
    assert!(
        jobs.iter().any(
            |j| j["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        ),
        "the standby ran the check: {jobs:#?}\nstandby:\n{}",
        standby.log()
    );
    // The woken leader gave up without starting anything.
    assert!(
        old_log.contains("lost leadership"),
        "the old leader noticed: {old_log}"
    );
    let after_wake: Vec<&str> = old_log
        .lines()
        .filter(|l| {
            l.get(..20)
                .and_then(|t| epoch_seconds(&format!("{}Z", &t[..19])))
                .is_some_and(|t| t >= woke)
        })
        .take_while(|l| !l.contains("lost leadership"))
        .filter(|l| {
            l.contains("starting run") || l.contains("run started") || l.contains("continued run")
        })
        .collect();
    assert!(
        after_wake.is_empty(),
        "the woken leader started runs: {after_wake:#?}"
    );
    assert_eq!(ready(&v), Some("True"), "{:#}", v["status"]);
    drop(standby);
    // Its runs every 30 s would outlive the test.
    c.k(&["delete", "rcc", "-n", &ns.name, "lab", "--wait=false"])
        .unwrap();
    // The Deployment's replica leads again.
    wait_for(
        "the Deployment's controller to lead again",
        Duration::from_secs(90),
        || lease_holder(c).filter(|h| !h.is_empty() && h != STANDBY),
    )
    .unwrap();
    wait_for("controller /readyz", Duration::from_secs(60), || {
        c.http_get("/readyz").ok().filter(|(s, _)| *s == 200)
    })
    .unwrap();
}

pub fn offline_epoch_seconds_parses_api_times() {
    assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(epoch_seconds("2000-03-01T00:00:01Z"), Some(951_868_801));
    assert_eq!(epoch_seconds("2026-12-04T21:30:15Z"), Some(1_796_419_815));
    assert_eq!(epoch_seconds("garbage"), None);
}
