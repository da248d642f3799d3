//! Asterisk's configuration file syntax, read as `main/config.c` (asterisk/asterisk at
//! f0c1c1a7b7) reads it, for voicemail.conf, pjsip.conf, sip.conf and secret.conf:
//!
//! - `[name]` sections; `[name](!)` templates, `[name](a,b)` inheriting a's and b's
//!   variables first, `[name](+)` adding to the first section of that name and
//!   `[name](+type=auth)` to the first whose variables match (l.2060-2150, l.1065-1204);
//! - `name = value` and `name => value`, split at the first `=` (l.2306-2330);
//! - `;` comments, `\;` for a literal semicolon, `;-- --;` block comments that nest;
//! - `#include` / `#tryinclude` (directive names case-insensitive, l.2188-2192), argument in
//!   `"…"` or `<…>` (l.2213-2222), relative to the configuration folder (l.2395: Asterisk's
//!   config dir, here the folder of the top file), expanded as a glob (l.2411) whose matches
//!   are read in order; `#exec` is not run;
//! - a line Asterisk warns about (no `=`, no section yet, no closing `]`) is skipped with a
//!   warning naming the file and line (l.2356), never fatal.

use std::path::{Path, PathBuf};

/// Include depth at most; deeper is an include loop.
const MAX_DEPTH: usize = 8;
/// Larger files are refused.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Asterisk's own limit for nested block comments (`MAX_NESTED_COMMENTS`).
const MAX_NESTED_COMMENTS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub value: String,
    /// `file:line`, for warnings about this line.
    pub at: String,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    /// `(!)`: only there to be inherited from.
    pub template: bool,
    /// Inherited variables first, then its own, in file order.
    pub vars: Vec<Var>,
}

impl Section {
    /// The last value of `name` (later lines override inherited ones), case-insensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|v| v.name.eq_ignore_ascii_case(name))
            .map(|v| v.value.as_str())
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub sections: Vec<Section>,
    /// Every file read, and every include pattern's folder, so changes can be watched.
    pub files: Vec<PathBuf>,
    /// Lines skipped, each naming its file and line.
    pub warnings: Vec<String>,
}

impl Parsed {
    /// Sections named `name` (case-insensitive, as `ast_category_get`), templates excluded.
    pub fn sections_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> {
        self.sections
            .iter()
            .filter(move |s| !s.template && s.name.eq_ignore_ascii_case(name))
    }

    /// `name` in the first `[section]` that has it.
    pub fn value<'a>(&'a self, section: &'a str, name: &str) -> Option<&'a str> {
        self.sections_named(section).find_map(|s| s.get(name))
    }
}

/// Reads `path` and everything it includes; the caller logs or prints the warnings. Only a missing or unreadable top file, a missing
/// `#include` (not `#tryinclude`) or an include loop is an error, as in Asterisk.
pub fn read(path: &Path) -> Result<Parsed, String> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    let mut reader = Reader {
        dir,
        out: Parsed::default(),
        current: None,
    };
    reader.file(path, 0)?;
    Ok(reader.out)
}

struct Reader {
    /// Where relative includes are looked up.
    dir: PathBuf,
    out: Parsed,
    /// Index of the section lines go to; none before the first section or after a bad header.
    current: Option<usize>,
}

impl Reader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{}: #include nested deeper than {MAX_DEPTH} (a loop?)",
                path.display()
            ));
        }
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // A device (an `#include /dev/zero`) or a huge file would never finish reading.
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{} is not a regular file under {} MiB",
                path.display(),
                MAX_FILE_BYTES >> 20
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.out.files.push(path.to_owned());
        let mut nesting = 0usize;
        for (i, raw) in text.lines().enumerate() {
            let at = || format!("{}:{}", path.display(), i + 1);
            let line = strip_comments(raw, &mut nesting);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(directive) = line.strip_prefix('#') {
                self.directive(directive, path, i + 1, depth)?;
            } else if let Some(header) = line.strip_prefix('[') {
                self.header(header, &at());
            } else {
                self.variable(line, &at());
            }
        }
        Ok(())
    }

    fn directive(&mut self, d: &str, path: &Path, line: usize, depth: usize) -> Result<(), String> {
        let at = format!("{}:{line}", path.display());
        let (word, arg) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        let required = if word.eq_ignore_ascii_case("include") {
            true
        } else if word.eq_ignore_ascii_case("tryinclude") {
            false
        } else {
            self.warn(
                &at,
                format!("#{word} is not followed (only #include and #tryinclude are)"),
            );
            return Ok(());
        };
        let arg = unquote(arg.trim());
        if arg.is_empty() {
            self.warn(&at, format!("#{word} needs a file name"));
            return Ok(());
        }
        let pattern = if Path::new(arg).is_absolute() {
            PathBuf::from(arg)
        } else {
            self.dir.join(arg)
        };
        let matches: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
            .map(|paths| paths.filter_map(Result::ok).collect())
            .unwrap_or_default();
        let text = pattern.to_string_lossy();
        if text.contains(['*', '?', '[']) {
            // A file that appears later changes the folder: watch it.
            if let Some(parent) = pattern.parent() {
                self.out.files.push(parent.to_owned());
            }
        } else if matches.is_empty() {
            // A #tryinclude that appears later is picked up.
            self.out.files.push(pattern.clone());
        }
        if matches.is_empty() {
            if required {
                return Err(format!(
                    "{at}: #include {} matches no file",
                    pattern.display()
                ));
            }
            return Ok(());
        }
        for m in matches {
            self.file(&m, depth + 1)?;
        }
        Ok(())
    }

    fn header(&mut self, header: &str, at: &str) {
        let Some((name, rest)) = header.split_once(']') else {
            self.warn(at, "section header without a closing ']'".into());
            self.current = None;
            return;
        };
        let name = name.trim().to_owned();
        let options: Vec<&str> = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map(|(inside, _)| inside.split(',').map(str::trim).collect())
            .unwrap_or_default();
        if let Some(add) = options.iter().find_map(|o| o.strip_prefix('+')) {
            // `(+)` adds to the first non-template section of that name; `(+type=auth)` to the
            // first whose variables match (config.c `category_get_sep`, `does_category_match`;
            // Asterisk compares the filter as regular expressions, hotdesk as plain text).
            let filter: Vec<(&str, &str)> = add
                .split('&')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            let found = self.out.sections.iter().position(|s| {
                s.name.eq_ignore_ascii_case(&name)
                    && !s.template
                    && filter.iter().all(|(k, v)| s.get(k) == Some(*v))
            });
            match found {
                Some(i) => self.current = Some(i),
                None => {
                    self.warn(
                        at,
                        format!(
                            "[{name}]({}) adds to a section that does not exist",
                            options.join(",")
                        ),
                    );
                    self.current = None;
                }
            }
            return;
        }
        let mut section = Section {
            name,
            template: options.contains(&"!"),
            vars: Vec::new(),
        };
        for base in options.iter().filter(|o| !matches!(**o, "!" | "")) {
            // The first section of that name, templates included ("TEMPLATES=include").
            match self
                .out
                .sections
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(base))
            {
                Some(b) => section.vars.extend(b.vars.iter().cloned()),
                None => self.warn(
                    at,
                    format!("inherits from `{base}`, which is not defined above"),
                ),
            }
        }
        self.out.sections.push(section);
        self.current = Some(self.out.sections.len() - 1);
    }

    fn variable(&mut self, line: &str, at: &str) {
        let Some((name, value)) = line.split_once('=') else {
            self.warn(at, "no '=' in this line; skipped".into());
            return;
        };
        let value = value.strip_prefix('>').unwrap_or(value);
        let name = name.trim();
        if name.is_empty() {
            self.warn(at, "no name before '='; skipped".into());
            return;
        }
        let Some(i) = self.current else {
            self.warn(at, "not inside a [section]; skipped".into());
            return;
        };
        self.out.sections[i].vars.push(Var {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            at: at.to_owned(),
        });
    }

    fn warn(&mut self, at: &str, what: String) {
        self.out.warnings.push(format!("{at}: {what}"));
    }
}

/// `"file"` or `<file>` → `file`; anything else as it is.
fn unquote(arg: &str) -> &str {
    for (open, close) in [('"', '"'), ('<', '>')] {
        if let Some(inner) = arg.strip_prefix(open).and_then(|a| a.strip_suffix(close)) {
            return inner;
        }
    }
    arg
}

/// Removes `; comments` and `;-- block comments --;` (which nest); `\;` is a literal semicolon.
fn strip_comments(line: &str, nesting: &mut usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        if *nesting > 0 {
            let open = rest.find(";--");
            let close = rest.find("--;");
            match (open, close) {
                (Some(o), c) if c.is_none_or(|c| o < c) => {
                    *nesting = (*nesting + 1).min(MAX_NESTED_COMMENTS);
                    rest = &rest[o + 3..];
                }
                (_, Some(c)) => {
                    *nesting -= 1;
                    rest = &rest[c + 3..];
                }
                _ => return out,
            }
            continue;
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
                *nesting = 1;
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

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn comments_nest_and_escape() {
        let mut n = 0;
        assert_eq!(strip_comments("a = b ; c", &mut n), "a = b ");
        assert_eq!(strip_comments("a = b\\;c", &mut n), "a = b;c");
        assert_eq!(strip_comments("x ;-- start", &mut n), "x ");
        assert_eq!(n, 1);
        assert_eq!(strip_comments("inside ;-- deeper", &mut n), "");
        assert_eq!(n, 2);
        assert_eq!(strip_comments("--; still inside", &mut n), "");
        assert_eq!(strip_comments("end --; y", &mut n), " y");
        assert_eq!(n, 0);
    }

    #[test]
    fn templates_inheritance_and_additions() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.conf",
            "[base](!)\ntype=auth\nauth_type=userpass\n[1001](base)\npassword=x=y\nusername => 1001\n[1001](+)\nextra=1\n",
        );
        let parsed = read(&p).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let s: Vec<_> = parsed.sections_named("1001").collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].get("type"), Some("auth"), "inherited");
        assert_eq!(s[0].get("password"), Some("x=y"), "split at the first '='");
        assert_eq!(s[0].get("USERNAME"), Some("1001"));
        assert_eq!(s[0].get("extra"), Some("1"), "(+) adds to it");
        assert_eq!(
            parsed.sections_named("base").count(),
            0,
            "templates are not sections"
        );
    }

    #[test]
    fn additions_go_to_the_first_matching_section() {
        // FreePBX names a pjsip endpoint, its auth and its aor alike, and adds with (+).
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "pjsip.conf",
            "[1001]\ntype=endpoint\n[1001]\ntype=auth\n[1001](+type=auth)\npassword=p\n[1001](+)\nauth=1001\n",
        );
        let parsed = read(&p).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let s: Vec<_> = parsed.sections_named("1001").collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("auth"), Some("1001"), "(+) is the first one");
        assert_eq!(
            s[1].get("password"),
            Some("p"),
            "(+type=auth) the matching one"
        );
    }

    #[test]
    fn includes_resolve_as_asterisk_does() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "parts/a.conf", "[a]\nk=1\n");
        write(dir.path(), "parts/b.conf", "[b]\nk=2\n");
        write(dir.path(), "angle.conf", "[angle]\nk=3\n");
        // Relative to the configuration folder, not to the including file.
        write(dir.path(), "parts/nested.conf", "#include \"angle.conf\"\n");
        let p = write(
            dir.path(),
            "top.conf",
            "#INCLUDE \"parts/[ab].conf\"\n#include <angle.conf>\n#tryinclude missing/*.conf\n#TryInclude parts/nested.conf\n#exec /bin/true\n",
        );
        let parsed = read(&p).unwrap();
        let names: Vec<_> = parsed.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "angle", "angle"]);
        assert_eq!(
            parsed.warnings.len(),
            1,
            "#exec is not run: {:?}",
            parsed.warnings
        );
        assert!(parsed.warnings[0].contains("top.conf:5"));

        let p = write(dir.path(), "bad.conf", "#include \"nope/*.conf\"\n");
        assert!(read(&p).unwrap_err().contains("bad.conf:1"));
        let p = write(dir.path(), "loop.conf", "#include \"loop.conf\"\n");
        assert!(read(&p).unwrap_err().contains("loop"));
        let p = write(dir.path(), "dev.conf", "#include /dev/zero\n");
        assert!(read(&p).unwrap_err().contains("not a regular file"));
    }

    proptest::proptest! {
        /// Any text is read or explained: never a panic, and every warning names its line.
        /// (No `/`: an include must stay inside the test folder.)
        #[test]
        fn any_text_is_read_or_explained(lines in proptest::collection::vec("[ -.0-~]{0,40}", 0..30)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("any.conf");
            std::fs::write(&p, lines.join("\n")).unwrap();
            if let Ok(parsed) = read(&p) {
                for w in &parsed.warnings {
                    proptest::prop_assert!(w.contains("any.conf:"), "{}", w);
                }
            }
        }
    }

    #[test]
    fn bad_lines_are_skipped_with_their_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "w.conf",
            "stray=1\n[ok]\nnonsense line\n = novalue\n[broken\nlost=1\n[more](+)\n[ok](nope)\ngood=1\n",
        );
        let parsed = read(&p).unwrap();
        let lines: Vec<_> = parsed
            .warnings
            .iter()
            .map(|w| w.split(':').nth(1).unwrap().to_owned())
            .collect();
        assert_eq!(
            lines,
            ["1", "3", "4", "5", "6", "7", "8"],
            "{:?}",
            parsed.warnings
        );
        assert_eq!(parsed.value("ok", "good"), Some("1"));
    }
}
