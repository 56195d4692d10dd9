//! Every dial of a soak run and what became of it, the faults that can
//! explain a failed dial, and the classes of error messages.
//!
//! Times are seconds since the start of the run (`f64`), so that this
//! module is pure and testable.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A peer, by its number in the run (never reused).
pub(crate) type PeerId = usize;

/// How a dial is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    Encrypted,
    Plaintext,
    /// A `uds-peer connect` process (encrypted), started for the dial.
    Cli,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Encrypted => "encrypted",
            Mode::Plaintext => "plaintext",
            Mode::Cli => "uds-peer",
        }
    }
}

/// Why a dial is made that must fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Negative {
    /// A plaintext dial to an encrypted peer, which must refuse it (no
    /// downgrade).
    Downgrade,
    /// The target left before the dial was made.
    Departed,
    /// The target registered and never reads from its server.
    Deaf,
}

impl Negative {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Negative::Downgrade => "plaintext dial to an encrypted peer (must be refused)",
            Negative::Departed => "dial to a peer that has left",
            Negative::Deaf => "dial to a client that never reads its server",
        }
    }
}

/// What a dial is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Connect, unless a fault explains why not.
    Connect,
    /// Fail, for this reason; connecting is a bug.
    Fail(Negative),
}

/// What became of a dial.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The reply came back through the connection after `ms`.
    Ok { ms: u64 },
    /// The dialer reported this error.
    Err { message: String },
    /// No outcome by the deadline.
    Hung,
    /// The dialer was killed (by the soak) before reporting.
    Abandoned,
}

/// One dial.
#[derive(Clone, Debug)]
pub(crate) struct Dial {
    pub dialer: PeerId,
    /// `None` for a misbehaving (deaf) target.
    pub target: Option<PeerId>,
    /// The designator the acceptor must see as `from`.
    pub dialer_designator: String,
    pub mode: Mode,
    pub expect: Expect,
    pub start: f64,
    pub deadline: f64,
    pub outcome: Option<(Outcome, f64)>,
    /// Who reported accepting it, and whether `from` was the dialer.
    pub accepted: Vec<(PeerId, bool)>,
}

/// What can make a dial fail without a bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    /// A daemon was killed or stopped, and had not yet been back for the
    /// grace period.
    DaemonDown(usize),
    /// A peer was stopped (SIGSTOP) or had just been continued.
    PeerStopped(PeerId),
    /// A peer left (quit or was killed).
    PeerLeft(PeerId),
}

impl Fault {
    /// How long after the fault ends it can still explain a failure: peers
    /// re-register with a restarted daemon after their back-off (up to 5 s
    /// by default), a continued peer catches up with its queued intros.
    pub(crate) fn grace(self) -> f64 {
        match self {
            Fault::DaemonDown(_) => 10.0,
            Fault::PeerStopped(_) => 3.0,
            Fault::PeerLeft(_) => 0.0,
        }
    }
}

/// A fault from `from` to `to` (`None`: not over).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub fault: Fault,
    pub from: f64,
    pub to: Option<f64>,
}

/// The verdict on one settled dial.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    Connected,
    /// Failed while a fault could explain it.
    Explained(&'static str),
    /// Failed with no fault to explain it.
    Unexplained,
    /// Failed, as it had to.
    RefusedAsExpected(Negative),
    /// Connected although it had to fail.
    WronglyConnected(Negative),
    Hung,
    Abandoned,
    Pending,
}

/// The classes of dial error messages (the texts come from the netlayer's
/// typed errors and from the soak peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ErrorClass {
    NotRegistered,
    NoSharedServer,
    NotDelivered,
    NoAnswer,
    IdentityNotProven,
    ServerLinkFailed,
    HandshakeIo,
    NoReply,
    ClosedBeforeReply,
    IoAfterConnect,
    WrongReply,
    BadLocator,
    Unclassified,
}

impl ErrorClass {
    /// Classifies an error message. When a message names several failed
    /// attempts, the first recognised one gives the class.
    pub(crate) fn of(message: &str) -> ErrorClass {
        const PATTERNS: [(&str, ErrorClass); 14] = [
            ("bad locator", ErrorClass::BadLocator),
            ("wrong reply", ErrorClass::WrongReply),
            ("not registered with any", ErrorClass::NotRegistered),
            ("no shared introduction server", ErrorClass::NoSharedServer),
            (
                "closed the connection before the peer answered",
                ErrorClass::NotDelivered,
            ),
            ("did not answer within", ErrorClass::NoAnswer),
            (
                "could not prove its identity",
                ErrorClass::IdentityNotProven,
            ),
            ("the server connection failed", ErrorClass::ServerLinkFailed),
            ("during the handshake", ErrorClass::HandshakeIo),
            ("no reply within", ErrorClass::NoReply),
            ("closed before the reply", ErrorClass::ClosedBeforeReply),
            ("reading the reply", ErrorClass::IoAfterConnect),
            ("sending the request", ErrorClass::IoAfterConnect),
            ("cannot create a socket", ErrorClass::Unclassified),
        ];
        let m = message.to_ascii_lowercase();
        PATTERNS
            .iter()
            .filter_map(|(p, c)| m.find(p).map(|at| (at, *c)))
            .min_by_key(|(at, _)| *at)
            .map_or(ErrorClass::Unclassified, |(_, c)| c)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ErrorClass::NotRegistered => "not registered with any server",
            ErrorClass::NoSharedServer => "no shared server",
            ErrorClass::NotDelivered => "server closed it (not delivered)",
            ErrorClass::NoAnswer => "peer did not answer in time",
            ErrorClass::IdentityNotProven => "peer could not prove its identity",
            ErrorClass::ServerLinkFailed => "link to the server failed",
            ErrorClass::HandshakeIo => "I/O error in the e2ee handshake",
            ErrorClass::NoReply => "no reply in time (after connecting)",
            ErrorClass::ClosedBeforeReply => "closed before the reply",
            ErrorClass::IoAfterConnect => "I/O error after connecting",
            ErrorClass::WrongReply => "WRONG REPLY",
            ErrorClass::BadLocator => "bad locator (soak bug)",
            ErrorClass::Unclassified => "unclassified",
        }
    }

    /// Whether the message itself shows a bug (whatever the faults).
    pub(crate) fn is_bug(self) -> bool {
        matches!(self, ErrorClass::WrongReply | ErrorClass::BadLocator)
    }
}

/// Every dial of a run.
///
/// The dials still open are indexed, so that what runs on every event
/// (pending counts, deadlines) costs the number of open dials, not of all
/// dials made.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    dials: BTreeMap<u64, Dial>,
    /// Dials without an outcome.
    open: BTreeSet<u64>,
    /// How many of them each dialer has.
    open_by: HashMap<PeerId, usize>,
    next_id: u64,
    windows: Vec<Window>,
    /// Outcome lines for unknown or already settled dials.
    pub stray: Vec<String>,
}

impl Ledger {
    pub(crate) fn new() -> Ledger {
        Ledger {
            next_id: 1,
            ..Ledger::default()
        }
    }

    /// Records a new dial; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        &mut self,
        dialer: PeerId,
        dialer_designator: &str,
        target: Option<PeerId>,
        mode: Mode,
        expect: Expect,
        now: f64,
        deadline: f64,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id);
        *self.open_by.entry(dialer).or_default() += 1;
        self.dials.insert(
            id,
            Dial {
                dialer,
                target,
                dialer_designator: dialer_designator.to_owned(),
                mode,
                expect,
                start: now,
                deadline: now + deadline,
                outcome: None,
                accepted: Vec::new(),
            },
        );
        id
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Dial> {
        self.dials.get(&id)
    }

    pub(crate) fn dials(&self) -> impl Iterator<Item = (u64, &Dial)> {
        self.dials.iter().map(|(i, d)| (*i, d))
    }

    /// Records the outcome `dialer` reported for dial `id`. A line for an
    /// unknown dial, from the wrong peer, or a second outcome is kept in
    /// [`stray`](Self::stray) (a bug of the peer or of the soak).
    pub(crate) fn settle(&mut self, id: u64, dialer: PeerId, outcome: Outcome, now: f64) {
        match self.dials.get_mut(&id) {
            Some(d) if d.dialer == dialer && d.outcome.is_none() => {
                d.outcome = Some((outcome, now));
                Self::close(&mut self.open, &mut self.open_by, id, dialer);
            }
            Some(d) if d.dialer == dialer && matches!(d.outcome, Some((Outcome::Hung, _))) => {
                // Late, after its deadline: it stays hung, but say what came.
                self.stray
                    .push(format!("dial {id} reported {outcome:?} after its deadline"));
            }
            Some(d) => self.stray.push(format!(
                "dial {id}: {outcome:?} from peer {dialer}, but it is peer {}'s and was {:?}",
                d.dialer, d.outcome
            )),
            None => self
                .stray
                .push(format!("an outcome for unknown dial {id}: {outcome:?}")),
        }
    }

    /// Records that `by` accepted dial `id` from `from`.
    pub(crate) fn accepted(&mut self, id: u64, by: PeerId, from: &str) {
        match self.dials.get_mut(&id) {
            Some(d) => {
                let from_ok = d.dialer_designator == from;
                d.accepted.push((by, from_ok));
            }
            None => self
                .stray
                .push(format!("peer {by} accepted unknown dial {id} from {from}")),
        }
    }

    /// Removes `id` of `dialer` from the open dials.
    fn close(
        open: &mut BTreeSet<u64>,
        open_by: &mut HashMap<PeerId, usize>,
        id: u64,
        dialer: PeerId,
    ) {
        if open.remove(&id)
            && let Some(n) = open_by.get_mut(&dialer)
        {
            *n -= 1;
            if *n == 0 {
                open_by.remove(&dialer);
            }
        }
    }

    /// Settles every open dial that `pick` selects with `outcome(dial)`;
    /// returns their ids.
    fn close_where(
        &mut self,
        pick: impl Fn(&Dial) -> bool,
        outcome: impl Fn(&Dial) -> (Outcome, f64),
    ) -> Vec<u64> {
        let ids: Vec<u64> = self
            .open
            .iter()
            .copied()
            .filter(|id| self.dials.get(id).is_some_and(&pick))
            .collect();
        for id in &ids {
            if let Some(d) = self.dials.get_mut(id) {
                d.outcome = Some(outcome(d));
                let dialer = d.dialer;
                Self::close(&mut self.open, &mut self.open_by, *id, dialer);
            }
        }
        ids
    }

    /// Marks every pending dial past its deadline as hung; returns their
    /// ids.
    pub(crate) fn expire(&mut self, now: f64) -> Vec<u64> {
        self.close_where(|d| now > d.deadline, |_| (Outcome::Hung, now))
    }

    /// Gives the pending dials of `dialer` `by` more seconds (it was
    /// stopped that long).
    pub(crate) fn extend(&mut self, dialer: PeerId, by: f64) {
        for id in &self.open {
            if let Some(d) = self.dials.get_mut(id)
                && d.dialer == dialer
            {
                d.deadline += by;
            }
        }
    }

    /// Settles the pending dials of a dialer that was killed.
    pub(crate) fn abandon(&mut self, dialer: PeerId, now: f64) {
        self.close_where(|d| d.dialer == dialer, |_| (Outcome::Abandoned, now));
    }

    /// Dials without an outcome yet.
    pub(crate) fn pending(&self) -> usize {
        self.open.len()
    }

    /// Dials of `dialer` without an outcome yet.
    pub(crate) fn pending_of(&self, dialer: PeerId) -> usize {
        self.open_by.get(&dialer).copied().unwrap_or(0)
    }

    /// A fault starts.
    pub(crate) fn fault_starts(&mut self, fault: Fault, now: f64) {
        self.windows.push(Window {
            fault,
            from: now,
            to: None,
        });
    }

    /// The open window of `fault` ends.
    pub(crate) fn fault_ends(&mut self, fault: Fault, now: f64) {
        if let Some(w) = self
            .windows
            .iter_mut()
            .rev()
            .find(|w| w.fault == fault && w.to.is_none())
        {
            w.to = Some(now);
        }
    }

    pub(crate) fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Which fault, if any, explains that `d` failed: one that overlapped
    /// the dial (plus its grace) and concerned its dialer, its target, or a
    /// daemon.
    pub(crate) fn explain(&self, d: &Dial, end: f64) -> Option<&'static str> {
        let mut best: Option<(u8, &'static str)> = None;
        for w in &self.windows {
            let until = w.to.map_or(f64::INFINITY, |t| t + w.fault.grace());
            if w.from > end || until < d.start {
                continue;
            }
            let found = match w.fault {
                Fault::PeerLeft(p) if Some(p) == d.target => (0, "the target left"),
                Fault::PeerStopped(p) if Some(p) == d.target => (1, "the target was stopped"),
                Fault::PeerStopped(p) if p == d.dialer => (2, "the dialer was stopped"),
                Fault::DaemonDown(_) => (3, "a daemon was down"),
                _ => continue,
            };
            if best.is_none_or(|(rank, _)| found.0 < rank) {
                best = Some(found);
            }
        }
        best.map(|(_, why)| why)
    }

    /// The verdict on dial `d`.
    pub(crate) fn verdict(&self, d: &Dial) -> Verdict {
        let Some((outcome, end)) = &d.outcome else {
            return Verdict::Pending;
        };
        match (outcome, d.expect) {
            (Outcome::Hung, _) => Verdict::Hung,
            (Outcome::Abandoned, _) => Verdict::Abandoned,
            (Outcome::Ok { .. }, Expect::Connect) => Verdict::Connected,
            (Outcome::Ok { .. }, Expect::Fail(n)) => Verdict::WronglyConnected(n),
            (Outcome::Err { .. }, Expect::Fail(n)) => Verdict::RefusedAsExpected(n),
            (Outcome::Err { .. }, Expect::Connect) => match self.explain(d, *end) {
                Some(why) => Verdict::Explained(why),
                None => Verdict::Unexplained,
            },
        }
    }
}

/// Counts over a ledger.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Totals {
    pub dials: u64,
    pub connected: u64,
    pub explained: u64,
    pub unexplained: u64,
    pub refused_as_expected: u64,
    pub wrongly_connected: u64,
    pub hung: u64,
    pub abandoned: u64,
    pub pending: u64,
    /// Accepted by a peer other than the target, or with a `from` other
    /// than the dialer.
    pub misdelivered: u64,
    /// Accepted more than once.
    pub duplicate_accepts: u64,
    /// Connected, but the target never reported accepting it.
    pub ok_without_accept: u64,
    /// Failed at the dialer although the target accepted and answered
    /// (e.g. the dialer gave up first).
    pub accepted_but_failed: u64,
    /// Errors whose message shows a bug (wrong reply, bad locator).
    pub bug_messages: u64,
    /// Errors with an empty message.
    pub empty_messages: u64,
}

/// One row of the error table: a class, with how many were explained by
/// a fault, unexplained, or expected failures, and one example message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassRow {
    pub class: ErrorClass,
    pub explained: u64,
    pub unexplained: u64,
    pub expected: u64,
    pub example: String,
}

/// Latency percentiles of connected dials, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub(crate) fn of(mut ms: Vec<u64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_unstable();
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Latency {
            count: ms.len() as u64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: ms[ms.len() - 1],
        }
    }
}

impl Ledger {
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for d in self.dials.values() {
            t.dials += 1;
            match self.verdict(d) {
                Verdict::Connected => t.connected += 1,
                Verdict::Explained(_) => t.explained += 1,
                Verdict::Unexplained => t.unexplained += 1,
                Verdict::RefusedAsExpected(_) => t.refused_as_expected += 1,
                Verdict::WronglyConnected(_) => t.wrongly_connected += 1,
                Verdict::Hung => t.hung += 1,
                Verdict::Abandoned => t.abandoned += 1,
                Verdict::Pending => t.pending += 1,
            }
            if d.accepted
                .iter()
                .any(|(by, from_ok)| Some(*by) != d.target || !from_ok)
            {
                t.misdelivered += 1;
            }
            if d.accepted.len() > 1 {
                t.duplicate_accepts += 1;
            }
            match &d.outcome {
                Some((Outcome::Ok { .. }, _)) if d.accepted.is_empty() && d.target.is_some() => {
                    t.ok_without_accept += 1
                }
                Some((Outcome::Err { message }, _)) => {
                    if !d.accepted.is_empty() {
                        t.accepted_but_failed += 1;
                    }
                    if ErrorClass::of(message).is_bug() {
                        t.bug_messages += 1;
                    }
                    if message.trim().is_empty() {
                        t.empty_messages += 1;
                    }
                }
                _ => {}
            }
        }
        t
    }

    /// Error classes, most frequent first.
    pub(crate) fn classes(&self) -> Vec<ClassRow> {
        let mut rows: BTreeMap<ErrorClass, ClassRow> = BTreeMap::new();
        for d in self.dials.values() {
            let Some((Outcome::Err { message }, _)) = &d.outcome else {
                continue;
            };
            let class = ErrorClass::of(message);
            let row = rows.entry(class).or_insert_with(|| ClassRow {
                class,
                explained: 0,
                unexplained: 0,
                expected: 0,
                example: message.clone(),
            });
            match self.verdict(d) {
                Verdict::Explained(_) => row.explained += 1,
                Verdict::Unexplained => {
                    // Show an unexplained example when there is one.
                    if row.unexplained == 0 {
                        row.example = message.clone();
                    }
                    row.unexplained += 1
                }
                _ => row.expected += 1,
            }
        }
        let mut rows: Vec<ClassRow> = rows.into_values().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.explained + r.unexplained + r.expected));
        rows
    }

    /// Latency of connected dials made in `mode` (all modes with `None`).
    pub(crate) fn latency(&self, mode: Option<Mode>) -> Latency {
        Latency::of(
            self.dials
                .values()
                .filter(|d| mode.is_none_or(|m| d.mode == m))
                .filter_map(|d| match &d.outcome {
                    Some((Outcome::Ok { ms }, _)) if d.expect == Expect::Connect => Some(*ms),
                    _ => None,
                })
                .collect(),
        )
    }

    /// The dials with the given verdict predicate, for listing.
    pub(crate) fn listed(&self, want: impl Fn(&Verdict) -> bool) -> Vec<(u64, &Dial)> {
        self.dials
            .iter()
            .filter(|(_, d)| want(&self.verdict(d)))
            .map(|(i, d)| (*i, d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with_dial(expect: Expect) -> (Ledger, u64) {
        let mut l = Ledger::new();
        let id = l.open(1, "dialer", Some(2), Mode::Encrypted, expect, 10.0, 60.0);
        (l, id)
    }

    fn err(m: &str) -> Outcome {
        Outcome::Err {
            message: m.to_owned(),
        }
    }

    #[test]
    fn a_dial_that_connects_is_connected() {
        let (mut l, id) = ledger_with_dial(Expect::Connect);
        assert_eq!(l.pending(), 1);
        l.accepted(id, 2, "dialer");
        l.settle(id, 1, Outcome::Ok { ms: 12 }, 10.5);
        assert_eq!(l.pending(), 0);
        let t = l.totals();
        assert_eq!((t.dials, t.connected, t.misdelivered), (1, 1, 0));
        assert_eq!(l.latency(None).p50, 12);
        assert_eq!(l.latency(Some(Mode::Plaintext)).count, 0);
    }

    #[test]
    fn an_error_with_no_fault_is_unexplained_and_with_one_explained() {
        let (mut l, id) = ledger_with_dial(Expect::Connect);
        l.settle(
            id,
            1,
            err("connect: could not reach x: via y: the peer did not answer within 10s"),
            21.0,
        );
        assert_eq!(l.verdict(l.get(id).unwrap()), Verdict::Unexplained);
        // The target was stopped during the dial.
        l.fault_starts(Fault::PeerStopped(2), 15.0);
        l.fault_ends(Fault::PeerStopped(2), 18.0);
        assert_eq!(
            l.verdict(l.get(id).unwrap()),
            Verdict::Explained("the target was stopped")
        );
        let rows = l.classes();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].class, ErrorClass::NoAnswer);
        assert_eq!((rows[0].explained, rows[0].unexplained), (1, 0));
    }

    #[test]
    fn faults_outside_the_dial_or_about_others_explain_nothing() {
        let (mut l, id) = ledger_with_dial(Expect::Connect);
        l.settle(id, 1, err("connect: the netlayer is shut down"), 12.0);
        // Another peer stopped during the dial.
        l.fault_starts(Fault::PeerStopped(7), 10.0);
        l.fault_ends(Fault::PeerStopped(7), 11.0);
        // The target stopped long before (ended before the dial, grace
        // included) and the daemon killed after it.
        l.fault_starts(Fault::PeerStopped(2), 1.0);
        l.fault_ends(Fault::PeerStopped(2), 2.0);
        l.fault_starts(Fault::DaemonDown(0), 13.0);
        assert_eq!(l.verdict(l.get(id).unwrap()), Verdict::Unexplained);
    }

    #[test]
    fn grace_after_a_daemon_restart_and_open_windows() {
        let (mut l, id) = ledger_with_dial(Expect::Connect);
        l.settle(
            id,
            1,
            err("connect: not registered with any introduction server right now"),
            12.0,
        );
        l.fault_starts(Fault::DaemonDown(0), 0.0);
        l.fault_ends(Fault::DaemonDown(0), 5.0);
        // 5 + 10 s of grace covers a dial from 10 s.
        assert_eq!(
            l.verdict(l.get(id).unwrap()),
            Verdict::Explained("a daemon was down")
        );
        // A target that left (a window that never closes) ranks first.
        l.fault_starts(Fault::PeerLeft(2), 11.0);
        assert_eq!(
            l.verdict(l.get(id).unwrap()),
            Verdict::Explained("the target left")
        );
    }

    #[test]
    fn expected_failures_must_fail() {
        let (mut l, a) = ledger_with_dial(Expect::Fail(Negative::Downgrade));
        let b = l.open(
            1,
            "dialer",
            Some(3),
            Mode::Plaintext,
            Expect::Fail(Negative::Departed),
            0.0,
            60.0,
        );
        l.settle(a, 1, Outcome::Ok { ms: 3 }, 11.0);
        l.settle(b, 1, err("connect: ... no reply within 10s"), 11.0);
        assert_eq!(
            l.verdict(l.get(a).unwrap()),
            Verdict::WronglyConnected(Negative::Downgrade)
        );
        assert_eq!(
            l.verdict(l.get(b).unwrap()),
            Verdict::RefusedAsExpected(Negative::Departed)
        );
        let t = l.totals();
        assert_eq!((t.wrongly_connected, t.refused_as_expected), (1, 1));
        // Expected failures do not count in the latency of connections.
        assert_eq!(l.latency(None).count, 0);
    }

    #[test]
    fn deadlines_hang_dials_and_stops_extend_them() {
        let mut l = Ledger::new();
        let a = l.open(
            1,
            "d1",
            Some(2),
            Mode::Encrypted,
            Expect::Connect,
            0.0,
            30.0,
        );
        let b = l.open(
            3,
            "d3",
            Some(2),
            Mode::Encrypted,
            Expect::Connect,
            0.0,
            30.0,
        );
        l.extend(3, 5.0);
        assert_eq!(l.expire(31.0), vec![a]);
        assert_eq!(l.pending_of(3), 1);
        assert_eq!(l.expire(36.0), vec![b]);
        // A late outcome does not unhang it.
        l.settle(b, 3, Outcome::Ok { ms: 36_000 }, 37.0);
        assert_eq!(l.verdict(l.get(b).unwrap()), Verdict::Hung);
        assert_eq!(l.stray.len(), 1);
        assert_eq!(l.totals().hung, 2);
    }

    #[test]
    fn killed_dialers_abandon_their_dials() {
        let mut l = Ledger::new();
        let a = l.open(
            1,
            "d1",
            Some(2),
            Mode::Encrypted,
            Expect::Connect,
            0.0,
            30.0,
        );
        let b = l.open(
            2,
            "d2",
            Some(1),
            Mode::Encrypted,
            Expect::Connect,
            0.0,
            30.0,
        );
        assert_eq!((l.pending(), l.pending_of(1), l.pending_of(2)), (2, 1, 1));
        l.abandon(1, 3.0);
        assert_eq!(l.verdict(l.get(a).unwrap()), Verdict::Abandoned);
        assert_eq!((l.pending(), l.pending_of(1), l.pending_of(2)), (1, 0, 1));
        l.settle(b, 2, Outcome::Ok { ms: 1 }, 4.0);
        assert_eq!((l.pending(), l.pending_of(2)), (0, 0));
        assert_eq!(l.expire(100.0), Vec::<u64>::new());
    }

    #[test]
    fn stray_and_misdelivered_lines_are_caught() {
        let (mut l, id) = ledger_with_dial(Expect::Connect);
        l.settle(99, 1, Outcome::Ok { ms: 1 }, 1.0);
        l.settle(id, 4, Outcome::Ok { ms: 1 }, 1.0);
        l.accepted(id, 5, "dialer");
        l.accepted(id, 2, "someone else");
        l.accepted(1234, 2, "x");
        l.settle(id, 1, Outcome::Ok { ms: 1 }, 1.0);
        l.settle(id, 1, Outcome::Ok { ms: 1 }, 1.0);
        assert_eq!(l.stray.len(), 4, "{:?}", l.stray);
        let t = l.totals();
        assert_eq!((t.misdelivered, t.duplicate_accepts), (1, 1));
    }

    #[test]
    fn ok_without_accept_and_accepted_but_failed() {
        let mut l = Ledger::new();
        let a = l.open(
            1,
            "d1",
            Some(2),
            Mode::Encrypted,
            Expect::Connect,
            0.0,
            30.0,
        );
        let b = l.open(
            1,
            "d1",
            Some(2),
            Mode::Encrypted,
            Expect::Connect,
            0.0,
            30.0,
        );
        l.settle(a, 1, Outcome::Ok { ms: 1 }, 1.0);
        l.accepted(b, 2, "d1");
        l.settle(b, 1, err("connect: no reply within 10s"), 1.0);
        let t = l.totals();
        assert_eq!((t.ok_without_accept, t.accepted_but_failed), (1, 1));
    }

    #[test]
    fn error_classes() {
        for (m, c) in [
            (
                "connect: not registered with any introduction server right now (servers: a, b)",
                ErrorClass::NotRegistered,
            ),
            (
                "connect: no shared introduction server: x can be reached through a",
                ErrorClass::NoSharedServer,
            ),
            (
                "connect: could not reach x: via a: the server closed the connection before the peer answered (is the peer registered there?)",
                ErrorClass::NotDelivered,
            ),
            (
                "connect: could not reach x: via a: the peer did not answer within 10s; via b: the server closed the connection before the peer answered",
                ErrorClass::NoAnswer,
            ),
            (
                "connect: could not reach x: via a: the peer could not prove its identity: bad",
                ErrorClass::IdentityNotProven,
            ),
            (
                "connect: could not reach x: via a: the server connection failed: closed",
                ErrorClass::ServerLinkFailed,
            ),
            (
                "connect: could not reach x: via a: during the handshake: reset",
                ErrorClass::HandshakeIo,
            ),
            ("no reply within 10s", ErrorClass::NoReply),
            (
                "the connection closed before the reply",
                ErrorClass::ClosedBeforeReply,
            ),
            (
                "reading the reply: Connection reset by peer (os error 104)",
                ErrorClass::IoAfterConnect,
            ),
            (
                "sending the request: Broken pipe (os error 32)",
                ErrorClass::IoAfterConnect,
            ),
            ("wrong reply \"ok 7\"", ErrorClass::WrongReply),
            ("bad locator: nope", ErrorClass::BadLocator),
            ("something new", ErrorClass::Unclassified),
            ("", ErrorClass::Unclassified),
        ] {
            assert_eq!(ErrorClass::of(m), c, "{m}");
        }
        assert!(ErrorClass::WrongReply.is_bug());
        assert!(!ErrorClass::NoAnswer.is_bug());
    }

    #[test]
    fn latency_percentiles() {
        let l = Latency::of((1..=100).collect());
        assert_eq!(
            (l.count, l.p50, l.p90, l.p99, l.max),
            (100, 51, 90, 99, 100)
        );
        assert_eq!(Latency::of(vec![]), Latency::default());
        assert_eq!(Latency::of(vec![7]).p99, 7);
    }
}
