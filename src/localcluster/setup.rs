//! Bringing a cluster up: directory, primary (initdb, configuration, roles), replicas
//! (pg_basebackup), and the wait until every replica streams.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::command::{OsUser, pg_command, run, running_as_root};
use super::conf::{self, ServerSettings};
use super::{
    APP_DB, APP_MD5_PASSWORD, APP_MD5_USER, APP_PASSWORD, APP_SCRAM_PASSWORD, APP_SCRAM_USER,
    APP_USER, ClusterOptions, LocalCluster, LocalClusterError, PgBinaries, PgNode, SUPERUSER,
    ports, watchdog,
};

const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
const BASEBACKUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for every replica to be streaming once started.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest unix socket path (`sun_path` is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

impl LocalCluster {
    /// Starts a primary and `options.replicas` streaming replicas, and returns once every
    /// replica is streaming. On any failure, whatever was started is stopped again and the
    /// error names the step and carries the tail of the node's log.
    pub fn start(
        bins: &PgBinaries,
        options: ClusterOptions,
    ) -> Result<LocalCluster, LocalClusterError> {
        let run_as = server_user()?;
        let ports = ports::pick_ports(options.replicas + 1, options.base_port)?;
        let dir = prepare_cluster_dir(&options.dir, run_as.as_ref())?;
        // From here on the cluster owns the directory: an early return drops it, and dropping
        // stops what was started and removes the directory.
        let mut cluster = LocalCluster {
            bins: bins.clone(),
            dir: dir.clone(),
            nodes: Vec::new(),
            run_as,
            keep_dir: options.keep_dir,
            stopped: AtomicBool::new(false),
            watchdog: Mutex::new(None),
        };
        if options.watchdog {
            let child = watchdog::spawn(&dir, options.keep_dir)?;
            *cluster.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        }
        let socket_dir = dir.join("sock");
        check_socket_path(&socket_dir)?;
        cluster.make_dir(&socket_dir)?;
        for (i, port) in ports.into_iter().enumerate() {
            let name = if i == 0 {
                "primary".to_string()
            } else {
                format!("replica{i}")
            };
            let node_dir = dir.join(&name);
            cluster.make_dir(&node_dir)?;
            cluster.nodes.push(PgNode {
                name,
                port,
                datadir: node_dir.join("data"),
                log_file: node_dir.join("postgres.log"),
                socket_dir: socket_dir.clone(),
            });
        }
        cluster.init_primary(&options)?;
        cluster.create_roles()?;
        cluster.create_replicas(options.fsync)?;
        for replica in cluster.replicas() {
            cluster.wait_streaming(replica, STREAMING_TIMEOUT)?;
        }
        Ok(cluster)
    }

    /// initdb, our configuration, start.
    fn init_primary(&self, options: &ClusterOptions) -> Result<(), LocalClusterError> {
        let primary = self.primary();
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(&primary.datadir).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if !options.fsync {
            cmd.arg("--no-sync");
        }
        run(cmd, INITDB_TIMEOUT, "initdb").map_err(|e| primary.error(e))?;
        let settings = ServerSettings {
            port: primary.port,
            socket_dir: &primary.socket_dir,
            name: &primary.name,
            fsync: options.fsync,
            replicas: options.replicas,
            extra: &options.extra_conf,
        };
        append(
            &primary.datadir.join("postgresql.conf"),
            &conf::primary_conf(&settings),
        )?;
        overwrite(&primary.datadir.join("pg_hba.conf"), &conf::pg_hba())?;
        self.start_node(primary)
    }

    /// The roles and database tests use for password authentication (see the constants).
    /// Created before the base backups, so the replicas have them too.
    fn create_roles(&self) -> Result<(), LocalClusterError> {
        let lit = conf::sql_literal;
        let roles = format!(
            "CREATE ROLE {APP_USER} LOGIN SUPERUSER PASSWORD {}; \
             CREATE ROLE {APP_SCRAM_USER} LOGIN PASSWORD {} IN ROLE {APP_USER}; \
             SET password_encryption = 'md5'; \
             CREATE ROLE {APP_MD5_USER} LOGIN PASSWORD {} IN ROLE {APP_USER};",
            lit(APP_PASSWORD),
            lit(APP_SCRAM_PASSWORD),
            lit(APP_MD5_PASSWORD),
        );
        self.psql(self.primary(), "postgres", &roles)?;
        // CREATE DATABASE cannot share a multi-statement string (an implicit transaction).
        self.psql(
            self.primary(),
            "postgres",
            &format!("CREATE DATABASE {APP_DB} OWNER {APP_USER}"),
        )?;
        Ok(())
    }

    /// All replicas in parallel: base backup, own port and name, start.
    fn create_replicas(&self, fsync: bool) -> Result<(), LocalClusterError> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .replicas()
                .iter()
                .map(|replica| scope.spawn(move || self.create_replica(replica, fsync)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(LocalClusterError::UnexpectedOutput {
                            what: "replica setup thread".to_string(),
                            output: "panicked".to_string(),
                        })
                    })
                })
                .collect::<Result<Vec<()>, _>>()
        })?;
        Ok(())
    }

    fn create_replica(&self, replica: &PgNode, fsync: bool) -> Result<(), LocalClusterError> {
        let primary = self.primary();
        let mut cmd = self.server_command("pg_basebackup");
        cmd.arg("-D")
            .arg(&replica.datadir)
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", SUPERUSER, "-R", "-X", "stream", "-c", "fast"])
            // One physical slot per replica, named after it: the primary keeps its WAL.
            .args(["-C", "-S", &replica.name]);
        if !fsync {
            cmd.arg("--no-sync");
        }
        run(cmd, BASEBACKUP_TIMEOUT, "pg_basebackup").map_err(|e| replica.error(e))?;
        append(
            &replica.datadir.join("postgresql.conf"),
            &conf::replica_conf(replica.port, &replica.name),
        )?;
        self.start_node(replica)
    }

    /// A command for a server program, run as the server's OS user, from the cluster
    /// directory (a working directory that user can enter).
    pub(crate) fn server_command(&self, program: &str) -> Command {
        let mut cmd = pg_command(&self.bins.tool(program), self.run_as.as_ref());
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Creates a directory (mode 0700) owned by the server's OS user.
    fn make_dir(&self, path: &Path) -> Result<(), LocalClusterError> {
        fs::create_dir(path).map_err(|e| {
            LocalClusterError::io(format!("could not create {}", path.display()), e)
        })?;
        restrict_and_own(path, self.run_as.as_ref())
    }
}

/// When we are root, the `postgres` OS user; otherwise none (servers run as us).
fn server_user() -> Result<Option<OsUser>, LocalClusterError> {
    if !running_as_root() {
        return Ok(None);
    }
    OsUser::lookup("postgres")
        .map(Some)
        .ok_or(LocalClusterError::NoPostgresUser)
}

/// Creates (or accepts an empty) cluster directory, gives it to the server user, and returns
/// its canonical path. The canonical path matters: the watchdog and the liveness checks match
/// it against server command lines.
fn prepare_cluster_dir(dir: &Path, run_as: Option<&OsUser>) -> Result<PathBuf, LocalClusterError> {
    let io_err = |what: &str, e| LocalClusterError::io(format!("{what} {}", dir.display()), e);
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            fs::create_dir_all(dir).map_err(|_| io_err("could not create", e))?;
            true
        }
    };
    if !created {
        let mut entries = fs::read_dir(dir).map_err(|e| io_err("could not read", e))?;
        if entries.next().is_some() {
            return Err(LocalClusterError::DirNotEmpty(dir.to_path_buf()));
        }
    }
    let prepared = fs::canonicalize(dir)
        .map_err(|e| io_err("could not resolve", e))
        .and_then(|canonical| {
            restrict_and_own(&canonical, run_as)?;
            match run_as {
                Some(user) if !reachable_by(&canonical, user) => {
                    Err(LocalClusterError::DirNotReachable {
                        dir: canonical,
                        user: user.name.clone(),
                    })
                }
                _ => Ok(canonical),
            }
        });
    if prepared.is_err() && created {
        let _ = fs::remove_dir_all(dir);
    }
    prepared
}

/// Mode 0700 and, when the servers run as another user, owned by that user.
fn restrict_and_own(path: &Path, run_as: Option<&OsUser>) -> Result<(), LocalClusterError> {
    let io_err = |what: &str, e| LocalClusterError::io(format!("{what} {}", path.display()), e);
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("could not chmod", e))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| io_err("could not chown", e))?;
    }
    Ok(())
}

/// Whether `user` may traverse every parent of `path` (by owner, group or other bits; the
/// user's supplementary groups are not considered, which errs on the side of refusing).
fn reachable_by(path: &Path, user: &OsUser) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors().skip(1).all(|dir| {
        fs::metadata(dir).is_ok_and(|m| {
            let mode = m.mode();
            if m.uid() == user.uid {
                mode & 0o100 != 0
            } else if m.gid() == user.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        })
    })
}

fn check_socket_path(socket_dir: &Path) -> Result<(), LocalClusterError> {
    let len = socket_dir.join(".s.PGSQL.65535").as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(LocalClusterError::PathTooLong {
            dir: socket_dir.to_path_buf(),
            len,
        });
    }
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<(), LocalClusterError> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| LocalClusterError::io(format!("could not append to {}", path.display()), e))
}

/// Replaces a file's contents in place (keeping its owner and mode).
fn overwrite(path: &Path, text: &str) -> Result<(), LocalClusterError> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| LocalClusterError::io(format!("could not write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_limit() {
        assert!(check_socket_path(Path::new("/tmp/pgsplit-1-0/sock")).is_ok());
        let long = PathBuf::from(format!("/tmp/{}/sock", "x".repeat(100)));
        assert!(matches!(
            check_socket_path(&long),
            Err(LocalClusterError::PathTooLong { .. })
        ));
    }

    #[test]
    fn tmp_is_reachable_by_anyone() {
        let nobody = OsUser {
            name: "nobody".to_string(),
            uid: 65534,
            gid: 65534,
        };
        assert!(reachable_by(Path::new("/tmp/some-dir"), &nobody));
    }
}
