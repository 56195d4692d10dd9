//! `check_stream_socket` names what it finds instead of a connected AF_UNIX
//! stream socket; nothing leaks.

mod common;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket, socketpair};
use uds_fdpass::{SocketCheckError, check_listening_socket, check_stream_socket};

#[test]
fn every_wrong_kind_is_named() {
    let before = common::fd_count();
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        let directory = File::open(dir.path()).unwrap();
        let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
        let devnull = File::open("/dev/null").unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        let (dgram, _d2) = UnixDatagram::pair().unwrap();
        let (seq, _s2) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let unconnected: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let (good, _peer) = UnixStream::pair().unwrap();

        type Check = fn(&SocketCheckError) -> bool;
        let cases: Vec<(&str, Result<(), SocketCheckError>, Check, &str)> = vec![
            (
                "regular file",
                check_stream_socket(&file),
                |e| matches!(e, SocketCheckError::RegularFile),
                "regular file",
            ),
            (
                "directory",
                check_stream_socket(&directory),
                |e| matches!(e, SocketCheckError::Directory),
                "directory",
            ),
            (
                "pipe",
                check_stream_socket(&pipe_r),
                |e| matches!(e, SocketCheckError::Pipe),
                "pipe",
            ),
            (
                "char device",
                check_stream_socket(&devnull),
                |e| matches!(e, SocketCheckError::CharacterDevice),
                "character device",
            ),
            (
                "listening",
                check_stream_socket(&listener),
                |e| matches!(e, SocketCheckError::Listening),
                "listening socket",
            ),
            (
                "datagram",
                check_stream_socket(&dgram),
                |e| matches!(e, SocketCheckError::Datagram),
                "datagram",
            ),
            (
                "seqpacket",
                check_stream_socket(&seq),
                |e| matches!(e, SocketCheckError::Seqpacket),
                "seqpacket",
            ),
            (
                "tcp",
                check_stream_socket(&tcp),
                |e| matches!(e, SocketCheckError::OtherFamily(2)),
                "address family 2",
            ),
            (
                "udp",
                check_stream_socket(&udp),
                |e| matches!(e, SocketCheckError::OtherFamily(2)),
                "address family 2",
            ),
            (
                "unconnected",
                check_stream_socket(&unconnected),
                |e| matches!(e, SocketCheckError::Unconnected),
                "unconnected",
            ),
        ];
        for (what, result, is_right, words) in cases {
            let err = result.expect_err(what);
            assert!(is_right(&err), "{what}: wrong error {err:?}");
            assert!(err.to_string().contains(words), "{what}: message {err}");
        }
        check_stream_socket(&good).expect("a connected stream socket passes");

        check_listening_socket(&listener).expect("a listening socket passes");
        assert!(matches!(
            check_listening_socket(&good),
            Err(SocketCheckError::NotListening)
        ));
        assert!(matches!(
            check_listening_socket(&file),
            Err(SocketCheckError::RegularFile)
        ));
    }
    assert_eq!(common::fd_count(), before, "file descriptors leaked");
}
