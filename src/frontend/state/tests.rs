//! Tests of the session state: settings, transaction blocks and savepoints, pins.

use super::*;

fn set(name: &str, value: &str) -> SessionEffect {
    SessionEffect::Set {
        name: name.into(),
        sql: format!("SET {name} = {value}"),
    }
}

const OK_IDLE: UnitOutcome = UnitOutcome {
    status: b'I',
    failed: false,
};
const OK_IN_TX: UnitOutcome = UnitOutcome {
    status: b'T',
    failed: false,
};

fn settings(s: &SessionState) -> Vec<(String, String)> {
    s.desired_settings()
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn explicit_settings_override_startup_ones() {
    let mut s = SessionState::new([("application_name".to_string(), "a".to_string())].into_iter());
    assert_eq!(
        settings(&s),
        vec![(
            "application_name".into(),
            "SET \"application_name\" = 'a'".into()
        )]
    );
    s.finish_unit(vec![set("application_name", "'b'")], OK_IDLE);
    assert_eq!(
        settings(&s),
        vec![(
            "application_name".into(),
            "SET application_name = 'b'".into()
        )]
    );
    s.finish_unit(vec![SessionEffect::ResetAll], OK_IDLE);
    assert_eq!(settings(&s)[0].1, "SET \"application_name\" = 'a'");
}

#[test]
fn failed_units_change_nothing() {
    let mut s = SessionState::default();
    s.finish_unit(
        vec![set("search_path", "x")],
        UnitOutcome {
            status: b'I',
            failed: true,
        },
    );
    assert!(settings(&s).is_empty());
}

#[test]
fn transaction_effects_wait_for_commit_and_vanish_on_rollback() {
    let mut s = SessionState::default();
    s.finish_unit(vec![set("search_path", "x")], OK_IN_TX);
    assert!(settings(&s).is_empty());
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    assert!(settings(&s).is_empty());
    s.finish_unit(vec![set("search_path", "y")], OK_IN_TX);
    s.finish_unit(vec![], FAILED_IN_TX);
    // COMMIT of a failed transaction block is a rollback.
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert!(settings(&s).is_empty());
    s.finish_unit(vec![set("search_path", "z")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(settings(&s).len(), 1);
}

#[test]
fn one_text_holding_two_blocks_keeps_each_ones_fate() {
    let mut s = SessionState::default();
    s.finish_unit(
        vec![
            set("a", "1"),
            SessionEffect::Commit,
            set("b", "1"),
            SessionEffect::Rollback,
            set("c", "1"),
        ],
        OK_IDLE,
    );
    assert_eq!(names_set(&s), ["a", "c"]);
    // A text that failed after a COMMIT (the statements that ran are given): what the
    // COMMIT committed holds, what ran after it rolls back with the error.
    s.finish_unit(
        vec![set("d", "1"), SessionEffect::Commit, set("e", "1")],
        UnitOutcome {
            status: b'I',
            failed: true,
        },
    );
    assert_eq!(names_set(&s), ["a", "c", "d"]);
}

fn savepoint(name: &str) -> SessionEffect {
    SessionEffect::Savepoint { name: name.into() }
}

fn rollback_to(name: &str) -> SessionEffect {
    SessionEffect::RollbackToSavepoint { name: name.into() }
}

fn release(name: &str) -> SessionEffect {
    SessionEffect::ReleaseSavepoint { name: name.into() }
}

const FAILED_IN_TX: UnitOutcome = UnitOutcome {
    status: b'E',
    failed: true,
};

/// The names of the settings the session holds, sorted.
fn names_set(s: &SessionState) -> Vec<String> {
    let mut names: Vec<String> = settings(s).into_iter().map(|(name, _)| name).collect();
    names.sort();
    names
}

#[test]
fn a_rollback_to_a_savepoint_undoes_the_settings_made_since() {
    let mut s = SessionState::default();
    s.finish_unit(vec![set("a", "1")], OK_IN_TX);
    s.finish_unit(vec![savepoint("s1"), set("b", "1")], OK_IN_TX);
    s.finish_unit(vec![savepoint("s2"), set("c", "1")], OK_IN_TX);
    s.finish_unit(vec![rollback_to("s1")], OK_IN_TX);
    s.finish_unit(vec![set("d", "1")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(names_set(&s), ["a", "d"]);

    // Released, the effects stay; the savepoints after it go with it.
    let mut s = SessionState::default();
    s.finish_unit(vec![savepoint("s1"), set("a", "1")], OK_IN_TX);
    s.finish_unit(vec![savepoint("s2"), set("b", "1")], OK_IN_TX);
    s.finish_unit(vec![release("s1")], OK_IN_TX);
    // s2 went with s1: pgsplit no longer knows it either (the server would refuse this).
    s.finish_unit(vec![rollback_to("s2")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(names_set(&s), ["a", "b"]);
}

#[test]
fn a_prepare_outlives_the_rollback_of_its_transaction() {
    let prepare = |name: &str| SessionEffect::Prepare {
        name: name.into(),
        sql: format!("PREPARE {name} AS SELECT 1"),
    };
    let mut s = SessionState::default();
    let taken = s.finish_unit(vec![prepare("p")], OK_IN_TX);
    assert_eq!(taken.len(), 1, "on the connection at once");
    s.finish_unit(vec![savepoint("a"), prepare("q")], OK_IN_TX);
    s.finish_unit(vec![rollback_to("a")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    let mut names: Vec<&String> = s.sql_prepared.keys().collect();
    names.sort();
    assert_eq!(names, ["p", "q"]);
    // DEALLOCATE neither.
    s.finish_unit(
        vec![SessionEffect::Deallocate {
            name: Some("p".into()),
        }],
        OK_IN_TX,
    );
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    assert!(!s.sql_prepared.contains_key("p"));
}

#[test]
fn a_prepare_that_ran_before_an_error_outlives_it() {
    let prepare = SessionEffect::Prepare {
        name: "p".into(),
        sql: "PREPARE p AS SELECT 1".into(),
    };
    let mut s = SessionState::default();
    let failed = UnitOutcome {
        status: b'I',
        failed: true,
    };
    // `PREPARE p ...; SET a = 1; SELECT 1/0`: the statements that ran are given.
    let taken = s.finish_unit(vec![prepare.clone(), set("a", "1")], failed);
    assert_eq!(taken, [prepare], "on the connection too");
    assert!(s.sql_prepared.contains_key("p"));
    assert!(
        settings(&s).is_empty(),
        "the SET rolled back with the error"
    );
}

#[test]
fn a_set_local_lasts_until_the_transaction_ends_or_a_rollback_to_before_it() {
    let local = |value: &str| SessionEffect::SetLocal {
        name: "pgsplit.consistency".into(),
        sql: local_sql(value),
    };
    let in_force = |s: &SessionState| -> Vec<String> {
        let sql = |effect: &SessionEffect| match effect {
            SessionEffect::SetLocal { sql, .. } => sql.clone(),
            _ => String::new(),
        };
        s.local_settings().map(sql).collect()
    };
    let mut s = SessionState::default();
    s.finish_unit(vec![local("eventual")], OK_IN_TX);
    s.finish_unit(vec![savepoint("s1")], OK_IN_TX);
    s.note_set_local(local("strong"));
    assert_eq!(in_force(&s).len(), 2);
    s.finish_unit(vec![rollback_to("s1")], OK_IN_TX);
    assert_eq!(in_force(&s), [local_sql("eventual")]);
    // Released, the savepoint's SET LOCALs stay; committed, they end (and are not taken).
    s.finish_unit(
        vec![savepoint("s2"), local("strong"), release("s2")],
        OK_IN_TX,
    );
    assert_eq!(in_force(&s).len(), 2);
    assert!(
        s.finish_unit(vec![SessionEffect::Commit], OK_IDLE)
            .is_empty()
    );
    assert!(in_force(&s).is_empty());
    assert!(names_set(&s).is_empty());
}

fn local_sql(value: &str) -> String {
    format!("SET LOCAL pgsplit.consistency = '{value}'")
}

#[test]
fn a_savepoint_rescues_a_failed_block_and_its_settings() {
    let mut s = SessionState::default();
    s.finish_unit(vec![set("a", "1")], OK_IN_TX);
    // The savepoint was set before the error in the same unit.
    s.finish_unit(vec![savepoint("s1"), set("b", "1")], FAILED_IN_TX);
    s.finish_unit(vec![rollback_to("s1")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(names_set(&s), ["a"]);

    // Not rescued: the COMMIT is a rollback, and the next block starts clean.
    let mut s = SessionState::default();
    s.finish_unit(vec![savepoint("s1"), set("a", "1")], OK_IN_TX);
    s.finish_unit(vec![], FAILED_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    s.finish_unit(vec![set("b", "1")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(names_set(&s), ["b"]);
    // Nor after a ROLLBACK of a failed block.
    s.finish_unit(vec![], OK_IN_TX);
    s.finish_unit(vec![], FAILED_IN_TX);
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    s.finish_unit(vec![set("c", "1")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(names_set(&s), ["b", "c"]);
}

#[test]
fn chained_blocks_commit_and_roll_back_their_own_settings() {
    let mut s = SessionState::default();
    s.finish_unit(vec![set("a", "1")], OK_IN_TX);
    // COMMIT AND CHAIN, ROLLBACK AND CHAIN: the status stays T.
    s.finish_unit(vec![SessionEffect::Commit], OK_IN_TX);
    s.finish_unit(vec![set("b", "1")], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Rollback], OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Commit], OK_IDLE);
    assert_eq!(names_set(&s), ["a"]);
}

#[test]
fn pins_come_and_go() {
    let mut s = SessionState::default();
    s.add_pins(&[
        SessionEffect::Pin(PinCause::Listen),
        SessionEffect::Pin(PinCause::TempTable),
    ]);
    assert_eq!(s.pin(), Some(PinCause::Listen));
    s.finish_unit(vec![SessionEffect::Unlisten { channel: None }], OK_IDLE);
    assert_eq!(s.pin(), Some(PinCause::TempTable));
    s.finish_unit(vec![SessionEffect::DiscardAll], OK_IDLE);
    assert_eq!(s.pin(), None);
}

#[test]
fn closing_every_cursor_with_hold_lifts_their_pin() {
    let hold = |name: &str| SessionEffect::HoldCursor { name: name.into() };
    let close = |name: Option<&str>| SessionEffect::CloseCursor {
        name: name.map(String::from),
    };
    let mut s = SessionState::default();
    let declare = |names: &[&str]| {
        let mut effects = vec![SessionEffect::Pin(PinCause::HoldCursor)];
        effects.extend(names.iter().map(|name| hold(name)));
        effects
    };
    s.add_pins(&declare(&["a", "b"]));
    s.finish_unit(declare(&["a", "b"]), OK_IDLE);
    s.finish_unit(vec![close(Some("a"))], OK_IDLE);
    assert_eq!(s.pin(), Some(PinCause::HoldCursor), "b is still open");
    // A failed CLOSE closed nothing.
    let failed = UnitOutcome {
        status: b'I',
        failed: true,
    };
    s.finish_unit(vec![close(Some("b"))], failed);
    assert_eq!(s.pin(), Some(PinCause::HoldCursor));
    s.finish_unit(vec![close(Some("b"))], OK_IDLE);
    assert_eq!(s.pin(), None);

    s.add_pins(&declare(&["c"]));
    s.finish_unit(declare(&["c"]), OK_IDLE);
    s.finish_unit(vec![close(None)], OK_IDLE);
    assert_eq!(s.pin(), None, "CLOSE ALL");
}

#[test]
fn a_rollback_lifts_the_pins_whose_state_it_undoes() {
    let pin = |cause| vec![SessionEffect::Pin(cause)];
    let temp = pin(PinCause::TempTable);
    let mut s = SessionState::default();
    // BEGIN; CREATE TEMP TABLE t (); SELECT pg_advisory_lock(1); ROLLBACK
    s.add_pins(&temp);
    s.add_pins(&pin(PinCause::AdvisoryLock));
    s.finish_unit(temp.clone(), OK_IN_TX);
    s.finish_unit(pin(PinCause::AdvisoryLock), OK_IN_TX);
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    assert_eq!(
        s.pin(),
        Some(PinCause::TempTable),
        "until nothing is in flight"
    );
    s.lift_unconfirmed_pins();
    assert_eq!(
        s.pin(),
        Some(PinCause::AdvisoryLock),
        "a session lock stays"
    );

    // Pipelined: a text that creates a temp table and rolls back, then one that commits.
    let mut s = SessionState::default();
    let rolled_back = vec![
        SessionEffect::Pin(PinCause::TempTable),
        SessionEffect::Rollback,
    ];
    s.add_pins(&rolled_back);
    s.add_pins(&temp);
    s.finish_unit(rolled_back, OK_IDLE);
    s.finish_unit(temp.clone(), OK_IDLE);
    s.lift_unconfirmed_pins();
    assert_eq!(
        s.pin(),
        Some(PinCause::TempTable),
        "the second one committed"
    );

    // A DECLARE ... WITH HOLD that fails: no cursor, no pin.
    let mut s = SessionState::default();
    s.add_pins(&pin(PinCause::HoldCursor));
    let failed = UnitOutcome {
        status: b'I',
        failed: true,
    };
    s.finish_unit(Vec::new(), failed);
    s.lift_unconfirmed_pins();
    assert_eq!(s.pin(), None);
}

#[test]
fn the_listen_pin_lasts_while_a_committed_listen_does() {
    let listen = |channel: &str| {
        vec![
            SessionEffect::Pin(PinCause::Listen),
            SessionEffect::Listen {
                channel: channel.into(),
            },
        ]
    };
    let unlisten = |channel: &str| SessionEffect::Unlisten {
        channel: Some(channel.into()),
    };
    let mut s = SessionState::default();
    // BEGIN; LISTEN a; ROLLBACK: the server listens on nothing.
    s.add_pins(&listen("a"));
    s.finish_unit(listen("a"), OK_IN_TX);
    assert_eq!(s.pin(), Some(PinCause::Listen), "until the block ends");
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    assert_eq!(s.pin(), None);

    s.add_pins(&listen("a"));
    s.finish_unit(listen("a"), OK_IDLE);
    s.add_pins(&listen("b"));
    s.finish_unit(listen("b"), OK_IDLE);
    s.finish_unit(vec![unlisten("a")], OK_IDLE);
    assert_eq!(s.pin(), Some(PinCause::Listen), "b is still listened on");
    // A rollback of another block leaves a committed LISTEN alone.
    s.finish_unit(vec![SessionEffect::Rollback], OK_IDLE);
    assert_eq!(s.pin(), Some(PinCause::Listen));
    s.finish_unit(vec![unlisten("b")], OK_IDLE);
    assert_eq!(s.pin(), None);
}

#[test]
fn default_read_only_is_read_from_settings() {
    let mut s = SessionState::default();
    assert!(!s.default_read_only());
    s.finish_unit(vec![set("default_transaction_read_only", "on")], OK_IDLE);
    assert!(s.default_read_only());
}
