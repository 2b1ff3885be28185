#!/usr/bin/env python3
"""Checks of everything we ship for Kubernetes, with the real engines, offline.

- values.yaml against values.schema.json (jsonschema), and Helm's own schema check;
- `helm lint --strict` and rendering of the chart with Helm's library (helm-python-sdk), with
  the default values and with every documented option switched on;
- every rendered object, the CRD and `kubectl kustomize deploy/` (when deploy/ exists) against
  the Kubernetes 1.33 schemas (kubernetes-validate, strict: unknown fields fail);
- the PrometheusRule of the chart carries the groups of deploy/prometheus/regcheck-rules.yaml,
  the dashboard ConfigMap the JSON of deploy/grafana/, and the dashboard's PromQL parses
  (promtool) and uses only the controller's metrics;
- RBAC: the API calls the controller makes, derived from src/ (see `derive_api_calls`),
  against the rules of the chart and of deploy/.

Run through `cargo test --test packaging` (which makes the venv), or by hand:
    python3 tests/packaging/check.py [--only NAME]
Prints one line per check and exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regcheck"
K8S_VERSION = "1.33.0"
RELEASE_NS = "regcheck-system"

# Every documented option of values.yaml switched on or changed (rendered as one scenario).
ALL_OPTIONS = {
    "nameOverride": "rc",
    "image": {
        "repository": "mirror.corp.example/tools/regcheck",
        "tag": "0.1.0",
        "pullPolicy": "Always",
        "pullSecrets": [{"name": "mirror-pull"}],
    },
    "controller": {
        "replicas": 2,
        "probeImage": "mirror.corp.example/tools/regcheck@sha256:" + "a" * 64,
        "probeImagePullPolicy": "Always",
        "probeNamespace": "regcheck-probes",
        "namespaces": ["team-a", "team-b"],
        "maxConcurrentJobs": 20,
        "maxConcurrentReconciles": 8,
        "metricsPort": 9090,
        "hostNetwork": True,
        "leaderElection": True,
        "observePullFailures": True,
        "leaseName": "rc-leader",
        "nodeProxy": "http://proxy.corp.example:3128",
        "nodeNoProxy": [".azurecr.io", "10.0.0.0/8"],
        "nodeHostFiles": {
            "containerdConfigDir": "/var/lib/rancher/k3s/agent/etc/containerd/certs.d",
            "containerdDropinDir": "",
            "resolvConf": "/run/systemd/resolve/stub-resolv.conf",
        },
        "nodeContextNamespaces": "regcheck.dev/node-probes=true",
        "allowedRegistries": ["*.azurecr.io", "mcr.microsoft.com"],
        "allowedPorts": [443, 5000],
        "allowedProxies": ["proxy.corp.example"],
        "allowedProxyPorts": [3128, 8888],
        "allowedNodeStrategies": ["PerNodePool", "Sample"],
        "maxSampleNodes": 20,
        "maxNodesPerRun": 200,
        "minInterval": "10m",
        "maxProbeJobsInFlight": 40,
        "logFormat": "text",
        "logLevel": "regcheck=debug,info",
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "nodeSelector": {"kubernetes.io/os": "linux", "pool": "system"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "platform"},
    },
    "serviceAccount": {"annotations": {"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"}},
    "service": {"type": "ClusterIP", "port": 9090},
    "serviceMonitor": {"enabled": True, "interval": "1m", "labels": {"release": "kps"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kps"}, "runbookBaseUrl": "https://runbooks.example/regcheck"},
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "labels": {"team": "platform"}},
    "tests": {"registry": "mirror.corp.example", "timeout": "30s"},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "apiServerPorts": [443],
        "apiServerCIDRs": ["10.0.0.1/32"],
    },
}

# Values that the schema must refuse (key path, value).
BAD_VALUES = [
    ("image.pullPolicy", "Sometimes"),
    ("controller.probeImagePullPolicy", "always"),
    ("controller.logFormat", "xml"),
    ("controller.metricsPort", 70000),
    ("controller.nodeProxy", "proxy.corp:3128"),
    # Host paths node probes mount: what src/operator/jobs.rs parse_host_path refuses.
    ("controller.nodeHostFiles.containerdConfigDir", "etc/containerd/certs.d"),
    ("controller.nodeHostFiles.containerdConfigDir", "/"),
    ("controller.nodeHostFiles.containerdDropinDir", "/etc/../root"),
    ("controller.nodeHostFiles.resolvConf", "/etc/./resolv.conf"),
    ("controller.nodeHostFiles.resolvConf", "/etc//resolv.conf"),
    ("controller.nodeHostFiles.unknownKey", "/etc"),
    ("controller.namespaces", ["Team_A"]),
    ("controller.unknownKey", True),
    ("image.repository", ""),
    ("networkPolicy.apiServerCIDRs", ["10.0.0.1"]),
    ("controller.nodeContextNamespaces", "Team_A"),
    ("controller.allowedRegistries", ["reg io"]),
    ("controller.allowedRegistries", []),
    ("controller.allowedPorts", [0]),
    ("controller.allowedPorts", ["443"]),
    ("controller.allowedProxies", ["proxy.corp:3128"]),
    ("controller.allowedProxyPorts", []),
    ("controller.allowedProxyPorts", [65536]),
    ("controller.allowedNodeStrategies", ["Everything"]),
    ("controller.allowedNodeStrategies", []),
    ("controller.maxSampleNodes", 0),
    ("controller.maxSampleNodes", 1001),
    ("controller.maxNodesPerRun", -1),
    ("controller.minInterval", "5 minutes"),
    ("controller.maxProbeJobsInFlight", -1),
    ("controller.nodeContextNamespaces", "team-a,,probes=true"),
    ("prometheusRule.runbookBaseUrl", "docs/reasons.md"),
    ("prometheusRule.runbookBaseUrl", "https://wiki.example/regcheck#top"),
    # What the controller refuses at start (src/operator/policy.rs HostPattern, NamespaceRule;
    # src/engine/inputs.rs validate_host) and the schema once let through into a crash loop:
    ("controller.allowedRegistries", ["*.azurecr"]),  # '*.' needs two labels
    ("controller.allowedRegistries", ["*.10.0.0.1"]),  # '*.' before an IP address
    ("controller.allowedRegistries", ["*", "myreg.azurecr.io"]),  # '*' mixed with patterns
    ("controller.allowedRegistries", ["300.1.1.1"]),  # all-digit TLD, not an IPv4 address
    ("controller.allowedRegistries", ["1.2.3"]),
    ("controller.allowedRegistries", ["[::1"]),  # '[' without ']'
    ("controller.allowedRegistries", ["1:2:3"]),  # not an IPv6 address
    ("controller.allowedRegistries", ["a" * 64 + ".azurecr.io"]),  # label over 63
    ("controller.allowedRegistries", ["-reg.azurecr.io"]),
    ("controller.allowedProxies", ["*.corp"]),
    ("controller.allowedProxies", ["*", "proxy.corp.example"]),
    ("controller.nodeContextNamespaces", "Example.com/probes=true"),  # uppercase prefix
    ("controller.nodeContextNamespaces", "a..b/probes=true"),
    ("controller.nodeContextNamespaces", "probes=" + "v" * 64),  # value over 63
    ("controller.nodeContextNamespaces", "team-a," + "n" * 64),  # namespace over 63
    ("controller.namespaces", ["n" * 64]),
    ("tests.registry", "https://registry.example.test"),  # a URL, not host[:port]
    ("tests.timeout", "soon"),
]

# Values the controller takes and the schema must take too.
GOOD_VALUES = [
    ("controller.allowedRegistries", ["*"]),
    ("controller.allowedRegistries", ["*.azurecr.io", "mcr.microsoft.com", "10.0.0.4", "fd00::1", "[fd00::2]", "reg.example.com."]),
    ("controller.allowedRegistries", ["::ffff:10.0.0.1", "xn--bcher-kva.example", "1-2.example.com"]),
    ("controller.allowedProxies", ["proxy.corp.example", "*.proxies.corp.example"]),
    ("controller.nodeContextNamespaces", "regcheck.dev/node-probes=true"),
    ("controller.nodeHostFiles.containerdConfigDir", ""),
    ("controller.nodeHostFiles.containerdConfigDir", "/etc/containerd/certs.d/"),
    ("controller.nodeHostFiles.resolvConf", "/etc/.hidden/resolv.conf"),
    ("controller.nodeContextNamespaces", "team-a,team-b"),
    ("controller.nodeContextNamespaces", "probes="),
    ("controller.nodeContextNamespaces", ""),
    ("controller.nodeContextNamespaces", "regcheck-system,regcheck.dev/node-probes=true,team-a"),
    ("controller.nodeContextNamespaces", "*"),
    ("controller.allowedProxies", []),
    ("controller.allowedProxies", ["*"]),
    ("controller.minInterval", "1h30m"),
    ("controller.maxNodesPerRun", 0),
    ("controller.maxProbeJobsInFlight", 0),
]

# The metrics of the controller (CONTRACT.md), for the dashboard.
METRICS = {
    "regcheck_check_ready",
    "regcheck_check_info",
    "regcheck_check_consecutive_failures",
    "regcheck_check_failing_nodes",
    "regcheck_check_nodes_checked",
    "regcheck_check_contexts_consistent",
    "regcheck_check_probes_healthy",
    "regcheck_check_last_run_timestamp_seconds",
    "regcheck_check_run_duration_seconds",
    "regcheck_probe_phase_duration_seconds_bucket",
    "regcheck_runs_total",
    "regcheck_reconcile_errors_total",
    "regcheck_probe_jobs_created_total",
    "regcheck_workload_pull_failures_total",
}

# RBAC of CONTRACT.md: (apiGroup, resource) -> verbs. Exactly what the controller calls
# (namespaces get: only with a label rule in --node-context-namespaces).
CONTRACT_RBAC = {
    ("regcheck.dev", "registryconnectivitychecks"): {"list", "watch", "patch"},
    ("regcheck.dev", "registryconnectivitychecks/status"): {"patch"},
    ("regcheck.dev", "registryconnectivitychecks/finalizers"): {"update"},
    ("batch", "jobs"): {"list", "watch", "create", "deletecollection"},
    ("", "pods"): {"list", "watch", "create", "delete"},
    ("", "events"): {"list"},
    ("", "nodes"): {"list"},
    ("", "namespaces"): {"get"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "events"): {"list", "watch"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}

FAILURES: list[str] = []


def ok(name: str, detail: str = "") -> None:
    print(f"ok   {name}{': ' + detail if detail else ''}")


def fail(name: str, detail: str) -> None:
    FAILURES.append(name)
    print(f"FAIL {name}: {detail}")


def warn(name: str, detail: str) -> None:
    print(f"warn {name}: {detail}")


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def set_path(values: dict, dotted: str, value) -> dict:
    v = copy.deepcopy(values)
    cur = v
    keys = dotted.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return v


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], val)
        else:
            out[k] = copy.deepcopy(val)
    return out


# ---------------------------------------------------------------------------------------------
# Values and schema


def check_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema)
    errs = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(values)]
    if errs:
        return fail("values.yaml matches values.schema.json", "; ".join(errs))
    ok("values.yaml matches values.schema.json")
    merged = deep_merge(values, ALL_OPTIONS)
    errs = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(merged)]
    if errs:
        return fail("all-options values match the schema", "; ".join(errs))
    ok("all-options values match the schema")
    # Every key of values.yaml is exercised by the all-options scenario.
    missing = sorted(set(flatten_keys(values)) - set(flatten_keys(merged, only=ALL_OPTIONS)))
    if missing:
        fail("all-options scenario covers every value", ", ".join(missing))
    else:
        ok("all-options scenario covers every value")
    for path, bad in BAD_VALUES:
        candidate = set_path(values, path, bad)
        if v.is_valid(candidate):
            fail("schema refuses bad values", f"{path}={bad!r} accepted by jsonschema")
            continue
        with helm.Chart.load(CHART) as chart:
            try:
                chart.validate_schema(set_path({}, path, bad))
            except helm.HelmError as e:
                if path.split(".")[-1] not in str(e) and path.split(".")[0] not in str(e):
                    fail("schema refuses bad values", f"{path}: Helm's message does not name it: {e}")
                    continue
            else:
                fail("schema refuses bad values", f"{path}={bad!r} accepted by Helm")
                continue
    ok("schema refuses bad values", f"{len(BAD_VALUES)} cases, jsonschema and Helm")
    for path, good in GOOD_VALUES:
        candidate = set_path(values, path, good)
        errs = [e.message for e in v.iter_errors(candidate)]
        if errs:
            fail("schema takes what the controller takes", f"{path}={good!r}: {errs}")
            continue
        with helm.Chart.load(CHART) as chart:
            try:
                chart.validate_schema(set_path({}, path, good))
            except helm.HelmError as e:
                fail("schema takes what the controller takes", f"{path}={good!r} refused by Helm: {e}")
    if "schema takes what the controller takes" not in FAILURES:
        ok("schema takes what the controller takes", f"{len(GOOD_VALUES)} cases, jsonschema and Helm")


def flatten_keys(d: dict, prefix: str = "", only: dict | None = None) -> list[str]:
    """Leaf key paths of d (when `only` is given: the paths that `only` sets)."""
    src = only if only is not None else d
    out = []
    for k, v in src.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict) and v and not p.endswith(("resources", "affinity", "nodeSelector", "podAnnotations", "podLabels", "labels", "annotations")):
            out += flatten_keys(v, p + ".", v if only is not None else None)
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# Helm


def lint(values: dict, name: str) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=RELEASE_NS, kube_version="v1.33.0")
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    if report.get("errors") or bad:
        fail(f"helm lint --strict ({name})", json.dumps(report.get("errors")) + json.dumps(bad))
    else:
        infos = [m["error"] for m in report.get("messages", [])]
        ok(f"helm lint --strict ({name})", f"infos: {infos}" if infos else "")


def render(values: dict) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name="regcheck", namespace=RELEASE_NS)


def rendered_objects(files: dict[str, str]) -> list[dict]:
    objs = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt"):
            continue
        objs += docs_of(text)
    return objs


def validate_k8s(objs: list[dict], name: str) -> None:
    errs = []
    checked = 0
    for o in objs:
        kind = o.get("kind")
        if o.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            continue  # not in the Kubernetes schemas; checked below
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as e:
            errs.append(f"{kind}/{o['metadata'].get('name')}: {'.'.join(map(str, e.path))}: {e.message}")
        except Exception as e:  # SchemaNotFoundError and friends
            errs.append(f"{kind}/{o.get('metadata', {}).get('name')}: {e}")
    if errs:
        fail(f"Kubernetes {K8S_VERSION} schemas ({name})", "; ".join(errs))
    else:
        ok(f"Kubernetes {K8S_VERSION} schemas ({name})", f"{checked} objects")


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def check_default_render() -> list[dict]:
    files = render({})
    objs = rendered_objects(files)
    validate_k8s(objs, "chart, default values")
    kinds = sorted(o["kind"] for o in objs)
    want = sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"])
    if kinds != want:
        fail("default values render the operator and nothing optional", f"{kinds}")
    else:
        ok("default values render the operator and nothing optional")
    dep = by_kind(objs, "Deployment")[0]
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for k, n in [("ServiceAccount", "regcheck-controller"), ("Deployment", "regcheck-controller"), ("Service", "regcheck-metrics")]:
        if (k, n) not in names:
            fail("contract names", f"no {k} {n}")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    problems = []
    if pod["securityContext"].get("runAsUser") != 65532 or not pod["securityContext"].get("runAsNonRoot"):
        problems.append("pod must run as 65532, non-root")
    sc = c["securityContext"]
    if sc.get("allowPrivilegeEscalation") is not False or sc.get("capabilities", {}).get("drop") != ["ALL"] or not sc.get("readOnlyRootFilesystem"):
        problems.append(f"container securityContext {sc}")
    if c["args"][0] != "controller":
        problems.append(f"args {c['args']}")
    if "--probe-image=localhost/regcheck:0.1.0" not in c["args"]:
        problems.append("probe image defaults to the controller image")
    # Multi-tenant defaults (docs/install.md): node probes only for the release namespace and
    # labelled namespaces, no Explicit proxy, capped strategies, interval and Jobs in flight.
    for arg in [
        f"--node-context-namespaces={RELEASE_NS},regcheck.dev/node-probes=true",
        "--allowed-registries=*",
        "--allowed-ports=443",
        "--allowed-proxies=",
        "--allowed-proxy-ports=3128,8080,80,443",
        "--allowed-node-strategies=PerNodePool,AllNodes,Sample",
        "--max-sample-nodes=10",
        "--max-nodes-per-run=50",
        "--min-interval=5m",
        "--max-probe-jobs-in-flight=100",
    ]:
        if arg not in c["args"]:
            problems.append(f"default target policy: no {arg} in {c['args']}")
    svc = by_kind(objs, "Service")[0]
    if svc["spec"]["ports"][0]["name"] != "metrics" or svc["spec"]["ports"][0]["port"] != 8080:
        problems.append("Service regcheck-metrics must expose port 8080 named metrics")
    notes = files.get("regcheck/templates/NOTES.txt", "")
    for needle in ["kind: RegistryConnectivityCheck", "kubectl get rcc", "kubectl describe rcc", "pod-security.kubernetes.io/enforce=privileged"]:
        if needle not in notes:
            problems.append(f"NOTES.txt lacks {needle!r}")
    if problems:
        fail("default Deployment, Service and NOTES", "; ".join(problems))
    else:
        ok("default Deployment, Service and NOTES")
    # The example check in NOTES.txt is a valid RegistryConnectivityCheck.
    m = re.search(r"cat <<'YAML' \| kubectl apply -f -\n(.*?)\n\s*YAML\n", notes, re.S)
    if not m:
        fail("NOTES.txt example check", "no heredoc found")
    else:
        example = yaml.safe_load("\n".join(l[5:] for l in m.group(1).splitlines()))
        validate_against_crd(example, "NOTES.txt example check")
    return objs


def check_runbook_base() -> None:
    """prometheusRule.runbookBaseUrl replaces the base of every runbook_url, and only that."""
    base = "https://wiki.example/ops/regcheck-reasons/"
    objs = rendered_objects(render({"prometheusRule": {"enabled": True, "runbookBaseUrl": base}}))
    pr = by_kind(objs, "PrometheusRule")
    shipped = yaml.safe_load((ROOT / "deploy/prometheus/regcheck-rules.yaml").read_text())["groups"]
    problems = []
    if len(pr) != 1:
        return fail("prometheusRule.runbookBaseUrl", f"{len(pr)} PrometheusRules")
    got = pr[0]["spec"]["groups"]
    for g_got, g_want in zip(got, shipped):
        for r_got, r_want in zip(g_got["rules"], g_want["rules"]):
            url = r_got["annotations"].get("runbook_url", "")
            want = r_want["annotations"]["runbook_url"]
            prefix, sep, anchor = want.rpartition("#")
            default = prefix.rsplit("-}}", 1)[-1]
            expected = want.replace(default + "#", base.rstrip("/") + "#")
            if "github.com" in url or url != expected or default == base.rstrip("/"):
                problems.append(f"{r_got['alert']}: {url!r}, expected {expected!r}")
            rest_got = {k: v for k, v in r_got.items() if k != "annotations"}
            rest_want = {k: v for k, v in r_want.items() if k != "annotations"}
            if rest_got != rest_want:
                problems.append(f"{r_got['alert']}: more than runbook_url changed")
    if problems:
        fail("prometheusRule.runbookBaseUrl", "; ".join(problems))
    else:
        ok("prometheusRule.runbookBaseUrl", f"every runbook_url starts with {base.rstrip('/')}#")


def check_all_options() -> list[dict]:
    files = render(ALL_OPTIONS)
    objs = rendered_objects(files)
    validate_k8s(objs, "chart, every option")
    dep = by_kind(objs, "Deployment")[0]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    want_args = [
        "controller",
        "--probe-image=mirror.corp.example/tools/regcheck@sha256:" + "a" * 64,
        "--probe-image-pull-policy=Always",
        "--probe-namespace=regcheck-probes",
        "--namespaces=team-a,team-b",
        "--max-concurrent-jobs=20",
        "--max-concurrent-reconciles=8",
        "--metrics-addr=0.0.0.0:9090",
        "--leader-election=true",
        "--observe-pull-failures=true",
        "--lease-name=rc-leader",
        "--node-proxy=http://proxy.corp.example:3128",
        "--node-no-proxy=.azurecr.io,10.0.0.0/8",
        "--node-containerd-config-dir=/var/lib/rancher/k3s/agent/etc/containerd/certs.d",
        "--node-containerd-dropin-dir=",
        "--node-resolv-conf=/run/systemd/resolve/stub-resolv.conf",
        "--node-context-namespaces=regcheck.dev/node-probes=true",
        "--allowed-registries=*.azurecr.io,mcr.microsoft.com",
        "--allowed-ports=443,5000",
        "--allowed-proxies=proxy.corp.example",
        "--allowed-proxy-ports=3128,8888",
        "--allowed-node-strategies=PerNodePool,Sample",
        "--max-sample-nodes=20",
        "--max-nodes-per-run=200",
        "--min-interval=10m",
        "--max-probe-jobs-in-flight=40",
        "--log-format=text",
    ]
    problems = []
    if args != want_args:
        problems.append(f"args {args}")
    if c["image"] != "mirror.corp.example/tools/regcheck:0.1.0" or c["imagePullPolicy"] != "Always":
        problems.append(f"image {c['image']} {c['imagePullPolicy']}")
    pod = dep["spec"]["template"]["spec"]
    if pod.get("imagePullSecrets") != [{"name": "mirror-pull"}]:
        problems.append("imagePullSecrets")
    if dep["spec"]["replicas"] != 2 or pod.get("priorityClassName") != "system-cluster-critical":
        problems.append("replicas/priorityClassName")
    env = {e["name"]: e for e in c["env"]}
    if env.get("RUST_LOG", {}).get("value") != "regcheck=debug,info" or "EXTRA" not in env:
        problems.append(f"env {env}")
    if c["ports"][0]["containerPort"] != 9090:
        problems.append("metrics port")
    pod = dep["spec"]["template"]["spec"]
    if not (pod.get("hostNetwork") is True and pod.get("dnsPolicy") == "ClusterFirstWithHostNet" and dep["spec"].get("strategy", {}).get("type") == "Recreate"):
        problems.append("controller.hostNetwork: hostNetwork, ClusterFirstWithHostNet and strategy Recreate")
    tests = [o for o in by_kind(objs, "Pod") if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if len(tests) != 1 or tests[0]["spec"]["containers"][0]["args"] != ["check", "mirror.corp.example", "--strict-targets", "--timeout=30s"] or tests[0]["spec"]["containers"][0]["image"] != c["image"]:
        problems.append(f"tests.registry: one test hook Pod running `regcheck check` with the controller's image: {tests}")
    role = by_kind(objs, "Role")[0]
    if role["metadata"]["namespace"] != "regcheck-probes":
        problems.append("Lease Role must be in the probe namespace")
    cm = by_kind(objs, "ConfigMap")
    if len(cm) != 1 or cm[0]["metadata"]["labels"].get("grafana_dashboard") != "1" or cm[0]["metadata"]["namespace"] != "monitoring":
        problems.append("dashboard ConfigMap")
    else:
        shipped = json.loads((ROOT / "deploy/grafana/regcheck-dashboard.json").read_text())
        if json.loads(cm[0]["data"]["regcheck-dashboard.json"]) != shipped:
            problems.append("dashboard ConfigMap differs from deploy/grafana/regcheck-dashboard.json")
    np = by_kind(objs, "NetworkPolicy")
    if len(np) != 1 or np[0]["spec"]["ingress"][0]["ports"][0]["port"] != 9090:
        problems.append("NetworkPolicy")
    sm = by_kind(objs, "ServiceMonitor")
    if len(sm) != 1:
        problems.append("ServiceMonitor")
    else:
        ep = sm[0]["spec"]["endpoints"][0]
        svc = by_kind(objs, "Service")[0]
        if ep["port"] != svc["spec"]["ports"][0]["name"] or ep.get("honorLabels") is not True:
            problems.append(f"ServiceMonitor endpoint {ep}")
        if sm[0]["spec"]["selector"]["matchLabels"].items() > svc["metadata"]["labels"].items():
            problems.append("ServiceMonitor selector does not match the Service")
        if sm[0]["metadata"]["labels"].get("release") != "kps":
            problems.append("ServiceMonitor labels")
    pr = by_kind(objs, "PrometheusRule")
    if len(pr) != 1:
        problems.append("PrometheusRule")
    else:
        # The same groups, with prometheusRule.runbookBaseUrl as the base of every runbook_url.
        text = re.sub(
            r"https://github\.com/regcheck/regcheck/blob/v[^/]+/docs/reasons\.md#",
            ALL_OPTIONS["prometheusRule"]["runbookBaseUrl"] + "#",
            (ROOT / "deploy/prometheus/regcheck-rules.yaml").read_text(),
        )
        rules = yaml.safe_load(text)
        if pr[0]["spec"]["groups"] != rules["groups"]:
            problems.append("PrometheusRule groups differ from deploy/prometheus/regcheck-rules.yaml (runbook base replaced)")
        else:
            promtool_check_rules({"groups": pr[0]["spec"]["groups"]}, "PrometheusRule of the chart")
    if problems:
        fail("every option reaches the manifests", "; ".join(problems))
    else:
        ok("every option reaches the manifests")
    return objs


def check_pull_failures_off() -> None:
    """controller.observePullFailures=false: the flag says so and Events are not watched."""
    objs = rendered_objects(render({"controller": {"observePullFailures": False}}))
    args = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    cluster, _ = rbac_of(objs)
    problems = []
    if "--observe-pull-failures=false" not in args:
        problems.append(f"args {args}")
    # `list` stays for the pull canaries' Events; the cluster-wide watch goes.
    if "watch" in cluster.get(("", "events"), set()):
        problems.append("core Events still watched")
    if problems:
        fail("observePullFailures=false", "; ".join(problems))
    else:
        ok("observePullFailures=false", "flag false, no watch of core Events in the ClusterRole")


def promtool_check_rules(rules: dict, name: str) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        return fail(f"promtool check rules ({name})", "promtool not found (Debian package prometheus)")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "rules.yaml"
        p.write_text(yaml.safe_dump(rules))
        r = subprocess.run([promtool, "check", "rules", str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"promtool check rules ({name})", r.stdout + r.stderr)
        else:
            ok(f"promtool check rules ({name})", r.stdout.strip().splitlines()[-1].strip())


# ---------------------------------------------------------------------------------------------
# CRD, dashboard, kustomize


def crd_schema() -> dict:
    crd = yaml.safe_load((ROOT / "crds/regcheck.dev_registryconnectivitychecks.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_against_crd(obj: dict, name: str) -> None:
    schema = json.loads(json.dumps(crd_schema()))

    def strip(s):  # drop Kubernetes extensions the jsonschema library does not know
        if isinstance(s, dict):
            return {k: strip(v) for k, v in s.items() if not k.startswith("x-kubernetes")}
        if isinstance(s, list):
            return [strip(v) for v in s]
        return s

    errs = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft4Validator(strip(schema)).iter_errors(obj)]
    if obj.get("apiVersion") != "regcheck.dev/v1alpha1" or obj.get("kind") != "RegistryConnectivityCheck":
        errs.append("apiVersion/kind")
    if errs:
        fail(name, "; ".join(errs))
    else:
        ok(name, "valid against the CRD's schema")


def check_crds() -> None:
    src = (ROOT / "crds/regcheck.dev_registryconnectivitychecks.yaml").read_text()
    with helm.Chart.load(CHART) as chart:
        crds = chart.crds
    if len(crds) != 1 or crds[0]["data"] != src:
        fail("chart crds/ is the generated CRD", f"{[c['filename'] for c in crds]}")
    else:
        ok("chart crds/ is the generated CRD")
    validate_k8s(docs_of(src), "crds/")


def check_dashboard() -> None:
    dash = json.loads((ROOT / "deploy/grafana/regcheck-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\bregcheck_[a-z_]+", e))
    unknown = used - METRICS
    if unknown:
        fail("dashboard uses only the controller's metrics", ", ".join(sorted(unknown)))
    else:
        ok("dashboard uses only the controller's metrics", f"{len(used)} metrics")
    titles = " / ".join(p["title"] for p in dash["panels"])
    for needle in ["Readiness over time", "Current diagnosis", "Probe phase duration", "Failing nodes"]:
        if needle not in titles:
            fail("dashboard panels", f"no panel {needle!r}")
    # PromQL syntax: each query as a recording rule, Grafana's variables filled in.
    rules = []
    for i, e in enumerate(exprs):
        q = e.replace("$__rate_interval", "5m")
        q = re.sub(r"\$\w+", ".*", q)
        rules.append({"record": f"dashboard:query_{i}", "expr": q})
    promtool_check_rules({"groups": [{"name": "dashboard", "rules": rules}]}, f"dashboard PromQL, {len(exprs)} queries")


def check_readme_commands() -> None:
    """The README's quick start: its check manifest is valid against the CRD, and its
    `helm install --set ...` values pass the schema and render valid objects."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"kubectl apply -f - <<'YAML'\n(.*?)\nYAML\n", readme, re.S)
    if not m:
        return fail("README check manifest", "no `kubectl apply -f - <<'YAML'` block")
    validate_against_crd(yaml.safe_load(m.group(1)), "README check manifest")
    m = re.search(r"^helm install regcheck charts/regcheck (.*?)\n(?!\s)", readme, re.S | re.M)
    if not m:
        return fail("README helm install", "no `helm install regcheck charts/regcheck` command")
    sets = re.findall(r"--set (\S+)", m.group(1))
    values: dict = {}
    for s_ in sets:
        values = deep_merge(values, helm.parse_set_string(s_))
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
    objs = rendered_objects(render(values))
    validate_k8s(objs, f"README helm install ({len(sets)} --set values)")
    for o in objs:
        if o["kind"] == "Deployment":
            image = o["spec"]["template"]["spec"]["containers"][0]["image"]
            if image != "mirror.example.com/tools/regcheck:0.1.0":
                fail("README helm install", f"image {image}")


def check_kustomize() -> list[dict] | None:
    found = None
    for d in ["deploy", "crds"]:
        if not (ROOT / d / "kustomization.yaml").exists():
            print(f"skip kubectl kustomize {d}/: no {d}/kustomization.yaml on this branch yet")
            continue
        kubectl = shutil.which("kubectl")
        if not kubectl:
            fail(f"kubectl kustomize {d}/", "kubectl not found")
            continue
        r = subprocess.run([kubectl, "kustomize", str(ROOT / d)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"kubectl kustomize {d}/", r.stderr.strip())
            continue
        objs = docs_of(r.stdout)
        validate_k8s(objs, f"kubectl kustomize {d}/")
        if d == "deploy":
            found = objs
    return found


# ---------------------------------------------------------------------------------------------
# RBAC derived from the code

# kube Resource type -> (apiGroup, plural)
KINDS = {
    "StoredCheck": ("regcheck.dev", "registryconnectivitychecks"),
    "RegistryConnectivityCheck": ("regcheck.dev", "registryconnectivitychecks"),
    "Job": ("batch", "jobs"),
    "Pod": ("", "pods"),
    "Node": ("", "nodes"),
    "Lease": ("coordination.k8s.io", "leases"),
    "Event": ("", "events"),
    "Namespace": ("", "namespaces"),
    "Secret": ("", "secrets"),
    "ConfigMap": ("", "configmaps"),
}
# kube::Api method -> (subresource, verbs)
METHODS = {
    "get": ("", {"get"}),
    "get_opt": ("", {"get"}),
    "get_metadata": ("", {"get"}),
    "list": ("", {"list"}),
    "list_metadata": ("", {"list"}),
    "watch": ("", {"watch"}),
    "create": ("", {"create"}),
    "delete": ("", {"delete"}),
    "delete_collection": ("", {"deletecollection"}),
    "patch": ("", {"patch"}),
    "patch_metadata": ("", {"patch"}),
    "replace": ("", {"update"}),
    "get_status": ("status", {"get"}),
    "patch_status": ("status", {"patch"}),
    "replace_status": ("status", {"update"}),
}
API_CTOR = r"Api::<\s*(\w+)\s*>::(?:all|namespaced|default_namespaced|all_with|namespaced_with)\s*\("


def rust_sources(src: Path = ROOT / "src") -> dict[str, str]:
    out = {}
    for p in sorted(src.rglob("*.rs")):
        # The kubectl plugin runs with the user's credentials, not the controller's RBAC.
        if "test" in p.stem or p.name == "kubectl.rs":
            continue
        text = p.read_text()
        text = re.split(r"\n#\[cfg\(test\)\]\s*\nmod\s+tests\b", text)[0]
        text = re.sub(r"//[^\n]*", "", text)
        out[str(p.relative_to(src))] = text
    return out


def derive_api_calls(sources: dict[str, str]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource[/subresource]) -> verbs, from kube::Api usage in the sources.

    Recognised: `name: Api<Kind>` bindings (let, struct fields, parameters) and
    `let name = Api::<Kind>::...` followed by `name.<method>(`; inline
    `Api::<Kind>::all(..).<method>(`; `Controller::new(api, ..)`, `.owns(api, ..)`,
    `.watches(api, ..)`, `watcher(api, ..)` and `reflector(.., watcher(api, ..))` (list +
    watch); kube's `finalizer(&api, ..)` helper (patch of the object); `Recorder::new`
    (events.k8s.io Events: create, patch); `controller_owner_ref` (ownerReferences with
    blockOwnerDeletion: update of the owner's finalizers subresource).
    """
    calls: dict[tuple[str, str], set[str]] = {}

    def add(kind: str, sub: str, verbs: set[str], where: str) -> None:
        if kind not in KINDS:
            raise SystemExit(f"check.py: {where}: Api<{kind}> is not in KINDS; add its group and resource")
        group, res = KINDS[kind]
        key = (group, f"{res}/{sub}" if sub else res)
        calls.setdefault(key, set()).update(verbs)

    methods = "|".join(sorted(METHODS, key=len, reverse=True))
    for path, text in sources.items():
        events = []  # (offset, kind of binding or None, name, method)
        for m in re.finditer(r"\b(\w+)\s*:\s*Api<\s*(\w+)\s*>", text):
            events.append((m.start(), "bind", m.group(1), m.group(2)))
        for m in re.finditer(r"let\s+(?:mut\s+)?(\w+)\s*=\s*" + API_CTOR, text):
            events.append((m.start(), "bind", m.group(1), m.group(2)))
        for m in re.finditer(r"\b(\w+)\s*\.\s*(" + methods + r")\s*\(", text):
            events.append((m.start(), "call", m.group(1), m.group(2)))
        for m in re.finditer(r"(?:Controller::new|\.owns|\.watches|\bwatcher|\bmetadata_watcher)\s*\(\s*&?\s*(\w+)\s*[,)]", text):
            events.append((m.start(), "watch", m.group(1), ""))
        for m in re.finditer(r"(?:Controller::new|\.owns|\.watches|\bwatcher|\bmetadata_watcher)\s*\(\s*" + API_CTOR, text):
            add(m.group(1), "", {"list", "watch"}, path)
        for m in re.finditer(r"\bfinalizer\s*\(\s*&?\s*(\w+)\s*,", text):
            events.append((m.start(), "finalizer", m.group(1), ""))
        # Inline: Api::<K>::ctor(args).method(
        for m in re.finditer(API_CTOR, text):
            depth, i = 1, m.end()
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            mm = re.match(r"\s*\.\s*(" + methods + r")\s*\(", text[i:])
            if mm:
                sub, verbs = METHODS[mm.group(1)]
                add(m.group(1), sub, verbs, path)
        bound: dict[str, str] = {}
        for _, what, name, arg in sorted(events):
            if what == "bind":
                bound[name] = arg
            elif name in bound:
                if what == "call":
                    sub, verbs = METHODS[arg]
                    add(bound[name], sub, verbs, path)
                elif what == "watch":
                    add(bound[name], "", {"list", "watch"}, path)
                elif what == "finalizer":
                    add(bound[name], "", {"patch"}, path)
        if re.search(r"\bRecorder::new\s*\(", text):
            calls.setdefault(("events.k8s.io", "events"), set()).update({"create", "patch"})
        if re.search(r"\.controller_owner_ref\s*\(", text):
            calls.setdefault(("regcheck.dev", "registryconnectivitychecks/finalizers"), set()).add("update")
    return calls


def rbac_of(objs: list[dict]) -> tuple[dict, dict]:
    """(cluster-wide rules, namespaced rules) as (group, resource) -> verbs."""
    cluster: dict = {}
    ns: dict = {}
    for o in objs:
        if o.get("kind") not in ("ClusterRole", "Role"):
            continue
        into = cluster if o["kind"] == "ClusterRole" else ns
        for r in o.get("rules", []):
            for g in r.get("apiGroups", []):
                for res in r.get("resources", []):
                    into.setdefault((g, res), set()).update(r.get("verbs", []))
    return cluster, ns


def compare_rbac(objs: list[dict], derived: dict, name: str) -> None:
    cluster, ns = rbac_of(objs)
    granted: dict = {}
    for d in (cluster, ns):
        for k, v in d.items():
            granted.setdefault(k, set()).update(v)
    problems = []
    if granted != CONTRACT_RBAC:
        problems.append(f"differs from CONTRACT.md: {fmt_rbac(granted)} vs {fmt_rbac(CONTRACT_RBAC)}")
    if ("coordination.k8s.io", "leases") in cluster:
        problems.append("leases must be granted by a Role in the probe namespace, not cluster-wide")
    if any(g == "" and r == "secrets" for g, r in granted):
        problems.append("Secrets must not be granted")
    if any("*" in v for v in granted.values()) or ("*", "*") in granted:
        problems.append("no wildcards")
    if not any(r != "registryconnectivitychecks/finalizers" for _, r in derived):
        warn(f"RBAC vs code ({name})", "no kube::Api usage in src/ yet (controller not merged): compared with CONTRACT.md only")
    else:
        missing = {k: v - granted.get(k, set()) for k, v in derived.items() if v - granted.get(k, set())}
        if missing:
            problems.append(f"the controller calls but RBAC does not grant: {fmt_rbac(missing)}")
        unused = {k: v - derived.get(k, set()) for k, v in granted.items() if v - derived.get(k, set())}
        beyond_contract = {k: v - CONTRACT_RBAC.get(k, set()) for k, v in unused.items() if v - CONTRACT_RBAC.get(k, set())}
        if beyond_contract:
            problems.append(f"granted but never used: {fmt_rbac(beyond_contract)}")
        elif unused:
            warn(f"RBAC vs code ({name})", f"granted by CONTRACT.md but not used by the code: {fmt_rbac(unused)}")
    if problems:
        fail(f"RBAC ({name})", "; ".join(problems))
    else:
        ok(f"RBAC ({name})", f"{len(granted)} resources; code uses {fmt_rbac(derived) if derived else 'nothing yet'}")


def fmt_rbac(d: dict) -> str:
    return ", ".join(f"{g or 'core'}/{r}:{'+'.join(sorted(v))}" for (g, r), v in sorted(d.items()))


def check_rbac_scanner() -> None:
    """The scanner on a fixture written like the controller, so it is tested even before the
    controller lands."""
    fixture = {
        "src/controller/fixture.rs": """
            struct Leader { api: Api<Lease> }
            impl Leader { async fn f(&self) { self.api.get_opt(&n).await; self.api.replace(&n, &pp, &l).await; self.api.create(&pp, &l).await; } }
            async fn reconcile(check: Arc<RegistryConnectivityCheck>, ctx: Arc<Ctx>) {
                let api: Api<RegistryConnectivityCheck> = Api::namespaced(ctx.client.clone(), &ns);
                finalizer(&api, FINALIZER, check, |event| async { }).await
            }
            async fn jobs(ctx: &Ctx) {
                let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
                let list = api.list(&lp).await; // a comment: api.patch(
                api.delete_collection(&DeleteParams::background(), &lp).await;
                let labels = job.labels().get(labels::RUN);
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
                api
                    .list(&lp).await;
            }
            async fn status(ctx: &Ctx) {
                let api: Api<RegistryConnectivityCheck> = Api::namespaced(c, &ns);
                api.patch_status(&name, &pp, &patch).await;
                let nodes = Api::<Node>::all(ctx.client.clone()).list(&ListParams::default()).await;
                let owner = check.controller_owner_ref(&());
            }
            fn run(client: Client) {
                Controller::new(
                    Api::<RegistryConnectivityCheck>::all(client.clone()),
                    wc,
                )
                .watches(Api::<Job>::all(client.clone()), job_wc(), |j| check_of_job(&j));
                let recorder = Recorder::new(client.clone(), reporter);
            }
        """
    }
    got = derive_api_calls({k: re.sub(r"//[^\n]*", "", v) for k, v in fixture.items()})
    want = {
        ("coordination.k8s.io", "leases"): {"get", "create", "update"},
        ("regcheck.dev", "registryconnectivitychecks"): {"list", "watch", "patch"},
        ("regcheck.dev", "registryconnectivitychecks/status"): {"patch"},
        ("regcheck.dev", "registryconnectivitychecks/finalizers"): {"update"},
        ("batch", "jobs"): {"list", "watch", "deletecollection"},
        ("", "pods"): {"list"},
        ("", "nodes"): {"list"},
        ("events.k8s.io", "events"): {"create", "patch"},
    }
    if got != want:
        fail("RBAC scanner on a fixture", f"got {fmt_rbac(got)}, want {fmt_rbac(want)}")
    else:
        ok("RBAC scanner on a fixture")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only checks whose function name contains this")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="Rust sources to derive the API calls from")
    args = ap.parse_args()
    print(f"helm SDK {helm.helm_sdk_version()}, Kubernetes schemas {K8S_VERSION} (kubernetes-validate)")
    derived = derive_api_calls(rust_sources(args.src))
    steps = [
        ("values_schema", check_values_schema),
        ("lint", lambda: (lint({}, "default values"), lint(ALL_OPTIONS, "every option"))),
        ("crds", check_crds),
        ("render", lambda: (compare_rbac(check_default_render(), derived, "chart, default values"), compare_rbac(check_all_options(), derived, "chart, every option"))),
        ("runbook", check_runbook_base),
        ("pull_failures_off", check_pull_failures_off),
        ("dashboard", check_dashboard),
        ("rbac_scanner", check_rbac_scanner),
        ("readme", check_readme_commands),
        ("kustomize", lambda: (lambda objs: compare_rbac(objs, derived, "kubectl kustomize deploy/") if objs is not None else None)(check_kustomize())),
    ]
    for name, step in steps:
        if args.only and args.only not in name:
            continue
        try:
            step()
        except Exception as e:  # a crash in one check is a failure of that check, not of all
            fail(name, f"{type(e).__name__}: {e}")
    total = sum(1 for _ in FAILURES)
    print(f"packaging checks: {'FAILED ' + str(total) if total else 'all passed'}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
