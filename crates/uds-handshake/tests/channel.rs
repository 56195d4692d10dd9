//! The intro-channel framer: every split point, fds in the right and wrong
//! places, extra fds closed, limits.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use uds_handshake::channel::{ChannelError, ChannelEvent, IntroChannel};
use uds_syrup::{Limits, SCM_RIGHTS_BODY, Value};

fn wire() -> HashMap<String, Vec<u8>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../uds-syrup/tests/vectors/wire.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_owned(), hex::decode(f.next()?).ok()?))
        })
        .collect()
}

/// A fake fd that counts how many times it was closed (dropped).
struct Fd {
    id: u32,
    closed: Rc<Cell<u32>>,
}

impl Drop for Fd {
    fn drop(&mut self) {
        self.closed.set(self.closed.get() + 1);
    }
}

struct Fds {
    closed: Rc<Cell<u32>>,
    next: u32,
}

impl Fds {
    fn new() -> Fds {
        Fds {
            closed: Rc::new(Cell::new(0)),
            next: 0,
        }
    }
    fn make(&mut self, n: usize) -> Vec<Fd> {
        (0..n)
            .map(|_| {
                self.next += 1;
                Fd {
                    id: self.next,
                    closed: self.closed.clone(),
                }
            })
            .collect()
    }
}

#[derive(Debug, PartialEq)]
enum Seen {
    Msg(String),
    Intro(String, u32, usize),
}

fn drain(chan: &mut IntroChannel<Fd>, out: &mut Vec<Seen>) -> Result<(), ChannelError> {
    while let Some(e) = chan.next_event()? {
        out.push(match e {
            ChannelEvent::Message { value, raw } => {
                assert_eq!(value.encode(), raw);
                Seen::Msg(
                    value
                        .as_record()
                        .unwrap()
                        .label_symbol()
                        .unwrap()
                        .to_owned(),
                )
            }
            ChannelEvent::Introduction {
                record,
                raw,
                fd,
                extra_fds,
            } => {
                assert_eq!(record.to_value().encode(), raw);
                Seen::Intro(record.to.designator().to_owned(), fd.id, extra_fds)
            }
        });
    }
    Ok(())
}

/// A stream as the kernel would deliver it: (bytes, fds) per read.
fn stream(w: &HashMap<String, Vec<u8>>) -> (Vec<u8>, Vec<usize>) {
    // register, server-response, signature, intro record, body (fd here),
    // another intro with its body (fd), then a message.
    let mut bytes = Vec::new();
    let mut fd_ends = Vec::new();
    for name in [
        "uds-register",
        "uds-server-response-draft",
        "uds-signature-goblins",
    ] {
        bytes.extend(&w[name]);
    }
    for _ in 0..2 {
        bytes.extend(&w["uds-new-connection"]);
        bytes.extend(SCM_RIGHTS_BODY);
        fd_ends.push(bytes.len());
    }
    bytes.extend(&w["uds-signature-draft"]);
    (bytes, fd_ends)
}

#[test]
fn every_split_point_gives_the_same_events() {
    let w = wire();
    let (bytes, fd_ends) = stream(&w);
    let to = "hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga".to_owned();
    let expected = vec![
        Seen::Msg("uds:register".into()),
        Seen::Msg("uds:server-response".into()),
        Seen::Msg("uds:signature".into()),
        Seen::Intro(to.clone(), 1, 0),
        Seen::Intro(to, 2, 0),
        Seen::Msg("uds:signature".into()),
    ];
    // Reads end at a split point and at every fd segment end (the kernel
    // ends a read right after the segment that carried fds).
    for split in 0..=bytes.len() {
        let mut cuts: Vec<usize> = fd_ends.clone();
        cuts.push(split);
        cuts.push(bytes.len());
        cuts.sort();
        cuts.dedup();
        let mut fds = Fds::new();
        let mut chan = IntroChannel::new(Limits::intro_channel());
        let mut seen = Vec::new();
        let mut at = 0;
        for cut in cuts {
            chan.push_bytes(&bytes[at..cut]);
            if fd_ends.contains(&cut) {
                chan.push_fds(fds.make(1));
            }
            at = cut;
            drain(&mut chan, &mut seen).unwrap_or_else(|e| panic!("split {split}: {e}"));
        }
        chan.finish().unwrap();
        assert!(chan.is_idle());
        assert_eq!(seen, expected, "split {split}");
        drop(seen);
        assert_eq!(
            fds.closed.get(),
            2,
            "split {split}: both fds handed out and closed by us"
        );
    }
}

#[test]
fn one_byte_at_a_time() {
    let w = wire();
    let (bytes, fd_ends) = stream(&w);
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    let mut seen = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        chan.push_bytes(&[*b]);
        if fd_ends.contains(&(i + 1)) {
            chan.push_fds(fds.make(1));
        }
        drain(&mut chan, &mut seen).unwrap();
    }
    assert_eq!(seen.len(), 6);
}

fn intro(w: &HashMap<String, Vec<u8>>) -> Vec<u8> {
    w["uds-new-connection"].clone()
}

fn expect_err(chan: &mut IntroChannel<Fd>) -> ChannelError {
    let mut seen = Vec::new();
    drain(chan, &mut seen).expect_err("a violation")
}

#[test]
fn extra_fds_are_closed_and_counted() {
    let w = wire();
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&intro(&w));
    chan.push_bytes(&SCM_RIGHTS_BODY);
    chan.push_fds(fds.make(3));
    match chan.next_event().unwrap() {
        Some(ChannelEvent::Introduction { fd, extra_fds, .. }) => {
            assert_eq!((fd.id, extra_fds), (1, 2), "the first fd is the socket");
            assert_eq!(fds.closed.get(), 2, "the two extras were closed");
            drop(fd);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fds.closed.get(), 3);
}

#[test]
fn shorter_bodies_are_accepted() {
    let w = wire();
    for body in 1..=4 {
        let mut fds = Fds::new();
        let mut chan = IntroChannel::new(Limits::intro_channel());
        chan.push_bytes(&intro(&w));
        chan.push_bytes(&SCM_RIGHTS_BODY[..body]);
        chan.push_fds(fds.make(1));
        chan.push_bytes(&w["uds-signature-draft"]);
        let mut seen = Vec::new();
        drain(&mut chan, &mut seen).unwrap();
        assert_eq!(seen.len(), 2, "body of {body} bytes");
    }
}

#[test]
fn fds_in_the_wrong_place_are_violations_and_closed() {
    let w = wire();
    let rec = intro(&w);

    // The fd came with the record's own bytes.
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&rec);
    chan.push_fds(fds.make(1));
    chan.push_bytes(&SCM_RIGHTS_BODY);
    assert!(matches!(
        expect_err(&mut chan),
        ChannelError::UnexpectedFd { .. }
    ));
    assert_eq!(fds.closed.get(), 1);

    // The fd came 5 bytes after the record.
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&rec);
    chan.push_bytes(b"\x39\x30\x00\x00t");
    chan.push_fds(fds.make(1));
    assert!(matches!(
        expect_err(&mut chan),
        ChannelError::MissingFd { .. }
    ));
    assert_eq!(fds.closed.get(), 1);

    // No fd, then another message.
    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(&rec);
    chan.push_bytes(&w["uds-register"]);
    let err = expect_err(&mut chan);
    assert!(matches!(err, ChannelError::MissingFd { .. }), "{err}");
    assert!(err.to_string().contains("not followed by its fd"));

    // An fd with a message that is not an introduction.
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&w["uds-register"]);
    chan.push_fds(fds.make(2));
    let err = expect_err(&mut chan);
    assert!(
        matches!(err, ChannelError::UnexpectedFd { count: 2, .. }),
        "{err}"
    );
    assert_eq!(fds.closed.get(), 2);

    // An fd in the middle of a message (before it is complete).
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&w["uds-register"][..10]);
    chan.push_fds(fds.make(1));
    chan.push_bytes(&w["uds-register"][10..]);
    assert!(matches!(
        expect_err(&mut chan),
        ChannelError::UnexpectedFd { .. }
    ));
    assert_eq!(fds.closed.get(), 1);

    // Dropping a channel that still holds fds closes them.
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(b"[");
    chan.push_fds(fds.make(4));
    drop(chan);
    assert_eq!(fds.closed.get(), 4);
}

#[test]
fn end_of_stream_in_the_middle() {
    let w = wire();
    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(&w["uds-register"][..20]);
    assert!(chan.next_event().unwrap().is_none());
    assert!(matches!(chan.finish(), Err(ChannelError::Truncated(20))));

    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(&intro(&w));
    assert!(chan.next_event().unwrap().is_none());
    assert!(matches!(chan.finish(), Err(ChannelError::MissingFd { .. })));

    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    assert!(chan.finish().is_ok());
}

#[test]
fn limits_and_garbage() {
    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(b"70000:");
    let err = chan.next_event().unwrap_err();
    assert!(
        matches!(err, ChannelError::Syrup(ref e) if e.is_limit()),
        "{err}"
    );

    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(&[b'['; 33]);
    let err = chan.next_event().unwrap_err();
    assert!(
        err.to_string()
            .contains("nesting deeper than the limit of 32"),
        "{err}"
    );

    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(b"GET / HTTP/1.1\r\n");
    assert!(matches!(
        chan.next_event().unwrap_err(),
        ChannelError::Syrup(_)
    ));

    // A uds:new-connection that is malformed.
    let mut chan = IntroChannel::<Fd>::new(Limits::intro_channel());
    chan.push_bytes(&Value::record(Value::symbol("uds:new-connection"), [Value::int(1)]).encode());
    assert!(matches!(
        chan.next_event().unwrap_err(),
        ChannelError::Wire(_)
    ));
}

#[test]
fn a_read_that_ends_inside_the_body_skips_the_rest_of_it() {
    let w = wire();
    for split in 1..4 {
        let mut fds = Fds::new();
        let mut chan = IntroChannel::new(Limits::intro_channel());
        let mut seen = Vec::new();
        // The receiver's buffer was nearly full: the read that brought the
        // fd ended `split` bytes into the body.
        chan.push_bytes(&intro(&w));
        chan.push_bytes(&SCM_RIGHTS_BODY[..split]);
        chan.push_fds(fds.make(1));
        drain(&mut chan, &mut seen).unwrap();
        assert_eq!(seen.len(), 1, "split {split}");
        assert!(
            !chan.is_idle(),
            "split {split}: the rest of the body is due"
        );
        // The rest of the body, one byte at a time, then a message.
        for b in &SCM_RIGHTS_BODY[split..] {
            chan.push_bytes(&[*b]);
            drain(&mut chan, &mut seen).unwrap();
        }
        assert!(chan.is_idle(), "split {split}");
        chan.push_bytes(&w["uds-register"]);
        drain(&mut chan, &mut seen).unwrap();
        assert_eq!(seen[1], Seen::Msg("uds:register".into()), "split {split}");
        chan.finish().unwrap();
    }
}

#[test]
fn a_shorter_body_is_not_confused_with_the_next_message() {
    let w = wire();
    // A sender with a 1-byte body "9", then the message `0+` (whose first
    // byte matches the rest of a 4-byte body), then a record.
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&intro(&w));
    chan.push_bytes(&SCM_RIGHTS_BODY[..1]);
    chan.push_fds(fds.make(1));
    assert!(matches!(
        chan.next_event().unwrap(),
        Some(ChannelEvent::Introduction { .. })
    ));
    chan.push_bytes(b"0");
    assert!(chan.next_event().unwrap().is_none(), "undecided yet");
    chan.push_bytes(b"+");
    match chan.next_event().unwrap() {
        Some(ChannelEvent::Message { value, raw }) => {
            assert_eq!(value, Value::int(0));
            assert_eq!(&raw[..], b"0+");
        }
        other => panic!("{other:?}"),
    }
    chan.push_bytes(&w["uds-register"]);
    assert!(matches!(
        chan.next_event().unwrap(),
        Some(ChannelEvent::Message { .. })
    ));

    // The rest of a split body cut short by the end of the stream.
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&intro(&w));
    chan.push_bytes(&SCM_RIGHTS_BODY[..2]);
    chan.push_fds(fds.make(1));
    assert!(chan.next_event().unwrap().is_some());
    chan.push_bytes(&SCM_RIGHTS_BODY[2..3]);
    assert!(chan.next_event().unwrap().is_none());
    assert!(matches!(chan.finish(), Err(ChannelError::Truncated(1))));
}

#[test]
fn an_fd_inside_an_incomplete_message_is_refused_at_once() {
    let w = wire();
    let mut fds = Fds::new();
    let mut chan = IntroChannel::new(Limits::intro_channel());
    chan.push_bytes(&w["uds-register"][..10]);
    chan.push_fds(fds.make(3));
    // No need to wait for the rest of the message: no introduction record
    // can end before these fds.
    let err = chan.next_event().unwrap_err();
    assert!(
        matches!(err, ChannelError::UnexpectedFd { at: 10, count: 3 }),
        "{err}"
    );
    assert_eq!(fds.closed.get(), 3);
    drop(chan);
    assert_eq!(fds.closed.get(), 3, "closed exactly once");
}

#[test]
fn introduction_bytes_are_the_record_and_the_body() {
    let w = wire();
    let record =
        uds_syrup::NewConnection::from_value(&uds_syrup::decode(&intro(&w)).unwrap()).unwrap();
    let (bytes, body) = uds_handshake::channel::introduction_bytes(&record);
    assert_eq!(bytes, intro(&w));
    assert_eq!(body.to_vec(), w["scm-rights-body"]);
}
