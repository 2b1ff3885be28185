#!/usr/bin/env python3
"""`helm` for the e2e tests: the release lifecycle through Helm v4's own SDK (helm-python-sdk,
the packaging venv of tests/packaging.rs), with the command line of the helm binary for the
subset the tests and the README use:

    helm_release.py install NAME CHART [-n NS] [--set K=V]... [-f FILE]... [--skip-crds] [--timeout 180s]
    helm_release.py upgrade NAME CHART [-n NS] [--set K=V]... [-f FILE]... [--skip-crds] [--timeout 180s]
    helm_release.py rollback NAME [REVISION] [-n NS] [--timeout 180s]
    helm_release.py history NAME [-n NS]
    helm_release.py status NAME [-n NS]
    helm_release.py test NAME [-n NS] [--timeout 180s]
    helm_release.py uninstall NAME [-n NS] [--timeout 180s]

install, upgrade and rollback wait for the release's resources (Helm's watcher); install and
upgrade first check the values against the chart's values.schema.json (as helm does), so bad
values fail before anything is applied. `--skip-crds` installs the chart without its crds/
folder (a copy of the chart without it): Helm v4 applies crds/ with server-side apply, which
API servers older than 1.25 refuse for a CRD carrying x-kubernetes-validations ("field not
declared in schema"); there the CRD is applied with `kubectl apply --validate=false -k crds/`
first, as the README's kubectl path does.

Prints one JSON object on stdout: {"name", "namespace", "revision", "status", "chart_version",
"app_version"} (history: a list of those; test: those and "logs"; uninstall: those and "info").
A failure exits 1 with `helm_release.py: <action> <name>: <Helm's error>` on stderr (a failing
`helm test` included). KUBECONFIG names the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import yaml


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def seconds(s: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    if s and s[-1] in units:
        return int(s[:-1]) * units[s[-1]]
    return int(s)


def user_values(args) -> dict:
    """-f files in order, then --set expressions in order (helm's precedence)."""
    values: dict = {}
    for f in args.values or []:
        values = deep_merge(values, yaml.safe_load(Path(f).read_text()) or {})
    for s in args.set or []:
        values = deep_merge(values, helm.parse_set_string(s))
    for s in args.set_string or []:
        values = deep_merge(values, helm.parse_set_string_values(s))
    return values


def summary(rel: dict) -> dict:
    """A release as helm-python-sdk 0.2.2 summarises it (flat: name, namespace, revision,
    status, deployed_at, chart_name, chart_version, app_version, notes, labels), without the
    rendered manifest and notes. A missing key is an error: the layout changed."""
    missing = [k for k in ("name", "namespace", "revision", "status") if k not in rel]
    if missing:
        raise SystemExit(f"helm_release.py: the SDK's release has no {missing}: keys {sorted(rel)}")
    return {k: rel.get(k) for k in ("name", "namespace", "revision", "status", "chart_version", "app_version")}


class ChartDir:
    """The chart, or a copy without crds/ (--skip-crds)."""

    def __init__(self, chart: str, skip_crds: bool):
        self.chart, self.skip, self.tmp = Path(chart), skip_crds, None

    def __enter__(self) -> Path:
        if not self.skip:
            return self.chart
        self.tmp = tempfile.mkdtemp(prefix="regcheck-chart-")
        dest = Path(self.tmp) / self.chart.name
        shutil.copytree(self.chart, dest, ignore=shutil.ignore_patterns("crds"))
        return dest

    def __exit__(self, *exc) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def validate(chart: Path, values: dict) -> None:
    """helm's schema check, before anything reaches the cluster."""
    with helm.Chart.load(chart) as c:
        c.validate_schema(values)


def main() -> int:
    ap = argparse.ArgumentParser(prog="helm_release.py")
    ap.add_argument("action", choices=["install", "upgrade", "rollback", "history", "status", "test", "uninstall"])
    ap.add_argument("name")
    ap.add_argument("rest", nargs="?", help="CHART (install, upgrade) or REVISION (rollback)")
    ap.add_argument("-n", "--namespace", default="default")
    ap.add_argument("--set", action="append")
    ap.add_argument("--set-string", action="append")
    ap.add_argument("-f", "--values", action="append")
    ap.add_argument("--skip-crds", action="store_true")
    ap.add_argument("--timeout", default="180s")
    args = ap.parse_args()
    timeout = seconds(args.timeout)
    kubeconfig = os.environ.get("KUBECONFIG")
    try:
        with helm.Config(kubeconfig_path=kubeconfig, namespace=args.namespace) as cfg:
            if args.action in ("install", "upgrade"):
                if not args.rest:
                    raise SystemExit(f"helm_release.py: {args.action} needs NAME CHART")
                values = user_values(args)
                with ChartDir(args.rest, args.skip_crds) as chart:
                    validate(chart, values)
                    if args.action == "install":
                        rel = cfg.install(chart, args.name, values, namespace=args.namespace, timeout=timeout, wait="watcher")
                    else:
                        rel = cfg.upgrade(chart, args.name, values, namespace=args.namespace, timeout=timeout, wait="watcher")
                out = summary(rel)
            elif args.action == "rollback":
                version = int(args.rest) if args.rest else None
                cfg.rollback(args.name, version=version, timeout=timeout, wait="watcher")
                out = summary(cfg.status(args.name))
            elif args.action == "history":
                out = [summary(r) for r in cfg.history(args.name)]
            elif args.action == "status":
                out = summary(cfg.status(args.name))
            elif args.action == "test":
                r = cfg.test(args.name, timeout=timeout, logs=True)
                out = {**summary(r.get("release") or {}), "logs": r.get("logs", "")}
            else:
                r = cfg.uninstall(args.name, timeout=timeout, wait="watcher")
                out = {"info": r.get("info"), **summary(r.get("release") or {})}
    except helm.HelmError as e:
        print(f"helm_release.py: {args.action} {args.name}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
