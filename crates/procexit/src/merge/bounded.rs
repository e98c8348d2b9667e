//! A map that keeps at most `cap` entries and forgets its oldest insertion
//! first: the ETW tracker's table of live processes (and of Kernel-Process
//! starts), which must stay bounded when Ends are lost.
//!
//! Entries live in a slab of slots linked oldest to newest; the hash map
//! gives a key's slot. Insert, remove and evict each take one hash lookup
//! and a few link updates, and a removed entry's slot is reused at once:
//! nothing stale is left to skip or compact, and a table whose processes
//! start and end in turn stays at a few slots.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

use super::key_hash::KeyHash;

/// No slot (end of a list).
const NIL: u32 = u32::MAX;

/// Entries a map has room for before it first grows.
const PRESIZED: usize = 1024;

#[derive(Debug)]
struct Slot<K, V> {
    key: K,
    /// `None` while the slot is free.
    value: Option<V>,
    /// The next older live slot, or the next free slot.
    older: u32,
    /// The next newer live slot.
    newer: u32,
}

/// The slots and their links, apart from the index so that both can be
/// borrowed at once.
#[derive(Debug)]
struct Slab<K, V> {
    slots: Vec<Slot<K, V>>,
    oldest: u32,
    newest: u32,
    /// First free slot; free slots chain through `older`.
    free: u32,
}

impl<K: Copy, V> Slab<K, V> {
    #[inline(always)]
    fn slot(&mut self, at: u32) -> Option<&mut Slot<K, V>> {
        self.slots.get_mut(usize::try_from(at).ok()?)
    }

    /// Stores a new newest entry; its slot number (`None` only if the slab
    /// outgrew u32, which the caps rule out).
    #[inline(always)]
    fn push_newest(&mut self, key: K, value: V) -> Option<u32> {
        let newest = self.newest;
        let at = match self.free {
            NIL => {
                let at = u32::try_from(self.slots.len()).ok().filter(|&a| a != NIL)?;
                self.slots.push(Slot {
                    key,
                    value: Some(value),
                    older: newest,
                    newer: NIL,
                });
                at
            }
            free => {
                let slot = self.slot(free)?;
                let next_free = slot.older;
                // Field by field: the value is moved once, into place.
                slot.key = key;
                slot.value = Some(value);
                slot.older = newest;
                slot.newer = NIL;
                self.free = next_free;
                free
            }
        };
        self.link_as_newer_of(newest, at);
        Some(at)
    }

    /// Makes `at` the newest, after `older` (`NIL`: the list was empty).
    #[inline(always)]
    fn link_as_newer_of(&mut self, older: u32, at: u32) {
        match self.slot(older) {
            Some(slot) => slot.newer = at,
            None => self.oldest = at,
        }
        self.newest = at;
    }

    /// Takes `at` out of the list and onto the free chain; its key and value.
    #[inline(always)]
    fn release(&mut self, at: u32) -> Option<(K, V)> {
        let free = self.free;
        let slot = self.slot(at)?;
        let (older, newer, key) = (slot.older, slot.newer, slot.key);
        let value = slot.value.take()?;
        slot.older = free;
        slot.newer = NIL;
        self.free = at;
        self.unlink(older, newer);
        Some((key, value))
    }

    /// Joins the neighbours of a slot that leaves the list.
    #[inline(always)]
    fn unlink(&mut self, older: u32, newer: u32) {
        match self.slot(older) {
            Some(slot) => slot.newer = newer,
            None => self.oldest = newer,
        }
        match self.slot(newer) {
            Some(slot) => slot.older = older,
            None => self.newest = older,
        }
    }

    /// Moves the live slot `at` to the newest end.
    fn touch(&mut self, at: u32) {
        if self.newest == at {
            return;
        }
        let Some(slot) = self.slot(at) else {
            return;
        };
        let (older, newer) = (slot.older, slot.newer);
        self.unlink(older, newer);
        let newest = self.newest;
        if let Some(slot) = self.slot(at) {
            slot.older = newest;
            slot.newer = NIL;
        }
        self.link_as_newer_of(newest, at);
    }
}

/// A map that forgets its oldest insertions beyond `cap` entries.
#[derive(Debug)]
pub(super) struct Bounded<K, V> {
    index: HashMap<K, u32, KeyHash>,
    slab: Slab<K, V>,
    cap: usize,
}

impl<K: Copy + Eq + Hash, V> Bounded<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        // Room for a busy machine's working set from the start, so the
        // first thousand live processes do not pay for growing.
        let initial = cap.min(PRESIZED);
        Bounded {
            index: HashMap::with_capacity_and_hasher(initial, KeyHash::new()),
            slab: Slab {
                slots: Vec::with_capacity(initial),
                oldest: NIL,
                newest: NIL,
                free: NIL,
            },
            cap,
        }
    }

    /// Inserts `value` as the newest entry; drops the value it replaced
    /// and the oldest one if evicted to stay within `cap`.
    pub(super) fn insert(&mut self, key: K, value: V) {
        self.insert_with(key, |_| value, |_, _| {});
    }

    /// Inserts `make(the value key has now)` as the newest entry, with one
    /// lookup. `gone` receives the value it replaced (`false`) and the
    /// oldest one if evicted to stay within `cap` (`true`; at most one: one
    /// entry was added).
    #[inline(always)]
    pub(super) fn insert_with(
        &mut self,
        key: K,
        make: impl FnOnce(Option<&V>) -> V,
        mut gone: impl FnMut(V, bool),
    ) {
        match self.index.entry(key) {
            Entry::Occupied(entry) => {
                let at = *entry.get();
                if let Some(slot) = self.slab.slot(at) {
                    let value = make(slot.value.as_ref());
                    if let Some(replaced) = slot.value.replace(value) {
                        gone(replaced, false);
                    }
                    self.slab.touch(at);
                }
            }
            Entry::Vacant(entry) => {
                if let Some(at) = self.slab.push_newest(key, make(None)) {
                    entry.insert(at);
                    if self.index.len() > self.cap {
                        if let Some(evicted) = self.pop_oldest() {
                            gone(evicted, true);
                        }
                    }
                }
            }
        }
    }

    /// Removes and returns the oldest entry's value.
    pub(super) fn pop_oldest(&mut self) -> Option<V> {
        let (key, value) = self.slab.release(self.slab.oldest)?;
        self.index.remove(&key);
        Some(value)
    }

    /// The value of some live entry whose key satisfies `pred`: a scan of
    /// every slot, for rare lookups by part of the key.
    pub(super) fn find(&self, mut pred: impl FnMut(&K) -> bool) -> Option<&V> {
        self.slab
            .slots
            .iter()
            .find(|slot| slot.value.is_some() && pred(&slot.key))
            .and_then(|slot| slot.value.as_ref())
    }

    pub(super) fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    #[inline(always)]
    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.index.remove(key)?;
        self.slab.release(at).map(|(_, value)| value)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Slots held, live or free (tests: the slab stays within the cap).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.slab.slots.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

    use super::*;
    use crate::test_rng::xorshift;

    /// The same operations on a plain model: a vector in insertion order.
    #[test]
    fn behaves_like_an_insertion_ordered_list() {
        let mut map = Bounded::<u32, u64>::new(50);
        let mut model: Vec<(u32, u64)> = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..200_000u64 {
            state = xorshift(state);
            let key = (state >> 8) as u32 % 80;
            match state % 4 {
                0 | 1 => {
                    let (mut replaced, mut evicted) = (None, None);
                    map.insert_with(
                        key,
                        |_| step,
                        |gone, was_evicted| {
                            if was_evicted {
                                evicted = Some(gone);
                            } else {
                                replaced = Some(gone);
                            }
                        },
                    );
                    let before = model.iter().position(|&(k, _)| k == key);
                    let want_replaced = before.map(|i| model.remove(i).1);
                    model.push((key, step));
                    let want_evicted = (model.len() > 50).then(|| model.remove(0).1);
                    assert_eq!((replaced, evicted), (want_replaced, want_evicted));
                }
                2 => {
                    let want = model
                        .iter()
                        .position(|&(k, _)| k == key)
                        .map(|i| model.remove(i).1);
                    assert_eq!(map.remove(&key), want);
                }
                _ => {
                    let want = (!model.is_empty()).then(|| model.remove(0).1);
                    assert_eq!(map.pop_oldest(), want);
                }
            }
            assert_eq!(map.len(), model.len());
            assert!(map.slots() <= 51);
            assert_eq!(map.contains(&key), model.iter().any(|&(k, _)| k == key));
        }
    }

    #[test]
    fn a_key_inserted_again_becomes_the_newest() {
        let mut map = Bounded::<u32, &str>::new(2);
        let mut gone = Vec::new();
        map.insert(1, "a");
        map.insert(2, "b");
        map.insert_with(
            1,
            |old| old.map_or("none", |_| "a2"),
            |v, e| gone.push((v, e)),
        );
        map.insert_with(3, |_| "c", |v, e| gone.push((v, e)));
        assert_eq!(gone, [("a", false), ("b", true)]);
        assert_eq!(map.pop_oldest(), Some("a2"));
        assert_eq!(map.pop_oldest(), Some("c"));
        assert_eq!(map.pop_oldest(), None);
    }
}
