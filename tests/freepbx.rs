//! The FreePBX adapter against a fake FreePBX API on 127.0.0.1 that answers with the recorded
//! replies in fixtures/upstream/freepbx/ (see the README there for the source of each): OAuth2
//! client credentials, a schema check, then GraphQL, with FreePBX's own status codes.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::phone::*;
use support::{Server, USER_PASSWORD};

struct Fake {
    tokens_issued: usize,
    current: String,
    queries: usize,
    schema_queries: usize,
    /// Every token request's form.
    forms: Vec<Vec<(String, String)>>,
    /// When set, the token endpoint answers this recorded refusal.
    token_refusal: Option<&'static str>,
    /// How a query with a token that is not the current one is refused (FreePBX 16: 401,
    /// FreePBX 17: 500).
    rejected: &'static str,
    schema: &'static str,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            tokens_issued: 0,
            current: String::new(),
            queries: 0,
            schema_queries: 0,
            forms: Vec::new(),
            token_refusal: None,
            rejected: "gql-token-rejected-401.json",
            schema: "schema.json",
        }
    }
}

/// A recorded reply: `name-NNN.json` is sent with status NNN, others with 200.
fn fixture(name: &str) -> (u16, Vec<u8>) {
    let body = std::fs::read(format!(
        "{}/fixtures/upstream/freepbx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let stem = name.trim_end_matches(".json");
    let status = stem
        .rsplit_once('-')
        .and_then(|(_, code)| code.parse().ok())
        .filter(|code| (100..600).contains(code))
        .unwrap_or(200);
    (status, body)
}

async fn handle(
    state: Arc<Mutex<Fake>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let reply = |(status, body): (u16, Vec<u8>)| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    let mut s = state.lock().unwrap();
    match path.as_str() {
        "/admin/api/api/token" => {
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            s.forms.push(form.clone());
            let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
            if !(has("grant_type", "client_credentials")
                && has("client_id", "hotdesk")
                && has("client_secret", "fpbx-secret-42"))
            {
                return reply(fixture("token-invalid-client-401.json"));
            }
            if let Some(refusal) = s.token_refusal {
                return reply(fixture(refusal));
            }
            s.tokens_issued += 1;
            // The recorded reply, with a fresh token each time.
            let token = format!("test-token-{}", s.tokens_issued);
            let text = String::from_utf8(fixture("token.json").1)
                .unwrap()
                .replace("test-token-1", &token);
            let reply_json: serde_json::Value = serde_json::from_str(&text).unwrap();
            s.current = reply_json["access_token"].as_str().unwrap().to_owned();
            reply((200, text.into_bytes()))
        }
        "/admin/api/api/gql" => {
            if auth.as_deref() != Some(&format!("Bearer {}", s.current)) {
                return reply(fixture(s.rejected));
            }
            let q: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let query = q["query"].as_str().unwrap();
            if query.contains("__schema") {
                s.schema_queries += 1;
                return reply(fixture(s.schema));
            }
            s.queries += 1;
            assert!(query.contains("fetchVoiceMail"));
            let file = match q["variables"]["ext"].as_str().unwrap() {
                "1001" => "gql-1001.json",
                "1003" => "gql-1003-no-voicemail.json",
                "1004" => "gql-1004-adhoc.json",
                "1006" => "gql-1006-fixed-pin.json",
                "1007" => "gql-1007-star-pin.json",
                "5000" => "gql-error.json",
                _ => "gql-unknown-400.json",
            };
            reply(fixture(file))
        }
        _ => reply((404, Vec::new())),
    }
}

async fn fake_freepbx() -> (std::net::SocketAddr, Arc<Mutex<Fake>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(Fake::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, state)
}

/// `[directory]` for the fake; `extra` goes into `[directory.freepbx]`.
fn directory(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[directory]\nkind = \"freepbx\"\n[directory.http]\nurl = \"http://{addr}/admin/api/api\"\nauth = \"none\"\nbreaker_failures = 1\nbreaker_cooldown = \"1h\"\n[directory.freepbx]\nclient_id = \"hotdesk\"\nclient_secret = \"fpbx-secret-42\"\n{extra}"
    )
}

fn login(ext: &str, pin: &str) -> String {
    format!("/app/login?net=internal&ext={ext}&pin={pin}")
}

fn message(view: &View) -> (String, String) {
    match view {
        View::Message { title, text, .. } => (title.clone(), text.clone()),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_in_and_refuses_as_freepbx_answers() {
    let (addr, fake) = fake_freepbx().await;
    let server = Server::start_with(directory(addr, ""), "").await;

    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(message(&a.go(&login("1001", "4321")).await).0, "Logged in");
    assert_eq!(server.logins().await[0]["name"], "Ada Lovelace");
    // No voicemail box: the user password.
    let b = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        message(&b.go(&login("1003", USER_PASSWORD)).await).0,
        "Logged in"
    );
    // A password written "-1357" is 1357, as Asterisk compares it.
    let c = Phone::new(server.addr, SNOM_D785);
    assert_eq!(message(&c.go(&login("1006", "1357")).await).0, "Logged in");

    // An adhoc device has no SIP secret: the right PIN is refused with a clear screen.
    let d = Phone::new(server.addr, HTEK_UC903);
    let (title, text) = message(&d.go(&login("1004", "2468")).await);
    assert_eq!(title, "Login refused");
    assert_eq!(
        text,
        "Extension 1004 has no phone line set up. Ask your administrator."
    );
    // A PIN starting with '*' is not a PIN, not even typed exactly.
    let (title, _) = message(&d.go(&login("1007", "*123")).await);
    assert_eq!(title, "Login failed");

    // A GraphQL error with no data (FreePBX 17 passes it with 200) is "try later".
    assert_eq!(
        message(&d.go(&login("5000", "1")).await).0,
        "Please try later"
    );
    assert_eq!(
        server.logins().await.len(),
        3,
        "1004 and 1007 are not logged in"
    );

    let f = fake.lock().unwrap();
    assert_eq!(f.tokens_issued, 1, "one token serves every query");
    assert_eq!(f.schema_queries, 1, "the schema is checked once per token");
    assert!(
        f.forms[0].iter().all(|(k, _)| k != "scope"),
        "no scope unless configured: {:?}",
        f.forms[0]
    );
}

#[tokio::test]
async fn an_unknown_extension_is_a_failed_attempt_like_a_wrong_pin() {
    let (addr, fake) = fake_freepbx().await;
    let server = Server::start_with(directory(addr, ""), "").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    let b = Phone::new(server.addr, YEALINK_T46S);
    // The same answer for an existing extension with a wrong PIN and an unknown one.
    let wrong_pin = message(&a.go(&login("1001", "0000")).await);
    let unknown = message(&b.go(&login("4040", "0000")).await);
    assert_eq!(wrong_pin, unknown);
    assert_eq!(unknown.0, "Login failed");
    // Counted: the third attempt on 4040 locks it (max_failures = 3 in the test config).
    let c = Phone::new(server.addr, SNOM_D785);
    let _ = c.go(&login("4040", "0000")).await;
    let d = Phone::new(server.addr, HTEK_UC903);
    assert_eq!(
        message(&d.go(&login("4040", "0000")).await).0,
        "Login locked"
    );
    let failed = server
        .audit()
        .await
        .iter()
        .filter(|e| e["extension"] == "4040")
        .count();
    assert_eq!(
        failed, 3,
        "every attempt on the unknown extension is audited"
    );
    // The 400 closed nothing: the breaker (one failure opens it) is still closed.
    assert_eq!(message(&a.go(&login("1001", "4321")).await).0, "Logged in");
    assert_eq!(fake.lock().unwrap().tokens_issued, 1);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_whether_freepbx_says_401_or_500() {
    let (addr, fake) = fake_freepbx().await;
    let server = Server::start_with(directory(addr, ""), "").await;
    let phone = |ua| Phone::new(server.addr, ua);
    assert_eq!(
        message(&phone(AASTRA_6737I).go(&login("1001", "4321")).await).0,
        "Logged in"
    );
    // FreePBX 16: 401 for a revoked token.
    fake.lock().unwrap().current = "revoked".into();
    assert_eq!(
        message(&phone(YEALINK_T46S).go(&login("1003", USER_PASSWORD)).await).0,
        "Logged in"
    );
    assert_eq!(fake.lock().unwrap().tokens_issued, 2);
    // FreePBX 17: 500. With breaker_failures = 1, counting it would open the breaker.
    {
        let mut f = fake.lock().unwrap();
        f.current = "revoked".into();
        f.rejected = "gql-token-rejected-500.json";
    }
    assert_eq!(
        message(&phone(SNOM_D785).go(&login("1006", "1357")).await).0,
        "Logged in"
    );
    assert_eq!(
        message(&phone(HTEK_UC903).go(&login("4040", "1")).await).0,
        "Login failed",
        "the breaker stayed closed"
    );
    let f = fake.lock().unwrap();
    assert_eq!(f.tokens_issued, 3);
    assert_eq!(f.forms.len(), 3);
}

#[tokio::test]
async fn a_token_that_cannot_read_voicemail_is_not_taken_for_unknown_extensions() {
    let (addr, fake) = fake_freepbx().await;
    fake.lock().unwrap().schema = "schema-no-voicemail.json";
    let server = Server::start_with(
        directory(addr, "scope = \"gql:core:read gql:voicemail:read\"\n"),
        "",
    )
    .await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        message(&a.go(&login("1001", "4321")).await).0,
        "Please try later"
    );
    let f = fake.lock().unwrap();
    assert_eq!(
        f.queries, 0,
        "no lookup with a token that cannot see the PIN"
    );
    assert!(
        f.forms[0]
            .iter()
            .any(|(k, v)| k == "scope" && v == "gql:core:read gql:voicemail:read"),
        "a configured scope is sent"
    );
}

#[tokio::test]
async fn a_refused_scope_is_try_later_not_a_wrong_pin() {
    let (addr, fake) = fake_freepbx().await;
    fake.lock().unwrap().token_refusal = Some("token-invalid-scope-400.json");
    let server = Server::start_with(directory(addr, "scope = \"gql\"\n"), "").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(
        message(&a.go(&login("1001", "4321")).await).0,
        "Please try later"
    );
    assert!(
        server
            .audit()
            .await
            .iter()
            .all(|e| e["kind"] != "login-failed")
    );
}

/// Runs `hotdesk check-config --online` on a config whose directory is `directory`;
/// (success, stdout, stderr).
async fn check_online(directory: String, args: &[&str]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let text = support::config_with(tmp.path(), "http://127.0.0.1:8080", &directory, "");
    let path = tmp.path().join("hotdesk.toml");
    std::fs::write(&path, text).unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // The fake runs on this runtime; the command blocks another thread.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hotdesk"))
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .args(["check-config", "--online", "--config"])
            .arg(&path)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one line of an error, checked to be one line.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_online_explains_each_failure_in_one_line() {
    let (addr, fake) = fake_freepbx().await;

    // Found: what is there, never the secrets themselves.
    let (ok, out, err) = check_online(directory(addr, ""), &["--extension", "1001"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("extension 1001: \"Ada Lovelace\", voicemail PIN set, SIP secret set"),
        "{out}"
    );
    for secret in ["4321", "a9f3c2e1d4b5sip", "fpbx-secret-42", "test-token"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} leaked"
        );
    }
    // An adhoc device: found, and why its logins will be refused.
    let (_, out, _) = check_online(directory(addr, ""), &["--extension", "1004"]).await;
    assert!(
        out.contains("SIP secret missing (logins will be refused)"),
        "{out}"
    );

    // An unknown extension.
    let (ok, out, err) = check_online(directory(addr, ""), &["--extension", "4040"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("extension 4040 is unknown to the directory"),
        "{out}"
    );

    // A wrong client secret.
    let wrong = directory(addr, "").replace("fpbx-secret-42", "wrong-secret");
    let (ok, _, err) = check_online(wrong, &[]).await;
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains("invalid_client") && line.contains("client_id or client_secret is wrong"),
        "{line}"
    );
    assert!(!line.contains("wrong-secret"), "{line}");

    // A scope the application does not allow (FreePBX 16), and the warning about "gql".
    fake.lock().unwrap().token_refusal = Some("token-invalid-scope-400.json");
    let (ok, out, err) = check_online(directory(addr, "scope = \"gql\"\n"), &[]).await;
    assert!(!ok);
    assert!(
        out.contains("warning: [directory.freepbx] scope = \"gql\""),
        "{out}"
    );
    let line = one_line(&err);
    assert!(
        line.contains("invalid_scope") && line.contains("remove [directory.freepbx] scope"),
        "{line}"
    );

    // A narrowed application that FreePBX 16 grants a token but no voicemail.
    {
        let mut f = fake.lock().unwrap();
        f.token_refusal = None;
        f.schema = "schema-no-voicemail.json";
    }
    let (ok, _, err) = check_online(directory(addr, ""), &["--extension", "1001"]).await;
    assert!(!ok);
    assert!(one_line(&err).contains("gql:voicemail:read"), "{err}");

    // An unreachable host.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (ok, _, err) = check_online(directory(closed, ""), &[]).await;
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.contains("token request") && line.contains("onnect"),
        "{line}"
    );
}
