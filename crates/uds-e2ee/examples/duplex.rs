//! Two peers, alice and bob, talking end-to-end encrypted over a
//! socketpair, as two netlayers would over the socket an introduction
//! server passed between them; then what happens when the server lies
//! about who dialed.
//!
//! Run with `cargo run -p uds-e2ee --example duplex`.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use uds_e2ee::{E2eeError, LocalStatic, accept, connect};
use uds_handshake::Identity;

fn short_hex(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let alice_id = Identity::generate();
    let bob_id = Identity::generate();
    let carol_id = Identity::generate();
    // Each netlayer makes its X25519 static key once and shares it.
    let alice = Arc::new(LocalStatic::generate(&alice_id));
    let bob = Arc::new(LocalStatic::generate(&bob_id));

    // An honest introduction: alice dials bob, bob is told alice dialed.
    let (a, b) = UnixStream::pair()?;
    let bob_side = {
        let (bob, from) = (bob.clone(), alice_id.designator());
        tokio::spawn(async move {
            let mut s = accept(b, bob, from).await?;
            println!("bob:   accepted {} (proven)", s.peer());
            let mut request = Vec::new();
            s.read_to_end(&mut request).await?;
            println!("bob:   got {:?}", String::from_utf8_lossy(&request));
            s.write_all(&request.to_ascii_uppercase()).await?;
            s.shutdown().await?;
            Ok::<_, std::io::Error>(())
        })
    };
    let mut s = connect(a, alice.clone(), bob_id.designator()).await?;
    println!(
        "alice: connected to {} (proven), handshake hash {}…",
        s.peer(),
        short_hex(&s.info().handshake_hash)
    );
    s.write_all(b"hello bob").await?;
    // The authenticated end of data: bob's read_to_end ends cleanly.
    s.shutdown().await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    println!("alice: got {:?}", String::from_utf8_lossy(&reply));
    bob_side.await??;

    // A lying introduction server: it tells bob that carol dialed.
    let (a, b) = UnixStream::pair()?;
    let bob_side = tokio::spawn(accept(b, bob, carol_id.designator()));
    let refused = connect(a, alice, bob_id.designator()).await.unwrap_err();
    let why = E2eeError::from_io(&refused).expect("a protocol error");
    println!("alice: refused: {why}");
    let bob_refused = bob_side.await?.unwrap_err();
    println!("bob:   refused: {bob_refused}");
    Ok(())
}
