//! The vendor-neutral screen model: what a phone should show or do. The flow builds these;
//! the dialects turn them into each vendor's XML. Nothing here knows a vendor.

/// A server link: a path and non-secret query pairs. Dialects make it absolute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
}

impl Link {
    pub fn new(path: &'static str) -> Self {
        Self {
            path,
            query: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// `base` + path + percent-encoded query, written into one string.
    pub fn absolute(&self, base: &str) -> String {
        let query: usize = self.query.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut url = String::with_capacity(base.len() + self.path.len() + query);
        url.push_str(base);
        url.push_str(self.path);
        if self.query.is_empty() {
            return url;
        }
        url.push('?');
        let start = url.len();
        let mut q = form_urlencoded::Serializer::for_suffix(url, start);
        for (k, v) in &self.query {
            q.append_pair(k, v);
        }
        q.finish()
    }
}

/// A screen with its fingerprint, a hash of its content (equal screens, equal
/// fingerprints), so that a screen shown to many phones is hashed once rather than per
/// request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shared {
    pub screen: std::sync::Arc<Screen>,
    pub fingerprint: u64,
}

impl Shared {
    pub fn new(screen: Screen) -> Self {
        static HASHER: std::sync::LazyLock<foldhash::fast::RandomState> =
            std::sync::LazyLock::new(Default::default);
        use std::hash::BuildHasher as _;
        Self {
            fingerprint: HASHER.hash_one(&screen),
            screen: std::sync::Arc::new(screen),
        }
    }

    /// The same content: the same screen, or an equal one.
    pub fn same_as(&self, other: &Shared) -> bool {
        self.fingerprint == other.fingerprint
            && (std::sync::Arc::ptr_eq(&self.screen, &other.screen) || self.screen == other.screen)
    }
}

/// What the phone shows (menu, input, message) or does (apply).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Screen {
    Menu(Menu),
    Input(Input),
    Message(Message),
    Apply(Apply),
    /// Configuration settings applied live (Aastra `AastraIPPhoneConfiguration`).
    Configuration(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Menu {
    pub title: String,
    pub items: Vec<MenuItem>,
    /// 1-based item that starts highlighted.
    pub default_index: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MenuItem {
    pub label: String,
    pub link: Link,
}

/// One or more fields submitted together to `submit`; each field's value arrives as
/// the query parameter `param`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Input {
    pub title: String,
    pub fields: Vec<Field>,
    pub submit: Link,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    pub prompt: String,
    pub param: &'static str,
    /// Digits only (extensions and PINs are numeric on every phone keypad).
    pub numeric: bool,
    /// Shown masked.
    pub secret: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    Info,
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub tone: Tone,
    /// Where OK leads; followed by itself after `after_secs` where the phone can.
    pub next: Option<Next>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Next {
    pub link: Link,
    pub after_secs: u32,
}

/// Commands for the phone itself, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Apply {
    pub actions: Vec<Action>,
    /// The token that lets this phone fetch its live configuration push (Aastra), issued
    /// with the apply commands and bound to the phone's MAC.
    pub grant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Wipe the previous user's missed/received/dialled lists (privacy on logout).
    ClearCallLists,
    /// Make the phone load its new configuration, by the vendor's configured method.
    Reload,
    /// Drop one identity's registration (0-based), or every identity's (`None`), at once.
    Unregister(Option<u8>),
    /// Fetch this server link (each answer is processed in turn).
    Open(Link),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_absolute_and_encoded() {
        let link = Link::new("/app/login")
            .with("net", "internal")
            .with("ext", "12 34&x=<y>");
        assert_eq!(
            link.absolute("http://hd.example.net:8080"),
            "http://hd.example.net:8080/app/login?net=internal&ext=12+34%26x%3D%3Cy%3E"
        );
        assert_eq!(Link::new("/app").absolute("http://h"), "http://h/app");
    }
}
