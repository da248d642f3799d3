//! Transport limits over raw sockets: timeouts, oversized heads and bodies, status codes.

mod support;

use std::time::{Duration, Instant};

use support::{Server, parse_response, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes; returns what it sent and how long that took.
async fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after 6 s"),
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_by_the_header_timeout() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let (_, took) = until_closed(&mut s).await;
    assert!(
        took < Duration::from_secs(3),
        "closed after {took:?} (header_timeout = 1s)"
    );
}

#[tokio::test]
async fn byte_drip_headers_are_cut_off() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let drip = b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in drip {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(5) {
            panic!("still accepting bytes after 5 s");
        }
    }
    let (_, _) = until_closed(&mut s).await;
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn phones_are_served_while_slow_clients_hold_connections() {
    let server = Server::start("").await;
    // Twenty slow clients dripping header bytes ...
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /app HTTP/1.1\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    // ... while a phone keeps getting its screens promptly.
    let ua = [("User-Agent", support::phone::AASTRA_6737I)];
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(request(server.addr, "GET", "/app", &ua).await.status, 200);
        assert!(start.elapsed() < Duration::from_millis(500));
    }
    for s in &mut slow {
        let (_, took) = until_closed(s).await;
        assert!(took < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, took) = until_closed(&mut s).await;
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert!(
        took < Duration::from_secs(3),
        "idle connection kept {took:?}"
    );
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let server = Server::start("").await;
    let cases = [
        format!(
            "GET /app HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(40_000)
        ),
        format!(
            "GET /app HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..100)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        ),
    ];
    for req in cases {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        let (raw, _) = until_closed(&mut s).await;
        assert!(
            String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
    // The server is still serving.
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[]).await.status,
        200
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = Server::start("").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let body = vec![b'x'; 100_000];
    let head = format!(
        "POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(&body).await;
    let (raw, _) = until_closed(&mut s).await;
    assert_eq!(parse_response(&raw).status, 413);
}

#[tokio::test]
async fn statuses_for_routes_and_methods() {
    let server = Server::start("").await;
    let ua = [("User-Agent", support::phone::AASTRA_6737I)];
    let cases = [
        ("GET", "/healthz", 200),
        ("HEAD", "/healthz", 200),
        ("GET", "/nope", 404),
        ("GET", "/app/../etc/passwd", 404),
        ("DELETE", "/app", 405),
        ("POST", "/api/v1/logins", 405),
    ];
    for (method, path, want) in cases {
        let r = request(server.addr, method, path, &ua).await;
        assert_eq!(r.status, want, "{method} {path}");
    }
    let r = request(server.addr, "DELETE", "/app", &ua).await;
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn many_parallel_phones_are_served() {
    let server = Server::start("").await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let ua = format!("Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:{i:02x}");
                request(addr, "GET", "/app", &[("User-Agent", &ua)])
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn the_connection_cap_sheds_load_and_recovers() {
    let addr =
        support::start_edited(|t| t.replace("max_connections = 256", "max_connections = 4")).await;
    // Four silent connections fill the cap.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The fifth is closed at once instead of queueing.
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    let (_, took) = until_closed(&mut fifth).await;
    assert!(
        took < Duration::from_millis(500),
        "over the cap: closed after {took:?}"
    );
    // The silent ones are cut by the header timeout; then phones are served again.
    for s in &mut idle {
        until_closed(s).await;
    }
    let ua = [("User-Agent", support::phone::YEALINK_T46S)];
    for _ in 0..10 {
        assert_eq!(request(addr, "GET", "/app", &ua).await.status, 200);
    }
}
