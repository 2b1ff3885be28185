//! Integration tests of `regcheck check` against real servers started in-process on loopback.

mod support;

use support::*;

/// Self-tests of the fixtures, so that a failing check test points at the engine, not the lab.
mod fixtures {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.metadata.recursion_desired = true;
        m.to_vec().unwrap()
    }

    async fn udp(addr: std::net::SocketAddr, q: &[u8]) -> Message {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(q, addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    #[test]
    fn dns_server_answers() {
        let lab = Lab::new();
        let many: Vec<Ipv4Addr> = (1..=250).map(|i| Ipv4Addr::new(127, 0, 1, i)).collect();
        let dns = lab.dns(&[
            ("registry.test", Dns::A(vec![LOOPBACK])),
            ("alias.test", Dns::Cname("registry.test".into())),
            ("loop1.test", Dns::Cname("loop2.test".into())),
            ("loop2.test", Dns::Cname("loop1.test".into())),
            ("fail.test", Dns::ServFail),
            ("many.test", Dns::A(many)),
        ]);
        lab.block_on(async {
            let m = udp(dns.addr, &query("registry.test.", RecordType::A)).await;
            assert_eq!(m.answers.len(), 1);
            let m = udp(dns.addr, &query("alias.test.", RecordType::A)).await;
            assert_eq!(m.answers.len(), 2);
            let m = udp(dns.addr, &query("loop1.test.", RecordType::A)).await;
            assert_eq!(m.answers.len(), 2);
            let m = udp(dns.addr, &query("nope.test.", RecordType::A)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            let m = udp(dns.addr, &query("fail.test.", RecordType::A)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
            let m = udp(dns.addr, &query("many.test.", RecordType::A)).await;
            assert!(m.metadata.truncation);
            // TCP has the whole answer.
            let mut s = tokio::net::TcpStream::connect(dns.addr).await.unwrap();
            let q = query("many.test.", RecordType::A);
            s.write_u16(q.len() as u16).await.unwrap();
            s.write_all(&q).await.unwrap();
            let len = s.read_u16().await.unwrap();
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(Message::from_vec(&buf).unwrap().answers.len(), 250);
        });
        assert_eq!(dns.query_count(), 7);
    }

    #[test]
    fn https_and_proxy_serve_the_registry() {
        let lab = Lab::new();
        let pki = Pki::new(&lab);
        let l = lab.listener();
        let port = l.port();
        let reg = lab.https(
            l,
            &pki.leaf(&["registry.test"]),
            TlsMode::Serve(registry_router("registry.test", port, "data.test", 1, None)),
        );
        let proxy = lab.proxy(ProxyMode::Allow, &[("registry.test", LOOPBACK)]);
        let pem = std::fs::read(&pki.ca_file).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let text = lab.block_on(async {
            let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            tcp.write_all(
                format!(
                    "CONNECT registry.test:{port} HTTP/1.1\r\nHost: registry.test:{port}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut head = [0u8; 39];
            tcp.read_exact(&mut head).await.unwrap();
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            let name = rustls::pki_types::ServerName::try_from("registry.test").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .unwrap();
            tls.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        });
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(
            text.contains(&format!("realm=\"https://registry.test:{port}/token\"")),
            "{text}"
        );
        assert_eq!(reg.paths(), vec!["/v2/".to_string()]);
        assert_eq!(proxy.connects.lock().unwrap().len(), 1);
    }
}
