//! The hot-desk state machine, vendor-neutral: it reads the phone's current login, asks the
//! cached directory, checks credentials and returns a [`Screen`]. It never sees XML.
//!
//! State between screens is either non-secret and in the URL (network, extension) or
//! server-side (the one-time apply token). The PIN only ever arrives in the phone's own
//! request and is checked on the spot, so no link skips the PIN step.

pub mod credentials;
pub mod expiry;
mod per_phone;
pub mod screens;
pub mod signing;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::lockouts::Refusal;
use crate::auth::{Attempt, Hasher, Limits, Lockouts, Offer, Subject, Verifier};
use crate::config::{Config, Policy};
use crate::directory::{Directory, valid_extension};
use crate::metrics::{LoginFailure, Metrics};
use crate::phone::{Handset, Mac};
use crate::screen::{Action, Link, Screen, Shared};
use crate::store::{AuditEvent, BookError, Change, EventKind, LockoutRow, Login, LoginBook};
pub use credentials::{AuthFailure, Authenticated, Channel, Claim};

/// The phone-facing steps, one per URL path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `/app`: the app key.
    Entry,
    /// `/app/login`: choose network, then credentials, then verify.
    Login,
    /// `/app/logout`.
    Logout,
    /// `/app/apply`: the phone's commands after a login or logout.
    Apply,
}

/// One request from a phone, as the flow sees it.
pub struct PhoneRequest<'a> {
    pub handset: &'a Handset,
    pub source_ip: IpAddr,
    /// What this phone's apply will do (from its vendor's reload method), for honest texts.
    pub effect: screens::ApplyEffect,
    /// Decoded query parameters (first value of each).
    pub query: &'a HashMap<String, String>,
}

impl PhoneRequest<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

/// Commands waiting for a phone's `/app/apply` fetch, guarded by a one-time token.
struct Pending {
    token: String,
    actions: Vec<Action>,
    created: Instant,
}

const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long a live-push grant lasts: the phone fetches its pages right after the apply.
const GRANT_TTL: Duration = Duration::from_secs(120);

/// The lockout limits `[login]` sets.
pub fn lockout_limits(config: &Config) -> Limits {
    let login = &config.login;
    Limits {
        pair: login.max_failures,
        extension: login.extension_max_failures,
        source: login.max_failures_per_source,
        admin_from: login.admin_max_failures,
        shared: login.shared_max_failures,
        window: login.lockout.0,
    }
}

pub struct Flow {
    /// The running settings; a SIGHUP reload swaps in new networks (see [`Flow::set_config`]).
    config: arc_swap::ArcSwap<Config>,
    clock: Arc<dyn crate::clock::Clock>,
    directory: Arc<dyn Directory>,
    verifier: Verifier,
    lockouts: Arc<Lockouts>,
    book: Arc<LoginBook>,
    pending: Mutex<per_phone::PerPhone<Pending>>,
    /// Live-push grants issued with an apply (token, when).
    grants: Mutex<per_phone::PerPhone<(String, Instant)>>,
    metrics: Arc<Metrics>,
    /// One-time desk login codes (`[activation] phone_codes`).
    codes: Arc<crate::activation::Activations>,
    /// Entry screens already made ([`Flow::entry_shared`]).
    entries: crate::slots::Slots<EntryMemo>,
}

/// What an entry screen is made of, short of the screen itself: for the login menu, the
/// config, the network the phone's address is in and whether it takes several fields at
/// once; for the logged-in menu, the login. Both: a vendor its links carry. Addresses
/// stand for the config and the login: the memo holds them, so no other can take theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EntryKey {
    Start {
        config: usize,
        here: Option<usize>,
        multi_field_input: bool,
        vendor: Option<crate::phone::Vendor>,
    },
    Menu {
        login: usize,
        vendor: Option<crate::phone::Vendor>,
    },
}

/// What an [`EntryKey`]'s addresses point at, kept alive with it.
enum MadeOf {
    Config {
        config: Arc<Config>,
        here: Option<usize>,
    },
    Login(Arc<Login>),
}

struct EntryMemo {
    key: EntryKey,
    _made_of: MadeOf,
    screen: Shared,
}

/// Entry screens kept: the login menus of the kinds of phone in use and the logged-in menus
/// most recently asked for (a newer one takes an older one's slot).
const ENTRY_SLOTS: usize = 256;

/// The index of the network whose CIDRs hold `source` (the one offered first), if any.
/// `None` where the menu does not depend on it: one network and no login codes.
fn here(config: &Config, source: IpAddr) -> Option<usize> {
    let networks = &config.networks;
    if networks.len() == 1 && !config.activation.phone_codes {
        return None;
    }
    let ip = source.to_canonical();
    networks
        .values()
        .position(|n| n.cidrs.iter().any(|c| c.contains(&ip)))
}

impl Flow {
    /// `saved` are the lockout histories the store kept across the last restart.
    pub fn new(
        config: Arc<Config>,
        directory: Arc<dyn Directory>,
        book: Arc<LoginBook>,
        clock: Arc<dyn crate::clock::Clock>,
        saved: &[LockoutRow],
        metrics: Arc<Metrics>,
        codes: Arc<crate::activation::Activations>,
    ) -> Self {
        let login = &config.login;
        let lockouts = Lockouts::counted(lockout_limits(&config), metrics.clone());
        lockouts.restore(saved, Instant::now(), clock.now().unix_timestamp());
        Self {
            verifier: Verifier::new(
                login.admin_password_hash.clone(),
                login.user_password.clone(),
                Hasher::new(login.argon2_threads, login.argon2_queue),
            )
            .with_hashed_pins(config.directory.kind == crate::config::DirectoryKind::Embedded),
            lockouts,
            directory,
            book,
            pending: Mutex::default(),
            grants: Mutex::default(),
            config: arc_swap::ArcSwap::new(config),
            clock,
            metrics,
            codes,
            entries: crate::slots::Slots::new(ENTRY_SLOTS),
        }
    }

    /// Counts a phone login that did not happen.
    fn count_failure(&self, h: &Handset, reason: LoginFailure) {
        self.metrics.login_failed(h.vendor.as_str(), reason);
    }

    /// Swaps in reloaded settings: later requests see its networks and lockout limits. The
    /// caller passes the running config with only the reloadable parts replaced.
    pub fn set_config(&self, config: Arc<Config>) {
        self.lockouts.set_limits(lockout_limits(&config));
        self.config.store(config);
    }

    pub fn lockouts(&self) -> &Arc<Lockouts> {
        &self.lockouts
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    pub fn book(&self) -> &Arc<LoginBook> {
        &self.book
    }

    /// Answers one phone request.
    pub async fn handle(&self, step: Step, req: &PhoneRequest<'_>) -> Screen {
        match step {
            Step::Entry => self.entry(req),
            Step::Login => self.login(req).await,
            Step::Logout => self.logout(req).await,
            Step::Apply => self.apply(req),
        }
    }

    /// A link back to this server that keeps what identifies the phone when its
    /// User-Agent cannot (`?mac=`, `?vendor=`).
    fn link(&self, h: &Handset, path: &'static str) -> Link {
        let mut link = Link::new(path);
        if h.vendor_forced {
            link = link.with("vendor", h.vendor.as_str());
        }
        if h.mac_from_query {
            link = link.with("mac", h.mac.to_string());
        }
        link
    }

    /// The entry screen: the login menu, or the logged-in menu. It changes nothing, so it is
    /// answered without `handle`'s future (whose size is that of a login).
    pub fn entry(&self, req: &PhoneRequest<'_>) -> Screen {
        let h = req.handset;
        let logins = self.book.identities(&h.mac);
        if logins.is_empty() {
            return self.login_menu(req);
        }
        if h.caps.identities > 1 {
            let rows: Vec<_> = logins
                .iter()
                .map(|l| {
                    let link = self
                        .link(h, "/app/logout")
                        .with("id", l.identity.to_string());
                    (l.extension.clone(), l.name.clone(), link)
                })
                .collect();
            let room = logins.len() < usize::from(h.caps.identities);
            let add = room.then(|| self.link(h, "/app/login"));
            return screens::identities_menu(&rows, self.link(h, "/app/logout"), add);
        }
        self.logged_in_menu(h, &logins[0])
    }

    /// The entry screen as [`Flow::entry`] makes it, shared: the login menu is the same for
    /// every phone of a kind, and a logged-in menu the same for as long as its login lasts,
    /// so each is made (and hashed) once rather than per request. A boot storm is all entry
    /// screens.
    pub fn entry_shared(&self, req: &PhoneRequest<'_>) -> Shared {
        let h = req.handset;
        // Links that carry the phone's own MAC are its own.
        if h.mac_from_query {
            return Shared::new(self.entry(req));
        }
        let vendor = h.vendor_forced.then_some(h.vendor);
        let (key, made_of) = match self.book.get(&h.mac) {
            None => {
                let config = self.config.load();
                let here = here(&config, req.source_ip);
                let key = EntryKey::Start {
                    config: Arc::as_ptr(&config) as usize,
                    here,
                    multi_field_input: h.caps.multi_field_input,
                    vendor,
                };
                let config = arc_swap::Guard::into_inner(config);
                (key, MadeOf::Config { config, here })
            }
            // Phones with several identities list them all.
            Some(_) if h.caps.identities > 1 => return Shared::new(self.entry(req)),
            Some(login) => {
                let key = EntryKey::Menu {
                    login: Arc::as_ptr(&login) as usize,
                    vendor,
                };
                (key, MadeOf::Login(login))
            }
        };
        let hash = self.entries.hash(key);
        if let Some(hit) = self
            .entries
            .find(hash, |m| (m.key == key).then(|| m.screen.clone()))
        {
            return hit;
        }
        let screen = Shared::new(match &made_of {
            MadeOf::Config { config, here } => self.start_login(config, *here, h),
            MadeOf::Login(login) => self.logged_in_menu(h, login),
        });
        self.entries.put(
            hash,
            EntryMemo {
                key,
                _made_of: made_of,
                screen: screen.clone(),
            },
        );
        screen
    }

    fn logged_in_menu(&self, h: &Handset, login: &Login) -> Screen {
        screens::logged_in_menu(
            &login.extension,
            &login.name,
            self.link(h, "/app/logout"),
            self.link(h, "/app/login"),
        )
    }

    /// The login menu for this phone under the current config.
    fn login_menu(&self, req: &PhoneRequest<'_>) -> Screen {
        let config = self.config.load();
        self.start_login(&config, here(&config, req.source_ip), req.handset)
    }

    /// The network choice, skipped when only one network is configured.
    fn start_login(&self, config: &Config, here: Option<usize>, h: &Handset) -> Screen {
        let networks = &config.networks;
        let codes = config.activation.phone_codes;
        if networks.len() == 1 && !codes {
            let key = networks.keys().next().expect("validated non-empty");
            return self.ask_credentials(h, key);
        }
        let default_index = here.map_or(1, |i| i + 1);
        let mut items: Vec<_> = networks
            .iter()
            .map(|(key, n)| {
                let link = self.link(h, "/app/login").with("net", key.clone());
                (key.clone(), n.label.clone(), link)
            })
            .collect();
        if codes {
            // A code brings no network choice: the phone's own network by address, else the
            // first.
            let (key, _) = networks
                .get_index(here.unwrap_or(0))
                .expect("validated non-empty");
            let link = self
                .link(h, "/app/login")
                .with("net", key.clone())
                .with("by", "code");
            items.push(("code".into(), screens::CODE_ITEM.into(), link));
        }
        screens::choose_network(&items, default_index)
    }

    fn ask_credentials(&self, h: &Handset, net: &str) -> Screen {
        let submit = self.link(h, "/app/login").with("net", net);
        if h.caps.multi_field_input {
            screens::credentials(submit)
        } else {
            screens::ask_extension(submit)
        }
    }

    async fn login(&self, req: &PhoneRequest<'_>) -> Screen {
        let h = req.handset;
        let Some(net) = req.param("net") else {
            return self.login_menu(req);
        };
        let config = self.config.load_full();
        let Some(network) = config.networks.get(net) else {
            return screens::unknown_network(self.link(h, "/app/login"));
        };
        let retry = self.link(h, "/app/login").with("net", net);
        if req.param("by") == Some("code") && config.activation.phone_codes {
            let submit = retry.with("by", "code");
            return match req.param("code") {
                None => screens::ask_code(submit),
                Some(code) => {
                    self.verify_code(req, net, &network.label, code, submit)
                        .await
                }
            };
        }
        let ext = req.param("ext");
        let pin = req.query.get("pin").map(String::as_str);
        match (ext, pin) {
            (None, None) => self.ask_credentials(h, net),
            (None, Some(_)) => screens::missing("extension", retry),
            (Some(ext), None) if !h.caps.multi_field_input && valid_extension(ext) => {
                screens::ask_pin(ext, retry.with("ext", ext))
            }
            (Some(_), None) | (Some(_), Some("")) => screens::missing("PIN", retry),
            (Some(ext), Some(pin)) => self.verify(req, net, &network.label, ext, pin, retry).await,
        }
    }

    async fn verify(
        &self,
        req: &PhoneRequest<'_>,
        net: &str,
        label: &str,
        ext: &str,
        pin: &str,
        retry: Link,
    ) -> Screen {
        let h = req.handset;
        let claim = Claim {
            extension: ext,
            secret: pin,
            source_ip: req.source_ip,
            channel: Channel::Phone {
                mac: h.mac,
                network: net,
                vendor: h.vendor.as_str(),
            },
        };
        let Authenticated {
            user,
            tier,
            forgiven,
        } = match self.authenticate(&claim).await {
            Ok(a) => a,
            Err(AuthFailure::Wrong { tries_left }) => {
                return screens::wrong_credentials(tries_left, retry);
            }
            Err(AuthFailure::Locked(wait)) => return screens::locked_out(wait),
            Err(AuthFailure::InFlight) => {
                return screens::try_later(
                    "Other attempts for this login are still being checked.",
                );
            }
            Err(AuthFailure::Busy) => return screens::try_later("hotdesk is busy."),
            Err(AuthFailure::DirectoryUnavailable) => {
                return screens::try_later("The user directory cannot be reached.");
            }
        };
        self.finish_login(req, net, label, user, tier.as_str(), forgiven)
            .await
    }

    /// A one-time code in place of extension and PIN. Wrong codes count against this phone
    /// and this source, as wrong PINs do; the code itself is never logged or audited.
    async fn verify_code(
        &self,
        req: &PhoneRequest<'_>,
        net: &str,
        label: &str,
        code: &str,
        retry: Link,
    ) -> Screen {
        let h = req.handset;
        let subjects = [
            Subject::handset_from(h.mac, req.source_ip),
            Subject::source(req.source_ip),
        ];
        let attempt = match self.lockouts.begin(&subjects, Instant::now()) {
            Ok(a) => a,
            Err(Refusal::Locked(wait)) => {
                self.count_failure(h, LoginFailure::LockedOut);
                return screens::locked_out(wait);
            }
            Err(Refusal::Busy) => {
                self.count_failure(h, LoginFailure::Busy);
                return screens::try_later(
                    "Other attempts for this phone are still being checked.",
                );
            }
        };
        let extension = match self.codes.redeem_code(code).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "login code not checked");
                attempt.abandon();
                return screens::try_later("The login could not be checked.");
            }
        };
        let user = match &extension {
            Some(ext) => match self.directory.lookup(ext).await {
                Ok(user) => user,
                Err(e) => {
                    // The code is spent: say so plainly rather than let it look wrong.
                    tracing::warn!(error = %e, extension = %ext, "directory lookup failed after a login code");
                    attempt.abandon();
                    return screens::try_later(
                        "The user directory cannot be reached; ask for a new code.",
                    );
                }
            },
            None => None,
        };
        let Some(user) = user else {
            self.count_failure(h, LoginFailure::WrongPin);
            let failure = attempt.fail();
            tracing::info!(mac = %h.mac, tries_left = failure.left, "login code wrong, used or expired");
            let mut event = AuditEvent::new(
                if failure.left == 0 {
                    EventKind::LockedOut
                } else {
                    EventKind::LoginFailed
                },
                "wrong, used or expired one-time code",
            );
            event.mac = Some(h.mac);
            event.extension = extension;
            event.network = Some(net.to_owned());
            event.source_ip = Some(req.source_ip.to_canonical().to_string());
            return self
                .failed_on_phone(&subjects, failure, Some(event), |left| {
                    screens::wrong_code(left, retry)
                })
                .await;
        };
        let forgiven = attempt
            .succeed(&subjects[..1])
            .iter()
            .map(ToString::to_string)
            .collect();
        self.finish_login(req, net, label, user, "login-code", forgiven)
            .await
    }

    /// Puts a user whose credential held on this phone: the book decides (policy, device
    /// limit, free identity), then the apply link.
    async fn finish_login(
        &self,
        req: &PhoneRequest<'_>,
        net: &str,
        label: &str,
        user: Arc<crate::directory::User>,
        credential: &str,
        forgiven: Vec<String>,
    ) -> Screen {
        let h = req.handset;
        let ip = req.source_ip.to_canonical().to_string();
        if user.sip_password.is_empty() {
            tracing::warn!(extension = %user.extension, "login refused: the directory has no SIP secret for this user");
            self.count_failure(h, LoginFailure::NoSipSecret);
            return screens::no_line(&user.extension);
        }
        if let Err(screen) = self.replacement_guard(req, &user.extension) {
            self.count_failure(h, LoginFailure::ReplaceRefused);
            return screen;
        }
        let login = Login {
            mac: h.mac,
            identity: 0, // chosen by the book
            extension: user.extension.clone(),
            name: user.name.clone(),
            vendor: h.vendor.to_string(),
            model: h.model.to_string(),
            network: net.to_owned(),
            template: user.template.clone(),
            since: self.clock.now(),
            source_ip: ip,
            credential: credential.to_owned(),
            applied_at: None,
        };
        let policy = self.config.load().login.policy;
        let max = self.config.load().login.max_devices;
        let identities = h.caps.identities;
        match self
            .book
            .login(login, policy, max, identities, credential, forgiven)
            .await
        {
            Ok(outcome) => {
                self.metrics.login(h.vendor.as_str());
                tracing::info!(
                    mac = %h.mac, extension = %user.extension, network = net,
                    credential, taken_from = outcome.taken_from.len(),
                    "login"
                );
                // A previous user's call lists must not stay for the next one.
                let mut actions = vec![Action::Reload];
                if outcome.replaced.is_some() {
                    actions.insert(0, Action::ClearCallLists);
                }
                let apply = self.expect_apply(h, actions);
                screens::logged_in(&user.extension, &user.name, label, apply, req.effect)
            }
            Err(BookError::NoFreeIdentity(n)) => {
                self.count_failure(h, LoginFailure::DeviceLimit);
                screens::no_free_identity(n)
            }
            Err(BookError::TooManyDevices(_)) if policy == Policy::Concurrent => {
                tracing::info!(mac = %h.mac, extension = %user.extension, "login refused: device limit");
                self.count_failure(h, LoginFailure::DeviceLimit);
                screens::too_many_devices(&user.extension, max)
            }
            Err(e) => {
                tracing::error!(error = %e, mac = %h.mac, "login not recorded");
                self.count_failure(h, LoginFailure::NotSaved);
                screens::try_later("The login could not be saved.")
            }
        }
    }

    /// Nothing was checked: the password checks are queued to the limit.
    fn busy(&self, attempt: Attempt, busy: crate::auth::Busy) -> Screen {
        tracing::warn!(error = %busy, "login not checked: hotdesk is busy");
        attempt.abandon();
        screens::try_later("hotdesk is busy.")
    }

    /// A one-identity phone's user is replaced by a login only from the address that user
    /// logged in from, as for a logout: else anyone could log a desk out by logging in on
    /// its MAC from elsewhere.
    fn replacement_guard(&self, req: &PhoneRequest<'_>, extension: &str) -> Result<(), Screen> {
        let h = req.handset;
        if h.caps.identities > 1 {
            return Ok(());
        }
        let ip = req.source_ip.to_canonical().to_string();
        let here = self.book.identities(&h.mac);
        if here
            .iter()
            .any(|l| l.extension != extension && l.source_ip != ip)
        {
            tracing::warn!(mac = %h.mac, "login refused: it would replace a login made from another address");
            return Err(screens::replace_refused());
        }
        Ok(())
    }

    /// A login ends from the phone only from the address it began from, or, with
    /// `logout_requires_pin`, with one of the leaving users' credentials.
    async fn logout_guard(
        &self,
        req: &PhoneRequest<'_>,
        leaving: &[Arc<Login>],
    ) -> Result<(), Screen> {
        let h = req.handset;
        if !self.config.load().login.logout_requires_pin {
            let ip = req.source_ip.to_canonical().to_string();
            if leaving.iter().any(|l| l.source_ip != ip) {
                tracing::warn!(mac = %h.mac, "logout refused: request from another address than the login");
                return Err(screens::logout_refused());
            }
            return Ok(());
        }
        let mut submit = self.link(h, "/app/logout");
        if let Some(id) = req.param("id") {
            submit = submit.with("id", id);
        }
        let Some(pin) = req.query.get("pin").filter(|p| !p.is_empty()) else {
            return Err(screens::ask_logout_pin(&leaving[0].extension, submit));
        };
        let subjects = [
            Subject::handset_from(h.mac, req.source_ip),
            Subject::source(req.source_ip),
        ];
        let attempt = match self.lockouts.begin(&subjects, Instant::now()) {
            Ok(a) => a,
            Err(Refusal::Locked(wait)) => return Err(screens::locked_out(wait)),
            Err(Refusal::Busy) => {
                return Err(screens::try_later(
                    "Other attempts for this phone are still being checked.",
                ));
            }
        };
        for l in leaving {
            let user = match self.directory.lookup(&l.extension).await {
                Ok(user) => user,
                Err(_) => continue,
            };
            match self
                .verifier
                .verify(user.as_deref(), pin, Offer::OWN_PIN_ONLY)
                .await
            {
                Ok(Some(_)) => {
                    attempt.succeed(&subjects[..1]);
                    return Ok(());
                }
                Ok(None) => {}
                Err(busy) => return Err(self.busy(attempt, busy)),
            }
        }
        let failure = attempt.fail();
        tracing::info!(mac = %h.mac, tries_left = failure.left, "logout PIN wrong");
        Err(self
            .failed_on_phone(&subjects, failure, None, |left| {
                screens::wrong_credentials(left, submit)
            })
            .await)
    }

    /// Records a failed attempt on a phone (its audit event and the lockout histories in one
    /// commit) and picks the screen: locked out, or `wrong` with the tries left.
    async fn failed_on_phone(
        &self,
        own: &[Subject],
        failure: crate::auth::lockouts::Failure,
        event: Option<AuditEvent>,
        wrong: impl FnOnce(u32) -> Screen,
    ) -> Screen {
        let change = Change {
            events: event.into_iter().collect(),
            lockouts: failure.saved,
            ..Change::default()
        };
        if let Err(e) = self.book.record(change).await {
            tracing::error!(error = %e, "failed attempt not recorded");
        }
        match self.lockouts.check(own, Instant::now()) {
            Err(wait) => screens::locked_out(wait),
            Ok(()) => wrong(failure.left),
        }
    }

    async fn logout(&self, req: &PhoneRequest<'_>) -> Screen {
        let h = req.handset;
        let ip = req.source_ip.to_canonical().to_string();
        let book = &self.book;
        let id = req.param("id").and_then(|i| i.parse::<u8>().ok());
        let leaving: Vec<Arc<Login>> = book
            .identities(&h.mac)
            .into_iter()
            .filter(|l| id.is_none_or(|i| i == l.identity))
            .collect();
        if leaving.is_empty() {
            return screens::not_logged_in(self.link(h, "/app"));
        }
        if let Err(screen) = self.logout_guard(req, &leaving).await {
            return screen;
        }
        // `?id=N` logs one identity off (several-user phones); without it, everyone.
        if let Some(id) = req.param("id").and_then(|i| i.parse::<u8>().ok()) {
            return match book
                .logout_identity(h.mac, id, EventKind::Logout, &ip, "from the phone")
                .await
            {
                Ok(Some(login)) if book.identities(&h.mac).is_empty() => {
                    // The last user left: wipe and reload as for a full logout.
                    tracing::info!(mac = %h.mac, extension = %login.extension, "logout");
                    self.metrics.logout(h.vendor.as_str(), 1);
                    let actions = vec![
                        Action::ClearCallLists,
                        Action::Unregister(None),
                        Action::Reload,
                    ];
                    let apply = self.expect_apply(h, actions);
                    screens::logged_out(&login.extension, apply, req.effect)
                }
                Ok(Some(login)) => {
                    tracing::info!(mac = %h.mac, extension = %login.extension, identity = id, "logout of one identity");
                    self.metrics.logout(h.vendor.as_str(), 1);
                    let apply = self.expect_apply(h, vec![Action::Unregister(Some(id))]);
                    screens::logged_off_one(&login.extension, apply)
                }
                Ok(None) => screens::not_logged_in(self.link(h, "/app")),
                Err(e) => {
                    tracing::error!(error = %e, mac = %h.mac, "logout not recorded");
                    screens::try_later("The logout could not be saved.")
                }
            };
        }
        match book
            .logout(h.mac, EventKind::Logout, &ip, "from the phone")
            .await
        {
            Ok(ended) if !ended.is_empty() => {
                tracing::info!(mac = %h.mac, users = ended.len(), "logout");
                self.metrics.logout(h.vendor.as_str(), ended.len() as u64);
                let mut actions = vec![Action::ClearCallLists];
                if h.caps.identities > 1 {
                    actions.push(Action::Unregister(None));
                }
                actions.push(Action::Reload);
                let apply = self.expect_apply(h, actions);
                let who: Vec<&str> = ended.iter().map(|l| l.extension.as_str()).collect();
                screens::logged_out(&who.join(", "), apply, req.effect)
            }
            Ok(_) => screens::not_logged_in(self.link(h, "/app")),
            Err(e) => {
                tracing::error!(error = %e, mac = %h.mac, "logout not recorded");
                screens::try_later("The logout could not be saved.")
            }
        }
    }

    /// Remembers what the phone must do and returns the one-time link that fetches it.
    fn expect_apply(&self, h: &Handset, actions: Vec<Action>) -> Link {
        let token = new_token();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pending.insert(
            h.mac,
            Pending {
                token: token.clone(),
                actions,
                created: now,
            },
            |p| now.duration_since(p.created) < PENDING_TTL,
        );
        self.link(h, "/app/apply").with("t", token)
    }

    /// The phone's commands, once; a replayed or forged token gets a no-op. A reload comes
    /// with a grant for the live push pages, bound to this phone.
    fn apply(&self, req: &PhoneRequest<'_>) -> Screen {
        let mac = req.handset.mac;
        let actions = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = pending.get(&mac).is_some_and(|p| {
                req.param("t")
                    .is_some_and(|t| crate::secret::Secret::new(p.token.as_str()).matches(t))
                    && p.created.elapsed() < PENDING_TTL
            });
            if fresh {
                pending.remove(&mac).map(|p| p.actions).unwrap_or_default()
            } else {
                Vec::new()
            }
        };
        let grant = actions.contains(&Action::Reload).then(|| {
            let token = new_token();
            let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
            grants.insert(mac, (token.clone(), Instant::now()), |(_, at)| {
                at.elapsed() < GRANT_TTL
            });
            token
        });
        Screen::Apply(crate::screen::Apply { actions, grant })
    }

    /// Whether `token` is the live-push grant this phone's last apply issued, still fresh.
    /// It stays valid for its short life: firmware that fetches each page twice must get
    /// both.
    pub fn push_granted(&self, mac: Mac, token: Option<&str>) -> bool {
        let grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        match (grants.get(&mac), token) {
            (Some((granted, at)), Some(t)) => {
                at.elapsed() < GRANT_TTL && crate::secret::Secret::new(granted.as_str()).matches(t)
            }
            _ => false,
        }
    }
}

/// 128 random bits as hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    crate::hex::lower(&bytes)
}
