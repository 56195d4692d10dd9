//! Settings of the daemon: the wire profile, who may connect, and every
//! limit, each with a name and a default (see `docs/introd.md`).

use std::time::Duration;

use uds_syrup::WireProfile;

/// Bounds that keep one client from exhausting the daemon or hurting
/// another. Exceeding one closes exactly one connection (the offender's) or
/// refuses one intro (its socket is closed, the dialer reads end of stream),
/// and is counted in `uds-introd status`. See `docs/limits.md` for the
/// worst-case memory these defaults allow.
///
/// **Costs are charged to whoever causes them:** every intro queued or
/// parked toward a target counts against the budgets of the client that
/// sent it, per target and in total, in intros and in bytes. A sender at its
/// budget is slowed down (the daemon stops reading from it until its intros
/// drain) or, for intros that would have to wait for an unregistered target,
/// has the excess refused; a target is disconnected only for not reading
/// what is sent to it ([`send_timeout`](Limits::send_timeout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest Syrup message on the intro channel, in bytes
    /// (`--max-message`, default 64 KiB).
    pub max_message_len: usize,
    /// Deepest nesting of a message (`--max-depth`, default 32).
    pub max_depth: usize,
    /// Time a client has to complete registration (`--registration-timeout`,
    /// default 5 s).
    pub registration_timeout: Duration,
    /// Connections at once, registered or not (`--max-clients`, default 4096).
    pub max_clients: usize,
    /// Connections at once from one uid (`--max-clients-per-uid`, default
    /// 1024).
    pub max_clients_per_uid: usize,
    /// Connections at once that have not finished registering
    /// (`--max-unregistered`, default 256).
    pub max_unregistered: usize,
    /// Connections at once from one uid that have not finished registering
    /// (`--max-unregistered-per-uid`, default 128), so that one user (with
    /// `--allow-uid`, another one) cannot take every unregistered slot.
    pub max_unregistered_per_uid: usize,
    /// Intros one client has queued or parked at once, toward all targets
    /// (`--max-intros-per-sender`, default 64).
    pub max_intros_per_sender: usize,
    /// Bytes of the intros one client has queued or parked at once
    /// (`--max-intro-bytes-per-sender`, default 64 KiB).
    pub max_intro_bytes_per_sender: usize,
    /// Intros one client has queued or parked at once toward one target
    /// (`--max-intros-per-target`, default 16).
    pub max_intros_per_target: usize,
    /// Bytes of those intros (`--max-intro-bytes-per-target`, default
    /// 16 KiB).
    pub max_intro_bytes_per_target: usize,
    /// Intros waiting at once for one unregistered target, from all senders
    /// (`--max-parked-per-target`, default 64); beyond it a new intro to that
    /// target is refused.
    pub max_parked_per_target: usize,
    /// Passed sockets the daemon holds at once, queued, parked or being sent,
    /// across all clients (`--max-held-fds`, default 8192); beyond it a new
    /// intro is refused. Keep `RLIMIT_NOFILE` above `max_clients` plus this.
    pub max_held_fds: usize,
    /// Bytes of intro records the daemon holds at once
    /// (`--max-held-bytes`, default 8 MiB); beyond it a new intro is refused.
    pub max_held_bytes: usize,
    /// How long an intro waits, from its arrival, for its target to
    /// register and take it before its socket is closed (`--park-timeout`,
    /// default 10 s).
    pub park_timeout: Duration,
    /// How long a client may take to read one intro or message the daemon
    /// sends it (`--send-timeout`, default 10 s); a client that reads
    /// nothing for that long is disconnected.
    pub send_timeout: Duration,
    /// Intros of one client refused within one `park_timeout`, for reasons
    /// of its own making (over its budget, or toward a target whose park
    /// slots it fills itself), before that client is disconnected as a
    /// flood (`--max-refused-per-sender`, default 256). Refusals caused by
    /// daemon-wide limits or by others never count.
    pub max_refused_per_sender: usize,
    /// Hints kept in each locator of a forwarded intro
    /// (`--max-forwarded-hints`, default 8). The daemon re-encodes every
    /// forwarded record canonically, keeping only hints that are server
    /// designators, so what it sends is bounded whatever a client sent.
    pub max_forwarded_hints: usize,
    /// Admin connections at once (`--max-admin-connections`, default 8);
    /// beyond it new ones are closed at once.
    pub max_admin_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_len: 64 << 10,
            max_depth: 32,
            registration_timeout: Duration::from_secs(5),
            max_clients: 4096,
            max_clients_per_uid: 1024,
            max_unregistered: 256,
            max_unregistered_per_uid: 128,
            max_intros_per_sender: 64,
            max_intro_bytes_per_sender: 64 << 10,
            max_intros_per_target: 16,
            max_intro_bytes_per_target: 16 << 10,
            max_parked_per_target: 64,
            max_held_fds: 8192,
            max_held_bytes: 8 << 20,
            park_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            max_refused_per_sender: 256,
            max_forwarded_hints: 8,
            max_admin_connections: 8,
        }
    }
}

/// The size in bytes of the protocol's largest message without extra hints
/// (a draft-shaped `uds:server-response`), and how deep its messages nest.
const LARGEST_MESSAGE: usize = 372;
const DEEPEST_MESSAGE: usize = 5;

/// A [`Limits`] setting with which the daemon could not serve anyone (see
/// [`Limits::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{option} {value}: {why}")]
#[non_exhaustive]
pub struct LimitError {
    /// The command-line option of the setting (without `--`).
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// Why it cannot work, and what would.
    pub why: String,
}

impl Limits {
    /// The smallest [`max_message_len`](Limits::max_message_len) accepted:
    /// the protocol's largest message without extra hints (a draft-shaped
    /// `uds:server-response`) is 372 bytes.
    ///
    /// (The figures in this block are checked against the test vectors by
    /// this module's tests.)
    pub const MIN_MESSAGE_LEN: usize = 512;

    /// The smallest [`max_depth`](Limits::max_depth) accepted: the
    /// protocol's messages nest at most 5 levels deep.
    pub const MIN_DEPTH: usize = 8;

    /// The longest timeout accepted (one day): `now` plus a longer one may
    /// not be representable, and nothing in this protocol should wait that
    /// long.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    /// Refuses settings with which the daemon could not serve anyone: a
    /// message limit too small for a registration, a nesting limit too
    /// small for the protocol's messages, a zero timeout (everything would
    /// expire at once) or a zero count or byte budget (every client or
    /// intro refused, or every sender paused for good). Zero is accepted
    /// where it has a meaning: no parking
    /// ([`max_parked_per_target`](Limits::max_parked_per_target)), cut off
    /// at the first refusal
    /// ([`max_refused_per_sender`](Limits::max_refused_per_sender)), no
    /// hints forwarded ([`max_forwarded_hints`](Limits::max_forwarded_hints)).
    ///
    /// `uds-introd` checks its limits before it starts; a program that runs
    /// a [`Server`](crate::Server) with limits of its own should call this.
    pub fn check(&self) -> Result<(), LimitError> {
        let refuse = |option, value: String, why: String| Err(LimitError { option, value, why });
        if self.max_message_len < Self::MIN_MESSAGE_LEN {
            return refuse(
                "max-message",
                self.max_message_len.to_string(),
                format!(
                    "must be at least {} bytes: the protocol's largest message without extra \
                     hints is {} bytes",
                    Self::MIN_MESSAGE_LEN,
                    LARGEST_MESSAGE
                ),
            );
        }
        if self.max_depth < Self::MIN_DEPTH {
            return refuse(
                "max-depth",
                self.max_depth.to_string(),
                format!(
                    "must be at least {}: the protocol's messages nest up to {} levels deep",
                    Self::MIN_DEPTH,
                    DEEPEST_MESSAGE
                ),
            );
        }
        for (option, d) in [
            ("registration-timeout", self.registration_timeout),
            ("park-timeout", self.park_timeout),
            ("send-timeout", self.send_timeout),
        ] {
            let value = || format!("{}s", d.as_secs_f64());
            if d.is_zero() {
                return refuse(
                    option,
                    value(),
                    "must be longer than 0: everything it bounds would expire at once".into(),
                );
            }
            if d > Self::MAX_TIMEOUT {
                return refuse(
                    option,
                    value(),
                    format!(
                        "must be at most {}s (a day): a deadline further away cannot be computed \
                         on every clock, and nothing should wait that long",
                        Self::MAX_TIMEOUT.as_secs()
                    ),
                );
            }
        }
        for (option, n) in [
            ("max-clients", self.max_clients),
            ("max-clients-per-uid", self.max_clients_per_uid),
            ("max-unregistered", self.max_unregistered),
            ("max-unregistered-per-uid", self.max_unregistered_per_uid),
            ("max-intros-per-sender", self.max_intros_per_sender),
            (
                "max-intro-bytes-per-sender",
                self.max_intro_bytes_per_sender,
            ),
            ("max-intros-per-target", self.max_intros_per_target),
            (
                "max-intro-bytes-per-target",
                self.max_intro_bytes_per_target,
            ),
            ("max-held-fds", self.max_held_fds),
            ("max-held-bytes", self.max_held_bytes),
        ] {
            if n == 0 {
                return refuse(
                    option,
                    "0".to_owned(),
                    "must be at least 1: with 0 every client or intro would be refused, or every \
                     sender paused for good"
                        .into(),
                );
            }
        }
        if self.max_admin_connections == 0 {
            return refuse(
                "max-admin-connections",
                "0".to_owned(),
                "must be at least 1 (to have no admin socket, use --no-admin)".into(),
            );
        }
        Ok(())
    }

    /// The Syrup decoder limits of the intro channel.
    pub fn syrup(&self) -> uds_syrup::Limits {
        uds_syrup::Limits {
            max_depth: self.max_depth,
            max_message_len: self.max_message_len,
            max_atom_len: self.max_message_len,
            max_integer_digits: uds_syrup::Limits::intro_channel().max_integer_digits,
        }
    }
}

/// Who may connect, judged by the kernel-reported credentials
/// (`SO_PEERCRED`) of the connecting process before anything is read.
///
/// By default ([`Policy::default`]) only the effective uid of the calling
/// process is admitted. `--allow-uid` and `--allow-gid` widen that;
/// credential lookup errors refuse the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The daemon's own uid (always admitted).
    pub own_uid: u32,
    /// Further uids admitted.
    pub allow_uids: Vec<u32>,
    /// Primary gids admitted.
    pub allow_gids: Vec<u32>,
}

impl Policy {
    /// The default policy for a daemon running as `own_uid`.
    pub fn same_uid(own_uid: u32) -> Policy {
        Policy {
            own_uid,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
        }
    }

    /// Whether a client with these credentials may connect.
    pub fn admits(&self, uid: u32, gid: u32) -> bool {
        uid == self.own_uid || self.allow_uids.contains(&uid) || self.allow_gids.contains(&gid)
    }
}

/// Admits the effective uid of this process, and nobody else.
impl Default for Policy {
    fn default() -> Policy {
        Policy::same_uid(nix::unistd::geteuid().as_raw())
    }
}

/// Everything the daemon needs besides its identity and listeners.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The shape of the messages the daemon emits (`--wire`); clients may
    /// use either.
    pub wire: WireProfile,
    /// The limits.
    pub limits: Limits,
    /// The admission policy.
    pub policy: Policy,
    /// The confinement in force in this process, as applied by
    /// `uds_sandbox::Policy::confine`, shown by `status` on its `sandbox:`
    /// line; `None` (the default) when the caller did not confine (or does
    /// not say), and then `status` has no such line.
    pub sandbox: Option<uds_sandbox::Report>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_the_check_and_useless_settings_do_not() {
        Limits::default().check().unwrap();
        let with = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l.check()
        };
        let e = with(|l| l.max_message_len = 0).unwrap_err();
        assert_eq!(e.option, "max-message");
        assert!(
            e.to_string()
                .starts_with("--max-message 0: must be at least 512"),
            "{e}"
        );
        assert_eq!(with(|l| l.max_depth = 7).unwrap_err().option, "max-depth");
        let e = with(|l| l.park_timeout = Duration::ZERO).unwrap_err();
        assert_eq!(e.option, "park-timeout");
        assert_eq!(
            with(|l| l.send_timeout = Duration::ZERO)
                .unwrap_err()
                .option,
            "send-timeout"
        );
        assert_eq!(
            with(|l| l.max_intros_per_sender = 0).unwrap_err().option,
            "max-intros-per-sender"
        );
        assert_eq!(
            with(|l| l.max_held_bytes = 0).unwrap_err().option,
            "max-held-bytes"
        );
        let e = with(|l| l.max_admin_connections = 0).unwrap_err();
        assert!(e.to_string().contains("--no-admin"), "{e}");
        // Zero where it means something.
        with(|l| l.max_parked_per_target = 0).unwrap();
        with(|l| l.max_refused_per_sender = 0).unwrap();
        with(|l| l.max_forwarded_hints = 0).unwrap();
        // The floors themselves are accepted.
        with(|l| {
            l.max_message_len = Limits::MIN_MESSAGE_LEN;
            l.max_depth = Limits::MIN_DEPTH;
        })
        .unwrap();
    }

    /// The floors carry every intro-protocol message of the test vectors.
    #[test]
    fn the_floors_carry_every_message_of_the_protocol() {
        let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../uds-syrup/tests/vectors/wire.tsv");
        let text = std::fs::read_to_string(&vectors).unwrap();
        let floor = Limits {
            max_message_len: Limits::MIN_MESSAGE_LEN,
            max_depth: Limits::MIN_DEPTH,
            ..Limits::default()
        }
        .syrup();
        let decoder = uds_syrup::Decoder::new(floor);
        let mut checked = 0;
        for line in text.lines().filter(|l| l.starts_with("uds-")) {
            let mut fields = line.split('\t');
            let (name, hex) = (fields.next().unwrap(), fields.next().unwrap());
            let bytes = bytes::Bytes::from(hex::decode(hex).unwrap());
            decoder
                .decode_exact(&bytes)
                .unwrap_or_else(|e| panic!("{name} ({} bytes): {e}", bytes.len()));
            checked += 1;
        }
        assert!(
            checked >= 6,
            "only {checked} messages in {}",
            vectors.display()
        );
    }

    /// `Config::default()` used to derive `own_uid = 0`, admitting only root.
    #[test]
    fn the_default_policy_admits_the_running_user() {
        let me = nix::unistd::geteuid().as_raw();
        assert!(Config::default().policy.admits(me, 12345));
        assert_eq!(Policy::default(), Policy::same_uid(me));
        assert!(!Policy::default().admits(me.wrapping_add(1), 12345));
    }

    #[test]
    fn policy_admits_own_uid_and_listed_ids_only() {
        let mut p = Policy::same_uid(1000);
        assert!(p.admits(1000, 1000));
        assert!(!p.admits(1001, 1001));
        assert!(!p.admits(0, 0), "root is not admitted unless listed");
        p.allow_uids.push(1001);
        p.allow_gids.push(50);
        assert!(p.admits(1001, 7));
        assert!(p.admits(2000, 50));
        assert!(!p.admits(2000, 51));
    }
}
