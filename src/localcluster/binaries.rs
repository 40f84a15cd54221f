//! Finding the PostgreSQL server binaries installed on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::LocalClusterError;
use super::command::{pg_command, run};

/// The programs this module runs; a directory is usable only if it holds all of them.
const REQUIRED: [&str; 5] = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"];

/// Where the system's PostgreSQL server programs live, and their version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// Directory holding `initdb`, `pg_ctl`, `postgres`, `pg_basebackup` and `psql`.
    pub bindir: PathBuf,
    /// Full version, e.g. `15.8`.
    pub version: String,
    /// Major version, e.g. `15`.
    pub major: u32,
}

impl PgBinaries {
    /// Finds the server binaries: `$PGSPLIT_PG_BINDIR` if set, else `pg_config --bindir`, else the
    /// newest `/usr/lib/postgresql/*/bin` (Debian/Ubuntu layout, where `pg_config` may belong to
    /// a different, client-only package).
    pub fn find() -> Result<PgBinaries, LocalClusterError> {
        let mut searched = Vec::new();
        if let Some(dir) = std::env::var_os("PGSPLIT_PG_BINDIR") {
            return PgBinaries::from_dir(Path::new(&dir));
        }
        searched.push("`pg_config --bindir`".to_string());
        if let Some(dir) = pg_config_bindir().filter(|d| has_all(d)) {
            return PgBinaries::from_dir(&dir);
        }
        searched.push("/usr/lib/postgresql/*/bin".to_string());
        if let Some(dir) = debian_bindirs().into_iter().find(|d| has_all(d)) {
            return PgBinaries::from_dir(&dir);
        }
        Err(LocalClusterError::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    /// Uses the binaries in `bindir`, checking they are all there and recent enough.
    pub fn from_dir(bindir: &Path) -> Result<PgBinaries, LocalClusterError> {
        if !has_all(bindir) {
            return Err(LocalClusterError::BinariesNotFound {
                searched: bindir.display().to_string(),
            });
        }
        let mut cmd = pg_command(&bindir.join("postgres"), None);
        cmd.arg("--version");
        let out = run(cmd, Duration::from_secs(10), "postgres --version")?;
        let (version, major) =
            parse_version(&out.stdout).ok_or_else(|| LocalClusterError::UnexpectedOutput {
                what: "postgres --version".to_string(),
                output: out.stdout.clone(),
            })?;
        if major < 13 {
            return Err(LocalClusterError::UnsupportedVersion {
                found: version,
                bindir: bindir.to_path_buf(),
            });
        }
        Ok(PgBinaries {
            bindir: bindir.to_path_buf(),
            version,
            major,
        })
    }

    /// Full path of one of the programs, e.g. `tool("pg_ctl")`.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

fn has_all(dir: &Path) -> bool {
    REQUIRED.iter().all(|tool| dir.join(tool).is_file())
}

fn pg_config_bindir() -> Option<PathBuf> {
    let mut cmd = Command::new("pg_config");
    cmd.arg("--bindir");
    let out = run(cmd, Duration::from_secs(10), "pg_config --bindir").ok()?;
    let dir = out.stdout.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            Some((version_key(&name)?, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// "9.6" -> [9, 6], "15" -> [15]; anything else is not a version directory.
pub(crate) fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Parses `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)` into ("15.8", 15).
pub(crate) fn parse_version(text: &str) -> Option<(String, u32)> {
    let after = text.split("(PostgreSQL)").nth(1)?;
    let version = after.split_whitespace().next()?;
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((version.to_string(), major))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n"),
            Some(("15.8".to_string(), 15))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17beta1"),
            Some(("17beta1".to_string(), 17))
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn orders_version_directories_numerically() {
        let mut keys = vec![
            version_key("9.6").expect("v"),
            version_key("15").expect("v"),
            version_key("13").expect("v"),
        ];
        keys.sort();
        assert_eq!(keys, vec![vec![9, 6], vec![13], vec![15]]);
        assert_eq!(version_key("common"), None);
    }
}
