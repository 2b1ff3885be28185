#!/usr/bin/env python3
"""Benchmark 1: critical path of `regcheck check` with three endpoints, against curl to the
slowest endpoint alone and a sequential dig + curl walk of all three.

    sudo python3 bench/critical_path.py --regcheck target/release/regcheck [--n 20]

Lab: bench/benchlab.py (delays by relay: login 5 ms, data endpoint 1 20 ms, data endpoint 2
40 ms RTT; also the swapped layout where the login server is the 40 ms one, since regcheck
sends an HTTP request to the login server only). Results: bench/results/critical_path.json.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlab  # noqa: E402
import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def physical_limit(rtt_ms, http):
    """Round trips on one fresh connection: DNS 1 (A and AAAA in parallel), TCP 1, TLS 1.3 1,
    HTTP request 1 (if sent)."""
    trips = {"dns": 1, "tcp": 1, "tls13": 1}
    if http:
        trips["http"] = 1
    return {"round_trips": trips, "rtt_ms": rtt_ms, "limit_ms": rtt_ms * sum(trips.values())}


def run_layout(lab, regcheck, n, rtts):
    lab.set_rtts(**rtts)
    login, data1, data2 = benchlab.lab.LOGIN, benchlab.lab.DATA, benchlab.DATA2
    by_rtt = {login: rtts["login"], data1: rtts["data1"], data2: rtts["data2"]}
    slowest = max(by_rtt, key=by_rtt.get)
    cmd = [sys.executable, os.path.join(HERE, "inner.py"), "critical-path",
           "--regcheck", regcheck, "--ca", lab.ca, "--login", login,
           "--data", data1, "--data", data2, "--slowest", slowest, "--n", str(n)]
    r = lab.in_client(cmd, timeout=60 * n + 120)
    if r.returncode != 0:
        raise RuntimeError(f"inner driver failed: {r.stderr[-2000:]}")
    raw = json.loads(r.stdout)
    rtt = by_rtt[slowest]
    res = {
        "rtts_ms": rtts,
        "slowest": slowest,
        "regcheck_wall": stats.summary_ms(raw["regcheck"]),
        "regcheck_internal_ms_median": stats.median(
            [x for x in raw["regcheck_internal_ms"] if x is not None]),
        "curl_slowest_time_total": stats.summary_ms(raw["curl_total"]),
        "curl_slowest_wall": stats.summary_ms(raw["curl_wall"]),
        "curl_slowest_phases_median_ms": {
            k: round(stats.median([p[k] for p in raw["curl_phases"]]) * 1000, 1)
            for k in ("dns", "connect", "tls", "ttfb", "total")},
        "sequential_walk_wall": stats.summary_ms(raw["walk"]),
        "physical_limit_issue_definition": physical_limit(rtt, http=True),
        "physical_limit_what_regcheck_does": physical_limit(
            rtt, http=(slowest == login)),
        "errors": raw["errors"],
        "commands": {"regcheck": raw["regcheck_cmd"], "curl": raw["curl_cmd"],
                     "walk": raw["walk_cmds"]},
        "last_regcheck_report_primary": (raw.get("last_report") or {}).get("findings", [{}])[0],
    }
    reg = res["regcheck_wall"]["median_ms"]
    res["ratios"] = {
        "regcheck_over_curl_time_total": round(reg / res["curl_slowest_time_total"]["median_ms"], 3),
        "regcheck_over_curl_wall": round(reg / res["curl_slowest_wall"]["median_ms"], 3),
        "regcheck_over_walk": round(reg / res["sequential_walk_wall"]["median_ms"], 3),
        "regcheck_over_limit": round(reg / res["physical_limit_issue_definition"]["limit_ms"], 3),
    }
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regcheck", required=True)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--id", default="bench-cp")
    a = p.parse_args()
    regcheck = os.path.abspath(a.regcheck)
    out = {"machine": stats.machine(), "n": a.n, "regcheck": regcheck,
           "regcheck_bytes": os.path.getsize(regcheck), "layouts": []}
    with benchlab.BenchLab(a.id, delays=True) as lab:
        for rtts in ({"login": 5, "data1": 20, "data2": 40},
                     {"login": 40, "data1": 20, "data2": 5}):
            res = run_layout(lab, regcheck, a.n, rtts)
            out["layouts"].append(res)
            print(json.dumps({k: res[k] for k in ("rtts_ms", "regcheck_wall",
                                                  "curl_slowest_time_total",
                                                  "curl_slowest_wall", "sequential_walk_wall",
                                                  "physical_limit_issue_definition",
                                                  "ratios", "errors")}, indent=1))
    out["machine_after"] = stats.machine()["loadavg"]
    print("saved", stats.save("critical_path", out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.TimeoutExpired as e:
        print(f"timed out: {e}", file=sys.stderr)
        sys.exit(1)
