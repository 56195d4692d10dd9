//! Why connections and intros are refused, and the counters reported by
//! `uds-introd status`.

/// Why a connection (or one intro) was refused or closed by the daemon.
/// Every variant is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// `max_unregistered_per_uid` reached.
    MaxUnregisteredPerUid,
    /// Registration did not finish within `registration_timeout`.
    RegistrationTimeout,
    /// The registration handshake failed (bad signature, bad key, ...).
    Handshake,
    /// A message over `max_message_len` or deeper than `max_depth`.
    Limit,
    /// Bytes that are not a valid message of the protocol, or a message
    /// out of place.
    Protocol,
    /// `from` in `uds:new-connection` is not the sender's identity.
    SpoofedFrom,
    /// The passed fd is not a connected Unix stream socket, or fds arrived
    /// outside an intro.
    BadFd,
    /// A `uds:new-connection` not followed by its fd.
    MissingFd,
    /// A client did not read what the daemon sent it within
    /// `send_timeout`.
    NotReading,
    /// A newer registration of the same designator replaced this one.
    Replaced,
    /// `max_parked_per_target` reached (one intro refused).
    ParkedLimit,
    /// An intro that would have had to wait for its target, from a sender
    /// already at its budget (one intro refused).
    SenderQuota,
    /// `max_held_fds` reached (one intro refused).
    HeldFds,
    /// `max_held_bytes` reached (one intro refused).
    HeldBytes,
    /// An intro's target did not register within `park_timeout` (one intro
    /// closed).
    ParkTimeout,
    /// An intro's registered target did not take it within `park_timeout`
    /// of its arrival (one intro closed; the target may be slow, not
    /// silent, or it would be `NotReading`).
    QueueTimeout,
    /// More than `max_refused_per_sender` intros of one client refused
    /// within one `park_timeout`: the client is disconnected.
    Flooding,
}

impl Reason {
    /// Every reason, in reporting order.
    pub const ALL: [Reason; 23] = [
        Reason::Policy,
        Reason::Credentials,
        Reason::WrongPid,
        Reason::MaxClients,
        Reason::MaxClientsPerUid,
        Reason::MaxUnregistered,
        Reason::MaxUnregisteredPerUid,
        Reason::RegistrationTimeout,
        Reason::Handshake,
        Reason::Limit,
        Reason::Protocol,
        Reason::SpoofedFrom,
        Reason::BadFd,
        Reason::MissingFd,
        Reason::NotReading,
        Reason::Replaced,
        Reason::ParkedLimit,
        Reason::SenderQuota,
        Reason::HeldFds,
        Reason::HeldBytes,
        Reason::ParkTimeout,
        Reason::QueueTimeout,
        Reason::Flooding,
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
            Reason::MaxUnregisteredPerUid => "max-unregistered-per-uid",
            Reason::RegistrationTimeout => "registration-timeout",
            Reason::Handshake => "handshake",
            Reason::Limit => "limit",
            Reason::Protocol => "protocol",
            Reason::SpoofedFrom => "spoofed-from",
            Reason::BadFd => "bad-fd",
            Reason::MissingFd => "missing-fd",
            Reason::NotReading => "not-reading",
            Reason::Replaced => "replaced",
            Reason::ParkedLimit => "parked-limit",
            Reason::SenderQuota => "sender-quota",
            Reason::HeldFds => "held-fds",
            Reason::HeldBytes => "held-bytes",
            Reason::ParkTimeout => "park-timeout",
            Reason::QueueTimeout => "queue-timeout",
            Reason::Flooding => "flooding",
        }
    }

    /// Whether this reason refuses one intro (its socket is closed) rather
    /// than a connection.
    pub fn is_intro_refusal(self) -> bool {
        matches!(
            self,
            Reason::ParkedLimit
                | Reason::SenderQuota
                | Reason::HeldFds
                | Reason::HeldBytes
                | Reason::ParkTimeout
                | Reason::QueueTimeout
        )
    }

    pub(crate) fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters since the daemon started, as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Connections accepted (admitted or not).
    pub accepted: u64,
    /// Successful registrations.
    pub registrations: u64,
    /// Intros received from registered clients.
    pub intros_received: u64,
    /// Intros delivered to their target.
    pub intros_forwarded: u64,
    /// Intros that had to wait for their target to register.
    pub intros_parked: u64,
    /// Intros dropped because their target's connection ended before they
    /// were sent (the dialer reads end of stream).
    pub intros_dropped: u64,
    /// Extra fds that came with intros and were closed (the first one is
    /// forwarded).
    pub extra_fds_closed: u64,
    /// Times a sender at its budget was paused (the daemon stopped reading
    /// from it until its intros drained).
    pub senders_paused: u64,
    refusals: [u64; Reason::ALL.len()],
}

impl Counters {
    /// How many refusals of `reason`.
    pub fn refusals(&self, reason: Reason) -> u64 {
        self.refusals[reason.index()]
    }

    /// Every reason with its count, in reporting order.
    pub fn all_refusals(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|r| (*r, self.refusals(*r)))
    }

    pub(crate) fn refuse(&mut self, reason: Reason) {
        self.refusals[reason.index()] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_reason_is_listed() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
