//! Parsing the addresses a configuration names: server nodes (`host:port`, where the host may be
//! a DNS name or, libpq's way, the directory of the server's Unix-domain socket) and local
//! listeners (a numeric IP and a port, because we bind to them).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// What every node address error ends with, so the operator sees the allowed shape.
const NODE_SHAPE: &str = "expected \"host:port\" (a name, an IPv4 address, a bracketed IPv6 \
                          address such as \"[::1]:5432\", or the directory of the server's Unix \
                          socket such as \"/var/run/postgresql:5432\")";

/// The longest socket path Linux accepts (`sun_path` holds 108 bytes with the closing NUL).
const MAX_SOCKET_PATH: usize = 107;

/// True when a node's host is a socket directory (an absolute path, as libpq reads `host`).
pub fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

/// The file of the server listening on `port` in socket directory `dir`, as PostgreSQL names it.
pub fn unix_socket_path(dir: &str, port: u16) -> PathBuf {
    PathBuf::from(format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/')))
}

/// Host and port of an address the configuration built with [`join_host_port`] (an IPv6 host
/// without its brackets); 5432 where the port cannot be read.
pub fn split_node_addr(addr: &str) -> (&str, u16) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "5432"));
    (
        host.trim_start_matches('[').trim_end_matches(']'),
        port.parse().unwrap_or(5432),
    )
}

/// Parses a server address into host and port. An IPv6 host is returned without its brackets,
/// the form connection libraries want.
pub(crate) fn parse_node_address(text: &str) -> Result<(String, u16), String> {
    split_host_port(text)
        .map_err(|reason| format!("invalid address {text:?}: {reason}; {NODE_SHAPE}"))
}

/// Parses the address of a local listener. It must be numeric: a name could resolve to several
/// addresses, and binding to "whichever came first" is a surprise nobody wants.
pub(crate) fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid listen address {text:?}; expected a numeric \"ip:port\" such as \
             \"127.0.0.1:6432\", \"0.0.0.0:6432\" or \"[::]:6432\""
        )
    })
}

/// Formats host and port back into one address, bracketing IPv6 hosts.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !is_socket_dir(host) {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(text: &str) -> Result<(String, u16), String> {
    if let Some(rest) = text.strip_prefix('[') {
        return split_bracketed(rest);
    }
    if is_socket_dir(text) {
        return split_socket_dir(text);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "the port is missing".to_owned())?;
    if host.contains(':') {
        return Err("an IPv6 address needs brackets".to_owned());
    }
    check_host(host)?;
    Ok((host.to_owned(), parse_port(port)?))
}

fn split_bracketed(rest: &str) -> Result<(String, u16), String> {
    let (host, after) = rest
        .split_once(']')
        .ok_or_else(|| "the closing ']' is missing".to_owned())?;
    host.parse::<Ipv6Addr>()
        .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
    let port = after
        .strip_prefix(':')
        .ok_or_else(|| "the port is missing".to_owned())?;
    Ok((host.to_owned(), parse_port(port)?))
}

/// "/dir:port": the port follows the last ':', so a directory may contain ':' itself.
fn split_socket_dir(text: &str) -> Result<(String, u16), String> {
    let (dir, port) = text.rsplit_once(':').ok_or_else(|| {
        "the port is missing (it names the socket file, .s.PGSQL.<port>)".to_owned()
    })?;
    let port = parse_port(port)?;
    let path = unix_socket_path(dir, port);
    let length = path.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        return Err(format!(
            "the socket path {} is {length} bytes long; Unix sockets allow at most {MAX_SOCKET_PATH}",
            path.display()
        ));
    }
    Ok((dir.to_owned(), port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if host.parse::<Ipv4Addr>().is_ok() || is_host_name(host) {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is neither a host name nor an IPv4 address"
        ))
    }
}

/// A DNS name: dot-separated labels of letters, digits, '-' and '_' (the last is not strictly
/// DNS, but container and service names use it).
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ if port.is_empty() => Err("the port is missing".to_owned()),
        _ => Err("port must be 1-65535".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_ipv4_and_bracketed_ipv6() {
        let ok = |text: &str| parse_node_address(text).ok();
        assert_eq!(ok("db1:5432"), Some(("db1".into(), 5432)));
        assert_eq!(ok("db.example.com:1"), Some(("db.example.com".into(), 1)));
        assert_eq!(ok("pg_primary:5432"), Some(("pg_primary".into(), 5432)));
        assert_eq!(ok("10.0.0.7:65535"), Some(("10.0.0.7".into(), 65535)));
        assert_eq!(ok("[::1]:5433"), Some(("::1".into(), 5433)));
        assert_eq!(ok("[fe80::1]:5432"), Some(("fe80::1".into(), 5432)));
    }

    #[test]
    fn rejections_say_why_and_what_is_allowed() {
        let reason = |text: &str| parse_node_address(text).err().unwrap_or_default();
        assert_eq!(
            reason("127.0.0.1:99999"),
            format!("invalid address \"127.0.0.1:99999\": port must be 1-65535; {NODE_SHAPE}")
        );
        assert!(reason("db1").contains("the port is missing"));
        assert!(reason("db1:").contains("the port is missing"));
        assert!(reason("db1:0").contains("port must be 1-65535"));
        assert!(reason("db1:x").contains("port must be 1-65535"));
        assert!(reason(":5432").contains("the host is missing"));
        assert!(reason("::1:5432").contains("needs brackets"));
        assert!(reason("[::1]5432").contains("the port is missing"));
        assert!(reason("[::1:5432").contains("closing ']'"));
        assert!(reason("[nope]:5432").contains("not an IPv6 address"));
        assert!(reason("bad host:5432").contains("neither a host name"));
        assert!(reason("a..b:5432").contains("neither a host name"));
    }

    #[test]
    fn a_socket_directory_is_a_host_and_the_port_names_its_file() {
        let ok = |text: &str| parse_node_address(text).ok();
        assert_eq!(
            ok("/var/run/postgresql:5432"),
            Some(("/var/run/postgresql".into(), 5432))
        );
        assert_eq!(ok("/odd:dir:5433"), Some(("/odd:dir".into(), 5433)));
        let reason = |text: &str| parse_node_address(text).err().unwrap_or_default();
        assert!(reason("/var/run/postgresql").contains("the port is missing"));
        assert!(reason("/tmp:0").contains("port must be 1-65535"));
        let long = format!("/{}:5432", "d".repeat(100));
        assert!(reason(&long).contains("at most 107"), "{}", reason(&long));
        assert_eq!(
            unix_socket_path("/var/run/postgresql/", 5432),
            PathBuf::from("/var/run/postgresql/.s.PGSQL.5432")
        );
    }

    #[test]
    fn joined_addresses_split_back() {
        for (host, port) in [("db1", 5432), ("::1", 5433), ("/var/run/postgresql", 6000)] {
            assert_eq!(split_node_addr(&join_host_port(host, port)), (host, port));
        }
        assert_eq!(join_host_port("/odd:dir", 5432), "/odd:dir:5432");
    }

    #[test]
    fn listen_addresses_must_be_numeric() {
        assert!(parse_listen_address("127.0.0.1:6432").is_ok());
        assert!(parse_listen_address("[::]:6432").is_ok());
        let err = parse_listen_address("localhost:6432")
            .err()
            .unwrap_or_default();
        assert!(err.contains("numeric"), "{err}");
    }

    #[test]
    fn join_brackets_ipv6() {
        assert_eq!(join_host_port("::1", 5432), "[::1]:5432");
        assert_eq!(join_host_port("db1", 5432), "db1:5432");
    }
}
