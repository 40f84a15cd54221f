use crate::cache::{Invalidation, MAX_PAYLOAD, Remote};

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn tables_travel_to_other_instances_only() {
    let (here, there) = (Invalidation::new("a"), Invalidation::new("b"));
    let tables = strings(&["t", "s.u", "we\"ird, name"]);
    let payloads = here.encode(&tables, 42);
    assert_eq!(payloads.len(), 1);
    assert_eq!(there.decode(&payloads[0]), Some(Remote::Tables(tables, 42)));
    assert_eq!(here.decode(&payloads[0]), None, "own message");
}

#[test]
fn all_travels_too() {
    let (here, there) = (Invalidation::new("a"), Invalidation::new("b"));
    assert_eq!(there.decode(&here.encode_all(7)), Some(Remote::All(7)));
    assert_eq!(here.decode(&here.encode_all(0)), None);
}

#[test]
fn nothing_to_say_sends_nothing() {
    assert!(Invalidation::new("a").encode(&[], 0).is_empty());
}

#[test]
fn foreign_and_malformed_payloads_are_ignored() {
    let me = Invalidation::new("a");
    for payload in [
        "",
        "hello",
        "{}",
        r#"{"v":2,"from":"b","tables":["t"]}"#,
        r#"{"v":1,"from":"b"}"#,
        r#"{"v":1,"from":"b","tables":"t"}"#,
    ] {
        assert_eq!(me.decode(payload), None, "{payload}");
    }
}

#[test]
fn long_lists_split_under_the_limit_and_keep_every_table() {
    let (here, there) = (Invalidation::random(), Invalidation::random());
    assert_ne!(here.instance(), there.instance());
    let tables: Vec<String> = (0..2000).map(|i| format!("schema_{i}.table_{i}")).collect();
    let payloads = here.encode(&tables, 0);
    assert!(payloads.len() > 1);
    let mut received = Vec::new();
    for payload in &payloads {
        assert!(payload.len() <= MAX_PAYLOAD, "{} bytes", payload.len());
        match there.decode(payload) {
            Some(Remote::Tables(t, _)) => received.extend(t),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, tables);
}

#[test]
fn a_name_too_long_for_any_payload_becomes_all() {
    let (here, there) = (Invalidation::new("a"), Invalidation::new("b"));
    let payloads = here.encode(&["x".repeat(MAX_PAYLOAD)], 0);
    assert_eq!(payloads.len(), 1);
    assert_eq!(there.decode(&payloads[0]), Some(Remote::All(0)));
}
