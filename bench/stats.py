"""Small statistics helpers shared by the bench scripts (no numpy)."""

import json
import math
import os
import platform
import subprocess
import time


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def pct(xs, p):
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(1, math.ceil(p / 100 * len(s)))
    return s[k - 1]


def summary_ms(xs):
    """median / p90 / min / max in milliseconds of values in seconds."""
    return {"n": len(xs), "median_ms": round(median(xs) * 1000, 1),
            "p90_ms": round(pct(xs, 90) * 1000, 1), "min_ms": round(min(xs) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1)}


def machine():
    """Facts printed with every result."""
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(), "cpu": cpu,
            "kernel": platform.release(), "loadavg": open("/proc/loadavg").read().split()[:3],
            "curl": sh(["curl", "--version"]).splitlines()[0] if sh(["curl", "--version"]) else "",
            "git": sh(["git", "-C", os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "rev-parse", "--short", "HEAD"])}


def save(name, data):
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return path
