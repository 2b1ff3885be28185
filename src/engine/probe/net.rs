//! TCP, TLS, proxy CONNECT and one HTTP/1.1 request, each with its own deadline and each
//! failure classified the way a user's symptom would be (timeout vs reset vs unreachable...).

use crate::engine::evidence::{
    HttpEvidence, HttpOutcome, ProxyEvidence, ProxyOutcome, TcpEvidence, TcpOutcome, TlsEvidence,
    TlsOutcome,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Any byte stream a probe talks over: TCP, a CONNECT tunnel, TLS inside either.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// Largest response body read from a registry API answer.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest response head (status line + headers) accepted.
pub const MAX_HEAD: usize = 32 * 1024;

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// Classifies a connect error.
pub fn tcp_outcome(e: &std::io::Error) -> TcpOutcome {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => TcpOutcome::Refused,
        ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::AddrNotAvailable => TcpOutcome::Unreachable,
        ErrorKind::TimedOut => TcpOutcome::Timeout,
        _ => match e.raw_os_error() {
            // EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN, EACCES/EPERM (ICMP admin-prohibited)
            Some(113) | Some(101) | Some(112) | Some(100) | Some(13) | Some(1) => {
                TcpOutcome::Unreachable
            }
            Some(110) => TcpOutcome::Timeout,
            Some(111) | Some(104) => TcpOutcome::Refused,
            _ => TcpOutcome::Error,
        },
    }
}

/// Connects to `addr` within `timeout`.
pub async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> (TcpEvidence, Option<TcpStream>) {
    tcp_connect_mss(addr, timeout, None).await
}

/// A socket for `addr` that announces `mss` in its SYN (`TCP_MAXSEG` set before connect), so
/// that the peer sends segments of at most `mss` bytes.
fn socket_with_mss(addr: SocketAddr, mss: u32) -> std::io::Result<tokio::net::TcpSocket> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket2::SockRef::from(&sock).set_tcp_mss(mss)?;
    Ok(sock)
}

/// [`tcp_connect`], announcing `mss` when given.
pub async fn tcp_connect_mss(
    addr: SocketAddr,
    timeout: Duration,
    mss: Option<u32>,
) -> (TcpEvidence, Option<TcpStream>) {
    let started = Instant::now();
    let connect = async {
        match mss {
            None => TcpStream::connect(addr).await,
            Some(mss) => socket_with_mss(addr, mss)?.connect(addr).await,
        }
    };
    let result = tokio::time::timeout(timeout, connect).await;
    let (outcome, error, stream) = match result {
        Err(_) => (
            TcpOutcome::Timeout,
            Some(format!("no answer within {} ms", timeout.as_millis())),
            None,
        ),
        Ok(Err(e)) => (tcp_outcome(&e), Some(short(&e)), None),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            (TcpOutcome::Connected, None, Some(s))
        }
    };
    (
        TcpEvidence {
            address: addr,
            outcome,
            error,
            ms: ms(started),
        },
        stream,
    )
}

/// Wraps a stream and counts the bytes read, to tell "reset before the server said anything"
/// (a filtering firewall) from a reset in the middle of a handshake.
pub struct Counting<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                read: read.clone(),
            },
            read,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Subject and issuer of the end-entity certificate a server presented.
#[derive(Debug, Default, Clone)]
pub struct SeenCert {
    pub subject: Option<String>,
    pub issuer: Option<String>,
}

/// A verifier that records what the server presented, then verifies with webpki as usual.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Mutex<SeenCert>>,
    /// containerd's `skip_verify`: the chain and name are not checked (signatures still are).
    skip_verify: bool,
}

fn cert_names(der: &[u8]) -> SeenCert {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => SeenCert {
            subject: Some(crate::engine::text::clip(&cert.subject().to_string(), 200)),
            issuer: Some(crate::engine::text::clip(&cert.issuer().to_string(), 200)),
        },
        Err(_) => SeenCert::default(),
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = cert_names(end_entity.as_ref());
        }
        if self.skip_verify {
            return Ok(ServerCertVerified::assertion());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Trust roots for TLS verification.
#[derive(Clone)]
pub struct Trust {
    pub roots: Arc<RootCertStore>,
    /// Accept any certificate (containerd's `skip_verify = true` for a host).
    pub skip_verify: bool,
}

impl Trust {
    /// System roots (or Mozilla's bundled roots where the system has none) plus extra PEM files.
    pub fn load(
        ca_files: &[std::path::PathBuf],
    ) -> Result<Self, crate::engine::inputs::InputError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for path in ca_files {
            let field = "--ca-file";
            let shown = path.display().to_string();
            let data = std::fs::read(path).map_err(|e| {
                crate::engine::inputs::InputError::new(
                    field,
                    &shown,
                    format!("cannot be read: {e}"),
                )
            })?;
            let mut added = 0;
            for item in rustls_pemfile::certs(&mut data.as_slice()) {
                let cert = item.map_err(|e| {
                    crate::engine::inputs::InputError::new(
                        field,
                        &shown,
                        format!("is not valid PEM: {e}"),
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    crate::engine::inputs::InputError::new(
                        field,
                        &shown,
                        format!("holds a certificate that cannot be used: {e}"),
                    )
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(crate::engine::inputs::InputError::new(
                    field,
                    &shown,
                    "contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        Ok(Self {
            roots: Arc::new(roots),
            skip_verify: false,
        })
    }

    pub fn from_roots(roots: RootCertStore) -> Self {
        Self {
            roots: Arc::new(roots),
            skip_verify: false,
        }
    }

    /// These roots plus the PEM certificates of `ca_files` (a host's `ca` in hosts.toml).
    /// The error names the file.
    pub fn with_extra(&self, ca_files: &[std::path::PathBuf]) -> Result<Self, String> {
        if ca_files.is_empty() {
            return Ok(self.clone());
        }
        let mut roots = (*self.roots).clone();
        for path in ca_files {
            let shown = path.display();
            let data = std::fs::read(path).map_err(|e| format!("CA file {shown}: {e}"))?;
            let mut added = 0;
            for item in rustls_pemfile::certs(&mut data.as_slice()) {
                let cert = item.map_err(|e| format!("CA file {shown}: not valid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {shown}: unusable certificate: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("CA file {shown}: no PEM certificate"));
            }
        }
        Ok(Self {
            roots: Arc::new(roots),
            skip_verify: self.skip_verify,
        })
    }

    fn client_config(&self, seen: Arc<Mutex<SeenCert>>) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(short)?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(short)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RecordingVerifier {
                inner,
                seen,
                skip_verify: self.skip_verify,
            }))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn classify_tls_error(e: &std::io::Error, server_bytes: u64) -> TlsOutcome {
    if let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match err {
            rustls::Error::InvalidCertificate(ce) => match ce {
                CertificateError::UnknownIssuer => TlsOutcome::UntrustedIssuer,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsOutcome::NameMismatch,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsOutcome::Expired,
                _ => TlsOutcome::Failed,
            },
            _ => TlsOutcome::Failed,
        };
    }
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe
        | ErrorKind::ConnectionAborted
            if server_bytes == 0 =>
        {
            TlsOutcome::ResetAfterClientHello
        }
        _ => TlsOutcome::Failed,
    }
}

/// TLS handshake with SNI `host`, verified against `trust`.
pub async fn tls_handshake<S: Io + 'static>(
    stream: S,
    host: &str,
    trust: &Trust,
    timeout: Duration,
) -> (TlsEvidence, Option<BoxIo>) {
    let started = Instant::now();
    let seen = Arc::new(Mutex::new(SeenCert::default()));
    let fail = |outcome, error: String, seen: &Arc<Mutex<SeenCert>>, started: Instant| {
        let cert = seen.lock().map(|s| s.clone()).unwrap_or_default();
        TlsEvidence {
            outcome,
            peer: None,
            small_mss_retry: None,
            subject: cert.subject,
            issuer: cert.issuer,
            error: Some(error),
            ms: ms(started),
        }
    };
    let config = match trust.client_config(seen.clone()) {
        Ok(c) => c,
        Err(e) => return (fail(TlsOutcome::Failed, e, &seen, started), None),
    };
    let name = match ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    ) {
        Ok(n) => n,
        Err(e) => return (fail(TlsOutcome::Failed, short(e), &seen, started), None),
    };
    let (counting, read) = Counting::new(stream);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(timeout, connector.connect(name, counting)).await {
        Err(_) => {
            let got = read.load(Ordering::Relaxed);
            let msg = format!(
                "no handshake within {} ms ({got} bytes from the server)",
                timeout.as_millis()
            );
            (fail(TlsOutcome::Timeout, msg, &seen, started), None)
        }
        Ok(Err(e)) => {
            let got = read.load(Ordering::Relaxed);
            let outcome = classify_tls_error(&e, got);
            let msg = if outcome == TlsOutcome::ResetAfterClientHello {
                format!(
                    "connection closed after ClientHello, before any server byte ({})",
                    short(&e)
                )
            } else {
                short(&e)
            };
            (fail(outcome, msg, &seen, started), None)
        }
        Ok(Ok(tls)) => {
            let cert = seen.lock().map(|s| s.clone()).unwrap_or_default();
            (
                TlsEvidence {
                    outcome: TlsOutcome::Verified,
                    peer: None,
                    small_mss_retry: None,
                    subject: cert.subject,
                    issuer: cert.issuer,
                    error: None,
                    ms: ms(started),
                },
                Some(Box::new(tls)),
            )
        }
    }
}

/// Reads an HTTP/1.x response head (up to `\r\n\r\n`) without reading past it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    loop {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        head.push(byte[0]);
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "response head larger than 32 KiB",
            ));
        }
    }
}

/// Opens a tunnel with `CONNECT host:port` on an already connected proxy stream.
pub async fn proxy_connect<S: Io + 'static>(
    mut stream: S,
    proxy_label: &str,
    host: &str,
    port: u16,
    auth: Option<&str>,
    timeout: Duration,
) -> (ProxyEvidence, Option<S>) {
    let started = Instant::now();
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req =
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: regcheck\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    let exchange = async {
        stream.write_all(req.as_bytes()).await?;
        stream.flush().await?;
        read_head(&mut stream).await
    };
    let ev = |outcome, status: Option<u16>, error: Option<String>| ProxyEvidence {
        url: proxy_label.to_string(),
        outcome,
        status,
        error,
        ms: ms(started),
    };
    let head = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return (
                ev(
                    ProxyOutcome::Timeout,
                    None,
                    Some(format!(
                        "no answer to CONNECT within {} ms",
                        timeout.as_millis()
                    )),
                ),
                None,
            );
        }
        Ok(Err(e)) => {
            let outcome = match e.kind() {
                ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted => ProxyOutcome::Eof,
                _ => ProxyOutcome::Failed,
            };
            return (ev(outcome, None, Some(short(&e))), None);
        }
        Ok(Ok(h)) => h,
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let status = match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
        _ => {
            let shown = String::from_utf8_lossy(&head[..head.len().min(60)]).to_string();
            return (
                ev(
                    ProxyOutcome::Failed,
                    None,
                    Some(format!("not an HTTP answer to CONNECT: {shown:?}")),
                ),
                None,
            );
        }
    };
    let reason = resp.reason.map(|r| crate::engine::text::clip(r, 80));
    let outcome = match status {
        200..=299 => ProxyOutcome::Connected,
        407 => ProxyOutcome::AuthRequired,
        400..=499 => ProxyOutcome::Denied,
        500..=599 => ProxyOutcome::UpstreamFailed,
        _ => ProxyOutcome::Failed,
    };
    let error = (outcome != ProxyOutcome::Connected)
        .then(|| format!("{status} {}", reason.unwrap_or_default()));
    let stream = (outcome == ProxyOutcome::Connected).then_some(stream);
    (ev(outcome, Some(status), error), stream)
}

/// A response of one request: status, the headers we care about, and a bounded body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The body was longer than the limit and was cut.
    pub truncated: bool,
    /// The body did not arrive in full before the deadline (a slow drip): `body` is empty.
    pub timed_out: bool,
}

/// Failure of one request before a response head arrived.
#[derive(Debug, Clone)]
pub struct RequestFailure {
    pub outcome: HttpOutcome,
    pub error: String,
}

/// Sends one HTTP/1.1 GET over `io` and reads the response (body up to `max_body`).
pub async fn http_get(
    io: BoxIo,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
    timeout: Duration,
    max_body: usize,
) -> Result<Response, RequestFailure> {
    let started = Instant::now();
    let deadline = started + timeout;
    let (mut sender, conn) = match hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD.max(8192))
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(io))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            return Err(RequestFailure {
                outcome: HttpOutcome::Closed,
                error: short(e),
            });
        }
    };
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::builder()
        .method("GET")
        .uri(path)
        .header("Host", host)
        .header(
            "User-Agent",
            concat!("regcheck/", env!("CARGO_PKG_VERSION")),
        )
        .header("Connection", "close");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = match req.body(Empty::new()) {
        Ok(r) => r,
        Err(e) => {
            conn_task.abort();
            return Err(RequestFailure {
                outcome: HttpOutcome::Malformed,
                error: format!("cannot build request: {}", short(e)),
            });
        }
    };
    let resp = match tokio::time::timeout_at(deadline.into(), sender.send_request(req)).await {
        Err(_) => {
            conn_task.abort();
            return Err(RequestFailure {
                outcome: HttpOutcome::HeadersTimeout,
                error: format!(
                    "no response headers within {} ms (Client.Timeout exceeded while awaiting headers)",
                    timeout.as_millis()
                ),
            });
        }
        Ok(Err(e)) => {
            conn_task.abort();
            let outcome = if e.is_parse() || e.is_parse_status() {
                HttpOutcome::Malformed
            } else {
                HttpOutcome::Closed
            };
            return Err(RequestFailure {
                outcome,
                error: short(e),
            });
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    // Read the body within what is left of the deadline; a slow drip or an endless body is cut.
    let limited = Limited::new(body, max_body);
    let (body, truncated, timed_out) =
        match tokio::time::timeout_at(deadline.into(), limited.collect()).await {
            Ok(Ok(collected)) => (collected.to_bytes(), false, false),
            Ok(Err(_)) => (Bytes::new(), true, false),
            Err(_) => (Bytes::new(), true, true),
        };
    conn_task.abort();
    Ok(Response {
        status,
        headers: parts.headers,
        body,
        truncated,
        timed_out,
    })
}

/// Turns a `/v2/` response into evidence.
pub fn v2_evidence(result: Result<Response, RequestFailure>, elapsed_ms: u64) -> HttpEvidence {
    let mut ev = HttpEvidence {
        outcome: HttpOutcome::Response,
        status: None,
        challenge: None,
        challenge_malformed: false,
        distribution_api: false,
        registry_error: None,
        client_ip: None,
        content_type: None,
        error: None,
        ms: elapsed_ms,
    };
    match result {
        Err(f) => {
            ev.outcome = f.outcome;
            ev.error = Some(f.error);
        }
        Ok(resp) => {
            ev.status = Some(resp.status);
            if let Some(v) = resp.headers.get(http::header::WWW_AUTHENTICATE) {
                match v
                    .to_str()
                    .ok()
                    .map(crate::engine::authparse::parse_www_authenticate)
                {
                    Some(Ok(c)) => ev.challenge = Some(c),
                    _ => ev.challenge_malformed = true,
                }
            }
            ev.distribution_api = resp.headers.contains_key("docker-distribution-api-version");
            if let Some(ct) = resp
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                && !ct.contains("json")
            {
                ev.content_type = Some(crate::engine::text::clip(ct, 60));
            }
            if let Some(err) = crate::engine::authparse::parse_registry_error(&resp.body) {
                ev.client_ip = crate::engine::authparse::denied_client_ip(&err.message)
                    .map(|ip| ip.to_string());
                ev.registry_error = Some(err);
            }
            if resp.truncated {
                ev.error = Some(format!(
                    "body longer than {} bytes or too slow; cut",
                    MAX_BODY
                ));
            }
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_classified() {
        let e = std::io::Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(tcp_outcome(&e), TcpOutcome::Refused);
        assert_eq!(
            tcp_outcome(&std::io::Error::from_raw_os_error(113)),
            TcpOutcome::Unreachable
        );
        assert_eq!(
            tcp_outcome(&std::io::Error::from_raw_os_error(101)),
            TcpOutcome::Unreachable
        );
        assert_eq!(
            tcp_outcome(&std::io::Error::from_raw_os_error(110)),
            TcpOutcome::Timeout
        );
        assert_eq!(tcp_outcome(&std::io::Error::other("x")), TcpOutcome::Error);
    }

    #[test]
    fn tls_errors_are_classified() {
        let wrap = |e: rustls::Error| std::io::Error::new(ErrorKind::InvalidData, e);
        let c = |ce| wrap(rustls::Error::InvalidCertificate(ce));
        assert_eq!(
            classify_tls_error(&c(CertificateError::UnknownIssuer), 900),
            TlsOutcome::UntrustedIssuer
        );
        assert_eq!(
            classify_tls_error(&c(CertificateError::NotValidForName), 900),
            TlsOutcome::NameMismatch
        );
        assert_eq!(
            classify_tls_error(&c(CertificateError::Expired), 900),
            TlsOutcome::Expired
        );
        let reset = std::io::Error::from(ErrorKind::ConnectionReset);
        assert_eq!(
            classify_tls_error(&reset, 0),
            TlsOutcome::ResetAfterClientHello
        );
        assert_eq!(classify_tls_error(&reset, 120), TlsOutcome::Failed);
        let eof = std::io::Error::from(ErrorKind::UnexpectedEof);
        assert_eq!(
            classify_tls_error(&eof, 0),
            TlsOutcome::ResetAfterClientHello
        );
    }
}
