//! The code path the `handshake` fuzz target drives, shared with the test
//! that replays the committed corpus (cargo feature `fuzzing`). Not part of
//! the stable API: it may change or go away in any release.

use std::sync::Arc;

use uds_syrup::{Limits, SCM_RIGHTS_BODY, ServerResponse, WireProfile};

use crate::channel::{ChannelEvent, IntroChannel};
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
