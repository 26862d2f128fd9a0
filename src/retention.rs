//! Retention in the running forum (promises T1–T4): each member's relationship, its end (an
//! account closed), legal holds, and the sweep that restricts, deletes and anonymizes what the
//! core's `retention_verdict` says is due, in resumable, audited batches.
//! The verdicts are `covenant_core::retention`'s; this module gathers their inputs and carries
//! them out through the store. It never logs or audits a personal value (ids and category keys
//! only), and it never decides a day or a reason itself.
//!
//! What is swept is the explicit list [`Swept::ALL`] (account record, posts, sign-ins, sessions,
//! mail, feedback, social links, consent evidence, and last the member's residence), then the
//! privacy-request records ([`Swept::Requests`]), per submission. Its tests hold it to
//! `crate::inventory`: every swept column is declared there under the same category, and every
//! personal column of members' tables is either swept or named as not swept yet, so a new
//! column cannot escape unnoticed. Walking the inventory itself is next.

use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::policy::Policies;
use crate::store::{
    self, DeviceColumn, DeviceTable, HoldRow, NewHold, RelationshipRow, RequestRecordRow, Store,
    SweepScope, SweepStep, SweepTotals, Tx,
};
use anyhow::Context;
use covenant_core::policy::{CategoryKey, Jurisdiction, Policy};
use covenant_core::retention::{
    Account, ClosureReason, Hold, HoldScope, Relationship, Subscription, Verdict, VerdictState,
    residence_verdict, retention_verdict,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use time::{Date, OffsetDateTime};

/// The kinds of personal record the sweep acts on, each governed by one category's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// `users.username`; restricting it restricts the whole account record.
    Username,
    /// `users.email` and the mail queued to it (`mail_outbox`).
    Email,
    /// `users.birth_year`.
    BirthYear,
    /// `users.password_hash`, `two_factor`, `recovery_codes`, `account_tokens`, `sessions`.
    Credentials,
    /// `ip` of `posts`, `sign_ins` and `sessions`.
    IpAddress,
    /// `user_agent` of `posts`, `sign_ins` and `sessions`.
    UserAgent,
    /// `posts` and `topics` the member wrote, and `users.bio`.
    PublicContent,
    /// Messages to us (`feedback`), followed topics and digests sent.
    PrivateContent,
    /// Social sign-in links (`social_links`).
    SocialProfile,
    /// Consent evidence: `consent_records`, `consent_gpc`, `policy_acknowledgements`,
    /// `news_subscriptions`, `digest_subscriptions`.
    Consent,
    /// Where the member lives: `users.jurisdiction`, `country`, `us_state`. Filed with the
    /// privacy-request details (the policy has no location category); it decides the law of
    /// every other verdict, so its own verdict follows theirs (`residence_verdict`) and it
    /// is taken last.
    Residence,
    /// Privacy-request records, per submission: `privacy_submissions`, `privacy_requests`,
    /// their notes, evidence, status links and correspondence (`mail_outbox`). They follow
    /// the policy's own fixed period, whoever asked and whatever the account; swept after
    /// members, not in [`Swept::ALL`].
    Requests,
}

impl Swept {
    /// In the order the sweep takes them. Posts come before the device columns: anonymizing a
    /// post clears its IP address and user agent in the same write, so when both are due each
    /// post is rewritten once, not three times (a third of the sweep's time on a large forum).
    pub const ALL: [Swept; 11] = [
        Swept::Username,
        Swept::Email,
        Swept::BirthYear,
        Swept::Credentials,
        Swept::PublicContent,
        Swept::IpAddress,
        Swept::UserAgent,
        Swept::PrivateContent,
        Swept::SocialProfile,
        Swept::Consent,
        Swept::Residence,
    ];

    pub fn category(self) -> &'static str {
        match self {
            Swept::Username => "user.account.username",
            Swept::Email => "user.contact.email",
            Swept::BirthYear => "user.account.birth_year",
            Swept::Credentials => "user.authorization.credentials",
            Swept::IpAddress => "user.device.ip_address",
            Swept::UserAgent => "user.device.user_agent",
            Swept::PublicContent => "user.content.public",
            Swept::PrivateContent => "user.content.private",
            Swept::SocialProfile => "user.social.profile",
            Swept::Consent => "user.behavior.consent",
            Swept::Residence | Swept::Requests => "user.privacy_request.details",
        }
    }

    /// Whether its records live in the account's own row (one record, created with it) rather
    /// than in tables whose rows each have their own creation time.
    fn in_account_row(self) -> bool {
        matches!(
            self,
            Swept::Username | Swept::BirthYear | Swept::Credentials | Swept::Residence
        )
    }
}

/// The relationship the core's verdicts take, from the stored state.
pub fn relationship_of(row: &RelationshipRow) -> Relationship {
    let at = |epoch: i64| {
        OffsetDateTime::from_unix_timestamp(epoch).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let account = match row.closed_at {
        Some(closed) => Account::Closed {
            at: at(closed),
            reason: row
                .closed_reason
                .as_deref()
                .and_then(|r| ClosureReason::parse(r).ok())
                .unwrap_or(ClosureReason::ByMember),
        },
        None => Account::Active,
    };
    let subscription = match (row.news_subscribed_at, row.news_ended_at) {
        (Some(since), ended) if ended.is_none_or(|ended| ended < since) => Subscription::Active,
        (_, Some(ended)) => Subscription::Ended { at: at(ended) },
        _ => Subscription::None,
    };
    Relationship {
        subject: row.id.to_string(),
        account,
        subscription,
        last_activity: Some(at(row.last_active_at.unwrap_or(row.created_at))),
    }
}

/// A stored hold as the core reads it.
pub fn hold_of(row: &HoldRow) -> Hold {
    Hold {
        scope: HoldScope {
            subject: row.subject_user_id.map(|id| id.to_string()),
            categories: row
                .categories
                .split_whitespace()
                .filter_map(|key| CategoryKey::parse(key).ok())
                .collect(),
            created_from: row.created_from.as_deref().and_then(parse_day),
            created_until: row.created_until.as_deref().and_then(parse_day),
        },
        reason: row.reason.clone(),
        released_at: row
            .released_at
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok()),
    }
}

/// A day written `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(
        text.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn midnight(day: Date) -> i64 {
    day.midnight().assume_utc().unix_timestamp()
}

/// How a sweep is run.
/// A real sweep commits once its transaction has taken this many members (or submissions),
/// or has been open this long, whichever comes first. Each commit writes every page it changed
/// to the WAL again, once per commit that changes it: since posts' text moved out (0043) a page
/// of `posts` holds some 130 rows, so a thousand members' posts already touched most of the
/// table's pages in every commit, and fewer, larger commits write them fewer times (3.1-3.3 s
/// instead of 3.8 s per 100,000 records on the demo forum; on SQLite the sweep checkpoints
/// when the WAL holds 256 MiB and at its end: see `Store::begin_sweep`). The time bound is
/// unchanged: it keeps other writers (the server's requests) from waiting long behind SQLite's
/// one write lock, and on the demo forum it now ends most transactions first.
const MEMBERS_PER_COMMIT: i64 = 5000;
const COMMIT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The moment the verdicts are taken at (the clock, or `--now` for a rehearsal).
    pub now: OffsetDateTime,
    /// Count instead of changing, in read-only transactions: nothing changes, and the report
    /// is exactly what a real run would do now (the same steps count the same rows).
    pub dry_run: bool,
    /// Members per batch: per statement and per audit append; a transaction takes several
    /// (see `MEMBERS_PER_COMMIT`).
    pub batch_size: i64,
    /// Stop (as a crash would) after this many committed batches; for tests.
    pub stop_after_batches: Option<u64>,
}

/// One line of a sweep's report: a category and what happened to its records.
#[derive(Debug, Clone, Default)]
pub struct ReportLine {
    /// Records acted on (for `held`: members' categories kept by a hold).
    pub records: u64,
    /// The verdict's reason for the first of them (the others differ only in their days).
    pub example_reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Keyed by category and action: the verdict's stored name (`restrict`, `delete`, …), or
    /// for minimization `minimize` (old sign-ins' device data) and `expire` (expired
    /// sessions and one-time links).
    pub lines: BTreeMap<(&'static str, &'static str), ReportLine>,
    pub subjects: u64,
    pub batches: u64,
    /// Every subject was visited (false when stopped early).
    pub finished: bool,
    pub run_id: Option<i64>,
    /// The moment the verdicts were taken at (a resumed run keeps its own).
    pub as_of: i64,
}

impl SweepReport {
    fn add(&mut self, category: &'static str, action: &'static str, n: u64, reason: &str) {
        let line = self.lines.entry((category, action)).or_default();
        if line.example_reason.is_empty() {
            line.example_reason = reason.to_string();
        }
        line.records += n;
    }

    /// Records restricted, deleted, anonymized or minimized (not those held).
    pub fn changed(&self) -> u64 {
        self.lines
            .iter()
            .filter(|((_, action), _)| *action != VerdictState::Held.as_str())
            .map(|(_, line)| line.records)
            .sum()
    }

    pub fn total(&self, state: VerdictState) -> u64 {
        self.lines
            .iter()
            .filter(|((_, s), _)| *s == state.as_str())
            .map(|(_, line)| line.records)
            .sum()
    }
}

/// Relationship ends, legal holds and sweeps.
#[derive(Clone)]
pub struct Retention {
    store: Store,
    audit: AuditKey,
    policies: Policies,
    default_jurisdiction: Jurisdiction,
    site_name: String,
    base_url: String,
}

impl Retention {
    pub fn new(store: Store, audit: AuditKey, policies: Policies, config: &Arc<Config>) -> Self {
        Self {
            store,
            audit,
            policies,
            default_jurisdiction: config
                .retention
                .default_jurisdiction
                .parse()
                .unwrap_or(Jurisdiction::Other),
            site_name: config.site_name.clone(),
            base_url: config.base_url().to_string(),
        }
    }

    /// Ends a member's account (an end of the relationship, T1): it signs in no more, its
    /// sessions end, no more mail goes to it; the sweep takes it from there. Returns false if
    /// it was already closed.
    pub async fn close_account(
        &self,
        user_id: i64,
        reason: ClosureReason,
        actor_id: Option<i64>,
    ) -> Result<bool> {
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let closed = store::close_account(&mut tx, user_id, reason.as_str(), now).await?;
        if closed {
            audit::record(
                &mut tx,
                &self.audit,
                Event::new(AuditKind::AccountClosed)
                    .actor(actor_id)
                    .subject(Some(user_id))
                    .detail(Detail::Reason(reason.as_str())),
            )
            .await?;
        }
        tx.commit().await.context("committing an account closure")?;
        if closed {
            tracing::info!(user_id, reason = reason.as_str(), "account closed");
        }
        Ok(closed)
    }

    /// The inactivity limit (`[inactivity] account_days`): a member whose account has gone
    /// unused for all but [`INACTIVITY_NOTICE_DAYS`] of the limit is told by email when it
    /// will be closed; an account unused for the whole limit and warned at least that many
    /// days before is closed, dated the later of the two days, with an `account_closed` audit
    /// entry (`reason=inactivity`). Any use after the warning voids it. Transactions of a
    /// thousand accounts; a dry run counts both.
    async fn close_inactive_accounts(
        &self,
        days: u32,
        as_of: i64,
        dry_run: bool,
        report: &mut SweepReport,
    ) -> Result<()> {
        let limit_seconds = i64::from(days) * DAY_SECONDS;
        let notice_seconds = i64::from(INACTIVITY_NOTICE_DAYS) * DAY_SECONDS;
        let warn_cutoff = as_of - (limit_seconds - notice_seconds);
        let close_cutoff = as_of - limit_seconds;
        let warned_before = as_of - notice_seconds;
        let notice_days = INACTIVITY_NOTICE_DAYS;
        let warn_reason = format!(
            "The account was not used for {} days: its member is told by email that it will be \
             closed {notice_days} days later unless they sign in (the policy's \
             inactivity.account_days is {days}).",
            days - notice_days
        );
        let close_reason = format!(
            "The account was not used for {days} days (the policy's inactivity.account_days) \
             and its member was told {notice_days} days before: it is closed as of the day the \
             limit was reached, and its data then follows the rules for closed accounts."
        );
        if dry_run {
            let mut tx = self.store.begin_read().await?;
            let to_warn = store::count_accounts_to_warn(&mut tx, warn_cutoff).await?;
            let to_close =
                store::count_inactive_accounts(&mut tx, close_cutoff, warned_before).await?;
            tx.rollback()
                .await
                .context("ending a dry-run transaction")?;
            if to_warn > 0 {
                report.add(
                    Swept::Username.category(),
                    "warn",
                    to_warn as u64,
                    &warn_reason,
                );
            }
            if to_close > 0 {
                report.add(
                    Swept::Username.category(),
                    "close",
                    to_close as u64,
                    &close_reason,
                );
            }
            return Ok(());
        }
        loop {
            let mut tx = self.store.begin().await?;
            let found = store::accounts_to_warn(&mut tx, warn_cutoff, 1000).await?;
            if found.is_empty() {
                tx.rollback().await.context("ending an inactivity check")?;
                break;
            }
            for &(user_id, last_active) in &found {
                let Some(user) = store::user_by_id_in(&self.store, &mut tx, user_id).await? else {
                    continue;
                };
                let closes_on = crate::web::pages::date(
                    (last_active + limit_seconds).max(as_of + notice_seconds),
                );
                crate::mail::Mail::inactivity_warning(
                    &self.site_name,
                    &user.username,
                    &closes_on,
                    &format!("{}/sign-in", self.base_url),
                )
                .enqueue(
                    &self.store,
                    &mut tx,
                    &format!("inactivity-warning:{user_id}:{last_active}"),
                    &user.email,
                    Some(user_id),
                    crate::now(),
                )
                .await?;
                store::mark_inactivity_warned(&mut tx, user_id, as_of).await?;
            }
            tx.commit()
                .await
                .context("committing inactivity warnings")?;
            report.add(
                Swept::Username.category(),
                "warn",
                found.len() as u64,
                &warn_reason,
            );
        }
        loop {
            let mut tx = self.store.begin().await?;
            let found =
                store::inactive_accounts(&mut tx, close_cutoff, warned_before, 1000).await?;
            if found.is_empty() {
                tx.rollback().await.context("ending an inactivity check")?;
                return Ok(());
            }
            let mut events = Vec::new();
            for &(user_id, last_active, warned_at) in &found {
                let why = ClosureReason::Inactivity.as_str();
                let closed_at = (last_active + limit_seconds).max(warned_at + notice_seconds);
                if store::close_account(&mut tx, user_id, why, closed_at).await? {
                    events.push(
                        Event::new(AuditKind::AccountClosed)
                            .subject(Some(user_id))
                            .detail(Detail::Reason(why)),
                    );
                }
            }
            let n = events.len() as u64;
            audit::record_many(&self.store, &mut tx, &self.audit, events).await?;
            tx.commit()
                .await
                .context("committing inactive accounts' closure")?;
            report.add(Swept::Username.category(), "close", n, &close_reason);
        }
    }

    /// The verdict for each swept category of one member, as staff and exports show it.
    pub async fn verdicts_of(
        &self,
        user_id: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<(&'static str, Verdict)>> {
        let row = self
            .store
            .relationship(user_id)
            .await?
            .ok_or(Error::NotFound("member"))?;
        let policy = self.policies.current().await?.policy.clone();
        let holds: Vec<Hold> = self.store.holds().await?.iter().map(hold_of).collect();
        let relationship = relationship_of(&row);
        let jurisdiction = policy.jurisdiction(self.jurisdiction_of(&row));
        let created = at(row.created_at);
        let mut verdicts: Vec<(&'static str, Verdict)> = Swept::ALL
            .iter()
            .filter(|item| **item != Swept::Residence)
            .filter_map(|item| {
                let key = CategoryKey::parse(item.category()).ok()?;
                let rule = policy.retention_for(&key)?;
                let verdict =
                    retention_verdict(rule, jurisdiction, &relationship, &holds, created, now);
                Some((item.category(), verdict))
            })
            .collect();
        let others: Vec<Verdict> = verdicts.iter().map(|(_, v)| v.clone()).collect();
        let residence = residence_of(&holds, &relationship.subject, created, now, &others);
        verdicts.push((Swept::Residence.category(), residence));
        Ok(verdicts)
    }

    fn jurisdiction_of(&self, row: &RelationshipRow) -> Jurisdiction {
        row.jurisdiction
            .as_deref()
            .and_then(|j| j.parse().ok())
            .unwrap_or(self.default_jurisdiction)
    }

    /// Runs (or, with `dry_run`, rehearses) a sweep. A real run resumes the open run if a
    /// previous one was cut short, keeping that run's moment; several sweepers (nodes) share
    /// one run, batch by batch, through the lock on its cursor.
    pub async fn sweep(
        &self,
        options: &SweepOptions,
        after_batch: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<SweepReport> {
        let policy = self.policies.current().await?.policy.clone();
        let mut report = SweepReport::default();
        let started = crate::now();
        let (run_id, as_of, mut cursor) = if options.dry_run {
            (None, options.now.unix_timestamp(), 0)
        } else {
            let run = self
                .store
                .open_sweep_run(options.now.unix_timestamp(), started)
                .await?;
            (Some(run.id), run.as_of, run.after_user_id)
        };
        report.run_id = run_id;
        report.as_of = as_of;
        let now = at(as_of);
        let batch_size = options.batch_size.max(1);
        let security_log_days = policy.minimization().security_log_days;
        let security_log_cutoff = as_of - i64::from(security_log_days) * 86_400;
        let mut minimized_after = 0;
        let mut requests_after = 0;
        let mut unowned_done = false;
        // First, an end of the relationship the policy may set: accounts unused for too long
        // are closed as of the day the limit was reached, then swept like any closed account.
        if let Some(days) = policy.inactivity().account_days {
            self.close_inactive_accounts(days, as_of, options.dry_run, &mut report)
                .await?;
        }
        // Several batches share a transaction (see `COMMIT_EVERY`): each batch advances the
        // run's cursor in it, so a crash loses the uncommitted batches whole and the next run
        // repeats exactly those.
        let mut open: Option<(Tx, Instant, i64)> = None;
        loop {
            if open.is_none() {
                // A dry run only reads: it takes no write lock and cannot change anything.
                let mut tx = if options.dry_run {
                    self.store.begin_read().await?
                } else {
                    self.store.begin_sweep().await?
                };
                if let Some(run_id) = run_id {
                    let run = self.store.lock_sweep_run(&mut tx, run_id).await?;
                    if run.finished_at.is_some() {
                        // Another sweeper finished this run while we waited for the lock.
                        tx.rollback()
                            .await
                            .context("leaving a finished sweep run")?;
                        report.finished = true;
                        break;
                    }
                    cursor = run.after_user_id;
                }
                open = Some((tx, Instant::now(), 0));
            }
            let Some((tx, opened, members_in_tx)) = open.as_mut() else {
                break;
            };
            let subjects = self
                .store
                .closed_subjects_after(tx, cursor, batch_size)
                .await?;
            let mut finished = false;
            if let Some(last) = subjects.last().map(|s| s.id) {
                let holds: Vec<Hold> = self
                    .store
                    .standing_holds(tx)
                    .await?
                    .iter()
                    .map(hold_of)
                    .collect();
                let mut totals = SweepTotals::default();
                self.sweep_batch(
                    tx,
                    &policy,
                    &holds,
                    &subjects,
                    now,
                    security_log_cutoff,
                    run_id,
                    !options.dry_run,
                    &mut report,
                    &mut totals,
                )
                .await?;
                totals.n_subjects = subjects.len() as i64;
                report.subjects += subjects.len() as u64;
                *members_in_tx += subjects.len() as i64;
                cursor = last;
                if let Some(run_id) = run_id {
                    store::advance_sweep_run(tx, run_id, last, &totals).await?;
                }
                after_batch(subjects.len() as u64);
            } else {
                // Every closed account is done: now the minimization of everyone's device data,
                // in batches too. It needs no cursor of its own in the run: it takes only what
                // still needs it, so a resumed run finds the rest and nothing twice.
                let due = self
                    .store
                    .members_with_device_data_due(
                        tx,
                        minimized_after,
                        batch_size,
                        security_log_cutoff,
                        as_of,
                    )
                    .await?;
                // Then the privacy-request records, per submission, whoever they are about:
                // like minimization, each batch takes only what is still there.
                let records = if due.is_empty() {
                    self.store
                        .request_records_after(tx, requests_after, batch_size)
                        .await?
                } else {
                    Vec::new()
                };
                if let Some(&last_due) = due.last() {
                    let holds: Vec<Hold> = self
                        .store
                        .standing_holds(tx)
                        .await?
                        .iter()
                        .map(hold_of)
                        .collect();
                    let mut totals = SweepTotals::default();
                    let minimization = Minimizing {
                        holds: &holds,
                        members: &due,
                        now,
                        security_log_days,
                        security_log_cutoff,
                        run_id,
                        execute: !options.dry_run,
                    };
                    self.minimize_batch(tx, &minimization, &mut report, &mut totals)
                        .await?;
                    minimized_after = last_due;
                    *members_in_tx += due.len() as i64;
                    if let Some(run_id) = run_id {
                        store::advance_sweep_run(tx, run_id, cursor, &totals).await?;
                    }
                } else if let Some(last_record) = records.last().map(|r| r.id) {
                    let holds: Vec<Hold> = self
                        .store
                        .standing_holds(tx)
                        .await?
                        .iter()
                        .map(hold_of)
                        .collect();
                    let mut totals = SweepTotals::default();
                    self.sweep_requests(
                        tx,
                        &policy,
                        &holds,
                        &records,
                        now,
                        run_id,
                        !options.dry_run,
                        &mut report,
                        &mut totals,
                    )
                    .await?;
                    requests_after = last_record;
                    *members_in_tx += records.len() as i64;
                    if let Some(run_id) = run_id {
                        store::advance_sweep_run(tx, run_id, cursor, &totals).await?;
                    }
                } else if !unowned_done {
                    // Last, what belongs to no member: expired sign-in flows and unfinished
                    // provider sign-ups, and old mail to people without an account.
                    unowned_done = true;
                    let mut totals = SweepTotals::default();
                    let unowned = Unowned {
                        as_of,
                        security_log_days,
                        security_log_cutoff,
                        run_id,
                        execute: !options.dry_run,
                    };
                    self.sweep_unowned(tx, &unowned, &mut report, &mut totals)
                        .await?;
                    if let Some(run_id) = run_id {
                        store::advance_sweep_run(tx, run_id, cursor, &totals).await?;
                    }
                } else {
                    if let Some(run_id) = run_id {
                        store::finish_sweep_run(tx, run_id, crate::now()).await?;
                        audit::record(
                            tx,
                            &self.audit,
                            Event::new(AuditKind::SweepFinished)
                                .detail(Detail::SweepRun(run_id))
                                .detail(Detail::Count(report.subjects as i64)),
                        )
                        .await?;
                    }
                    finished = true;
                }
            }
            if !finished {
                report.batches += 1;
            }
            let stop = options
                .stop_after_batches
                .is_some_and(|stop| report.batches >= stop);
            let full = *members_in_tx >= MEMBERS_PER_COMMIT || opened.elapsed() >= COMMIT_EVERY;
            if (finished || stop || full)
                && let Some((tx, _, _)) = open.take()
            {
                match run_id {
                    Some(_) => tx.commit().await.context("committing sweep batches")?,
                    None => tx
                        .rollback()
                        .await
                        .context("ending a dry-run transaction")?,
                }
            }
            if finished {
                report.finished = true;
                break;
            }
            if stop {
                break;
            }
        }
        if !options.dry_run {
            self.store.checkpoint_after_sweep().await?;
            tracing::info!(
                run_id = ?report.run_id,
                subjects = report.subjects,
                restricted = report.total(VerdictState::Restrict),
                deleted = report.total(VerdictState::Delete),
                anonymized = report.total(VerdictState::Anonymize),
                changed = report.changed(),
                finished = report.finished,
                "sweep"
            );
        }
        Ok(report)
    }

    /// Decides each member's verdicts, then carries them out kind by kind (in [`Swept::ALL`]'s
    /// order, so each member's records go through the same sequence as one by one): one
    /// counting statement and at most one changing statement per step for the members no hold
    /// touches, the same per member for those a dated hold narrows. A dry run only counts.
    /// Audit entries (one per member and category) are written together at the end.
    #[allow(clippy::too_many_arguments)]
    async fn sweep_batch(
        &self,
        tx: &mut Tx,
        policy: &Policy,
        holds: &[Hold],
        subjects: &[RelationshipRow],
        now: OffsetDateTime,
        security_log_cutoff: i64,
        run_id: Option<i64>,
        execute: bool,
        report: &mut SweepReport,
        totals: &mut SweepTotals,
    ) -> anyhow::Result<()> {
        let plans = self.plan_batch(policy, holds, subjects, now, report, totals);
        let mut events = Vec::new();
        // What earlier actions of this batch did that later ones must not count again.
        let mut credentials_gone: HashSet<i64> = HashSet::new();
        let mut posts_left: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        let mut ghost_id = None;
        for (index, item) in Swept::ALL.into_iter().enumerate() {
            let plans = &plans.actions[index];
            if plans.is_empty() {
                continue;
            }
            if execute
                && ghost_id.is_none()
                && item == Swept::PublicContent
                && plans.iter().any(|p| p.state == VerdictState::Anonymize)
            {
                ghost_id = Some(self.store.ghost_user(tx, now.unix_timestamp()).await?);
            }
            // A dry run never writes, so the deleted user's id is never needed there.
            let ghost_id = ghost_id.unwrap_or(0);
            let mut counts: HashMap<i64, u64> = HashMap::new();
            for state in [
                VerdictState::Restrict,
                VerdictState::Delete,
                VerdictState::Anonymize,
            ] {
                for step in steps_of(item, state, now.unix_timestamp(), ghost_id) {
                    // Members whose sessions went with their credentials, or whose posts went
                    // to the deleted user, have none of those left to blank; of posts kept by
                    // a hold, only those are left.
                    // Sign-ins older than the security log's days are minimization's (counted
                    // there, never twice).
                    let base = match step {
                        SweepStep::BlankDevice(DeviceTable::SignIns, _) => SweepScope {
                            excluded: Vec::new(),
                            within: Some(vec![(security_log_cutoff, i64::MAX / 2)]),
                        },
                        _ => SweepScope::default(),
                    };
                    let mut whole = Vec::new();
                    let mut narrowed = Vec::new();
                    for plan in plans.iter().filter(|p| p.state == state) {
                        let gone = match step {
                            SweepStep::BlankDevice(DeviceTable::Sessions, _) => {
                                credentials_gone.contains(&plan.user_id)
                            }
                            _ => false,
                        };
                        let within = match step {
                            SweepStep::BlankDevice(DeviceTable::Posts, _) => {
                                posts_left.get(&plan.user_id).cloned()
                            }
                            _ => base.within.clone(),
                        };
                        if gone || within.as_ref().is_some_and(|left| left.is_empty()) {
                            continue;
                        }
                        if plan.excluded.is_empty() && within == base.within {
                            whole.push(plan.user_id);
                        } else {
                            let scope = SweepScope {
                                excluded: plan.excluded.clone(),
                                within,
                            };
                            narrowed.push((plan.user_id, scope));
                        }
                    }
                    let mut found = self
                        .store
                        .sweep_step(tx, step, &whole, &base, execute)
                        .await?;
                    for (user_id, scope) in &narrowed {
                        found.extend(
                            self.store
                                .sweep_step(tx, step, &[*user_id], scope, execute)
                                .await?,
                        );
                    }
                    for (id, n) in found {
                        *counts.entry(id).or_default() += n;
                    }
                }
            }
            for plan in plans {
                match (item, plan.state) {
                    (Swept::Credentials, VerdictState::Delete) => {
                        credentials_gone.insert(plan.user_id);
                    }
                    (Swept::PublicContent, VerdictState::Anonymize) => {
                        // Posts created in held days stay with their author.
                        posts_left.insert(plan.user_id, plan.excluded.clone());
                    }
                    _ => {}
                }
                let n = counts.get(&plan.user_id).copied().unwrap_or(0);
                if n == 0 {
                    continue;
                }
                let kind = match plan.state {
                    VerdictState::Restrict => {
                        totals.n_restricted += n as i64;
                        AuditKind::DataRestricted
                    }
                    VerdictState::Delete => {
                        totals.n_deleted += n as i64;
                        AuditKind::DataDeleted
                    }
                    _ => {
                        totals.n_anonymized += n as i64;
                        AuditKind::DataAnonymized
                    }
                };
                let mut event = Event::new(kind)
                    .subject(Some(plan.user_id))
                    .detail(Detail::Category(item.category().to_string()))
                    .detail(Detail::Count(n as i64));
                if let Some(run_id) = run_id {
                    event = event.detail(Detail::SweepRun(run_id));
                }
                events.push(event);
                report.add(item.category(), plan.state.as_str(), n, &plan.reason);
            }
        }
        if execute {
            audit::record_many(&self.store, tx, &self.audit, events).await?;
            self.store
                .mark_swept(tx, &plans.all_removed, now.unix_timestamp())
                .await?;
        }
        Ok(())
    }

    /// Minimization of one batch of members (any relationship): their sign-ins older than the
    /// security log's days lose IP address and user agent, their expired sessions and
    /// one-time links go. Holds keep what they cover, as for verdicts. Each member and
    /// category is one audit entry (`reason=minimization` or `reason=expired`).
    async fn minimize_batch(
        &self,
        tx: &mut Tx,
        batch: &Minimizing<'_>,
        report: &mut SweepReport,
        totals: &mut SweepTotals,
    ) -> anyhow::Result<()> {
        let now = batch.now.unix_timestamp();
        let old_sign_ins = vec![(i64::MIN / 2, batch.security_log_cutoff)];
        let cutoff_day = at(batch.security_log_cutoff).date();
        let days = batch.security_log_days;
        let kinds = [
            (
                Swept::IpAddress,
                vec![SweepStep::BlankDevice(
                    DeviceTable::SignIns,
                    DeviceColumn::Ip,
                )],
                "minimize",
                "minimization",
            ),
            (
                Swept::UserAgent,
                vec![SweepStep::BlankDevice(
                    DeviceTable::SignIns,
                    DeviceColumn::UserAgent,
                )],
                "minimize",
                "minimization",
            ),
            (
                Swept::Credentials,
                vec![
                    SweepStep::DeleteExpiredSessions { now },
                    SweepStep::DeleteExpiredTokens { now },
                ],
                "expire",
                "expired",
            ),
        ];
        let mut events = Vec::new();
        for (item, steps, action, audit_reason) in kinds {
            let Ok(key) = CategoryKey::parse(item.category()) else {
                continue;
            };
            let within = (action == "minimize").then(|| old_sign_ins.clone());
            let mut whole = Vec::new();
            let mut narrowed = Vec::new();
            for &user_id in batch.members {
                match held_ranges(batch.holds, &user_id.to_string(), &key, batch.now) {
                    None => {}
                    Some(excluded) if excluded.is_empty() => whole.push(user_id),
                    Some(excluded) => narrowed.push((
                        user_id,
                        SweepScope {
                            excluded,
                            within: within.clone(),
                        },
                    )),
                }
            }
            let base = SweepScope {
                excluded: Vec::new(),
                within: within.clone(),
            };
            let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
            for step in steps {
                let mut found = self
                    .store
                    .sweep_step(tx, step, &whole, &base, batch.execute)
                    .await?;
                for (user_id, scope) in &narrowed {
                    found.extend(
                        self.store
                            .sweep_step(tx, step, &[*user_id], scope, batch.execute)
                            .await?,
                    );
                }
                for (id, n) in found {
                    *counts.entry(id).or_default() += n;
                }
            }
            let reason = if action == "minimize" {
                format!(
                    "Sign-ins keep their IP address and browser description for {days} days \
                     (the policy's minimization.security_log_days): these are from before \
                     {cutoff_day}, so they are deleted; the time of the sign-in stays."
                )
            } else {
                "Sessions and one-time links are deleted once they have expired.".to_owned()
            };
            for (user_id, n) in counts {
                let mut event = Event::new(AuditKind::DataDeleted)
                    .subject(Some(user_id))
                    .detail(Detail::Category(item.category().to_string()))
                    .detail(Detail::Count(n as i64))
                    .detail(Detail::Reason(audit_reason));
                if let Some(run_id) = batch.run_id {
                    event = event.detail(Detail::SweepRun(run_id));
                }
                events.push(event);
                totals.n_deleted += n as i64;
                report.add(item.category(), action, n, &reason);
            }
        }
        if batch.execute {
            audit::record_many(&self.store, tx, &self.audit, events).await?;
        }
        Ok(())
    }

    /// What no member owns and no rule of a category can wait for: sign-in flows and
    /// provider sign-ups left unfinished past their expiry (their sealed address and provider
    /// account id die with the row's key), and mail to a person without an account, outside
    /// any privacy request, once it was sent or withheld as long ago as the security logs are
    /// kept (its sealed address and subject die with the message's key). One audit entry per
    /// kind, with how many rows went; a dry run only counts.
    async fn sweep_unowned(
        &self,
        tx: &mut Tx,
        run: &Unowned,
        report: &mut SweepReport,
        totals: &mut SweepTotals,
    ) -> anyhow::Result<()> {
        let days = run.security_log_days;
        let (flows, pending) = store::count_expired_social(tx, run.as_of).await?;
        let mut dead_keys = Vec::new();
        if run.execute && flows + pending > 0 {
            dead_keys.extend(store::delete_expired_social(tx, run.as_of).await?);
        }
        let mut mail = 0;
        loop {
            let found = store::unowned_mail_done_before(tx, run.security_log_cutoff, 1000).await?;
            if found.is_empty() {
                break;
            }
            mail += found.len() as i64;
            if !run.execute {
                break;
            }
            let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
            store::delete_mail_rows(tx, &ids).await?;
            dead_keys.extend(
                found
                    .iter()
                    .map(|(_, key)| crate::sealing::row(store::OUTBOX_ROW_KEY, key)),
            );
        }
        if !run.execute && mail == 1000 {
            // The dry run counted one statement's worth: count the rest without listing them.
            mail = store::count_unowned_mail_done_before(tx, run.security_log_cutoff).await?;
        }
        let kinds = [
            (
                Swept::Credentials,
                flows,
                "expire",
                "expired",
                "A sign-in through a provider that was started and not finished is deleted \
                 once it has expired."
                    .to_owned(),
            ),
            (
                Swept::SocialProfile,
                pending,
                "expire",
                "expired",
                "A provider sign-up left before its registration form was sent is deleted, with \
                 the address and provider account it held, once it has expired."
                    .to_owned(),
            ),
            (
                Swept::Email,
                mail,
                "delete",
                "minimization",
                format!(
                    "Mail to a person without an account is kept {days} days after it was sent \
                     or withheld (the policy's minimization.security_log_days), then deleted."
                ),
            ),
        ];
        let mut events = Vec::new();
        for (item, n, action, audit_reason, reason) in kinds {
            if n == 0 {
                continue;
            }
            report.add(item.category(), action, n as u64, &reason);
            totals.n_deleted += n;
            let mut event = Event::new(AuditKind::DataDeleted)
                .detail(Detail::Category(item.category().to_string()))
                .detail(Detail::Count(n))
                .detail(Detail::Reason(audit_reason));
            if let Some(run_id) = run.run_id {
                event = event.detail(Detail::SweepRun(run_id));
            }
            events.push(event);
        }
        if run.execute {
            // A key whose row went without it (a process stopped between an erasure's commit
            // and the key's destruction) would open the row's copy in an older backup: it goes
            // too. Only keys a day old by the clock (not the run's date): a key is made just before
            // its row is written.
            let orphans = self
                .orphaned_row_keys(tx, crate::now() - DAY_SECONDS)
                .await?;
            if !orphans.is_empty() {
                events.push(
                    Event::new(AuditKind::SubjectKeyDestroyed)
                        .detail(Detail::Count(orphans.len() as i64))
                        .detail(Detail::Reason("orphaned")),
                );
                dead_keys.extend(orphans);
            }
            audit::record_many(&self.store, tx, &self.audit, events).await?;
            // The keys go now: were this transaction lost, its rows would open no more and
            // the next run would delete them.
            self.store.destroy_row_keys(&dead_keys).await?;
        }
        Ok(())
    }

    /// Keys of rows (`sealing::row`) made before `cutoff` whose row is no longer there.
    async fn orphaned_row_keys(&self, tx: &mut Tx, cutoff: i64) -> anyhow::Result<Vec<String>> {
        let keys = self.store.keys()?;
        let mut live: std::collections::HashSet<String> = store::pending_token_hashes(tx)
            .await?
            .iter()
            .map(|token| store::pending_key_subject(token))
            .collect();
        live.extend(
            store::unowned_mail_keys(tx)
                .await?
                .iter()
                .map(|key| crate::sealing::row(store::OUTBOX_ROW_KEY, key)),
        );
        let mut orphans = Vec::new();
        for prefix in [store::PENDING_ROW_KEY, store::OUTBOX_ROW_KEY] {
            for subject in keys.row_subjects_before(prefix, cutoff).await? {
                if !live.contains(&subject) {
                    orphans.push(subject);
                }
            }
        }
        Ok(orphans)
    }

    /// One batch of privacy-request records (per submission): kept while any of its
    /// requests is being handled, then for the policy's period of the privacy-request
    /// category counted from the day the last one was closed, under the law the request was
    /// handled under; holds keep what they cover. One audit entry per submission, with the
    /// numbers of its requests and how many rows went.
    #[allow(clippy::too_many_arguments)]
    async fn sweep_requests(
        &self,
        tx: &mut Tx,
        policy: &Policy,
        holds: &[Hold],
        records: &[RequestRecordRow],
        now: OffsetDateTime,
        run_id: Option<i64>,
        execute: bool,
        report: &mut SweepReport,
        totals: &mut SweepTotals,
    ) -> anyhow::Result<()> {
        let item = Swept::Requests;
        let Ok(key) = CategoryKey::parse(item.category()) else {
            return Ok(());
        };
        let Some(rule) = policy.retention_for(&key) else {
            // No rule: nothing may be decided, so they stay.
            return Ok(());
        };
        let mut due: HashMap<i64, (Option<i64>, VerdictState, String)> = HashMap::new();
        for record in records {
            if record.n_open > 0 {
                continue;
            }
            let handled = record
                .last_closed_at
                .unwrap_or(record.created_at)
                .max(record.created_at);
            let jurisdiction = policy.jurisdiction(
                record
                    .jurisdiction
                    .parse()
                    .unwrap_or(self.default_jurisdiction),
            );
            let relationship = Relationship {
                subject: record
                    .subject_user_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                account: Account::None,
                subscription: Subscription::None,
                last_activity: None,
            };
            let verdict =
                retention_verdict(rule, jurisdiction, &relationship, holds, at(handled), now);
            let reason = format!(
                "Privacy-request records count from the day their last request was closed. {}",
                verdict.reason
            );
            match verdict.state {
                VerdictState::Held => {
                    report.add(item.category(), VerdictState::Held.as_str(), 1, &reason);
                    totals.n_held += 1;
                }
                VerdictState::Delete | VerdictState::Anonymize => {
                    due.insert(record.id, (record.subject_user_id, verdict.state, reason));
                }
                _ => {}
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<i64> = due.keys().copied().collect();
        ids.sort_unstable();
        let mut events = Vec::new();
        for counts in self.store.delete_request_records(tx, &ids, execute).await? {
            let Some((subject, state, reason)) = due.get(&counts.submission_id) else {
                continue;
            };
            // The records are deleted either way: a request cannot be made anonymous and
            // still prove how it was answered.
            let kind = if *state == VerdictState::Anonymize {
                totals.n_anonymized += counts.rows as i64;
                AuditKind::DataAnonymized
            } else {
                totals.n_deleted += counts.rows as i64;
                AuditKind::DataDeleted
            };
            let mut event = Event::new(kind)
                .subject(*subject)
                .detail(Detail::Category(item.category().to_string()))
                .detail(Detail::Count(counts.rows as i64));
            for request in &counts.request_ids {
                event = event.detail(Detail::Request(*request));
            }
            if let Some(run_id) = run_id {
                event = event.detail(Detail::SweepRun(run_id));
            }
            events.push(event);
            report.add(item.category(), state.as_str(), counts.rows, reason);
            // The submission's correspondence is sealed under a key of its own: gone with its
            // records, every copy of it (a backup too) stops opening.
            if execute
                && self
                    .store
                    .destroy_submission_key(counts.submission_id)
                    .await?
            {
                let mut event = Event::new(AuditKind::SubjectKeyDestroyed).subject(*subject);
                for request in &counts.request_ids {
                    event = event.detail(Detail::Request(*request));
                }
                if let Some(run_id) = run_id {
                    event = event.detail(Detail::SweepRun(run_id));
                }
                events.push(event);
            }
        }
        if execute {
            audit::record_many(&self.store, tx, &self.audit, events).await?;
        }
        Ok(())
    }

    /// The verdict of each member of a batch for each kind of record, and what holds keep of
    /// it. Held and kept kinds are reported here; the rest become actions.
    fn plan_batch(
        &self,
        policy: &Policy,
        holds: &[Hold],
        subjects: &[RelationshipRow],
        now: OffsetDateTime,
        report: &mut SweepReport,
        totals: &mut SweepTotals,
    ) -> BatchPlan {
        let mut plan = BatchPlan {
            actions: Swept::ALL.map(|_| Vec::new()),
            all_removed: Vec::new(),
        };
        // Parsed once a batch rather than once a member and kind.
        let rules: Vec<Option<(CategoryKey, &covenant_core::policy::RetentionRule)>> = Swept::ALL
            .iter()
            .map(|item| {
                let key = CategoryKey::parse(item.category()).ok()?;
                let rule = policy.retention_for(&key)?;
                Some((key, rule))
            })
            .collect();
        for subject in subjects {
            let relationship = relationship_of(subject);
            let jurisdiction = policy.jurisdiction(self.jurisdiction_of(subject));
            let created = at(subject.created_at);
            let name = relationship.subject.clone();
            let mut all_removed = true;
            // What becomes of each other kind of record, holds applied: residence follows.
            let mut outcomes: Vec<Verdict> = Vec::with_capacity(Swept::ALL.len());
            let held_as = |verdict: &Verdict, reason: String| Verdict {
                state: VerdictState::Held,
                reason,
                ..verdict.clone()
            };
            for (index, item) in Swept::ALL.into_iter().enumerate() {
                if item == Swept::Residence {
                    self.plan_residence(
                        holds,
                        &name,
                        created,
                        now,
                        &outcomes,
                        index,
                        subject.id,
                        &mut plan,
                        report,
                        totals,
                        &mut all_removed,
                    );
                    continue;
                }
                let Some((key, rule)) = &rules[index] else {
                    // The policy keeps no rule for it: nothing may be decided, so it stays.
                    all_removed = false;
                    outcomes.push(Verdict {
                        state: VerdictState::Keep,
                        reason: format!(
                            "The policy has no retention rule for {}.",
                            item.category()
                        ),
                        restrict_from: None,
                        remove_on: None,
                    });
                    continue;
                };
                let verdict =
                    retention_verdict(rule, jurisdiction, &relationship, &[], created, now);
                if verdict.state == VerdictState::Keep {
                    all_removed = false;
                    outcomes.push(verdict);
                    continue;
                }
                // Holds over this member and category; their days decide which records they
                // keep.
                let covering: Vec<&Hold> = holds
                    .iter()
                    .filter(|hold| {
                        hold.released_at.is_none_or(|released| released > now)
                            && hold.scope.subject.as_deref().is_none_or(|s| s == name)
                            && (hold.scope.categories.is_empty()
                                || hold.scope.categories.contains(key))
                    })
                    .collect();
                let whole = covering.iter().any(|hold| {
                    (hold.scope.created_from.is_none() && hold.scope.created_until.is_none())
                        || (item.in_account_row() && hold.covers(&name, key, created, now))
                });
                if whole {
                    let held: Vec<Hold> = covering.iter().map(|h| (*h).clone()).collect();
                    let why =
                        retention_verdict(rule, jurisdiction, &relationship, &held, created, now);
                    report.add(item.category(), VerdictState::Held.as_str(), 1, &why.reason);
                    totals.n_held += 1;
                    all_removed = false;
                    outcomes.push(why);
                    continue;
                }
                if let Some(hold) = covering.first() {
                    all_removed = false;
                    outcomes.push(held_as(
                        &verdict,
                        format!(
                            "Partly held for a legal claim ({}): records of the held days stay.",
                            hold.reason
                        ),
                    ));
                } else {
                    outcomes.push(verdict.clone());
                }
                if verdict.state == VerdictState::Restrict {
                    all_removed = false;
                    // Only the account record and posts are marked; the rest is restricted by
                    // the closed account itself: it signs in no more, receives no mail, and no
                    // page shows these.
                    if !matches!(item, Swept::Username | Swept::PublicContent) {
                        continue;
                    }
                }
                if item == Swept::PublicContent
                    && verdict.state == VerdictState::Anonymize
                    && device_held(holds, &name, now)
                {
                    // Anonymized posts lose their IP address and user agent; while a hold
                    // keeps those, the posts stay with their author.
                    all_removed = false;
                    report.add(
                        item.category(),
                        VerdictState::Held.as_str(),
                        1,
                        &verdict.reason,
                    );
                    totals.n_held += 1;
                    if let Some(last) = outcomes.last_mut() {
                        *last = held_as(&verdict, verdict.reason.clone());
                    }
                    continue;
                }
                let excluded: Vec<(i64, i64)> =
                    covering.iter().map(|hold| held_range(hold)).collect();
                plan.actions[index].push(Planned {
                    user_id: subject.id,
                    state: verdict.state,
                    reason: verdict.reason,
                    excluded,
                });
            }
            if all_removed {
                plan.all_removed.push(subject.id);
            }
        }
        plan
    }

    /// The residence of one member, after every other kind of theirs was decided
    /// (`outcomes`): a hold over the privacy-request category keeps it; otherwise it follows
    /// the others (`residence_verdict`) and is planned for deletion once all of them go.
    #[allow(clippy::too_many_arguments)]
    fn plan_residence(
        &self,
        holds: &[Hold],
        name: &str,
        created: OffsetDateTime,
        now: OffsetDateTime,
        outcomes: &[Verdict],
        index: usize,
        user_id: i64,
        plan: &mut BatchPlan,
        report: &mut SweepReport,
        totals: &mut SweepTotals,
        all_removed: &mut bool,
    ) {
        let item = Swept::Residence;
        let verdict = residence_of(holds, name, created, now, outcomes);
        match verdict.state {
            VerdictState::Delete => plan.actions[index].push(Planned {
                user_id,
                state: VerdictState::Delete,
                reason: verdict.reason,
                excluded: Vec::new(),
            }),
            VerdictState::Held => {
                *all_removed = false;
                report.add(
                    item.category(),
                    VerdictState::Held.as_str(),
                    1,
                    &verdict.reason,
                );
                totals.n_held += 1;
            }
            _ => *all_removed = false,
        }
    }

    /// Places a legal hold (T3); `actor_id` is the staff member, `None` for the operator's
    /// command line.
    pub async fn place_hold(&self, actor_id: Option<i64>, hold: &HoldRequest) -> Result<i64> {
        let policy = self.policies.current().await?.policy.clone();
        let mut invalid = Vec::new();
        let mut keys = Vec::new();
        for key in hold.categories.split([' ', ',']).filter(|k| !k.is_empty()) {
            match CategoryKey::parse(key) {
                Ok(key) if policy.category(&key).is_some() => keys.push(key.to_string()),
                _ => invalid.push(crate::domain::InvalidField::new(
                    "categories",
                    "must be category keys of the policy, such as user.contact.email",
                )),
            }
        }
        let day = |text: &str, field: &'static str, invalid: &mut Vec<_>| {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            let parsed = parse_day(text);
            if parsed.is_none() {
                invalid.push(crate::domain::InvalidField::new(
                    field,
                    "must be a day such as 2026-01-31",
                ));
            }
            parsed
        };
        let from = day(&hold.created_from, "from", &mut invalid);
        let until = day(&hold.created_until, "until", &mut invalid);
        if let (Some(from), Some(until)) = (from, until)
            && from > until
        {
            invalid.push(crate::domain::InvalidField::new(
                "until",
                "must not be before the first day",
            ));
        }
        let reason = hold.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            invalid.push(crate::domain::InvalidField::new(
                "reason",
                "must name the claim or order, in at most 500 characters",
            ));
        }
        if let Some(subject) = hold.subject_user_id
            && self.store.relationship(subject).await?.is_none()
        {
            invalid.push(crate::domain::InvalidField::new(
                "subject",
                "no such member",
            ));
        }
        if !invalid.is_empty() {
            invalid.dedup_by(|a, b| a.field == b.field);
            return Err(Error::Invalid(invalid));
        }
        keys.sort();
        keys.dedup();
        let format = |d: Date| d.to_string();
        let (from, until) = (from.map(format), until.map(format));
        let mut tx = self.store.begin().await?;
        let id = store::insert_hold(
            &mut tx,
            &NewHold {
                subject_user_id: hold.subject_user_id,
                categories: &keys.join(" "),
                created_from: from.as_deref(),
                created_until: until.as_deref(),
                reason,
                created_by: actor_id,
                now: crate::now(),
            },
        )
        .await?;
        let mut event = Event::new(AuditKind::LegalHoldPlaced)
            .actor(actor_id)
            .subject(hold.subject_user_id)
            .detail(Detail::Hold(id));
        for key in &keys {
            event = event.detail(Detail::Category(key.clone()));
        }
        audit::record(&mut tx, &self.audit, event).await?;
        tx.commit().await.context("committing a legal hold")?;
        tracing::info!(hold_id = id, "legal hold placed");
        Ok(id)
    }

    /// Releases a standing hold; the next sweep treats what it kept like everything else.
    pub async fn release_hold(&self, actor_id: Option<i64>, hold_id: i64) -> Result<()> {
        let mut tx = self.store.begin().await?;
        if !store::release_hold(&mut tx, hold_id, actor_id, crate::now()).await? {
            return Err(Error::NotFound("standing legal hold"));
        }
        audit::record(
            &mut tx,
            &self.audit,
            Event::new(AuditKind::LegalHoldReleased)
                .actor(actor_id)
                .detail(Detail::Hold(hold_id)),
        )
        .await?;
        tx.commit().await.context("committing a hold release")?;
        tracing::info!(hold_id, "legal hold released");
        Ok(())
    }

    pub async fn holds(&self) -> Result<Vec<HoldRow>> {
        Ok(self.store.holds().await?)
    }
}

/// A hold as staff ask for it, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct HoldRequest {
    pub subject_user_id: Option<i64>,
    /// Category keys separated by spaces or commas; empty for every category.
    pub categories: String,
    /// First creation day covered (`YYYY-MM-DD`), empty for no bound.
    pub created_from: String,
    /// Last creation day covered, empty for no bound.
    pub created_until: String,
    /// The claim reference or order.
    pub reason: String,
}

/// What a batch is to do, by kind of record (in [`Swept::ALL`]'s order).
struct BatchPlan {
    actions: [Vec<Planned>; Swept::ALL.len()],
    /// Members of whom nothing will be left to sweep after this batch.
    all_removed: Vec<i64>,
}

/// One member's due action on one kind of record.
struct Planned {
    user_id: i64,
    /// Restrict, Delete or Anonymize.
    state: VerdictState,
    reason: String,
    /// Creation times that dated holds keep; empty when no hold touches the member.
    excluded: Vec<(i64, i64)>,
}

/// One batch of minimization, as `Retention::minimize_batch` takes it.
struct Minimizing<'a> {
    holds: &'a [Hold],
    members: &'a [i64],
    now: OffsetDateTime,
    security_log_days: u32,
    /// Sign-ins before this moment (epoch seconds) lose their device data.
    security_log_cutoff: i64,
    run_id: Option<i64>,
    execute: bool,
}

/// The creation times that standing holds keep of one subject's records of one category, as
/// `[from, until)` epoch seconds; `None` when a hold keeps them all.
fn held_ranges(
    holds: &[Hold],
    subject: &str,
    key: &CategoryKey,
    now: OffsetDateTime,
) -> Option<Vec<(i64, i64)>> {
    let mut ranges = Vec::new();
    for hold in holds {
        let covers = hold.released_at.is_none_or(|released| released > now)
            && hold.scope.subject.as_deref().is_none_or(|s| s == subject)
            && (hold.scope.categories.is_empty() || hold.scope.categories.contains(key));
        if !covers {
            continue;
        }
        if hold.scope.created_from.is_none() && hold.scope.created_until.is_none() {
            return None;
        }
        ranges.push(held_range(hold));
    }
    Some(ranges)
}

/// A dated hold's days as `[from, until)` epoch seconds, open ends far out.
fn held_range(hold: &Hold) -> (i64, i64) {
    (
        hold.scope
            .created_from
            .map(midnight)
            .unwrap_or(i64::MIN / 2),
        hold.scope
            .created_until
            .and_then(|d| d.next_day())
            .map(midnight)
            .unwrap_or(i64::MAX / 2),
    )
}

/// The store's steps that carry out `state` on one kind of record.
fn steps_of(item: Swept, state: VerdictState, now: i64, ghost_id: i64) -> Vec<SweepStep> {
    use DeviceTable::{Posts, Sessions, SignIns};
    match (state, item) {
        (VerdictState::Restrict, Swept::Username) => vec![SweepStep::RestrictAccount { now }],
        (VerdictState::Restrict, Swept::PublicContent) => vec![SweepStep::RestrictPosts { now }],
        (VerdictState::Delete | VerdictState::Anonymize, item) => match item {
            Swept::Username => vec![SweepStep::AnonymizeUsername],
            Swept::Email => vec![
                SweepStep::DeleteEmail,
                SweepStep::DeleteMail,
                SweepStep::DeleteParentalConsents,
            ],
            Swept::BirthYear => vec![SweepStep::DeleteBirthYear],
            Swept::Credentials => vec![
                SweepStep::DeletePasswordHash,
                SweepStep::DeleteTwoFactor,
                SweepStep::DeleteRecoveryCodes,
                SweepStep::DeleteAccountTokens { now },
                SweepStep::DeleteSessions { now },
            ],
            Swept::IpAddress => [Posts, SignIns, Sessions]
                .map(|table| SweepStep::BlankDevice(table, DeviceColumn::Ip))
                .to_vec(),
            Swept::UserAgent => [Posts, SignIns, Sessions]
                .map(|table| SweepStep::BlankDevice(table, DeviceColumn::UserAgent))
                .to_vec(),
            Swept::PublicContent => vec![
                SweepStep::AnonymizePosts { ghost_id },
                SweepStep::BlankBio,
                SweepStep::AnonymizeTopics { ghost_id },
            ],
            Swept::PrivateContent => vec![
                SweepStep::DeleteFeedback,
                SweepStep::DeleteTopicFollows,
                SweepStep::DeleteDigestSends,
            ],
            Swept::SocialProfile => vec![SweepStep::DeleteSocialLinks],
            Swept::Consent => vec![
                SweepStep::DeleteGpcMarkers,
                SweepStep::DeleteConsentRecords,
                SweepStep::DeletePolicyAcknowledgements,
                SweepStep::DeleteNewsChoices,
                SweepStep::DeleteDigestChoices,
            ],
            Swept::Residence => vec![SweepStep::DeleteResidence],
            // Taken per submission by `Retention::sweep_requests`, not per member.
            Swept::Requests => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Whether a standing hold covers this member's IP addresses or user agents, on any days.
fn device_held(holds: &[Hold], subject: &str, now: OffsetDateTime) -> bool {
    holds.iter().any(|hold| {
        hold.released_at.is_none_or(|released| released > now)
            && hold.scope.subject.as_deref().is_none_or(|s| s == subject)
            && (hold.scope.categories.is_empty()
                || hold.scope.categories.iter().any(|key| {
                    matches!(
                        key.as_str(),
                        "user.device.ip_address" | "user.device.user_agent"
                    )
                }))
    })
}

/// The residence verdict of one member: held by a hold over the privacy-request category
/// that covers the account record, otherwise following the other categories' `outcomes`.
fn residence_of(
    holds: &[Hold],
    name: &str,
    created: OffsetDateTime,
    now: OffsetDateTime,
    outcomes: &[Verdict],
) -> Verdict {
    let key = CategoryKey::parse(Swept::Residence.category()).ok();
    let own_hold = key.as_ref().and_then(|key| {
        holds
            .iter()
            .find(|hold| hold.covers(name, key, created, now))
    });
    let mut verdict = residence_verdict(outcomes);
    if let Some(hold) = own_hold
        && verdict.state != VerdictState::Keep
    {
        verdict.state = VerdictState::Held;
        verdict.reason = format!(
            "Held for a legal claim ({}): neither restricted nor removed while the hold stands.",
            hold.reason
        );
    }
    verdict
}

fn at(epoch: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(epoch).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Runs a sweep every `interval` inside `serve`, until shutdown. Several nodes may run it: they
/// share the open run.
/// `after_batch` runs after each committed batch (the page cache goes stale then).
const DAY_SECONDS: i64 = 86_400;

/// How long before closing an account for inactivity its member is told.
pub const INACTIVITY_NOTICE_DAYS: u32 = 30;

/// The settings of [`Retention::sweep_unowned`].
struct Unowned {
    as_of: i64,
    security_log_days: u32,
    security_log_cutoff: i64,
    run_id: Option<i64>,
    execute: bool,
}

pub async fn run_schedule(
    retention: Retention,
    after_batch: impl Fn(u64) + Send + Sync + 'static,
    batch_size: i64,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let options = SweepOptions {
            now: OffsetDateTime::now_utc(),
            dry_run: false,
            batch_size,
            stop_after_batches: None,
        };
        // Stopping mid-run drops the batch in flight (its transaction rolls back); the next
        // start resumes the open run after the last committed batch.
        tokio::select! {
            result = retention.sweep(&options, &after_batch) => {
                if let Err(error) = result {
                    tracing::error!(error = %format!("{error:#}"), "the scheduled sweep failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Swept;
    use crate::inventory::{self, Data, Link};

    /// Every column the sweep changes, with the kind of record it is swept as. Until the sweep
    /// walks the inventory itself, this list and the inventory must agree.
    const SWEPT_COLUMNS: &[(&str, &str, Swept)] = &[
        ("users", "username", Swept::Username),
        ("users", "username_lower", Swept::Username),
        ("users", "email", Swept::Email),
        ("users", "email_lookup", Swept::Email),
        ("users", "password_hash", Swept::Credentials),
        ("users", "birth_year", Swept::BirthYear),
        ("users", "bio", Swept::PublicContent),
        ("post_devices", "ip", Swept::IpAddress),
        ("post_devices", "user_agent", Swept::UserAgent),
        ("sign_ins", "ip", Swept::IpAddress),
        ("sign_ins", "user_agent", Swept::UserAgent),
        ("sessions", "ip", Swept::IpAddress),
        ("sessions", "user_agent", Swept::UserAgent),
        ("policy_acknowledgements", "acknowledged_at", Swept::Consent),
        ("consent_records", "subject", Swept::Consent),
        ("consent_gpc", "subject", Swept::Consent),
        ("parental_consents", "parent_email", Swept::Email),
        ("parental_consents", "parent_email_lookup", Swept::Email),
        ("news_subscriptions", "subscribed", Swept::Consent),
        ("feedback", "body", Swept::PrivateContent),
        ("topic_follows", "topic_id", Swept::PrivateContent),
        ("digest_sends", "up_to_post_id", Swept::PrivateContent),
        ("digest_subscriptions", "subscribed", Swept::Consent),
        ("social_links", "subject", Swept::SocialProfile),
        ("social_links", "subject_lookup", Swept::SocialProfile),
        ("users", "jurisdiction", Swept::Residence),
        ("users", "country", Swept::Residence),
        ("users", "us_state", Swept::Residence),
        ("privacy_submissions", "requester_name", Swept::Requests),
        ("privacy_submissions", "requester_email", Swept::Requests),
        ("privacy_submissions", "subject_email", Swept::Requests),
        (
            "privacy_submissions",
            "requester_email_lookup",
            Swept::Requests,
        ),
        (
            "privacy_submissions",
            "subject_email_lookup",
            Swept::Requests,
        ),
        ("privacy_submissions", "region", Swept::Requests),
        ("privacy_submissions", "postal_code", Swept::Requests),
        ("privacy_submissions", "jurisdiction", Swept::Requests),
        ("privacy_submissions", "comments", Swept::Requests),
        ("privacy_submissions", "emailed_message", Swept::Requests),
        (
            "privacy_submissions",
            "parental_consent_id",
            Swept::Requests,
        ),
        ("privacy_requests", "extension_reason", Swept::Requests),
        ("privacy_requests", "decision_text", Swept::Requests),
        ("privacy_request_notes", "body", Swept::Requests),
        ("privacy_request_evidence", "content", Swept::Requests),
    ];

    /// Personal columns of members' tables that the sweep does not change yet: rows it deletes
    /// whole (credentials' tables, queued mail, request records' links), public text it keeps
    /// as written when it anonymizes, and what is not built yet.
    /// A personal column added to the inventory must be swept or named here.
    const NOT_SWEPT_BY_COLUMN: &[&str] = &[
        // Rows deleted whole with the credentials.
        "sessions.token_hash",
        "sessions.csrf_token",
        "account_tokens.token_hash",
        "account_tokens.new_email",
        // Public text kept as written when its author is anonymized.
        "topics.title",
        "topics.slug",
        "post_bodies.body_md",
        "post_bodies.body_html",
        // Rows deleted whole with the email address.
        "mail_outbox.recipient",
        "mail_outbox.subject",
        "mail_outbox.body_text",
        "mail_outbox.list_unsubscribe",
        "mail_outbox.recipient_lookup",
        // Rows deleted whole with the credentials.
        "two_factor.secret",
        "recovery_codes.code_hash",
        // Not swept yet: export archives (purged by fulfilment).
        "export_archives.token_hash",
        "export_archives.jurisdiction",
        "export_archives.content",
        // Rows deleted whole with the parent's address.
        "parental_consents.token_hash",
        // Not swept yet: restrictions of processing (0020); erasure covers them.
        "processing_restrictions.started_at",
        // Deleted whole once expired (the sweep's last step, `Retention::sweep_unowned`,
        // and each social sign-in's start): social sign-in flows and pending sign-ups.
        "social_flows.state_hash",
        "social_flows.pkce_verifier",
        "social_flows.nonce",
        "social_pending.token_hash",
        "social_pending.subject",
        "social_pending.email",
        "social_pending.email_lookup",
        // Rows deleted whole with the privacy-request records.
        "privacy_submissions.subject_token_digest",
        "privacy_submissions.requester_token_digest",
        "privacy_submissions.code_digest",
        "privacy_request_links.token_digest",
        // Not swept yet: disclosure records (0019), kept as evidence like the requests.
        "disclosures.requesting_body",
        "disclosures.reference",
    ];

    #[test]
    fn the_swept_columns_are_declared_in_the_inventory_under_the_same_category() {
        for (table, column, item) in SWEPT_COLUMNS {
            let declared = inventory::table(table)
                .and_then(|t| t.column(column))
                .unwrap_or_else(|| panic!("{table}.{column} is not in the inventory"));
            match declared.data {
                Data::Personal(personal) => assert_eq!(
                    personal.category,
                    item.category(),
                    "{table}.{column} is swept under another category than the inventory's"
                ),
                _ => panic!("{table}.{column} is swept but not declared personal"),
            }
        }
    }

    #[test]
    fn every_personal_column_of_members_is_swept_or_named_as_not_yet() {
        let mut not_swept = Vec::new();
        for table in inventory::TABLES {
            if matches!(table.link, Link::Nobody | Link::IdsOnly) {
                continue;
            }
            for (column, _) in table.personal_columns() {
                let swept = SWEPT_COLUMNS
                    .iter()
                    .any(|(t, c, _)| *t == table.name && *c == column.name);
                if !swept {
                    not_swept.push(format!("{}.{}", table.name, column.name));
                }
            }
        }
        assert_eq!(not_swept, NOT_SWEPT_BY_COLUMN);
    }
}
