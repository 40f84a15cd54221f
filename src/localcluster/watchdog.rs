//! The orphan watchdog: a tiny `sh` process that stops the cluster's servers and removes its
//! directory once the process that started the cluster is gone, however it went (a test binary
//! killed by a timeout or Ctrl-C never runs its destructors or `atexit` handlers).
//!
//! It learns that the owner is gone from its stdin: the owner holds the only write end of that
//! pipe, and the kernel closes it when the owner exits for any reason. That is immediate and
//! immune to PID reuse, unlike polling `kill -0 PID`. (The pipe is close-on-exec in the owner,
//! so the servers and other children never hold it open.)

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::LocalClusterError;

/// `$1` is the cluster directory, `$2` is `1` to keep it. For every `*/data/postmaster.pid`
/// whose process is alive and names this directory on its command line: SIGCONT it and its
/// children (a paused node cannot act on signals), SIGQUIT the postmaster (an immediate
/// shutdown, which is what `pg_ctl stop -m immediate` sends), wait up to 10 s, SIGKILL what is
/// left, and finally remove the directory.
const SCRIPT: &str = r#"
trap '' HUP INT TERM PIPE
dir=$1
keep=$2
while read -r _; do :; done
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    read -r _ _ st _ 2>/dev/null < "/proc/$1/stat" || return 1
    [ "$st" != Z ] && [ "$st" != X ]
}
children_of() {
    for s in /proc/[0-9]*/stat; do
        read -r cpid _ _ ppid _ 2>/dev/null < "$s" || continue
        [ "$ppid" = "$1" ] && printf '%s ' "$cpid"
    done
}
all=""
for pidfile in "$dir"/*/data/postmaster.pid; do
    [ -f "$pidfile" ] || continue
    read -r pid < "$pidfile" || continue
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    alive "$pid" || continue
    grep -qaF -- "$dir" "/proc/$pid/cmdline" 2>/dev/null || continue
    kids=$(children_of "$pid")
    kill -CONT "$pid" $kids 2>/dev/null
    kill -QUIT "$pid" 2>/dev/null
    all="$all $pid $kids"
done
i=0
while [ $i -lt 100 ]; do
    left=""
    for p in $all; do alive "$p" && left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.1
    i=$((i + 1))
done
for p in $all; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
[ "$keep" = 1 ] || rm -rf -- "$dir"
exit 0
"#;

/// Starts the watchdog for the cluster in `dir`. The returned child's stdin is the lifeline:
/// keep the `Child` (and so its stdin) for as long as the cluster should live.
pub(crate) fn spawn(dir: &Path, keep_dir: bool) -> Result<Child, LocalClusterError> {
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgsplit-localcluster-watchdog")
        .arg(dir)
        .arg(if keep_dir { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a Ctrl-C aimed at the test run does not reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| LocalClusterError::io("could not start the cluster watchdog (sh)", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The watchdog removes the directory once its stdin closes (the owner "died").
    #[test]
    fn removes_dir_when_lifeline_closes() {
        let dir = std::env::temp_dir().join(format!("pgsplit-wd-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("node/data")).expect("mkdir");
        // A pid file naming a live process that is not a server of this directory (our own
        // test process) must be left alone: were it signalled, this test would die loudly.
        let me = std::process::id();
        std::fs::write(dir.join("node/data/postmaster.pid"), format!("{me}\n")).expect("write");
        let mut child = spawn(&dir, false).expect("spawn");
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(!dir.exists(), "watchdog did not remove {}", dir.display());
    }
}
