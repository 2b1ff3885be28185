//! Input validation and the endpoint plan.
//!
//! Everything a user types (registry, data endpoints, regions, extra hosts, DNS servers,
//! durations, image references) is checked here, before any network I/O. Bad input gives an
//! [`InputError`] that names the flag and the value; nothing here panics on any string.

use crate::engine::evidence::Role;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Longest value (in characters, after escaping) shown in an [`InputError`].
const MAX_SHOWN_VALUE: usize = 80;

/// Most endpoints one check probes (login server, data endpoints and extra hosts together).
pub const MAX_ENDPOINTS: usize = 32;

/// Default HTTPS port of registries and data endpoints.
pub const HTTPS_PORT: u16 = 443;

/// The crate's bad-input error: names the field (a flag such as `--registry`, or an environment
/// variable), the value given (truncated, control characters escaped) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: '{value}' {problem}")]
pub struct InputError {
    pub field: String,
    /// The offending value, already made safe for display.
    pub value: String,
    pub problem: String,
}

impl InputError {
    /// `value` is escaped (control characters) and truncated to about 80 characters, so that
    /// an error can be printed to a terminal or a log whatever the input was.
    pub fn new(field: impl Into<String>, value: &str, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: shown_value(value),
            problem: problem.into(),
        }
    }
}

/// Escapes control characters (`\n`, `\u{1b}`, ...) and truncates to [`MAX_SHOWN_VALUE`]
/// characters, marking the cut with `…`.
pub(crate) fn shown_value(s: &str) -> String {
    shown_value_max(s, MAX_SHOWN_VALUE)
}

/// [`shown_value`] with another limit.
pub(crate) fn shown_value_max(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let n = piece.chars().count();
        if count + n > max {
            out.push('…');
            return out;
        }
        count += n;
        out.push_str(&piece);
    }
    out
}

/// Validates a host: a DNS name (returned lowercased, without a trailing dot), an IPv4 literal
/// or an IPv6 literal (bracketed or bare; returned without brackets, in canonical form).
pub fn validate_host(field: &str, s: &str) -> Result<String, InputError> {
    let err = |p: &str| Err(InputError::new(field, s, p));
    if s.is_empty() {
        return err("is empty; give a host name");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err("contains whitespace or control characters");
    }
    if !s.is_ascii() {
        return err("contains non-ASCII characters; use the punycode form (xn--...)");
    }
    if let Some(inner) = s.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(v6) => match v6.parse::<Ipv6Addr>() {
                Ok(ip) => Ok(ip.to_string()),
                Err(_) => err("is not a valid IPv6 address"),
            },
            None if inner.contains("]:") => err("contains a port; give only the host"),
            None => err("has '[' without a matching ']'"),
        };
    }
    if s.contains("://") {
        return err("contains a URL scheme; give only the host name");
    }
    if s.contains('/') {
        return err("contains a path; give only the host name");
    }
    if s.contains('@') {
        return err("contains user information ('@'); give only the host name");
    }
    if s.contains('?') || s.contains('#') {
        return err("contains a query or fragment; give only the host name");
    }
    if s.contains(':') {
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(ip.to_string());
        }
        return err("contains a port; give only the host");
    }
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return err("is not a host name");
    }
    if name.len() > 253 {
        return err("is longer than 253 characters, the limit of a DNS name");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return err("has an empty label (a leading dot or two dots in a row)");
        }
        if label.len() > 63 {
            return err("has a label longer than 63 characters");
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(InputError::new(
                field,
                s,
                format!(
                    "contains '{c}', which is not allowed in host names (letters, digits, '-' and '.')"
                ),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err("has a label that starts or ends with '-'");
        }
    }
    let tld = name.rsplit('.').next().unwrap_or(name);
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return err("is neither a valid IPv4 address nor a host name");
    }
    Ok(name.to_string())
}

fn parse_port(field: &str, whole: &str, p: &str) -> Result<u16, InputError> {
    if p.is_empty() {
        return Err(InputError::new(field, whole, "has an empty port after ':'"));
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::new(
            field,
            whole,
            "has a port that is not a number",
        ));
    }
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) && p.len() <= 5 => Ok(n as u16),
        _ => Err(InputError::new(
            field,
            whole,
            "has a port out of range; ports are 1 to 65535",
        )),
    }
}

/// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal, also with an
/// `https://` prefix and one trailing `/` (as registries are often written). The host is
/// validated with [`validate_host`]; IPv6 hosts are returned without brackets.
pub fn parse_host_port(
    field: &str,
    s: &str,
    default_port: u16,
) -> Result<(String, u16), InputError> {
    let err = |p: &str| Err(InputError::new(field, s, p));
    if s.is_empty() {
        return err("is empty; give a host name");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err("contains whitespace or control characters");
    }
    let mut rest = s;
    if let Some(i) = rest.find("://") {
        let scheme = rest[..i].to_ascii_lowercase();
        match scheme.as_str() {
            "https" => rest = &rest[i + 3..],
            "http" => {
                return err(
                    "uses http://, but registries are probed over TLS; use https:// or no scheme",
                );
            }
            _ => return err("has an unsupported URL scheme; give host, host:port or https://host"),
        }
    }
    rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return err(
            "contains user information (user@host); give only the host (credentials go in --docker-config)",
        );
    }
    if rest.contains('?') || rest.contains('#') {
        return err("contains a query or fragment; give only the host and optional port");
    }
    if rest.contains('/') {
        return err("contains a path; give only the host and optional port");
    }
    if rest.is_empty() {
        return err("has no host name");
    }
    if let Some(r) = rest.strip_prefix('[') {
        let Some((h, after)) = r.split_once(']') else {
            return err("has '[' without a matching ']'");
        };
        let port = if after.is_empty() {
            default_port
        } else if let Some(p) = after.strip_prefix(':') {
            parse_port(field, s, p)?
        } else {
            return err("has unexpected characters after ']'");
        };
        return match h.parse::<Ipv6Addr>() {
            Ok(ip) => Ok((ip.to_string(), port)),
            Err(_) => err("is not a valid IPv6 address in brackets"),
        };
    }
    match rest.matches(':').count() {
        0 => Ok((validate_host(field, rest)?, default_port)),
        1 => {
            let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
            let port = parse_port(field, s, p)?;
            if h.is_empty() {
                return err("has no host name before ':'");
            }
            Ok((validate_host(field, h)?, port))
        }
        _ => match rest.parse::<Ipv6Addr>() {
            Ok(ip) => Ok((ip.to_string(), default_port)),
            Err(_) => err(
                "is neither host:port nor an IPv6 address (write IPv6 with a port as [addr]:port)",
            ),
        },
    }
}

/// `host:port` as a `Host:` header writes it: the port left out when it is 443, IPv6 in
/// brackets.
pub fn host_header(host: &str, port: u16) -> String {
    let h = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == HTTPS_PORT {
        h
    } else {
        format!("{h}:{port}")
    }
}

/// The dedicated data endpoint of an Azure registry in one region:
/// `<name>.azurecr.io` + `westeurope` → `<name>.westeurope.data.azurecr.io` (same for the
/// `azurecr.cn` and `azurecr.us` clouds). Errors name `--region`.
pub fn azure_data_endpoint(registry_host: &str, region: &str) -> Result<String, InputError> {
    azure_data_endpoint_named(InputFields::FLAGS, registry_host, region)
}

fn azure_data_endpoint_named(
    fields: InputFields,
    registry_host: &str,
    region: &str,
) -> Result<String, InputError> {
    let field = fields.region;
    let host = validate_host(fields.registry, registry_host)?;
    let labels: Vec<&str> = host.split('.').collect();
    let is_azure = labels.len() >= 3 && labels[labels.len() - 2] == "azurecr";
    if !is_azure {
        return Err(InputError::new(
            field,
            region,
            format!(
                "only applies to Azure registries (*.azurecr.io), and {host} is not one; use {}",
                fields.data_endpoint
            ),
        ));
    }
    if labels.len() != 3 {
        return Err(InputError::new(
            field,
            region,
            format!("needs the login server name (<name>.azurecr.io) as the registry, not {host}"),
        ));
    }
    let region_lc = region.to_ascii_lowercase();
    let ok = !region_lc.is_empty()
        && region_lc.len() <= 40
        && region_lc
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        return Err(InputError::new(
            field,
            region,
            "is not an Azure region name such as westeurope (letters and digits only, at most 40)",
        ));
    }
    Ok(format!(
        "{}.{}.data.azurecr.{}",
        labels[0], region_lc, labels[2]
    ))
}

/// Parses a DNS server to ask directly: `IP`, `IP:PORT`, `[v6]`, `[v6]:PORT` or a bare IPv6
/// literal. The default port is 53. Errors name `--dns-server`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, InputError> {
    const FIELD: &str = "--dns-server";
    let err = |p: &str| Err(InputError::new(FIELD, s, p));
    if s.is_empty() {
        return err("is empty; give the DNS server's IP address");
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Some(r) = s.strip_prefix('[') {
        let Some((h, after)) = r.split_once(']') else {
            return err("has '[' without a matching ']'");
        };
        let Ok(ip) = h.parse::<Ipv6Addr>() else {
            return err("is not a valid IPv6 address in brackets");
        };
        let port = if after.is_empty() {
            53
        } else if let Some(p) = after.strip_prefix(':') {
            parse_port(FIELD, s, p)?
        } else {
            return err("has unexpected characters after ']'");
        };
        return Ok(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if let Some((h, p)) = s.split_once(':')
        && let Ok(ip) = h.parse::<Ipv4Addr>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(ip), parse_port(FIELD, s, p)?));
    }
    err("is not an IP address; give the DNS server as IP, IP:PORT or [IPv6]:PORT")
}

/// Human form of a duration: `1h`, `1m30s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

/// Parses `10s`, `500ms`, `1m`, `1m30s`, `2h` or a bare number of seconds. The result must be
/// greater than zero and at most `max`.
pub fn parse_duration(field: &str, s: &str, max: Duration) -> Result<Duration, InputError> {
    let err = |p: &str| Err(InputError::new(field, s, p));
    if s.is_empty() {
        return err("is empty; give a duration such as 10s, 500ms or 1m30s");
    }
    let too_long = || {
        Err(InputError::new(
            field,
            s,
            format!("is longer than the maximum of {}", format_duration(max)),
        ))
    };
    let total_ms: u64 = if s.bytes().all(|b| b.is_ascii_digit()) {
        match s.parse::<u64>().ok().and_then(|n| n.checked_mul(1000)) {
            Some(ms) => ms,
            None => return too_long(),
        }
    } else {
        let b = s.as_bytes();
        let mut i = 0;
        let mut total: u64 = 0;
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return err("is not a duration; use a number with a unit: 10s, 500ms, 1m30s, 2h");
            }
            let Ok(n) = s[start..i].parse::<u64>() else {
                return too_long();
            };
            let ustart = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let factor: u64 = match &s[ustart..i] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "" if i < b.len() && b[i] == b'.' => {
                    return err("has a fraction; use whole numbers such as 1500ms");
                }
                "" => return err("has a number without a unit; use ms, s, m or h"),
                _ => return err("has an unknown unit; use ms, s, m or h"),
            };
            match n.checked_mul(factor).and_then(|v| total.checked_add(v)) {
                Some(t) => total = t,
                None => return too_long(),
            }
        }
        total
    };
    let d = Duration::from_millis(total_ms);
    if d.is_zero() {
        return err("must be greater than zero");
    }
    if d > max {
        return too_long();
    }
    Ok(d)
}

/// One host to probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Validated host (lowercase DNS name, or IP literal without brackets).
    pub host: String,
    pub port: u16,
    pub role: Role,
}

/// The names errors give the fields of a [`PlanInput`]: the command line's flags, or the
/// paths of a check's spec. Each error is born with the name of the field the user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFields {
    pub registry: &'static str,
    pub data_endpoint: &'static str,
    pub region: &'static str,
    pub also: &'static str,
    pub image: &'static str,
}

impl InputFields {
    /// `regcheck check` and `regcheck probe`.
    pub const FLAGS: InputFields = InputFields {
        registry: "--registry",
        data_endpoint: "--data-endpoint",
        region: "--region",
        also: "--also",
        image: "--image",
    };
    /// A `RegistryConnectivityCheck`'s spec.
    pub const SPEC: InputFields = InputFields {
        registry: "spec.registry",
        data_endpoint: "spec.dataEndpoints",
        region: "spec.regions",
        also: "spec.extraHosts",
        image: "spec.image",
    };
}

impl Default for InputFields {
    fn default() -> Self {
        Self::FLAGS
    }
}

/// What the user asked to check, as given on the command line or in a check's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanInput {
    /// `--registry`: the login server (`myreg.azurecr.io`, `https://myreg.azurecr.io/`, `host:port`).
    pub registry: String,
    /// `--data-endpoint`: explicit data endpoints.
    pub data_endpoints: Vec<String>,
    /// `--region`: regions whose Azure data endpoint is derived from the registry name.
    pub regions: Vec<String>,
    /// `--also`: extra hosts probed like a registry.
    pub also: Vec<String>,
    /// How errors name these fields.
    pub fields: InputFields,
}

fn push_endpoint(
    out: &mut Vec<Endpoint>,
    field: &str,
    raw: &str,
    ep: Endpoint,
) -> Result<(), InputError> {
    if out.iter().any(|e| e.host == ep.host && e.port == ep.port) {
        return Ok(());
    }
    if out.len() >= MAX_ENDPOINTS {
        return Err(InputError::new(
            field,
            raw,
            format!(
                "is one endpoint too many: at most {MAX_ENDPOINTS} endpoints are probed in total"
            ),
        ));
    }
    out.push(ep);
    Ok(())
}

/// Validates the input and lists the endpoints to probe: the login server first, then data
/// endpoints (explicit ones, then those derived from regions), then extra hosts. Duplicates
/// (same host and port) keep their first role; at most [`MAX_ENDPOINTS`] in total.
pub fn plan(input: &PlanInput) -> Result<Vec<Endpoint>, InputError> {
    let f = input.fields;
    let (reg_host, reg_port) = parse_host_port(f.registry, &input.registry, HTTPS_PORT)?;
    let mut out = vec![Endpoint {
        host: reg_host.clone(),
        port: reg_port,
        role: Role::LoginServer,
    }];
    for d in &input.data_endpoints {
        let (host, port) = parse_host_port(f.data_endpoint, d, HTTPS_PORT)?;
        let ep = Endpoint {
            host,
            port,
            role: Role::DataEndpoint,
        };
        push_endpoint(&mut out, f.data_endpoint, d, ep)?;
    }
    for r in &input.regions {
        let host = azure_data_endpoint_named(f, &reg_host, r)?;
        let ep = Endpoint {
            host,
            port: HTTPS_PORT,
            role: Role::DataEndpoint,
        };
        push_endpoint(&mut out, f.region, r, ep)?;
    }
    for a in &input.also {
        let (host, port) = parse_host_port(f.also, a, HTTPS_PORT)?;
        let ep = Endpoint {
            host,
            port,
            role: Role::Extra,
        };
        push_endpoint(&mut out, f.also, a, ep)?;
    }
    Ok(out)
}

/// A reference to an image in the registry being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository path without the registry host: `ns/repo`.
    pub repository: String,
    /// A tag (`latest`) or a digest (`sha256:<64 hex>`).
    pub reference: String,
}

impl ImageRef {
    pub fn is_digest(&self) -> bool {
        self.reference.contains(':')
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.is_digest() { '@' } else { ':' };
        write!(f, "{}{}{}", self.repository, sep, self.reference)
    }
}

/// One path component of the OCI distribution grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Parses `--image`: `repo`, `repo:tag`, `ns/repo:tag`, `repo@sha256:<64 hex>`, or any of those
/// prefixed with the registry host (`myreg.azurecr.io/ns/repo:tag`), which must be the registry
/// being checked. The tag defaults to `latest`; with both a tag and a digest, the digest wins.
pub fn parse_image(field: &str, s: &str, registry: (&str, u16)) -> Result<ImageRef, InputError> {
    let err = |p: &str| Err(InputError::new(field, s, p));
    if s.is_empty() {
        return err("is empty; give repository:tag or repository@sha256:digest");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err("contains whitespace or control characters");
    }
    if !s.is_ascii() {
        return err("contains non-ASCII characters");
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return err("has a digest without an algorithm; expected @sha256:<64 hex digits>");
        };
        let want = match alg {
            "sha256" => 64,
            "sha512" => 128,
            _ => return err("has an unsupported digest algorithm; expected sha256 or sha512"),
        };
        if hex.len() != want
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(InputError::new(
                field,
                s,
                format!("has a malformed digest; expected {alg}:<{want} lowercase hex digits>"),
            ));
        }
    }
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if last_slash.is_none_or(|j| i > j) => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    if let Some(d) = domain {
        let (host, port) = parse_host_port(field, d, HTTPS_PORT)?;
        if (host.as_str(), port) != registry {
            let named = host_header(registry.0, registry.1);
            return Err(InputError::new(
                field,
                s,
                format!(
                    "names registry '{}' but the check is for '{}'; give the image without a host or with the same registry",
                    shown_value(d),
                    shown_value(&named)
                ),
            ));
        }
    }
    if path.is_empty() {
        return err("has no repository name");
    }
    if name.len() > 255 {
        return err("has a repository name longer than 255 characters");
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            if component.bytes().any(|b| b.is_ascii_uppercase()) {
                return err("has upper-case letters; repository names must be lowercase");
            }
            return err(
                "has an invalid repository name: components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
            );
        }
    }
    let reference = match (digest, tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) if valid_tag(t) => t.to_string(),
        (None, Some("")) => return err("has an empty tag after ':'"),
        (None, Some(_)) => {
            return err(
                "has an invalid tag: letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128",
            );
        }
        (None, None) => "latest".to_string(),
    };
    if let (Some(_), Some(t)) = (digest, tag)
        && !valid_tag(t)
    {
        return err("has an invalid tag before the digest");
    }
    Ok(ImageRef {
        repository: path.to_string(),
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn input_error_display_and_escaping() {
        let e = InputError::new("--registry", "bad\nhost\u{1b}[31m", "is wrong");
        assert_eq!(
            e.to_string(),
            "--registry: 'bad\\nhost\\u{1b}[31m' is wrong"
        );
        let long = "a".repeat(200);
        let e = InputError::new("--also", &long, "is too long");
        assert_eq!(e.value.chars().count(), 81);
        assert!(e.value.ends_with('…'));
    }

    #[test]
    fn hosts_accepted() {
        let ok = [
            ("MyReg.AzureCR.io", "myreg.azurecr.io"),
            ("myreg.azurecr.io.", "myreg.azurecr.io"),
            ("localhost", "localhost"),
            ("a-b.c", "a-b.c"),
            ("10.0.0.1", "10.0.0.1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:DB8:0::1", "2001:db8::1"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ];
        for (input, want) in ok {
            assert_eq!(validate_host("--registry", input).unwrap(), want, "{input}");
        }
        let max_label = format!("{}.io", "a".repeat(63));
        assert!(validate_host("f", &max_label).is_ok());
    }

    #[test]
    fn hosts_rejected_with_reason() {
        let bad = [
            ("", "is empty"),
            ("my reg.io", "whitespace"),
            ("my_reg.azurecr.io", "'_'"),
            ("bücher.example", "punycode"),
            ("reg.io:443", "port"),
            ("reg.io/path", "path"),
            ("https://reg.io", "scheme"),
            ("-reg.io", "starts or ends with '-'"),
            ("reg..io", "empty label"),
            (".", "not a host name"),
            ("1.2.3.256", "neither a valid IPv4"),
            ("[::1", "without a matching"),
            ("[zz::1]", "IPv6"),
            ("user@reg.io", "user information"),
        ];
        for (input, want) in bad {
            let e = validate_host("--registry", input).unwrap_err();
            assert_eq!(e.field, "--registry");
            assert!(e.problem.contains(want), "{input}: {e}");
        }
        let long_label = format!("{}.io", "a".repeat(64));
        assert!(
            validate_host("f", &long_label)
                .unwrap_err()
                .problem
                .contains("63")
        );
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(long_name.len() > 253);
        assert!(
            validate_host("f", &long_name)
                .unwrap_err()
                .problem
                .contains("253")
        );
    }

    #[test]
    fn host_port_forms() {
        let f = |s: &str| parse_host_port("--registry", s, 443);
        assert_eq!(f("reg.io").unwrap(), ("reg.io".into(), 443));
        assert_eq!(f("reg.io:5000").unwrap(), ("reg.io".into(), 5000));
        assert_eq!(f("https://Reg.io/").unwrap(), ("reg.io".into(), 443));
        assert_eq!(f("HTTPS://reg.io:8443").unwrap(), ("reg.io".into(), 8443));
        assert_eq!(f("[::1]:5000").unwrap(), ("::1".into(), 5000));
        assert_eq!(f("[fd00::2]").unwrap(), ("fd00::2".into(), 443));
        assert_eq!(f("fd00::2").unwrap(), ("fd00::2".into(), 443));
        assert_eq!(f("10.1.2.3:65535").unwrap(), ("10.1.2.3".into(), 65535));
        let bad = [
            ("http://reg.io", "TLS"),
            ("ftp://reg.io", "scheme"),
            ("https://u:p@reg.io", "user information"),
            ("reg.io/v2/", "path"),
            ("reg.io//", "path"),
            ("reg.io?x=1", "query"),
            ("reg.io:0", "1 to 65535"),
            ("reg.io:65536", "1 to 65535"),
            ("reg.io:99999999999", "1 to 65535"),
            ("reg.io:https", "not a number"),
            ("reg.io:", "empty port"),
            (":443", "no host"),
            ("https://", "no host"),
            ("a:b:c", "neither host:port"),
            ("[::1]x", "after ']'"),
            ("reg_x.io:443", "'_'"),
        ];
        for (input, want) in bad {
            let e = f(input).unwrap_err();
            assert_eq!(e.field, "--registry");
            assert!(e.problem.contains(want), "{input}: {e}");
        }
        // The password of a URL with credentials is still shown truncated; callers keep
        // secrets out of host flags, but the value is never longer than the limit.
        assert!(f(&"x".repeat(500)).unwrap_err().value.chars().count() <= 81);
    }

    #[test]
    fn azure_data_endpoints() {
        assert_eq!(
            azure_data_endpoint("myreg.azurecr.io", "westeurope").unwrap(),
            "myreg.westeurope.data.azurecr.io"
        );
        assert_eq!(
            azure_data_endpoint("myreg.azurecr.cn", "chinanorth3").unwrap(),
            "myreg.chinanorth3.data.azurecr.cn"
        );
        assert_eq!(
            azure_data_endpoint("MyReg.azurecr.us", "USGovVirginia").unwrap(),
            "myreg.usgovvirginia.data.azurecr.us"
        );
        let e = azure_data_endpoint("quay.io", "westeurope").unwrap_err();
        assert_eq!(e.field, "--region");
        assert!(e.problem.contains("use --data-endpoint"), "{e}");
        let e = azure_data_endpoint("myreg.privatelink.azurecr.io", "westeurope").unwrap_err();
        assert!(e.problem.contains("login server"), "{e}");
        for bad in ["", "west europe", "west-europe", &"a".repeat(41)] {
            let e = azure_data_endpoint("myreg.azurecr.io", bad).unwrap_err();
            assert_eq!(e.field, "--region");
            assert!(e.problem.contains("region name"), "{bad}: {e}");
        }
    }

    #[test]
    fn dns_servers() {
        let ok = [
            ("10.0.0.10", "10.0.0.10:53"),
            ("168.63.129.16:5353", "168.63.129.16:5353"),
            ("[fd00::10]", "[fd00::10]:53"),
            ("[fd00::10]:54", "[fd00::10]:54"),
            ("fd00::10", "[fd00::10]:53"),
        ];
        for (input, want) in ok {
            assert_eq!(parse_dns_server(input).unwrap().to_string(), want);
        }
        for (bad, want) in [
            ("dns.corp", "not an IP address"),
            ("", "empty"),
            ("10.0.0.1:0", "1 to 65535"),
            ("10.0.0.1:x", "not a number"),
            ("[fd00::1", "matching"),
        ] {
            let e = parse_dns_server(bad).unwrap_err();
            assert_eq!(e.field, "--dns-server");
            assert!(e.problem.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn durations() {
        let d = |s: &str| parse_duration("--timeout", s, HOUR);
        assert_eq!(d("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(d("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(d("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(d("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(d("1h").unwrap(), HOUR);
        assert_eq!(d("15").unwrap(), Duration::from_secs(15));
        for (bad, want) in [
            ("0", "greater than zero"),
            ("0s", "greater than zero"),
            ("2h", "maximum of 1h"),
            ("3601", "maximum of 1h"),
            ("99999999999999999999", "maximum"),
            ("18446744073709551615h", "maximum"),
            ("10x", "unknown unit"),
            ("1.5s", "fraction"),
            ("1m30", "without a unit"),
            ("s", "not a duration"),
            ("", "empty"),
            ("-1s", "not a duration"),
        ] {
            let e = d(bad).unwrap_err();
            assert_eq!(e.field, "--timeout");
            assert!(e.problem.contains(want), "{bad}: {e}");
        }
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30s500ms");
    }

    fn input(registry: &str) -> PlanInput {
        PlanInput {
            registry: registry.into(),
            ..Default::default()
        }
    }

    #[test]
    fn plan_orders_and_dedups() {
        let mut i = input("https://MyReg.azurecr.io/");
        i.data_endpoints = vec!["myreg.westeurope.data.azurecr.io".into()];
        i.regions = vec!["westeurope".into(), "eastus".into()];
        i.also = vec!["mcr.microsoft.com".into(), "myreg.azurecr.io:443".into()];
        let p = plan(&i).unwrap();
        let got: Vec<(&str, u16, Role)> = p
            .iter()
            .map(|e| (e.host.as_str(), e.port, e.role))
            .collect();
        assert_eq!(
            got,
            vec![
                ("myreg.azurecr.io", 443, Role::LoginServer),
                ("myreg.westeurope.data.azurecr.io", 443, Role::DataEndpoint),
                ("myreg.eastus.data.azurecr.io", 443, Role::DataEndpoint),
                ("mcr.microsoft.com", 443, Role::Extra),
            ]
        );
        // A different port is a different endpoint.
        let mut i = input("reg.example");
        i.also = vec!["reg.example:5000".into()];
        assert_eq!(plan(&i).unwrap().len(), 2);
    }

    #[test]
    fn plan_errors_name_the_field() {
        let e = plan(&input("")).unwrap_err();
        assert_eq!(e.field, "--registry");
        let mut i = input("quay.io");
        i.regions = vec!["westeurope".into()];
        assert_eq!(plan(&i).unwrap_err().field, "--region");
        let mut i = input("myreg.azurecr.io");
        i.data_endpoints = vec!["bad host".into()];
        assert_eq!(plan(&i).unwrap_err().field, "--data-endpoint");
        let mut i = input("myreg.azurecr.io");
        i.also = (0..31).map(|n| format!("h{n}.example")).collect();
        assert_eq!(plan(&i).unwrap().len(), 32);
        i.also.push("one-more.example".into());
        let e = plan(&i).unwrap_err();
        assert_eq!(e.field, "--also");
        assert_eq!(e.value, "one-more.example");
        assert!(e.problem.contains("32"));
        let mut i = input("myreg.azurecr.io");
        i.regions = (0..40).map(|n| format!("region{n}")).collect();
        assert_eq!(plan(&i).unwrap_err().field, "--region");
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn images_accepted() {
        let reg = "myreg.azurecr.io";
        let p = |s: &str| parse_image("--image", s, (reg, 443)).unwrap();
        assert_eq!(
            p("nginx"),
            ImageRef {
                repository: "nginx".into(),
                reference: "latest".into()
            }
        );
        assert_eq!(p("nginx:1.25").reference, "1.25");
        assert_eq!(p("team/app:v1_2-rc.3").repository, "team/app");
        let d = p(&format!("app@{DIGEST}"));
        assert_eq!(d.reference, DIGEST);
        assert!(d.is_digest());
        assert_eq!(d.to_string(), format!("app@{DIGEST}"));
        assert_eq!(p(&format!("app:v1@{DIGEST}")).reference, DIGEST);
        let full = p("MyReg.azurecr.io/ns/app:v2");
        assert_eq!(
            full,
            ImageRef {
                repository: "ns/app".into(),
                reference: "v2".into()
            }
        );
        assert_eq!(p("myreg.azurecr.io:443/app").repository, "app");
        assert_eq!(p("a__b/c--d/e.f_g").repository, "a__b/c--d/e.f_g");
        assert_eq!(
            parse_image("--image", "localhost:5000/app:1", ("localhost", 5000))
                .unwrap()
                .repository,
            "app"
        );
    }

    #[test]
    fn images_rejected() {
        let reg = "myreg.azurecr.io";
        for (bad, want) in [
            ("", "empty"),
            ("other.azurecr.io/app:v1", "names registry"),
            ("App:v1", "lowercase"),
            ("app:", "empty tag"),
            ("app:-x", "invalid tag"),
            ("app:.x", "invalid tag"),
            ("app@sha256:abc", "malformed digest"),
            ("app@md5:abc", "unsupported digest"),
            ("app@abc", "without an algorithm"),
            ("-app", "invalid repository"),
            ("app//x", "invalid repository"),
            ("app_", "invalid repository"),
            ("a___b", "invalid repository"),
            ("myreg.azurecr.io/", "no repository"),
            ("app :v1", "whitespace"),
        ] {
            let e = parse_image("--image", bad, (reg, 443)).unwrap_err();
            assert_eq!(e.field, "--image");
            assert!(e.problem.contains(want), "{bad}: {e}");
        }
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(parse_image("--image", &long_tag, (reg, 443)).is_err());
        let long_name = format!("{}:v1", vec!["abcdefghij"; 24].join("/"));
        assert!(
            parse_image("--image", &long_name, (reg, 443))
                .unwrap_err()
                .problem
                .contains("255")
        );
    }

    proptest! {
        #[test]
        fn validate_host_is_idempotent(s in "\\PC{0,80}|[a-zA-Z0-9.:\\[\\]_-]{0,70}") {
            if let Ok(h) = validate_host("f", &s) {
                prop_assert_eq!(validate_host("f", &h), Ok(h.clone()));
                prop_assert!(h.len() <= 253);
                prop_assert_eq!(h.to_ascii_lowercase(), h);
            }
        }

        #[test]
        fn host_port_never_panics(s in "\\PC{0,80}|(https?://)?[a-z0-9.:\\[\\]@/-]{0,40}") {
            if let Ok((h, p)) = parse_host_port("--also", &s, 443) {
                prop_assert!(p >= 1);
                prop_assert!(validate_host("f", &h).is_ok());
            }
        }

        #[test]
        fn duration_bounds_hold(s in "[0-9]{0,6}(ms|s|m|h)?([0-9]{0,3}(ms|s|m|h|x))?|\\PC{0,12}") {
            if let Ok(d) = parse_duration("--timeout", &s, HOUR) {
                prop_assert!(!d.is_zero() && d <= HOUR);
            }
        }

        #[test]
        fn image_display_round_trips(s in "[a-z0-9._/:@-]{0,40}|\\PC{0,40}") {
            if let Ok(r) = parse_image("--image", &s, ("myreg.azurecr.io", 443)) {
                // The fully qualified form is unambiguous (a first component with a dot would
                // otherwise be read as a registry host, as Docker does).
                let full = format!("myreg.azurecr.io/{r}");
                prop_assert_eq!(parse_image("--image", &full, ("myreg.azurecr.io", 443)), Ok(r.clone()));
            }
        }

        #[test]
        fn input_error_value_is_safe(s in "\\PC{0,200}|[\\x00-\\x1f]{0,100}") {
            let e = InputError::new("f", &s, "is bad");
            prop_assert!(e.value.chars().count() <= MAX_SHOWN_VALUE + 1);
            prop_assert!(!e.to_string().chars().any(|c| c.is_control()));
        }

        #[test]
        fn dns_server_never_panics(s in "\\PC{0,40}|[0-9a-f.:\\[\\]]{0,40}") {
            let _ = parse_dns_server(&s);
        }
    }
}
