//! The provisioner behind a SIGHUP reload: its templates and the settings it renders from
//! (networks, base profile) are swapped whole, so a request renders either the old or the
//! new set, never a mix.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Line, Provisioner, Served};
use crate::config::Config;
use crate::phone::{Handset, Mac};

pub struct LiveProvisioner {
    current: ArcSwap<(Provisioner, Arc<Config>)>,
    /// Per-phone files rendered from the current generation.
    files: super::files::Files,
}

impl LiveProvisioner {
    pub fn new(provisioner: Provisioner, config: Arc<Config>) -> Self {
        Self {
            current: ArcSwap::from_pointee((provisioner, config)),
            files: Default::default(),
        }
    }

    /// Swaps in reloaded templates and settings (the running config with only its
    /// reloadable parts replaced).
    pub fn replace(&self, provisioner: Provisioner, config: Arc<Config>) {
        self.current.store(Arc::new((provisioner, config)));
        self.files.clear();
    }

    pub fn user_template_names(&self) -> BTreeSet<String> {
        self.current.load().0.user_template_names()
    }

    /// As [`Provisioner::render_with`], from the live settings: `_startup` (the config the
    /// routes hold since start-up) is ignored, because after a reload its networks and base
    /// profile are out of date.
    pub fn render_with(
        &self,
        _startup: &Config,
        handset: &Handset,
        lines: &[Line<'_>],
        fetch_auth: Option<(&str, &str)>,
    ) -> Result<Served, String> {
        let current = self.current.load_full();
        if let Some(kept) = self.files.get(&current, handset, lines, fetch_auth) {
            return Ok(kept);
        }
        let (provisioner, config) = &*current;
        let served = Served::from(provisioner.render_with(config, handset, lines, fetch_auth)?);
        self.files
            .put(current.clone(), handset, lines, fetch_auth, &served);
        Ok(served)
    }

    pub fn render(
        &self,
        startup: &Config,
        handset: &Handset,
        lines: &[Line<'_>],
    ) -> Result<Served, String> {
        self.render_with(startup, handset, lines, None)
    }

    /// As [`Provisioner::render_shared`], from the live templates.
    pub fn render_shared(
        &self,
        _startup: &Config,
        family: &dyn crate::vendor::Family,
        file: &str,
    ) -> Result<String, String> {
        let current = self.current.load();
        let (provisioner, config) = &**current;
        provisioner.render_shared(config, family, file)
    }

    /// As [`Provisioner::render_innovaphone_checked`], from the live settings.
    pub fn render_innovaphone_checked(
        &self,
        _startup: &Config,
        mac: Mac,
        check: Option<&str>,
    ) -> Result<String, String> {
        let current = self.current.load();
        let (provisioner, config) = &**current;
        provisioner.render_innovaphone_checked(config, mac, check)
    }

    pub fn render_innovaphone(&self, startup: &Config, mac: Mac) -> Result<String, String> {
        self.render_innovaphone_checked(startup, mac, None)
    }
}
