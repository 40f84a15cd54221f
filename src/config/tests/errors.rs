//! Every kind of bad config names its file, line and key.

use super::*;

#[test]
fn errors_name_the_exact_line_and_key() {
    // (configuration, line, key, words the message must contain)
    let cases: Vec<(String, usize, &str, &str)> = vec![
        // Syntax.
        (
            lines(&["listen = \"127.0.0.1:6432\"", "[pool", "mode = \"session\""]),
            2,
            "pool",
            "syntax error: unclosed table",
        ),
        (
            lines(&[
                "[pool]",
                "mode = \"session\"",
                "mode = \"transaction\"",
                MINIMAL,
            ]),
            3,
            "pool.mode",
            "syntax error: duplicate key",
        ),
        (
            lines(&[MINIMAL, "[timeouts]", "connect = 5 s"]),
            4,
            "timeouts.connect",
            "syntax error",
        ),
        (
            lines(&[MINIMAL, "replicas = ]"]),
            3,
            "clusters[0].replicas",
            "syntax error",
        ),
        (
            lines(&["[timeouts]", "connect = \"5s", MINIMAL]),
            2,
            "timeouts.connect",
            "syntax error",
        ),
        (
            lines(&["# café ☕", "[pool]", "mode = \"sessión\"", MINIMAL]),
            3,
            "pool.mode",
            "unknown value `sessión`",
        ),
        // Unknown keys, with the allowed ones.
        (
            lines(&[
                "[pool]",
                "mode = \"session\"",
                "max_connections = 5",
                MINIMAL,
            ]),
            3,
            "pool.max_connections",
            "unknown key `max_connections`, expected one of `mode`, `max_server_connections`",
        ),
        (
            lines(&["liste = \"127.0.0.1:6432\"", MINIMAL]),
            1,
            "liste",
            "unknown key `liste`",
        ),
        (
            lines(&[
                "[[clusters]]",
                "primary = { addr = \"a:1\" }",
                "replicas = [",
                "  { addr = \"b:1\" },",
                "  { adr = \"c:1\" },",
                "]",
            ]),
            5,
            "clusters[0].replicas[1].adr",
            "unknown key `adr`, expected one of `name`, `addr`, `weight`",
        ),
        // Wrong types and bad values.
        (
            lines(&["[pool]", "max_server_connections = \"ten\"", MINIMAL]),
            2,
            "pool.max_server_connections",
            "invalid type: string \"ten\"",
        ),
        (
            lines(&["[limits]", "max_client_connections = -1", MINIMAL]),
            2,
            "limits.max_client_connections",
            "expected a whole number, 0 or more",
        ),
        (
            lines(&["[pool]", "mode = \"statement\"", MINIMAL]),
            2,
            "pool.mode",
            "unknown value `statement`, expected `session` or `transaction`",
        ),
        (
            lines(&["[timeouts]", "shutdown = 30", MINIMAL]),
            2,
            "timeouts.shutdown",
            "expected a duration string such as \"100ms\", \"5s\" or \"2m\"",
        ),
        (
            lines(&["[timeouts]", "client_login = \"1 fortnight\"", MINIMAL]),
            2,
            "timeouts.client_login",
            "invalid duration \"1 fortnight\"",
        ),
        (
            lines(&["listen = \"localhost:6432\"", MINIMAL]),
            1,
            "listen",
            "expected a numeric \"ip:port\"",
        ),
        (
            lines(&[
                "[[clusters]]",
                "name = \"main\"",
                "primary = { addr = \"127.0.0.1:5432\" }",
                "replicas = [",
                "  { addr = \"127.0.0.1:5433\" },",
                "  { addr = \"127.0.0.1:99999\" },",
                "]",
            ]),
            6,
            "clusters[0].replicas[1].addr",
            "invalid address \"127.0.0.1:99999\": port must be 1-65535; expected \"host:port\"",
        ),
        (
            lines(&["[[clusters]]", "name = \"main\"", "replicas = []"]),
            1,
            "clusters[0].primary",
            "this key is required",
        ),
        (
            lines(&[MINIMAL, "[[users]]", "name = \"app\"", "auth = \"cert\""]),
            5,
            "users[0].auth",
            "unknown value `cert`, expected one of `trust`, `password`, `md5`, `scram-sha-256`",
        ),
        (
            lines(&[MINIMAL, "load_balancing = \"least_conn\""]),
            3,
            "clusters[0].load_balancing",
            "unknown value `least_conn`, expected one of `round_robin`, `weighted`, \
             `least_connections`, `random`, `least_response_time`, `client_hash`, `sticky`",
        ),
        (
            lines(&[MINIMAL, "causal_token = \"lazy\""]),
            3,
            "clusters[0].causal_token",
            "unknown value `lazy`, expected `at_commit` or `on_read`",
        ),
        (
            lines(&[
                "[[clusters]]",
                "primary = { addr = \"a:1\" }",
                "replicas = [ { addr = \"b:1\", weight = -1 } ]",
            ]),
            3,
            "clusters[0].replicas[0].weight",
            "invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
        ),
        (
            lines(&[
                "[[clusters]]",
                "primary = { addr = \"a:1\", weight = \"heavy\" }",
            ]),
            2,
            "clusters[0].primary.weight",
            "invalid type: string \"heavy\", expected a whole number from 0 to 4294967295",
        ),
        (
            lines(&[MINIMAL, "primary_read_weight = 4294967296"]),
            3,
            "clusters[0].primary_read_weight",
            "expected a whole number from 0 to 4294967295",
        ),
        (
            lines(&["[routing]", "classify_cache_bytes = -1", MINIMAL]),
            2,
            "routing.classify_cache_bytes",
            "expected a whole number, 0 or more",
        ),
        (
            lines(&["[routing]", "read_only_function = []", MINIMAL]),
            2,
            "routing.read_only_function",
            "unknown key `read_only_function`, expected `read_only_functions` or \
             `classify_cache_bytes`",
        ),
        // Validation.
        (
            lines(&[
                "[[clusters]]",
                "load_balancing = \"weighted\"",
                "primary = { addr = \"a:1\" }",
                "replicas = [ { addr = \"b:1\", weight = 0 } ]",
            ]),
            2,
            "clusters[0].load_balancing",
            "every read candidate of cluster \"main\" has weight 0, so \"weighted\" has \
             nothing to weigh; give a replica (or `primary_read_weight`) a weight above 0",
        ),
        (
            lines(&[
                "[routing]",
                "read_only_functions = [",
                "  \"ok\",",
                "  \"public.\",",
                "]",
                MINIMAL,
            ]),
            4,
            "routing.read_only_functions[1]",
            "invalid function name \"public.\"; write `name` or `schema.name`",
        ),
        (
            lines(&["[routing]", "read_only_functions = [\"a.b.c\"]", MINIMAL]),
            2,
            "routing.read_only_functions[0]",
            "invalid function name \"a.b.c\"",
        ),
        (
            lines(&["[routing]", "read_only_functions = [\"f()\"]", MINIMAL]),
            2,
            "routing.read_only_functions[0]",
            "invalid function name \"f()\"",
        ),
        (
            lines(&["[routing]", "read_only_functions = [\"\"]", MINIMAL]),
            2,
            "routing.read_only_functions[0]",
            "invalid function name \"\"",
        ),
        (
            lines(&[
                "[routing]",
                &format!("read_only_functions = [\"{}\"]", "f".repeat(64)),
                MINIMAL,
            ]),
            2,
            "routing.read_only_functions[0]",
            "at most 63 characters",
        ),
        (
            lines(&[
                "[routing]",
                "read_only_functions = [\"s.f\", \"S.F\"]",
                MINIMAL,
            ]),
            2,
            "routing.read_only_functions[1]",
            "duplicate function \"s.f\", already given at routing.read_only_functions[0]",
        ),
        (
            lines(&["listen = \"127.0.0.1:6432\""]),
            1,
            "clusters",
            "at least one [[clusters]] section is required",
        ),
        (
            lines(&["[limits]", "max_message_size = 512", MINIMAL]),
            2,
            "limits.max_message_size",
            "512 bytes is out of range; allowed: 1024 to 2147483647",
        ),
        (
            lines(&["[pool]", "max_server_connections = 0", MINIMAL]),
            2,
            "pool.max_server_connections",
            "must be at least 1, not 0",
        ),
        (
            lines(&["[pool]", "checkout_timeout = \"0s\"", MINIMAL]),
            2,
            "pool.checkout_timeout",
            "must be longer than zero",
        ),
        (
            lines(&["worker_threads = 5000", MINIMAL]),
            1,
            "worker_threads",
            "must be at most 1024 (0: one per CPU core), not 5000",
        ),
        (
            lines(&[
                "listen = \"127.0.0.1:6432\"",
                "admin = \"127.0.0.1:6432\"",
                MINIMAL,
            ]),
            2,
            "admin",
            "cannot share the listen address",
        ),
        (
            lines(&[
                MINIMAL,
                "[[clusters]]",
                "name = \"main\"",
                "databases = [\"x\"]",
                "primary = { addr = \"b:1\" }",
            ]),
            4,
            "clusters[1].name",
            "duplicate cluster name \"main\", already given at clusters[0].name",
        ),
        (
            lines(&[
                "[[clusters]]",
                "primary = { name = \"pg1\", addr = \"a:1\" }",
                "[[clusters]]",
                "name = \"other\"",
                "databases = [\"x\"]",
                "primary = { addr = \"b:1\" }",
                "replicas = [ { name = \"pg1\", addr = \"c:1\" } ]",
            ]),
            7,
            "clusters[1].replicas[0].name",
            "duplicate node name \"pg1\", already given at clusters[0].primary.name",
        ),
        (
            lines(&[
                MINIMAL,
                "[[clusters]]",
                "name = \"other\"",
                "primary = { addr = \"b:1\" }",
            ]),
            3,
            "clusters[1].databases",
            "only the first cluster may leave `databases` empty",
        ),
        (
            lines(&[
                "[[clusters]]",
                "databases = [\"app\"]",
                "primary = { addr = \"a:1\" }",
                "[[clusters]]",
                "name = \"other\"",
                "databases = [",
                "  \"reports\",",
                "  \"app\",",
                "]",
                "primary = { addr = \"b:1\" }",
            ]),
            8,
            "clusters[1].databases[1]",
            "duplicate database \"app\", already given at clusters[0].databases[0]; each \
             database is served by one cluster only",
        ),
        (
            lines(&[
                "[[clusters]]",
                "name = \"my cluster\"",
                "primary = { addr = \"a:1\" }",
            ]),
            2,
            "clusters[0].name",
            "invalid name \"my cluster\" for a cluster",
        ),
        (
            lines(&[
                MINIMAL,
                "[[users]]",
                "name = \"app\"",
                "password = \"a\"",
                "[[users]]",
                "name = \"app\"",
                "password = \"b\"",
            ]),
            7,
            "users[1].name",
            "duplicate user \"app\"",
        ),
        (
            lines(&[MINIMAL, "[[users]]", "name = \"app\""]),
            3,
            "users[0].password",
            "auth = \"scram-sha-256\" needs a plain password or a SCRAM-SHA-256 verifier",
        ),
        (
            lines(&[
                MINIMAL,
                "[[users]]",
                "name = \"app\"",
                "auth = \"md5\"",
                &format!("password = \"{VERIFIER}\""),
            ]),
            6,
            "users[0].password",
            "auth = \"md5\" needs a plain password or an md5 hash (\"md5\" and 32 lowercase hex \
             digits); this is a SCRAM-SHA-256 verifier",
        ),
        (
            lines(&[
                MINIMAL,
                "[[users]]",
                "name = \"app\"",
                "password = \"md56a422f785c9e20873908ce25d1736ae2\"",
                "auth = \"password\"",
            ]),
            5,
            "users[0].password",
            "auth = \"password\" needs a plain password",
        ),
        (
            lines(&[
                MINIMAL,
                "[[users]]",
                "name = \"app\"",
                "password = \"SCRAM-SHA-256$4096:abc$def\"",
            ]),
            5,
            "users[0].password",
            "malformed SCRAM-SHA-256 verifier",
        ),
    ];
    for (text, line, key, words) in &cases {
        let (got_line, got_key, message) = error(text);
        assert_eq!(got_line, Some(*line), "line of: {message}\n{text}");
        assert_eq!(got_key, *key, "key of: {message}\n{text}");
        assert!(
            message.starts_with(&format!("test.toml:{line}: {key}: ")),
            "prefix of: {message}"
        );
        assert!(
            message.contains(words),
            "{message}\nshould contain: {words}"
        );
    }
}

#[test]
fn a_syntax_error_outside_any_key_still_names_its_line() {
    let (line, key, message) = error(&lines(&["# comment", "this is not toml", MINIMAL]));
    assert_eq!(line, Some(2));
    assert_eq!(key, "");
    assert!(
        message.starts_with("test.toml:2: syntax error"),
        "{message}"
    );
}
