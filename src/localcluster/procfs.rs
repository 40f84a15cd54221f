//! Server processes seen through `/proc` and `postmaster.pid`: finding them, signalling them,
//! waiting for them to die, and reading their logs.
//!
//! Liveness never uses `kill(pid, 0)`: a dead postmaster is reparented to PID 1, and where PID 1
//! does not reap (some container inits), it stays a zombie for which `kill(pid, 0)` succeeds.
//! A process counts as alive when `/proc/PID/stat` exists and its state is not `Z` or `X`.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// A line of `/proc/PID/stat`, reduced to what we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) pid: i32,
    pub(crate) state: char,
    pub(crate) ppid: i32,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so the fixed fields are read after its *last* `)`.
pub(crate) fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line.get(..open)?.trim().parse().ok()?;
    let mut rest = line.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcStat { pid, state, ppid })
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Whether `pid` is a running (or stopped) process, zombies excluded.
pub(crate) fn is_alive(pid: i32) -> bool {
    read_stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Whether `pid` is stopped by a signal (state `T`).
pub(crate) fn is_stopped(pid: i32) -> bool {
    read_stat(pid).is_some_and(|s| s.state == 'T')
}

/// All live descendants of `root` (children, grandchildren, ...), found by scanning `/proc`.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(stat) = read_stat(pid).filter(|s| s.state != 'Z' && s.state != 'X') {
            children.entry(stat.ppid).or_default().push(stat.pid);
        }
    }
    collect_descendants(root, &children)
}

/// Walks a parent -> children map from `root` (excluded) downwards.
pub(crate) fn collect_descendants(root: i32, children: &HashMap<i32, Vec<i32>>) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            if child != root && !found.contains(&child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// Sends `signal` to `pid`, ignoring "no such process" (it is what we wanted anyway).
pub(crate) fn signal(pid: i32, signal: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill has no memory-safety preconditions; pid > 0 never targets a group.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits until none of `pids` is alive; returns those still alive at `deadline`.
pub(crate) fn wait_gone(pids: &[i32], deadline: Instant) -> Vec<i32> {
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What `postmaster.pid` says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidFile {
    pub(crate) pid: i32,
    /// The System V shared memory id (line 7, second number), if present.
    pub(crate) shmid: Option<i32>,
}

/// Parses `postmaster.pid`: line 1 is the PID, line 7 is "shmem key" and "shmem id".
pub(crate) fn parse_pid_file(text: &str) -> Option<PidFile> {
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let shmid = lines
        .nth(5)
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok());
    Some(PidFile { pid, shmid })
}

/// Reads a data directory's `postmaster.pid`, if there is one.
pub(crate) fn read_pid_file(datadir: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(datadir.join("postmaster.pid")).ok()?;
    parse_pid_file(&text)
}

/// The live postmaster of `datadir`: the PID from `postmaster.pid`, but only if that process is
/// alive and its command line names this data directory (never signal a recycled PID).
pub(crate) fn live_postmaster(datadir: &Path) -> Option<i32> {
    let pid = read_pid_file(datadir)?.pid;
    if !is_alive(pid) {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = datadir.as_os_str().as_encoded_bytes();
    let mentions_datadir = !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle);
    mentions_datadir.then_some(pid)
}

/// Removes the System V shared memory segment a killed postmaster left behind, if nothing is
/// attached to it any more. Without this, every SIGKILLed node leaks one (small) segment.
pub(crate) fn remove_orphaned_shmem(shmid: i32) {
    // SAFETY: an all-zero shmid_ds is a valid out-parameter for IPC_STAT.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable shmid_ds; shmctl only reads/writes it.
    let stat = unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) };
    if stat == 0 && ds.shm_nattch == 0 {
        // SAFETY: IPC_RMID ignores the buffer argument.
        unsafe {
            libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// The last `lines` lines of a log file (reading at most its last 64 KiB), or "" if unreadable.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_BYTES && file.seek(SeekFrom::Start(len - MAX_BYTES)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    last_lines(&String::from_utf8_lossy(&bytes), lines)
}

/// The last `n` lines of `text`, without a trailing newline.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let trimmed = text.trim_end_matches('\n');
    let all: Vec<&str> = trimmed.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_stat_line() {
        let line = "8201 (postgres) S 1 8198 3978 0 -1 4227084 97 0 1 0";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                pid: 8201,
                state: 'S',
                ppid: 1
            }
        );
    }

    #[test]
    fn parses_stat_with_spaces_and_parens_in_name() {
        let line = "42 (weird ) name) (x) T 7 42 42 0 -1";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.pid, 42);
        assert_eq!(stat.state, 'T');
        assert_eq!(stat.ppid, 7);
    }

    #[test]
    fn rejects_garbage_stat() {
        assert!(parse_stat("").is_none());
        assert!(parse_stat("abc (x) S 1").is_none());
        assert!(parse_stat("12 (x)").is_none());
    }

    #[test]
    fn own_process_is_alive_and_has_a_parent() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        assert!(!is_stopped(me));
        let stat = read_stat(me).expect("own stat");
        assert!(stat.ppid >= 0);
    }

    #[test]
    fn walks_descendants_transitively() {
        let mut map = HashMap::new();
        map.insert(1, vec![10, 11]);
        map.insert(10, vec![100]);
        map.insert(100, vec![1000]);
        map.insert(2, vec![20]);
        let mut got = collect_descendants(1, &map);
        got.sort_unstable();
        assert_eq!(got, vec![10, 11, 100, 1000]);
        assert!(collect_descendants(5, &map).is_empty());
    }

    #[test]
    fn parses_pid_file() {
        let text = "12345\n/tmp/x/primary/data\n1700000000\n5432\n/tmp/x/sock\n127.0.0.1\n  5432001     98310\nready   \n";
        let parsed = parse_pid_file(text).expect("parses");
        assert_eq!(
            parsed,
            PidFile {
                pid: 12345,
                shmid: Some(98310)
            }
        );
        let short = parse_pid_file("777\n/data\n").expect("parses");
        assert_eq!(short.pid, 777);
        assert_eq!(short.shmid, None);
        assert!(parse_pid_file("").is_none());
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a\nb\nc", 10), "a\nb\nc");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn log_tail_of_missing_file_is_empty() {
        assert_eq!(log_tail(Path::new("/nonexistent/pgsplit.log"), 5), "");
    }
}
