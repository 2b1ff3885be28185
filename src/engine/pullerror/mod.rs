//! The container runtime's own pull errors, classified (pure: no I/O, no Kubernetes types).
//!
//! An administrator pastes what `kubectl describe pod` shows — kubelet's `Failed to pull image
//! "<ref>": rpc error: code = Unknown desc = failed to pull and unpack image ...` for
//! containerd, CRI-O's `pinging container registry ...`, or the Docker daemon's `Error response
//! from daemon: Get https://...` — and [`classify`] names the [`Reason`] of the catalogue, the
//! host the pull failed on (login server or data endpoint, from the URL in the message), and
//! the address and nameserver where the message names them. [`to_report`] turns the result
//! into the same [`Report`] that `regcheck check` prints, so `output` renders both alike.
//!
//! Go error chains read outside-in: the request (`Head "https://host/v2/..."`) comes first and
//! the innermost cause (`dial tcp ...: i/o timeout`) last. The rules below therefore look for
//! the most specific cause first and take the host from the last request URL.

use crate::engine::evidence::{AddrClass, Evidence, Expect, Role};
use crate::engine::findings::{Finding, Reason, Report, SCHEMA_VERSION};
use std::net::IpAddr;

/// Reasons that only the runtime's own messages show (the probe's evidence never does): the
/// probe does not choose a platform. (`StorageAccessDenied` comes from both: the probe's blob
/// download follows the redirect to the storage behind a data endpoint.)
pub const ONLY_FROM_RUNTIME_MESSAGES: &[Reason] = &[Reason::ImagePlatformMismatch];

/// Longest message kept, in characters (a pasted `kubectl describe` can be long).
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// What a runtime's pull message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub reason: Reason,
    /// The host the pull failed on (`host` or `host:port`), when the message names one.
    pub host: Option<String>,
    /// Login server or data endpoint (a blob redirect target), when a host is known.
    pub role: Option<Role>,
    /// The address dialled (`ip:port`), or the proxy's address for proxy reasons.
    pub address: Option<String>,
    /// The nameserver of a failed lookup (`ip:53`).
    pub nameserver: Option<String>,
    /// The client address a registry's network rules refused (`client with IP '<ip>'`).
    pub client_ip: Option<String>,
    /// The image reference, when the message names it.
    pub image: Option<String>,
    /// What the rule recognised, in a few words.
    pub detail: &'static str,
    /// The part of the input that reports the failure (or the success), unescaped.
    pub message: String,
}

/// Classifies one pasted message (a line, an event, or a whole `kubectl describe pod`).
pub fn classify(text: &str) -> Classified {
    let text = unescape(text);
    let whole = focus(&text);
    // kubelet joins the errors of its attempts: `[rpc error: ..., rpc error: ...]`. The first
    // is read (later ones are often fallbacks, such as an anonymous token request); the whole
    // text is kept as the message.
    let focus = first_attempt(&whole).to_string();
    let lower = focus.to_ascii_lowercase();
    let image = image_ref(&focus);
    let success = focus_is_success(&text, &lower);
    let (reason, detail) = if success {
        (Reason::Healthy, "the runtime reports a successful pull")
    } else {
        reason_of(&lower)
    };

    let lookup = lookup_of(&focus, &lower);
    let url = request_url(&focus, &lower);
    let dialled = dialled_host(&focus, &lower);
    let host = match reason {
        Reason::DNSNameNotFound | Reason::DNSServerUnreachable | Reason::DNSServerFailure => {
            lookup.as_ref().map(|l| l.host.clone())
        }
        _ => None,
    }
    .or_else(|| url.as_ref().map(|u| u.host.clone()))
    .or(dialled)
    .or_else(|| lookup.as_ref().map(|l| l.host.clone()));
    // Without a host in the message, the image's registry is the one that failed.
    let (host, from_image) = match host {
        Some(h) => (Some(h), false),
        None => (image.as_deref().map(registry_of), true),
    };
    let role = host.as_deref().map(|h| {
        if from_image {
            return Role::LoginServer;
        }
        let path = url
            .as_ref()
            .filter(|u| u.host == h)
            .map(|u| u.path.as_str())
            .unwrap_or("");
        role_of(h, path, &lower)
    });
    let mut reason = reason;
    let mut detail = detail;
    // A blob download fails at the data endpoint after the manifest came from the login
    // server: the login server is reachable, the data endpoint is not (as `check` concludes
    // from the same evidence).
    if role == Some(Role::DataEndpoint)
        && matches!(
            reason,
            Reason::ConnectionTimedOut
                | Reason::ConnectionRefused
                | Reason::ConnectionClosed
                | Reason::TLSResetAfterClientHello
                | Reason::TLSHandshakeTimeout
                | Reason::HeadersTimeout
        )
    {
        reason = Reason::DataEndpointBlocked;
        detail = match detail {
            d if d.contains("timed out") || d.contains("time") => {
                "the layer download from the data endpoint timed out"
            }
            _ => "the data endpoint that serves the layers cut the connection or refused it",
        };
    }
    let address = address_of(&focus, &lower);
    // A registry name that leads to loopback, link-local or unspecified addresses: a hosts
    // entry or a DNS sinkhole (an IP or `localhost` registry may live there legitimately).
    if matches!(
        reason,
        Reason::ConnectionRefused | Reason::ConnectionTimedOut | Reason::HostUnreachable
    ) && host.as_deref().is_some_and(is_dns_name)
        && address.as_deref().and_then(addr_ip).is_some_and(|ip| {
            matches!(
                AddrClass::of(ip),
                AddrClass::Loopback | AddrClass::LinkLocal | AddrClass::Special
            )
        })
    {
        reason = Reason::TargetAddressBlocked;
    }
    Classified {
        reason,
        host,
        role,
        address,
        nameserver: lookup.and_then(|l| l.nameserver),
        client_ip: client_ip(&focus, &lower),
        image,
        detail: if reason == Reason::TargetAddressBlocked {
            "the name leads to an address that must not be dialled"
        } else {
            detail
        },
        message: crate::engine::text::clip(whole.trim(), MAX_MESSAGE_CHARS),
    }
}

/// The report `regcheck check` would print for this finding (schema version 1).
pub fn to_report(c: &Classified) -> Report {
    let endpoint = c.host.clone().unwrap_or_else(|| "(unknown host)".into());
    let mut parts = vec![c.detail.to_string()];
    if let Some(a) = &c.address {
        parts.push(format!("address {a}"));
    }
    if let Some(ns) = &c.nameserver {
        parts.push(format!("nameserver {ns}"));
    }
    if let Some(ip) = &c.client_ip {
        parts.push(format!("client IP {ip} as the registry saw it"));
    }
    let message = format!(
        "{endpoint}: {} (runtime: {})",
        parts.join(", "),
        one_line(&c.message, 600)
    );
    let finding = Finding::catalogued(c.reason, endpoint.clone(), c.role, message);
    let evidence = Evidence {
        registry: c.image.as_deref().map(registry_of).unwrap_or(endpoint),
        expect: Expect::Any,
        egress_ips: Vec::new(),
        ip_family: None,
        endpoints: Vec::new(),
        pull: None,
        containerd: None,
        proxy_source: None,
        resolvers: None,
        egress: None,
        ms: 0,
    };
    let findings = vec![finding];
    Report {
        schema_version: SCHEMA_VERSION,
        verdict: crate::engine::diagnosis::verdict(&evidence, &findings),
        findings,
        context: None,
        node: None,
        evidence,
    }
}

// ---------------------------------------------------------------------------------------------
// Which part of the input to read

/// Undoes the escaping of logs and JSON (`\"`, `\u0027`), so URLs and quotes can be found.
fn unescape(text: &str) -> String {
    text.replace("\\\\\\\"", "\"")
        .replace("\\\"", "\"")
        .replace("\\u0027", "'")
        .replace("\\u003e", ">")
        .replace("\\u003c", "<")
        .replace("\\u0026", "&")
}

/// Markers of a line that reports a failed pull (lowercase).
const FAILURE_MARKERS: &[&str] = &[
    "failed to pull image",
    "rpc error:",
    "error response from daemon",
    "error pulling image",
    "error while pulling image",
    "failed to pull and unpack",
    "failed to resolve reference",
    "failed to copy:",
    "pulling image failed",
    "error pinging",
    "pinging container registry",
    "reading manifest",
    "failed to do request",
];

/// The line that reports the failure, with the lines that continue it (a message wrapped
/// when pasted); else the whole text on one line.
fn focus(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let is_failure = |l: &str| {
        let l = l.to_ascii_lowercase();
        FAILURE_MARKERS.iter().any(|m| l.contains(m))
    };
    if let Some(first) = lines.iter().position(|l| is_failure(l)) {
        let mut parts = vec![lines[first].trim()];
        for l in &lines[first + 1..] {
            let t = l.trim();
            // A new event row, a table rule or a blank line ends the message.
            let new_row = ["Normal ", "Warning ", "Type ", "----", "Events:"]
                .iter()
                .any(|p| t.starts_with(p));
            if t.is_empty() || new_row {
                break;
            }
            parts.push(t);
        }
        return parts.join(" ");
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first of the errors kubelet joined (`[rpc error: A, rpc error: B]`), else all of it.
fn first_attempt(focus: &str) -> &str {
    let lower = focus.to_ascii_lowercase();
    match lower.find("[rpc error") {
        Some(start) => match lower[start..].find(", rpc error") {
            Some(end) => &focus[..start + end],
            None => focus,
        },
        None => focus,
    }
}

/// The text reports a pull that worked, and nothing that failed.
fn focus_is_success(text: &str, focus_lower: &str) -> bool {
    let all = text.to_ascii_lowercase();
    let ok =
        all.contains("successfully pulled image") || all.contains("already present on machine");
    let failed = FAILURE_MARKERS.iter().any(|m| all.contains(m))
        || [
            "errimagepull",
            "imagepullbackoff",
            "back-off pulling",
            "error:",
        ]
        .iter()
        .any(|m| all.contains(m));
    ok && !failed && !focus_lower.is_empty()
}

// ---------------------------------------------------------------------------------------------
// The reason

/// The reason and a few words on what was recognised, most specific cause first.
fn reason_of(m: &str) -> (Reason, &'static str) {
    use Reason::*;
    let has = |s: &str| m.contains(s);
    let any = |xs: &[&str]| xs.iter().any(|s| m.contains(s));

    if any(&[
        "no match for platform in manifest",
        "no matching manifest for",
    ]) {
        return (
            ImagePlatformMismatch,
            "the image has no manifest for the node's platform",
        );
    }

    // Proxies: Go wraps a failed dial to the proxy as `proxyconnect tcp: ...`, and turns a
    // non-200 answer to CONNECT into the bare status text.
    if let Some(i) = m.find("proxyconnect") {
        let rest = &m[i..];
        let dial_failed = (rest.contains("dial ") || rest.contains("lookup "))
            && [
                "connection refused",
                "i/o timeout",
                "no route to host",
                "host is unreachable",
                "network is unreachable",
                "no such host",
                "server misbehaving",
                "connection timed out",
            ]
            .iter()
            .any(|s| rest.contains(s));
        return if dial_failed {
            (ProxyUnreachable, "the HTTP proxy cannot be reached")
        } else if rest.contains("eof") {
            (
                ProxyConnectEOF,
                "the HTTP proxy closed the connection without answering CONNECT",
            )
        } else {
            (
                ProxyConnectEOF,
                "the HTTP proxy did not answer CONNECT properly (wrong scheme or port?)",
            )
        };
    }
    if has("error connecting to proxy") {
        return (ProxyUnreachable, "the HTTP proxy cannot be reached");
    }
    if any(&["proxy authentication required", "407 proxy"]) {
        return (ProxyAuthRequired, "the HTTP proxy requires authentication");
    }
    if let Some(text) = bare_status_after_url(m) {
        match text {
            "forbidden" => return (ProxyDenied, "the HTTP proxy refused CONNECT (Forbidden)"),
            "bad gateway" | "service unavailable" | "gateway timeout" => {
                return (
                    ProxyUpstreamFailed,
                    "the HTTP proxy answered CONNECT with a 5xx: it cannot reach the registry",
                );
            }
            _ => {}
        }
    }

    // Azure Storage and the registry's network rules.
    if any(&[
        "authorizationfailure",
        "this request is not authorized to perform this operation",
    ]) || (has(".blob.core.windows.net") && has("403"))
    {
        return (
            StorageAccessDenied,
            "Azure Storage refused the layer download (403 AuthorizationFailure)",
        );
    }
    if has("client with ip") && has("not allowed access") {
        // A private address: a VNet service endpoint or private path the rules do not allow.
        if crate::engine::authparse::denied_client_ip(&m.replace("\\u0027", "'")).is_some_and(
            |ip| {
                crate::engine::denial::classify(ip, &[])
                    == crate::engine::denial::Denial::PrivatePath
            },
        ) {
            return (
                RegistryDeniedPrivateClientIP,
                "the registry's network rules deny a private client IP (403 DENIED): a VNet service endpoint or private path they do not allow",
            );
        }
        return (
            RegistryDeniedClientIP,
            "the registry's network rules deny the client IP (403 DENIED)",
        );
    }

    // DNS: `lookup <host> on <ns>: <cause>` (pure Go) or `lookup <host>: <cause>`.
    if let Some(i) = m.find("lookup ") {
        let rest = &m[i..];
        if rest.contains("no such host") {
            return (DNSNameNotFound, "the name does not resolve (no such host)");
        }
        if rest.contains("server misbehaving") || rest.contains("temporary failure in name") {
            return (
                DNSServerFailure,
                "the nameserver answered with an error (server misbehaving)",
            );
        }
        if rest.contains("read udp")
            || rest.contains("i/o timeout")
            || rest.contains("no route to host")
            || rest.contains("connection refused")
        {
            return (DNSServerUnreachable, "the nameserver did not answer");
        }
    }

    // TLS.
    if any(&[
        "certificate signed by unknown authority",
        "certificate is not trusted",
    ]) {
        return (
            TLSInterception,
            "the certificate is signed by an unknown authority (TLS inspection or a private CA)",
        );
    }
    if has("certificate has expired") || has("not yet valid") {
        return (
            TLSCertificateInvalid,
            "the certificate has expired or is not yet valid",
        );
    }
    if any(&[
        "certificate is valid for",
        "certificate is not valid for any names",
        "doesn't contain any ip sans",
        "x509: cannot validate certificate",
    ]) {
        return (
            TLSCertificateInvalid,
            "the certificate is not valid for this host name",
        );
    }
    if has("tls handshake timeout") {
        return (TLSHandshakeTimeout, "the TLS handshake timed out");
    }
    if has("server gave http response to https client") {
        return (
            TLSCertificateInvalid,
            "the server speaks plain HTTP where HTTPS was expected",
        );
    }
    if any(&[
        "tls: handshake failure",
        "remote error: tls",
        "tls: first record does not look like",
        "x509:",
    ]) {
        return (TLSCertificateInvalid, "the TLS handshake failed");
    }

    // TCP.
    if has("connection reset by peer") {
        return if any(&["error writing blob", "unexpected eof"]) {
            (
                ConnectionClosed,
                "the connection was reset in the middle of a download",
            )
        } else {
            (
                TLSResetAfterClientHello,
                "the connection was reset right after it was opened (SNI/FQDN filtering during TLS)",
            )
        };
    }
    if any(&[
        "client.timeout exceeded while awaiting headers",
        "timeout awaiting response headers",
    ]) {
        return (
            HeadersTimeout,
            "no response headers arrived in time (Client.Timeout exceeded while awaiting headers)",
        );
    }
    if has("dial tcp") || has("dialing ") || has("connecting to ") {
        if any(&[
            "i/o timeout",
            "connection timed out",
            "operation timed out",
            "context deadline exceeded",
        ]) {
            return (ConnectionTimedOut, "the TCP connection timed out");
        }
        if has("connection refused") {
            return (ConnectionRefused, "the TCP connection was refused");
        }
        if any(&[
            "no route to host",
            "host is unreachable",
            "network is unreachable",
        ]) {
            return (HostUnreachable, "there is no route to the address");
        }
    }

    // The registry's answer.
    if any(&["toomanyrequests", "too many requests"]) || status_code(m) == Some(429) {
        return (Throttled, "the registry throttles requests (429)");
    }
    if has("requested access to the resource is denied") {
        return (
            AuthorizationFailed,
            "the registry denied access to the repository (denied: requested access to the resource is denied)",
        );
    }
    if any(&[
        "no basic auth credentials",
        "authentication required",
        "unauthorized",
    ]) || status_code(m) == Some(401)
    {
        return (
            AuthenticationFailed,
            "the registry wants credentials or rejected them (401 Unauthorized)",
        );
    }
    if status_code(m) == Some(403) || has("forbidden") {
        return (RegistryForbidden, "the registry answered 403 Forbidden");
    }
    if any(&["manifest unknown", "blob unknown", "name unknown"])
        || has(": not found")
        || m.trim_end().ends_with(" not found")
        || status_code(m) == Some(404)
    {
        return (
            ImageNotFound,
            "the repository or tag does not exist (manifest unknown / not found)",
        );
    }
    if let Some(code) = status_code(m).filter(|c| (500..600).contains(c)) {
        return (
            RegistryServerError,
            match code {
                500 => "the registry answered 500 Internal Server Error",
                502 => "the registry answered 502 Bad Gateway",
                503 => "the registry answered 503 Service Unavailable",
                504 => "the registry answered 504 Gateway Timeout",
                _ => "the registry answered with a server error (5xx)",
            },
        );
    }
    if has("stopped after 10 redirects") {
        return (TooManyRedirects, "the requests are redirected in a loop");
    }
    if has("eof") && (m.trim_end().ends_with("eof") || has(": eof") || has("unexpected eof")) {
        return (
            ConnectionClosed,
            "the connection was closed before the answer (EOF)",
        );
    }
    (
        PullFailed,
        "the runtime reports a pull failure this tool does not recognise",
    )
}

/// The first HTTP status (400-599) written as `<code> <Reason Phrase>` or `status: <code>`.
fn status_code(m: &str) -> Option<u16> {
    let b = m.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if !(b[i].is_ascii_digit() && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_digit()) {
            continue;
        }
        if i > 0 && !matches!(b[i - 1], b' ' | b'[' | b'(') {
            continue;
        }
        let after = &m[i + 3..];
        let before = &m[..i];
        let phrase_follows = after.starts_with(' ')
            && after[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
        let status_before = before.ends_with("status: ")
            || before.ends_with("status code: ")
            || before.ends_with("status ");
        let ends = after.is_empty() || after.starts_with([',', ')', '.', ';', '\n']);
        if phrase_follows || (status_before && (ends || after.starts_with(' '))) {
            let code: u16 = m[i..i + 3].parse().ok()?;
            if (400..600).contains(&code) {
                return Some(code);
            }
        }
    }
    None
}

/// Go's error for a non-200 answer to CONNECT is the bare status text right after the request
/// (`Get "https://host/v2/": Forbidden`); a registry's own status always comes with its code.
fn bare_status_after_url(m: &str) -> Option<&str> {
    for text in [
        "forbidden",
        "bad gateway",
        "service unavailable",
        "gateway timeout",
    ] {
        for (i, _) in m.match_indices(text) {
            let before = m[..i].trim_end_matches(' ');
            let after = &m[i + text.len()..];
            let at_end = after.trim().is_empty() || after.starts_with(['.', ',', ';', '\n']);
            if before.ends_with("\":") && at_end {
                return Some(text);
            }
            // Docker's old form without quotes: `Get https://host/v2/: Forbidden`.
            if before.ends_with(':')
                && at_end
                && before
                    .rsplit(' ')
                    .next()
                    .is_some_and(|w| w.starts_with("https://") || w.starts_with("http://"))
            {
                return Some(text);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Hosts and addresses

struct Lookup {
    host: String,
    nameserver: Option<String>,
}

/// `lookup <host> on <ns>: ...` or `lookup <host>: ...` (the last one: the innermost cause).
fn lookup_of(orig: &str, lower: &str) -> Option<Lookup> {
    let i = lower.rfind("lookup ")? + "lookup ".len();
    let rest = &orig[i..];
    let host = token(rest, &[' ', ':', '"', ',']);
    if host.is_empty() {
        return None;
    }
    let after = &rest[host.len()..];
    let nameserver = after.strip_prefix(" on ").map(|ns| {
        let end = ns.find(": ").unwrap_or(ns.len());
        ns[..end].trim_end_matches(':').to_string()
    });
    Some(Lookup {
        host: host.trim_end_matches('.').to_ascii_lowercase(),
        nameserver: nameserver.filter(|n| !n.is_empty()),
    })
}

struct Url {
    host: String,
    path: String,
}

/// The URL of the failed request: the last one a request verb or status names (not the
/// documentation links that error texts carry, like `Refer https://aka.ms/acr/firewall`).
fn request_url(orig: &str, lower: &str) -> Option<Url> {
    const DOC_HOSTS: &[&str] = &[
        "aka.ms",
        "docs.docker.com",
        "www.docker.com",
        "docker.com",
        "learn.microsoft.com",
        "docs.microsoft.com",
        "go.microsoft.com",
    ];
    let mut requested = None;
    let mut other = None;
    for (i, _) in lower.match_indices("http") {
        let rest = &orig[i..];
        let Some(after_scheme) = rest
            .strip_prefix("https://")
            .or_else(|| rest.strip_prefix("http://"))
        else {
            continue;
        };
        let url = token(after_scheme, &[' ', '"', '\'', '\\', ',', '\n']);
        let url = url.trim_end_matches(':');
        let (host, path) = match url.find(['/', '?']) {
            Some(p) => (&url[..p], &url[p..]),
            None => (url, ""),
        };
        let host = host.trim_end_matches(":443").to_ascii_lowercase();
        if host.is_empty() || DOC_HOSTS.contains(&host.as_str()) {
            continue;
        }
        let before = lower[..i].trim_end_matches('"');
        let verb = [
            "get ",
            "head ",
            "post ",
            "put ",
            "request to ",
            "status code ",
        ]
        .iter()
        .any(|v| before.ends_with(v));
        let u = Url {
            host,
            path: path.split('?').next().unwrap_or("").to_string(),
        };
        if verb {
            requested = Some(u);
        } else {
            other = Some(u);
        }
    }
    requested.or(other)
}

/// Docker's newer `dialing <host>:443 ...` / `connecting to <host>:443`.
fn dialled_host(orig: &str, lower: &str) -> Option<String> {
    for marker in ["dialing ", "connecting to "] {
        if let Some(i) = lower.rfind(marker) {
            let t = token(&orig[i + marker.len()..], &[' ', ',', '"']);
            let t = t.trim_end_matches(':').trim_end_matches(":443");
            if !t.is_empty() && t.contains('.') {
                return Some(t.to_ascii_lowercase());
            }
        }
    }
    None
}

/// The address dialled: `dial tcp <addr>: ...` or the remote end of `read tcp <a>-><b>: ...`.
fn address_of(orig: &str, lower: &str) -> Option<String> {
    let mut found = None;
    for (i, _) in lower.match_indices("dial tcp ") {
        let rest = &orig[i + "dial tcp ".len()..];
        if rest.starts_with("lookup") {
            continue;
        }
        let end = rest.find(": ").unwrap_or(rest.len());
        let addr = rest[..end].trim();
        if !addr.is_empty() && !addr.contains(' ') {
            found = Some(addr.to_string());
        }
    }
    if found.is_none()
        && let Some(i) = lower.rfind("read tcp ")
    {
        let rest = &orig[i + "read tcp ".len()..];
        let end = rest.find(": ").unwrap_or(rest.len());
        if let Some((_, remote)) = rest[..end].split_once("->") {
            found = Some(remote.trim().to_string());
        }
    }
    found
}

/// `client with IP '<ip>'` of Azure's network-rule denial.
fn client_ip(orig: &str, lower: &str) -> Option<String> {
    let i = lower.find("client with ip")? + "client with ip".len();
    let rest = orig[i..].trim_start().trim_start_matches(['\'', '"']);
    let ip = token(rest, &['\'', '"', ' ']);
    ip.parse::<IpAddr>().ok().map(|_| ip.to_string())
}

/// The image reference of `Failed to pull image "<ref>"` / `failed to pull and unpack image`.
fn image_ref(orig: &str) -> Option<String> {
    let lower = orig.to_ascii_lowercase();
    for marker in [
        "failed to pull and unpack image \"",
        "failed to pull image \"",
        "pulling image \"",
        "failed to resolve reference \"",
        "pulled image \"",
        "back-off pulling image \"",
    ] {
        if let Some(i) = lower.find(marker) {
            let r = token(&orig[i + marker.len()..], &['"']);
            if !r.is_empty() && !r.contains(' ') {
                return Some(r.to_string());
            }
        }
    }
    None
}

/// The registry of an image reference (`docker.io` for a name without a registry part).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            first.to_ascii_lowercase()
        }
        _ => "docker.io".into(),
    }
}

/// Data endpoint: ACR's `<reg>.<region>.data.azurecr.io`, a storage account, MCR's data
/// hosts, or the target of a blob redirect (a blob path outside the registry API `/v2/`).
fn role_of(host: &str, path: &str, lower: &str) -> Role {
    let h = host.split(':').next().unwrap_or(host);
    let blob_download = lower.contains("httpreadseeker")
        || lower.contains("httpreaderseeker")
        || lower.contains("error pulling image configuration");
    let data_host = h.contains(".data.azurecr.")
        || h.ends_with(".blob.core.windows.net")
        || h.ends_with(".data.mcr.microsoft.com");
    // A blob download whose URL is not the registry API: the target of the 307.
    let redirect_target = if path.is_empty() {
        blob_download
    } else {
        !["/v2/", "/v1/", "/token", "/oauth2/"]
            .iter()
            .any(|p| path.starts_with(p))
            && (path.contains("/blobs/") || blob_download)
    };
    if data_host || redirect_target {
        Role::DataEndpoint
    } else {
        Role::LoginServer
    }
}

fn is_dns_name(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().is_err() && h != "localhost" && h.contains('.')
}

fn addr_ip(addr: &str) -> Option<IpAddr> {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    addr.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Small text helpers

/// The text up to the first of `stops`.
fn token<'a>(s: &'a str, stops: &[char]) -> &'a str {
    let end = s.find(|c| stops.contains(&c)).unwrap_or(s.len());
    &s[..end]
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::engine::text::clip(flat.trim(), max)
}

#[cfg(test)]
mod tests;
