//! Counters reported by `uds-introd status`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection (or one intro) was refused or closed by the daemon.
/// Every variant is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The client's uid/gid is not admitted by the policy.
    Policy,
    /// `SO_PEERCRED` could not be read (fail closed).
    Credentials,
    /// A spawned child's socket was used by another process.
    WrongPid,
    /// `max_clients` reached.
    MaxClients,
    /// `max_clients_per_uid` reached.
    MaxClientsPerUid,
    /// `max_unregistered` reached.
    MaxUnregistered,
    /// Registration did not finish within `registration_timeout`.
    RegistrationTimeout,
    /// The registration handshake failed (bad signature, bad key, ...).
    Handshake,
    /// A message over `max_message_len` or deeper than `max_depth`.
    Limit,
    /// Bytes that are not a valid message of the protocol.
    Protocol,
    /// `from` in `uds:new-connection` is not the sender's identity.
    SpoofedFrom,
    /// The passed fd is not a connected Unix stream socket.
    BadFd,
    /// A `uds:new-connection` not followed by exactly one fd.
    MissingFd,
    /// More than one fd with an intro.
    ExtraFd,
    /// A client that does not read had `max_queued_bytes` or
    /// `max_pending_intros` queued toward it.
    QueueFull,
    /// A newer registration of the same designator replaced this one.
    Replaced,
    /// `max_parked_per_sender` or `max_parked_per_target` reached (one
    /// intro dropped).
    ParkedLimit,
    /// `max_held_fds` reached (one intro dropped).
    HeldFds,
    /// An intro's target did not register within `park_timeout` (one intro
    /// dropped).
    ParkTimeout,
}

impl Reason {
    /// Every reason, in reporting order.
    pub const ALL: [Reason; 19] = [
        Reason::Policy,
        Reason::Credentials,
        Reason::WrongPid,
        Reason::MaxClients,
        Reason::MaxClientsPerUid,
        Reason::MaxUnregistered,
        Reason::RegistrationTimeout,
        Reason::Handshake,
        Reason::Limit,
        Reason::Protocol,
        Reason::SpoofedFrom,
        Reason::BadFd,
        Reason::MissingFd,
        Reason::ExtraFd,
        Reason::QueueFull,
        Reason::Replaced,
        Reason::ParkedLimit,
        Reason::HeldFds,
        Reason::ParkTimeout,
    ];

    /// The name used in logs and in `uds-introd status`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Policy => "policy",
            Reason::Credentials => "credentials",
            Reason::WrongPid => "wrong-pid",
            Reason::MaxClients => "max-clients",
            Reason::MaxClientsPerUid => "max-clients-per-uid",
            Reason::MaxUnregistered => "max-unregistered",
            Reason::RegistrationTimeout => "registration-timeout",
            Reason::Handshake => "handshake",
            Reason::Limit => "limit",
            Reason::Protocol => "protocol",
            Reason::SpoofedFrom => "spoofed-from",
            Reason::BadFd => "bad-fd",
            Reason::MissingFd => "missing-fd",
            Reason::ExtraFd => "extra-fd",
            Reason::QueueFull => "queue-full",
            Reason::Replaced => "replaced",
            Reason::ParkedLimit => "parked-limit",
            Reason::HeldFds => "held-fds",
            Reason::ParkTimeout => "park-timeout",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Daemon-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted (admitted or not).
    pub accepted: AtomicU64,
    /// Successful registrations.
    pub registrations: AtomicU64,
    /// Intros delivered to their target.
    pub intros_forwarded: AtomicU64,
    /// Intros that had to wait for their target.
    pub intros_parked: AtomicU64,
    refusals: [AtomicU64; Reason::ALL.len()],
}

impl Stats {
    /// Counts one refusal.
    pub fn refuse(&self, reason: Reason) {
        self.refusals[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many refusals of `reason`.
    pub fn refusals(&self, reason: Reason) -> u64 {
        self.refusals[reason.index()].load(Ordering::Relaxed)
    }

    /// Increments a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
