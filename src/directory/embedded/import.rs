//! `hotdesk import-users FILE` and `export-users`: today's TOML directory (`[[user]]` with
//! extension, name, voicemail_pin, sip_password, template) or a CSV with the header
//! `extension,name,pin,sip_secret,template,email` (RFC 4180). Everything is checked first;
//! then every user is written in one transaction, so a file is imported whole or not at all.
//! The export has the same columns with `pin` and `sip_secret` left empty: it never holds a
//! secret, and importing it back changes no PIN or SIP secret.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use time::OffsetDateTime;

use super::sealing::SealKey;
use super::{NewUser, UserRecord, secrets};
use crate::secret::Secret;
use crate::store::{AuditEvent, EventKind, SqliteStore, UserWrite};

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 6] = [
    "extension",
    "name",
    "pin",
    "sip_secret",
    "template",
    "email",
];

/// At most this many problems are listed for one file.
const MAX_PROBLEMS: usize = 20;

/// Reads and checks a TOML or CSV file (by its extension); every problem is listed, with
/// its line for a CSV.
pub fn read(path: &Path) -> Result<Vec<NewUser>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => parse_csv(&text),
        Some(e) if e.eq_ignore_ascii_case("toml") => parse_toml(&text, path),
        _ => Err(format!(
            "{}: name a .toml directory file or a .csv file",
            path.display()
        )),
    }
    .map_err(|e| format!("{}: {e}", path.display()))
}

fn empty_to_none(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Today's directory file format.
pub fn parse_toml(text: &str, path: &Path) -> Result<Vec<NewUser>, String> {
    let users = crate::directory::file::parse(text, path)?;
    let mut out: Vec<NewUser> = Vec::with_capacity(users.len());
    let mut problems = Vec::new();
    for u in users.values() {
        if u.sip_username.is_some() {
            problems.push(format!(
                "user {}: sip_username is not kept by the embedded directory",
                u.extension
            ));
        }
        let user = NewUser {
            extension: u.extension.clone(),
            name: u.name.clone(),
            pin: u.voicemail_pin.clone().filter(|p| !p.is_empty()),
            sip_secret: Some(u.sip_password.clone()).filter(|s| !s.is_empty()),
            template: u.template.clone(),
            email: None,
            enabled: true,
        };
        if let Err(e) = user.check() {
            problems.push(format!("user {}: {e}", u.extension));
        }
        out.push(user);
    }
    out.sort_by(|a, b| a.extension.cmp(&b.extension));
    finish(out, problems)
}

/// RFC 4180 CSV with the [`CSV_HEADER`] header.
pub fn parse_csv(text: &str) -> Result<Vec<NewUser>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .clone();
    let got: Vec<&str> = header.iter().map(str::trim).collect();
    if got != CSV_HEADER {
        return Err(format!(
            "the header must be `{}` (it is `{}`)",
            CSV_HEADER.join(","),
            got.join(",").escape_debug()
        ));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for row in reader.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(text, p));
                problems.push(format!("line {line}: {}", csv_error(&e)));
                continue;
            }
        };
        let line = row.position().map_or(0, |p| line_at(text, p));
        let field = |i: usize| row.get(i).unwrap_or("");
        let user = NewUser {
            extension: field(0).trim().to_owned(),
            name: field(1).trim().to_owned(),
            pin: empty_to_none(field(2)).map(Secret::new),
            sip_secret: empty_to_none(field(3)).map(Secret::new),
            template: empty_to_none(field(4)),
            email: empty_to_none(field(5)),
            enabled: true,
        };
        if let Err(e) = user.check() {
            problems.push(format!("line {line}: {e}"));
        } else if !seen.insert(user.extension.clone()) {
            problems.push(format!(
                "line {line}: extension {} appears twice",
                user.extension
            ));
        }
        out.push(user);
    }
    finish(out, problems)
}

/// The 1-based line a record starts on. csv's own line count is off by one after CRLF line
/// ends, and its byte offset may point at the previous line's end: skip that, then count.
fn line_at(text: &str, pos: &csv::Position) -> usize {
    let bytes = text.as_bytes();
    let mut start = (pos.byte() as usize).min(bytes.len());
    while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
        start += 1;
    }
    bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A CSV error without the row's content (it may hold a PIN or SIP secret).
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
        _ => "not valid CSV".into(),
    }
}

fn finish(users: Vec<NewUser>, mut problems: Vec<String>) -> Result<Vec<NewUser>, String> {
    if problems.is_empty() {
        return Ok(users);
    }
    let more = problems.len().saturating_sub(MAX_PROBLEMS);
    problems.truncate(MAX_PROBLEMS);
    if more > 0 {
        problems.push(format!("... and {more} more"));
    }
    Err(format!(
        "nothing imported; fix these first:\n  {}",
        problems.join("\n  ")
    ))
}

/// Users naming a template that exists for no brand.
pub fn check_templates(users: &[NewUser], known: &BTreeSet<String>) -> Result<(), String> {
    let missing: Vec<String> = users
        .iter()
        .filter_map(|u| {
            let t = u.template.as_ref()?;
            (!known.contains(t)).then(|| format!("user {} names template `{t}`", u.extension))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "nothing imported; no <brand>/<template>.cfg.j2 or .xml.j2 for: {} (known: {})",
        missing.join(", "),
        known.iter().cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// PINs that import (an old directory's PINs keep working) but an admin should replace.
pub fn warnings(users: &[NewUser]) -> Vec<String> {
    users
        .iter()
        .filter_map(|u| {
            let pin = u.pin.as_ref()?;
            secrets::check_pin(pin.expose(), &u.extension)
                .err()
                .map(|w| {
                    format!(
                        "user {}: weak PIN ({}); set a new one with POST /api/v1/users/{}/pin",
                        u.extension, w.reason, u.extension
                    )
                })
        })
        .collect()
}

/// Hashes, seals and writes `users` in one transaction; existing extensions are updated
/// (keeping their PIN or SIP secret when the file has none, and their enabled flag).
pub fn write(
    store: &SqliteStore,
    key: &SealKey,
    users: &[NewUser],
    actor: &str,
) -> Result<usize, String> {
    let (_, existing) = store.load_users().map_err(|e| e.to_string())?;
    let now = OffsetDateTime::now_utc();
    let mut writes = Vec::with_capacity(users.len());
    let mut events = Vec::with_capacity(users.len());
    for u in users {
        let mut row = u.to_stored(key, now)?;
        let known = existing.iter().find(|e| e.extension == u.extension);
        if let Some(old) = known {
            row.enabled = old.enabled;
        }
        let mut ev = AuditEvent::new(
            EventKind::UserChanged,
            format!(
                "{actor}: user {}",
                if known.is_some() {
                    "updated by import"
                } else {
                    "imported"
                }
            ),
        );
        ev.extension = Some(u.extension.clone());
        events.push(ev);
        writes.push(UserWrite::Put {
            user: row,
            keep_secrets: true,
        });
    }
    store
        .write_users(&writes, &events)
        .map_err(|e| e.to_string())?;
    Ok(users.len())
}

/// The users as CSV, without any secret.
pub fn export_csv(users: &[UserRecord]) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER).map_err(|e| e.to_string())?;
    for u in users {
        w.write_record([
            u.extension.as_str(),
            u.name.as_str(),
            "",
            "",
            u.template.as_deref().unwrap_or(""),
            u.email.as_deref().unwrap_or(""),
        ])
        .map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_checked_and_quoted_fields_read() {
        let ok = "extension,name,pin,sip_secret,template,email\r\n\
                  1001,\"Lovelace, Ada \"\"Countess\"\"\",583920,s3cret-1001,,ada@example.com\r\n\
                  1002,Grace,,,sales,\n";
        let users = parse_csv(ok).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name, "Lovelace, Ada \"Countess\"");
        assert_eq!(users[0].pin.as_ref().unwrap().expose(), "583920");
        assert_eq!(users[1].pin, None);
        assert_eq!(users[1].template.as_deref(), Some("sales"));

        let bad = "extension,name,pin,sip_secret,template,email\n\
                   1001,Ada,583920,leaked-secret,,\n\
                   10x1,Bad,1,s,,\n\
                   1003,Short,1\n\
                   1001,Twice,,,,\n\
                   1004,Mail,,,,not-an-email\n";
        for text in [bad.to_owned(), bad.replace('\n', "\r\n")] {
            let err = parse_csv(&text).unwrap_err();
            for want in [
                "line 3: extension",
                "line 4: 3 fields",
                "line 5: extension 1001 appears twice",
                "line 6:",
                "nothing imported",
            ] {
                assert!(err.contains(want), "{want} in {err}");
            }
            assert!(!err.contains("leaked-secret") && !err.contains("583920"));
        }

        let wrong_header = "ext,name,pin,sip_secret,template,email\n1001,A,,,,\n";
        assert!(parse_csv(wrong_header).unwrap_err().contains("header"));
    }

    #[test]
    fn toml_directory_reads_as_today() {
        let text = "[[user]]\nextension = \"1001\"\nname = \"Ada\"\nvoicemail_pin = \"1234\"\nsip_password = \"demo\"\ntemplate = \"sales\"\n";
        let users = parse_toml(text, Path::new("d.toml")).unwrap();
        assert_eq!(users[0].pin.as_ref().unwrap().expose(), "1234");
        assert_eq!(users[0].sip_secret.as_ref().unwrap().expose(), "demo");
        assert_eq!(warnings(&users).len(), 1, "1234 is a run");
        let known: BTreeSet<String> = ["other".to_owned()].into();
        assert!(
            check_templates(&users, &known)
                .unwrap_err()
                .contains("sales")
        );
    }

    #[test]
    fn export_has_no_secret_and_reads_back() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let rec = UserRecord {
            extension: "1001".into(),
            name: "Lovelace, \"Ada\"".into(),
            template: None,
            enabled: true,
            email: Some("a@example.com".into()),
            has_pin: true,
            has_sip_secret: true,
            created: at,
            updated: at,
        };
        let csv = export_csv(&[rec]).unwrap();
        let back = parse_csv(&csv).unwrap();
        assert_eq!(back[0].name, "Lovelace, \"Ada\"");
        assert_eq!(
            (back[0].pin.is_none(), back[0].sip_secret.is_none()),
            (true, true)
        );
    }
}
