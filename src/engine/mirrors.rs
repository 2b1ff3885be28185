//! The pull path containerd would take (`regcheck check --containerd-config-dir`): every host
//! of its `hosts.toml` for the registry, in containerd's order (mirrors, then the upstream),
//! probed with that host's own TLS settings, through the runtime's proxy.
//!
//! A second pass beside the engine's endpoint probes ([`crate::engine::probe::run`]): mirrors are
//! probed here as [`Role::Mirror`] endpoints; the upstream is the login server the engine
//! probes anyway (unless `server` names another host, which is then probed here too). The
//! summary ([`summarise`]) and the diagnosis rule (`diagnosis::containerd_items`) are pure.

use crate::engine::evidence::{
    EndpointEvidence, Evidence, ProxyEvidence, ProxyOutcome, Role, TlsOutcome,
};
use crate::engine::hostsconfig::{HostsResolution, RegistryHost, Scheme};
use crate::engine::probe::{self, Budget, Connected, ProbeConfig, dns, net};
use std::net::IpAddr;
use std::time::Instant;

pub use crate::engine::evidence::{ContainerdEvidence, HostEvidence};

/// Prefix of a note on a TLS file containerd cannot load.
const BROKEN: &str = "containerd cannot load this host's TLS files and fails every pull: ";

/// `host[:port]` -> (host without brackets, port), with the scheme's default port.
fn host_port(h: &RegistryHost) -> (String, u16) {
    let default = if h.scheme == Scheme::Http { 80 } else { 443 };
    let s = h.host.as_str();
    if let Some(rest) = s.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        let port = rest[end + 1..]
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default);
        return (rest[..end].to_string(), port);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().unwrap_or(default)),
        _ => (s.to_string(), default),
    }
}

/// True when `ep` reached a registry API (a 200 or a well-formed 401 on `/v2/`).
pub fn endpoint_works(ep: &EndpointEvidence) -> bool {
    ep.http
        .as_ref()
        .is_some_and(crate::engine::diagnosis::http_is_healthy)
}

/// The upstream entry is the engine's login server probe.
fn is_login(h: &RegistryHost, login: (&str, u16)) -> bool {
    let (name, port) = host_port(h);
    h.upstream
        && h.scheme == Scheme::Https
        && name.eq_ignore_ascii_case(login.0)
        && port == login.1
        && h.path == "/v2"
}

/// Probes every pull host containerd would try, except the upstream when it is the login
/// server (`login`: host and port) that the engine probes. Hosts are probed concurrently.
pub async fn walk(
    res: &HostsResolution,
    login: (&str, u16),
    config: &ProbeConfig,
) -> Vec<HostEvidence> {
    let budget = Budget::new(config.timeout);
    let hosts = res.pull_hosts();
    futures::future::join_all(hosts.into_iter().map(|h| {
        let budget = &budget;
        async move {
            let mut ev = HostEvidence {
                url: h.url(),
                capabilities: h
                    .capabilities
                    .names()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                upstream: h.upstream,
                ca: h.ca.iter().map(|p| p.display().to_string()).collect(),
                skip_verify: h.skip_verify == Some(true),
                plain_http: h.scheme == Scheme::Http,
                notes: Vec::new(),
                endpoint: None,
                works: false,
            };
            if !h.client.is_empty() {
                ev.notes.push(format!(
                    "containerd presents {} client certificate(s); the probe does not",
                    h.client.len()
                ));
            }
            if !is_login(h, login) {
                probe_host(h, &res.unreadable, &mut ev, config, budget).await;
            }
            ev
        }
    }))
    .await
}

async fn probe_host(
    h: &RegistryHost,
    unreadable: &[std::path::PathBuf],
    ev: &mut HostEvidence,
    config: &ProbeConfig,
    budget: &Budget,
) {
    let (name, port) = host_port(h);
    let mut cfg = config.clone();
    let (ca, outside): (Vec<_>, Vec<_>) =
        h.ca.iter().cloned().partition(|p| !unreadable.contains(p));
    for p in &outside {
        ev.notes.push(format!(
            "CA file {} is outside the mounted configuration directory: the probe cannot read it and verifies without it",
            p.display()
        ));
    }
    match config.trust.with_extra(&ca) {
        Ok(t) => cfg.trust = t,
        Err(e) => ev.notes.push(format!("{BROKEN}{e}")),
    }
    for (cert, key) in &h.client {
        for f in std::iter::once(cert).chain(key) {
            if unreadable.contains(f) {
                ev.notes.push(format!(
                    "client file {} is outside the mounted configuration directory: the probe cannot check it",
                    f.display()
                ));
            } else if let Err(e) = std::fs::metadata(f) {
                ev.notes
                    .push(format!("{BROKEN}client file {}: {e}", f.display()));
            }
        }
    }
    if let Some(skip) = h.skip_verify {
        cfg.trust.skip_verify = skip;
    }
    let headers: Vec<(String, String)> = h
        .header
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
        .collect();
    let path = format!("{}/", h.path.trim_end_matches('/'));
    let endpoint = match h.scheme {
        Scheme::Http => plain(&name, port, &path, &headers, &cfg, budget).await,
        Scheme::Https => tls(&name, port, &path, &headers, &cfg, budget).await,
        Scheme::HttpsThenHttp => {
            let first = tls(&name, port, &path, &headers, &cfg, budget).await;
            // containerd's NewHTTPFallback retries in plain HTTP when the server does not
            // answer the handshake as a TLS server.
            if first
                .tls
                .as_ref()
                .is_some_and(|t| t.outcome == TlsOutcome::Failed)
            {
                ev.plain_http = true;
                ev.notes.push(format!(
                    "no TLS on {name}:{port}; containerd falls back to plain HTTP, as the probe did"
                ));
                plain(&name, port, &path, &headers, &cfg, budget).await
            } else {
                first
            }
        }
    };
    ev.works = endpoint_works(&endpoint);
    ev.endpoint = Some(endpoint);
}

fn header_refs(headers: &[(String, String)]) -> Vec<(&str, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect()
}

async fn tls(
    name: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    cfg: &ProbeConfig,
    budget: &Budget,
) -> EndpointEvidence {
    let Connected {
        mut evidence,
        stream,
    } = probe::connect(name, port, Role::Mirror, cfg, budget, false).await;
    if let Some(stream) = stream {
        get(&mut evidence, stream, path, headers, budget).await;
    }
    evidence
}

async fn get(
    ev: &mut EndpointEvidence,
    stream: net::BoxIo,
    request_target: &str,
    headers: &[(String, String)],
    budget: &Budget,
) {
    let started = Instant::now();
    let host = probe::host_header(&ev.host, ev.port);
    let result = net::http_get(
        stream,
        &host,
        request_target,
        &header_refs(headers),
        budget.phase(0.3),
        net::MAX_BODY,
    )
    .await;
    ev.http = Some(net::v2_evidence(
        result,
        started.elapsed().as_millis() as u64,
    ));
    ev.deadline_exceeded = Instant::now() >= budget.deadline;
}

/// The `HTTP_PROXY` an `http://` request to `host:port` goes through (Go's rules: never for
/// localhost or loopback, not for `NO_PROXY` matches).
fn http_proxy<'a>(
    cfg: &'a ProbeConfig,
    host: &str,
    port: u16,
) -> Option<&'a crate::engine::proxy::ProxyUrl> {
    let p = cfg.proxy.as_ref()?;
    let url = p.http.as_ref()?;
    if crate::engine::hostsconfig::is_localhost(host) || p.no_proxy.matches(host, port).is_some() {
        return None;
    }
    Some(url)
}

/// Plain HTTP: directly, or through `HTTP_PROXY` with an absolute-form request (no CONNECT),
/// as Go's HTTP client does for `http://` URLs.
async fn plain(
    name: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    cfg: &ProbeConfig,
    budget: &Budget,
) -> EndpointEvidence {
    let Some(proxy) = http_proxy(cfg, name, port).cloned() else {
        let mut direct = cfg.clone();
        direct.proxy = None;
        let Connected {
            mut evidence,
            stream,
        } = probe::connect_tcp(name, port, Role::Mirror, &direct, budget, false).await;
        if let Some(stream) = stream {
            get(&mut evidence, stream, path, headers, budget).await;
        }
        return evidence;
    };
    // Through the proxy: the proxy resolves the name.
    let dns = probe::dns_evidence(name, cfg, budget, false).await;
    let mut ev = EndpointEvidence {
        host: name.to_string(),
        port,
        role: Role::Mirror,
        dns,
        route: crate::engine::evidence::Route {
            proxy: Some(proxy.redacted()),
            ..crate::engine::evidence::Route::direct()
        },
        proxy: None,
        tcp: vec![],
        tls: None,
        http: None,
        deadline_exceeded: false,
    };
    let started = Instant::now();
    let proxy_ip: Option<IpAddr> = match proxy
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => Some(ip),
        Err(_) => dns::resolve_system(&proxy.host, &cfg.resolv, &cfg.hosts, budget.dns_deadline())
            .await
            .addresses
            .first()
            .map(|a| a.ip),
    };
    let unreachable = |error: String| ProxyEvidence {
        url: proxy.redacted(),
        outcome: ProxyOutcome::Unreachable,
        status: None,
        error: Some(error),
        ms: started.elapsed().as_millis() as u64,
    };
    let Some(ip) = proxy_ip else {
        ev.proxy = Some(unreachable(format!(
            "proxy host {} does not resolve",
            proxy.host
        )));
        return ev;
    };
    let addr = std::net::SocketAddr::new(ip, proxy.port);
    if let Err(rule) = cfg.policy.check(ip) {
        ev.proxy = Some(unreachable(format!("proxy {addr}: {rule}")));
        return ev;
    }
    let (tcp, stream) = net::tcp_connect(addr, budget.phase(0.3)).await;
    ev.tcp.push(tcp);
    let Some(stream) = stream else {
        ev.proxy = Some(unreachable(format!(
            "cannot connect to the proxy at {addr}"
        )));
        return ev;
    };
    ev.proxy = Some(ProxyEvidence {
        url: proxy.redacted(),
        outcome: ProxyOutcome::Connected,
        status: None,
        error: None,
        ms: started.elapsed().as_millis() as u64,
    });
    let mut headers = headers.to_vec();
    if let Some(auth) = proxy.basic_auth_header() {
        headers.push(("Proxy-Authorization".into(), auth));
    }
    let target = format!("http://{}{path}", probe::host_header(name, port));
    get(&mut ev, Box::new(stream), &target, &headers, budget).await;
    ev
}

/// Puts the walk and the engine's evidence together: which host containerd would use and
/// what the probe took.
pub fn summarise(
    res: &HostsResolution,
    hosts: Vec<HostEvidence>,
    ev: &Evidence,
) -> ContainerdEvidence {
    let login = ev.endpoints.iter().find(|e| e.role == Role::LoginServer);
    let mut hosts = hosts;
    for h in &mut hosts {
        if h.upstream && h.endpoint.is_none() {
            h.works = login.is_some_and(endpoint_works);
        }
    }
    let probe_took = match login {
        None => "no login server was probed".to_string(),
        Some(l) => format!(
            "https://{}/v2/ {}",
            probe::host_header(&l.host, l.port),
            match &l.route.proxy {
                Some(p) => format!("through the proxy {p}"),
                None => "directly".to_string(),
            }
        ),
    };
    let broken = hosts
        .iter()
        .flat_map(|h| h.notes.iter().map(move |n| (h, n)))
        .find_map(|(h, n)| n.strip_prefix(BROKEN).map(|e| format!("{}: {e}", h.url)));
    ContainerdEvidence {
        would_use: if broken.is_some() {
            None
        } else {
            hosts.iter().find(|h| h.works).map(|h| h.url.clone())
        },
        broken,
        config: res
            .file
            .as_ref()
            .or(res.dir.as_ref())
            .map(|p| p.display().to_string()),
        invalid: res.invalid.as_ref().map(|e| e.to_string()),
        hosts,
        probe_took,
    }
}
