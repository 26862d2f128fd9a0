//! The standing consent records of recent subjects, kept in memory so that a returning visitor's
//! page costs no query for them (issue 4: the check must cost no measurable throughput).
//!
//! Correctness rests on three rules:
//! - every write this process makes evicts its subjects after its commit ([`RecordCache::evict`]);
//!   a write inside a caller's transaction (a privacy request carried out) cannot say when it
//!   commits, so every write first marks its subject as being written ([`mark_writing`]): for
//!   [`WRITE_WINDOW`] its records are read from the store and not kept;
//! - a read that an eviction overtook is not kept: each eviction advances an epoch, and an entry
//!   is stored only if the epoch is still the one seen before its query began, so a read that
//!   saw the data before a commit cannot outlive the eviction that followed it;
//! - writes made elsewhere (another node, the command line) are found by [`RecordCache::sync`],
//!   which the server runs every [`SYNC_INTERVAL`]: it reads the records added since the last
//!   round and evicts their subjects, and drops everything when a policy version was published.
//!   Records whose ids commit out of order are caught by looking back over the last
//!   [`LOOKBACK`] ids. Deletions (erasure, retention) are not visible to it: an entry is trusted
//!   for [`TIME_TO_LIVE`] at most.

use crate::consent::ConsentContext;
use crate::store::Store;
use covenant_core::consent::ConsentRecord;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// How often the server looks for consent records written by other processes: the longest a
/// choice made on one node takes to reach pages served by another.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// How long an entry is trusted without a sync noticing a change (deletions are not noticed).
pub const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// How long a subject being written is read from the store only: longer than a transaction
/// that writes consent evidence stays open. One that stays open longer is still caught by the
/// next sync after its commit.
pub const WRITE_WINDOW: Duration = Duration::from_secs(2);

/// The length of a consent id: 256 random bits in URL-safe base64 without padding.
pub const CONSENT_ID_LEN: usize = 43;

/// A device's consent id, held inline: a page's lookup formats and allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsentId([u8; CONSENT_ID_LEN]);

impl ConsentId {
    /// The id `text` names, if it can be one we issued (43 characters of URL-safe base64).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; CONSENT_ID_LEN] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(ConsentId(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a consent id is ASCII")
    }
}

// The consent id is an identifier: it stays out of any debug output.
impl std::fmt::Debug for ConsentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsentId(..)")
    }
}

/// A consent subject as the cache keys it: fixed size, no text formatted per request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SubjectKey {
    Device(ConsentId),
    Account(i64),
}

impl SubjectKey {
    /// The key of a subject as the store writes it (`device:<id>`, `account:<id>`); `None` for
    /// text no cached subject has.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(':')? {
            ("device", id) => ConsentId::parse(id).map(SubjectKey::Device),
            ("account", id) => id.parse().ok().map(SubjectKey::Account),
            _ => None,
        }
    }

    /// The subject as the store writes it; formatted only when the store is asked.
    pub fn subject_text(&self) -> String {
        match self {
            SubjectKey::Device(id) => format!("device:{}", id.as_str()),
            SubjectKey::Account(id) => format!("account:{id}"),
        }
    }
}

/// Subjects some transaction of this process is writing records for, until when.
static WRITING: Mutex<Vec<(SubjectKey, Instant)>> = Mutex::new(Vec::new());

/// Until when (milliseconds since [`clock_base`]) any subject is being written: while none is,
/// a page's lookup takes no lock for [`WRITING`].
static WRITING_UNTIL_MS: AtomicU64 = AtomicU64::new(0);

fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn millis_since_base(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(clock_base()).as_millis()).unwrap_or(u64::MAX)
}

/// Marks `subject` as being written, in every cache of this process; call before the insert.
pub fn mark_writing(subject: &str) {
    // A subject no entry can be kept for needs no mark.
    let Some(key) = SubjectKey::parse(subject) else {
        return;
    };
    let mut writing = WRITING.lock().expect("the writing lock is never poisoned");
    let now = Instant::now();
    writing.retain(|(_, until)| *until > now);
    let until = now + WRITE_WINDOW;
    writing.push((key, until));
    // One millisecond more, so that rounding down never ends the window early.
    WRITING_UNTIL_MS.fetch_max(millis_since_base(until) + 1, Ordering::AcqRel);
}

fn being_written(key: &SubjectKey) -> bool {
    let now = Instant::now();
    if millis_since_base(now) >= WRITING_UNTIL_MS.load(Ordering::Acquire) {
        return false;
    }
    let writing = WRITING.lock().expect("the writing lock is never poisoned");
    writing
        .iter()
        .any(|(held, until)| held == key && *until > now)
}

/// Most subjects held; a full cache starts over (a flood of unknown consent ids must not grow
/// the server's memory).
const CAPACITY: usize = 20_000;

/// Ids below the highest seen that a sync still reads, for transactions that committed late.
const LOOKBACK: i64 = 256;

/// Most records a sync reads in one round; more than that and it drops everything.
const SYNC_BATCH: i64 = 2_000;

/// What one subject's query returned: its records, oldest first, and the policy version in force
/// (see `Store::consent_records_and_policy_in_force`).
#[derive(Clone)]
pub struct Standing {
    /// Shared with the cache: a page reads them without copying.
    pub records: Arc<Vec<ConsentRecord>>,
    pub in_force: Option<Option<i64>>,
    /// The context these records give a visitor who is not signed in, without and with a GPC
    /// signal, once a page has worked it out (`Consent::context_in_memory`): nothing else it
    /// depends on changes while the entry is held (a new policy version drops every entry).
    pub visitor_contexts: Arc<[OnceLock<Arc<ConsentContext>>; 2]>,
}

impl Standing {
    pub fn new(records: Vec<ConsentRecord>, in_force: Option<Option<i64>>) -> Self {
        Self {
            records: Arc::new(records),
            in_force,
            visitor_contexts: Arc::default(),
        }
    }
}

struct Entry {
    standing: Standing,
    /// The day (days since 1970-01-01, UTC) the version in force was read for: a version can
    /// come into force at midnight.
    day: i64,
    read_at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<SubjectKey, Entry>,
    epoch: u64,
    /// The records a sync has seen near the top of the table, by id, with their subject.
    recent: BTreeMap<i64, String>,
    /// The highest record id seen by a sync; `None` until the first round.
    seen_record: Option<i64>,
    seen_policy: Option<i64>,
}

/// Pages only read it, concurrently (a read lock); writes, evictions and syncs take it whole.
#[derive(Default)]
pub struct RecordCache {
    inner: RwLock<Inner>,
}

/// The epoch a read began in; hand it back to [`RecordCache::keep`].
pub struct ReadTicket(u64);

impl RecordCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .expect("the consent cache lock is never poisoned")
    }

    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .expect("the consent cache lock is never poisoned")
    }

    /// The standing records of `subject`, if held, read for `day`, and fresh enough; else a
    /// ticket for the read that replaces them.
    pub fn get(&self, subject: &SubjectKey, day: i64) -> Result<Standing, ReadTicket> {
        if being_written(subject) {
            // A ticket no epoch matches: the read is served, not kept.
            return Err(ReadTicket(u64::MAX));
        }
        let inner = self.read();
        match inner.entries.get(subject) {
            Some(entry) if entry.day == day && entry.read_at.elapsed() < TIME_TO_LIVE => {
                Ok(entry.standing.clone())
            }
            _ => Err(ReadTicket(inner.epoch)),
        }
    }

    /// Keeps what a read returned, unless an eviction happened since the read began.
    pub fn keep(&self, ticket: ReadTicket, subject: SubjectKey, day: i64, standing: &Standing) {
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
        }
        inner.entries.insert(
            subject,
            Entry {
                standing: standing.clone(),
                day,
                read_at: Instant::now(),
            },
        );
    }

    /// Forgets the subjects a write of this process changed; call after its commit.
    pub fn evict<'a>(&self, subjects: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.epoch += 1;
        for subject in subjects {
            if let Some(key) = SubjectKey::parse(subject) {
                inner.entries.remove(&key);
            }
        }
    }

    /// Forgets everything (a policy version was published, or too much changed to track).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.entries.clear();
    }

    /// How many subjects are held (for tests and metrics).
    pub fn held(&self) -> usize {
        self.read().entries.len()
    }

    /// One round of looking for writes made by other processes. The first round only notes
    /// where the tables stand.
    pub async fn sync(&self, store: &Store) -> anyhow::Result<()> {
        let (seen_record, seen_policy) = {
            let inner = self.read();
            (inner.seen_record, inner.seen_policy)
        };
        let latest_policy = store.latest_policy_version_id().await?;
        let Some(seen_record) = seen_record else {
            let top = store.latest_consent_record_id().await?;
            let mut inner = self.lock();
            inner.seen_record = Some(top);
            inner.seen_policy = Some(latest_policy);
            // Anything read before this first round may predate a write it cannot see now.
            inner.epoch += 1;
            inner.entries.clear();
            return Ok(());
        };
        let changes = store
            .consent_records_after(seen_record - LOOKBACK, SYNC_BATCH)
            .await?;
        let mut inner = self.lock();
        if seen_policy != Some(latest_policy) {
            inner.seen_policy = Some(latest_policy);
            inner.epoch += 1;
            inner.entries.clear();
        }
        let flooded = changes.len() as i64 >= SYNC_BATCH;
        let mut changed = Vec::new();
        for (id, subject) in changes {
            // An id already seen for this subject is no news; an id reused for another (SQLite
            // may reuse the highest id after a deletion) is.
            if inner.recent.get(&id) != Some(&subject) {
                changed.push(subject.clone());
                inner.recent.insert(id, subject);
            }
        }
        let top = inner
            .recent
            .last_key_value()
            .map(|(id, _)| *id)
            .unwrap_or(seen_record)
            .max(seen_record);
        inner.recent = inner.recent.split_off(&(top - LOOKBACK));
        inner.seen_record = Some(top);
        if flooded {
            inner.epoch += 1;
            inner.entries.clear();
        } else if !changed.is_empty() {
            inner.epoch += 1;
            for key in changed
                .iter()
                .filter_map(|subject| SubjectKey::parse(subject))
            {
                inner.entries.remove(&key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_core::consent::ConsentSubject;

    #[test]
    fn a_subject_has_one_key_however_it_is_named() {
        let id = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234";
        let device = ConsentSubject::Device(id.to_string());
        let key = SubjectKey::parse(&device.to_string()).expect("a consent id");
        assert_eq!(key, SubjectKey::Device(ConsentId::parse(id).unwrap()));
        assert_eq!(key.subject_text(), device.to_string());
        let account = ConsentSubject::Account(42);
        let key = SubjectKey::parse(&account.to_string()).expect("an account");
        assert_eq!(key, SubjectKey::Account(42));
        assert_eq!(key.subject_text(), "account:42");
        // Text no cached subject can have has no key.
        assert_eq!(SubjectKey::parse("device:short"), None);
        assert_eq!(
            SubjectKey::parse(&format!("device:{}a", "é".repeat(21))),
            None
        );
        assert_eq!(SubjectKey::parse("account:x"), None);
        assert_eq!(SubjectKey::parse("other:1"), None);
    }

    fn standing() -> Standing {
        Standing::new(Vec::new(), None)
    }

    #[test]
    fn a_subject_being_written_is_served_from_the_store_not_kept() {
        let cache = RecordCache::default();
        let key = SubjectKey::Account(-7_001);
        let ticket = cache.get(&key, 1).err().expect("nothing held yet");
        cache.keep(ticket, key, 1, &standing());
        assert!(cache.get(&key, 1).is_ok());
        // Another day: the version in force may have changed at midnight.
        assert!(cache.get(&key, 2).is_err());
        mark_writing("account:-7001");
        let ticket = cache.get(&key, 1).err().expect("being written");
        cache.keep(ticket, key, 1, &standing());
        // Others are untouched by the mark.
        let other = SubjectKey::Account(-7_002);
        let ticket = cache.get(&other, 1).err().expect("nothing held yet");
        cache.keep(ticket, other, 1, &standing());
        assert!(cache.get(&other, 1).is_ok());
    }

    #[test]
    fn a_read_overtaken_by_an_eviction_is_not_kept() {
        let cache = RecordCache::default();
        let key = SubjectKey::Account(-7_003);
        let ticket = cache.get(&key, 1).err().expect("nothing held yet");
        cache.evict(["account:-7003"]);
        cache.keep(ticket, key, 1, &standing());
        assert!(cache.get(&key, 1).is_err());
        let ticket = cache.get(&key, 1).err().expect("nothing held yet");
        cache.keep(ticket, key, 1, &standing());
        assert_eq!(cache.held(), 1);
        cache.evict(["account:-7003"]);
        assert_eq!(cache.held(), 0);
    }
}
