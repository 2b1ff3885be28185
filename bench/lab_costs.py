#!/usr/bin/env python3
"""Benchmarks 2, 3 and 6 on one healthy lab (tests/lab, scenario healthy-public, no delays):

  probe-cost     start to report, peak RSS, binary size, image size estimate
  deadlines      a black-holed endpoint (iptables DROP) with --timeout 2, 5, 10 s
  registry-load  HTTP requests (and TLS connections) per run at the lab's nginx, with and
                 without --image
  all            the three, on one lab

    sudo python3 bench/lab_costs.py all --regcheck target/release/regcheck

Results: bench/results/lab_costs.json. Fixed run counts; every child has a timeout; the lab
is torn down on exit, SIGINT/SIGTERM, and by `lab.py gc` if this process is killed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlab  # noqa: E402
import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
L = benchlab.lab
INNER = os.path.join(HERE, "inner.py")


def check_cmd(regcheck, ca, *extra, timeout="10s"):
    return [regcheck, "check", L.LOGIN, "--ca-file", ca, "--timeout", timeout,
            "--output", "json"] + list(extra)


def inner_timed(lab, cmd, n, timeout=60):
    r = lab.in_client([sys.executable, INNER, "timed", "--n", str(n), "--timeout",
                       str(timeout), "--"] + cmd, timeout=n * (timeout + 5) + 30)
    if r.returncode != 0:
        raise RuntimeError(f"inner driver failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def has_probe(regcheck):
    r = subprocess.run([regcheck, "probe", "--help"], capture_output=True, timeout=10)
    return r.returncode == 0


# ---------------------------------------------------------------------------------------------
# 2. probe process cost

def probe_cost(lab, regcheck, n):
    out = {"binary": regcheck, "binary_bytes": os.path.getsize(regcheck)}
    f = subprocess.run(["file", "-b", regcheck], capture_output=True, text=True, timeout=10)
    out["binary_file"] = f.stdout.strip()
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
    out["ca_certificates_bytes"] = os.path.getsize(ca_bundle) if os.path.exists(ca_bundle) else None
    out["distroless_static_base_bytes_assumed"] = 2 * 1024 * 1024
    out["image_bytes_estimate"] = out["binary_bytes"] + (out["ca_certificates_bytes"] or 0) + \
        out["distroless_static_base_bytes_assumed"]

    variants = {"check": check_cmd(regcheck, lab.ca),
                "check --image": check_cmd(regcheck, lab.ca, "--image", lab.info["image"])}
    if has_probe(regcheck):
        # The probe has no --ca-file (in-cluster it trusts the system roots); rustls-native-certs
        # reads SSL_CERT_FILE, which is how the lab CA is given to it here.
        variants["probe --context pod"] = [
            "env", f"SSL_CERT_FILE={lab.ca}", regcheck, "probe", "--registry", L.LOGIN,
            "--context", "pod", "--timeout", "10s", "--termination-log", "/dev/null"]
    out["variants"] = {}
    for name, cmd in variants.items():
        wall = inner_timed(lab, cmd, n)
        # Peak RSS of each run (GNU time's %M: the process's maximum resident set, KiB).
        rss_all = []
        for _ in range(n):
            r = lab.in_client(["/usr/bin/time", "-f", "RSS_KB=%M"] + cmd, timeout=60)
            rss_all += [int(m) for m in re.findall(r"RSS_KB=(\d+)", r.stderr)]
        verdict = None
        try:
            verdict = json.loads(wall["stdout_tail"]).get("verdict")
        except (ValueError, IndexError):
            pass
        out["variants"][name] = {
            "cmd": cmd, "rc": wall["rc"], "verdict_last_run": verdict,
            "start_to_report": stats.summary_ms(wall["wall"]),
            "peak_rss_kb": {"median": stats.median(rss_all), "max": max(rss_all or [0]),
                            "n": len(rss_all)},
        }
        print(name, json.dumps(out["variants"][name]["start_to_report"]),
              out["variants"][name]["peak_rss_kb"], flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# 3. deadlines

BLACKHOLES = {
    "login-drop": [f"-A INPUT -i s0 -d {L.PUB_LOGIN_IP} -p tcp --dport 443 -j DROP"],
    "dns-drop": ["-A INPUT -i s0 -p udp --dport 53 -j DROP",
                 "-A INPUT -i s0 -p tcp --dport 53 -j DROP"],
    "data-drop --image": [f"-A INPUT -i s0 -d {L.PUB_DATA_IP} -p tcp --dport 443 -j DROP"],
}


def deadlines(lab, regcheck, n, timeouts):
    out = {}
    for name, rules in BLACKHOLES.items():
        for rule in rules:
            lab.iptables(rule)
        try:
            out[name] = {}
            for t in timeouts:
                extra = ["--image", lab.info["image"]] if "--image" in name else []
                cmd = check_cmd(regcheck, lab.ca, *extra, timeout=f"{t}s")
                res = inner_timed(lab, cmd, n, timeout=t + 30)
                past = [w - t for w in res["wall"]]
                primary = None
                try:
                    primary = json.loads(res["stdout_tail"])["findings"][0]["reason"]
                except (ValueError, KeyError, IndexError):
                    pass
                out[name][str(t)] = {"cmd": cmd, "wall_s": [round(w, 3) for w in res["wall"]],
                                     "past_deadline_s_max": round(max(past), 3),
                                     "past_deadline_s_median": round(stats.median(past), 3),
                                     "rc": res["rc"], "primary_reason_last_run": primary}
                print(name, t, out[name][str(t)]["wall_s"], primary, flush=True)
        finally:
            for rule in rules:
                lab.iptables(rule.replace("-A ", "-D ", 1))
    return out


# ---------------------------------------------------------------------------------------------
# 6. registry load

def access_lines(lab):
    path = os.path.join(lab.dir, "nginx-bench.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def registry_load(lab, regcheck, n):
    out = {}
    variants = {"check": check_cmd(regcheck, lab.ca),
                "check --image": check_cmd(regcheck, lab.ca, "--image", lab.info["image"]),
                "check --region eastus --image": check_cmd(
                    regcheck, lab.ca, "--region", L.REGION, "--image", lab.info["image"])}
    for name, cmd in variants.items():
        per_run, conns_per_run, example = [], [], []
        for _ in range(n):
            before = len(access_lines(lab))
            r = lab.in_client(cmd, timeout=60)
            time.sleep(0.2)  # nginx writes the log line when the request ends
            lines = access_lines(lab)[before:]
            per_run.append(len(lines))
            conns_per_run.append(len({ln.split(" ", 1)[0] for ln in lines}))
            example = lines
            verdict = json.loads(r.stdout).get("verdict") if r.stdout.strip() else None
        blob_sizes = [int(m) for ln in example for m in re.findall(r'" 200 (\d+) ', ln)
                      if "/docker/" in ln]
        out[name] = {"cmd": cmd, "requests_per_run": per_run,
                     "tls_connections_per_run": conns_per_run, "verdict_last_run": verdict,
                     "requests_of_last_run": example, "blob_bytes_served": blob_sizes,
                     "image_digests": lab.info["imageDigests"]}
        print(name, per_run, conns_per_run, flush=True)
        for ln in example:
            print("   ", ln, flush=True)
    return out


def log_patch(orig):
    """An extra access log with the connection serial, host, TLS version and the bytes sent."""
    def conf(d, login_mode):
        c = orig(d, login_mode)
        return c.replace(
            f"access_log {d}/nginx-access.log;",
            f"access_log {d}/nginx-access.log;\n"
            "    log_format bench 'c$connection $host $ssl_protocol \"$request\" $status "
            "$body_bytes_sent ';\n"
            f"    access_log {d}/nginx-bench.log bench;", 1)
    return conf


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["probe-cost", "deadlines", "registry-load", "all"])
    p.add_argument("--regcheck", required=True)
    p.add_argument("--n", type=int, default=20, help="runs for probe-cost")
    p.add_argument("--deadline-runs", type=int, default=3)
    p.add_argument("--timeouts", default="2,5,10")
    p.add_argument("--load-runs", type=int, default=5)
    p.add_argument("--id", default="bench-costs")
    a = p.parse_args()
    regcheck = os.path.abspath(a.regcheck)
    L.nginx_conf = log_patch(L.nginx_conf)
    out = {"machine": stats.machine()}
    with benchlab.BenchLab(a.id, scenario="healthy-public") as lab:
        if a.what in ("registry-load", "all"):
            out["registry_load"] = registry_load(lab, regcheck, a.load_runs)
        if a.what in ("probe-cost", "all"):
            out["probe_cost"] = probe_cost(lab, regcheck, a.n)
        if a.what in ("deadlines", "all"):
            out["deadlines"] = deadlines(lab, regcheck, a.deadline_runs,
                                         [int(t) for t in a.timeouts.split(",")])
    out["loadavg_after"] = stats.machine()["loadavg"]
    print("saved", stats.save(f"lab_costs-{a.what}", out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
