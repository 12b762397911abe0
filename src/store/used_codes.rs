//! The single-node store's memory of recently used `wx.login()` codes, so that a login does
//! not read the database to learn that its (almost always fresh) code is unused.
//!
//! WeChat accepts a code for five minutes after `wx.login()` issues it. A code used more than
//! `WINDOW` ago is therefore past that lifetime, and WeChat itself refuses it; only the codes
//! used within the window must be known here. The memory holds every code this process recorded
//! within the window, plus the ones loaded from the store at start. While it is complete for
//! the whole window it answers alone; when it is not (just after a start whose load failed, or
//! after the size cap pushed out a code younger than the window), the caller asks the store.
//!
//! Codes are kept as 64-bit hashes of their `CodeHash`es (themselves SHA-256 hashes), 26 to 50
//! bytes each with the tables' growth slack; a false "used" for a fresh code needs a 64-bit
//! collision among the codes of the last ten minutes.

use crate::clock::Millis;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// How long a used code is remembered: twice WeChat's five-minute code lifetime, for clock
/// skew between WeChat and us.
pub const WINDOW: Millis = 10 * 60 * 1000;

/// At most this many codes are remembered (26–50 MB). Past that, the oldest go first, and
/// a code not found here is looked up in the store until the window is whole again.
pub const MAX_CODES: usize = 1_000_000;

pub struct UsedCodes {
    codes: HashSet<u64>,
    /// The same codes, oldest use first.
    order: VecDeque<(Millis, u64)>,
    /// Every code used at or after this time has been inserted...
    complete_since: Millis,
    /// ...but the cap pushed out codes used before this.
    lost_until: Millis,
    max: usize,
}

/// What the memory knows of a code.
#[derive(Debug, PartialEq, Eq)]
pub enum Known {
    Used,
    Unused,
    /// Not remembered, but it may have been used within the window: ask the store.
    Unsure,
}

fn key(code_hash: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(code_hash)
}

impl UsedCodes {
    /// An empty memory that knows nothing before `now`.
    pub fn new(now: Millis, max: usize) -> Self {
        Self {
            codes: HashSet::new(),
            order: VecDeque::new(),
            complete_since: now,
            lost_until: Millis::MIN,
            max,
        }
    }

    /// Declares that every code the store recorded since `since` has been inserted (oldest
    /// first), making the memory complete from then, unless the cap pushed some out.
    pub fn loaded_since(&mut self, since: Millis) {
        self.complete_since = self.complete_since.min(since);
    }

    pub fn insert(&mut self, code_hash: &str, now: Millis) {
        self.push(now, key(code_hash));
    }

    fn push(&mut self, at: Millis, k: u64) {
        if !self.codes.insert(k) {
            return;
        }
        self.order.push_back((at, k));
        while self.order.len() > self.max {
            if let Some((at, k)) = self.order.pop_front() {
                self.codes.remove(&k);
                self.lost_until = self.lost_until.max(at + 1);
            }
        }
    }

    pub fn check(&mut self, code_hash: &str, now: Millis) -> Known {
        self.forget_before(now - WINDOW);
        if self.codes.contains(&key(code_hash)) {
            Known::Used
        } else if self.complete_since.max(self.lost_until) <= now - WINDOW {
            Known::Unused
        } else {
            Known::Unsure
        }
    }

    /// Drops codes used before `cutoff`: WeChat refuses them by now.
    fn forget_before(&mut self, cutoff: Millis) {
        while let Some(&(at, k)) = self.order.front() {
            if at >= cutoff {
                break;
            }
            self.order.pop_front();
            self.codes.remove(&k);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_700_000_000_000;

    #[test]
    fn after_a_start_it_asks_the_store_until_it_has_seen_a_whole_window() {
        let mut m = UsedCodes::new(T0, 10);
        m.insert("a", T0 + 1);
        assert_eq!(m.check("a", T0 + 2), Known::Used);
        assert_eq!(m.check("b", T0 + 2), Known::Unsure);
        assert_eq!(m.check("b", T0 + WINDOW - 1), Known::Unsure);
        assert_eq!(m.check("b", T0 + WINDOW), Known::Unused);
        // "a" is still within its window, then forgotten.
        assert_eq!(m.check("a", T0 + WINDOW), Known::Used);
        assert_eq!(m.check("a", T0 + 1 + WINDOW + 1), Known::Unused);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_load_from_the_store_makes_it_complete_at_once() {
        let mut m = UsedCodes::new(T0, 10);
        m.insert("older", T0 - 120_000);
        m.insert("old", T0 - 60_000);
        m.loaded_since(T0 - WINDOW);
        assert_eq!(m.check("old", T0), Known::Used);
        assert_eq!(m.check("older", T0), Known::Used);
        assert_eq!(m.check("fresh", T0), Known::Unused);
        assert_eq!(m.check("older", T0 - 120_000 + WINDOW + 1), Known::Unused);
    }

    #[test]
    fn past_the_cap_the_oldest_go_and_unknown_codes_are_unsure_until_the_window_passes() {
        let mut m = UsedCodes::new(T0 - WINDOW, 3);
        for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
            m.insert(c, T0 + i as Millis);
        }
        assert_eq!(m.len(), 3);
        // "a" was pushed out while still within its window.
        assert_eq!(m.check("a", T0 + 10), Known::Unsure);
        assert_eq!(m.check("d", T0 + 10), Known::Used);
        assert_eq!(m.check("a", T0 + 1 + WINDOW), Known::Unused);
    }

    #[test]
    fn a_load_larger_than_the_cap_leaves_it_incomplete() {
        let mut m = UsedCodes::new(T0, 2);
        for i in 0..3 {
            m.insert(&format!("c{i}"), T0 - 1_000 + i);
        }
        m.loaded_since(T0 - WINDOW);
        assert_eq!(m.check("c0", T0), Known::Unsure);
        assert_eq!(m.check("c2", T0), Known::Used);
        assert_eq!(m.check("fresh", T0), Known::Unsure);
    }
}
