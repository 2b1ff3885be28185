//! `regcheck check`: validate input, build the plan and the probe configuration, run, diagnose.
//!
//! Input handling is kept apart from the run so that bad input is refused before anything is
//! sent on the network (exit code 2).

use crate::engine::authparse::{Credentials, parse_docker_config};
use crate::engine::evidence::{Expect, IpFamily, Role};
use crate::engine::findings::Report;
use crate::engine::inputs::{self, Endpoint, InputError, InputFields, PlanInput};
use crate::engine::probe::{self, ProbeConfig, TargetPolicy, dns, net::Trust};
use crate::engine::proxy::ProxyConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Raw input of a check, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct CheckInput {
    pub registry: String,
    pub data_endpoints: Vec<String>,
    pub regions: Vec<String>,
    pub also: Vec<String>,
    pub dns_servers: Vec<String>,
    pub resolv_conf: PathBuf,
    pub hosts_file: PathBuf,
    pub expect: String,
    /// `--egress-ip`: expected egress addresses or CIDRs (repeatable, or comma lists).
    pub egress_ips: Vec<String>,
    /// `--ip-family`: ipv4, ipv6 or dual; absent: unknown.
    pub ip_family: Option<String>,
    /// `--proxy URL`: overrides the environment.
    pub proxy: Option<String>,
    /// `--no-proxy`: never use a proxy.
    pub no_proxy: bool,
    pub ca_files: Vec<PathBuf>,
    pub image: Option<String>,
    pub username: Option<String>,
    /// Read from standard input by the caller when `--password-stdin` is given.
    pub password: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub timeout: String,
    /// Apply the in-cluster target policy (no loopback).
    pub strict_targets: bool,
    /// `--containerd-config-dir`: containerd's `config_path` (hosts.toml per registry).
    pub containerd_config_dir: Option<PathBuf>,
    /// `--runtime-proxy-from`: systemd unit files/drop-ins whose `Environment=` gives the
    /// runtime's proxy; a directory stands for its `*.conf` files (a drop-in directory).
    pub runtime_proxy_from: Vec<PathBuf>,
    /// The probe's use of `runtime_proxy_from`: a missing path is no drop-in, and drop-ins
    /// that set no proxy variable leave the proxy to `--proxy` / the environment. Without it
    /// (`regcheck check`), the drop-ins alone decide (no proxy variable = no proxy).
    pub runtime_proxy_fallback: bool,
    /// `--host-resolv-conf`: the host's resolv.conf (containerd's resolver). It becomes the
    /// system resolver; `resolv_conf` is then the kubelet's, compared with it.
    pub host_resolv_conf: Option<PathBuf>,
    /// `--host-root`: where the host's file system is mounted (the in-cluster probe reads the
    /// host's files under `/host`): absolute paths in `hosts.toml` are read under it.
    pub host_root: Option<PathBuf>,
    /// `--egress-profile`: egress profiles whose hosts are probed (AKS, EKS, GKE, ...).
    pub egress_profiles: Vec<String>,
    /// `--egress-profile-param`: `name=value` parameters of the profiles.
    pub egress_params: Vec<String>,
    /// `--egress-host`: plain hosts the cluster must reach besides the registry.
    pub egress_hosts: Vec<String>,
}

/// The most a check may take.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A validated check, ready to run.
pub struct PreparedCheck {
    pub registry: String,
    pub endpoints: Vec<Endpoint>,
    pub config: ProbeConfig,
    /// What containerd would try for the registry (`--containerd-config-dir`).
    pub containerd: Option<crate::engine::hostsconfig::HostsResolution>,
    /// Where the proxy settings came from (recorded in the evidence).
    pub proxy_source: String,
    /// The host's and the kubelet's resolver (`--host-resolv-conf`).
    pub resolvers: Option<crate::engine::evidence::ResolverEvidence>,
    /// The egress hosts (`--egress-profile`, `--egress-host`); `None` when none were named.
    pub egress: Option<crate::engine::egress::EgressPlan>,
}

fn read_file(field: &str, path: &std::path::Path, max: u64) -> Result<String, InputError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| InputError::new(field, &shown, format!("cannot be read: {e}")))?;
    if meta.len() > max {
        return Err(InputError::new(
            field,
            &shown,
            format!("is larger than {max} bytes"),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(field, &shown, format!("cannot be read: {e}")))?;
    String::from_utf8(bytes).map_err(|_| InputError::new(field, &shown, "is not UTF-8 text"))
}

/// Validates everything and reads the local configuration files; sends nothing.
pub fn prepare(
    input: &CheckInput,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PreparedCheck, InputError> {
    let endpoints = inputs::plan(&PlanInput {
        registry: input.registry.clone(),
        data_endpoints: input.data_endpoints.clone(),
        regions: input.regions.clone(),
        also: input.also.clone(),
        fields: InputFields::FLAGS,
    })?;
    let login = endpoints
        .iter()
        .find(|e| e.role == Role::LoginServer)
        .ok_or_else(|| InputError::new("REGISTRY", &input.registry, "is required"))?;
    let egress = egress_plan(input)?;
    let registry = login.host.clone();
    let dns_servers = input
        .dns_servers
        .iter()
        .map(|s| inputs::parse_dns_server(s))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = inputs::parse_duration("--timeout", &input.timeout, MAX_TIMEOUT)?;
    let expect: Expect = input.expect.parse().map_err(|_| {
        InputError::new(
            "--expect",
            &input.expect,
            "is not one of any, public, private",
        )
    })?;
    let egress_ips = crate::engine::denial::parse_egress_ips("--egress-ip", &input.egress_ips)?;
    let ip_family = input
        .ip_family
        .as_deref()
        .map(|f| {
            f.parse::<IpFamily>()
                .map_err(|_| InputError::new("--ip-family", f, "is not one of ipv4, ipv6, dual"))
        })
        .transpose()?;
    let pod_resolv =
        dns::parse_resolv_conf(&read_file("--resolv-conf", &input.resolv_conf, 1 << 20)?);
    let (resolv, kubelet_resolv, resolvers) = match &input.host_resolv_conf {
        None => (pod_resolv, None, None),
        Some(path) => {
            let host = dns::parse_resolv_conf(&read_file("--host-resolv-conf", path, 1 << 20)?);
            if host.nameservers.is_empty() {
                // glibc and Go then ask 127.0.0.1:53; say so rather than guess.
                return Err(InputError::new(
                    "--host-resolv-conf",
                    &path.display().to_string(),
                    "has no usable nameserver line",
                ));
            }
            let differ = host != pod_resolv;
            let source = |file: &std::path::Path, c: &dns::ResolvConf| {
                crate::engine::evidence::ResolvSource {
                    file: file.display().to_string(),
                    nameservers: c.nameservers.iter().map(|n| n.to_string()).collect(),
                    search: c.search.clone(),
                }
            };
            let evidence = crate::engine::evidence::ResolverEvidence {
                host: source(path, &host),
                kubelet: source(&input.resolv_conf, &pod_resolv),
                differ,
                containerd_uses: format!("the host's {}", path.display()),
            };
            (host, differ.then_some(pod_resolv), Some(evidence))
        }
    };
    if resolv.nameservers.is_empty() && dns_servers.is_empty() {
        return Err(InputError::new(
            "--resolv-conf",
            &input.resolv_conf.display().to_string(),
            "has no usable nameserver line; give one with --dns-server",
        ));
    }
    // A missing hosts file is normal in minimal images.
    let hosts = match std::fs::metadata(&input.hosts_file) {
        Ok(_) => dns::parse_hosts(&read_file("--hosts-file", &input.hosts_file, 4 << 20)?),
        Err(_) => Default::default(),
    };
    let runtime = if input.runtime_proxy_from.is_empty() {
        None
    } else {
        runtime_proxy(input)?
    };
    let proxy_source;
    let proxy = if let Some((config, source)) = runtime {
        proxy_source = source;
        Some(config)
    } else if input.no_proxy {
        proxy_source = "none (--no-proxy)".to_string();
        None
    } else if let Some(url) = &input.proxy {
        proxy_source = "--proxy".to_string();
        let no_proxy = env("NO_PROXY").or_else(|| env("no_proxy"));
        Some(
            ProxyConfig::from_env(|k| match k {
                "HTTPS_PROXY" => Some(url.clone()),
                "NO_PROXY" => no_proxy.clone(),
                _ => None,
            })
            .map_err(|mut e| {
                e.field = "--proxy".into();
                e
            })?,
        )
    } else {
        let set: Vec<&str> = [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
        ]
        .into_iter()
        .filter(|k| env(k).is_some_and(|v| !v.is_empty()))
        .collect();
        proxy_source = if set.is_empty() {
            "environment (no proxy variable set)".to_string()
        } else {
            format!("environment ({})", set.join(", "))
        };
        Some(ProxyConfig::from_env(&env)?)
    };
    let trust = Trust::load(&input.ca_files)?;
    let image = input
        .image
        .as_deref()
        .map(|i| inputs::parse_image("--image", i, (&registry, login.port)))
        .transpose()?;
    let credentials = credentials(
        input,
        &crate::engine::probe::host_header(&registry, login.port),
    )?;
    if credentials.is_some() && image.is_none() {
        return Err(InputError::new(
            "--username",
            input.username.as_deref().unwrap_or("(docker config)"),
            "credentials are only used with --image",
        ));
    }
    let containerd = match &input.containerd_config_dir {
        None => None,
        Some(dir) => {
            let shown = dir.display().to_string();
            if !dir.is_dir() {
                return Err(InputError::new(
                    "--containerd-config-dir",
                    &shown,
                    "is not a directory",
                ));
            }
            let name = crate::engine::probe::host_header(&registry, login.port);
            // containerd looks the registry up as written in image references: host[:port].
            let mut res = crate::engine::hostsconfig::load(dir, &name)
                .map_err(|e| InputError::new("--containerd-config-dir", &shown, e))?;
            if let Some(root) = &input.host_root {
                crate::engine::hostsconfig::rebase(&mut res, root, dir);
            }
            Some(res)
        }
    };
    Ok(PreparedCheck {
        containerd,
        proxy_source,
        resolvers,
        egress,
        registry,
        endpoints,
        config: ProbeConfig {
            resolv,
            kubelet_resolv,
            hosts,
            dns_servers,
            proxy,
            trust,
            policy: if input.strict_targets {
                TargetPolicy::in_cluster(vec![])
            } else {
                TargetPolicy::cli()
            },
            timeout,
            expect,
            egress_ips,
            ip_family,
            image,
            credentials,
        },
    })
}

/// The egress plan of `--egress-profile`, `--egress-profile-param` and `--egress-host`.
fn egress_plan(
    input: &CheckInput,
) -> Result<Option<crate::engine::egress::EgressPlan>, InputError> {
    use crate::engine::egress::{self, EgressFields, EgressInput};
    let f = EgressFields::FLAGS;
    let params = input
        .egress_params
        .iter()
        .map(|p| egress::parse_param(f.params, p))
        .collect::<Result<Vec<_>, _>>()?;
    let e = EgressInput {
        profiles: input.egress_profiles.clone(),
        params,
        hosts: input.egress_hosts.clone(),
    };
    if e.is_empty() {
        return Ok(None);
    }
    egress::plan(&e, f).map(Some)
}

/// The proxy of the runtime's systemd unit: `Environment=` of the given files (a directory
/// stands for its `*.conf` drop-ins), in systemd's order (by file name), with where it came
/// from. `None` with [`CheckInput::runtime_proxy_fallback`] when no drop-in sets a proxy
/// variable (the other proxy settings then apply).
fn runtime_proxy(input: &CheckInput) -> Result<Option<(ProxyConfig, String)>, InputError> {
    let mut files = Vec::new();
    for p in &input.runtime_proxy_from {
        let shown = p.display().to_string();
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let rd = std::fs::read_dir(p).map_err(|e| {
                    InputError::new(
                        "--runtime-proxy-from",
                        &shown,
                        format!("cannot be read: {e}"),
                    )
                })?;
                for e in rd.filter_map(|e| e.ok()) {
                    let f = e.path();
                    // systemd reads `*.conf` drop-ins only.
                    if f.extension().is_some_and(|x| x == "conf")
                        && std::fs::metadata(&f).is_ok_and(|m| m.is_file())
                    {
                        files.push(f);
                    }
                }
            }
            Ok(_) => files.push(p.clone()),
            Err(e) if input.runtime_proxy_fallback && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(InputError::new(
                    "--runtime-proxy-from",
                    &shown,
                    format!("cannot be read: {e}"),
                ));
            }
        }
    }
    crate::engine::dropin::sort_dropins(&mut files);
    let mut env = crate::engine::dropin::UnitEnv::default();
    for f in &files {
        let text = read_file("--runtime-proxy-from", f, 1 << 20)?;
        env.apply(&f.display().to_string(), &text);
    }
    for note in &env.ignored {
        tracing::warn!("--runtime-proxy-from: {note}");
    }
    let names = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ];
    let set: Vec<&str> = names
        .into_iter()
        .filter(|k| env.get(k).is_some_and(|v| !v.is_empty()))
        .collect();
    if set.is_empty() && input.runtime_proxy_fallback {
        return Ok(None);
    }
    let config = ProxyConfig::from_env(|k| env.get(k).map(str::to_string)).map_err(|e| {
        InputError::new(
            "--runtime-proxy-from",
            &e.value,
            format!("{}: {}", e.field, e.problem),
        )
    })?;
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let source = match (shown.is_empty(), set.is_empty()) {
        (true, _) => "containerd drop-ins: none found (no proxy)".to_string(),
        (false, true) => format!(
            "containerd drop-ins {} (no proxy variable: no proxy)",
            shown.join(", ")
        ),
        (false, false) => format!(
            "containerd drop-ins {} ({})",
            shown.join(", "),
            set.join(", ")
        ),
    };
    Ok(Some((config, source)))
}

fn credentials(input: &CheckInput, registry: &str) -> Result<Option<Credentials>, InputError> {
    match (&input.username, &input.password, &input.docker_config) {
        (Some(_), _, Some(_)) => Err(InputError::new(
            "--docker-config",
            &input
                .docker_config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "cannot be combined with --username",
        )),
        (Some(u), Some(p), None) => {
            if u.is_empty() {
                return Err(InputError::new("--username", u, "must not be empty"));
            }
            Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }))
        }
        (Some(u), None, None) => Err(InputError::new("--username", u, "needs --password-stdin")),
        (None, Some(_), _) => Err(InputError::new(
            "--password-stdin",
            "(hidden)",
            "needs --username",
        )),
        (None, None, Some(path)) => {
            let text = read_file("--docker-config", path, 1 << 20)?;
            let creds = parse_docker_config(text.as_bytes(), registry)?;
            if creds.is_none() {
                return Err(InputError::new(
                    "--docker-config",
                    &path.display().to_string(),
                    format!("has no entry for {registry}"),
                ));
            }
            Ok(creds)
        }
        (None, None, None) => Ok(None),
    }
}

/// Runs a prepared check and diagnoses it.
pub async fn run(check: &PreparedCheck) -> Report {
    let login_port = check
        .endpoints
        .iter()
        .find(|e| e.role == Role::LoginServer)
        .map(|e| e.port)
        .unwrap_or(inputs::HTTPS_PORT);
    // containerd's mirrors are probed beside the engine, each with its own budget.
    let walk = async {
        match &check.containerd {
            Some(res) => Some(
                crate::engine::mirrors::walk(res, (&check.registry, login_port), &check.config)
                    .await,
            ),
            None => None,
        }
    };
    let egress = async {
        match &check.egress {
            Some(plan) => Some(probe::egress::run(plan, &check.config).await),
            None => None,
        }
    };
    let (mut evidence, hosts, egress) = tokio::join!(
        probe::run(&check.registry, &check.endpoints, &check.config),
        walk,
        egress
    );
    evidence.egress = egress;
    if let (Some(res), Some(hosts)) = (&check.containerd, hosts) {
        evidence.containerd = Some(crate::engine::mirrors::summarise(res, hosts, &evidence));
    }
    evidence.proxy_source = Some(check.proxy_source.clone());
    evidence.resolvers = check.resolvers.clone();
    crate::engine::diagnosis::report(evidence)
}
