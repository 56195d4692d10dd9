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

impl Limits {
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
