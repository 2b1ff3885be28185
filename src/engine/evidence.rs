//! Evidence: what a probe saw on the network, phase by phase, with no interpretation.
//!
//! This is the contract between the I/O edge (`crate::engine::probe`) and the pure diagnosis core
//! (`crate::engine::diagnosis`). Every type here serialises to the versioned JSON report
//! (`schemaVersion` 1); optional and empty fields are left out so that the compact form of a
//! typical report fits into a container termination message (4096 bytes).

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// What part an endpoint plays in a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Role {
    /// The registry's login server (`/v2/`, tokens, manifests).
    LoginServer,
    /// A data endpoint that layer blobs are redirected to.
    DataEndpoint,
    /// Another host the user asked about (e.g. `mcr.microsoft.com`), probed like a registry.
    Extra,
    /// A registry mirror from containerd's `hosts.toml`, tried before the upstream.
    Mirror,
    /// A host the cluster must reach besides its registry (an egress profile's rule or
    /// `--egress-host`): DNS, TCP, TLS and one `GET /`, no registry semantics.
    Egress,
}

/// Kind of address, from the point of view of private endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddrClass {
    /// RFC 1918, 100.64.0.0/10 (shared address space), fc00::/7.
    Private,
    Public,
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Unspecified, multicast, broadcast, reserved.
    Special,
}

impl AddrClass {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                if v4.is_loopback() {
                    Self::Loopback
                } else if v4.is_link_local() {
                    Self::LinkLocal
                } else if v4.is_unspecified()
                    || v4.is_multicast()
                    || v4.is_broadcast()
                    || o[0] >= 240
                {
                    Self::Special
                } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                    Self::Private
                } else {
                    Self::Public
                }
            }
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::of(IpAddr::V4(v4));
                }
                let s = v6.segments();
                if v6.is_loopback() {
                    Self::Loopback
                } else if v6.is_unspecified() || v6.is_multicast() {
                    Self::Special
                } else if (s[0] & 0xffc0) == 0xfe80 {
                    Self::LinkLocal
                } else if (s[0] & 0xfe00) == 0xfc00 {
                    Self::Private
                } else {
                    Self::Public
                }
            }
        }
    }
}

/// One resolved address and its class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub ip: IpAddr,
    pub class: AddrClass,
}

impl Address {
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            class: AddrClass::of(ip),
        }
    }
}

/// How one DNS lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsOutcome {
    /// At least one A/AAAA address.
    Resolved,
    /// NXDOMAIN: the name does not exist (on this server's view).
    NameNotFound,
    /// NOERROR but no A/AAAA record (possibly a CNAME chain ending nowhere).
    NoAddresses,
    /// SERVFAIL.
    ServerFailure,
    /// REFUSED.
    Refused,
    /// No answer before the deadline (UDP and TCP dropped, or a server that never replies).
    Timeout,
    /// The server could not be reached at all (ICMP unreachable, connection refused, no route).
    Unreachable,
    /// A CNAME chain that loops or is longer than we follow.
    CnameLoop,
    /// Any other failure (malformed answer, FORMERR, NOTIMP, local error); see `error`.
    Error,
}

/// The answer of one resolver (the system resolver, or one nameserver asked directly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsAnswer {
    /// `system` for the system resolver as a client sees it, `hosts` when the hosts file answered,
    /// otherwise the nameserver's `ip:port`.
    pub server: String,
    pub outcome: DnsOutcome,
    /// CNAME targets in order, without trailing dots: `a.azurecr.io -> [a.privatelink.azurecr.io, ...]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// For the system resolver: the nameserver whose answer was used (first that replied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

impl DnsAnswer {
    /// True when a CNAME in the chain is a `*.privatelink.*` name.
    pub fn has_privatelink(&self) -> bool {
        self.cnames.iter().any(|c| is_privatelink(c))
    }
    pub fn has_private_address(&self) -> bool {
        self.addresses.iter().any(|a| a.class == AddrClass::Private)
    }
    pub fn has_public_address(&self) -> bool {
        self.addresses.iter().any(|a| a.class == AddrClass::Public)
    }
}

/// `x.privatelink.azurecr.io`, `x.privatelink.blob.core.windows.net`, ...
pub fn is_privatelink(name: &str) -> bool {
    name.to_ascii_lowercase()
        .trim_end_matches('.')
        .split('.')
        .any(|label| label == "privatelink")
}

/// DNS evidence of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsEvidence {
    /// What the system resolver (hosts file, then resolv.conf nameservers in order) answered:
    /// this is what a client on this machine uses.
    pub system: DnsAnswer,
    /// Each nameserver asked on its own (from resolv.conf and `--dns-server`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<DnsAnswer>,
    /// With the host's resolv.conf as the system resolver (`--host-resolv-conf`, containerd's
    /// resolver): what the pod's own resolv.conf (the kubelet's `resolvConf`, which pods with
    /// `dnsPolicy: Default` get) answered, when it names other nameservers or search domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<DnsAnswer>,
}

/// How a TCP connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcpOutcome {
    Connected,
    /// No answer at all (packets dropped): the classic firewall/NSG symptom.
    Timeout,
    /// RST: nothing listens or a firewall rejects with reset.
    Refused,
    /// ICMP unreachable / no route to host / network unreachable.
    Unreachable,
    /// The address is forbidden by the target policy and was not dialled.
    Blocked,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpEvidence {
    /// The address dialled (the proxy's address when going through a proxy).
    pub address: SocketAddr,
    pub outcome: TcpOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// How the TLS handshake with the endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsOutcome {
    Verified,
    /// Connection reset or closed right after our ClientHello, before any server bytes:
    /// the signature of an SNI/FQDN-filtering firewall.
    ResetAfterClientHello,
    /// No handshake completed before the deadline.
    Timeout,
    /// The certificate chain does not lead to a trusted root: TLS inspection, or a private CA.
    UntrustedIssuer,
    /// The certificate is not valid for the host name.
    NameMismatch,
    /// Expired or not yet valid.
    Expired,
    /// Any other handshake failure (protocol error, alert from the server, not TLS at all).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsEvidence {
    pub outcome: TlsOutcome,
    /// The address the handshake went over (absent through a proxy: the tunnel's far end is
    /// the proxy's business). Its family is the family TLS and HTTP used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// A handshake that timed out is tried once more on a new connection that announces a
    /// small MSS (`TCP_MAXSEG`): if that one completes, full-size packets from the server are
    /// lost on the way (a path-MTU black hole), not the handshake filtered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_mss_retry: Option<MssRetry>,
    /// Subject of the end-entity certificate presented (also when verification failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Issuer of the end-entity certificate presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// The MSS a retry announces: IPv4's minimum datagram (576) minus 40 bytes of headers, so
/// every segment the server sends fits through any link that forwards IPv4 at all.
pub const SMALL_MSS: u32 = 536;

/// One retry with a small MSS (after a stalled handshake or blob download).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MssRetry {
    /// The MSS the retry's connection announced.
    pub mss: u32,
    /// The retry completed (the handshake verified, or the blob arrived in full).
    pub completed: bool,
    /// How the retry's handshake ended (`Timeout` again: the handshake is held, not lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// The address families a client on this machine can use (`--ip-family`; the operator derives
/// it from the node's `status.addresses`). Unknown when not given: then every resolved address
/// is dialled and no family-specific reason is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpFamily {
    #[serde(rename = "IPv4")]
    Ipv4,
    #[serde(rename = "IPv6")]
    Ipv6,
    #[serde(rename = "Dual")]
    Dual,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Dual => "dual",
        }
    }
    /// Whether a client of this family dials `ip`.
    pub fn dials(self, ip: IpAddr) -> bool {
        match self {
            Self::Dual => true,
            Self::Ipv4 => ip.is_ipv4() || ip_family_of(ip) == "IPv4",
            Self::Ipv6 => ip.is_ipv6() && ip_family_of(ip) == "IPv6",
        }
    }
    /// The family of a set of a node's own addresses: both families is `Dual`; none is unknown.
    pub fn of_addresses(ips: &[IpAddr]) -> Option<Self> {
        let v4 = ips.iter().any(|ip| ip_family_of(*ip) == "IPv4");
        let v6 = ips.iter().any(|ip| ip_family_of(*ip) == "IPv6");
        match (v4, v6) {
            (true, true) => Some(Self::Dual),
            (true, false) => Some(Self::Ipv4),
            (false, true) => Some(Self::Ipv6),
            (false, false) => None,
        }
    }
}

impl std::str::FromStr for IpFamily {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ipv4" => Ok(Self::Ipv4),
            "ipv6" => Ok(Self::Ipv6),
            "dual" => Ok(Self::Dual),
            _ => Err(format!("'{s}' is not one of ipv4, ipv6, dual")),
        }
    }
}

/// `IPv4` or `IPv6`; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is IPv4 on the wire.
pub fn ip_family_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// How the `GET /v2/` exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpOutcome {
    /// A response with a status line and headers.
    Response,
    /// The request was sent but no response headers arrived before the deadline.
    HeadersTimeout,
    /// The server closed or reset the connection before sending headers.
    Closed,
    /// Something that is not HTTP/1.x (or headers too large).
    Malformed,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// `Bearer` or `Basic` (as sent).
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// The first entry of a registry error body `{"errors":[{"code":..,"message":..}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryError {
    pub code: String,
    /// Truncated to a few hundred characters.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpEvidence {
    pub outcome: HttpOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The challenge, when a `WWW-Authenticate` header was present and parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
    /// A `WWW-Authenticate` header was present but could not be parsed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub challenge_malformed: bool,
    /// The `Docker-Distribution-API-Version` header was present.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub distribution_api: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_error: Option<RegistryError>,
    /// From Azure's network-rule denial: `client with IP '<ip>' is not allowed access`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// `Content-Type` of the response, when not JSON (helps say "this is a web page, not a registry").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// How the proxy handled our `CONNECT host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyOutcome {
    /// 2xx: the tunnel is open.
    Connected,
    /// 403 (or another 4xx except 407): the proxy's policy refuses this destination.
    Denied,
    /// 407: the proxy wants credentials (or rejected the ones given).
    AuthRequired,
    /// The proxy closed the connection without answering the CONNECT (`proxyconnect tcp: EOF`).
    Eof,
    /// The proxy itself could not be reached (DNS, TCP refused/timeout/unreachable).
    Unreachable,
    /// No answer to the CONNECT before the deadline.
    Timeout,
    /// 5xx: the proxy could not reach the destination (502/503/504).
    UpstreamFailed,
    /// Anything else (garbage, a TLS proxy spoken to in plain text, ...).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyEvidence {
    /// The proxy URL with any credentials removed.
    pub url: String,
    pub outcome: ProxyOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// Which path a connection to an endpoint takes, decided like Go's `net/http` (containerd,
/// kubelet) decides from `HTTPS_PROXY`/`NO_PROXY`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// `None` for a direct connection; otherwise the proxy URL without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The `NO_PROXY` entry that exempted the host, when direct because of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy_match: Option<String>,
    /// `NO_PROXY` CIDR entries that contain one of the host's resolved addresses but do not
    /// apply, because CIDR entries only match hosts written as IP literals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidr_not_applied: Vec<String>,
}

impl Route {
    pub fn direct() -> Self {
        Self {
            proxy: None,
            no_proxy_match: None,
            cidr_not_applied: Vec::new(),
        }
    }
    pub fn is_proxied(&self) -> bool {
        self.proxy.is_some()
    }
}

/// Everything seen about one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointEvidence {
    pub host: String,
    pub port: u16,
    pub role: Role,
    pub dns: DnsEvidence,
    pub route: Route,
    /// CONNECT through the proxy, when the route uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyEvidence>,
    /// TCP connects: to every resolved address when direct (capped), or to the proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpEvidence>,
    /// TLS over the first connection that worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsEvidence>,
    /// `GET /v2/` over that connection (not done for data endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpEvidence>,
    /// The overall deadline passed before this endpoint's probe finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deadline_exceeded: bool,
}

impl EndpointEvidence {
    /// True when TCP (direct or via the proxy tunnel) reached the endpoint.
    pub fn connected(&self) -> bool {
        match &self.proxy {
            Some(p) => p.outcome == ProxyOutcome::Connected,
            None => self.tcp.iter().any(|t| t.outcome == TcpOutcome::Connected),
        }
    }
}

/// How one step of the image pull (`--image`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullOutcome {
    Ok,
    /// 401 with credentials (or none where they are required).
    Unauthorized,
    /// 403 / `DENIED` / insufficient scope.
    Forbidden,
    /// 404 / `MANIFEST_UNKNOWN` / `NAME_UNKNOWN` / `BLOB_UNKNOWN`.
    NotFound,
    /// 429.
    Throttled,
    /// 5xx.
    ServerError,
    /// The host of this step could not be reached (see `hostEvidence`).
    Unreachable,
    /// Redirects went on too long.
    TooManyRedirects,
    /// Unexpected answer (bad JSON, digest mismatch, unsupported manifest).
    Invalid,
    /// Not attempted because an earlier step failed.
    Skipped,
}

/// One HTTP step of the pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullStep {
    pub outcome: PullOutcome,
    /// Host that answered (or that could not be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path (without query) of the request that ended the step, where it tells more than the
    /// step's name: `/v2/` or the token endpoint (`/oauth2/token`, `/oauth2/exchange`) for the
    /// token step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_error: Option<RegistryError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ms: u64,
}

/// The data path of `--image`: token, manifest, smallest blob (following the redirect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullEvidence {
    /// `repo:tag` or `repo@digest` as given.
    pub image: String,
    pub credentials: bool,
    pub token: PullStep,
    pub manifest: PullStep,
    pub blob: PullStep,
    /// Digest and size of the blob fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_size: Option<u64>,
    /// Hosts the blob request was redirected to, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// Evidence of the host that failed during the pull (e.g. the data endpoint a 307 pointed
    /// at), when it is not one of the probed endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_host: Option<Box<EndpointEvidence>>,
}

/// All evidence of one check run from one vantage point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub registry: String,
    /// `Any`, `Public` or `Private`.
    pub expect: Expect,
    /// The egress addresses (IP or CIDR, canonical form) the cluster's traffic is expected to
    /// leave through (`spec.expect.egressIPs`, `--egress-ip`): a network-rule denial naming
    /// another address means the traffic leaves through the wrong NAT, firewall or node pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_ips: Vec<String>,
    /// The address families a client here can use (`--ip-family`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family: Option<IpFamily>,
    pub endpoints: Vec<EndpointEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullEvidence>,
    /// The hosts containerd would try (`--containerd-config-dir`), and what each did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerd: Option<ContainerdEvidence>,
    /// Where the proxy settings of the probe came from: `containerd drop-in <files>`,
    /// `--proxy`, `environment`, `none (--no-proxy)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_source: Option<String>,
    /// The host's resolver (containerd's) and the pod's (the kubelet's), with
    /// `--host-resolv-conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolvers: Option<ResolverEvidence>,
    /// The egress hosts (`--egress-profile`, `--egress-host`, `spec.egress`), and what each did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressEvidence>,
    pub ms: u64,
}

/// One resolv.conf as the probe read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvSource {
    pub file: String,
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

/// containerd resolves with the host's `/etc/resolv.conf`; a `hostNetwork` pod with
/// `dnsPolicy: Default` gets the kubelet's `resolvConf` (often another file: the
/// systemd-resolved stub 127.0.0.53 on the host, the upstream servers for the kubelet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolverEvidence {
    /// The host's resolv.conf: what containerd uses, and the probe's system resolver.
    pub host: ResolvSource,
    /// The pod's resolv.conf (the kubelet's `resolvConf`).
    pub kubelet: ResolvSource,
    /// They name other nameservers, search domains or options.
    pub differ: bool,
    /// Which of the two containerd resolves with.
    pub containerd_uses: String,
}

/// Why an egress host is checked: the profile rule (or the plain host list) that names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// The profile (`AKS`), or the flag / spec field of a plain host (`--egress-host`).
    pub source: String,
    /// The FQDN as the documentation writes it (`*.data.mcr.microsoft.com`), or the host.
    pub fqdn: String,
    /// What the cluster uses the host for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The documentation the rule comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// How a wildcard is probed, or another remark of the profile data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A profile rule that was not probed, and why (a parameter not given, a wildcard without a
/// known host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressNotProbed {
    pub rule: EgressRule,
    pub port: u16,
    pub why: String,
}

/// One egress host probed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressHost {
    pub host: String,
    pub port: u16,
    pub rule: EgressRule,
    /// DNS, route, TCP, TLS and `GET /` (in `http`). Left out of the compact report when the
    /// host works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointEvidence>,
}

/// The egress part of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressEvidence {
    /// Version of the profile data (`crate::engine::egress::profiles::DATA_VERSION`).
    pub data_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<EgressHost>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_probed: Vec<EgressNotProbed>,
}

/// What kind of addresses the registry should resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Expect {
    #[default]
    Any,
    Public,
    Private,
}

impl std::str::FromStr for Expect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "any" => Ok(Self::Any),
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            _ => Err(format!("expect: '{s}' is not one of any, public, private")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        let cases = [
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::Private),
            ("100.128.0.1", AddrClass::Public),
            ("20.1.2.3", AddrClass::Public),
            ("203.0.113.5", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("0.0.0.0", AddrClass::Special),
            ("224.0.0.1", AddrClass::Special),
            ("255.255.255.255", AddrClass::Special),
            ("::1", AddrClass::Loopback),
            ("fd00::1", AddrClass::Private),
            ("fe80::1", AddrClass::LinkLocal),
            ("2001:db8::1", AddrClass::Public),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("ff02::1", AddrClass::Special),
        ];
        for (ip, class) in cases {
            assert_eq!(AddrClass::of(ip.parse().unwrap()), class, "{ip}");
        }
    }

    #[test]
    fn privatelink_names() {
        assert!(is_privatelink("reg.privatelink.azurecr.io"));
        assert!(is_privatelink("REG.PrivateLink.azurecr.io."));
        assert!(!is_privatelink("privatelinkx.azurecr.io"));
        assert!(!is_privatelink("reg.azurecr.io"));
    }
}

/// What containerd would do for the registry, and what each host did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerdEvidence {
    /// The `hosts.toml` (or host directory) used; absent: no host directory, defaults only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Why containerd ignores the `hosts.toml` (it then pulls from the upstream only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// A `ca` or `client` file containerd cannot load: it then fails every pull from the
    /// registry (`ConfigureHosts` returns the error; no host is tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// The hosts a pull tries, in order.
    pub hosts: Vec<HostEvidence>,
    /// The host containerd would pull from: the first one that works. Absent: none works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_use: Option<String>,
    /// What the probe's own engine reached the registry with (login server, route).
    pub probe_took: String,
}

/// One host containerd tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEvidence {
    pub url: String,
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upstream: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_verify: bool,
    /// Spoken to in plain HTTP (an `http://` host, or containerd's fallback from HTTPS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
    /// What the probe could not do as containerd does, or what containerd would do instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The probe of this host; absent for the upstream when it is the probed login server
    /// (see `endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointEvidence>,
    pub works: bool,
}
