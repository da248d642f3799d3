//! Asking Asterisk to send the check-sync NOTIFY over the Asterisk Manager Interface (TCP).
//!
//! Actions and fields as Asterisk names them:
//! - `PJSIPNotify`: `Endpoint` or `URI` (exactly one), `Variable: name=value` per header
//!   (asterisk/asterisk res/res_pjsip_notify.c `manager_notify()`; docs.asterisk.org
//!   AMI_Actions/PJSIPNotify). Success is `astman_send_ack(s, m, "NOTIFY sent")`.
//! - `SIPnotify` (chan_sip): `Channel` (peer name) and `Variable` (docs.asterisk.org
//!   Asterisk_18_Documentation AMI_Actions/SIPnotify).
//! - `Login` (`Username`, `Secret`, `Events`) and `Logoff` (main/manager.c).
//!
//! The banner is checked before the secret is sent, so a wrong port never receives it.
//! Every read is bounded in size and time; the secret is never logged or put in an error.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::config::{AmiAction, AmiReloadConfig};

const BANNER_PREFIX: &str = "Asterisk Call Manager/";
const MAX_LINE: u64 = 4096;
const MAX_LINES_PER_MESSAGE: usize = 64;
/// Unrelated messages (events, other ActionIDs) skipped while waiting for one reply.
const MAX_SKIPPED_MESSAGES: usize = 64;

/// The reply to the notify action: `Response:` and `Message:` as Asterisk sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiOutcome {
    /// `Success` or `Error`.
    pub response: String,
    /// e.g. `NOTIFY sent`, `Unable to retrieve endpoint 1001`.
    pub message: String,
}

impl AmiOutcome {
    /// True when Asterisk accepted the action (it then sends the NOTIFY itself; the phone's
    /// answer is not reported back over AMI).
    pub fn is_success(&self) -> bool {
        self.response.eq_ignore_ascii_case("Success")
    }

    /// Short text for the audit trail: "ami Success: NOTIFY sent".
    pub fn audit_text(&self) -> String {
        if self.message.is_empty() {
            format!("ami {}", self.response)
        } else {
            format!("ami {}: {}", self.response, self.message)
        }
    }
}

/// Why no reply to the notify action was obtained. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmiError {
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("timeout waiting for {0}")]
    Timeout(&'static str),
    #[error("not an Asterisk manager (banner {0:?})")]
    NotAmi(String),
    #[error("login refused: {0}")]
    Login(String),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("connection: {0}")]
    Io(String),
}

/// Sends `PJSIPNotify` (or chan_sip `SIPnotify`, per `cfg.action`) for `extension`, with header
/// `Event: <event>` (e.g. `check-sync;reboot=false`). `{extension}` in `cfg.endpoint` / `cfg.uri`
/// is replaced by `extension`.
pub async fn pjsip_notify(
    cfg: &AmiReloadConfig,
    extension: &str,
    event: &str,
) -> Result<AmiOutcome, AmiError> {
    let action = notify_action(cfg, extension, event)?;
    let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
    let stream = tokio::time::timeout(
        connect_timeout,
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| AmiError::Timeout("connect"))?
    .map_err(|e| AmiError::Connect(e.kind().to_string()))?;
    let _ = stream.set_nodelay(true);
    let reply_timeout = Duration::from_millis(cfg.reply_timeout_ms);
    run_session(stream, cfg, &action, reply_timeout).await
}

/// The notify action: its name and the lines after `ActionID`; refuses values that would
/// break out of a header line.
#[derive(Debug, PartialEq, Eq)]
struct NotifyAction {
    name: &'static str,
    rest: String,
}

impl NotifyAction {
    fn text(&self, action_id: &str) -> String {
        format!(
            "Action: {}\r\nActionID: {action_id}\r\n{}",
            self.name, self.rest
        )
    }
}

fn notify_action(
    cfg: &AmiReloadConfig,
    extension: &str,
    event: &str,
) -> Result<NotifyAction, AmiError> {
    if extension.is_empty()
        || extension.len() > 64
        || !extension.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'+' | b'*' | b'#')
        })
    {
        return Err(AmiError::Invalid("extension"));
    }
    if event.is_empty() || event.len() > 128 || event.chars().any(char::is_control) {
        return Err(AmiError::Invalid("event"));
    }
    let field = |template: &str| template.replace("{extension}", extension);
    let check = |v: String| {
        if v.chars().any(char::is_control) {
            Err(AmiError::Invalid("endpoint or uri template"))
        } else {
            Ok(v)
        }
    };
    let target = match (cfg.action, &cfg.uri) {
        (AmiAction::Pjsip, Some(uri)) => format!("URI: {}", check(field(uri))?),
        (AmiAction::Pjsip, None) => format!("Endpoint: {}", check(field(&cfg.endpoint))?),
        (AmiAction::ChanSip, _) => format!("Channel: {}", check(field(&cfg.endpoint))?),
    };
    let name = match cfg.action {
        AmiAction::Pjsip => "PJSIPNotify",
        AmiAction::ChanSip => "SIPnotify",
    };
    Ok(NotifyAction {
        name,
        rest: format!("{target}\r\nVariable: Event={event}\r\n\r\n"),
    })
}

async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cfg: &AmiReloadConfig,
    notify: &NotifyAction,
    reply_timeout: Duration,
) -> Result<AmiOutcome, AmiError> {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let session = random_id();

    let banner = within(reply_timeout, "banner", read_line(&mut reader)).await?;
    if !banner.starts_with(BANNER_PREFIX) {
        let shown: String = banner.chars().take(40).collect();
        return Err(AmiError::NotAmi(shown));
    }

    let login_id = format!("{session}-login");
    let login = format!(
        "Action: Login\r\nActionID: {login_id}\r\nUsername: {}\r\nSecret: {}\r\nEvents: off\r\n\r\n",
        cfg.username,
        cfg.secret.expose()
    );
    send(&mut write, &login).await?;
    let reply = within(
        reply_timeout,
        "login reply",
        read_reply(&mut reader, &login_id),
    )
    .await?;
    if !reply.is_success() {
        return Err(AmiError::Login(reply.message));
    }

    let notify_id = format!("{session}-notify");
    send(&mut write, &notify.text(&notify_id)).await?;
    let outcome = within(
        reply_timeout,
        "notify reply",
        read_reply(&mut reader, &notify_id),
    )
    .await?;

    // Best effort: the outcome is known; a slow or missing Goodbye does not change it.
    let logoff_id = format!("{session}-logoff");
    if send(
        &mut write,
        &format!("Action: Logoff\r\nActionID: {logoff_id}\r\n\r\n"),
    )
    .await
    .is_ok()
    {
        let _ = within(
            reply_timeout,
            "logoff reply",
            read_reply(&mut reader, &logoff_id),
        )
        .await;
    }
    let _ = write.shutdown().await;
    Ok(outcome)
}

async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, AmiError>>,
) -> Result<T, AmiError> {
    tokio::time::timeout_at(Instant::now() + limit, fut)
        .await
        .map_err(|_| AmiError::Timeout(what))?
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> Result<(), AmiError> {
    w.write_all(text.as_bytes())
        .await
        .map_err(|e| AmiError::Io(e.kind().to_string()))?;
    w.flush()
        .await
        .map_err(|e| AmiError::Io(e.kind().to_string()))
}

/// One line without its CR LF; a line longer than `MAX_LINE` is a protocol error.
async fn read_line<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Result<String, AmiError> {
    let mut buf = Vec::new();
    let n = r
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| AmiError::Io(e.kind().to_string()))?;
    if n == 0 {
        return Err(AmiError::Io("connection closed".into()));
    }
    if buf.last() != Some(&b'\n') {
        return Err(AmiError::Protocol("line too long"));
    }
    let s = String::from_utf8_lossy(&buf);
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads messages until the `Response` whose ActionID is `id`; skips events and others.
async fn read_reply<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    id: &str,
) -> Result<AmiOutcome, AmiError> {
    for _ in 0..MAX_SKIPPED_MESSAGES {
        let fields = read_message(r).await?;
        let get = |k: &str| {
            fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if get("ActionID").as_deref() != Some(id) {
            continue;
        }
        if let Some(response) = get("Response") {
            return Ok(AmiOutcome {
                response,
                message: get("Message").unwrap_or_default(),
            });
        }
    }
    Err(AmiError::Protocol("no reply among too many messages"))
}

/// One `Key: Value` block ending with an empty line.
async fn read_message<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
) -> Result<Vec<(String, String)>, AmiError> {
    let mut fields = Vec::new();
    for _ in 0..MAX_LINES_PER_MESSAGE {
        let line = read_line(r).await?;
        if line.is_empty() {
            if fields.is_empty() {
                continue; // stray blank line between messages
            }
            return Ok(fields);
        }
        if let Some((k, v)) = line.split_once(':') {
            let value: String = v
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            fields.push((k.trim().to_string(), value));
        }
    }
    Err(AmiError::Protocol("message too long"))
}

fn random_id() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    format!("hotdesk-{}", crate::hex::lower(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn cfg() -> AmiReloadConfig {
        AmiReloadConfig {
            username: "hotdesk".into(),
            secret: Secret::new("pw"),
            ..Default::default()
        }
    }

    #[test]
    fn pjsip_action_names_asterisk_fields() {
        let a = notify_action(&cfg(), "1001", "check-sync;reboot=false").unwrap();
        assert_eq!(
            a.text("x-1"),
            "Action: PJSIPNotify\r\nActionID: x-1\r\nEndpoint: 1001\r\nVariable: Event=check-sync;reboot=false\r\n\r\n"
        );
        let mut c = cfg();
        c.uri = Some("sip:{extension}@192.0.2.7".into());
        let a = notify_action(&c, "1001", "check-sync").unwrap().text("i");
        assert!(a.contains("\r\nURI: sip:1001@192.0.2.7\r\n") && !a.contains("Endpoint"));
        c.action = AmiAction::ChanSip;
        c.uri = None;
        let a = notify_action(&c, "1001", "check-sync").unwrap().text("i");
        assert!(a.starts_with("Action: SIPnotify\r\n") && a.contains("Channel: 1001\r\n"));
    }

    #[test]
    fn injected_lines_are_refused() {
        assert!(notify_action(&cfg(), "1001\r\nAction: Originate", "check-sync").is_err());
        assert!(notify_action(&cfg(), "1001", "check-sync\r\nAction: Originate").is_err());
        assert!(notify_action(&cfg(), "", "check-sync").is_err());
    }

    #[tokio::test]
    async fn reply_skips_events_and_other_action_ids() {
        let text = b"Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n\
Response: Success\r\nActionID: other\r\nMessage: x\r\n\r\n\
Response: Error\r\nActionID: me\r\nMessage: Unable to retrieve endpoint 9\r\n\r\n";
        let mut r = BufReader::new(&text[..]);
        let o = read_reply(&mut r, "me").await.unwrap();
        assert_eq!(o.response, "Error");
        assert_eq!(o.audit_text(), "ami Error: Unable to retrieve endpoint 9");
    }

    #[tokio::test]
    async fn an_endless_line_is_refused() {
        let text = vec![b'A'; 10_000];
        let mut r = BufReader::new(&text[..]);
        assert_eq!(
            read_reply(&mut r, "me").await.unwrap_err(),
            AmiError::Protocol("line too long")
        );
    }
}
