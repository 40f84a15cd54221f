//! Invalidations between pgsplit instances, as NOTIFY payloads on the primary.
//!
//! Every instance LISTENs on [`CHANNEL`] and, after a write commits through it, sends
//! `SELECT pg_notify('pgsplit_invalidate', $1)` with each payload of [`Invalidation::encode`].
//! A payload is JSON (`{"v":1,"from":"<instance>","tables":["t","s.u"]}`, or `"all":true`),
//! so any table name survives quoting, and shorter than 8000 bytes, PostgreSQL's limit: a long
//! list becomes several payloads. Each carries the sender's instance id, so an instance skips
//! its own (it has already invalidated locally, before answering the client).

use serde::{Deserialize, Serialize};

/// The LISTEN/NOTIFY channel.
pub const CHANNEL: &str = "pgsplit_invalidate";

/// The longest payload sent, in bytes (PostgreSQL refuses 8000 and over).
pub const MAX_PAYLOAD: usize = 7999;

/// Version of the payload format; payloads of another version are ignored (then the TTL
/// bounds staleness during a mixed-version upgrade).
const VERSION: u32 = 1;

/// What another instance asks this one to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Tables written, and the write's WAL position (0 if unknown).
    Tables(Vec<String>, u64),
    All(u64),
}

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u32,
    from: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    lsn: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tables: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// One instance's end of the channel: encodes its invalidations, decodes the others'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    instance: String,
}

impl Invalidation {
    pub fn new(instance: impl Into<String>) -> Self {
        Invalidation {
            instance: instance.into(),
        }
    }

    /// An instance with a random 64-bit id: unique enough among a deployment's instances.
    pub fn random() -> Self {
        Self::new(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The payloads that invalidate `tables`, each under [`MAX_PAYLOAD`] bytes; none for no
    /// table. A single name too long for a payload becomes an "all" message.
    pub fn encode(&self, tables: &[String], lsn: u64) -> Vec<String> {
        let empty_size = self.payload(Vec::new(), false, lsn).len() + r#","tables":[]"#.len();
        let mut payloads = Vec::new();
        let mut batch: Vec<String> = Vec::new();
        let mut size = empty_size;
        for table in tables {
            let len = quoted_len(table);
            if empty_size + len > MAX_PAYLOAD {
                return vec![self.encode_all(lsn)];
            }
            if size + len + 1 > MAX_PAYLOAD {
                payloads.push(self.payload(std::mem::take(&mut batch), false, lsn));
                size = empty_size;
            }
            // A comma before every name but the first.
            size += len + usize::from(!batch.is_empty());
            batch.push(table.clone());
        }
        if !batch.is_empty() {
            payloads.push(self.payload(batch, false, lsn));
        }
        payloads
    }

    /// The payload that drops every entry on every other instance.
    pub fn encode_all(&self, lsn: u64) -> String {
        self.payload(Vec::new(), true, lsn)
    }

    /// What a payload asks of this instance; None for its own payloads and for anything
    /// that is not a pgsplit payload of this version.
    pub fn decode(&self, payload: &str) -> Option<Remote> {
        let parsed: Payload = serde_json::from_str(payload).ok()?;
        if parsed.v != VERSION || parsed.from == self.instance {
            return None;
        }
        if parsed.all {
            Some(Remote::All(parsed.lsn))
        } else if parsed.tables.is_empty() {
            None
        } else {
            Some(Remote::Tables(parsed.tables, parsed.lsn))
        }
    }

    fn payload(&self, tables: Vec<String>, all: bool, lsn: u64) -> String {
        let payload = Payload {
            v: VERSION,
            from: self.instance.clone(),
            lsn,
            tables,
            all,
        };
        // Serializing strings, numbers and booleans cannot fail.
        serde_json::to_string(&payload).unwrap_or_default()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A name's length as a JSON string.
fn quoted_len(name: &str) -> usize {
    serde_json::to_string(name).map_or(name.len() * 6 + 2, |s| s.len())
}
