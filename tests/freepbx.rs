//! The FreePBX adapter against a fake FreePBX API serving the recorded replies in
//! fixtures/upstream/freepbx/: OAuth2 client credentials, then GraphQL.

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

#[derive(Default)]
struct Fake {
    tokens_issued: usize,
    current: String,
    queries: usize,
    bad_forms: usize,
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/upstream/freepbx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
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
    let reply = |status: u16, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(r)
    };
    let mut s = state.lock().unwrap();
    match path.as_str() {
        "/admin/api/api/token" => {
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
            if !(has("grant_type", "client_credentials")
                && has("client_id", "hotdesk")
                && has("client_secret", "fpbx-secret-42"))
            {
                s.bad_forms += 1;
                return reply(401, b"{\"error\":\"invalid_client\"}".to_vec());
            }
            s.tokens_issued += 1;
            // The recorded reply, with a fresh token each time.
            let token = format!("test-token-{}", s.tokens_issued);
            let text = String::from_utf8(fixture("token.json"))
                .unwrap()
                .replace("test-token-1", &token);
            let reply_json: serde_json::Value = serde_json::from_str(&text).unwrap();
            s.current = reply_json["access_token"].as_str().unwrap().to_owned();
            reply(200, text.into_bytes())
        }
        "/admin/api/api/gql" => {
            if auth.as_deref() != Some(&format!("Bearer {}", s.current)) {
                return reply(401, b"{\"error\":\"access_denied\"}".to_vec());
            }
            s.queries += 1;
            let q: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(q["query"].as_str().unwrap().contains("fetchVoiceMail"));
            let file = match q["variables"]["ext"].as_str().unwrap() {
                "1001" => "gql-1001.json",
                "1003" => "gql-1003-no-voicemail.json",
                "1004" => "gql-1004-adhoc.json",
                "5000" => "gql-error.json",
                _ => "gql-unknown.json",
            };
            reply(200, fixture(file))
        }
        _ => reply(404, Vec::new()),
    }
}

async fn fake_freepbx() -> (std::net::SocketAddr, Arc<Mutex<Fake>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(Fake::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
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

fn title(view: &View) -> String {
    match view {
        View::Message { title, .. } => title.clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_in_through_freepbx_graphql() {
    let (addr, fake) = fake_freepbx().await;
    let directory = format!(
        "[directory]\nkind = \"freepbx\"\nfresh_ttl = \"1s\"\n[directory.http]\nurl = \"http://{addr}/admin/api/api\"\nauth = \"none\"\n[directory.freepbx]\nclient_id = \"hotdesk\"\nclient_secret = \"fpbx-secret-42\"\n"
    );
    let server = Server::start_with(directory, "").await;
    let login = |ext: &str, pin: &str| format!("/app/login?net=internal&ext={ext}&pin={pin}");

    let a = Phone::new(server.addr, AASTRA_6737I);
    assert_eq!(title(&a.go(&login("1001", "4321")).await), "Logged in");
    let logins = server.logins().await;
    assert_eq!(logins[0]["name"], "Ada Lovelace");
    // No voicemail box: the user password; an adhoc device: the mailbox name.
    let b = Phone::new(server.addr, YEALINK_T46S);
    assert_eq!(
        title(&b.go(&login("1003", USER_PASSWORD)).await),
        "Logged in"
    );
    let c = Phone::new(server.addr, SNOM_D785);
    assert_eq!(title(&c.go(&login("1004", "2468")).await), "Logged in");
    assert!(
        server
            .logins()
            .await
            .iter()
            .any(|l| l["name"] == "Hot Desk Adhoc")
    );
    // status:false is an unknown extension; a GraphQL error is "try later".
    let d = Phone::new(server.addr, HTEK_UC903);
    assert_eq!(title(&d.go(&login("4040", "1")).await), "Login failed");
    assert_eq!(title(&d.go(&login("5000", "1")).await), "Please try later");
    assert_eq!(
        fake.lock().unwrap().tokens_issued,
        1,
        "one token serves every query"
    );

    // The PBX revokes the token: one 401, a new token, the lookup still succeeds.
    fake.lock().unwrap().current = "revoked".into();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past fresh_ttl
    let e = Phone::new(server.addr, MITEL_6930);
    assert_eq!(title(&e.go(&login("1001", "4321")).await), "Logged in");
    let f = fake.lock().unwrap();
    assert_eq!(f.tokens_issued, 2);
    assert_eq!(f.bad_forms, 0);
}
