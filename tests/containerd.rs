//! `regcheck check --containerd-config-dir/--runtime-proxy-from`: the pull path containerd
//! would take (hosts.toml mirrors in order, each with its own TLS settings, then the upstream;
//! the proxy of containerd's systemd drop-in), against in-process servers on loopback.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use support::*;

const REGISTRY: &str = "registry.test";
const DATA: &str = "data.test";
const MIRROR: &str = "mirror.test";

struct World {
    _dns: DnsServer,
    lab: Lab,
    pki: Pki,
    resolv: PathBuf,
    reg: HttpsServer,
    certs_d: PathBuf,
}

fn world() -> World {
    let lab = Lab::new();
    let pki = Pki::new(&lab);
    let dns = lab.dns(&[
        (REGISTRY, Dns::A(vec![LOOPBACK])),
        (DATA, Dns::A(vec![LOOPBACK])),
        (MIRROR, Dns::A(vec![LOOPBACK])),
    ]);
    let resolv = lab.resolv_conf(&dns);
    let dl = lab.listener();
    let dport = dl.port();
    lab.https(dl, &pki.leaf(&[DATA]), TlsMode::Serve(data_router()));
    let l = lab.listener();
    let port = l.port();
    let reg = lab.https(
        l,
        &pki.leaf(&[REGISTRY]),
        TlsMode::Serve(registry_router(REGISTRY, port, DATA, dport, None)),
    );
    let certs_d = lab.dir().join("certs.d");
    std::fs::create_dir_all(&certs_d).unwrap();
    World {
        _dns: dns,
        lab,
        pki,
        resolv,
        reg,
        certs_d,
    }
}

impl World {
    fn target(&self) -> String {
        format!("{REGISTRY}:{}", self.reg.port())
    }
    /// Writes `certs.d/registry.test_<port>_/hosts.toml` (containerd's directory for host:port).
    fn hosts_toml(&self, text: &str) -> PathBuf {
        let d = self
            .certs_d
            .join(format!("{REGISTRY}_{}_", self.reg.port()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("hosts.toml");
        std::fs::write(&f, text).unwrap();
        f
    }
    fn run(&self, extra: &[&str]) -> Run {
        self.run_as("json", extra)
    }
    fn run_as(&self, output: &str, extra: &[&str]) -> Run {
        let mut a: Vec<String> = vec![
            "check".into(),
            self.target(),
            "--resolv-conf".into(),
            self.resolv.display().to_string(),
            "--hosts-file".into(),
            "/dev/null".into(),
            "--ca-file".into(),
            self.pki.ca_file.display().to_string(),
            "--output".into(),
            output.into(),
            "--timeout".into(),
            "5s".into(),
            "--containerd-config-dir".into(),
            self.certs_d.display().to_string(),
        ];
        if !extra.contains(&"--runtime-proxy-from") {
            a.push("--no-proxy".into());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        regcheck(&a, None)
    }
    /// A registry mirror (`/v2/` answers 200) with a certificate from `pki`.
    fn tls_mirror(&self, pki: &Pki) -> HttpsServer {
        let router = Router::new().reply(
            "/v2/",
            Reply::new(200).header("Docker-Distribution-API-Version", "registry/2.0"),
        );
        self.lab.https(
            self.lab.listener(),
            &pki.leaf(&[MIRROR]),
            TlsMode::Serve(router),
        )
    }
}

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "<missing>".into(),
    }
}

fn upstream_url(w: &World) -> String {
    format!("https://{}/v2", w.target())
}

#[test]
fn mirror_down_with_a_working_upstream_is_degraded() {
    let w = world();
    let closed = w.lab.closed_port();
    w.hosts_toml(&format!(
        "server = \"https://{}\"\n[host.\"https://{MIRROR}:{closed}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        w.target()
    ));
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_eq!(s(&j, "/verdict"), "Degraded", "{}", run.dump());
    assert_eq!(
        s(&j, "/findings/0/reason"),
        "MirrorUnreachable",
        "{}",
        run.dump()
    );
    assert_eq!(s(&j, "/findings/0/severity"), "Warning");
    let msg = s(&j, "/findings/0/message");
    assert!(msg.contains(&format!("{MIRROR}:{closed}")), "{msg}");
    assert!(msg.contains("ConnectionRefused"), "{msg}");
    assert!(msg.contains(&upstream_url(&w)), "{msg}");
    let c = &j["containerd"];
    assert_eq!(s(c, "/hosts/0/works"), "false");
    assert_eq!(s(c, "/hosts/1/upstream"), "true");
    assert_eq!(s(c, "/hosts/1/works"), "true", "{}", run.dump());
    assert_eq!(s(c, "/wouldUse"), upstream_url(&w));
    assert!(s(c, "/probeTook").contains("directly"), "{}", run.dump());

    // The table says the same.
    let run = w.run_as("table", &[]);
    let out = &run.stdout;
    assert!(
        out.contains(&format!(
            "1. https://{MIRROR}:{closed}/v2 [pull,resolve] fails"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("2. {} (upstream)", upstream_url(&w))),
        "{out}"
    );
    assert!(
        out.contains(&format!("containerd would pull from {}", upstream_url(&w))),
        "{out}"
    );
    assert!(out.contains("the probe took https://"), "{out}");
}

#[test]
fn mirror_and_upstream_down_keeps_the_upstream_reason_primary() {
    let w = world();
    let closed = w.lab.closed_port();
    w.hosts_toml(&format!(
        "[host.\"https://{MIRROR}:{closed}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    ));
    // The upstream on a closed port as well.
    let mut a = vec![
        "check".to_string(),
        format!("{REGISTRY}:{closed}"),
        "--resolv-conf".into(),
        w.resolv.display().to_string(),
        "--hosts-file".into(),
        "/dev/null".into(),
        "--output".into(),
        "json".into(),
        "--timeout".into(),
        "5s".into(),
        "--no-proxy".into(),
        "--containerd-config-dir".into(),
        w.certs_d.display().to_string(),
    ];
    let d = w.certs_d.join(format!("{REGISTRY}_{closed}_"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("hosts.toml"),
        format!("[host.\"https://{MIRROR}:{closed}\"]\n"),
    )
    .unwrap();
    a.push("--ca-file".into());
    a.push(w.pki.ca_file.display().to_string());
    let run = regcheck(&a, None);
    let j = run.json();
    assert_eq!(s(&j, "/verdict"), "Unreachable", "{}", run.dump());
    assert_eq!(
        s(&j, "/findings/0/reason"),
        "ConnectionRefused",
        "{}",
        run.dump()
    );
    assert_eq!(s(&j, "/findings/0/role"), "LoginServer");
    let reasons: Vec<String> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| s(f, "/reason"))
        .collect();
    assert!(
        reasons.contains(&"MirrorUnreachable".to_string()),
        "{reasons:?}"
    );
    assert_eq!(s(&j, "/containerd/wouldUse"), "<missing>");
}

#[test]
fn mirror_with_its_own_ca_from_hosts_toml() {
    let w = world();
    // The mirror's certificate comes from another CA, trusted only through hosts.toml.
    let other_lab = Lab::new();
    let other = Pki::new(&other_lab);
    let m = w.tls_mirror(&other);
    let f = w.hosts_toml(&format!(
        "[host.\"https://{MIRROR}:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
        m.port(),
        other.ca_file.display()
    ));
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.dump());
    assert_eq!(s(&j, "/findings/0/reason"), "Healthy");
    let mirror_url = format!("https://{MIRROR}:{}/v2", m.port());
    assert_eq!(s(&j, "/containerd/wouldUse"), mirror_url, "{}", run.dump());
    assert_eq!(s(&j, "/containerd/config"), f.display().to_string());
    assert_eq!(
        s(&j, "/containerd/hosts/0/endpoint/tls/outcome"),
        "Verified"
    );
    assert_eq!(m.paths(), ["/v2/"]);

    // Without the `ca` line the same mirror is untrusted: containerd falls back.
    w.hosts_toml(&format!(
        "[host.\"https://{MIRROR}:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        m.port()
    ));
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(
        s(&j, "/findings/0/reason"),
        "MirrorUnreachable",
        "{}",
        run.dump()
    );
    assert!(
        s(&j, "/findings/0/message").contains("TLSCertificateInvalid"),
        "{}",
        run.dump()
    );
    assert_eq!(s(&j, "/containerd/wouldUse"), upstream_url(&w));

    // skip_verify = true: containerd accepts any certificate.
    w.hosts_toml(&format!(
        "[host.\"https://{MIRROR}:{}\"]\n  skip_verify = true\n",
        m.port()
    ));
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(s(&j, "/containerd/wouldUse"), mirror_url, "{}", run.dump());
    assert_eq!(s(&j, "/containerd/hosts/0/skipVerify"), "true");
}

#[test]
fn a_missing_ca_file_fails_every_pull() {
    let w = world();
    let m = w.tls_mirror(&w.pki);
    let missing = w.lab.dir().join("no-such-ca.pem");
    w.hosts_toml(&format!(
        "[host.\"https://{MIRROR}:{}\"]\n  ca = \"{}\"\n",
        m.port(),
        missing.display()
    ));
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(run.code, 1, "{}", run.dump());
    assert_eq!(
        s(&j, "/findings/0/reason"),
        "HostsConfigInvalid",
        "{}",
        run.dump()
    );
    assert_eq!(s(&j, "/findings/0/severity"), "Error");
    assert!(s(&j, "/findings/0/message").contains("no-such-ca.pem"));
    assert_eq!(s(&j, "/containerd/wouldUse"), "<missing>");
}

#[test]
fn plain_http_mirror() {
    let w = world();
    let router = Router::new().reply(
        "/v2/",
        Reply::new(200).header("Docker-Distribution-API-Version", "registry/2.0"),
    );
    let m = w.lab.http(w.lab.listener(), router);
    w.hosts_toml(&format!(
        "server = \"https://{}\"\n[host.\"http://{MIRROR}:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        w.target(),
        m.port()
    ));
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.dump());
    assert_eq!(
        s(&j, "/containerd/wouldUse"),
        format!("http://{MIRROR}:{}/v2", m.port()),
        "{}",
        run.dump()
    );
    assert_eq!(s(&j, "/containerd/hosts/0/plainHttp"), "true");
    assert_eq!(s(&j, "/containerd/hosts/0/endpoint/tls"), "<missing>");
    assert_eq!(m.paths(), ["/v2/"]);
}

#[test]
fn invalid_hosts_toml_is_reported_and_containerd_goes_upstream() {
    let w = world();
    let f =
        w.hosts_toml("[host.\"https://mirror.test\"]\n  capabilities = [\"pull\", \"fetch\"]\n");
    let run = w.run(&[]);
    let j = run.json();
    assert_eq!(
        s(&j, "/findings/0/reason"),
        "HostsConfigInvalid",
        "{}",
        run.dump()
    );
    let msg = s(&j, "/findings/0/message");
    for needle in [
        f.display().to_string(),
        "capabilities".to_string(),
        "fetch".to_string(),
    ] {
        assert!(msg.contains(&needle), "{msg} lacks {needle}");
    }
    assert_eq!(s(&j, "/containerd/wouldUse"), upstream_url(&w));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn proxy_from_a_systemd_drop_in() {
    let w = world();
    let m = w.tls_mirror(&w.pki);
    let proxy = w.lab.proxy(
        ProxyMode::Allow,
        &[(REGISTRY, LOOPBACK), (MIRROR, LOOPBACK)],
    );
    w.hosts_toml(&format!(
        "[host.\"https://{MIRROR}:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        m.port()
    ));
    let drop_in = write(
        w.lab.dir(),
        "http-proxy.conf",
        &format!(
            "[Service]\n# containerd's proxy\nEnvironment=\"HTTPS_PROXY={}\" \"NO_PROXY=localhost,.cluster.local\"\n",
            proxy.url()
        ),
    );
    let run = w.run(&["--runtime-proxy-from", &drop_in.display().to_string()]);
    let j = run.json();
    assert_eq!(run.code, 0, "{}", run.dump());
    assert!(
        s(&j, "/endpoints/0/route/proxy").contains(&proxy.addr.to_string()),
        "{}",
        run.dump()
    );
    assert_eq!(
        s(&j, "/containerd/hosts/0/endpoint/proxy/outcome"),
        "Connected"
    );
    assert!(s(&j, "/containerd/probeTook").contains("through the proxy"));
    let connects = proxy.connects.lock().unwrap().clone();
    assert!(connects.contains(&w.target()), "{connects:?}");
    assert!(
        connects.contains(&format!("{MIRROR}:{}", m.port())),
        "{connects:?}"
    );

    // NO_PROXY from the same drop-in exempts the mirror.
    let drop_in = write(
        w.lab.dir(),
        "http-proxy.conf",
        &format!(
            "[Service]\nEnvironment=\"HTTPS_PROXY={}\" \"NO_PROXY={MIRROR}\"\n",
            proxy.url()
        ),
    );
    let before = proxy.connects.lock().unwrap().len();
    let run = w.run(&["--runtime-proxy-from", &drop_in.display().to_string()]);
    let j = run.json();
    assert_eq!(s(&j, "/containerd/hosts/0/works"), "true", "{}", run.dump());
    assert_eq!(s(&j, "/containerd/hosts/0/endpoint/proxy"), "<missing>");
    let after: Vec<String> = proxy.connects.lock().unwrap()[before..].to_vec();
    assert_eq!(after, [w.target()]);

    // A drop-in with a proxy URL the runtime could not use is refused before probing.
    let bad = write(
        w.lab.dir(),
        "bad.conf",
        "[Service]\nEnvironment=HTTPS_PROXY=socks5://p:1080\n",
    );
    let run = w.run(&["--runtime-proxy-from", &bad.display().to_string()]);
    assert_eq!(run.code, 2, "{}", run.dump());
    assert!(
        run.stderr.contains("--runtime-proxy-from"),
        "{}",
        run.dump()
    );
}
