//! The I/O edge: walks the pull path of every endpoint concurrently and records evidence.
//!
//! Nothing here interprets what it sees; `crate::engine::diagnosis` does that.

pub mod dns;
pub mod egress;
pub mod net;
pub mod pull;

use crate::engine::authparse::Credentials;
use crate::engine::evidence::{
    AddrClass, DnsAnswer, DnsEvidence, DnsOutcome, EndpointEvidence, Evidence, Expect, IpFamily,
    MssRetry, ProxyEvidence, ProxyOutcome, Role, Route, SMALL_MSS, TcpEvidence, TcpOutcome,
    TlsOutcome,
};
use crate::engine::inputs::{Endpoint, ImageRef};
use crate::engine::proxy::{ProxyConfig, ProxyScheme, ProxyUrl};
use futures::future::join_all;
use net::{BoxIo, Trust};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Addresses and ports a probe may dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    /// `regcheck check` run by a person allows loopback (a registry on `localhost:5000`);
    /// in-cluster probes do not.
    pub allow_loopback: bool,
    /// The node's own addresses (in-cluster): never dialled.
    pub forbidden: Vec<IpAddr>,
}

/// The rule [`TargetPolicy::check`] names for a node's own address.
pub const NODE_ADDRESS_RULE: &str = "the node's own addresses are never probed";

/// Azure's platform address (DNS, DHCP, health probes): only DNS may be asked there.
pub const AZURE_PLATFORM_IP: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

impl TargetPolicy {
    pub fn cli() -> Self {
        Self {
            allow_loopback: true,
            forbidden: Vec::new(),
        }
    }
    pub fn in_cluster(node_addresses: Vec<IpAddr>) -> Self {
        Self {
            allow_loopback: false,
            forbidden: node_addresses,
        }
    }
    /// `Err(rule)` when `ip` must not be dialled for HTTPS (registry, data endpoint, redirect
    /// or token host, or the proxy itself). DNS servers are not dialled through this check:
    /// 168.63.129.16 and a node-local resolver remain usable for DNS.
    ///
    /// IPv6 forms that carry an IPv4 address to the same host (IPv4-mapped `::ffff:a.b.c.d`,
    /// and the NAT64 well-known prefix `64:ff9b::/96`, which a NAT64 gateway turns back into
    /// IPv4) are judged by the IPv4 address they carry.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = embedded_v4(ip);
        let class = AddrClass::of(ip);
        if let IpAddr::V4(v4) = ip
            && v4.octets()[0] == 0
        {
            return Err("unspecified, multicast and reserved addresses are never probed");
        }
        match class {
            AddrClass::LinkLocal => Err(
                "link-local addresses (including the cloud metadata service 169.254.169.254) are never probed",
            ),
            AddrClass::Special => {
                Err("unspecified, multicast and reserved addresses are never probed")
            }
            AddrClass::Loopback if !self.allow_loopback => {
                Err("loopback addresses are not probed from inside the cluster")
            }
            _ if ip == IpAddr::V4(AZURE_PLATFORM_IP) => {
                Err("the Azure platform address 168.63.129.16 is only used for DNS")
            }
            _ if self
                .forbidden
                .iter()
                .any(|f| *f == ip || embedded_v4(*f) == ip) =>
            {
                Err(NODE_ADDRESS_RULE)
            }
            _ => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 address stands for (IPv4-mapped or NAT64 `64:ff9b::/96`), else
/// the address itself.
fn embedded_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

/// Everything a check needs besides the endpoints.
#[derive(Clone)]
pub struct ProbeConfig {
    /// The system resolver's configuration: the host's resolv.conf when
    /// `--host-resolv-conf` is given (containerd's resolver), else `--resolv-conf`.
    pub resolv: dns::ResolvConf,
    /// With `--host-resolv-conf`: the pod's own resolv.conf (the kubelet's `resolvConf`) when
    /// it differs from the host's; the login server is also resolved through it.
    pub kubelet_resolv: Option<dns::ResolvConf>,
    pub hosts: HashMap<String, Vec<IpAddr>>,
    /// Extra nameservers asked individually (`--dns-server`).
    pub dns_servers: Vec<SocketAddr>,
    /// `None` means never use a proxy (`--no-proxy`).
    pub proxy: Option<ProxyConfig>,
    pub trust: Trust,
    pub policy: TargetPolicy,
    /// Deadline of the whole check.
    pub timeout: Duration,
    pub expect: Expect,
    /// Expected egress addresses (canonical CIDRs, from `--egress-ip`).
    pub egress_ips: Vec<String>,
    /// The address families a client here can use (`--ip-family`); `None`: unknown, every
    /// resolved address is dialled.
    pub ip_family: Option<IpFamily>,
    pub image: Option<ImageRef>,
    pub credentials: Option<Credentials>,
}

/// Per-phase time limits derived from the check's deadline: a black-holed step is reported as
/// a timeout well before the deadline, leaving time for the steps after it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub start: Instant,
    pub deadline: Instant,
    pub total: Duration,
}

impl Budget {
    pub fn new(total: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            deadline: start + total,
            total,
        }
    }
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
    /// A phase gets `fraction` of the whole budget, but never more than what is left.
    pub fn phase(&self, fraction: f64) -> Duration {
        self.total.mul_f64(fraction).min(self.left())
    }
    pub fn dns_deadline(&self) -> Instant {
        (Instant::now() + self.phase(0.35)).min(self.deadline)
    }
}

/// All nameservers asked individually: resolv.conf's, then `--dns-server`s.
fn individual_servers(config: &ProbeConfig) -> Vec<SocketAddr> {
    let mut servers = config.resolv.nameservers.clone();
    for s in &config.dns_servers {
        if !servers.contains(s) {
            servers.push(*s);
        }
    }
    servers
}

/// DNS evidence of one host: the system resolver plus each nameserver on its own.
pub async fn dns_evidence(
    host: &str,
    config: &ProbeConfig,
    budget: &Budget,
    individually: bool,
) -> DnsEvidence {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return DnsEvidence {
            kubelet: None,
            system: DnsAnswer {
                server: "literal".into(),
                outcome: DnsOutcome::Resolved,
                cnames: vec![],
                addresses: vec![crate::engine::evidence::Address::new(ip)],
                answered_by: None,
                error: None,
                ms: 0,
            },
            servers: vec![],
        };
    }
    let deadline = budget.dns_deadline();
    let servers = if individually {
        individual_servers(config)
    } else {
        Vec::new()
    };
    let system = dns::resolve_system(host, &config.resolv, &config.hosts, deadline);
    let each = join_all(servers.iter().map(|s| dns::resolve_at(*s, host, deadline)));
    let kubelet = async {
        match (&config.kubelet_resolv, individually) {
            (Some(k), true) => Some(dns::resolve_system(host, k, &config.hosts, deadline).await),
            _ => None,
        }
    };
    let (system, mut each, kubelet) = tokio::join!(system, each, kubelet);
    // One nameserver that is also the system's answer tells nothing new: keep the report small.
    if each.len() == 1 && config.dns_servers.is_empty() {
        each.clear();
    }
    DnsEvidence {
        system,
        servers: each,
        kubelet,
    }
}

/// The outcome of connecting to one host: evidence so far and, on success, a verified TLS stream.
pub struct Connected {
    pub evidence: EndpointEvidence,
    pub stream: Option<BoxIo>,
}

fn route_for(
    config: &ProbeConfig,
    host: &str,
    port: u16,
    addresses: &[IpAddr],
) -> (Route, Option<ProxyUrl>) {
    match &config.proxy {
        None => (Route::direct(), None),
        Some(p) => {
            let route = p.route(host, port, addresses);
            let url = if route.is_proxied() {
                p.https_proxy_for(host, port).cloned()
            } else {
                None
            };
            (route, url)
        }
    }
}

/// Resolves, routes, connects and handshakes with `host:port`, recording each step.
pub async fn connect(
    host: &str,
    port: u16,
    role: Role,
    config: &ProbeConfig,
    budget: &Budget,
    dns_individually: bool,
) -> Connected {
    let Connected {
        evidence: mut ev,
        stream,
    } = connect_tcp(host, port, role, config, budget, dns_individually).await;
    let Some(stream) = stream else {
        return Connected {
            evidence: ev,
            stream: None,
        };
    };
    let (mut tls, stream) =
        net::tls_handshake(stream, host, &config.trust, budget.phase(0.3)).await;
    // The address connect_direct chose: the first that connected. Through a proxy the far end
    // is the proxy's business.
    tls.peer = if ev.route.is_proxied() {
        None
    } else {
        ev.tcp
            .iter()
            .find(|t| t.outcome == TcpOutcome::Connected)
            .map(|t| t.address)
    };
    if tls.outcome == TlsOutcome::Timeout
        && let Some(peer) = tls.peer
    {
        tls.small_mss_retry = Some(small_mss_handshake(peer, host, config, budget).await);
    }
    ev.tls = Some(tls);
    Connected {
        evidence: ev,
        stream,
    }
}

/// The handshake with `host` once more, on a new connection to `peer` that announces
/// [`SMALL_MSS`]: the server's certificate flight then travels in small segments. Completed
/// when the flight arrived (verified, or refused for a certificate reason). The connection is
/// dropped either way: clients use the normal MSS, so the diagnosis stops at TLS.
async fn small_mss_handshake(
    peer: SocketAddr,
    host: &str,
    config: &ProbeConfig,
    budget: &Budget,
) -> MssRetry {
    let started = Instant::now();
    let (tcp, stream) = net::tcp_connect_mss(peer, budget.phase(0.15), Some(SMALL_MSS)).await;
    let Some(stream) = stream else {
        return MssRetry {
            mss: SMALL_MSS,
            completed: false,
            tls: None,
            error: Some(format!(
                "TCP {:?}{}",
                tcp.outcome,
                tcp.error.map(|e| format!(" ({e})")).unwrap_or_default()
            )),
            ms: started.elapsed().as_millis() as u64,
        };
    };
    let (tls, _) = net::tls_handshake(stream, host, &config.trust, budget.phase(0.15)).await;
    MssRetry {
        mss: SMALL_MSS,
        completed: flight_arrived(tls.outcome),
        tls: Some(tls.outcome),
        error: tls.error,
        ms: started.elapsed().as_millis() as u64,
    }
}

/// The server's whole certificate flight arrived: the handshake verified, or failed on what
/// the certificate says.
fn flight_arrived(o: TlsOutcome) -> bool {
    matches!(
        o,
        TlsOutcome::Verified
            | TlsOutcome::UntrustedIssuer
            | TlsOutcome::NameMismatch
            | TlsOutcome::Expired
    )
}

/// [`connect`] without TLS: DNS, route, TCP (or the proxy's CONNECT tunnel).
pub async fn connect_tcp(
    host: &str,
    port: u16,
    role: Role,
    config: &ProbeConfig,
    budget: &Budget,
    dns_individually: bool,
) -> Connected {
    let dns = dns_evidence(host, config, budget, dns_individually).await;
    let addresses: Vec<IpAddr> = dns.system.addresses.iter().map(|a| a.ip).collect();
    let (route, proxy_url) = route_for(config, host, port, &addresses);
    let mut ev = EndpointEvidence {
        host: host.to_string(),
        port,
        role,
        dns,
        route,
        proxy: None,
        tcp: vec![],
        tls: None,
        http: None,
        deadline_exceeded: false,
    };
    let stream: Option<BoxIo> = match proxy_url {
        Some(_) if refuse_proxied_target(&mut ev, &addresses, config) => None,
        Some(proxy) => connect_via_proxy(&mut ev, &proxy, config, budget).await,
        None => connect_direct(&mut ev, &addresses, config, budget).await,
    };
    Connected {
        evidence: ev,
        stream,
    }
}

/// A proxied host that resolves (here) to a forbidden address is not sent to the proxy either:
/// the proxy may well connect to that address on the probe's behalf. Records each forbidden
/// address as `Blocked` and returns true when the request must not be made.
fn refuse_proxied_target(
    ev: &mut EndpointEvidence,
    addresses: &[IpAddr],
    config: &ProbeConfig,
) -> bool {
    let mut refused = false;
    for ip in addresses.iter().take(MAX_DIAL) {
        if let Err(rule) = config.policy.check(*ip) {
            refused = true;
            ev.tcp.push(TcpEvidence {
                address: SocketAddr::new(*ip, ev.port),
                outcome: TcpOutcome::Blocked,
                error: Some(format!("{rule}; not sent through the proxy either")),
                ms: 0,
            });
        }
    }
    refused
}

/// Most addresses dialled per endpoint.
const MAX_DIAL: usize = 8;

async fn connect_direct(
    ev: &mut EndpointEvidence,
    addresses: &[IpAddr],
    config: &ProbeConfig,
    budget: &Budget,
) -> Option<BoxIo> {
    if addresses.is_empty() {
        return None;
    }
    // A client of one family never dials the other's addresses (the DNS answer still shows
    // them).
    let family = config.ip_family.unwrap_or(IpFamily::Dual);
    let addresses: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|ip| family.dials(*ip))
        .collect();
    let timeout = budget.phase(0.3);
    let port = ev.port;
    let attempts = addresses.iter().take(MAX_DIAL).map(|ip| {
        let addr = SocketAddr::new(*ip, port);
        async move {
            match config.policy.check(*ip) {
                Err(rule) => (
                    TcpEvidence {
                        address: addr,
                        outcome: TcpOutcome::Blocked,
                        error: Some(rule.to_string()),
                        ms: 0,
                    },
                    None,
                ),
                Ok(()) => net::tcp_connect(addr, timeout).await,
            }
        }
    });
    let results = join_all(attempts).await;
    let mut chosen: Option<BoxIo> = None;
    for (tcp, stream) in results {
        if chosen.is_none()
            && let Some(s) = stream
        {
            chosen = Some(Box::new(s));
        }
        ev.tcp.push(tcp);
    }
    chosen
}

async fn connect_via_proxy(
    ev: &mut EndpointEvidence,
    proxy: &ProxyUrl,
    config: &ProbeConfig,
    budget: &Budget,
) -> Option<BoxIo> {
    let label = proxy.redacted();
    let started = Instant::now();
    let unreachable = |error: String| ProxyEvidence {
        url: label.clone(),
        outcome: ProxyOutcome::Unreachable,
        status: None,
        error: Some(error),
        ms: started.elapsed().as_millis() as u64,
    };
    // The proxy's own address, through the system resolver.
    let proxy_ips: Vec<IpAddr> = match proxy
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => vec![ip],
        Err(_) => {
            let ans = dns::resolve_system(
                &proxy.host,
                &config.resolv,
                &config.hosts,
                budget.dns_deadline(),
            )
            .await;
            if ans.addresses.is_empty() {
                ev.proxy = Some(unreachable(format!(
                    "proxy host {} does not resolve ({:?})",
                    proxy.host, ans.outcome
                )));
                return None;
            }
            ans.addresses.iter().map(|a| a.ip).collect()
        }
    };
    let addr = SocketAddr::new(proxy_ips[0], proxy.port);
    if let Err(rule) = config.policy.check(addr.ip()) {
        ev.tcp.push(TcpEvidence {
            address: addr,
            outcome: TcpOutcome::Blocked,
            error: Some(format!("proxy {label}: {rule}")),
            ms: 0,
        });
        return None;
    }
    let (tcp, stream) = net::tcp_connect(addr, budget.phase(0.3)).await;
    let tcp_error = tcp.error.clone();
    let tcp_outcome = tcp.outcome;
    ev.tcp.push(tcp);
    let Some(stream) = stream else {
        ev.proxy = Some(unreachable(format!(
            "cannot connect to the proxy at {addr}: {:?}{}",
            tcp_outcome,
            tcp_error.map(|e| format!(" ({e})")).unwrap_or_default()
        )));
        return None;
    };
    let auth = proxy.basic_auth_header();
    let timeout = budget.phase(0.3);
    let (pev, tunnel): (ProxyEvidence, Option<BoxIo>) = match proxy.scheme {
        ProxyScheme::Http => {
            let (p, s) =
                net::proxy_connect(stream, &label, &ev.host, ev.port, auth.as_deref(), timeout)
                    .await;
            (p, s.map(|s| Box::new(s) as BoxIo))
        }
        ProxyScheme::Https => {
            let (tls, s) = net::tls_handshake(stream, &proxy.host, &config.trust, timeout).await;
            match s {
                None => (
                    ProxyEvidence {
                        url: label.clone(),
                        outcome: ProxyOutcome::Failed,
                        status: None,
                        error: Some(format!(
                            "TLS to the https proxy failed: {:?} {}",
                            tls.outcome,
                            tls.error.unwrap_or_default()
                        )),
                        ms: started.elapsed().as_millis() as u64,
                    },
                    None,
                ),
                Some(s) => {
                    let (p, s) =
                        net::proxy_connect(s, &label, &ev.host, ev.port, auth.as_deref(), timeout)
                            .await;
                    (p, s.map(|s| Box::new(s) as BoxIo))
                }
            }
        }
    };
    ev.proxy = Some(pev);
    tunnel
}

/// Probes one planned endpoint: DNS, route, TCP, TLS and (for registries) `GET /v2/`.
pub async fn probe_endpoint(
    ep: &Endpoint,
    config: &ProbeConfig,
    budget: &Budget,
) -> EndpointEvidence {
    probe_endpoint_sharing(ep, config, budget, None).await
}

/// [`probe_endpoint`], handing the `GET /v2/` outcome (or the connection failure) to the pull
/// path through `share`, so that the registry is asked once per run.
async fn probe_endpoint_sharing(
    ep: &Endpoint,
    config: &ProbeConfig,
    budget: &Budget,
    share: Option<tokio::sync::oneshot::Sender<Result<net::Response, pull::HopError>>>,
) -> EndpointEvidence {
    let Connected {
        mut evidence,
        stream,
    } = connect(&ep.host, ep.port, ep.role, config, budget, true).await;
    match stream {
        Some(stream) if ep.role != Role::DataEndpoint => {
            let started = Instant::now();
            let host_header = host_header(&ep.host, ep.port);
            let result = net::http_get(
                stream,
                &host_header,
                "/v2/",
                &[],
                budget.phase(0.3),
                net::MAX_BODY,
            )
            .await;
            if let Some(tx) = share {
                let _ = tx.send(result.clone().map_err(|failure| pull::HopError::Request {
                    host: ep.host.clone(),
                    failure,
                }));
            }
            evidence.http = Some(net::v2_evidence(
                result,
                started.elapsed().as_millis() as u64,
            ));
        }
        Some(_) => {}
        None => {
            if let Some(tx) = share {
                let _ = tx.send(Err(pull::HopError::Connect(Box::new(evidence.clone()))));
            }
        }
    }
    evidence.deadline_exceeded = Instant::now() >= budget.deadline;
    evidence
}

pub use crate::engine::inputs::host_header;

/// Runs the whole check: every endpoint concurrently, and the pull (`--image`) beside them.
pub async fn run(registry: &str, endpoints: &[Endpoint], config: &ProbeConfig) -> Evidence {
    let budget = Budget::new(config.timeout);
    let login_index = endpoints.iter().position(|e| e.role == Role::LoginServer);
    // With --image, the pull path's first request (GET /v2/ for the challenge) is the one the
    // login server's probe sends anyway: share it instead of asking twice.
    let (share_tx, share_rx) = match (&config.image, login_index) {
        (Some(_), Some(_)) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let mut share_tx = share_tx;
    let probes = join_all(endpoints.iter().enumerate().map(|(i, ep)| {
        let share = if Some(i) == login_index {
            share_tx.take()
        } else {
            None
        };
        probe_endpoint_sharing(ep, config, &budget, share)
    }));
    let pull = async {
        match (&config.image, login_index.map(|i| &endpoints[i])) {
            (Some(image), Some(login)) => {
                Some(pull::pull_sharing(login, image, config, &budget, share_rx).await)
            }
            _ => None,
        }
    };
    // Safety net: every step is bounded by the budget; this only catches a bug.
    let grace = Duration::from_millis(500);
    let joined =
        tokio::time::timeout(config.timeout + grace, async { tokio::join!(probes, pull) }).await;
    let (endpoints_ev, pull_ev) = match joined {
        Ok(x) => x,
        Err(_) => (
            endpoints
                .iter()
                .map(|ep| EndpointEvidence {
                    host: ep.host.clone(),
                    port: ep.port,
                    role: ep.role,
                    dns: DnsEvidence {
                        kubelet: None,
                        system: DnsAnswer {
                            server: "system".into(),
                            outcome: DnsOutcome::Timeout,
                            cnames: vec![],
                            addresses: vec![],
                            answered_by: None,
                            error: Some("the check's deadline passed".into()),
                            ms: config.timeout.as_millis() as u64,
                        },
                        servers: vec![],
                    },
                    route: Route::direct(),
                    proxy: None,
                    tcp: vec![],
                    tls: None,
                    http: None,
                    deadline_exceeded: true,
                })
                .collect(),
            None,
        ),
    };
    Evidence {
        registry: registry.to_string(),
        expect: config.expect,
        egress_ips: config.egress_ips.clone(),
        ip_family: config.ip_family,
        endpoints: endpoints_ev,
        pull: pull_ev,
        containerd: None,
        proxy_source: None,
        resolvers: None,
        egress: None,
        ms: budget.start.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_metadata_and_platform_addresses() {
        let cli = TargetPolicy::cli();
        assert!(cli.check("169.254.169.254".parse().unwrap()).is_err());
        assert!(cli.check("168.63.129.16".parse().unwrap()).is_err());
        assert!(cli.check("0.0.0.0".parse().unwrap()).is_err());
        assert!(cli.check("fe80::1".parse().unwrap()).is_err());
        assert!(cli.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(cli.check("10.1.2.3".parse().unwrap()).is_ok());
        // Mapped and NAT64 forms of forbidden IPv4 addresses, and 0.0.0.0/8.
        for a in [
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::a83f:8110",
            "::ffff:168.63.129.16",
            "0.1.2.3",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::",
        ] {
            assert!(cli.check(a.parse().unwrap()).is_err(), "{a}");
        }
        assert!(cli.check("64:ff9b::a01:203".parse().unwrap()).is_ok());
        let pod = TargetPolicy::in_cluster(vec!["10.0.0.4".parse().unwrap()]);
        assert!(pod.check("::ffff:10.0.0.4".parse().unwrap()).is_err());
        assert!(pod.check("::ffff:127.0.0.1".parse().unwrap()).is_err());
        assert!(pod.check("64:ff9b::7f00:1".parse().unwrap()).is_err());
        assert!(pod.check("127.0.0.1".parse().unwrap()).is_err());
        assert!(pod.check("::1".parse().unwrap()).is_err());
        assert!(pod.check("10.0.0.4".parse().unwrap()).is_err());
        assert!(pod.check("10.0.0.5".parse().unwrap()).is_ok());
    }

    #[test]
    fn budget_phases_never_exceed_what_is_left() {
        let b = Budget::new(Duration::from_secs(10));
        assert!(b.phase(0.3) <= Duration::from_secs(3));
        let past = Budget {
            start: Instant::now() - Duration::from_secs(20),
            deadline: Instant::now() - Duration::from_secs(10),
            total: Duration::from_secs(10),
        };
        assert_eq!(past.phase(0.3), Duration::ZERO);
    }

    #[test]
    fn host_headers() {
        assert_eq!(host_header("r.azurecr.io", 443), "r.azurecr.io");
        assert_eq!(host_header("localhost", 5000), "localhost:5000");
        assert_eq!(host_header("::1", 8443), "[::1]:8443");
    }
}
