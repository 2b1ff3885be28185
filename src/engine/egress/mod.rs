//! Egress checks: hosts a cluster must reach besides its registry (an egress profile's
//! documented FQDNs, or plain hosts), probed with DNS, TCP, TLS and one harmless request,
//! without registry semantics.
//!
//! [`plan`] turns what the user named (`--egress-profile`, `--egress-profile-param`,
//! `--egress-host`, or `spec.egress`) into the hosts to probe and the rules that cannot be
//! probed (a parameter not given, a wildcard without a known host), each with the rule it
//! comes from. Nothing here does I/O: `crate::engine::probe::egress` probes the plan.

pub mod profiles;

use crate::engine::evidence::{EgressNotProbed, EgressRule};
use crate::engine::inputs::{self, HTTPS_PORT, InputError};
use profiles::Probe;

/// Most hosts probed for egress in one check.
pub const MAX_EGRESS_HOSTS: usize = 32;

/// How errors name the egress fields: the command line's flags, or the spec's paths (with the
/// index of the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressFields {
    pub profiles: &'static str,
    pub params: &'static str,
    pub hosts: &'static str,
    /// Spec paths name the entry: `spec.egress.profiles[0]`.
    pub indexed: bool,
}

impl EgressFields {
    pub const FLAGS: EgressFields = EgressFields {
        profiles: "--egress-profile",
        params: "--egress-profile-param",
        hosts: "--egress-host",
        indexed: false,
    };
    pub const SPEC: EgressFields = EgressFields {
        profiles: "spec.egress.profiles",
        params: "spec.egress.parameters",
        hosts: "spec.egress.hosts",
        indexed: true,
    };

    fn at(&self, base: &str, i: usize) -> String {
        if self.indexed {
            format!("{base}[{i}]")
        } else {
            base.to_string()
        }
    }

    fn param(&self, name: &str) -> String {
        if self.indexed {
            format!("{}.{name}", self.params)
        } else {
            self.params.to_string()
        }
    }
}

/// What the user asked for, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressInput {
    pub profiles: Vec<String>,
    /// `name=value` pairs (`--egress-profile-param region=eastus`, `spec.egress.parameters`).
    pub params: Vec<(String, String)>,
    /// Plain hosts, `host[:port]`.
    pub hosts: Vec<String>,
}

impl EgressInput {
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.params.is_empty() && self.hosts.is_empty()
    }
}

/// One host to probe and the rule that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressTarget {
    pub host: String,
    pub port: u16,
    pub rule: EgressRule,
}

/// The egress part of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// The input in canonical form (profile names as the data spells them), for the probe
    /// Jobs' arguments.
    pub input: EgressInput,
    pub targets: Vec<EgressTarget>,
    pub not_probed: Vec<EgressNotProbed>,
}

/// Parses `name=value` (`--egress-profile-param`).
pub fn parse_param(field: &str, s: &str) -> Result<(String, String), InputError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(InputError::new(
            field,
            s,
            "is not name=value (e.g. region=eastus)",
        )),
    }
}

/// A parameter value: DNS labels (a region, an account id, an API server FQDN), lowercased.
fn check_param_value(field: &str, name: &str, value: &str) -> Result<String, InputError> {
    let bad = |why: &str| {
        Err(InputError::new(
            field,
            value,
            format!("is not a valid value for {name}: {why}"),
        ))
    };
    if value.len() > 253 {
        return bad("longer than 253 characters");
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return bad(&format!(
            "'{}' is not a letter, digit, '-' or '.'",
            c.escape_default()
        ));
    }
    if value
        .split('.')
        .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-') || l.len() > 63)
    {
        return bad("an empty label, or one that starts or ends with '-'");
    }
    Ok(value.to_ascii_lowercase())
}

/// Fills `{name}` placeholders; `Err(missing names)` when some were not given.
fn fill(template: &str, params: &[(String, String)]) -> Result<String, Vec<String>> {
    let mut out = template.to_string();
    let mut missing = Vec::new();
    for name in profiles::placeholders(template) {
        match params.iter().find(|(k, _)| k == name) {
            Some((_, v)) => out = out.replace(&format!("{{{name}}}"), v),
            None => missing.push(name.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// Validates the input and lists the hosts to probe, then the rules that are not probed.
/// Profiles may repeat hosts (`mcr.microsoft.com` in several profiles): a host and port is
/// probed once, under the first rule that names it.
pub fn plan(input: &EgressInput, f: EgressFields) -> Result<EgressPlan, InputError> {
    let mut canonical = EgressInput::default();
    let mut chosen: Vec<&'static profiles::Profile> = Vec::new();
    for (i, name) in input.profiles.iter().enumerate() {
        let field = f.at(f.profiles, i);
        let Some(p) = profiles::find(name.trim()) else {
            return Err(InputError::new(
                field,
                name,
                format!("is not a known profile ({})", profiles::names()),
            ));
        };
        if !chosen.contains(&p) {
            chosen.push(p);
            canonical.profiles.push(p.name.to_string());
        }
    }
    // Parameters: each must belong to a chosen profile; values are host-name safe.
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in &input.params {
        let field = f.param(name);
        let declared = chosen
            .iter()
            .flat_map(|p| p.params.iter())
            .find(|q| q.name.eq_ignore_ascii_case(name));
        let Some(q) = declared else {
            let known: Vec<String> = chosen
                .iter()
                .map(|p| {
                    let names: Vec<&str> = p.params.iter().map(|q| q.name).collect();
                    format!("{}: {}", p.name, names.join(", "))
                })
                .collect();
            let what = if chosen.is_empty() {
                "is given without an egress profile".to_string()
            } else {
                format!(
                    "is not a parameter of the chosen profiles ({})",
                    known.join("; ")
                )
            };
            return Err(InputError::new(field, &format!("{name}={value}"), what));
        };
        if params.iter().any(|(k, _)| k == q.name) {
            return Err(InputError::new(
                field,
                &format!("{name}={value}"),
                format!("gives {} twice", q.name),
            ));
        }
        let value = check_param_value(&field, q.name, value)?;
        params.push((q.name.to_string(), value));
    }
    for p in &chosen {
        for q in p.params.iter().filter(|q| q.required) {
            if !params.iter().any(|(k, _)| k == q.name) {
                return Err(InputError::new(
                    f.param(q.name),
                    "",
                    format!(
                        "profile {} needs {}=<{}> (e.g. {}={}); it is not guessed",
                        p.name, q.name, q.meaning, q.name, q.example
                    ),
                ));
            }
        }
    }
    canonical.params = params.clone();

    let mut targets: Vec<EgressTarget> = Vec::new();
    let mut not_probed: Vec<EgressNotProbed> = Vec::new();
    let mut push = |field: &str, raw: &str, t: EgressTarget| -> Result<(), InputError> {
        if targets.iter().any(|x| x.host == t.host && x.port == t.port) {
            return Ok(());
        }
        if targets.len() >= MAX_EGRESS_HOSTS {
            return Err(InputError::new(
                field,
                raw,
                format!("is one egress host too many: at most {MAX_EGRESS_HOSTS} are probed"),
            ));
        }
        targets.push(t);
        Ok(())
    };
    for p in &chosen {
        for r in p.rules {
            let rule = EgressRule {
                source: p.name.to_string(),
                fqdn: r.fqdn.to_string(),
                role: r.role.to_string(),
                required: r.required,
                docs: Some(r.source.to_string()),
                note: r.note.map(str::to_string),
            };
            match r.probe {
                Probe::NotProbeable(why) => not_probed.push(EgressNotProbed {
                    rule,
                    port: r.port,
                    why: why.to_string(),
                }),
                Probe::Host(template) => match fill(template, &params) {
                    Ok(host) => {
                        let field = f.profiles;
                        let host = inputs::validate_host(field, &host)?;
                        push(
                            field,
                            p.name,
                            EgressTarget {
                                host,
                                port: r.port,
                                rule,
                            },
                        )?;
                    }
                    Err(missing) => {
                        let how: Vec<String> = missing
                            .iter()
                            .map(|m| {
                                let q = p.params.iter().find(|q| q.name == m);
                                match q {
                                    Some(q) => format!("{m}=<{}>", q.meaning),
                                    None => format!("{m}=<value>"),
                                }
                            })
                            .collect();
                        not_probed.push(EgressNotProbed {
                            rule,
                            port: r.port,
                            why: format!(
                                "needs {} ({} {}); not guessed",
                                how.join(" and "),
                                f.params,
                                missing
                                    .iter()
                                    .map(|m| format!("{m}=..."))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                        });
                    }
                },
            }
        }
    }
    for (i, raw) in input.hosts.iter().enumerate() {
        let field = f.at(f.hosts, i);
        let (host, port) = inputs::parse_host_port(&field, raw, HTTPS_PORT)?;
        canonical.hosts.push(raw.trim().to_string());
        push(
            &field,
            raw,
            EgressTarget {
                host: host.clone(),
                port,
                rule: EgressRule {
                    source: f.hosts.to_string(),
                    fqdn: host,
                    role: "a host the check names".to_string(),
                    required: true,
                    docs: None,
                    note: None,
                },
            },
        )?;
    }
    Ok(EgressPlan {
        input: canonical,
        targets,
        not_probed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(profiles: &[&str], params: &[(&str, &str)], hosts: &[&str]) -> EgressInput {
        EgressInput {
            profiles: profiles.iter().map(|s| s.to_string()).collect(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn aks_without_parameters_probes_the_exact_names_and_names_what_is_missing() {
        let p = plan(&input(&["aks"], &[], &[]), EgressFields::FLAGS).unwrap();
        assert_eq!(p.input.profiles, vec!["AKS"]);
        let hosts: Vec<&str> = p.targets.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(
            hosts,
            vec![
                "mcr.microsoft.com",
                "mcr-0001.mcr-msedge.net",
                "management.azure.com",
                "login.microsoftonline.com",
                "packages.microsoft.com",
                "acs-mirror.azureedge.net",
                "packages.aks.azure.com",
            ]
        );
        assert!(p.targets.iter().all(|t| t.port == 443
            && t.rule.source == "AKS"
            && t.rule.required
            && t.rule.docs.as_deref().unwrap().starts_with("https://")));
        let np: Vec<(&str, &str)> = p
            .not_probed
            .iter()
            .map(|n| (n.rule.fqdn.as_str(), n.why.as_str()))
            .collect();
        assert_eq!(np.len(), 2, "{np:?}");
        assert_eq!(np[0].0, "*.hcp.<location>.azmk8s.io");
        assert!(np[0].1.contains("apiServer="), "{}", np[0].1);
        assert_eq!(np[1].0, "*.data.mcr.microsoft.com");
        assert!(np[1].1.contains("region="), "{}", np[1].1);
    }

    #[test]
    fn parameters_fill_cluster_specific_hosts() {
        let p = plan(
            &input(
                &["AKS"],
                &[
                    ("region", "westeurope"),
                    ("apiServer", "c-1.hcp.westeurope.azmk8s.io"),
                ],
                &["internal.example:8443"],
            ),
            EgressFields::FLAGS,
        )
        .unwrap();
        assert!(p.not_probed.is_empty());
        let t = |h: &str| p.targets.iter().find(|t| t.host == h).unwrap();
        assert_eq!(
            t("westeurope.data.mcr.microsoft.com").rule.fqdn,
            "*.data.mcr.microsoft.com"
        );
        assert!(
            t("c-1.hcp.westeurope.azmk8s.io")
                .rule
                .role
                .contains("cluster-specific")
        );
        let h = t("internal.example");
        assert_eq!((h.port, h.rule.source.as_str()), (8443, "--egress-host"));
        let eks = plan(
            &input(
                &["EKS"],
                &[("region", "eu-west-1"), ("account", "123456789012")],
                &[],
            ),
            EgressFields::FLAGS,
        )
        .unwrap();
        let hosts: Vec<&str> = eks.targets.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(
            hosts,
            vec![
                "api.ecr.eu-west-1.amazonaws.com",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com"
            ]
        );
        // Without the account, the registry host is reported, not guessed.
        let eks = plan(
            &input(&["EKS"], &[("region", "eu-west-1")], &[]),
            EgressFields::FLAGS,
        )
        .unwrap();
        assert_eq!(eks.targets.len(), 2);
        assert!(eks.not_probed[0].why.contains("account="));
    }

    #[test]
    fn bad_input_names_the_field() {
        let spec = EgressFields::SPEC;
        let e = plan(&input(&["AKS", "FOO"], &[], &[]), spec).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.egress.profiles[1]: 'FOO' is not a known profile (AKS, AKS-AzureChinaCloud, AKS-AzureUSGovernment, EKS, GKE)"
        );
        let e = plan(&input(&["EKS"], &[], &[]), spec).unwrap_err();
        assert_eq!(e.field, "spec.egress.parameters.region");
        assert!(e.problem.contains("EKS needs region="), "{e}");
        let e = plan(
            &input(&["AKS"], &[("regoin", "x")], &[]),
            EgressFields::FLAGS,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--egress-profile-param: 'regoin=x' is not a parameter of the chosen profiles (AKS: region, apiServer)"),
            "{e}"
        );
        let e = plan(&input(&[], &[("region", "x")], &[]), EgressFields::FLAGS).unwrap_err();
        assert!(e.problem.contains("without an egress profile"));
        let e = plan(
            &input(&["AKS"], &[("region", "east us")], &[]),
            EgressFields::FLAGS,
        )
        .unwrap_err();
        assert!(e.problem.contains("not a valid value for region"), "{e}");
        let e = plan(&input(&[], &[], &["a.example", "x y"]), spec).unwrap_err();
        assert_eq!(e.field, "spec.egress.hosts[1]");
        assert!(parse_param("--egress-profile-param", "region").is_err());
        assert_eq!(
            parse_param("--egress-profile-param", "region=eastus").unwrap(),
            ("region".into(), "eastus".into())
        );
        let many: Vec<String> = (0..40).map(|i| format!("h{i}.example")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(plan(&input(&[], &[], &refs), spec).is_err());
    }

    #[test]
    fn a_host_named_twice_is_probed_once() {
        let p = plan(
            &input(
                &["AKS", "AKS-AzureUSGovernment"],
                &[],
                &["mcr.microsoft.com"],
            ),
            EgressFields::FLAGS,
        )
        .unwrap();
        let mcr = p
            .targets
            .iter()
            .filter(|t| t.host == "mcr.microsoft.com")
            .count();
        assert_eq!(mcr, 1);
        assert!(
            p.targets
                .iter()
                .any(|t| t.host == "management.usgovcloudapi.net")
        );
    }
}
