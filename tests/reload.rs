//! Reload over real loopback sockets: a UDP socket stands in for the phone's SIP stack, a TCP
//! listener for Asterisk's manager interface.

use std::net::SocketAddr;
use std::time::Duration;

use hotdesk::reload::{
    AmiAction, AmiError, AmiReloadConfig, NotifyOptions, NotifyOutcome, notify_check_sync,
};
use hotdesk::secret::Secret;
use rsip::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;

// ---------------------------------------------------------------- fake phone (UDP)

/// What the fake phone does with the n-th NOTIFY it receives.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ignore,
    Status(u16, &'static str),
    /// 100 Trying now, then the final status on the same datagram's turn.
    TryingThen(u16, &'static str),
}

struct Received {
    at: Instant,
    request: rsip::Request,
}

/// Binds a phone on 127.0.0.1 that follows `script` (one entry per received NOTIFY, bounded)
/// and returns what it received.
async fn phone(script: Vec<Answer>) -> (SocketAddr, tokio::task::JoinHandle<Vec<Received>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        for answer in script {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let at = Instant::now();
            let request = rsip::Request::try_from(&buf[..n]).expect("NOTIFY parses with rsip");
            match answer {
                Answer::Ignore => {}
                Answer::Status(code, reason) => {
                    socket
                        .send_to(&response(&request, code, reason), from)
                        .await
                        .unwrap();
                }
                Answer::TryingThen(code, reason) => {
                    socket
                        .send_to(&response(&request, 100, "Trying"), from)
                        .await
                        .unwrap();
                    socket
                        .send_to(&response(&request, code, reason), from)
                        .await
                        .unwrap();
                }
            }
            got.push(Received { at, request });
        }
        got
    });
    (addr, task)
}

/// RFC 3261 8.2.6.2: a response copies Via, From, Call-ID and CSeq, and To (plus a tag).
fn response(req: &rsip::Request, code: u16, reason: &str) -> Vec<u8> {
    let via = req.via_header().unwrap();
    let from = req.from_header().unwrap();
    let to = req.to_header().unwrap();
    let call_id = req.call_id_header().unwrap();
    let cseq = req.cseq_header().unwrap();
    format!(
        "SIP/2.0 {code} {reason}\r\n{via}\r\n{from}\r\n{to};tag=ph1\r\n{call_id}\r\n{cseq}\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn fast(t1_ms: u64) -> NotifyOptions {
    let t1 = Duration::from_millis(t1_ms);
    NotifyOptions {
        t1,
        t2: t1 * 8, // the RFC's ratio T2/T1 = 4 s / 500 ms
        timeout: t1 * 64,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_200_is_reported_and_the_notify_carries_every_mandatory_header() {
    let (addr, phone) = phone(vec![Answer::Status(200, "OK")]).await;
    let opts = NotifyOptions {
        reboot: Some(false),
        ..fast(50)
    };
    let out = notify_check_sync(addr, &opts).await;
    assert_eq!(
        out,
        NotifyOutcome::Final {
            code: 200,
            reason: "OK".into()
        }
    );
    assert_eq!(out.audit_text(), "sip 200 OK");

    let got = phone.await.unwrap();
    let req = &got[0].request;
    assert_eq!(req.method, rsip::Method::Notify);
    assert_eq!(req.uri.to_string(), format!("sip:{addr}"));
    let via = req.via_header().unwrap().typed().unwrap();
    assert_eq!(via.transport, rsip::Transport::Udp);
    let branch = via.branch().expect("branch").to_string();
    assert!(
        branch.starts_with("z9hG4bK") && branch.len() > 7,
        "{branch}"
    );
    assert!(req.via_header().unwrap().to_string().ends_with(";rport"));
    let from = req.from_header().unwrap().typed().unwrap();
    assert!(from.tag().is_some(), "From has a tag");
    assert_eq!(from.uri.auth.unwrap().user, "hotdesk");
    let to = req.to_header().unwrap().typed().unwrap();
    assert!(to.tag().is_none(), "To has no tag outside a dialog");
    assert!(!req.call_id_header().unwrap().value().is_empty());
    let cseq = req.cseq_header().unwrap().typed().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1, rsip::Method::Notify));
    assert_eq!(req.max_forwards_header().unwrap().value(), "70");
    let header = |name: &str| {
        req.headers
            .iter()
            .map(|h| h.to_string())
            .find(|h| h.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(header("Event"), "Event: check-sync;reboot=false");
    assert_eq!(
        header("Subscription-State"),
        "Subscription-State: terminated"
    );
    assert_eq!(header("Content-Length"), "Content-Length: 0");
    assert!(req.body.is_empty());
}

#[tokio::test]
async fn trying_then_200_is_a_200() {
    let (addr, phone) = phone(vec![Answer::TryingThen(200, "OK")]).await;
    let out = notify_check_sync(addr, &fast(50)).await;
    assert!(out.is_success(), "{out:?}");
    assert_eq!(phone.await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_event_489_is_reported_with_the_phones_reason() {
    let (addr, _phone) = phone(vec![Answer::Status(489, "Bad Event")]).await;
    let out = notify_check_sync(addr, &fast(50)).await;
    assert_eq!(out.audit_text(), "sip 489 Bad Event");
    assert!(!out.is_success());
}

#[tokio::test]
async fn call_leg_does_not_exist_481_is_reported() {
    let (addr, _phone) = phone(vec![Answer::Status(481, "Call/Transaction Does Not Exist")]).await;
    let out = notify_check_sync(addr, &fast(50)).await;
    assert_eq!(out.audit_text(), "sip 481 Call/Transaction Does Not Exist");
}

/// Arrival offsets from `start` (taken just before the call): each must come no earlier than
/// the RFC schedule says (timers never fire early) and not much later (a loaded 2-core
/// machine gets 200 ms).
fn assert_schedule(start: Instant, got: &[Received], expected_ms: &[u64]) {
    let offsets: Vec<u64> = got
        .iter()
        .map(|r| r.at.duration_since(start).as_millis() as u64)
        .collect();
    assert_eq!(got.len(), expected_ms.len(), "{offsets:?}");
    for (off, want) in offsets.iter().zip(expected_ms) {
        assert!(
            off >= want && *off <= want + 200,
            "arrival at {off} ms, RFC schedule {want} ms (all: {offsets:?})"
        );
    }
}

#[tokio::test]
async fn unanswered_requests_are_retransmitted_at_t1_doubling() {
    // T1 = 40 ms stands for 500 ms: E fires at T1, 2T1, 4T1 after each send.
    let script = vec![
        Answer::Ignore,
        Answer::Ignore,
        Answer::Ignore,
        Answer::Status(200, "OK"),
    ];
    let (addr, phone) = phone(script).await;
    let start = Instant::now();
    let out = notify_check_sync(addr, &fast(40)).await;
    assert!(out.is_success(), "{out:?}");
    let got = phone.await.unwrap();
    assert_schedule(start, &got, &[0, 40, 120, 280]);
    let branches: Vec<String> = got
        .iter()
        .map(|r| r.request.via_header().unwrap().to_string())
        .collect();
    assert!(
        branches.windows(2).all(|w| w[0] == w[1]),
        "retransmissions are identical"
    );
}

#[tokio::test]
async fn a_provisional_answer_moves_retransmissions_to_t2() {
    // 100 to the first send; E already armed fires at T1, then every T2 (= 8 T1).
    let script = vec![
        Answer::Status(100, "Trying"),
        Answer::Ignore,
        Answer::Ignore,
        Answer::Status(200, "OK"),
    ];
    let (addr, phone) = phone(script).await;
    let start = Instant::now();
    let out = notify_check_sync(addr, &fast(40)).await;
    assert!(out.is_success(), "{out:?}");
    assert_schedule(start, &phone.await.unwrap(), &[0, 40, 360, 680]);
}

#[tokio::test]
async fn a_silent_phone_gets_the_full_schedule_then_timer_f() {
    // 0, T1, 3T1, 7T1, then every T2: 15, 23, 31, 39, 47, 55, 63 T1; F at 64 T1.
    let expected: Vec<u64> = [0, 1, 3, 7, 15, 23, 31, 39, 47, 55, 63]
        .iter()
        .map(|k| k * 40)
        .collect();
    let (addr, phone) = phone(vec![Answer::Ignore; expected.len()]).await;
    let started = Instant::now();
    let out = notify_check_sync(addr, &fast(40)).await;
    let took = started.elapsed();
    assert_eq!(
        out,
        NotifyOutcome::TimedOut {
            after: Duration::from_millis(2560),
            transmissions: 11,
            provisional: false
        }
    );
    assert!(
        took >= Duration::from_millis(2555) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_schedule(started, &phone.await.unwrap(), &expected);
}

#[tokio::test]
async fn a_phone_that_only_says_trying_times_out_and_says_so() {
    // 100 to everything: sends at 0, T1, then every T2 (1, 9, 17, ..., 57 T1): 9 sends.
    let expected: Vec<u64> = [0, 1, 9, 17, 25, 33, 41, 49, 57]
        .iter()
        .map(|k| k * 40)
        .collect();
    let (addr, phone) = phone(vec![Answer::Status(100, "Trying"); expected.len()]).await;
    let started = Instant::now();
    let out = notify_check_sync(addr, &fast(40)).await;
    assert_eq!(
        out,
        NotifyOutcome::TimedOut {
            after: Duration::from_millis(2560),
            transmissions: 9,
            provisional: true
        }
    );
    assert_eq!(out.audit_text(), "sip timeout after 2.6 s (1xx only)");
    assert_schedule(started, &phone.await.unwrap(), &expected);
}

#[tokio::test]
async fn reload_phone_follows_via() {
    use hotdesk::reload::{ReloadConfig, ReloadOutcome, ReloadVia, reload_phone};
    let (addr, phone) = phone(vec![Answer::Status(200, "OK")]).await;
    let mut cfg = ReloadConfig {
        via: ReloadVia::None,
        ..ReloadConfig::default()
    };
    let ip = addr.ip();
    assert_eq!(reload_phone(&cfg, ip, "1001").await, ReloadOutcome::NotSent);
    cfg.via = ReloadVia::Sip;
    cfg.sip.port = addr.port();
    cfg.sip.reboot = Some(true);
    cfg.validate().unwrap();
    // As a dual-stack listener reports an IPv4 phone: ::ffff:127.0.0.1.
    let mapped = match ip {
        std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let out = reload_phone(&cfg, mapped, "1001").await;
    assert_eq!(out.audit_text(), "sip 200 OK");
    let got = phone.await.unwrap();
    assert_eq!(
        got[0].request.uri.to_string(),
        format!("sip:{addr}"),
        "IPv4 again"
    );

    let (port, pbx) = fake_ami(Pbx::Asterisk).await;
    cfg.via = ReloadVia::Ami;
    cfg.ami = ami_cfg(port, "s3cret");
    cfg.validate().unwrap();
    let out = reload_phone(&cfg, ip, "1001").await;
    assert_eq!(out.audit_text(), "ami Success: NOTIFY sent");
    let seen = pbx.await.unwrap();
    assert_eq!(seen[1][3].1, "Event=check-sync;reboot=true");
}

#[tokio::test(start_paused = true)]
async fn rfc_default_timers_give_up_after_32_seconds_with_11_transmissions() {
    // Paused clock: the real T1 = 500 ms / T2 = 4 s / F = 32 s without waiting 32 s.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap(); // bound, never answers
    let addr = socket.local_addr().unwrap();
    let out = notify_check_sync(addr, &NotifyOptions::default()).await;
    assert_eq!(out.audit_text(), "sip timeout after 32 s");
    assert!(matches!(
        out,
        NotifyOutcome::TimedOut {
            transmissions: 11,
            ..
        }
    ));
    drop(socket);
}

#[tokio::test]
async fn nothing_listening_is_reported_as_unreachable_quickly() {
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    }; // dropped: the kernel answers ICMP port unreachable
    let started = Instant::now();
    let out = notify_check_sync(closed, &NotifyOptions::default()).await;
    assert_eq!(out, NotifyOutcome::Unreachable);
    assert_eq!(out.audit_text(), "sip port unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn forged_answers_are_ignored() {
    // An attacker who sees the NOTIFY answers 200 first: from another port (dropped by the
    // connected socket) and from the phone's port with a wrong branch (not this transaction).
    // Only the phone's real 489 counts.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let phone = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        let req = rsip::Request::try_from(&buf[..n]).unwrap();
        let good = response(&req, 200, "OK");
        attacker.send_to(&good, from).await.unwrap();
        let wrong_branch = String::from_utf8(good.clone())
            .unwrap()
            .replace("z9hG4bK", "z9hG4bKforged");
        socket.send_to(wrong_branch.as_bytes(), from).await.unwrap();
        socket
            .send_to(b"\x00\xffnot sip at all", from)
            .await
            .unwrap();
        socket
            .send_to(&response(&req, 489, "Bad Event"), from)
            .await
            .unwrap();
    });
    let out = notify_check_sync(addr, &fast(200)).await;
    assert_eq!(out.audit_text(), "sip 489 Bad Event");
    phone.await.unwrap();
}

#[tokio::test]
async fn many_notifies_in_parallel_each_get_their_own_answer() {
    const N: usize = 32;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let phone = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut call_ids = std::collections::HashSet::new();
        for i in 0..N {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let req = rsip::Request::try_from(&buf[..n]).unwrap();
            call_ids.insert(req.call_id_header().unwrap().value().to_string());
            // Half of them get 200, half 489: each sender must see its own.
            let (code, reason) = if i % 2 == 0 {
                (200, "OK")
            } else {
                (489, "Bad Event")
            };
            socket
                .send_to(&response(&req, code, reason), from)
                .await
                .unwrap();
        }
        call_ids.len()
    });
    let opts = fast(500); // no retransmission expected within the test
    let outs = futures_join_all((0..N).map(|_| notify_check_sync(addr, &opts))).await;
    let ok = outs.iter().filter(|o| o.is_success()).count();
    let bad = outs
        .iter()
        .filter(|o| o.audit_text() == "sip 489 Bad Event")
        .count();
    assert_eq!((ok, bad), (N / 2, N / 2), "{outs:?}");
    assert_eq!(phone.await.unwrap(), N, "distinct Call-IDs");
}

/// join_all without another dependency: spawn-free, polled together in this task.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

// ---------------------------------------------------------------- fake Asterisk (AMI)
//
// Reply shapes, as Asterisk writes them:
// - banner "Asterisk Call Manager/<AMI_VERSION>\r\n": main/manager.c session start;
// - astman_send_response(): "Response: <r>\r\nActionID: <id>\r\nMessage: <m>\r\n\r\n"
//   (main/manager.c astman_send_response_full);
// - Login: ack "Authentication accepted" / error "Authentication failed", then the session
//   ends (main/manager.c action_login returns -1 after the error);
// - Logoff: "Goodbye" / "Thanks for all the fish." (main/manager.c action_logoff);
// - PJSIPNotify: ack "NOTIFY sent", error "Unable to retrieve endpoint %s", both Endpoint and
//   URI -> error (res/res_pjsip_notify.c manager_notify, manager_notify_endpoint);
// - SIPnotify: ack "Notify Sent" (channels/chan_sip.c manager_sipnotify) [I: not re-read].

#[derive(Clone, Copy)]
enum Pbx {
    /// Accepts the login when the secret is "s3cret"; the endpoint "1001" exists.
    Asterisk,
    /// Asterisk 13/16's res_pjsip_notify: error text ends in "\n" inside the Message.
    AsteriskOldNotifyError,
    /// Something that is not AMI.
    Ssh,
    /// Accepts the connection and says nothing.
    Silent,
}

type Message = Vec<(String, String)>;

async fn fake_ami(kind: Pbx) -> (u16, tokio::task::JoinHandle<Vec<Message>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut seen = Vec::new();
        match kind {
            Pbx::Ssh => {
                w.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                    .await
                    .unwrap();
            }
            Pbx::Silent => {}
            Pbx::Asterisk | Pbx::AsteriskOldNotifyError => {
                w.write_all(b"Asterisk Call Manager/9.0.0\r\n")
                    .await
                    .unwrap();
            }
        }
        for _ in 0..8 {
            let Some(msg) = read_message(&mut r).await else {
                break;
            };
            let get = |k: &str| {
                msg.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let id = get("ActionID");
            let reply = match get("Action").to_ascii_lowercase().as_str() {
                "login" if get("Secret") == "s3cret" && get("Username") == "hotdesk" => {
                    format!(
                        "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
                    )
                }
                "login" => {
                    let bye = format!(
                        "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"
                    );
                    w.write_all(bye.as_bytes()).await.unwrap();
                    seen.push(msg);
                    break; // Asterisk closes the session after a failed login
                }
                "pjsipnotify" => {
                    let (ep, uri) = (get("Endpoint"), get("URI"));
                    if !ep.is_empty() && !uri.is_empty() {
                        format!(
                            "Response: Error\r\nActionID: {id}\r\nMessage: PJSIPNotify action can not handle a request specifying 'URI' and 'Endpoint'. You must use only one of the two.\n\r\n\r\n"
                        )
                    } else if ep == "1001" || !uri.is_empty() {
                        format!(
                            "Response: Success\r\nActionID: {id}\r\nMessage: NOTIFY sent\r\n\r\n"
                        )
                    } else if matches!(kind, Pbx::AsteriskOldNotifyError) {
                        format!(
                            "Response: Error\r\nActionID: {id}\r\nMessage: Unable to retrieve endpoint {ep}\n\r\n\r\n"
                        )
                    } else {
                        format!(
                            "Response: Error\r\nActionID: {id}\r\nMessage: Unable to retrieve endpoint {ep}\r\n\r\n"
                        )
                    }
                }
                "sipnotify" => {
                    format!("Response: Success\r\nActionID: {id}\r\nMessage: Notify Sent\r\n\r\n")
                }
                "logoff" => {
                    let bye = format!(
                        "Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n"
                    );
                    w.write_all(bye.as_bytes()).await.unwrap();
                    seen.push(msg);
                    break;
                }
                _ => format!(
                    "Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command\r\n\r\n"
                ),
            };
            seen.push(msg);
            w.write_all(reply.as_bytes()).await.unwrap();
        }
        seen
    });
    (port, task)
}

/// One AMI message as Asterisk's manager reads it (Key: Value lines ending in a blank line).
async fn read_message<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Option<Message> {
    let mut msg = Vec::new();
    for _ in 0..32 {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Some(msg);
        }
        let (k, v) = line.split_once(": ").expect("Key: Value");
        msg.push((k.to_string(), v.to_string()));
    }
    None
}

fn ami_cfg(port: u16, secret: &str) -> AmiReloadConfig {
    AmiReloadConfig {
        host: "127.0.0.1".into(),
        port,
        username: "hotdesk".into(),
        secret: Secret::new(secret),
        reply_timeout_ms: 2000,
        ..Default::default()
    }
}

fn names(msg: &Message) -> Vec<&str> {
    msg.iter().map(|(k, _)| k.as_str()).collect()
}

#[tokio::test]
async fn ami_pjsipnotify_logs_in_sends_the_fields_asterisk_names_and_logs_off() {
    let (port, pbx) = fake_ami(Pbx::Asterisk).await;
    let out = hotdesk::reload::ami::pjsip_notify(
        &ami_cfg(port, "s3cret"),
        "1001",
        "check-sync;reboot=false",
    )
    .await
    .unwrap();
    assert!(out.is_success());
    assert_eq!(out.audit_text(), "ami Success: NOTIFY sent");

    let seen = pbx.await.unwrap();
    assert_eq!(seen.len(), 3, "login, notify, logoff");
    assert_eq!(
        names(&seen[0]),
        ["Action", "ActionID", "Username", "Secret", "Events"]
    );
    assert_eq!(seen[0][0].1, "Login");
    assert_eq!(
        names(&seen[1]),
        ["Action", "ActionID", "Endpoint", "Variable"]
    );
    assert_eq!(seen[1][0].1, "PJSIPNotify");
    assert_eq!(seen[1][2].1, "1001");
    assert_eq!(seen[1][3].1, "Event=check-sync;reboot=false");
    assert_eq!(names(&seen[2]), ["Action", "ActionID"]);
    assert_eq!(seen[2][0].1, "Logoff");
    let ids: std::collections::HashSet<&str> = seen.iter().map(|m| m[1].1.as_str()).collect();
    assert_eq!(ids.len(), 3, "one ActionID per action");
}

#[tokio::test]
async fn ami_uri_mode_and_chan_sip_sipnotify() {
    let (port, pbx) = fake_ami(Pbx::Asterisk).await;
    let mut cfg = ami_cfg(port, "s3cret");
    cfg.uri = Some("sip:{extension}@192.0.2.9:5060".into());
    let out = hotdesk::reload::ami::pjsip_notify(&cfg, "1002", "check-sync")
        .await
        .unwrap();
    assert_eq!(out.audit_text(), "ami Success: NOTIFY sent");
    let seen = pbx.await.unwrap();
    assert_eq!(names(&seen[1]), ["Action", "ActionID", "URI", "Variable"]);
    assert_eq!(seen[1][2].1, "sip:1002@192.0.2.9:5060");

    let (port, pbx) = fake_ami(Pbx::Asterisk).await;
    let mut cfg = ami_cfg(port, "s3cret");
    cfg.action = AmiAction::ChanSip;
    let out = hotdesk::reload::ami::pjsip_notify(&cfg, "1001", "check-sync")
        .await
        .unwrap();
    assert_eq!(out.audit_text(), "ami Success: Notify Sent");
    let seen = pbx.await.unwrap();
    assert_eq!(
        names(&seen[1]),
        ["Action", "ActionID", "Channel", "Variable"]
    );
    assert_eq!(seen[1][0].1, "SIPnotify");
}

#[tokio::test]
async fn ami_unknown_endpoint_is_reported_as_asterisk_words_it() {
    for kind in [Pbx::Asterisk, Pbx::AsteriskOldNotifyError] {
        let (port, pbx) = fake_ami(kind).await;
        let out =
            hotdesk::reload::ami::pjsip_notify(&ami_cfg(port, "s3cret"), "9999", "check-sync")
                .await
                .unwrap();
        assert!(!out.is_success());
        assert_eq!(
            out.audit_text(),
            "ami Error: Unable to retrieve endpoint 9999"
        );
        assert_eq!(pbx.await.unwrap().len(), 3, "still logs off");
    }
}

#[tokio::test]
async fn ami_wrong_secret_stops_before_the_notify_and_never_shows_the_secret() {
    let (port, pbx) = fake_ami(Pbx::Asterisk).await;
    let err = hotdesk::reload::ami::pjsip_notify(&ami_cfg(port, "wrong-pw"), "1001", "check-sync")
        .await
        .unwrap_err();
    assert_eq!(err, AmiError::Login("Authentication failed".into()));
    assert!(!format!("{err} {err:?}").contains("wrong-pw"));
    let seen = pbx.await.unwrap();
    assert_eq!(seen.len(), 1, "no PJSIPNotify after a refused login");
}

#[tokio::test]
async fn ami_secret_is_not_sent_to_something_that_is_not_asterisk() {
    let (port, pbx) = fake_ami(Pbx::Ssh).await;
    let err = hotdesk::reload::ami::pjsip_notify(&ami_cfg(port, "s3cret"), "1001", "check-sync")
        .await
        .unwrap_err();
    assert!(matches!(err, AmiError::NotAmi(_)), "{err:?}");
    assert!(pbx.await.unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn ami_silent_server_times_out_and_nothing_listening_fails_fast() {
    let (port, _pbx) = fake_ami(Pbx::Silent).await;
    let mut cfg = ami_cfg(port, "s3cret");
    cfg.reply_timeout_ms = 200;
    let started = Instant::now();
    let err = hotdesk::reload::ami::pjsip_notify(&cfg, "1001", "check-sync")
        .await
        .unwrap_err();
    assert_eq!(err, AmiError::Timeout("banner"));
    assert!(started.elapsed() < Duration::from_secs(2));

    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let err = hotdesk::reload::ami::pjsip_notify(&ami_cfg(closed, "s3cret"), "1001", "check-sync")
        .await
        .unwrap_err();
    assert!(matches!(err, AmiError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn ipv6_loopback_phone_gets_a_bracketed_notify_and_its_200_counts() {
    let Ok(socket) = UdpSocket::bind("[::1]:0").await else {
        return; // no IPv6 loopback on this machine: nothing to test
    };
    let addr = socket.local_addr().unwrap();
    let phone = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        // Answer by copying the header lines as a phone's stack would (RFC 3261 8.2.6.2).
        let copy: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                    .iter()
                    .any(|h| l.starts_with(h))
            })
            .collect();
        let reply = format!(
            "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
            copy.join("\r\n")
        );
        socket.send_to(reply.as_bytes(), from).await.unwrap();
        text
    });
    let out = notify_check_sync(addr, &fast(200)).await;
    assert_eq!(out.audit_text(), "sip 200 OK");
    let text = phone.await.unwrap();
    assert!(
        text.starts_with(&format!("NOTIFY sip:[::1]:{} SIP/2.0\r\n", addr.port())),
        "{text}"
    );
    assert!(text.contains("Via: SIP/2.0/UDP [::1]:"), "{text}");
}
