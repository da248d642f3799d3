//! One-time desk login codes over real HTTP: an admin makes a code, a phone's login menu
//! offers "Log in with a code", the code logs the user in once, and is refused the second
//! time, after it expires, and when guessed (guesses lock the phone out like wrong PINs).
//! The code appears in no audit line or later answer.

mod support;

use std::time::Duration;

use support::phone::*;
use support::{Server, request_with_body};

async fn new_code(server: &Server, ext: &str) -> String {
    let r = request_with_body(
        server.addr,
        "POST",
        &format!("/api/v1/users/{ext}/login-codes"),
        "",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let code = r.json()["code"].as_str().unwrap().to_owned();
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    code
}

/// Menu → "Log in with a code" → the one field → the result screen.
async fn login_with_code(phone: &Phone, code: &str) -> View {
    let menu = phone.open().await;
    let View::Menu { items, .. } = &menu else {
        panic!("expected the login menu, got {menu:?}")
    };
    let (_, link) = items
        .iter()
        .find(|(label, _)| label == "Log in with a code")
        .unwrap_or_else(|| panic!("no code item in {menu:?}"))
        .clone();
    let input = phone.go(&link).await;
    let View::Input { params, title, .. } = &input else {
        panic!("expected the code screen, got {input:?}")
    };
    assert_eq!(title, "Log in with a code");
    assert_eq!(params.len(), 1, "{input:?}");
    phone.submit(&input, &[("code", code)]).await
}

fn text_of(v: &View) -> &str {
    match v {
        View::Message { text, .. } => text,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_code_logs_in_once_and_is_refused_the_second_time() {
    // The file directory of the test support: codes work with every directory kind.
    let server = Server::start("").await;
    let code = new_code(&server, "1001").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    let done = login_with_code(&phone, &code).await;
    assert_eq!(done.title(), "Logged in", "{done:?}");
    let logins = server.logins().await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["extension"], "1001");
    // The network is the phone's own by address (127.0.0.0/8 is "external" in the tests).
    assert_eq!(logins[0]["network"], "external");

    // Used: refused on another phone, with the same words as a wrong code.
    let other = Phone::new(server.addr, SNOM_D785);
    let again = login_with_code(&other, &code).await;
    assert_eq!(again.title(), "Login failed", "{again:?}");
    assert!(
        text_of(&again).contains("Wrong, used or expired code"),
        "{again:?}"
    );
    assert_eq!(server.logins().await.len(), 1);

    // The code is in no audit line.
    let audit = server.admin("GET", "/api/v1/audit?limit=100").await.text();
    assert!(audit.contains("one-time login code made"), "{audit}");
    assert!(audit.contains("login-code"), "the login says how: {audit}");
    assert!(
        audit.contains("wrong, used or expired one-time code"),
        "{audit}"
    );
    assert!(!audit.contains(&code), "{audit}");

    // Expired after code_ttl (10 minutes by default).
    let late = new_code(&server, "1002").await;
    server.clock.advance(Duration::from_secs(601));
    let expired = login_with_code(&Phone::new(server.addr, AASTRA_6737I), &late).await;
    assert_eq!(expired.title(), "Login failed", "{expired:?}");
}

#[tokio::test]
async fn guessed_codes_lock_the_phone_out_like_wrong_pins() {
    let server = Server::start("").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    // max_failures = 3 in the test config: the third wrong code locks this phone here.
    let mut last = None;
    for guess in ["00000000", "11111111", "22222222"] {
        last = Some(login_with_code(&phone, guess).await);
    }
    let last = last.unwrap();
    assert_eq!(last.title(), "Login locked", "{last:?}");
    // Even the right code is not tried while locked.
    let r = request_with_body(server.addr, "POST", "/api/v1/users/1001/login-codes", "").await;
    let code = r.json()["code"].as_str().unwrap().to_owned();
    let locked = login_with_code(&phone, &code).await;
    assert_eq!(locked.title(), "Login locked", "{locked:?}");
    // ... and stays usable for when the lockout ends (cleared here by the admin).
    let r = server.admin("DELETE", "/api/v1/lockouts?all=true").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = login_with_code(&phone, &code).await;
    assert_eq!(done.title(), "Logged in", "{done:?}");
    // Not-a-code input (letters, wrong length) is simply wrong, never an error page.
    let fresh = Phone::new(server.addr, AASTRA_6737I);
    let odd = login_with_code(&fresh, "12ab").await;
    assert_eq!(odd.title(), "Login failed", "{odd:?}");
    // No code for a user that does not exist.
    let r = request_with_body(server.addr, "POST", "/api/v1/users/9999/login-codes", "").await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn without_phone_codes_the_menu_is_as_before() {
    let server = Server::start("[activation]\nphone_codes = false\n").await;
    let phone = Phone::new(server.addr, YEALINK_T46S);
    let View::Menu { items, .. } = phone.open().await else {
        panic!("two networks: a menu")
    };
    assert!(
        items.iter().all(|(l, _)| l != "Log in with a code"),
        "{items:?}"
    );
    // A hand-made code link does nothing but the usual screens.
    let code = new_code(&server, "1001").await;
    let view = phone
        .go(&format!("/app/login?net=internal&by=code&code={code}"))
        .await;
    assert_ne!(view.title(), "Logged in", "{view:?}");
}
