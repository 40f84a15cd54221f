//! The one error type of the config module, and the key paths it names.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded. Nothing of a failed configuration is ever applied.
///
/// `Display` always names where the problem is, so an operator can go straight to it:
/// `config/pgsplit.toml:14: clusters[0].replicas[1].addr: invalid address "127.0.0.1:99999": ...`
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text was read but is not an acceptable configuration: bad syntax, an unknown key, a
    /// wrong type, a bad value or a failed cross-check.
    #[error("{}", render_invalid(origin, *line, key, message))]
    Invalid {
        /// The file name, or `command line` for flags.
        origin: String,
        /// 1-based line in `origin`; `None` when the problem has no place in a file (flags).
        line: Option<usize>,
        /// The key path, e.g. `clusters[0].primary.addr`, or a flag such as `--primary`;
        /// empty for a syntax error outside any key.
        key: String,
        /// What is wrong and what is allowed instead.
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => *line,
            Self::Read { .. } => None,
        }
    }

    /// The key path (or flag) the error is about, when it has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } if !key.is_empty() => Some(key),
            _ => None,
        }
    }

    /// An error about a command-line flag, which has no line to point at.
    pub(crate) fn flag(flag: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            origin: COMMAND_LINE.to_owned(),
            line: None,
            key: flag.to_owned(),
            message: message.into(),
        }
    }
}

/// The origin named by errors about flags.
pub(crate) const COMMAND_LINE: &str = "command line";

fn render_invalid(origin: &str, line: Option<usize>, key: &str, message: &str) -> String {
    let mut out = origin.to_owned();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if !key.is_empty() {
        out.push_str(&format!(": {key}"));
    }
    out.push_str(&format!(": {message}"));
    out
}

/// A failed check, before it is given a place: validation works on the typed [`super::Config`]
/// and knows key paths, not lines; whoever holds the document turns the path into a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: KeyPath,
    pub message: String,
}

impl Problem {
    pub fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }

    /// For problems found after command-line flags were applied: there is no document to search
    /// for a line, so the origin says where the values came from.
    pub fn without_line(self, origin: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line: None,
            key: self.path.to_string(),
            message: self.message,
        }
    }
}

/// A path to a value in the TOML document, displayed the way an operator would write it:
/// `clusters[0].replicas[1].addr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    /// The path of a top-level key.
    pub fn top(key: &str) -> Self {
        Self::default().key(key)
    }

    /// The path of `key` inside the table at `self`.
    pub fn key(&self, key: &str) -> Self {
        self.child(Segment::Key(key.to_owned()))
    }

    /// The path of element `index` of the array at `self`.
    pub fn index(&self, index: usize) -> Self {
        self.child(Segment::Index(index))
    }

    fn child(&self, segment: Segment) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment);
        Self(segments)
    }

    /// The enclosing path, or `None` at the top.
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    pub fn depth(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write_key(f, key)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a key bare when TOML allows it bare, quoted otherwise, so a path is never ambiguous.
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        f.write_str(key)
    } else {
        write!(f, "{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_display_like_toml() {
        let path = KeyPath::top("clusters")
            .index(0)
            .key("replicas")
            .index(1)
            .key("addr");
        assert_eq!(path.to_string(), "clusters[0].replicas[1].addr");
        assert_eq!(KeyPath::top("a.b").key("c").to_string(), "\"a.b\".c");
        assert_eq!(KeyPath::default().to_string(), "");
    }

    #[test]
    fn parent_walks_up_to_the_top() {
        let path = KeyPath::top("pool").key("mode");
        assert_eq!(path.parent(), Some(KeyPath::top("pool")));
        assert_eq!(KeyPath::top("pool").parent(), Some(KeyPath::default()));
        assert_eq!(KeyPath::default().parent(), None);
    }

    #[test]
    fn display_names_origin_line_and_key() {
        let err = ConfigError::Invalid {
            origin: "a.toml".into(),
            line: Some(3),
            key: "pool.mode".into(),
            message: "bad".into(),
        };
        assert_eq!(err.to_string(), "a.toml:3: pool.mode: bad");
        assert_eq!(
            ConfigError::flag("--primary", "bad").to_string(),
            "command line: --primary: bad"
        );
    }
}
