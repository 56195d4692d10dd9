//! Send Syrup messages over a Unix stream in both framings with the tokio
//! codec (feature `codec`).
//!
//! Run with `cargo run -p uds-syrup --features codec --example framing`.

use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;
use uds_syrup::Value;
use uds_syrup::codec::{Framing, SyrupCodec};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for framing in [Framing::Raw, Framing::Bytestring] {
        let (a, b) = UnixStream::pair()?;
        let mut tx = Framed::new(a, SyrupCodec::new(framing));
        let mut rx = Framed::new(b, SyrupCodec::new(framing));
        let msg = Value::record(
            Value::symbol("op:deliver-only"),
            [
                Value::int(0),
                Value::list([Value::symbol("ping"), Value::bytes(&b"hi"[..])]),
            ],
        );
        tx.send(&msg).await?;
        tx.send(Value::record(
            Value::symbol("op:abort"),
            [Value::string("bye")],
        ))
        .await?;
        drop(tx);
        while let Some(v) = rx.next().await {
            println!("{framing:?}: {}", v?);
        }
    }
    Ok(())
}
