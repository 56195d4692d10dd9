//! A complete registration between a client and a server, in memory,
//! printing each message in both wire profiles.
//!
//! Run with `cargo run -p uds-handshake --example handshake`.

use std::sync::Arc;

use uds_handshake::{ClientConfig, ClientHandshake, Identity, ServerHandshake, ServerStep};
use uds_syrup::{WireProfile, decode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server_id = Arc::new(Identity::generate());
    let peer_id = Arc::new(Identity::generate());
    println!(
        "server: {}\npeer:   {}\n",
        server_id.designator(),
        peer_id.designator()
    );

    for profile in [WireProfile::Draft, WireProfile::Goblins] {
        println!("== {profile} profile");
        let config = ClientConfig {
            profile: Some(profile),
            pinned_server: Some(server_id.designator()),
        };
        let mut client = ClientHandshake::new(peer_id.clone(), config);
        let mut server = ServerHandshake::new(server_id.clone(), profile);

        let register = client.register_message();
        println!("peer → server   {}", decode(&register)?);
        let ServerStep::Send(response) = server.receive(&decode(&register)?)? else {
            return Err("the server should answer uds:register".into());
        };
        println!("server → peer   {}", decode(&response)?);
        let done = client.receive(&decode(&response)?)?;
        println!("peer → server   {}", decode(&done.signature_message)?);
        match server.receive(&decode(&done.signature_message)?)? {
            ServerStep::Registered(r) => println!("registered: {}\n", r.locator),
            ServerStep::Send(_) => return Err("unexpected second response".into()),
        }
    }
    Ok(())
}
