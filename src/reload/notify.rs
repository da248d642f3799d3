//! SIP NOTIFY `Event: check-sync` sent by hotdesk itself, as an RFC 3261 non-INVITE client
//! transaction over UDP (section 17.1.2).
//!
//! One UDP socket per transaction, bound to an ephemeral port and `connect`ed to the phone:
//! the kernel then delivers only the phone's datagrams, reports ICMP port-unreachable to this
//! transaction alone (as `ConnectionRefused`), and the random source port makes off-path
//! spoofed answers harder. No shared demultiplexing table, so parallel NOTIFYs cannot interfere.
//! Messages are built and parsed with `rsip`; only the reason phrase is read from the raw status
//! line, because rsip keeps its own phrase for well-known codes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rsip::prelude::*;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What one NOTIFY transaction sends and how long it tries.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Event package (`check-sync`).
    pub event: String,
    /// `Some(b)` adds `;reboot=b` to the Event header.
    pub reboot: Option<bool>,
    /// User part of the From URI.
    pub from_user: String,
    /// Optional user part of the Request-URI and To (e.g. the extension); host-only otherwise.
    pub to_user: Option<String>,
    /// RFC 3261 T1: first retransmit interval.
    pub t1: Duration,
    /// RFC 3261 T2: longest retransmit interval.
    pub t2: Duration,
    /// Timer F: give up after this long (RFC default 64 * T1).
    pub timeout: Duration,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        let t1 = Duration::from_millis(500);
        Self {
            event: "check-sync".into(),
            reboot: None,
            from_user: "hotdesk".into(),
            to_user: None,
            t1,
            t2: Duration::from_secs(4),
            timeout: t1 * 64,
        }
    }
}

impl NotifyOptions {
    /// The Event header value: `check-sync` or `check-sync;reboot=true|false`.
    pub fn event_header(&self) -> String {
        match self.reboot {
            Some(b) => format!("{};reboot={b}", self.event),
            None => self.event.clone(),
        }
    }
}

/// How a NOTIFY transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// A final response (2xx-6xx): the phone's code and reason phrase.
    Final { code: u16, reason: String },
    /// Timer F fired without a final response.
    TimedOut {
        after: Duration,
        transmissions: u32,
        provisional: bool,
    },
    /// ICMP port unreachable (nothing listens on the phone's SIP port).
    Unreachable,
    /// The request could not be sent (bad options, no route, socket error).
    Failed(String),
}

impl NotifyOutcome {
    /// True for a 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Final { code, .. } if (200..300).contains(code))
    }

    /// Short text for the audit trail: "sip 200 OK", "sip timeout after 32 s", ….
    pub fn audit_text(&self) -> String {
        match self {
            Self::Final { code, reason } => format!("sip {code} {reason}"),
            Self::TimedOut {
                after, provisional, ..
            } => {
                let secs = after.as_secs_f64();
                let tail = if *provisional { " (1xx only)" } else { "" };
                if secs.fract() == 0.0 {
                    format!("sip timeout after {secs:.0} s{tail}")
                } else {
                    format!("sip timeout after {secs:.1} s{tail}")
                }
            }
            Self::Unreachable => "sip port unreachable".into(),
            Self::Failed(e) => format!("sip failed: {e}"),
        }
    }
}

impl std::fmt::Display for NotifyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.audit_text())
    }
}

/// Sends NOTIFY check-sync to `target` and waits, retransmitting per RFC 3261 17.1.2, for a
/// final response. Bounded by `opts.timeout` (plus nothing: every wait is a timer).
pub async fn notify_check_sync(target: SocketAddr, opts: &NotifyOptions) -> NotifyOutcome {
    if let Err(e) = check_options(opts) {
        return NotifyOutcome::Failed(e);
    }
    let socket = match open_socket(target).await {
        Ok(s) => s,
        Err(e) => return NotifyOutcome::Failed(format!("socket: {e}")),
    };
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => return NotifyOutcome::Failed(format!("socket: {e}")),
    };
    let ids = TransactionIds::random();
    let request: Vec<u8> = build_request(target, local, &ids, opts).into();
    run_transaction(&socket, &request, &ids, opts).await
}

async fn open_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    let any: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0)).await?;
    socket.connect(target).await?;
    Ok(socket)
}

fn check_options(opts: &NotifyOptions) -> Result<(), String> {
    if !super::config::is_event_type(&opts.event) {
        return Err("event is not an event package name".into());
    }
    if !super::config::is_sip_user(&opts.from_user) {
        return Err("from_user has characters a SIP user may not".into());
    }
    if let Some(u) = &opts.to_user
        && !super::config::is_sip_user(u)
    {
        return Err("to_user has characters a SIP user may not".into());
    }
    if opts.t1.is_zero() || opts.t2 < opts.t1 || opts.timeout.is_zero() {
        return Err("need 0 < t1 <= t2 and a timeout".into());
    }
    Ok(())
}

/// The values that tie responses to this transaction.
#[derive(Debug, Clone)]
pub(crate) struct TransactionIds {
    pub branch: String,
    pub from_tag: String,
    pub call_id: String,
}

impl TransactionIds {
    fn random() -> Self {
        Self {
            // RFC 3261 8.1.1.7: the magic cookie marks an RFC 3261 branch.
            branch: format!("z9hG4bK{}", random_hex(12)),
            from_tag: random_hex(8),
            call_id: random_hex(16),
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = [0u8; 16];
    let buf = &mut buf[..bytes.min(16)];
    // getrandom fails only without an OS RNG; a clock-derived fallback still keeps ids distinct.
    if getrandom::fill(buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    crate::hex::lower(buf)
}

/// rsip 0.4 prints an IPv6 host without the brackets RFC 3261 `IPv6reference` requires, so
/// IPv6 goes in as a bracketed name.
fn host_with_port(addr: SocketAddr) -> rsip::HostWithPort {
    let host = match addr.ip() {
        IpAddr::V4(ip) => rsip::Host::IpAddr(ip.into()),
        IpAddr::V6(ip) => rsip::Host::Domain(format!("[{ip}]").into()),
    };
    rsip::HostWithPort {
        host,
        port: Some(addr.port().into()),
    }
}

fn host_uri(user: Option<&str>, addr: SocketAddr) -> rsip::Uri {
    rsip::Uri {
        scheme: Some(rsip::Scheme::Sip),
        auth: user.map(|u| (u.to_string(), Option::<String>::None).into()),
        host_with_port: host_with_port(addr),
        ..Default::default()
    }
}

/// The NOTIFY as RFC 3261 8.1.1 and RFC 6665 (Event, Subscription-State) require it.
pub(crate) fn build_request(
    target: SocketAddr,
    local: SocketAddr,
    ids: &TransactionIds,
    opts: &NotifyOptions,
) -> rsip::Request {
    let mut headers = rsip::Headers::default();
    headers.push(
        rsip::typed::Via {
            version: rsip::Version::V2,
            transport: rsip::Transport::Udp,
            uri: rsip::Uri {
                host_with_port: host_with_port(local),
                ..Default::default()
            },
            params: vec![
                rsip::Param::Branch(rsip::param::Branch::new(ids.branch.clone())),
                // RFC 3581: answer to the source port, which is what a NAT leaves open.
                rsip::Param::Other("rport".into(), None),
            ],
        }
        .into(),
    );
    headers.push(rsip::headers::MaxForwards::new("70").into());
    let from_uri = host_uri(Some(&opts.from_user), local);
    headers.push(
        rsip::typed::From {
            display_name: None,
            uri: from_uri.clone(),
            params: vec![rsip::Param::Tag(rsip::param::Tag::new(
                ids.from_tag.clone(),
            ))],
        }
        .into(),
    );
    let to_uri = host_uri(opts.to_user.as_deref(), target);
    headers.push(
        rsip::typed::To {
            display_name: None,
            uri: to_uri.clone(),
            params: vec![],
        }
        .into(),
    );
    headers.push(rsip::headers::CallId::new(ids.call_id.clone()).into());
    headers.push(
        rsip::typed::CSeq {
            seq: 1,
            method: rsip::Method::Notify,
        }
        .into(),
    );
    headers.push(
        rsip::typed::Contact {
            display_name: None,
            uri: from_uri,
            params: vec![],
        }
        .into(),
    );
    headers.push(rsip::headers::Event::new(opts.event_header()).into());
    headers.push(rsip::headers::SubscriptionState::new("terminated").into());
    headers.push(rsip::headers::UserAgent::new("hotdesk").into());
    headers.push(rsip::headers::ContentLength::default().into());
    rsip::Request {
        method: rsip::Method::Notify,
        uri: to_uri,
        version: rsip::Version::V2,
        headers,
        body: vec![],
    }
}

/// RFC 3261 17.1.2.2: Trying → (1xx) Proceeding → (final) Completed, Timer E/F.
async fn run_transaction(
    socket: &UdpSocket,
    request: &[u8],
    ids: &TransactionIds,
    opts: &NotifyOptions,
) -> NotifyOutcome {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut transmissions = 0u32;
    let mut provisional = false;
    let mut interval = opts.t1;
    let mut buf = vec![0u8; 8192];

    if let Err(e) = socket.send(request).await {
        return send_error(e);
    }
    transmissions += 1;
    let mut timer_e = start + interval;

    loop {
        let wake = timer_e.min(deadline);
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => match match_response(&buf[..n], ids) {
                Some((code, _)) if code < 200 => provisional = true,
                Some((code, reason)) => return NotifyOutcome::Final { code, reason },
                None => {} // not ours or not SIP: ignore, as a transaction does
            },
            Ok(Err(e)) => return send_error(e),
            Err(_) if Instant::now() >= deadline => {
                return NotifyOutcome::TimedOut {
                    after: opts.timeout,
                    transmissions,
                    provisional,
                };
            }
            Err(_) => {
                if let Err(e) = socket.send(request).await {
                    return send_error(e);
                }
                transmissions += 1;
                // Trying: MIN(2*interval, T2); Proceeding: T2.
                interval = if provisional {
                    opts.t2
                } else {
                    (interval * 2).min(opts.t2)
                };
                timer_e += interval;
            }
        }
    }
}

/// RFC 3261 17.1.4: a transport error ends the transaction at once (no more retransmissions).
fn send_error(e: io::Error) -> NotifyOutcome {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        NotifyOutcome::Unreachable
    } else {
        NotifyOutcome::Failed(e.kind().to_string())
    }
}

/// A response to this transaction: same top Via branch, Call-ID and CSeq NOTIFY (RFC 3261
/// 17.1.3). Returns the status code and the phone's own reason phrase (printable, bounded).
pub(crate) fn match_response(datagram: &[u8], ids: &TransactionIds) -> Option<(u16, String)> {
    let response = rsip::Response::try_from(datagram).ok()?;
    // The branch is read from the raw top Via value: typed parsing would also have to accept
    // the sent-by host (rsip 0.4 does not parse a bracketed IPv6 one), which is not ours to judge.
    let via = response.via_header().ok()?.value();
    let branch_ok = via
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .any(|(k, v)| k.trim().eq_ignore_ascii_case("branch") && v.trim() == ids.branch);
    let call_id_ok = response.call_id_header().ok()?.value() == ids.call_id;
    let cseq = response.cseq_header().ok()?.typed().ok()?;
    if !branch_ok || !call_id_ok || cseq.method != rsip::Method::Notify {
        return None;
    }
    let code = response.status_code().code();
    Some((code, reason_phrase(datagram, &response.status_code)))
}

fn reason_phrase(datagram: &[u8], status: &rsip::StatusCode) -> String {
    let line = datagram.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    // "SIP/2.0 489 Bad Event"
    let phrase = line.splitn(3, ' ').nth(2).unwrap_or_default().trim();
    let clean: String = phrase
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if clean.is_empty() {
        status.to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> TransactionIds {
        TransactionIds {
            branch: "z9hG4bKabc".into(),
            from_tag: "t1".into(),
            call_id: "cid1".into(),
        }
    }

    fn reply(status: &str, branch: &str, call_id: &str, method: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch={branch};rport=40000\r\n\
             From: <sip:hotdesk@127.0.0.1:40000>;tag=t1\r\nTo: <sip:127.0.0.1:5060>;tag=x\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn request_has_every_mandatory_header() {
        let opts = NotifyOptions {
            reboot: Some(true),
            ..Default::default()
        };
        let target: SocketAddr = "192.0.2.10:5060".parse().unwrap();
        let local: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let text = build_request(target, local, &ids(), &opts).to_string();
        assert!(
            text.starts_with("NOTIFY sip:192.0.2.10:5060 SIP/2.0\r\n"),
            "{text}"
        );
        for line in [
            "Via: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bKabc;rport\r\n",
            "Max-Forwards: 70\r\n",
            "From: <sip:hotdesk@192.0.2.1:40000>;tag=t1\r\n",
            "To: <sip:192.0.2.10:5060>\r\n",
            "Call-ID: cid1\r\n",
            "CSeq: 1 NOTIFY\r\n",
            "Event: check-sync;reboot=true\r\n",
            "Subscription-State: terminated\r\n",
            "Content-Length: 0\r\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in {text}");
        }
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let target: SocketAddr = "[2001:db8::10]:5060".parse().unwrap();
        let local: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let text = build_request(target, local, &ids(), &NotifyOptions::default()).to_string();
        assert!(
            text.starts_with("NOTIFY sip:[2001:db8::10]:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP [2001:db8::1]:40000;branch=z9hG4bKabc;rport\r\n"));
    }

    #[test]
    fn responses_of_other_transactions_are_ignored() {
        let ids = ids();
        assert_eq!(
            match_response(&reply("200 OK", "z9hG4bKabc", "cid1", "NOTIFY"), &ids),
            Some((200, "OK".into()))
        );
        assert_eq!(
            match_response(
                &reply("489 Bad Event", "z9hG4bKabc", "cid1", "NOTIFY"),
                &ids
            ),
            Some((489, "Bad Event".into()))
        );
        assert_eq!(
            match_response(&reply("200 OK", "z9hG4bKzzz", "cid1", "NOTIFY"), &ids),
            None
        );
        assert_eq!(
            match_response(&reply("200 OK", "z9hG4bKabc", "cid2", "NOTIFY"), &ids),
            None
        );
        assert_eq!(
            match_response(&reply("200 OK", "z9hG4bKabc", "cid1", "OPTIONS"), &ids),
            None
        );
        assert_eq!(match_response(b"garbage\r\n\r\n", &ids), None);
        assert_eq!(match_response(&[0xff; 40], &ids), None);
    }

    #[test]
    fn ids_are_random_and_branch_has_the_magic_cookie() {
        let a = TransactionIds::random();
        let b = TransactionIds::random();
        assert!(a.branch.starts_with("z9hG4bK") && a.branch.len() == 7 + 24);
        assert_ne!(a.branch, b.branch);
        assert_ne!(a.call_id, b.call_id);
    }

    #[test]
    fn audit_text_is_short() {
        let ok = NotifyOutcome::Final {
            code: 200,
            reason: "OK".into(),
        };
        assert_eq!(ok.audit_text(), "sip 200 OK");
        assert!(ok.is_success());
        let t = NotifyOutcome::TimedOut {
            after: Duration::from_secs(32),
            transmissions: 11,
            provisional: false,
        };
        assert_eq!(t.audit_text(), "sip timeout after 32 s");
        assert_eq!(
            NotifyOutcome::Unreachable.audit_text(),
            "sip port unreachable"
        );
    }

    #[tokio::test]
    async fn bad_options_fail_without_sending() {
        let opts = NotifyOptions {
            event: "check-sync\r\nX: y".into(),
            ..Default::default()
        };
        let out = notify_check_sync("127.0.0.1:9".parse().unwrap(), &opts).await;
        assert!(matches!(out, NotifyOutcome::Failed(_)), "{out:?}");
    }
}
