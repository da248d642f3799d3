//! The one credential check behind every sign-in: the phone's login and the user page at
//! `/me`. Both get the same tiers, the same lockout subjects and budgets, and the same audit
//! events, so a guess counts the same wherever it is typed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Flow;
use crate::auth::lockouts::{Failure, Refusal};
use crate::auth::{Offer, Subject, Tier};
use crate::directory::{User, valid_extension};
use crate::metrics::LoginFailure;
use crate::phone::Mac;
use crate::store::{AuditEvent, Change, EventKind};

/// Where a sign-in is typed.
#[derive(Debug, Clone, Copy)]
pub enum Channel<'a> {
    /// A phone's login screen: the handset is a lockout subject of its own.
    Phone {
        mac: Mac,
        network: &'a str,
        /// The family id, for the failure counts.
        vendor: &'static str,
    },
    /// The user page in a browser. The shared admin password is not offered there: an admin
    /// acts through the console, behind `[admin] allow` and under their own name.
    UserPage,
}

/// Someone claiming to be `extension`, with `secret`, from `source_ip`.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub extension: &'a str,
    pub secret: &'a str,
    pub source_ip: IpAddr,
    pub channel: Channel<'a>,
}

/// A claim that held.
#[derive(Debug)]
pub struct Authenticated {
    pub user: Arc<User>,
    pub tier: Tier,
    /// The claimant's subjects whose failure histories the success cleared: their stored
    /// rows go with the caller's next commit.
    pub forgiven: Vec<String>,
}

/// Why a claim did not hold. Wrong and unknown extensions look the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong extension or secret; this many tries are left before a lockout.
    Wrong { tries_left: u32 },
    /// Locked out for this long (already, or because of this attempt).
    Locked(Duration),
    /// As many attempts for these subjects are still being checked as may still fail.
    InFlight,
    /// The password checks are queued to their limit: nothing was checked.
    Busy,
    /// The directory could not be asked: nothing was checked.
    DirectoryUnavailable,
}

impl Channel<'_> {
    fn mac(&self) -> Option<Mac> {
        match self {
            Channel::Phone { mac, .. } => Some(*mac),
            Channel::UserPage => None,
        }
    }
}

impl Claim<'_> {
    /// What failures count against, most specific first; all but the source are forgiven by
    /// a success (the address and the shared budgets are not).
    fn subjects(&self) -> Vec<Subject> {
        let (ext, ip) = (self.extension, self.source_ip);
        let mut s = vec![
            Subject::extension_from(ext, ip),
            Subject::Extension(ext.into()),
        ];
        if let Some(mac) = self.channel.mac() {
            s.push(Subject::handset_from(mac, ip));
        }
        s.push(Subject::source(ip));
        s
    }
}

impl Flow {
    /// Checks a claim: lockouts first (the attempt is counted before any slow work, and an
    /// attempt that is never resolved counts as a failure), then the cached directory, the
    /// tiers within their budgets, and once more past the cache when the PIN may have just
    /// changed. A failure is recorded (audit and lockout histories in one commit).
    pub async fn authenticate(&self, claim: &Claim<'_>) -> Result<Authenticated, AuthFailure> {
        let vendor = match claim.channel {
            Channel::Phone { vendor, .. } => vendor,
            Channel::UserPage => "user-page",
        };
        let count = |reason| self.metrics.login_failed(vendor, reason);
        let ext = claim.extension;
        let mac = claim.channel.mac();
        let now = Instant::now();
        let subjects = claim.subjects();
        let mut attempt = match self.lockouts.begin(&subjects, now) {
            Ok(a) => a,
            Err(Refusal::Locked(wait)) => {
                tracing::info!(mac = ?mac, extension = ext, "login refused: locked out");
                count(LoginFailure::LockedOut);
                return Err(AuthFailure::Locked(wait));
            }
            Err(Refusal::Busy) => {
                tracing::info!(mac = ?mac, extension = ext, "login refused: as many attempts running as may still fail");
                count(LoginFailure::Busy);
                return Err(AuthFailure::InFlight);
            }
        };
        // One deadline for everything the directory does in this request.
        let deadline = tokio::time::Instant::now() + self.config.load().directory.deadline.0;
        let user = if valid_extension(ext) {
            match self.directory.lookup(ext).await {
                Ok(user) => user,
                Err(e) => {
                    tracing::warn!(error = %e, extension = ext, "directory lookup failed");
                    count(LoginFailure::DirectoryUnavailable);
                    attempt.abandon();
                    return Err(AuthFailure::DirectoryUnavailable);
                }
            }
        } else {
            None
        };
        // The shared passwords are tried only within their own budgets. The admin password
        // is offered whether or not the extension exists, so both cost the same.
        let admin_here = matches!(claim.channel, Channel::Phone { .. });
        let offer = Offer {
            user_password: self.verifier.would_try_user_password(user.as_deref())
                && self
                    .lockouts
                    .join(&mut attempt, &[Subject::UserPassword], now)
                    .is_ok(),
            admin_password: admin_here
                && self.verifier.has_admin_password()
                && self
                    .lockouts
                    .join(
                        &mut attempt,
                        &[Subject::admin_from(claim.source_ip), Subject::AdminPassword],
                        now,
                    )
                    .is_ok(),
        };
        let mut user = user;
        let mut tier = match self
            .verifier
            .verify(user.as_deref(), claim.secret, offer)
            .await
        {
            Ok(t) => t,
            Err(busy) => {
                tracing::warn!(error = %busy, "login not checked: hotdesk is busy");
                count(LoginFailure::Busy);
                attempt.abandon();
                return Err(AuthFailure::Busy);
            }
        };
        if tier.is_none() && valid_extension(ext) {
            // The PIN may have just changed at the PBX: look once more past the cache, within
            // what is left of the deadline. Known and unknown extensions both look again.
            if let Ok(Ok(fresh)) =
                tokio::time::timeout_at(deadline, self.directory.refetch(ext)).await
                && fresh != user
            {
                tier = match self
                    .verifier
                    .verify(fresh.as_deref(), claim.secret, offer)
                    .await
                {
                    Ok(t) => t,
                    Err(busy) => {
                        tracing::warn!(error = %busy, "login not checked: hotdesk is busy");
                        count(LoginFailure::Busy);
                        attempt.abandon();
                        return Err(AuthFailure::Busy);
                    }
                };
                user = fresh;
            }
        }
        let known = user.is_some();
        let (Some(tier), Some(user)) = (tier, user) else {
            // For the admin's counts only: the claimant is told the same either way.
            count(if known {
                LoginFailure::WrongPin
            } else {
                LoginFailure::UnknownExtension
            });
            return Err(self.failed(claim, &subjects, attempt.fail()).await);
        };
        let forgiven = attempt
            .succeed(&subjects[..subjects.len() - 1])
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(Authenticated {
            user,
            tier,
            forgiven,
        })
    }

    /// Records a failed attempt (audit and lockout histories in one commit) and says what the
    /// claimant sees: their own subjects decide, not the shared budgets.
    async fn failed(&self, claim: &Claim<'_>, own: &[Subject], failure: Failure) -> AuthFailure {
        let ext = claim.extension;
        let mac = claim.channel.mac();
        tracing::info!(mac = ?mac, extension = ext, tries_left = failure.left, "login failed");
        let source_ip = claim.source_ip.to_canonical().to_string();
        let mut event = AuditEvent::new(
            if failure.left == 0 {
                EventKind::LockedOut
            } else {
                EventKind::LoginFailed
            },
            match claim.channel {
                Channel::Phone { .. } => "wrong extension or PIN",
                Channel::UserPage => "wrong extension or PIN (user page)",
            },
        );
        event.mac = mac;
        event.extension = Some(ext.chars().take(32).collect());
        if let Channel::Phone { network, .. } = claim.channel {
            event.network = Some(network.to_owned());
        }
        event.source_ip = Some(source_ip.clone());
        let mut events = vec![event];
        for s in failure.newly_locked.iter().filter(|s| s.is_shared()) {
            tracing::error!(subject = %s, "a shared password's failure budget is used up; it is not accepted until the lockout ends (clear it with the admin API)");
            let mut e =
                AuditEvent::new(EventKind::LockedOut, format!("{s}: failure budget used up"));
            e.source_ip = Some(source_ip.clone());
            events.push(e);
        }
        let change = Change {
            events,
            lockouts: failure.saved,
            ..Change::default()
        };
        if let Err(e) = self.book.record(change).await {
            tracing::error!(error = %e, "failed attempt not recorded");
        }
        match self.lockouts.check(own, Instant::now()) {
            Err(wait) => AuthFailure::Locked(wait),
            Ok(()) => AuthFailure::Wrong {
                tries_left: failure.left,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_and_the_user_page_share_the_extension_and_source_subjects() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let mac: Mac = "00085d30a6ce".parse().unwrap();
        let claim = |channel| Claim {
            extension: "1001",
            secret: "x",
            source_ip: ip,
            channel,
        };
        let phone = claim(Channel::Phone {
            mac,
            network: "internal",
            vendor: "yealink",
        })
        .subjects();
        let page = claim(Channel::UserPage).subjects();
        assert_eq!(
            phone,
            [
                Subject::extension_from("1001", ip),
                Subject::Extension("1001".into()),
                Subject::handset_from(mac, ip),
                Subject::source(ip),
            ]
        );
        // The page has no handset; the rest is the phone's, so guesses add up.
        assert_eq!(
            page,
            [
                Subject::extension_from("1001", ip),
                Subject::Extension("1001".into()),
                Subject::source(ip),
            ]
        );
        // The source is last: a success forgives everything but it.
        assert!(matches!(page.last(), Some(Subject::Source(_))));
    }
}
