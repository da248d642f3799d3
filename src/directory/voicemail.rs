//! Asterisk/FreePBX `voicemail.conf` as a directory: `mailbox => PIN,name,email,pager,options`
//! in context sections (FreePBX writes `=` instead of `=>`). Supports `;` comments, `;-- --;`
//! block comments, `#include`/`#tryinclude` (relative to the including file) and section
//! suffixes like `(!)`/`(+)`. Re-read when the file or an included file changes.
//!
//! voicemail.conf holds no SIP secrets; users from it have an empty `sip_password`.
//! `passwordlocation=spooldir` (PINs in per-mailbox `secret.conf`) is not read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::reload::{Loader, Reloading, Users};
use super::{User, valid_extension};
use crate::secret::Secret;

/// Sections that hold settings, not mailboxes (Asterisk sample; FreePBX's Voicemail.class.php).
const NOT_MAILBOXES: [&str; 4] = ["general", "zonemessages", "pbxaliases", "device"];
/// Include depth at most; deeper is an include loop.
const MAX_DEPTH: usize = 8;

/// voicemail.conf at `path` (optionally one `context`), re-read when it or an included file
/// changes (an error stops start-up).
pub fn open(path: PathBuf, context: Option<String>, poll: Duration) -> Result<Reloading, String> {
    let loader: Loader = Arc::new(move || parse_file(&path, context.as_deref()));
    Reloading::start("voicemail.conf", loader, poll)
}

/// Reads `path` and its includes; returns the mailboxes and every file read.
pub fn parse_file(path: &Path, context: Option<&str>) -> Result<(Users, Vec<PathBuf>), String> {
    let mut lines = Vec::new();
    let mut files = Vec::new();
    read_with_includes(path, 0, &mut lines, &mut files)?;
    let mut users = HashMap::new();
    let mut section = String::new();
    for (file, number, line) in lines {
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or("");
            section = name.trim().to_owned();
            continue;
        }
        if NOT_MAILBOXES.contains(&section.as_str()) || section.is_empty() {
            continue;
        }
        if context.is_some_and(|c| c != section) {
            continue;
        }
        let Some((mailbox, value)) = line.split_once("=>").or_else(|| line.split_once('=')) else {
            return Err(format!(
                "{}:{number}: expected `mailbox => PIN,name,...`",
                file.display()
            ));
        };
        let mailbox = mailbox.trim();
        let value = value.trim_start_matches('>').trim();
        if !valid_extension(mailbox) {
            return Err(format!(
                "{}:{number}: `{}` is not a mailbox number",
                file.display(),
                mailbox.escape_debug()
            ));
        }
        let mut fields = value.split(',');
        // A leading '-' marks a PIN the user may not change.
        let pin = fields.next().unwrap_or("").trim().trim_start_matches('-');
        let name = fields.next().unwrap_or("").trim();
        let user = User {
            extension: mailbox.to_owned(),
            name: if name.is_empty() {
                mailbox.to_owned()
            } else {
                name.to_owned()
            },
            voicemail_pin: (!pin.is_empty()).then(|| Secret::new(pin)),
            sip_password: Secret::default(),
            template: None,
        };
        // The first context that defines a mailbox wins, as a dialplan lookup by number would.
        users
            .entry(user.extension.clone())
            .or_insert_with(|| Arc::new(user));
    }
    Ok((users, files))
}

/// Flattens the file and its includes into (file, line number, content) with comments gone.
fn read_with_includes(
    path: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, usize, String)>,
    files: &mut Vec<PathBuf>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: #include nested deeper than {MAX_DEPTH} (a loop?)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    files.push(path.to_owned());
    let mut in_block = false;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comments(raw, &mut in_block);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(directive) = line.strip_prefix('#') {
            let (word, arg) = directive
                .split_once(char::is_whitespace)
                .unwrap_or((directive, ""));
            let arg = arg.trim().trim_matches('"');
            let target = path.parent().unwrap_or(Path::new(".")).join(arg);
            match word {
                "include" => read_with_includes(&target, depth + 1, out, files)?,
                "tryinclude" if target.exists() => {
                    read_with_includes(&target, depth + 1, out, files)?
                }
                "tryinclude" => {}
                _ => tracing::warn!(file = %path.display(), line = i + 1, "ignoring #{word}"),
            }
            continue;
        }
        out.push((path.to_owned(), i + 1, line.to_owned()));
    }
    Ok(())
}

/// Removes `; comments` and `;-- block comments --;`; `\;` is a literal semicolon.
fn strip_comments(line: &str, in_block: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if *in_block {
            match rest.find("--;") {
                Some(end) => {
                    *in_block = false;
                    rest = &rest[end + 3..];
                }
                None => return out,
            }
        }
        match rest.find(';') {
            None => {
                out.push_str(rest);
                return out;
            }
            Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\\' => {
                out.push_str(&rest[..i - 1]);
                out.push(';');
                rest = &rest[i + 1..];
            }
            Some(i) if rest[i..].starts_with(";--") => {
                out.push_str(&rest[..i]);
                *in_block = true;
                rest = &rest[i + 3..];
            }
            Some(i) => {
                out.push_str(&rest[..i]);
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
[general]
format=wav49|gsm|wav
maxmsg=100 ; inline comment

[zonemessages]
eastern=America/New_York|'vm-received' Q 'digits/at' IMp

;-- a block comment
1999 => 0000,Not Real
--;
[default]
1001 => 4242,Ada Lovelace,ada@example.com,,attach=yes|saycid=yes
1002 => -8642,Grace Hopper ; unchangeable PIN
1003 => ,No Pin User
1004=1357,FreePBX Style,,,attach=no
#include \"more.conf\"
#tryinclude \"missing.conf\"

[other](+)
1001 => 9999,Shadowed
2001 => 1111,Other Context
";

    fn write(dir: &Path) -> PathBuf {
        std::fs::write(
            dir.join("more.conf"),
            "[default]\n1005 => 2468,From Include\n",
        )
        .unwrap();
        let p = dir.join("voicemail.conf");
        std::fs::write(&p, SAMPLE).unwrap();
        p
    }

    #[test]
    fn reads_mailboxes_like_asterisk() {
        let dir = tempfile::tempdir().unwrap();
        let (users, files) = parse_file(&write(dir.path()), None).unwrap();
        assert_eq!(files.len(), 2, "the include is watched too");
        let pin = |e: &str| {
            users[e]
                .voicemail_pin
                .as_ref()
                .map(|p| p.expose().to_owned())
        };
        assert_eq!(users["1001"].name, "Ada Lovelace");
        assert_eq!(pin("1001").as_deref(), Some("4242"), "first context wins");
        assert_eq!(pin("1002").as_deref(), Some("8642"));
        assert_eq!(users["1002"].name, "Grace Hopper");
        assert_eq!(pin("1003"), None);
        assert_eq!(pin("1004").as_deref(), Some("1357"));
        assert_eq!(users["1005"].name, "From Include");
        assert_eq!(users["2001"].name, "Other Context");
        assert!(!users.contains_key("1999"), "block comments are skipped");
        assert_eq!(users.len(), 6);
    }

    #[test]
    fn context_filter() {
        let dir = tempfile::tempdir().unwrap();
        let (users, _) = parse_file(&write(dir.path()), Some("other")).unwrap();
        let mut keys: Vec<_> = users.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["1001", "2001"]);
        assert_eq!(users["1001"].name, "Shadowed");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.conf");
        std::fs::write(&p, "[default]\n1001 => 1,a\nnonsense line\n").unwrap();
        let err = parse_file(&p, None).unwrap_err();
        assert!(err.contains("v.conf:3"), "{err}");
        std::fs::write(&p, "#include \"v.conf\"\n").unwrap();
        assert!(parse_file(&p, None).unwrap_err().contains("loop"));
        std::fs::write(&p, "#include \"nope.conf\"\n").unwrap();
        assert!(parse_file(&p, None).unwrap_err().contains("nope.conf"));
    }

    #[test]
    fn comments() {
        let mut block = false;
        assert_eq!(strip_comments("a = b ; c", &mut block), "a = b ");
        assert_eq!(strip_comments("a = b\\;c", &mut block), "a = b;c");
        assert_eq!(strip_comments("x ;-- start", &mut block), "x ");
        assert!(block);
        assert_eq!(strip_comments("inside", &mut block), "");
        assert_eq!(strip_comments("end --; y", &mut block), " y");
        assert!(!block);
    }
}
