//! The router driven with a fake clock and fake fds.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use proptest::prelude::*;

use super::*;

/// A passed socket: records when it is closed (dropped).
#[derive(Debug)]
struct Fd {
    id: u64,
    closed: Rc<RefCell<Vec<u64>>>,
}

impl Drop for Fd {
    fn drop(&mut self) {
        self.closed.borrow_mut().push(self.id);
    }
}

fn creds(uid: u32) -> Credentials {
    Credentials {
        pid: 4242,
        uid,
        gid: uid,
    }
}

fn designator(n: u64) -> Designator {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key[31] = 0x5a;
    Designator::from_key_bytes(key)
}

struct World {
    router: Router<Fd>,
    now: Instant,
    closed: Rc<RefCell<Vec<u64>>>,
    next_fd: u64,
}

impl World {
    fn new(limits: Limits) -> World {
        World {
            router: Router::new(limits, Policy::same_uid(1000)),
            now: Instant::now(),
            closed: Rc::default(),
            next_fd: 1,
        }
    }

    fn fd(&mut self) -> Fd {
        self.next_fd += 1;
        Fd {
            id: self.next_fd,
            closed: self.closed.clone(),
        }
    }

    fn is_closed(&self, fd: u64) -> bool {
        self.closed.borrow().contains(&fd)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.router.handle_timeout(self.now);
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.router.poll_action()).collect()
    }

    fn client(&mut self, n: u64) -> ClientId {
        let id = self.router.accept(self.now, creds(1000), false).unwrap();
        self.router.registered(self.now, id, designator(n));
        id
    }

    /// An intro from client `from` (registered as designator `me`) to
    /// designator `to`, `hints` hints on `from`; returns the fd number.
    fn intro(&mut self, from: ClientId, me: u64, to: u64, hints: usize) -> u64 {
        let mut loc = Locator::unix(designator(me));
        for h in 0..hints {
            loc.add_hint(format!("{h:0>1000}"));
        }
        let record = NewConnection {
            from: loc,
            to: Locator::unix(designator(to)),
        };
        let fd = self.fd();
        let n = fd.id;
        self.router.intro(self.now, from, record, fd, 0);
        n
    }

    /// Sends everything queued toward `client`, as a client that reads
    /// at once; returns the records.
    fn drain(&mut self, client: ClientId) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(t) = self.router.poll_transmit(self.now, client) {
            out.push(t.record);
            drop(t.fd);
            self.router.sent(self.now, client);
        }
        out
    }
}

fn closes(actions: &[Action]) -> Vec<(ClientId, Reason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { client, reason, .. } => Some((*client, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn registration_must_finish_in_time() {
    let mut w = World::new(Limits::default());
    let c = w.router.accept(w.now, creds(1000), false).unwrap();
    w.advance(Duration::from_millis(4999));
    assert!(w.actions().is_empty());
    w.advance(Duration::from_millis(1));
    assert_eq!(closes(&w.actions()), vec![(c, Reason::RegistrationTimeout)]);
    assert_eq!(w.router.status().clients, 0);
    assert_eq!(w.router.status().unregistered, 0);
    assert_eq!(w.router.poll_timeout(), None);
}

#[test]
fn admission_limits_and_policy() {
    let limits = Limits {
        max_clients: 3,
        max_clients_per_uid: 2,
        max_unregistered: 2,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    assert_eq!(
        w.router.accept(w.now, creds(7), false),
        Err(Reason::Policy),
        "another uid"
    );
    assert!(
        w.router.accept(w.now, creds(7), true).is_ok(),
        "a spawned child is not judged by the policy"
    );
    let a = w.router.accept(w.now, creds(1000), false).unwrap();
    assert_eq!(
        w.router.accept(w.now, creds(1000), false),
        Err(Reason::MaxUnregistered)
    );
    w.router.registered(w.now, a, designator(1));
    let _b = w.router.accept(w.now, creds(1000), false).unwrap();
    assert_eq!(
        w.router.accept(w.now, creds(1000), false),
        Err(Reason::MaxClients)
    );
    w.router.closed(w.now, a);
    let mut policy_uid = Policy::same_uid(1000);
    policy_uid.allow_uids.push(7);
    let mut w2 = World::new(Limits {
        max_clients_per_uid: 1,
        ..Limits::default()
    });
    w2.router.policy = policy_uid;
    w2.router.accept(w2.now, creds(7), false).unwrap();
    assert_eq!(
        w2.router.accept(w2.now, creds(7), false),
        Err(Reason::MaxClientsPerUid)
    );
    assert_eq!(w.router.status().counters.accepted, 6);
    assert_eq!(w.router.status().counters.refusals(Reason::Policy), 1);
}

#[test]
fn an_intro_is_forwarded_as_a_canonical_record() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let b = w.client(2);
    assert!(w.actions().is_empty());
    let fd = w.intro(a, 1, 2, 0);
    assert_eq!(w.actions(), vec![Action::Wake(b)]);
    let t = w.router.poll_transmit(w.now, b).unwrap();
    assert_eq!(t.fd.id, fd);
    let expected = NewConnection {
        from: Locator::unix(designator(1)),
        to: Locator::unix(designator(2)),
    };
    assert_eq!(t.record, expected.to_value().encode());
    assert!(
        w.router.poll_transmit(w.now, b).is_none(),
        "one unit at a time"
    );
    drop(t);
    w.router.sent(w.now, b);
    let s = w.router.status();
    assert_eq!(
        (
            s.counters.intros_forwarded,
            s.held_fds,
            s.held_bytes,
            s.queued
        ),
        (1, 0, 0, 0)
    );
}

#[test]
fn an_upper_case_target_is_forwarded_in_lower_case() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let b = w.client(2);
    let upper = designator(2).to_string().to_uppercase();
    let raw = format!(
        "<18'uds:new-connection{}<10'ocapn-peer18'unix-domain-socket52\"{upper}f>>",
        String::from_utf8(Locator::unix(designator(1)).encode()).unwrap()
    );
    let record = NewConnection::from_value(&uds_syrup::decode(raw.as_bytes()).unwrap()).unwrap();
    let fd = w.fd();
    w.router.intro(w.now, a, record, fd, 0);
    let t = w.router.poll_transmit(w.now, b).unwrap();
    let text = String::from_utf8_lossy(&t.record).into_owned();
    assert!(text.contains(&designator(2).to_string()), "{text}");
    assert!(!text.contains(&upper), "{text}");
}

#[test]
fn a_spoofed_from_closes_the_sender_and_its_fd() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let b = w.client(2);
    let fd = w.intro(a, 3, 2, 0);
    assert_eq!(closes(&w.actions()), vec![(a, Reason::SpoofedFrom)]);
    assert!(w.is_closed(fd));
    assert!(w.router.poll_transmit(w.now, b).is_none());
    assert_eq!(w.router.status().registered, 1);
}

#[test]
fn an_intro_before_registering_is_a_protocol_violation() {
    let mut w = World::new(Limits::default());
    let a = w.router.accept(w.now, creds(1000), false).unwrap();
    let fd = w.intro(a, 1, 2, 0);
    assert_eq!(closes(&w.actions()), vec![(a, Reason::Protocol)]);
    assert!(w.is_closed(fd));
}

#[test]
fn extra_fds_are_counted() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let _b = w.client(2);
    let fd = w.fd();
    let record = NewConnection {
        from: Locator::unix(designator(1)),
        to: Locator::unix(designator(2)),
    };
    w.router.intro(w.now, a, record, fd, 2);
    assert_eq!(w.router.status().counters.extra_fds_closed, 2);
    assert_eq!(w.router.status().counters.intros_received, 1);
}

#[test]
fn a_parked_intro_waits_for_its_target_then_expires_exactly_on_time() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let fd1 = w.intro(a, 1, 2, 0);
    assert_eq!(w.router.status().parked, 1);
    w.advance(Duration::from_secs(3));
    let b = w.client(2);
    assert_eq!(w.actions(), vec![Action::Wake(b)]);
    assert_eq!(w.drain(b).len(), 1);
    assert!(w.is_closed(fd1), "sent, then closed by the shell");

    let fd2 = w.intro(a, 1, 3, 0);
    w.advance(Duration::from_millis(9999));
    assert!(!w.is_closed(fd2));
    w.advance(Duration::from_millis(1));
    assert!(w.is_closed(fd2), "closed at the park deadline");
    let s = w.router.status();
    assert_eq!(s.counters.refusals(Reason::ParkTimeout), 1);
    assert_eq!((s.parked, s.held_fds, s.held_bytes), (0, 0, 0));
    assert!(closes(&w.actions()).is_empty(), "nobody is disconnected");
}

/// Regression: a client parks intros for a victim with huge `from`
/// hints; when the victim registers it must stay registered, and what is
/// queued toward it is bounded.
#[test]
fn parked_intros_with_huge_hints_do_not_hurt_the_victim() {
    let mut w = World::new(Limits::default());
    let attacker = w.client(1);
    for _ in 0..20 {
        w.intro(attacker, 1, 2, 60);
    }
    let s = w.router.status();
    assert_eq!(s.parked, 16, "capped by --max-intros-per-target");
    assert_eq!(s.counters.refusals(Reason::SenderQuota), 4);
    assert!(
        s.held_bytes < 16 * 400,
        "hints that are not server designators are not kept: {} bytes held",
        s.held_bytes
    );
    let victim = w.client(2);
    let records = w.drain(victim);
    assert_eq!(records.len(), 16);
    assert!(closes(&w.actions()).is_empty());
    assert_eq!(w.router.status().registered, 2);
}

#[test]
fn forwarded_records_keep_at_most_the_configured_server_hints() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let b = w.client(2);
    let mut from = Locator::unix(designator(1));
    for i in 0..20 {
        from = from.with_hint(designator(100 + i));
    }
    from.add_hint("not a designator");
    let fd = w.fd();
    w.router.intro(
        w.now,
        a,
        NewConnection {
            from,
            to: Locator::unix(designator(2)),
        },
        fd,
        0,
    );
    let t = w.router.poll_transmit(w.now, b).unwrap();
    let forwarded = NewConnection::from_value(&uds_syrup::decode(&t.record).unwrap()).unwrap();
    assert_eq!(forwarded.from.hints().len(), 8);
    assert_eq!(forwarded.from.hint_servers().count(), 8);
}

/// Regression: an honest burst to a reader that reads steadily gets
/// the sender slowed down, never the reader disconnected, and every intro
/// through.
#[test]
fn a_burst_slows_the_sender_and_the_reader_gets_everything() {
    let mut w = World::new(Limits::default());
    let sender = w.client(1);
    let reader = w.client(2);
    let mut paused = false;
    let mut delivered = 0;
    let mut sent = 0;
    let mut pauses = 0;
    let mut step = 0u64;
    while delivered < 2000 {
        step += 1;
        assert!(step < 100_000, "no progress");
        if !paused && sent < 2000 {
            w.intro(sender, 1, 2, 0);
            sent += 1;
        }
        // The reader takes one intro every third step: slower than the
        // sender, but steady.
        if step.is_multiple_of(3)
            && let Some(t) = w.router.poll_transmit(w.now, reader)
        {
            drop(t.fd);
            w.router.sent(w.now, reader);
            delivered += 1;
        }
        for a in w.actions() {
            match a {
                Action::Pause(c) => {
                    assert_eq!(c, sender);
                    paused = true;
                    pauses += 1;
                }
                Action::Resume(c) => {
                    assert_eq!(c, sender);
                    paused = false;
                }
                Action::Close { client, reason, .. } => {
                    panic!("{client} closed: {reason}")
                }
                Action::Wake(_) => {}
            }
        }
        w.advance(Duration::from_micros(500));
    }
    assert_eq!(delivered, 2000);
    assert!(pauses > 0, "the sender was slowed down");
    let s = w.router.status();
    assert_eq!(s.counters.intros_forwarded, 2000);
    assert_eq!((s.held_fds, s.paused, s.registered), (0, 0, 2));
}

#[test]
fn a_target_that_does_not_read_is_closed_and_its_senders_resumed() {
    let mut w = World::new(Limits::default());
    let sender = w.client(1);
    let deaf = w.client(2);
    let mut fds = Vec::new();
    for _ in 0..16 {
        fds.push(w.intro(sender, 1, 2, 0));
    }
    let actions = w.actions();
    assert!(actions.contains(&Action::Pause(sender)), "{actions:?}");
    // The shell hands the first intro to the deaf client, which never reads.
    let t = w.router.poll_transmit(w.now, deaf).unwrap();
    w.advance(Duration::from_millis(9999));
    assert!(w.actions().is_empty());
    w.advance(Duration::from_millis(1));
    let actions = w.actions();
    assert_eq!(closes(&actions), vec![(deaf, Reason::NotReading)]);
    assert!(actions.contains(&Action::Resume(sender)));
    drop(t);
    for fd in fds {
        assert!(w.is_closed(fd));
    }
    let s = w.router.status();
    assert_eq!((s.held_fds, s.held_bytes, s.registered), (0, 0, 1));
    assert_eq!(s.counters.intros_dropped, 16);
}

/// A target that reads, but too slowly (one intro every 9 s, within
/// `send_timeout`), never holds what others sent it for more than
/// `park_timeout`: intros it has not taken by then are closed, and a
/// sender paused behind another's intros is resumed.
#[test]
fn intros_a_slow_target_does_not_take_in_time_expire() {
    let mut w = World::new(Limits::default());
    let accomplice = w.client(1);
    let honest = w.client(3);
    let slow = w.client(2);
    let ahead: Vec<u64> = (0..16).map(|_| w.intro(accomplice, 1, 2, 0)).collect();
    let behind: Vec<u64> = (0..16).map(|_| w.intro(honest, 3, 2, 0)).collect();
    assert!(w.actions().contains(&Action::Pause(honest)));
    let take = |w: &mut World| {
        let t = w.router.poll_transmit(w.now, slow).unwrap();
        drop(t.fd);
        w.router.sent(w.now, slow);
    };
    take(&mut w);
    w.advance(Duration::from_secs(9));
    take(&mut w);
    assert!(!w.actions().contains(&Action::Resume(honest)));
    w.advance(Duration::from_secs(1));
    let actions = w.actions();
    assert!(closes(&actions).is_empty(), "{actions:?}");
    assert!(actions.contains(&Action::Resume(honest)), "{actions:?}");
    for fd in ahead.iter().chain(&behind) {
        assert!(w.is_closed(*fd));
    }
    let s = w.router.status();
    assert_eq!(s.counters.refusals(Reason::QueueTimeout), 30);
    assert_eq!(s.counters.intros_forwarded, 2);
    assert_eq!((s.held_fds, s.held_bytes, s.queued, s.paused), (0, 0, 0, 0));
    // The honest sender's next intro goes through.
    w.intro(honest, 3, 2, 0);
    assert_eq!(w.drain(slow).len(), 1);
}

/// Regression: parked intros are bounded in bytes, per sender and in
/// total.
#[test]
fn parked_intros_are_bounded_in_bytes() {
    let limits = Limits {
        max_held_bytes: 100 << 10,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    let senders: Vec<ClientId> = (0..20).map(|i| w.client(10 + i)).collect();
    for (i, s) in senders.iter().enumerate() {
        for t in 0..64 {
            w.intro(*s, 10 + i as u64, 1000 + t, 60);
        }
    }
    let s = w.router.status();
    assert!(s.held_bytes <= 100 << 10, "{}", s.held_bytes);
    assert!(s.counters.refusals(Reason::HeldBytes) > 0);
    assert!(closes(&w.actions()).is_empty());
}

#[test]
fn a_sender_refused_too_often_is_disconnected() {
    let limits = Limits {
        max_parked_per_target: 1,
        max_refused_per_sender: 5,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    let a = w.client(1);
    w.client(3);
    w.intro(a, 1, 2, 0); // parks; a fills the target's slot itself
    for _ in 0..5 {
        w.intro(a, 1, 2, 0);
    }
    assert!(closes(&w.actions()).is_empty());
    // A new window: refusals of the old one are forgotten.
    w.now += Duration::from_secs(10);
    for _ in 0..5 {
        w.intro(a, 1, 2, 0);
    }
    assert!(closes(&w.actions()).is_empty());
    w.intro(a, 1, 2, 0);
    assert_eq!(closes(&w.actions()), vec![(a, Reason::Flooding)]);
    assert_eq!(w.router.status().registered, 1);
}

/// Refusals caused by others (park slots they fill, the daemon-wide
/// `--max-held-fds` and `--max-held-bytes`) never get a sender
/// disconnected as flooding, however often they happen.
#[test]
fn refusals_caused_by_others_do_not_count_as_flooding() {
    // Park slots filled by another client.
    let limits = Limits {
        max_parked_per_target: 1,
        max_refused_per_sender: 5,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    let a = w.client(1);
    let other = w.client(3);
    w.intro(other, 3, 2, 0); // parks; the target's slot is full now
    for _ in 0..50 {
        w.intro(a, 1, 2, 0);
    }
    assert_eq!(w.router.status().counters.refusals(Reason::ParkedLimit), 50);
    assert!(closes(&w.actions()).is_empty());

    // The daemon-wide pool of held sockets filled by another client's
    // parked intros: an honest sender to a registered, slow target is
    // refused, and stays connected.
    let limits = Limits {
        max_held_fds: 4,
        max_refused_per_sender: 5,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    let filler = w.client(1);
    let honest = w.client(2);
    w.client(3); // registered, never drained
    for t in 100..104 {
        w.intro(filler, 1, t, 0);
    }
    assert_eq!(w.router.status().held_fds, 4);
    for _ in 0..50 {
        w.intro(honest, 2, 3, 0);
    }
    assert_eq!(w.router.status().counters.refusals(Reason::HeldFds), 50);
    assert!(closes(&w.actions()).is_empty());

    // The same for --max-held-bytes: the filler's parked intros take all
    // of it (one intro's size measured first).
    let mut w = World::new(Limits::default());
    let c = w.client(1);
    w.intro(c, 1, 100, 0);
    let one = w.router.status().held_bytes;
    let limits = Limits {
        max_held_bytes: 4 * one,
        max_refused_per_sender: 5,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    let filler = w.client(1);
    let honest = w.client(2);
    w.client(3);
    for t in 100..104 {
        w.intro(filler, 1, t, 0);
    }
    assert_eq!(w.router.status().held_bytes, 4 * one);
    for _ in 0..50 {
        w.intro(honest, 2, 3, 0);
    }
    assert_eq!(w.router.status().counters.refusals(Reason::HeldBytes), 50);
    assert!(closes(&w.actions()).is_empty());
}

#[test]
fn a_new_registration_takes_over_the_queue_of_the_old_one() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let old = w.client(2);
    let fd = w.intro(a, 1, 2, 0);
    w.actions();
    let new = w.client(2);
    let actions = w.actions();
    assert_eq!(closes(&actions), vec![(old, Reason::Replaced)]);
    assert!(actions.contains(&Action::Wake(new)));
    let t = w.router.poll_transmit(w.now, new).unwrap();
    assert_eq!(t.fd.id, fd);
}

#[test]
fn a_sender_leaving_drops_its_parked_intros_but_not_its_queued_ones() {
    let mut w = World::new(Limits::default());
    let a = w.client(1);
    let b = w.client(2);
    let queued = w.intro(a, 1, 2, 0);
    let parked = w.intro(a, 1, 3, 0);
    w.router.closed(w.now, a);
    assert!(w.is_closed(parked));
    assert!(!w.is_closed(queued));
    let t = w.router.poll_transmit(w.now, b).unwrap();
    assert_eq!(t.fd.id, queued);
    w.router.sent(w.now, b);
    let s = w.router.status();
    assert_eq!((s.held_fds, s.parked, s.clients), (0, 0, 1));
}

// ---------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Op {
    Connect,
    Register {
        client: usize,
        who: u64,
    },
    Intro {
        client: usize,
        to: u64,
        spoof: bool,
        hints: usize,
    },
    Read {
        client: usize,
    },
    Close {
        client: usize,
    },
    Wait {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Connect),
        2 => (0..12usize, 0..6u64).prop_map(|(client, who)| Op::Register { client, who }),
        6 => (0..12usize, 0..8u64, prop::bool::weighted(0.05), 0..3usize)
            .prop_map(|(client, to, spoof, hints)| Op::Intro { client, to, spoof, hints }),
        4 => (0..12usize).prop_map(|client| Op::Read { client }),
        1 => (0..12usize).prop_map(|client| Op::Close { client }),
        2 => (0..4000u64).prop_map(|ms| Op::Wait { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random event sequences with a fake clock: no fd is ever held past
    /// its deadline, every intro is forwarded or closed exactly once, and
    /// no client is closed for another's traffic.
    #[test]
    fn random_event_sequences_keep_the_invariants(ops in prop::collection::vec(op(), 1..300)) {
        let limits = Limits {
            max_intros_per_sender: 6,
            max_intros_per_target: 3,
            max_parked_per_target: 4,
            max_held_fds: 40,
            max_refused_per_sender: 8,
            ..Limits::default()
        };
        let mut w = World::new(limits);
        // The shell's view: open clients, their designator, whether
        // paused, the unit each is sending.
        let mut open: Vec<ClientId> = Vec::new();
        let mut who: HashMap<ClientId, u64> = HashMap::new();
        let mut paused: HashSet<ClientId> = HashSet::new();
        let mut in_flight: HashMap<ClientId, (Fd, Instant)> = HashMap::new();
        // fd -> (the deadline by which it must be closed if it stays
        // parked, its target).
        let mut park_deadline: HashMap<u64, (Instant, u64)> = HashMap::new();
        let mut issued: HashSet<u64> = HashSet::new();
        let mut forwarded: HashSet<u64> = HashSet::new();
        let mut spoofers: HashSet<ClientId> = HashSet::new();
        let mut senders: HashSet<ClientId> = HashSet::new();
        for op in ops {
            match op {
                Op::Connect => {
                    if let Ok(c) = w.router.accept(w.now, creds(1000), false) {
                        open.push(c);
                    }
                }
                Op::Register { client, who: d } => {
                    if let Some(&c) = open.get(client) && !who.contains_key(&c) {
                        w.router.registered(w.now, c, designator(d));
                        who.insert(c, d);
                        // Its parked intros are queued now, with the same
                        // deadline.
                    }
                }
                Op::Intro { client, to, spoof, hints } => {
                    let Some(&c) = open.get(client) else { continue };
                    let Some(&me) = who.get(&c) else { continue };
                    if paused.contains(&c) {
                        continue; // the shell does not read a paused client
                    }
                    let from = if spoof { me + 100 } else { me };
                    if spoof {
                        spoofers.insert(c);
                    }
                    senders.insert(c);
                    let fd = w.intro(c, from, to, hints);
                    issued.insert(fd);
                    if !w.is_closed(fd) {
                        // Parked or queued, it is handed out or closed
                        // within park_timeout.
                        park_deadline.insert(fd, (w.now + limits.park_timeout, to));
                    }
                }
                Op::Read { client } => {
                    let Some(&c) = open.get(client) else { continue };
                    if let Some((fd, _)) = in_flight.remove(&c) {
                        forwarded.insert(fd.id);
                        drop(fd);
                        w.router.sent(w.now, c);
                    }
                }
                Op::Close { client } => {
                    if client < open.len() {
                        let c = open.remove(client);
                        in_flight.remove(&c);
                        w.router.closed(w.now, c);
                    }
                }
                Op::Wait { ms } => w.advance(Duration::from_millis(ms)),
            }
            // The shell performs the actions.
            for a in w.actions() {
                match a {
                    Action::Close { client, reason, .. } => {
                        match reason {
                            Reason::SpoofedFrom => prop_assert!(spoofers.contains(&client)),
                            Reason::Flooding => prop_assert!(senders.contains(&client)),
                            Reason::NotReading => {
                                let (_, since) = in_flight.get(&client).expect("closed for not reading without a unit in flight");
                                prop_assert!(w.now.saturating_duration_since(*since) >= limits.send_timeout);
                            }
                            Reason::RegistrationTimeout => prop_assert!(!who.contains_key(&client)),
                            Reason::Replaced => prop_assert!(who.contains_key(&client)),
                            other => prop_assert!(false, "closed {} for {}", client, other),
                        }
                        open.retain(|c| *c != client);
                        in_flight.remove(&client);
                        paused.remove(&client);
                    }
                    Action::Pause(c) => { paused.insert(c); }
                    Action::Resume(c) => { paused.remove(&c); }
                    Action::Wake(_) => {}
                }
            }
            // The shell hands every open client its next unit.
            for &c in &open {
                if !in_flight.contains_key(&c)
                    && let Some(t) = w.router.poll_transmit(w.now, c)
                {
                    park_deadline.remove(&t.fd.id);
                    in_flight.insert(c, (t.fd, w.now));
                }
            }
            // No parked or queued fd outlives its deadline.
            for (fd, (deadline, _)) in &park_deadline {
                if *deadline <= w.now {
                    prop_assert!(w.is_closed(*fd), "fd {} held past its deadline", fd);
                }
            }
            let s = w.router.status();
            prop_assert!(s.held_fds <= limits.max_held_fds);
            prop_assert_eq!(s.held_fds, w.router.intros.len());
        }
        // Everyone leaves; time passes: every fd is closed exactly once.
        for c in open.drain(..) {
            w.router.closed(w.now, c);
        }
        drop(in_flight);
        w.advance(Duration::from_secs(3600));
        let closed = w.closed.borrow().clone();
        let unique: HashSet<u64> = closed.iter().copied().collect();
        prop_assert_eq!(unique.len(), closed.len(), "an fd was closed twice");
        for fd in &issued {
            prop_assert!(unique.contains(fd), "fd {} never closed", fd);
        }
        let s = w.router.status();
        prop_assert_eq!((s.held_fds, s.held_bytes, s.clients, s.parked, s.paused), (0, 0, 0, 0, 0));
        prop_assert_eq!(w.router.poll_timeout(), None);
        prop_assert!(forwarded.is_subset(&issued));
    }
}

/// Thousands of clients with a fake clock, in milliseconds: every one
/// One uid cannot take every unregistered slot: past
/// `max_unregistered_per_uid` its new connections are refused, another
/// admitted uid's are not, and a slot frees when a connection registers or
/// ends.
#[test]
fn one_uid_cannot_take_every_unregistered_slot() {
    let limits = Limits {
        max_unregistered: 10,
        max_unregistered_per_uid: 3,
        ..Limits::default()
    };
    let mut w = World::new(limits);
    w.router = Router::new(
        limits,
        Policy {
            own_uid: 1000,
            allow_uids: vec![2000],
            allow_gids: Vec::new(),
        },
    );
    let mine: Vec<ClientId> = (0..3)
        .map(|_| w.router.accept(w.now, creds(1000), false).unwrap())
        .collect();
    assert_eq!(
        w.router.accept(w.now, creds(1000), false),
        Err(Reason::MaxUnregisteredPerUid)
    );
    assert!(w.router.accept(w.now, creds(2000), false).is_ok());
    // A registration frees a slot, and so does a connection ending.
    w.router.registered(w.now, mine[0], designator(1));
    let again = w.router.accept(w.now, creds(1000), false).unwrap();
    assert_eq!(
        w.router.accept(w.now, creds(1000), false),
        Err(Reason::MaxUnregisteredPerUid)
    );
    w.router.closed(w.now, again);
    assert!(w.router.accept(w.now, creds(1000), false).is_ok());
    let s = w.router.status();
    assert_eq!(s.counters.refusals(Reason::MaxUnregisteredPerUid), 2);
    assert_eq!(s.unregistered, 4);
}

/// registers, dials a random peer, and the deadlines hold.
#[test]
fn thousands_of_clients_with_a_fake_clock() {
    let mut w = World::new(Limits {
        max_clients: 10_000,
        max_clients_per_uid: 10_000,
        ..Limits::default()
    });
    let n = 5000u64;
    let clients: Vec<ClientId> = (0..n).map(|i| w.client(i)).collect();
    for (i, c) in clients.iter().enumerate() {
        let i = i as u64;
        w.intro(*c, i, (i * 7919 + 13) % (n + 500), 0); // some targets are absent
    }
    for c in &clients {
        w.drain(*c);
    }
    let s = w.router.status();
    assert_eq!(s.counters.intros_forwarded + s.parked as u64, n);
    w.advance(Duration::from_secs(10));
    let s = w.router.status();
    assert_eq!((s.parked, s.held_fds), (0, 0));
    assert!(closes(&w.actions()).is_empty());
}
