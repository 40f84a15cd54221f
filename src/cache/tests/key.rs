use crate::cache::CacheKey;

const SETTINGS: [(&str, &str); 3] = [
    ("search_path", "app, public"),
    ("TimeZone", "UTC"),
    ("work_mem", "4MB"),
];

fn key_with(settings: &[(&str, &str)], sql: &str, params: &[u8]) -> CacheKey {
    CacheKey::new("db", "alice", settings.iter().copied(), sql, params)
}

fn base() -> CacheKey {
    key_with(
        &SETTINGS,
        "SELECT * FROM t WHERE id = $1",
        &[0, 1, 0, 0, 0, 1, b'7'],
    )
}

#[test]
fn same_inputs_same_key() {
    assert_eq!(base(), base());
}

#[test]
fn text_params_database_and_user_matter() {
    let sql = "SELECT * FROM t WHERE id = $1";
    assert_ne!(
        base(),
        key_with(
            &SETTINGS,
            "SELECT * FROM t WHERE id = $2",
            &[0, 1, 0, 0, 0, 1, b'7']
        )
    );
    assert_ne!(base(), key_with(&SETTINGS, sql, &[0, 1, 0, 0, 0, 1, b'8']));
    // Result formats are part of the parameter bytes: text vs binary results differ.
    assert_ne!(
        base(),
        key_with(&SETTINGS, sql, &[0, 1, 0, 0, 0, 1, b'7', 0, 1, 0, 1])
    );
    let params = [0, 1, 0, 0, 0, 1, b'7'];
    let other_db = CacheKey::new("db2", "alice", SETTINGS.iter().copied(), sql, &params);
    let other_user = CacheKey::new("db", "bob", SETTINGS.iter().copied(), sql, &params);
    assert_ne!(base(), other_db);
    assert_ne!(base(), other_user);
}

#[test]
fn fields_do_not_run_into_each_other() {
    let a = CacheKey::new("ab", "c", std::iter::empty(), "SELECT 1", &[]);
    let b = CacheKey::new("a", "bc", std::iter::empty(), "SELECT 1", &[]);
    assert_ne!(a, b);
}

#[test]
fn result_settings_matter() {
    let sql = "SELECT * FROM t WHERE id = $1";
    let params = [0, 1, 0, 0, 0, 1, b'7'];
    let changed = [
        ("search_path", "public"),
        ("TimeZone", "UTC"),
        ("work_mem", "4MB"),
    ];
    assert_ne!(base(), key_with(&changed, sql, &params));
    let with_datestyle = [SETTINGS[0], SETTINGS[1], ("DateStyle", "German")];
    assert_ne!(base(), key_with(&with_datestyle, sql, &params));
    let with_lc = [SETTINGS[0], SETTINGS[1], ("lc_monetary", "de_DE")];
    assert_ne!(base(), key_with(&with_lc, sql, &params));
}

#[test]
fn other_settings_order_and_name_case_do_not() {
    let sql = "SELECT * FROM t WHERE id = $1";
    let params = [0, 1, 0, 0, 0, 1, b'7'];
    let no_work_mem = [SETTINGS[0], SETTINGS[1]];
    assert_eq!(base(), key_with(&no_work_mem, sql, &params));
    let reordered = [
        ("timezone", "UTC"),
        ("statement_timeout", "1s"),
        ("SEARCH_PATH", "app, public"),
    ];
    assert_eq!(base(), key_with(&reordered, sql, &params));
    // Set twice: the last value counts, as on the server.
    let twice = [("search_path", "x"), SETTINGS[0], SETTINGS[1]];
    assert_eq!(base(), key_with(&twice, sql, &params));
}
