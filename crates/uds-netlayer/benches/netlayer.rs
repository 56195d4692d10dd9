//! The netlayer against baselines measured in the same run (DESIGN §7):
//!
//! * `netlayer/roundtrip-64`: a 64-byte message and its echo over an
//!   established connection, plaintext (`netlayer`) and end-to-end
//!   encrypted (`netlayer-e2ee`), against a raw `socketpair`;
//! * `netlayer/bulk`: 1 MiB in 64 KiB writes over an established plaintext
//!   connection, against a raw `socketpair` (the e2ee bulk figure is
//!   `uds-e2ee`'s benchmark, against ChaCha20-Poly1305 itself);
//! * `netlayer/connect`: connect and a first 64-byte round trip, plaintext
//!   and encrypted (the handshake included), through the real `uds-introd`,
//!   against a minimal
//!   fd-forwarding broker written directly on nix (one `recvmsg` and one
//!   `sendmsg` per connection, no registration, no checks). Both brokers run
//!   as separate processes; the peers run in this process on the same
//!   runtime.
//!
//! Run with `cargo bench -p uds-netlayer` or `cargo xtask bench`.

use std::hint::black_box;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use uds_netlayer::UdsNetlayer;

const BROKER_ENV: &str = "UDS_NETLAYER_BENCH_BROKER";
const BULK: usize = 1 << 20;
const CHUNK: usize = 64 << 10;

/// A byte stream the measured loops can own.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}
type Stream = Option<Box<dyn Io>>;

/// Runs `iters` iterations of `one` on `stream` inside a spawned task (as
/// an application would; driving I/O from `block_on` on the main thread
/// adds a cross-thread wakeup per message) and returns the elapsed time.
fn in_task<F>(rt: &tokio::runtime::Runtime, stream: &mut Stream, iters: u64, one: F) -> Duration
where
    F: for<'a> Fn(
            &'a mut Box<dyn Io>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>
        + Send
        + 'static,
{
    let mut s = stream.take().expect("stream in use");
    let (elapsed, s) = rt.block_on(async {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                one(&mut s).await;
            }
            (start.elapsed(), s)
        })
        .await
        .unwrap()
    });
    *stream = Some(s);
    elapsed
}

/// One 64-byte message and its echo.
fn ping64(
    s: &mut Box<dyn Io>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        s.write_all(&[7u8; 64]).await.unwrap();
        s.flush().await.unwrap();
        let mut buf = [0u8; 64];
        s.read_exact(&mut buf).await.unwrap();
        black_box(buf);
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Echoes 64-byte messages until the stream ends.
async fn echo64<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut buf = [0u8; 64];
    while s.read_exact(&mut buf).await.is_ok() {
        if s.write_all(&buf).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

/// Reads everything and reports how much.
async fn sink<S: tokio::io::AsyncRead + Unpin>(mut s: S, done: tokio::sync::mpsc::Sender<usize>) {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                total += n;
                if total >= BULK {
                    total -= BULK;
                    if done.send(BULK).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A connection from `a` to `b`. The dialer speaks first (an accepting
/// netlayer tells plaintext from e2ee by the first byte); the byte is
/// consumed.
async fn connected(
    a: &UdsNetlayer,
    b: &UdsNetlayer,
) -> (uds_netlayer::Connection, uds_netlayer::Connection) {
    let target = b.location();
    let mut dialed = a.connect(&target).await.unwrap();
    dialed.write_all(b"!").await.unwrap();
    dialed.flush().await.unwrap();
    let mut accepted = b.accept().await.unwrap();
    let mut one = [0u8; 1];
    accepted.read_exact(&mut one).await.unwrap();
    (dialed, accepted)
}

/// Two netlayers registered with the server at `socket`, plaintext or
/// end-to-end encrypted.
async fn two_netlayers(socket: &Path, e2ee: bool) -> (UdsNetlayer, UdsNetlayer) {
    let build = || {
        let b = UdsNetlayer::builder().intro_path(socket);
        if e2ee { b } else { b.plaintext() }.build().unwrap()
    };
    let (a, b) = (build(), build());
    a.registered().await;
    b.registered().await;
    (a, b)
}

fn established(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start_introd(dir.path());
    let socket = dir.path().join("intro.sock");
    let (a, b) = rt.block_on(two_netlayers(&socket, false));
    let (ea, eb) = rt.block_on(two_netlayers(&socket, true));
    // Netlayer connection pairs (plaintext, encrypted), and a raw pair.
    let (ours, theirs) = rt.block_on(connected(&a, &b));
    let (sealed, sealed_theirs) = rt.block_on(connected(&ea, &eb));
    let (raw_a, raw_b) = rt.block_on(async { UnixStream::pair().unwrap() });

    let mut g = c.benchmark_group("netlayer/roundtrip-64");
    rt.spawn(echo64(raw_b));
    rt.spawn(echo64(theirs));
    rt.spawn(echo64(sealed_theirs));
    let mut raw_a: Stream = Some(Box::new(raw_a));
    let mut ours: Stream = Some(Box::new(ours));
    let mut sealed: Stream = Some(Box::new(sealed));
    for (name, stream) in [
        ("baseline", &mut raw_a as &mut Stream),
        ("netlayer", &mut ours),
        ("netlayer-e2ee", &mut sealed),
    ] {
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| in_task(&rt, stream, iters, ping64))
        });
    }
    g.finish();
    drop((raw_a, ours, sealed));

    // Bulk: fresh pairs whose other end only reads.
    let mut g = c.benchmark_group("netlayer/bulk");
    g.throughput(Throughput::Bytes(BULK as u64));
    let (raw_a, raw_b) = rt.block_on(async { UnixStream::pair().unwrap() });
    let (ours, theirs) = rt.block_on(connected(&a, &b));
    for (name, writer, reader) in [
        (
            "baseline",
            Box::new(raw_a) as Box<dyn Io>,
            Box::new(raw_b) as Box<dyn Io>,
        ),
        ("netlayer", Box::new(ours), Box::new(theirs)),
    ] {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        rt.spawn(sink(reader, tx));
        let mut state = Some((writer, rx));
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let (mut w, mut rx) = state.take().unwrap();
                let (elapsed, w, rx) = rt.block_on(async {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            for _ in 0..BULK / CHUNK {
                                w.write_all(&[0x5au8; CHUNK]).await.unwrap();
                            }
                            black_box(rx.recv().await.unwrap());
                        }
                        (start.elapsed(), w, rx)
                    })
                    .await
                    .unwrap()
                });
                state = Some((w, rx));
                elapsed
            })
        });
    }
    g.finish();
    drop((a, b));
    daemon.kill().ok();
    daemon.wait().ok();
}

fn introd_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("uds-introd");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "uds-introd",
                "--bin",
                "uds-introd",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building uds-introd failed");
    }
    bin
}

fn start_introd(dir: &Path) -> Child {
    let mut child = Command::new(introd_bin())
        .arg("--socket")
        .arg(dir.join("intro.sock"))
        .arg("--no-admin")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start uds-introd");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("uds-introd ready"), "{line}");
    child
}

/// The baseline broker (run in its own process): the first client to
/// connect is the acceptor, the second the dialer; every byte + fd from the
/// dialer is passed on to the acceptor with one recvmsg and one sendmsg.
fn broker_main(path: &str) {
    let listener = StdListener::bind(path).unwrap();
    println!("ready");
    let acceptor = listener.accept().unwrap().0;
    let dialer = listener.accept().unwrap().0;
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let msg = match recvmsg::<()>(
            dialer.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) if m.bytes == 1 => m,
            _ => return,
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let sent = sendmsg::<()>(
            acceptor.as_raw_fd(),
            &[IoSlice::new(&byte)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        for fd in fds {
            let _ = nix::unistd::close(fd);
        }
        if sent.is_err() {
            return;
        }
    }
}

fn connect(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("netlayer/connect");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(5));

    // Baseline: the nix broker in its own process.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.sock");
    let mut broker = Command::new(std::env::current_exe().unwrap())
        .env(BROKER_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(broker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (to_acceptor, to_dialer) = rt.block_on(async {
        let acc = UnixStream::connect(&path).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dial = UnixStream::connect(&path).await.unwrap();
        (
            uds_fdpass::FdStream::from(acc),
            uds_fdpass::FdStream::from(dial),
        )
    });
    // The acceptor: every passed socket gets an answer byte, then an echo.
    rt.spawn(async move {
        let mut buf = bytes::BytesMut::new();
        loop {
            let Ok(got) = to_acceptor.recv(&mut buf).await else {
                return;
            };
            if got.is_eof() {
                return;
            }
            buf.clear();
            for fd in got.fds {
                tokio::spawn(async move {
                    let s = uds_fdpass::FdStream::try_from_fd(fd).unwrap().into_inner();
                    echo64(s).await;
                });
            }
        }
    });
    let to_dialer = std::sync::Arc::new(to_dialer);
    g.bench_function("baseline", |bch| {
        bch.iter_custom(|iters| {
            let to_dialer = to_dialer.clone();
            rt.block_on(async {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let (ours, theirs) = uds_fdpass::socketpair().unwrap();
                        to_dialer.send(b"x", &[theirs.as_fd()]).await.unwrap();
                        drop(theirs);
                        let mut s: Box<dyn Io> = Box::new(
                            UnixStream::from_std({
                                let s = StdStream::from(ours);
                                s.set_nonblocking(true).unwrap();
                                s
                            })
                            .unwrap(),
                        );
                        ping64(&mut s).await;
                    }
                    start.elapsed()
                })
                .await
                .unwrap()
            })
        })
    });
    drop(to_dialer);
    broker.kill().ok();
    broker.wait().ok();

    // The netlayer through uds-introd, plaintext and encrypted.
    let mut daemon = start_introd(dir.path());
    let socket = dir.path().join("intro.sock");
    for (name, e2ee) in [("netlayer", false), ("netlayer-e2ee", true)] {
        let (a, b) = rt.block_on(two_netlayers(&socket, e2ee));
        let b2 = b.clone();
        rt.spawn(async move {
            while let Ok(conn) = b2.accept().await {
                tokio::spawn(echo64(conn));
            }
        });
        let target = b.location();
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let (a, target) = (a.clone(), target.clone());
                rt.block_on(async {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let mut s: Box<dyn Io> = Box::new(a.connect(&target).await.unwrap());
                            ping64(&mut s).await;
                        }
                        start.elapsed()
                    })
                    .await
                    .unwrap()
                })
            })
        });
        drop((a, b));
    }
    g.finish();
    daemon.kill().ok();
    daemon.wait().ok();
}

criterion_group!(benches, established, connect);

fn main() {
    if let Ok(path) = std::env::var(BROKER_ENV) {
        broker_main(&path);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
