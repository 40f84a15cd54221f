//! Classifications cached by statement text: applications send the same few texts again and
//! again, so after the first time a classification costs a hash lookup, not a parse.

use std::cell::{Cell, RefCell};
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::{FixedState, RandomState};
use moka::sync::Cache;

use super::Access;
use super::functions::FunctionPolicy;
use super::shape::{literal_shape, literal_shape_into};
use super::{Classification, SessionEffect, classify};

/// Texts longer than this are classified every time: they are rarely repeated, and one of
/// them would crowd out many small ones.
const MAX_CACHED_TEXT: usize = 64 * 1024;

/// What moka and the key's allocation add to an entry, beyond the text and the value.
const ENTRY_OVERHEAD: usize = 96;

/// Classifies statement texts, remembering the answers within a memory budget.
pub struct Classifier {
    policy: FunctionPolicy,
    /// None when the budget is 0.
    cache: Option<Cache<String, Arc<Classification>, RandomState>>,
    /// Tells this classifier's entries in the per-thread [`Recent`] from another's (a reload
    /// makes a new classifier).
    id: u64,
    /// Bumped by [`Classifier::mark_write`]: what threads remember from before is stale.
    generation: AtomicU64,
}

/// Texts longer than this are not remembered per thread (a slot holds its own copy).
const MAX_RECENT_TEXT: usize = 4 * 1024;

/// Texts remembered per thread: more than an application's hot statements usually number.
const RECENT_SLOTS: usize = 16;

/// A few texts each thread classified lately, in front of the shared cache: an application
/// repeats a handful of texts, and a hit here costs a hash and a comparison, where the
/// shared cache's lookup (its own clock read, access log and bookkeeping) costs some 850
/// instructions. Entries are kept under the key the shared cache uses: the text, or for texts
/// that inline their values (`-M simple`) the shape, which a text never equals (it holds NUL).
/// Any slot may hold any text (a scan of 16 hashes is cheaper than a miss from two texts
/// sharing a slot); the oldest entry makes room.
#[derive(Default)]
struct Recent {
    slots: [Option<RecentEntry>; RECENT_SLOTS],
    /// The slot the next new entry takes.
    next: usize,
}

struct RecentEntry {
    hash: u64,
    classifier: u64,
    generation: u64,
    text: Box<str>,
    class: Arc<Classification>,
}

impl Recent {
    fn find(&self, hash: u64, text: &str) -> Option<&RecentEntry> {
        self.slots
            .iter()
            .flatten()
            .find(|e| e.hash == hash && *e.text == *text)
    }

    /// Replaces the entry for the same text (from another generation), or the oldest one.
    fn put(&mut self, entry: RecentEntry) {
        let same = self.slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|e| e.hash == entry.hash && e.text == entry.text)
        });
        let slot = same.unwrap_or_else(|| {
            let oldest = self.next;
            self.next = (self.next + 1) % RECENT_SLOTS;
            oldest
        });
        self.slots[slot] = Some(entry);
    }
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::new(Recent::default());
    /// Where [`Classifier::classify`] builds a text's shape; taken out while in use.
    static SHAPE_BUFFER: Cell<String> = const { Cell::new(String::new()) };
}

/// Where the shared cache keeps a classification: under the text, or under its shape.
enum Held {
    Text,
    Shape,
    /// Not cached (the text did not parse).
    Nowhere,
}

static NEXT_CLASSIFIER_ID: AtomicU64 = AtomicU64::new(1);

fn text_hash(sql: &str) -> u64 {
    // Any fixed seed: the hash only tells texts apart quickly, it decides nothing.
    FixedState::with_seed(0).hash_one(sql)
}

impl Classifier {
    /// `max_cache_bytes`: the budget for cached texts and classifications; 0 caches nothing.
    pub fn new(policy: FunctionPolicy, max_cache_bytes: u64) -> Self {
        let cache = (max_cache_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_cache_bytes)
                .weigher(|text: &String, class: &Arc<Classification>| {
                    u32::try_from(weight(text, class)).unwrap_or(u32::MAX)
                })
                // Every statement hashes its text (and its shape on a miss): foldhash is several
                // times cheaper than std's SipHash there, and is seeded per process.
                .build_with_hasher(RandomState::default())
        });
        Self {
            policy,
            cache,
            id: NEXT_CLASSIFIER_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        }
    }

    /// The classification of `sql`, from the cache when this text, or another text of the same
    /// shape (only its literals differ), was seen before.
    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        let cache = match &self.cache {
            Some(cache) if sql.len() <= MAX_CACHED_TEXT => cache,
            _ => return Arc::new(classify(sql, &self.policy)),
        };
        // Read before the shared cache: an answer from before a `mark_write` is then kept
        // under the generation it belongs to, never under the new one.
        let generation = self.generation.load(Ordering::Acquire);
        let remembered = sql.len() <= MAX_RECENT_TEXT;
        if remembered && let Some(hit) = self.recent(sql, generation) {
            return hit;
        }
        // Texts that inline their values are remembered by shape: one shape, many texts. The
        // shape is built in this thread's buffer, so a text costs no allocation for it.
        let mut buffer = SHAPE_BUFFER.take();
        let shape = literal_shape_into(sql, &mut buffer).then_some(buffer.as_str());
        let class = self.classify_by_shape(cache, sql, shape, generation, remembered);
        SHAPE_BUFFER.set(buffer);
        class
    }

    /// [`Self::classify`] past the thread's lookup of the text itself.
    fn classify_by_shape(
        &self,
        cache: &Cache<String, Arc<Classification>, RandomState>,
        sql: &str,
        shape: Option<&str>,
        generation: u64,
        remembered: bool,
    ) -> Arc<Classification> {
        if remembered
            && let Some(shape) = shape
            && let Some(hit) = self.recent(shape, generation)
        {
            return hit;
        }
        let (class, held) = self.classify_shared(cache, sql, shape);
        let key = match held {
            Held::Text => Some(sql),
            Held::Shape => shape,
            Held::Nowhere => None,
        };
        if remembered && let Some(key) = key {
            self.remember(key, generation, &class);
        }
        class
    }

    /// The shared cache's answer, and the key it holds it under.
    fn classify_shared(
        &self,
        cache: &Cache<String, Arc<Classification>, RandomState>,
        sql: &str,
        shape: Option<&str>,
    ) -> (Arc<Classification>, Held) {
        if let Some(hit) = cache.get(sql) {
            return (hit, Held::Text);
        }
        if let Some(hit) = shape.and_then(|shape| cache.get(shape)) {
            return (hit, Held::Shape);
        }
        let class = Arc::new(classify(sql, &self.policy));
        // What did not parse is never cached: the primary decides what it means, each time.
        if !class.parsed {
            return (class, Held::Nowhere);
        }
        let held = match shape {
            Some(shape) if literals_do_not_matter(&class) => {
                cache.insert(shape.to_owned(), Arc::clone(&class));
                Held::Shape
            }
            _ => {
                cache.insert(sql.to_owned(), Arc::clone(&class));
                Held::Text
            }
        };
        (class, held)
    }

    /// What this thread remembers of `sql`, if it is current.
    fn recent(&self, sql: &str, generation: u64) -> Option<Arc<Classification>> {
        let hash = text_hash(sql);
        RECENT.with_borrow(|recent| {
            let entry = recent.find(hash, sql)?;
            let current = entry.classifier == self.id && entry.generation == generation;
            current.then(|| Arc::clone(&entry.class))
        })
    }

    fn remember(&self, sql: &str, generation: u64, class: &Arc<Classification>) {
        let entry = RecentEntry {
            hash: text_hash(sql),
            classifier: self.id,
            generation,
            text: sql.into(),
            class: Arc::clone(class),
        };
        RECENT.with_borrow_mut(|recent| recent.put(entry));
    }

    /// Records that a server refused `sql` as a write although it was classified as a read (a
    /// function that writes under a read-only name, say): from now on it is a write. Kept in the
    /// cache, so it lasts as long as the text stays there.
    pub fn mark_write(&self, sql: &str, reason: &str) {
        let Some(cache) = &self.cache else {
            return;
        };
        let mut class = (*self.classify(sql)).clone();
        class.access = Access::Write;
        class.write_reason = Some(reason.into());
        let class = Arc::new(class);
        // Texts of the same shape run the same functions: they write too.
        if let Some(shape) = literal_shape(sql) {
            cache.insert(shape, Arc::clone(&class));
        }
        cache.insert(sql.to_owned(), class);
        // Every thread's remembered classifications are stale from here on (after the
        // inserts: a thread that sees the new generation finds the write in the cache).
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// (entries, weighted bytes) in the cache, for metrics.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.as_ref().map_or((0, 0), |cache| {
            // Bring the counters up to date with recent inserts and evictions.
            cache.run_pending_tasks();
            (cache.entry_count(), cache.weighted_size())
        })
    }
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("policy", &self.policy)
            .field("cached", &self.cache.as_ref().map(Cache::entry_count))
            .finish()
    }
}

/// Whether every text of this shape classifies alike: literals never change which tables a
/// statement touches or whether it writes, but they are the values of session effects (`SET x
/// = 'v'`, `pg_advisory_lock(5)`) and transaction control (`BEGIN ISOLATION LEVEL ...`).
fn literals_do_not_matter(class: &Classification) -> bool {
    class.effects.is_empty() && class.tx.is_empty() && class.explain_route.is_none()
}

/// An estimate of an entry's memory: the text, the classification and what it points to.
fn weight(text: &str, class: &Classification) -> usize {
    let strings =
        |names: &[String]| -> usize { names.iter().map(|n| n.len() + size_of::<String>()).sum() };
    let effects: usize = class.effects.iter().map(effect_weight).sum();
    ENTRY_OVERHEAD
        + text.len()
        + size_of::<Classification>()
        + strings(&class.tables_read)
        + strings(&class.tables_written)
        + class.tx.len() * size_of::<super::TxControl>()
        + effects
        + class.effect_ends.len() * size_of::<(usize, usize)>()
        + class.explain_route.as_ref().map_or(0, String::len)
        + class.write_reason.as_deref().map_or(0, str::len)
}

fn effect_weight(effect: &SessionEffect) -> usize {
    let heap = match effect {
        SessionEffect::Set { name, sql }
        | SessionEffect::SetLocal { name, sql }
        | SessionEffect::Prepare { name, sql } => name.len() + sql.len(),
        SessionEffect::Reset { name }
        | SessionEffect::Execute { name }
        | SessionEffect::Savepoint { name }
        | SessionEffect::RollbackToSavepoint { name }
        | SessionEffect::ReleaseSavepoint { name }
        | SessionEffect::HoldCursor { name }
        | SessionEffect::Listen { channel: name } => name.len(),
        SessionEffect::Deallocate { name } => name.as_ref().map_or(0, String::len),
        SessionEffect::Unlisten { channel } => channel.as_ref().map_or(0, String::len),
        SessionEffect::CloseCursor { name } => name.as_ref().map_or(0, String::len),
        SessionEffect::ResetAll
        | SessionEffect::DiscardAll
        | SessionEffect::DiscardTemp
        | SessionEffect::Pin(_)
        | SessionEffect::SequenceState
        | SessionEffect::Commit
        | SessionEffect::Rollback => 0,
    };
    size_of::<SessionEffect>() + heap
}
