//! Running external commands with a deadline, and as the right OS user.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::LocalClusterError;

/// What a finished command printed.
#[derive(Debug)]
pub(crate) struct CmdOutput {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` to completion, killing it if it is still running after `timeout`.
///
/// A non-zero exit is an error ([`LocalClusterError::CommandFailed`]); `what` names the command
/// in messages. Stdin is `/dev/null`; stdout and stderr are captured.
pub(crate) fn run(
    mut cmd: Command,
    timeout: Duration,
    what: &str,
) -> Result<CmdOutput, LocalClusterError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| LocalClusterError::io(format!("could not start {what}"), e))?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = wait_until(&mut child, deadline, what)?;
    // The pipes close when the command exits; a grace period covers a grandchild that kept them.
    let grace = Instant::now() + Duration::from_secs(2);
    let out = CmdOutput {
        stdout: receive(stdout, grace),
        stderr: receive(stderr, grace),
    };
    match status {
        Some(status) if status.success() => Ok(out),
        Some(status) => Err(LocalClusterError::CommandFailed {
            what: what.to_string(),
            status: status.to_string(),
            output: best_output(&out),
        }),
        None => Err(LocalClusterError::Timeout {
            what: what.to_string(),
            after: timeout,
            detail: best_output(&out),
        }),
    }
}

/// Waits for `child` until `deadline`; on expiry kills it and returns `None`.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    what: &str,
) -> Result<Option<ExitStatus>, LocalClusterError> {
    // Short commands (psql) finish in milliseconds: poll fast first, then back off.
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(e) => return Err(LocalClusterError::io(format!("waiting for {what}"), e)),
        }
        let now = Instant::now();
        if now >= deadline {
            // Both calls only fail if the child is already gone, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// Reads a pipe to its end on a helper thread, so a chatty command never blocks on a full pipe.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn receive(rx: mpsc::Receiver<Vec<u8>>, until: Instant) -> String {
    let wait = until.saturating_duration_since(Instant::now());
    rx.recv_timeout(wait)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn best_output(out: &CmdOutput) -> String {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    text.trim().to_string()
}

/// An OS account the servers run as when we are root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OsUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl OsUser {
    /// Looks `name` up in the password database.
    pub(crate) fn lookup(name: &str) -> Option<OsUser> {
        let cname = CString::new(name).ok()?;
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        // SAFETY: an all-zero `passwd` is a valid value (null pointers, zero ids); it is only an
        // out-parameter that getpwnam_r fills.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and `buf.len()` is the
        // true size of `buf`; getpwnam_r is the thread-safe variant.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return None;
        }
        Some(OsUser {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// Whether this process runs as root (then PostgreSQL must run as someone else).
pub(crate) fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds a command for a PostgreSQL program: a clean environment (no inherited `PG*` variables
/// that could redirect it to another server), C messages, and, when `user` is set, that uid/gid.
pub(crate) fn pg_command(program: &std::path::Path, user: Option<&OsUser>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").env("LANG", "C");
    if let Some(user) = user {
        // std drops supplementary groups when switching uid as root, so no root group remains.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_captures_stdout() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello"]);
        let out = run(cmd, Duration::from_secs(10), "echo").expect("echo runs");
        assert_eq!(out.stdout.trim(), "hello");
    }

    #[test]
    fn run_reports_failure_with_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let err = run(cmd, Duration::from_secs(10), "failing").expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("failing failed"), "{text}");
        assert!(text.contains("oops"), "{text}");
    }

    #[test]
    fn run_kills_on_deadline() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run(cmd, Duration::from_millis(200), "sleep").expect_err("must time out");
        assert!(matches!(err, LocalClusterError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn lookup_finds_root_and_not_nonsense() {
        let root = OsUser::lookup("root").expect("root exists");
        assert_eq!(root.uid, 0);
        assert!(OsUser::lookup("no-such-user-pgsplit").is_none());
    }
}
