//! A simulated handset: sends its vendor's User-Agent, reads its vendor's XML, follows the
//! links the server generated, and fills inputs the way the vendor's phone does.

use super::Response;
use super::xml::{El, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Aastra/Mitel, Yealink, Htek/Sangoma: the Aastra object model.
    Aastra,
    Snom,
}

#[derive(Debug, Clone)]
pub struct Phone {
    pub ua: String,
    pub family: Family,
    /// Root prefix: AastraIPPhone, YealinkIPPhone, "" (Htek).
    pub prefix: &'static str,
    /// Query for the entry URL (`?mac=` for phones whose UA lacks it).
    pub entry_query: String,
    pub addr: std::net::SocketAddr,
    /// The loopback address the phone connects from (127.0.0.1 unless set).
    pub source: std::net::IpAddr,
}

/// What the phone is showing.
#[derive(Debug, Clone)]
pub enum View {
    Menu {
        title: String,
        items: Vec<(String, String)>,
    },
    Input {
        title: String,
        url: String,
        params: Vec<String>,
    },
    Message {
        title: String,
        text: String,
        next: Option<String>,
    },
    Execute {
        commands: Vec<String>,
    },
}

impl View {
    pub fn title(&self) -> &str {
        match self {
            View::Menu { title, .. } | View::Input { title, .. } | View::Message { title, .. } => {
                title
            }
            View::Execute { .. } => "",
        }
    }
}

pub const AASTRA_6737I: &str = "Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP";
pub const AASTRA_6731I: &str = "Aastra6731i MAC:00-08-5D-23-74-29 V:3.2.0.70-SIP";
pub const MITEL_6930: &str = "Mitel6930 MAC:14-00-E9-1E-DB-52 V:6.4.0.140-SIP";
pub const YEALINK_T46S: &str = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:2f:3c:2e";
pub const YEALINK_T21P: &str = "Yealink SIP-T21P_E2 52.80.0.3 00:15:65:4c:4c:26";
pub const HTEK_UC903: &str = "Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9";
pub const SANGOMA_S500: &str = "Sangoma S500 2.0.4.4";
pub const SNOM_D785: &str = "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g9ba52f5 000413922D24 SXM:0 UXM:0)";
pub const SNOM_320_OLD: &str = "Mozilla/4.0 (compatible; snom320-SIP 8.4.18 1.1.3-s)";

impl Phone {
    pub fn new(addr: std::net::SocketAddr, ua: &str) -> Phone {
        let (family, prefix) = if ua.contains("snom") {
            (Family::Snom, "SnomIPPhone")
        } else if ua.starts_with("Yealink") || ua.starts_with("yealink") {
            (Family::Aastra, "YealinkIPPhone")
        } else if ua.starts_with("Htek") || ua.starts_with("Sangoma") {
            (Family::Aastra, "")
        } else {
            (Family::Aastra, "AastraIPPhone")
        };
        Phone {
            ua: ua.into(),
            family,
            prefix,
            entry_query: String::new(),
            addr,
            source: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// The same phone connecting from another loopback address (127.0.0.0/8).
    pub fn connecting_from(mut self, source: &str) -> Phone {
        self.source = source.parse().unwrap();
        self
    }

    pub fn with_query(mut self, q: &str) -> Phone {
        self.entry_query = q.into();
        self
    }

    pub async fn fetch(&self, url: &str) -> Response {
        super::request_from(
            self.source,
            self.addr,
            "GET",
            url,
            &[("User-Agent", &self.ua)],
        )
        .await
    }

    /// Presses the app key.
    pub async fn open(&self) -> View {
        let url = if self.entry_query.is_empty() {
            "/app".to_owned()
        } else {
            format!("/app?{}", self.entry_query)
        };
        self.go(&url).await
    }

    pub async fn go(&self, url: &str) -> View {
        let r = self.fetch(url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
        self.read(&r.body)
    }

    pub fn read(&self, body: &[u8]) -> View {
        let doc = parse(body);
        match self.family {
            Family::Aastra => self.read_aastra(&doc),
            Family::Snom => read_snom(&doc),
        }
    }

    fn read_aastra(&self, doc: &El) -> View {
        let object = doc
            .name
            .strip_prefix(self.prefix)
            .unwrap_or_else(|| panic!("root {} lacks prefix {:?}", doc.name, self.prefix));
        match object {
            "TextMenu" => View::Menu {
                title: doc.get("Title"),
                items: doc
                    .all("MenuItem")
                    .iter()
                    .map(|i| (i.get("Prompt"), i.get("URI")))
                    .collect(),
            },
            "InputScreen" => {
                let mut params: Vec<String> = doc
                    .child("Parameter")
                    .map(|p| vec![p.text.clone()])
                    .unwrap_or_default();
                params.extend(doc.all("InputField").iter().map(|f| f.get("Parameter")));
                View::Input {
                    title: doc.get("Title"),
                    url: doc.get("URL"),
                    params,
                }
            }
            "TextScreen" => View::Message {
                title: doc.get("Title"),
                text: doc.get("Text"),
                // Aastra error screens lead on through softkey 1 ("OK"); `doneAction` is
                // kept only where the next step must follow (vendors.md A5).
                next: doc.attr("doneAction").map(str::to_owned).or_else(|| {
                    doc.all("SoftKey")
                        .iter()
                        .find(|k| k.attr("index") == Some("1"))
                        .map(|k| k.get("URI"))
                }),
            },
            "Execute" => View::Execute {
                commands: doc
                    .all("ExecuteItem")
                    .iter()
                    .map(|i| i.attr("URI").unwrap_or("").to_owned())
                    .filter(|u| !u.is_empty())
                    .collect(),
            },
            other => panic!("unexpected object {other}"),
        }
    }

    /// Types `values` (by parameter name) into an input screen and submits it.
    pub async fn submit(&self, view: &View, values: &[(&str, &str)]) -> View {
        let View::Input { url, params, .. } = view else {
            panic!("not an input screen: {view:?}")
        };
        let value = |p: &str| {
            values
                .iter()
                .find(|(k, _)| *k == p)
                .map(|(_, v)| *v)
                .unwrap_or("")
        };
        let target = match self.family {
            // The phone appends each Parameter to the URL (AXAPI p.123).
            Family::Aastra => {
                let mut u = url.clone();
                for p in params {
                    u.push(if u.contains('?') { '&' } else { '?' });
                    u.push_str(&format!("{p}={}", value(p)));
                }
                u
            }
            // Snom replaces each token in the URL.
            Family::Snom => {
                let mut u = url.clone();
                for p in params {
                    let (param, token) = p.split_once('=').unwrap();
                    u = u.replace(token, value(param));
                }
                u
            }
        };
        self.go(&target).await
    }

    /// Follows a message's OK/next link.
    pub async fn ok(&self, view: &View) -> View {
        let View::Message {
            next: Some(next), ..
        } = view
        else {
            panic!("no next link: {view:?}")
        };
        self.go(next).await
    }

    /// The whole login as a user would do it; returns the final screen (message).
    pub async fn login(&self, network_label: &str, ext: &str, pin: &str) -> View {
        let mut view = self.open().await;
        if let View::Menu { items, .. } = &view {
            let (_, link) = items
                .iter()
                .find(|(l, _)| l == network_label)
                .unwrap_or_else(|| panic!("no {network_label} in {view:?}"))
                .clone();
            view = self.go(&link).await;
        }
        let View::Input { params, .. } = &view else {
            panic!("expected an input screen, got {view:?}")
        };
        if params.len() >= 2 {
            return self.submit(&view, &[("ext", ext), ("pin", pin)]).await;
        }
        let view = self.submit(&view, &[("ext", ext)]).await;
        self.submit(&view, &[("pin", pin)]).await
    }
}

fn read_snom(doc: &El) -> View {
    match doc.name.as_str() {
        "SnomIPPhoneMenu" => View::Menu {
            title: doc.get("Title"),
            items: doc
                .all("MenuItem")
                .iter()
                .map(|i| (i.get("Name"), i.get("URL")))
                .collect(),
        },
        "SnomIPPhoneInput" => View::Input {
            title: doc.get("Title"),
            url: doc.get("Url"),
            // "param=TOKEN": the harness needs both to fill the URL.
            params: doc
                .all("InputItem")
                .iter()
                .map(|i| {
                    let token = i.get("InputToken");
                    let url = doc.get("Url");
                    let param = url
                        .split(['?', '&'])
                        .find_map(|kv| {
                            kv.split_once('=')
                                .filter(|(_, v)| *v == token)
                                .map(|(k, _)| k.to_owned())
                        })
                        .expect("token in URL");
                    format!("{param}={token}")
                })
                .collect(),
        },
        "SnomIPPhoneText" => {
            let fetch = doc.get("Fetch");
            if fetch.starts_with("snom://") {
                let commands = fetch
                    .split_once('#')
                    .map(|(_, f)| f.split('&').map(str::to_owned).collect())
                    .unwrap_or_default();
                return View::Execute { commands };
            }
            View::Message {
                title: doc.get("Title"),
                text: doc.get("Text"),
                next: doc.child("SoftKeyItem").map(|k| k.get("URL")),
            }
        }
        other => panic!("unexpected object {other}"),
    }
}
