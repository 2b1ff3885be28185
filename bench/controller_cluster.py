#!/usr/bin/env python3
"""Benchmark 5: `regcheck controller` on the shared test cluster (/work/shared/cluster).

    sudo python3 bench/controller_cluster.py --regcheck target/release/regcheck [--checks 200]

Only uses a cluster that is already up (`$CLUSTER/status` exit 0); never starts or stops it.
Skips (exit 0, says why) when the cluster is down or the binary has no `controller`
subcommand. Steps, all bounded:

 1. load the binary as image localhost/regcheck:bench (entrypoint /regcheck; load-image);
 2. apply the CRD, create namespaces regcheck-bench (checks) and regcheck-bench-system
    (probe namespace, privileged);
 3. start the controller on the host (KUBECONFIG; leader election off; metrics on
    127.0.0.1:18080; watching only regcheck-bench);
 4. start three watches (checks, Jobs, pods) that stamp each event with the local arrival
    time, then create N checks (registry 10.88.0.1:5443: a bridge address, IP literal, so no
    DNS and no traffic leaves the machine; timeoutSeconds 5);
 5. wait until every check has a status.lastRun with completionTime (or the time limit);
 6. report: create -> first Job of the check (median/p90), last probe pod finished -> status
    written (median/p90), API requests (apiserver_request_total deltas for the controller's
    resources), controller peak RSS (VmHWM) and CPU seconds;
 7. delete the checks and namespaces, stop the controller.

NOTE: written before `regcheck controller` landed on main; not yet run against it.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.environ.get("REGCHECK_CLUSTER", "/work/shared/cluster")
CDIR = os.environ.get("REGCHECK_CLUSTER_DIR", "/var/lib/regcheck-cluster")
KUBECTL = os.path.join(CDIR, "bin", "kubectl")
NS = "regcheck-bench"
PROBE_NS = "regcheck-bench-system"
IMAGE = "localhost/regcheck:bench"
METRICS = "127.0.0.1:18080"


def kubectl(*args, input=None, timeout=120, check=True):
    r = subprocess.run([KUBECTL] + list(args), input=input, capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, KUBECONFIG=f"{CDIR}/kubeconfig"))
    if check and r.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()[-1000:]}")
    return r


class Watch(threading.Thread):
    """`kubectl get --watch` with each event stamped with its arrival time."""

    def __init__(self, *args):
        super().__init__(daemon=True)
        self.events = []
        self.proc = subprocess.Popen(
            [KUBECTL, "get", "--watch", "--output-watch-events", "-o", "json"] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, KUBECONFIG=f"{CDIR}/kubeconfig"))

    def run(self):
        buf, depth = "", 0
        for line in self.proc.stdout:  # kubectl prints pretty JSON objects one after another
            buf += line
            depth += line.count("{") - line.count("}")
            if depth == 0 and buf.strip():
                try:
                    self.events.append((time.monotonic(), json.loads(buf)))
                except ValueError:
                    pass
                buf = ""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def apiserver_counts():
    """apiserver_request_total summed by (verb, resource, subresource) for our resources."""
    text = kubectl("get", "--raw", "/metrics", timeout=30).stdout
    out = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("resource") not in ("registryconnectivitychecks", "jobs", "pods",
                                          "events", "nodes", "leases"):
            continue
        key = f'{labels.get("verb")} {labels.get("resource")}' + \
            (f'/{labels["subresource"]}' if labels.get("subresource") else "")
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
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
    cpu = (int(fields[11]) + int(fields[12])) / tick
    return {"vm_hwm_kb": hwm, "vm_rss_kb": rss, "cpu_seconds": cpu}


def check_yaml(i, timeout):
    return f"""apiVersion: regcheck.dev/v1alpha1
kind: RegistryConnectivityCheck
metadata:
  name: bench-{i:04d}
  namespace: {NS}
spec:
  registry: "10.88.0.1:5443"
  timeoutSeconds: {timeout}
  interval: 1h
---
"""


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regcheck", required=True)
    p.add_argument("--checks", type=int, default=200)
    p.add_argument("--limit", type=float, default=900, help="seconds to wait for all runs")
    a = p.parse_args()
    regcheck = os.path.abspath(a.regcheck)

    if subprocess.run([f"{CLUSTER}/status"], capture_output=True, timeout=60).returncode != 0:
        print("SKIPPED: the test cluster is not up ($CLUSTER/status != 0); this script never "
              "starts it. See BENCHMARKS.md, item 5.")
        return 0
    if subprocess.run([regcheck, "controller", "--help"], capture_output=True,
                      timeout=10).returncode != 0:
        print("SKIPPED: this regcheck has no `controller` subcommand yet.")
        return 0

    subprocess.run([f"{CLUSTER}/load-image", IMAGE, regcheck, "--as", "/regcheck"],
                   check=True, timeout=300)
    crd = subprocess.run([regcheck, "crdgen"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    kubectl("apply", "-f", "-", input=crd)
    kubectl("wait", "--for=condition=Established", "crd/registryconnectivitychecks.regcheck.dev",
            "--timeout=60s")
    for ns in (NS, PROBE_NS):
        kubectl("create", "namespace", ns, check=False)
    kubectl("label", "--overwrite", "namespace", PROBE_NS,
            "pod-security.kubernetes.io/enforce=privileged")

    env = dict(os.environ, KUBECONFIG=f"{CDIR}/kubeconfig", REGCHECK_PROBE_IMAGE=IMAGE,
               REGCHECK_PROBE_IMAGE_PULL_POLICY="Never", REGCHECK_PROBE_NAMESPACE=PROBE_NS,
               REGCHECK_NAMESPACES=NS, REGCHECK_LEADER_ELECTION="false",
               REGCHECK_METRICS_ADDR=METRICS, RUST_LOG="info", REGCHECK_LOG_FORMAT="json")
    log = open("/tmp/regcheck-bench-controller.log", "w")
    ctrl = subprocess.Popen([regcheck, "controller"], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    watches = []
    out = {"machine": stats.machine(), "checks": a.checks}
    try:
        time.sleep(3)
        if ctrl.poll() is not None:
            raise RuntimeError("controller exited; see /tmp/regcheck-bench-controller.log")
        watches = [Watch("registryconnectivitychecks.regcheck.dev", "-n", NS),
                   Watch("jobs", "-A", "-l", "app.kubernetes.io/managed-by=regcheck"),
                   Watch("pods", "-A", "-l", "app.kubernetes.io/managed-by=regcheck")]
        for w in watches:
            w.start()
        time.sleep(2)
        before = apiserver_counts()
        usage0 = proc_usage(ctrl.pid)
        docs = "".join(check_yaml(i, 5) for i in range(a.checks))
        t_create = time.monotonic()
        kubectl("create", "-f", "-", input=docs, timeout=300)
        deadline = time.monotonic() + a.limit
        done = set()
        while time.monotonic() < deadline and len(done) < a.checks:
            for _, ev in list(watches[0].events):
                o = ev.get("object", {})
                if (o.get("status") or {}).get("lastRun", {}).get("completionTime"):
                    done.add(o["metadata"]["name"])
            time.sleep(1)
        out["finished_checks"] = len(done)
        out["wall_s_all_runs"] = round(time.monotonic() - t_create, 1)
        usage1 = proc_usage(ctrl.pid)
        after = apiserver_counts()
        out["controller"] = {"vm_hwm_kb": usage1["vm_hwm_kb"], "vm_rss_kb": usage1["vm_rss_kb"],
                             "cpu_seconds_during_runs":
                                 round(usage1["cpu_seconds"] - usage0["cpu_seconds"], 2)}
        out["apiserver_request_deltas"] = {k: after.get(k, 0) - before.get(k, 0)
                                           for k in sorted(set(after) | set(before))
                                           if after.get(k, 0) - before.get(k, 0)}

        # Per check: ADDED of the check -> first Job ADDED; last pod finished -> status written.
        added, first_job, pod_done, status_at = {}, {}, {}, {}
        for t, ev in watches[0].events:
            o = ev["object"]
            name = o["metadata"]["name"]
            if ev.get("type") == "ADDED":
                added.setdefault(name, t)
            if (o.get("status") or {}).get("lastRun", {}).get("completionTime"):
                status_at.setdefault(name, t)
        label = "regcheck.dev/check"
        for t, ev in watches[1].events:
            name = ev["object"]["metadata"].get("labels", {}).get(label)
            if ev.get("type") == "ADDED" and name:
                first_job.setdefault(name, t)
        for t, ev in watches[2].events:
            o = ev["object"]
            name = o["metadata"].get("labels", {}).get(label)
            if name and o.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                pod_done[name] = max(pod_done.get(name, 0), t)
        to_jobs = [first_job[n] - added[n] for n in added if n in first_job]
        to_status = [status_at[n] - pod_done[n] for n in status_at if n in pod_done]
        out["create_to_first_job"] = stats.summary_ms(to_jobs) if to_jobs else None
        out["last_probe_to_status"] = stats.summary_ms(to_status) if to_status else None
        out["jobs_created"] = sum(1 for _, ev in watches[1].events if ev.get("type") == "ADDED")
        out["commands"] = {"controller": "env " + " ".join(
            f"{k}={env[k]}" for k in sorted(env) if k.startswith(("REGCHECK_", "RUST_LOG"))) +
            f" {regcheck} controller", "checks": "kubectl create -f - (N checks, see check_yaml)"}
        print(json.dumps(out, indent=1))
        print("saved", stats.save("controller_cluster", out))
    finally:
        for w in watches:
            w.stop()
        kubectl("delete", "namespace", NS, "--wait=false", check=False)
        os.killpg(ctrl.pid, signal.SIGTERM)
        try:
            ctrl.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(ctrl.pid, signal.SIGKILL)
        kubectl("delete", "namespace", PROBE_NS, "--wait=false", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
