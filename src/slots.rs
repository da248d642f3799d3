//! A bounded cache of a fixed number of slots, each chosen by a hash: a newcomer takes its
//! slot over. The hash only picks the slot; callers compare their whole key on a hit.

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

pub struct Slots<T> {
    slots: Box<[Mutex<Option<T>>]>,
    hasher: foldhash::fast::RandomState,
}

impl<T> Slots<T> {
    pub fn new(n: usize) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    fn slot(&self, hash: u64) -> MutexGuard<'_, Option<T>> {
        let i = (hash % self.slots.len() as u64) as usize;
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `hit` makes of the value in `hash`'s slot, if there is one and it matches.
    pub fn find<R>(&self, hash: u64, hit: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        self.slot(hash).as_ref().and_then(hit)
    }

    /// Puts `value` in `hash`'s slot; what it replaces is freed outside the lock.
    pub fn put(&self, hash: u64, value: T) {
        let old = self.slot(hash).replace(value);
        drop(old);
    }

    /// Empties every slot.
    pub fn clear(&self) {
        for slot in &self.slots {
            let old = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_takes_the_slot_over_and_clear_empties_all() {
        let slots = Slots::new(1);
        slots.put(slots.hash(1), (1, "one"));
        assert_eq!(
            slots.find(slots.hash(1), |v| (v.0 == 1).then_some(v.1)),
            Some("one")
        );
        slots.put(slots.hash(2), (2, "two"));
        assert_eq!(
            slots.find(slots.hash(1), |v| (v.0 == 1).then_some(v.1)),
            None
        );
        slots.clear();
        assert_eq!(slots.find(slots.hash(2), |v| Some(v.1)), None);
    }
}
