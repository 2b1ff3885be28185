#!/usr/bin/env python3
"""Lab servers for the end-to-end tests, bound to the test cluster's bridge address.

  servers.py up   --state DIR [--ip 10.88.0.1]   start dnsmasq, docker-registry and nginx (TLS);
                                                 print one JSON line describing them
  servers.py down --state DIR                    stop them (only the PIDs recorded in DIR)
  servers.py pki  --state DIR                    only create the lab CA (DIR/pki/ca.pem), e.g. to
                                                 build a probe image for another cluster

What runs (every listener on --ip, which must be an address of this machine that the cluster's
nodes and pods reach; on the shared cluster the bridge address 10.88.0.1):
  - dnsmasq on IP:53 (UDP+TCP): the lab names below resolve to IP; every other name is
    NXDOMAIN (nothing is forwarded anywhere).
  - nginx on IP:443 with a certificate from the lab CA for all lab names:
      e2ereg.azurecr.io              a working registry (docker-registry on 127.0.0.1:REG_PORT)
      e2ereg.eastus.data.azurecr.io  its data endpoint (blobs are redirected here)
      e2edeny.azurecr.io             Azure's network-rule denial: 403 DENIED naming the client IP
      e2ehang.azurecr.io             completes TLS, then never sends response headers (a probe
                                     runs until its deadline: long enough to act mid-run)
      e2emirror.azurecr.io           the same images from a registry that serves blobs itself
                                     (no redirect)
      e2eredir.azurecr.io            the same images, blobs redirected to IP:DEAD_PORT where
                                     nothing listens (a data endpoint the firewall blocks)
  - nginx on IP:MIRROR_PORT, IP:AUTH_PORT, IP:REDIR_PORT, IP:HANG_MIRROR_PORT (certificate also
    valid for the IP) for the kubelet's own pulls, which go by IP (containerd sends any *name*
    to the test cluster's dead proxy; `$DIR/certs.d/<host>/hosts.toml` maps names to these):
      MIRROR_PORT       e2emirror's registry (blobs served directly)
      AUTH_PORT         the same behind HTTP Basic authentication (user AUTH_USER, AUTH_PASSWORD)
      REDIR_PORT        e2eredir's registry (blobs redirected to the dead data endpoint)
      HANG_MIRROR_PORT  e2ehang's backend (never answers)
  - the image e2e/hello:1.0 is pushed into the registry.
  - nosuch.azurecr.io (and anything else) does not resolve.

NETWORK SAFETY: the servers listen on IP and 127.0.0.1 only and never connect anywhere but the
registry on 127.0.0.1. Nothing here does a reverse lookup (no http.server).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import oci_push  # noqa: E402  (tests/common, shared with tests/lab/lab.py)

LOGIN = "e2ereg.azurecr.io"
DATA = "e2ereg.eastus.data.azurecr.io"
DENY = "e2edeny.azurecr.io"
HANG = "e2ehang.azurecr.io"
MISSING = "nosuch.azurecr.io"
MIRROR = "e2emirror.azurecr.io"
REDIR = "e2eredir.azurecr.io"
NAMES = [LOGIN, DATA, DENY, HANG, MIRROR, REDIR]
IMAGE_REPO, IMAGE_TAG = "e2e/hello", "1.0"
REDIRECTED_REPO = "e2e/redirected"
# Below Linux's ephemeral range (32768-60999): a port in it can be the local end of some
# client's connection (seen: kube-apiserver -> etcd on 127.0.0.1:35000), and bind() then fails.
REG_PORT = 31500  # docker-registry on loopback only; nginx proxies to it
HANG_PORT = 31501  # accepts and never answers; nginx proxies e2ehang.azurecr.io to it
HANG_SECONDS = 600  # a held connection is closed after this long at the latest
REG_DIRECT_PORT = 31502  # the same storage, blobs served by the registry itself
REG_REDIR_PORT = 31503  # the same storage, blobs redirected to https://IP:DEAD_PORT
DEAD_PORT = 31509  # nothing listens here: connections are refused
MIRROR_PORT = 5443
AUTH_PORT = 5444
REDIR_PORT = 5445
HANG_MIRROR_PORT = 5446
AUTH_USER, AUTH_PASSWORD = "e2e-puller", "e2e-pull-secret-1"
SERVICES = ("dnsmasq", "registry", "registry-direct", "registry-redir", "hang", "nginx")


def log(msg):
    print(f"e2e-servers: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def which(binary):
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        p = os.path.join(d, binary)
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError(f"{binary} not found (install the e2e packages: "
                       "python3 tests/common/deps.py install e2e)")


# ---------------------------------------------------------------------------------------------
# PKI (same approach as tests/lab/lab.py)

def pki(state, ip):
    """The lab CA (kept across runs: an image built with it keeps working) and a server
    certificate for every lab name (re-issued when the names change)."""
    d = os.path.join(state, "pki")
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "ca.pem")):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
             "-subj", "/O=regcheck e2e/CN=regcheck e2e Root CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=d)
    sans = ",".join([f"DNS:{n}" for n in NAMES] + [f"IP:{ip}"])
    names_file = os.path.join(d, "server.names")
    if (os.path.exists(os.path.join(d, "server.pem")) and os.path.exists(names_file)
            and open(names_file).read() == sans):
        return d
    write(os.path.join(d, "server.ext"),
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={LOGIN}"], cwd=d)
    run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
         "-out", "server.pem", "-extfile", "server.ext"], cwd=d)
    write(names_file, sans)
    return d


# ---------------------------------------------------------------------------------------------
# processes

def pid_file(state, name):
    return os.path.join(state, f"{name}.pid")


def alive_owned(state, name):
    """PID of a running server of ours (its command line names the state dir), else None."""
    try:
        pid = int(open(pid_file(state, name)).read().strip())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if state in cmdline else None


def spawn(state, name, cmd):
    out = open(os.path.join(state, f"{name}.out"), "ab")
    p = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                         start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    write(pid_file(state, name), f"{p.pid}\n")
    return p


def stop(state):
    for name in SERVICES:
        pid = alive_owned(state, name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if alive_owned(state, name) is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        log(f"stopped {name} (pid {pid})")
    for name in SERVICES:
        try:
            os.unlink(pid_file(state, name))
        except FileNotFoundError:
            pass


def wait(what, probe, timeout=15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s (last error: {last})")


def tcp_open(ip, port):
    with socket.create_connection((ip, port), timeout=1):
        return True


def dns_query(server, name):
    """A minimal A query over UDP; returns (rcode, addresses)."""
    qid = int.from_bytes(os.urandom(2), "big")
    q = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(q, (server, 53))
        data, _ = s.recvfrom(512)
    rcode = data[3] & 0x0F
    an = int.from_bytes(data[6:8], "big")
    # skip the question
    i = 12
    while data[i] != 0:
        i += data[i] + 1
    i += 5
    addrs = []
    for _ in range(an):
        if data[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while data[i] != 0:
                i += data[i] + 1
            i += 1
        rtype = int.from_bytes(data[i:i + 2], "big")
        rdlen = int.from_bytes(data[i + 8:i + 10], "big")
        rdata = data[i + 10:i + 10 + rdlen]
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(rdata))
        i += 10 + rdlen
    return rcode, addrs


# ---------------------------------------------------------------------------------------------
# servers

def start_dnsmasq(state, ip):
    lines = [
        "port=53", f"listen-address={ip}", "bind-interfaces", "no-resolv", "no-hosts",
        "no-poll", "user=root", "log-queries", f"log-facility={state}/dnsmasq.log",
        "cache-size=0",
        # Every name not listed below: NXDOMAIN (nothing is ever forwarded).
        "address=/#/",
    ]
    lines += [f"address=/{n}/{ip}" for n in NAMES]
    write(os.path.join(state, "dnsmasq.conf"), "\n".join(lines) + "\n")
    spawn(state, "dnsmasq", [which("dnsmasq"), "-k", f"--conf-file={state}/dnsmasq.conf",
                             f"--pid-file={state}/dnsmasq.real.pid"])
    wait("dnsmasq", lambda: dns_query(ip, LOGIN) == (0, [ip]))


def start_registry(state, name, port, redirect):
    """docker-registry on 127.0.0.1:`port` over the one shared store; `redirect` is the base URL
    blobs are redirected to, or None to serve them itself."""
    store = os.path.join(state, "registry")
    os.makedirs(store, exist_ok=True)
    middleware = "" if redirect is None else f"""middleware:
  storage:
    - name: redirect
      options:
        baseurl: {redirect}
"""
    write(os.path.join(state, f"{name}.yml"), f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {store}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: regcheck-e2e-secret
{middleware}""")
    spawn(state, name, [which("docker-registry"), "serve", f"{state}/{name}.yml"])
    wait(name, lambda: tcp_open("127.0.0.1", port))


def start_nginx(state, ip, d):
    deny_body = ("{\"errors\":[{\"code\":\"DENIED\",\"message\":\"client with IP '$remote_addr' "
                 "is not allowed access. Refer https://aka.ms/acr/firewall to grant access.\"}]}")
    quoted_deny = "'" + deny_body.replace("\\", "\\\\").replace("'", "\\'") + "'"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(f"{state}/nginx-tmp/{sub}", exist_ok=True)
    tls = f"""ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;"""
    conf = f"""worker_processes 1;
user root;
pid {state}/nginx.real.pid;
error_log {state}/nginx-error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {state}/nginx-access.log;
    client_body_temp_path {state}/nginx-tmp/body;
    proxy_temp_path {state}/nginx-tmp/proxy;
    fastcgi_temp_path {state}/nginx-tmp/fastcgi;
    uwsgi_temp_path {state}/nginx-tmp/uwsgi;
    scgi_temp_path {state}/nginx-tmp/scgi;
    client_max_body_size 0;
    server_tokens off;
    server {{
        listen {ip}:443 ssl default_server;
        server_name {LOGIN};
        {tls}
        location / {{
            proxy_pass http://127.0.0.1:{REG_PORT};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
        }}
    }}
    server {{
        listen {ip}:443 ssl;
        server_name {DATA};
        {tls}
        # Blobs redirected here are read straight from the registry's storage, as a storage
        # account would serve them.
        root {state}/registry;
        location /docker/ {{
            default_type application/octet-stream;
        }}
        location / {{
            default_type application/xml;
            return 404 '<Error><Code>ResourceNotFound</Code></Error>';
        }}
    }}
    server {{
        listen {ip}:443 ssl;
        server_name {HANG};
        {tls}
        location / {{
            proxy_pass http://127.0.0.1:{HANG_PORT};
            proxy_read_timeout 300s;
        }}
    }}
    server {{
        listen {ip}:443 ssl;
        server_name {DENY};
        {tls}
        location / {{
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            default_type application/json;
            return 403 {quoted_deny};
        }}
    }}
    server {{
        listen {ip}:443 ssl;
        listen {ip}:{MIRROR_PORT} ssl;
        server_name {MIRROR};
        {tls}
        location / {{
            proxy_pass http://127.0.0.1:{REG_DIRECT_PORT};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
        }}
    }}
    server {{
        listen {ip}:{AUTH_PORT} ssl;
        {tls}
        location / {{
            auth_basic "regcheck e2e";
            auth_basic_user_file {state}/htpasswd;
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            proxy_pass http://127.0.0.1:{REG_DIRECT_PORT};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
        }}
    }}
    server {{
        listen {ip}:443 ssl;
        listen {ip}:{REDIR_PORT} ssl;
        server_name {REDIR};
        {tls}
        location / {{
            proxy_pass http://127.0.0.1:{REG_REDIR_PORT};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
        }}
    }}
    server {{
        listen {ip}:{HANG_MIRROR_PORT} ssl;
        {tls}
        location / {{
            proxy_pass http://127.0.0.1:{HANG_PORT};
            proxy_read_timeout 300s;
        }}
    }}
}}
"""
    # nginx's own plain-text password scheme: no htpasswd tool needed.
    write(os.path.join(state, "htpasswd"), f"{AUTH_USER}:{{PLAIN}}{AUTH_PASSWORD}\n")
    write(os.path.join(state, "nginx.conf"), conf)
    nginx = which("nginx")
    run([nginx, "-t", "-q", "-e", f"{state}/nginx-error.log", "-c", f"{state}/nginx.conf"])
    spawn(state, "nginx", [nginx, "-e", f"{state}/nginx-error.log", "-c", f"{state}/nginx.conf"])
    wait("nginx", lambda: tcp_open(ip, 443))


def start_hang(state):
    spawn(state, "hang", [sys.executable, os.path.abspath(__file__), "_hang", "--state", state])
    wait("hang server", lambda: tcp_open("127.0.0.1", HANG_PORT))


def serve_hang():
    """Accept on 127.0.0.1:HANG_PORT and never answer; each connection is closed after
    HANG_SECONDS or when the peer closes it."""
    import selectors
    sel = selectors.DefaultSelector()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", HANG_PORT))
    lsock.listen(64)
    sel.register(lsock, selectors.EVENT_READ)
    opened = {}
    while True:
        for key, _ in sel.select(timeout=5):
            if key.fileobj is lsock:
                conn, _ = lsock.accept()
                sel.register(conn, selectors.EVENT_READ)
                opened[conn] = time.monotonic()
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    opened.pop(conn, None)
                    conn.close()
        now = time.monotonic()
        for conn, t in list(opened.items()):
            if now - t > HANG_SECONDS:
                sel.unregister(conn)
                opened.pop(conn)
                conn.close()


def push_image():
    """Push a one-layer image over the registry API (loopback, plain HTTP)."""
    oci_push.push_image(REG_PORT, IMAGE_REPO, IMAGE_TAG, b"hello from the regcheck e2e lab\n")
    # Pulled only through e2eredir's redirect to the dead data endpoint, so containerd never has
    # its blobs already (a pull of e2e/hello through a mirror would fill its content store).
    oci_push.push_image(REG_PORT, REDIRECTED_REPO, IMAGE_TAG,
                        b"a blob only ever served through a redirect\n")


def cmd_up(args):
    state = os.path.abspath(args.state)
    os.makedirs(state, exist_ok=True)
    stop(state)  # a previous run's servers, if any
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((args.ip, 0))
    except OSError as e:
        raise RuntimeError(f"{args.ip} is not an address of this machine ({e}); is the "
                           "cluster up with --bridge-ip?")
    d = pki(state, args.ip)
    try:
        start_dnsmasq(state, args.ip)
        start_registry(state, "registry", REG_PORT, f"https://{DATA}")
        start_registry(state, "registry-direct", REG_DIRECT_PORT, None)
        start_registry(state, "registry-redir", REG_REDIR_PORT, f"https://{args.ip}:{DEAD_PORT}")
        start_hang(state)
        start_nginx(state, args.ip, d)
        push_image()
        rcode, _ = dns_query(args.ip, MISSING)
        if rcode != 3:
            raise RuntimeError(f"dnsmasq answers {MISSING} with rcode {rcode}, not NXDOMAIN")
    except Exception:
        stop(state)
        raise
    print(json.dumps({
        "ip": args.ip, "ca": f"{d}/ca.pem", "login": LOGIN, "data": DATA, "deny": DENY, "hang": HANG,
        "missing": MISSING, "image": f"{IMAGE_REPO}:{IMAGE_TAG}", "state": state,
        "mirror": MIRROR, "redir": REDIR, "mirror_port": MIRROR_PORT, "auth_port": AUTH_PORT,
        "redir_port": REDIR_PORT, "hang_mirror_port": HANG_MIRROR_PORT, "dead_port": DEAD_PORT,
        "auth_user": AUTH_USER, "auth_password": AUTH_PASSWORD,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--state", required=True)
    up.add_argument("--ip", default="10.88.0.1")
    down = sub.add_parser("down")
    down.add_argument("--state", required=True)
    p = sub.add_parser("pki")
    p.add_argument("--state", required=True)
    p.add_argument("--ip", default="10.88.0.1")
    h = sub.add_parser("_hang")  # internal: the hanging backend
    h.add_argument("--state", required=True)
    args = ap.parse_args()
    if args.cmd == "_hang":
        serve_hang()
        return
    try:
        if args.cmd == "up":
            cmd_up(args)
        elif args.cmd == "down":
            stop(os.path.abspath(args.state))
        else:
            os.makedirs(args.state, exist_ok=True)
            print(os.path.join(pki(os.path.abspath(args.state), args.ip), "ca.pem"))
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
