//! The catalogue: every [`Reason`] and everything known about it, in one entry each.
//!
//! An entry gives the reason's phase along the pull path, the root-cause family of
//! Microsoft's "Troubleshoot network issues with registry" guide ([`Cause`]), the matching
//! `az acr check-health` error code where one fits, its default severity, the status condition
//! a failing finding sets, whether it keeps the registry API from being reached, a one-line
//! summary, what it looks like in the field, the remediation and the official documentation.
//! The docs (`docs/reasons.md`), the alert rules, the condition mapping of the status and the
//! diagnosis's "blocks the API" test are all derived from these entries: adding a reason is
//! one entry here, its diagnosis rule and its test.

use crate::engine::evidence::Role;
use crate::engine::findings::{Cause, Finding, Severity};
use serde::{Deserialize, Serialize};

/// Documentation pages (from the field guide; the MTU and dual-stack pages for the path-MTU
/// and IPv6 reasons).
pub mod links {
    pub const FIREWALL_RULES: &str = "https://learn.microsoft.com/azure/container-registry/container-registry-firewall-access-rules";
    pub const AKS_EGRESS: &str =
        "https://learn.microsoft.com/azure/aks/outbound-rules-control-egress";
    pub const PRIVATE_LINK: &str =
        "https://learn.microsoft.com/azure/container-registry/container-registry-private-link";
    pub const SELECTED_NETWORKS: &str = "https://learn.microsoft.com/azure/container-registry/container-registry-access-selected-networks";
    pub const HEALTH_ERRORS: &str = "https://learn.microsoft.com/azure/container-registry/container-registry-health-error-reference";
    pub const AKS_HTTP_PROXY: &str = "https://learn.microsoft.com/azure/aks/http-proxy";
    pub const K8S_TAINTS: &str =
        "https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/";
    pub const K8S_IMAGES: &str = "https://kubernetes.io/docs/concepts/containers/images/";
    pub const K8S_POD_FAILURE: &str =
        "https://kubernetes.io/docs/tasks/debug/debug-application/determine-reason-pod-failure/";
    pub const K8S_JOBS: &str = "https://kubernetes.io/docs/concepts/workloads/controllers/job/";
    pub const K8S_MULTI_TENANCY: &str =
        "https://kubernetes.io/docs/concepts/security/multi-tenancy/";
    pub const MULTI_ARCH: &str =
        "https://learn.microsoft.com/azure/container-registry/push-multi-architecture-images";
    pub const K8S_QUOTAS: &str = "https://kubernetes.io/docs/concepts/policy/resource-quotas/";
    pub const CONTAINERD_HOSTS: &str =
        "https://github.com/containerd/containerd/blob/main/docs/hosts.md";
    pub const ACR_AKS_AUTH: &str =
        "https://learn.microsoft.com/azure/aks/cluster-container-registry-integration";
    pub const AKS_CUSTOM_CA: &str =
        "https://learn.microsoft.com/azure/aks/custom-certificate-authority";
    pub const VNET_TCPIP_TUNING: &str = "https://learn.microsoft.com/azure/virtual-network/virtual-network-tcpip-performance-tuning";
    pub const AKS_DUAL_STACK: &str =
        "https://learn.microsoft.com/azure/aks/configure-kubenet-dual-stack";
    pub const K8S_CRD_VALIDATION: &str = "https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation";
}

use links::*;

/// Where along the pull path a reason is found (the sections of `docs/reasons.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    WholePath,
    Dns,
    Tcp,
    Tls,
    RegistryApi,
    Proxy,
    DataPath,
    /// Hosts besides the registry (egress profiles, `--egress-host`).
    Egress,
    /// The operator compared the node and pod contexts.
    OperatorContexts,
    /// The kubelet's own pull (a pull canary) compared with the node probe.
    OperatorKubelet,
    /// The operator's target policy refused the check.
    OperatorPolicy,
    /// The check's spec is unusable.
    OperatorSpec,
    /// The probe itself failed: nothing is known about the registry.
    OperatorProbe,
}

impl Phase {
    pub const fn title(self) -> &'static str {
        match self {
            Self::WholePath => "Whole path",
            Self::Dns => "DNS",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::RegistryApi => "Registry API",
            Self::Proxy => "Proxy",
            Self::DataPath => "Data path",
            Self::Egress => "Egress hosts",
            Self::OperatorContexts => "Operator: node and pod contexts",
            Self::OperatorKubelet => "Operator: the kubelet's own pull",
            Self::OperatorPolicy => "Operator: target policy",
            Self::OperatorSpec => "Operator: the check's spec",
            Self::OperatorProbe => "Operator: the probe itself",
        }
    }

    /// Reasons of these phases come from the operator (comparing probes, its policy, a probe
    /// that did not report), never from the diagnosis of one probe's evidence.
    pub const fn is_operator(self) -> bool {
        matches!(
            self,
            Self::OperatorContexts
                | Self::OperatorKubelet
                | Self::OperatorPolicy
                | Self::OperatorSpec
                | Self::OperatorProbe
        )
    }
}

/// The detail condition of a check's status that an error finding of a reason sets `False`
/// (a finding on a data endpoint always sets `DataEndpointReachable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCondition {
    DnsResolved,
    RegistryReachable,
    TlsVerified,
    RegistryApiReachable,
    DataEndpointReachable,
    /// The hosts of `spec.egress` (set only when the check names some).
    EgressReachable,
}

impl StatusCondition {
    pub const ALL: [StatusCondition; 6] = [
        Self::DnsResolved,
        Self::RegistryReachable,
        Self::TlsVerified,
        Self::RegistryApiReachable,
        Self::DataEndpointReachable,
        Self::EgressReachable,
    ];

    /// The condition's `type` in the status.
    pub const fn type_name(self) -> &'static str {
        match self {
            Self::DnsResolved => "DNSResolved",
            Self::RegistryReachable => "RegistryReachable",
            Self::TlsVerified => "TLSVerified",
            Self::RegistryApiReachable => "RegistryAPIReachable",
            Self::DataEndpointReachable => "DataEndpointReachable",
            Self::EgressReachable => "EgressReachable",
        }
    }
}

/// Everything known about one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub phase: Phase,
    pub cause: Cause,
    /// The `az acr check-health` error code, where one fits. (The diagnosis may refine it per
    /// finding, e.g. a malformed challenge is `CONNECTIVITY_WWW_AUTHENTICATE_ERROR`.)
    pub code: Option<&'static str>,
    /// The diagnosis may lower it, e.g. when only some of several addresses fail.
    pub severity: Severity,
    /// `None` for `Healthy` and the operator's own reasons.
    pub condition: Option<StatusCondition>,
    /// An error of this reason on the login server means the registry API was not reached, so
    /// nothing can be said about the data path behind it.
    pub blocks_api: bool,
    /// One line: what the reason means.
    pub summary: &'static str,
    /// What an administrator sees in the field (kubelet/containerd events, `docker`/`crictl`
    /// errors, pod states), from the field guide's table of error strings where it has one.
    pub field_symptom: &'static str,
    /// What to do, concretely, for an AKS/Kubernetes administrator.
    pub remediation: &'static str,
    /// Official documentation pages.
    pub docs: &'static [&'static str],
}

/// Declares [`Reason`] (its variants in this order: `Ord`, tables and docs follow it), its
/// stable names, [`Reason::ALL`] and [`Reason::entry`] from one list of entries.
macro_rules! catalogue {
    ($( $(#[$meta:meta])* $name:ident => $entry:expr, )+) => {
        /// Stable, CamelCase reasons. The serialised name is the API: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[allow(clippy::upper_case_acronyms)]
        pub enum Reason {
            $( $(#[$meta])* $name, )+
        }

        impl Reason {
            /// Every reason, in declaration order (for tables, docs and exhaustive tests).
            pub const ALL: &'static [Reason] = &[ $( Reason::$name, )+ ];

            /// The stable name (serde gives the same; this avoids allocating for labels).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Reason::$name => stringify!($name), )+
                }
            }

            /// The reason's catalogue entry.
            pub const fn entry(self) -> &'static Entry {
                match self {
                    $( Reason::$name => {
                        const ENTRY: Entry = $entry;
                        &ENTRY
                    } )+
                }
            }
        }
    };
}

catalogue! {
    Healthy => Entry {
        phase: Phase::WholePath,
        cause: Cause::None,
        code: None,
        severity: Severity::Info,
        condition: None,
        blocks_api: false,
        summary: "Every probed path to the registry works.",
        field_symptom: "Nothing: pulls work from every probed node and pod network.",
        remediation: "No action needed; run the check again after network, DNS or proxy changes, from every node pool.",
        docs: &[HEALTH_ERRORS],
    },
    MirrorUnreachable => Entry {
        phase: Phase::WholePath,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Warning,
        condition: None,
        blocks_api: false,
        summary: "A registry mirror from containerd's hosts.toml does not work while containerd would still reach the registry another way: containerd silently falls back to the next host, so pulls are slower (a timeout per pull) or bypass the mirror.",
        field_symptom: "Pulls work but are slow or do not use the mirror; containerd's log shows `trying next host` with the mirror's error at info level, and the mirror's access log stays empty.",
        remediation: "Fix the mirror or remove it from /etc/containerd/certs.d/<registry>/hosts.toml on the nodes: check its address and port, its certificate (`ca` in hosts.toml, or `skip_verify`), `http://` for a plain-HTTP mirror, and NO_PROXY in containerd's systemd drop-in for a mirror inside the network.",
        docs: &[CONTAINERD_HOSTS],
    },
    HostsConfigInvalid => Entry {
        phase: Phase::WholePath,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Warning,
        condition: None,
        blocks_api: false,
        summary: "containerd's hosts.toml for the registry cannot be decoded: containerd logs the error and ignores the file, so its mirrors and TLS settings do not apply and pulls go to the upstream only.",
        field_symptom: "Mirrors configured on the node are never used, and containerd's log shows `failed to decode hosts.toml` at error level.",
        remediation: "Fix the key named in the finding (e.g. `capabilities` must be a list of pull, resolve, push; `skip_verify` a boolean; `ca` a file name or list), then check it with `ctr images pull --hosts-dir /etc/containerd/certs.d <image>` on the node. No restart is needed: containerd reads hosts.toml on every pull.",
        docs: &[CONTAINERD_HOSTS],
    },
    DNSNameNotFound => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_DNS_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: true,
        summary: "The host name does not resolve (NXDOMAIN or no A/AAAA record).",
        field_symptom: "`dial tcp: lookup <reg>.azurecr.io ... no such host` in `Failed to pull image` events.",
        remediation: "Check the registry name for typos and that the registry still exists (`az acr show -n <reg>`). With a private endpoint, make sure the private DNS zone privatelink.azurecr.io holds an A record for `<reg>` (and `<reg>.<region>.data` for each replica) and that the zone is linked to the VNet whose DNS the nodes use; with a custom DNS server, add a conditional forwarder for azurecr.io to 168.63.129.16.",
        docs: &[HEALTH_ERRORS, PRIVATE_LINK],
    },
    DNSServerUnreachable => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_DNS_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: true,
        summary: "The DNS servers the client uses do not answer.",
        field_symptom: "`lookup <reg>.azurecr.io on <dns-ip>:53: read udp ...: i/o timeout`; name resolution of everything else fails too.",
        remediation: "Check the VNet's DNS server setting (`az network vnet show --query dhcpOptions`) and that the custom DNS servers are running and reachable on UDP/TCP 53 from the node subnet (NSG, route table, firewall). After changing VNet DNS servers, restart the nodes (`az aks nodepool upgrade --node-image-only` or reimage) so they pick up the new settings.",
        docs: &[HEALTH_ERRORS, PRIVATE_LINK],
    },
    DNSServerFailure => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_DNS_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: true,
        summary: "The DNS server answers with an error (SERVFAIL, REFUSED, a CNAME loop or a malformed answer).",
        field_symptom: "`lookup <reg>.azurecr.io on <dns-ip>:53: server misbehaving` (SERVFAIL or REFUSED).",
        remediation: "Look at the DNS server's logs for this name: a custom DNS server must forward azurecr.io (and privatelink.azurecr.io) to Azure DNS 168.63.129.16 or to a resolver that can. Check for CNAME loops between zones, and for REFUSED caused by recursion being disabled for the node subnet.",
        docs: &[HEALTH_ERRORS, PRIVATE_LINK],
    },
    DNSAnswersDiffer => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: None,
        severity: Severity::Warning,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: false,
        summary: "The configured DNS servers give different answers for the same name, so results depend on which server a client asks.",
        field_symptom: "Pulls fail on some nodes or some attempts only (`no such host`, or an `i/o timeout` to a different address), depending on which nameserver answered.",
        remediation: "Make every DNS server in the VNet (and CoreDNS forwarders) answer the same way: link the privatelink.azurecr.io zone to every VNet whose DNS is used, give every custom DNS server the same conditional forwarder for azurecr.io to 168.63.129.16, and remove stale or unreachable servers from the VNet DNS settings.",
        docs: &[PRIVATE_LINK],
    },
    PrivateEndpointResolvesPublic => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: false,
        summary: "The registry has a private endpoint, but this client's DNS resolves it to a public address: the privatelink.azurecr.io private DNS zone is not visible to its resolver.",
        field_symptom: "`403 Forbidden` / `denied: client with IP '<public-ip>' is not allowed access` when public access is disabled, or `dial tcp <public-ip>:443: i/o timeout`; `nslookup <reg>.azurecr.io` on the node shows `<reg>.privatelink.azurecr.io` with a public address.",
        remediation: "Make the private zone visible to this client's resolver: link the VNet (or the custom DNS server's VNet) to the privatelink.azurecr.io private DNS zone (`az network private-dns link vnet create`), or add a conditional forwarder for azurecr.io to 168.63.129.16 on the custom DNS server. Check that CoreDNS custom forwarders (coredns-custom ConfigMap) do not send azurecr.io to a public resolver.",
        docs: &[PRIVATE_LINK],
    },
    PrivateEndpointNotConfigured => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: false,
        summary: "A private address was expected, but the name resolves to public addresses with no privatelink CNAME: no private endpoint (or no private DNS) is in place for this registry.",
        field_symptom: "Pulls go over the public internet (they may work); with public access disabled they fail with `403 Forbidden`. `nslookup` shows no `privatelink` name.",
        remediation: "Create a private endpoint for the registry in a VNet reachable from the cluster with private DNS integration (zone privatelink.azurecr.io linked to the cluster VNet), or, if public access is intended, run the check with `--expect any`.",
        docs: &[PRIVATE_LINK],
    },
    DataEndpointDNSMissing => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_DNS_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: false,
        summary: "The login server resolves privately, but a data endpoint does not: its A record is missing from the private DNS zone, so layer downloads fail.",
        field_symptom: "Manifests are fetched but layers are not: `download failed ... lookup <reg>.<region>.data.azurecr.io ... no such host`.",
        remediation: "Add the data endpoint's A record (`<reg>.<region>.data`) to the privatelink.azurecr.io zone for every replica region — recreate the private endpoint's DNS zone group so records are managed automatically — and make sure the zone is linked to the cluster VNet. With a custom DNS server, forward azurecr.io to 168.63.129.16.",
        docs: &[PRIVATE_LINK],
    },
    RegistryLacksIPv6 => Entry {
        phase: Phase::Dns,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_DNS_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::DnsResolved),
        blocks_api: true,
        summary: "The client can use IPv6 (an IPv6-only or dual-stack node, `--ip-family`) but the host has no AAAA record: an IPv6-only node cannot reach it at all (an Error), a dual-stack node reaches it over IPv4 only (Info).",
        field_symptom: "On an IPv6-only node: `dial tcp <ipv4>:443: connect: network is unreachable`, `Address family for hostname not supported` (kyverno#13257: ghcr.io has no AAAA; k3s#5849 and k3s#5921: docker.io, github.com).",
        remediation: "Give IPv6-only node pools a path to IPv4-only registries: DNS64 with a NAT64 gateway (the AAAA answers are then synthesised in 64:ff9b::/96), a pull-through mirror reachable over IPv6 (containerd hosts.toml), or dual-stack nodes; or use a registry endpoint that publishes AAAA records.",
        docs: &[AKS_DUAL_STACK, AKS_EGRESS],
    },
    ConnectionTimedOut => Entry {
        phase: Phase::Tcp,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "TCP connections to the endpoint time out: packets are dropped on the way (NSG, route table, firewall appliance).",
        field_symptom: "`dial tcp <ip>:443: i/o timeout`, `Client.Timeout exceeded while awaiting headers` or `context deadline exceeded`.",
        remediation: "Allow TCP 443 from the node subnet to the registry's login server and data endpoints (`az acr show-endpoints -n <reg>`) in the NSG, Azure Firewall / network virtual appliance application rules, and route table (UDR). For a private endpoint address, check VNet peering and the routes to the private endpoint's subnet.",
        docs: &[FIREWALL_RULES, AKS_EGRESS],
    },
    IPv6PathBroken => Entry {
        phase: Phase::Tcp,
        cause: Cause::VirtualNetworkConfiguration,
        code: None,
        severity: Severity::Warning,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: false,
        summary: "The host has AAAA records and the node has IPv6, but connections over IPv6 fail while IPv4 works: clients that fall back (Go's dialer, containerd's happy eyeballs) only get slower, clients that do not fail.",
        field_symptom: "Pulls work but hang a few hundred milliseconds to seconds per connection; other tools fail with `dial tcp [<ipv6>]:443: i/o timeout` or `connect: network is unreachable` (docker/hub-feedback#2165: `dial tcp [2600:1f18:...]:443` once the registry turned dual-stack).",
        remediation: "Fix the IPv6 egress path (IPv6 default route, NSG/firewall rules for IPv6, the NAT or egress gateway's IPv6 support), or, until it works, keep the node from using IPv6 for the registry: a single-stack IPv4 node pool, or a resolver that does not return AAAA for the registry.",
        docs: &[AKS_DUAL_STACK, FIREWALL_RULES],
    },
    ConnectionRefused => Entry {
        phase: Phase::Tcp,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "TCP connections to the endpoint are actively refused (reset).",
        field_symptom: "`dial tcp <ip>:443: connect: connection refused`.",
        remediation: "Something rejects the connection on port 443: check firewall rules that reset instead of drop, the port number used, and for a private endpoint that it still exists and is approved (`az network private-endpoint-connection list`).",
        docs: &[FIREWALL_RULES, AKS_EGRESS],
    },
    HostUnreachable => Entry {
        phase: Phase::Tcp,
        cause: Cause::VirtualNetworkConfiguration,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "There is no route to the endpoint's address (ICMP unreachable); for a private endpoint, the network it lives in is not routed from here.",
        field_symptom: "`dial tcp <private-ip>:443: connect: no route to host` / `host is not reachable`.",
        remediation: "Add a route to the address: for a private endpoint, peer the VNets (or connect them through the hub) and make sure the UDR / hub firewall forwards traffic to the private endpoint subnet; a private endpoint that was deleted while its DNS record remains must be removed from the private zone.",
        docs: &[PRIVATE_LINK],
    },
    TargetAddressBlocked => Entry {
        phase: Phase::Tcp,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "The name resolves to an address that must not be dialled (loopback, link-local, unspecified): usually a hosts-file entry or a DNS filter sinkholing the name.",
        field_symptom: "Pulls fail against an address like `127.0.0.1` or `0.0.0.0` (`connection refused`), or against the metadata address.",
        remediation: "Find out why the name resolves to this address: remove hosts-file entries for the registry on the nodes, or allow the registry in the DNS filtering policy (DNS sinkhole) of the firewall.",
        docs: &[FIREWALL_RULES],
    },
    TLSResetAfterClientHello => Entry {
        phase: Phase::Tls,
        cause: Cause::ClientFirewallOrProxy,
        code: Some("CONNECTIVITY_SSL_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::TlsVerified),
        blocks_api: true,
        summary: "The connection is reset right after the TLS ClientHello: a firewall filtering by SNI/FQDN does not allow this host.",
        field_symptom: "`read: connection reset by peer` during the TLS handshake.",
        remediation: "Allow the host name in the firewall's FQDN/SNI rules (Azure Firewall application rule or NVA) for TCP 443: the login server `<reg>.azurecr.io` and every data endpoint `<reg>.<region>.data.azurecr.io` (or `*.blob.core.windows.net` without dedicated data endpoints).",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    TLSHandshakeTimeout => Entry {
        phase: Phase::Tls,
        cause: Cause::ClientFirewallOrProxy,
        code: Some("CONNECTIVITY_SSL_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::TlsVerified),
        blocks_api: true,
        summary: "The TLS handshake does not complete in time: a filtering appliance or proxy holds the connection.",
        field_symptom: "`net/http: TLS handshake timeout`.",
        remediation: "Check the firewall or proxy on the path for TLS inspection or filtering rules that hold the connection; exempt the registry's login server and data endpoints from inspection, or allow them in the FQDN rules.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    PathMTUBlackHole => Entry {
        phase: Phase::Tls,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_SSL_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::TlsVerified),
        blocks_api: true,
        summary: "Full-size packets from the server are lost on the way while small ones pass: a tunnel, VPN, overlay or network appliance lowers the MTU and the ICMP \"fragmentation needed\" messages that would tell the server are dropped. The handshake stalls on the server's certificate flight but completes on a connection that announces a small MSS.",
        field_symptom: "`net/http: TLS handshake timeout` or pulls that hang mid-layer, while `curl` of small URLs and pings work; lowering the interface MTU or clamping the MSS makes it work (overlock#463, concourse#551).",
        remediation: "Clamp the TCP MSS to the path MTU where traffic enters the smaller link (`iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu` on the router, VPN or NVA), allow ICMP type 3 code 4 (\"fragmentation needed\"; ICMPv6 type 2 \"packet too big\") through NSGs and firewalls back to the nodes, and set the overlay or tunnel MTU (CNI, VPN gateway, WireGuard) below the underlay's MTU minus its encapsulation.",
        docs: &[VNET_TCPIP_TUNING, FIREWALL_RULES],
    },
    TLSInterception => Entry {
        phase: Phase::Tls,
        cause: Cause::ClientFirewallOrProxy,
        code: Some("CONNECTIVITY_SSL_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::TlsVerified),
        blocks_api: true,
        summary: "The server certificate is issued by an untrusted CA: TLS inspection by a firewall or proxy is re-signing the traffic.",
        field_symptom: "`x509: certificate signed by unknown authority`.",
        remediation: "Exempt the registry's login server and data endpoints from TLS inspection on the firewall/proxy, or install the inspecting CA on the nodes (AKS custom CA trust: `az aks update --custom-ca-trust-certificates`) and in probes.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    TLSCertificateInvalid => Entry {
        phase: Phase::Tls,
        cause: Cause::ClientFirewallOrProxy,
        code: Some("CONNECTIVITY_SSL_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::TlsVerified),
        blocks_api: true,
        summary: "The TLS certificate presented is not valid for this host (wrong name, expired, or handshake failure).",
        field_symptom: "`x509: certificate is valid for <other-name>, not <reg>.azurecr.io`, or `x509: certificate has expired or is not yet valid`.",
        remediation: "Make sure the connection reaches the registry itself, not a middlebox: check the hosts file and DNS for the name, exempt it from TLS inspection, and check the node's clock for expiry errors.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    HeadersTimeout => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The request was sent but no response headers arrived in time (`Client.Timeout exceeded while awaiting headers`).",
        field_symptom: "`Client.Timeout exceeded while awaiting headers`.",
        remediation: "A device on the path accepts the connection but does not forward the request: allow the registry host in the firewall/proxy application rules, and check for TLS inspection appliances that stall.",
        docs: &[FIREWALL_RULES, AKS_EGRESS],
    },
    ConnectionClosed => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The connection was closed before the server sent a response.",
        field_symptom: "`EOF` or `connection reset by peer` right after the request was sent.",
        remediation: "A device on the path closes the connection after the request: allow the registry host (login server and data endpoints) in the firewall/proxy application rules.",
        docs: &[FIREWALL_RULES, AKS_EGRESS],
    },
    RegistryDeniedClientIP => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::PublicNetworkAccessRules,
        code: Some("CONNECTIVITY_FORBIDDEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry's network rules deny the client's public IP address (403 DENIED: client with IP is not allowed access).",
        field_symptom: "`denied: client with IP '<ip>' is not allowed access`; kubelet shows only `failed to fetch anonymous token: unexpected status: 403 Forbidden`.",
        remediation: "Compare the IP the registry saw with the cluster's expected egress IP (NAT gateway, load balancer outbound IP or firewall public IP). Either add it to the registry's network rules (`az acr network-rule add -n <reg> --ip-address <ip>`), or route the traffic through a private endpoint; for AKS, make sure traffic leaves through the expected NAT/firewall.",
        docs: &[SELECTED_NETWORKS, HEALTH_ERRORS],
    },
    /// A network-rule denial naming a private address.
    RegistryDeniedPrivateClientIP => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_FORBIDDEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry's network rules deny a private client address (403 DENIED: client with IP '10.x.x.x' is not allowed access): the request came through a VNet service endpoint or another private path the rules do not allow.",
        field_symptom: "`denied: client with IP '<private ip>' is not allowed access` (a 10.x, 172.16-31.x or 192.168.x address: the node's own address, seen through a Microsoft.ContainerRegistry service endpoint); kubelet shows only `failed to fetch anonymous token: unexpected status: 403 Forbidden`.",
        remediation: "An IP rule cannot fix this (ACR IP rules take public addresses only): add a virtual-network rule for the nodes' subnet (`az acr network-rule add -n <reg> --subnet <subnet id>`, with the Microsoft.ContainerRegistry service endpoint on the subnet), or reach the registry through its private endpoint (private DNS zone `privatelink.azurecr.io` linked to the cluster VNet); or remove the service endpoint so traffic leaves through the public egress IP that the IP rules allow.",
        docs: &[SELECTED_NETWORKS, PRIVATE_LINK, HEALTH_ERRORS],
    },
    /// A network-rule denial naming a public address outside `spec.expect.egressIPs`.
    EgressIPUnexpected => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_FORBIDDEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry denies a client address that is not one of the expected egress addresses (`spec.expect.egressIPs`): traffic leaves through the wrong NAT gateway, firewall or node pool.",
        field_symptom: "`denied: client with IP '<ip>' is not allowed access` with an address that is not the cluster's NAT/firewall IP, often from one node pool only (a pool on another subnet, a missing route table, a node with an instance-level public IP).",
        remediation: "Do not add this address to the registry's rules before knowing why traffic leaves there: check the outbound type of the cluster and of the failing node pool (`az aks show --query networkProfile.outboundType`), the subnet's NAT gateway and route table (0.0.0.0/0 to the firewall), and node public IPs; once traffic leaves through the expected address, the existing IP rule applies. If the address is legitimate, add it to `spec.expect.egressIPs` and to the registry's network rules.",
        docs: &[AKS_EGRESS, SELECTED_NETWORKS, HEALTH_ERRORS],
    },
    RegistryForbidden => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::PublicNetworkAccessRules,
        code: Some("CONNECTIVITY_FORBIDDEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry answers 403 Forbidden to the API challenge: public network access is disabled or restricted.",
        field_symptom: "`failed to authorize: failed to fetch anonymous token: unexpected status: 403 Forbidden`.",
        remediation: "Check the registry's public network access setting and network rules (`az acr show -n <reg> --query \"{public:publicNetworkAccess,rules:networkRuleSet}\"`): allow the cluster's egress IP, or use a private endpoint from the cluster VNet.",
        docs: &[SELECTED_NETWORKS, HEALTH_ERRORS],
    },
    RegistryChallengeInvalid => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::ClientFirewallOrProxy,
        code: Some("CONNECTIVITY_CHALLENGE_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry's /v2/ answer carries no usable authentication challenge (missing or malformed WWW-Authenticate).",
        field_symptom: "`failed to authorize` / `failed to fetch anonymous token` errors; `az acr check-health` reports `CONNECTIVITY_CHALLENGE_ERROR` or `CONNECTIVITY_WWW_AUTHENTICATE_ERROR`.",
        remediation: "Make sure the request reaches the registry and not a proxy or captive portal: allow the registry host in the proxy/firewall without rewriting responses; run `az acr check-health -n <reg>` from the node to compare.",
        docs: &[HEALTH_ERRORS],
    },
    NotARegistry => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "Something that is not a container registry answered (wrong host, captive portal, proxy or web page).",
        field_symptom: "`404 Not Found`, or an HTML page, where the registry API should answer.",
        remediation: "Check that the host name is the registry's login server (`az acr show -n <reg> --query loginServer`) and that no proxy, captive portal or hosts-file entry answers for it.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    Throttled => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::RegistryThrottling,
        code: Some("CONNECTIVITY_TOOMANYREQUESTS_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry throttles requests (429 Too Many Requests).",
        field_symptom: "`429 Too Many Requests`.",
        remediation: "Reduce the request rate (pull through a cache, stagger deployments, avoid `imagePullPolicy: Always` at scale) or move the registry to a higher SKU with more throughput.",
        docs: &[HEALTH_ERRORS],
    },
    RegistryServerError => Entry {
        phase: Phase::RegistryApi,
        cause: Cause::RegistryUnavailable,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: true,
        summary: "The registry answers with a server error (5xx).",
        field_symptom: "`500 Internal Server Error`, `502 Bad Gateway` or `503 Service Unavailable` from the registry.",
        remediation: "Retry later and check Azure Service Health for Container Registry in the region; if the errors persist, open a support case. When a proxy is on the path, its error pages may also appear as 5xx.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    ProxyDenied => Entry {
        phase: Phase::Proxy,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "The HTTP proxy refuses to CONNECT to this destination.",
        field_symptom: "`login attempt failed with status: 403 Forbidden` behind a proxy; the proxy's access log shows a denied CONNECT.",
        remediation: "Allow CONNECT to the registry's login server and data endpoints on port 443 in the proxy's policy, or exempt them via NO_PROXY (AKS http proxy config `noProxy`) if they are reachable directly.",
        docs: &[AKS_HTTP_PROXY],
    },
    ProxyAuthRequired => Entry {
        phase: Phase::Proxy,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "The HTTP proxy requires authentication (407) and the credentials are missing or wrong.",
        field_symptom: "`407 Proxy Authentication Required`.",
        remediation: "Configure proxy credentials in the proxy URL of the AKS http proxy configuration (`httpsProxy`), or allow the node subnet without authentication.",
        docs: &[AKS_HTTP_PROXY],
    },
    ProxyConnectEOF => Entry {
        phase: Phase::Proxy,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "The HTTP proxy closed the connection without answering the CONNECT (`proxyconnect tcp: EOF`): wrong proxy scheme or port, or the proxy is failing.",
        field_symptom: "`proxyconnect tcp: EOF`.",
        remediation: "Check the proxy URL: scheme (http:// for a plain proxy), host and port, and that the proxy is running; AKS nodes take it from the http proxy configuration (/etc/environment).",
        docs: &[AKS_HTTP_PROXY],
    },
    ProxyUnreachable => Entry {
        phase: Phase::Proxy,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "The HTTP proxy itself cannot be reached.",
        field_symptom: "`proxyconnect tcp: dial tcp <proxy>:<port>: i/o timeout` or `connection refused`.",
        remediation: "Make sure the proxy host resolves and is reachable from the node subnet on its port (NSG, routes), and that the proxy service is up.",
        docs: &[AKS_HTTP_PROXY],
    },
    ProxyBypassMissing => Entry {
        phase: Phase::Proxy,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "A private-endpoint address is sent through the HTTP proxy, which cannot reach it, because NO_PROXY does not exempt the host.",
        field_symptom: "Pulls from a private endpoint time out or fail with proxy errors although its private address is reachable directly from the node.",
        remediation: "Add the registry host names (or `.azurecr.io` and `.privatelink.azurecr.io`) to NO_PROXY in the AKS http proxy configuration (`az aks update --http-proxy-config`): CIDR entries in NO_PROXY only match hosts written as IP literals, so a private endpoint reached by name is still sent to the proxy.",
        docs: &[AKS_HTTP_PROXY, PRIVATE_LINK],
    },
    ProxyUpstreamFailed => Entry {
        phase: Phase::Proxy,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryReachable),
        blocks_api: true,
        summary: "The HTTP proxy cannot reach the destination (502/503/504 or no answer to CONNECT).",
        field_symptom: "`502 Bad Gateway`, `503 Service Unavailable` or `504 Gateway Timeout` from the proxy.",
        remediation: "The proxy cannot connect to the registry: allow the proxy's own egress to the login server and data endpoints on 443, or exempt the registry from the proxy via NO_PROXY if it is reachable directly.",
        docs: &[AKS_HTTP_PROXY],
    },
    DataEndpointBlocked => Entry {
        phase: Phase::DataPath,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::DataEndpointReachable),
        blocks_api: false,
        summary: "The login server is reachable but the data endpoint that serves layers is not: the firewall allows only the login server.",
        field_symptom: "`docker login` and manifest reads work, layers fail: `download failed ... dial tcp <storage-ip>:443: i/o timeout`.",
        remediation: "Allow the registry's data endpoints (`az acr show-endpoints -n <reg>`: `<reg>.<region>.data.azurecr.io` for every replica region, or `*.blob.core.windows.net` without dedicated data endpoints) in the firewall / NSG / UDR, not just the login server; enable dedicated data endpoints (`az acr update --data-endpoint-enabled`) to get narrow FQDN rules.",
        docs: &[FIREWALL_RULES, AKS_EGRESS],
    },
    AuthenticationFailed => Entry {
        phase: Phase::DataPath,
        cause: Cause::RegistryAuthentication,
        code: Some("CONNECTIVITY_ACCESS_TOKEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The registry rejects the credentials (401 Unauthorized).",
        field_symptom: "`401 Unauthorized` / `failed to fetch oauth token`; pods in `ErrImagePull`.",
        remediation: "Check the pull credentials: for AKS attach the registry (`az aks update --attach-acr <reg>`) so the kubelet identity gets AcrPull, or fix the imagePullSecret; make sure the token or password has not expired.",
        docs: &[HEALTH_ERRORS],
    },
    AuthorizationFailed => Entry {
        phase: Phase::DataPath,
        cause: Cause::RegistryAuthentication,
        code: Some("CONNECTIVITY_ACCESS_TOKEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The identity is authenticated but not allowed to pull this repository (403 Forbidden).",
        field_symptom: "`403 Forbidden` / `denied: requested access to the resource is denied` after signing in.",
        remediation: "Grant the identity pull rights on the registry/repository (AcrPull role, or a scope map for repository-scoped tokens).",
        docs: &[HEALTH_ERRORS],
    },
    /// The registry answers `/v2/` but its token endpoint fails.
    TokenRequestFailed => Entry {
        phase: Phase::DataPath,
        cause: Cause::RegistryAuthentication,
        code: Some("CONNECTIVITY_ACCESS_TOKEN_ERROR"),
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The registry answers its `/v2/` challenge, but the token endpoint it names (`/oauth2/token`, `/oauth2/exchange`) fails: a server error, an answer without a token, or a host that cannot be reached.",
        field_symptom: "`failed to authorize: failed to fetch oauth token: unexpected status: 500` (or `... fetch anonymous token ...`), while `curl https://<reg>/v2/` answers 401 with a `WWW-Authenticate: Bearer realm=...` challenge.",
        remediation: "Check that the realm of the challenge (the token endpoint) is reachable from the nodes through the same firewall/proxy path as the login server, and that nothing in between (a proxy or TLS-inspecting appliance) rewrites or blocks it; for a refresh-token exchange failure, refresh the identity's credentials (`az login`, a new token for the kubelet identity). If the registry itself answers 5xx, check the Azure status page and retry later.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    ImageNotFound => Entry {
        phase: Phase::DataPath,
        cause: Cause::RegistryAuthentication,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The repository or tag does not exist in the registry (or is not visible to this identity).",
        field_symptom: "`manifest unknown` / `failed to resolve reference ... not found`.",
        remediation: "Check the image name and tag (`az acr repository show-tags -n <reg> --repository <repo>`); the image may have been deleted or never pushed.",
        docs: &[HEALTH_ERRORS],
    },
    TooManyRedirects => Entry {
        phase: Phase::DataPath,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The requests are redirected in a loop (often a proxy or captive portal).",
        field_symptom: "`stopped after 10 redirects`.",
        remediation: "Find the device that rewrites the request (proxy or captive portal) and exempt the registry and its data endpoints from it.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    PullFailed => Entry {
        phase: Phase::DataPath,
        cause: Cause::RegistryUnavailable,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The image pull failed with an unexpected answer (bad manifest, digest mismatch, unsupported media type).",
        field_symptom: "`failed to pull and unpack image` with a digest mismatch or an unexpected media type.",
        remediation: "Retry the pull; if it keeps failing, inspect the manifest (`az acr manifest show`) and the proxy/firewall on the path for response rewriting.",
        docs: &[HEALTH_ERRORS, FIREWALL_RULES],
    },
    /// Found in a probe's blob download (a 403 from the storage behind the redirect) and in the
    /// container runtime's own pull errors (`regcheck explain`).
    StorageAccessDenied => Entry {
        phase: Phase::DataPath,
        cause: Cause::PublicNetworkAccessRules,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::DataEndpointReachable),
        blocks_api: false,
        summary: "The storage account that serves the layers answers 403 (AuthorizationFailure: this request is not authorized): its firewall or a service endpoint policy refuses this client, not the registry's identity check.",
        field_symptom: "Manifests are fetched, layers fail with a `403` from `<account>.blob.core.windows.net` (or a data endpoint) and Azure Storage's `AuthorizationFailure` / `This request is not authorized to perform this operation`.",
        remediation: "The layer download was refused by Azure Storage, not by the registry: check VNet service endpoint policies for Microsoft.Storage on the node subnet (they must allow the registry's storage), proxies or firewalls that rewrite the redirect, and the registry's network rules; enable dedicated data endpoints (`az acr update --data-endpoint-enabled`) so layers come from `<reg>.<region>.data.azurecr.io` instead of `*.blob.core.windows.net`.",
        docs: &[FIREWALL_RULES, SELECTED_NETWORKS],
    },
    /// Found in the container runtime's own pull errors (`regcheck explain`).
    ImagePlatformMismatch => Entry {
        phase: Phase::DataPath,
        cause: Cause::RegistryAuthentication,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::RegistryApiReachable),
        blocks_api: false,
        summary: "The image exists, but its manifest list has no entry for the node's OS/architecture (no match for platform in manifest).",
        field_symptom: "`failed to pull and unpack image \"<ref>\": no match for platform in manifest: not found`, or Docker's `no matching manifest for linux/arm64/v8 in the manifest list entries`.",
        remediation: "Push the image for the node's platform (`docker buildx build --platform linux/amd64,linux/arm64 ...` or `az acr build --platform`), check it with `docker manifest inspect <image>`, or schedule the pod on nodes of a matching OS/architecture (nodeSelector `kubernetes.io/arch`, `kubernetes.io/os`).",
        docs: &[MULTI_ARCH],
    },
    EgressHostBlocked => Entry {
        phase: Phase::Egress,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: Some(StatusCondition::EgressReachable),
        blocks_api: false,
        summary: "A host the cluster must reach besides its registry (a rule of an egress profile such as AKS's required FQDNs, or a host the check names) cannot be reached: the finding names the host, the step that failed (DNS, proxy, TCP, TLS, HTTP) and the rule that requires it.",
        field_symptom: "Node provisioning, scaling or upgrades fail (`VMExtensionProvisioningError`, CSE exit codes for outbound connectivity), system pods stay in `ImagePullBackOff` on `mcr.microsoft.com` images, or `*.data.mcr.microsoft.com` layer downloads fail after a firewall change while the application registry works.",
        remediation: "Allow the FQDN the finding names on its port in the egress firewall (an Azure Firewall application rule, the AzureKubernetesService FQDN tag, or the NVA's FQDN/SNI list), in the proxy's allow list, and in DNS; the finding's documentation link is the rule that requires it.",
        docs: &[AKS_EGRESS],
    },
    ContextsDisagree => Entry {
        phase: Phase::OperatorContexts,
        cause: Cause::VirtualNetworkConfiguration,
        code: None,
        severity: Severity::Warning,
        condition: None,
        blocks_api: false,
        summary: "The node network and the pod network on the same node reach different results (e.g. the node resolves the private endpoint, pods get the public address): cluster DNS or pod egress differs from the node's.",
        field_symptom: "Image pulls on a node work while pods on it cannot reach the registry (or the other way round): e.g. init containers that call the registry API fail, kubelet pulls succeed.",
        remediation: "Compare the node's resolver with CoreDNS: check the coredns-custom ConfigMap forwarders and stub domains for the registry's zone (azurecr.io, privatelink.azurecr.io), NetworkPolicies and egress rules that apply to pods but not to nodes, and proxy settings injected into pods. Pods must see the registry the way the node does.",
        docs: &[PRIVATE_LINK, AKS_HTTP_PROXY],
    },
    /// Built by the operator: the node probe on a node reaches the registry API, the kubelet's
    /// pull on the same node gets 401/403.
    KubeletPullUnauthorized => Entry {
        phase: Phase::OperatorKubelet,
        cause: Cause::RegistryAuthentication,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The node reaches the registry API and gets a valid challenge, but the kubelet's own pull on the same node is refused with 401/403: the node's identity (or the workload's pull secret) has no pull rights.",
        field_symptom: "Pods on the node stay in `ErrImagePull` / `ImagePullBackOff` with `401 Unauthorized`, `failed to authorize` or `403 Forbidden` while the network path is fine (what `az aks check-acr` / canipull reports as missing pull permission).",
        remediation: "Give the pulling identity pull rights: `az aks update -n <cluster> -g <rg> --attach-acr <registry>` (grants the kubelet identity the AcrPull role), or assign AcrPull on the registry to the node pool's kubelet identity yourself (`az role assignment create --assignee <kubelet-identity-client-id> --role AcrPull --scope <registry-id>`); for a workload's credentials, fix the Secret in the ServiceAccount's imagePullSecrets (`kubectl patch serviceaccount <sa> -p '{\"imagePullSecrets\":[{\"name\":\"<secret>\"}]}'`) or spec.credentialsSecretRef, and check that the token or password has not expired.",
        docs: &[ACR_AKS_AUTH, HEALTH_ERRORS],
    },
    /// Built by the operator: the node probe verifies the registry's certificate, containerd
    /// on the same node does not.
    KubeletTLSUntrusted => Entry {
        phase: Phase::OperatorKubelet,
        cause: Cause::VirtualNetworkConfiguration,
        code: Some("CONNECTIVITY_SSL_ERROR"),
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The node probe verifies the registry's TLS certificate, but containerd on the same node does not trust it (or is sent to a mirror that presents another one): the runtime's trust store or registry host configuration differs from the node's.",
        field_symptom: "Pods on the node fail with `x509: certificate signed by unknown authority` (or another x509 error) in `ErrImagePull`, while `curl https://<registry>/v2/` from the node works.",
        remediation: "Make containerd trust what the node trusts: add the CA to the node's trust store and restart containerd, or set it per registry in `/etc/containerd/certs.d/<registry-host>/hosts.toml` (`ca = \"/etc/containerd/certs.d/<registry-host>/ca.crt\"`; `config_path` must point at `/etc/containerd/certs.d` in containerd's config); check that hosts.toml does not send the registry to a mirror (`[host.\"https://mirror\"]`) whose certificate differs. On AKS use a DaemonSet or the custom CA trust feature (`az aks nodepool update --enable-custom-ca-trust`).",
        docs: &[AKS_CUSTOM_CA, HEALTH_ERRORS],
    },
    /// Built by the operator: the kubelet's pull fails at a proxy the node probe did not use.
    KubeletProxyDiffers => Entry {
        phase: Phase::OperatorKubelet,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The kubelet's pull goes through an HTTP proxy (containerd's HTTPS_PROXY) and fails there, while the node probe on the same node reaches the registry without that proxy: containerd's proxy settings differ from the node's.",
        field_symptom: "Pods on the node fail with `proxyconnect tcp: dial tcp <proxy>: connection refused`, `Proxy Authentication Required` or a proxy's 403/502, while the node itself reaches the registry.",
        remediation: "Align containerd's proxy with the node's: fix or remove the proxy in containerd's systemd drop-in (`/etc/systemd/system/containerd.service.d/http-proxy.conf`: `HTTPS_PROXY`, and `NO_PROXY` listing the registry and its data endpoints), then `systemctl daemon-reload && systemctl restart containerd`; on AKS set the cluster's HTTP proxy configuration (`az aks update --http-proxy-config`) so nodes and containerd get the same settings.",
        docs: &[AKS_HTTP_PROXY],
    },
    /// Built by the operator: the kubelet is still pulling at the check's deadline.
    KubeletPullStalled => Entry {
        phase: Phase::OperatorKubelet,
        cause: Cause::ClientFirewallOrProxy,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The kubelet's pull of the image was still running at the check's deadline: the manifest was found, but the layers do not arrive (the classic symptom of a blocked data endpoint or a proxy that stalls large downloads).",
        field_symptom: "Pods stay in `ContainerCreating` with the Event `Pulling image \"<image>\"` and no `Pulled`; after minutes `context deadline exceeded` or `i/o timeout` from the data endpoint.",
        remediation: "Allow the registry's data endpoints (`az acr show-endpoints -n <registry>`: `<registry>.<region>.data.azurecr.io` or `*.blob.core.windows.net`) in the firewall / NSG / UDR and exempt them from TLS inspection; check containerd's proxy (`/etc/systemd/system/containerd.service.d/http-proxy.conf`) for a NO_PROXY that misses them; compare with the node probe's DataEndpointReachable condition.",
        docs: &[FIREWALL_RULES, AKS_EGRESS],
    },
    ProbeUnschedulable => Entry {
        phase: Phase::OperatorProbe,
        cause: Cause::ProbeInfrastructure,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The probe pod could not be placed on its node (taints, resources, or the node went away): nothing is known about the registry from there.",
        field_symptom: "The regcheck probe pod stays `Pending`: `0/N nodes are available: ... untolerated taint`.",
        remediation: "Look at the probe pod's events (`kubectl describe pod -l regcheck.dev/check=<name>`): add tolerations for the node's taints in spec.contexts.node.tolerations, free resources on the node, or narrow spec.contexts.node.nodeSelector.",
        docs: &[K8S_TAINTS],
    },
    ProbeImagePullFailed => Entry {
        phase: Phase::OperatorProbe,
        cause: Cause::ProbeInfrastructure,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The probe's own image could not be pulled, so the probe never ran (this may itself be a registry problem, but not necessarily the checked one).",
        field_symptom: "The regcheck probe pod is in `ErrImagePull` / `ImagePullBackOff`.",
        remediation: "Check that the nodes can pull the regcheck image itself (image name, tag, pull secret of the operator's namespace, and the path to the registry that hosts it).",
        docs: &[K8S_IMAGES],
    },
    ProbeCrashed => Entry {
        phase: Phase::OperatorProbe,
        cause: Cause::ProbeInfrastructure,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The probe exited without a readable report (crash, OOM kill, or a malformed or oversized termination message).",
        field_symptom: "The regcheck probe pod ends in `Error` or `OOMKilled` without a report.",
        remediation: "Read the probe pod's logs and exit reason (`kubectl logs`, `kubectl describe pod`); an OOMKilled probe needs a higher memory limit. Report a crash with the logs.",
        docs: &[K8S_POD_FAILURE],
    },
    ProbeTimedOut => Entry {
        phase: Phase::OperatorProbe,
        cause: Cause::ProbeInfrastructure,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The probe did not finish before its Job deadline.",
        field_symptom: "The regcheck probe Job fails with `DeadlineExceeded`.",
        remediation: "Check the probe pod's events and logs: a probe stuck in Pending or image pull runs into the Job deadline; raise spec.timeoutSeconds if the network is slow.",
        docs: &[K8S_JOBS],
    },
    /// The API server refused to create the probe's Job (resource quota, admission webhook or
    /// policy engine, missing namespace): the probe never existed.
    ProbeNotCreated => Entry {
        phase: Phase::OperatorProbe,
        cause: Cause::ProbeInfrastructure,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The API server refused to create the probe's Job (a ResourceQuota, an admission webhook or policy engine, or a missing namespace), so the probe never ran: nothing is known about the registry from there.",
        field_symptom: "No regcheck probe Job appears for a context; the controller logs `403 ... exceeded quota` (or a webhook's or policy engine's denial) when creating it.",
        remediation: "Read the API server's answer in the message: raise or scope the ResourceQuota of the namespace (`kubectl describe resourcequota -n <namespace>`; count/jobs.batch, pods, cpu, memory), allow the probe Job in the admission webhook or policy engine that refused it, or create the namespace. The next run tries again.",
        docs: &[K8S_QUOTAS],
    },
    /// The controller's target policy refuses the check (host, port or namespace not allowed);
    /// no probe ran.
    TargetNotAllowed => Entry {
        phase: Phase::OperatorPolicy,
        cause: Cause::OperatorPolicy,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The operator's target policy refuses this check (a host, port or node-context namespace the cluster administrator has not allowed), so no probe ran.",
        field_symptom: "No probe runs for the check: its `Ready` condition is `False` with reason `TargetNotAllowed`, naming the operator policy rule (allowed registries, ports, or namespaces allowed to probe from the node network).",
        remediation: "Read the rule named in the message: change the spec (registry, dataEndpoints, regions, extraHosts, ports, or spec.contexts.node.enabled=false), or ask the cluster administrator to allow it in the controller's --allowed-registries, --allowed-ports or --node-context-namespaces settings (Helm values). Loopback, link-local/metadata and platform addresses are never allowed.",
        docs: &[K8S_MULTI_TENANCY],
    },
    /// The check's spec is unusable; no probe ran. Built by the operator.
    InvalidSpec => Entry {
        phase: Phase::OperatorSpec,
        cause: Cause::CheckConfiguration,
        code: None,
        severity: Severity::Error,
        condition: None,
        blocks_api: false,
        summary: "The check's spec is unusable (a value the schema cannot check, or that an API server without validation rules let through); no probe runs.",
        field_symptom: "`kubectl get rcc` shows Ready=False with reason InvalidSpec and no probe Jobs exist for the check; the message names the field and its value.",
        remediation: "Fix the field named in the message; no probes run until then.",
        docs: &[K8S_CRD_VALIDATION],
    },
}

impl Reason {
    pub fn phase(self) -> Phase {
        self.entry().phase
    }

    /// Root-cause family (Microsoft's troubleshooting guide).
    pub fn cause(self) -> Cause {
        self.entry().cause
    }

    /// The `az acr check-health` error code this reason corresponds to, where one fits.
    pub fn code(self) -> Option<&'static str> {
        self.entry().code
    }

    /// Default severity of a finding with this reason.
    pub fn default_severity(self) -> Severity {
        self.entry().severity
    }

    pub fn summary(self) -> &'static str {
        self.entry().summary
    }

    pub fn field_symptom(self) -> &'static str {
        self.entry().field_symptom
    }

    pub fn remediation(self) -> &'static str {
        self.entry().remediation
    }

    pub fn docs(self) -> &'static [&'static str] {
        self.entry().docs
    }

    /// See [`Entry::blocks_api`].
    pub fn blocks_api(self) -> bool {
        self.entry().blocks_api
    }

    /// A reason only the operator produces (from several probes, its policy, the spec, or a
    /// probe that did not report); the diagnosis of one probe's evidence never does.
    pub fn is_operator(self) -> bool {
        self.entry().phase.is_operator()
    }

    /// A failure of the probe itself, which says nothing about the registry.
    pub fn is_probe_failure(self) -> bool {
        self.entry().phase == Phase::OperatorProbe
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Finding {
    /// A finding for `reason` with cause, code, default severity, remediation and docs taken
    /// from the catalogue.
    pub fn catalogued(
        reason: Reason,
        endpoint: impl Into<String>,
        role: Option<Role>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            cause: reason.cause(),
            severity: reason.default_severity(),
            code: reason.code().map(str::to_string),
            endpoint: endpoint.into(),
            role,
            message: message.into(),
            remediation: reason.remediation().to_string(),
            docs: reason.docs().iter().map(|d| d.to_string()).collect(),
        }
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn with_code(mut self, code: Option<&str>) -> Self {
        self.code = code.map(str::to_string);
        self
    }
}

/// One code of `az acr check-health` (its error reference, and the Azure CLI's `_errors.py`
/// for `CONNECTIVITY_WWW_AUTHENTICATE_ERROR`, which the reference does not list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCode {
    pub code: &'static str,
    /// What check-health means by it, in one line.
    pub meaning: &'static str,
    /// Reasons whose findings the diagnosis gives this code although their entry has another
    /// (or none): the per-finding refinements.
    pub refined_from: &'static [Reason],
    /// Why no reason carries the code, when none does.
    pub no_counterpart: Option<&'static str>,
}

/// Every `az acr check-health` code, reviewed against the catalogue: the reasons carrying a
/// code are those whose entry names it plus `refined_from`; a code without any says why.
pub const HEALTH_CODES: &[HealthCode] = &[
    HealthCode {
        code: "DOCKER_COMMAND_ERROR",
        meaning: "no Docker client on the machine running the CLI",
        refined_from: &[],
        no_counterpart: Some(
            "about the workstation's Docker client; regcheck uses no container client (kubelet and containerd pull on the nodes)",
        ),
    },
    HealthCode {
        code: "DOCKER_DAEMON_ERROR",
        meaning: "the Docker daemon is not running or not reachable",
        refined_from: &[],
        no_counterpart: Some(
            "about the workstation's Docker daemon; a node's runtime failing is seen by `regcheck explain` in kubelet's messages, not as a daemon check",
        ),
    },
    HealthCode {
        code: "DOCKER_VERSION_ERROR",
        meaning: "`docker --version` could not run",
        refined_from: &[],
        no_counterpart: Some("a local tool version, not the network path"),
    },
    HealthCode {
        code: "DOCKER_PULL_ERROR",
        meaning: "pulling a sample image failed",
        refined_from: &[],
        no_counterpart: Some(
            "a catch-all for any pull failure; the probe's pull (`spec.image`) reports which step failed instead (`AuthenticationFailed`, `AuthorizationFailed`, `ImageNotFound`, `DataEndpointBlocked`, `StorageAccessDenied`, `PullFailed`, ...)",
        ),
    },
    HealthCode {
        code: "HELM_COMMAND_ERROR",
        meaning: "no Helm client found",
        refined_from: &[],
        no_counterpart: Some("a local tool, not the network path"),
    },
    HealthCode {
        code: "HELM_VERSION_ERROR",
        meaning: "the Helm version could not be determined",
        refined_from: &[],
        no_counterpart: Some("a local tool version, not the network path"),
    },
    HealthCode {
        code: "NOTARY_VERSION_ERROR",
        meaning: "the Notary client is incompatible with the CLI",
        refined_from: &[],
        no_counterpart: Some("a local tool version, not the network path"),
    },
    HealthCode {
        code: "CMK_ERROR",
        meaning: "the registry cannot reach the managed identity of its customer-managed key",
        refined_from: &[],
        no_counterpart: Some(
            "read from the registry's ARM resource; the probes see only the data plane and hold no Azure management credentials",
        ),
    },
    HealthCode {
        code: "LOGIN_SERVER_ERROR",
        meaning: "the CLI could not find the registry's login server through Azure Resource Manager",
        refined_from: &[],
        no_counterpart: Some(
            "an ARM lookup of the registry name; a check names its login server itself (`spec.registry`), and a login server that does not resolve is `DNSNameNotFound`",
        ),
    },
    HealthCode {
        code: "CONNECTIVITY_DNS_ERROR",
        meaning: "the login server does not resolve",
        refined_from: &[],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_FORBIDDEN_ERROR",
        meaning: "the challenge endpoint (`/v2/`) answers 403: network rules or disabled public access",
        refined_from: &[],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_CHALLENGE_ERROR",
        meaning: "the challenge endpoint issued no challenge",
        refined_from: &[],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_WWW_AUTHENTICATE_ERROR",
        meaning: "the challenge's `WWW-Authenticate` header cannot be parsed",
        refined_from: &[Reason::RegistryChallengeInvalid],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_AAD_LOGIN_ERROR",
        meaning: "the registry issued a challenge but does not support Microsoft Entra sign-in",
        refined_from: &[],
        no_counterpart: Some(
            "the probes never sign in with a Microsoft Entra token (they hold none: the kubelet's credential provider does that on the node), so they cannot see whether Entra sign-in is supported",
        ),
    },
    HealthCode {
        code: "CONNECTIVITY_REFRESH_TOKEN_ERROR",
        meaning: "the login server did not hand out a refresh token (`/oauth2/exchange`)",
        refined_from: &[
            Reason::AuthenticationFailed,
            Reason::AuthorizationFailed,
            Reason::TokenRequestFailed,
        ],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_ACCESS_TOKEN_ERROR",
        meaning: "the login server did not hand out an access token (`/oauth2/token`)",
        refined_from: &[],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_SSL_ERROR",
        meaning: "no secure connection to the registry, usually because of a proxy",
        refined_from: &[],
        no_counterpart: None,
    },
    HealthCode {
        code: "CONNECTIVITY_TOOMANYREQUESTS_ERROR",
        meaning: "too many requests: the registry throttles",
        refined_from: &[],
        no_counterpart: None,
    },
];

/// The reasons carrying `code`: by their entry, then by refinement.
pub fn reasons_with_code(code: &str) -> Vec<Reason> {
    let mut out: Vec<Reason> = Reason::ALL
        .iter()
        .copied()
        .filter(|r| r.code() == Some(code))
        .collect();
    if let Some(h) = HEALTH_CODES.iter().find(|h| h.code == code) {
        for r in h.refined_from {
            if !out.contains(r) {
                out.push(*r);
            }
        }
    }
    out
}

/// Refills what the compact report leaves out (remediation and docs) from the reason.
/// Fields already present are kept.
pub fn restore(finding: &mut Finding) {
    if finding.remediation.is_empty() {
        finding.remediation = finding.reason.remediation().to_string();
    }
    if finding.docs.is_empty() {
        finding.docs = finding
            .reason
            .docs()
            .iter()
            .map(|d| d.to_string())
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_lists_every_reason_once() {
        let names: HashSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        // serde's name is the API and must agree with as_str.
        for r in Reason::ALL {
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        // Exhaustive match: adding a variant without updating ALL breaks this count.
        let count = |r: Reason| match r {
            Reason::Healthy | Reason::PullFailed => 1,
            _ => 0,
        };
        assert_eq!(Reason::ALL.iter().map(|r| count(*r)).sum::<i32>(), 2);
        assert_eq!(Reason::ALL.len(), 59);
    }

    #[test]
    fn every_reason_has_text_and_https_docs() {
        for &r in Reason::ALL {
            assert!(!r.summary().trim().is_empty(), "{r}: summary");
            assert!(!r.summary().contains('\n'), "{r}: summary is one line");
            assert!(r.remediation().len() > 20, "{r}: remediation");
            assert!(!r.docs().is_empty(), "{r}: docs");
            for d in r.docs() {
                // Failures of the probe itself are Kubernetes matters.
                let site = if matches!(
                    r.cause(),
                    Cause::ProbeInfrastructure | Cause::OperatorPolicy | Cause::CheckConfiguration
                ) {
                    "https://kubernetes.io/docs/"
                } else {
                    "https://learn.microsoft.com/"
                };
                // containerd's own configuration is documented by containerd.
                assert!(d.starts_with(site) || *d == CONTAINERD_HOSTS, "{r}: {d}");
            }
            if let Some(code) = r.code() {
                assert!(code.starts_with("CONNECTIVITY_"), "{r}: {code}");
            }
        }
    }

    #[test]
    fn causes_follow_the_guide() {
        assert_eq!(Reason::Healthy.cause(), Cause::None);
        assert_eq!(Reason::Healthy.default_severity(), Severity::Info);
        for &r in Reason::ALL.iter().filter(|r| **r != Reason::Healthy) {
            assert_ne!(r.cause(), Cause::None, "{r}");
            assert_ne!(r.default_severity(), Severity::Info, "{r}");
        }
        let cases = [
            (
                Reason::RegistryDeniedClientIP,
                Cause::PublicNetworkAccessRules,
            ),
            (
                Reason::PrivateEndpointResolvesPublic,
                Cause::VirtualNetworkConfiguration,
            ),
            (Reason::ProxyBypassMissing, Cause::ClientFirewallOrProxy),
            (Reason::Throttled, Cause::RegistryThrottling),
            (Reason::AuthenticationFailed, Cause::RegistryAuthentication),
            (Reason::RegistryServerError, Cause::RegistryUnavailable),
            (Reason::DataEndpointBlocked, Cause::ClientFirewallOrProxy),
        ];
        for (r, c) in cases {
            assert_eq!(r.cause(), c, "{r}");
        }
    }

    #[test]
    fn check_health_codes() {
        let cases = [
            (Reason::DNSNameNotFound, Some("CONNECTIVITY_DNS_ERROR")),
            (
                Reason::RegistryDeniedClientIP,
                Some("CONNECTIVITY_FORBIDDEN_ERROR"),
            ),
            (
                Reason::RegistryForbidden,
                Some("CONNECTIVITY_FORBIDDEN_ERROR"),
            ),
            (
                Reason::RegistryChallengeInvalid,
                Some("CONNECTIVITY_CHALLENGE_ERROR"),
            ),
            (Reason::TLSInterception, Some("CONNECTIVITY_SSL_ERROR")),
            (
                Reason::TLSCertificateInvalid,
                Some("CONNECTIVITY_SSL_ERROR"),
            ),
            (
                Reason::Throttled,
                Some("CONNECTIVITY_TOOMANYREQUESTS_ERROR"),
            ),
            (Reason::Healthy, None),
            (Reason::ConnectionTimedOut, None),
        ];
        for (r, c) in cases {
            assert_eq!(r.code(), c, "{r}");
        }
    }

    #[test]
    fn every_check_health_code_is_reviewed() {
        let mut seen = std::collections::HashSet::new();
        for h in HEALTH_CODES {
            assert!(seen.insert(h.code), "{} twice", h.code);
            let reasons = reasons_with_code(h.code);
            assert_eq!(
                reasons.is_empty(),
                h.no_counterpart.is_some(),
                "{}: a code has reasons or says why it has none ({reasons:?})",
                h.code
            );
            for r in h.refined_from {
                assert_ne!(
                    r.code(),
                    Some(h.code),
                    "{}: {r} needs no refinement",
                    h.code
                );
            }
        }
        for &r in Reason::ALL {
            if let Some(c) = r.code() {
                assert!(
                    HEALTH_CODES.iter().any(|h| h.code == c),
                    "{r}: {c} is not a check-health code"
                );
            }
        }
        for code in [
            "CONNECTIVITY_REFRESH_TOKEN_ERROR",
            "CONNECTIVITY_ACCESS_TOKEN_ERROR",
            "CONNECTIVITY_AAD_LOGIN_ERROR",
            "LOGIN_SERVER_ERROR",
            "CMK_ERROR",
        ] {
            assert!(HEALTH_CODES.iter().any(|h| h.code == code), "{code}");
        }
        assert_eq!(
            Reason::AuthenticationFailed.code(),
            Some("CONNECTIVITY_ACCESS_TOKEN_ERROR")
        );
        assert_eq!(
            Reason::RegistryDeniedPrivateClientIP.code(),
            Some("CONNECTIVITY_FORBIDDEN_ERROR")
        );
    }

    #[test]
    fn private_endpoint_remediation_is_concrete() {
        let r = Reason::PrivateEndpointResolvesPublic.remediation();
        assert!(r.contains("privatelink.azurecr.io"));
        assert!(r.contains("168.63.129.16"));
        assert!(
            Reason::ProxyBypassMissing
                .remediation()
                .contains("NO_PROXY")
        );
    }

    #[test]
    fn restore_refills_compact_findings() {
        let full = Finding::catalogued(
            Reason::DataEndpointBlocked,
            "r.westeurope.data.azurecr.io",
            Some(Role::DataEndpoint),
            "blocked",
        );
        assert_eq!(full.cause, Cause::ClientFirewallOrProxy);
        assert!(!full.remediation.is_empty() && !full.docs.is_empty());
        let mut compact = full.clone();
        compact.remediation.clear();
        compact.docs.clear();
        let json = serde_json::to_string(&compact).unwrap();
        assert!(!json.contains("remediation") && !json.contains("docs"));
        let mut back: Finding = serde_json::from_str(&json).unwrap();
        restore(&mut back);
        assert_eq!(back, full);

        // Present fields are kept.
        let mut custom = full.clone();
        custom.remediation = "do this".into();
        restore(&mut custom);
        assert_eq!(custom.remediation, "do this");
    }
}
