//! The data path of `--image`: challenge, token, manifest and the smallest blob, following the
//! redirect to the data endpoint by hand so that we know which host served (or failed) it.
//! Never more than a handful of requests, and never a whole image.

use super::net::{self, RequestFailure, Response};
use super::{Budget, ProbeConfig, host_header};
use crate::engine::evidence::{
    EndpointEvidence, PullEvidence, PullOutcome, PullStep, Role, TlsOutcome,
};
use crate::engine::inputs::{Endpoint, ImageRef};
use base64::Engine;
use std::time::Instant;

/// Redirects followed for one blob.
pub const MAX_REDIRECTS: usize = 5;
/// Largest manifest or token answer read.
const MAX_DOC: usize = 1024 * 1024;
/// Smallest body read for a blob request, so that an error document fits.
const ERROR_DOC: usize = 8 * 1024;
/// Largest blob read in full (and digest-checked); a bigger one is read this far.
const MAX_BLOB: usize = 4 * 1024 * 1024;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

pub(crate) enum HopError {
    /// The host could not be reached or did not complete TLS.
    Connect(Box<EndpointEvidence>),
    /// The connection worked but the request did not get a response.
    Request {
        host: String,
        failure: RequestFailure,
    },
}

/// Where one request goes.
struct Dest<'a> {
    host: &'a str,
    port: u16,
    role: Role,
}

async fn get(
    to: Dest<'_>,
    path: &str,
    headers: &[(&str, String)],
    config: &ProbeConfig,
    budget: &Budget,
    max_body: usize,
) -> Result<Response, HopError> {
    let Dest { host, port, role } = to;
    let connected = super::connect(host, port, role, config, budget, false).await;
    let Some(stream) = connected.stream else {
        return Err(HopError::Connect(Box::new(connected.evidence)));
    };
    net::http_get(
        stream,
        &host_header(host, port),
        path,
        headers,
        budget.phase(0.3),
        max_body,
    )
    .await
    .map_err(|failure| HopError::Request {
        host: host.to_string(),
        failure,
    })
}

fn step(outcome: PullOutcome, host: Option<&str>, started: Instant) -> PullStep {
    PullStep {
        outcome,
        host: host.map(str::to_string),
        path: None,
        status: None,
        registry_error: None,
        error: None,
        ms: started.elapsed().as_millis() as u64,
    }
}

fn skipped() -> PullStep {
    PullStep {
        outcome: PullOutcome::Skipped,
        host: None,
        path: None,
        status: None,
        registry_error: None,
        error: None,
        ms: 0,
    }
}

/// Outcome of a response status for a pull step.
pub fn status_outcome(status: u16) -> PullOutcome {
    match status {
        200..=299 => PullOutcome::Ok,
        401 => PullOutcome::Unauthorized,
        403 => PullOutcome::Forbidden,
        404 => PullOutcome::NotFound,
        429 => PullOutcome::Throttled,
        500..=599 => PullOutcome::ServerError,
        _ => PullOutcome::Invalid,
    }
}

fn response_step(resp: &Response, host: &str, started: Instant) -> PullStep {
    let mut s = step(status_outcome(resp.status), Some(host), started);
    s.status = Some(resp.status);
    s.registry_error = crate::engine::authparse::parse_registry_error(&resp.body)
        .or_else(|| crate::engine::authparse::parse_storage_error(&resp.body));
    s
}

/// Records a hop failure in `step` and, for unreachable hosts, in `failed_host`.
fn hop_failed(
    err: HopError,
    started: Instant,
    failed_host: &mut Option<Box<EndpointEvidence>>,
) -> PullStep {
    match err {
        HopError::Connect(ev) => {
            let mut s = step(PullOutcome::Unreachable, Some(&ev.host), started);
            s.error = Some(describe_connect_failure(&ev));
            *failed_host = Some(ev);
            s
        }
        HopError::Request { host, failure } => {
            let mut s = step(PullOutcome::Unreachable, Some(&host), started);
            s.error = Some(format!("{:?}: {}", failure.outcome, failure.error));
            s
        }
    }
}

fn describe_connect_failure(ev: &EndpointEvidence) -> String {
    if ev.dns.system.addresses.is_empty() && ev.route.proxy.is_none() {
        return format!("DNS {:?}", ev.dns.system.outcome);
    }
    if let Some(p) = &ev.proxy
        && p.outcome != crate::engine::evidence::ProxyOutcome::Connected
    {
        return format!("proxy {:?}", p.outcome);
    }
    if !ev.connected()
        && let Some(t) = ev
            .tcp
            .iter()
            .find(|t| t.outcome != crate::engine::evidence::TcpOutcome::Connected)
    {
        return format!("TCP {} {:?}", t.address, t.outcome);
    }
    match &ev.tls {
        Some(t) if t.outcome != TlsOutcome::Verified => format!("TLS {:?}", t.outcome),
        _ => "connection failed".into(),
    }
}

/// A parsed `https://host[:port]/path?query` URL (token realm or redirect target).
struct Target {
    host: String,
    port: u16,
    path_and_query: String,
}

fn parse_target(raw: &str, base: Option<&url::Url>) -> Result<Target, String> {
    let parsed = match base {
        Some(b) => b.join(raw),
        None => url::Url::parse(raw),
    }
    .map_err(|e| {
        format!(
            "not a URL ({e}): {}",
            raw.chars().take(80).collect::<String>()
        )
    })?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "{} URL, not https: {}",
            parsed.scheme(),
            parsed.host_str().unwrap_or("?")
        ));
    }
    let host = parsed
        .host_str()
        .ok_or("URL without host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut path_and_query = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(Target {
        host,
        port,
        path_and_query,
    })
}

fn base_url(host: &str, port: u16) -> Option<url::Url> {
    url::Url::parse(&format!("https://{}/", host_header(host, port))).ok()
}

/// Picks linux/amd64 (or the first entry) from an index, or the smallest blob of a manifest.
#[derive(Debug, PartialEq)]
pub enum ManifestPick {
    Child(String),
    Blob { digest: String, size: u64 },
}

pub fn pick_from_manifest(body: &[u8]) -> Result<ManifestPick, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not JSON: {e}"))?;
    if let Some(list) = doc.get("manifests").and_then(|m| m.as_array()) {
        let digest_of =
            |m: &serde_json::Value| m.get("digest").and_then(|d| d.as_str()).map(str::to_string);
        let preferred = list.iter().find(|m| {
            let p = m.get("platform");
            p.and_then(|p| p.get("os")).and_then(|v| v.as_str()) == Some("linux")
                && p.and_then(|p| p.get("architecture"))
                    .and_then(|v| v.as_str())
                    == Some("amd64")
        });
        return preferred
            .or(list.first())
            .and_then(digest_of)
            .map(ManifestPick::Child)
            .ok_or_else(|| "image index without manifests".to_string());
    }
    let mut blobs: Vec<(String, u64)> = Vec::new();
    let mut push = |v: &serde_json::Value| {
        if let (Some(d), Some(s)) = (
            v.get("digest").and_then(|d| d.as_str()),
            v.get("size").and_then(|s| s.as_u64()),
        ) {
            blobs.push((d.to_string(), s));
        }
    };
    if let Some(c) = doc.get("config") {
        push(c);
    }
    for l in doc
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        push(l);
    }
    blobs
        .into_iter()
        .min_by_key(|(_, s)| *s)
        .map(|(digest, size)| ManifestPick::Blob { digest, size })
        .ok_or_else(|| "manifest lists no blobs (schema 1 manifests are not supported)".to_string())
}

/// The login server's answer to `GET /v2/`, handed over by the endpoint probe that sent the
/// very same request, so that a run with `--image` asks the registry for it once.
pub(crate) type SharedV2 = tokio::sync::oneshot::Receiver<Result<Response, HopError>>;

/// Walks the pull path of `image` on the login server.
pub async fn pull(
    login: &Endpoint,
    image: &ImageRef,
    config: &ProbeConfig,
    budget: &Budget,
) -> PullEvidence {
    pull_sharing(login, image, config, budget, None).await
}

/// [`pull`], with `shared_v2`: the endpoint probe's `GET /v2/` (challenge). If that probe
/// drops it unanswered, the pull sends its own.
pub(crate) async fn pull_sharing(
    login: &Endpoint,
    image: &ImageRef,
    config: &ProbeConfig,
    budget: &Budget,
    shared_v2: Option<SharedV2>,
) -> PullEvidence {
    let mut ev = PullEvidence {
        image: format!(
            "{}{}{}",
            image.repository,
            if image.reference.contains(':') {
                "@"
            } else {
                ":"
            },
            image.reference
        ),
        credentials: config.credentials.is_some(),
        token: skipped(),
        manifest: skipped(),
        blob: skipped(),
        blob_digest: None,
        blob_size: None,
        blob_small_mss_retry: None,
        redirects: vec![],
        failed_host: None,
    };
    let (host, port) = (login.host.as_str(), login.port);
    let basic = config.credentials.as_ref().map(|c| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password))
        )
    });

    // 1. Challenge and token.
    let started = Instant::now();
    let shared = match shared_v2 {
        Some(rx) => rx.await.ok(),
        None => None,
    };
    let challenge = match shared {
        Some(result) => result,
        None => {
            get(
                Dest {
                    host,
                    port,
                    role: Role::LoginServer,
                },
                "/v2/",
                &[],
                config,
                budget,
                net::MAX_BODY,
            )
            .await
        }
    };
    let auth: Option<String> = match challenge {
        Err(e) => {
            ev.token = hop_failed(e, started, &mut ev.failed_host);
            ev.token.path = Some("/v2/".into());
            return ev;
        }
        Ok(resp) if resp.status == 200 => {
            ev.token = response_step(&resp, host, started);
            ev.token.path = Some("/v2/".into());
            basic.clone()
        }
        Ok(resp) if resp.status == 401 => {
            let challenge = resp
                .headers
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::engine::authparse::parse_www_authenticate(v).ok());
            match challenge {
                Some(c) if c.scheme.eq_ignore_ascii_case("basic") => {
                    ev.token = step(PullOutcome::Ok, Some(host), started);
                    ev.token.path = Some("/v2/".into());
                    ev.token.status = Some(401);
                    if basic.is_none() {
                        ev.token.outcome = PullOutcome::Unauthorized;
                        ev.token.error = Some(
                            "the registry asks for credentials (Basic) and none were given".into(),
                        );
                        return ev;
                    }
                    basic.clone()
                }
                Some(c) if c.scheme.eq_ignore_ascii_case("bearer") => {
                    match fetch_token(
                        &c,
                        image,
                        basic.as_deref(),
                        host,
                        port,
                        config,
                        budget,
                        &mut ev,
                    )
                    .await
                    {
                        Some(token) => Some(format!("Bearer {token}")),
                        None => return ev,
                    }
                }
                _ => {
                    ev.token = response_step(&resp, host, started);
                    ev.token.path = Some("/v2/".into());
                    ev.token.outcome = PullOutcome::Invalid;
                    ev.token.error = Some("401 without a usable WWW-Authenticate challenge".into());
                    return ev;
                }
            }
        }
        Ok(resp) => {
            ev.token = response_step(&resp, host, started);
            ev.token.path = Some("/v2/".into());
            if ev.token.outcome == PullOutcome::Ok {
                ev.token.outcome = PullOutcome::Invalid;
            }
            return ev;
        }
    };

    // 2. Manifest (and the platform manifest of an index).
    let mut headers: Vec<(&str, String)> = vec![("Accept", MANIFEST_ACCEPT.to_string())];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.clone()));
    }
    let mut reference = image.reference.clone();
    let started = Instant::now();
    let (digest, size) = loop {
        let path = format!("/v2/{}/manifests/{}", image.repository, reference);
        let resp = match get(
            Dest {
                host,
                port,
                role: Role::LoginServer,
            },
            &path,
            &headers,
            config,
            budget,
            MAX_DOC,
        )
        .await
        {
            Err(e) => {
                ev.manifest = hop_failed(e, started, &mut ev.failed_host);
                return ev;
            }
            Ok(r) => r,
        };
        ev.manifest = response_step(&resp, host, started);
        let bearer = auth.as_deref().is_some_and(|a| a.starts_with("Bearer "));
        if resp.status == 401 && bearer && config.credentials.is_some() {
            // The credentials were good enough for a token, but the token does not allow
            // pulling this repository. (With Basic sign-in, a 401 means a wrong password.)
            ev.manifest.outcome = PullOutcome::Forbidden;
        }
        if ev.manifest.outcome != PullOutcome::Ok {
            return ev;
        }
        match pick_from_manifest(&resp.body) {
            Ok(ManifestPick::Child(d)) if d != reference => reference = d,
            Ok(ManifestPick::Blob { digest, size }) => break (digest, size),
            Ok(ManifestPick::Child(_)) => {
                ev.manifest.outcome = PullOutcome::Invalid;
                ev.manifest.error = Some("index refers to itself".into());
                return ev;
            }
            Err(e) => {
                ev.manifest.outcome = PullOutcome::Invalid;
                ev.manifest.error = Some(e);
                return ev;
            }
        }
    };
    ev.blob_digest = Some(digest.clone());
    ev.blob_size = Some(size);

    // 3. The smallest blob, following redirects by hand.
    let started = Instant::now();
    let mut target = Target {
        host: host.to_string(),
        port,
        path_and_query: format!("/v2/{}/blobs/{}", image.repository, digest),
    };
    let mut role = Role::LoginServer;
    for hop in 0..=MAX_REDIRECTS {
        // Credentials go only to the login server; a redirect URL carries its own signature.
        let mut hdrs: Vec<(&str, String)> = vec![];
        if target.host == host
            && target.port == port
            && let Some(a) = &auth
        {
            hdrs.push(("Authorization", a.clone()));
        }
        let limit = usize::try_from(size).unwrap_or(MAX_BLOB).min(MAX_BLOB);
        let resp = match get(
            Dest {
                host: &target.host,
                port: target.port,
                role,
            },
            &target.path_and_query,
            &hdrs,
            config,
            budget,
            // Room for an error document (a storage account's XML 403) after a tiny blob.
            limit.max(ERROR_DOC),
        )
        .await
        {
            Err(e) => {
                ev.blob = hop_failed(e, started, &mut ev.failed_host);
                return ev;
            }
            Ok(r) => r,
        };
        if (300..400).contains(&resp.status) {
            if hop == MAX_REDIRECTS {
                ev.blob = response_step(&resp, &target.host, started);
                ev.blob.outcome = PullOutcome::TooManyRedirects;
                ev.blob.error = Some(format!("more than {MAX_REDIRECTS} redirects"));
                return ev;
            }
            let location = resp
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let next = location
                .ok_or_else(|| format!("{} without Location", resp.status))
                .and_then(|l| parse_target(l, base_url(&target.host, target.port).as_ref()));
            match next {
                Ok(t) => {
                    ev.redirects.push(host_header(&t.host, t.port));
                    role = Role::DataEndpoint;
                    target = t;
                    continue;
                }
                Err(e) => {
                    ev.blob = response_step(&resp, &target.host, started);
                    ev.blob.outcome = PullOutcome::Invalid;
                    ev.blob.error = Some(e);
                    return ev;
                }
            }
        }
        ev.blob = response_step(&resp, &target.host, started);
        if ev.blob.outcome == PullOutcome::Ok && resp.timed_out {
            // A body that drips slower than the deadline is not a working pull.
            ev.blob.outcome = PullOutcome::Invalid;
            ev.blob.error = Some(format!(
                "the blob body ({size} bytes) did not arrive before the deadline: the transfer stalls"
            ));
        } else if ev.blob.outcome == PullOutcome::Ok
            && (resp.truncated || resp.body.len() as u64 > size)
            && size <= MAX_BLOB as u64
        {
            ev.blob.outcome = PullOutcome::Invalid;
            ev.blob.error = Some(format!(
                "the blob body is longer than the {size} bytes the manifest declares"
            ));
        } else if ev.blob.outcome == PullOutcome::Ok
            && !resp.truncated
            && (resp.body.len() as u64) == size
            && let Some(expected) = digest.strip_prefix("sha256:")
        {
            let got = crate::engine::text::sha256_hex(&resp.body, 32);
            if got != expected {
                ev.blob.outcome = PullOutcome::Invalid;
                ev.blob.error = Some(format!(
                    "blob content does not match its digest (got sha256:{got})"
                ));
            }
        }
        return ev;
    }
    ev
}

#[allow(clippy::too_many_arguments)]
async fn fetch_token(
    challenge: &crate::engine::evidence::Challenge,
    image: &ImageRef,
    basic: Option<&str>,
    host: &str,
    port: u16,
    config: &ProbeConfig,
    budget: &Budget,
    ev: &mut PullEvidence,
) -> Option<String> {
    let started = Instant::now();
    let Some(realm) = challenge.realm.as_deref() else {
        ev.token = step(PullOutcome::Invalid, Some(host), started);
        ev.token.error = Some("Bearer challenge without realm".into());
        return None;
    };
    let mut target = match parse_target(realm, base_url(host, port).as_ref()) {
        Ok(t) => t,
        Err(e) => {
            ev.token = step(PullOutcome::Invalid, Some(host), started);
            ev.token.error = Some(format!("token realm: {e}"));
            return None;
        }
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = &challenge.service {
        query.append_pair("service", s);
    }
    query.append_pair("scope", &format!("repository:{}:pull", image.repository));
    let sep = if target.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    target.path_and_query = format!("{}{}{}", target.path_and_query, sep, query.finish());
    let headers: Vec<(&str, String)> = basic
        .map(|b| vec![("Authorization", b.to_string())])
        .unwrap_or_default();
    let role = if target.host == host {
        Role::LoginServer
    } else {
        Role::Extra
    };
    let token_path = target
        .path_and_query
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let resp = match get(
        Dest {
            host: &target.host,
            port: target.port,
            role,
        },
        &target.path_and_query,
        &headers,
        config,
        budget,
        MAX_DOC,
    )
    .await
    {
        Err(e) => {
            ev.token = hop_failed(e, started, &mut ev.failed_host);
            ev.token.path = Some(token_path.clone());
            return None;
        }
        Ok(r) => r,
    };
    ev.token = response_step(&resp, &target.host, started);
    ev.token.path = Some(token_path.clone());
    if ev.token.outcome != PullOutcome::Ok {
        return None;
    }
    let doc: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    let token = doc
        .as_ref()
        .and_then(|d| d.get("token").or_else(|| d.get("access_token")))
        .and_then(|t| t.as_str());
    match token {
        Some(t) if !t.is_empty() => Some(t.to_string()),
        _ => {
            ev.token.outcome = PullOutcome::Invalid;
            ev.token.error = Some("token answer without a token".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_platform_then_smallest_blob() {
        let index = br#"{"manifests":[{"digest":"sha256:arm","platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:amd","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert_eq!(
            pick_from_manifest(index).unwrap(),
            ManifestPick::Child("sha256:amd".into())
        );
        let manifest = br#"{"config":{"digest":"sha256:c","size":1500},"layers":[{"digest":"sha256:l1","size":900},{"digest":"sha256:l2","size":90000}]}"#;
        assert_eq!(
            pick_from_manifest(manifest).unwrap(),
            ManifestPick::Blob {
                digest: "sha256:l1".into(),
                size: 900
            }
        );
        assert!(pick_from_manifest(b"{}").is_err());
        assert!(pick_from_manifest(b"\xff\x00").is_err());
        assert!(pick_from_manifest(br#"{"manifests":[]}"#).is_err());
    }

    #[test]
    fn redirect_targets() {
        let base = base_url("r.azurecr.io", 443);
        let t = parse_target("https://r.eastus.data.azurecr.io/blob?sig=x", base.as_ref()).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("r.eastus.data.azurecr.io", 443, "/blob?sig=x")
        );
        let rel = parse_target("/v2/x/blobs/y", base.as_ref()).unwrap();
        assert_eq!(rel.host, "r.azurecr.io");
        assert!(parse_target("http://plain.example/x", base.as_ref()).is_err());
        assert!(parse_target("::::", None).is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(status_outcome(200), PullOutcome::Ok);
        assert_eq!(status_outcome(401), PullOutcome::Unauthorized);
        assert_eq!(status_outcome(404), PullOutcome::NotFound);
        assert_eq!(status_outcome(429), PullOutcome::Throttled);
        assert_eq!(status_outcome(503), PullOutcome::ServerError);
        assert_eq!(status_outcome(418), PullOutcome::Invalid);
    }

    #[test]
    fn sha256_matches_known_value() {
        assert_eq!(
            crate::engine::text::sha256_hex(b"abc", 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
