//! The writer task of `uds_handshake::io`: a handle whose task is gone
//! refuses at once, and never leaves a caller waiting.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use uds_fdpass::FdStream;
use uds_handshake::io::{IntroWriter, Outgoing, WriteError};

/// Once the writer task has ended (aborted, as the netlayer does when a
/// session ends), a send neither writes nor waits: the caller's fast path
/// used to write anyway and, when the socket was full, hand the rest to the
/// dead task and wait forever.
#[tokio::test]
async fn a_writer_whose_task_is_gone_refuses_at_once() {
    let (ours, theirs) = FdStream::pair().unwrap();
    let (writer, task) = IntroWriter::spawn(Arc::new(ours), 4, Duration::from_secs(60));
    writer
        .send(Outgoing::Message(Bytes::from_static(b"<4'ping>")))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    theirs.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..], b"<4'ping>");

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(writer.is_closed());
    // More than the socket can take at once: the old fast path wrote part
    // of it and waited for a task that no longer exists.
    let big = Bytes::from(vec![b'x'; 4 << 20]);
    let sent = tokio::time::timeout(Duration::from_secs(20), writer.send(Outgoing::Message(big)))
        .await
        .expect("a send on a writer whose task is gone must not wait");
    assert!(matches!(sent, Err(WriteError::Closed)), "{sent:?}");
    buf.clear();
    let nothing = theirs.try_recv(&mut buf);
    assert!(
        matches!(&nothing, Err(e) if e.is_would_block()),
        "nothing was written: {nothing:?} {} bytes",
        buf.len()
    );
}
