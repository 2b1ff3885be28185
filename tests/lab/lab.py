#!/usr/bin/env python3
"""Network lab for regcheck: real DNS, registry, TLS, proxy and firewall in network namespaces.

Subcommands:
  install                 install the Debian packages the lab needs (root; idempotent)
  check                   exit 0 when the lab can run here, else print why and exit 77
  list                    print the scenario names
  up SCENARIO --id ID     build the lab for SCENARIO; print one JSON line describing it
  down --id ID            stop every process in the lab's namespaces, delete them and their files
  gc                      remove leftovers of labs whose owner process is gone

Topology (see README.md): two namespaces per lab, `rcl-ID-s` (servers) and `rcl-ID-c`
(client), joined by one veth pair. Neither has a default route or any link to the host's
network; server addresses live on the server namespace's loopback. Scenarios with a `router`
put a third namespace, `rcl-ID-r`, between them (server - router - client), whose route
toward the client has a smaller MTU and which drops its own ICMP "fragmentation needed": a
path-MTU black hole. Scenarios with `ipv6` add ULA addresses (fd00::/8, inside the lab only).

NETWORK SAFETY: every address used below exists only inside the lab's own namespaces.
Nothing here sends a packet to any other host.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import oci_push  # noqa: E402  (tests/common, shared with tests/e2e/servers.py)
import deps  # noqa: E402  (tests/common: the Debian packages of every test harness)
ROOT = "/tmp/regcheck-lab"

REG = "labreg"
REGION = "eastus"
LOGIN = f"{REG}.azurecr.io"
DATA = f"{REG}.{REGION}.data.azurecr.io"
IMAGE_REPO = "lab/hello"
IMAGE_TAG = "1.0"

# Addresses (all inside the lab's namespaces).
CLIENT_IP = "10.1.0.100"   # client side of the veth pair (the "node")
GW_IP = "10.1.0.1"         # server side of the veth pair (the "network")
DNS_IP = "10.1.0.53"       # unbound: the node's resolver (Azure DNS / internet DNS)
CUSTOM_DNS_IP = "10.1.0.54"  # dnsmasq: a customer's custom DNS server
PROXY_IP = "10.1.0.80"     # squid
EOF_PROXY_IP = "10.1.0.81"  # accepts and closes at once
PUB_LOGIN_IP = "203.0.113.10"
PUB_DATA_IP = "203.0.113.11"
PRIV_LOGIN_IP = "10.2.0.10"
PRIV_DATA_IP = "10.2.0.11"
STALE_IP = "10.2.0.99"     # a deleted private endpoint: no route
ALLOWED_NET = "198.51.100.0/24"  # the registry's allow-list in the "deny" scenario
MIRROR = "mirror.lab.example"  # a registry mirror named in containerd's hosts.toml
MIRROR_IP = "10.1.0.90"
MIRROR_HTTP_PORT = 5000    # the plain-http mirror's port
BROKEN_DNS_IP = "10.1.0.55"  # no DNS server listens here: a resolver that refuses

# The router namespace's link to the server namespace (scenarios with a `router`).
ROUTER_SERVER_IP, SERVER_ROUTER_IP = "10.255.0.1", "10.255.0.2"

# IPv6 (scenarios with `ipv6`): unique local addresses that exist only inside the lab.
CLIENT6_IP = "fd00:1::100"  # the node, on c0
GW6_IP = "fd00:1::1"        # the server namespace's side of the veth pair
DNS6_IP = "fd00:2::53"      # unbound
PUB_LOGIN6_IP = "fd00:2::10"
PUB_DATA6_IP = "fd00:2::11"
SERVER6_ADDRS = [DNS6_IP, PUB_LOGIN6_IP, PUB_DATA6_IP]
CLIENT6_ROUTES = ["fd00:2::/64"]
# The hosts of the AKS egress profile (src/engine/egress/profiles.rs) with region=eastus and
# the lab cluster's API server: the lab's own DNS serves these real names inside the lab only
# (there is no route out), and one nginx server answers for all of them.
EGRESS_IP = "203.0.113.20"
AKS_API_SERVER = "labaks-dns-1a2b3c4d.hcp.eastus.azmk8s.io"
EGRESS_NAMES = ["mcr.microsoft.com", "eastus.data.mcr.microsoft.com", "mcr-0001.mcr-msedge.net",
                "management.azure.com", "login.microsoftonline.com", "packages.microsoft.com",
                "acs-mirror.azureedge.net", "packages.aks.azure.com", AKS_API_SERVER]
# What an FQDN-filtering firewall without the newer AKS rules lets through: not these two
# (Azure/AKS#1476: *.data.mcr.microsoft.com; Azure/AKS#4792: packages.aks.azure.com).
EGRESS_BLOCKED = ["packages.aks.azure.com", "eastus.data.mcr.microsoft.com"]

SERVER_ADDRS = [DNS_IP, CUSTOM_DNS_IP, PROXY_IP, EOF_PROXY_IP,
                PUB_LOGIN_IP, PUB_DATA_IP, PRIV_LOGIN_IP, PRIV_DATA_IP, MIRROR_IP, BROKEN_DNS_IP,
                EGRESS_IP]
CLIENT_ROUTES = ["10.2.0.0/16", "203.0.113.0/24", "198.51.100.0/24"]

PROXY_USER, PROXY_PASS = "proxyuser", "proxypass"
REG_USER, REG_PASS = "labuser", "labpass"
# The address a registry behind the cluster's NAT gateway sees (scenario registry-denied-nat-ip).
NAT_SEEN_IP = "198.51.100.77"
TOKEN_ISSUER = "regcheck-lab-token-issuer"

# The Debian packages the lab needs: tests/common/debian-packages.tsv (harness `lab`).
SBIN = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]

# ---------------------------------------------------------------------------------------------
# Scenarios: each names the DNS view, which servers run, and the firewall rules.
#   dns:      public | public-pe | private | private-nodata | private-stale | (resolver below)
#   resolver: unbound (default) | dnsmasq (custom DNS forwarding to the public resolver)
#   login:    ok | deny | deny-nat | throttle | hang | intercept | token-fail | storage-deny
#             (nginx mode: deny names the client's own address, deny-nat the NAT address
#             NAT_SEEN_IP as a registry behind a NAT gateway sees it; token-fail answers 500 on
#             /oauth2/; storage-deny makes the data endpoint answer Azure Storage's XML 403)
#   auth:     None | basic (registry's htpasswd) | token (ACR-like Bearer flow, /oauth2/token)
#   proxy:    None | allow | deny | auth | eof
#   mirror:   None | down (named in DNS, nothing listens) | own-ca (HTTPS with a certificate of
#             its own CA, which only hosts.toml's `ca` trusts) | plain-http (HTTP on port 5000)
#   fw:       firewall rules (see FIREWALL)
#   fw6:      IPv6 firewall rules (see FIREWALL6), in the server namespace
#   routes:   extra client routes (see ROUTES)
#   router:   MTU of the router's route toward the client: a router namespace between server
#             and client forwards with it and drops the ICMP "fragmentation needed" it would
#             send back (a tunnel or NVA with a smaller MTU, and ICMP filtered)
#   bigcert:  the login server presents a large chain (an intermediate CA and a leaf with many
#             names, as real registry certificates have): its certificate flight spans several
#             full-size packets
#   ipv6:     dual-stack lab (ULA addresses); `aaaa` adds AAAA records for the login server and
#             data endpoint; `v6only` leaves the client without IPv4 (its resolver is DNS6_IP)
SCENARIOS = {
    "healthy-public": dict(dns="public"),
    "healthy-private": dict(dns="private"),
    "healthy-proxy": dict(dns="public", proxy="allow"),
    "dns-name-not-found": dict(dns="public"),
    "custom-dns-no-forwarder": dict(dns="public-pe", resolver="dnsmasq"),
    "data-endpoint-dns-missing": dict(dns="private-nodata"),
    "dns-server-unreachable": dict(dns="public", fw=["dns-drop"]),
    "login-drop": dict(dns="public", fw=["login-drop"]),
    "data-drop": dict(dns="public", fw=["data-drop"]),
    "sni-reset": dict(dns="public", fw=["sni-reset"]),
    "tls-interception": dict(dns="public", login="intercept"),
    "registry-denied-ip": dict(dns="public", login="deny"),
    "registry-denied-nat-ip": dict(dns="public", login="deny-nat"),
    "storage-denied": dict(dns="public", login="storage-deny"),
    "token-endpoint-fails": dict(dns="public", auth="token", login="token-fail"),
    "headers-timeout": dict(dns="public", login="hang"),
    "proxy-denied": dict(dns="public", proxy="deny"),
    "proxy-eof": dict(dns="public", proxy="eof"),
    "proxy-auth": dict(dns="public", proxy="auth"),
    "proxy-bypass-missing": dict(dns="private", proxy="allow", fw=["proxy-no-private"]),
    "host-unreachable": dict(dns="private-stale", routes=["stale-unreachable"]),
    "throttled": dict(dns="public", login="throttle"),
    "registry-auth": dict(dns="public", auth="basic"),
    "registry-token": dict(dns="public", auth="token"),
    # containerd's view (issue 14): hosts.toml mirrors, its drop-in proxy, the host's resolver.
    "mirror-down": dict(dns="public", mirror="down"),
    "mirror-own-ca": dict(dns="public", mirror="own-ca"),
    "mirror-plain-http": dict(dns="public", mirror="plain-http"),
    "proxy-from-dropin": dict(dns="public", proxy="allow", fw=["direct-drop"]),
    "resolver-split": dict(dns="public"),
    # Path-MTU black hole: small packets pass, the server's full-size ones are lost.
    "mtu-black-hole": dict(dns="public", router=1280, bigcert=True),
    # The same server, a firewall that silently drops the ClientHello naming the registry.
    "sni-drop": dict(dns="public", fw=["sni-drop"], bigcert=True),
    "ipv6-path-broken": dict(dns="public", ipv6=True, aaaa=True, fw6=["https-drop"]),
    "ipv6-only-no-aaaa": dict(dns="public", ipv6=True, v6only=True),
    "ipv6-only": dict(dns="public", ipv6=True, v6only=True, aaaa=True),
    # The AKS egress hosts (always served, see EGRESS_NAMES) behind an FQDN firewall that
    # resets the ClientHello of EGRESS_BLOCKED; the registry itself works.
    "egress-fqdn-firewall": dict(dns="public", fw=["egress-sni-reset"]),
}

# Rules are added in the server namespace ("the network"): INPUT sees what the client sends
# over the veth (-i s0); OUTPUT sees what the servers themselves send.
FIREWALL = {
    "dns-drop": [
        "-A INPUT -i s0 -p udp --dport 53 -j DROP",
        "-A INPUT -i s0 -p tcp --dport 53 -j DROP",
    ],
    "login-drop": [
        f"-A INPUT -i s0 -d {PUB_LOGIN_IP} -p tcp --dport 443 -j DROP",
        f"-A INPUT -i s0 -d {PRIV_LOGIN_IP} -p tcp --dport 443 -j DROP",
    ],
    "data-drop": [
        f"-A INPUT -i s0 -d {PUB_DATA_IP} -p tcp --dport 443 -j DROP",
        f"-A INPUT -i s0 -d {PRIV_DATA_IP} -p tcp --dport 443 -j DROP",
    ],
    # An FQDN-filtering firewall: reset the connection whose ClientHello names the registry.
    "sni-reset": [
        f"-A INPUT -i s0 -p tcp --dport 443 -m string --string {LOGIN} --algo bm "
        "-j REJECT --reject-with tcp-reset",
    ],
    # The node reaches the registry only through the proxy (squid connects over the server
    # namespace's loopback, which these rules do not see).
    "direct-drop": [
        f"-A INPUT -i s0 -d {PUB_LOGIN_IP} -p tcp --dport 443 -j DROP",
        f"-A INPUT -i s0 -d {PUB_DATA_IP} -p tcp --dport 443 -j DROP",
    ],
    # A firewall that silently drops (no reset) the ClientHello naming the registry.
    "sni-drop": [
        f"-A INPUT -i s0 -p tcp --dport 443 -m string --string {LOGIN} --algo bm -j DROP",
    ],
    # An FQDN firewall whose allow-list lacks some of AKS's required FQDNs.
    "egress-sni-reset": [
        f"-A INPUT -i s0 -d {EGRESS_IP} -p tcp --dport 443 -m string --string {name} --algo bm "
        "-j REJECT --reject-with tcp-reset"
        for name in EGRESS_BLOCKED
    ],
    # The proxy (squid binds its outgoing connections to PROXY_IP) cannot reach private endpoints.
    "proxy-no-private": [
        f"-A OUTPUT -s {PROXY_IP} -d 10.2.0.0/16 -j REJECT --reject-with icmp-host-unreachable",
    ],
}

# ip6tables rules in the server namespace.
FIREWALL6 = {
    # The IPv6 path to the registry is broken: HTTPS over IPv6 is dropped, IPv4 is not.
    "https-drop": ["-A INPUT -i s0 -p tcp --dport 443 -j DROP"],
}

# Routes added in the client namespace.
ROUTES = {
    "stale-unreachable": [f"unreachable {STALE_IP}/32"],
}


# ---------------------------------------------------------------------------------------------
# helpers

def log(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, ns=None, **kw):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def names(lab_id):
    return f"rcl-{lab_id}-s", f"rcl-{lab_id}-c"


def router_ns(lab_id):
    return f"rcl-{lab_id}-r"


def state_dir(lab_id):
    return os.path.join(ROOT, lab_id)


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def which(binary):
    for d in SBIN:
        p = os.path.join(d, binary)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(binary)


def spawn(ns, cmd, logfile):
    """Start a long-running server inside `ns`, detached from us; `down` kills it."""
    out = open(logfile, "ab")
    return subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=out, stderr=out,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def wait_ready(ns, checks, timeout=15.0):
    """Poll (in one child process inside ns) until every check passes; bounded by timeout."""
    spec = json.dumps(checks)
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                        "_wait", spec, str(timeout)], capture_output=True, text=True,
                       timeout=timeout + 10)
    if r.returncode != 0:
        raise RuntimeError(f"servers not ready in {ns}: {r.stderr.strip()}")


# ---------------------------------------------------------------------------------------------
# install / check

def missing_binaries():
    return list(deps.missing(deps.select(["lab"])))


def cmd_install(_args):
    return deps.install(deps.select(["lab"]))


def cmd_check(_args):
    if os.geteuid() != 0:
        print("lab needs root (network namespaces, iptables, servers on port 53/443)")
        return 77
    missing = missing_binaries()
    if missing:
        print(f"lab needs these programs: {' '.join(missing)} (run: lab.py install)")
        return 77
    r = run(["ip", "netns", "add", f"rcl-check-{os.getpid()}"], check=False)
    if r.returncode != 0:
        print(f"cannot create network namespaces here: {r.stderr.strip()}")
        return 77
    run(["ip", "netns", "del", f"rcl-check-{os.getpid()}"], check=False)
    return 0


# ---------------------------------------------------------------------------------------------
# PKI

def openssl(*args, cwd):
    run(["openssl"] + list(args), cwd=cwd)


def make_ca(d, name, cn, org):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
            "-subj", f"/O={org}/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, ca, host, extra_names=()):
    sans = ",".join(f"DNS:{n}" for n in [host, *extra_names])
    write(os.path.join(d, f"{name}.ext"),
          f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={host}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
            "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    make_ca(d, "ca", "regcheck Lab Root CA", "regcheck lab")
    make_leaf(d, "login", "ca", LOGIN)
    make_leaf(d, "data", "ca", DATA)
    make_leaf(d, "egress", "ca", EGRESS_NAMES[0], EGRESS_NAMES[1:])
    # A TLS-inspecting middlebox re-signs with its own CA, which the client does not trust.
    make_ca(d, "mitm", "Contoso Inspection CA", "Contoso Firewall")
    make_leaf(d, "login-mitm", "mitm", LOGIN)
    # A large chain for the login server (scenarios with `bigcert`): an intermediate CA and a
    # leaf naming many hosts, as a registry's certificate for all its regions does. Served as
    # leaf + intermediate, its certificate flight is several KB.
    write(os.path.join(d, "inter.ext"),
          "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "inter.key", "-out", "inter.csr",
            "-subj", "/O=regcheck lab/CN=regcheck Lab Issuing CA 01", cwd=d)
    openssl("x509", "-req", "-in", "inter.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
            "-out", "inter.pem", "-extfile", "inter.ext", cwd=d)
    regions = [f"*.r{i:03d}.{REGION}.data.azurecr.io" for i in range(120)]
    make_leaf(d, "login-big", "inter", LOGIN, [f"*.{LOGIN}"] + regions)
    with open(os.path.join(d, "login-big-chain.pem"), "w") as out:
        for part in ("login-big.pem", "inter.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    # The token server's signing key; the registry trusts its certificate (rootcertbundle).
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "token.key", "-out", "token.pem", "-days", "30",
            "-subj", "/CN=regcheck lab token signer", cwd=d)


# ---------------------------------------------------------------------------------------------
# DNS

def zone_records(view, aaaa=False):
    """The records of the lab's one DNS 'internet' (a root zone), for a view; `aaaa` gives the
    public login server and data endpoint IPv6 addresses too."""
    pe = view != "public"  # the registry has a private endpoint (privatelink CNAMEs)
    r = []
    if pe:
        r += [f"{LOGIN}. CNAME {REG}.privatelink.azurecr.io.",
              f"{DATA}. CNAME {REG}.{REGION}.data.privatelink.azurecr.io."]
    # The public chain: *.azcr.io -> *.trafficmanager.net -> *.cloudapp.azure.com -> public A.
    pub_login = [f"eus-acr-fe.fe.azcr.io. CNAME eus-acr-fe.trafficmanager.net.",
                 f"eus-acr-fe.trafficmanager.net. CNAME r0eus01.eastus.cloudapp.azure.com.",
                 f"r0eus01.eastus.cloudapp.azure.com. A {PUB_LOGIN_IP}"]
    pub_data = [f"eus-acr-data.fe.azcr.io. CNAME eus-acr-data.trafficmanager.net.",
                f"eus-acr-data.trafficmanager.net. CNAME d0eus01.eastus.cloudapp.azure.com.",
                f"d0eus01.eastus.cloudapp.azure.com. A {PUB_DATA_IP}"]
    r += pub_login + pub_data
    if aaaa:
        r += [f"r0eus01.eastus.cloudapp.azure.com. AAAA {PUB_LOGIN6_IP}",
              f"d0eus01.eastus.cloudapp.azure.com. AAAA {PUB_DATA6_IP}"]
    if view in ("public", "public-pe"):
        first_login = f"{REG}.privatelink.azurecr.io." if pe else f"{LOGIN}."
        first_data = f"{REG}.{REGION}.data.privatelink.azurecr.io." if pe else f"{DATA}."
        r += [f"{first_login} CNAME eus-acr-fe.fe.azcr.io.",
              f"{first_data} CNAME eus-acr-data.fe.azcr.io."]
    elif view == "private":
        r += [f"{REG}.privatelink.azurecr.io. A {PRIV_LOGIN_IP}",
              f"{REG}.{REGION}.data.privatelink.azurecr.io. A {PRIV_DATA_IP}"]
    elif view == "private-nodata":
        r += [f"{REG}.privatelink.azurecr.io. A {PRIV_LOGIN_IP}"]
    elif view == "private-stale":
        r += [f"{REG}.privatelink.azurecr.io. A {STALE_IP}",
              f"{REG}.{REGION}.data.privatelink.azurecr.io. A {PRIV_DATA_IP}"]
    else:
        raise ValueError(f"unknown dns view {view}")
    # A few other names a probe may ask about.
    r += [f"{MIRROR}. A {MIRROR_IP}"]
    # The egress hosts (EGRESS_NAMES), mcr.microsoft.com through a CNAME as on the internet.
    r += ["mcr.microsoft.com. CNAME mcr-fe.trafficmanager.net.",
          f"mcr-fe.trafficmanager.net. A {EGRESS_IP}"]
    r += [f"{n}. A {EGRESS_IP}" for n in EGRESS_NAMES if n != "mcr.microsoft.com"]
    return r


def start_unbound(sns, d, view, aaaa=False, ipv6=False):
    zone = ["$TTL 60",
            ". IN SOA ns.lab. hostmaster.lab. 1 3600 600 86400 60",
            ". IN NS ns.lab.",
            f"ns.lab. IN A {DNS_IP}"]
    zone += [" ".join([rec.split(" ", 1)[0], "IN", rec.split(" ", 1)[1]])
             for rec in zone_records(view, aaaa)]
    write(os.path.join(d, "root.zone"), "\n".join(zone) + "\n")
    v6 = f"\n  interface: {DNS6_IP}\n  access-control: ::/0 allow" if ipv6 else ""
    conf = f"""server:
  interface: {DNS_IP}{v6}
  port: 53
  do-ip6: {"yes" if ipv6 else "no"}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  logfile: "{d}/unbound.log"
  access-control: 0.0.0.0/0 allow
  num-threads: 1
  module-config: "iterator"
  qname-minimisation: no
  cache-max-ttl: 1
  cache-max-negative-ttl: 1
auth-zone:
  name: "."
  zonefile: "{d}/root.zone"
  for-downstream: no
  for-upstream: yes
  fallback-enabled: no
remote-control:
  control-enable: no
"""
    write(os.path.join(d, "unbound.conf"), conf)
    spawn(sns, [which("unbound"), "-d", "-c", f"{d}/unbound.conf"], f"{d}/unbound.out")
    return [("dns", DNS_IP, LOGIN)]


def start_dnsmasq(sns, d):
    """A customer's custom DNS server that forwards everything to the public resolver
    (no conditional forwarder for privatelink.azurecr.io to Azure DNS)."""
    conf = f"""port=53
listen-address={CUSTOM_DNS_IP}
bind-interfaces
no-resolv
no-hosts
no-poll
server={DNS_IP}
user=root
pid-file={d}/dnsmasq.pid
log-queries
log-facility={d}/dnsmasq.log
cache-size=0
"""
    write(os.path.join(d, "dnsmasq.conf"), conf)
    spawn(sns, [which("dnsmasq"), "-k", f"--conf-file={d}/dnsmasq.conf"], f"{d}/dnsmasq.out")
    return [("dns", CUSTOM_DNS_IP, LOGIN)]


# ---------------------------------------------------------------------------------------------
# registry + nginx

def start_registry(sns, d, auth):
    store = os.path.join(d, "registry")
    os.makedirs(store, exist_ok=True)
    auth_conf = ""
    if auth == "basic":
        run([which("htpasswd"), "-Bbc", f"{d}/registry.htpasswd", REG_USER, REG_PASS])
        auth_conf = f"""auth:
  htpasswd:
    realm: {LOGIN}
    path: {d}/registry.htpasswd
"""
    elif auth == "token":
        auth_conf = f"""auth:
  token:
    realm: https://{LOGIN}/oauth2/token
    service: {LOGIN}
    issuer: {TOKEN_ISSUER}
    rootcertbundle: {d}/pki/token.pem
"""
    conf = f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {store}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:5000
  secret: regcheck-lab-secret
{auth_conf}middleware:
  storage:
    - name: redirect
      options:
        baseurl: https://{DATA}
"""
    write(os.path.join(d, "registry.yml"), conf)
    spawn(sns, [which("docker-registry"), "serve", f"{d}/registry.yml"], f"{d}/registry.out")
    return [("http", "127.0.0.1", 5000, "/v2/")]


def mirror_conf(d, mirror):
    """nginx server blocks of a registry mirror in front of the lab's registry."""
    backend = """
        location / {
            proxy_pass http://127.0.0.1:5000;
            proxy_set_header Host $host;
            proxy_buffering off;
        }"""
    if mirror == "own-ca":
        return f"""
    server {{
        listen {MIRROR_IP}:443 ssl;
        server_name {MIRROR};
        ssl_certificate {d}/pki/mirror.pem;
        ssl_certificate_key {d}/pki/mirror.key;{backend}
    }}"""
    if mirror == "plain-http":
        return f"""
    server {{
        listen {MIRROR_IP}:{MIRROR_HTTP_PORT};
        server_name {MIRROR};{backend}
    }}"""
    return ""


def nginx_conf(d, login_mode, mirror=None, bigcert=False, ipv6=False):
    seen = NAT_SEEN_IP if login_mode == "deny-nat" else "$remote_addr"
    deny_body = ("{\"errors\":[{\"code\":\"DENIED\",\"message\":\"client with IP '" + seen + "' "
                 "is not allowed access. Refer https://aka.ms/acr/firewall to grant access.\"}]}")
    storage_body = ("\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationFailure"
                    "</Code><Message>This request is not authorized to perform this operation."
                    "\nRequestId:00000000-0000-0000-0000-000000000000</Message></Error>")
    throttle_body = ("{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":"
                     "\"too many requests, please retry later\"}]}")

    def q(s):  # nginx single-quoted string
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"

    # Allow-list: everyone, or (deny) only a network the client is not in.
    default_allowed = "0" if login_mode in ("deny", "deny-nat") else "1"
    cert = "login-mitm" if login_mode == "intercept" else "login"
    cert_file = f"{d}/pki/{cert}.pem"
    if bigcert:
        cert, cert_file = "login-big", f"{d}/pki/login-big-chain.pem"
    login6 = f"\n        listen [{PUB_LOGIN6_IP}]:443 ssl;" if ipv6 else ""
    data6 = f"\n        listen [{PUB_DATA6_IP}]:443 ssl;" if ipv6 else ""
    backend = "http://127.0.0.1:5001" if login_mode == "hang" else "http://127.0.0.1:5000"
    extra = ""
    if login_mode == "throttle":
        extra = f"""
        location /v2/ {{
            add_header Retry-After 10 always;
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            default_type application/json;
            return 429 {q(throttle_body)};
        }}"""
    token_fail = ""
    if login_mode == "token-fail":
        token_fail = """
            default_type application/json;
            return 500 '{"errors":[{"code":"UNKNOWN","message":"token service unavailable"}]}';"""
    docker_blob = "default_type application/octet-stream;"
    if login_mode == "storage-deny":
        docker_blob = f"default_type application/xml;\n            return 403 {q(storage_body)};"
    return f"""worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    client_max_body_size 0;
    server_tokens off;
    # The registry's network rules (public access from selected networks).
    geo $lab_allowed {{
        default {default_allowed};
        127.0.0.0/8 1;
        {ALLOWED_NET} 1;
    }}
    server {{
        listen {PUB_LOGIN_IP}:443 ssl;
        listen {PRIV_LOGIN_IP}:443 ssl;{login6}
        server_name {LOGIN};
        ssl_certificate {cert_file};
        ssl_certificate_key {d}/pki/{cert}.key;
        location @denied {{
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            default_type application/json;
            return 403 {q(deny_body)};
        }}{extra}
        location /oauth2/ {{{token_fail}
            error_page 418 = @denied;
            if ($lab_allowed = 0) {{ return 418; }}
            proxy_pass http://127.0.0.1:5002;
            proxy_set_header Host $host;
        }}
        location / {{
            error_page 418 = @denied;
            if ($lab_allowed = 0) {{ return 418; }}
            proxy_pass {backend};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
    server {{
        listen {PUB_DATA_IP}:443 ssl;
        listen {PRIV_DATA_IP}:443 ssl;{data6}
        server_name {DATA};
        ssl_certificate {d}/pki/data.pem;
        ssl_certificate_key {d}/pki/data.key;
        # Blobs redirected here by the registry's redirect middleware are read straight
        # from its storage, as a storage account would serve them.
        root {d}/registry;
        location /docker/ {{
            {docker_blob}
        }}
        location / {{
            default_type application/xml;
            return 404 '<Error><Code>ResourceNotFound</Code></Error>';
        }}
    }}{mirror_conf(d, mirror)}
    # The egress hosts: none is a registry; each answers GET / as such a service might.
    server {{
        listen {EGRESS_IP}:443 ssl;
        server_name management.azure.com login.microsoftonline.com;
        ssl_certificate {d}/pki/egress.pem;
        ssl_certificate_key {d}/pki/egress.key;
        location / {{
            default_type application/json;
            return 400 '{{"error":{{"code":"MissingApiVersionParameter"}}}}';
        }}
    }}
    server {{
        listen {EGRESS_IP}:443 ssl default_server;
        server_name {" ".join(n for n in EGRESS_NAMES if n not in ("management.azure.com", "login.microsoftonline.com"))};
        ssl_certificate {d}/pki/egress.pem;
        ssl_certificate_key {d}/pki/egress.key;
        location / {{
            default_type text/html;
            return 200 '<html><body>lab egress host</body></html>';
        }}
    }}
}}
"""


def start_nginx(sns, d, login_mode, mirror=None, bigcert=False, ipv6=False):
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(f"{d}/nginx-tmp/{sub}", exist_ok=True)
    write(f"{d}/nginx.conf", nginx_conf(d, login_mode, mirror, bigcert, ipv6))
    run([which("nginx"), "-t", "-q", "-e", f"{d}/nginx-error.log", "-c", f"{d}/nginx.conf"],
        ns=sns)
    spawn(sns, [which("nginx"), "-e", f"{d}/nginx-error.log", "-c", f"{d}/nginx.conf"],
          f"{d}/nginx.out")
    checks = [("tcp", PUB_LOGIN_IP, 443), ("tcp", PUB_DATA_IP, 443),
              ("tcp", PRIV_LOGIN_IP, 443), ("tcp", PRIV_DATA_IP, 443),
              ("tcp", EGRESS_IP, 443)]
    if mirror == "own-ca":
        checks.append(("tcp", MIRROR_IP, 443))
    elif mirror == "plain-http":
        checks.append(("tcp", MIRROR_IP, MIRROR_HTTP_PORT))
    return checks


def push_image(d, auth):
    """Push a tiny image (one layer, config, schema-2 manifest) over the registry's HTTP API.
    Runs inside the server namespace (registry on 127.0.0.1:5000)."""
    import base64
    import http.client

    headers = {}
    basic = "Basic " + base64.b64encode(f"{REG_USER}:{REG_PASS}".encode()).decode()
    if auth == "basic":
        headers["Authorization"] = basic
    elif auth == "token":
        c = http.client.HTTPConnection("127.0.0.1", 5002, timeout=10)
        c.request("GET", f"/oauth2/token?service={LOGIN}&scope=repository:{IMAGE_REPO}:pull,push",
                  headers={"Authorization": basic})
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"token for push: {r.status} {body[:200]!r}")
        headers["Authorization"] = "Bearer " + json.loads(body)["access_token"]
    return oci_push.push_image(5000, IMAGE_REPO, IMAGE_TAG, b"hello from the regcheck lab\n",
                               headers)


# ---------------------------------------------------------------------------------------------
# proxy

def start_squid(sns, d, mode):
    sd = os.path.join(d, "squid")
    os.makedirs(sd, exist_ok=True)
    auth = ""
    if mode == "auth":
        run([which("htpasswd"), "-bc", f"{sd}/passwd", PROXY_USER, PROXY_PASS])
        auth = f"""auth_param basic program /usr/lib/squid/basic_ncsa_auth {sd}/passwd
auth_param basic realm lab-proxy
auth_param basic children 2 startup=1
acl authed proxy_auth REQUIRED
http_access deny !authed
"""
    deny = "http_access deny CONNECT registry\n" if mode == "deny" else ""
    conf = f"""http_port {PROXY_IP}:3128
visible_hostname lab-proxy
pid_filename {sd}/squid.pid
cache_log {sd}/cache.log
access_log stdio:{sd}/access.log
cache deny all
cache_mem 8 MB
coredump_dir {sd}
pinger_enable off
dns_nameservers {DNS_IP}
hosts_file {d}/hosts
tcp_outgoing_address {PROXY_IP}
connect_timeout 5 seconds
forward_max_tries 2
shutdown_lifetime 0 seconds
cache_effective_user proxy
acl SSL_ports port 443
acl CONNECT method CONNECT
acl registry dstdomain .azurecr.io
http_access deny CONNECT !SSL_ports
{deny}{auth}http_access allow all
"""
    write(f"{sd}/squid.conf", conf)
    shutil.chown(sd, "proxy", "proxy")
    spawn(sns, [which("squid"), "-N", "-f", f"{sd}/squid.conf"], f"{sd}/squid.out")
    return [("tcp", PROXY_IP, 3128)]


def start_helper(sns, d, kind, ip, port):
    spawn(sns, [sys.executable, os.path.abspath(__file__), "_serve", kind, ip, str(port),
                "--dir", d], f"{d}/{kind}.out")
    return [("tcp", ip, port)]


def serve(kind, ip, port):
    """Tiny bounded TCP servers (plain sockets, no name lookups).
    eof:  accept, then close at once (a proxy that drops the CONNECT).
    hang: accept, read the request, never answer (a backend that never sends headers)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(64)
    deadline = time.monotonic() + 900  # bounded life: 15 minutes at most
    held = []
    s.settimeout(1.0)
    for _ in range(100000):
        if time.monotonic() > deadline:
            break
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        if kind == "eof":
            try:
                c.settimeout(0.2)
                c.recv(4096)
            except OSError:
                pass
            c.close()
        else:
            held.append(c)
            if len(held) > 200:
                held.pop(0).close()


def b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def libtrust_kid(spki_der):
    """The key ID docker/distribution matches a token's `kid` against (libtrust format)."""
    import base64
    h = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(h[i:i + 4] for i in range(0, len(h), 4))


def es256_sign(key_path, data):
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=data,
                         capture_output=True, check=True).stdout
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }  ->  r || s, 32 bytes each
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\x00").rjust(32, b"\x00")
        i += 2 + n
    return out


def serve_token(ip, port, d):
    """An ACR-like token endpoint (GET /oauth2/token): Basic credentials in, a JWT for the
    registry out; 401 for missing or wrong credentials. socketserver, no name lookups."""
    import base64
    import http.server
    import socketserver
    import threading
    from urllib.parse import parse_qs, urlsplit

    key = f"{d}/pki/token.key"
    spki = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                          capture_output=True, check=True).stdout
    kid = libtrust_kid(spki)
    want = "Basic " + base64.b64encode(f"{REG_USER}:{REG_PASS}".encode()).decode()
    denied = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message":
                         "authentication required, visit https://aka.ms/acr/authorization "
                         "for more information."}]}).encode()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urlsplit(self.path)
            if u.path != "/oauth2/token":
                return self.reply(404, b"{}")
            if self.headers.get("Authorization") != want:
                return self.reply(401, denied)
            q = parse_qs(u.query)
            access = []
            for sc in q.get("scope", []):
                parts = sc.split(":")
                if len(parts) == 3 and parts[0] == "repository":
                    access.append({"type": "repository", "name": parts[1],
                                   "actions": [a for a in parts[2].split(",")
                                               if a in ("pull", "push")]})
            now = int(time.time())
            header = {"typ": "JWT", "alg": "ES256", "kid": kid}
            claims = {"iss": TOKEN_ISSUER, "sub": REG_USER, "aud": q.get("service", [LOGIN])[0],
                      "exp": now + 3600, "nbf": now - 60, "iat": now,
                      "jti": os.urandom(8).hex(), "access": access}
            signing = (b64url(json.dumps(header).encode()) + "." +
                       b64url(json.dumps(claims).encode())).encode()
            jwt = signing.decode() + "." + b64url(es256_sign(key, signing))
            self.reply(200, json.dumps({"access_token": jwt, "token": jwt,
                                        "expires_in": 3600}).encode())

        def log_message(self, fmt, *args):
            sys.stderr.write("token: " + (fmt % args) + "\n")

    class S(socketserver.ThreadingMixIn, socketserver.TCPServer):
        allow_reuse_address = True
        daemon_threads = True

    srv = S((ip, port), H)
    threading.Timer(900, srv.shutdown).start()  # bounded life: 15 minutes at most
    srv.serve_forever()


# ---------------------------------------------------------------------------------------------
# readiness probe (runs inside a namespace)

def wait_checks(spec, timeout):
    import http.client
    checks = json.loads(spec)
    deadline = time.monotonic() + timeout
    pending = list(checks)
    last = {}
    while pending and time.monotonic() < deadline:
        still = []
        for c in pending:
            try:
                if c[0] == "tcp":
                    with socket.create_connection((c[1], c[2]), timeout=0.5):
                        pass
                elif c[0] == "http":
                    conn = http.client.HTTPConnection(c[1], c[2], timeout=1)
                    conn.request("GET", c[3])
                    conn.getresponse().read()
                    conn.close()
                elif c[0] == "dns":
                    if dns_query(c[1], c[2]) is None:
                        raise OSError("no answer")
            except OSError as e:
                last[str(c)] = str(e)
                still.append(c)
        pending = still
        if pending:
            time.sleep(0.05)
    if pending:
        print(f"not ready: {[(p, last.get(str(p))) for p in pending]}", file=sys.stderr)
        return 1
    return 0


def dns_query(server, name):
    """Minimal A query over UDP; returns the rcode or None."""
    q = os.urandom(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.strip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(q, (server, 53))
        data, _ = s.recvfrom(4096)
        return data[3] & 0x0F
    except OSError:
        return None
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# up / down

def cmd_up(args):
    if args.scenario not in SCENARIOS:
        print(f"unknown scenario {args.scenario}; see: lab.py list", file=sys.stderr)
        return 2
    sc = SCENARIOS[args.scenario]
    lab_id = args.id
    sns, cns = names(lab_id)
    d = state_dir(lab_id)
    if os.path.exists(d):
        cmd_down(args)
    os.makedirs(d)
    os.chmod(d, 0o755)
    write(f"{d}/owner", f"{args.owner or os.getppid()}\n")
    write(f"{d}/scenario", args.scenario + "\n")
    try:
        info = bring_up(lab_id, sc, sns, cns, d)
    except Exception as e:  # leave nothing behind
        print(f"lab: up {args.scenario} failed: {e}", file=sys.stderr)
        for f in ("unbound.log", "registry.out", "nginx-error.log", "squid/cache.log",
                  "dnsmasq.out"):
            p = os.path.join(d, f)
            if os.path.exists(p):
                with open(p, errors="replace") as fh:
                    tail = fh.read()[-1500:]
                print(f"--- {f}\n{tail}", file=sys.stderr)
        if not args.keep_on_error:
            cmd_down(args)
        return 1
    info["scenario"] = args.scenario
    print(json.dumps(info))
    return 0


def netns_files(ns, nameservers):
    nd = f"/etc/netns/{ns}"
    os.makedirs(nd, exist_ok=True)
    write(f"{nd}/resolv.conf",
          "".join(f"nameserver {n}\n" for n in nameservers) + "options timeout:1 attempts:1\n")
    write(f"{nd}/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")


def link_router(lab_id, sc, sns, cns):
    """server (s0) - router (r0 | r1) - client (c0). The router answers ARP for the server's
    addresses in the client's subnet (proxy ARP), forwards toward the client with the route MTU
    `sc["router"]`, and drops the ICMP "fragmentation needed" it would send back."""
    rns = router_ns(lab_id)
    run(["ip", "netns", "add", rns])
    run(["ip", "link", "set", "lo", "up"], ns=rns)
    run(["ip", "link", "add", "s0", "type", "veth", "peer", "name", "r0", "netns", rns], ns=sns)
    run(["ip", "addr", "add", f"{SERVER_ROUTER_IP}/30", "dev", "s0"], ns=sns)
    run(["ip", "link", "set", "s0", "up"], ns=sns)
    run(["ip", "addr", "add", f"{ROUTER_SERVER_IP}/30", "dev", "r0"], ns=rns)
    run(["ip", "link", "set", "r0", "up"], ns=rns)
    run(["ip", "link", "add", "r1", "type", "veth", "peer", "name", "c0", "netns", cns], ns=rns)
    run(["ip", "addr", "add", f"{GW_IP}/24", "dev", "r1"], ns=rns)
    run(["ip", "link", "set", "r1", "up"], ns=rns)
    for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.r1.proxy_arp=1"):
        run(["sysctl", "-q", "-w", key], ns=rns)
    for a in SERVER_ADDRS:
        run(["ip", "route", "add", f"{a}/32", "via", SERVER_ROUTER_IP], ns=rns)
    for net in CLIENT_ROUTES:
        run(["ip", "route", "add", net, "via", SERVER_ROUTER_IP], ns=rns)
    # Every link is 1500 bytes; only the router's path toward the client is narrower (a
    # tunnel): forwarded packets larger than this need fragmentation, which DF forbids.
    run(["ip", "route", "replace", f"{CLIENT_IP}/32", "dev", "r1", "mtu", str(sc["router"])],
        ns=rns)
    run(["iptables", "-w", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed",
         "-j", "DROP"], ns=rns)
    run(["ip", "route", "add", f"{CLIENT_IP}/32", "via", ROUTER_SERVER_IP], ns=sns)


def bring_up(lab_id, sc, sns, cns, d):
    # Namespaces and the veth pair between them. No default route anywhere.
    run(["ip", "netns", "add", sns])
    run(["ip", "netns", "add", cns])
    ipv6, v6only = sc.get("ipv6", False), sc.get("v6only", False)
    resolver = DNS_IP if sc.get("resolver", "unbound") == "unbound" else CUSTOM_DNS_IP
    if v6only:
        resolver = DNS6_IP
    netns_files(cns, [resolver])
    netns_files(sns, [DNS_IP])
    write(f"{d}/hosts", "127.0.0.1 localhost\n")
    run(["ip", "link", "set", "lo", "up"], ns=sns)
    run(["ip", "link", "set", "lo", "up"], ns=cns)
    for a in SERVER_ADDRS:
        if a == GW_IP:
            continue
        run(["ip", "addr", "add", f"{a}/32", "dev", "lo"], ns=sns)
    if sc.get("router"):
        link_router(lab_id, sc, sns, cns)
    else:
        run(["ip", "link", "add", "s0", "type", "veth", "peer", "name", "c0", "netns", cns],
            ns=sns)
        run(["ip", "addr", "add", f"{GW_IP}/24", "dev", "s0"], ns=sns)
        run(["ip", "link", "set", "s0", "up"], ns=sns)
    if not v6only:
        run(["ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "c0"], ns=cns)
    run(["ip", "link", "set", "c0", "up"], ns=cns)
    if not v6only:
        for net in CLIENT_ROUTES:
            run(["ip", "route", "add", net, "via", GW_IP], ns=cns)
    if ipv6:
        # nodad: the addresses are usable at once (no duplicate address detection wait).
        run(["ip", "-6", "addr", "add", f"{GW6_IP}/64", "dev", "s0", "nodad"], ns=sns)
        for a in SERVER6_ADDRS:
            run(["ip", "-6", "addr", "add", f"{a}/128", "dev", "lo", "nodad"], ns=sns)
        run(["ip", "-6", "addr", "add", f"{CLIENT6_IP}/64", "dev", "c0", "nodad"], ns=cns)
        for net in CLIENT6_ROUTES:
            run(["ip", "-6", "route", "add", net, "via", GW6_IP], ns=cns)
    for name in sc.get("routes", []):
        for r in ROUTES[name]:
            run(["ip", "route", "add"] + r.split(), ns=cns)
    for name in sc.get("fw", []):
        for rule in FIREWALL[name]:
            run(["iptables", "-w"] + rule.split(), ns=sns)
    for name in sc.get("fw6", []):
        for rule in FIREWALL6[name]:
            run(["ip6tables", "-w"] + rule.split(), ns=sns)

    make_pki(f"{d}/pki")
    mirror = sc.get("mirror")
    if mirror == "own-ca":
        # The mirror's own CA: trusted only through hosts.toml's `ca`, not the lab CA.
        make_ca(f"{d}/pki", "mirror-ca", "Lab Mirror CA", "regcheck lab mirror")
        make_leaf(f"{d}/pki", "mirror", "mirror-ca", MIRROR)
    checks = []
    checks += start_unbound(sns, d, sc["dns"], sc.get("aaaa", False), ipv6)
    if sc.get("resolver") == "dnsmasq":
        checks += start_dnsmasq(sns, d)
    auth = sc.get("auth")
    checks += start_registry(sns, d, auth)
    if auth == "token":
        checks += start_helper(sns, d, "token", "127.0.0.1", 5002)
    login_mode = sc.get("login", "ok")
    if login_mode == "hang":
        checks += start_helper(sns, d, "hang", "127.0.0.1", 5001)
    proxy = sc.get("proxy")
    if proxy in ("allow", "deny", "auth"):
        checks += start_squid(sns, d, proxy)
    elif proxy == "eof":
        checks += start_helper(sns, d, "eof", EOF_PROXY_IP, 3128)
    checks += start_nginx(sns, d, login_mode, mirror, sc.get("bigcert", False), ipv6)
    wait_ready(sns, checks)

    r = run([sys.executable, os.path.abspath(__file__), "_push", d, auth or "none"],
            ns=sns)
    image = json.loads(r.stdout)

    info = {
        "id": lab_id,
        "serverNs": sns,
        "clientNs": cns,
        "stateDir": d,
        "caFile": f"{d}/pki/ca.pem",
        "interceptCaFile": f"{d}/pki/mitm.pem",
        "registry": LOGIN,
        "region": REGION,
        "dataEndpoint": DATA,
        "image": f"{IMAGE_REPO}:{IMAGE_TAG}",
        "imageDigests": image,
        "clientIp": CLIENT_IP,
        "resolver": resolver,
        "dnsServer": DNS_IP,
        "customDnsServer": CUSTOM_DNS_IP,
        "publicLoginIp": PUB_LOGIN_IP,
        "publicDataIp": PUB_DATA_IP,
        "privateLoginIp": PRIV_LOGIN_IP,
        "privateDataIp": PRIV_DATA_IP,
        "staleIp": STALE_IP,
        "mirrorHost": MIRROR,
        "mirrorCaFile": f"{d}/pki/mirror-ca.pem",
        "brokenDnsServer": BROKEN_DNS_IP,
        "publicLogin6Ip": PUB_LOGIN6_IP,
        "publicData6Ip": PUB_DATA6_IP,
        "dns6Server": DNS6_IP,
        "egressIp": EGRESS_IP,
        "aksApiServer": AKS_API_SERVER,
        "egressBlocked": EGRESS_BLOCKED,
        "registryUser": REG_USER,
        "registryPassword": REG_PASS,
    }
    if proxy in ("allow", "deny", "auth"):
        info["proxy"] = f"http://{PROXY_IP}:3128"
        info["proxyUser"], info["proxyPassword"] = PROXY_USER, PROXY_PASS
    elif proxy == "eof":
        info["proxy"] = f"http://{EOF_PROXY_IP}:3128"
    return info


def kill_ns_procs(ns):
    r = run(["ip", "netns", "pids", ns], check=False)
    if r.returncode != 0:
        return
    pids = [int(p) for p in r.stdout.split()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if not alive:
            return
        time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cmd_down(args):
    lab_id = args.id
    all_ns = list(names(lab_id)) + [router_ns(lab_id)]
    for ns in all_ns:
        kill_ns_procs(ns)
    for ns in all_ns:
        run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
    shutil.rmtree(state_dir(lab_id), ignore_errors=True)
    return 0


def cmd_gc(_args):
    """Remove labs whose owner process is gone (e.g. a test runner killed with SIGKILL)."""
    if not os.path.isdir(ROOT):
        return 0
    for lab_id in os.listdir(ROOT):
        d = state_dir(lab_id)
        owner = os.path.join(d, "owner")
        if not os.path.isfile(owner):
            continue
        try:
            pid = int(open(owner).read().strip())
        except ValueError:
            pid = 0
        if pid and os.path.exists(f"/proc/{pid}"):
            continue
        log(f"removing stale lab {lab_id}")
        cmd_down(argparse.Namespace(id=lab_id))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install")
    sub.add_parser("check")
    sub.add_parser("list")
    sub.add_parser("gc")
    up = sub.add_parser("up")
    up.add_argument("scenario")
    up.add_argument("--id", required=True)
    up.add_argument("--owner", type=int, help="pid whose death makes this lab garbage (gc)")
    up.add_argument("--keep-on-error", action="store_true")
    down = sub.add_parser("down")
    down.add_argument("--id", required=True)
    # internal
    w = sub.add_parser("_wait")
    w.add_argument("spec")
    w.add_argument("timeout", type=float)
    s = sub.add_parser("_serve")
    s.add_argument("kind", choices=["eof", "hang", "token"])
    s.add_argument("ip")
    s.add_argument("port", type=int)
    s.add_argument("--dir")
    pu = sub.add_parser("_push")
    pu.add_argument("dir")
    pu.add_argument("auth")
    a = p.parse_args()
    if a.cmd == "install":
        return cmd_install(a)
    if a.cmd == "check":
        return cmd_check(a)
    if a.cmd == "list":
        print("\n".join(SCENARIOS))
        return 0
    if a.cmd == "gc":
        return cmd_gc(a)
    if a.cmd == "up":
        if os.geteuid() != 0:
            print("lab: needs root", file=sys.stderr)
            return 77
        return cmd_up(a)
    if a.cmd == "down":
        return cmd_down(a)
    if a.cmd == "_wait":
        return wait_checks(a.spec, a.timeout)
    if a.cmd == "_serve":
        if a.kind == "token":
            serve_token(a.ip, a.port, a.dir)
        else:
            serve(a.kind, a.ip, a.port)
        return 0
    if a.cmd == "_push":
        print(json.dumps(push_image(a.dir, None if a.auth == "none" else a.auth)))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
