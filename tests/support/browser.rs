//! A headless Chromium driven through WebDriver (chromedriver), for the console and user-page
//! tests. Each `Browser` owns its chromedriver process and one Chromium session; both end on
//! drop, also when a test panics. Screenshots land in `target/screenshots/<test>-<step>.png`.
//!
//! Chromium and chromedriver are Debian's (`chromium`, `chromium-driver`); `make test` and
//! `.ci/run` install them. A missing driver fails the test with the install line: a browser
//! test that skips itself silently could never fail.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{ADMIN_PASSWORD, Server};

/// How long any one wait for the page may take: generous for a loaded 2-core CI machine.
pub const WAIT: Duration = Duration::from_secs(15);

/// Where Debian puts the driver; `CHROMEDRIVER` overrides it.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "sudo apt-get install -y chromium chromium-driver";

pub struct Browser {
    pub client: Client,
    /// Names this test's screenshots.
    test: String,
    driver: Child,
    driver_port: u16,
    session: Option<String>,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session whose page is 1280x900.
    pub async fn start(test: &str) -> Browser {
        Self::start_sized(test, 1280, 900).await
    }

    pub async fn start_sized(test: &str, width: u32, height: u32) -> Browser {
        let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_owned());
        assert!(
            std::path::Path::new(&path).exists(),
            "{path} is missing; the browser tests need Chromium and its driver: {INSTALL}"
        );
        // chromedriver picks a free port itself with --port=0 and says which on stdout.
        let mut driver = Command::new(&path)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{path} did not start ({e}); {INSTALL}"));
        let driver_port = tokio::time::timeout(WAIT, read_port(&mut driver))
            .await
            .expect("chromedriver reports its port in time");
        let url = format!("http://127.0.0.1:{driver_port}");
        wait_ready(driver_port).await;

        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session from {path}: {e}"));
        let session = client.session_id().await.unwrap();
        // --window-size includes the browser's own frame: grow the window until the page
        // itself (and so every screenshot) is width x height.
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .unwrap();
        let (iw, ih) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
        let grow = |want: u32, got: u64| want + want.saturating_sub(got as u32);
        client
            .set_window_size(grow(width, iw), grow(height, ih))
            .await
            .unwrap();
        Browser {
            client,
            test: test.to_owned(),
            driver,
            driver_port,
            session,
        }
    }

    /// Opens `path` on `server`.
    pub async fn open(&self, server: &Server, path: &str) {
        self.client.goto(&server.url(path)).await.unwrap();
    }

    /// The element `css` once it exists (within [`WAIT`]).
    pub async fn wait_for(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!("{css} did not appear: {e}\n{}", self.text().await),
        }
    }

    /// Waits until nothing matches `css` (within [`WAIT`]).
    pub async fn wait_gone(&self, css: &str) {
        let css = serde_json::to_string(css).unwrap();
        self.wait_until(&format!("document.querySelector({css}) === null"))
            .await;
    }

    /// Waits until the JavaScript expression `condition` is true in the page (within [`WAIT`]).
    /// WebDriver has no "wait for a condition" command, so this asks every 50 ms.
    pub async fn wait_until(&self, condition: &str) {
        let until = tokio::time::Instant::now() + WAIT;
        let script = format!("return Boolean({condition});");
        loop {
            // A page that is navigating away answers with an error: ask again.
            if let Ok(serde_json::Value::Bool(true)) = self.client.execute(&script, vec![]).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "still not true: {condition}\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `path` again and again until the JavaScript expression `condition` is true in it
    /// (within [`WAIT`]): for server-rendered pages that show a change only when reloaded.
    pub async fn open_until(&self, server: &Server, path: &str, condition: &str) {
        let until = tokio::time::Instant::now() + WAIT;
        let script = format!("return Boolean({condition});");
        loop {
            self.open(server, path).await;
            if let Ok(serde_json::Value::Bool(true)) = self.client.execute(&script, vec![]).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{path} still not showing: {condition}\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let css = serde_json::to_string(css).unwrap();
        let found = self
            .js(&format!(
                "return [...document.querySelectorAll({css})].map(e => e.innerText)"
            ))
            .await;
        serde_json::from_value(found).unwrap()
    }

    /// The page's visible text (for assertions and failure messages).
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(e) => format!("(no body: {e})"),
        }
    }

    /// The current path (and query).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Saves what the window shows as `target/screenshots/<test>-<step>.png`; returns the path.
    pub async fn screenshot(&self, step: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG from the driver");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{step}.png", self.test));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Signs in to the console through its form as `admin`; lands on the desks page.
    pub async fn sign_in(&self, server: &Server) {
        self.open(server, "/admin/signin").await;
        let name = self.wait_for("input#name").await;
        name.clear().await.unwrap();
        name.send_keys("admin").await.unwrap();
        self.wait_for("input#password")
            .await
            .send_keys(ADMIN_PASSWORD)
            .await
            .unwrap();
        self.wait_for("form[action='/admin/signin'] button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        self.wait_for("tbody#desks").await;
        assert_eq!(self.path().await, "/admin");
    }

    /// Runs `script` in the page (WebDriver "execute script").
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }
}

impl Drop for Browser {
    /// Ends the Chromium session (so no browser outlives a failed test), then chromedriver.
    fn drop(&mut self) {
        if let Some(id) = &self.session {
            end_session(self.driver_port, id);
        }
        let _ = self.driver.start_kill();
    }
}

/// `target/screenshots`, under `CARGO_TARGET_DIR` when it is set.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots")
}

/// Reads chromedriver's stdout until it names its port ("... started successfully on port N.").
async fn read_port(driver: &mut Child) -> u16 {
    let out = driver.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            let port = rest.trim_end_matches('.').trim();
            // Keep draining stdout so the driver never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return port.parse().unwrap_or_else(|_| panic!("port in {line:?}"));
        }
    }
    panic!("chromedriver exited before it listened");
}

/// Waits for chromedriver's `/status` to say it is ready. (chromedriver keeps connections
/// open whatever the request says, so this uses a real HTTP client, not read-to-end.)
async fn wait_ready(port: u16) {
    use http_body_util::BodyExt;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let url: hyper::Uri = format!("http://127.0.0.1:{port}/status").parse().unwrap();
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Ok(resp)) = tokio::time::timeout(WAIT, http.get(url.clone())).await {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if status["value"]["ready"] == true {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "chromedriver not ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `DELETE /session/{id}` over a blocking socket: usable from `Drop`, even while unwinding.
fn end_session(port: u16, id: &str) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    // The answer comes once Chromium has quit; its head is enough (the connection stays open).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}
