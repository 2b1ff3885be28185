//! In-process servers on loopback for the integration tests of `regcheck check`.
//!
//! Everything binds to 127.0.0.1 on an ephemeral port and lives on the [`Lab`]'s own tokio
//! runtime: dropping the `Lab` shuts the runtime down, which cancels every server task and
//! closes every socket. No name is ever resolved through a real resolver: the binary is given a
//! resolv.conf that points at the lab's DNS server, and the proxy resolves through the same
//! table. Every per-connection loop is bounded (request count, header size, hang time).

#![allow(dead_code)]

use base64::Engine as _;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Longest time any server holds a connection open on purpose (hang, drip, silence).
const HOLD: Duration = Duration::from_secs(40);
/// Longest a child `regcheck` may run before the test kills it and fails.
const CHILD_LIMIT: Duration = Duration::from_secs(30);
/// Largest request head the HTTP server reads.
const MAX_HEAD: usize = 64 * 1024;

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

// ---------------------------------------------------------------------------------------------
// Lab: runtime, temp dir, shared helpers
// ---------------------------------------------------------------------------------------------

/// Owns the runtime that runs the servers and a temp dir for PEM files and resolv.conf.
pub struct Lab {
    rt: Option<tokio::runtime::Runtime>,
    dir: tempfile::TempDir,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    pub fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime");
        Self {
            rt: Some(rt),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime")
    }

    /// Runs a future on the lab's runtime (for fixture self-tests).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt().block_on(f)
    }

    fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt().spawn(f);
    }

    /// Writes `text` to a file in the lab's temp dir and returns its path.
    pub fn write_file(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A TCP listener on 127.0.0.1 with an ephemeral port, bound now (so it is ready).
    pub fn listener(&self) -> Listener {
        let l = self
            .rt()
            .block_on(TcpListener::bind((LOOPBACK, 0)))
            .expect("bind tcp");
        let addr = l.local_addr().expect("local addr");
        Listener { inner: l, addr }
    }

    /// A TCP listener on a given loopback address and port, if that is free.
    pub fn listener_at(&self, ip: Ipv4Addr, port: u16) -> Option<Listener> {
        assert!(ip.is_loopback(), "lab servers stay on loopback");
        let l = self.rt().block_on(TcpListener::bind((ip, port))).ok()?;
        let addr = l.local_addr().ok()?;
        Some(Listener { inner: l, addr })
    }

    /// A port on 127.0.0.1 where nothing listens (bound, then released).
    pub fn closed_port(&self) -> u16 {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        port
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

pub struct Listener {
    inner: TcpListener,
    pub addr: SocketAddr,
}

impl Listener {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

// ---------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------

/// How the lab's DNS server answers one name.
#[derive(Clone, Debug)]
pub enum Dns {
    /// NOERROR with these A records (and no AAAA).
    A(Vec<Ipv4Addr>),
    /// A CNAME to another name of the table, followed like a recursive resolver does.
    Cname(String),
    NxDomain,
    ServFail,
    Refused,
    /// Never answer (UDP dropped, TCP held open silently).
    Drop,
}

/// How a broken DNS server answers (see [`Lab::raw_dns`]).
#[derive(Clone, Copy, Debug)]
pub enum RawDns {
    /// 300 pseudo-random bytes.
    Garbage,
    /// A response header with the right id that promises 200 answers and ends.
    TruncatedPacket,
    /// An empty response with TC set; over TCP, a length of 65535 and then silence.
    TruncatedThenTcpGarbage,
    /// An answer with another id (spoofed or stale).
    WrongId,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    /// `name TYPE` of every query received (UDP and TCP).
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl DnsServer {
    pub fn query_count(&self) -> usize {
        self.queries.lock().unwrap().len()
    }
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{}.", norm(name))).expect("valid test name")
}

struct DnsTable(HashMap<String, Dns>);

impl DnsTable {
    /// The answer to a query, or `None` to stay silent.
    fn answer(&self, packet: &[u8], log: &Mutex<Vec<String>>) -> Option<Message> {
        let req = Message::from_vec(packet).ok()?;
        let q = req.queries.first()?.clone();
        let qname = norm(&q.name().to_ascii());
        let qtype = q.query_type();
        log.lock().unwrap().push(format!("{qname} {qtype}"));

        let mut resp = Message::response(req.metadata.id, OpCode::Query);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.add_query(q);
        if let Some(edns) = &req.edns {
            resp.set_edns(edns.clone());
        }

        let mut cur = qname;
        let mut seen = HashSet::new();
        for hop in 0..32 {
            seen.insert(cur.clone());
            match self.0.get(&cur) {
                None | Some(Dns::NxDomain) => {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                    break;
                }
                Some(Dns::ServFail) => {
                    resp.metadata.response_code = ResponseCode::ServFail;
                    break;
                }
                Some(Dns::Refused) => {
                    resp.metadata.response_code = ResponseCode::Refused;
                    break;
                }
                Some(Dns::Drop) => {
                    if hop == 0 {
                        return None;
                    }
                    resp.metadata.response_code = ResponseCode::ServFail;
                    break;
                }
                Some(Dns::A(ips)) => {
                    if qtype == RecordType::A {
                        for ip in ips {
                            resp.add_answer(Record::from_rdata(fqdn(&cur), 60, RData::A(A(*ip))));
                        }
                    }
                    break;
                }
                Some(Dns::Cname(target)) => {
                    resp.add_answer(Record::from_rdata(
                        fqdn(&cur),
                        60,
                        RData::CNAME(CNAME(fqdn(target))),
                    ));
                    let next = norm(target);
                    if seen.contains(&next) {
                        // A loop: answer with the cycle once, like a forwarder that gave up.
                        break;
                    }
                    cur = next;
                }
            }
        }
        Some(resp)
    }
}

impl Lab {
    /// A DNS server (UDP and TCP on the same port) answering from `table`. Names not in the
    /// table get NXDOMAIN.
    pub fn dns(&self, table: &[(&str, Dns)]) -> DnsServer {
        let table = Arc::new(DnsTable(
            table.iter().map(|(n, b)| (norm(n), b.clone())).collect(),
        ));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (udp, tcp) = self.rt().block_on(async {
            for _ in 0..50 {
                let udp = UdpSocket::bind((LOOPBACK, 0)).await.expect("bind udp");
                let port = udp.local_addr().unwrap().port();
                if let Ok(tcp) = TcpListener::bind((LOOPBACK, port)).await {
                    return (udp, tcp);
                }
            }
            panic!("no port free for both UDP and TCP");
        });
        let addr = udp.local_addr().unwrap();

        let (t, log) = (table.clone(), queries.clone());
        self.spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(resp) = t.answer(&buf[..n], &log) else {
                    continue;
                };
                let limit = resp
                    .edns
                    .as_ref()
                    .map(|e| e.max_payload() as usize)
                    .unwrap_or(512)
                    .max(512);
                let mut bytes = resp.to_vec().expect("encode dns");
                if bytes.len() > limit {
                    bytes = resp.truncate().to_vec().expect("encode truncated dns");
                }
                let _ = udp.send_to(&bytes, peer).await;
            }
        });

        let (t, log) = (table, queries.clone());
        self.spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                let (t, log) = (t.clone(), log.clone());
                tokio::spawn(async move {
                    for _ in 0..16 {
                        let Ok(len) = s.read_u16().await else { return };
                        let mut msg = vec![0u8; len as usize];
                        if s.read_exact(&mut msg).await.is_err() {
                            return;
                        }
                        match t.answer(&msg, &log) {
                            Some(resp) => {
                                let bytes = resp.to_vec().expect("encode dns");
                                let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                                out.extend_from_slice(&bytes);
                                if s.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                            None => {
                                tokio::time::sleep(HOLD).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        DnsServer { addr, queries }
    }

    /// A broken DNS server (UDP and TCP on one port) that answers every query as `how` says.
    pub fn raw_dns(&self, how: RawDns) -> DnsServer {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (udp, tcp) = self.rt().block_on(async {
            for _ in 0..50 {
                let udp = UdpSocket::bind((LOOPBACK, 0)).await.expect("bind udp");
                let port = udp.local_addr().unwrap().port();
                if let Ok(tcp) = TcpListener::bind((LOOPBACK, port)).await {
                    return (udp, tcp);
                }
            }
            panic!("no port free for both UDP and TCP");
        });
        let addr = udp.local_addr().unwrap();
        let log = queries.clone();
        self.spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                log.lock().unwrap().push(format!("udp {n} bytes"));
                let q = &buf[..n];
                let id = if n >= 2 { [q[0], q[1]] } else { [0, 0] };
                let out: Vec<u8> = match how {
                    RawDns::Garbage => (0..300)
                        .map(|_| {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            seed as u8
                        })
                        .collect(),
                    // The right id and a header claiming 200 answers, then nothing.
                    RawDns::TruncatedPacket => {
                        vec![id[0], id[1], 0x81, 0x80, 0, 1, 0, 200, 0, 0, 0]
                    }
                    // Header only, TC set: the client must go to TCP.
                    RawDns::TruncatedThenTcpGarbage => {
                        vec![id[0], id[1], 0x83, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]
                    }
                    RawDns::WrongId => {
                        vec![id[0] ^ 0xff, id[1], 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]
                    }
                };
                let _ = udp.send_to(&out, peer).await;
            }
        });
        let log = queries.clone();
        self.spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                log.lock().unwrap().push("tcp".into());
                tokio::spawn(async move {
                    let Ok(len) = s.read_u16().await else { return };
                    let mut msg = vec![0u8; len as usize];
                    if s.read_exact(&mut msg).await.is_err() {
                        return;
                    }
                    // Announce 65535 bytes, send a few, then hold the connection.
                    let _ = s.write_all(&[0xff, 0xff, msg[0], msg[1], 0x81]).await;
                    tokio::time::sleep(HOLD).await;
                });
            }
        });
        DnsServer { addr, queries }
    }

    /// A resolv.conf naming only `dns` (with the port extension regcheck accepts).
    pub fn resolv_conf(&self, dns: &DnsServer) -> PathBuf {
        self.write_file(
            &format!("resolv-{}.conf", dns.addr.port()),
            format!("nameserver {}:{}\n", dns.addr.ip(), dns.addr.port()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// PKI
// ---------------------------------------------------------------------------------------------

/// A trusted test CA (written to a PEM file for `--ca-file`) and an untrusted
/// "Corp TLS Inspection CA", both issuing leaf certificates for test names.
pub struct Pki {
    pub ca_file: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    corp: CertifiedIssuer<'static, KeyPair>,
}

pub const TRUSTED_CA_CN: &str = "regcheck Test Root CA";
pub const CORP_CA_CN: &str = "Corp TLS Inspection CA";

fn ca(cn: &str, org: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, org);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("self-signed ca")
}

/// Server certificates and key, ready for a rustls `ServerConfig`.
#[derive(Clone)]
pub struct Leaf {
    pub config: Arc<rustls::ServerConfig>,
}

impl Pki {
    pub fn new(lab: &Lab) -> Self {
        let ca = ca(TRUSTED_CA_CN, "regcheck tests");
        let corp = ca_corp();
        let ca_file = lab.write_file("trusted-ca.pem", ca.pem());
        Self { ca_file, ca, corp }
    }

    fn issue(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        names: &[&str],
        validity: Option<(i32, i32)>,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names.clone()).expect("leaf params");
        p.distinguished_name
            .push(DnType::CommonName, names[0].clone());
        p.is_ca = IsCa::NoCa;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if let Some((from, to)) = validity {
            p.not_before = rcgen::date_time_ymd(from, 1, 1);
            p.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, issuer).expect("sign leaf");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Leaf {
            config: Arc::new(config),
        }
    }

    /// A leaf for `names` issued by the trusted test CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        Self::issue(&self.ca, names, None)
    }

    /// A leaf for `names` issued by the untrusted "Corp TLS Inspection CA".
    pub fn corp_leaf(&self, names: &[&str]) -> Leaf {
        Self::issue(&self.corp, names, None)
    }

    /// A leaf for `names` from the trusted CA that expired in 2001.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        Self::issue(&self.ca, names, Some((2000, 2001)))
    }
}

impl Pki {
    /// A leaf for `names` under a chain of `depth` intermediate CAs (each signed by the one
    /// above, the top one by the trusted CA), followed by `padding` extra copies of the trusted
    /// CA certificate: the server sends leaf, intermediates (bottom up), then the padding.
    /// `depth = 200` gives a certificate message of about 100 KB; `padding = 2500` about 1 MiB.
    pub fn hostile_chain_leaf(&self, names: &[&str], depth: usize, padding: usize) -> Leaf {
        let mut chain_up: Vec<CertificateDer<'static>> = Vec::new();
        let mut issuers: Vec<CertifiedIssuer<'static, KeyPair>> = Vec::new();
        for i in 0..depth {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("ica params");
            p.distinguished_name
                .push(DnType::CommonName, format!("regcheck Intermediate {i}"));
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().expect("ica key");
            let parent = issuers.last().unwrap_or(&self.ca);
            let ica = CertifiedIssuer::signed_by(p, key, parent).expect("sign intermediate");
            chain_up.push(ica.der().clone());
            issuers.push(ica);
        }
        let names_s: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names_s.clone()).expect("leaf params");
        p.distinguished_name
            .push(DnType::CommonName, names_s[0].clone());
        p.is_ca = IsCa::NoCa;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("leaf key");
        let cert = p
            .signed_by(&key, issuers.last().unwrap_or(&self.ca))
            .expect("sign leaf");
        let mut chain = vec![cert.der().clone()];
        chain.extend(chain_up.into_iter().rev());
        for _ in 0..padding {
            chain.push(self.ca.der().clone());
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Leaf {
            config: Arc::new(config),
        }
    }
}

fn ca_corp() -> CertifiedIssuer<'static, KeyPair> {
    ca(CORP_CA_CN, "Corp Security")
}

// ---------------------------------------------------------------------------------------------
// HTTP(S) server with a small router
// ---------------------------------------------------------------------------------------------

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path with query string.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// `(user, password)` of a Basic `Authorization` header.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let v = self.header("authorization")?;
        let b64 = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }
}

/// A canned response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    pub fn json(self, v: &serde_json::Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }
    /// A registry error body `{"errors":[{"code":..,"message":..}]}`.
    pub fn registry_error(status: u16, code: &str, message: &str) -> Self {
        Self::new(status)
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .json(&serde_json::json!({"errors":[{"code":code,"message":message}]}))
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// What the server does for a path.
#[derive(Clone)]
pub enum Route {
    Reply(Reply),
    Dynamic(Handler),
    /// Read the request and never answer (held for a while, then closed).
    Hang,
    /// Read the request and close without answering.
    Close,
    /// Send the status line and headers with a huge Content-Length, then one body byte every
    /// 100 ms (bounded).
    Drip(u16),
    /// A status line followed by more than 1 MiB of headers.
    HugeHeaders,
    /// `200` with a chunked body sent as fast as the client reads, 64 KiB chunks, until the
    /// client goes away, 2 GiB were sent, or the hold time passed.
    Firehose,
}

impl Route {
    pub fn dynamic(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Route::Dynamic(Arc::new(f))
    }
}

/// Path → route. A pattern ending in `*` matches by prefix; exact patterns win; a later
/// `route` with the same pattern replaces the earlier one. Unknown paths: 404.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(String, Route)>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn route(mut self, pattern: &str, r: Route) -> Self {
        self.routes.retain(|(p, _)| p != pattern);
        self.routes.push((pattern.to_string(), r));
        self
    }
    pub fn reply(self, pattern: &str, r: Reply) -> Self {
        self.route(pattern, Route::Reply(r))
    }
    fn find(&self, path: &str) -> Route {
        if let Some((_, r)) = self.routes.iter().find(|(p, _)| p == path) {
            return r.clone();
        }
        self.routes
            .iter()
            .filter_map(|(p, r)| {
                let prefix = p.strip_suffix('*')?;
                path.starts_with(prefix).then_some((prefix.len(), r))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| {
                Route::Reply(
                    Reply::new(404)
                        .header("Content-Type", "text/plain")
                        .body("not found\n"),
                )
            })
    }
}

/// What a TLS listener does with a connection.
#[derive(Clone)]
pub enum TlsMode {
    /// Handshake, then serve HTTP/1.1 from the router.
    Serve(Router),
    /// Complete the handshake, then close without reading anything.
    CloseAfterHandshake,
}

pub struct HttpsServer {
    pub addr: SocketAddr,
    /// Connections accepted (TCP).
    pub accepted: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpsServer {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.target.clone())
            .collect()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads up to the end of a request/response head; leftover bytes stay in `buf`.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf[..i + 4].to_vec();
            buf.drain(..i + 4);
            return Some(head);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(HOLD, s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_request(head: &[u8]) -> Option<Request> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        target,
        headers,
    })
}

async fn write_reply<S: AsyncWrite + Unpin>(s: &mut S, r: &Reply, head_only: bool) -> bool {
    let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason_phrase(r.status));
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&r.body);
    }
    s.write_all(&bytes).await.is_ok() && s.flush().await.is_ok()
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    router: Router,
    log: Arc<Mutex<Vec<Request>>>,
) {
    let mut buf = Vec::new();
    for _ in 0..64 {
        let Some(head) = read_head(&mut s, &mut buf).await else {
            return;
        };
        let Some(req) = parse_request(&head) else {
            return;
        };
        // Discard a request body, if any.
        let body_len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < body_len {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(HOLD, s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf.drain(..body_len.min(buf.len()));
        log.lock().unwrap().push(req.clone());
        let head_only = req.method == "HEAD";
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match router.find(req.path()) {
            Route::Reply(r) => {
                if !write_reply(&mut s, &r, head_only).await || close {
                    let _ = s.shutdown().await;
                    return;
                }
            }
            Route::Dynamic(f) => {
                if !write_reply(&mut s, &f(&req), head_only).await || close {
                    let _ = s.shutdown().await;
                    return;
                }
            }
            Route::Hang => {
                tokio::time::sleep(HOLD).await;
                return;
            }
            Route::Close => {
                let _ = s.shutdown().await;
                return;
            }
            Route::Drip(status) => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000000\r\n\r\n",
                    reason_phrase(status)
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..400 {
                    if s.write_all(b"x").await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return;
            }
            Route::Firehose => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = b"10000\r\n".to_vec();
                chunk.extend(std::iter::repeat_n(b'z', 0x10000));
                chunk.extend_from_slice(b"\r\n");
                let until = Instant::now() + HOLD;
                for _ in 0..(32 * 1024) {
                    if Instant::now() > until {
                        return;
                    }
                    match tokio::time::timeout(HOLD, s.write_all(&chunk)).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
                return;
            }
            Route::HugeHeaders => {
                let mut head = String::from("HTTP/1.1 200 OK\r\n");
                for i in 0..2048 {
                    head.push_str(&format!("X-Pad-{i}: {}\r\n", "a".repeat(600)));
                }
                head.push_str("Content-Length: 0\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.flush().await;
                return;
            }
        }
    }
}

impl Lab {
    /// An HTTPS server on `listener` with certificate `leaf`.
    pub fn https(&self, listener: Listener, leaf: &Leaf, mode: TlsMode) -> HttpsServer {
        let acceptor = tokio_rustls::TlsAcceptor::from(leaf.config.clone());
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (acc, log) = (accepted.clone(), requests.clone());
        let Listener { inner, addr } = listener;
        self.spawn(async move {
            loop {
                let Ok((tcp, _)) = inner.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let (acceptor, mode, log) = (acceptor.clone(), mode.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(15), acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    match mode {
                        TlsMode::Serve(router) => serve_http(tls, router, log).await,
                        TlsMode::CloseAfterHandshake => {
                            let (tcp, _) = tls.into_inner();
                            drop(tcp);
                        }
                    }
                });
            }
        });
        HttpsServer {
            addr,
            accepted,
            requests,
        }
    }
}

impl Lab {
    /// A plain-HTTP server on `listener` (a registry mirror configured with `http://`).
    pub fn http(&self, listener: Listener, router: Router) -> HttpsServer {
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (acc, log) = (accepted.clone(), requests.clone());
        let Listener { inner, addr } = listener;
        self.spawn(async move {
            loop {
                let Ok((tcp, _)) = inner.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let (router, log) = (router.clone(), log.clone());
                tokio::spawn(serve_http(tcp, router, log));
            }
        });
        HttpsServer {
            addr,
            accepted,
            requests,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw TCP misbehaviour
// ---------------------------------------------------------------------------------------------

/// A plain TCP server that counts connections.
pub struct TcpServer {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl TcpServer {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Lab {
    fn tcp_server<F, Fut>(&self, listener: Listener, handle: F) -> TcpServer
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let Listener { inner, addr } = listener;
        self.spawn(async move {
            loop {
                let Ok((s, _)) = inner.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(s));
            }
        });
        TcpServer { addr, accepted }
    }

    /// Accepts, reads the ClientHello, then resets the connection (SO_LINGER 0 and close):
    /// what an SNI-filtering firewall does.
    pub fn reset_after_client_hello(&self) -> TcpServer {
        let l = self.listener();
        self.tcp_server(l, |mut s| async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(HOLD, s.read(&mut buf)).await;
            let _ = s.set_zero_linger();
            drop(s);
        })
    }

    /// Accepts and reads, but never answers the TLS handshake.
    pub fn silent(&self) -> TcpServer {
        let l = self.listener();
        self.tcp_server(l, |mut s| async move {
            let mut buf = [0u8; 4096];
            let until = Instant::now() + HOLD;
            while Instant::now() < until {
                match tokio::time::timeout(HOLD, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT proxy
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum ProxyMode {
    /// Tunnel to the destination (resolved through the proxy's own name table).
    Allow,
    /// 403 for everything.
    Deny,
    /// 407 unless `Proxy-Authorization: Basic` carries these credentials; then tunnel.
    Auth { user: String, pass: String },
    /// Close the connection without answering the CONNECT.
    Eof,
    /// 502: "cannot reach the destination".
    BadGateway,
}

pub struct ProxyServer {
    pub addr: SocketAddr,
    /// CONNECT targets received.
    pub connects: Arc<Mutex<Vec<String>>>,
}

impl ProxyServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn proxy_conn(
    mut s: TcpStream,
    mode: ProxyMode,
    names: Arc<HashMap<String, Ipv4Addr>>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let Some(head) = read_head(&mut s, &mut buf).await else {
        return;
    };
    let Some(req) = parse_request(&head) else {
        return;
    };
    log.lock().unwrap().push(req.target.clone());
    let status_only = |code: u16| {
        format!(
            "HTTP/1.1 {code} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            reason_phrase(code)
        )
    };
    if req.method != "CONNECT" {
        let _ = s.write_all(status_only(405).as_bytes()).await;
        return;
    }
    match &mode {
        ProxyMode::Deny => {
            let _ = s.write_all(status_only(403).as_bytes()).await;
            return;
        }
        ProxyMode::Eof => {
            let _ = s.shutdown().await;
            return;
        }
        ProxyMode::BadGateway => {
            let _ = s.write_all(status_only(502).as_bytes()).await;
            return;
        }
        ProxyMode::Auth { user, pass } => {
            let ok = req
                .header("proxy-authorization")
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                })
                .is_some_and(|raw| raw == format!("{user}:{pass}").as_bytes());
            if !ok {
                let msg = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = s.write_all(msg.as_bytes()).await;
                return;
            }
        }
        ProxyMode::Allow => {}
    }
    // Tunnel.
    let Some((host, port)) = req.target.rsplit_once(':') else {
        let _ = s.write_all(status_only(400).as_bytes()).await;
        return;
    };
    let ip = match host.parse::<Ipv4Addr>() {
        Ok(ip) => Some(ip),
        Err(_) => names.get(&norm(host)).copied(),
    };
    let (Some(ip), Ok(port)) = (ip, port.parse::<u16>()) else {
        let _ = s.write_all(status_only(502).as_bytes()).await;
        return;
    };
    let Ok(Ok(mut up)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((ip, port))).await
    else {
        let _ = s.write_all(status_only(502).as_bytes()).await;
        return;
    };
    if s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    if !buf.is_empty() && up.write_all(&buf).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(HOLD, tokio::io::copy_bidirectional(&mut s, &mut up)).await;
}

impl Lab {
    /// An HTTP CONNECT proxy. `names` is its own name table (it never uses a real resolver).
    pub fn proxy(&self, mode: ProxyMode, names: &[(&str, Ipv4Addr)]) -> ProxyServer {
        let names: Arc<HashMap<String, Ipv4Addr>> =
            Arc::new(names.iter().map(|(n, ip)| (norm(n), *ip)).collect());
        let connects = Arc::new(Mutex::new(Vec::new()));
        let log = connects.clone();
        let Listener { inner, addr } = self.listener();
        self.spawn(async move {
            loop {
                let Ok((s, _)) = inner.accept().await else {
                    continue;
                };
                tokio::spawn(proxy_conn(s, mode.clone(), names.clone(), log.clone()));
            }
        });
        ProxyServer { addr, connects }
    }
}

// ---------------------------------------------------------------------------------------------
// A fake registry: login server (token, manifests, blob redirect) and a data endpoint
// ---------------------------------------------------------------------------------------------

pub fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub const REPO: &str = "library/app";
pub const TAG: &str = "v1";
pub const TOKEN: &str = "t0ken";

/// An image: a small config blob, a larger layer and the manifest naming both.
pub struct Image {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Default for Image {
    fn default() -> Self {
        Self::new()
    }
}

impl Image {
    pub fn new() -> Self {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let layer: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest(&layer),
                "size": layer.len(),
            }],
        }))
        .unwrap();
        Self {
            config,
            layer,
            manifest,
        }
    }
}

/// The `WWW-Authenticate` challenge of a registry whose token endpoint is on `host:port`.
pub fn bearer_challenge(host: &str, port: u16) -> String {
    format!("Bearer realm=\"https://{host}:{port}/token\",service=\"{host}\"")
}

/// `/v2/` as a healthy token-auth registry answers it.
pub fn v2_challenge(host: &str, port: u16) -> Reply {
    Reply::registry_error(401, "UNAUTHORIZED", "authentication required")
        .header("WWW-Authenticate", bearer_challenge(host, port))
}

/// Routes of a healthy registry `host:port` serving [`Image`] at `REPO:TAG`, with blobs
/// redirected (307) to `data_host:data_port`. `creds`: required Basic credentials at `/token`
/// (anonymous pulls are allowed when `None`).
pub fn registry_router(
    host: &str,
    port: u16,
    data_host: &str,
    data_port: u16,
    creds: Option<(&str, &str)>,
) -> Router {
    let image = Image::new();
    let creds = creds.map(|(u, p)| (u.to_string(), p.to_string()));
    let (h, p) = (host.to_string(), port);
    let token = Route::dynamic(move |req| match (&creds, req.basic_auth()) {
        (None, _) => Reply::new(200).json(&serde_json::json!({"token":TOKEN,"access_token":TOKEN})),
        (Some(want), Some(got)) if *want == got => {
            Reply::new(200).json(&serde_json::json!({"token":TOKEN,"access_token":TOKEN}))
        }
        _ => Reply::registry_error(401, "UNAUTHORIZED", "authentication required")
            .header("WWW-Authenticate", format!("Basic realm=\"{h}\"")),
    });
    let manifest_path = format!("/v2/{REPO}/manifests/{TAG}");
    let manifest = image.manifest.clone();
    let (h, p2) = (host.to_string(), p);
    let manifests = Route::dynamic(move |req| {
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return v2_challenge(&h, p2);
        }
        Reply::new(200)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .header("Docker-Content-Digest", digest(&manifest))
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .body(manifest.clone())
    });
    let (h, dh) = (host.to_string(), data_host.to_string());
    let blobs = Route::dynamic(move |req| {
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return v2_challenge(&h, p);
        }
        let d = req.path().rsplit('/').next().unwrap_or("");
        Reply::new(307)
            .header(
                "Location",
                format!("https://{dh}:{data_port}/blobs/{d}?sig=abc"),
            )
            .header("Docker-Distribution-API-Version", "registry/2.0")
    });
    Router::new()
        .reply(
            "/v2/",
            v2_challenge(host, port).header("Docker-Distribution-API-Version", "registry/2.0"),
        )
        .route("/token", token)
        .route(&manifest_path, manifests)
        .route(
            &format!("/v2/{REPO}/manifests/*"),
            Route::Reply(Reply::registry_error(
                404,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            )),
        )
        .route(&format!("/v2/{REPO}/blobs/*"), blobs)
        .route(
            "/v2/*",
            Route::Reply(Reply::registry_error(
                404,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            )),
        )
}

/// Routes of the data endpoint serving the blobs of [`Image`].
pub fn data_router() -> Router {
    let image = Image::new();
    let mut r = Router::new();
    for blob in [image.config, image.layer] {
        r = r.reply(
            &format!("/blobs/{}", digest(&blob)),
            Reply::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(blob),
        );
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

pub struct Run {
    /// Peak resident set size of the child (VmHWM from /proc, sampled every 20 ms until it
    /// exited), in KiB; `None` where /proc is not readable.
    pub peak_rss_kib: Option<u64>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub args: Vec<String>,
}

impl Run {
    /// The JSON report on stdout; panics with both streams when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON report ({e}); exit {}\nargs: {:?}\nstdout:\n{}\nstderr:\n{}",
                self.code, self.args, self.stdout, self.stderr
            )
        })
    }
    /// Everything the run printed, for error messages.
    pub fn dump(&self) -> String {
        format!(
            "exit {} after {:?} (peak RSS {:?} KiB)\nargs: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.elapsed, self.peak_rss_kib, self.args, self.stdout, self.stderr
        )
    }
}

/// Runs `regcheck ARGS` with proxy variables removed, feeding `stdin`; kills it and panics if it
/// runs longer than 30 s.
pub fn regcheck<S: AsRef<str>>(args: &[S], stdin: Option<&str>) -> Run {
    regcheck_env(args, stdin, &[])
}

/// VmHWM (peak RSS, KiB) of a running process.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// [`regcheck`] with extra environment variables (e.g. `RUST_LOG`), set after the proxy
/// variables and `RUST_LOG` are removed.
pub fn regcheck_env<S: AsRef<str>>(args: &[S], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regcheck"));
    cmd.args(&args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
        "RUST_LOG",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn regcheck");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(text.as_bytes());
        drop(pipe);
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let pid = child.id();
    let mut peak_rss_kib: Option<u64> = None;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak_rss_kib = Some(peak_rss_kib.unwrap_or(0).max(kib));
        }
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if started.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            panic!(
                "regcheck {args:?} ran longer than {CHILD_LIMIT:?}; killed\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    Run {
        peak_rss_kib,
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out_t.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
        elapsed,
        args,
    }
}
