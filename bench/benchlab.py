#!/usr/bin/env python3
"""The benchmark lab: tests/lab/lab.py's network lab plus a second data endpoint and
per-endpoint round-trip delays (bench/relay.py), since this kernel has no netem.

    with BenchLab("bench-cp", scenario="healthy-public", delays=True) as lab:
        lab.set_rtts(login=5, data1=20, data2=40)
        lab.in_client(["regcheck", "check", ...])

Layout on top of the lab (see tests/lab/README.md), all inside the lab's namespaces:

  name                              DNS answer       relay (RTT)        real server
  labreg.azurecr.io                 203.0.113.110    :443 -> 203.0.113.10:443   nginx login
  labreg.eastus.data.azurecr.io     203.0.113.111    :443 -> 203.0.113.11:443   nginx data
  labreg.westus.data.azurecr.io     203.0.113.112    :443 -> 127.0.0.1:8443     nginx data2
  resolver (client resolv.conf)     10.1.0.63:53 (UDP relay, RTT per name) -> unbound 10.1.0.53

Without `delays`, the lab is the plain scenario (no relays, no extra names).

Cleanup: `down` runs on exit of the `with` block, on SIGTERM/SIGINT and at interpreter exit,
and `lab.py gc` removes the lab if this process dies without cleaning up.
"""

import argparse
import atexit
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LAB_PY = os.path.join(REPO, "tests", "lab", "lab.py")


def load_lab():
    spec = importlib.util.spec_from_file_location("regcheck_lab", LAB_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


lab = load_lab()

DATA2 = f"{lab.REG}.westus.data.azurecr.io"
RELAY_LOGIN_IP = "203.0.113.110"
RELAY_DATA1_IP = "203.0.113.111"
RELAY_DATA2_IP = "203.0.113.112"
RELAY_DNS_IP = "10.1.0.63"
DATA2_BACKEND = ("127.0.0.1", 8443)


def delayed_zone_records(orig):
    """The lab's records with the endpoints' final A records moved to the relays, and a
    CNAME chain for the second data endpoint (public view only)."""
    def records(view):
        out = []
        for r in orig(view):
            name, rtype, value = r.split(" ", 2)
            if rtype == "A" and value == lab.PUB_LOGIN_IP:
                value = RELAY_LOGIN_IP
            elif rtype == "A" and value == lab.PUB_DATA_IP:
                value = RELAY_DATA1_IP
            out.append(f"{name} {rtype} {value}")
        out += [f"{DATA2}. CNAME wus-acr-data.fe.azcr.io.",
                "wus-acr-data.fe.azcr.io. CNAME wus-acr-data.trafficmanager.net.",
                "wus-acr-data.trafficmanager.net. CNAME d0wus01.westus.cloudapp.azure.com.",
                f"d0wus01.westus.cloudapp.azure.com. A {RELAY_DATA2_IP}"]
        return out
    return records


def tls13_nginx_conf(orig):
    """nginx 1.22 offers TLS 1.2 only unless told otherwise; offer 1.3 as well (1-RTT
    handshake), as current registry front ends do."""
    def conf(d, login_mode):
        return orig(d, login_mode).replace(
            "server_tokens off;", "server_tokens off;\n    ssl_protocols TLSv1.2 TLSv1.3;", 1)
    return conf


def nginx2_conf(d):
    return f"""worker_processes 1;
user root;
pid {d}/nginx2.pid;
error_log {d}/nginx2-error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {d}/nginx2-access.log;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    server_tokens off;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen {DATA2_BACKEND[0]}:{DATA2_BACKEND[1]} ssl;
        server_name {DATA2};
        ssl_certificate {d}/pki/data2.pem;
        ssl_certificate_key {d}/pki/data2.key;
        root {d}/registry;
        location /docker/ {{ default_type application/octet-stream; }}
        location / {{
            default_type application/xml;
            return 404 '<Error><Code>ResourceNotFound</Code></Error>';
        }}
    }}
}}
"""


class BenchLab:
    def __init__(self, lab_id, scenario="healthy-public", delays=False):
        self.id = lab_id
        self.scenario = scenario
        self.delays = delays
        self.sns, self.cns = lab.names(lab_id)
        self.dir = lab.state_dir(lab_id)
        self.info = None
        self.relay = None
        self.rtts = None
        self._down = False

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def up(self):
        if os.geteuid() != 0:
            raise SystemExit("bench lab: needs root (network namespaces); see bench/README.md")
        if lab.cmd_check(None) != 0:
            if lab.cmd_install(None) != 0 or lab.cmd_check(None) != 0:
                raise SystemExit("bench lab: the lab cannot run here (see tests/lab/README.md)")
        lab.cmd_gc(None)
        atexit.register(self.down)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        if self.delays:
            lab.zone_records = delayed_zone_records(lab.zone_records)
            lab.nginx_conf = tls13_nginx_conf(lab.nginx_conf)
        args = argparse.Namespace(scenario=self.scenario, id=self.id, owner=os.getpid(),
                                  keep_on_error=False)
        # cmd_up prints the lab's JSON description on stdout: capture it.
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = lab.cmd_up(args)
        if rc != 0:
            raise RuntimeError(f"lab up {self.scenario} failed ({rc})")
        self.info = json.loads(buf.getvalue().strip().splitlines()[-1])
        if self.delays:
            self._add_delay_layer()

    def _on_signal(self, signum, _frame):
        self.down()
        sys.exit(128 + signum)

    def down(self):
        if self._down:
            return
        self._down = True
        lab.cmd_down(argparse.Namespace(id=self.id))

    # -- delay layer -------------------------------------------------------------------------
    def _add_delay_layer(self):
        d = self.dir
        for ip in (RELAY_LOGIN_IP, RELAY_DATA1_IP, RELAY_DATA2_IP, RELAY_DNS_IP):
            lab.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], ns=self.sns)
        lab.make_leaf(f"{d}/pki", "data2", "ca", DATA2)
        lab.write(f"{d}/nginx2.conf", nginx2_conf(d))
        lab.run([lab.which("nginx"), "-t", "-q", "-e", f"{d}/nginx2-error.log", "-c",
                 f"{d}/nginx2.conf"], ns=self.sns)
        lab.spawn(self.sns, [lab.which("nginx"), "-e", f"{d}/nginx2-error.log", "-c",
                             f"{d}/nginx2.conf"], f"{d}/nginx2.out")
        lab.wait_ready(self.sns, [("tcp", DATA2_BACKEND[0], DATA2_BACKEND[1])])
        # Clients resolve through the DNS relay.
        lab.netns_files(self.cns, [RELAY_DNS_IP])

    def set_rtts(self, login, data1, data2):
        """(Re)start the relays with these round-trip times in ms."""
        if not self.delays:
            raise RuntimeError("set_rtts needs a lab made with delays=True")
        if self.relay is not None:
            self.relay.terminate()
            try:
                self.relay.wait(5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait(5)
        rtts = {"login": login, "data1": data1, "data2": data2}
        cmd = [sys.executable, os.path.join(HERE, "relay.py"), "--lifetime", "900",
               "--tcp", f"{RELAY_LOGIN_IP}:443={lab.PUB_LOGIN_IP}:443@{login}",
               "--tcp", f"{RELAY_DATA1_IP}:443={lab.PUB_DATA_IP}:443@{data1}",
               "--tcp", f"{RELAY_DATA2_IP}:443={DATA2_BACKEND[0]}:{DATA2_BACKEND[1]}@{data2}",
               "--dns", f"{RELAY_DNS_IP}:53={lab.DNS_IP}:53",
               "--dns-rtt", f"{lab.LOGIN}={login}",
               "--dns-rtt", f"{lab.DATA}={data1}",
               "--dns-rtt", f"{DATA2}={data2}"]
        self.relay = lab.spawn(self.sns, cmd, f"{self.dir}/relay.out")
        lab.wait_ready(self.sns, [("tcp", RELAY_LOGIN_IP, 443), ("tcp", RELAY_DATA1_IP, 443),
                                  ("tcp", RELAY_DATA2_IP, 443),
                                  ("dns", RELAY_DNS_IP, lab.LOGIN)])
        self.rtts = rtts

    # -- running things ----------------------------------------------------------------------
    def ns_cmd(self, cmd, ns=None):
        return ["ip", "netns", "exec", ns or self.cns] + list(cmd)

    def in_client(self, cmd, timeout=120, **kw):
        return subprocess.run(self.ns_cmd(cmd), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def in_server(self, cmd, timeout=60, **kw):
        return subprocess.run(self.ns_cmd(cmd, self.sns), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def iptables(self, rule):
        lab.run(["iptables", "-w"] + rule.split(), ns=self.sns)

    @property
    def ca(self):
        return self.info["caFile"]


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
