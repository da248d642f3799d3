//! Softphone activation over real HTTP: an admin makes a link; the test decodes the URL from
//! the QR image (zbarimg, Debian zbar-tools) and fetches it as Linphone would; the document
//! validates against Linphone's lpconfig.xsd (../shared/vendors, when present; CI has it);
//! the link works once, expires, and the device limit holds until a reset. The activation
//! email goes to a local SMTP sink and carries the link and username, never a secret.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Server, request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EMBEDDED: &str = "[directory]\nkind = \"embedded\"\npoll_interval = \"50ms\"\n";
const LINPHONE_UA: &str = "LinphoneAndroid/5.2.5 (Pixel 7) LinphoneSDK/5.3.47";

/// A user with a SIP secret (returned) and, optionally, an email address.
async fn user(server: &Server, ext: &str, email: Option<&str>) -> String {
    let email = email.map_or(String::new(), |e| format!(", \"email\": \"{e}\""));
    let body = format!("{{\"extension\": \"{ext}\", \"name\": \"Ada \\\"A\\\" <&>\"{email}}}");
    let r = server.call("POST", "/api/v1/users", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server
        .call("POST", &format!("/api/v1/users/{ext}/sip-secret"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sip_secret"].as_str().unwrap().to_owned()
}

async fn new_link(server: &Server, ext: &str) -> serde_json::Value {
    let r = server
        .call("POST", &format!("/api/v1/users/{ext}/activations"), "")
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

async fn fetch(server: &Server, url: &str) -> support::Response {
    request(server.addr, "GET", url, &[("User-Agent", LINPHONE_UA)]).await
}

fn zbar(file: &std::path::Path) -> String {
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(file)
        .output()
        .expect("zbarimg is needed (apt-get install zbar-tools; `make test` installs it)");
    assert!(
        out.status.success(),
        "zbarimg found no code: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Draws the SVG the `qrcode` crate writes (one path of `M x y h w v h H x V y` squares)
/// into a greyscale PGM, so zbarimg can read what a browser would show.
fn rasterize_svg(svg: &str) -> Vec<u8> {
    let attr = |name: &str| -> usize {
        let at = svg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        svg[at..].split('"').next().unwrap().parse().unwrap()
    };
    let (w, h) = (attr("width"), attr("height"));
    let mut px = vec![255u8; w * h];
    let d_at = svg.find(" d=\"").expect("a path") + 4;
    let d = svg[d_at..].split('"').next().unwrap();
    let nums = |s: &str| -> Vec<usize> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().unwrap())
            .collect()
    };
    for square in d.split('M').filter(|s| !s.is_empty()) {
        // left top h width v height H left V top
        let n = nums(square);
        let (left, top, width, height) = (n[0], n[1], n[2], n[3]);
        for y in top..top + height {
            px[y * w + left..y * w + left + width].fill(0);
        }
    }
    let mut out = format!("P5\n{w} {h}\n255\n").into_bytes();
    out.extend(px);
    out
}

fn lpconfig_xsd() -> Option<std::path::PathBuf> {
    let xsd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vendors/linphone-lpconfig.xsd");
    xsd.exists().then_some(xsd)
}

#[tokio::test]
async fn a_softphone_activates_once_through_the_url_its_qr_code_holds() {
    let server = Server::start_with(EMBEDDED.into(), "").await;
    let secret = user(&server, "2001", None).await;
    let link = new_link(&server, "2001").await;
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("http://{}/provisioning/", server.addr)),
        "{url}"
    );
    assert_eq!(link["username"], "2001");
    assert!(link["expires_at"].as_str().unwrap().contains('T'));

    // The URL comes out of the PNG and out of the SVG.
    let png = request(
        server.addr,
        "GET",
        link["qr_png_url"].as_str().unwrap(),
        &[],
    )
    .await;
    assert_eq!(png.status, 200, "{}", png.text());
    assert_eq!(png.header("content-type"), Some("image/png"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qr.png"), &png.body).unwrap();
    assert_eq!(zbar(&dir.path().join("qr.png")), url);
    let svg = request(
        server.addr,
        "GET",
        link["qr_svg_url"].as_str().unwrap(),
        &[],
    )
    .await;
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    std::fs::write(dir.path().join("qr.pgm"), rasterize_svg(&svg.text())).unwrap();
    assert_eq!(zbar(&dir.path().join("qr.pgm")), url);

    // A browser opening the link (a mail scanner, the user on a PC) sees the QR code page;
    // the link stays unused.
    let page = request(
        server.addr,
        "GET",
        &url,
        &[("Accept", "text/html,application/xhtml+xml")],
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("qr.svg"), "{}", page.text());
    assert!(!page.text().contains(&secret));

    // Linphone fetches it: its account, once.
    let doc = fetch(&server, &url).await;
    assert_eq!(doc.status, 200, "{}", doc.text());
    assert_eq!(doc.header("content-type"), Some("application/xml"));
    assert_eq!(doc.header("cache-control"), Some("no-store"));
    let text = doc.text();
    assert!(text.contains(r#"<config xmlns="http://www.linphone.org/xsds/lpconfig.xsd">"#));
    assert!(
        text.contains(r#"<entry name="reg_identity" overwrite="true">&quot;Ada \&quot;A\&quot; &lt;&amp;&gt;&quot; &lt;sip:2001@10.0.0.5&gt;</entry>"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"<entry name="reg_proxy" overwrite="true">&lt;sip:10.0.0.5;transport=udp&gt;</entry>"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"<entry name="reg_sendregister" overwrite="true">1</entry>"#));
    assert!(
        text.contains(&format!(
            r#"<entry name="passwd" overwrite="true">{secret}</entry>"#
        )),
        "{text}"
    );
    if let Some(xsd) = lpconfig_xsd() {
        let file = dir.path().join("linphone.xml");
        std::fs::write(&file, &doc.body).unwrap();
        let out = Command::new("xmllint")
            .args(["--noout", "--schema"])
            .arg(&xsd)
            .arg(&file)
            .output()
            .expect("xmllint is needed (apt-get install libxml2-utils)");
        let report = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && report.contains("validates"),
            "{report}"
        );
    } else {
        eprintln!("lpconfig.xsd not present: schema check skipped");
    }

    let metrics = server.admin("GET", "/metrics").await.text();
    assert!(
        metrics.contains("hotdesk_softphone_activations_total{outcome=\"activated\"} 1"),
        "{metrics}"
    );

    // A second fetch, the QR code and the page all say it is gone.
    let again = fetch(&server, &url).await;
    assert_eq!(again.status, 410, "{}", again.text());
    assert!(!again.text().contains(&secret));
    let qr = request(
        server.addr,
        "GET",
        link["qr_png_url"].as_str().unwrap(),
        &[],
    )
    .await;
    assert_eq!(qr.status, 410);
    let page = request(server.addr, "GET", &url, &[("Accept", "text/html")]).await;
    assert_eq!(page.status, 410);

    // One device, audited with what it said it was; the token is in no audit line.
    let status = server
        .admin("GET", "/api/v1/users/2001/activations")
        .await
        .json();
    assert_eq!(status["devices"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["devices"][0]["user_agent"], LINPHONE_UA);
    assert_eq!(status["limit_reached"], false);
    let audit = server.admin("GET", "/api/v1/audit?limit=100").await.text();
    assert!(audit.contains("softphone-activated"), "{audit}");
    assert!(audit.contains("activation link already used"), "{audit}");
    let token = url.rsplit('/').next().unwrap();
    assert!(!audit.contains(token), "{audit}");
    assert!(!audit.contains(&secret));
}

#[tokio::test]
async fn the_fifth_device_is_refused_until_the_count_is_reset() {
    let server = Server::start_with(EMBEDDED.into(), "").await;
    user(&server, "2001", None).await;
    for _ in 0..4 {
        let link = new_link(&server, "2001").await;
        let r = fetch(&server, link["url"].as_str().unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let fifth = new_link(&server, "2001").await;
    let url = fifth["url"].as_str().unwrap();
    let refused = fetch(&server, url).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused
            .text()
            .contains("Device activation limit reached: 4 of 4"),
        "{}",
        refused.text()
    );
    let status = server
        .admin("GET", "/api/v1/users/2001/activations")
        .await
        .json();
    assert_eq!(status["limit_reached"], true);
    assert_eq!(status["max_devices"], 4);
    assert!(
        status["link_expires_at"].is_string(),
        "the refused link is unused: {status}"
    );

    // One device removed frees one slot; the refused link works now.
    let id = status["devices"][0]["id"].as_i64().unwrap();
    let r = server
        .admin("DELETE", &format!("/api/v1/users/2001/devices/{id}"))
        .await;
    assert_eq!(r.json()["removed"], 1);
    let r = server
        .admin("DELETE", &format!("/api/v1/users/2001/devices/{id}"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(fetch(&server, url).await.status, 200);

    // Full again; an admin reset clears the count (audited).
    let sixth = new_link(&server, "2001").await;
    assert_eq!(
        fetch(&server, sixth["url"].as_str().unwrap()).await.status,
        403
    );
    let r = server
        .admin("DELETE", "/api/v1/users/2001/activations")
        .await;
    assert_eq!(r.json()["removed"], 4);
    assert_eq!(
        fetch(&server, sixth["url"].as_str().unwrap()).await.status,
        200
    );
    let audit = server.admin("GET", "/api/v1/audit?limit=100").await.text();
    assert!(audit.contains("device count reset"), "{audit}");
    assert!(audit.contains("device activation limit reached"), "{audit}");

    // Disabling the user resets the count and voids the unused link.
    let unused = new_link(&server, "2001").await;
    let r = server
        .call("PATCH", "/api/v1/users/2001", "{\"enabled\": false}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let status = server
        .admin("GET", "/api/v1/users/2001/activations")
        .await
        .json();
    assert_eq!(status["devices"].as_array().unwrap().len(), 0, "{status}");
    assert_eq!(
        fetch(&server, unused["url"].as_str().unwrap()).await.status,
        410
    );
    // A disabled user gets no new link.
    let r = server
        .call("POST", "/api/v1/users/2001/activations", "")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn links_expire_are_replaced_by_a_new_one_and_are_not_guessable() {
    let server = Server::start_with(EMBEDDED.into(), "[activation]\nlink_ttl = \"1h\"\n").await;
    user(&server, "2001", None).await;
    let old = new_link(&server, "2001").await;
    let new = new_link(&server, "2001").await;
    // A refreshed link replaces the old one.
    assert_eq!(
        fetch(&server, old["url"].as_str().unwrap()).await.status,
        410
    );
    server.clock.advance(Duration::from_secs(3601));
    assert_eq!(
        fetch(&server, new["url"].as_str().unwrap()).await.status,
        410
    );
    let qr = request(server.addr, "GET", new["qr_svg_url"].as_str().unwrap(), &[]).await;
    assert_eq!(qr.status, 410);

    // Made-up tokens: 404, and a source that keeps guessing is slowed down (429).
    let mut statuses = Vec::new();
    for i in 0..30 {
        let token = format!("{:0>43}", i);
        statuses.push(
            fetch(&server, &format!("/provisioning/{token}"))
                .await
                .status,
        );
    }
    assert!(statuses.contains(&404), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");

    // No link for an unknown user, nor for one without a SIP secret.
    let r = server
        .call("POST", "/api/v1/users/9999/activations", "")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = server
        .call(
            "POST",
            "/api/v1/users",
            "{\"extension\": \"2002\", \"name\": \"No secret\"}",
        )
        .await;
    assert_eq!(r.status, 201);
    let r = server
        .call("POST", "/api/v1/users/2002/activations", "")
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    // Without the API key: 401.
    let r = request(server.addr, "POST", "/api/v1/users/2001/activations", &[]).await;
    assert_eq!(r.status, 401);
}

/// A minimal SMTP server (RFC 5321's happy path): records each message's DATA.
async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            tx.send(data.take().unwrap()).unwrap();
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(&line);
                            d.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn the_activation_email_has_the_link_and_username_and_no_secret() {
    let (port, mut mails) = smtp_sink().await;
    let smtp = format!(
        "[activation.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"hotdesk <hotdesk@example.com>\"\n"
    );
    let server = Server::start_with(EMBEDDED.into(), &smtp).await;
    let secret = user(&server, "2001", Some("ada@example.com")).await;
    let r = server.call("POST", "/api/v1/users/2001/pin", "{}").await;
    let pin = r.json()["pin"].as_str().unwrap().to_owned();
    let link = new_link(&server, "2001").await;
    assert_eq!(link["email"]["sent"], true, "{link}");
    assert_eq!(link["email"]["to"], "ada@example.com");
    let mail = tokio::time::timeout(Duration::from_secs(10), mails.recv())
        .await
        .unwrap()
        .unwrap();
    // Quoted-printable may fold long lines: unfold before looking for the URL.
    let unfolded = mail.replace("=\n", "");
    assert!(unfolded.contains(link["url"].as_str().unwrap()), "{mail}");
    assert!(unfolded.contains("Username: 2001"), "{mail}");
    assert!(unfolded.contains("To: ada@example.com"), "{mail}");
    assert!(!unfolded.contains(&secret), "SIP secret in the email");
    assert!(!unfolded.contains(&pin), "PIN in the email");

    // Asked not to: no email. A user without an address: said so, link still made.
    let r = server
        .call(
            "POST",
            "/api/v1/users/2001/activations",
            "{\"email\": false}",
        )
        .await;
    assert!(r.json().get("email").is_none(), "{}", r.text());
    user(&server, "2002", None).await;
    let r = server
        .call(
            "POST",
            "/api/v1/users/2002/activations",
            "{\"email\": true}",
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["email"]["error"], "the user has no email address");
}

#[test]
fn plain_text_smtp_is_refused_to_a_remote_host() {
    let dir = tempfile::tempdir().unwrap();
    let text = support::config_text(
        dir.path(),
        "http://127.0.0.1:8080",
        "[activation.smtp]\nhost = \"mail.example.com\"\nsecurity = \"none\"\nfrom = \"h@example.com\"\n",
    );
    let err = hotdesk::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap_err();
    assert!(err.to_string().contains("only to a loopback host"), "{err}");
}
