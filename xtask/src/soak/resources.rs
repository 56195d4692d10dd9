//! Resource figures of the processes (fds, RSS, the daemon's `status`),
//! and the rules for "back to baseline".

use std::collections::BTreeMap;

/// One measurement of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Open fds (`/proc/<pid>/fd`).
    pub fds: usize,
    /// Resident memory in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub rss_kib: u64,
}

/// The number of open fds of `pid`, if it exists.
pub(crate) fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// `VmRSS` of `pid` in KiB, if it exists.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse_vmrss(&s))
}

/// Both figures of `pid`.
pub(crate) fn sample(pid: u32) -> Option<Sample> {
    Some(Sample {
        fds: fd_count(pid)?,
        rss_kib: rss_kib(pid)?,
    })
}

/// The `VmRSS:` value (in kB) of a `/proc/<pid>/status` text.
pub(crate) fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let n = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(n),
        Some(_) => None,
    }
}

/// The figures of `uds-introd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DaemonStatus {
    /// Every numeric `key: value` line.
    pub values: BTreeMap<String, u64>,
    /// The `refused:` counters.
    pub refused: BTreeMap<String, u64>,
    /// The `peer:` lines.
    pub peers: usize,
}

impl DaemonStatus {
    /// A figure, 0 if absent.
    pub(crate) fn get(&self, key: &str) -> u64 {
        self.values.get(key).copied().unwrap_or(0)
    }

    /// The refusal counters that are not 0.
    pub(crate) fn nonzero_refusals(&self) -> Vec<(String, u64)> {
        self.refused
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

/// Parses the text of `uds-introd status`.
pub(crate) fn parse_status(text: &str) -> Result<DaemonStatus, String> {
    let mut st = DaemonStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            "refused" => {
                for pair in value.split_whitespace() {
                    let (k, n) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("status: bad refusal counter {pair:?}"))?;
                    let n = n
                        .parse()
                        .map_err(|_| format!("status: bad refusal counter {pair:?}"))?;
                    st.refused.insert(k.to_owned(), n);
                }
            }
            "peer" => st.peers += 1,
            _ => {
                if let Ok(n) = value.trim().parse::<u64>() {
                    st.values.insert(key.to_owned(), n);
                }
            }
        }
    }
    if !st.values.contains_key("clients") {
        return Err(format!("status: no `clients:` line in {text:?}"));
    }
    Ok(st)
}

/// What is left in a daemon that should be idle with `peers` registered
/// peers: one line per problem.
pub(crate) fn idle_problems(st: &DaemonStatus, peers: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let peers = peers as u64;
    for (key, want) in [
        ("clients", peers),
        ("registered", peers),
        ("unregistered", 0),
        ("intros-waiting", 0),
        ("intros-queued", 0),
        ("sockets-held", 0),
        ("intro-bytes-held", 0),
        ("senders-paused", 0),
    ] {
        // A figure missing from `status` is a problem too: a renamed key
        // must not turn the check off.
        match st.values.get(key) {
            Some(&got) if got != want => problems.push(format!("{key} is {got}, expected {want}")),
            Some(_) => {}
            None => problems.push(format!("{key} is missing from the daemon's status")),
        }
    }
    problems
}

/// How far a figure may be from its baseline and still count as "back".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tolerance {
    /// Extra fds allowed (after subtracting one per client connection).
    pub fds: usize,
    /// RSS growth allowed: the larger of this many KiB...
    pub rss_kib: u64,
    /// ...and this fraction of the baseline.
    pub rss_ratio: f64,
}

/// The daemons' tolerance.
///
/// * fds: none. A daemon holds a fixed set of fds (listening and admin
///   sockets, the runtime's epoll and eventfd, the signal pipe, stdio) plus
///   exactly one per client connection, and every passed socket is closed
///   once forwarded or refused; after the quiet period, `fds - clients`
///   must equal its baseline exactly. One leaked socket is a bug.
/// * RSS: growth up to 4 MiB or 50 % of the baseline, whichever is larger.
///   The allocator keeps memory freed after a burst in its per-thread
///   arenas (tokio's workers), so RSS does not fall back to its value
///   after warm-up: a ten-minute run grows a daemon of about 5 MiB by a
///   few hundred KiB. A leak of 100 bytes per intro would add about 4 MiB
///   over the tens of thousands of intros of such a run.
pub(crate) const DAEMON_TOLERANCE: Tolerance = Tolerance {
    fds: 0,
    rss_kib: 4 * 1024,
    rss_ratio: 0.5,
};

/// The peers' tolerance: fds exactly back (their links to the two daemons
/// are the only long-lived sockets); RSS is reported, not judged (a peer
/// is this project's library inside a test program).
pub(crate) const PEER_FD_TOLERANCE: usize = 0;

/// Whether `now` is back to `base` for fds, counting `clients` connections
/// at each time as expected extra fds.
pub(crate) fn fds_back(
    base: Sample,
    base_clients: u64,
    now: Sample,
    now_clients: u64,
    tol: &Tolerance,
) -> Result<(), String> {
    let b = base.fds as i64 - base_clients as i64;
    let n = now.fds as i64 - now_clients as i64;
    if n <= b + tol.fds as i64 {
        Ok(())
    } else {
        Err(format!(
            "{} fds with {now_clients} clients, baseline {} with {base_clients}: {} more than \
             allowed",
            now.fds,
            base.fds,
            n - b - tol.fds as i64
        ))
    }
}

/// The most RSS allowed after a baseline of `base_kib`.
pub(crate) fn rss_limit(base_kib: u64, tol: &Tolerance) -> u64 {
    base_kib + tol.rss_kib.max((base_kib as f64 * tol.rss_ratio) as u64)
}

/// Whether `now_kib` is within the tolerance of `base_kib`.
pub(crate) fn rss_back(base_kib: u64, now_kib: u64, tol: &Tolerance) -> Result<(), String> {
    let limit = rss_limit(base_kib, tol);
    if now_kib <= limit {
        Ok(())
    } else {
        Err(format!(
            "RSS {} against a baseline of {}: above the allowed {}",
            fmt_kib(now_kib),
            fmt_kib(base_kib),
            fmt_kib(limit)
        ))
    }
}

/// `12.3 MiB`, `850 KiB`.
pub(crate) fn fmt_kib(kib: u64) -> String {
    if kib >= 1024 {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    } else {
        format!("{kib} KiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
id: hvabpq7iioevvevxbktu2g36xsojqlgpf3cjndgazvk7ckxumyga
sandbox: mode=auto landlock-abi=7 filesystem=denied
uptime-seconds: 3600
clients: 3
unregistered: 0
registered: 3
intros-waiting: 0
intros-queued: 0
sockets-held: 0
intro-bytes-held: 0
senders-paused: 0
refused: policy=0 credentials=0 protocol=2 park-timeout=1
peer: 25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena pid=4242 uid=1000 gid=1000 since=1795000000
peer: 35njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena pid=4243 uid=1000 gid=1000 since=1795000000
peer: 45njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena pid=4244 uid=1000 gid=1000 since=1795000000
";

    #[test]
    fn status_is_parsed() {
        let st = parse_status(STATUS).unwrap();
        assert_eq!(st.get("clients"), 3);
        assert_eq!(st.get("uptime-seconds"), 3600);
        assert_eq!(st.get("no-such-thing"), 0);
        assert_eq!(st.peers, 3);
        assert!(!st.values.contains_key("id"));
        assert_eq!(
            st.nonzero_refusals(),
            vec![("park-timeout".to_owned(), 1), ("protocol".to_owned(), 2)]
        );
        assert!(idle_problems(&st, 3).is_empty());
        assert_eq!(
            idle_problems(&st, 4),
            vec!["clients is 3, expected 4", "registered is 3, expected 4"]
        );
        let renamed = STATUS.replace("senders-paused: 0", "paused-senders: 0");
        assert_eq!(
            idle_problems(&parse_status(&renamed).unwrap(), 3),
            vec!["senders-paused is missing from the daemon's status"]
        );
        let busy = STATUS.replace("sockets-held: 0", "sockets-held: 2");
        assert_eq!(
            idle_problems(&parse_status(&busy).unwrap(), 3),
            vec!["sockets-held is 2, expected 0"]
        );
    }

    #[test]
    fn bad_status_is_an_error() {
        assert!(parse_status("error: unknown command").is_err());
        assert!(parse_status("clients: 1\nrefused: policy=x\n").is_err());
    }

    #[test]
    fn vmrss_is_read_in_kib() {
        let status = "Name:\tuds-introd\nVmPeak:\t  99999 kB\nVmRSS:\t    8123 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(status), Some(8123));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert_eq!(parse_vmrss("VmRSS: 12 MB\n"), None);
        // Our own process, for real.
        let me = rss_kib(std::process::id()).unwrap();
        assert!(me > 0);
        assert!(fd_count(std::process::id()).unwrap() >= 3);
    }

    #[test]
    fn fds_are_compared_per_client() {
        let tol = DAEMON_TOLERANCE;
        let s = |fds| Sample { fds, rss_kib: 0 };
        assert!(fds_back(s(30), 16, s(30), 16, &tol).is_ok());
        // Two more clients, two more fds: fine.
        assert!(fds_back(s(30), 16, s(32), 18, &tol).is_ok());
        // Fewer fds is never a leak.
        assert!(fds_back(s(30), 16, s(29), 16, &tol).is_ok());
        let e = fds_back(s(30), 16, s(31), 16, &tol).unwrap_err();
        assert!(e.contains("1 more than allowed"), "{e}");
        let lax = Tolerance { fds: 2, ..tol };
        assert!(fds_back(s(30), 16, s(32), 16, &lax).is_ok());
    }

    #[test]
    fn rss_margin_is_the_larger_of_absolute_and_relative() {
        let tol = DAEMON_TOLERANCE;
        // Small baseline: the absolute 4 MiB applies.
        assert_eq!(rss_limit(4096, &tol), 4096 + 4096);
        // Large baseline: 50 % applies.
        assert_eq!(rss_limit(20_000, &tol), 30_000);
        assert!(rss_back(4096, 8192, &tol).is_ok());
        let e = rss_back(4096, 8193, &tol).unwrap_err();
        assert!(e.contains("above the allowed 8.0 MiB"), "{e}");
        assert_eq!(fmt_kib(512), "512 KiB");
        assert_eq!(fmt_kib(1536), "1.5 MiB");
    }
}
