//! `cargo xtask fuzz [--minutes N] [--target NAME]... [--keep N]
//! [--merge-only]`: run every cargo-fuzz target (or the named ones) for N
//! minutes each, one after another, then merge what they found into the
//! committed corpora (`--merge-only`: only merge what earlier runs found).
//!
//! Each target fuzzes with two corpus directories: a scratch one under
//! `target/fuzz/<target>/corpus` (first, so libFuzzer writes its finds there
//! and the repository stays clean) and the committed `fuzz/corpus/<target>`.
//! The first crash (or timeout, or out-of-memory) stops everything: the
//! command prints the artifact and how to reproduce it.
//!
//! After a clean run, `cargo fuzz cmin` (with `-set_cover_merge=1`)
//! minimizes the union of the committed and scratch corpora (its result
//! becomes the next scratch corpus), with a libFuzzer merge control file
//! that records the coverage features of every input. The committed corpus
//! then keeps its hand-written seeds (any file whose name is not a 40-digit
//! SHA-1, libFuzzer's naming) and, of the inputs cmin kept, at most `--keep`
//! (default 200), chosen greedily: first, each time, the one reaching the
//! most edges not yet reached by the seeds and the inputs already chosen,
//! until every edge is; then, with the rest of the budget, the one adding
//! the most new features; never one that adds nothing. The stable test
//! suites replay the committed corpora on every CI run, so they stay small.
//!
//! Finally it prints one row per target: executions, executions per second,
//! coverage (`cov:` and `ft:` of libFuzzer's last status line), the
//! committed corpus size before and after, the edges and features the
//! committed corpus covers out of those of the merged corpus, and crashes.

use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::workspace_root;

/// Default minutes per target.
const DEFAULT_MINUTES: f64 = 10.0;
/// Default number of machine-found inputs the committed corpus keeps.
const DEFAULT_KEEP: usize = 200;
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// libFuzzer's per-input timeout, in seconds: longer is a hang.
const INPUT_TIMEOUT_SECS: u32 = 30;

const USAGE: &str =
    "usage: cargo xtask fuzz [--minutes N] [--target NAME]... [--keep N] [--merge-only]

Runs every fuzz target in fuzz/ (or each NAME) for N minutes (default 10,
fractions allowed), one after another, on the nightly toolchain; stops at
the first crash; merges the new inputs that add coverage into
fuzz/corpus/<target>/, keeping at most N of them besides the hand-written
seeds (--keep, default 200); prints the figures. --merge-only skips the
fuzzing and only merges what earlier runs left in target/fuzz/.";

/// The command line.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    minutes: f64,
    targets: Vec<String>,
    keep: usize,
    merge_only: bool,
}

/// Parses the arguments after `fuzz`; `Ok(None)` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut opts = Options {
        minutes: DEFAULT_MINUTES,
        targets: Vec::new(),
        keep: DEFAULT_KEEP,
        merge_only: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        match flag {
            "--minutes" => {
                let v = value("a number of minutes")?;
                opts.minutes = match v.parse::<f64>() {
                    Ok(m) if m.is_finite() && m > 0.0 => m,
                    _ => return Err(format!("--minutes {v:?}: expected a positive number")),
                };
            }
            "--target" => opts.targets.push(value("a fuzz target name")?),
            "--keep" => {
                let v = value("a number of files")?;
                opts.keep = v
                    .parse()
                    .map_err(|_| format!("--keep {v:?}: expected a whole number"))?;
            }
            "--merge-only" => opts.merge_only = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    Ok(Some(opts))
}

/// The `[[bin]]` names of the fuzz crate's manifest, in order.
fn fuzz_targets(manifest: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(("name", value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
        {
            targets.push(value.trim_matches('"').to_owned());
        }
    }
    targets
}

/// One libFuzzer status line (`#N KIND cov: ... ft: ... corp: ...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Status {
    execs: u64,
    cov: u64,
    ft: u64,
    corpus: u64,
    exec_per_sec: u64,
}

/// Parses a libFuzzer status line: `#<execs>\t<KIND> cov: C ft: F corp:
/// N/SIZE lim: L exec/s: E rss: RMb ...`. Returns its kind (`INITED`,
/// `NEW`, `REDUCE`, `pulse`, `DONE`, ...) and figures.
fn parse_status(line: &str) -> Option<(&str, Status)> {
    let mut words = line.split_whitespace();
    let execs = words.next()?.strip_prefix('#')?.parse().ok()?;
    let kind = words.next()?;
    if !kind.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut status = Status {
        execs,
        ..Status::default()
    };
    let mut saw_cov = false;
    while let Some(key) = words.next() {
        let Some(key) = key.strip_suffix(':') else {
            continue;
        };
        let Some(value) = words.next() else { break };
        let number = |v: &str| v.parse::<u64>().ok();
        match key {
            "cov" => {
                status.cov = number(value)?;
                saw_cov = true;
            }
            "ft" => status.ft = number(value)?,
            "corp" => status.corpus = number(value.split('/').next()?)?,
            "exec/s" => status.exec_per_sec = number(value)?,
            _ => {}
        }
    }
    saw_cov.then_some((kind, status))
}

/// Parses a final statistics line (`stat::name: value`).
fn parse_final_stat(line: &str) -> Option<(&str, u64)> {
    let (key, value) = line.trim().strip_prefix("stat::")?.split_once(':')?;
    Some((key.trim(), value.trim().parse().ok()?))
}

/// The path in libFuzzer's `... Test unit written to PATH` line.
fn parse_artifact(line: &str) -> Option<&str> {
    let (_, path) = line.split_once("Test unit written to ")?;
    Some(path.trim())
}

/// What a run's output says.
#[derive(Debug, Default, Clone, PartialEq)]
struct RunReport {
    /// The latest status line.
    last: Option<Status>,
    /// The `DONE` status line.
    done: Option<Status>,
    /// `stat::number_of_executed_units`.
    executions: Option<u64>,
    /// `stat::average_exec_per_sec`.
    exec_per_sec: Option<u64>,
    /// Inputs libFuzzer wrote as artifacts (crashes, timeouts, slow units).
    artifacts: Vec<String>,
}

impl RunReport {
    fn absorb(&mut self, line: &str) {
        if let Some((kind, status)) = parse_status(line) {
            self.last = Some(status);
            if kind == "DONE" {
                self.done = Some(status);
            }
        } else if let Some((key, value)) = parse_final_stat(line) {
            match key {
                "number_of_executed_units" => self.executions = Some(value),
                "average_exec_per_sec" => self.exec_per_sec = Some(value),
                _ => {}
            }
        } else if let Some(path) = parse_artifact(line) {
            self.artifacts.push(path.to_owned());
        }
    }

    /// The artifact of a failed run: the last one that is not a slow unit.
    fn failure_artifact(&self) -> Option<&str> {
        self.artifacts
            .iter()
            .rev()
            .map(String::as_str)
            .find(|p| !file_name(Path::new(p)).starts_with("slow-unit-"))
    }
}

/// The lines of a failed run's output that say what failed: a panic's
/// location and message, libFuzzer's and the sanitizer's error lines, a
/// timeout alarm and the summary.
fn failure_summary(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            out.push(*line);
            if let Some(message) = lines.get(i + 1) {
                out.push(*message);
            }
        } else if ["ERROR: ", "SUMMARY: ", "ALARM: ", "out-of-memory"]
            .iter()
            .any(|k| line.contains(k))
        {
            out.push(*line);
        }
    }
    out
}

/// One input of a libFuzzer merge control file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MergeInput {
    name: String,
    size: u64,
    /// Coverage features; `None` if the input crashed during the merge.
    features: Option<Vec<u64>>,
    /// Covered edges: the coverage counters among the features.
    edges: Vec<u64>,
}

/// Parses a libFuzzer merge control file: the number of inputs, the number
/// of them in the first corpus, one path per line, then for each input
/// `STARTED id size`, `FT id features...` and `COV id edges...`.
///
/// With `-set_cover_merge=1` the `FT` lines list all features of each input
/// (with `-merge=1`, only those no earlier input had; `COV` lines are always
/// like that, so they are ignored). libFuzzer numbers the features of its
/// `counters` coverage counters (one per edge) `8 * counter + hit-count
/// bucket`, before any other kind of feature: that gives each input's edges.
fn parse_control(text: &str, counters: u64) -> Result<Vec<MergeInput>, String> {
    let mut lines = text.lines();
    let mut header = |what: &str| -> Result<usize, String> {
        lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("merge control file: expected {what}"))
    };
    let n = header("the number of inputs")?;
    let _first = header("the number of inputs in the first corpus")?;
    let mut inputs = Vec::with_capacity(n);
    for _ in 0..n {
        let path = lines
            .next()
            .ok_or("merge control file: fewer paths than inputs")?;
        inputs.push(MergeInput {
            name: file_name(Path::new(path)),
            size: 0,
            features: None,
            edges: Vec::new(),
        });
    }
    for line in lines {
        let mut words = line.split_whitespace();
        let (Some(tag), Some(id)) = (words.next(), words.next()) else {
            continue;
        };
        let input = id
            .parse::<usize>()
            .ok()
            .and_then(|id| inputs.get_mut(id))
            .ok_or_else(|| format!("merge control file: bad input id in {line:?}"))?;
        let numbers = words
            .map(str::parse::<u64>)
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| format!("merge control file: bad number in {line:?}"))?;
        match tag {
            "STARTED" => input.size = numbers.first().copied().unwrap_or(0),
            "FT" => {
                let edges: BTreeSet<u64> = numbers
                    .iter()
                    .filter(|&&f| f < 8 * counters)
                    .map(|f| f / 8)
                    .collect();
                input.edges = edges.into_iter().collect();
                input.features = Some(numbers);
            }
            _ => {}
        }
    }
    Ok(inputs)
}

/// The number of coverage counters in libFuzzer's `INFO: Loaded 1 modules
/// (N inline 8-bit counters): ...` line.
fn parse_counters(line: &str) -> Option<u64> {
    let (before, _) = line.split_once(" inline 8-bit counters")?;
    before.rsplit('(').next()?.trim().parse().ok()
}

/// Whether `name` is libFuzzer's name for an input it found (the SHA-1 of
/// the contents), as opposed to a hand-written seed.
fn is_found_input(name: &str) -> bool {
    name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Chooses at most `keep` of `candidates` (size, features) greedily: each
/// time the one adding the most features not in `covered` (the smaller on a
/// tie), until none adds any. Returns their indices, in the order chosen,
/// and adds their features to `covered`.
fn select(candidates: &[(u64, &[u64])], covered: &mut HashSet<u64>, keep: usize) -> Vec<usize> {
    // Lazy greedy: a candidate's gain only shrinks as `covered` grows, so a
    // stale gain is an upper bound; re-score the best one until its fresh
    // gain still beats every other bound.
    let gain = |covered: &HashSet<u64>, i: usize| {
        candidates[i]
            .1
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|f| !covered.contains(f))
            .count()
    };
    let mut heap: BinaryHeap<(usize, std::cmp::Reverse<u64>, std::cmp::Reverse<usize>)> = (0
        ..candidates.len())
        .map(|i| {
            (
                gain(covered, i),
                std::cmp::Reverse(candidates[i].0),
                std::cmp::Reverse(i),
            )
        })
        .collect();
    let mut chosen = Vec::new();
    while chosen.len() < keep {
        let Some((bound, size, index)) = heap.pop() else {
            break;
        };
        if bound == 0 {
            break;
        }
        let fresh = gain(covered, index.0);
        if heap.peek().is_none_or(|top| (fresh, size, index) >= *top) {
            if fresh == 0 {
                break;
            }
            covered.extend(candidates[index.0].1.iter().copied());
            chosen.push(index.0);
        } else {
            heap.push((fresh, size, index));
        }
    }
    chosen
}

/// The found inputs the committed corpus keeps, and what it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    /// Names of the chosen inputs.
    chosen: Vec<String>,
    /// Edges covered by the seeds and the chosen inputs, and by all inputs.
    edges: (usize, usize),
    /// The same for features.
    features: (usize, usize),
}

/// Chooses at most `keep` of the found inputs that cmin kept (`minimized`)
/// to commit besides the `seeds`: first greedily by new edges, until every
/// edge any input reaches is covered, then greedily by new features.
fn choose(
    inputs: &[MergeInput],
    seeds: &HashSet<String>,
    minimized: &HashSet<String>,
    keep: usize,
) -> Choice {
    let union = |pick: &dyn Fn(&MergeInput) -> bool, edges: bool| -> HashSet<u64> {
        inputs
            .iter()
            .filter(|i| pick(i) && i.features.is_some())
            .flat_map(|i| {
                if edges {
                    i.edges.clone()
                } else {
                    i.features.clone().unwrap_or_default()
                }
            })
            .collect()
    };
    let all_edges = union(&|_| true, true);
    let all_features = union(&|_| true, false);
    let mut edges = union(&|i| seeds.contains(&i.name), true);
    let mut features = union(&|i| seeds.contains(&i.name), false);
    let mut seen = HashSet::new();
    let mut candidates: Vec<&MergeInput> = inputs
        .iter()
        .filter(|i| {
            is_found_input(&i.name)
                && minimized.contains(&i.name)
                && i.features.is_some()
                && seen.insert(i.name.clone())
        })
        .collect();
    let mut chosen = Vec::new();
    for by_edges in [true, false] {
        let scored: Vec<(u64, &[u64])> = candidates
            .iter()
            .map(|i| {
                let set = if by_edges {
                    &i.edges[..]
                } else {
                    i.features.as_deref().unwrap_or_default()
                };
                (i.size, set)
            })
            .collect();
        let covered = if by_edges { &mut edges } else { &mut features };
        let picked = select(&scored, covered, keep - chosen.len());
        let picked_set: HashSet<usize> = picked.iter().copied().collect();
        for &p in &picked {
            let input = candidates[p];
            if by_edges {
                features.extend(input.features.iter().flatten().copied());
            } else {
                edges.extend(input.edges.iter().copied());
            }
            chosen.push(input.name.clone());
        }
        let mut index = 0;
        candidates.retain(|_| {
            index += 1;
            !picked_set.contains(&(index - 1))
        });
    }
    Choice {
        chosen,
        edges: (edges.len(), all_edges.len()),
        features: (features.len(), all_features.len()),
    }
}

/// One target's figures.
#[derive(Debug, Clone, Default)]
struct Row {
    target: String,
    minutes: f64,
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus_before: usize,
    corpus_after: Option<usize>,
    /// Edges and features of the committed corpus after the merge, and of
    /// all merged inputs.
    kept: Option<((usize, usize), (usize, usize))>,
    crashes: usize,
}

fn render_table(rows: &[Row]) -> String {
    let opt = |v: Option<u64>| v.map_or("?".to_owned(), thousands);
    let mut out = String::from(
        "| target | minutes | executions | exec/s | cov | ft | corpus before | corpus after | committed corpus covers | crashes |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            r.minutes,
            opt(r.executions),
            opt(r.exec_per_sec),
            opt(r.cov),
            opt(r.ft),
            r.corpus_before,
            r.corpus_after.map_or("-".to_owned(), |n| n.to_string()),
            r.kept
                .map_or("-".to_owned(), |((e, all_e), (f, all_f))| format!(
                    "{e}/{all_e} cov, {f}/{all_f} ft"
                )),
            r.crashes
        );
    }
    out
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `m:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `cargo +nightly ...`, through rustup's proxy, without the variables of
/// the stable toolchain that runs this command.
fn nightly_cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .arg("+nightly")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    cmd
}

/// Checks that the nightly toolchain and cargo-fuzz are installed.
fn check_tools(root: &Path) -> Result<(), String> {
    let works = |args: &[&str]| {
        nightly_cargo(root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works(&["--version"]) {
        return Err(
            "`cargo +nightly` does not work: fuzzing needs rustup and the nightly \
                    toolchain; install them with `rustup toolchain install nightly`"
                .into(),
        );
    }
    if !works(&["fuzz", "--version"]) {
        return Err(
            "cargo-fuzz is not installed: install it with `cargo install cargo-fuzz`".into(),
        );
    }
    Ok(())
}

/// Files in `dir` (none if it does not exist), by name.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn copy_into(file: &Path, dir: &Path) -> Result<(), String> {
    let to = dir.join(file.file_name().unwrap_or_default());
    std::fs::copy(file, &to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", file.display(), to.display()))
}

/// Where a target's scratch state lives.
struct Paths {
    committed: PathBuf,
    scratch: PathBuf,
    merge: PathBuf,
    control: PathBuf,
    log: PathBuf,
}

impl Paths {
    fn new(root: &Path, target_dir: &Path, target: &str) -> Paths {
        let work = target_dir.join("fuzz").join(target);
        Paths {
            committed: root.join("fuzz/corpus").join(target),
            scratch: work.join("corpus"),
            merge: work.join("merge"),
            control: work.join("merge-control.txt"),
            log: work.join("fuzz.log"),
        }
    }
}

/// Runs `cmd`, appending its output to `log` and passing each line to
/// `on_line`; `tick` is called after each line and at least every second.
fn run_logged(
    mut cmd: Command,
    log: &Path,
    mut on_line: impl FnMut(&str),
    mut tick: impl FnMut(),
) -> Result<ExitStatus, String> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                on_line(&line);
                tick();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    child
        .wait()
        .map_err(|e| format!("waiting for {cmd:?}: {e}"))
}

/// Fuzzes one target; returns its row, what libFuzzer's output said, and
/// whether the run ended without a failure.
fn fuzz_one(
    root: &Path,
    paths: &Paths,
    target: &str,
    minutes: f64,
) -> Result<(Row, RunReport, bool), String> {
    std::fs::create_dir_all(&paths.scratch)
        .map_err(|e| format!("{}: {e}", paths.scratch.display()))?;
    let _ = std::fs::remove_file(&paths.log);
    let committed = list_files(&paths.committed)?.len();
    let scratch = list_files(&paths.scratch)?.len();
    let seconds = (minutes * 60.0).round().max(1.0) as u64;
    eprintln!(
        "xtask fuzz: {target} for {} (corpus: {committed} committed + {scratch} scratch files; \
         log: {})",
        clock(Duration::from_secs(seconds)),
        paths.log.display()
    );
    let mut cmd = nightly_cargo(root);
    cmd.args(["fuzz", "run", "--debug-assertions", target])
        .arg(&paths.scratch)
        .arg(&paths.committed)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1");
    let report = std::cell::RefCell::new(RunReport::default());
    let started = Instant::now();
    let mut last_print = Instant::now();
    let total = Duration::from_secs(seconds);
    let mut progress = |report: &RunReport| {
        if last_print.elapsed() < PROGRESS_EVERY {
            return;
        }
        last_print = Instant::now();
        let s = report.last.unwrap_or_default();
        eprintln!(
            "xtask fuzz:   {target} {} / {}: {} execs, cov {}, ft {}, corpus {}",
            clock(started.elapsed().min(total)),
            clock(total),
            thousands(s.execs),
            s.cov,
            s.ft,
            s.corpus
        );
    };
    let status = run_logged(
        cmd,
        &paths.log,
        |line| report.borrow_mut().absorb(line),
        || progress(&report.borrow()),
    )?;
    let report = report.into_inner();
    let done = report.done.or(report.last);
    let row = Row {
        target: target.to_owned(),
        minutes,
        executions: report.executions.or(done.map(|s| s.execs)),
        exec_per_sec: report.exec_per_sec.or(done.map(|s| s.exec_per_sec)),
        cov: done.map(|s| s.cov),
        ft: done.map(|s| s.ft),
        corpus_before: committed,
        corpus_after: None,
        kept: None,
        crashes: usize::from(!status.success()),
    };
    Ok((row, report, status.success()))
}

/// Minimizes the committed and scratch corpora together with `cargo fuzz
/// cmin` and rewrites the committed corpus: its seeds plus at most `keep`
/// found inputs (see the module docs). Returns the committed corpus size and
/// the choice.
fn merge(root: &Path, paths: &Paths, target: &str, keep: usize) -> Result<(usize, Choice), String> {
    fresh_dir(&paths.merge)?;
    let committed = list_files(&paths.committed)?;
    let seeds: HashSet<String> = committed
        .iter()
        .map(|p| file_name(p))
        .filter(|n| !is_found_input(n))
        .collect();
    for file in committed.iter().chain(&list_files(&paths.scratch)?) {
        copy_into(file, &paths.merge)?;
    }
    let _ = std::fs::remove_file(&paths.control);
    let mut cmd = nightly_cargo(root);
    cmd.args(["fuzz", "cmin", "--debug-assertions", target])
        .arg(&paths.merge)
        .arg("--")
        .arg(format!("-merge_control_file={}", paths.control.display()))
        .arg("-set_cover_merge=1");
    let mut failed = false;
    let mut counters = None;
    let status = run_logged(
        cmd,
        &paths.log,
        |line| {
            failed |= line.contains("Failed to minimize corpus");
            counters = counters.or(parse_counters(line));
        },
        || {},
    )?;
    if !status.success() || failed {
        return Err(format!(
            "cargo fuzz cmin {target} failed; see {}",
            paths.log.display()
        ));
    }
    let control = std::fs::read_to_string(&paths.control)
        .map_err(|e| format!("{}: {e}", paths.control.display()))?;
    let counters = counters.ok_or_else(|| {
        format!(
            "cargo fuzz cmin {target}: no \"inline 8-bit counters\" line in its output; see {}",
            paths.log.display()
        )
    })?;
    let inputs = parse_control(&control, counters)?;
    let minimized: HashSet<String> = list_files(&paths.merge)?
        .iter()
        .map(|p| file_name(p))
        .collect();
    let choice = choose(&inputs, &seeds, &minimized, keep);
    eprintln!(
        "xtask fuzz:   {target}: cmin kept {} of {} inputs; the committed corpus keeps its {} \
         seeds and {} found inputs ({} of {} edges, {} of {} features)",
        minimized.len(),
        inputs.len(),
        seeds.len(),
        choice.chosen.len(),
        choice.edges.0,
        choice.edges.1,
        choice.features.0,
        choice.features.1,
    );
    // Rewrite the committed corpus's found inputs.
    for file in &committed {
        if is_found_input(&file_name(file)) {
            std::fs::remove_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    for name in &choice.chosen {
        copy_into(&paths.merge.join(name), &paths.committed)?;
    }
    // The minimized union is the next run's scratch corpus.
    fresh_dir(&paths.scratch)?;
    for file in list_files(&paths.merge)? {
        std::fs::rename(&file, paths.scratch.join(file_name(&file)))
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok((list_files(&paths.committed)?.len(), choice))
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let Some(opts) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let root = workspace_root();
    let manifest_path = root.join("fuzz/Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let known = fuzz_targets(&manifest);
    let targets = if opts.targets.is_empty() {
        known.clone()
    } else {
        opts.targets.clone()
    };
    if let Some(unknown) = targets.iter().find(|t| !known.contains(t)) {
        return Err(format!(
            "no fuzz target {unknown:?}; the targets are: {}",
            known.join(", ")
        ));
    }
    check_tools(&root)?;
    eprintln!(
        "xtask fuzz: building {} (nightly, debug assertions on)...",
        targets.join(", ")
    );
    let status = nightly_cargo(&root)
        .args(["fuzz", "build", "--debug-assertions"])
        .status()
        .map_err(|e| format!("cannot run cargo +nightly fuzz build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo +nightly fuzz build failed ({status})"));
    }
    let target_dir = crate::procs::target_dir(&root);
    let mut rows = Vec::new();
    for (n, target) in targets.iter().enumerate() {
        eprintln!("xtask fuzz: [{}/{}]", n + 1, targets.len());
        let paths = Paths::new(&root, &target_dir, target);
        let (mut row, report, ok) = if opts.merge_only {
            let row = Row {
                target: target.clone(),
                corpus_before: list_files(&paths.committed)?.len(),
                ..Row::default()
            };
            (row, RunReport::default(), true)
        } else {
            fuzz_one(&root, &paths, target, opts.minutes)?
        };
        if !ok {
            rows.push(row);
            print!("{}", render_table(&rows));
            let log = std::fs::read_to_string(&paths.log).unwrap_or_default();
            let mut what = failure_summary(&log);
            if what.is_empty() {
                what = log.lines().rev().take(40).collect();
                what.reverse();
            }
            eprintln!("\n--- from {} ---", paths.log.display());
            for line in what {
                eprintln!("{line}");
            }
            eprintln!("---");
            let Some(artifact) = report.failure_artifact() else {
                return Err(format!(
                    "{target} failed without writing an input; see {}",
                    paths.log.display()
                ));
            };
            let artifact = Path::new(artifact);
            let artifact = artifact.strip_prefix(&root).unwrap_or(artifact).display();
            return Err(format!(
                "{target} crashed on {artifact}\n\
                 reproduce: cargo +nightly fuzz run --debug-assertions {target} {artifact}\n\
                 minimize:  cargo +nightly fuzz tmin --debug-assertions {target} {artifact}\n\
                 then add the input to the committed corpus (fuzz/corpus/{target}/) under a \
                 descriptive name so the stable tests replay it, and fix the bug"
            ));
        }
        let (after, choice) = merge(&root, &paths, target, opts.keep)?;
        row.corpus_after = Some(after);
        row.kept = Some((choice.edges, choice.features));
        rows.push(row);
    }
    let table = render_table(&rows);
    let report = target_dir.join("fuzz/report.md");
    let _ = std::fs::write(&report, &table);
    print!("{table}");
    let _ = std::io::stdout().flush();
    eprintln!("xtask fuzz: no crash; table also in {}", report.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let o = parse_args(&[]).unwrap().unwrap();
        assert_eq!((o.minutes, o.targets.len(), o.keep), (10.0, 0, 200));
        let o = parse_args(&args(&[
            "--minutes",
            "0.5",
            "--target",
            "handshake",
            "--target=intro_channel",
            "--keep=50",
            "--merge-only",
        ]))
        .unwrap()
        .unwrap();
        assert!(o.merge_only);
        assert_eq!(o.minutes, 0.5);
        assert_eq!(o.targets, ["handshake", "intro_channel"]);
        assert_eq!(o.keep, 50);
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), None);
        for bad in [
            &["--minutes"][..],
            &["--minutes", "0"],
            &["--minutes", "-3"],
            &["--minutes", "NaN"],
            &["--minutes", "ten"],
            &["--target"],
            &["--keep", "-1"],
            &["--jobs", "2"],
            &["handshake"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn targets_of_the_fuzz_manifest() {
        let manifest = "[package]\nname = \"ocapn-uds-fuzz\"\n\n[dependencies]\nname = \"x\"\n\n\
                        [[bin]]\nname = \"syrup_decode\"\npath = \"a.rs\"\n\n\
                        [[bin]]\npath = \"b.rs\"\nname = \"handshake\"\n";
        assert_eq!(fuzz_targets(manifest), ["syrup_decode", "handshake"]);
        // The real manifest lists every target file.
        let real = std::fs::read_to_string(workspace_root().join("fuzz/Cargo.toml")).unwrap();
        let listed = fuzz_targets(&real);
        let files = list_files(&workspace_root().join("fuzz/fuzz_targets")).unwrap();
        assert_eq!(listed.len(), files.len());
        for f in files {
            let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(listed.contains(&stem), "{stem} is not a [[bin]]");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(
                "#112342\tDONE   cov: 1493 ft: 4781 corp: 612/47Kb lim: 526 exec/s: 18723 rss: 441Mb"
            ),
            Some((
                "DONE",
                Status {
                    execs: 112_342,
                    cov: 1493,
                    ft: 4781,
                    corpus: 612,
                    exec_per_sec: 18723
                }
            ))
        );
        assert_eq!(
            parse_status("#605\tINITED cov: 1461 ft: 4412 corp: 485/38Kb exec/s: 0 rss: 70Mb"),
            Some((
                "INITED",
                Status {
                    execs: 605,
                    cov: 1461,
                    ft: 4412,
                    corpus: 485,
                    exec_per_sec: 0
                }
            ))
        );
        let (kind, s) = parse_status(
            "#1048576\tNEW    cov: 1488 ft: 6296 corp: 788/150Kb lim: 5335 exec/s: 17772 rss: 493Mb L: 40/211 MS: 2 ChangeBit-CopyPart-",
        )
        .unwrap();
        assert_eq!((kind, s.execs, s.corpus), ("NEW", 1_048_576, 788));
        for not_status in [
            "",
            "Done 112342 runs in 6 second(s)",
            "INFO: Seed: 2268383946",
            "#0\tREAD units: 1",
            "#12 pulse cov: x ft: 3",
            "\"uds:signature\" # Uses: 19",
            "    #0 0x5580a4041521 in __sanitizer_print_stack_trace",
        ] {
            assert_eq!(parse_status(not_status), None, "{not_status:?}");
        }
    }

    #[test]
    fn a_run_report_from_libfuzzer_output() {
        let output = "\
INFO: Seed: 2268383946
#605\tINITED cov: 1461 ft: 4412 corp: 485/38Kb exec/s: 0 rss: 70Mb
#65536\tpulse  cov: 1482 ft: 4654 corp: 558/43Kb lim: 477 exec/s: 21845 rss: 430Mb
Slowest unit: 11 s:
artifact_prefix='/r/fuzz/artifacts/t/'; Test unit written to /r/fuzz/artifacts/t/slow-unit-ab12
#112342\tDONE   cov: 1493 ft: 4781 corp: 612/47Kb lim: 526 exec/s: 18723 rss: 441Mb
Done 112342 runs in 6 second(s)
stat::number_of_executed_units: 112342
stat::average_exec_per_sec:     18723
stat::new_units_added:          479
";
        let mut r = RunReport::default();
        output.lines().for_each(|l| r.absorb(l));
        assert_eq!(r.executions, Some(112_342));
        assert_eq!(r.exec_per_sec, Some(18723));
        assert_eq!(r.done.map(|s| (s.cov, s.ft)), Some((1493, 4781)));
        assert_eq!(r.last, r.done);
        assert_eq!(r.artifacts, ["/r/fuzz/artifacts/t/slow-unit-ab12"]);
        assert_eq!(r.failure_artifact(), None);
        r.absorb(
            "artifact_prefix='/r/fuzz/artifacts/t/'; Test unit written to /r/fuzz/artifacts/t/crash-42f7",
        );
        assert_eq!(r.failure_artifact(), Some("/r/fuzz/artifacts/t/crash-42f7"));
        assert_eq!(
            parse_final_stat("stat::peak_rss_mb:   441"),
            Some(("peak_rss_mb", 441))
        );
        assert_eq!(parse_final_stat("stat::x: many"), None);
    }

    #[test]
    fn what_failed() {
        let log = "\
INFO: Seed: 1
thread '<unnamed>' (21172) panicked at fuzz_targets/intro_channel.rs:9:5:
planted
stack backtrace:
   0: __rustc::rust_begin_unwind
==21172== ERROR: libFuzzer: deadly signal
    #0 0x55ddb60b86a1 in __sanitizer_print_stack_trace
SUMMARY: libFuzzer: deadly signal
MS: 2 ChangeBinInt-CMP- DE: \"XYZ\"-; base unit: a70df5b9
";
        assert_eq!(
            failure_summary(log),
            [
                "thread '<unnamed>' (21172) panicked at fuzz_targets/intro_channel.rs:9:5:",
                "planted",
                "==21172== ERROR: libFuzzer: deadly signal",
                "SUMMARY: libFuzzer: deadly signal",
            ]
        );
        assert!(failure_summary("#1 INITED cov: 1 ft: 1\nDone 1 runs").is_empty());
        assert_eq!(
            failure_summary(
                "==7== ERROR: libFuzzer: timeout after 31 seconds\nALARM: working on the last Unit for 31 seconds"
            ),
            [
                "==7== ERROR: libFuzzer: timeout after 31 seconds",
                "ALARM: working on the last Unit for 31 seconds"
            ]
        );
    }

    #[test]
    fn merge_control_files() {
        // Two counters: features 0 to 15 are theirs.
        let text = "3\n1\n/c/seed\n/c/5ba93c9db0cff93f52b521d7420e43f6eda2784f\n/c/b\n\
                    STARTED 0 12\nFT 0 1 2 9\nCOV 0 7 8\n\
                    STARTED 1 40\nFT 1 3 4 16 40\nCOV 1 9\n\
                    STARTED 2 5\n";
        let inputs = parse_control(text, 2).unwrap();
        assert_eq!(
            inputs,
            [
                MergeInput {
                    name: "seed".into(),
                    size: 12,
                    features: Some(vec![1, 2, 9]),
                    edges: vec![0, 1],
                },
                MergeInput {
                    name: "5ba93c9db0cff93f52b521d7420e43f6eda2784f".into(),
                    size: 40,
                    features: Some(vec![3, 4, 16, 40]),
                    edges: vec![0],
                },
                MergeInput {
                    name: "b".into(),
                    size: 5,
                    features: None,
                    edges: Vec::new(),
                },
            ]
        );
        assert!(parse_control("2\n0\n/only-one\n", 2).is_err());
        assert!(parse_control("1\n0\n/a\nFT 7 1\n", 2).is_err());
        assert!(parse_control("1\n0\n/a\nFT 0 x\n", 2).is_err());
        assert!(parse_control("", 2).is_err());
        assert_eq!(
            parse_counters(
                "INFO: Loaded 1 modules   (14408 inline 8-bit counters): 14408 [0x55845, 0x5584587ab798), "
            ),
            Some(14408)
        );
        assert_eq!(parse_counters("INFO: Loaded 1 PC tables (14408 PCs)"), None);
    }

    #[test]
    fn found_inputs_are_named_by_their_sha1() {
        assert!(is_found_input("5ba93c9db0cff93f52b521d7420e43f6eda2784f"));
        assert!(!is_found_input("intro-split-body"));
        assert!(!is_found_input("5ba93c9db0cff93f52b521d7420e43f6eda2784"));
        assert!(!is_found_input("crash-5ba93c9db0cff93f52b521d7420e43f6eda"));
    }

    #[test]
    fn greedy_selection_takes_the_largest_gains_first() {
        let a = [1, 2, 3, 4, 5];
        let b = [1, 2, 6];
        let c = [6, 7];
        let d = [1, 2];
        let e = [8];
        let candidates: [(u64, &[u64]); 5] = [(50, &a), (10, &b), (5, &c), (1, &d), (9, &e)];
        // Seeds already cover 1 and 2: a adds 3, b adds 1, c adds 2, d none.
        let mut covered: HashSet<u64> = [1, 2].into();
        assert_eq!(select(&candidates, &mut covered, 10), [0, 2, 4]);
        assert_eq!(covered.len(), 8);
        // The cap keeps the best ones; a tie goes to the smaller input.
        let mut covered = HashSet::new();
        assert_eq!(select(&candidates, &mut covered, 1), [0]);
        let tie: [(u64, &[u64]); 2] = [(9, &[1, 2]), (3, &[3, 4])];
        assert_eq!(select(&tie, &mut HashSet::new(), 1), [1]);
        // Nothing new: nothing chosen; duplicate features count once.
        assert!(select(&candidates[3..4], &mut [1, 2].into(), 5).is_empty());
        let dup: [(u64, &[u64]); 2] = [(1, &[5, 5, 5]), (2, &[6, 7])];
        assert_eq!(select(&dup, &mut HashSet::new(), 1), [1]);
    }

    fn input(name: &str, size: u64, edges: &[u64], features: &[u64]) -> MergeInput {
        MergeInput {
            name: name.to_owned(),
            size,
            features: Some(features.to_vec()),
            edges: edges.to_vec(),
        }
    }

    #[test]
    fn the_committed_corpus_covers_every_edge_first_then_features() {
        let h = |c: char| c.to_string().repeat(40);
        let inputs = [
            input("seed", 10, &[1, 2], &[10, 20]),
            // Many features, no new edge.
            input(&h('a'), 10, &[1], &[11, 12, 13, 14, 15]),
            // One new edge each.
            input(&h('b'), 10, &[3], &[30]),
            input(&h('c'), 10, &[4], &[40]),
            // Both new edges: preferred over b and c.
            input(&h('d'), 20, &[3, 4], &[31, 41]),
            // Dropped by cmin, or not found by the fuzzer, or crashed.
            input(&h('e'), 10, &[5], &[50]),
            input("notes", 10, &[6], &[60]),
            MergeInput {
                features: None,
                ..input(&h('f'), 10, &[7], &[])
            },
        ];
        let seeds: HashSet<String> = ["seed".to_owned()].into();
        let minimized: HashSet<String> = "abcdf".chars().map(h).chain(["notes".into()]).collect();
        let c = choose(&inputs, &seeds, &minimized, 2);
        assert_eq!(c.chosen, [h('d'), h('a')]);
        // Edges 1-6 and features of everything but f are reachable.
        assert_eq!(c.edges, (4, 6));
        assert_eq!(c.features, (9, 13));
        let c = choose(&inputs, &seeds, &minimized, 10);
        assert_eq!(c.chosen, [h('d'), h('a'), h('b'), h('c')]);
        assert_eq!(c.features, (11, 13));
        assert!(choose(&inputs, &seeds, &minimized, 0).chosen.is_empty());
    }

    #[test]
    fn figures() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
        assert_eq!(clock(Duration::from_secs(600)), "10:00");
        assert_eq!(clock(Duration::from_secs(65)), "1:05");
        let table = render_table(&[Row {
            target: "handshake".into(),
            minutes: 10.0,
            executions: Some(1_234_567),
            exec_per_sec: Some(2057),
            cov: Some(1500),
            ft: Some(6000),
            corpus_before: 16,
            corpus_after: Some(180),
            kept: Some(((1490, 1500), (5800, 6100))),
            crashes: 0,
        }]);
        assert!(
            table.ends_with(
                "| `handshake` | 10 | 1,234,567 | 2,057 | 1,500 | 6,000 | 16 | 180 | 1490/1500 cov, 5800/6100 ft | 0 |\n"
            ),
            "{table}"
        );
    }
}
