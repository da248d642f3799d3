//! Screen preview: every screen of the hot-desk flow as one phone model gets it. Each screen
//! is built the way the flow builds it for that handset (its capabilities pick one form or
//! two, the running config's networks, lockout window and reload method), rendered by the
//! vendor's dialect within the phone's limits, and then shown twice: the exact XML, and an
//! HTML drawing made by reading that XML back. The drawing is made from the XML rather
//! than from the neutral screen so that it shows what the phone gets after the dialect's
//! cuts (titles and labels shortened, items dropped, text transliterated, softkeys placed).
//! The user is made up; links carry placeholder tokens and are not signed.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Extension, RawQuery};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};

use super::console::signed_in;
use super::render;
use crate::App;
use crate::config::ReloadMethod;
use crate::dialect::Target;
use crate::flow::screens;
use crate::phone::{Handset, Mac, Vendor};
use crate::screen::{Action, Apply, Link, Screen};
use crate::server::routes::{Ctx, effect_of, parse_query, reload_for};
use crate::vendor::{self, Family};

const FAKE_EXTENSION: &str = "2001";
const FAKE_NAME: &str = "Sam Example";
/// Stands where the one-time apply token and the push grant go.
const FAKE_TOKEN: &str = "00000000000000000000000000000000";

pub fn routes() -> Router {
    Router::new().route("/admin/preview", get(page))
}

/// A model the User-Agent corpus (`fixtures/user-agents.toml`) has, with its newest firmware.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    vendor: String,
    model: String,
    firmware: String,
}

#[derive(Deserialize)]
struct Corpus {
    phone: Vec<Known>,
}

static KNOWN: LazyLock<Vec<Known>> = LazyLock::new(|| {
    let corpus: Corpus = toml::from_str(include_str!("../../../fixtures/user-agents.toml"))
        .unwrap_or(Corpus { phone: Vec::new() });
    let mut out: Vec<Known> = Vec::new();
    for p in corpus.phone {
        match out
            .iter_mut()
            .find(|k| k.vendor == p.vendor && k.model.eq_ignore_ascii_case(&p.model))
        {
            Some(k) => {
                if vendor::firmware_tuple(&p.firmware) > vendor::firmware_tuple(&k.firmware) {
                    k.firmware = p.firmware;
                }
            }
            None => out.push(p),
        }
    }
    out
});

/// The handset the flow would see for this model (a made-up MAC).
fn handset(family: &dyn Family, model: &str, firmware: &str) -> Handset {
    Handset {
        vendor: Vendor::new(family.id()),
        model: model.into(),
        firmware: firmware.into(),
        mac: "000000000000".parse::<Mac>().expect("constant"),
        caps: family.caps(model, firmware),
        vendor_forced: false,
        mac_from_query: false,
    }
}

/// The apply screen the flow hands out, as the server changes it for this reload method.
fn apply_screen(mut actions: Vec<Action>, reload: ReloadMethod) -> Screen {
    let grant = actions
        .contains(&Action::Reload)
        .then(|| FAKE_TOKEN.to_owned());
    if reload == ReloadMethod::CheckSync {
        // Sent as a SIP NOTIFY instead (server::reload::after_apply).
        actions.retain(|a| *a != Action::Reload);
    }
    Screen::Apply(Apply { actions, grant })
}

/// Every screen of the flow for `h`, in the order a user meets them.
fn flow_screens(app: &App, h: &Handset, reload: ReloadMethod) -> Vec<(&'static str, Screen)> {
    let config = &app.config;
    let effect = effect_of(reload, &h.caps);
    let (net, label) = config
        .networks
        .iter()
        .next()
        .map(|(k, n)| (k.clone(), n.label.clone()))
        .unwrap_or_default();
    let submit = Link::new("/app/login").with("net", net.clone());
    let apply = Link::new("/app/apply").with("t", FAKE_TOKEN);
    let mut out = Vec::new();
    if config.networks.len() > 1 {
        let items: Vec<_> = config
            .networks
            .iter()
            .map(|(k, n)| {
                let link = Link::new("/app/login").with("net", k.clone());
                (k.clone(), n.label.clone(), link)
            })
            .collect();
        out.push((
            "Entry: choose the network",
            screens::choose_network(&items, 1),
        ));
    }
    if h.caps.multi_field_input {
        out.push(("Extension and PIN", screens::credentials(submit.clone())));
    } else {
        out.push((
            "Ask for the extension",
            screens::ask_extension(submit.clone()),
        ));
        out.push((
            "Ask for the PIN",
            screens::ask_pin(FAKE_EXTENSION, submit.clone().with("ext", FAKE_EXTENSION)),
        ));
    }
    let tries = config.login.max_failures.saturating_sub(1);
    out.push((
        "Wrong extension or PIN",
        screens::wrong_credentials(tries, submit.clone()),
    ));
    out.push(("Locked out", screens::locked_out(config.login.lockout.0)));
    out.push((
        "Logged in",
        screens::logged_in(FAKE_EXTENSION, FAKE_NAME, &label, apply.clone(), effect),
    ));
    out.push((
        "Apply after the login",
        apply_screen(vec![Action::Reload], reload),
    ));
    let menu = if h.caps.identities > 1 {
        let rows = vec![(
            FAKE_EXTENSION.to_owned(),
            FAKE_NAME.to_owned(),
            Link::new("/app/logout").with("id", "0"),
        )];
        screens::identities_menu(
            &rows,
            Link::new("/app/logout"),
            Some(Link::new("/app/login")),
        )
    } else {
        screens::logged_in_menu(
            FAKE_EXTENSION,
            FAKE_NAME,
            Link::new("/app/logout"),
            Link::new("/app/login"),
        )
    };
    out.push(("Logged-in menu (the app key again)", menu));
    out.push((
        "Logged out",
        screens::logged_out(FAKE_EXTENSION, apply, effect),
    ));
    let mut logout = vec![Action::ClearCallLists];
    if h.caps.identities > 1 {
        logout.push(Action::Unregister(None));
    }
    logout.push(Action::Reload);
    out.push(("Apply after the logout", apply_screen(logout, reload)));
    out.push(("Not logged in", screens::not_logged_in(Link::new("/app"))));
    out.push((
        "Directory unreachable",
        screens::try_later("The user directory cannot be reached."),
    ));
    out
}

// --- the XML read back --------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<El>,
    text: String,
}

impl El {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child called one of `names`.
    fn get(&self, names: &[&str]) -> String {
        self.children
            .iter()
            .find(|c| names.contains(&c.name.as_str()))
            .map(|c| c.text.clone())
            .unwrap_or_default()
    }
}

fn entity(name: &str) -> String {
    match name {
        "amp" => "&".into(),
        "lt" => "<".into(),
        "gt" => ">".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        _ => {
            let code = name
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()));
            code.and_then(char::from_u32)
                .map_or_else(|| format!("&{name};"), String::from)
        }
    }
}

/// An attribute's raw text with its references resolved.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        match rest[at..].find(';') {
            Some(end) => {
                out.push_str(&entity(&rest[at + 1..at + end]));
                rest = &rest[at + end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn element(e: &BytesStart<'_>) -> El {
    let attrs = e
        .attributes()
        .flatten()
        .map(|a| (a.key.as_ref().to_owned(), unescape(&a.value)))
        .collect();
    El {
        name: e.name().as_ref().to_owned(),
        attrs,
        ..El::default()
    }
}

/// The document's root element; `None` when it is not well-formed.
fn parse(xml: &str) -> Option<El> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<El> = vec![El::default()];
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => stack.last_mut()?.children.push(element(&e)),
            Event::End(_) => {
                let mut el = stack.pop()?;
                el.text = el.text.trim().to_owned();
                stack.last_mut()?.children.push(el);
            }
            Event::Text(t) => stack.last_mut()?.text.push_str(&t.into_inner()),
            Event::CData(t) => stack.last_mut()?.text.push_str(&t.into_inner()),
            Event::GeneralRef(r) => stack.last_mut()?.text.push_str(&entity(&r.into_inner())),
            Event::Eof => break,
            _ => {}
        }
    }
    (stack.len() == 1).then_some(())?;
    stack.pop()?.children.pop()
}

/// What the phone's display shows, as read back from its XML.
#[derive(Debug, Default, Serialize)]
struct View {
    /// `menu`, `input`, `text`, `execute`, `configuration` or the root's name.
    kind: String,
    title: String,
    text: String,
    items: Vec<Item>,
    fields: Vec<FieldView>,
    /// Where an input screen sends its values.
    submit: String,
    softkeys: Vec<Key>,
    /// Execute items, fetches and configuration lines: what the phone does, not shows.
    commands: Vec<String>,
    /// The root's attributes (beep, default item, done action, ...).
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Item {
    label: String,
    target: String,
    selected: bool,
}

#[derive(Debug, Serialize)]
struct FieldView {
    prompt: String,
    param: String,
    numeric: bool,
    secret: bool,
}

#[derive(Debug, Serialize)]
struct Key {
    key: String,
    label: String,
    action: String,
}

fn softkeys(el: &El, out: &mut Vec<Key>) {
    for k in el.all("SoftKey") {
        out.push(Key {
            key: k.attr("index").unwrap_or("").to_owned(),
            label: k.get(&["Label"]),
            action: k.get(&["URI"]),
        });
    }
    for k in el.all("SoftKeyItem") {
        out.push(Key {
            key: k.get(&["Name"]),
            label: k.get(&["Label"]),
            action: k.get(&["URL"]),
        });
    }
}

fn view(root: &El) -> View {
    let kind = ["AastraIPPhone", "YealinkIPPhone", "SnomIPPhone"]
        .iter()
        .find_map(|p| root.name.strip_prefix(p))
        .unwrap_or(&root.name);
    let mut v = View {
        kind: match kind {
            "TextMenu" | "Menu" => "menu",
            "InputScreen" | "Input" => "input",
            "TextScreen" | "Text" => "text",
            "Execute" => "execute",
            "Configuration" => "configuration",
            other => other,
        }
        .to_owned(),
        title: root.get(&["Title"]),
        text: root.get(&["Text"]),
        submit: root.get(&["URL", "Url"]),
        notes: root
            .attrs
            .iter()
            .map(|(k, val)| format!("{k}={val}"))
            .collect(),
        ..View::default()
    };
    let default: usize = root
        .attr("defaultIndex")
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    for (i, item) in root.all("MenuItem").enumerate() {
        v.items.push(Item {
            label: item.get(&["Prompt", "Name"]),
            target: item.get(&["URI", "URL"]),
            selected: i + 1 == default,
        });
    }
    let yes = |a: Option<&str>| a == Some("yes");
    if v.kind == "input"
        && root.all("InputField").next().is_none()
        && root.all("InputItem").next().is_none()
    {
        v.fields.push(FieldView {
            prompt: root.get(&["Prompt"]),
            param: root.get(&["Parameter"]),
            numeric: root.attr("type") == Some("number"),
            secret: yes(root.attr("password")),
        });
    }
    for f in root.all("InputField") {
        v.fields.push(FieldView {
            prompt: f.get(&["Prompt"]),
            param: f.get(&["Parameter"]),
            numeric: f.attr("type").or(root.attr("type")) == Some("number"),
            secret: yes(f.attr("password")),
        });
        // Each field carries its own keys; the first field's are on screen first.
        if v.softkeys.is_empty() {
            softkeys(f, &mut v.softkeys);
        }
    }
    for f in root.all("InputItem") {
        let flags = f.get(&["InputFlags"]);
        v.fields.push(FieldView {
            prompt: f.get(&["DisplayName"]),
            param: f.get(&["InputToken"]),
            numeric: flags.contains('n'),
            secret: flags.contains('p'),
        });
    }
    softkeys(root, &mut v.softkeys);
    for e in root.all("ExecuteItem") {
        v.commands.push(e.attr("URI").unwrap_or("").to_owned());
    }
    for f in root.all("Fetch") {
        let after = f
            .attr("mil")
            .map_or(String::new(), |m| format!(" after {m} ms"));
        v.commands.push(format!("fetch {}{after}", f.text));
    }
    for c in root.all("ConfigurationItem") {
        v.commands
            .push(format!("{}: {}", c.get(&["Parameter"]), c.get(&["Value"])));
    }
    v
}

// --- the page -----------------------------------------------------------------------------

#[derive(Serialize)]
struct Shown {
    name: &'static str,
    xml: String,
    bytes: usize,
    view: Option<View>,
}

async fn page(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let q = parse_query(q.as_deref());
    let vendors: Vec<&str> = vendor::all().iter().map(|f| f.id()).collect();
    let asked = q.get("vendor").map(|v| v.trim()).filter(|v| !v.is_empty());
    let family = match asked {
        None => vendor::all()[0],
        Some(v) => match vendor::by_name(v) {
            Some(f) => f,
            None => return error(&session, StatusCode::BAD_REQUEST, "No such vendor."),
        },
    };
    let model = q
        .get("model")
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    let known = KNOWN.iter().filter(|k| k.vendor == family.id());
    let model = match model {
        Some(m) if vendor::valid_model(&m) => m,
        Some(_) => {
            let msg = "A model is letters, digits, - and _ (at most 32).";
            return error(&session, StatusCode::BAD_REQUEST, msg);
        }
        None => match known.clone().next() {
            Some(k) => k.model.clone(),
            None => {
                let msg = "No model of this vendor is in the User-Agent corpus: type one.";
                return error(&session, StatusCode::BAD_REQUEST, msg);
            }
        },
    };
    let in_corpus = known.clone().find(|k| k.model.eq_ignore_ascii_case(&model));
    let firmware = q
        .get("firmware")
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .or_else(|| in_corpus.map(|k| k.firmware.clone()))
        .unwrap_or_default();
    if firmware.len() > 40
        || !firmware
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        let msg = "A firmware version is letters, digits, dots and dashes.";
        return error(&session, StatusCode::BAD_REQUEST, msg);
    }
    let h = handset(family, &model, &firmware);
    let reload = reload_for(&ctx.app, h.vendor);
    let base = ctx.app.config.base().to_owned();
    let shown: Vec<Shown> = flow_screens(&ctx.app, &h, reload)
        .into_iter()
        .map(|(name, screen)| {
            let target = Target {
                handset: &h,
                base: &base,
                reload,
            };
            let body = vendor::render(&screen, target).body;
            let xml = String::from_utf8_lossy(&body).into_owned();
            let view = parse(&xml).map(|root| view(&root));
            Shown {
                name,
                bytes: body.len(),
                xml,
                view,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        "preview.html",
        context! {
            page => "preview", who => session.who, csrf => session.csrf,
            vendors => vendors, vendor => family.id(), model => model, firmware => firmware,
            known => &*KNOWN, in_corpus => in_corpus.is_some(),
            caps => context! {
                softkeys => h.caps.softkeys, multi_field_input => h.caps.multi_field_input,
                max_menu_items => h.caps.max_menu_items, max_bytes => h.caps.max_bytes,
                identities => h.caps.identities,
            },
            reload => format!("{reload:?}"), screens => shown,
            fake_extension => FAKE_EXTENSION, fake_name => FAKE_NAME,
        },
    )
}

fn error(session: &super::session::Session, status: StatusCode, msg: &str) -> Response {
    let vendors: Vec<&str> = vendor::all().iter().map(|f| f.id()).collect();
    render(
        status,
        "preview.html",
        context! {
            page => "preview", who => session.who, csrf => session.csrf,
            vendors => vendors, known => &*KNOWN, error => msg, screens => Vec::<Shown>::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_gives_models_for_the_phone_vendors() {
        for v in ["aastra", "yealink", "snom", "htek"] {
            assert!(KNOWN.iter().any(|k| k.vendor == v), "{v}");
        }
        let t46s = KNOWN.iter().find(|k| k.model.eq_ignore_ascii_case("T46S"));
        assert!(t46s.is_some());
    }

    #[test]
    fn a_menu_reads_back_with_items_softkeys_and_escaped_text() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<YealinkIPPhoneTextMenu destroyOnExit="yes" defaultIndex="2">
 <Title>2001 Zoë &lt;&amp;&gt;</Title>
 <MenuItem><Prompt>Log out</Prompt><URI>http://h/app/logout?a=1&amp;b=2</URI></MenuItem>
 <MenuItem><Prompt>Other</Prompt><URI>http://h/app/login</URI></MenuItem>
 <SoftKey index="1"><Label>Select</Label><URI>SoftKey:Select</URI></SoftKey>
</YealinkIPPhoneTextMenu>"#;
        let v = view(&parse(xml).unwrap());
        assert_eq!(v.kind, "menu");
        assert_eq!(v.title, "2001 Zoë <&>");
        assert_eq!(v.items.len(), 2);
        assert_eq!(v.items[0].target, "http://h/app/logout?a=1&b=2");
        assert!(!v.items[0].selected && v.items[1].selected);
        assert_eq!(v.softkeys[0].label, "Select");
        assert!(v.notes.contains(&"defaultIndex=2".to_owned()));
    }

    #[test]
    fn snom_inputs_and_aastra_executes_read_back() {
        let snom = r#"<SnomIPPhoneInput><Title>Hot desk login</Title><Url>http://h/x</Url>
<InputItem><DisplayName>PIN:</DisplayName><InputToken>__Y__</InputToken><InputFlags>pn</InputFlags></InputItem>
</SnomIPPhoneInput>"#;
        let v = view(&parse(snom).unwrap());
        assert_eq!(v.kind, "input");
        assert_eq!(v.submit, "http://h/x");
        assert!(v.fields[0].numeric && v.fields[0].secret);
        let exec = r#"<AastraIPPhoneExecute><ExecuteItem URI="Command: ClearCallersList"/></AastraIPPhoneExecute>"#;
        let v = view(&parse(exec).unwrap());
        assert_eq!(v.kind, "execute");
        assert_eq!(v.commands, ["Command: ClearCallersList"]);
        assert!(parse("<a><b></a>").is_none());
    }
}
