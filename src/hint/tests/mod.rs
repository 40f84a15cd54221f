//! Hint comments, settings and session commands, through the public API.

use std::time::Duration;

use super::*;

mod commands;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn hints(sql: &str) -> Hints {
    let (hints, warnings) = parse_hints(sql);
    assert_eq!(warnings, [], "{sql}");
    hints
}

fn warnings(sql: &str) -> Vec<String> {
    parse_hints(sql).1.into_iter().map(|w| w.0).collect()
}

fn route(route: RouteHint) -> Hints {
    Hints {
        route: Some(route),
        ..Hints::default()
    }
}

// ---- hint comments -------------------------------------------------------------------------

#[test]
fn every_key_and_value() {
    let cases = [
        ("route=primary", route(RouteHint::Primary)),
        ("route=replica", route(RouteHint::Replica)),
        (
            "max_lag=500ms",
            Hints {
                max_lag: Some(ms(500)),
                ..Hints::default()
            },
        ),
        (
            "max_lag=1s",
            Hints {
                max_lag: Some(ms(1_000)),
                ..Hints::default()
            },
        ),
        (
            "max_lag=2.5s",
            Hints {
                max_lag: Some(ms(2_500)),
                ..Hints::default()
            },
        ),
        (
            "max_lag=1m",
            Hints {
                max_lag: Some(ms(60_000)),
                ..Hints::default()
            },
        ),
        (
            "after=16/B374D848",
            Hints {
                after: Some(CausalToken::everywhere(0x16_B374_D848)),
                ..Hints::default()
            },
        ),
        (
            "after=0/0",
            Hints {
                after: Some(CausalToken::everywhere(0)),
                ..Hints::default()
            },
        ),
    ];
    for (pairs, expected) in cases {
        assert_eq!(
            hints(&format!("/* pgsplit: {pairs} */ SELECT 1")),
            expected,
            "{pairs}"
        );
    }
    let levels = [
        ("eventual", Consistency::Eventual),
        ("read_your_writes", Consistency::ReadYourWrites),
        ("monotonic", Consistency::Monotonic),
        ("strong", Consistency::Strong),
        ("bounded:200ms", Consistency::Bounded(ms(200))),
        ("bounded:1.5s", Consistency::Bounded(ms(1_500))),
    ];
    for (text, level) in levels {
        let sql = format!("/* pgsplit: consistency={text} */ SELECT 1");
        assert_eq!(hints(&sql).consistency, Some(level), "{text}");
    }
}

#[test]
fn a_causal_token_per_cluster_is_one_hint_among_others() {
    let sql = "/* pgsplit: after=shard_a:0/10, shard_b:0/20, route=replica, cache */ SELECT 1";
    let (hints, warnings) = parse_hints(sql);
    assert!(warnings.is_empty(), "{warnings:?}");
    let token = hints.after.expect("a token");
    assert_eq!(
        (token.position_for("shard_a"), token.position_for("shard_b")),
        (0x10, 0x20)
    );
    assert_eq!(token.position_for("shard_c"), 0);
    assert_eq!(hints.route, Some(RouteHint::Replica));
    assert!(hints.cache.is_some());
}

#[test]
fn several_keys_in_one_comment() {
    let sql = "/* pgsplit: route=replica, consistency=bounded:200ms ,max_lag = 2.5s,\n after=1/2 */ SELECT 1";
    assert_eq!(
        hints(sql),
        Hints {
            route: Some(RouteHint::Replica),
            consistency: Some(Consistency::Bounded(ms(200))),
            max_lag: Some(ms(2_500)),
            after: Some(CausalToken::everywhere((1 << 32) | 2)),
            cache: None,
        }
    );
}

#[test]
fn keys_values_and_prefix_ignore_case_and_may_be_quoted() {
    assert_eq!(
        hints("/* PGSPLIT: Route=PRIMARY, CONSISTENCY='Strong' */ SELECT 1"),
        Hints {
            route: Some(RouteHint::Primary),
            consistency: Some(Consistency::Strong),
            ..Hints::default()
        }
    );
}

#[test]
fn sqlcommenter_style_without_spaces() {
    assert_eq!(
        hints("/*pgsplit:route=primary*/SELECT 1"),
        route(RouteHint::Primary)
    );
    assert_eq!(
        hints("/* pgsplit:route=primary */ SELECT 1"),
        route(RouteHint::Primary)
    );
}

#[test]
fn other_comments_before_and_after_are_ignored() {
    let sql = "/*controller='users',action='show',framework='rails'*/\n\
               /* app: billing */ -- a note, with = and , in it\n\
               /* pgsplit: route=primary */\n\
               /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/\n\
               /* Hibernate: select u from User u */ SELECT * FROM users";
    assert_eq!(hints(sql), route(RouteHint::Primary));
}

#[test]
fn line_comment_hints() {
    assert_eq!(
        hints("-- pgsplit: route=replica, max_lag=1s\nSELECT 1"),
        Hints {
            route: Some(RouteHint::Replica),
            max_lag: Some(ms(1_000)),
            ..Hints::default()
        }
    );
    assert_eq!(
        hints("-- pgsplit:route=primary\r\n-- pgsplit: after=0/10\rSELECT 1"),
        Hints {
            route: Some(RouteHint::Primary),
            after: Some(CausalToken::everywhere(16)),
            ..Hints::default()
        }
    );
    // A statement of nothing but a hint comment still has its hints read.
    assert_eq!(
        hints("-- pgsplit: route=primary"),
        route(RouteHint::Primary)
    );
}

#[test]
fn nested_block_comments() {
    let sql = "/* outer /* pgsplit: route=replica */ still outer */ /* pgsplit: consistency=strong */ SELECT 1";
    assert_eq!(
        hints(sql),
        Hints {
            consistency: Some(Consistency::Strong),
            ..Hints::default()
        },
        "a hint nested inside another comment is that comment's text, not a hint"
    );
    assert_eq!(
        hints("/* a /* b /* c */ */ */ /* pgsplit: route=primary */ SELECT 1"),
        route(RouteHint::Primary)
    );
}

#[test]
fn later_values_win() {
    assert_eq!(
        hints("/* pgsplit: route=primary, route=replica */ SELECT 1"),
        route(RouteHint::Replica)
    );
    assert_eq!(
        hints("/* pgsplit: route=replica */ -- pgsplit: route=primary\nSELECT 1"),
        route(RouteHint::Primary)
    );
}

#[test]
fn hints_after_the_first_token_are_ignored() {
    for sql in [
        "SELECT /* pgsplit: route=primary */ 1",
        "SELECT 1 -- pgsplit: route=primary",
        "SELECT 1; /* pgsplit: route=primary */ SELECT 2",
        "(/* pgsplit: route=primary */ SELECT 1)",
        "'/* pgsplit: route=primary */'",
    ] {
        assert_eq!(parse_hints(sql), (Hints::default(), vec![]), "{sql}");
    }
}

#[test]
fn empty_pieces_are_no_mistake() {
    assert_eq!(
        hints("/* pgsplit: route=primary, */ SELECT 1"),
        route(RouteHint::Primary)
    );
    assert_eq!(hints("/* pgsplit: , ,, */ SELECT 1"), Hints::default());
    assert_eq!(hints("/* pgsplit: */ SELECT 1"), Hints::default());
    assert_eq!(hints("/* pgsplit:*/ SELECT 1"), Hints::default());
}

#[test]
fn malformed_pairs_warn_and_the_rest_still_apply() {
    let cases = [
        (
            "route",
            r#"malformed pgsplit hint "route": expected key=value"#,
        ),
        (
            "route=",
            r#"invalid value "" for pgsplit hint route (expected primary or replica)"#,
        ),
        (
            "=primary",
            r#"malformed pgsplit hint "=primary": expected key=value"#,
        ),
        (
            "route=sideways",
            r#"invalid value "sideways" for pgsplit hint route (expected primary or replica)"#,
        ),
        (
            "max_lag=fast",
            r#"invalid value "fast" for pgsplit hint max_lag (expected a duration such as 500ms, 2.5s or 1m)"#,
        ),
        (
            "after=zz",
            r#"invalid value "zz" for pgsplit hint after (bad part "zz": not a WAL position; expected a WAL position such as 16/B374D848, or cluster:position parts separated by commas)"#,
        ),
        (
            "consistency=bounded:soon",
            r#"invalid value "bounded:soon" for pgsplit hint consistency (expected a duration such as 500ms, 2.5s or 1m)"#,
        ),
        (
            "consistency=sometimes",
            r#"invalid value "sometimes" for pgsplit hint consistency (expected eventual, read_your_writes, monotonic, strong or bounded:<duration>)"#,
        ),
        (
            "route=primary=yes",
            r#"invalid value "primary=yes" for pgsplit hint route (expected primary or replica)"#,
        ),
    ];
    for (bad, warning) in cases {
        let sql = format!("/* pgsplit: max_lag=1s, {bad}, after=0/1 */ SELECT 1");
        let (hints, warnings) = parse_hints(&sql);
        assert_eq!(warnings, [HintWarning(warning.into())], "{bad}");
        assert_eq!(hints.max_lag, Some(ms(1_000)), "{bad}");
        assert_eq!(hints.after, Some(CausalToken::everywhere(1)), "{bad}");
    }
}

#[test]
fn unknown_keys_warn() {
    assert_eq!(
        warnings("/* pgsplit: rout=primary, route=replica */ SELECT 1"),
        [
            r#"unknown pgsplit hint "rout" (known: route, consistency, max_lag, after, cache, ttl, shard, shard_key)"#
        ]
    );
    // Read-only, so no hint.
    assert_eq!(
        warnings("/* pgsplit: causal_token=0/1 */ SELECT 1"),
        [
            r#"unknown pgsplit hint "causal_token" (known: route, consistency, max_lag, after, cache, ttl, shard, shard_key)"#
        ]
    );
    assert_eq!(
        parse_hints("/* pgsplit: rout=primary, route=replica */ SELECT 1").0,
        route(RouteHint::Replica)
    );
}

#[test]
fn warnings_quote_and_shorten_what_they_echo() {
    let long = format!("/* pgsplit: {}=1 */", "k".repeat(100_000));
    let [warning] = &warnings(&long)[..] else {
        panic!("one warning expected");
    };
    assert!(warning.len() < 200, "{warning}");
    assert_eq!(
        warnings("/* pgsplit: route=\0 */"),
        [r#"invalid value "\0" for pgsplit hint route (expected primary or replica)"#]
    );
}

#[test]
fn comments_that_only_look_like_hints() {
    for sql in [
        "/* pgsplit route=primary */ SELECT 1",
        "/* not pgsplit: route=primary */ SELECT 1",
        "/** pgsplit: route=primary **/ SELECT 1",
        "/* pgsplit. route=primary */ SELECT 1",
    ] {
        assert_eq!(parse_hints(sql), (Hints::default(), vec![]), "{sql}");
    }
}

#[test]
fn an_unterminated_comment_gives_no_hints() {
    for sql in [
        "/* pgsplit: route=primary",
        "/* pgsplit: route=primary */ /* oops SELECT 1",
        "/* pgsplit: route=sideways */ /* /* */ SELECT 1",
    ] {
        assert_eq!(parse_hints(sql), (Hints::default(), vec![]), "{sql}");
    }
}

/// Text nothing should crash on: every entry point, every odd input.
fn odd_inputs() -> Vec<String> {
    let mut inputs: Vec<String> = [
        "",
        " ",
        "\n\r\t\u{b}\u{c}",
        "/*",
        "*/",
        "/*/",
        "/**/",
        "/* /* */",
        "/* */ */",
        "--",
        "-",
        "-- only a comment",
        "/* a */ -- b",
        "\0",
        "\0/*\0*/\0",
        "/*\0",
        "'",
        "''",
        "\"",
        "\"\"",
        "$$",
        ";",
        ";;;",
        "é",
        "\u{feff}SELECT 1",
        "/* é */ ü",
        "/* pgsplit:é=é */",
        "/* pgsplit: route=prim\u{0}ary */",
        "/* pgsplit:=*/",
        "/* pgsplit:==== */",
        "/* pgsplit:route==primary */",
        "/* pgsplit:consistency=bounded:*/",
        "/* pgsplit:consistency=bounded:bounded:1s*/",
        "/* pgsplit:max_lag=99999999999999999999999999999999999999999h */",
        "/* pgsplit:max_lag=1.2.3s */",
        "/* pgsplit:max_lag=.s */",
        "/* pgsplit:after=/ */",
        "/* pgsplit:after=FFFFFFFFF/0 */",
        "/* pgsplit:after=-1/0 */",
        "/* pgsplit:after='*/",
        "pgsplit:route=primary",
        "SET",
        "SET pgsplit",
        "SET pgsplit.",
        "SET pgsplit.route",
        "SET pgsplit.route =",
        "SET pgsplit.route = '",
        "SET pgsplit.route = 'x''",
        "SET \"pgsplit.route",
        "SHOW \"",
        "RESET",
        "SET LOCAL",
        "SET pgsplit.route = -",
        "SET pgsplit.route = .",
        "SET pgsplit.route = 1..2",
        "SHOW pgsplit.route /*",
        "SET pgsplit.route = 'a' -- trailing",
        "SET é.é = é",
        "SET pgsplit.é = 'é'",
        "\u{10FFFF}\u{10FFFF}",
        "-- \u{2028} pgsplit: route=primary",
    ]
    .map(String::from)
    .to_vec();
    let megabyte = 1 << 20;
    inputs.extend([
        "/*".repeat(megabyte / 2),
        "*/".repeat(megabyte / 2),
        "/**/".repeat(megabyte / 4),
        "--\n".repeat(megabyte / 3),
        format!("{}SELECT 1", "/* x */".repeat(megabyte / 7)),
        format!("/* pgsplit: {} */", "route=primary,".repeat(megabyte / 14)),
        format!("/* pgsplit: max_lag=1{}ms */", "0".repeat(megabyte)),
        format!("SET pgsplit.route = '{}'", "x".repeat(megabyte)),
        format!("SET {}", "a.".repeat(megabyte / 2)),
        format!("SHOW pgsplit.route{}", ";".repeat(megabyte)),
        "\0".repeat(megabyte),
    ]);
    inputs
}

#[test]
fn odd_inputs_never_panic() {
    let inputs = odd_inputs();
    assert!(inputs.len() >= 40);
    for input in &inputs {
        let (hints, warnings) = parse_hints(input);
        let _ = hints.or(&Hints::default());
        for warning in warnings.iter().take(3) {
            assert!(!warning.0.is_empty());
        }
        let _ = session_command(input);
        let _ = setting_from_name(input);
        for setting in Setting::ALL {
            let _ = parse_setting_value(setting, input);
        }
    }
}

#[test]
fn a_megabyte_of_comment_openers_is_quick() {
    let text = "/*".repeat(1 << 19);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(parse_hints(&text), (Hints::default(), vec![]));
        assert_eq!(session_command(&text), None);
    }
    // Linear: ten passes over a megabyte take milliseconds; quadratic would take hours.
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---- settings ------------------------------------------------------------------------------

#[test]
fn setting_names() {
    for (name, setting) in [
        ("pgsplit.consistency", Setting::Consistency),
        ("pgsplit.max_lag", Setting::MaxLag),
        ("pgsplit.after", Setting::After),
        ("pgsplit.causal_token", Setting::CausalToken),
        ("pgsplit.route", Setting::Route),
        ("PGSPLIT.Max_Lag", Setting::MaxLag),
    ] {
        assert_eq!(setting_from_name(name), Some(setting), "{name}");
    }
    for name in [
        "consistency",
        "route",
        "pgsplit.",
        "pgsplit.rout",
        "pgsplit_route",
        "x.route",
    ] {
        assert_eq!(setting_from_name(name), None, "{name}");
    }
    for setting in Setting::ALL {
        assert_eq!(setting_from_name(&setting.to_string()), Some(setting));
    }
    assert_eq!(Setting::MaxLag.to_string(), "pgsplit.max_lag");
    assert!(Setting::CausalToken.is_read_only());
    assert!(!Setting::After.is_read_only());
}

#[test]
fn setting_values() {
    let cases = [
        (
            Setting::Consistency,
            "strong",
            SettingValue::Consistency(Consistency::Strong),
        ),
        (
            Setting::Consistency,
            "'strong'",
            SettingValue::Consistency(Consistency::Strong),
        ),
        (
            Setting::Consistency,
            "'bounded:200ms'",
            SettingValue::Consistency(Consistency::Bounded(ms(200))),
        ),
        (
            Setting::Consistency,
            "read_your_writes",
            SettingValue::Consistency(Consistency::ReadYourWrites),
        ),
        (Setting::MaxLag, "'2.5s'", SettingValue::MaxLag(ms(2_500))),
        (Setting::MaxLag, "500", SettingValue::MaxLag(ms(500))),
        (
            Setting::After,
            "'16/B374D848'",
            SettingValue::After(CausalToken::everywhere(0x16_B374_D848)),
        ),
        (
            Setting::Route,
            "replica",
            SettingValue::Route(RouteHint::Replica),
        ),
        (Setting::Route, "DEFAULT", SettingValue::Default),
        (Setting::MaxLag, " default ", SettingValue::Default),
    ];
    for (setting, text, expected) in cases {
        assert_eq!(parse_setting_value(setting, text), Ok(expected), "{text}");
    }
}

#[test]
fn bad_setting_values() {
    assert_eq!(
        parse_setting_value(Setting::Consistency, "'sometimes'"),
        Err(r#"invalid value for parameter "pgsplit.consistency": "'sometimes'" (expected eventual, read_your_writes, monotonic, strong or bounded:<duration>)"#.into())
    );
    assert_eq!(
        parse_setting_value(Setting::MaxLag, "fast"),
        Err(r#"invalid value for parameter "pgsplit.max_lag": "fast" (expected a duration such as 500ms, 2.5s or 1m)"#.into())
    );
    assert!(parse_setting_value(Setting::After, "zz").is_err());
    assert!(parse_setting_value(Setting::Route, "'primary, replica'").is_err());
    assert!(parse_setting_value(Setting::Route, "").is_err());
    assert_eq!(
        parse_setting_value(Setting::CausalToken, "0/1"),
        Err(r#"parameter "pgsplit.causal_token" cannot be changed"#.into())
    );
}

#[test]
fn hints_hold_session_settings() {
    let mut session = Hints::default();
    session.apply(
        Setting::Consistency,
        SettingValue::Consistency(Consistency::Bounded(ms(200))),
    );
    session.apply(Setting::MaxLag, SettingValue::MaxLag(ms(2_500)));
    session.apply(
        Setting::After,
        SettingValue::After(CausalToken::everywhere(0x16_B374_D848)),
    );
    session.apply(Setting::Route, SettingValue::Route(RouteHint::Replica));
    assert_eq!(
        session.show(Setting::Consistency).as_deref(),
        Some("bounded:200ms")
    );
    assert_eq!(session.show(Setting::MaxLag).as_deref(), Some("2500ms"));
    assert_eq!(session.show(Setting::After).as_deref(), Some("16/B374D848"));
    assert_eq!(session.show(Setting::Route).as_deref(), Some("replica"));
    assert_eq!(session.show(Setting::CausalToken), None);

    // Whatever SHOW prints, SET reads back.
    for setting in [
        Setting::Consistency,
        Setting::MaxLag,
        Setting::After,
        Setting::Route,
    ] {
        let shown = session.show(setting).unwrap_or_default();
        let mut again = Hints::default();
        again.apply(
            setting,
            parse_setting_value(setting, &shown).unwrap_or(SettingValue::Default),
        );
        assert_eq!(again.show(setting), session.show(setting));
    }

    let statement = hints("/* pgsplit: route=primary */ SELECT 1");
    assert_eq!(statement.or(&session).route, Some(RouteHint::Primary));
    assert_eq!(statement.or(&session).max_lag, Some(ms(2_500)));

    session.apply(Setting::Route, SettingValue::Default);
    session.reset(Setting::MaxLag);
    session.reset(Setting::CausalToken);
    assert_eq!(session.route, None);
    assert_eq!(session.max_lag, None);
    assert_eq!(session.show(Setting::Route), None);
    assert!(session.consistency.is_some());
}

#[test]
fn cache_hints() {
    use crate::cache::CacheHint;
    assert_eq!(
        hints("/* pgsplit: cache */ SELECT 1").cache,
        Some(CacheHint::Cache { ttl: None })
    );
    assert_eq!(
        hints("/* pgsplit: cache, ttl=30s */ SELECT 1").cache,
        Some(CacheHint::Cache {
            ttl: Some(ms(30_000))
        })
    );
    assert_eq!(
        hints("/* pgsplit: cache=off */ SELECT 1").cache,
        Some(CacheHint::Off)
    );
    assert_eq!(warnings("/* pgsplit: cache=maybe */ SELECT 1").len(), 1);
    assert_eq!(warnings("/* pgsplit: ttl=soon */ SELECT 1").len(), 1);
}

#[test]
fn shard_hints_name_a_shard_or_a_key() {
    use crate::hint::{ShardHint, shard_hint};
    assert_eq!(
        shard_hint("/* pgsplit: shard=2 */ SELECT 1"),
        Some(ShardHint::Shard("2".into()))
    );
    assert_eq!(
        shard_hint("/* pgsplit: route=primary, shard_key='a b' */ UPDATE t SET v = 1"),
        Some(ShardHint::Key("a b".into()))
    );
    assert_eq!(shard_hint("SELECT 1 /* pgsplit: shard=2 */"), None);
    let (_, warnings) = crate::hint::parse_hints("/* pgsplit: shard=2, shard_key=7 */ SELECT 1");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn shard_settings_name_a_shard_or_a_key() {
    assert_eq!(
        setting_from_name("pgsplit.shard_key"),
        Some(Setting::ShardKey)
    );
    assert_eq!(setting_from_name("PGSPLIT.Shard"), Some(Setting::Shard));
    assert!(Setting::ShardKey.is_shard_choice() && !Setting::Route.is_shard_choice());
    assert_eq!(
        session_command("SET pgsplit.shard_key = '42'"),
        Some(Ok(SessionCommand::Set {
            setting: Setting::ShardKey,
            value: Some("42".into()),
            local: false
        }))
    );
    assert_eq!(
        parse_shard_choice(Setting::ShardKey, "'a b'"),
        Ok(ShardHint::Key("a b".into()))
    );
    assert_eq!(
        parse_shard_choice(Setting::Shard, "shard_b"),
        Ok(ShardHint::Shard("shard_b".into()))
    );
    assert!(parse_shard_choice(Setting::Shard, "''").is_err());
    assert!(parse_shard_choice(Setting::Route, "x").is_err());
    // The session keeps the choice: `Hints` neither holds nor shows it.
    assert!(parse_setting_value(Setting::ShardKey, "42").is_err());
    assert_eq!(Hints::default().show(Setting::ShardKey), None);
}

#[test]
fn only_texts_that_begin_with_a_comment_may_hold_hints() {
    for sql in [
        "/* pgsplit: route=primary */ SELECT 1",
        " \n\t-- pgsplit: route=primary\nSELECT 1",
        "/* app */ SELECT 1",
    ] {
        assert!(may_hold_hints(sql), "{sql}");
    }
    for sql in [
        "SELECT 1 /* pgsplit: route=primary */",
        "",
        "  ",
        "- 1",
        "/",
    ] {
        assert!(!may_hold_hints(sql), "{sql}");
        assert_eq!(hints(sql), Hints::default(), "{sql}");
    }
}
