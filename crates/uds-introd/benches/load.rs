//! Load on the real daemon (the build of this profile, a separate process),
//! with clients in this process, against figures measured in the same run:
//!
//! * **the floor**: one Ed25519 signature of a 64-byte challenge plus one
//!   strict verification, averaged over a few thousand on one thread of
//!   this process. A registration costs the daemon at least that (it signs
//!   the client's challenge and verifies the client's signature of its
//!   own); the budget is on `daemon CPU per registration ÷ (sign + verify)`;
//! * **a growing population**: peers register in steps, 64 handshakes in
//!   flight, until 1,000, 10,000 and 100,000 are registered and idle. At
//!   each size: registrations per second during the step and the daemon's
//!   CPU per registration against the floor; resident memory per peer (the
//!   daemon's RSS growth since start ÷ peers); intros per second, 100
//!   senders each sending 500 intros to its own receiver with at most 32 in
//!   flight (the same 200 peers at every size), and the daemon's CPU per
//!   intro. The rates at the largest size are compared with those at 1,000.
//!
//! The process raises `RLIMIT_NOFILE` (soft and hard, up to
//! `/proc/sys/fs/nr_open`) for itself and the daemon; if it cannot be raised
//! enough, the largest size that fits is run and the output says so.
//!
//! Clients and daemon share this machine's cores, so end-to-end rates are a
//! lower bound of what the daemon alone can do; CPU times are exact (each
//! process's POSIX CPU-time clock). Results go to stdout and, under
//! `cargo xtask bench`, to `$OCAPN_BENCH_REPORT_DIR/introd.json`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Peer, Report, size_label};

/// The population sizes at which the curve is taken.
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Registration handshakes in flight.
const CONCURRENCY: usize = 64;
/// Sender/receiver pairs for the intros.
const PAIRS: usize = 100;
const INTROS_PER_PAIR: usize = 500;
/// Signatures and verifications averaged for the floor.
const FLOOR_ROUNDS: usize = 3_000;
/// File descriptors kept free besides one per peer, in this process and in
/// the daemon: intros in flight (at most 100 × 32), the pairs' sockets, the
/// runtimes, the daemon's listeners.
const FD_SLACK: usize = 4_096;

/// One point of the curve.
struct Point {
    peers: usize,
    regs_per_s: f64,
    daemon_us_per_reg: f64,
    kib_per_peer: f64,
    intros_per_s: f64,
}

fn main() {
    common::exit_on_panic();
    let largest = *SIZES.last().unwrap();
    let (limit, short) = common::raise_nofile((largest + FD_SLACK) as u64);
    // Whole thousands, so that the sizes read well.
    let fits = (limit as usize).saturating_sub(FD_SLACK) / 1000 * 1000;
    let fits = fits.max(2 * PAIRS);
    let mut sizes: Vec<usize> = SIZES.iter().copied().filter(|&n| n <= fits).collect();
    if fits < largest {
        if sizes.last() != Some(&fits) {
            sizes.push(fits);
        }
        println!(
            "introd/load: only {fits} peers fit instead of {largest}: RLIMIT_NOFILE is {limit} \
             (the daemon needs one fd per peer, and so do the clients here), and it cannot \
             be raised: {}",
            short.as_deref().unwrap_or("unknown reason")
        );
    }
    let max_peers = *sizes.last().unwrap();

    let mut report = Report::new("introd/load");
    let floor_us = common::sign_verify_floor_us(FLOOR_ROUNDS);
    report.metric("sign + verify (floor)", floor_us, "µs");

    let dir = tempfile::tempdir().unwrap();
    let socket = Arc::new(dir.path().join("intro.sock"));
    let mut daemon = common::start_introd(&socket, max_peers + CONCURRENCY + 16);
    let pid = daemon.id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (points, total) = rt.block_on(async {
        let rss_start = common::rss_kib(pid);
        let mut idle: Vec<uds_fdpass::FdStream> = Vec::with_capacity(max_peers);
        let mut pairs: Vec<(Peer, Peer)> = Vec::new();
        let mut points = Vec::new();
        let (mut reg_wall, mut reg_daemon_ns, mut reg_own_ns) = (Duration::ZERO, 0u64, 0u64);
        let mut registered = 0;
        for &size in &sizes {
            // Keys are made before the clock starts: registering is measured,
            // not key generation.
            let ids = common::identities(size - registered);
            let (d0, o0, start) = (common::cpu_ns(pid), common::own_cpu_ns(), Instant::now());
            let mut peers = common::register_all(&socket, ids, CONCURRENCY).await;
            let wall = start.elapsed();
            // The last signatures may still be in the daemon's hands.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (daemon_ns, own_ns) = (common::cpu_ns(pid) - d0, common::own_cpu_ns() - o0);
            let added = size - registered;
            registered = size;
            reg_wall += wall;
            reg_daemon_ns += daemon_ns;
            reg_own_ns += own_ns;
            let kib_per_peer = (common::rss_kib(pid) - rss_start) / size as f64;
            if pairs.is_empty() {
                let mut full = peers.drain(..2 * PAIRS);
                while let (Some(rx), Some(tx)) = (full.next(), full.next()) {
                    pairs.push((rx, tx));
                }
            }
            // Idle peers keep only their socket.
            idle.extend(peers.into_iter().map(|p| p.stream));

            let d0 = common::cpu_ns(pid);
            let (back, elapsed) = common::intro_burst(pairs, INTROS_PER_PAIR).await;
            pairs = back;
            let intros = (PAIRS * INTROS_PER_PAIR) as f64;
            let intro_us = (common::cpu_ns(pid) - d0) as f64 / 1e3 / intros;
            let point = Point {
                peers: size,
                regs_per_s: added as f64 / wall.as_secs_f64(),
                daemon_us_per_reg: daemon_ns as f64 / 1e3 / added as f64,
                kib_per_peer,
                intros_per_s: intros / elapsed.as_secs_f64(),
            };
            println!(
                "introd/load: {} peers registered ({added} in {:.2} s), daemon RSS {:.0} MiB; \
                 daemon CPU per intro {intro_us:.2} µs",
                point.peers,
                wall.as_secs_f64(),
                common::rss_kib(pid) / 1024.0
            );
            points.push((point, intro_us));
        }
        drop((idle, pairs));
        (points, (registered, reg_wall, reg_daemon_ns, reg_own_ns))
    });
    let _ = daemon.kill();
    let _ = daemon.wait();

    let (registered, wall, daemon_ns, own_ns) = total;
    let daemon_us = daemon_ns as f64 / 1e3 / registered as f64;
    report.metric("peers registered", registered as f64, "");
    report.metric("daemon CPU per registration", daemon_us, "µs");
    report.metric(
        "daemon CPU per registration ÷ (sign + verify)",
        daemon_us / floor_us,
        "×",
    );
    report.metric(
        "client CPU per registration",
        own_ns as f64 / 1e3 / registered as f64,
        "µs",
    );
    report.metric(
        "registrations/s",
        registered as f64 / wall.as_secs_f64(),
        "/s",
    );
    for (p, intro_us) in &points {
        let at = size_label(p.peers);
        report.metric(format!("registrations/s at {at}"), p.regs_per_s, "/s");
        report.metric(
            format!("daemon CPU per registration ÷ floor at {at}"),
            p.daemon_us_per_reg / floor_us,
            "×",
        );
        report.metric(format!("KiB/peer at {at}"), p.kib_per_peer, "KiB");
        report.metric(format!("intros/s at {at}"), p.intros_per_s, "/s");
        report.metric(format!("daemon CPU per intro at {at}"), *intro_us, "µs");
    }
    let (first, last) = (&points[0].0, &points[points.len() - 1].0);
    if last.peers > first.peers {
        let (a, b) = (size_label(first.peers), size_label(last.peers));
        report.metric(
            format!("registrations/s at {b} ÷ at {a}"),
            last.regs_per_s / first.regs_per_s,
            "×",
        );
        report.metric(
            format!("intros/s at {b} ÷ at {a}"),
            last.intros_per_s / first.intros_per_s,
            "×",
        );
    }
    report.write("introd.json");
}
