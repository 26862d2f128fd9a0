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

use crate::store::Store;
use covenant_core::consent::ConsentRecord;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
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

/// Subjects some transaction of this process is writing records for, until when.
static WRITING: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

/// Marks `subject` as being written, in every cache of this process; call before the insert.
pub fn mark_writing(subject: &str) {
    let mut writing = WRITING.lock().expect("the writing lock is never poisoned");
    let now = Instant::now();
    writing.retain(|(_, until)| *until > now);
    writing.push((subject.to_string(), now + WRITE_WINDOW));
}

fn being_written(subject: &str) -> bool {
    let writing = WRITING.lock().expect("the writing lock is never poisoned");
    let now = Instant::now();
    writing
        .iter()
        .any(|(held, until)| held == subject && *until > now)
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
}

struct Entry {
    standing: Standing,
    /// The day (`YYYY-MM-DD`) the version in force was read for: a version can come into force
    /// at midnight.
    day: String,
    read_at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    epoch: u64,
    /// The records a sync has seen near the top of the table, by id, with their subject.
    recent: BTreeMap<i64, String>,
    /// The highest record id seen by a sync; `None` until the first round.
    seen_record: Option<i64>,
    seen_policy: Option<i64>,
}

#[derive(Default)]
pub struct RecordCache {
    inner: Mutex<Inner>,
}

/// The epoch a read began in; hand it back to [`RecordCache::keep`].
pub struct ReadTicket(u64);

impl RecordCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("the consent cache lock is never poisoned")
    }

    /// The standing records of `subject`, if held, read for `day`, and fresh enough; else a
    /// ticket for the read that replaces them.
    pub fn get(&self, subject: &str, day: &str) -> Result<Standing, ReadTicket> {
        if being_written(subject) {
            // A ticket no epoch matches: the read is served, not kept.
            return Err(ReadTicket(u64::MAX));
        }
        let inner = self.lock();
        match inner.entries.get(subject) {
            Some(entry) if entry.day == day && entry.read_at.elapsed() < TIME_TO_LIVE => {
                Ok(entry.standing.clone())
            }
            _ => Err(ReadTicket(inner.epoch)),
        }
    }

    /// Keeps what a read returned, unless an eviction happened since the read began.
    pub fn keep(&self, ticket: ReadTicket, subject: &str, day: &str, standing: &Standing) {
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
        }
        inner.entries.insert(
            subject.to_string(),
            Entry {
                standing: standing.clone(),
                day: day.to_string(),
                read_at: Instant::now(),
            },
        );
    }

    /// Forgets the subjects a write of this process changed; call after its commit.
    pub fn evict<'a>(&self, subjects: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.epoch += 1;
        for subject in subjects {
            inner.entries.remove(subject);
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
        self.lock().entries.len()
    }

    /// One round of looking for writes made by other processes. The first round only notes
    /// where the tables stand.
    pub async fn sync(&self, store: &Store) -> anyhow::Result<()> {
        let (seen_record, seen_policy) = {
            let inner = self.lock();
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
            for subject in &changed {
                inner.entries.remove(subject);
            }
        }
        Ok(())
    }
}
