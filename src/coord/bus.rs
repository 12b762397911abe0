//! The acknowledged broadcast that lets instances answer token checks from their own memory on
//! PostgreSQL + Redis and still honour SPEC §3: a revocation takes effect on every instance
//! before it is answered.
//!
//! One Redis channel carries three kinds of message, all published through one Redis node (a
//! single Redis, or on a cluster the master that owns the bus counter's slot), so every
//! subscriber sees them in the one order that node processed them:
//! - `p <instance> <t>`: a ping every [`PING_EVERY`]. An instance that receives its own ping
//!   sent at `t` (its own clock) knows it has processed every message published before that
//!   ping, and holds a **lease** until `t + LEASE`. It answers from memory only while it holds
//!   one ([`Bus::leased`]).
//! - `r <instance> <seq> <hash>…` / `c <instance> <seq>`: sessions ended / everything ended.
//!   Every receiver drops them from memory, then acknowledges.
//! - `a <to> <seq> <from>`: the acknowledgement.
//!
//! Redis numbers every message as it publishes it (one script: `INCR`, then `PUBLISH "<n> <message>"`).
//! A subscriber that sees a number other than the next (a message lost on a Redis Cluster's
//! internal link, a Redis restarted empty) clears its memory and starts its lease over, so a lost
//! revocation can never be outlived by a lease renewed after it.
//!
//! Why a revoker may answer once it has waited [`LEASE`] after its publication returned, even
//! if someone never acknowledged: an instance B still answering from memory at that moment
//! holds a lease from a ping it sent less than `LEASE` ago, so after the revocation was
//! published; that ping came back to B after the revocation did, so B has dropped the token.
//! A slow or lost peer therefore costs a revocation at most `LEASE`, never its guarantee.
//! The acknowledgements only make the usual case fast: once the revoker's own message comes
//! back, every instance whose ping it saw within the last `2 × LEASE` must acknowledge (any
//! instance holding a lease sent a ping in that window, before the revocation, so the revoker
//! saw it first). A revoker whose own subscription is younger than that window waits the lease.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a confirmed ping lets an instance answer from memory.
pub const LEASE: Duration = Duration::from_millis(500);
/// How often each instance pings itself through Redis.
pub const PING_EVERY: Duration = Duration::from_millis(100);
/// The bus's channel (under the deployment's prefix).
pub const CHANNEL: &str = "sessions";

/// What a revocation tells every instance.
pub enum Ended<'a> {
    /// These token hashes.
    Sessions(&'a [String]),
    /// Every session any instance holds in memory.
    All,
}

/// What Redis's numbering says of a message.
#[derive(Debug, PartialEq)]
pub enum Sequence {
    /// The next one (or the first since subscribing).
    Next,
    /// Something was lost before it: memory must be cleared.
    Gap,
}

/// A message read from the bus.
#[derive(Debug, PartialEq)]
pub enum Message {
    Ping {
        from: String,
        sent: u64,
    },
    Ended {
        from: String,
        seq: u64,
        hashes: Option<Vec<String>>,
    },
    Ack {
        to: String,
        seq: u64,
        from: String,
    },
}

impl Message {
    /// A message as Redis published it: its number, then the message.
    pub fn parse_numbered(text: &str) -> Option<(u64, Self)> {
        let (n, rest) = text.split_once(' ')?;
        Some((n.parse().ok()?, Self::parse(rest)?))
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let kind = words.next()?;
        let from = words.next()?.to_owned();
        let n: u64 = words.next()?.parse().ok()?;
        match kind {
            "p" => Some(Self::Ping { from, sent: n }),
            "r" => Some(Self::Ended {
                from,
                seq: n,
                hashes: Some(words.map(str::to_owned).collect()),
            }),
            "c" => Some(Self::Ended {
                from,
                seq: n,
                hashes: None,
            }),
            "a" => Some(Self::Ack {
                to: from,
                seq: n,
                from: words.next()?.to_owned(),
            }),
            _ => None,
        }
    }
}

/// A revocation waiting for its acknowledgements.
struct Pending {
    acks: HashSet<String>,
    /// Who must acknowledge, known once the message came back; `None` before, or when this
    /// instance cannot know (its subscription is too young): then only the lease ends the wait.
    expected: Option<HashSet<String>>,
    done: Option<oneshot::Sender<()>>,
}

impl Pending {
    fn settle(&mut self) {
        if let Some(expected) = &self.expected {
            if expected.is_subset(&self.acks) {
                if let Some(done) = self.done.take() {
                    let _ = done.send(());
                }
            }
        }
    }
}

#[derive(Default)]
struct Peers {
    /// When each other instance's ping was last seen.
    seen: HashMap<String, Instant>,
    pending: HashMap<u64, Pending>,
}

/// This instance's side of the bus: its lease, the peers it has seen, its revocations in flight.
pub struct Bus {
    id: String,
    base: Instant,
    seq: AtomicU64,
    /// The subscription is up; and since when (ms since `base`).
    live: AtomicBool,
    live_since: AtomicU64,
    /// Milliseconds since `base` until which the lease holds.
    lease_until: AtomicU64,
    /// When this instance's own ping last came back (ms since `base`).
    own_ping_seen: AtomicU64,
    /// The number of the last message read since subscribing (0: none yet).
    last_number: AtomicU64,
    /// Whether anything here reads the bus (an in-memory session cache is configured).
    enabled: AtomicBool,
    peers: Mutex<Peers>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            base: Instant::now(),
            seq: AtomicU64::new(0),
            live: AtomicBool::new(false),
            live_since: AtomicU64::new(0),
            lease_until: AtomicU64::new(0),
            own_ping_seen: AtomicU64::new(0),
            last_number: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            peers: Mutex::new(Peers::default()),
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Something here answers from memory: revocations must go over the bus.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Whether this instance may answer from memory now.
    pub fn leased(&self) -> bool {
        self.live.load(Ordering::SeqCst) && self.now_ms() < self.lease_until.load(Ordering::SeqCst)
    }

    /// The subscription is up (`true`) or lost (`false`). Either way the lease starts over.
    pub fn set_live(&self, live: bool) {
        self.lease_until.store(0, Ordering::SeqCst);
        self.last_number.store(0, Ordering::SeqCst);
        self.live_since.store(self.now_ms(), Ordering::SeqCst);
        self.live.store(live, Ordering::SeqCst);
        if !live {
            self.peers().seen.clear();
        }
    }

    /// Checks a message's number against the last one's. On a gap the lease ends at once (the
    /// caller clears memory); later pings renew it.
    pub fn number(&self, n: u64) -> Sequence {
        let last = self.last_number.swap(n, Ordering::SeqCst);
        if last == 0 || n == last + 1 {
            Sequence::Next
        } else {
            self.lease_until.store(0, Ordering::SeqCst);
            Sequence::Gap
        }
    }

    /// The subscription is up but this instance's pings stopped coming back (a stalled
    /// connection): time to subscribe again.
    pub fn stalled(&self) -> bool {
        let heard = self
            .own_ping_seen
            .load(Ordering::SeqCst)
            .max(self.live_since.load(Ordering::SeqCst));
        self.live.load(Ordering::SeqCst)
            && self.now_ms().saturating_sub(heard) > 3 * LEASE.as_millis() as u64
    }

    pub fn ping(&self) -> String {
        format!("p {} {}", self.id, self.now_ms())
    }

    /// A revocation's message and its sequence number, registered to collect acknowledgements;
    /// the receiver completes once they are in.
    pub fn ended(&self, what: &Ended<'_>) -> (String, u64, oneshot::Receiver<()>) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let text = match what {
            Ended::Sessions(hashes) => format!("r {} {seq} {}", self.id, hashes.join(" ")),
            Ended::All => format!("c {} {seq}", self.id),
        };
        let (tx, rx) = oneshot::channel();
        self.peers().pending.insert(
            seq,
            Pending {
                acks: HashSet::new(),
                expected: None,
                done: Some(tx),
            },
        );
        (text, seq, rx)
    }

    /// Waits until every instance that may hold a lease acknowledged `seq`, or until
    /// [`LEASE`] after `published` (when any lease from before the publication has run out).
    pub async fn wait(&self, seq: u64, done: oneshot::Receiver<()>, published: Instant) {
        let _ = tokio::time::timeout_at((published + LEASE).into(), done).await;
        self.forget(seq);
    }

    /// Drops a revocation that was not published.
    pub fn forget(&self, seq: u64) {
        self.peers().pending.remove(&seq);
    }

    /// Handles a message; returns the acknowledgement to publish when it is someone else's
    /// revocation (to be sent after the caller dropped what it names).
    pub fn receive(&self, message: &Message) -> Option<String> {
        match message {
            Message::Ping { from, sent } if *from == self.id => {
                self.own_ping_seen.store(self.now_ms(), Ordering::SeqCst);
                self.lease_until
                    .fetch_max(sent + LEASE.as_millis() as u64, Ordering::SeqCst);
                None
            }
            Message::Ping { from, .. } => {
                let mut peers = self.peers();
                peers.seen.retain(|_, at| at.elapsed() < 2 * LEASE);
                peers.seen.insert(from.clone(), Instant::now());
                None
            }
            Message::Ended { from, seq, .. } if *from == self.id => {
                // Our own message is back: whoever may hold a lease pinged before it, and we
                // have seen those pings, if we have been listening for long enough.
                let listened = self
                    .now_ms()
                    .saturating_sub(self.live_since.load(Ordering::SeqCst));
                let window = 2 * LEASE;
                let mut peers = self.peers();
                let expected = (self.live.load(Ordering::SeqCst)
                    && listened >= window.as_millis() as u64)
                    .then(|| {
                        peers
                            .seen
                            .iter()
                            .filter(|(_, at)| at.elapsed() < window)
                            .map(|(id, _)| id.clone())
                            .collect::<HashSet<_>>()
                    });
                peers.seen.retain(|_, at| at.elapsed() < window);
                if let Some(p) = peers.pending.get_mut(seq) {
                    p.expected = expected;
                    p.settle();
                }
                None
            }
            Message::Ended { from, seq, .. } => Some(format!("a {from} {seq} {}", self.id)),
            Message::Ack { to, seq, from } if *to == self.id => {
                if let Some(p) = self.peers().pending.get_mut(seq) {
                    p.acks.insert(from.clone());
                    p.settle();
                }
                None
            }
            Message::Ack { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let bus = Bus::new();
        let (text, seq, _) = bus.ended(&Ended::Sessions(&["ab".into(), "cd".into()]));
        assert_eq!(
            Message::parse(&text),
            Some(Message::Ended {
                from: bus.id().into(),
                seq,
                hashes: Some(vec!["ab".into(), "cd".into()])
            })
        );
        let (text, seq, _) = bus.ended(&Ended::All);
        assert_eq!(
            Message::parse(&text),
            Some(Message::Ended {
                from: bus.id().into(),
                seq,
                hashes: None
            })
        );
        assert!(matches!(
            Message::parse(&bus.ping()),
            Some(Message::Ping { .. })
        ));
        for junk in ["", "p", "p x", "p x y", "z a 1", "a x 1"] {
            assert_eq!(Message::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_gap_in_redis_numbering_ends_the_lease_until_the_next_ping() {
        let mut bus = Bus::new();
        bus.base = bus.base.checked_sub(2 * LEASE).unwrap();
        bus.set_live(true);
        let (n, ping) = Message::parse_numbered(&format!("41 {}", bus.ping())).unwrap();
        assert_eq!(n, 41);
        assert_eq!(bus.number(n), Sequence::Next, "the first since subscribing");
        bus.receive(&ping);
        assert_eq!(bus.number(42), Sequence::Next);
        assert!(bus.leased());
        // 43 was lost (a revocation, perhaps): no lease until a ping after it comes back.
        assert_eq!(bus.number(44), Sequence::Gap);
        assert!(!bus.leased());
        assert_eq!(bus.number(45), Sequence::Next);
        bus.receive(&Message::parse(&bus.ping()).unwrap());
        assert!(bus.leased());
        // Redis restarted empty: its numbers start again, which is a gap too.
        assert_eq!(bus.number(1), Sequence::Gap);
        // A new subscription starts counting afresh.
        bus.set_live(true);
        assert_eq!(bus.number(7), Sequence::Next);
        assert_eq!(Message::parse_numbered("x p a 1"), None);
    }

    #[test]
    fn the_lease_comes_from_this_instances_own_ping_only() {
        let mut bus = Bus::new();
        bus.base = bus.base.checked_sub(2 * LEASE).unwrap();
        bus.set_live(true);
        assert!(!bus.leased(), "no ping back yet");
        let other = Bus::new();
        bus.receive(&Message::parse(&other.ping()).unwrap());
        assert!(!bus.leased(), "another instance's ping is not ours");
        bus.receive(&Message::parse(&bus.ping()).unwrap());
        assert!(bus.leased());
        bus.set_live(false);
        assert!(!bus.leased(), "a lost subscription ends the lease");
        // A ping sent longer than a lease ago gives none.
        bus.set_live(true);
        bus.receive(&Message::Ping {
            from: bus.id().into(),
            sent: bus.now_ms().saturating_sub(LEASE.as_millis() as u64 + 1),
        });
        assert!(!bus.leased());
    }

    #[tokio::test]
    async fn a_revocation_completes_when_every_recent_peer_acknowledged() {
        let mut bus = Bus::new();
        // Listening for long enough to know every peer that may hold a lease.
        bus.base = bus.base.checked_sub(2 * LEASE).unwrap();
        bus.set_live(true);
        bus.live_since.store(0, Ordering::SeqCst);
        let (b, c) = (Bus::new(), Bus::new());
        bus.receive(&Message::parse(&b.ping()).unwrap());
        bus.receive(&Message::parse(&c.ping()).unwrap());
        let (text, seq, mut done) = bus.ended(&Ended::All);
        let message = Message::parse(&text).unwrap();
        // B and C drop what it names and answer.
        let ack_b = b.receive(&message).unwrap();
        let ack_c = c.receive(&message).unwrap();
        assert_eq!(bus.receive(&message), None, "our own message");
        bus.receive(&Message::parse(&ack_b).unwrap());
        assert!(done.try_recv().is_err(), "C has not acknowledged");
        // An acknowledgement for someone else is not counted.
        let mut stray = Message::parse(&ack_c).unwrap();
        if let Message::Ack { to, .. } = &mut stray {
            *to = "someone".into();
        }
        bus.receive(&stray);
        assert!(done.try_recv().is_err());
        bus.receive(&Message::parse(&ack_c).unwrap());
        assert!(done.try_recv().is_ok(), "everyone acknowledged");
        bus.forget(seq);
    }

    #[tokio::test]
    async fn a_young_subscription_waits_for_the_lease() {
        let bus = Bus::new();
        bus.set_live(true);
        let (text, seq, done) = bus.ended(&Ended::All);
        bus.receive(&Message::parse(&text).unwrap());
        let started = Instant::now();
        bus.wait(seq, done, started).await;
        assert!(
            started.elapsed() >= LEASE,
            "it could not know who holds a lease"
        );
    }
}
