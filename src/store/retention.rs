//! Retention: members' relationship state, the sweep's runs and its actions on each kind of
//! personal record, and legal holds. Deciding what happens is `crate::retention`'s (through the
//! core's verdicts); this module only reads the inputs and carries out each step of an action
//! over a batch's members at once (`WHERE user_id IN (…)`), counting per member first.
//! Every step touches only the records still needing it, so a replayed step changes nothing
//! and counts zero.

use super::{Store, StoreKind, Tx};
use anyhow::Context;
use sqlx::FromRow;

/// A member's relationship with the forum, as the sweep reads it.
#[derive(Debug, Clone, FromRow)]
pub struct RelationshipRow {
    pub id: i64,
    pub created_at: i64,
    pub last_active_at: Option<i64>,
    pub news_subscribed_at: Option<i64>,
    pub news_ended_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub closed_reason: Option<String>,
    pub jurisdiction: Option<String>,
    pub restricted_at: Option<i64>,
}

const RELATIONSHIP_COLUMNS: &str = "id, created_at, last_active_at, news_subscribed_at, \
     news_ended_at, closed_at, closed_reason, jurisdiction, restricted_at";

/// The open sweep run a sweeper works on.
#[derive(Debug, Clone, FromRow)]
pub struct SweepRunRow {
    pub id: i64,
    pub as_of: i64,
    pub after_user_id: i64,
    pub finished_at: Option<i64>,
}

/// What one batch did, added to its run's totals.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepTotals {
    pub n_subjects: i64,
    pub n_restricted: i64,
    pub n_deleted: i64,
    pub n_anonymized: i64,
    pub n_held: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct HoldRow {
    pub id: i64,
    pub subject_user_id: Option<i64>,
    pub categories: String,
    pub created_from: Option<String>,
    pub created_until: Option<String>,
    pub reason: String,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub released_by: Option<i64>,
    pub released_at: Option<i64>,
}

pub struct NewHold<'a> {
    pub subject_user_id: Option<i64>,
    pub categories: &'a str,
    pub created_from: Option<&'a str>,
    pub created_until: Option<&'a str>,
    pub reason: &'a str,
    pub created_by: Option<i64>,
    pub now: i64,
}

const HOLD_COLUMNS: &str = "id, subject_user_id, categories, created_from, created_until, \
     reason, created_by, created_at, released_by, released_at";

impl Store {
    /// `FOR UPDATE` where the engine has row locks; SQLite's `BEGIN IMMEDIATE` already gives
    /// the transaction the only write lock.
    fn for_update(&self) -> &'static str {
        match self.kind() {
            StoreKind::Sqlite => "",
            StoreKind::Postgres => "FOR UPDATE",
        }
    }

    /// Notes activity; the caller writes at most once per few minutes per member.
    pub async fn touch_last_active(&self, user_id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET last_active_at = $1 WHERE id = $2")
            .bind(now)
            .bind(user_id)
            .execute(self.pool())
            .await
            .context("noting a member's activity")?;
        Ok(())
    }

    pub async fn relationship(&self, user_id: i64) -> anyhow::Result<Option<RelationshipRow>> {
        let sql = format!("SELECT {RELATIONSHIP_COLUMNS} FROM users WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .context("reading a member's relationship")
    }

    /// The open sweep run, created (as of `as_of`) if there is none. Several sweepers starting
    /// at once all get the same run.
    pub async fn open_sweep_run(&self, as_of: i64, now: i64) -> anyhow::Result<SweepRunRow> {
        sqlx::query(
            "INSERT INTO sweep_runs (open, as_of, started_at) VALUES (1, $1, $2) \
             ON CONFLICT (open) DO NOTHING",
        )
        .bind(as_of)
        .bind(now)
        .execute(self.pool())
        .await
        .context("opening a sweep run")?;
        sqlx::query_as(
            "SELECT id, as_of, after_user_id, finished_at FROM sweep_runs WHERE open = 1",
        )
        .fetch_one(self.pool())
        .await
        .context("reading the open sweep run")
    }

    /// Locks the run for one batch and returns its cursor as committed by the last batch, from
    /// whichever node ran it.
    pub async fn lock_sweep_run(&self, tx: &mut Tx, run_id: i64) -> anyhow::Result<SweepRunRow> {
        let sql = format!(
            "SELECT id, as_of, after_user_id, finished_at FROM sweep_runs WHERE id = $1 {}",
            self.for_update()
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_one(&mut **tx)
            .await
            .context("locking the sweep run")
    }

    /// Closed accounts after `after_user_id` with something left to sweep, in id order.
    pub async fn closed_subjects_after(
        &self,
        tx: &mut Tx,
        after_user_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<RelationshipRow>> {
        let sql = format!(
            "SELECT {RELATIONSHIP_COLUMNS} FROM users WHERE id > $1 AND closed_at IS NOT NULL \
             AND anonymized_at IS NULL ORDER BY id LIMIT $2"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after_user_id)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await
            .context("reading closed accounts to sweep")
    }

    /// How many closed accounts still have something to sweep (for a progress bar).
    pub async fn count_closed_accounts_to_sweep(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM users WHERE closed_at IS NOT NULL AND anonymized_at IS NULL",
        )
        .fetch_one(self.pool())
        .await
        .context("counting closed accounts")?;
        Ok(n)
    }

    /// The id of the shared "deleted user" that anonymized posts are attributed to, created on
    /// first use. Its name has a space, which no member's username can have.
    pub async fn ghost_user(&self, tx: &mut Tx, now: i64) -> anyhow::Result<i64> {
        sqlx::query(
            "INSERT INTO users (username, username_lower, email, email_lookup, password_hash, \
             birth_year, created_at, closed_at, closed_reason, restricted_at, anonymized_at) \
             VALUES ('deleted user', 'deleted user', 'deleted-user.invalid', \
             'deleted-user.invalid', '', '', $1, $1, 'by_staff', NULL, $1) \
             ON CONFLICT (username_lower) DO NOTHING",
        )
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("creating the deleted user")?;
        let (id,): (i64,) =
            sqlx::query_as("SELECT id FROM users WHERE username_lower = 'deleted user'")
                .fetch_one(&mut **tx)
                .await
                .context("reading the deleted user")?;
        Ok(id)
    }
}

/// Ends a member's account; returns false if it was already closed. Its sessions and its
/// product-news subscription end with it: a closed account receives no mail, so a subscription
/// left standing would only keep its data forever.
pub async fn close_account(
    tx: &mut Tx,
    user_id: i64,
    reason: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET closed_at = $1, closed_reason = $2 WHERE id = $3 AND closed_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("closing an account")?;
    sqlx::query(
        "UPDATE users SET news_ended_at = $1 WHERE id = $2 AND news_subscribed_at IS NOT NULL \
         AND (news_ended_at IS NULL OR news_ended_at < news_subscribed_at)",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .context("ending a closed account's subscription")?;
    super::delete_sessions_of_user(tx, user_id).await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the cursor past a batch and adds its totals.
pub async fn advance_sweep_run(
    tx: &mut Tx,
    run_id: i64,
    after_user_id: i64,
    totals: &SweepTotals,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE sweep_runs SET after_user_id = $1, n_subjects = n_subjects + $2, \
         n_restricted = n_restricted + $3, n_deleted = n_deleted + $4, \
         n_anonymized = n_anonymized + $5, n_held = n_held + $6 WHERE id = $7",
    )
    .bind(after_user_id)
    .bind(totals.n_subjects)
    .bind(totals.n_restricted)
    .bind(totals.n_deleted)
    .bind(totals.n_anonymized)
    .bind(totals.n_held)
    .bind(run_id)
    .execute(&mut **tx)
    .await
    .context("moving the sweep's cursor")?;
    Ok(())
}

pub async fn finish_sweep_run(tx: &mut Tx, run_id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE sweep_runs SET finished_at = $1, open = NULL WHERE id = $2")
        .bind(now)
        .bind(run_id)
        .execute(&mut **tx)
        .await
        .context("finishing a sweep run")?;
    Ok(())
}

/// One statement's worth of a sweep action, over the members of a batch. An action on one kind
/// of record is one or more steps (deleting credentials is five: the hash and four tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepStep {
    /// Marks the account record (username, email, birth year, credentials) restricted.
    RestrictAccount {
        now: i64,
    },
    /// Marks posts restricted: pages show a placeholder instead of their text.
    RestrictPosts {
        now: i64,
    },
    /// `deleted-<id>` as username.
    AnonymizeUsername,
    /// A unique placeholder address keeps the column's rule.
    DeleteEmail,
    /// Mail queued to the member.
    DeleteMail,
    DeleteBirthYear,
    DeletePasswordHash,
    DeleteTwoFactor,
    DeleteRecoveryCodes,
    /// Unexpired ones; expired ones go with [`SweepStep::DeleteExpiredTokens`].
    DeleteAccountTokens {
        now: i64,
    },
    /// Unexpired ones; expired ones go with [`SweepStep::DeleteExpiredSessions`].
    DeleteSessions {
        now: i64,
    },
    /// Sessions of anyone that expired by `now`.
    DeleteExpiredSessions {
        now: i64,
    },
    /// One-time links (verification, reset) of anyone that expired by `now`.
    DeleteExpiredTokens {
        now: i64,
    },
    /// Empties `ip` or `user_agent` in one table.
    BlankDevice(DeviceTable, DeviceColumn),
    /// The parent's address and link of a minor's account, with the member's address.
    DeleteParentalConsents,
    /// Consent evidence about `account:<id>`: the GPC marker first (it points at a record),
    /// then the records.
    DeleteGpcMarkers,
    DeleteConsentRecords,
    DeletePolicyAcknowledgements,
    /// Product-news choices (the standing one included: the subscription ended with the
    /// account).
    DeleteNewsChoices,
    /// Messages to us; published ones too (their sender's relationship ended).
    DeleteFeedback,
    /// What the member followed, and the digests sent to them (where the next one starts).
    DeleteTopicFollows,
    DeleteDigestSends,
    /// Digest choices, the standing one included (like product-news choices).
    DeleteDigestChoices,
    /// Social sign-in links: the provider's subject and the names of the claims received.
    DeleteSocialLinks,
    /// Attributes posts to the shared deleted user; they lose their device data and their
    /// restriction (they are no longer anyone's). `ghost_id` is only written when executed.
    AnonymizePosts {
        ghost_id: i64,
    },
    /// The profile text is public content about the person: it goes with the posts.
    BlankBio,
    AnonymizeTopics {
        ghost_id: i64,
    },
    /// Where the member lives (jurisdiction, country, US state): taken last, since it decides
    /// the law of every other verdict.
    DeleteResidence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceColumn {
    Ip,
    UserAgent,
}

/// The tables holding device data of members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceTable {
    Posts,
    SignIns,
    Sessions,
}

/// Which of each member's records a step takes, by their creation time (epoch seconds, ranges
/// `[from, until)`). Steps over the account row ignore it: holds decide that row whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepScope {
    /// Creation times a legal hold keeps untouched.
    pub excluded: Vec<(i64, i64)>,
    /// Only records created in these ranges (an earlier step of the batch moved the others
    /// away); `None` for no such limit.
    pub within: Option<Vec<(i64, i64)>>,
}

/// The SQL parts of a step. Every text here is static or built from integers we hold.
struct StepSql {
    table: &'static str,
    /// The column naming the member (`id` in `users`).
    owner: &'static str,
    /// `SET …` of an update; `None` deletes the rows.
    set: Option<String>,
    /// Rows that still need the step, so a replay changes nothing and counts zero.
    pending: Option<String>,
    /// The creation-time column that holds' days and [`SweepScope`] apply to.
    created: Option<&'static str>,
    /// The owner column names the member as `account:<id>` (consent evidence) rather than by id.
    account_subject: bool,
    /// A table whose rows of the same members and creation times are deleted with the change
    /// (not counted: they are part of the same records).
    also_delete: Option<&'static str>,
    what: &'static str,
}

impl SweepStep {
    fn sql(self) -> StepSql {
        let step =
            |table, owner, set: Option<String>, pending: Option<&str>, created, what| StepSql {
                table,
                owner,
                set,
                pending: pending.map(str::to_owned),
                created,
                what,
                account_subject: false,
                also_delete: None,
            };
        match self {
            SweepStep::RestrictAccount { now } => step(
                "users",
                "id",
                Some(format!("restricted_at = {now}")),
                Some("restricted_at IS NULL"),
                None,
                "restricting accounts",
            ),
            SweepStep::RestrictPosts { now } => step(
                "posts",
                "user_id",
                Some(format!("restricted_at = {now}")),
                Some("restricted_at IS NULL"),
                Some("created_at"),
                "restricting posts",
            ),
            SweepStep::AnonymizeUsername => step(
                "users",
                "id",
                Some(
                    "username = 'deleted-' || CAST(id AS TEXT), \
                     username_lower = 'deleted-' || CAST(id AS TEXT)"
                        .into(),
                ),
                Some("username_lower <> 'deleted-' || CAST(id AS TEXT)"),
                None,
                "anonymizing usernames",
            ),
            SweepStep::DeleteEmail => step(
                "users",
                "id",
                Some(
                    "email = 'deleted-' || CAST(id AS TEXT) || '.invalid', \
                     email_lookup = 'deleted-' || CAST(id AS TEXT) || '.invalid'"
                        .into(),
                ),
                Some("email_lookup <> 'deleted-' || CAST(id AS TEXT) || '.invalid'"),
                None,
                "deleting email addresses",
            ),
            SweepStep::DeleteMail => step(
                "mail_outbox",
                "user_id",
                None,
                None,
                Some("created_at"),
                "deleting mail to members",
            ),
            SweepStep::DeleteBirthYear => step(
                "users",
                "id",
                Some("birth_year = ''".into()),
                Some("birth_year <> ''"),
                None,
                "deleting birth years",
            ),
            SweepStep::DeletePasswordHash => step(
                "users",
                "id",
                Some("password_hash = ''".into()),
                Some("password_hash <> ''"),
                None,
                "deleting password hashes",
            ),
            SweepStep::DeleteTwoFactor => step(
                "two_factor",
                "user_id",
                None,
                None,
                None,
                "deleting 2-step secrets",
            ),
            SweepStep::DeleteRecoveryCodes => step(
                "recovery_codes",
                "user_id",
                None,
                None,
                None,
                "deleting recovery codes",
            ),
            SweepStep::DeleteAccountTokens { now } => StepSql {
                pending: Some(format!("expires_at > {now}")),
                ..step(
                    "account_tokens",
                    "user_id",
                    None,
                    None,
                    None,
                    "deleting account tokens",
                )
            },
            SweepStep::DeleteSessions { now } => StepSql {
                pending: Some(format!("expires_at > {now}")),
                ..step("sessions", "user_id", None, None, None, "deleting sessions")
            },
            SweepStep::DeleteExpiredSessions { now } => StepSql {
                pending: Some(format!("expires_at <= {now}")),
                ..step(
                    "sessions",
                    "user_id",
                    None,
                    None,
                    Some("created_at"),
                    "deleting expired sessions",
                )
            },
            SweepStep::DeleteExpiredTokens { now } => StepSql {
                pending: Some(format!("expires_at <= {now}")),
                ..step(
                    "account_tokens",
                    "user_id",
                    None,
                    None,
                    Some("created_at"),
                    "deleting expired account tokens",
                )
            },
            SweepStep::BlankDevice(table, column) => {
                let (table, created) = match table {
                    DeviceTable::Posts => ("post_devices", "created_at"),
                    DeviceTable::SignIns => ("sign_ins", "at"),
                    DeviceTable::Sessions => ("sessions", "created_at"),
                };
                let (set, pending) = match column {
                    DeviceColumn::Ip => ("ip = ''", "ip <> ''"),
                    DeviceColumn::UserAgent => ("user_agent = ''", "user_agent <> ''"),
                };
                step(
                    table,
                    "user_id",
                    Some(set.into()),
                    Some(pending),
                    Some(created),
                    "deleting device data",
                )
            }
            SweepStep::DeleteParentalConsents => step(
                "parental_consents",
                "user_id",
                None,
                None,
                Some("requested_at"),
                "deleting parental consents",
            ),
            SweepStep::DeleteGpcMarkers => StepSql {
                account_subject: true,
                ..step(
                    "consent_gpc",
                    "subject",
                    None,
                    None,
                    Some("first_seen_at"),
                    "deleting GPC markers",
                )
            },
            SweepStep::DeleteConsentRecords => StepSql {
                account_subject: true,
                ..step(
                    "consent_records",
                    "subject",
                    None,
                    None,
                    Some("recorded_at"),
                    "deleting consent records",
                )
            },
            SweepStep::DeletePolicyAcknowledgements => step(
                "policy_acknowledgements",
                "user_id",
                None,
                None,
                Some("acknowledged_at"),
                "deleting policy acknowledgements",
            ),
            SweepStep::DeleteNewsChoices => step(
                "news_subscriptions",
                "user_id",
                None,
                None,
                Some("recorded_at"),
                "deleting product-news choices",
            ),
            SweepStep::DeleteFeedback => step(
                "feedback",
                "user_id",
                None,
                None,
                Some("created_at"),
                "deleting feedback",
            ),
            SweepStep::DeleteTopicFollows => step(
                "topic_follows",
                "user_id",
                None,
                None,
                Some("created_at"),
                "deleting followed topics",
            ),
            SweepStep::DeleteDigestSends => step(
                "digest_sends",
                "user_id",
                None,
                None,
                Some("sent_at"),
                "deleting digests sent",
            ),
            SweepStep::DeleteDigestChoices => step(
                "digest_subscriptions",
                "user_id",
                None,
                None,
                Some("recorded_at"),
                "deleting digest choices",
            ),
            SweepStep::DeleteSocialLinks => step(
                "social_links",
                "user_id",
                None,
                None,
                Some("linked_at"),
                "deleting social sign-in links",
            ),
            // The same posts' device rows go with them (the same members and creation times).
            SweepStep::AnonymizePosts { ghost_id } => StepSql {
                also_delete: Some("post_devices"),
                ..step(
                    "posts",
                    "user_id",
                    Some(format!("user_id = {ghost_id}, restricted_at = NULL")),
                    None,
                    Some("created_at"),
                    "anonymizing posts",
                )
            },
            SweepStep::BlankBio => step(
                "users",
                "id",
                Some("bio = ''".into()),
                Some("bio <> ''"),
                None,
                "blanking profile texts",
            ),
            SweepStep::AnonymizeTopics { ghost_id } => step(
                "topics",
                "user_id",
                Some(format!("user_id = {ghost_id}")),
                None,
                Some("created_at"),
                "anonymizing topics",
            ),
            SweepStep::DeleteResidence => step(
                "users",
                "id",
                Some("jurisdiction = NULL, country = NULL, us_state = NULL".into()),
                Some("(jurisdiction IS NOT NULL OR country IS NOT NULL OR us_state IS NOT NULL)"),
                None,
                "deleting residence",
            ),
        }
    }
}

/// Members per statement: far below both engines' limits on bound parameters.
const MEMBERS_PER_STATEMENT: usize = 1000;

/// `?, ?, …` on SQLite (sqlx resolves each `$N` there by a linear search: see `bulk`),
/// `$1, $2, …` on PostgreSQL.
fn id_list(kind: StoreKind, n: usize) -> String {
    let mut list = String::with_capacity(n * 6);
    for i in 0..n {
        if i > 0 {
            list.push_str(", ");
        }
        match kind {
            StoreKind::Sqlite => list.push('?'),
            StoreKind::Postgres => {
                list.push('$');
                list.push_str(&(i + 1).to_string());
            }
        }
    }
    list
}

/// ` AND …` for the rows the step still needs and the scope's creation times, or `None` when
/// the scope leaves nothing to take.
fn step_filter(sql: &StepSql, scope: &SweepScope) -> Option<String> {
    let mut filter = String::new();
    if let Some(pending) = &sql.pending {
        filter.push_str(" AND ");
        filter.push_str(pending);
    }
    if let Some(column) = sql.created {
        for (from, until) in &scope.excluded {
            filter.push_str(&format!(
                " AND NOT ({column} >= {from} AND {column} < {until})"
            ));
        }
        if let Some(within) = &scope.within {
            if within.is_empty() {
                return None;
            }
            let ranges: Vec<String> = within
                .iter()
                .map(|(from, until)| format!("({column} >= {from} AND {column} < {until})"))
                .collect();
            filter.push_str(&format!(" AND ({})", ranges.join(" OR ")));
        }
    }
    Some(filter)
}

impl Store {
    /// How many records of each member `step` takes (members with none are left out), and, if
    /// `execute`, takes them: one counting statement and at most one changing statement per
    /// thousand members, both with the same filter, in the caller's transaction. A dry run
    /// only counts, so it reports exactly what a real run would change at this point.
    pub async fn sweep_step(
        &self,
        tx: &mut Tx,
        step: SweepStep,
        members: &[i64],
        scope: &SweepScope,
        execute: bool,
    ) -> anyhow::Result<Vec<(i64, u64)>> {
        let sql = step.sql();
        let Some(filter) = step_filter(&sql, scope) else {
            return Ok(Vec::new());
        };
        let StepSql {
            table, owner, what, ..
        } = sql;
        let mut counts = Vec::new();
        for part in members.chunks(MEMBERS_PER_STATEMENT) {
            let ids = id_list(self.kind(), part.len());
            let count = format!(
                "SELECT {owner}, COUNT(*) FROM {table} WHERE {owner} IN ({ids}){filter} \
                 GROUP BY {owner}"
            );
            let found: Vec<(i64, i64)> = if sql.account_subject {
                let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(count));
                for id in part {
                    query = query.bind(format!("account:{id}"));
                }
                let rows = query.fetch_all(&mut **tx).await.context(what)?;
                rows.into_iter()
                    .filter_map(|(subject, n)| {
                        let id = subject.strip_prefix("account:")?.parse().ok()?;
                        Some((id, n))
                    })
                    .collect()
            } else {
                let mut query = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(count));
                for id in part {
                    query = query.bind(*id);
                }
                query.fetch_all(&mut **tx).await.context(what)?
            };
            let expected: i64 = found.iter().map(|(_, n)| n).sum();
            counts.extend(found.into_iter().map(|(id, n)| (id, n as u64)));
            if !execute || expected == 0 {
                continue;
            }
            let change = match &sql.set {
                Some(set) => {
                    format!("UPDATE {table} SET {set} WHERE {owner} IN ({ids}){filter}")
                }
                None => format!("DELETE FROM {table} WHERE {owner} IN ({ids}){filter}"),
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(change));
            for id in part {
                query = if sql.account_subject {
                    query.bind(format!("account:{id}"))
                } else {
                    query.bind(*id)
                };
            }
            let done = query.execute(&mut **tx).await.context(what)?;
            if let Some(other) = sql.also_delete {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {other} WHERE {owner} IN ({ids}){filter}"
                )));
                for id in part {
                    query = query.bind(*id);
                }
                query.execute(&mut **tx).await.context(what)?;
            }
            // The count and the change read the same rows in one transaction: on SQLite no
            // other writer can run between them; on PostgreSQL a concurrent change to a
            // closed member's records would show here.
            if done.rows_affected() != expected as u64 {
                tracing::warn!(
                    what,
                    counted = expected,
                    changed = done.rows_affected(),
                    "a sweep step changed another number of records than it counted"
                );
            }
        }
        Ok(counts)
    }

    /// Members after `after_user_id`, in id order, with sign-ins from before `signed_in_before`
    /// that still hold an IP address or user agent, or with sessions or one-time links expired
    /// by `now`: what minimization takes, whatever their relationship.
    pub async fn members_with_device_data_due(
        &self,
        tx: &mut Tx,
        after_user_id: i64,
        limit: i64,
        signed_in_before: i64,
        now: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT user_id FROM sign_ins WHERE user_id > $1 AND at < $2 \
             AND (ip <> '' OR user_agent <> '') \
             UNION SELECT user_id FROM sessions WHERE user_id > $1 AND expires_at <= $3 \
             UNION SELECT user_id FROM account_tokens WHERE user_id > $1 AND expires_at <= $3 \
             ORDER BY user_id LIMIT $4",
        )
        .bind(after_user_id)
        .bind(signed_in_before)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await
        .context("finding old device data and expired sessions")?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Records that nothing of these members is left to sweep.
    pub async fn mark_swept(&self, tx: &mut Tx, members: &[i64], now: i64) -> anyhow::Result<()> {
        for part in members.chunks(MEMBERS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE users SET anonymized_at = {now} WHERE id IN ({})",
                id_list(self.kind(), part.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in part {
                query = query.bind(*id);
            }
            query
                .execute(&mut **tx)
                .await
                .context("marking members swept")?;
        }
        Ok(())
    }
}

/// One privacy-request submission as the sweep reads it: its requests, notes, evidence,
/// status links and correspondence are kept and removed with it.
#[derive(Debug, Clone, FromRow)]
pub struct RequestRecordRow {
    pub id: i64,
    pub subject_user_id: Option<i64>,
    /// The jurisdiction the request was handled under (`Jurisdiction`'s stored name).
    pub jurisdiction: String,
    pub created_at: i64,
    /// When its last request was closed; `None` when it has none closed.
    pub last_closed_at: Option<i64>,
    /// Requests of it still being handled.
    pub n_open: i64,
}

/// What deleting one submission's records takes, row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestRecordCounts {
    pub submission_id: i64,
    /// The requests' numbers, for the audit log.
    pub request_ids: Vec<i64>,
    /// Rows: the submission, its requests, notes, evidence, links and queued or sent mail.
    pub rows: u64,
}

/// The submission (`S`) or request (`R`) a message about a privacy request belongs to, from
/// its idempotency key (`request-received:S`, `request-code:S:…`, `request-decision:R:…`,
/// `request-extended:R`, `request-appeal-decided:R`, `request-template:R:…`). Staff alarms
/// (`request-alarm:…`) are staff's mail, not the requester's.
fn correspondence_of(key: &str) -> Option<(char, i64)> {
    let mut parts = key.split(':');
    let kind = match parts.next()? {
        "request-received" | "request-code" => 'S',
        "request-decision" | "request-extended" | "request-appeal-decided" | "request-template" => {
            'R'
        }
        _ => return None,
    };
    Some((kind, parts.next()?.parse().ok()?))
}

impl Store {
    /// Submissions after `after_id`, in id order, with what their verdict needs.
    pub async fn request_records_after(
        &self,
        tx: &mut Tx,
        after_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<RequestRecordRow>> {
        sqlx::query_as(
            "SELECT s.id, s.subject_user_id, s.jurisdiction, s.created_at, \
             MAX(r.closed_at) AS last_closed_at, \
             COALESCE(SUM(CASE WHEN r.id IS NOT NULL AND r.closed_at IS NULL THEN 1 ELSE 0 END), 0) \
             AS n_open \
             FROM privacy_submissions s LEFT JOIN privacy_requests r ON r.submission_id = s.id \
             WHERE s.id > $1 GROUP BY s.id, s.subject_user_id, s.jurisdiction, s.created_at \
             ORDER BY s.id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await
        .context("reading privacy-request records to sweep")
    }

    /// Counts, per submission, the rows its records hold, and with `execute` deletes them:
    /// correspondence, notes, evidence, status links, requests, then the submission. Each
    /// statement takes only what is still there, so a replay counts and deletes nothing.
    pub async fn delete_request_records(
        &self,
        tx: &mut Tx,
        submission_ids: &[i64],
        execute: bool,
    ) -> anyhow::Result<Vec<RequestRecordCounts>> {
        let mut out = Vec::new();
        for part in submission_ids.chunks(MEMBERS_PER_STATEMENT) {
            let ids = id_list(self.kind(), part.len());
            let bind_all = |sql: String| {
                let mut query = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(sql));
                for id in part {
                    query = query.bind(*id);
                }
                query
            };
            let mut counts: std::collections::BTreeMap<i64, RequestRecordCounts> = part
                .iter()
                .map(|&id| {
                    (
                        id,
                        RequestRecordCounts {
                            submission_id: id,
                            ..Default::default()
                        },
                    )
                })
                .collect();
            let submissions = bind_all(format!(
                "SELECT id, id FROM privacy_submissions WHERE id IN ({ids})"
            ))
            .fetch_all(&mut **tx)
            .await
            .context("counting privacy submissions")?;
            let requests = bind_all(format!(
                "SELECT submission_id, id FROM privacy_requests WHERE submission_id IN ({ids}) \
                 ORDER BY id"
            ))
            .fetch_all(&mut **tx)
            .await
            .context("counting privacy requests")?;
            let mut request_owner = std::collections::HashMap::new();
            for (submission, _) in &submissions {
                if let Some(c) = counts.get_mut(submission) {
                    c.rows += 1;
                }
            }
            for (submission, request) in &requests {
                request_owner.insert(*request, *submission);
                if let Some(c) = counts.get_mut(submission) {
                    c.rows += 1;
                    c.request_ids.push(*request);
                }
            }
            for (sql, what) in [
                (
                    format!(
                        "SELECT r.submission_id, COUNT(*) FROM privacy_request_notes n \
                         JOIN privacy_requests r ON r.id = n.request_id \
                         WHERE r.submission_id IN ({ids}) GROUP BY r.submission_id"
                    ),
                    "counting request notes",
                ),
                (
                    format!(
                        "SELECT submission_id, COUNT(*) FROM privacy_request_evidence \
                         WHERE submission_id IN ({ids}) GROUP BY submission_id"
                    ),
                    "counting request evidence",
                ),
                (
                    format!(
                        "SELECT submission_id, COUNT(*) FROM privacy_request_links \
                         WHERE submission_id IN ({ids}) GROUP BY submission_id"
                    ),
                    "counting request links",
                ),
            ] {
                for (submission, n) in bind_all(sql).fetch_all(&mut **tx).await.context(what)? {
                    if let Some(c) = counts.get_mut(&submission) {
                        c.rows += n as u64;
                    }
                }
            }
            // Correspondence: every message whose key names one of these submissions or
            // their requests, whoever it went to.
            let mail: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, idempotency_key FROM mail_outbox \
                 WHERE idempotency_key LIKE 'request-%'",
            )
            .fetch_all(&mut **tx)
            .await
            .context("finding privacy-request correspondence")?;
            let mut mail_ids = Vec::new();
            for (id, key) in mail {
                let owner = match correspondence_of(&key) {
                    Some(('S', submission)) => Some(submission),
                    Some((_, request)) => request_owner.get(&request).copied(),
                    None => None,
                };
                if let Some(c) = owner.and_then(|s| counts.get_mut(&s)) {
                    c.rows += 1;
                    mail_ids.push(id);
                }
            }
            if execute {
                for chunk in mail_ids.chunks(MEMBERS_PER_STATEMENT) {
                    let sql = format!(
                        "DELETE FROM mail_outbox WHERE id IN ({})",
                        id_list(self.kind(), chunk.len())
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query
                        .execute(&mut **tx)
                        .await
                        .context("deleting privacy-request correspondence")?;
                }
                for (sql, what) in [
                    (
                        format!(
                            "DELETE FROM privacy_request_notes WHERE request_id IN \
                             (SELECT id FROM privacy_requests WHERE submission_id IN ({ids}))"
                        ),
                        "deleting request notes",
                    ),
                    (
                        format!(
                            "DELETE FROM privacy_request_evidence WHERE submission_id IN ({ids})"
                        ),
                        "deleting request evidence",
                    ),
                    (
                        format!("DELETE FROM privacy_request_links WHERE submission_id IN ({ids})"),
                        "deleting request links",
                    ),
                    (
                        format!("DELETE FROM privacy_requests WHERE submission_id IN ({ids})"),
                        "deleting privacy requests",
                    ),
                    (
                        format!("DELETE FROM privacy_submissions WHERE id IN ({ids})"),
                        "deleting privacy submissions",
                    ),
                ] {
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in part {
                        query = query.bind(*id);
                    }
                    query.execute(&mut **tx).await.context(what)?;
                }
            }
            out.extend(counts.into_values().filter(|c| c.rows > 0));
        }
        Ok(out)
    }
}

pub async fn insert_hold(tx: &mut Tx, hold: &NewHold<'_>) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO legal_holds (subject_user_id, categories, created_from, created_until, \
         reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(hold.subject_user_id)
    .bind(hold.categories)
    .bind(hold.created_from)
    .bind(hold.created_until)
    .bind(hold.reason)
    .bind(hold.created_by)
    .bind(hold.now)
    .fetch_one(&mut **tx)
    .await
    .context("storing a legal hold")?;
    Ok(id)
}

/// Releases a standing hold; returns false if there is none with this id.
pub async fn release_hold(
    tx: &mut Tx,
    hold_id: i64,
    released_by: Option<i64>,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE legal_holds SET released_at = $1, released_by = $2 \
         WHERE id = $3 AND released_at IS NULL",
    )
    .bind(now)
    .bind(released_by)
    .bind(hold_id)
    .execute(&mut **tx)
    .await
    .context("releasing a legal hold")?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// Every hold, standing ones first, newest first.
    pub async fn holds(&self) -> anyhow::Result<Vec<HoldRow>> {
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM legal_holds \
             ORDER BY CASE WHEN released_at IS NULL THEN 0 ELSE 1 END, id DESC"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .context("listing legal holds")
    }

    /// The holds standing now, read inside a sweep batch.
    pub async fn standing_holds(&self, tx: &mut Tx) -> anyhow::Result<Vec<HoldRow>> {
        let sql = format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE released_at IS NULL");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut **tx)
            .await
            .context("reading standing legal holds")
    }
}

/// Which active member accounts the inactivity rule looks at: members only, not staff, and
/// not those who still receive product news (a relationship of its own).
const INACTIVITY_SUBJECTS: &str = "closed_at IS NULL AND role = 'member' \
     AND NOT (news_subscribed_at IS NOT NULL \
     AND (news_ended_at IS NULL OR news_ended_at < news_subscribed_at))";

/// A warning of closure given after the member's last activity (a later use voids it).
const WARNED: &str = "inactivity_warned_at IS NOT NULL \
     AND inactivity_warned_at >= COALESCE(last_active_at, created_at)";

/// The accounts last used (or, never used, created) before `cutoff` and not warned since:
/// `(id, last activity)`, oldest id first, at most `limit`.
pub async fn accounts_to_warn(
    tx: &mut Tx,
    cutoff: i64,
    limit: i64,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let sql = format!(
        "SELECT id, COALESCE(last_active_at, created_at) FROM users WHERE {INACTIVITY_SUBJECTS} \
         AND COALESCE(last_active_at, created_at) < $1 AND NOT ({WARNED}) ORDER BY id LIMIT $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await
        .context("finding accounts to warn of inactivity")
}

/// How many accounts [`accounts_to_warn`] would find without a limit.
pub async fn count_accounts_to_warn(tx: &mut Tx, cutoff: i64) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM users WHERE {INACTIVITY_SUBJECTS} \
         AND COALESCE(last_active_at, created_at) < $1 AND NOT ({WARNED})"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .fetch_one(&mut **tx)
        .await
        .context("counting accounts to warn of inactivity")
}

/// Notes that the member was warned of closure for inactivity at `at`.
pub async fn mark_inactivity_warned(tx: &mut Tx, user_id: i64, at: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET inactivity_warned_at = $1 WHERE id = $2")
        .bind(at)
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("noting an inactivity warning")?;
    Ok(())
}

/// The accounts last used before `cutoff` whose member was warned (after that use) no later
/// than `warned_before`: `(id, last activity, warned at)`, oldest id first, at most `limit`.
pub async fn inactive_accounts(
    tx: &mut Tx,
    cutoff: i64,
    warned_before: i64,
    limit: i64,
) -> anyhow::Result<Vec<(i64, i64, i64)>> {
    let sql = format!(
        "SELECT id, COALESCE(last_active_at, created_at), inactivity_warned_at FROM users \
         WHERE {INACTIVITY_SUBJECTS} AND COALESCE(last_active_at, created_at) < $1 \
         AND {WARNED} AND inactivity_warned_at <= $2 ORDER BY id LIMIT $3"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .bind(warned_before)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await
        .context("finding inactive accounts")
}

/// How many accounts [`inactive_accounts`] would find without a limit.
pub async fn count_inactive_accounts(
    tx: &mut Tx,
    cutoff: i64,
    warned_before: i64,
) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM users WHERE {INACTIVITY_SUBJECTS} \
         AND COALESCE(last_active_at, created_at) < $1 AND {WARNED} AND inactivity_warned_at <= $2"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .bind(warned_before)
        .fetch_one(&mut **tx)
        .await
        .context("counting inactive accounts")
}
