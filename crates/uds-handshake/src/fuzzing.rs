//! The code path the `handshake` fuzz target drives, shared with the test
//! that replays the committed corpus. Not part of the stable API.

use std::sync::Arc;

use uds_syrup::{Limits, WireProfile};

use crate::channel::{ChannelEvent, IntroChannel};
use crate::{ClientConfig, ClientHandshake, Identity, ServerHandshake};

/// Feeds `data` (split into reads at points chosen from the input, with fds
/// pushed after some reads) through an intro channel into a server and a
/// client handshake with fixed identities. Must never panic.
pub fn drive(data: &[u8]) {
    let server_id = Arc::new(Identity::from_secret_bytes([2; 32]));
    let peer_id = Arc::new(Identity::from_secret_bytes([1; 32]));
    let challenge: Vec<u8> = (0u8..64).collect();
    let Ok(mut server) =
        ServerHandshake::with_challenge(server_id, WireProfile::Draft, challenge.clone())
    else {
        return;
    };
    let Ok(mut client) =
        ClientHandshake::with_challenge(peer_id, ClientConfig::default(), challenge)
    else {
        return;
    };
    let mut chan = IntroChannel::<u8>::new(Limits::intro_channel());
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for (i, chunk) in data.chunks(step).enumerate() {
        chan.push_bytes(chunk);
        if chunk.last().is_some_and(|b| b % 7 == 0) {
            chan.push_fds(vec![i as u8; usize::from(chunk[0] % 3) + 1]);
        }
        loop {
            match chan.next_event() {
                Ok(Some(ChannelEvent::Message { value, .. })) => {
                    let _ = server.receive(&value);
                    let _ = client.receive(&value);
                }
                Ok(Some(ChannelEvent::Introduction { .. })) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = chan.finish();
}
