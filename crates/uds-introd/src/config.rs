//! Settings of the daemon: the wire profile, who may connect, and every
//! limit, each with a name and a default (see `docs/introd.md`).

use std::time::Duration;

use uds_syrup::WireProfile;

/// Bounds that keep one client from exhausting the daemon. Exceeding one
/// closes exactly one connection (the offender's, or the one intro it
/// concerns) and is counted in `uds-introd status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Bytes queued toward one client that is not reading
    /// (`--max-queued-bytes`, default 1 MiB); beyond it that client is
    /// disconnected.
    pub max_queued_bytes: usize,
    /// Intros queued toward one client that it has not read yet
    /// (`--max-pending-intros`, default 64); beyond it that client is
    /// disconnected, like one over `max_queued_bytes`.
    pub max_pending_intros: usize,
    /// Intros from one client waiting at once for unregistered targets
    /// (`--max-parked-per-sender`, default 64); beyond it the new intro's
    /// socket is closed.
    pub max_parked_per_sender: usize,
    /// Intros waiting at once for one unregistered target
    /// (`--max-parked-per-target`, default 64); beyond it the new intro's
    /// socket is closed.
    pub max_parked_per_target: usize,
    /// Passed sockets the daemon holds at once, queued or parked, across all
    /// clients (`--max-held-fds`, default 8192); beyond it a new intro's
    /// socket is closed. Keep `RLIMIT_NOFILE` above `max_clients` plus this.
    pub max_held_fds: usize,
    /// How long an intro waits for its target to register before its socket
    /// is closed (`--park-timeout`, default 10 s).
    pub park_timeout: Duration,
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
            max_queued_bytes: 1 << 20,
            max_pending_intros: 64,
            max_parked_per_sender: 64,
            max_parked_per_target: 64,
            max_held_fds: 8192,
            park_timeout: Duration::from_secs(10),
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
/// By default only the daemon's own uid is admitted. `--allow-uid` and
/// `--allow-gid` widen that; credential lookup errors refuse the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
            ..Policy::default()
        }
    }

    /// Whether a client with these credentials may connect.
    pub fn admits(&self, uid: u32, gid: u32) -> bool {
        uid == self.own_uid || self.allow_uids.contains(&uid) || self.allow_gids.contains(&gid)
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
