//! Proxy configuration, decided the way Go's `golang.org/x/net/http/httpproxy` decides it
//! (the package behind `net/http.ProxyFromEnvironment`, used by containerd and kubelet).
//!
//! Semantics mirrored from httpproxy:
//! - `HTTPS_PROXY` is read before `https_proxy`, `HTTP_PROXY` before `http_proxy`, `NO_PROXY`
//!   before `no_proxy`; an empty value counts as unset.
//! - HTTPS requests (all registry traffic) use only the HTTPS proxy; `HTTP_PROXY` is never a
//!   fallback for them.
//! - A proxy value without a scheme means `http://`; default ports are 80 (http) and 443 (https).
//! - `localhost` and loopback IP literals are never proxied.
//! - `NO_PROXY` is comma-separated, trimmed and lowercased; `*` alone exempts everything; an
//!   entry is an IP, a CIDR, `host`, `.domain` or `*.domain`, each with an optional `:port`.
//!   `foo.com` matches `foo.com` and its subdomains, `.foo.com` and `*.foo.com` only subdomains.
//!   IP and CIDR entries match only when the request's host *is* an IP literal, never a name
//!   that resolves to an address inside them; domain entries never match IP literals
//!   (as in current x/net, where `domainMatch` returns false for an IP).
//!
//! Deliberate difference: Go silently ignores an unparsable proxy URL (and then goes direct);
//! here it is an [`InputError`] naming the variable, because a diagnosis tool should say so.

use crate::engine::evidence::Route;
use crate::engine::inputs::InputError;
use std::net::IpAddr;

/// Scheme used to talk to the proxy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyScheme {
    /// Plain-text connection to the proxy, then `CONNECT`.
    Http,
    /// TLS to the proxy, then `CONNECT` inside it.
    Https,
}

impl ProxyScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// A parsed proxy URL. Credentials are percent-decoded and never shown by [`ProxyUrl::redacted`]
/// or by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: ProxyScheme,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("url", &self.redacted())
            .finish()
    }
}

/// Hides the user information of a URL-like string: `http://u:p@h:1` → `http://***@h:1`.
fn redact_userinfo(s: &str) -> String {
    match s.rfind('@') {
        Some(at) => {
            let start = s
                .find("://")
                .map(|i| i + 3)
                .filter(|&i| i <= at)
                .unwrap_or(0);
            format!("{}***{}", &s[..start], &s[at..])
        }
        None => s.to_string(),
    }
}

/// Percent-decodes URL user information. `None` when the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl ProxyUrl {
    /// Parses a proxy URL as Go does: no scheme means `http://`; `http` and `https` are
    /// supported; `socks5` and anything else is an error. `field` names the variable or flag.
    /// Errors never contain the credentials.
    pub fn parse(field: &str, s: &str) -> Result<ProxyUrl, InputError> {
        let shown = redact_userinfo(s);
        let err = |p: &str| Err(InputError::new(field, &shown, p));
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return err("is empty");
        }
        let with_scheme = match trimmed.find("://") {
            Some(i) => {
                let scheme = trimmed[..i].to_ascii_lowercase();
                match scheme.as_str() {
                    "http" | "https" => trimmed.to_string(),
                    "socks5" | "socks5h" | "socks4" | "socks4a" | "socks" => {
                        return err(
                            "is a SOCKS proxy, which regcheck does not support (only http:// and https:// proxies)",
                        );
                    }
                    _ => return err("has an unsupported proxy scheme; use http:// or https://"),
                }
            }
            None => format!("http://{trimmed}"),
        };
        let url = match url::Url::parse(&with_scheme) {
            Ok(u) => u,
            Err(e) => return err(&format!("is not a valid proxy URL ({e})")),
        };
        let scheme = match url.scheme() {
            "https" => ProxyScheme::Https,
            _ => ProxyScheme::Http,
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return err("has no proxy host"),
        };
        let port = url.port().unwrap_or(scheme.default_port());
        if port == 0 {
            return err("has port 0; ports are 1 to 65535");
        }
        let decode = |raw: &str| {
            percent_decode(raw).ok_or_else(|| {
                InputError::new(
                    field,
                    &shown,
                    "has credentials that are not valid UTF-8 after percent-decoding",
                )
            })
        };
        let (username, password) = if url.username().is_empty() && url.password().is_none() {
            (None, None)
        } else {
            let user = decode(url.username())?;
            let pass = url.password().map(decode).transpose()?;
            (Some(user), pass)
        };
        Ok(ProxyUrl {
            scheme,
            host,
            port,
            username,
            password,
        })
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `http://proxy.corp:3128`, or `http://***@proxy.corp:3128` when credentials exist.
    pub fn redacted(&self) -> String {
        let creds = if self.username.is_some() || self.password.is_some() {
            "***@"
        } else {
            ""
        };
        format!(
            "{}://{}{}:{}",
            self.scheme.as_str(),
            creds,
            self.host_for_url(),
            self.port
        )
    }

    /// The value of `Proxy-Authorization` (`Basic <base64(user:pass)>`), when credentials exist.
    pub fn basic_auth_header(&self) -> Option<String> {
        use base64::Engine as _;
        let user = self.username.as_deref()?;
        let pass = self.password.as_deref().unwrap_or("");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(format!("Basic {token}"))
    }

    /// `host:port` to dial (IPv6 in brackets).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host_for_url(), self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Cidr {
        net: ipnet::IpNet,
    },
    Ip {
        ip: IpAddr,
        port: Option<String>,
    },
    Domain {
        /// Always starts with '.'.
        suffix: String,
        /// The entry was `foo.com` (not `.foo.com`): also matches `foo.com` itself.
        match_host: bool,
        port: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The entry as written (trimmed, lowercased), for reports.
    text: String,
    rule: Rule,
}

/// A parsed `NO_PROXY` list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoProxy {
    /// `*` was given: nothing is proxied.
    all: bool,
    entries: Vec<Entry>,
}

/// Go's `net.SplitHostPort`, returning `None` where Go returns an error.
fn go_split_host_port(s: &str) -> Option<(&str, &str)> {
    let i = s.rfind(':')?;
    let (host, rest) = if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')? + 1;
        if end + 1 != i {
            return None;
        }
        (&s[1..end], &s[end..])
    } else {
        let host = &s[..i];
        if host.contains(':') {
            return None;
        }
        (host, &s[i..])
    };
    if rest.contains('[') || (s.starts_with('[') && rest[1..].contains(']')) {
        return None;
    }
    if !s.starts_with('[') && (host.contains('[') || host.contains(']')) {
        return None;
    }
    Some((host, &s[i + 1..]))
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl NoProxy {
    /// Parses a `NO_PROXY` value exactly like httpproxy; malformed entries are ignored, as Go does.
    pub fn parse(s: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for raw in s.split(',') {
            let p = raw.trim().to_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return NoProxy {
                    all: true,
                    entries: Vec::new(),
                };
            }
            if p.contains('/') {
                if let Ok(net) = p.parse::<ipnet::IpNet>() {
                    out.entries.push(Entry {
                        text: p,
                        rule: Rule::Cidr { net },
                    });
                }
                // Go would keep a non-CIDR entry with '/' as a domain that can never match.
                continue;
            }
            let (phost, pport) = match go_split_host_port(&p) {
                Some((h, port)) => {
                    if h.is_empty() {
                        continue;
                    }
                    (h.to_string(), (!port.is_empty()).then(|| port.to_string()))
                }
                None => (p.clone(), None),
            };
            if let Ok(ip) = phost.parse::<IpAddr>() {
                out.entries.push(Entry {
                    text: p,
                    rule: Rule::Ip {
                        ip: canonical(ip),
                        port: pport,
                    },
                });
                continue;
            }
            let mut h = phost.as_str();
            if h.starts_with("*.") {
                h = &h[1..];
            }
            let match_host = !h.starts_with('.');
            let suffix = if match_host {
                format!(".{h}")
            } else {
                h.to_string()
            };
            // Go converts the entry to its punycode form.
            let suffix = if suffix.is_ascii() {
                suffix
            } else {
                match url::Host::parse(&suffix[1..]) {
                    Ok(url::Host::Domain(d)) => format!(".{d}"),
                    _ => suffix,
                }
            };
            out.entries.push(Entry {
                text: p.clone(),
                rule: Rule::Domain {
                    suffix,
                    match_host,
                    port: pport,
                },
            });
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }

    /// The entries as parsed (trimmed, lowercased), in order; `["*"]` for the wildcard.
    pub fn entries(&self) -> Vec<&str> {
        if self.all {
            return vec!["*"];
        }
        self.entries.iter().map(|e| e.text.as_str()).collect()
    }

    /// The entry that exempts `host:port` from the proxy, if any. `host` is a name or an IP
    /// literal (IPv6 with or without brackets). IP and CIDR entries are checked first, and only
    /// for IP literals, as in Go.
    pub fn matches(&self, host: &str, port: u16) -> Option<&str> {
        if self.all {
            return Some("*");
        }
        let host = normalise_host(host);
        let port_s = port.to_string();
        let ip = host.parse::<IpAddr>().ok().map(canonical);
        if let Some(ip) = ip {
            for e in &self.entries {
                let hit = match &e.rule {
                    Rule::Cidr { net } => net.contains(&ip),
                    Rule::Ip { ip: rule_ip, port } => {
                        *rule_ip == ip && port.as_ref().is_none_or(|p| *p == port_s)
                    }
                    Rule::Domain { .. } => false,
                };
                if hit {
                    return Some(&e.text);
                }
            }
        }
        if ip.is_some() {
            // Current httpproxy: domain entries never match an IP literal.
            return None;
        }
        for e in &self.entries {
            if let Rule::Domain {
                suffix,
                match_host,
                port,
            } = &e.rule
                && (host.ends_with(suffix.as_str()) || (*match_host && host == suffix[1..]))
                && port.as_ref().is_none_or(|p| *p == port_s)
            {
                return Some(&e.text);
            }
        }
        None
    }

    /// IP and CIDR entries that would exempt `ip:port` if the client dialled the IP literal.
    pub fn ip_entries_containing(&self, ip: IpAddr, port: u16) -> Vec<&str> {
        let ip = canonical(ip);
        let port_s = port.to_string();
        self.entries
            .iter()
            .filter(|e| match &e.rule {
                Rule::Cidr { net } => net.contains(&ip),
                Rule::Ip { ip: rule_ip, port } => {
                    *rule_ip == ip && port.as_ref().is_none_or(|p| *p == port_s)
                }
                Rule::Domain { .. } => false,
            })
            .map(|e| e.text.as_str())
            .collect()
    }
}

fn normalise_host(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.to_lowercase()
}

/// The proxy settings of a process, as Go reads them from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyConfig {
    pub https: Option<ProxyUrl>,
    pub http: Option<ProxyUrl>,
    pub no_proxy: NoProxy,
}

fn get_any(
    get: &impl Fn(&str) -> Option<String>,
    names: [&'static str; 2],
) -> Option<(&'static str, String)> {
    names
        .into_iter()
        .find_map(|n| get(n).filter(|v| !v.is_empty()).map(|v| (n, v)))
}

impl ProxyConfig {
    /// Reads `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy` and `NO_PROXY`/`no_proxy`
    /// through `get` (e.g. `|k| std::env::var(k).ok()`). Errors name the variable that was used.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<ProxyConfig, InputError> {
        let https = get_any(&get, ["HTTPS_PROXY", "https_proxy"])
            .map(|(name, v)| ProxyUrl::parse(name, &v))
            .transpose()?;
        let http = get_any(&get, ["HTTP_PROXY", "http_proxy"])
            .map(|(name, v)| ProxyUrl::parse(name, &v))
            .transpose()?;
        let no_proxy = get_any(&get, ["NO_PROXY", "no_proxy"])
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        Ok(ProxyConfig {
            https,
            http,
            no_proxy,
        })
    }

    fn decide(&self, host: &str, port: u16) -> Result<&ProxyUrl, Option<&str>> {
        let Some(proxy) = &self.https else {
            return Err(None);
        };
        let h = normalise_host(host);
        if h == "localhost"
            || h.parse::<IpAddr>()
                .is_ok_and(|ip| canonical(ip).is_loopback())
        {
            return Err(None);
        }
        match self.no_proxy.matches(&h, port) {
            Some(entry) => Err(Some(entry)),
            None => Ok(proxy),
        }
    }

    /// The proxy an HTTPS request to `host:port` goes through, or `None` when it goes direct.
    pub fn https_proxy_for(&self, host: &str, port: u16) -> Option<&ProxyUrl> {
        self.decide(host, port).ok()
    }

    /// The route of an HTTPS request to `host:port`. `resolved` are the addresses the host
    /// resolves to: when the request is proxied, `cidr_not_applied` lists the `NO_PROXY` IP and
    /// CIDR entries that contain one of them (they would have exempted the host had the client
    /// dialled the IP, but do not apply to a name).
    pub fn route(&self, host: &str, port: u16, resolved: &[IpAddr]) -> Route {
        match self.decide(host, port) {
            Err(None) => Route::direct(),
            Err(Some(entry)) => Route {
                no_proxy_match: Some(entry.to_string()),
                ..Route::direct()
            },
            Ok(proxy) => {
                let mut cidr_not_applied: Vec<String> = Vec::new();
                if normalise_host(host).parse::<IpAddr>().is_err() {
                    for ip in resolved {
                        for e in self.no_proxy.ip_entries_containing(*ip, port) {
                            if !cidr_not_applied.iter().any(|x| x == e) {
                                cidr_not_applied.push(e.to_string());
                            }
                        }
                    }
                }
                Route {
                    proxy: Some(proxy.redacted()),
                    no_proxy_match: None,
                    cidr_not_applied,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn proxy_url_forms() {
        let p = ProxyUrl::parse("HTTPS_PROXY", "proxy.corp:3128").unwrap();
        assert_eq!(p.scheme, ProxyScheme::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        assert_eq!(p.redacted(), "http://proxy.corp:3128");
        assert_eq!(p.basic_auth_header(), None);

        let p = ProxyUrl::parse("HTTPS_PROXY", "HTTPS://Proxy.Corp").unwrap();
        assert_eq!((p.scheme, p.port), (ProxyScheme::Https, 443));
        assert_eq!(p.redacted(), "https://proxy.corp:443");
        assert_eq!(ProxyUrl::parse("x", "http://10.0.0.5").unwrap().port, 80);
        let v6 = ProxyUrl::parse("x", "http://[fd00::5]:8080/").unwrap();
        assert_eq!(v6.host, "fd00::5");
        assert_eq!(v6.redacted(), "http://[fd00::5]:8080");
        assert_eq!(v6.authority(), "[fd00::5]:8080");
    }

    #[test]
    fn proxy_credentials_are_decoded_and_hidden() {
        let p =
            ProxyUrl::parse("HTTPS_PROXY", "http://us%65r:p%40ss%3Aw0rd@proxy.corp:3128").unwrap();
        assert_eq!(p.username.as_deref(), Some("user"));
        assert_eq!(p.password.as_deref(), Some("p@ss:w0rd"));
        assert_eq!(p.redacted(), "http://***@proxy.corp:3128");
        // base64("user:p@ss:w0rd")
        assert_eq!(p.basic_auth_header().unwrap(), "Basic dXNlcjpwQHNzOncwcmQ=");
        assert!(!format!("{p:?}").contains("p@ss"));
        let only_user = ProxyUrl::parse("x", "http://bob@proxy:1").unwrap();
        assert_eq!(only_user.basic_auth_header().unwrap(), "Basic Ym9iOg==");
    }

    #[test]
    fn proxy_url_errors_name_variable_and_hide_secrets() {
        let e = ProxyUrl::parse("HTTPS_PROXY", "socks5://u:secret@proxy:1080").unwrap_err();
        assert_eq!(e.field, "HTTPS_PROXY");
        assert!(e.problem.contains("SOCKS"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(e.value, "socks5://***@proxy:1080");
        let e = ProxyUrl::parse("https_proxy", "ftp://proxy").unwrap_err();
        assert!(e.problem.contains("unsupported"), "{e}");
        let e = ProxyUrl::parse("HTTPS_PROXY", "http://u:secret@proxy:99999").unwrap_err();
        assert!(e.problem.contains("not a valid proxy URL"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = ProxyUrl::parse("HTTPS_PROXY", "http://").unwrap_err();
        assert_eq!(e.field, "HTTPS_PROXY");
        let e = ProxyUrl::parse("HTTPS_PROXY", "http://:3128").unwrap_err();
        assert_eq!(e.field, "HTTPS_PROXY");
        let e = ProxyUrl::parse("HTTPS_PROXY", "http://u:%ff%fe@proxy").unwrap_err();
        assert!(e.problem.contains("UTF-8"), "{e}");
    }

    #[test]
    fn env_precedence_like_go() {
        let c = ProxyConfig::from_env(env(&[
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("http_proxy", "http://plain:80"),
            ("NO_PROXY", ""),
            ("no_proxy", ".corp"),
        ]))
        .unwrap();
        assert_eq!(c.https.as_ref().unwrap().host, "upper");
        assert_eq!(c.http.as_ref().unwrap().host, "plain");
        assert_eq!(c.no_proxy.entries(), vec![".corp"]);
        // Empty upper-case value: fall back to lower case.
        let c =
            ProxyConfig::from_env(env(&[("HTTPS_PROXY", ""), ("https_proxy", "lower:1")])).unwrap();
        assert_eq!(c.https.unwrap().host, "lower");
        // HTTP_PROXY is not used for HTTPS requests.
        let c = ProxyConfig::from_env(env(&[("HTTP_PROXY", "http://plain:80")])).unwrap();
        assert!(c.https_proxy_for("myreg.azurecr.io", 443).is_none());
        let e = ProxyConfig::from_env(env(&[("https_proxy", "socks5://x:1")])).unwrap_err();
        assert_eq!(e.field, "https_proxy");
        let e = ProxyConfig::from_env(env(&[("HTTP_PROXY", "gopher://x")])).unwrap_err();
        assert_eq!(e.field, "HTTP_PROXY");
        assert_eq!(
            ProxyConfig::from_env(env(&[])).unwrap(),
            ProxyConfig::default()
        );
    }

    fn np(s: &str) -> NoProxy {
        NoProxy::parse(s)
    }

    #[test]
    fn no_proxy_domain_semantics() {
        let n = np(" Foo.com , .bar.com,*.baz.com ,qux.com:8443,,");
        assert_eq!(
            n.entries(),
            vec!["foo.com", ".bar.com", "*.baz.com", "qux.com:8443"]
        );
        assert_eq!(n.matches("foo.com", 443), Some("foo.com"));
        assert_eq!(n.matches("x.foo.com", 443), Some("foo.com"));
        assert_eq!(n.matches("FOO.COM", 443), Some("foo.com"));
        assert_eq!(n.matches("barfoo.com", 443), None);
        assert_eq!(n.matches("bar.com", 443), None);
        assert_eq!(n.matches("a.bar.com", 443), Some(".bar.com"));
        assert_eq!(n.matches("baz.com", 443), None);
        assert_eq!(n.matches("a.b.baz.com", 443), Some("*.baz.com"));
        assert_eq!(n.matches("qux.com", 8443), Some("qux.com:8443"));
        assert_eq!(n.matches("qux.com", 443), None);
        assert_eq!(np("a.com,*,b.com").matches("anything", 1), Some("*"));
        assert_eq!(np("a.com,*,b.com").entries(), vec!["*"]);
        assert!(np(" , ").is_empty());
        // Malformed entries are ignored, not errors.
        assert_eq!(np(":443").entries(), Vec::<&str>::new());
    }

    #[test]
    fn no_proxy_ip_semantics() {
        let n = np("10.0.0.0/8,192.168.1.5,[fd00::1]:443,fd00::/8,172.16.0.9:8443");
        assert_eq!(n.matches("10.1.2.3", 443), Some("10.0.0.0/8"));
        assert_eq!(n.matches("192.168.1.5", 80), Some("192.168.1.5"));
        assert_eq!(n.matches("[fd00::1]", 443), Some("[fd00::1]:443"));
        assert_eq!(n.matches("fd00::1", 80), Some("fd00::/8"));
        assert_eq!(n.matches("172.16.0.9", 443), None);
        assert_eq!(n.matches("172.16.0.9", 8443), Some("172.16.0.9:8443"));
        assert_eq!(n.matches("::ffff:10.0.0.1", 443), Some("10.0.0.0/8"));
        // A name never matches an IP/CIDR entry, whatever it resolves to.
        assert_eq!(n.matches("myreg.azurecr.io", 443), None);
        // ... and a domain entry never matches an IP literal (".2.3" is not a suffix rule for IPs).
        assert_eq!(np(".2.3,2.3").matches("10.1.2.3", 443), None);
    }

    fn cfg(https: &str, no_proxy: &str) -> ProxyConfig {
        ProxyConfig::from_env(env(&[("HTTPS_PROXY", https), ("NO_PROXY", no_proxy)])).unwrap()
    }

    #[test]
    fn routes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c = cfg(
            "http://user:pw@proxy.corp:3128",
            "10.0.0.0/8,.internal,10.1.2.3",
        );
        let r = c.route("myreg.azurecr.io", 443, &[ip("10.1.2.3")]);
        assert_eq!(r.proxy.as_deref(), Some("http://***@proxy.corp:3128"));
        assert_eq!(r.no_proxy_match, None);
        assert_eq!(r.cidr_not_applied, vec!["10.0.0.0/8", "10.1.2.3"]);
        let r = c.route("myreg.azurecr.io", 443, &[ip("20.1.2.3")]);
        assert!(r.is_proxied());
        assert!(r.cidr_not_applied.is_empty());
        let r = c.route("reg.internal", 443, &[ip("10.1.2.3")]);
        assert_eq!(
            r,
            Route {
                no_proxy_match: Some(".internal".into()),
                ..Route::direct()
            }
        );
        let r = c.route("10.9.9.9", 443, &[]);
        assert_eq!(r.no_proxy_match.as_deref(), Some("10.0.0.0/8"));
        assert!(!r.is_proxied());
        // An IP literal that no entry contains is proxied, with nothing "not applied".
        let r = c.route("20.1.1.1", 443, &[ip("20.1.1.1")]);
        assert!(r.is_proxied() && r.cidr_not_applied.is_empty());
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
        ] {
            assert_eq!(c.route(host, 443, &[]), Route::direct(), "{host}");
            assert!(c.https_proxy_for(host, 443).is_none());
        }
        assert_eq!(
            c.https_proxy_for("myreg.azurecr.io", 443).unwrap().host,
            "proxy.corp"
        );
        assert!(c.https_proxy_for("a.internal", 443).is_none());
        assert_eq!(cfg("", "").route("x.io", 443, &[]), Route::direct());
    }

    proptest! {
        #[test]
        fn no_proxy_never_panics(list in "\\PC{0,60}|[a-z0-9.*:\\[\\]/, -]{0,60}", host in "[a-z0-9.:\\[\\]-]{0,30}", port: u16) {
            let n = NoProxy::parse(&list);
            if let Some(e) = n.matches(&host, port) {
                prop_assert!(n.entries().contains(&e));
            }
        }

        #[test]
        fn proxy_url_never_leaks_password(user in "[a-z]{1,8}", pass in "[A-Za-z0-9]{6,12}", host in "[a-z0-9.-]{1,20}|\\PC{0,20}") {
            let s = format!("http://{user}:{pass}@{host}:3128");
            match ProxyUrl::parse("HTTPS_PROXY", &s) {
                Ok(p) => {
                    prop_assert!(!p.redacted().contains(&pass));
                    let debug = format!("{p:?}");
                    prop_assert!(!debug.contains(&pass));
                }
                Err(e) => prop_assert!(!e.to_string().contains(&pass)),
            }
        }

        #[test]
        fn proxy_url_parse_never_panics(s in "\\PC{0,60}") {
            let _ = ProxyUrl::parse("HTTPS_PROXY", &s);
        }
    }
}
