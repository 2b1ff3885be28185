#!/usr/bin/env python3
"""Benchmark 7: `regcheck controller` with thousands of Node objects and checks created at once
(issue 13, scale), on the shared test cluster (/work/shared/cluster).

    sudo python3 bench/scale_nodes.py --regcheck $CARGO_TARGET_DIR/release/regcheck \
        [--nodes 5000] [--checks 1000] [--limit 300] [--idle 30]

Steps, all bounded:

 1. take the e2e lock (/var/lib/regcheck-cluster/e2e.lock, exclusive flock) for the whole run;
    start the cluster if it is down (tests/e2e/cluster.sh up); apply crds/;
 2. create --nodes Node objects of AKS size (~12 KB each: labels of 50 pools x 3 zones, capacity,
    conditions Ready, addresses, nodeInfo, a 50-image list), labelled regcheck-scale=true and
    tainted regcheck-scale=true:NoSchedule, so that no pod of anyone else lands on them. No
    kubelet backs them: the nodes of the one pool/zone the checks select (pool-00 in zone 1) get
    a Lease in kube-node-lease renewed every 10 s, so that the node lifecycle controller keeps
    them Ready; the others go NotReady after its grace period (planning skips them);
 3. run `regcheck controller` as a host process (admin KUBECONFIG, leader election off,
    watching namespace scale-checks, node-context Jobs in scale-probes, metrics on
    127.0.0.1:18091);
 4. stream raw watches of the checks, Jobs and pods (arrival time per event), sample the
    controller's RSS every 0.5 s, and time a GET of the API server every second;
 5. create --checks checks at once (one `kubectl create`): node context only, nodeSelector
    pool-00 / zone 1, tolerating the taint, interval 1h: each plans one probe Job, whose pod is
    bound to a node without a kubelet and stays Pending (nothing runs);
 6. wait until every check has its first Job (or a finished run), or --limit; then --idle s;
 7. report: the controller's VmHWM (peak RSS) and RSS, its API requests by verb and resource
    (its own regcheck_api_requests_total), check ADDED -> its first Job ADDED, the spread of the
    first Jobs, and the API server's GET latency before and during the run;
 8. clean up: the checks (the controller removes Jobs and finalizers), the controller, pods
    (forced: no kubelet will confirm them), namespaces, Leases, the nodes.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import controller_cluster as cc  # noqa: E402
import stats  # noqa: E402

REPO = cc.REPO
NS = "scale-checks"
PROBE_NS = "scale-probes"
METRICS = "127.0.0.1:18091"
LABEL = "regcheck-scale"
POOLS, ZONES = 50, 3
REGION = "westeurope"
SEL_POOL, SEL_ZONE = "pool-00", f"{REGION}-1"

say = cc.say
kubectl = cc.kubectl


def node_name(i):
    pool, zone = i % POOLS, (i // POOLS) % ZONES + 1
    return f"scale-pool-{pool:02d}-z{zone}-{i:05d}", f"pool-{pool:02d}", f"{REGION}-{zone}"


def node(i, now):
    name, pool, zone = node_name(i)
    digest = lambda k: f"{(i * 7919 + k * 104729) % (1 << 64):016x}" * 4  # noqa: E731
    images = [{"names": [f"mcr.microsoft.com/aks/component-{k:02d}@sha256:{digest(k)}",
                         f"mcr.microsoft.com/aks/component-{k:02d}:v1.{k}.{i % 7}-hotfix.2024"],
               "sizeBytes": 10_000_000 + k * 1_234_567} for k in range(50)]
    labels = {
        LABEL: "true",
        "kubernetes.io/os": "linux", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "beta.kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.azure.com/agentpool": pool, "agentpool": pool,
        "kubernetes.azure.com/cluster": "MC_rg-scale_aks-scale_westeurope",
        "kubernetes.azure.com/kubelet-identity-client-id": "00000000-0000-4000-8000-000000000000",
        "kubernetes.azure.com/mode": "user", "kubernetes.azure.com/node-image-version":
            "AKSUbuntu-2204gen2containerd-202410.09.0",
        "kubernetes.azure.com/os-sku": "Ubuntu", "kubernetes.azure.com/role": "agent",
        "kubernetes.azure.com/storageprofile": "managed", "kubernetes.azure.com/storagetier":
            "Premium_LRS",
        "node.kubernetes.io/instance-type": "Standard_D8ds_v5",
        "beta.kubernetes.io/instance-type": "Standard_D8ds_v5",
        "topology.kubernetes.io/region": REGION, "topology.kubernetes.io/zone": zone,
        "failure-domain.beta.kubernetes.io/region": REGION,
        "failure-domain.beta.kubernetes.io/zone": zone,
        "topology.disk.csi.azure.com/zone": zone,
        "storageprofile": "managed", "storagetier": "Premium_LRS",
    }
    cond = lambda t, s, r, m: {"type": t, "status": s, "reason": r, "message": m,  # noqa: E731
                               "lastHeartbeatTime": now, "lastTransitionTime": now}
    cap = {"cpu": "8", "memory": "32863332Ki", "pods": "110", "ephemeral-storage": "129886128Ki",
           "hugepages-1Gi": "0", "hugepages-2Mi": "0", "attachable-volumes-azure-disk": "16"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            "csi.volume.kubernetes.io/nodeid":
                json.dumps({"disk.csi.azure.com": name, "file.csi.azure.com": name})}},
        "spec": {"providerID": f"azure:///subscriptions/0000/resourceGroups/mc_rg/providers/"
                               f"Microsoft.Compute/virtualMachineScaleSets/aks-{pool}-vmss/"
                               f"virtualMachines/{i}",
                 "podCIDR": f"10.{200 + i // 65536}.{(i // 256) % 256}.0/24",
                 "taints": [{"key": LABEL, "value": "true", "effect": "NoSchedule"}]},
        "status": {
            "capacity": cap, "allocatable": dict(cap, cpu="7820m", memory="28292964Ki"),
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status. "
                     "AppArmor enabled"),
            ],
            "addresses": [{"type": "InternalIP", "address": f"10.224.{i // 250}.{i % 250 + 4}"},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": f"{i:032x}", "systemUUID": f"{i:08x}-0000-4000-8000-"
                         "000000000000", "bootID": f"{i:08x}-1111-4000-8000-000000000000",
                         "kernelVersion": "5.15.0-1073-azure",
                         "osImage": "Ubuntu 22.04.5 LTS", "containerRuntimeVersion":
                         "containerd://1.7.22-1", "kubeletVersion": "v1.30.5",
                         "kubeProxyVersion": "v1.30.5", "operatingSystem": "linux",
                         "architecture": "amd64"},
            "images": images,
        },
    }


def selected(n):
    """Indices of the nodes the checks select (pool-00, zone 1)."""
    return [i for i in range(n) if node_name(i)[1:] == (SEL_POOL, SEL_ZONE)]


def leases(idx):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    items = [{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
              "metadata": {"name": node_name(i)[0], "namespace": "kube-node-lease",
                           "labels": {LABEL: "true"}},
              "spec": {"holderIdentity": node_name(i)[0], "leaseDurationSeconds": 40,
                       "renewTime": now}} for i in idx]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def check_yaml(i):
    return f"""apiVersion: regcheck.dev/v1alpha1
kind: RegistryConnectivityCheck
metadata:
  name: scale-{i:04d}
  namespace: {NS}
spec:
  registry: scale.azurecr.io
  timeoutSeconds: 10
  interval: 1h
  contexts:
    pod:
      enabled: false
    node:
      nodeSelector:
        kubernetes.azure.com/agentpool: {SEL_POOL}
        topology.kubernetes.io/zone: {SEL_ZONE}
      tolerations:
      - key: {LABEL}
        operator: Exists
        effect: NoSchedule
---
"""


def metrics():
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("regcheck_api_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            d = dict(kv.split("=", 1) for kv in labels[len("regcheck_api_requests_total{"):-1]
                     .split(","))
            out[f"{d['verb'].strip(chr(34))} {d['resource'].strip(chr(34))}"] = float(value)
    return out


class ApiLatency(threading.Thread):
    """Times `kubectl get --raw /api/v1/namespaces/default` every second (includes kubectl's
    own start, ~0.1 s: compare with the baseline taken the same way)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.wait(1.0):
            t = time.monotonic()
            r = kubectl("get", "--raw", "/api/v1/namespaces/default", check=False, timeout=60)
            self.samples.append((time.time(), time.monotonic() - t, r.returncode == 0))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regcheck", required=True)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--checks", type=int, default=1000)
    p.add_argument("--limit", type=float, default=300, help="s to wait for every first Job")
    p.add_argument("--idle", type=float, default=30)
    p.add_argument("--lock-wait", type=float, default=1800)
    p.add_argument("--tag", default="")
    p.add_argument("--controller-arg", action="append", default=[],
                   help="extra argument of `regcheck controller` (repeatable)")
    a = p.parse_args()
    regcheck = os.path.abspath(a.regcheck)
    if os.geteuid() != 0:
        raise SystemExit("needs root (the cluster's state directory and lock)")
    lock = cc.take_lock(a.lock_wait)
    say(f"holding {cc.LOCK}")
    os.makedirs(cc.STATE, exist_ok=True)
    ctrl, watches, renew_stop = None, [], threading.Event()
    lat = ApiLatency()
    try:
        if subprocess.run([os.path.join(cc.CLUSTER, "status")], capture_output=True,
                          timeout=60).returncode != 0:
            say("cluster is down: tests/e2e/cluster.sh up")
            subprocess.run([os.path.join(REPO, "tests/e2e/cluster.sh"), "up"], check=True,
                           timeout=900, stdout=sys.stderr)
        kubectl("apply", "--validate=false", "-k", os.path.join(REPO, "crds"))
        kubectl("wait", "--for=condition=established", "--timeout=60s",
                "crd/registryconnectivitychecks.regcheck.dev")
        for ns in (NS, PROBE_NS):
            kubectl("create", "namespace", ns, check=False)

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sample = json.dumps(node(0, now))
        say(f"creating {a.nodes} nodes ({len(sample)} bytes of JSON each)")
        t0 = time.monotonic()
        for start in range(0, a.nodes, 500):
            items = [node(i, now) for i in range(start, min(a.nodes, start + 500))]
            kubectl("create", "-f", "-", input=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": items}), timeout=600)
        t_nodes = time.monotonic() - t0
        sel = selected(a.nodes)
        kubectl("apply", "-f", "-", input=leases(sel))

        def renew():
            while not renew_stop.wait(10):
                kubectl("apply", "-f", "-", input=leases(sel), check=False)
        threading.Thread(target=renew, daemon=True).start()
        size = len(kubectl("get", "--raw", "/api/v1/nodes", timeout=300).stdout)
        say(f"nodes created in {t_nodes:.1f} s; an unpaginated LIST of all nodes is "
            f"{size / 1e6:.1f} MB; {len(sel)} nodes selected by the checks")

        lat.start()
        time.sleep(5)
        env = dict(cc.KENV, REGCHECK_PROBE_IMAGE="localhost/regcheck:scale",
                   REGCHECK_PROBE_IMAGE_PULL_POLICY="Never",
                   REGCHECK_PROBE_NAMESPACE=PROBE_NS, REGCHECK_NAMESPACES=NS,
                   REGCHECK_LEADER_ELECTION="false", REGCHECK_METRICS_ADDR=METRICS,
                   REGCHECK_LOG_FORMAT="text", RUST_LOG="info")
        log = open(f"{cc.STATE}/scale-controller.log", "w")
        ctrl = subprocess.Popen([regcheck, "controller"] + a.controller_arg, env=env,
                                stdout=log, stderr=log, start_new_session=True)

        def ready():
            if ctrl.poll() is not None:
                raise RuntimeError(f"controller exited; see {cc.STATE}/scale-controller.log")
            try:
                with urllib.request.urlopen(f"http://{METRICS}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        cc.wait("controller /readyz", 60, ready)
        say(f"controller ready (pid {ctrl.pid})")
        msel = "app.kubernetes.io/managed-by=regcheck"
        wchecks = cc.Watch(f"{cc.GROUP}/namespaces/{NS}/registryconnectivitychecks")
        wjobs = cc.Watch(f"/apis/batch/v1/namespaces/{PROBE_NS}/jobs", msel)
        wpods = cc.Watch(f"/api/v1/namespaces/{PROBE_NS}/pods", msel)
        watches = [wchecks, wjobs, wpods]
        for w in watches:
            w.start()
        time.sleep(3)
        before = metrics()
        usage0 = cc.proc_usage(ctrl.pid)
        peak = {"rss": usage0["vm_rss_kb"]}
        rss_samples = []  # (s since the checks' creation started, VmRSS KiB)
        sampling = threading.Event()

        def sample_rss():
            while not sampling.wait(0.5):
                try:
                    kb = cc.proc_usage(ctrl.pid)["vm_rss_kb"]
                except OSError:
                    return
                peak["rss"] = max(peak["rss"], kb)
                rss_samples.append((round(time.time() - t_load, 1), kb))
        threading.Thread(target=sample_rss, daemon=True).start()
        t_load = time.time()

        say(f"creating {a.checks} checks")
        t0 = time.monotonic()
        kubectl("create", "-f", "-", input="".join(check_yaml(i) for i in range(a.checks)),
                timeout=600)
        t_created = time.monotonic() - t0

        def with_jobs():
            return {ev.get("object", {}).get("metadata", {}).get("labels", {}).get(cc.CHECK_LABEL)
                    for _, ev in list(wjobs.events) if ev.get("type") == "ADDED"} - {None}

        def finished():
            return {ev["object"]["metadata"]["name"] for _, ev in list(wchecks.events)
                    if ((ev.get("object", {}).get("status") or {}).get("lastRun") or {})
                    .get("completionTime")}
        last = [time.monotonic()]

        def progress():
            n = len(with_jobs() | finished())
            if time.monotonic() - last[0] > 15:
                last[0] = time.monotonic()
                say(f"{n}/{a.checks} checks have a Job or a finished run; "
                    f"RSS {cc.proc_usage(ctrl.pid)['vm_rss_kb'] // 1024} MiB")
            return n >= a.checks
        done = True
        try:
            cc.wait("every check's first Job", a.limit, progress, 1)
        except RuntimeError as e:
            say(str(e))
            done = False
        t_jobs = time.monotonic() - t0
        mid, usage1 = metrics(), cc.proc_usage(ctrl.pid)
        say(f"first Jobs in {t_jobs:.1f} s; idle {a.idle} s")
        time.sleep(a.idle)
        sampling.set()
        after, usage2 = metrics(), cc.proc_usage(ctrl.pid)
        lat.stop.set()

        an = cc.analyse(wchecks, wjobs, wpods, a.checks)
        first_jobs = sorted(min(t for t, ev in wjobs.events if ev.get("type") == "ADDED" and
                                ev["object"]["metadata"]["labels"].get(cc.CHECK_LABEL) == c)
                            for c in with_jobs())
        # The first run is due at creation + its jitter (decide::first_run_jitter: SHA-256 of
        # "uid\0" "0", below min(interval / 10, 30 s)); from then to its first Job is the delay
        # the controller adds.
        window_ms = min(3600 * 1000 // 10, 30 * 1000)
        due_lat = []
        for _, ev in wchecks.events:
            md = ev.get("object", {}).get("metadata", {})
            if ev.get("type") != "ADDED" or md.get("name") not in with_jobs():
                continue
            h = hashlib.sha256(f"{md['uid']}\0{0}".encode()).digest()
            jit = int.from_bytes(h[:8], "big") % window_ms / 1000
            added = min(t for t, e in wchecks.events
                        if e["object"]["metadata"]["name"] == md["name"])
            first = min(t for t, e in wjobs.events if e.get("type") == "ADDED" and
                        e["object"]["metadata"]["labels"].get(cc.CHECK_LABEL) == md["name"])
            due_lat.append(first - (added + jit))
        base = [d for t, d, ok in lat.samples if t < t_load]
        during = [d for t, d, ok in lat.samples if t_load <= t <= t_load + t_jobs]
        req = cc.deltas(mid, before)
        out = {
            "machine": stats.machine(),
            "nodes": a.nodes, "node_json_bytes": len(sample),
            "unpaginated_node_list_bytes": size, "nodes_selected": len(sel),
            "checks": a.checks, "all_first_jobs": done,
            "kubectl_create_nodes_s": round(t_nodes, 1),
            "kubectl_create_checks_s": round(t_created, 2),
            "s_create_to_every_first_job": round(t_jobs, 1),
            "checks_with_jobs": len(with_jobs()), "checks_finished": len(finished()),
            "create_to_first_job": an["create_to_first_job"],
            "first_run_due_to_first_job": stats.summary_ms(due_lat) if due_lat else None,
            "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
            "first_jobs_spread_s": round(first_jobs[-1] - first_jobs[0], 1)
            if first_jobs else None,
            "controller": {
                "vm_rss_kb_before": usage0["vm_rss_kb"],
                "vm_rss_kb_peak_sampled": peak["rss"],
                "vm_rss_kb_samples": rss_samples,
                "vm_hwm_kb": usage2["vm_hwm_kb"],
                "vm_rss_kb_after_idle": usage2["vm_rss_kb"],
                "cpu_seconds_to_first_jobs": round(usage1["cpu_seconds"] - usage0["cpu_seconds"],
                                                   2),
            },
            "api_requests_to_first_jobs": req,
            "api_requests_to_first_jobs_total": sum(req.values()),
            "api_requests_idle_window": cc.deltas(after, mid),
            "api_get_latency_baseline": stats.summary_ms(base) if base else None,
            "api_get_latency_during": stats.summary_ms(during) if during else None,
            "api_get_failures_during": sum(1 for t, d, ok in lat.samples
                                           if t_load <= t <= t_load + t_jobs and not ok),
            "commands": {
                "controller": "env " + " ".join(
                    f"{k}={env[k]}" for k in sorted(env)
                    if k.startswith(("REGCHECK_", "RUST_LOG"))) + f" {regcheck} controller "
                    + " ".join(a.controller_arg),
                "bench": " ".join(sys.argv),
            },
        }
        print(json.dumps(out, indent=1))
        say(f"saved {stats.save('scale_nodes' + a.tag, out)}")
    finally:
        lat.stop.set()
        for w in watches:
            w.stop()
        cleanup(ctrl, renew_stop)
        lock.close()
    return 0


def cleanup(ctrl, renew_stop):
    say("cleanup")
    renew_stop.set()
    if ctrl is not None and ctrl.poll() is None:
        # kubectl's own wait on 1,000 objects outlives their deletion: poll instead.
        kubectl("delete", "registryconnectivitychecks.regcheck.dev", "--all", "-n", NS,
                "--wait=false", check=False, timeout=320)
        try:
            cc.wait("the checks to go", 300, lambda: not kubectl(
                "get", "registryconnectivitychecks.regcheck.dev", "-n", NS, "-o", "name",
                check=False).stdout.split(), 3)
        except RuntimeError as e:
            say(str(e))
    for name in kubectl("get", "registryconnectivitychecks.regcheck.dev", "-n", NS, "-o",
                        "name", check=False).stdout.split():
        kubectl("patch", "-n", NS, name, "--type=merge", "-p",
                '{"metadata":{"finalizers":null}}', check=False)
    if ctrl is not None:
        if ctrl.poll() is None:
            os.killpg(ctrl.pid, cc.signal.SIGTERM)
        try:
            ctrl.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(ctrl.pid, cc.signal.SIGKILL)
            ctrl.wait(5)
    for ns in (NS, PROBE_NS):
        kubectl("delete", "jobs", "--all", "-n", ns, "--wait=false", check=False, timeout=300)
        # Pods bound to nodes without a kubelet never confirm a graceful deletion.
        kubectl("delete", "pods", "--all", "-n", ns, "--force", "--grace-period=0",
                "--wait=false", check=False, timeout=300)
    kubectl("delete", "namespace", NS, PROBE_NS, "--ignore-not-found", "--wait=true",
            "--timeout=300s", check=False, timeout=320)
    kubectl("delete", "leases", "-n", "kube-node-lease", "-l", f"{LABEL}=true", check=False)
    kubectl("delete", "nodes", "-l", f"{LABEL}=true", "--wait=false", check=False,
            timeout=620)
    try:
        cc.wait("the nodes to go", 300, lambda: not kubectl(
            "get", "nodes", "-l", f"{LABEL}=true", "-o", "name", check=False).stdout.split(), 3)
    except RuntimeError as e:
        say(str(e))
    left = kubectl("get", "nodes", "-l", f"{LABEL}=true", "-o", "name", check=False).stdout
    say(f"nodes left: {len(left.split())}")


if __name__ == "__main__":
    sys.exit(main())
