//! containerd's registry host configuration (`/etc/containerd/certs.d/<host>/hosts.toml`):
//! which hosts containerd tries, in which order and with which TLS settings, for a pull.
//!
//! Follows containerd's own code, `core/remotes/docker/config/hosts.go` and
//! `config_unix.go` (containerd 2.x, commit 301026e58; `remotes/docker/config/` in 1.x):
//! - `HostDirFromRoot`/`hostPaths`: `<root>/<host>_<port>_` (when the host has a port), then
//!   `<root>/<host[:port]>`, then `<root>/_default`; the first that exists is used.
//! - `loadHostDir`: a missing or empty `hosts.toml` means "certificate files only" (`*.crt` CA
//!   files, `*.cert`/`*.key` client pairs, Docker's layout) for the upstream. A `hosts.toml`
//!   that fails to decode is logged and IGNORED the same way: containerd then pulls from the
//!   upstream only. We keep the error ([`HostsConfigError`]) so the report can say so.
//! - `parseHostsFile`: `[host."<url>"]` tables in the order of their table headers
//!   (`getSortedHosts`), then the top-level `server` (its settings are the top-level keys).
//! - `ConfigureHosts`: a last entry without a host becomes the upstream: `registry-1.docker.io`
//!   for `docker.io`, `http` for a localhost registry on a port other than 443 (with
//!   `skip_verify`), otherwise `https://<host>`, path `/v2`, all capabilities. An `http` host
//!   with explicit TLS settings on a port other than 80 is tried with HTTPS first and falls back
//!   to plain HTTP (`NewHTTPFallback`).
//! - The resolver (`resolver.go`) only asks hosts with the `resolve` capability for tags and
//!   hosts with `pull` for blobs, in order; any failure (connection, 404, 4xx) moves to the
//!   next host silently.
//!
//! Pure except [`load`], the thin I/O edge (stat, read, list the directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest `hosts.toml` read.
pub const MAX_HOSTS_FILE: u64 = 1 << 20;

/// A `hosts.toml` containerd would not accept (it ignores the file and pulls from the upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key} = {value}: {problem}")]
pub struct HostsConfigError {
    pub file: String,
    /// The TOML key (`host."https://m".capabilities`), or `(syntax)`.
    pub key: String,
    /// The offending value as written (shortened, control characters escaped).
    pub value: String,
    pub problem: String,
}

/// What a host may be used for (`capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
    pub referrers: bool,
}

impl Capabilities {
    pub const ALL: Self = Self {
        pull: true,
        resolve: true,
        push: true,
        referrers: true,
    };
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, n) in [
            (self.pull, "pull"),
            (self.resolve, "resolve"),
            (self.push, "push"),
            (self.referrers, "referrers"),
        ] {
            if on {
                v.push(n);
            }
        }
        v
    }
}

/// How containerd speaks to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    /// `http` with TLS settings on a port other than 80: HTTPS first, plain HTTP when the
    /// server does not speak TLS (containerd's `NewHTTPFallback`).
    HttpsThenHttp,
}

/// One host as containerd's `ConfigureHosts` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    pub scheme: Scheme,
    /// `host[:port]` as in the URL.
    pub host: String,
    /// API root, normally `/v2`.
    pub path: String,
    pub capabilities: Capabilities,
    pub ca: Vec<PathBuf>,
    /// (certificate, key) pairs; no key: the key is in the certificate file.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    pub skip_verify: Option<bool>,
    pub header: Vec<(String, Vec<String>)>,
    pub dial_timeout: Option<Duration>,
    /// The upstream (`server`, or the registry itself), not a mirror.
    pub upstream: bool,
}

impl RegistryHost {
    /// `https://m.example:5000/v2` (HTTPS-then-HTTP hosts are shown as `https`).
    pub fn url(&self) -> String {
        let s = match self.scheme {
            Scheme::Http => "http",
            _ => "https",
        };
        format!("{s}://{}{}", self.host, self.path)
    }
    /// Used for pulls (`pull` or `resolve`).
    pub fn pulls(&self) -> bool {
        self.capabilities.pull || self.capabilities.resolve
    }
}

/// What containerd would do for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsResolution {
    /// `host[:port]` of the registry as in image references.
    pub registry: String,
    /// The host directory used, if any.
    pub dir: Option<PathBuf>,
    /// The `hosts.toml` read, if any.
    pub file: Option<PathBuf>,
    /// Set when `hosts.toml` was ignored by containerd.
    pub invalid: Option<HostsConfigError>,
    /// Every host, in containerd's order.
    pub hosts: Vec<RegistryHost>,
    /// `ca`/`client` files named with an absolute path outside the mounted configuration
    /// directory ([`rebase`]): the in-cluster probe cannot read them, so it says so instead of
    /// calling them missing.
    pub unreadable: Vec<PathBuf>,
}

impl HostsResolution {
    /// The hosts a pull tries, in order: mirrors with `pull`/`resolve`, then the upstream.
    pub fn pull_hosts(&self) -> Vec<&RegistryHost> {
        self.hosts.iter().filter(|h| h.pulls()).collect()
    }
}

/// `host:port` -> `host_port_` (containerd's `hostDirectory`).
pub fn host_directory(host: &str) -> String {
    match host.rfind(':') {
        Some(i) if i > 0 => format!("{}_{}_", &host[..i], &host[i + 1..]),
        _ => host.to_string(),
    }
}

/// Candidate host directories in containerd's order (`hostPaths`).
pub fn host_paths(root: &Path, host: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let ch = host_directory(host);
    if ch != host {
        v.push(root.join(ch));
    }
    v.push(root.join(host));
    v.push(root.join("_default"));
    v
}

/// One parsed entry before the defaults (`hostConfig`); `host` empty for a missing `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub scheme: String,
    pub host: String,
    pub path: String,
    pub capabilities: Capabilities,
    pub ca: Option<Vec<PathBuf>>,
    pub client: Option<Vec<(PathBuf, Option<PathBuf>)>>,
    pub skip_verify: Option<bool>,
    pub header: Vec<(String, Vec<String>)>,
    pub dial_timeout: Option<Duration>,
}

fn shown(s: &str) -> String {
    crate::engine::inputs::shown_value(s)
}

/// Parses a `hosts.toml` (`parseHostsFile`): mirrors in header order, then the `server` entry.
/// `base_dir` makes relative `ca`/`client` paths absolute; `file` names the file in errors.
pub fn parse_hosts_file(
    file: &str,
    base_dir: &Path,
    text: &str,
) -> Result<Vec<HostEntry>, HostsConfigError> {
    let err = |key: &str, value: &str, problem: String| HostsConfigError {
        file: file.to_string(),
        key: key.to_string(),
        value: shown(value),
        problem,
    };
    let doc = toml_edit::Document::parse(text.to_string()).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        let at = e
            .span()
            .map(|s| {
                text.get(s.start..s.end.max(s.start + 1).min(text.len()))
                    .unwrap_or("")
            })
            .unwrap_or("");
        err(
            &format!("(syntax, line {line})"),
            at,
            e.message().to_string(),
        )
    })?;
    let root = doc.as_table();
    let mut out = Vec::new();
    // getSortedHosts: table headers `[host."x"...]` in document order; a header naming the
    // same host as the previous one does not add it again. Hosts given only as inline tables
    // or dotted keys are not listed, so containerd ignores them.
    let mut headers: Vec<(isize, String)> = Vec::new();
    if let Some(h) = root.get("host").and_then(|i| i.as_table()) {
        for (name, item) in h.iter() {
            collect_headers(name, item, &mut headers);
        }
    }
    headers.sort_by_key(|(p, _)| *p);
    let mut order: Vec<String> = Vec::new();
    for (_, name) in headers {
        if order.last() != Some(&name) {
            order.push(name);
        }
    }
    let hosts_table = match root.get("host") {
        None => None,
        Some(item) => Some(table_like(item).ok_or_else(|| {
            err(
                "host",
                &item_text(item),
                "must be a table of [host.\"<url>\"] sections".into(),
            )
        })?),
    };
    for name in &order {
        let key = format!("host.{}", quote_key(name));
        let item = hosts_table.and_then(|t| t.get(name));
        let table = match item {
            None => None,
            Some(i) => Some(
                table_like(i).ok_or_else(|| err(&key, &item_text(i), "must be a table".into()))?,
            ),
        };
        out.push(parse_host_config(name, base_dir, table, &key, &err)?);
    }
    let server = match root.get("server") {
        None => String::new(),
        Some(i) => i
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| err("server", &item_text(i), "must be a string".into()))?,
    };
    out.push(parse_host_config(&server, base_dir, Some(root), "", &err)?);
    Ok(out)
}

fn collect_headers(name: &str, item: &toml_edit::Item, out: &mut Vec<(isize, String)>) {
    fn walk(t: &toml_edit::Table, name: &str, out: &mut Vec<(isize, String)>) {
        if !t.is_implicit()
            && !t.is_dotted()
            && let Some(p) = t.position()
        {
            out.push((p, name.to_string()));
        }
        for (_, child) in t.iter() {
            if let Some(ct) = child.as_table() {
                walk(ct, name, out);
            }
        }
    }
    if let Some(t) = item.as_table() {
        walk(t, name, out);
    }
}

fn quote_key(k: &str) -> String {
    format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))
}

fn table_like(item: &toml_edit::Item) -> Option<&dyn toml_edit::TableLike> {
    item.as_table_like()
}

fn item_text(item: &toml_edit::Item) -> String {
    match item {
        toml_edit::Item::Value(v) => value_text(v),
        toml_edit::Item::Table(_) => "(table)".into(),
        toml_edit::Item::ArrayOfTables(_) => "(array of tables)".into(),
        toml_edit::Item::None => String::new(),
    }
}

fn value_text(v: &toml_edit::Value) -> String {
    match v {
        toml_edit::Value::String(s) => format!("\"{}\"", s.value()),
        toml_edit::Value::Integer(i) => i.value().to_string(),
        toml_edit::Value::Float(f) => f.value().to_string(),
        toml_edit::Value::Boolean(b) => b.value().to_string(),
        toml_edit::Value::Datetime(d) => d.value().to_string(),
        toml_edit::Value::Array(a) => {
            format!(
                "[{}]",
                a.iter().map(value_text).collect::<Vec<_>>().join(", ")
            )
        }
        toml_edit::Value::InlineTable(_) => "(inline table)".into(),
    }
}

fn abs(p: &str, base: &Path) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `makeStringSlice`: every element must be a string.
fn strings<E>(
    a: &toml_edit::Array,
    key: &str,
    err: &impl Fn(&str, &str, String) -> E,
) -> Result<Vec<String>, E> {
    a.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| err(key, &value_text(v), "must be a string".into()))
        })
        .collect()
}

/// `parseHostConfig` for one entry; `prefix` is `host."<url>"` or empty for the top level.
fn parse_host_config(
    server: &str,
    base_dir: &Path,
    table: Option<&dyn toml_edit::TableLike>,
    prefix: &str,
    err: &impl Fn(&str, &str, String) -> HostsConfigError,
) -> Result<HostEntry, HostsConfigError> {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let get = |k: &str| table.and_then(|t| t.get(k));
    let override_path = match get("override_path") {
        None => false,
        Some(i) => i.as_bool().ok_or_else(|| {
            err(
                &key("override_path"),
                &item_text(i),
                "must be true or false".into(),
            )
        })?,
    };
    let (mut scheme, mut host, mut path) = (String::new(), String::new(), String::new());
    if !server.is_empty() {
        let full = if server.starts_with("http") {
            server.to_string()
        } else {
            format!("https://{server}")
        };
        let shown_key = if prefix.is_empty() {
            "server".to_string()
        } else {
            prefix.to_string()
        };
        let u = url::Url::parse(&full).map_err(|e| {
            err(
                &shown_key,
                server,
                format!("is not a URL containerd can parse: {e}"),
            )
        })?;
        scheme = u.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(err(
                &shown_key,
                server,
                "has a scheme other than http or https".into(),
            ));
        }
        let Some(h) = u.host_str() else {
            return Err(err(&shown_key, server, "has no host".into()));
        };
        host = match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        };
        // Go's url.Parse keeps an empty path empty; `https://h/` has the path "/", which
        // containerd turns into "//v2" (path.Clean("/") + "/v2"), as written here.
        let after = &full[full.find("://").map(|i| i + 3).unwrap_or(0)..];
        let has_path = after.split(['?', '#']).next().unwrap_or("").contains('/');
        if !has_path {
            if !override_path {
                path = "/v2".into();
            }
        } else {
            let mut p = clean_path(u.path());
            if !p.ends_with("/v2") && !override_path {
                p.push_str("/v2");
            }
            path = p;
        }
    }
    let skip_verify = match get("skip_verify") {
        None => None,
        Some(i) => Some(i.as_bool().ok_or_else(|| {
            err(
                &key("skip_verify"),
                &item_text(i),
                "must be true or false".into(),
            )
        })?),
    };
    let capabilities = match get("capabilities") {
        None => Capabilities::ALL,
        Some(i) => {
            let k = key("capabilities");
            let a = i
                .as_array()
                .ok_or_else(|| err(&k, &item_text(i), "must be a list of strings".into()))?;
            let list = strings(a, &k, err)?;
            if list.is_empty() {
                Capabilities::ALL
            } else {
                let mut c = Capabilities::default();
                for s in list {
                    match s.to_ascii_lowercase().as_str() {
                        "pull" => c.pull = true,
                        "resolve" => c.resolve = true,
                        "push" => c.push = true,
                        "referrers" => c.referrers = true,
                        _ => {
                            return Err(err(
                                &k,
                                &s,
                                "is an unknown capability (pull, resolve, push, referrers)".into(),
                            ));
                        }
                    }
                }
                c
            }
        }
    };
    let ca = match get("ca") {
        None => None,
        Some(i) => {
            let k = key("ca");
            if let Some(s) = i.as_str() {
                Some(vec![abs(s, base_dir)])
            } else if let Some(a) = i.as_array() {
                Some(
                    strings(a, &k, err)?
                        .iter()
                        .map(|s| abs(s, base_dir))
                        .collect(),
                )
            } else {
                return Err(err(
                    &k,
                    &item_text(i),
                    "must be a file name or a list of file names".into(),
                ));
            }
        }
    };
    let client = match get("client") {
        None => None,
        Some(i) => {
            let k = key("client");
            let mut pairs = Vec::new();
            if let Some(s) = i.as_str() {
                pairs.push((abs(s, base_dir), None));
            } else if let Some(a) = i.as_array() {
                for v in a.iter() {
                    if let Some(s) = v.as_str() {
                        pairs.push((abs(s, base_dir), None));
                    } else if let Some(inner) = v.as_array() {
                        let s = strings(inner, &k, err)?;
                        if s.len() != 2 {
                            return Err(err(
                                &k,
                                &value_text(v),
                                "must be a [certificate, key] pair".into(),
                            ));
                        }
                        // containerd reads an empty key name as "key in the certificate file".
                        let key_file = (!s[1].is_empty()).then(|| abs(&s[1], base_dir));
                        pairs.push((abs(&s[0], base_dir), key_file));
                    } else {
                        return Err(err(
                            &k,
                            &value_text(v),
                            "must be a file name or a [certificate, key] pair".into(),
                        ));
                    }
                }
            } else {
                return Err(err(
                    &k,
                    &item_text(i),
                    "must be a file name or a list".into(),
                ));
            }
            Some(pairs)
        }
    };
    let mut header = Vec::new();
    if let Some(i) = get("header") {
        let k = key("header");
        let t = i
            .as_table_like()
            .ok_or_else(|| err(&k, &item_text(i), "must be a table".into()))?;
        for (name, v) in t.iter() {
            let hk = format!("{k}.{name}");
            let values = if let Some(s) = v.as_str() {
                vec![s.to_string()]
            } else if let Some(a) = v.as_array() {
                strings(a, &hk, err)?
            } else {
                return Err(err(
                    &hk,
                    &item_text(v),
                    "must be a string or a list of strings".into(),
                ));
            };
            header.push((name.to_string(), values));
        }
    }
    let dial_timeout = match get("dial_timeout") {
        None => None,
        Some(i) => {
            let k = key("dial_timeout");
            let s = i
                .as_str()
                .ok_or_else(|| err(&k, &item_text(i), "must be a duration string".into()))?;
            if s.is_empty() {
                None
            } else {
                Some(parse_go_duration(s).ok_or_else(|| {
                    err(
                        &k,
                        s,
                        "is not a Go duration (e.g. \"5s\", \"1m30s\")".into(),
                    )
                })?)
            }
        }
    };
    Ok(HostEntry {
        scheme,
        host,
        path,
        capabilities,
        ca,
        client,
        skip_verify,
        header,
        dial_timeout,
    })
}

/// Go's `path.Clean` for an absolute URL path.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `time.ParseDuration` for non-negative values (`300ms`, `1m30s`, `1.5h`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * mult;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// `docker.IsLocalhost`: `localhost` or a loopback address, with or without a port.
pub fn is_localhost(host: &str) -> bool {
    let h = split_host_port(host).0;
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// (`host`, `port`) of `host[:port]` / `[v6]:port`, like Go's `net.SplitHostPort` (no port: "").
fn split_host_port(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        let port = rest[end + 1..].strip_prefix(':').unwrap_or("");
        return (&rest[..end], port);
    }
    match s.rfind(':') {
        Some(i) if s[..i].find(':').is_none() => (&s[..i], &s[i + 1..]),
        _ => (s, ""),
    }
}

/// `ConfigureHosts`: defaults for the upstream and the HTTPS-then-HTTP rule. `entries` is
/// `None` when no host directory exists.
pub fn configure_hosts(registry: &str, entries: Option<Vec<HostEntry>>) -> Vec<RegistryHost> {
    let mut entries = entries.unwrap_or_else(|| vec![empty_entry()]);
    let n = entries.len();
    if let Some(last) = entries.last_mut()
        && last.host.is_empty()
    {
        if registry == "docker.io" {
            last.scheme = "https".into();
            last.host = "registry-1.docker.io".into();
        } else if is_localhost(registry) {
            last.host = registry.to_string();
            let port = split_host_port(registry).1;
            last.scheme = if port.is_empty() || port == "443" {
                "https".into()
            } else {
                "http".into()
            };
            if port != "80" {
                last.skip_verify = Some(true);
            }
        } else {
            last.host = registry.to_string();
            last.scheme = "https".into();
        }
        last.path = "/v2".into();
        last.capabilities = Capabilities::ALL;
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let explicit_tls = e.ca.is_some() || e.client.is_some() || e.skip_verify.is_some();
            let scheme = if e.scheme == "http" {
                if explicit_tls && split_host_port(&e.host).1 != "80" {
                    Scheme::HttpsThenHttp
                } else {
                    Scheme::Http
                }
            } else {
                Scheme::Https
            };
            RegistryHost {
                scheme,
                host: e.host,
                path: e.path,
                capabilities: e.capabilities,
                ca: e.ca.unwrap_or_default(),
                client: e.client.unwrap_or_default(),
                skip_verify: e.skip_verify,
                header: e.header,
                dial_timeout: e.dial_timeout,
                upstream: i + 1 == n,
            }
        })
        .collect()
}

fn empty_entry() -> HostEntry {
    HostEntry {
        scheme: String::new(),
        host: String::new(),
        path: String::new(),
        capabilities: Capabilities::default(),
        ca: None,
        client: None,
        skip_verify: None,
        header: Vec::new(),
        dial_timeout: None,
    }
}

/// `loadCertFiles`: Docker's layout (`*.crt` CAs, `*.cert` with an optional `*.key`), given the
/// file names of the directory (sorted, as Go's `os.ReadDir` returns them).
pub fn cert_files_entry(
    dir: &Path,
    names: &[String],
    has_file: impl Fn(&str) -> bool,
) -> HostEntry {
    let mut e = empty_entry();
    let mut names = names.to_vec();
    names.sort();
    for n in &names {
        if n.ends_with(".crt") {
            e.ca.get_or_insert_with(Vec::new).push(dir.join(n));
        }
        if let Some(stem) = n.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            let key = has_file(&key).then(|| dir.join(&key));
            e.client
                .get_or_insert_with(Vec::new)
                .push((dir.join(n), key));
        }
    }
    e
}

/// Reads the host's files under `host_root` (the in-cluster probe mounts the host's
/// configuration directory `D` read-only at `<host_root>/D` and is given that path as `mounted`):
/// `ca`/`client` paths that `hosts.toml` names absolutely are the host's, so `/etc/x/ca.crt`
/// becomes `<host_root>/etc/x/ca.crt`. Those that land outside `mounted` are not mounted and
/// are listed in [`HostsResolution::unreadable`]. Relative paths were resolved against the
/// host directory under `mounted` already and stay as they are.
pub fn rebase(res: &mut HostsResolution, host_root: &Path, mounted: &Path) {
    let mut unreadable = Vec::new();
    let mut map = |p: &mut PathBuf| {
        if p.starts_with(mounted) {
            return;
        }
        if let Ok(rest) = p.strip_prefix("/") {
            *p = host_root.join(rest);
        }
        if !p.starts_with(mounted) && !unreadable.contains(p) {
            unreadable.push(p.clone());
        }
    };
    for h in &mut res.hosts {
        h.ca.iter_mut().for_each(&mut map);
        for (cert, key) in &mut h.client {
            map(cert);
            if let Some(k) = key {
                map(k);
            }
        }
    }
    res.unreadable = unreadable;
}

/// The I/O edge: what containerd would use for `registry` (`host[:port]`) with its
/// `config_path` set to `root`. Errors only for a directory or file that cannot be read.
pub fn load(root: &Path, registry: &str) -> Result<HostsResolution, String> {
    let mut dir = None;
    for p in host_paths(root, registry) {
        match std::fs::metadata(&p) {
            Ok(_) => {
                dir = Some(p);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    let Some(dir) = dir else {
        return Ok(HostsResolution {
            registry: registry.to_string(),
            dir: None,
            file: None,
            invalid: None,
            hosts: configure_hosts(registry, None),
            unreadable: Vec::new(),
        });
    };
    let file = dir.join("hosts.toml");
    let text = match std::fs::metadata(&file) {
        Ok(m) if m.len() > MAX_HOSTS_FILE => {
            return Err(format!(
                "{}: larger than {MAX_HOSTS_FILE} bytes",
                file.display()
            ));
        }
        Ok(_) => std::fs::read(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .map(|b| String::from_utf8_lossy(&b).into_owned())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let cert_files = || -> Result<HostEntry, String> {
        let names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        Ok(cert_files_entry(&dir, &names, |n| dir.join(n).exists()))
    };
    let (entries, invalid, used_file) = if text.is_empty() {
        (vec![cert_files()?], None, None)
    } else {
        match parse_hosts_file(&file.display().to_string(), &dir, &text) {
            Ok(entries) => (entries, None, Some(file)),
            Err(e) => (vec![cert_files()?], Some(e), Some(file)),
        }
    };
    Ok(HostsResolution {
        registry: registry.to_string(),
        dir: Some(dir),
        file: used_file,
        invalid,
        hosts: configure_hosts(registry, Some(entries)),
        unreadable: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<RegistryHost>, HostsConfigError> {
        let entries = parse_hosts_file(
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            Path::new("/etc/containerd/certs.d/docker.io"),
            text,
        )?;
        Ok(configure_hosts("docker.io", Some(entries)))
    }

    // The examples below are containerd's docs/hosts.md.

    #[test]
    fn docs_mirror_with_upstream_server() {
        let hosts = parse(
            r#"
server = "https://registry-1.docker.io"    # Exclude this to not use upstream

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]                   # Requires less trust, won't resolve tag to digest from this host
[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  ca = "docker-mirror.crt"                  # Or absolute path /etc/containerd/certs.d/docker.io/docker-mirror.crt
"#,
        )
        .unwrap();
        let urls: Vec<String> = hosts.iter().map(|h| h.url()).collect();
        assert_eq!(
            urls,
            [
                "https://public-mirror.example.com/v2",
                "https://docker-mirror.internal/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert!(hosts[0].capabilities.pull && !hosts[0].capabilities.resolve);
        assert_eq!(
            hosts[1].ca,
            [PathBuf::from(
                "/etc/containerd/certs.d/docker.io/docker-mirror.crt"
            )]
        );
        assert!(hosts[2].upstream && !hosts[0].upstream);
        assert_eq!(hosts[2].capabilities, Capabilities::ALL);
    }

    #[test]
    fn docs_without_server_uses_the_default_upstream() {
        // "Setup Default Mirror for All Registries" / "Bypass TLS Verification Example".
        let entries = parse_hosts_file(
            "/etc/containerd/certs.d/192.168.31.250:5000/hosts.toml",
            Path::new("/etc/containerd/certs.d/192.168.31.250_5000_"),
            r#"
server = "https://registry-1.docker.io"

[host."http://192.168.31.250:5000"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
"#,
        )
        .unwrap();
        let hosts = configure_hosts("192.168.31.250:5000", Some(entries));
        // http with TLS settings: HTTPS first, then plain HTTP.
        assert_eq!(hosts[0].scheme, Scheme::HttpsThenHttp);
        assert_eq!(hosts[0].host, "192.168.31.250:5000");
        assert_eq!(hosts[0].skip_verify, Some(true));

        let hosts = parse(
            r#"
[host."https://mirror.example"]
  capabilities = ["pull", "resolve"]
"#,
        )
        .unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].url(), "https://registry-1.docker.io/v2");
        assert!(hosts[1].upstream);
    }

    #[test]
    fn docs_client_pairs_headers_and_override_path() {
        let hosts = parse(
            r#"
server = "https://docker.io"

[host."https://registry-1.docker.io"]
  capabilities = ["pull", "resolve", "push"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://registry.example.com/v2/custom"]
  capabilities = ["pull", "resolve"]
  override_path = true

[host."https://plain.example"]
  client = "client.pem"
  [host."https://plain.example".header]
    x-custom-2 = ["value1", "value2"]
    x-custom-1 = "value"
"#,
        )
        .unwrap();
        assert_eq!(hosts[0].ca.len(), 2);
        assert_eq!(
            hosts[0].client,
            [
                (
                    PathBuf::from("/etc/certs/client.cert"),
                    Some(PathBuf::from("/etc/certs/client.key"))
                ),
                (PathBuf::from("/etc/certs/client.pem"), None)
            ]
        );
        assert_eq!(hosts[1].path, "/v2/custom");
        assert_eq!(hosts[1].url(), "https://registry.example.com/v2/custom");
        assert_eq!(
            hosts[2].client,
            [(
                PathBuf::from("/etc/containerd/certs.d/docker.io/client.pem"),
                None
            )]
        );
        assert_eq!(
            hosts[2].header,
            [
                (
                    "x-custom-2".to_string(),
                    vec!["value1".into(), "value2".into()]
                ),
                ("x-custom-1".to_string(), vec!["value".into()])
            ]
        );
        assert_eq!(hosts[3].url(), "https://docker.io/v2");
    }

    #[test]
    fn order_follows_table_headers_and_ignores_inline_hosts() {
        let hosts = parse(
            r#"
host."https://dotted.example".capabilities = ["pull"]
[host."https://b.example"]
[host."https://a.example".header]
  x = "1"
[host."https://c.example"]
"#,
        )
        .unwrap();
        let urls: Vec<String> = hosts.iter().map(|h| h.url()).collect();
        assert_eq!(
            urls,
            [
                "https://b.example/v2",
                "https://a.example/v2",
                "https://c.example/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
    }

    #[test]
    fn push_only_mirrors_are_not_used_for_pulls() {
        let entries = parse_hosts_file(
            "f",
            Path::new("/d"),
            "[host.\"https://push.example\"]\ncapabilities = [\"push\"]\n[host.\"https://m.example:5000\"]\ncapabilities = [\"pull\"]\n",
        )
        .unwrap();
        let r = HostsResolution {
            registry: "r.example".into(),
            dir: None,
            file: None,
            invalid: None,
            hosts: configure_hosts("r.example", Some(entries)),
            unreadable: Vec::new(),
        };
        let pulls: Vec<String> = r.pull_hosts().iter().map(|h| h.url()).collect();
        assert_eq!(pulls, ["https://m.example:5000/v2", "https://r.example/v2"]);
    }

    #[test]
    fn rejected_files_name_the_file_the_key_and_the_value() {
        let cases = [
            (
                "[host.\"https://m\"]\ncapabilities = [\"pull\", \"fetch\"]\n",
                "host.\"https://m\".capabilities",
                "fetch",
            ),
            ("skip_verify = \"yes\"\n", "skip_verify", "\"yes\""),
            ("ca = 5\n", "ca", "5"),
            (
                "[host.\"https://m\"]\nclient = [[\"a\"]]\n",
                "host.\"https://m\".client",
                "[\"a\"]",
            ),
            ("server = 1\n", "server", "1"),
            (
                "dial_timeout = \"5 seconds\"\n",
                "dial_timeout",
                "5 seconds",
            ),
            (
                "[host.\"https://m\".header]\nx = 1\n",
                "host.\"https://m\".header.x",
                "1",
            ),
            (
                "[host.\"https://m:99999\"]\n",
                "host.\"https://m:99999\"",
                "https://m:99999",
            ),
        ];
        for (text, key, value) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(
                e.file, "/etc/containerd/certs.d/docker.io/hosts.toml",
                "{text}"
            );
            assert_eq!(e.key, key, "{text}");
            assert_eq!(e.value, value, "{text}");
            assert!(e.to_string().contains(key), "{e}");
        }
        let e = parse("server = \"https://x\n").unwrap_err();
        assert!(e.key.starts_with("(syntax, line 1"), "{e:?}");
    }

    #[test]
    fn default_upstreams() {
        let h = configure_hosts("localhost:5000", None);
        assert_eq!(h[0].scheme, Scheme::HttpsThenHttp);
        assert_eq!(h[0].skip_verify, Some(true));
        let h = configure_hosts("localhost", None);
        assert_eq!(h[0].scheme, Scheme::Https);
        let h = configure_hosts("127.0.0.1:80", None);
        assert_eq!(h[0].scheme, Scheme::Http);
        let h = configure_hosts("r.example:5000", None);
        assert_eq!(h[0].url(), "https://r.example:5000/v2");
        assert!(h[0].upstream);
    }

    #[test]
    fn host_directories_follow_containerd() {
        assert_eq!(host_directory("r.example:5000"), "r.example_5000_");
        assert_eq!(
            host_paths(Path::new("/c"), "r.example:5000"),
            [
                PathBuf::from("/c/r.example_5000_"),
                PathBuf::from("/c/r.example:5000"),
                PathBuf::from("/c/_default")
            ]
        );
        assert_eq!(host_paths(Path::new("/c"), "r.example").len(), 2);
    }

    #[test]
    fn load_uses_default_dir_and_falls_back_on_invalid_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("_default")).unwrap();
        std::fs::write(
            root.path().join("_default/hosts.toml"),
            "[host.\"https://mirror.local\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
        )
        .unwrap();
        let r = load(root.path(), "r.example:5000").unwrap();
        assert_eq!(r.dir, Some(root.path().join("_default")));
        assert_eq!(r.pull_hosts().len(), 2);
        assert_eq!(r.hosts[1].url(), "https://r.example:5000/v2");

        let d = root.path().join("r.example_5000_");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("hosts.toml"), "skip_verify = 1\n").unwrap();
        std::fs::write(d.join("ca.crt"), "x").unwrap();
        let r = load(root.path(), "r.example:5000").unwrap();
        let e = r.invalid.clone().unwrap();
        assert_eq!(e.key, "skip_verify");
        // containerd ignores the file: upstream only, with the directory's *.crt files.
        assert_eq!(r.hosts.len(), 1);
        assert_eq!(r.hosts[0].ca, [d.join("ca.crt")]);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("5 s"), None);
    }
}
