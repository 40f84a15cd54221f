//! Parsing the addresses a configuration names: server nodes (`host:port`, where the host may be
//! a DNS name) and local listeners (a numeric IP and a port, because we bind to them).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// What every node address error ends with, so the operator sees the allowed shape.
const NODE_SHAPE: &str = "expected \"host:port\" (a name, an IPv4 address or a bracketed IPv6 \
                          address such as \"[::1]:5432\")";

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
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(text: &str) -> Result<(String, u16), String> {
    if let Some(rest) = text.strip_prefix('[') {
        return split_bracketed(rest);
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
