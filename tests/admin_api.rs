//! The admin API: authentication, listing, remote logout, audit.

mod support;

use support::phone::*;
use support::{API_KEY, Server, request};

#[tokio::test]
async fn needs_the_api_key() {
    let server = Server::start("").await;
    for auth in [
        None,
        Some("Bearer wrong-key-wrong-key"),
        Some("Basic Zm9vOmJhcg=="),
        Some(&*format!("Bearer {API_KEY}x")),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        for (method, path) in [
            ("GET", "/api/v1/logins"),
            ("DELETE", "/api/v1/logins/00085d30a6ce"),
            ("GET", "/api/v1/audit"),
        ] {
            let r = request(server.addr, method, path, &headers).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["error"].as_str().unwrap().contains("API key"));
        }
    }
}

#[tokio::test]
async fn lists_and_logs_out_remotely() {
    let server = Server::start("").await;
    assert_eq!(server.logins().await, Vec::<serde_json::Value>::new());
    let phone = Phone::new(server.addr, AASTRA_6737I);
    phone.login("Internal", "1002", "86420").await;
    let logins = server.logins().await;
    let l = &logins[0];
    assert_eq!(l["mac"], "00085d30a6ce");
    assert_eq!(l["extension"], "1002");
    assert_eq!(l["name"], "Grace Hopper");
    assert_eq!(l["vendor"], "aastra");
    assert_eq!(l["model"], "6737i");
    assert_eq!(l["network"], "internal");
    assert!(l["template"].is_null());
    time::OffsetDateTime::parse(
        l["since"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    assert_eq!(
        server
            .admin("DELETE", "/api/v1/logins/00-08-5D-30-A6-CE")
            .await
            .status,
        204
    );
    assert_eq!(
        server
            .admin("DELETE", "/api/v1/logins/00085d30a6ce")
            .await
            .status,
        404
    );
    assert_eq!(
        server
            .admin("DELETE", "/api/v1/logins/not-a-mac")
            .await
            .status,
        400
    );
    assert!(server.logins().await.is_empty());
    // The phone shows the login screens again.
    assert!(
        matches!(phone.open().await, View::Menu { ref title, .. } if title == "Hot desk: log in via")
    );

    let audit = server.audit().await;
    assert_eq!(audit[0]["kind"], "admin-logout", "newest first");
    assert_eq!(audit[1]["kind"], "login");
    let one = server.admin("GET", "/api/v1/audit?limit=1").await;
    assert_eq!(
        serde_json::from_slice::<Vec<serde_json::Value>>(&one.body)
            .unwrap()
            .len(),
        1
    );
    for bad in ["0", "1001", "x"] {
        assert_eq!(
            server
                .admin("GET", &format!("/api/v1/audit?limit={bad}"))
                .await
                .status,
            400
        );
    }
}
