//! Hand a live connection from one party to another over a Unix socket.
//!
//! A "broker" task receives sockets over a channel and greets whoever is on
//! the other end; the main task creates a socketpair, passes one end to the
//! broker and talks over the other.
//!
//! Run with `cargo run -p uds-fdpass --example pass_fd`.

use std::os::fd::AsFd;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uds_fdpass::{FdStream, check_stream_socket, socketpair};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (to_broker, broker_side) = FdStream::pair()?;

    let broker = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let got = broker_side.recv(&mut buf).await?;
        println!("broker: got {:?} with {} fd(s)", &buf[..], got.fds.len());
        for fd in got.fds {
            check_stream_socket(&fd)?; // never trust a passed fd blindly
            let std = std::os::unix::net::UnixStream::from(fd);
            std.set_nonblocking(true)?;
            let mut conn = tokio::net::UnixStream::from_std(std)?;
            conn.write_all(b"hello from the broker").await?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    let (mine, theirs) = socketpair()?;
    to_broker.send(b"please greet", &[theirs.as_fd()]).await?;
    drop(theirs); // the broker has its own copy now

    let std = std::os::unix::net::UnixStream::from(mine);
    std.set_nonblocking(true)?;
    let mut conn = tokio::net::UnixStream::from_std(std)?;
    let mut greeting = String::new();
    conn.read_to_string(&mut greeting).await?;
    println!("main: {greeting}");
    broker.await?.map_err(|e| e.to_string())?;
    Ok(())
}
