//! The Wazo adapter against a fake Wazo on 127.0.0.1 answering with the recorded replies in
//! fixtures/upstream/wazo/ (sources in the README there): wazo-auth token, then wazo-confd
//! extension -> line -> SIP endpoint -> the user's voicemail.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::Server;
use support::phone::*;

const ENDPOINT_1001: &str = "9d3e2f1a-4b5c-4d6e-8f70-a1b2c3d4e5f6";
/// 1002's line: the same recorded shapes, but Wazo's own random SIP user name.
const ENDPOINT_1002: &str = "4c6e8a0b-2d4f-4a6b-8c0d-e1f2a3b4c5d6";
const USER: &str = "0f2e4d6c-8b0a-4c1e-9f3d-5b7a9c1e3f50";
const TENANT: &str = "1f1c6c3e-7b3a-4c52-9d7e-2b8c0a6e4d11";

#[derive(Default)]
struct Fake {
    tokens_issued: usize,
    current: String,
    token_bodies: Vec<serde_json::Value>,
    tenants_seen: Vec<String>,
    /// confd refuses the voicemail call for lack of an ACL.
    no_voicemail_acl: bool,
    confd_calls: usize,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/upstream/wazo/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn handle(
    state: Arc<Mutex<Fake>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (basic, token, tenant) = (
        header("authorization"),
        header("x-auth-token"),
        header("wazo-tenant"),
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let reply = |status: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    let mut s = state.lock().unwrap();
    if path == "/api/auth/0.1/token" {
        // HTTP Basic "hotdesk-svc:wazo-pass-7".
        if basic.as_deref() != Some("Basic aG90ZGVzay1zdmM6d2F6by1wYXNzLTc=") {
            return reply(401, fixture("token-failed-401.json"));
        }
        s.token_bodies.push(serde_json::from_slice(&body).unwrap());
        s.tokens_issued += 1;
        s.current = format!("test-token-{}", s.tokens_issued);
        return reply(
            200,
            fixture("token.json").replace("test-token-1", &s.current),
        );
    }
    if token.as_deref() != Some(s.current.as_str()) {
        return reply(401, fixture("confd-unauthorized-401.json"));
    }
    s.confd_calls += 1;
    if let Some(t) = tenant {
        s.tenants_seen.push(t);
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    match path.as_str() {
        "/api/confd/1.1/extensions" => {
            assert_eq!(param("type").as_deref(), Some("internal"));
            match param("exten").as_deref() {
                Some("1001") => reply(200, fixture("extensions-1001.json")),
                Some("1002") => reply(
                    200,
                    fixture("extensions-1001.json")
                        .replace("1001", "1002")
                        .replace("\"id\": 7", "\"id\": 8"),
                ),
                _ => reply(200, fixture("extensions-none.json")),
            }
        }
        "/api/confd/1.1/lines/7" => reply(200, fixture("line-7.json")),
        "/api/confd/1.1/lines/8" => reply(
            200,
            fixture("line-7.json")
                .replace(ENDPOINT_1001, ENDPOINT_1002)
                .replace("1001", "1002"),
        ),
        p if p == format!("/api/confd/1.1/endpoints/sip/{ENDPOINT_1001}") => {
            assert_eq!(param("view").as_deref(), Some("merged"));
            reply(200, fixture("endpoint-sip-merged.json"))
        }
        p if p == format!("/api/confd/1.1/endpoints/sip/{ENDPOINT_1002}") => reply(
            200,
            fixture("endpoint-sip-merged.json")
                .replace(ENDPOINT_1001, ENDPOINT_1002)
                .replace("[\"username\", \"1001\"]", "[\"username\", \"x7k2p9qa\"]"),
        ),
        p if p == format!("/api/confd/1.1/users/{USER}/voicemails") => {
            if s.no_voicemail_acl {
                return reply(401, fixture("confd-missing-acl-401.json"));
            }
            reply(200, fixture("user-voicemails.json"))
        }
        _ => reply(
            404,
            "{\"message\": \"Resource Not Found\", \"error_id\": \"not-found\"}".into(),
        ),
    }
}

async fn fake_wazo() -> (std::net::SocketAddr, Arc<Mutex<Fake>>) {
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

fn directory(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[directory]\nkind = \"wazo\"\n[directory.http]\nurl = \"http://{addr}/api\"\nauth = \"none\"\n[directory.wazo]\nusername = \"hotdesk-svc\"\npassword = \"wazo-pass-7\"\n{extra}"
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
async fn logs_in_through_wazo_auth_and_confd() {
    let (addr, fake) = fake_wazo().await;
    let server = Server::start_with(
        directory(
            addr,
            &format!("tenant = \"{TENANT}\"\ncontext = \"default\"\n"),
        ),
        "",
    )
    .await;
    // Several phones at once, one token.
    let (a, b) = tokio::join!(
        async {
            Phone::new(server.addr, AASTRA_6737I)
                .go(&login("1001", "4321"))
                .await
        },
        async {
            Phone::new(server.addr, SNOM_D785)
                .go(&login("4040", "4321"))
                .await
        },
    );
    assert_eq!(message(&a).0, "Logged in");
    assert_eq!(message(&b).0, "Login failed", "total: 0 is unknown");
    assert_eq!(server.logins().await[0]["name"], "Ada Lovelace");

    // A line whose SIP user name is Wazo's own, not the extension: the phone registers as
    // that user, with the line's secret.
    let c = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(message(&c.go(&login("1002", "4321")).await).0, "Logged in");
    let file = c.fetch("/provision/805ec02f3c2e.cfg").await;
    let file = file.text();
    assert!(file.contains("account.1.auth_name = x7k2p9qa"), "{file}");
    assert!(file.contains("account.1.user_name = x7k2p9qa"), "{file}");
    assert!(file.contains("account.1.label = 1002"), "{file}");

    let f = fake.lock().unwrap();
    assert_eq!(f.tokens_issued, 1, "single flight, then reused");
    assert_eq!(
        f.token_bodies[0],
        serde_json::json!({"backend": "wazo_user", "expiration": 3600})
    );
    assert!(!f.tenants_seen.is_empty());
    assert!(f.tenants_seen.iter().all(|t| t == TENANT));
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let (addr, fake) = fake_wazo().await;
    let server = Server::start_with(directory(addr, ""), "").await;
    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(message(&a.go(&login("4040", "1")).await).0, "Login failed");
    fake.lock().unwrap().current = "revoked".into();
    assert_eq!(message(&a.go(&login("1001", "4321")).await).0, "Logged in");
    assert_eq!(fake.lock().unwrap().tokens_issued, 2);
}

/// Runs `hotdesk check-config --online`; (success, stdout, stderr).
async fn check_online(directory: String, args: &[&str]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let text = support::config_with(tmp.path(), "http://127.0.0.1:8080", &directory, "");
    let path = tmp.path().join("hotdesk.toml");
    std::fs::write(&path, text).unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_online_explains_wazo_answers() {
    let (addr, fake) = fake_wazo().await;
    let (ok, out, err) = check_online(directory(addr, ""), &["--extension", "1001"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("extension 1001: \"Ada Lovelace\", voicemail PIN set, SIP secret set"),
        "{out}"
    );
    for secret in ["4321", "yagq7x0w", "wazo-pass-7", "test-token"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} leaked"
        );
    }
    let (ok, out, _) = check_online(directory(addr, ""), &["--extension", "4040"]).await;
    assert!(ok && out.contains("extension 4040 is unknown"), "{out}");

    let wrong = directory(addr, "").replace("wazo-pass-7", "nope");
    let (ok, _, err) = check_online(wrong, &[]).await;
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("401 Authentication Failed"), "{err}");

    // A config that names the backend but not its user is refused before anything is sent.
    let (ok, _, err) = check_online(
        directory(addr, "")
            .split("[directory.wazo]")
            .next()
            .unwrap()
            .to_owned(),
        &[],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("kind = \"wazo\" needs"), "{err}");

    fake.lock().unwrap().no_voicemail_acl = true;
    let (ok, _, err) = check_online(directory(addr, ""), &["--extension", "1001"]).await;
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("lacks ACL confd.users.") && err.contains(".voicemails.read"),
        "{err}"
    );
    assert!(
        !err.contains("test-token"),
        "the echoed token is not shown: {err}"
    );
}
