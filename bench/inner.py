#!/usr/bin/env python3
"""Measurement loops that run INSIDE the lab's client namespace (started by the bench scripts
with `ip netns exec`), so that no `ip netns exec` start-up is timed. Prints one JSON object.

  inner.py critical-path --regcheck BIN --ca CA --login H --data H1 --data H2 --slowest H --n N
  inner.py timed --n N -- CMD...      (wall time and exit code of CMD, N times)

Every child has a timeout; every loop has a fixed count.
"""

import argparse
import json
import subprocess
import sys
import time

CHILD_TIMEOUT = 60


def timed(cmd, timeout=CHILD_TIMEOUT):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, r


def curl_cmd(ca, url):
    return ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", ca,
            "-w", "%{http_code} %{time_namelookup} %{time_connect} %{time_appconnect} "
                  "%{time_starttransfer} %{time_total}", url]


def parse_curl(out):
    code, dns, conn, tls, ttfb, total = out.split()
    return {"status": int(code), "dns": float(dns), "connect": float(conn),
            "tls": float(tls), "ttfb": float(ttfb), "total": float(total)}


def url_for(host, login):
    # The registry API on the login server; any path on a data endpoint (404 is an answer).
    return f"https://{host}/v2/" if host == login else f"https://{host}/"


def critical_path(a):
    reg = [a.regcheck, "check", a.login] + sum((["--data-endpoint", d] for d in a.data), []) + \
          ["--ca-file", a.ca, "--timeout", "10s", "--output", "json"]
    hosts = [a.login] + a.data
    out = {"regcheck_cmd": reg, "curl_cmd": curl_cmd(a.ca, url_for(a.slowest, a.login)),
           "walk_cmds": [c for h in hosts for c in (["dig", "+short", h],
                                                     curl_cmd(a.ca, url_for(h, a.login)))],
           "regcheck": [], "regcheck_internal_ms": [], "curl_total": [], "curl_wall": [],
           "curl_phases": [], "walk": [], "walk_tool_sum": [], "errors": []}

    def one_regcheck():
        wall, r = timed(reg)
        try:
            rep = json.loads(r.stdout)
        except ValueError:
            rep = {}
        if r.returncode != 0 or rep.get("verdict") != "Healthy":
            out["errors"].append(f"regcheck rc={r.returncode} verdict={rep.get('verdict')} "
                                 f"{r.stderr.strip()[:300]}")
        return wall, rep

    def one_curl():
        wall, r = timed(curl_cmd(a.ca, url_for(a.slowest, a.login)))
        if r.returncode != 0:
            out["errors"].append(f"curl rc={r.returncode} {r.stderr.strip()[:300]}")
            return wall, None
        return wall, parse_curl(r.stdout)

    def one_walk():
        t0 = time.perf_counter()
        tool_sum = 0.0
        for h in hosts:
            w, r = timed(["dig", "+short", h])
            if r.returncode != 0 or not r.stdout.strip():
                out["errors"].append(f"dig {h} rc={r.returncode} {r.stderr.strip()[:200]}")
            tool_sum += w
            w, r = timed(curl_cmd(a.ca, url_for(h, a.login)))
            if r.returncode != 0:
                out["errors"].append(f"curl {h} rc={r.returncode} {r.stderr.strip()[:200]}")
            tool_sum += w
        return time.perf_counter() - t0, tool_sum

    # One warm-up round (page cache, first-exec costs), not recorded.
    one_regcheck(), one_curl(), one_walk()
    out["errors"].clear()
    for _ in range(a.n):
        wall, rep = one_regcheck()
        out["regcheck"].append(wall)
        out["regcheck_internal_ms"].append(rep.get("evidence", {}).get("ms", rep.get("ms")))
        wall, c = one_curl()
        out["curl_wall"].append(wall)
        if c:
            out["curl_total"].append(c["total"])
            out["curl_phases"].append(c)
        walk, tool_sum = one_walk()
        out["walk"].append(walk)
        out["walk_tool_sum"].append(tool_sum)
    out["last_report"] = rep
    print(json.dumps(out))


def timed_loop(a):
    res = {"cmd": a.cmd, "wall": [], "rc": [], "stdout_tail": ""}
    for _ in range(a.n):
        wall, r = timed(a.cmd, timeout=a.timeout)
        res["wall"].append(wall)
        res["rc"].append(r.returncode)
        res["stdout_tail"] = r.stdout[-200000:]
        res["stderr_tail"] = r.stderr[-2000:]
    print(json.dumps(res))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd_name", required=True)
    c = sub.add_parser("critical-path")
    c.add_argument("--regcheck", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--login", required=True)
    c.add_argument("--data", action="append", default=[])
    c.add_argument("--slowest", required=True)
    c.add_argument("--n", type=int, default=20)
    t = sub.add_parser("timed")
    t.add_argument("--n", type=int, default=1)
    t.add_argument("--timeout", type=float, default=CHILD_TIMEOUT)
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.cmd_name == "critical-path":
        critical_path(a)
    else:
        if a.cmd and a.cmd[0] == "--":
            a.cmd = a.cmd[1:]
        timed_loop(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
