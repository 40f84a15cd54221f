//! The SET, RESET and SHOW pgsplit.* statements pgsplit answers itself.

use super::*;

// ---- session commands ----------------------------------------------------------------------

fn set(
    setting: Setting,
    value: Option<&str>,
    local: bool,
) -> Option<Result<SessionCommand, String>> {
    Some(Ok(SessionCommand::Set {
        setting,
        value: value.map(String::from),
        local,
    }))
}

#[test]
fn set_forms() {
    let cases = [
        (
            "SET pgsplit.consistency = 'strong'",
            set(Setting::Consistency, Some("strong"), false),
        ),
        (
            "set pgsplit.consistency to strong;",
            set(Setting::Consistency, Some("strong"), false),
        ),
        (
            "SET SESSION pgsplit.route TO 'primary'",
            set(Setting::Route, Some("primary"), false),
        ),
        (
            "SET LOCAL pgsplit.route = replica",
            set(Setting::Route, Some("replica"), true),
        ),
        (
            "Set Local PgSplit.Max_Lag = '2.5s' ;",
            set(Setting::MaxLag, Some("2.5s"), true),
        ),
        (
            "SET pgsplit.max_lag = 500",
            set(Setting::MaxLag, Some("500"), false),
        ),
        (
            "SET pgsplit.max_lag = 500ms",
            set(Setting::MaxLag, Some("500ms"), false),
        ),
        (
            "SET pgsplit.max_lag = 2.5",
            set(Setting::MaxLag, Some("2.5"), false),
        ),
        (
            "SET pgsplit.max_lag = -1",
            set(Setting::MaxLag, Some("-1"), false),
        ),
        (
            "SET pgsplit.after = '16/B374D848'",
            set(Setting::After, Some("16/B374D848"), false),
        ),
        (
            "SET pgsplit.consistency = 'bounded:200ms'",
            set(Setting::Consistency, Some("bounded:200ms"), false),
        ),
        (
            "SET pgsplit.consistency = STRONG",
            set(Setting::Consistency, Some("strong"), false),
        ),
        (
            "SET pgsplit.consistency = 'It''s'",
            set(Setting::Consistency, Some("It's"), false),
        ),
        (
            "SET pgsplit.consistency = DEFAULT",
            set(Setting::Consistency, None, false),
        ),
        (
            "SET LOCAL pgsplit.consistency TO default;",
            set(Setting::Consistency, None, true),
        ),
        (
            "SET pgsplit.consistency = 'default'",
            set(Setting::Consistency, Some("default"), false),
        ),
        (
            "SET pgsplit.route = a, 'b'",
            set(Setting::Route, Some("a, b"), false),
        ),
        (
            "SET pgsplit.causal_token = '0/1'",
            set(Setting::CausalToken, Some("0/1"), false),
        ),
        (
            "SET \"pgsplit\".\"route\" = primary",
            set(Setting::Route, Some("primary"), false),
        ),
        (
            "SET \"pgsplit.route\" = primary",
            set(Setting::Route, Some("primary"), false),
        ),
        (
            "SET pgsplit . route = primary",
            set(Setting::Route, Some("primary"), false),
        ),
        (
            "/* app: x */ -- note\n  SET /* here too */ pgsplit.route = primary -- bye\n;\n",
            set(Setting::Route, Some("primary"), false),
        ),
        (
            "/* pgsplit: route=replica */ SET pgsplit.route=primary;;",
            set(Setting::Route, Some("primary"), false),
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(session_command(sql), expected, "{sql}");
    }
}

#[test]
fn reset_and_show_forms() {
    let cases = [
        (
            "RESET pgsplit.route",
            SessionCommand::Reset {
                setting: Setting::Route,
            },
        ),
        (
            "reset PGSPLIT.MAX_LAG;",
            SessionCommand::Reset {
                setting: Setting::MaxLag,
            },
        ),
        (
            "SHOW pgsplit.consistency",
            SessionCommand::Show {
                setting: Setting::Consistency,
            },
        ),
        (
            "show pgsplit.causal_token ;",
            SessionCommand::Show {
                setting: Setting::CausalToken,
            },
        ),
        (
            "  /* x */ SHOW pgsplit.after",
            SessionCommand::Show {
                setting: Setting::After,
            },
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(session_command(sql), Some(Ok(expected)), "{sql}");
    }
}

#[test]
fn unknown_pgsplit_settings_are_errors() {
    for (sql, name) in [
        ("SET pgsplit.unknown = 1", "pgsplit.unknown"),
        ("SET LOCAL pgsplit.Rout TO 'primary'", "pgsplit.rout"),
        ("RESET pgsplit.nope", "pgsplit.nope"),
        ("SHOW pgsplit.route.extra", "pgsplit.route.extra"),
        ("SHOW pgsplit.causal", "pgsplit.causal"),
    ] {
        assert_eq!(
            session_command(sql),
            Some(Err(format!(
                "unrecognized configuration parameter \"{name}\""
            ))),
            "{sql}"
        );
    }
}

#[test]
fn everything_else_goes_to_the_server() {
    for sql in [
        "SELECT 1",
        "SET search_path = public",
        "SET search_path TO pgsplit",
        "SET statement_timeout = '5s'",
        "SET SESSION AUTHORIZATION bob",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "SET TIME ZONE 'UTC'",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET ROLE admin",
        "SET pgsplit = 1",
        "SET myext.route = primary",
        "RESET ALL",
        "RESET search_path",
        "SHOW ALL",
        "SHOW server_version",
        "SHOW pgsplit",
        "DISCARD ALL",
        "-- SET pgsplit.route = primary\nSELECT 1",
        "/* SET pgsplit.route = primary */ SELECT 1",
        "SELECT 'SET pgsplit.route = primary'",
        // Several statements in one string go to the server whole.
        "SET pgsplit.route = primary; SELECT 1",
        "SHOW pgsplit.route; SHOW pgsplit.route",
        "SET pgsplit.route = primary; /* x */ SET pgsplit.route = replica",
        // What PostgreSQL rejects as a syntax error, it reports itself.
        "SET pgsplit.route primary",
        "SET pgsplit.route =",
        "SET pgsplit.route = primary garbage",
        "SET pgsplit.route = primary,",
        "SET pgsplit.route = DEFAULT, primary",
        "SET pgsplit.route = 'unterminated",
        "SET pgsplit.route = (primary)",
        "SET pgsplit. = 1",
        "SET .route = 1",
        "SHOW pgsplit.route extra",
        "RESET pgsplit.route = 1",
        "SET pgsplit.route = primary /* unterminated",
        "SET \"pgsplit.route = 1",
        "SETpgsplit.route = 1",
        "SET LOCAL LOCAL pgsplit.route = 1",
        "",
        ";",
    ] {
        assert_eq!(session_command(sql), None, "{sql}");
    }
}
