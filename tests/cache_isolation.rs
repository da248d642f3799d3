//! The hot path's caches (entry screens per model and second, phones known by User-Agent,
//! provisioning files per MAC) attacked over real sockets: phones of one model asking at
//! once, a phone naming another's MAC, a poll after a logout. Nothing kept for one phone may
//! reach another, and nothing kept from before a change may outlive it.

mod support;

use support::phone::*;
use support::{Response, request};

fn signed(t: String) -> String {
    t.replace("sign_links = false", "sign_links = true")
}

/// The same model and firmware as `YEALINK_T46S`, another MAC.
const YEALINK_T46S_B: &str = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:0b";

async fn file(addr: std::net::SocketAddr, ua: &str, name: &str) -> Response {
    request(
        addr,
        "GET",
        &format!("/provision/{name}"),
        &[("User-Agent", ua)],
    )
    .await
}

fn links(v: &View) -> Vec<String> {
    match v {
        View::Menu { items, .. } => items.iter().map(|(_, l)| l.clone()).collect(),
        View::Input { url, .. } => vec![url.clone()],
        View::Message { next, .. } => next.iter().cloned().collect(),
        View::Execute { commands } => commands.clone(),
    }
}

#[tokio::test]
async fn phones_of_one_model_asking_at_once_each_get_their_own_screen() {
    let addr = support::start_edited(signed).await;
    let a = Phone::new(addr, YEALINK_T46S);
    let b = Phone::new(addr, YEALINK_T46S_B);
    a.login("Internal", "1001", "73915").await;
    // Many rounds, both phones at once: most land in the same second, so the cached
    // screens of this model are the ones answered.
    for _ in 0..40 {
        let (va, vb) = tokio::join!(a.open(), b.open());
        assert!(va.title().starts_with("1001"), "a: {va:?}");
        assert!(!vb.title().contains("1001"), "b saw a's menu: {vb:?}");
        let rendered = format!("{vb:?}");
        assert!(
            !rendered.contains("Ada") && !rendered.contains("Log out"),
            "{rendered}"
        );
    }
    // Old Snom firmware sends no MAC: each phone's links carry (and are signed for) its own
    // `?mac=`, even when the two share one User-Agent and one cached screen.
    let one = Phone::new(addr, SNOM_320_OLD).with_query("mac=000413000001");
    let two = Phone::new(addr, SNOM_320_OLD).with_query("mac=000413000002");
    for _ in 0..20 {
        let (v1, v2) = tokio::join!(one.open(), two.open());
        for (view, own, other) in [
            (&v1, "000413000001", "000413000002"),
            (&v2, "000413000002", "000413000001"),
        ] {
            let links = links(view);
            assert!(!links.is_empty(), "{view:?}");
            for l in &links {
                assert!(l.contains(own) && !l.contains(other), "{l}");
            }
        }
    }
}

#[tokio::test]
async fn a_kept_provisioning_file_reaches_only_its_phone_and_not_past_a_logout() {
    let addr = support::start_edited(|t| t).await;
    let a = Phone::new(addr, YEALINK_T46S);
    a.login("Internal", "1001", "73915").await;
    // The phone polls its file: the second answer is the kept one, and the same.
    let first = file(addr, YEALINK_T46S, "805ec02f3c2e.cfg").await;
    assert_eq!(first.status, 200);
    assert!(first.text().contains("sip-secret-1001"));
    let again = file(addr, YEALINK_T46S, "805ec02f3c2e.cfg").await;
    assert_eq!(again.body, first.body);
    // The same model naming a's file is refused; its own file has no secret of a's.
    let stolen = file(addr, YEALINK_T46S_B, "805ec02f3c2e.cfg").await;
    assert_eq!(stolen.status, 403);
    assert!(!stolen.text().contains("sip-secret"));
    let own = file(addr, YEALINK_T46S_B, "805ec000000b.cfg").await;
    assert_eq!(own.status, 200);
    assert!(!own.text().contains("sip-secret-1001"), "{}", own.text());
    // After the logout the kept file is not served again.
    let View::Menu { items, .. } = a.open().await else {
        panic!("logged-in menu")
    };
    let (_, logout) = items.iter().find(|(l, _)| l == "Log out").unwrap().clone();
    a.go(&logout).await;
    let after = file(addr, YEALINK_T46S, "805ec02f3c2e.cfg").await;
    assert_eq!(after.status, 200);
    assert!(
        !after.text().contains("sip-secret-1001"),
        "{}",
        after.text()
    );
}
