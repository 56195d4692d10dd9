//! The code paths the `handshake` and `intro_channel` fuzz targets drive,
//! shared with the tests that replay the committed corpora (cargo feature
//! `fuzzing`). Not part of the stable API: it may change or go away in any
//! release.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use uds_syrup::{Limits, NewConnection, SCM_RIGHTS_BODY, ServerResponse, WireProfile};

use crate::channel::{ChannelError, ChannelEvent, IntroChannel, MAX_BODY};
use crate::{ClientConfig, ClientHandshake, Identity, ServerHandshake, ServerStep};

/// RFC 8032 test 1 secret seed: the peer of the shared vectors.
pub const PEER_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

/// RFC 8032 test 2 secret seed: the introduction server of the vectors.
pub const SERVER_SEED: [u8; 32] = [
    0x4c, 0xcd, 0x08, 0x9b, 0x28, 0xff, 0x96, 0xda, 0x9d, 0xb6, 0xc3, 0x46, 0xec, 0x11, 0x4e, 0x0f,
    0x5b, 0x8a, 0x31, 0x9f, 0x35, 0xab, 0xa6, 0x24, 0xda, 0x8c, 0xf6, 0xed, 0x4f, 0xb8, 0xa6, 0xfb,
];

/// Flag bits of the input's second byte.
pub mod flags {
    /// Two bits: how many extra fds come with each intro's fd.
    pub const EXTRA_FDS: u8 = 0b0011;
    /// A stray fd after every read whose last byte is a multiple of 7.
    pub const STRAY_FDS: u8 = 0b0100;
    /// The read carrying an intro's fd ends 2 bytes into its body.
    pub const SPLIT_BODY: u8 = 0b1000;
}

/// What one run did, so tests can check the corpus reaches the paths it is
/// meant to reach.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Messages the channel produced.
    pub messages: usize,
    /// Introductions the channel produced.
    pub introductions: usize,
    /// Whether the server registered the peer.
    pub server_registered: bool,
    /// Whether the client accepted the server's response.
    pub client_registered: bool,
    /// The channel error that ended the run, if any.
    pub channel_error: Option<String>,
}

/// Runs `data` through an intro channel into a [`ServerHandshake`] and a
/// [`ClientHandshake`] with the vectors' identities and challenges (client
/// challenge bytes 0..63, server challenge bytes 64..127). Never panics.
///
/// Input: byte 0 is the size of each read (0 counts as 1), byte 1 holds
/// [`flags`], the rest is the stream. Like the kernel, every read that
/// reaches a [`SCM_RIGHTS_BODY`] in the stream ends right after it and
/// brings one fd. `uds:server-response` messages go to the client, every
/// other message to the server.
pub fn drive(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::default();
    let (step, flag_bits, stream) = match data {
        [step, flag_bits, stream @ ..] => (usize::from(*step).max(1), *flag_bits, stream),
        _ => return outcome,
    };
    let server_id = Arc::new(Identity::from_secret_bytes(SERVER_SEED));
    let peer_id = Arc::new(Identity::from_secret_bytes(PEER_SEED));
    let (Ok(mut server), Ok(mut client)) = (
        ServerHandshake::with_challenge(
            server_id,
            WireProfile::Draft,
            (64u8..128).collect::<Vec<_>>(),
        ),
        ClientHandshake::with_challenge(
            peer_id,
            ClientConfig::default(),
            (0u8..64).collect::<Vec<_>>(),
        ),
    ) else {
        return outcome;
    };

    // Where reads end with an intro's fd.
    let fd_cuts: Vec<usize> = stream
        .windows(SCM_RIGHTS_BODY.len())
        .enumerate()
        .filter(|(_, w)| *w == SCM_RIGHTS_BODY)
        .map(|(i, _)| {
            if flag_bits & flags::SPLIT_BODY != 0 {
                i + 2
            } else {
                i + SCM_RIGHTS_BODY.len()
            }
        })
        .collect();
    let mut cuts: Vec<usize> = (step..stream.len()).step_by(step).collect();
    cuts.extend(&fd_cuts);
    cuts.push(stream.len());
    cuts.sort_unstable();
    cuts.dedup();

    let mut chan = IntroChannel::<u8>::new(Limits::intro_channel());
    let mut start = 0;
    for cut in cuts {
        let read = &stream[start..cut];
        start = cut;
        chan.push_bytes(read);
        if fd_cuts.binary_search(&cut).is_ok() {
            chan.push_fds(vec![0; 1 + usize::from(flag_bits & flags::EXTRA_FDS)]);
        } else if flag_bits & flags::STRAY_FDS != 0 && read.last().is_some_and(|b| b % 7 == 0) {
            chan.push_fds(vec![1]);
        }
        loop {
            match chan.next_event() {
                Ok(Some(ChannelEvent::Message { value, .. })) => {
                    outcome.messages += 1;
                    if value.as_record_labeled(ServerResponse::LABEL).is_some() {
                        if client.receive(&value).is_ok() {
                            outcome.client_registered = true;
                        }
                    } else if let Ok(ServerStep::Registered(_)) = server.receive(&value) {
                        outcome.server_registered = true;
                    }
                }
                Ok(Some(ChannelEvent::Introduction { .. })) => outcome.introductions += 1,
                Ok(None) => break,
                Err(e) => {
                    outcome.channel_error = Some(e.to_string());
                    return outcome;
                }
            }
        }
    }
    if let Err(e) = chan.finish() {
        outcome.channel_error = Some(e.to_string());
    }
    outcome
}

/// Bits of the header byte of each receive in an [`intro_channel`] script.
pub mod receive {
    /// Three bits: how many fds come with the read (0 to 7).
    pub const FDS: u8 = 0b0000_0111;
    /// The bytes are appended through
    /// [`IntroChannel::buffer_mut`](crate::channel::IntroChannel::buffer_mut)
    /// rather than
    /// [`IntroChannel::push_bytes`](crate::channel::IntroChannel::push_bytes).
    pub const VIA_BUFFER: u8 = 0b0000_1000;
    /// The length byte counts 64-byte units (reads of up to 16,320 bytes).
    pub const LONG: u8 = 0b0001_0000;
}

/// What an [`intro_channel`] run did, so tests can check the corpus reaches
/// the paths it is meant to reach.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChannelOutcome {
    /// Receives performed.
    pub receives: usize,
    /// fds handed to the channel.
    pub fds_in: usize,
    /// Messages the channel produced.
    pub messages: usize,
    /// Introductions the channel produced.
    pub introductions: usize,
    /// Extra fds the introductions reported (and the channel closed).
    pub extra_fds: usize,
    /// fds the channel closed because of a violation or at the end.
    pub fds_closed_on_error: usize,
    /// The error that ended the run (from `next_event` or `finish`), if any.
    pub error: Option<String>,
    /// Whether `finish` accepted the end of the stream.
    pub finished: bool,
}

/// A stand-in fd: a number whose drop (close) is recorded in a shared
/// ledger, so the driver can tell who closed which fd and when.
struct TrackedFd {
    id: u32,
    closed: Rc<RefCell<Vec<u32>>>,
}

impl Drop for TrackedFd {
    fn drop(&mut self) {
        self.closed.borrow_mut().push(self.id);
    }
}

/// The driver's bookkeeping of what it handed the channel.
struct Ledger {
    closed: Rc<RefCell<Vec<u32>>>,
    next_id: u32,
    /// Every batch of fds handed over: the stream offset it was tagged
    /// with and its ids, in order.
    batches: Vec<(u64, Vec<u32>)>,
    /// Batches before this index were consumed (by an introduction or a
    /// violation); the channel holds the others.
    next_batch: usize,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            closed: Rc::new(RefCell::new(Vec::new())),
            next_id: 0,
            batches: Vec::new(),
            next_batch: 0,
        }
    }

    fn make(&mut self, at: u64, n: usize) -> Vec<TrackedFd> {
        let fds: Vec<TrackedFd> = (0..n)
            .map(|_| {
                self.next_id += 1;
                TrackedFd {
                    id: self.next_id,
                    closed: self.closed.clone(),
                }
            })
            .collect();
        if n > 0 {
            self.batches.push((at, fds.iter().map(|f| f.id).collect()));
        }
        fds
    }

    /// The ids closed since the last call, sorted.
    fn take_closed(&self) -> Vec<u32> {
        let mut closed = std::mem::take(&mut *self.closed.borrow_mut());
        closed.sort_unstable();
        closed
    }

    /// All ids of the batches the channel still holds, sorted.
    fn held(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.batches[self.next_batch..]
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Checks that a violation (or the end of the stream) closed exactly
    /// the fds the channel held, and marks them consumed.
    fn all_closed(&mut self, what: &str) -> usize {
        let closed = self.take_closed();
        assert_eq!(
            closed,
            self.held(),
            "{what} must close exactly the fds the channel held"
        );
        self.next_batch = self.batches.len();
        closed.len()
    }
}

/// Drives an [`IntroChannel`] with a script of receives and checks its
/// invariants on the way; panics if one is broken. The fds are numbered
/// stand-ins whose drop is recorded.
///
/// Script: a sequence of receives, each a header byte (see [`receive`]:
/// how many fds come with the read, how the bytes are appended, the length
/// unit), a length byte, then that many bytes of the stream (fewer if the
/// input ends). After each receive the driver takes events until there are
/// none; at the end of the input it calls [`IntroChannel::finish`]; it stops
/// at the first error.
///
/// Invariants:
/// * every fd handed in is closed exactly once, and by the right party: the
///   first fd of the batch an introduction takes is returned in it (and
///   closed by the driver), the rest of that batch are closed by the channel
///   in that same call and counted in `extra_fds`; every fd the channel
///   holds is closed on a violation or by `finish`; no other call closes
///   any, and dropping the channel closes none;
/// * batches are consumed in order, and an introduction's batch was tagged
///   1 to [`MAX_BODY`] bytes after the end of its record;
/// * [`IntroChannel::received`] is the number of bytes pushed; each event's
///   raw bytes are the stream's bytes right after the previous event's (or,
///   after an introduction, right after the read that brought its fd, and
///   after the rest of the body if that read ended inside it and the rest
///   came); messages re-encode to their raw bytes and introductions'
///   records decode from theirs;
/// * errors name offsets and fds the driver can account for, and `finish`
///   accepts only a stream that ended after a complete message (and its
///   body).
///
/// [`MAX_BODY`]: crate::channel::MAX_BODY
pub fn intro_channel(data: &[u8]) -> ChannelOutcome {
    let mut outcome = ChannelOutcome::default();
    let mut ledger = Ledger::new();
    let mut chan = IntroChannel::<TrackedFd>::new(Limits::intro_channel());
    let mut stream: Vec<u8> = Vec::new();
    // Where the next event must start.
    let mut next = Next::default();
    let mut rest = data;
    let mut failed = false;
    while let [header, len, tail @ ..] = rest {
        let len = if header & receive::LONG != 0 {
            usize::from(*len) * 64
        } else {
            usize::from(*len)
        };
        let (read, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        outcome.receives += 1;
        if header & receive::VIA_BUFFER != 0 {
            chan.buffer_mut().extend_from_slice(read);
        } else {
            chan.push_bytes(read);
        }
        stream.extend_from_slice(read);
        assert_eq!(chan.received(), stream.len() as u64, "received()");
        let n = usize::from(header & receive::FDS);
        outcome.fds_in += n;
        chan.push_fds(ledger.make(stream.len() as u64, n));
        loop {
            let event = chan.next_event();
            match event {
                Ok(None) => {
                    assert_eq!(ledger.take_closed(), [], "Ok(None) closed fds");
                    break;
                }
                Ok(Some(ChannelEvent::Message { value, raw })) => {
                    assert_eq!(ledger.take_closed(), [], "a message closed fds");
                    assert!(
                        value.as_record_labeled(NewConnection::LABEL).is_none(),
                        "a uds:new-connection came out as a message"
                    );
                    assert_eq!(value.encode(), raw, "a message's raw bytes");
                    let start = next.start(&stream);
                    assert_raw(&stream, start, &raw);
                    next = Next {
                        pos: start + raw.len(),
                        body_at: None,
                    };
                    outcome.messages += 1;
                }
                Ok(Some(ChannelEvent::Introduction {
                    record,
                    raw,
                    fd,
                    extra_fds,
                })) => {
                    let value = uds_syrup::decode(&raw).expect("an introduction's raw bytes");
                    assert_eq!(NewConnection::from_value(&value).as_ref(), Ok(&record));
                    let start = next.start(&stream);
                    assert_raw(&stream, start, &raw);
                    let end = start + raw.len();
                    let (at, ids) = ledger
                        .batches
                        .get(ledger.next_batch)
                        .expect("an introduction with no fd handed in")
                        .clone();
                    ledger.next_batch += 1;
                    assert!(
                        at > end as u64 && at <= end as u64 + MAX_BODY,
                        "fd tagged at {at} for a record ending at {end}"
                    );
                    next = Next {
                        pos: end,
                        body_at: Some(at as usize),
                    };
                    assert_eq!(fd.id, ids[0], "an introduction takes its read's first fd");
                    assert_eq!(extra_fds, ids.len() - 1, "extra_fds");
                    assert_eq!(ledger.take_closed(), ids[1..], "the extra fds are closed");
                    drop(fd);
                    assert_eq!(ledger.take_closed(), [ids[0]]);
                    outcome.introductions += 1;
                    outcome.extra_fds += extra_fds;
                }
                Err(e) => {
                    check_error(&e, &ledger, &stream, next.start(&stream));
                    outcome.fds_closed_on_error += ledger.all_closed("a violation");
                    outcome.error = Some(e.to_string());
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
        if chan.is_idle() {
            assert_eq!(ledger.held(), [], "an idle channel holds fds");
        }
    }
    if !failed {
        let result = chan.finish();
        if let Err(e) = &result {
            check_error(e, &ledger, &stream, next.start(&stream));
            outcome.error = Some(e.to_string());
        } else {
            assert_eq!(ledger.held(), [], "finish accepted unclaimed fds");
            assert_eq!(
                next.start(&stream),
                stream.len(),
                "finish accepted bytes after the last event"
            );
            outcome.finished = true;
        }
        outcome.fds_closed_on_error += ledger.all_closed("finish");
    }
    drop(chan);
    assert_eq!(ledger.take_closed(), [], "dropping the channel closed fds");
    outcome
}

/// Where the next event starts in the stream.
#[derive(Default)]
struct Next {
    /// The end of the last event.
    pos: usize,
    /// If it was an introduction, where the read that brought its fd ended.
    body_at: Option<usize>,
}

impl Next {
    /// The offset of the next event: right after the last one, or after
    /// the end of the read that brought an introduction's fd, plus the rest
    /// of a body if that read ended inside one and the rest came.
    fn start(&self, stream: &[u8]) -> usize {
        let Some(at) = self.body_at else {
            return self.pos;
        };
        let seen = at - self.pos;
        let body_end = self.pos + SCM_RIGHTS_BODY.len();
        if stream[self.pos..at] == SCM_RIGHTS_BODY[..seen]
            && stream.get(at..body_end) == Some(&SCM_RIGHTS_BODY[seen..])
        {
            body_end
        } else {
            at
        }
    }
}

/// Checks that an event's raw bytes are the stream's at `start`.
fn assert_raw(stream: &[u8], start: usize, raw: &[u8]) {
    assert!(
        stream.get(start..start + raw.len()) == Some(raw),
        "an event's {} raw bytes are not the stream's bytes at {start}",
        raw.len()
    );
}

/// Checks that an error names what the driver can account for.
/// `start` is where the next event would start.
fn check_error(e: &ChannelError, ledger: &Ledger, stream: &[u8], start: usize) {
    match *e {
        ChannelError::UnexpectedFd { at, count } => {
            let front = ledger
                .batches
                .get(ledger.next_batch)
                .expect("UnexpectedFd with no fd held");
            assert_eq!(
                (at, count),
                (front.0, front.1.len()),
                "UnexpectedFd names the oldest batch"
            );
        }
        ChannelError::MissingFd { record_end } => {
            let end = usize::try_from(record_end).expect("record_end");
            assert!(end > start && end <= stream.len(), "MissingFd at {end}");
            assert_eq!(stream[end - 1], b'>', "MissingFd names a record's end");
        }
        ChannelError::Truncated(n) => {
            assert!(
                n > 0 && stream.len().checked_sub(start) == Some(n),
                "Truncated({n}) with {} bytes after the last event",
                stream.len().saturating_sub(start)
            );
        }
        _ => {}
    }
}
