//! `cargo xtask soak` options.

/// The usage text.
pub(crate) const USAGE: &str = "\
usage: cargo xtask soak [--minutes N] [--peers N] [--seed N] [--rate N]

  --minutes N   how long faults are injected (default 10; fractions allowed,
                e.g. 0.5); warm-up and the final checks add about a minute
  --peers N     peer processes (default 16, at least 4); a quarter of them
                (at least 2) are plaintext, the others end-to-end encrypted
  --seed N      seed of the schedule of dials and faults (default: from the
                clock; printed, so a run can be repeated)
  --rate N      dials per second across all peers (default: 2 per peer)";

/// The options of one soak run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SoakArgs {
    /// Minutes of fault injection.
    pub minutes: f64,
    /// Peers alive at any time (churn keeps the number around this).
    pub peers: usize,
    /// The schedule's seed, if given.
    pub seed: Option<u64>,
    /// Dials per second across all peers.
    pub rate: f64,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    Run(SoakArgs),
    Help,
}

/// The most peers a run accepts (each is a process with a few threads).
pub(crate) const MAX_PEERS: usize = 256;

pub(crate) fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut minutes = 10.0;
    let mut peers = 16;
    let mut seed = None;
    let mut rate = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match name {
            "--minutes" => {
                let v = value()?;
                minutes = v
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m > 0.0 && *m <= 7.0 * 24.0 * 60.0)
                    .ok_or_else(|| {
                        format!(
                            "--minutes {v:?}: expected a number of minutes above 0, at most \
                             10080 (a week)"
                        )
                    })?;
            }
            "--peers" => {
                let v = value()?;
                peers = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (4..=MAX_PEERS).contains(n))
                    .ok_or_else(|| format!("--peers {v:?}: expected 4 to {MAX_PEERS}"))?;
            }
            "--seed" => {
                let v = value()?;
                seed = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("--seed {v:?}: expected an unsigned integer"))?,
                );
            }
            "--rate" => {
                let v = value()?;
                rate = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r > 0.0 && *r <= 10_000.0)
                        .ok_or_else(|| {
                            format!(
                                "--rate {v:?}: expected dials per second above 0, at most 10000"
                            )
                        })?,
                );
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(Parsed::Run(SoakArgs {
        minutes,
        peers,
        seed,
        rate: rate.unwrap_or(2.0 * peers as f64),
    }))
}

/// How many of `peers` are plaintext: a quarter, at least 2 (so that
/// plaintext peers have someone of their kind to dial).
pub(crate) fn plaintext_peers(peers: usize) -> usize {
    (peers / 4).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(a: &[&str]) -> Result<Parsed, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn run(a: &[&str]) -> SoakArgs {
        match parse_strs(a) {
            Ok(Parsed::Run(r)) => r,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(
            run(&[]),
            SoakArgs {
                minutes: 10.0,
                peers: 16,
                seed: None,
                rate: 32.0
            }
        );
    }

    #[test]
    fn every_option_in_both_spellings() {
        let a = run(&["--minutes", "0.5", "--peers", "6", "--seed", "42"]);
        assert_eq!(
            (a.minutes, a.peers, a.seed, a.rate),
            (0.5, 6, Some(42), 12.0)
        );
        let b = run(&["--minutes=2", "--peers=8", "--seed=1", "--rate=5.5"]);
        assert_eq!((b.minutes, b.peers, b.seed, b.rate), (2.0, 8, Some(1), 5.5));
        assert_eq!(parse_strs(&["--help"]), Ok(Parsed::Help));
    }

    #[test]
    fn bad_values_are_refused_with_the_option_named() {
        for (args, names) in [
            (&["--minutes", "0"][..], "--minutes"),
            (&["--minutes", "-1"][..], "--minutes"),
            (&["--minutes", "NaN"][..], "--minutes"),
            (&["--minutes", "ten"][..], "--minutes"),
            (&["--peers", "3"][..], "--peers"),
            (&["--peers", "100000"][..], "--peers"),
            (&["--seed", "-5"][..], "--seed"),
            (&["--rate", "0"][..], "--rate"),
            (&["--peers"][..], "--peers needs a value"),
            (&["--frobnicate"][..], "unknown argument"),
        ] {
            let e = parse_strs(args).unwrap_err();
            assert!(e.contains(names), "{args:?}: {e}");
        }
    }

    #[test]
    fn plaintext_share() {
        assert_eq!(plaintext_peers(4), 2);
        assert_eq!(plaintext_peers(6), 2);
        assert_eq!(plaintext_peers(16), 4);
        assert_eq!(plaintext_peers(40), 10);
    }
}
