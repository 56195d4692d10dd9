//! Build a peer locator, print its URI and Syrup bytes, and read both back.
//!
//! Run with `cargo run -p uds-syrup --example locator [DESIGNATOR]`.

use uds_syrup::{Designator, Locator, WireProfile};
use uds_syrup::{IntroMessage, NewConnection};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let peer: Designator = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena")
        .parse()?;
    let server: Designator = "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga".parse()?;

    let loc = Locator::unix(peer).with_hint(server);
    println!("URI:    {loc}");
    let bytes = loc.encode();
    println!("Syrup:  {}", String::from_utf8_lossy(&bytes));

    let from_uri: Locator = loc.to_string().parse()?;
    let from_syrup = Locator::decode(&bytes)?;
    assert_eq!(from_uri, from_syrup);
    println!(
        "key:    {:02x?}",
        &from_syrup.designator_key()?.key_bytes()[..8]
    );

    // An introduction request from this peer to the server's own locator.
    let msg = IntroMessage::NewConnection(NewConnection {
        from: loc.clone(),
        to: Locator::unix(server),
    });
    let wire = msg.encode(WireProfile::Draft);
    println!(
        "intro:  {} bytes: {}",
        wire.len(),
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(IntroMessage::decode(&wire)?, msg);
    Ok(())
}
