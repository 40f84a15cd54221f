use super::*;
use crate::shard::map::Placement;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sharding: ShardingConfig,
}

const CLUSTERS: [&str; 4] = ["main", "a", "b", "c"];

fn parse(text: &str) -> ShardingConfig {
    toml::from_str::<File>(text).expect("valid TOML").sharding
}

fn build(text: &str) -> Result<Sharding, ConfigIssue> {
    let clusters = CLUSTERS.map(String::from);
    parse(text).build(&clusters, &|_| tokio_postgres::Config::new())
}

fn issue(text: &str) -> String {
    match build(text) {
        Ok(_) => panic!("expected a problem in:\n{text}"),
        Err(issue) => issue.to_string(),
    }
}

const FULL: &str = r#"
[sharding]
default = "main"
replicated = ["countries"]
tables = [
  { name = "users", key = "id", key_type = "int8", map = "by_id" },
  { name = "orders", key = "user_id", key_type = "int8", map = "by_id" },
  { name = "events", key = "seq", key_type = "int4", map = "by_range" },
  { name = "shops", key = "region", key_type = "text", map = "by_region" },
  { name = "tenants", key = "tenant", key_type = "uuid", map = "by_tenant" },
  { name = "sessions", key = "sid", key_type = "text", map = "ring" },
]

[[sharding.maps]]
name = "by_id"
kind = "hash"
shards = ["a", "b", "c"]

[[sharding.maps]]
name = "by_range"
kind = "range"
shards = ["a", "b"]
ranges = [{ shard = "a", to = 1000 }, { shard = "b", from = "1000" }]

[[sharding.maps]]
name = "by_region"
kind = "list"
shards = ["a", "b"]
lists = [{ shard = "a", values = ["fr", "de"] }]
default_shard = "b"

[[sharding.maps]]
name = "by_tenant"
kind = "directory"
shards = ["a", "b"]
directory = { cluster = "main", table = "tenants", key_column = "tenant", cache_ttl = "5m" }

[[sharding.maps]]
name = "ring"
kind = "consistent_hash"
shards = ["a", "b", "c"]
virtual_nodes = 64
"#;

#[tokio::test]
async fn a_full_section_builds_and_places_keys() {
    let sharding = build(FULL).expect("valid");
    assert_eq!(sharding.maps.len(), 5);
    assert_eq!(sharding.placement("countries"), Placement::Replicated);
    assert_eq!(
        sharding.placement("anything_else"),
        Placement::Default("main")
    );
    assert!(matches!(sharding.placement("users"), Placement::Sharded(t) if t.key_column == "id"));
    let cluster = |table: &'static str, key: &'static str| {
        let sharding = sharding.clone();
        async move {
            sharding
                .cluster_for(table, key)
                .await
                .map(|r| r.map(String::from))
        }
    };
    assert_eq!(cluster("events", "999").await, Some(Ok("a".into())));
    assert_eq!(cluster("events", "1000").await, Some(Ok("b".into())));
    assert_eq!(cluster("shops", "de").await, Some(Ok("a".into())));
    assert_eq!(cluster("shops", "jp").await, Some(Ok("b".into())));
    assert!(cluster("countries", "1").await.is_none());
    let bad = cluster("users", "abc").await.expect("sharded");
    assert_eq!(
        bad.unwrap_err().to_string(),
        "invalid input syntax for type bigint: \"abc\""
    );
    // users and orders share a map: equal keys, same shard.
    assert_eq!(cluster("users", "42").await, cluster("orders", "42").await);
}

#[test]
fn unknown_keys_are_refused_by_serde() {
    let text = "[sharding]\ntables = [{ name = \"t\", key = \"k\", key_type = \"int8\", map = \"m\", extra = 1 }]";
    assert!(toml::from_str::<File>(text).is_err());
    let bad_type =
        "[sharding]\ntables = [{ name = \"t\", key = \"k\", key_type = \"float8\", map = \"m\" }]";
    assert!(toml::from_str::<File>(bad_type).is_err());
}

#[test]
fn two_phase_commit_is_off_unless_asked_and_must_be_a_boolean() {
    assert!(!build(FULL).expect("valid").two_phase_commit);
    let on = FULL.replace("[sharding]\n", "[sharding]\ntwo_phase_commit = true\n");
    assert!(build(&on).expect("valid").two_phase_commit);
    let text = "[sharding]\ntwo_phase_commit = \"yes\"";
    assert!(toml::from_str::<File>(text).is_err());
}

fn with_map(map: &str) -> String {
    format!(
        "[sharding]\ntables = [{{ name = \"t\", key = \"k\", key_type = \"int4\", map = \"m\" }}]\n\
         [[sharding.maps]]\nname = \"m\"\n{map}"
    )
}

#[test]
fn problems_name_their_key_path() {
    let cases = [
        (
            with_map("kind = \"hash\"\nshards = [\"a\", \"nowhere\"]"),
            "sharding.maps[0].shards[1]: no cluster is named \"nowhere\"; the [[clusters]] are: a, b, c, main",
        ),
        (
            with_map("kind = \"hash\"\nshards = [\"a\", \"a\"]"),
            "sharding.maps[0].shards[1]: cluster \"a\" is listed twice; each shard is a different cluster",
        ),
        (
            with_map("kind = \"hash\"\nshards = []"),
            "sharding.maps[0].shards: list at least one shard (a cluster name from [[clusters]])",
        ),
        (
            with_map(
                "kind = \"range\"\nshards = [\"a\"]\nranges = [{ shard = \"a\", to = \"ten\" }]",
            ),
            "sharding.maps[0].ranges[0].to: invalid input syntax for type integer: \"ten\" (the map's tables have key type integer)",
        ),
        (
            with_map(
                "kind = \"range\"\nshards = [\"a\", \"b\"]\nranges = [{ shard = \"a\", to = 10 }, { shard = \"b\", from = 5 }]",
            ),
            "sharding.maps[0]: range map \"m\" has overlapping ranges: the range [-infinity, 10) of shard \"a\" and the range [5, infinity) of shard \"b\"",
        ),
        (
            with_map("kind = \"range\"\nshards = [\"a\"]\nranges = [{ shard = \"b\" }]"),
            "sharding.maps[0].ranges[0].shard: \"b\" is not one of this map's shards (a)",
        ),
        (
            with_map(
                "kind = \"list\"\nshards = [\"a\", \"b\"]\nlists = [{ shard = \"a\", values = [1] }, { shard = \"b\", values = [\"1\"] }]",
            ),
            "sharding.maps[0]: list map \"m\" lists the value 1 for shard \"a\" and again for shard \"b\": a value belongs to one shard",
        ),
        (
            with_map("kind = \"hash\"\nshards = [\"a\"]\nvirtual_nodes = 8"),
            "sharding.maps[0].virtual_nodes: `virtual_nodes` belongs to maps of kind = \"consistent_hash\", and this map is of kind \"hash\"",
        ),
        (
            with_map("kind = \"range\"\nshards = [\"a\"]"),
            "sharding.maps[0].ranges: a map of kind = \"range\" needs `ranges`",
        ),
        (
            with_map("kind = \"consistent_hash\"\nshards = [\"a\"]\nvirtual_nodes = 0"),
            "sharding.maps[0].virtual_nodes: must be at least 1",
        ),
        (
            with_map(
                "kind = \"directory\"\nshards = [\"a\"]\ndirectory = { cluster = \"main\", table = \"d\", key_column = \"k\", cache_ttl = \"soon\" }",
            ),
            "sharding.maps[0].directory.cache_ttl: invalid duration \"soon\": expected number at 0; write a number and a unit, such as \"500ms\" or \"5m\"",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(issue(&text), expected, "for:\n{text}");
    }
}

#[test]
fn tables_and_maps_must_match_up() {
    let unused = with_map(
        "kind = \"hash\"\nshards = [\"a\"]\n[[sharding.maps]]\nname = \"spare\"\nkind = \"hash\"\nshards = [\"b\"]",
    );
    assert_eq!(
        issue(&unused),
        "sharding.maps[1].name: no table in sharding.tables uses map \"spare\"; name it in a table or remove it"
    );
    let missing =
        "[sharding]\ntables = [{ name = \"t\", key = \"k\", key_type = \"int4\", map = \"m\" }]";
    assert_eq!(
        issue(missing),
        "sharding.tables[0].map: no map is named \"m\"; name one of sharding.maps"
    );
    let mixed = "[sharding]\ntables = [\
        { name = \"t\", key = \"k\", key_type = \"int4\", map = \"m\" },\
        { name = \"u\", key = \"k\", key_type = \"text\", map = \"m\" }]\n\
        [[sharding.maps]]\nname = \"m\"\nkind = \"hash\"\nshards = [\"a\"]";
    assert!(issue(mixed).starts_with("sharding.tables[1].key_type: table \"u\" has key type text"));
    let both = with_map("kind = \"hash\"\nshards = [\"a\"]")
        .replace("[sharding]\n", "[sharding]\nreplicated = [\"x\", \"t\"]\n");
    assert_eq!(
        issue(&both),
        "sharding.replicated[1]: table \"t\" is both sharded and replicated; choose one"
    );
    let default = "[sharding]\ndefault = \"z\"";
    assert!(issue(default).starts_with("sharding.default: no cluster is named \"z\""));
    assert!(build("[sharding]").is_ok(), "an empty section is valid");
}
