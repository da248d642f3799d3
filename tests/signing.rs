//! With signing on (the default), every step after the entry must come from a link hotdesk
//! signed; a phone's logout is bound to the address it logged in from, or to the PIN.

mod support;

use support::phone::*;
use support::request;

fn signed(t: String) -> String {
    // An apply with a command in it for every vendor, so a refused link is visible; the
    // check-sync NOTIFY (the default) leaves nothing in the apply screen.
    let opt_in = "\n[vendors.yealink]\nreload = \"reboot\"\n[vendors.htek]\nreload = \"reboot\"\n[vendors.snom]\nreload = \"reboot\"\n";
    t.replace("sign_links = false", "sign_links = true\nlink_ttl = \"2s\"") + opt_in
}

fn title(v: &View) -> &str {
    match v {
        View::Message { title, .. } | View::Menu { title, .. } | View::Input { title, .. } => title,
        View::Execute { .. } => "execute",
    }
}

#[tokio::test]
async fn every_vendor_logs_in_and_out_through_signed_links() {
    let addr = support::start_edited(signed).await;
    for ua in [
        AASTRA_6737I,
        AASTRA_6731I,
        YEALINK_T46S,
        HTEK_UC903,
        SNOM_D785,
    ] {
        let phone = Phone::new(addr, ua);
        let done = phone.login("Internal", "1001", "73915").await;
        assert_eq!(title(&done), "Logged in", "{ua}");
        let View::Message {
            next: Some(apply), ..
        } = &done
        else {
            panic!()
        };
        assert!(apply.contains("sig=") && apply.contains("exp="), "{apply}");
        let View::Execute { commands } = phone.go(apply).await else {
            panic!()
        };
        assert!(!commands.is_empty(), "{ua}: the signed apply link works");
        let View::Menu { items, .. } = phone.open().await else {
            panic!()
        };
        let bye = phone.go(&items[0].1).await;
        assert_eq!(title(&bye), "Logged out", "{ua}");
    }
}

#[tokio::test]
async fn forged_tampered_or_expired_links_start_over() {
    let addr = support::start_edited(signed).await;
    let phone = Phone::new(addr, YEALINK_T46S);
    let start = "Hot desk: log in via";
    // A hand-made verify URL, with the right PIN, does not log in.
    let forged = phone.go("/app/login?net=internal&ext=1001&pin=73915").await;
    assert_eq!(title(&forged), start);
    // A real link with its network changed does not either.
    let View::Menu { items, .. } = phone.open().await else {
        panic!()
    };
    let internal = items
        .iter()
        .find(|(l, _)| l == "Internal")
        .unwrap()
        .1
        .clone();
    let tampered = internal.replace("net=internal", "net=external");
    assert_eq!(title(&phone.go(&tampered).await), start);
    // The genuine link works, and the phone's appended inputs are fine.
    let form = phone.go(&internal).await;
    assert!(matches!(form, View::Input { .. }));
    // Logout and apply need signed links too: no hand-made logout.
    phone
        .submit(&form, &[("ext", "1001"), ("pin", "73915")])
        .await;
    // An unsigned logout shows the logged-in menu instead of logging out.
    assert_eq!(title(&phone.go("/app/logout").await), "1001 Ada Lovelace");
    // After the link's lifetime (2 s here) it no longer works.
    let View::Menu { items, .. } = phone.open().await else {
        panic!()
    };
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let late = phone.go(&items[0].1).await;
    assert_eq!(
        title(&late),
        "1001 Ada Lovelace",
        "expired: back to the menu, still logged in"
    );
}

#[tokio::test]
async fn logout_is_bound_to_the_login_address_or_the_pin() {
    // Bound to the address: the same phone from another address cannot log out.
    let addr = support::start_edited(|t| {
        signed(t).replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        )
    })
    .await;
    let ua = ("User-Agent", YEALINK_T46S);
    let from = |ip: &'static str| ("X-Forwarded-For", ip);
    let phone = Phone::new(addr, YEALINK_T46S);
    phone.login("Internal", "1001", "73915").await; // from 127.0.0.1
    let View::Menu { items, .. } = phone.open().await else {
        panic!()
    };
    let logout = items[0].1.clone();
    let path = &logout[logout.find("/app").unwrap()..];
    let r = request(addr, "GET", path, &[ua, from("10.9.9.9")]).await;
    assert!(r.text().contains("Logout refused"), "{}", r.text());
    // From the address it logged in from, the same link works.
    assert_eq!(title(&phone.go(&logout).await), "Logged out");

    // With logout_requires_pin the PIN is asked, and checked.
    let addr = support::start_edited(|t| {
        signed(t).replace(
            "max_failures = 3",
            "max_failures = 3\nlogout_requires_pin = true",
        )
    })
    .await;
    let phone = Phone::new(addr, AASTRA_6737I);
    phone.login("Internal", "1002", "86420").await;
    let View::Menu { items, .. } = phone.open().await else {
        panic!()
    };
    let ask = phone.go(&items[0].1).await;
    let View::Input {
        ref title,
        ref params,
        ..
    } = ask
    else {
        panic!("{ask:?}")
    };
    assert_eq!(
        (title.as_str(), params.as_slice()),
        ("Log out 1002", ["pin".to_owned()].as_slice())
    );
    let wrong = phone.submit(&ask, &[("pin", "11111")]).await;
    assert!(matches!(wrong, View::Message { ref title, .. } if title == "Login failed"));
    let bye = phone.submit(&ask, &[("pin", "86420")]).await;
    assert!(
        matches!(bye, View::Message { ref title, .. } if title == "Logged out"),
        "{bye:?}"
    );
}
