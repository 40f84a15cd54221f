use std::time::Duration;

use crate::cache::TableRules;
use crate::cache::names::{normalize, normalize_all, relation};

#[test]
fn spellings_of_one_table_normalize_alike() {
    for spelling in [
        "t",
        "T",
        "\"t\"",
        "public.t",
        "PUBLIC.T",
        "\"public\".\"t\"",
        " t ",
    ] {
        assert_eq!(normalize(spelling), "t", "{spelling}");
    }
    assert_eq!(normalize("S.T"), "s.t");
    assert_eq!(normalize("\"s\".t"), "s.t");
}

#[test]
fn relation_drops_the_schema() {
    assert_eq!(relation("s.t"), "t");
    assert_eq!(relation("public.t"), "t");
    assert_eq!(relation("T"), "t");
    assert_eq!(relation("db.s.t"), "t");
}

#[test]
fn normalize_all_removes_repeats() {
    assert_eq!(normalize_all(&["t", "public.t", "u", "T"]), ["t", "u"]);
}

#[test]
fn rules_match_the_classifier_spellings() {
    let rules = TableRules::new([
        ("public.t", Duration::from_secs(1)),
        ("\"U\"", Duration::from_secs(2)),
        ("s.v", Duration::from_secs(3)),
    ]);
    assert_eq!(rules.ttl("t"), Some(Duration::from_secs(1)));
    assert_eq!(rules.ttl("public.t"), Some(Duration::from_secs(1)));
    assert_eq!(rules.ttl("public.u"), Some(Duration::from_secs(2)));
    assert_eq!(rules.ttl("s.v"), Some(Duration::from_secs(3)));
    // An unqualified name means public.v under the default search_path, not s.v.
    assert_eq!(rules.ttl("v"), None);
    assert_eq!(rules.ttl("other.t"), None);
    assert!(!rules.is_empty());
    assert!(TableRules::default().is_empty());
}
