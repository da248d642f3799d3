//! Per-phone provisioning credentials (`[provision] auth = "digest"`): generated here, shown
//! once to the admin, kept in the store, held in memory for the hot path.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::phone::Mac;
use crate::secret::Secret;
use crate::store::PhoneCredential;

/// No 0/O, 1/l/I: an admin may have to type it into a phone's web page.
const ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
const PASSWORD_LEN: usize = 24;

pub struct Credentials {
    by_mac: RwLock<HashMap<Mac, PhoneCredential>>,
}

impl Credentials {
    pub fn new(rows: Vec<PhoneCredential>) -> Self {
        Self {
            by_mac: RwLock::new(rows.into_iter().map(|c| (c.mac, c)).collect()),
        }
    }

    pub fn get(&self, mac: &Mac) -> Option<PhoneCredential> {
        self.by_mac
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(mac)
            .cloned()
    }

    /// Records a credential already committed to the store.
    pub fn set(&self, c: PhoneCredential) {
        self.by_mac
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(c.mac, c);
    }

    /// Forgets a credential already removed from the store; whether there was one.
    pub fn remove(&self, mac: &Mac) -> bool {
        self.by_mac
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mac)
            .is_some()
    }
}

/// A new credential for `mac`: a user name naming the phone and a random password.
pub fn generate(mac: Mac, now: time::OffsetDateTime) -> PhoneCredential {
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while password.len() < PASSWORD_LEN {
        getrandom::fill(&mut buf).expect("the OS random source");
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for b in buf.iter().map(|b| usize::from(*b)).filter(|b| *b < limit) {
            if password.len() == PASSWORD_LEN {
                break;
            }
            password.push(ALPHABET[b % ALPHABET.len()] as char);
        }
    }
    PhoneCredential {
        mac,
        username: format!("hd-{mac}"),
        password: Secret::new(password),
        created: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_unambiguous_and_different() {
        let mac: Mac = "805ec02f3c2e".parse().unwrap();
        let a = generate(mac, time::OffsetDateTime::UNIX_EPOCH);
        let b = generate(mac, time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(a.username, "hd-805ec02f3c2e");
        assert_eq!(a.password.expose().len(), PASSWORD_LEN);
        assert!(a.password.expose().bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a.password, b.password);
    }
}
