//! The effective configuration, read-only, with every secret masked. It is rendered from the
//! file hotdesk parsed at start, re-read as a TOML tree and masked structurally: any key whose
//! name holds a secret word (password, secret, token, hash, key, pin, ...) loses its value,
//! and so does everything under it; values that look like password hashes lose theirs
//! whatever their key; URLs lose their user info and secret-looking query values.

use axum::Router;
use axum::extract::Extension;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Serialize;

use super::console::signed_in;
use super::render;
use crate::server::routes::Ctx;

/// Parts of a key name that mark its value as secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "hash",
    "key",
    "pin",
    "credential",
    "cookie",
    "authorization",
    "private",
    "salt",
];

/// Keys whose names hold a secret word but whose values are not secret: file paths, how
/// long or how many, switches, and the list of API keys (whose hashes are masked inside).
const SAFE: &[&str] = &[
    "tls.key",
    "admin.keys",
    "login.logout_requires_pin",
    "directory.pin_length",
    "directory.wazo.token_expiration",
];

const MASK: &str = "•••••• (masked)";

pub fn routes() -> Router {
    Router::new().route("/admin/config", get(page))
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Row {
    key: String,
    value: String,
    masked: bool,
}

fn secret_name(name: &str, path: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !SAFE.contains(&path) && SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// A PHC string (`$argon2id$...`, `$6$...`): a hash, whatever its key is called.
fn looks_like_hash(s: &str) -> bool {
    s.starts_with('$') && s.matches('$').count() >= 2
}

/// `url` without `user:password@`, and with the values of secret-named query parameters
/// masked.
pub(super) fn without_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("•••@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').unwrap_or((query, ""));
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                let secret = secret_name(&k, "");
                q.append_pair(&k, if secret { "•••" } else { &v });
            }
            let fragment = if fragment.is_empty() {
                String::new()
            } else {
                format!("#{fragment}")
            };
            format!("{path}?{}{fragment}", q.finish())
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{host}{tail}")
}

/// Flattens `table` into `key = value` rows, masking as described above.
fn rows(table: &toml::Table, prefix: &str, path: &str, tainted: bool, out: &mut Vec<Row>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let at = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let secret = tainted || secret_name(name, &at);
        leaf_or_tree(value, key, &at, secret, out);
    }
}

fn leaf_or_tree(value: &toml::Value, key: String, path: &str, secret: bool, out: &mut Vec<Row>) {
    match value {
        toml::Value::Table(t) => rows(t, &key, path, secret, out),
        toml::Value::Array(items)
            if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
        {
            for (i, item) in items.iter().enumerate() {
                leaf_or_tree(item, format!("{key}[{i}]"), path, secret, out);
            }
        }
        _ if secret || holds_hash(value) => out.push(Row {
            key,
            value: MASK.to_owned(),
            masked: true,
        }),
        _ => out.push(Row {
            key,
            value: shown(value),
            masked: false,
        }),
    }
}

fn holds_hash(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => looks_like_hash(s),
        toml::Value::Array(items) => items.iter().any(holds_hash),
        _ => false,
    }
}

fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) if s.contains("://") => {
            toml::Value::String(without_userinfo(s)).to_string()
        }
        toml::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// The masked rows of a config file's text.
fn masked(text: &str) -> Result<Vec<Row>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    rows(&table, "", "", false, &mut out);
    Ok(out)
}

async fn page(Extension(ctx): Extension<Ctx>, headers: HeaderMap) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let (rows, error) = match masked(ctx.app.config.source.expose()) {
        Ok(rows) => (rows, None),
        // The file parsed at start, so this is a bug; the message holds no value (toml
        // quotes the line, so it is not shown).
        Err(_) => (Vec::new(), Some("The configuration text cannot be shown.")),
    };
    render(
        StatusCode::OK,
        "config.html",
        context! {
            page => "config", who => session.who, csrf => session.csrf,
            rows => rows, error => error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
listen = "0.0.0.0:8080"
base_url = "https://hd.example.net"
[server]
url_key = "0123456789abcdef-url-key"
[directory]
kind = "http"
pin_length = 6
[directory.http]
url = "https://svc:basic-pass@pbx.example.net/users?apikey=query-secret&page=2"
token = "upstream-token-123"
[directory.wazo]
password = "wazo-pass"
token_expiration = "1h"
[login]
user_password = "24681357"
admin_password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
logout_requires_pin = true
[admin]
api_keys = ["$argon2id$v=19$legacy$x"]
[[admin.keys]]
name = "ops"
hash = "sha256:feedface"
[[admin.accounts]]
name = "alice"
password_hash = "$argon2id$alice"
[reload.ami]
secret = "ami-secret"
[base]
extension = "9999"
secret = "base-sip-secret"
[tls]
cert = "/etc/hotdesk/cert.pem"
key = "/etc/hotdesk/key.pem"
[somewhere.credentials]
user = "u"
pass = "nested-under-a-secret-name"
"#;

    #[test]
    fn every_secret_is_masked_and_the_rest_shown() {
        let rows = masked(TEXT).unwrap();
        let all = format!("{rows:?}");
        for secret in [
            "0123456789abcdef-url-key",
            "basic-pass",
            "query-secret",
            "upstream-token-123",
            "wazo-pass",
            "24681357",
            "argon2",
            "feedface",
            "ami-secret",
            "base-sip-secret",
            "nested-under-a-secret-name",
        ] {
            assert!(!all.contains(secret), "{secret} shown: {all}");
        }
        let value = |k: &str| {
            rows.iter()
                .find(|r| r.key == k)
                .unwrap_or_else(|| panic!("{k} missing: {all}"))
                .value
                .clone()
        };
        assert_eq!(value("listen"), "\"0.0.0.0:8080\"");
        assert_eq!(value("tls.key"), "\"/etc/hotdesk/key.pem\"");
        assert_eq!(value("admin.keys[0].name"), "\"ops\"");
        assert_eq!(value("admin.keys[0].hash"), MASK);
        assert_eq!(value("admin.accounts[0].name"), "\"alice\"");
        assert_eq!(value("login.logout_requires_pin"), "true");
        assert_eq!(value("directory.pin_length"), "6");
        assert_eq!(value("directory.wazo.token_expiration"), "\"1h\"");
        assert_eq!(value("somewhere.credentials.user"), MASK);
        assert_eq!(
            value("directory.http.url"),
            "\"https://•••@pbx.example.net/users?apikey=%E2%80%A2%E2%80%A2%E2%80%A2&page=2\""
        );
    }

    #[test]
    fn urls_lose_user_info_only() {
        assert_eq!(
            without_userinfo("http://10.0.0.5:8088/ari"),
            "http://10.0.0.5:8088/ari"
        );
        assert_eq!(
            without_userinfo("https://a:b@c@host/x#f"),
            "https://•••@host/x#f"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
    }
}
