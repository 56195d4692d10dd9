//! The fd-counting harness shared by this crate's tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;

/// fd counts are per process: tests that count must not overlap.
pub static LOCK: Mutex<()> = Mutex::new(());

/// Takes the lock (even after another test panicked while holding it).
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// tokio's signal driver (enabled when another crate of the workspace turns
/// on tokio's `signal` feature) opens a process-wide socketpair the first
/// time a runtime is built, and keeps it: create it before counting fds.
pub fn warm_up_tokio() {
    static WARM_UP: std::sync::Once = std::sync::Once::new();
    WARM_UP.call_once(|| {
        drop(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
    });
}

/// How many fds this process has open.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The open fds and what they are, for leak reports.
pub fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    v.sort();
    v
}
