//! The catalogue: static knowledge attached to every [`Reason`].
//!
//! For each reason: the root-cause family of Microsoft's "Troubleshoot network issues with
//! registry" guide ([`Cause`]), the matching `az acr check-health` error code where one fits,
//! a one-line summary, concrete remediation for an AKS/Kubernetes administrator, and links to
//! the official documentation. The compact report leaves remediation and docs out; [`restore`]
//! puts them back from the reason.

use crate::evidence::Role;
use crate::findings::{Cause, Finding, Reason, Severity};

/// Documentation pages (all from the field guide).
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
    pub const K8S_QUOTAS: &str = "https://kubernetes.io/docs/concepts/policy/resource-quotas/";
    pub const K8S_MULTI_TENANCY: &str =
        "https://kubernetes.io/docs/concepts/security/multi-tenancy/";
}

use links::*;

impl Reason {
    /// Root-cause family (Microsoft's troubleshooting guide).
    pub fn cause(self) -> Cause {
        use Reason::*;
        match self {
            Healthy => Cause::None,
            DNSNameNotFound
            | DNSServerUnreachable
            | DNSServerFailure
            | DNSAnswersDiffer
            | PrivateEndpointResolvesPublic
            | PrivateEndpointNotConfigured
            | DataEndpointDNSMissing
            | HostUnreachable
            | ContextsDisagree => Cause::VirtualNetworkConfiguration,
            ConnectionTimedOut
            | ConnectionRefused
            | TargetAddressBlocked
            | TLSResetAfterClientHello
            | TLSHandshakeTimeout
            | TLSInterception
            | TLSCertificateInvalid
            | HeadersTimeout
            | ConnectionClosed
            | RegistryChallengeInvalid
            | NotARegistry
            | ProxyDenied
            | ProxyAuthRequired
            | ProxyConnectEOF
            | ProxyUnreachable
            | ProxyBypassMissing
            | ProxyUpstreamFailed
            | DataEndpointBlocked
            | TooManyRedirects => Cause::ClientFirewallOrProxy,
            RegistryDeniedClientIP | RegistryForbidden => Cause::PublicNetworkAccessRules,
            AuthenticationFailed | AuthorizationFailed | ImageNotFound => {
                Cause::RegistryAuthentication
            }
            Throttled => Cause::RegistryThrottling,
            RegistryServerError | PullFailed => Cause::RegistryUnavailable,
            ProbeUnschedulable | ProbeImagePullFailed | ProbeCrashed | ProbeTimedOut
            | ProbeNotCreated => Cause::ProbeInfrastructure,
            TargetNotAllowed => Cause::OperatorPolicy,
        }
    }

    /// The `az acr check-health` error code this reason corresponds to, where one fits.
    /// (The diagnosis may refine it per finding, e.g. a malformed challenge is
    /// `CONNECTIVITY_WWW_AUTHENTICATE_ERROR` rather than `CONNECTIVITY_CHALLENGE_ERROR`.)
    pub fn code(self) -> Option<&'static str> {
        use Reason::*;
        match self {
            DNSNameNotFound | DNSServerUnreachable | DNSServerFailure | DataEndpointDNSMissing => {
                Some("CONNECTIVITY_DNS_ERROR")
            }
            RegistryDeniedClientIP | RegistryForbidden => Some("CONNECTIVITY_FORBIDDEN_ERROR"),
            RegistryChallengeInvalid => Some("CONNECTIVITY_CHALLENGE_ERROR"),
            TLSResetAfterClientHello
            | TLSHandshakeTimeout
            | TLSInterception
            | TLSCertificateInvalid => Some("CONNECTIVITY_SSL_ERROR"),
            Throttled => Some("CONNECTIVITY_TOOMANYREQUESTS_ERROR"),
            _ => None,
        }
    }

    /// Default severity of a finding with this reason (the diagnosis may lower it, e.g. when
    /// only some of several addresses fail).
    pub fn default_severity(self) -> Severity {
        match self {
            Reason::Healthy => Severity::Info,
            Reason::DNSAnswersDiffer | Reason::ContextsDisagree => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// One line: what the reason means.
    pub fn summary(self) -> &'static str {
        use Reason::*;
        match self {
            Healthy => "Every probed path to the registry works.",
            DNSNameNotFound => "The host name does not resolve (NXDOMAIN or no A/AAAA record).",
            DNSServerUnreachable => "The DNS servers the client uses do not answer.",
            DNSServerFailure => {
                "The DNS server answers with an error (SERVFAIL, REFUSED, a CNAME loop or a malformed answer)."
            }
            DNSAnswersDiffer => {
                "The configured DNS servers give different answers for the same name, so results depend on which server a client asks."
            }
            PrivateEndpointResolvesPublic => {
                "The registry has a private endpoint, but this client's DNS resolves it to a public address: the privatelink.azurecr.io private DNS zone is not visible to its resolver."
            }
            PrivateEndpointNotConfigured => {
                "A private address was expected, but the name resolves to public addresses with no privatelink CNAME: no private endpoint (or no private DNS) is in place for this registry."
            }
            DataEndpointDNSMissing => {
                "The login server resolves privately, but a data endpoint does not: its A record is missing from the private DNS zone, so layer downloads fail."
            }
            ConnectionTimedOut => {
                "TCP connections to the endpoint time out: packets are dropped on the way (NSG, route table, firewall appliance)."
            }
            ConnectionRefused => "TCP connections to the endpoint are actively refused (reset).",
            HostUnreachable => {
                "There is no route to the endpoint's address (ICMP unreachable); for a private endpoint, the network it lives in is not routed from here."
            }
            TargetAddressBlocked => {
                "The name resolves to an address that must not be dialled (loopback, link-local, unspecified): usually a hosts-file entry or a DNS filter sinkholing the name."
            }
            TLSResetAfterClientHello => {
                "The connection is reset right after the TLS ClientHello: a firewall filtering by SNI/FQDN does not allow this host."
            }
            TLSHandshakeTimeout => {
                "The TLS handshake does not complete in time: a filtering appliance or proxy holds the connection."
            }
            TLSInterception => {
                "The server certificate is issued by an untrusted CA: TLS inspection by a firewall or proxy is re-signing the traffic."
            }
            TLSCertificateInvalid => {
                "The TLS certificate presented is not valid for this host (wrong name, expired, or handshake failure)."
            }
            HeadersTimeout => {
                "The request was sent but no response headers arrived in time (`Client.Timeout exceeded while awaiting headers`)."
            }
            ConnectionClosed => "The connection was closed before the server sent a response.",
            RegistryDeniedClientIP => {
                "The registry's network rules deny the client's public IP address (403 DENIED: client with IP is not allowed access)."
            }
            RegistryForbidden => {
                "The registry answers 403 Forbidden to the API challenge: public network access is disabled or restricted."
            }
            RegistryChallengeInvalid => {
                "The registry's /v2/ answer carries no usable authentication challenge (missing or malformed WWW-Authenticate)."
            }
            NotARegistry => {
                "Something that is not a container registry answered (wrong host, captive portal, proxy or web page)."
            }
            Throttled => "The registry throttles requests (429 Too Many Requests).",
            RegistryServerError => "The registry answers with a server error (5xx).",
            ProxyDenied => "The HTTP proxy refuses to CONNECT to this destination.",
            ProxyAuthRequired => {
                "The HTTP proxy requires authentication (407) and the credentials are missing or wrong."
            }
            ProxyConnectEOF => {
                "The HTTP proxy closed the connection without answering the CONNECT (`proxyconnect tcp: EOF`): wrong proxy scheme or port, or the proxy is failing."
            }
            ProxyUnreachable => "The HTTP proxy itself cannot be reached.",
            ProxyBypassMissing => {
                "A private-endpoint address is sent through the HTTP proxy, which cannot reach it, because NO_PROXY does not exempt the host."
            }
            ProxyUpstreamFailed => {
                "The HTTP proxy cannot reach the destination (502/503/504 or no answer to CONNECT)."
            }
            DataEndpointBlocked => {
                "The login server is reachable but the data endpoint that serves layers is not: the firewall allows only the login server."
            }
            AuthenticationFailed => "The registry rejects the credentials (401 Unauthorized).",
            AuthorizationFailed => {
                "The identity is authenticated but not allowed to pull this repository (403 Forbidden)."
            }
            ImageNotFound => {
                "The repository or tag does not exist in the registry (or is not visible to this identity)."
            }
            TooManyRedirects => {
                "The requests are redirected in a loop (often a proxy or captive portal)."
            }
            PullFailed => {
                "The image pull failed with an unexpected answer (bad manifest, digest mismatch, unsupported media type)."
            }
            ContextsDisagree => {
                "The node network and the pod network on the same node reach different results (e.g. the node resolves the private endpoint, pods get the public address): cluster DNS or pod egress differs from the node's."
            }
            ProbeUnschedulable => {
                "The probe pod could not be placed on its node (taints, resources, or the node went away): nothing is known about the registry from there."
            }
            ProbeImagePullFailed => {
                "The probe's own image could not be pulled, so the probe never ran (this may itself be a registry problem, but not necessarily the checked one)."
            }
            ProbeCrashed => {
                "The probe exited without a readable report (crash, OOM kill, or a malformed or oversized termination message)."
            }
            ProbeTimedOut => "The probe did not finish before its Job deadline.",
            ProbeNotCreated => {
                "The API server refused to create the probe's Job (a ResourceQuota, an admission webhook or policy engine, or a missing namespace), so the probe never ran: nothing is known about the registry from there."
            }
            TargetNotAllowed => {
                "The operator's target policy refuses this check (a host, port or node-context namespace the cluster administrator has not allowed), so no probe ran."
            }
        }
    }

    /// What an AKS/Kubernetes administrator can do about it.
    pub fn remediation(self) -> &'static str {
        use Reason::*;
        match self {
            Healthy => {
                "No action needed; run the check again after network, DNS or proxy changes, from every node pool."
            }
            DNSNameNotFound => {
                "Check the registry name for typos and that the registry still exists (`az acr show -n <reg>`). With a private endpoint, make sure the private DNS zone privatelink.azurecr.io holds an A record for `<reg>` (and `<reg>.<region>.data` for each replica) and that the zone is linked to the VNet whose DNS the nodes use; with a custom DNS server, add a conditional forwarder for azurecr.io to 168.63.129.16."
            }
            DNSServerUnreachable => {
                "Check the VNet's DNS server setting (`az network vnet show --query dhcpOptions`) and that the custom DNS servers are running and reachable on UDP/TCP 53 from the node subnet (NSG, route table, firewall). After changing VNet DNS servers, restart the nodes (`az aks nodepool upgrade --node-image-only` or reimage) so they pick up the new settings."
            }
            DNSServerFailure => {
                "Look at the DNS server's logs for this name: a custom DNS server must forward azurecr.io (and privatelink.azurecr.io) to Azure DNS 168.63.129.16 or to a resolver that can. Check for CNAME loops between zones, and for REFUSED caused by recursion being disabled for the node subnet."
            }
            DNSAnswersDiffer => {
                "Make every DNS server in the VNet (and CoreDNS forwarders) answer the same way: link the privatelink.azurecr.io zone to every VNet whose DNS is used, give every custom DNS server the same conditional forwarder for azurecr.io to 168.63.129.16, and remove stale or unreachable servers from the VNet DNS settings."
            }
            PrivateEndpointResolvesPublic => {
                "Make the private zone visible to this client's resolver: link the VNet (or the custom DNS server's VNet) to the privatelink.azurecr.io private DNS zone (`az network private-dns link vnet create`), or add a conditional forwarder for azurecr.io to 168.63.129.16 on the custom DNS server. Check that CoreDNS custom forwarders (coredns-custom ConfigMap) do not send azurecr.io to a public resolver."
            }
            PrivateEndpointNotConfigured => {
                "Create a private endpoint for the registry in a VNet reachable from the cluster with private DNS integration (zone privatelink.azurecr.io linked to the cluster VNet), or, if public access is intended, run the check with `--expect any`."
            }
            DataEndpointDNSMissing => {
                "Add the data endpoint's A record (`<reg>.<region>.data`) to the privatelink.azurecr.io zone for every replica region — recreate the private endpoint's DNS zone group so records are managed automatically — and make sure the zone is linked to the cluster VNet. With a custom DNS server, forward azurecr.io to 168.63.129.16."
            }
            ConnectionTimedOut => {
                "Allow TCP 443 from the node subnet to the registry's login server and data endpoints (`az acr show-endpoints -n <reg>`) in the NSG, Azure Firewall / network virtual appliance application rules, and route table (UDR). For a private endpoint address, check VNet peering and the routes to the private endpoint's subnet."
            }
            ConnectionRefused => {
                "Something rejects the connection on port 443: check firewall rules that reset instead of drop, the port number used, and for a private endpoint that it still exists and is approved (`az network private-endpoint-connection list`)."
            }
            HostUnreachable => {
                "Add a route to the address: for a private endpoint, peer the VNets (or connect them through the hub) and make sure the UDR / hub firewall forwards traffic to the private endpoint subnet; a private endpoint that was deleted while its DNS record remains must be removed from the private zone."
            }
            TargetAddressBlocked => {
                "Find out why the name resolves to this address: remove hosts-file entries for the registry on the nodes, or allow the registry in the DNS filtering policy (DNS sinkhole) of the firewall."
            }
            TLSResetAfterClientHello => {
                "Allow the host name in the firewall's FQDN/SNI rules (Azure Firewall application rule or NVA) for TCP 443: the login server `<reg>.azurecr.io` and every data endpoint `<reg>.<region>.data.azurecr.io` (or `*.blob.core.windows.net` without dedicated data endpoints)."
            }
            TLSHandshakeTimeout => {
                "Check the firewall or proxy on the path for TLS inspection or filtering rules that hold the connection; exempt the registry's login server and data endpoints from inspection, or allow them in the FQDN rules."
            }
            TLSInterception => {
                "Exempt the registry's login server and data endpoints from TLS inspection on the firewall/proxy, or install the inspecting CA on the nodes (AKS custom CA trust: `az aks update --custom-ca-trust-certificates`) and in probes."
            }
            TLSCertificateInvalid => {
                "Make sure the connection reaches the registry itself, not a middlebox: check the hosts file and DNS for the name, exempt it from TLS inspection, and check the node's clock for expiry errors."
            }
            HeadersTimeout => {
                "A device on the path accepts the connection but does not forward the request: allow the registry host in the firewall/proxy application rules, and check for TLS inspection appliances that stall."
            }
            ConnectionClosed => {
                "A device on the path closes the connection after the request: allow the registry host (login server and data endpoints) in the firewall/proxy application rules."
            }
            RegistryDeniedClientIP => {
                "Compare the IP the registry saw with the cluster's expected egress IP (NAT gateway, load balancer outbound IP or firewall public IP). Either add it to the registry's network rules (`az acr network-rule add -n <reg> --ip-address <ip>`), or route the traffic through a private endpoint; for AKS, make sure traffic leaves through the expected NAT/firewall."
            }
            RegistryForbidden => {
                "Check the registry's public network access setting and network rules (`az acr show -n <reg> --query \"{public:publicNetworkAccess,rules:networkRuleSet}\"`): allow the cluster's egress IP, or use a private endpoint from the cluster VNet."
            }
            RegistryChallengeInvalid => {
                "Make sure the request reaches the registry and not a proxy or captive portal: allow the registry host in the proxy/firewall without rewriting responses; run `az acr check-health -n <reg>` from the node to compare."
            }
            NotARegistry => {
                "Check that the host name is the registry's login server (`az acr show -n <reg> --query loginServer`) and that no proxy, captive portal or hosts-file entry answers for it."
            }
            Throttled => {
                "Reduce the request rate (pull through a cache, stagger deployments, avoid `imagePullPolicy: Always` at scale) or move the registry to a higher SKU with more throughput."
            }
            RegistryServerError => {
                "Retry later and check Azure Service Health for Container Registry in the region; if the errors persist, open a support case. When a proxy is on the path, its error pages may also appear as 5xx."
            }
            ProxyDenied => {
                "Allow CONNECT to the registry's login server and data endpoints on port 443 in the proxy's policy, or exempt them via NO_PROXY (AKS http proxy config `noProxy`) if they are reachable directly."
            }
            ProxyAuthRequired => {
                "Configure proxy credentials in the proxy URL of the AKS http proxy configuration (`httpsProxy`), or allow the node subnet without authentication."
            }
            ProxyConnectEOF => {
                "Check the proxy URL: scheme (http:// for a plain proxy), host and port, and that the proxy is running; AKS nodes take it from the http proxy configuration (/etc/environment)."
            }
            ProxyUnreachable => {
                "Make sure the proxy host resolves and is reachable from the node subnet on its port (NSG, routes), and that the proxy service is up."
            }
            ProxyBypassMissing => {
                "Add the registry host names (or `.azurecr.io` and `.privatelink.azurecr.io`) to NO_PROXY in the AKS http proxy configuration (`az aks update --http-proxy-config`): CIDR entries in NO_PROXY only match hosts written as IP literals, so a private endpoint reached by name is still sent to the proxy."
            }
            ProxyUpstreamFailed => {
                "The proxy cannot connect to the registry: allow the proxy's own egress to the login server and data endpoints on 443, or exempt the registry from the proxy via NO_PROXY if it is reachable directly."
            }
            DataEndpointBlocked => {
                "Allow the registry's data endpoints (`az acr show-endpoints -n <reg>`: `<reg>.<region>.data.azurecr.io` for every replica region, or `*.blob.core.windows.net` without dedicated data endpoints) in the firewall / NSG / UDR, not just the login server; enable dedicated data endpoints (`az acr update --data-endpoint-enabled`) to get narrow FQDN rules."
            }
            AuthenticationFailed => {
                "Check the pull credentials: for AKS attach the registry (`az aks update --attach-acr <reg>`) so the kubelet identity gets AcrPull, or fix the imagePullSecret; make sure the token or password has not expired."
            }
            AuthorizationFailed => {
                "Grant the identity pull rights on the registry/repository (AcrPull role, or a scope map for repository-scoped tokens)."
            }
            ImageNotFound => {
                "Check the image name and tag (`az acr repository show-tags -n <reg> --repository <repo>`); the image may have been deleted or never pushed."
            }
            TooManyRedirects => {
                "Find the device that rewrites the request (proxy or captive portal) and exempt the registry and its data endpoints from it."
            }
            PullFailed => {
                "Retry the pull; if it keeps failing, inspect the manifest (`az acr manifest show`) and the proxy/firewall on the path for response rewriting."
            }
            ContextsDisagree => {
                "Compare the node's resolver with CoreDNS: check the coredns-custom ConfigMap forwarders and stub domains for the registry's zone (azurecr.io, privatelink.azurecr.io), NetworkPolicies and egress rules that apply to pods but not to nodes, and proxy settings injected into pods. Pods must see the registry the way the node does."
            }
            ProbeUnschedulable => {
                "Look at the probe pod's events (`kubectl describe pod -l regcheck.dev/check=<name>`): add tolerations for the node's taints in spec.contexts.node.tolerations, free resources on the node, or narrow spec.contexts.node.nodeSelector."
            }
            ProbeImagePullFailed => {
                "Check that the nodes can pull the regcheck image itself (image name, tag, pull secret of the operator's namespace, and the path to the registry that hosts it)."
            }
            ProbeCrashed => {
                "Read the probe pod's logs and exit reason (`kubectl logs`, `kubectl describe pod`); an OOMKilled probe needs a higher memory limit. Report a crash with the logs."
            }
            ProbeTimedOut => {
                "Check the probe pod's events and logs: a probe stuck in Pending or image pull runs into the Job deadline; raise spec.timeoutSeconds if the network is slow."
            }
            ProbeNotCreated => {
                "Read the API server's answer in the message: raise or scope the ResourceQuota of the namespace (`kubectl describe resourcequota -n <namespace>`; count/jobs.batch, pods, cpu, memory), allow the probe Job in the admission webhook or policy engine that refused it, or create the namespace. The next run tries again."
            }
            TargetNotAllowed => {
                "Read the rule named in the message: change the spec (registry, dataEndpoints, regions, extraHosts, ports, or spec.contexts.node.enabled=false), or ask the cluster administrator to allow it in the controller's --allowed-registries, --allowed-ports or --node-context-namespaces settings (Helm values). Loopback, link-local/metadata and platform addresses are never allowed."
            }
        }
    }

    /// Official documentation pages.
    pub fn docs(self) -> &'static [&'static str] {
        use Reason::*;
        match self {
            Healthy => &[HEALTH_ERRORS],
            DNSNameNotFound | DNSServerUnreachable | DNSServerFailure => {
                &[HEALTH_ERRORS, PRIVATE_LINK]
            }
            DNSAnswersDiffer
            | PrivateEndpointResolvesPublic
            | PrivateEndpointNotConfigured
            | DataEndpointDNSMissing
            | HostUnreachable => &[PRIVATE_LINK],
            ConnectionTimedOut | ConnectionRefused | HeadersTimeout | ConnectionClosed => {
                &[FIREWALL_RULES, AKS_EGRESS]
            }
            TargetAddressBlocked => &[FIREWALL_RULES],
            TLSResetAfterClientHello
            | TLSHandshakeTimeout
            | TLSInterception
            | TLSCertificateInvalid => &[HEALTH_ERRORS, FIREWALL_RULES],
            RegistryDeniedClientIP | RegistryForbidden => &[SELECTED_NETWORKS, HEALTH_ERRORS],
            RegistryChallengeInvalid | Throttled => &[HEALTH_ERRORS],
            NotARegistry | RegistryServerError | PullFailed | TooManyRedirects => {
                &[HEALTH_ERRORS, FIREWALL_RULES]
            }
            ProxyDenied | ProxyAuthRequired | ProxyConnectEOF | ProxyUnreachable
            | ProxyUpstreamFailed => &[AKS_HTTP_PROXY],
            ProxyBypassMissing => &[AKS_HTTP_PROXY, PRIVATE_LINK],
            DataEndpointBlocked => &[FIREWALL_RULES, AKS_EGRESS],
            AuthenticationFailed | AuthorizationFailed | ImageNotFound => &[HEALTH_ERRORS],
            ContextsDisagree => &[PRIVATE_LINK, AKS_HTTP_PROXY],
            ProbeUnschedulable => &[K8S_TAINTS],
            ProbeImagePullFailed => &[K8S_IMAGES],
            ProbeCrashed => &[K8S_POD_FAILURE],
            ProbeTimedOut => &[K8S_JOBS],
            ProbeNotCreated => &[K8S_QUOTAS],
            TargetNotAllowed => &[K8S_MULTI_TENANCY],
        }
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
        assert_eq!(Reason::ALL.len(), 43);
        for r in Reason::OPERATOR {
            assert!(Reason::ALL.contains(r));
        }
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
                    Cause::ProbeInfrastructure | Cause::OperatorPolicy
                ) {
                    "https://kubernetes.io/docs/"
                } else {
                    "https://learn.microsoft.com/"
                };
                assert!(d.starts_with(site), "{r}: {d}");
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
