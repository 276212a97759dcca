//! A map that keeps at most `cap` entries, forgetting the oldest first:
//! caches fed by the event stream must not grow without bound.

use crate::hash::BuildSeededHasher;
use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, Hash},
};

/// `S`: the map's hasher (seeded, unless the keys allow an unseeded one).
pub(crate) struct Bounded<K, V, S = BuildSeededHasher> {
    map: HashMap<K, V, S>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self::with_hasher(cap)
    }
}

impl<K: Hash + Eq + Clone, V, S: BuildHasher + Default> Bounded<K, V, S> {
    pub(crate) fn with_hasher(cap: usize) -> Self {
        Bounded {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub(crate) fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest() {
        let mut b = Bounded::new(2);
        b.insert(1, "a");
        b.insert(2, "b");
        b.insert(1, "a2");
        assert_eq!(b.len(), 2);
        b.insert(3, "c");
        assert!(!b.contains(&1));
        assert_eq!(b.get(&2), Some(&"b"));
        assert_eq!(b.get(&3), Some(&"c"));
    }
}
