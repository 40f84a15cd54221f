//! Session settings as the SQL that sets them, in the order they are applied: what a session
//! wants on its server connection, and what a connection has.

use std::sync::Arc;

/// `(name, SQL that sets it)` pairs, one per name. Shared, not copied: a session hands its
/// settings to every connection it brings up to date, so the next checkout of that connection
/// by a session with the same settings finds them equal by pointer (or, for another session,
/// by a short comparison) without looking up each name.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Settings(Arc<Vec<(String, String)>>);

impl Settings {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Settings(Arc::new(pairs))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, sql)| (name.as_str(), sql.as_str()))
    }

    /// The SQL that set `name`, if it is set (a handful of names: a scan beats hashing).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, sql)| sql)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same settings in the same order: the check every checkout makes first.
    pub fn same_as(&self, other: &Settings) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }

    /// Records `SET name`: replaces its earlier SQL in place, or appends it.
    pub fn set(&mut self, name: &str, sql: &str) {
        let pairs = Arc::make_mut(&mut self.0);
        match pairs.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => sql.clone_into(old),
            None => pairs.push((name.to_string(), sql.to_string())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        if self.get(name).is_some() {
            Arc::make_mut(&mut self.0).retain(|(n, _)| n != name);
        }
    }

    pub fn clear(&mut self) {
        if !self.is_empty() {
            *self = Settings::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &Settings) -> Vec<(&str, &str)> {
        s.iter().collect()
    }

    #[test]
    fn set_replaces_in_place_and_appends_new_names() {
        let mut s = Settings::default();
        s.set("a", "SET a = 1");
        s.set("b", "SET b = 1");
        s.set("a", "SET a = 2");
        assert_eq!(pairs(&s), vec![("a", "SET a = 2"), ("b", "SET b = 1")]);
        assert_eq!(s.get("b"), Some("SET b = 1"));
        s.remove("a");
        assert_eq!(pairs(&s), vec![("b", "SET b = 1")]);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn a_shared_copy_is_the_same_until_either_changes() {
        let mut mine = Settings::from_pairs(vec![("a".into(), "SET a = 1".into())]);
        let theirs = mine.clone();
        assert!(mine.same_as(&theirs));
        assert!(mine.same_as(&Settings::from_pairs(vec![(
            "a".into(),
            "SET a = 1".into()
        )])));
        mine.set("a", "SET a = 2");
        assert!(!mine.same_as(&theirs));
        assert_eq!(theirs.get("a"), Some("SET a = 1"));
    }
}
