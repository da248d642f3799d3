//! The embedded directory: a TOML file of `[[user]]` tables, re-read when it changes.
//! A broken edit is logged and the last good version stays in use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::reload::{Loader, Reloading, Users};
use super::{User, valid_extension};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    user: Vec<User>,
}

/// Reads and checks a directory file.
pub fn load(path: &Path) -> Result<Users, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, path)
}

/// Parses and checks directory text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Users, String> {
    let file: DirectoryFile =
        toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut users = HashMap::with_capacity(file.user.len());
    for (i, user) in file.user.into_iter().enumerate() {
        if !valid_extension(&user.extension) {
            return Err(format!(
                "{}: user #{} has extension `{}`; use up to 32 digits, letters or * # + _ - .",
                path.display(),
                i + 1,
                user.extension.escape_debug()
            ));
        }
        if let Some(previous) = users.insert(user.extension.clone(), Arc::new(user)) {
            return Err(format!(
                "{}: extension {} appears twice",
                path.display(),
                previous.extension
            ));
        }
    }
    Ok(users)
}

/// The embedded directory at `path`, re-read when it changes (an error stops start-up).
pub fn open(path: PathBuf, poll: Duration) -> Result<Reloading, String> {
    let loader: Loader = Arc::new(move || load(&path).map(|users| (users, vec![path.clone()])));
    Reloading::start("directory file", loader, poll)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Directory;

    #[test]
    fn rejects_duplicates_and_bad_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.toml");
        let user = |ext: &str| {
            format!("[[user]]\nextension = \"{ext}\"\nname = \"x\"\nsip_password = \"s\"\n")
        };
        std::fs::write(&p, user("1001") + &user("1001")).unwrap();
        assert!(load(&p).unwrap_err().contains("twice"));
        std::fs::write(&p, user("10 01")).unwrap();
        assert!(load(&p).unwrap_err().contains("extension"));
        std::fs::write(&p, user("1001").replace("name", "nmae")).unwrap();
        assert!(load(&p).unwrap_err().contains("nmae"));
        std::fs::write(&p, user("1001") + &user("*99")).unwrap();
        assert_eq!(load(&p).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn rereads_when_the_file_changes_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.toml");
        let user = |ext: &str, name: &str| {
            format!("[[user]]\nextension = \"{ext}\"\nname = \"{name}\"\nsip_password = \"s\"\n")
        };
        std::fs::write(&p, user("1001", "Ada")).unwrap();
        let d = open(p.clone(), Duration::from_millis(20)).unwrap();
        let mut changes = d.changes().unwrap();
        assert!(d.lookup("1002").await.unwrap().is_none());

        std::fs::write(&p, user("1001", "Ada") + &user("1002", "Grace Hopper")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            d.lookup("1002").await.unwrap().unwrap().name,
            "Grace Hopper"
        );

        std::fs::write(&p, "not = [valid").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(d.len(), 2, "a broken file keeps the previous users");
    }
}
