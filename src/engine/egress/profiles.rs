//! Egress profiles: the hosts a cluster of a given kind must reach besides its registry, as
//! data, in this one place.
//!
//! Each rule is one line of the platform's own documentation: the FQDN as written there
//! (wildcards and placeholders kept), the host regcheck probes for it, the port, what the
//! cluster uses it for, whether the documentation calls it required, and the page it comes
//! from. A host that depends on the cluster (the API server FQDN, a region, an account id) is a
//! `{parameter}` the user gives (`--egress-profile-param region=eastus`,
//! `spec.egress.parameters`); a rule whose parameter was not given is reported as not probed,
//! never guessed. A wildcard is probed through one concrete host only where a real name of
//! that form is known (and the rule says where it comes from); otherwise it is listed as not
//! probeable.
//!
//! Bump [`DATA_VERSION`] with every change to these tables: it is reported with each check
//! (`egress.dataVersion`).

/// Version of the profile data, reported in every check that uses a profile.
pub const DATA_VERSION: &str = "2026-12-04.1";

/// AKS "Outbound network and FQDN rules for AKS clusters".
pub const AKS_DOC: &str = "https://learn.microsoft.com/azure/aks/outbound-rules-control-egress";
const AKS_GLOBAL: &str = "https://learn.microsoft.com/azure/aks/outbound-rules-control-egress#azure-global-required-fqdn--application-rules";
const AKS_CHINA: &str = "https://learn.microsoft.com/azure/aks/outbound-rules-control-egress#microsoft-azure-operated-by-21vianet-required-fqdn--application-rules";
const AKS_USGOV: &str = "https://learn.microsoft.com/azure/aks/outbound-rules-control-egress#azure-us-government-required-fqdn--application-rules";
/// Amazon ECR interface VPC endpoints (AWS PrivateLink): `ecr.api`, `ecr.dkr` and the S3
/// gateway endpoint for the layer bucket.
const ECR_VPC: &str = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html";
const ECR_S3: &str = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html#ecr-setting-up-s3-gateway";
const GAR_DOCKER: &str =
    "https://cloud.google.com/artifact-registry/docs/docker/pushing-and-pulling";
const GCR_HOSTS: &str =
    "https://cloud.google.com/artifact-registry/docs/transition/gcr-repositories";

/// How a rule's FQDN is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// This host: the FQDN itself, or a template with `{parameter}` placeholders (for a
    /// wildcard, one real name of its form; the rule's `note` says where that form is from).
    Host(&'static str),
    /// No host can stand for the rule; the text says why.
    NotProbeable(&'static str),
}

/// One documented egress rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The FQDN as the documentation writes it.
    pub fqdn: &'static str,
    pub probe: Probe,
    pub port: u16,
    /// What the cluster uses the host for.
    pub role: &'static str,
    /// The documentation lists it as required (not "optional" or "recommended").
    pub required: bool,
    /// The documentation page (and section) the rule comes from.
    pub source: &'static str,
    /// Where the probed form of a wildcard comes from, or another remark.
    pub note: Option<&'static str>,
}

/// A parameter a profile's rules use as `{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub meaning: &'static str,
    pub example: &'static str,
    /// Every rule needs it: the profile is refused without it. Otherwise only the rules that
    /// use it are reported as not probed.
    pub required: bool,
}

/// A named set of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub title: &'static str,
    pub params: &'static [Param],
    pub rules: &'static [Rule],
}

const fn rule(fqdn: &'static str, probe: Probe, role: &'static str, source: &'static str) -> Rule {
    Rule {
        fqdn,
        probe,
        port: 443,
        role,
        required: true,
        source,
        note: None,
    }
}

const fn exact(fqdn: &'static str, role: &'static str, source: &'static str) -> Rule {
    rule(fqdn, Probe::Host(fqdn), role, source)
}

/// `westeurope.data.mcr.microsoft.com` is a real MCR data endpoint (the blob redirect in
/// microsoft/containerregistry#75): `<region>.data.mcr.microsoft.com` is the form probed.
const MCR_DATA_NOTE: &str = "probed as {region}.data.mcr.microsoft.com, the form of MCR's regional data endpoints (e.g. westeurope.data.mcr.microsoft.com in microsoft/containerregistry#75)";
const MCR_DATA: Rule = Rule {
    note: Some(MCR_DATA_NOTE),
    ..rule(
        "*.data.mcr.microsoft.com",
        Probe::Host("{region}.data.mcr.microsoft.com"),
        "MCR data endpoints: the CDN-backed storage MCR redirects layer downloads to",
        AKS_GLOBAL,
    )
};
const MCR: &str = "Microsoft Container Registry: images of cluster components (CoreDNS, kube-proxy, CNI), needed to create, scale and upgrade the cluster";
const PACKAGES_MS: &str =
    "Microsoft packages repository (cached apt-get: moby, containerd and other node packages)";

const AKS_PARAMS: &[Param] = &[
    Param {
        name: "region",
        meaning: "the cluster's Azure region (probes MCR's data endpoint of that region)",
        example: "eastus",
        required: false,
    },
    Param {
        name: "apiServer",
        meaning: "the cluster's API server FQDN (`az aks show --query fqdn`)",
        example: "mycluster-dns-1a2b3c4d.hcp.eastus.azmk8s.io",
        required: false,
    },
];

const API_SERVER_ROLE: &str =
    "the cluster's API server (node <-> control plane, konnectivity); the FQDN is cluster-specific";

/// AKS in Azure's public cloud.
const AKS_RULES: &[Rule] = &[
    rule(
        "*.hcp.<location>.azmk8s.io",
        Probe::Host("{apiServer}"),
        API_SERVER_ROLE,
        AKS_GLOBAL,
    ),
    exact("mcr.microsoft.com", MCR, AKS_GLOBAL),
    MCR_DATA,
    exact(
        "mcr-0001.mcr-msedge.net",
        "MCR storage behind the Azure content delivery network",
        AKS_GLOBAL,
    ),
    exact(
        "management.azure.com",
        "Azure Resource Manager: Kubernetes operations against the Azure API",
        AKS_GLOBAL,
    ),
    exact(
        "login.microsoftonline.com",
        "Microsoft Entra ID authentication",
        AKS_GLOBAL,
    ),
    exact("packages.microsoft.com", PACKAGES_MS, AKS_GLOBAL),
    exact(
        "acs-mirror.azureedge.net",
        "binaries installed on the nodes (kubenet, Azure CNI)",
        AKS_GLOBAL,
    ),
    Rule {
        note: Some(
            "the successor of acs-mirror.azureedge.net for node provisioning (Azure/AKS#4792); node bootstrap checks https://packages.aks.azure.com/acs-mirror/healthz before it starts",
        ),
        ..exact(
            "packages.aks.azure.com",
            "binaries and packages of node provisioning (kubelet, CNI, credential provider)",
            AKS_GLOBAL,
        )
    },
];

/// AKS in Microsoft Azure operated by 21Vianet.
const AKS_CHINA_RULES: &[Rule] = &[
    rule(
        "*.hcp.<location>.cx.prod.service.azk8s.cn",
        Probe::Host("{apiServer}"),
        API_SERVER_ROLE,
        AKS_CHINA,
    ),
    rule(
        "*.tun.<location>.cx.prod.service.azk8s.cn",
        Probe::NotProbeable(
            "the cluster's tunnel endpoint: its name is cluster-specific and not shown by the AKS API",
        ),
        "tunnel between the nodes and the control plane",
        AKS_CHINA,
    ),
    exact("mcr.microsoft.com", MCR, AKS_CHINA),
    Rule {
        fqdn: ".data.mcr.microsoft.com",
        source: AKS_CHINA,
        ..MCR_DATA
    },
    exact(
        "management.chinacloudapi.cn",
        "Azure Resource Manager: Kubernetes operations against the Azure API",
        AKS_CHINA,
    ),
    exact(
        "login.chinacloudapi.cn",
        "Microsoft Entra ID authentication",
        AKS_CHINA,
    ),
    exact("packages.microsoft.com", PACKAGES_MS, AKS_CHINA),
    rule(
        "*.azk8s.cn",
        Probe::NotProbeable(
            "a wildcard whose hosts the documentation does not name; allow the whole domain",
        ),
        "binaries installed on the nodes (kubenet, Azure CNI)",
        AKS_CHINA,
    ),
];

/// AKS in Azure US Government.
const AKS_USGOV_RULES: &[Rule] = &[
    rule(
        "*.hcp.<location>.cx.aks.containerservice.azure.us",
        Probe::Host("{apiServer}"),
        API_SERVER_ROLE,
        AKS_USGOV,
    ),
    exact("mcr.microsoft.com", MCR, AKS_USGOV),
    Rule {
        source: AKS_USGOV,
        ..MCR_DATA
    },
    exact(
        "management.usgovcloudapi.net",
        "Azure Resource Manager: Kubernetes operations against the Azure API",
        AKS_USGOV,
    ),
    exact(
        "login.microsoftonline.us",
        "Microsoft Entra ID authentication",
        AKS_USGOV,
    ),
    exact("packages.microsoft.com", PACKAGES_MS, AKS_USGOV),
    exact(
        "acs-mirror.azureedge.net",
        "binaries installed on the nodes (kubenet, Azure CNI)",
        AKS_USGOV,
    ),
];

const EKS_PARAMS: &[Param] = &[
    Param {
        name: "region",
        meaning: "the AWS region of the registry and its VPC endpoints",
        example: "us-east-1",
        required: true,
    },
    Param {
        name: "account",
        meaning: "the 12-digit AWS account id that owns the ECR registry",
        example: "123456789012",
        required: false,
    },
];

/// Amazon ECR reached through VPC endpoints (EKS nodes in private subnets).
const EKS_RULES: &[Rule] = &[
    exact(
        "api.ecr.{region}.amazonaws.com",
        "ECR API (interface endpoint com.amazonaws.<region>.ecr.api): GetAuthorizationToken for the kubelet's credential provider",
        ECR_VPC,
    ),
    exact(
        "{account}.dkr.ecr.{region}.amazonaws.com",
        "ECR registry (interface endpoint com.amazonaws.<region>.ecr.dkr): manifests and layer URLs",
        ECR_VPC,
    ),
    exact(
        "prod-{region}-starport-layer-bucket.s3.{region}.amazonaws.com",
        "the S3 bucket ECR serves image layers from (S3 gateway endpoint; its policy must allow this bucket)",
        ECR_S3,
    ),
];

const GKE_PARAMS: &[Param] = &[Param {
    name: "region",
    meaning: "the location of the Artifact Registry repositories",
    example: "us-central1",
    required: false,
}];

/// Google Artifact Registry and Container Registry hosts (GKE).
const GKE_RULES: &[Rule] = &[
    Rule {
        note: Some(
            "probed as {region}-docker.pkg.dev, the host of Docker repositories in that location",
        ),
        ..rule(
            "*.pkg.dev",
            Probe::Host("{region}-docker.pkg.dev"),
            "Artifact Registry: Docker repositories of the location",
            GAR_DOCKER,
        )
    },
    exact(
        "gcr.io",
        "Container Registry host (gcr.io repositories, now served by Artifact Registry)",
        GCR_HOSTS,
    ),
    Rule {
        required: false,
        ..rule(
            "*.gcr.io",
            Probe::NotProbeable(
                "multi-regional hosts (us.gcr.io, eu.gcr.io, asia.gcr.io): give the one your images use with --egress-host",
            ),
            "multi-regional Container Registry hosts",
            GCR_HOSTS,
        )
    },
];

/// Every profile.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "AKS",
        title: "AKS required outbound FQDNs, Azure public cloud",
        params: AKS_PARAMS,
        rules: AKS_RULES,
    },
    Profile {
        name: "AKS-AzureChinaCloud",
        title: "AKS required outbound FQDNs, Microsoft Azure operated by 21Vianet",
        params: AKS_PARAMS,
        rules: AKS_CHINA_RULES,
    },
    Profile {
        name: "AKS-AzureUSGovernment",
        title: "AKS required outbound FQDNs, Azure US Government",
        params: AKS_PARAMS,
        rules: AKS_USGOV_RULES,
    },
    Profile {
        name: "EKS",
        title: "Amazon ECR through VPC endpoints (EKS private subnets)",
        params: EKS_PARAMS,
        rules: EKS_RULES,
    },
    Profile {
        name: "GKE",
        title: "Google Artifact Registry and Container Registry (GKE)",
        params: GKE_PARAMS,
        rules: GKE_RULES,
    },
];

/// The profile of this name (case-insensitive).
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// `AKS, AKS-AzureChinaCloud, ...` for error messages.
pub fn names() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `{name}` placeholders of a template, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        if !out.contains(&name) {
            out.push(name);
        }
        rest = &rest[open + close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_rule_cites_a_page_and_names_its_role() {
        for p in PROFILES {
            assert!(!p.rules.is_empty(), "{}", p.name);
            for r in p.rules {
                assert!(r.source.starts_with("https://"), "{}: {}", p.name, r.fqdn);
                assert!(!r.role.is_empty() && !r.fqdn.is_empty(), "{}", p.name);
                assert!(r.port > 0);
                if let Probe::NotProbeable(why) = r.probe {
                    assert!(!why.is_empty());
                }
                if r.fqdn.contains('*') || r.fqdn.starts_with('.') {
                    // A wildcard is probed through a template (never the pattern itself).
                    if let Probe::Host(h) = r.probe {
                        assert!(!h.contains('*'), "{}: {h}", r.fqdn);
                        assert!(
                            r.note.is_some() || h.starts_with('{') && h.ends_with('}'),
                            "{}: a wildcard probed through an example says where the form comes from",
                            r.fqdn
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn no_duplicates() {
        let mut names = HashSet::new();
        for p in PROFILES {
            assert!(
                names.insert(p.name.to_ascii_lowercase()),
                "profile {}",
                p.name
            );
            let mut fqdns = HashSet::new();
            let mut probes = HashSet::new();
            for r in p.rules {
                assert!(fqdns.insert(r.fqdn), "{}: {} twice", p.name, r.fqdn);
                if let Probe::Host(h) = r.probe {
                    assert!(probes.insert((h, r.port)), "{}: {h} twice", p.name);
                }
            }
            let mut params = HashSet::new();
            for q in p.params {
                assert!(params.insert(q.name), "{}: {}", p.name, q.name);
            }
        }
    }

    #[test]
    fn placeholders_are_declared_parameters() {
        for p in PROFILES {
            for r in p.rules {
                if let Probe::Host(h) = r.probe {
                    for name in placeholders(h) {
                        assert!(
                            p.params.iter().any(|q| q.name == name),
                            "{}: {h} uses undeclared {{{name}}}",
                            p.name
                        );
                    }
                }
            }
            // Every declared parameter is used.
            for q in p.params {
                assert!(
                    p.rules.iter().any(
                        |r| matches!(r.probe, Probe::Host(h) if placeholders(h).contains(&q.name))
                    ),
                    "{}: parameter {} unused",
                    p.name,
                    q.name
                );
            }
        }
    }

    #[test]
    fn aks_has_the_documented_required_fqdns() {
        let aks = find("aks").unwrap();
        let fqdns: Vec<&str> = aks.rules.iter().map(|r| r.fqdn).collect();
        for want in [
            "mcr.microsoft.com",
            "*.data.mcr.microsoft.com",
            "mcr-0001.mcr-msedge.net",
            "management.azure.com",
            "login.microsoftonline.com",
            "packages.microsoft.com",
            "acs-mirror.azureedge.net",
            "packages.aks.azure.com",
        ] {
            assert!(fqdns.contains(&want), "{want}");
        }
        assert!(aks.rules.iter().all(|r| r.required));
        assert_eq!(placeholders("{a}-x.{b}.{a}"), vec!["a", "b"]);
    }
}
