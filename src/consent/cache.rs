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

/// Whether `b` is a byte of URL-safe base64 (a letter, a digit, `-` or `_`), without a branch,
/// so that a whole id is checked a vector at a time.
fn url_safe_base64(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_')
}

/// A device's consent id, held inline: a page's lookup formats and allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsentId([u8; CONSENT_ID_LEN]);

impl ConsentId {
    /// The id `text` names, if it can be one we issued (43 characters of URL-safe base64).
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_bytes(text.as_bytes())
    }

    /// [`Self::parse`] of a cookie's bytes, as they come in the header: every page with a
    /// consent cookie asks it, so every byte is checked, with no early exit to branch on.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; CONSENT_ID_LEN] = bytes.try_into().ok()?;
        bytes
            .iter()
            .fold(true, |valid, b| valid & url_safe_base64(*b))
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

/// Advanced by every [`mark_writing`], after the mark: a thread's memo starts over when it
/// moves, so a page served from the memo need not look at what is being written (the read
/// that replaces the memo does).
static WRITES: OwnLine<AtomicU64> = OwnLine(AtomicU64::new(0));

/// A value alone on its cache lines (128 bytes: two lines, as adjacent-line prefetching pairs
/// them). Every page reads [`WRITES`] and the cache's epoch from both cores; what is written
/// for every page (a reference count, the visit counter's lock) must not share their lines,
/// or each read waits for the line to come back from the other core.
#[repr(align(128))]
struct OwnLine<T>(T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

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
    WRITES.fetch_add(1, Ordering::AcqRel);
}

fn being_written(key: &SubjectKey, now: Instant) -> bool {
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
    /// When the entry stops being served: [`TIME_TO_LIVE`] after the read, or the end of
    /// `day` if sooner, so a lookup needs only the monotonic clock.
    expires: Instant,
}

/// When an entry read at `now` for `day` stops being served: after [`TIME_TO_LIVE`], or at the
/// day's end (UTC) if that comes first (a policy version can come into force at midnight).
fn expiry(day: i64, now: Instant) -> Instant {
    let day_ends = day.saturating_add(1).saturating_mul(86_400);
    let left = u64::try_from(day_ends.saturating_sub(crate::now())).unwrap_or(0);
    now + TIME_TO_LIVE.min(Duration::from_secs(left))
}

impl Entry {
    fn is_fresh(&self, day: i64, now: Instant) -> bool {
        self.day == day && now < self.expires
    }

    /// Fresh by the monotonic clock alone (the end of its day is in `expires`).
    fn is_current(&self, now: Instant) -> bool {
        now < self.expires
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<SubjectKey, Entry>,
    /// The records a sync has seen near the top of the table, by id, with their subject.
    recent: BTreeMap<i64, String>,
    /// The highest record id seen by a sync; `None` until the first round.
    seen_record: Option<i64>,
    seen_policy: Option<i64>,
}

/// Pages only read it, concurrently (a read lock); writes, evictions and syncs take it whole.
/// A visitor's pages usually skip even the read lock: each thread keeps the contexts it served
/// last ([`THREAD_MEMO`]) for as long as the epoch they were read in lasts.
pub struct RecordCache {
    inner: RwLock<Inner>,
    /// Advanced, under the write lock, by every eviction and clearing: a read begun in an
    /// older epoch is neither kept nor served from a thread's memo.
    epoch: OwnLine<AtomicU64>,
    /// Which cache a thread's memo belongs to (a process can hold several nodes in tests).
    id: u64,
}

impl Default for RecordCache {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            inner: RwLock::default(),
            epoch: OwnLine(AtomicU64::new(0)),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// How many contexts a thread's memo holds: one per place, a visitor's place chosen by the
/// first bytes of the consent id (random) and the GPC slot.
const THREAD_MEMO_PLACES: usize = 128;

/// One visitor's context, as a thread's memo holds it.
struct Remembered {
    subject: SubjectKey,
    slot: usize,
    context: Arc<ConsentContext>,
    /// The entry's own end (see [`Entry::expires`]).
    expires: Instant,
}

/// What one thread last served from a cache: the contexts of recent visitors, each in an `Arc`
/// of the thread's own, so pages on different cores never write to one shared reference count
/// (on two cores that traffic cost more than the rest of the check).
///
/// Every page with a consent cookie looks here after a page's work has filled the core's
/// caches, so the memo is made to be read with few memory accesses: it lives in the thread's
/// own storage, each visitor in one place found without hashing. Two visitors sharing a place
/// take turns in it; a cookie chosen to collide with another visitor's only sends that
/// visitor's pages to the read under the cache's lock, never to the store.
struct ThreadMemo {
    cache: u64,
    epoch: u64,
    /// [`WRITES`] as it was when the memo started over.
    writes: u64,
    places: [Option<Remembered>; THREAD_MEMO_PLACES],
}

impl ThreadMemo {
    const fn new() -> Self {
        ThreadMemo {
            cache: 0,
            epoch: 0,
            writes: 0,
            places: [const { None }; THREAD_MEMO_PLACES],
        }
    }

    /// Whether the memo was filled under the cache, epoch and writes given.
    fn is_of(&self, cache: u64, epoch: u64, writes: u64) -> bool {
        self.cache == cache && self.epoch == epoch && self.writes == writes
    }

    fn start_over(&mut self, cache: u64, epoch: u64, writes: u64) {
        self.places.iter_mut().for_each(|place| *place = None);
        (self.cache, self.epoch, self.writes) = (cache, epoch, writes);
    }
}

/// The place of `subject`'s context (`slot`: without or with GPC) in a thread's memo.
fn memo_place(subject: &SubjectKey, slot: usize) -> usize {
    let bits = match subject {
        SubjectKey::Device(id) => {
            let [a, b, c, d, e, f, g, h, ..] = id.0;
            u64::from_le_bytes([a, b, c, d, e, f, g, h])
        }
        SubjectKey::Account(id) => id.unsigned_abs(),
    };
    // A multiplicative hash: its top bits depend on every byte.
    let top = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 6);
    (top as usize * 2 + (slot & 1)) % THREAD_MEMO_PLACES
}

thread_local! {
    static THREAD_MEMO: std::cell::RefCell<ThreadMemo> =
        const { std::cell::RefCell::new(ThreadMemo::new()) };
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

    /// Call with the write lock held.
    fn advance_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The standing records of `subject`, if held, read for `day`, and fresh enough; else a
    /// ticket for the read that replaces them.
    pub fn get(&self, subject: &SubjectKey, day: i64) -> Result<Standing, ReadTicket> {
        let now = Instant::now();
        if being_written(subject, now) {
            // A ticket no epoch matches: the read is served, not kept.
            return Err(ReadTicket(u64::MAX));
        }
        let inner = self.read();
        match inner.entries.get(subject) {
            Some(entry) if entry.is_fresh(day, now) => Ok(entry.standing.clone()),
            _ => Err(ReadTicket(self.epoch.load(Ordering::Acquire))),
        }
    }

    /// The context `subject`'s entry gives a visitor (`slot`: without or with GPC), if the
    /// entry is held and fresh and a page has already worked it out: from this thread's memo
    /// while no eviction and no write happened since, else from the entry (under the read
    /// lock), copied into the memo.
    pub fn visitor_context(
        &self,
        subject: &SubjectKey,
        slot: usize,
    ) -> Option<Arc<ConsentContext>> {
        let now = Instant::now();
        let epoch = self.epoch.load(Ordering::Acquire);
        let writes = WRITES.load(Ordering::Acquire);
        let place = memo_place(subject, slot);
        let memo = THREAD_MEMO.with_borrow_mut(|memo| {
            if !memo.is_of(self.id, epoch, writes) {
                memo.start_over(self.id, epoch, writes);
                return None;
            }
            match &memo.places[place] {
                Some(held)
                    if held.subject == *subject && held.slot == slot && now < held.expires =>
                {
                    Some(held.context.clone())
                }
                _ => None,
            }
        });
        if memo.is_some() {
            return memo;
        }
        // Marked after `writes` was read: seen here. Marked later: the memo starts over at
        // the next page, as `WRITES` will have moved.
        if being_written(subject, now) {
            return None;
        }
        let (context, expires) = {
            let inner = self.read();
            let entry = inner.entries.get(subject)?;
            if !entry.is_current(now) || self.epoch.load(Ordering::Acquire) != epoch {
                return None;
            }
            let context = entry.standing.visitor_contexts.get(slot)?.get()?;
            (Arc::new(ConsentContext::clone(context)), entry.expires)
        };
        THREAD_MEMO.with_borrow_mut(|memo| {
            // Kept only if nothing was evicted or written since the entry was read.
            if memo.is_of(self.id, epoch, writes) {
                memo.places[place] = Some(Remembered {
                    subject: *subject,
                    slot,
                    context: context.clone(),
                    expires,
                });
            }
        });
        Some(context)
    }

    /// Keeps what a read returned, unless an eviction happened since the read began.
    pub fn keep(&self, ticket: ReadTicket, subject: SubjectKey, day: i64, standing: &Standing) {
        let mut inner = self.lock();
        if self.epoch.load(Ordering::Acquire) != ticket.0 {
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
                expires: expiry(day, Instant::now()),
            },
        );
    }

    /// Forgets the subjects a write of this process changed; call after its commit.
    pub fn evict<'a>(&self, subjects: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        self.advance_epoch();
        for subject in subjects {
            if let Some(key) = SubjectKey::parse(subject) {
                inner.entries.remove(&key);
            }
        }
    }

    /// Forgets everything (a policy version was published, or too much changed to track).
    pub fn clear(&self) {
        let mut inner = self.lock();
        self.advance_epoch();
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
            self.advance_epoch();
            inner.entries.clear();
            return Ok(());
        };
        let changes = store
            .consent_records_after(seen_record - LOOKBACK, SYNC_BATCH)
            .await?;
        let mut inner = self.lock();
        if seen_policy != Some(latest_policy) {
            inner.seen_policy = Some(latest_policy);
            self.advance_epoch();
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
            self.advance_epoch();
            inner.entries.clear();
        } else if !changed.is_empty() {
            self.advance_epoch();
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

    #[test]
    fn a_consent_id_is_43_bytes_of_url_safe_base64_and_nothing_else() {
        let alphabet: Vec<u8> = (0..=255u8)
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .collect();
        assert_eq!(alphabet.len(), 64);
        for byte in 0..=255u8 {
            let mut id = [b'a'; CONSENT_ID_LEN];
            id[17] = byte;
            assert_eq!(
                ConsentId::from_bytes(&id).is_some(),
                alphabet.contains(&byte),
                "byte {byte}"
            );
        }
        assert!(ConsentId::from_bytes(&[b'a'; CONSENT_ID_LEN - 1]).is_none());
        assert!(ConsentId::from_bytes(&[b'a'; CONSENT_ID_LEN + 1]).is_none());
        let id = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234";
        assert_eq!(ConsentId::parse(id).unwrap().as_str(), id);
    }

    /// Two reads of `key`'s context in a row with no consent write in the process between
    /// them: other tests write consent too, and every write starts every memo over.
    fn two_reads(
        cache: &RecordCache,
        key: &SubjectKey,
    ) -> (Arc<ConsentContext>, Arc<ConsentContext>) {
        loop {
            let writes = WRITES.load(Ordering::SeqCst);
            let first = cache.visitor_context(key, 0).expect("held and worked out");
            let second = cache.visitor_context(key, 0).expect("held and worked out");
            if WRITES.load(Ordering::SeqCst) == writes {
                return (first, second);
            }
        }
    }

    fn standing() -> Standing {
        Standing::new(Vec::new(), None)
    }

    #[test]
    fn a_subject_being_written_is_served_from_the_store_not_kept() {
        let cache = RecordCache::default();
        let today = crate::policy::today_number();
        let key = SubjectKey::Account(-7_001);
        let ticket = cache.get(&key, today).err().expect("nothing held yet");
        cache.keep(ticket, key, today, &standing());
        assert!(cache.get(&key, today).is_ok());
        // Another day: the version in force may have changed at midnight.
        assert!(cache.get(&key, today + 1).is_err());
        mark_writing("account:-7001");
        let ticket = cache.get(&key, today).err().expect("being written");
        cache.keep(ticket, key, today, &standing());
        // Others are untouched by the mark.
        let other = SubjectKey::Account(-7_002);
        let ticket = cache.get(&other, today).err().expect("nothing held yet");
        cache.keep(ticket, other, today, &standing());
        assert!(cache.get(&other, today).is_ok());
    }

    #[test]
    fn an_entry_read_for_a_day_ends_with_it() {
        let cache = RecordCache::default();
        let today = crate::policy::today_number();
        let key = SubjectKey::Account(-7_010);
        let held = standing();
        held.visitor_contexts[0].get_or_init(|| Arc::new(ConsentContext::default()));
        // Read just before midnight, kept just after: never served.
        let ticket = cache.get(&key, today - 1).err().expect("nothing held yet");
        cache.keep(ticket, key, today - 1, &held);
        assert!(cache.get(&key, today - 1).is_err());
        assert!(cache.visitor_context(&key, 0).is_none());
        // Read today: served, with the context a page worked out, until its subject is written.
        let ticket = cache
            .get(&key, today)
            .err()
            .expect("a stale entry is not served");
        cache.keep(ticket, key, today, &held);
        let (first, second) = two_reads(&cache, &key);
        assert!(
            Arc::ptr_eq(&first, &second),
            "the thread's own copy, from its memo"
        );
        assert!(!Arc::ptr_eq(
            &first,
            held.visitor_contexts[0].get().unwrap()
        ));
        assert!(
            cache.visitor_context(&key, 1).is_none(),
            "not worked out with GPC"
        );
        // Another cache of the process (another node) never serves this one's memo.
        let other = RecordCache::default();
        assert!(other.visitor_context(&key, 0).is_none());
        let before = cache.visitor_context(&key, 0).expect("still held");
        // A write of another subject anywhere in the process starts the memo over: the
        // context is read from the entry again, still served.
        mark_writing("account:-7012");
        let after = cache.visitor_context(&key, 0).expect("still held");
        assert!(!Arc::ptr_eq(&before, &after), "read from the entry again");
        // A write of this subject: not served from memory at all while it lasts.
        mark_writing("account:-7010");
        assert!(cache.visitor_context(&key, 0).is_none());
    }

    #[test]
    fn an_eviction_ends_what_threads_remember() {
        let cache = RecordCache::default();
        let today = crate::policy::today_number();
        let key = SubjectKey::Account(-7_011);
        let held = standing();
        held.visitor_contexts[0].get_or_init(|| Arc::new(ConsentContext::default()));
        let ticket = cache.get(&key, today).err().expect("nothing held yet");
        cache.keep(ticket, key, today, &held);
        let (before, again) = two_reads(&cache, &key);
        assert!(Arc::ptr_eq(&before, &again), "from the memo");
        // Any eviction starts every thread's memo over, even for subjects still held.
        cache.evict(["account:-7999"]);
        let after = cache.visitor_context(&key, 0).unwrap();
        assert!(!Arc::ptr_eq(&before, &after), "read from the entry again");
        cache.evict(["account:-7011"]);
        assert!(
            cache.visitor_context(&key, 0).is_none(),
            "evicted: the memo is gone too"
        );
        let ticket = cache.get(&key, today).err().expect("evicted");
        cache.keep(ticket, key, today, &held);
        assert!(cache.visitor_context(&key, 0).is_some());
        cache.clear();
        assert!(
            cache.visitor_context(&key, 0).is_none(),
            "cleared: the memo is gone too"
        );
        // From another thread: its own memo, the same answer.
        let ticket = cache.get(&key, today).err().expect("cleared");
        cache.keep(ticket, key, today, &held);
        let here = cache.visitor_context(&key, 0).unwrap();
        let there = std::thread::scope(|scope| {
            scope
                .spawn(|| cache.visitor_context(&key, 0).unwrap())
                .join()
                .unwrap()
        });
        assert!(!Arc::ptr_eq(&here, &there));
        assert_eq!(format!("{here:?}"), format!("{there:?}"));
    }

    #[test]
    fn a_read_overtaken_by_an_eviction_is_not_kept() {
        let cache = RecordCache::default();
        let today = crate::policy::today_number();
        let key = SubjectKey::Account(-7_003);
        let ticket = cache.get(&key, today).err().expect("nothing held yet");
        cache.evict(["account:-7003"]);
        cache.keep(ticket, key, today, &standing());
        assert!(cache.get(&key, today).is_err());
        let ticket = cache.get(&key, today).err().expect("nothing held yet");
        cache.keep(ticket, key, today, &standing());
        assert_eq!(cache.held(), 1);
        cache.evict(["account:-7003"]);
        assert_eq!(cache.held(), 0);
    }
}
