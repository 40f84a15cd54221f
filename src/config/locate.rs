//! Finding places in a TOML document: the line of a key path (for validation errors, which know
//! the path) and the key path at a byte offset (for errors from the toml crate, which know the
//! span). Both come from the spans of `toml::de::DeTable`, which the parser keeps even for a
//! document with syntax errors, so every error can name a line and a key.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, KeyPath, Problem};

/// A parsed document, flattened into the spans of every key and value in it.
pub(crate) struct Document<'a> {
    /// The name errors start with (a file name).
    origin: &'a str,
    text: &'a str,
    entries: Vec<Entry>,
}

/// One key (or array element) of the document.
struct Entry {
    path: KeyPath,
    /// The key's own span; `None` for an array element, which has no key.
    key: Option<Range<usize>>,
    /// The value's span. For a `[table]` or `[[array]]` section this is the header line only.
    value: Range<usize>,
    /// A `[table]` or `[[array]]` header: the keys that follow it, up to the next header,
    /// belong to it.
    is_header: bool,
}

impl<'a> Document<'a> {
    pub fn new(origin: &'a str, text: &'a str, root: &DeTable<'_>) -> Self {
        let mut document = Self {
            origin,
            text,
            entries: Vec::new(),
        };
        document.add_table(&KeyPath::default(), root);
        document
    }

    /// Turns a validation problem into an error at the line of its key. A key that is absent
    /// (its value is a default) points at the nearest enclosing key that is present.
    pub fn problem(&self, problem: Problem) -> ConfigError {
        let line = self.line_of(self.offset_of(&problem.path));
        self.error(Some(line), &problem.path, problem.message)
    }

    /// Turns an error of the toml crate (syntax or deserialization) into an error at its span.
    pub fn toml_error(&self, error: &toml::de::Error, prefix: &str) -> ConfigError {
        let message = format!("{prefix}{}", plain_words(error.message()));
        let Some(span) = error.span() else {
            return self.error(None, &KeyPath::default(), message);
        };
        let path = self.path_at(span.start);
        let (path, message) = name_missing_key(path, message);
        self.error(Some(self.line_of(span.start)), &path, message)
    }

    fn error(&self, line: Option<usize>, path: &KeyPath, message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line,
            key: path.to_string(),
            message,
        }
    }

    fn add_table(&mut self, path: &KeyPath, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = path.key(key.get_ref());
            self.add_value(path, Some(key.span()), value);
        }
    }

    fn add_value(
        &mut self,
        path: KeyPath,
        key: Option<Range<usize>>,
        value: &toml::Spanned<DeValue<'_>>,
    ) {
        let span = value.span();
        let is_header = matches!(value.get_ref(), DeValue::Table(_))
            && self
                .text
                .get(span.clone())
                .is_some_and(|s| s.starts_with('['));
        self.entries.push(Entry {
            path: path.clone(),
            key,
            value: span,
            is_header,
        });
        match value.get_ref() {
            DeValue::Table(table) => self.add_table(&path, table),
            DeValue::Array(array) => {
                for (i, element) in array.iter().enumerate() {
                    self.add_value(path.index(i), None, element);
                }
            }
            _ => {}
        }
    }

    /// Where `path`, or its nearest present ancestor, starts; 0 (line 1) for the document.
    fn offset_of(&self, path: &KeyPath) -> usize {
        let mut path = Some(path.clone());
        while let Some(current) = path {
            if let Some(entry) = self.entries.iter().find(|e| e.path == current) {
                return entry.key.as_ref().unwrap_or(&entry.value).start;
            }
            path = current.parent();
        }
        0
    }

    /// The key path an offset belongs to: the narrowest key or value containing it (the deepest
    /// on a tie, so an `[[array]]` header names its element, not the array). Offsets outside
    /// every value (a broken line, a duplicate key) belong to the section they are in.
    fn path_at(&self, offset: usize) -> KeyPath {
        self.entries
            .iter()
            .filter_map(|entry| entry.width_containing(offset).map(|w| (w, entry)))
            .min_by_key(|(width, entry)| (*width, std::cmp::Reverse(entry.path.depth())))
            .map(|(_, entry)| entry.path.clone())
            .unwrap_or_else(|| self.section_key_at(offset))
    }

    /// The key of a line the parser could not place. A broken `[header]` names itself; a
    /// `key = value` line names its key inside the section of the last header above it.
    fn section_key_at(&self, offset: usize) -> KeyPath {
        let (line_start, line) = self.line_at(offset);
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            return dotted_key(KeyPath::default(), header.trim_matches(['[', ']']));
        }
        let section = self
            .entries
            .iter()
            .filter(|e| e.is_header && e.value.start < line_start)
            .max_by_key(|e| e.value.start)
            .map(|e| e.path.clone())
            .unwrap_or_default();
        match line.split_once('=') {
            Some((key, _)) => dotted_key(section, key),
            None => section,
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The start offset and the text of the line holding `offset`. Works on bytes: a newline
    /// is always a character boundary, whatever offset the parser reported.
    fn line_at(&self, offset: usize) -> (usize, &str) {
        let bytes = self.text.as_bytes();
        let end = offset.min(bytes.len());
        let start = bytes[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let stop = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| start + i);
        (start, self.text.get(start..stop).unwrap_or_default())
    }
}

impl Entry {
    /// The width of this entry's key or value span when it contains `offset`. An empty span
    /// (a value the parser gave up on) contains the offset it sits at.
    fn width_containing(&self, offset: usize) -> Option<usize> {
        let contains = |span: &Range<usize>| {
            span.contains(&offset) || (span.is_empty() && span.start == offset)
        };
        [self.key.as_ref(), Some(&self.value)]
            .into_iter()
            .flatten()
            .filter(|span| contains(span))
            .map(|span| span.len())
            .min()
    }
}

/// Appends a dotted key as written in the file (`a.b`, `"a b".c`) to `path`.
fn dotted_key(path: KeyPath, key: &str) -> KeyPath {
    key.split('.')
        .map(|part| part.trim().trim_matches(['"', '\'']))
        .filter(|part| !part.is_empty())
        .fold(path, |path, part| path.key(part))
}

/// serde speaks of fields, variants and Rust types; a TOML file has keys and values.
fn plain_words(message: &str) -> String {
    message
        .replacen("unknown field", "unknown key", 1)
        .replacen("unknown variant", "unknown value", 1)
        .replace("expected usize", "expected a whole number, 0 or more")
        .replace("expected u64", "expected a whole number, 0 or more")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
}

/// serde reports a missing key at the table that lacks it; name the key itself in the path.
fn name_missing_key(path: KeyPath, message: String) -> (KeyPath, String) {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    match missing {
        Some(key) => (path.key(key), "this key is required".to_owned()),
        None => (path, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(text: &str) -> Document<'_> {
        let (root, _errors) = DeTable::parse_recoverable(text);
        Document::new("t.toml", text, root.get_ref())
    }

    const TEXT: &str = "listen = \"x\"\n\
                        [pool]\n\
                        mode = \"s\"\n\
                        \n\
                        [[clusters]]\n\
                        name = \"a\"\n\
                        replicas = [\n  { addr = \"r1\" },\n  { addr = \"r2\" },\n]\n";

    #[test]
    fn paths_find_their_lines() {
        let doc = document(TEXT);
        let line = |path: &KeyPath| doc.line_of(doc.offset_of(path));
        assert_eq!(line(&KeyPath::top("listen")), 1);
        assert_eq!(line(&KeyPath::top("pool").key("mode")), 3);
        let cluster = KeyPath::top("clusters").index(0);
        assert_eq!(line(&cluster), 5);
        assert_eq!(line(&cluster.key("replicas").index(1).key("addr")), 9);
        // Absent keys point at their nearest present ancestor.
        assert_eq!(line(&cluster.key("databases")), 5);
        assert_eq!(line(&cluster.key("replicas").index(1).key("name")), 9);
        assert_eq!(line(&KeyPath::top("users")), 1);
    }

    #[test]
    fn offsets_find_their_paths() {
        let doc = document(TEXT);
        let at = |needle: &str| doc.path_at(TEXT.find(needle).unwrap_or(0)).to_string();
        assert_eq!(at("\"s\""), "pool.mode");
        assert_eq!(at("[[clusters]]"), "clusters[0]");
        assert_eq!(at("\"r2\""), "clusters[0].replicas[1].addr");
        assert_eq!(at("{ addr = \"r2"), "clusters[0].replicas[1]");
    }

    #[test]
    fn unplaced_lines_belong_to_their_section() {
        let text = "listen = \"x\"\n[pool]\nmode = 1\nmode = 2\n";
        let doc = document(text);
        let offset = text.rfind("mode").unwrap_or(0);
        assert_eq!(doc.path_at(offset).to_string(), "pool.mode");
    }
}
