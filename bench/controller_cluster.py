#!/usr/bin/env python3
"""Benchmark 5: `regcheck controller` on the shared test cluster (/work/shared/cluster).

    sudo python3 bench/controller_cluster.py --regcheck $CARGO_TARGET_DIR/release/regcheck \
        [--checks 200] [--limit 900]

Steps, all bounded:

 1. take the e2e lock (/var/lib/regcheck-cluster/e2e.lock, exclusive flock, as tests/e2e.rs
    does; wait at most --lock-wait s) and hold it to the end: an e2e run never overlaps;
 2. if the cluster is down, start it with `tests/e2e/cluster.sh up` (never stops it);
 3. the e2e lab servers (`tests/e2e/servers.py up --ip 10.88.0.1`, own state dir): dnsmasq
    and a registry behind nginx TLS on the bridge address; nothing leaves the machine;
 4. load the binary as image localhost/regcheck:bench with the lab CA as trust store, apply
    crds/ (as the e2e tests do);
 5. namespaces bench-checks (checks, pod-context Jobs) and bench-probes (node-context Jobs);
    run `regcheck controller` as a host process (admin KUBECONFIG, leader election off,
    watching only bench-checks, metrics on 127.0.0.1:18090);
 6. stream raw watches (checks, Jobs, pods: `kubectl get --raw ...?watch=true`, one JSON event
    per line) and stamp each event with its arrival time (time.time: wall clock, so it compares with finishedAt);
 7. create N checks of the lab registry (e2ereg.azurecr.io, interval 1h), wait until every
    check has status.lastRun.completionTime and its Jobs are gone (or --limit), then 30 s idle;
 8. report per check: check ADDED -> its Jobs ADDED (first and last), last probe pod finished
    (first watch event with a terminal phase) -> status with lastRun written; the controller's
    API requests (its own regcheck_api_requests_total, by verb and resource) during the runs
    and during the idle window; its VmHWM/VmRSS and CPU seconds (/proc of the process);
 9. delete the checks (the controller removes the finalizers), stop the controller, delete
    the namespaces, stop the lab servers, release the lock.

Kubernetes timestamps have 1 s resolution (creationTimestamp, finishedAt, managedFields time):
they are recorded as a cross-check only; the latencies come from the watch arrival times.
"""

import argparse
import calendar
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.environ.get("REGCHECK_CLUSTER_HOME", os.path.join(REPO, "..", "shared", "cluster"))
CDIR = os.environ.get("REGCHECK_CLUSTER_DIR", "/var/lib/regcheck-cluster")
KUBECTL = os.path.join(CDIR, "bin", "kubectl")
KUBECONFIG = os.path.join(CDIR, "kubeconfig")
LOCK = os.path.join(CDIR, "e2e.lock")
NS = "bench-checks"
PROBE_NS = "bench-probes"
IMAGE = "localhost/regcheck:bench"
METRICS = "127.0.0.1:18090"
LAB_IP = "10.88.0.1"
REGISTRY = "e2ereg.azurecr.io"
STATE = "/tmp/regcheck-bench-cluster"
KENV = dict(os.environ, KUBECONFIG=KUBECONFIG)
GROUP = "/apis/regcheck.dev/v1alpha1"
CHECK_LABEL = "regcheck.dev/check"


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def kubectl(*args, input=None, timeout=120, check=True):
    r = subprocess.run([KUBECTL] + list(args), input=input, capture_output=True, text=True,
                       timeout=timeout, env=KENV)
    if check and r.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()[-1000:]}")
    return r


def take_lock(wait_s):
    f = open(LOCK, "a")
    start, told = time.monotonic(), False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() - start > wait_s:
                raise SystemExit(f"another e2e run held {LOCK} for {wait_s} s; giving up")
            if not told:
                say(f"{LOCK} is held (an e2e run?); waiting at most {wait_s} s")
                told = True
            time.sleep(2)


class Watch(threading.Thread):
    """A raw watch (`kubectl get --raw PATH?watch=true`): one JSON event per line, each
    stamped with its arrival time. Restarted (bounded) if the stream ends early."""

    def __init__(self, path, selector=None):
        super().__init__(daemon=True)
        self.path, self.selector = path, selector
        self.events = []
        self.proc = None
        self.stopping = False

    def run(self):
        for _ in range(20):
            q = "watch=true&timeoutSeconds=1800&allowWatchBookmarks=false"
            if self.selector:
                q += "&labelSelector=" + urllib.request.quote(self.selector)
            self.proc = subprocess.Popen([KUBECTL, "get", "--raw", f"{self.path}?{q}"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, env=KENV)
            for line in self.proc.stdout:
                t = time.time()  # wall clock: compared with the API's (1 s) timestamps too
                try:
                    self.events.append((t, json.loads(line)))
                except ValueError:
                    pass
            if self.stopping:
                return
            time.sleep(0.5)

    def stop(self):
        self.stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def controller_metrics():
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'regcheck_api_requests_total\{verb="(\w+)",resource="([\w/]+)"\} (\S+)',
                     line)
        if m:
            out[f"{m.group(1)} {m.group(2)}"] = float(m.group(3))
    return out


def proc_usage(pid):
    hwm = rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return {"vm_hwm_kb": hwm, "vm_rss_kb": rss, "cpu_seconds": cpu}


def deltas(after, before):
    keys = sorted(set(after) | set(before))
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) - before.get(k, 0)}


def check_yaml(i, timeout):
    return f"""apiVersion: regcheck.dev/v1alpha1
kind: RegistryConnectivityCheck
metadata:
  name: bench-{i:04d}
  namespace: {NS}
spec:
  registry: {REGISTRY}
  timeoutSeconds: {timeout}
  interval: 1h
---
"""


def ts(s):
    """RFC 3339 (second resolution) -> unix seconds."""
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) if s else None


def analyse(wchecks, wjobs, wpods, n):
    added, status_at, check_created = {}, {}, {}
    for t, ev in wchecks.events:
        o = ev.get("object", {})
        name = o.get("metadata", {}).get("name")
        if not name:
            continue
        if ev.get("type") == "ADDED":
            added.setdefault(name, t)
            check_created.setdefault(name, ts(o["metadata"].get("creationTimestamp")))
        if ((o.get("status") or {}).get("lastRun") or {}).get("completionTime"):
            status_at.setdefault(name, (t, o))
    job_added = {}  # check -> [arrival]
    job_created_srv = {}  # check -> [creationTimestamp]
    job_contexts = {}
    for t, ev in wjobs.events:
        o = ev.get("object", {})
        md = o.get("metadata", {})
        name = md.get("labels", {}).get(CHECK_LABEL)
        if ev.get("type") == "ADDED" and name:
            job_added.setdefault(name, []).append(t)
            job_created_srv.setdefault(name, []).append(ts(md.get("creationTimestamp")))
            ctx = md.get("labels", {}).get("regcheck.dev/context", "?")
            job_contexts[ctx] = job_contexts.get(ctx, 0) + 1
    pod_done = {}  # pod uid -> (check, first arrival with a terminal phase, finishedAt)
    for t, ev in wpods.events:
        o = ev.get("object", {})
        md = o.get("metadata", {})
        name = md.get("labels", {}).get(CHECK_LABEL)
        st = o.get("status", {})
        if name and st.get("phase") in ("Succeeded", "Failed") and md.get("uid") not in pod_done:
            fin = None
            for cs in st.get("containerStatuses") or []:
                fin = ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt") or fin
            pod_done[md["uid"]] = (name, t, ts(fin))
    last_pod = {}
    last_pod_srv = {}
    for name, t, fin in pod_done.values():
        last_pod[name] = max(last_pod.get(name, 0), t)
        if fin:
            last_pod_srv[name] = max(last_pod_srv.get(name, 0), fin)
    to_first = [min(job_added[c]) - added[c] for c in added if c in job_added]
    to_last = [max(job_added[c]) - added[c] for c in added if c in job_added]
    to_status = [status_at[c][0] - last_pod[c] for c in status_at if c in last_pod]
    # Container exit (finishedAt, truncated to the second) -> the API reporting the pod done
    # (kubelet), and -> the status arriving: half-resolved, so each is +0..1 s too large.
    kubelet_report = [t - fin for _, t, fin in pod_done.values() if fin]
    exit_to_status = [status_at[c][0] - last_pod_srv[c] for c in status_at if c in last_pod_srv]
    # Server-side cross-checks, 1 s resolution.
    srv_jobs = [max(job_created_srv[c]) - check_created[c] for c in check_created
                if c in job_created_srv and check_created[c] and all(job_created_srv[c])]
    srv_status = []
    for c, (_, o) in status_at.items():
        wrote = [ts(m.get("time")) for m in o["metadata"].get("managedFields", [])
                 if m.get("subresource") == "status" or "f:status" in json.dumps(m.get("fieldsV1", {}))]
        if c in last_pod_srv and wrote:
            srv_status.append(max(wrote) - last_pod_srv[c])
    order = sorted(added.values())
    return {
        "checks_seen": len(added),
        "checks_with_status": len(status_at),
        "jobs_created_by_context": job_contexts,
        "probe_pods_finished": len(pod_done),
        "create_to_first_job": stats.summary_ms(to_first) if to_first else None,
        "create_to_all_jobs": stats.summary_ms(to_last) if to_last else None,
        "last_probe_to_status": stats.summary_ms(to_status) if to_status else None,
        "finishedAt_to_pod_done_event": stats.summary_ms(kubelet_report) if kubelet_report else None,
        "last_finishedAt_to_status_event": stats.summary_ms(exit_to_status) if exit_to_status else None,
        "creation_spread_s": round(order[-1] - order[0], 2) if order else None,
        "server_timestamps_1s": {
            "job_created_minus_check_created_s": histogram(srv_jobs),
            "status_managedfields_minus_last_finishedAt_s": histogram(srv_status),
        },
    }


def histogram(xs):
    out = {}
    for x in xs:
        k = str(int(round(x)))
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def wait(what, limit, f, step=1.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = f()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out after {limit} s waiting for {what}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regcheck", required=True)
    p.add_argument("--checks", type=int, default=200)
    p.add_argument("--timeout", type=int, default=10, help="spec.timeoutSeconds of each check")
    p.add_argument("--limit", type=float, default=900, help="seconds to wait for all runs")
    p.add_argument("--idle", type=float, default=30, help="idle window after the runs (s)")
    p.add_argument("--lock-wait", type=float, default=1800)
    p.add_argument("--tag", default="", help="suffix of the result file name")
    a = p.parse_args()
    regcheck = os.path.abspath(a.regcheck)
    if os.geteuid() != 0:
        raise SystemExit("needs root (cluster, image loading, lab servers on ports 53/443)")
    if subprocess.run([regcheck, "controller", "--help"], capture_output=True,
                      timeout=10).returncode != 0:
        raise SystemExit(f"{regcheck} has no `controller` subcommand")

    lock = take_lock(a.lock_wait)
    say(f"holding {LOCK}")
    os.makedirs(STATE, exist_ok=True)
    ctrl = None
    watches = []
    servers_up = False
    try:
        if subprocess.run([os.path.join(CLUSTER, "status")], capture_output=True,
                          timeout=60).returncode != 0:
            say("cluster is down: tests/e2e/cluster.sh up")
            subprocess.run([os.path.join(REPO, "tests/e2e/cluster.sh"), "up"], check=True,
                           timeout=900, stdout=sys.stderr)
        left = kubectl("get", "pods", "-A", "-l", "app.kubernetes.io/component=controller",
                       "-o", "name").stdout.split()
        if left:
            raise RuntimeError(f"another regcheck controller runs in the cluster ({left}); it "
                               "would reconcile the bench checks too")

        line = subprocess.run(["python3", os.path.join(REPO, "tests/e2e/servers.py"), "up",
                               "--state", f"{STATE}/servers", "--ip", LAB_IP],
                              capture_output=True, text=True, check=True, timeout=300).stdout
        servers_up = True
        ca = json.loads(line.strip().splitlines()[-1])["ca"]
        say("lab servers up")
        subprocess.run([os.path.join(CLUSTER, "load-image"), IMAGE, regcheck, "--as",
                        "/regcheck", "--add", f"{ca}:/etc/ssl/certs/ca-certificates.crt"],
                       check=True, timeout=300, stdout=subprocess.DEVNULL)
        kubectl("apply", "--validate=false", "-k", os.path.join(REPO, "crds"))
        kubectl("wait", "--for=condition=established", "--timeout=60s",
                "crd/registryconnectivitychecks.regcheck.dev")
        for ns in (NS, PROBE_NS):
            kubectl("create", "namespace", ns, check=False)
            kubectl("label", "--overwrite", "namespace", ns, "regcheck-bench=true",
                    "pod-security.kubernetes.io/enforce=privileged")

        env = dict(KENV, REGCHECK_PROBE_IMAGE=IMAGE, REGCHECK_PROBE_IMAGE_PULL_POLICY="Never",
                   REGCHECK_PROBE_NAMESPACE=PROBE_NS, REGCHECK_NAMESPACES=NS,
                   REGCHECK_LEADER_ELECTION="false", REGCHECK_METRICS_ADDR=METRICS,
                   REGCHECK_LOG_FORMAT="text", RUST_LOG="info")
        log = open(f"{STATE}/controller.log", "w")
        ctrl = subprocess.Popen([regcheck, "controller"], env=env, stdout=log, stderr=log,
                                start_new_session=True)

        def ready():
            if ctrl.poll() is not None:
                raise RuntimeError(f"controller exited; see {STATE}/controller.log")
            try:
                with urllib.request.urlopen(f"http://{METRICS}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait("controller /readyz", 60, ready)
        say(f"controller ready (pid {ctrl.pid})")

        sel = "app.kubernetes.io/managed-by=regcheck"
        wchecks = Watch(f"{GROUP}/namespaces/{NS}/registryconnectivitychecks")
        wjobs = [Watch(f"/apis/batch/v1/namespaces/{ns}/jobs", sel) for ns in (NS, PROBE_NS)]
        wpods = [Watch(f"/api/v1/namespaces/{ns}/pods", sel) for ns in (NS, PROBE_NS)]
        watches = [wchecks] + wjobs + wpods
        for w in watches:
            w.start()
        time.sleep(3)
        before = controller_metrics()
        usage0 = proc_usage(ctrl.pid)
        peak = {"rss": usage0["vm_rss_kb"]}
        sampling = threading.Event()

        def sample():
            while not sampling.wait(0.5):
                try:
                    peak["rss"] = max(peak["rss"], proc_usage(ctrl.pid)["vm_rss_kb"])
                except OSError:
                    return
        threading.Thread(target=sample, daemon=True).start()

        docs = "".join(check_yaml(i, a.timeout) for i in range(a.checks))
        say(f"creating {a.checks} checks")
        t0 = time.monotonic()
        kubectl("create", "-f", "-", input=docs, timeout=300)
        t_created = time.monotonic() - t0

        def all_done():
            done = set()
            for _, ev in list(wchecks.events):
                o = ev.get("object", {})
                if ((o.get("status") or {}).get("lastRun") or {}).get("completionTime"):
                    done.add(o["metadata"]["name"])
            if len(done) < a.checks:
                return False
            jobs = kubectl("get", "jobs", "-A", "-l", sel, "-o", "name").stdout.split()
            return not [j for j in jobs if j]
        last_report = [time.monotonic()]

        def progress():
            if time.monotonic() - last_report[0] > 30:
                last_report[0] = time.monotonic()
                n = len({ev["object"]["metadata"]["name"] for _, ev in list(wchecks.events)
                         if ((ev.get("object", {}).get("status") or {}).get("lastRun") or {})
                         .get("completionTime")})
                say(f"{n}/{a.checks} checks have a finished run")
            return all_done()
        finished = True
        try:
            wait("every check's first run to finish and its Jobs to go", a.limit, progress, 2)
        except RuntimeError as e:
            say(str(e))
            finished = False
        t_runs = time.monotonic() - t0
        sampling.set()
        usage1 = proc_usage(ctrl.pid)
        mid = controller_metrics()
        say(f"runs done in {t_runs:.1f} s; idle window {a.idle} s")
        time.sleep(a.idle)
        usage2 = proc_usage(ctrl.pid)
        after = controller_metrics()

        req_runs = deltas(mid, before)
        out = {
            "machine": stats.machine(),
            "commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "checks": a.checks,
            "timeout_seconds": a.timeout,
            "all_finished": finished,
            "kubectl_create_s": round(t_created, 2),
            "wall_s_create_to_all_runs_done_and_jobs_gone": round(t_runs, 1),
            "controller": {
                "vm_rss_kb_before": usage0["vm_rss_kb"],
                "vm_rss_kb_peak_sampled": peak["rss"],
                "vm_hwm_kb": usage2["vm_hwm_kb"],
                "vm_rss_kb_after_idle": usage2["vm_rss_kb"],
                "cpu_seconds_during_runs": round(usage1["cpu_seconds"] - usage0["cpu_seconds"], 2),
                "cpu_seconds_idle_window": round(usage2["cpu_seconds"] - usage1["cpu_seconds"], 2),
            },
            "api_requests_during_runs": req_runs,
            "api_requests_during_runs_total": sum(req_runs.values()),
            "api_requests_per_check_run": round(sum(req_runs.values()) / a.checks, 2),
            "api_requests_idle_window": deltas(after, mid),
        }
        out.update(analyse(wchecks, _merge(wjobs), _merge(wpods), a.checks))
        out["commands"] = {
            "controller": "env " + " ".join(
                f"{k}={env[k]}" for k in sorted(env)
                if k.startswith(("REGCHECK_", "RUST_LOG"))) + f" {regcheck} controller",
            "checks": f"kubectl create -f - ({a.checks} x: registry {REGISTRY}, "
                      f"timeoutSeconds {a.timeout}, interval 1h, defaults otherwise)",
            "bench": " ".join(sys.argv),
        }
        print(json.dumps(out, indent=1))
        say(f"saved {stats.save('controller_cluster' + a.tag, out)}")
    finally:
        for w in watches:
            w.stop()
        cleanup(ctrl, servers_up)
        lock.close()
    return 0


def _merge(ws):
    class M:
        events = sorted((e for w in ws for e in w.events), key=lambda e: e[0])
    return M


def cleanup(ctrl, servers_up):
    say("cleanup")
    if ctrl is not None and ctrl.poll() is None:
        # Checks first, while the controller runs: it removes their Jobs and finalizers.
        kubectl("delete", "registryconnectivitychecks.regcheck.dev", "--all", "-n", NS,
                "--wait=true", "--timeout=180s", check=False, timeout=200)
    left = kubectl("get", "registryconnectivitychecks.regcheck.dev", "-n", NS, "-o", "name",
                   check=False).stdout.split()
    for name in left:  # the controller could not remove them: drop the finalizer ourselves
        kubectl("patch", "-n", NS, name, "--type=merge", "-p",
                '{"metadata":{"finalizers":null}}', check=False)
    if ctrl is not None:
        if ctrl.poll() is None:
            os.killpg(ctrl.pid, signal.SIGTERM)
        try:
            ctrl.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(ctrl.pid, signal.SIGKILL)
            ctrl.wait(5)
    kubectl("delete", "namespace", NS, PROBE_NS, "--ignore-not-found", "--wait=true",
            "--timeout=180s", check=False, timeout=200)
    if servers_up:
        subprocess.run(["python3", os.path.join(REPO, "tests/e2e/servers.py"), "down",
                        "--state", f"{STATE}/servers"], capture_output=True, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
