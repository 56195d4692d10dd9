//! Load on the real daemon (release build), with clients in this process:
//!
//! * registrations per second while 10,000 peers register, 64 at a time;
//! * resident memory per registered idle peer at 10,000 peers;
//! * intros per second, 100 senders each sending 500 intros to its own
//!   receiver, with at most 32 in flight per sender.
//!
//! Clients and daemon share this machine's cores, so the end-to-end figures
//! are a lower bound of what the daemon alone can do; the CPU time the
//! daemon spends per registration is measured too, and its inverse is the
//! daemon's capacity per core (the figure the budget applies to). Results go to stdout and,
//! under `cargo xtask bench`, to `$OCAPN_BENCH_REPORT_DIR/introd.json`.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use uds_fdpass::FdStream;
use uds_handshake::channel::{ChannelEvent, IntroChannel};
use uds_handshake::{ClientConfig, ClientHandshake, Identity};
use uds_syrup::{Limits, NewConnection, SCM_RIGHTS_BODY};

const PEERS: usize = 10_000;
const CONCURRENCY: usize = 64;
const PAIRS: usize = 100;
const INTROS_PER_PAIR: usize = 500;
/// Intros a sender has in flight before it waits for its receiver (like
/// dialers waiting for an answer).
const WINDOW: usize = 32;

struct Peer {
    stream: FdStream,
    chan: IntroChannel<std::os::fd::OwnedFd>,
    identity: Arc<Identity>,
}

async fn next_event(p: &mut Peer) -> ChannelEvent<std::os::fd::OwnedFd> {
    loop {
        if let Some(e) = p.chan.next_event().expect("valid input") {
            return e;
        }
        let got = p.stream.recv(p.chan.buffer_mut()).await.expect("recv");
        assert!(!got.is_eof(), "daemon closed a benchmark client");
        p.chan.push_fds(got.fds);
    }
}

async fn register(socket: &Path) -> Peer {
    let stream = FdStream::from(
        tokio::net::UnixStream::connect(socket)
            .await
            .expect("connect"),
    );
    let identity = Arc::new(Identity::generate());
    let mut hs = ClientHandshake::new(identity.clone(), ClientConfig::default());
    let mut p = Peer {
        stream,
        chan: IntroChannel::new(Limits::intro_channel()),
        identity,
    };
    p.stream.send(&hs.register_message(), &[]).await.unwrap();
    let ChannelEvent::Message { value, .. } = next_event(&mut p).await else {
        panic!("expected a server response")
    };
    let done = hs.receive(&value).expect("handshake");
    p.stream.send(&done.signature_message, &[]).await.unwrap();
    p
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for us).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("intro.sock");
    let n = (PEERS + 100).to_string();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_uds-introd"))
        .arg("--socket")
        .arg(&socket)
        .args([
            "--no-admin",
            "--max-clients",
            &n,
            "--max-clients-per-uid",
            &n,
        ])
        .args(["--max-unregistered", &n])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start uds-introd");
    let mut ready = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("uds-introd ready"), "{ready}");
    let pid = daemon.id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (regs_per_s, daemon_us, client_us, kib_per_peer, intros_per_s) = rt.block_on(async {
        let rss_before = rss_kib(pid);
        // Registrations.
        let start = Instant::now();
        let (daemon_cpu0, our_cpu0) = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
        let socket = Arc::new(socket);
        let mut peers = Vec::with_capacity(PEERS);
        let mut tasks = tokio::task::JoinSet::new();
        let mut launched = 0;
        while peers.len() < PEERS {
            while tasks.len() < CONCURRENCY && launched < PEERS {
                let s = socket.clone();
                tasks.spawn(async move { register(&s).await });
                launched += 1;
            }
            peers.push(tasks.join_next().await.unwrap().unwrap());
        }
        let regs_per_s = PEERS as f64 / start.elapsed().as_secs_f64();
        let daemon_us = (cpu_seconds(&pid.to_string()) - daemon_cpu0) * 1e6 / PEERS as f64;
        let client_us = (cpu_seconds("self") - our_cpu0) * 1e6 / PEERS as f64;
        // Let the daemon process the last signatures, then measure memory.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let kib_per_peer = (rss_kib(pid) - rss_before) / PEERS as f64;

        // Intros: sender i sends to receiver i, passing the same socket
        // each time (the receiver gets a new fd every time and closes it).
        let receivers: Vec<Peer> = peers.drain(..PAIRS).collect();
        let senders: Vec<Peer> = peers.drain(..PAIRS).collect();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (mut rx, tx) in receivers.into_iter().zip(senders) {
            let to = rx.identity.locator();
            tasks.spawn(async move {
                let (keep, give) = uds_fdpass::socketpair().unwrap();
                let record = NewConnection {
                    from: tx.identity.locator(),
                    to,
                }
                .to_value()
                .encode();
                let window = tokio::sync::Semaphore::new(WINDOW);
                let sender = async {
                    for _ in 0..INTROS_PER_PAIR {
                        window.acquire().await.unwrap().forget();
                        tx.stream.send(&record, &[]).await.unwrap();
                        tx.stream
                            .send(&SCM_RIGHTS_BODY, &[give.as_fd()])
                            .await
                            .unwrap();
                    }
                };
                let receiver = async {
                    for _ in 0..INTROS_PER_PAIR {
                        match next_event(&mut rx).await {
                            ChannelEvent::Introduction { fd, .. } => drop(fd),
                            other => panic!("{other:?}"),
                        }
                        window.add_permits(1);
                    }
                };
                tokio::join!(sender, receiver);
                drop((keep, give, tx, rx));
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let intros_per_s = (PAIRS * INTROS_PER_PAIR) as f64 / start.elapsed().as_secs_f64();
        drop(peers);
        (regs_per_s, daemon_us, client_us, kib_per_peer, intros_per_s)
    });
    let _ = daemon.kill();
    let _ = daemon.wait();

    println!("introd/load registrations/s  {regs_per_s:.0}");
    println!(
        "introd/load daemon CPU per registration {daemon_us:.1} µs, clients' {client_us:.1} µs"
    );
    println!("introd/load KiB/peer         {kib_per_peer:.2} (at {PEERS} idle peers)");
    println!("introd/load intros/s         {intros_per_s:.0}");
    let per_core = 1e6 / daemon_us;
    println!("introd/load registrations/s per daemon core {per_core:.0}");
    if let Ok(dir) = std::env::var("OCAPN_BENCH_REPORT_DIR") {
        let json = format!(
            "[{{\"group\":\"introd/load\",\"name\":\"registrations/s\",\"value\":{regs_per_s},\"unit\":\"/s\"}},\
             {{\"group\":\"introd/load\",\"name\":\"registrations/s per daemon core\",\"value\":{per_core},\"unit\":\"/s\"}},\
             {{\"group\":\"introd/load\",\"name\":\"daemon CPU per registration\",\"value\":{daemon_us},\"unit\":\"µs\"}},\
             {{\"group\":\"introd/load\",\"name\":\"client CPU per registration\",\"value\":{client_us},\"unit\":\"µs\"}},\
             {{\"group\":\"introd/load\",\"name\":\"KiB/peer\",\"value\":{kib_per_peer},\"unit\":\"KiB\"}},\
             {{\"group\":\"introd/load\",\"name\":\"intros/s\",\"value\":{intros_per_s},\"unit\":\"/s\"}}]"
        );
        std::fs::write(Path::new(&dir).join("introd.json"), json).unwrap();
    }
}
