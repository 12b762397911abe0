//! The shared session cache in Redis: token checks answered without the store, and the
//! revocation tombstones every instance reads. All of it is here; the session service is its
//! one caller.
//!
//! Why it looks the way it does:
//! - Revocation writes a tombstone instead of deleting, and fills go through a script that will
//!   not overwrite a tombstone, so a fill racing a logout cannot resurrect the token.
//! - Entries are tagged with a cache epoch. An instance that saw Redis fail (and so may have
//!   missed writing a tombstone) bumps the epoch before it uses the cache again (`Coord::run`),
//!   which turns every entry written before the outage into a miss.
//! - The cached session never holds the `session_key`: routes that need it read the store.
//! - A token's entry and its bucket's epoch share a hash tag on a Redis Cluster
//!   ([`Coord::session_keys`]), so the MGET and the fill script stay on one slot.
//! - On PostgreSQL, what Redis confirms is also kept in this instance's memory
//!   ([`super::session_memory`]); every revocation then also goes over the bus and waits for
//!   it ([`super::bus`]).

use super::bus::Ended;
use super::session_memory::{Generation, SessionMemory};
use super::Coord;
use crate::domain::{AppId, OpenId, TokenHash, UnionId};
use crate::store::SessionRecord;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a token check may be answered from the cache without the store.
pub const SESSION_TTL: Duration = Duration::from_secs(30);
const TOMBSTONE: &str = "revoked";

/// Sets KEYS[1] to "<epoch>|ARGV[1]" for ARGV[2] ms unless it holds a tombstone or the epoch
/// (KEYS[2]) is no longer ARGV[3], the one the lookup saw: a record read from the store before
/// a cache-wide invalidation (a merge) must not be cached after it. One round trip.
const SET_UNLESS_REVOKED: &str = r#"
if redis.call('GET', KEYS[1]) == 'revoked' then return 0 end
local epoch = redis.call('GET', KEYS[2]) or '0'
if epoch ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], epoch .. '|' .. ARGV[1], 'PX', ARGV[2])
return 1"#;

/// What a token check needs, shared between instances. No session_key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedSession {
    id: i64,
    user_id: i64,
    #[serde(default = "weixin")]
    platform: String,
    appid: String,
    openid: String,
    unionid: Option<String>,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

/// Entries written by a release before platforms were recorded.
fn weixin() -> String {
    "weixin".into()
}

impl CachedSession {
    fn of(s: &SessionRecord) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            platform: s.platform.clone(),
            appid: s.appid.to_string(),
            openid: s.openid.0.clone(),
            unionid: s.unionid.as_ref().map(|u| u.0.clone()),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
        }
    }

    fn into_record(self) -> Option<SessionRecord> {
        Some(SessionRecord {
            id: self.id,
            user_id: self.user_id,
            platform: self.platform,
            appid: AppId::parse(&self.appid).ok()?,
            openid: OpenId(self.openid),
            unionid: self.unionid.map(UnionId),
            session_key: None,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
        })
    }
}

/// The cache epoch a lookup saw (and memory's generation before it); a fill after it is kept
/// only if neither moved.
#[derive(Debug, Clone)]
pub struct Epoch(String, Option<Generation>);

/// What the shared cache knows of a token.
pub enum Lookup {
    /// A live entry (without its session_key).
    Hit(SessionRecord),
    /// Revoked: refuse it without asking the store.
    Revoked,
    /// Not cached (or cached before the last outage): ask the store.
    Miss,
}

#[derive(Clone)]
pub struct SessionCache(Arc<Coord>, Option<Arc<SessionMemory>>);

impl SessionCache {
    /// The shared cache, and this instance's memory in front of it (on PostgreSQL).
    pub fn new(coord: Arc<Coord>, memory: Option<Arc<SessionMemory>>) -> Self {
        Self(coord, memory)
    }

    /// The session as this instance's memory has it, when memory may answer.
    pub fn recall(&self, hash: &TokenHash) -> Option<SessionRecord> {
        self.1.as_ref()?.get(hash)
    }

    /// `None` when Redis is unavailable.
    pub async fn get(&self, hash: &TokenHash) -> Option<(Lookup, Epoch)> {
        let generation = self.1.as_ref().map(|m| m.generation());
        let (epoch_key, key) = self.0.session_keys(&hash.0);
        let (epoch, value): (Option<String>, Option<String>) = self
            .0
            .run(|mut c| async move {
                redis::cmd("MGET")
                    .arg(epoch_key)
                    .arg(key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let epoch = Epoch(epoch.unwrap_or_else(|| "0".into()), generation);
        let Some(value) = value else {
            return Some((Lookup::Miss, epoch));
        };
        if value == TOMBSTONE {
            return Some((Lookup::Revoked, epoch));
        }
        let parsed = value
            .split_once('|')
            .filter(|(e, _)| *e == epoch.0)
            .and_then(|(_, json)| serde_json::from_str::<CachedSession>(json).ok())
            .and_then(CachedSession::into_record);
        match parsed {
            Some(s) => {
                self.remember(hash, &s, &epoch);
                Some((Lookup::Hit(s), epoch))
            }
            None => Some((Lookup::Miss, epoch)),
        }
    }

    fn remember(&self, hash: &TokenHash, s: &SessionRecord, seen: &Epoch) {
        if let (Some(memory), Some(generation)) = (&self.1, seen.1) {
            memory.put(hash, s, generation);
        }
    }

    /// Caches `session` for at most `ttl` (and never past [`SESSION_TTL`]), unless the token
    /// was revoked meanwhile or the epoch moved since `seen`.
    pub async fn put(
        &self,
        hash: &TokenHash,
        session: &SessionRecord,
        ttl: Duration,
        seen: &Epoch,
    ) {
        let (epoch_key, key) = self.0.session_keys(&hash.0);
        let Ok(json) = serde_json::to_string(&CachedSession::of(session)) else {
            return;
        };
        let ms = ttl.min(SESSION_TTL).as_millis().max(1) as u64;
        let epoch = seen.0.clone();
        let kept = self
            .0
            .run(|mut c| async move {
                Script::new(SET_UNLESS_REVOKED)
                    .key(key)
                    .key(epoch_key)
                    .arg(json)
                    .arg(ms)
                    .arg(epoch)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
        if kept == Some(1) {
            self.remember(hash, session, seen);
        }
    }

    /// Turns every cached entry into a miss on every instance (a new epoch, and memory
    /// cleared everywhere). `false` if Redis could not be told (the epoch bump on recovery
    /// then covers it).
    pub async fn invalidate_all(&self) -> bool {
        // In a task of its own, so a caller that goes away (a client hanging up) cannot stop it
        // halfway, with memories still holding what it was ending.
        let this = self.clone();
        tokio::spawn(async move { this.invalidate_all_now().await })
            .await
            .unwrap_or(false)
    }

    async fn invalidate_all_now(&self) -> bool {
        let coord = self.0.clone();
        let bumped = self
            .0
            .run(|c| async move { coord.bump_epochs(&c).await })
            .await
            .is_some();
        if let Some(memory) = &self.1 {
            memory.clear();
        }
        bumped && self.0.announce(Ended::All, true).await
    }

    /// Ends these sessions on every instance: a tombstone each in Redis, then (when instances
    /// keep sessions in memory) the bus, waited for when `wait`. `false` if Redis could not be
    /// told all of it.
    pub async fn end(&self, hashes: &[TokenHash], wait: bool) -> bool {
        if hashes.is_empty() {
            return true;
        }
        // In a task of its own, as `invalidate_all`.
        let (this, hashes) = (self.clone(), hashes.to_vec());
        tokio::spawn(async move { this.end_now(&hashes, wait).await })
            .await
            .unwrap_or(false)
    }

    async fn end_now(&self, hashes: &[TokenHash], wait: bool) -> bool {
        let mut told = true;
        for hash in hashes {
            told &= self.revoke(hash).await;
        }
        let names: Vec<String> = hashes.iter().map(|h| h.0.clone()).collect();
        // After the tombstones: a read here that saw the entry before them is not kept.
        if let Some(memory) = &self.1 {
            memory.evict(&names);
        }
        told & self.0.announce(Ended::Sessions(&names), wait).await
    }

    /// Whether Redis answers this instance now (a round trip, which also moves the epoch if
    /// this instance missed writes while it could not reach Redis).
    pub async fn reachable(&self) -> bool {
        self.0
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .is_some()
    }

    /// Marks the token revoked in Redis. `false` if Redis could not be told (the epoch bump on
    /// recovery then covers it).
    async fn revoke(&self, hash: &TokenHash) -> bool {
        let (_, key) = self.0.session_keys(&hash.0);
        let ms = (SESSION_TTL * 2).as_millis() as u64;
        self.0
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(TOMBSTONE)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
            .is_some()
    }
}
