//! Sessions kept in this instance's memory on PostgreSQL + Redis, so a token check usually costs
//! no round trip at all. The shared cache in Redis stays the source every instance fills from;
//! this is a copy of what it confirmed.
//!
//! Why it stays true (SPEC §3: a revocation holds on every instance before it is answered):
//! - Every revocation is announced on the bus ([`super::bus`]) and waits until every instance
//!   that may answer from memory has dropped the token, or until their leases ran out.
//! - Memory answers only while this instance holds a lease (its own pings come back through
//!   Redis in time) and its Redis circuit is closed; a lost subscription clears it.
//! - A record is kept only if no revocation arrived while it was being read (a generation
//!   counter), so a read racing a revocation cannot bring the token back.
//! - It never holds a session_key, and an entry is used for at most [`TTL`]; liveness (idle and
//!   absolute expiry) is still decided by the session policy on every check.

use super::bus::{Message, Sequence, CHANNEL, LEASE, PING_EVERY};
use super::Coord;
use crate::domain::TokenHash;
use crate::store::SessionRecord;
use futures::StreamExt;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest an entry is used, whatever the bus says.
pub const TTL: Duration = Duration::from_secs(10);

type Entries = Option<LruCache<TokenHash, (SessionRecord, Instant)>>;

pub struct SessionMemory {
    coord: Arc<Coord>,
    /// `None` with `WXLOGIN_SESSION_CACHE_SIZE=0`: nothing is kept, but this instance still
    /// pings, acknowledges and announces its revocations, for the instances that keep sessions.
    entries: Mutex<Entries>,
    /// Moves on every eviction: a read that saw another value may be stale and is not kept.
    generation: AtomicU64,
}

/// What a caller captures before reading Redis or the store, and hands back with what it read.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl SessionMemory {
    pub fn new(coord: Arc<Coord>, capacity: Option<NonZeroUsize>) -> Arc<Self> {
        coord.bus.enable();
        Arc::new(Self {
            coord,
            entries: Mutex::new(capacity.map(LruCache::new)),
            generation: AtomicU64::new(0),
        })
    }

    fn usable(&self) -> bool {
        self.coord.bus.leased() && self.coord.is_healthy()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session in memory, while memory may be trusted.
    pub fn get(&self, hash: &TokenHash) -> Option<SessionRecord> {
        if !self.usable() {
            return None;
        }
        let mut entries = self.entries();
        let entries = entries.as_mut()?;
        match entries.get(hash) {
            Some((s, at)) if at.elapsed() < TTL => Some(s.clone()),
            Some(_) => {
                entries.pop(hash);
                None
            }
            None => None,
        }
    }

    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::SeqCst))
    }

    /// Keeps what Redis or the store said, unless a revocation arrived since `seen`.
    pub fn put(&self, hash: &TokenHash, s: &SessionRecord, seen: Generation) {
        if !self.usable() {
            return;
        }
        let mut entries = self.entries();
        let Some(entries) = entries.as_mut() else {
            return;
        };
        // Checked under the lock the evictions take, so an eviction cannot slip in between.
        if self.generation.load(Ordering::SeqCst) == seen.0 {
            let mut s = s.clone();
            s.session_key = None;
            entries.put(hash.clone(), (s, Instant::now()));
        }
    }

    pub fn evict(&self, hashes: &[String]) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = entries.as_mut() {
            for h in hashes {
                entries.pop(&TokenHash(h.clone()));
            }
        }
    }

    pub fn clear(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = entries.as_mut() {
            entries.clear();
        }
    }

    /// Keeps the bus subscription up until `stop`: pings, drops what revocations name and
    /// acknowledges them; clears memory when the subscription is lost, and subscribes again.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.coord.subscribe(CHANNEL).await {
                Ok(mut messages) => {
                    self.clear();
                    self.coord.bus.set_live(true);
                    let pinger = tokio::spawn(ping(self.coord.clone()));
                    let mut check = tokio::time::interval(LEASE);
                    let stopped = loop {
                        tokio::select! {
                            () = stop.cancelled() => break true,
                            message = messages.next() => match message {
                                Some(m) => self.handle(&m),
                                None => break false,
                            },
                            // A subscription that stalled without ending (a half-open
                            // connection) would leave memory bypassed for good: start again.
                            _ = check.tick() => if self.coord.bus.stalled() {
                                break false;
                            },
                        }
                    };
                    pinger.abort();
                    self.coord.bus.set_live(false);
                    self.clear();
                    if stopped {
                        return;
                    }
                    tracing::warn!(
                        "session memory: the Redis subscription ended; bypassed until it is back"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "session memory: cannot subscribe yet"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn handle(&self, m: &redis::Msg) {
        let Some((n, message)) = m
            .get_payload::<String>()
            .ok()
            .and_then(|text| Message::parse_numbered(&text))
        else {
            return;
        };
        if self.coord.bus.number(n) == Sequence::Gap {
            tracing::warn!("session memory: a bus message was lost; memory cleared");
            self.clear();
        }
        if let Message::Ended { from, hashes, .. } = &message {
            if from != self.coord.bus.id() {
                match hashes {
                    Some(hashes) => self.evict(hashes),
                    None => self.clear(),
                }
            }
        }
        // Acknowledged only now that memory no longer holds what it named.
        if let Some(ack) = self.coord.bus.receive(&message) {
            let coord = self.coord.clone();
            tokio::spawn(async move { coord.publish_bus(ack).await });
        }
    }
}

/// Pings this instance through Redis every [`PING_EVERY`]: each ping that comes back renews
/// the lease.
async fn ping(coord: Arc<Coord>) {
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let ping = coord.bus.ping();
        coord.publish_bus(ping).await;
    }
}
