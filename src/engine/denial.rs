//! The kinds of 403 and the token endpoint: pure helpers of the diagnosis.
//!
//! - ACR's network-rule denial `client with IP '<ip>' is not allowed access` names the address
//!   the registry saw. A **private** address means the request came through a VNet service
//!   endpoint or another private path that the registry's network rules do not allow: the fix
//!   is a virtual-network rule or the private endpoint, never an IP rule (ACR IP rules take
//!   public addresses only).
//! - With the expected egress addresses (`spec.expect.egressIPs`, `--egress-ip`), a public
//!   address outside them means the traffic leaves through the wrong NAT gateway, firewall or
//!   node pool; inside them, the registry's IP rule is missing.
//! - A 403 from the storage account behind a data endpoint (Azure Storage's XML
//!   `AuthorizationFailure`) is the storage firewall or a service endpoint policy, not the
//!   identity.
//! - The token endpoint's path tells which `az acr check-health` step failed: `/oauth2/exchange`
//!   hands out refresh tokens, `/oauth2/token` access tokens.

use crate::engine::evidence::AddrClass;
use crate::engine::findings::Reason;
use crate::engine::inputs::InputError;
use ipnet::IpNet;
use std::net::IpAddr;

/// Most expected egress entries a check may list.
pub const MAX_EGRESS_IPS: usize = 32;

/// `az acr check-health`'s code for a failed refresh-token exchange.
pub const REFRESH_TOKEN_ERROR: &str = "CONNECTIVITY_REFRESH_TOKEN_ERROR";
/// `az acr check-health`'s code for a failed access-token request.
pub const ACCESS_TOKEN_ERROR: &str = "CONNECTIVITY_ACCESS_TOKEN_ERROR";

/// Parses the expected egress addresses: each value an IP address or a CIDR, or a comma list
/// of them. Canonical CIDR strings come back (`20.1.2.3/32`), duplicates removed.
pub fn parse_egress_ips(field: &str, values: &[String]) -> Result<Vec<String>, InputError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        for part in value.split(',') {
            let net = parse_one(field, part.trim())?;
            let text = net.to_string();
            if !out.contains(&text) {
                out.push(text);
            }
            if out.len() > MAX_EGRESS_IPS {
                return Err(InputError::new(
                    field,
                    value,
                    format!("lists more than {MAX_EGRESS_IPS} addresses or ranges"),
                ));
            }
        }
    }
    Ok(out)
}

fn parse_one(field: &str, text: &str) -> Result<IpNet, InputError> {
    if text.is_empty() {
        return Err(InputError::new(
            field,
            text,
            "is empty; give an IP address or a CIDR",
        ));
    }
    let net: IpNet = if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| {
            InputError::new(field, text, "is not an IP address or a CIDR (a.b.c.d/n)")
        })?;
        if net.trunc() != net {
            return Err(InputError::new(
                field,
                text,
                format!("has host bits set; write {}", net.trunc()),
            ));
        }
        net
    } else {
        let ip: IpAddr = text.parse().map_err(|_| {
            InputError::new(field, text, "is not an IP address or a CIDR (a.b.c.d/n)")
        })?;
        IpNet::from(ip)
    };
    match AddrClass::of(net.network()) {
        AddrClass::Public | AddrClass::Private => Ok(net),
        _ => Err(InputError::new(
            field,
            text,
            "is not an address traffic can leave a cluster from (loopback, link-local or special)",
        )),
    }
}

/// The evidence's egress entries as networks; entries that do not parse are skipped (the
/// evidence may come from an older or hostile report: never panic).
pub fn nets(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

/// What an ACR network-rule denial naming `ip` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A private address: a VNet service endpoint or private path not allowed by the rules.
    PrivatePath,
    /// A public address outside the expected egress addresses.
    UnexpectedEgress,
    /// A public address inside the expected egress addresses: the IP rule is missing.
    ExpectedEgress,
    /// A public address and no expected egress addresses given.
    Unlisted,
}

impl Denial {
    pub fn reason(self) -> Reason {
        match self {
            Self::PrivatePath => Reason::RegistryDeniedPrivateClientIP,
            Self::UnexpectedEgress => Reason::EgressIPUnexpected,
            Self::ExpectedEgress | Self::Unlisted => Reason::RegistryDeniedClientIP,
        }
    }
}

pub fn classify(ip: IpAddr, egress: &[IpNet]) -> Denial {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if AddrClass::of(ip) == AddrClass::Private {
        Denial::PrivatePath
    } else if egress.is_empty() {
        Denial::Unlisted
    } else if egress.iter().any(|n| n.contains(&ip)) {
        Denial::ExpectedEgress
    } else {
        Denial::UnexpectedEgress
    }
}

/// The finding for a denial of `ip` (as the registry wrote it) on `endpoint`; `request` names
/// what was denied (`GET /v2/`, `token request for app:v1`). `None` for an address that does
/// not parse or a public address with no expected egress addresses: the caller's general text
/// applies.
pub fn explain(
    endpoint: &str,
    request: &str,
    ip: &str,
    egress: &[String],
) -> Option<(Reason, String)> {
    let addr: IpAddr = ip.parse().ok()?;
    let nets = nets(egress);
    let listed = if egress.is_empty() {
        String::new()
    } else {
        format!(" (expected egress: {})", egress.join(", "))
    };
    let kind = classify(addr, &nets);
    let msg = match kind {
        Denial::Unlisted => return None,
        Denial::PrivatePath => format!(
            "{endpoint}: {request} denied for client IP {ip}, a private address (403 DENIED by network rules){listed}: the request reached the registry through a VNet service endpoint or another private path its network rules do not allow; add a virtual-network rule for the subnet or use the private endpoint (IP rules take public addresses only)"
        ),
        Denial::UnexpectedEgress => format!(
            "{endpoint}: {request} denied for client IP {ip} (403 DENIED by network rules), which is not one of the expected egress addresses{listed}: traffic leaves through the wrong NAT gateway, firewall or node pool"
        ),
        Denial::ExpectedEgress => format!(
            "{endpoint}: {request} denied for client IP {ip} (403 DENIED by network rules), one of the expected egress addresses{listed}: the registry's network rules lack it; add the IP rule (az acr network-rule add --ip-address {ip})"
        ),
    };
    Some((kind.reason(), msg))
}

/// Azure Storage error codes of a 403 (from its XML `<Error><Code>`): the storage account's
/// firewall, a service endpoint policy or a signature the account refuses.
pub fn is_storage_denial(code: &str) -> bool {
    const CODES: &[&str] = &[
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthenticationFailed",
        "InsufficientAccountPermissions",
        "KeyBasedAuthenticationNotPermitted",
    ];
    CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// The check-health code of a failed token request to `path`.
pub fn token_code(path: &str) -> &'static str {
    if path.trim_end_matches('/').ends_with("/oauth2/exchange") {
        REFRESH_TOKEN_ERROR
    } else {
        ACCESS_TOKEN_ERROR
    }
}

/// True when the token step's request went to a token endpoint, not to `/v2/`.
pub fn is_token_endpoint(path: Option<&str>) -> bool {
    path.is_some_and(|p| !p.is_empty() && p.trim_end_matches('/') != "/v2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn egress_ips_parse_to_canonical_cidrs() {
        let got = parse_egress_ips(
            "spec.expect.egressIPs",
            &v(&[
                "20.1.2.3",
                "52.0.0.0/16, 10.240.0.0/16",
                "20.1.2.3/32",
                "2001:db8::1",
            ]),
        )
        .unwrap();
        assert_eq!(
            got,
            v(&[
                "20.1.2.3/32",
                "52.0.0.0/16",
                "10.240.0.0/16",
                "2001:db8::1/128"
            ])
        );
        assert!(parse_egress_ips("f", &[]).unwrap().is_empty());
    }

    #[test]
    fn egress_ips_refuse_bad_values_naming_the_field() {
        for (value, needle) in [
            ("", "empty"),
            ("20.1.2", "not an IP address"),
            ("20.1.2.3/33", "not an IP address"),
            ("20.1.2.3/24", "host bits set; write 20.1.2.0/24"),
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0/0", "special"),
            ("a,,b", "not an IP address"),
        ] {
            let e = parse_egress_ips("spec.expect.egressIPs", &v(&[value])).unwrap_err();
            assert_eq!(e.field, "spec.expect.egressIPs", "{value}");
            assert!(e.problem.contains(needle), "{value}: {e:?}");
        }
        let many: Vec<String> = (0..=MAX_EGRESS_IPS)
            .map(|i| format!("20.1.2.{i}"))
            .collect();
        let e = parse_egress_ips("--egress-ip", &many).unwrap_err();
        assert!(e.problem.contains("more than 32"), "{e:?}");
        // Duplicates do not count twice.
        let dup: Vec<String> = (0..40).map(|_| "20.1.2.3".to_string()).collect();
        assert_eq!(parse_egress_ips("f", &dup).unwrap().len(), 1);
    }

    #[test]
    fn denials_classify_by_address_and_egress() {
        let egress = nets(&v(&["20.1.2.0/24", "52.10.20.30"]));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(classify(ip("10.240.0.4"), &[]), Denial::PrivatePath);
        assert_eq!(classify(ip("10.240.0.4"), &egress), Denial::PrivatePath);
        assert_eq!(classify(ip("::ffff:172.16.0.9"), &[]), Denial::PrivatePath);
        assert_eq!(classify(ip("52.10.20.30"), &[]), Denial::Unlisted);
        assert_eq!(classify(ip("52.10.20.30"), &egress), Denial::ExpectedEgress);
        assert_eq!(classify(ip("20.1.2.77"), &egress), Denial::ExpectedEgress);
        assert_eq!(classify(ip("20.9.9.9"), &egress), Denial::UnexpectedEgress);
        assert_eq!(nets(&v(&["junk", "20.1.2.3"])).len(), 1);
    }

    #[test]
    fn explain_gives_reason_and_the_fix() {
        assert_eq!(explain("r", "GET /v2/", "52.1.1.1", &[]), None);
        assert_eq!(
            explain("r", "GET /v2/", "not-an-ip", &v(&["20.1.2.3/32"])),
            None
        );
        let (r, m) = explain("r", "GET /v2/", "10.240.0.4", &[]).unwrap();
        assert_eq!(r, Reason::RegistryDeniedPrivateClientIP);
        assert!(m.starts_with("r: GET /v2/ denied for client IP 10.240.0.4, a private address"));
        assert!(m.contains("virtual-network rule") && !m.contains("expected egress"));
        let (r, m) = explain("r", "GET /v2/", "20.9.9.9", &v(&["20.1.2.3/32"])).unwrap();
        assert_eq!(r, Reason::EgressIPUnexpected);
        assert!(
            m.contains("wrong NAT gateway") && m.contains("20.1.2.3/32"),
            "{m}"
        );
        let (r, m) = explain("r", "GET /v2/", "20.1.2.3", &v(&["20.1.2.3/32"])).unwrap();
        assert_eq!(r, Reason::RegistryDeniedClientIP);
        assert!(m.contains("--ip-address 20.1.2.3"), "{m}");
    }

    #[test]
    fn storage_codes_and_token_paths() {
        assert!(is_storage_denial("AuthorizationFailure"));
        assert!(is_storage_denial("authorizationsourceipmismatch"));
        assert!(!is_storage_denial("DENIED"));
        assert!(!is_storage_denial("UNAUTHORIZED"));
        assert_eq!(token_code("/oauth2/exchange"), REFRESH_TOKEN_ERROR);
        assert_eq!(token_code("/oauth2/token"), ACCESS_TOKEN_ERROR);
        assert_eq!(token_code("/token"), ACCESS_TOKEN_ERROR);
        assert!(is_token_endpoint(Some("/oauth2/token")));
        assert!(!is_token_endpoint(Some("/v2/")));
        assert!(!is_token_endpoint(None));
    }
}
