//! Access rules in the spirit of `pg_hba.conf`: which users may reach which databases from which
//! client addresses. Rules are tried in file order and the first that matches decides; with no
//! rules at all everyone may connect (authentication still applies).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

use crate::config::AccessRule;

mod lookup;
mod slots;

pub use lookup::AuthQuery;
pub use slots::{ClientSlot, ClientSlots, UserSlot, UserSlots};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessAction {
    Allow,
    Reject,
}

/// An address range: `10.0.0.0/8`, `::1/128`, or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range. IPv4 clients reached over an IPv6 socket
    /// (`::ffff:a.b.c.d`) match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// The first `prefix` bits of `a` and `b` are equal.
fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid address range {text:?}; expected an address or address/prefix, such \
                 as \"10.0.0.0/8\", \"127.0.0.1\" or \"::1/128\""
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(format!(
                "invalid address range {text:?}: the prefix length is at most {max}"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The login a rule is matched against.
pub struct Login<'a> {
    pub user: &'a str,
    pub database: &'a str,
    pub address: IpAddr,
}

impl AccessRule {
    fn matches(&self, login: &Login<'_>) -> bool {
        let listed =
            |names: &[String], name: &str| names.is_empty() || names.iter().any(|n| n == name);
        listed(&self.users, login.user)
            && listed(&self.databases, login.database)
            && (self.addresses.is_empty()
                || self.addresses.iter().any(|c| c.contains(login.address)))
    }
}

/// Ok when the login may go on; Err with the message a refused client gets (SQLSTATE 28000).
pub fn check(rules: &[AccessRule], login: &Login<'_>) -> Result<(), String> {
    if rules.is_empty() {
        return Ok(());
    }
    match rules.iter().find(|rule| rule.matches(login)) {
        Some(rule) if rule.action == AccessAction::Allow => Ok(()),
        _ => Err(format!(
            "no access rule allows user \"{}\" to database \"{}\" from {}",
            login.user, login.database, login.address
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("valid range")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid address")
    }

    fn rule(
        users: &[&str],
        databases: &[&str],
        addresses: &[&str],
        action: AccessAction,
    ) -> AccessRule {
        AccessRule {
            users: users.iter().map(|s| s.to_string()).collect(),
            databases: databases.iter().map(|s| s.to_string()).collect(),
            addresses: addresses.iter().map(|s| cidr(s)).collect(),
            action,
        }
    }

    fn login<'a>(user: &'a str, database: &'a str, address: &str) -> Login<'a> {
        Login {
            user,
            database,
            address: ip(address),
        }
    }

    #[test]
    fn ranges_match_by_prefix() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.1.1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("192.168.1.128/25").contains(ip("192.168.1.200")));
        assert!(!cidr("192.168.1.128/25").contains(ip("192.168.1.127")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(!cidr("::1/128").contains(ip("127.0.0.1")));
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")));
    }

    #[test]
    fn bad_ranges_say_what_to_write() {
        for text in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1", ""] {
            let err = text.parse::<Cidr>().expect_err(text);
            assert!(err.contains("invalid address range"), "{err}");
        }
    }

    #[test]
    fn no_rules_allow_everyone() {
        assert!(check(&[], &login("bob", "db", "10.1.1.1")).is_ok());
    }

    #[test]
    fn first_match_wins_and_unmatched_logins_are_refused() {
        let rules = [
            rule(&["mallory"], &[], &[], AccessAction::Reject),
            rule(&[], &["app"], &["127.0.0.0/8"], AccessAction::Allow),
            rule(&["admin"], &[], &[], AccessAction::Allow),
        ];
        assert!(check(&rules, &login("bob", "app", "127.0.0.1")).is_ok());
        assert!(check(&rules, &login("admin", "other", "10.0.0.1")).is_ok());
        assert!(check(&rules, &login("mallory", "app", "127.0.0.1")).is_err());
        let refused = check(&rules, &login("bob", "other", "127.0.0.1")).expect_err("refused");
        assert_eq!(
            refused,
            "no access rule allows user \"bob\" to database \"other\" from 127.0.0.1"
        );
        assert!(check(&rules, &login("bob", "app", "10.0.0.1")).is_err());
    }
}
