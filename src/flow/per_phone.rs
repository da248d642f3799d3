//! One short-lived value per phone (a pending apply, a push grant). Expired values are swept
//! when the map has doubled since the last sweep: sweeping on every insert made each login
//! scan every phone that had not yet fetched its apply, quadratic in a shift's logins.
//! Readers check the value's age themselves, so a value past its life is never used.

use std::collections::HashMap;

use crate::phone::Mac;

/// Below this many entries nothing is swept.
const FIRST_SWEEP: usize = 64;

pub struct PerPhone<V> {
    map: HashMap<Mac, V>,
    sweep_at: usize,
}

impl<V> Default for PerPhone<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            sweep_at: FIRST_SWEEP,
        }
    }
}

impl<V> PerPhone<V> {
    /// Sets `mac`'s value; first drops every value `live` rejects, when it is time to.
    pub fn insert(&mut self, mac: Mac, value: V, live: impl Fn(&V) -> bool) {
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, v| live(v));
            self.sweep_at = (self.map.len() * 2).max(FIRST_SWEEP);
        }
        self.map.insert(mac, value);
    }

    pub fn get(&self, mac: &Mac) -> Option<&V> {
        self.map.get(mac)
    }

    pub fn remove(&mut self, mac: &Mac) -> Option<V> {
        self.map.remove(mac)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> Mac {
        format!("805ec0{i:06x}").parse().unwrap()
    }

    #[test]
    fn expired_values_are_swept_once_the_map_has_doubled() {
        let mut m = PerPhone::default();
        // Values are their "age": odd ones are expired.
        let live = |v: &u32| v.is_multiple_of(2);
        for i in 0..FIRST_SWEEP as u32 {
            m.insert(mac(i), i, live);
        }
        assert_eq!(m.len(), FIRST_SWEEP, "nothing swept below the threshold");
        m.insert(mac(1000), 1000, live);
        assert_eq!(m.len(), FIRST_SWEEP / 2 + 1, "the expired half went");
        assert_eq!(m.get(&mac(2)), Some(&2));
        assert_eq!(m.get(&mac(3)), None);
        assert_eq!(m.remove(&mac(2)), Some(2));
        // Live values are never swept, however many phones there are.
        let mut all_live = PerPhone::default();
        for i in 0..10_000 {
            all_live.insert(mac(i), 0u32, live);
        }
        assert_eq!(all_live.len(), 10_000);
    }
}
