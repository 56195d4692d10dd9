//! The tokio-util codec on real Unix stream sockets (feature `codec`).
#![cfg(feature = "codec")]

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::{Decoder as _, Framed, FramedRead};
use uds_syrup::codec::{CodecError, Framing, SyrupCodec};
use uds_syrup::{ErrorKind, Limits, Value};

fn sample() -> Vec<Value> {
    vec![
        Value::record(Value::symbol("op:abort"), [Value::string("bye")]),
        Value::list([Value::int(1), Value::bytes(vec![0u8; 3000])]),
        Value::Bool(true),
        Value::int(7),
    ]
}

#[tokio::test]
async fn both_framings_over_a_socket_written_one_byte_at_a_time() {
    for framing in [Framing::Raw, Framing::Bytestring] {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut wire = BytesMut::new();
        let mut enc = SyrupCodec::new(framing);
        for v in sample() {
            tokio_util::codec::Encoder::encode(&mut enc, &v, &mut wire).unwrap();
        }
        let writer = tokio::spawn(async move {
            for byte in wire.iter() {
                a.write_all(&[*byte]).await.unwrap();
            }
        });
        let got: Vec<Value> = FramedRead::new(b, SyrupCodec::new(framing))
            .map(|r| r.unwrap())
            .collect()
            .await;
        writer.await.unwrap();
        assert_eq!(got, sample(), "{framing:?}");
    }
}

#[tokio::test]
async fn sink_and_stream() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut tx = Framed::new(a, SyrupCodec::new(Framing::Bytestring));
    let mut rx = Framed::new(b, SyrupCodec::new(Framing::Bytestring));
    for v in sample() {
        tx.send(v).await.unwrap();
    }
    for v in sample() {
        assert_eq!(rx.next().await.unwrap().unwrap(), v);
    }
}

#[test]
fn bytestring_frame_matches_the_vector() {
    let mut codec = SyrupCodec::new(Framing::Bytestring);
    let mut buf =
        BytesMut::from(&hex::decode("31373a3c38276f703a61626f727433226279653e").unwrap()[..]);
    let v = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        v.encode(),
        hex::decode("3c38276f703a61626f727433226279653e").unwrap()
    );
    assert!(buf.is_empty());
}

#[test]
fn bad_frames_are_refused() {
    let limits = Limits {
        max_message_len: 100,
        ..Limits::default()
    };
    let cases: [(&[u8], &str); 5] = [
        (b"101:", "larger than the limit"),
        (b"05:t", "leading zero"),
        (b"x", "expected a bytestring"),
        (b"2:tt", "unexpected bytes after"),
        (b"3:[1+", "ends inside"),
    ];
    for (input, want) in cases {
        let mut codec = SyrupCodec::with_limits(Framing::Bytestring, limits);
        let mut buf = BytesMut::from(input);
        let err = match codec.decode(&mut buf) {
            Err(e) => e,
            Ok(_) => codec.decode_eof(&mut buf).unwrap_err(),
        };
        assert!(err.to_string().contains(want), "{input:?}: {err}");
    }
    // Raw framing: a stream that ends inside a value.
    let mut codec = SyrupCodec::new(Framing::Raw);
    let mut buf = BytesMut::from(&b"[1+"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    match codec.decode_eof(&mut buf) {
        Err(CodecError::Syrup(e)) => assert_eq!(e.kind(), &ErrorKind::Truncated("message")),
        other => panic!("{other:?}"),
    }
}
