//! The vendor-neutral phone: a [`Handset`] (vendor, model, firmware, MAC, capabilities).
//! Reading a User-Agent into one is each vendor's business (`crate::vendor`).

mod caps;
mod mac;

pub use caps::{Caps, XML_OBJECT_LIMIT};
pub use mac::{BadMac, Mac};

use std::fmt;

/// A phone family, by the id of its module in `crate::vendor` (`aastra`, `yealink`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vendor(&'static str);

impl Vendor {
    pub const fn new(id: &'static str) -> Self {
        Self(id)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// One physical phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handset {
    pub vendor: Vendor,
    /// Shared: a phone identified by its User-Agent is cloned from the known agents per
    /// request.
    pub model: std::sync::Arc<str>,
    pub firmware: std::sync::Arc<str>,
    pub mac: Mac,
    pub caps: Caps,
    /// The vendor came from `?vendor=`, so generated links must keep carrying it.
    pub vendor_forced: bool,
    /// The MAC came from `?mac=` (or a file name), not the User-Agent: links and keys must
    /// keep carrying it.
    pub mac_from_query: bool,
}
