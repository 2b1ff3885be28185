//! DNS: the system resolver as a client on this machine sees it (hosts file, then the
//! resolv.conf nameservers in order, with search domains), and each nameserver asked on its
//! own. Queries are sent with our own small stub (hickory-proto messages over UDP, TCP on
//! truncation) so that every answer keeps its response code and full CNAME chain.

use crate::engine::evidence::{Address, DnsAnswer, DnsOutcome};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Longest CNAME chain followed (resolvers stop around 8–16).
pub const MAX_CNAMES: usize = 12;
/// Addresses kept per answer (a hostile server may send hundreds).
pub const MAX_ADDRESSES: usize = 16;

/// The parts of resolv.conf(5) a resolver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for ResolvConf {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// Parses resolv.conf text. Unknown lines are ignored as glibc does. As an extension useful for
/// local servers and tests, a `nameserver` may carry a port (`127.0.0.1:5353`, `[::1]:5353`).
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(addr) = words.next().and_then(parse_nameserver) {
                    // glibc uses at most 3; we look at a few more since we probe each.
                    if conf.nameservers.len() < 8 && !conf.nameservers.contains(&addr) {
                        conf.nameservers.push(addr);
                    }
                }
            }
            Some("search") | Some("domain") => {
                conf.search = words
                    .filter(|w| *w != ".")
                    .take(6)
                    .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
                    .collect();
            }
            Some("options") => {
                for opt in words {
                    if let Some(v) = opt.strip_prefix("ndots:") {
                        conf.ndots = v.parse::<usize>().unwrap_or(1).min(15);
                    } else if let Some(v) = opt.strip_prefix("timeout:") {
                        conf.timeout =
                            Duration::from_secs(v.parse::<u64>().unwrap_or(5).clamp(1, 30));
                    } else if let Some(v) = opt.strip_prefix("attempts:") {
                        conf.attempts = v.parse::<u32>().unwrap_or(2).clamp(1, 5);
                    }
                }
            }
            _ => {}
        }
    }
    conf
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    // `fe80::1%eth0` zone ids are not supported; `ip:port` and `[v6]:port` are.
    s.parse::<SocketAddr>().ok()
}

/// Parses an /etc/hosts file into name → addresses (names lowercased).
pub fn parse_hosts(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        for name in words {
            let entry = map
                .entry(name.trim_end_matches('.').to_ascii_lowercase())
                .or_default();
            if !entry.contains(&ip) {
                entry.push(ip);
            }
        }
    }
    map
}

/// What one query to one server returned.
#[derive(Debug, Clone)]
enum Reply {
    Answer(Message),
    Timeout,
    Unreachable(String),
    Error(String),
}

fn build_query(name: &Name, rtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), rtype));
    msg
}

fn is_unreachable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable
    )
}

/// One query over UDP, retried over TCP when the answer is truncated.
async fn query_once(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Reply {
    let query = build_query(name, rtype);
    let Ok(bytes) = query.to_vec() else {
        return Reply::Error(format!("cannot encode a query for {name}"));
    };
    let udp = async {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(server).await?;
        sock.send(&bytes).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await?;
            // Ignore stray or spoofed datagrams: the id and question must match.
            if let Ok(msg) = Message::from_vec(&buf[..n])
                && msg.metadata.id == query.metadata.id
                && msg.queries.first().map(|q| q.name()) == Some(name)
            {
                return Ok::<Message, std::io::Error>(msg);
            }
        }
    };
    let started = Instant::now();
    let msg = match tokio::time::timeout(timeout, udp).await {
        Err(_) => return Reply::Timeout,
        Ok(Err(e)) if is_unreachable(&e) => return Reply::Unreachable(e.to_string()),
        Ok(Err(e)) => return Reply::Error(e.to_string()),
        Ok(Ok(msg)) => msg,
    };
    if !msg.metadata.truncation {
        return Reply::Answer(msg);
    }
    let left = timeout.saturating_sub(started.elapsed());
    let tcp = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&bytes).await?;
        let n = stream.read_u16().await? as usize;
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).await?;
        Message::from_vec(&buf)
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))
    };
    match tokio::time::timeout(left, tcp).await {
        Err(_) => Reply::Timeout,
        Ok(Err(e)) if is_unreachable(&e) => Reply::Unreachable(e.to_string()),
        Ok(Err(e)) => Reply::Error(e.to_string()),
        Ok(Ok(msg)) => Reply::Answer(msg),
    }
}

fn name_str(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// Addresses and CNAME chain extracted from one response for `qname`.
#[derive(Debug, Default)]
struct Extract {
    cnames: Vec<String>,
    addresses: Vec<IpAddr>,
    looped: bool,
    /// The chain ended in a CNAME whose target has no records in this answer.
    dangling: Option<Name>,
}

fn extract(msg: &Message, qname: &Name, rtype: RecordType) -> Extract {
    let mut out = Extract::default();
    let mut current = qname.clone();
    let mut seen: HashSet<Name> = HashSet::from([qname.clone()]);
    loop {
        let cname = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == current => Some(c.0.clone()),
            _ => None,
        });
        match cname {
            Some(target) => {
                if !seen.insert(target.clone()) || out.cnames.len() >= MAX_CNAMES {
                    out.looped = true;
                    return out;
                }
                out.cnames.push(name_str(&target));
                current = target;
            }
            None => break,
        }
    }
    for r in &msg.answers {
        if r.name != current {
            continue;
        }
        let ip = match (&r.data, rtype) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
            _ => continue,
        };
        if !out.addresses.contains(&ip) && out.addresses.len() < MAX_ADDRESSES {
            out.addresses.push(ip);
        }
    }
    if out.addresses.is_empty() && !out.cnames.is_empty() {
        out.dangling = Some(current);
    }
    out
}

/// Result of resolving one record type at one server, following CNAMEs the server did not chase.
#[derive(Debug)]
struct TypeResult {
    outcome: DnsOutcome,
    cnames: Vec<String>,
    addresses: Vec<IpAddr>,
    error: Option<String>,
}

async fn resolve_type(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> TypeResult {
    let mut cnames = Vec::new();
    let mut qname = name.clone();
    // A few extra queries for chains an authoritative-only server leaves dangling.
    for _ in 0..4 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return TypeResult {
                outcome: DnsOutcome::Timeout,
                cnames,
                addresses: vec![],
                error: None,
            };
        }
        let msg = match query_once(server, &qname, rtype, left).await {
            Reply::Answer(m) => m,
            Reply::Timeout => {
                return TypeResult {
                    outcome: DnsOutcome::Timeout,
                    cnames,
                    addresses: vec![],
                    error: None,
                };
            }
            Reply::Unreachable(e) => {
                return TypeResult {
                    outcome: DnsOutcome::Unreachable,
                    cnames,
                    addresses: vec![],
                    error: Some(e),
                };
            }
            Reply::Error(e) => {
                return TypeResult {
                    outcome: DnsOutcome::Error,
                    cnames,
                    addresses: vec![],
                    error: Some(e),
                };
            }
        };
        let ex = extract(&msg, &qname, rtype);
        for c in ex.cnames {
            if cnames.contains(&c) || cnames.len() >= MAX_CNAMES {
                return TypeResult {
                    outcome: DnsOutcome::CnameLoop,
                    cnames,
                    addresses: vec![],
                    error: None,
                };
            }
            cnames.push(c);
        }
        if ex.looped {
            return TypeResult {
                outcome: DnsOutcome::CnameLoop,
                cnames,
                addresses: vec![],
                error: None,
            };
        }
        let rcode = msg.metadata.response_code;
        let outcome = match rcode {
            ResponseCode::NoError if !ex.addresses.is_empty() => DnsOutcome::Resolved,
            ResponseCode::NoError => DnsOutcome::NoAddresses,
            ResponseCode::NXDomain => DnsOutcome::NameNotFound,
            ResponseCode::ServFail => DnsOutcome::ServerFailure,
            ResponseCode::Refused => DnsOutcome::Refused,
            _ => DnsOutcome::Error,
        };
        let error = (outcome == DnsOutcome::Error).then(|| format!("response code {rcode}"));
        match (outcome, ex.dangling) {
            (DnsOutcome::NoAddresses, Some(next)) => qname = next,
            _ => {
                return TypeResult {
                    outcome,
                    cnames,
                    addresses: ex.addresses,
                    error,
                };
            }
        }
    }
    TypeResult {
        outcome: DnsOutcome::CnameLoop,
        cnames,
        addresses: vec![],
        error: None,
    }
}

/// Resolves `host` (A and AAAA) at one nameserver. `server_label` becomes `DnsAnswer::server`.
pub async fn resolve_at(server: SocketAddr, host: &str, deadline: Instant) -> DnsAnswer {
    let started = Instant::now();
    let mut answer = DnsAnswer {
        server: server.to_string(),
        outcome: DnsOutcome::Error,
        cnames: vec![],
        addresses: vec![],
        answered_by: None,
        error: None,
        ms: 0,
    };
    let name = match Name::from_ascii(format!("{}.", host.trim_end_matches('.'))) {
        Ok(n) => n,
        Err(e) => {
            answer.error = Some(format!("not a DNS name: {e}"));
            return answer;
        }
    };
    let (a, aaaa) = tokio::join!(
        resolve_type(server, &name, RecordType::A, deadline),
        resolve_type(server, &name, RecordType::AAAA, deadline)
    );
    answer.ms = started.elapsed().as_millis() as u64;
    let mut addresses: Vec<IpAddr> = a.addresses.clone();
    addresses.extend(
        aaaa.addresses
            .iter()
            .copied()
            .filter(|ip| !a.addresses.contains(ip)),
    );
    addresses.truncate(MAX_ADDRESSES);
    answer.addresses = addresses.into_iter().map(Address::new).collect();
    answer.cnames = if a.cnames.is_empty() {
        aaaa.cnames.clone()
    } else {
        a.cnames.clone()
    };
    answer.outcome = if !answer.addresses.is_empty() {
        DnsOutcome::Resolved
    } else if a.outcome == DnsOutcome::NoAddresses
        && aaaa.outcome != DnsOutcome::NoAddresses
        && aaaa.outcome != DnsOutcome::Resolved
    {
        // A said "no data", AAAA failed outright: report the failure.
        aaaa.outcome
    } else {
        a.outcome
    };
    answer.error = a.error.or(aaaa.error);
    answer
}

/// Candidate names in the order a stub resolver tries them (`ndots` and `search`).
pub fn candidate_names(host: &str, conf: &ResolvConf) -> Vec<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let dots = host.matches('.').count();
    let searched = conf.search.iter().map(|d| format!("{host}.{d}"));
    if dots >= conf.ndots {
        std::iter::once(host.clone()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(host.clone())).collect()
    }
}

/// Resolves `host` like the system resolver: hosts file first, then each candidate name
/// (search domains) at the nameservers in order, moving to the next server on timeout,
/// unreachability, SERVFAIL or REFUSED, and to the next candidate on NXDOMAIN/no data.
pub async fn resolve_system(
    host: &str,
    conf: &ResolvConf,
    hosts: &HashMap<String, Vec<IpAddr>>,
    deadline: Instant,
) -> DnsAnswer {
    let started = Instant::now();
    let key = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(ips) = hosts.get(&key) {
        return DnsAnswer {
            server: "hosts".into(),
            outcome: DnsOutcome::Resolved,
            cnames: vec![],
            addresses: ips
                .iter()
                .take(MAX_ADDRESSES)
                .map(|ip| Address::new(*ip))
                .collect(),
            answered_by: Some("hosts".into()),
            error: None,
            ms: 0,
        };
    }
    if conf.nameservers.is_empty() {
        return DnsAnswer {
            server: "system".into(),
            outcome: DnsOutcome::Unreachable,
            cnames: vec![],
            addresses: vec![],
            answered_by: None,
            error: Some("no nameserver configured in resolv.conf".into()),
            ms: 0,
        };
    }
    let candidates = candidate_names(host, conf);
    let absolute = key.clone();
    let mut last: Option<DnsAnswer> = None;
    let mut absolute_answer: Option<DnsAnswer> = None;
    for name in &candidates {
        let mut result: Option<DnsAnswer> = None;
        let mut failures: Vec<DnsAnswer> = Vec::new();
        'servers: for _attempt in 0..conf.attempts {
            let n = conf.nameservers.len();
            for (i, ns) in conf.nameservers.iter().enumerate() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break 'servers;
                }
                // Split what is left between the servers still to ask in this round, so that a
                // dead first nameserver does not use up the time of a working second one.
                let share = left / u32::try_from(n - i).unwrap_or(1);
                let per_try = conf
                    .timeout
                    .min(share.max(Duration::from_millis(50)))
                    .min(left);
                let try_deadline = Instant::now() + per_try;
                let ans = resolve_at(*ns, name, try_deadline).await;
                match ans.outcome {
                    DnsOutcome::Timeout
                    | DnsOutcome::Unreachable
                    | DnsOutcome::ServerFailure
                    | DnsOutcome::Refused => failures.push(ans),
                    _ => {
                        result = Some(ans);
                        break 'servers;
                    }
                }
            }
        }
        let ans = match result {
            Some(a) => a,
            None => {
                // Every server failed: report the most telling failure.
                let pick = failures
                    .iter()
                    .position(|a| {
                        matches!(a.outcome, DnsOutcome::ServerFailure | DnsOutcome::Refused)
                    })
                    .or_else(|| {
                        failures
                            .iter()
                            .position(|a| a.outcome == DnsOutcome::Unreachable)
                    })
                    .unwrap_or(0);
                let mut a = if failures.is_empty() {
                    DnsAnswer {
                        server: "system".into(),
                        outcome: DnsOutcome::Timeout,
                        cnames: vec![],
                        addresses: vec![],
                        answered_by: None,
                        error: None,
                        ms: 0,
                    }
                } else {
                    failures.swap_remove(pick)
                };
                a.answered_by = None;
                let servers: Vec<String> = conf.nameservers.iter().map(|s| s.to_string()).collect();
                a.error = Some(format!(
                    "no usable answer from {}{}",
                    servers.join(", "),
                    a.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
                a.server = "system".into();
                a.ms = started.elapsed().as_millis() as u64;
                return a;
            }
        };
        let mut ans = ans;
        ans.answered_by = Some(ans.server.clone());
        ans.server = "system".into();
        ans.ms = started.elapsed().as_millis() as u64;
        if *name != absolute && ans.outcome == DnsOutcome::Resolved {
            // A search domain produced an answer: that is what clients get.
            ans.cnames.insert(0, name.clone());
            return ans;
        }
        if ans.outcome == DnsOutcome::Resolved {
            return ans;
        }
        if *name == absolute {
            absolute_answer = Some(ans);
        } else {
            last = Some(ans);
        }
    }
    absolute_answer.or(last).unwrap_or(DnsAnswer {
        server: "system".into(),
        outcome: DnsOutcome::Timeout,
        cnames: vec![],
        addresses: vec![],
        answered_by: None,
        error: Some("deadline passed before any nameserver answered".into()),
        ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_parsing() {
        let conf = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.10\nnameserver 127.0.0.1:5353 # local\nnameserver [::1]:53\nnameserver bogus\n\
             search default.svc.cluster.local svc.cluster.local\noptions ndots:5 timeout:2 attempts:3\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "10.0.0.10:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            conf.search,
            vec!["default.svc.cluster.local", "svc.cluster.local"]
        );
        assert_eq!(conf.ndots, 5);
        assert_eq!(conf.timeout, Duration::from_secs(2));
        assert_eq!(conf.attempts, 3);
    }

    #[test]
    fn resolv_conf_defaults_and_garbage() {
        let conf = parse_resolv_conf("\u{0}\u{1}garbage\noptions ndots:x timeout:999\n");
        assert!(conf.nameservers.is_empty());
        assert_eq!(conf.ndots, 1);
        assert_eq!(conf.timeout, Duration::from_secs(30));
    }

    #[test]
    fn hosts_parsing() {
        let hosts = parse_hosts(
            "127.0.0.1 localhost\n10.1.2.3 MyReg.azurecr.io alias # x\nnot-an-ip foo\n",
        );
        assert_eq!(
            hosts["myreg.azurecr.io"],
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(hosts["alias"].len(), 1);
        assert!(!hosts.contains_key("foo"));
    }

    #[test]
    fn candidates_follow_ndots() {
        let pod = parse_resolv_conf(
            "nameserver 10.96.0.10\nsearch ns.svc.cluster.local cluster.local\noptions ndots:5\n",
        );
        assert_eq!(
            candidate_names("myreg.azurecr.io", &pod),
            vec![
                "myreg.azurecr.io.ns.svc.cluster.local",
                "myreg.azurecr.io.cluster.local",
                "myreg.azurecr.io"
            ]
        );
        let node = parse_resolv_conf("nameserver 10.0.0.4\nsearch corp.example\n");
        assert_eq!(
            candidate_names("myreg.azurecr.io.", &node)[0],
            "myreg.azurecr.io"
        );
    }

    fn response(q: &str, records: &[(&str, RData)]) -> (Message, Name) {
        let qname = Name::from_ascii(q).unwrap();
        let mut msg = Message::response(1, hickory_proto::op::OpCode::Query);
        for (name, data) in records {
            msg.add_answer(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii(name).unwrap(),
                60,
                data.clone(),
            ));
        }
        (msg, qname)
    }

    #[test]
    fn extract_follows_cname_chain() {
        use hickory_proto::rr::rdata::{A, CNAME};
        let (msg, q) = response(
            "r.azurecr.io.",
            &[
                (
                    "r.azurecr.io.",
                    RData::CNAME(CNAME(
                        Name::from_ascii("r.privatelink.azurecr.io.").unwrap(),
                    )),
                ),
                (
                    "r.privatelink.azurecr.io.",
                    RData::A(A("10.0.0.5".parse().unwrap())),
                ),
                (
                    "other.example.",
                    RData::A(A("203.0.113.9".parse().unwrap())),
                ),
            ],
        );
        let ex = extract(&msg, &q, RecordType::A);
        assert_eq!(ex.cnames, vec!["r.privatelink.azurecr.io"]);
        assert_eq!(ex.addresses, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert!(!ex.looped);
    }

    #[test]
    fn extract_detects_loops_and_dangling() {
        use hickory_proto::rr::rdata::CNAME;
        let (msg, q) = response(
            "a.example.",
            &[
                (
                    "a.example.",
                    RData::CNAME(CNAME(Name::from_ascii("b.example.").unwrap())),
                ),
                (
                    "b.example.",
                    RData::CNAME(CNAME(Name::from_ascii("a.example.").unwrap())),
                ),
            ],
        );
        assert!(extract(&msg, &q, RecordType::A).looped);
        let (msg, q) = response(
            "a.example.",
            &[(
                "a.example.",
                RData::CNAME(CNAME(Name::from_ascii("c.example.").unwrap())),
            )],
        );
        let ex = extract(&msg, &q, RecordType::A);
        assert_eq!(ex.dangling, Some(Name::from_ascii("c.example.").unwrap()));
    }

    mod fuzz {
        //! Bounded fuzzing of DNS response extraction (`cargo test`; see tests/fuzz.rs for the
        //! other parsers).
        use super::super::*;
        use hickory_proto::rr::Record;
        use hickory_proto::rr::rdata::{A, AAAA, CNAME};
        use proptest::prelude::*;

        fn cfg() -> ProptestConfig {
            ProptestConfig {
                cases: 3000,
                failure_persistence: Some(Box::new(
                    proptest::test_runner::FileFailurePersistence::Direct(
                        "proptest-regressions/dns.txt",
                    ),
                )),
                ..ProptestConfig::default()
            }
        }

        fn name(i: u8) -> Name {
            Name::from_ascii(format!("n{}.example.", i % 12)).unwrap()
        }

        fn record() -> impl Strategy<Value = Record> {
            (any::<u8>(), any::<u8>(), 0u8..3, any::<[u8; 16]>()).prop_map(|(from, to, kind, b)| {
                let data = match kind {
                    0 => RData::CNAME(CNAME(name(to))),
                    1 => RData::A(A(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                    _ => RData::AAAA(AAAA(std::net::Ipv6Addr::from(b))),
                };
                Record::from_rdata(name(from), 60, data)
            })
        }

        proptest! {
            #![proptest_config(cfg())]

            /// Arbitrary answer sets over a few names (chains, loops, self-references, hundreds of
            /// records): bounded results, and loops or dangling chains reported, never a hang.
            #[test]
            fn extract_is_bounded(records in proptest::collection::vec(record(), 0..400), q in any::<u8>(), aaaa in any::<bool>()) {
                let mut msg = Message::response(7, hickory_proto::op::OpCode::Query);
                for r in records {
                    msg.add_answer(r);
                }
                let rtype = if aaaa { RecordType::AAAA } else { RecordType::A };
                let ex = extract(&msg, &name(q), rtype);
                prop_assert!(ex.cnames.len() <= MAX_CNAMES);
                prop_assert!(ex.addresses.len() <= MAX_ADDRESSES);
                for ip in &ex.addresses {
                    prop_assert_eq!(ip.is_ipv6(), aaaa);
                }
                if ex.looped {
                    prop_assert!(ex.addresses.is_empty());
                }
                // Re-encoding and decoding the message (what arrives on the wire) agrees.
                if let Ok(bytes) = msg.to_vec()
                    && let Ok(back) = Message::from_vec(&bytes)
                {
                    let again = extract(&back, &name(q), rtype);
                    prop_assert_eq!(again.addresses, ex.addresses);
                }
            }

            /// Arbitrary bytes as a response: decoding fails or extraction is bounded.
            #[test]
            fn extract_from_arbitrary_packets(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
                if let Ok(msg) = Message::from_vec(&bytes) {
                    let q = msg
                        .queries
                        .first()
                        .map(|q| q.name().clone())
                        .unwrap_or_else(|| name(0));
                    let ex = extract(&msg, &q, RecordType::A);
                    prop_assert!(ex.addresses.len() <= MAX_ADDRESSES);
                }
            }
        }
    }
}
