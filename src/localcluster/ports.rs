//! Picking loopback ports for the servers.
//!
//! A port is free when we can bind 127.0.0.1 on it. Between that probe and the server binding it
//! (after initdb or pg_basebackup, seconds later) someone else may take it. The riskiest someone
//! is other code in the same test binary binding port 0 (a proxy listener), which the kernel
//! serves from the ephemeral range; so candidates are drawn at random from *below* that range,
//! and ports handed out in this process are never handed out twice.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use super::LocalClusterError;

/// Ports already handed out by this process (they may not be bound yet).
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Lowest candidate port: above the well-known and commonly configured ports.
const LOW: u16 = 15000;
const ATTEMPTS: usize = 2000;

/// Picks `count` distinct free ports. With `base`, exactly `base, base+1, ...` (each must be
/// free); without, random free ports below the kernel's ephemeral range.
pub(crate) fn pick_ports(count: usize, base: Option<u16>) -> Result<Vec<u16>, LocalClusterError> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let ports = match base {
        Some(base) => fixed_ports(base, count)?,
        None => random_ports(count, &handed_out)?,
    };
    handed_out.extend(ports.iter().copied());
    Ok(ports)
}

fn fixed_ports(base: u16, count: usize) -> Result<Vec<u16>, LocalClusterError> {
    (0..count)
        .map(|i| {
            let port = u16::try_from(i)
                .ok()
                .and_then(|i| base.checked_add(i))
                .ok_or(LocalClusterError::PortInUse(u16::MAX))?;
            if is_free(port) {
                Ok(port)
            } else {
                Err(LocalClusterError::PortInUse(port))
            }
        })
        .collect()
}

fn random_ports(count: usize, taken: &BTreeSet<u16>) -> Result<Vec<u16>, LocalClusterError> {
    let high = ephemeral_low().unwrap_or(32768);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..ATTEMPTS {
        if ports.len() == count {
            return Ok(ports);
        }
        let candidate = if high > LOW + 1000 {
            LOW + (random() % u64::from(high - LOW)) as u16
        } else {
            // Odd kernel configuration: fall back to whatever the kernel hands out.
            match kernel_port() {
                Some(port) => port,
                None => continue,
            }
        };
        if !taken.contains(&candidate) && !ports.contains(&candidate) && is_free(candidate) {
            ports.push(candidate);
        }
    }
    if ports.len() == count {
        Ok(ports)
    } else {
        Err(LocalClusterError::NoFreePort { attempts: ATTEMPTS })
    }
}

/// Whether 127.0.0.1:`port` can be bound right now.
pub(crate) fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port the kernel picks for a bind to port 0.
fn kernel_port() -> Option<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// The low end of the kernel's ephemeral port range (`net.ipv4.ip_local_port_range`).
fn ephemeral_low() -> Option<u16> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_port_range(&text).map(|(low, _)| low)
}

/// Parses "32768\t60999".
pub(crate) fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut parts = text.split_whitespace();
    let low = parts.next()?.parse().ok()?;
    let high = parts.next()?.parse().ok()?;
    (low <= high).then_some((low, high))
}

/// A random number from the standard library's per-process random hash keys (no extra crate).
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_distinct_free_ports_below_ephemeral_range() {
        let ports = pick_ports(8, None).expect("ports");
        let unique: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 8);
        let high = ephemeral_low().unwrap_or(32768);
        for port in &ports {
            assert!(*port >= LOW && *port < high, "{port}");
        }
    }

    #[test]
    fn never_hands_out_a_port_twice() {
        let first = pick_ports(20, None).expect("ports");
        let second = pick_ports(20, None).expect("ports");
        assert!(first.iter().all(|p| !second.contains(p)));
    }

    #[test]
    fn fixed_ports_refuse_a_taken_port() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(matches!(
            pick_ports(1, Some(port)),
            Err(LocalClusterError::PortInUse(p)) if p == port
        ));
    }

    #[test]
    fn parses_port_range() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("5 4"), None);
        assert_eq!(parse_port_range("x"), None);
    }
}
