//! Redis as the shared cache and coordination layer for several instances — never the only
//! copy of anything. Every operation here may answer `None` ("Redis unavailable"), and every
//! caller then falls back to the store of record: slower, still correct.
//!
//! Why the pieces look the way they do:
//! - Each operation has a 250 ms budget and a failure opens a 1 s circuit, so a hung Redis
//!   (`kill -STOP`) costs a request at most one short wait, not a stall.
//! - An instance that saw Redis fail (and so may have missed writing a revocation) bumps the
//!   cache epoch before it uses Redis again; see [`session_cache`].
//!
//! - `WXLOGIN_REDIS_URL` may name a Redis Cluster (`redis+cluster://host:port,host:port`). Keys
//!   that meet in one command share a hash tag: the session cache keeps a cache epoch per bucket
//!   of tokens (`{s<xx>}`: the token hash's first two hex digits, 256 buckets spread over the
//!   masters), and a cache-wide invalidation moves every bucket's epoch. Everything else touches
//!   one key per command. A single Redis keeps the untagged layout of earlier releases, so a
//!   rolling upgrade sees the same keys.
//!
//! This module holds the connection, the budget and the circuit breaker, plus the small
//! primitives other services build on: locks (one code exchange, one access_token refresh),
//! shared values and rate-limit counters. The shared session cache is [`session_cache`].
//! Depends on the domain and store records only.

pub mod bus;
pub mod session_cache;
pub mod session_memory;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const OP_TIMEOUT: Duration = Duration::from_millis(250);
const OPEN_FOR: Duration = Duration::from_secs(1);
/// Deletes KEYS[1] if it still holds ARGV[1] (release a lock, drop a value we wrote).
const DELETE_IF: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"#;

/// The session cache's buckets on a Redis Cluster (one cache epoch each).
const BUCKETS: usize = 256;

/// Numbers a bus message and publishes it, in one script on the node that holds the bus's
/// counter (KEYS[1]: the Redis, or on a cluster the master of its slot), so every subscriber
/// reads the bus in that node's order and can tell when a message was lost ([`bus`]).
const PUBLISH_NUMBERED: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], n .. ' ' .. ARGV[2])
return n"#;

async fn publish_ordered(
    mut conn: Conn,
    counter: String,
    channel: String,
    message: String,
) -> redis::RedisResult<()> {
    Script::new(PUBLISH_NUMBERED)
        .key(counter)
        .arg(channel)
        .arg(message)
        .invoke_async::<i64>(&mut conn)
        .await
        .map(drop)
}

pub enum Lock {
    Acquired(String),
    Held,
    Unavailable,
}

/// One Redis or a Redis Cluster, behind the one interface every command runs on. Both
/// reconnect by themselves; cloning is cheap.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(Box<ConnectionManager>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// How to reach Redis: a `redis://` URL, or `redis+cluster://host:port,host:port,…` (the
/// user-info of the first node, if any, applies to all).
enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl Target {
    /// The target, and the clients subscriptions may use (each node of a cluster in turn).
    fn parse(url: &str) -> anyhow::Result<(Self, Vec<redis::Client>)> {
        let Some(rest) = url.strip_prefix("redis+cluster://") else {
            let client = redis::Client::open(url)?;
            return Ok((Self::Single(client.clone()), vec![client]));
        };
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.split('/').next().unwrap_or_default();
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{auth}{h}"))
            .collect();
        anyhow::ensure!(
            !nodes.is_empty(),
            "WXLOGIN_REDIS_URL: redis+cluster:// names no node"
        );
        let pubsub = nodes
            .iter()
            .map(|n| redis::Client::open(n.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(OP_TIMEOUT)
            .retries(2)
            .build()?;
        Ok((Self::Cluster(client), pubsub))
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(1))
                    .set_response_timeout(OP_TIMEOUT)
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(|c| Conn::Single(Box::new(c)))
            }
            Self::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}

pub struct Coord {
    conn: RwLock<Option<Conn>>,
    /// Where subscriptions connect: the Redis, or a cluster's nodes, the next one after a
    /// subscription is lost (classic pub/sub is cluster-wide).
    pubsub: Vec<redis::Client>,
    next_pubsub: AtomicUsize,
    /// The acknowledged broadcast behind the in-memory session cache.
    pub bus: bus::Bus,
    /// A Redis Cluster: the session cache's keys carry hash tags.
    cluster: bool,
    prefix: String,
    started: Instant,
    /// Circuit breaker: milliseconds since `started` until which Redis is not tried.
    open_until: AtomicU64,
    /// Failures seen (each may have missed a write), and how many of them an epoch bump has
    /// covered since: a bump is owed while `missed > covered`. Counters, not a flag, so a
    /// failure racing a bump is never wiped out by it.
    missed: AtomicU64,
    covered: AtomicU64,
    /// One caller at a time owes the recovery (the epoch bump and the memories' clear).
    recovering: tokio::sync::Mutex<()>,
    healthy: AtomicBool,
}

impl Coord {
    /// Connects, waiting a moment for Redis at boot; if it is down, wxlogin starts anyway (and
    /// serves from the store) while a background task keeps trying.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Arc<Self>> {
        let (target, pubsub) = Target::parse(url)?;
        let coord = Arc::new(Self {
            conn: RwLock::new(None),
            pubsub,
            next_pubsub: AtomicUsize::new(0),
            bus: bus::Bus::new(),
            cluster: matches!(target, Target::Cluster(_)),
            prefix: prefix.to_owned(),
            started: Instant::now(),
            open_until: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            covered: AtomicU64::new(0),
            recovering: tokio::sync::Mutex::new(()),
            healthy: AtomicBool::new(true),
        });
        if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), target.connect()).await {
            coord.set_conn(conn);
            return Ok(coord);
        }
        tracing::warn!("redis: cannot connect yet; serving from the store meanwhile");
        let weak = Arc::downgrade(&coord);
        tokio::spawn(async move {
            while weak.strong_count() > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(conn) = target.connect().await {
                    if let Some(c) = weak.upgrade() {
                        c.set_conn(conn);
                        tracing::info!("redis connected");
                    }
                    return;
                }
            }
        });
        Ok(coord)
    }

    fn set_conn(&self, conn: Conn) {
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }

    /// The cache epoch key of a token's bucket, and the token's cache key: one slot on a
    /// cluster, the untagged layout on a single Redis.
    pub(crate) fn session_keys(&self, hash: &str) -> (String, String) {
        if self.cluster {
            let bucket = hash.get(..2).unwrap_or("00");
            (
                format!("{}{{s{bucket}}}epoch", self.prefix),
                format!("{}{{s{bucket}}}s:{hash}", self.prefix),
            )
        } else {
            (
                format!("{}epoch", self.prefix),
                format!("{}s:{hash}", self.prefix),
            )
        }
    }

    /// Every cache epoch key: one on a single Redis, one per bucket on a cluster.
    fn epoch_keys(&self) -> Vec<String> {
        if self.cluster {
            (0..BUCKETS)
                .map(|b| format!("{}{{s{b:02x}}}epoch", self.prefix))
                .collect()
        } else {
            vec![format!("{}epoch", self.prefix)]
        }
    }

    /// Moves every cache epoch: entries written before become misses.
    pub(crate) async fn bump_epochs(&self, conn: &Conn) -> redis::RedisResult<()> {
        let incrs = self.epoch_keys().into_iter().map(|key| {
            let mut c = conn.clone();
            async move { redis::cmd("INCR").arg(key).query_async::<i64>(&mut c).await }
        });
        for done in futures::future::join_all(incrs).await {
            done?;
        }
        Ok(())
    }

    pub(crate) fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// Whether Redis answered this instance's last operation (its circuit is closed).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
            && self.elapsed_ms() >= self.open_until.load(Ordering::SeqCst)
    }

    /// Publishes `message` on this deployment's `channel` (to every instance subscribed); `false`
    /// if Redis could not be told.
    pub async fn publish(&self, channel: &str, message: &str) -> bool {
        let (channel, message) = (self.key("ch", channel), message.to_owned());
        self.run(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// A subscription to this deployment's `channel`, on a connection of its own. The stream
    /// ends when that connection is lost.
    pub async fn subscribe(&self, channel: &str) -> redis::RedisResult<redis::aio::PubSubStream> {
        let n = self.next_pubsub.load(Ordering::SeqCst);
        let client = &self.pubsub[n % self.pubsub.len()];
        let subscribed = tokio::time::timeout(Duration::from_secs(2), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(self.key("ch", channel)).await?;
            Ok(pubsub)
        })
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "subscribe timed out")))
        .and_then(|r| r);
        if subscribed.is_err() {
            // On a cluster, the next attempt tries the next node.
            let _ = self
                .next_pubsub
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst);
        }
        Ok(subscribed?.into_on_message())
    }

    /// The bus's channel and its counter (tagged: one slot on a cluster).
    fn bus_names(&self) -> (String, String) {
        (
            format!("{}{{bus}}n", self.prefix),
            self.key("ch", bus::CHANNEL),
        )
    }

    /// Publishes on the bus ([`bus`]); `false` if Redis could not be told.
    pub async fn publish_bus(&self, message: String) -> bool {
        let (counter, channel) = self.bus_names();
        self.run(|c| publish_ordered(c, counter, channel, message))
            .await
            .is_some()
    }

    /// Tells every instance that these sessions ended (`hashes`) or that all did, and with
    /// `wait`, returns once no instance answers them from memory. `false` if Redis could not
    /// be told. Nothing to do when no instance keeps sessions in memory.
    pub async fn announce(&self, what: bus::Ended<'_>, wait: bool) -> bool {
        if !self.bus.enabled() {
            return true;
        }
        let (message, seq, done) = self.bus.ended(&what);
        if !self.publish_bus(message).await {
            self.bus.forget(seq);
            return false;
        }
        if wait {
            self.bus.wait(seq, done, Instant::now()).await;
        } else {
            self.bus.forget(seq);
        }
        true
    }

    /// After missed writes, every instance's memory is cleared as every cache epoch moved;
    /// waits as a revocation does.
    async fn clear_memories(&self, conn: &Conn) -> redis::RedisResult<()> {
        if !self.bus.enabled() {
            return Ok(());
        }
        let (message, seq, done) = self.bus.ended(&bus::Ended::All);
        let (counter, channel) = self.bus_names();
        let publish = publish_ordered(conn.clone(), counter, channel, message);
        match tokio::time::timeout(OP_TIMEOUT, publish).await {
            Ok(Ok(())) => {
                self.bus.wait(seq, done, Instant::now()).await;
                Ok(())
            }
            Ok(Err(e)) => {
                self.bus.forget(seq);
                Err(e)
            }
            Err(_) => {
                self.bus.forget(seq);
                Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "publish timed out",
                )))
            }
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn trip(&self) {
        self.missed.fetch_add(1, Ordering::SeqCst);
        self.open_until.store(
            self.elapsed_ms() + OPEN_FOR.as_millis() as u64,
            Ordering::SeqCst,
        );
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!("redis unavailable: serving from the store of record until it returns");
        }
    }

    /// Runs one Redis operation within its budget; `None` if Redis is unavailable.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.elapsed_ms() < self.open_until.load(Ordering::SeqCst) {
            return None;
        }
        let Some(conn) = self.conn.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            // Not connected yet: whatever this operation would have written (a revocation) is
            // missed, so the epoch must move once Redis is reached.
            self.missed.fetch_add(1, Ordering::SeqCst);
            return None;
        };
        if self.missed.load(Ordering::SeqCst) > self.covered.load(Ordering::SeqCst) {
            // One caller recovers; the others wait for it, then find nothing owed.
            let _one = self.recovering.lock().await;
            if self.elapsed_ms() < self.open_until.load(Ordering::SeqCst) {
                return None;
            }
            let missed = self.missed.load(Ordering::SeqCst);
            if missed > self.covered.load(Ordering::SeqCst) {
                let bumped = tokio::time::timeout(OP_TIMEOUT, self.bump_epochs(&conn)).await;
                let cleared = match bumped {
                    Ok(Ok(())) => Ok(self.clear_memories(&conn).await),
                    other => other,
                };
                match cleared {
                    Ok(Ok(_)) => {
                        self.covered.fetch_max(missed, Ordering::SeqCst);
                    }
                    _ => {
                        self.trip();
                        return None;
                    }
                }
            }
        }
        match tokio::time::timeout(OP_TIMEOUT, op(conn)).await {
            Ok(Ok(v)) => {
                if !self.healthy.swap(true, Ordering::SeqCst) {
                    tracing::info!("redis is back");
                }
                Some(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis operation failed");
                self.trip();
                None
            }
            Err(_) => {
                self.trip();
                None
            }
        }
    }

    pub async fn lock(&self, name: &str, ttl: Duration) -> Lock {
        let key = self.key("lock", name);
        let nonce = uuid::Uuid::new_v4().to_string();
        let n = nonce.clone();
        let ms = ttl.as_millis() as u64;
        let got: Option<Option<String>> = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(n)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
        match got {
            Some(Some(_)) => Lock::Acquired(nonce),
            Some(None) => Lock::Held,
            None => Lock::Unavailable,
        }
    }

    pub async fn unlock(&self, name: &str, nonce: &str) {
        let key = self.key("lock", name);
        let n = nonce.to_owned();
        self.run(|mut c| async move {
            Script::new(DELETE_IF)
                .key(key)
                .arg(n)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await;
    }

    /// `Some(true)` while someone holds the lock.
    pub async fn is_locked(&self, name: &str) -> Option<bool> {
        let key = self.key("lock", name);
        self.run(|mut c| async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut c)
                .await
        })
        .await
    }

    pub async fn get_value(&self, name: &str) -> Option<Option<String>> {
        let key = self.key("v", name);
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    pub async fn set_value(&self, name: &str, value: &str, ttl: Duration) {
        let (key, value) = (self.key("v", name), value.to_owned());
        let ms = ttl.as_millis().max(1) as u64;
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await;
    }

    pub async fn delete_value_if(&self, name: &str, value: &str) {
        let (key, value) = (self.key("v", name), value.to_owned());
        self.run(|mut c| async move {
            Script::new(DELETE_IF)
                .key(key)
                .arg(value)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await;
    }

    /// Takes one back from a fixed-window counter, if it still exists (never creating one).
    pub async fn decr_window(&self, name: &str) -> Option<i64> {
        let key = self.key("rl", name);
        self.run(|mut c| async move {
            redis::Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end return 0",
            )
            .key(key)
            .invoke_async::<i64>(&mut c)
            .await
        })
        .await
    }

    /// Adds one to a fixed-window counter and returns the new count (rate limits).
    pub async fn incr_window(&self, name: &str, window: Duration) -> Option<u64> {
        let key = self.key("rl", name);
        let ms = window.as_millis().max(1) as u64;
        self.run(|mut c| async move {
            let (count, _): (u64, i64) = redis::pipe()
                .cmd("INCR")
                .arg(&key)
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ms)
                .arg("NX")
                .query_async(&mut c)
                .await?;
            Ok(count)
        })
        .await
    }
}
