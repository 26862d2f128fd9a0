//! Privacy requests: submissions (who asked, for whom, how identity is proven), one request per
//! right with its life cycle and clock, staff notes and agents' evidence (the intake limits are `rate_limit`'s).
//! It stores what the workflow (`crate::requests`) decided; it decides nothing itself.

use super::{Store, Tx};
use anyhow::Context;
use sqlx::FromRow;

pub struct NewSubmission<'a> {
    pub channel: &'a str,
    pub relationship: &'a str,
    pub requester_name: &'a str,
    pub requester_email: &'a str,
    pub subject_email: &'a str,
    pub subject_user_id: Option<i64>,
    pub requester_user_id: Option<i64>,
    pub region: &'a str,
    pub postal_code: &'a str,
    pub jurisdiction: &'a str,
    pub comments: &'a str,
    pub emailed_message: Option<&'a str>,
    pub logged_by: Option<i64>,
    pub subject_token_digest: &'a str,
    pub requester_token_digest: &'a str,
    pub code_digest: Option<&'a str>,
    pub code_expires_at: Option<i64>,
    pub created_at: i64,
    /// A parent's recorded consent standing as the evidence of parenthood.
    pub parental_consent_id: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct SubmissionRow {
    pub id: i64,
    pub channel: String,
    pub relationship: String,
    pub requester_name: String,
    pub requester_email: String,
    pub subject_email: String,
    pub subject_user_id: Option<i64>,
    pub requester_user_id: Option<i64>,
    pub region: String,
    pub postal_code: String,
    pub jurisdiction: String,
    pub comments: String,
    pub emailed_message: Option<String>,
    pub logged_by: Option<i64>,
    pub subject_token_digest: String,
    pub requester_token_digest: String,
    pub code_digest: Option<String>,
    pub code_expires_at: Option<i64>,
    pub code_attempts: i64,
    pub subject_confirmed_at: Option<i64>,
    pub verification: String,
    pub created_at: i64,
    pub parental_consent_id: Option<i64>,
}

/// Sealed places of a submission (`inventory::SEALED_BY_SUBMISSION`).
pub const SUBMISSION_COMMENTS: &str = "privacy_submissions.comments";
pub const SUBMISSION_REQUESTER_NAME: &str = "privacy_submissions.requester_name";
pub const SUBMISSION_REQUESTER_EMAIL: &str = "privacy_submissions.requester_email";
pub const SUBMISSION_SUBJECT_EMAIL: &str = "privacy_submissions.subject_email";
pub const REQUEST_DECISION_TEXT: &str = "privacy_requests.decision_text";
pub const REQUEST_EXTENSION_REASON: &str = "privacy_requests.extension_reason";
pub const SUBMISSION_EMAILED_MESSAGE: &str = "privacy_submissions.emailed_message";
pub const NOTE_BODY: &str = "privacy_request_notes.body";
pub const EVIDENCE_CONTENT: &str = "privacy_request_evidence.content";

const SUBMISSION_COLUMNS: &str = "id, channel, relationship, requester_name, requester_email, \
    subject_email, subject_user_id, requester_user_id, region, postal_code, jurisdiction, \
    comments, emailed_message, logged_by, subject_token_digest, requester_token_digest, \
    code_digest, code_expires_at, code_attempts, subject_confirmed_at, verification, created_at, \
    parental_consent_id";

/// A parent's consent as a request's evidence of parenthood shows it.
#[derive(Debug, Clone, FromRow)]
pub struct ConsentEvidenceRow {
    pub id: i64,
    pub user_id: i64,
    pub consented_at: i64,
    pub policy_version: Option<String>,
}

pub struct NewRequest<'a> {
    pub submission_id: i64,
    pub right_name: &'a str,
    pub jurisdiction: &'a str,
    pub written_opt_out: Option<&'a str>,
    pub state: &'a str,
    pub required_level: &'a str,
    pub status_json: &'a str,
    pub received_at: i64,
    pub received_on: &'a str,
    pub due_on: &'a str,
    pub next_reminder_at: Option<i64>,
    /// Access to the specific pieces of data rather than to what is held.
    pub specific_pieces: bool,
}

#[derive(Debug, Clone, FromRow)]
pub struct RequestRow {
    pub id: i64,
    pub submission_id: i64,
    pub right_name: String,
    pub jurisdiction: String,
    pub written_opt_out: Option<String>,
    pub state: String,
    pub verification: String,
    pub required_level: String,
    pub status_json: String,
    pub received_at: i64,
    pub received_on: String,
    pub due_on: String,
    pub extended_due_on: Option<String>,
    pub extension_reason: Option<String>,
    pub appeal_due_on: Option<String>,
    pub assigned_to: Option<i64>,
    pub decline_code: Option<String>,
    pub decision_text: Option<String>,
    pub closed_at: Option<i64>,
    pub handed_to_fulfilment_at: Option<i64>,
    pub next_reminder_at: Option<i64>,
    pub reminders_sent: i64,
    /// 1 when access to the specific pieces of data was asked.
    pub specific_pieces: i64,
}

const REQUEST_COLUMNS: &str = "id, submission_id, right_name, jurisdiction, written_opt_out, \
    state, verification, required_level, status_json, received_at, received_on, due_on, \
    extended_due_on, extension_reason, appeal_due_on, assigned_to, decline_code, decision_text, \
    closed_at, handed_to_fulfilment_at, next_reminder_at, reminders_sent, specific_pieces";

impl RequestRow {
    /// The day the request must be answered by (see [`DUE`]).
    pub fn due_day(&self) -> &str {
        self.appeal_due_on
            .as_deref()
            .or(self.extended_due_on.as_deref())
            .unwrap_or(&self.due_on)
    }
}

/// What a transition changes on the request's row.
pub struct RequestUpdate<'a> {
    pub id: i64,
    pub state: &'a str,
    pub verification: &'a str,
    pub status_json: &'a str,
    pub decline_code: Option<&'a str>,
    pub decision_text: Option<&'a str>,
    pub closed_at: Option<i64>,
    pub appeal_due_on: Option<&'a str>,
    pub next_reminder_at: Option<i64>,
    pub now: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct NoteRow {
    pub id: i64,
    pub author_id: Option<i64>,
    pub body: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct EvidenceRow {
    pub id: i64,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub uploaded_at: i64,
}

/// One line of the staff queue.
#[derive(Debug, Clone, FromRow)]
pub struct QueueRow {
    pub id: i64,
    pub right_name: String,
    pub jurisdiction: String,
    pub state: String,
    pub verification: String,
    pub received_on: String,
    pub due_on: String,
    pub extended_due_on: Option<String>,
    pub appeal_due_on: Option<String>,
    pub assigned_to: Option<i64>,
    pub channel: String,
    pub relationship: String,
    pub specific_pieces: i64,
}

/// A place in the staff queue: the effective due day and the number of a request, the
/// queue's order. Written `YYYY-MM-DD.id` in the API's `after` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCursor {
    pub due_on: String,
    pub id: i64,
}

impl QueueCursor {
    /// The place of `row` in the queue.
    pub fn of(row: &RequestRow) -> QueueCursor {
        QueueCursor {
            due_on: row.due_day().to_string(),
            id: row.id,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub right_name: Option<String>,
    pub state: Option<String>,
    pub jurisdiction: Option<String>,
    pub assigned_to: Option<i64>,
    /// Only requests still waiting for an answer.
    pub open_only: bool,
}

/// The day a request must be answered by: an appeal's own day once one is lodged, else the
/// extended day, else the first. Queue order, alarms and metrics all read this.
const DUE: &str = "COALESCE(appeal_due_on, extended_due_on, due_on)";
const DUE_R: &str = "COALESCE(r.appeal_due_on, r.extended_due_on, r.due_on)";

/// The states in which a request still waits for an answer (the clock runs).
pub const OPEN_STATES: &str =
    "('received', 'verifying', 'verified', 'in_progress', 'appealed', 'appeal_reversed')";

/// One request as the yearly report counts it.
#[derive(Debug, Clone, FromRow)]
pub struct ReportRow {
    pub right_name: String,
    pub state: String,
    pub decline_code: Option<String>,
    pub received_at: i64,
    pub closed_at: Option<i64>,
}

/// Inserts a submission; who asked, for whom, the comments and the message as received are
/// sealed under the submission's own key (the `SUBMISSION_*` places), the two addresses found
/// by their keyed hashes.
pub async fn insert_submission(
    tx: &mut Tx,
    store: &Store,
    s: &NewSubmission<'_>,
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO privacy_submissions (channel, relationship, requester_name, \
         requester_email, subject_email, subject_user_id, requester_user_id, region, \
         postal_code, jurisdiction, comments, emailed_message, logged_by, \
         subject_token_digest, requester_token_digest, code_digest, code_expires_at, \
         created_at, parental_consent_id, requester_email_lookup, subject_email_lookup) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21) RETURNING id",
    )
    .bind(s.channel)
    .bind(s.relationship)
    .bind("")
    .bind("")
    .bind("")
    .bind(s.subject_user_id)
    .bind(s.requester_user_id)
    .bind(s.region)
    .bind(s.postal_code)
    .bind(s.jurisdiction)
    .bind("")
    .bind(None::<&str>)
    .bind(s.logged_by)
    .bind(s.subject_token_digest)
    .bind(s.requester_token_digest)
    .bind(s.code_digest)
    .bind(s.code_expires_at)
    .bind(s.created_at)
    .bind(s.parental_consent_id)
    .bind(store.lookup_hash(&crate::sealing::lookup_text(
        SUBMISSION_REQUESTER_EMAIL,
        s.requester_email,
    ))?)
    .bind(store.lookup_hash(&crate::sealing::lookup_text(
        SUBMISSION_SUBJECT_EMAIL,
        s.subject_email,
    ))?)
    .fetch_one(&mut **tx)
    .await
    .context("inserting a privacy request submission")?;
    // The key is named by the id, so the correspondence is sealed once the row has one.
    let comments = store
        .seal_for_submission(id, SUBMISSION_COMMENTS, s.comments)
        .await?;
    let emailed_message = match s.emailed_message {
        Some(text) => Some(
            store
                .seal_for_submission(id, SUBMISSION_EMAILED_MESSAGE, text)
                .await?,
        ),
        None => None,
    };
    let mut sealed = Vec::with_capacity(3);
    for (place, plain) in [
        (SUBMISSION_REQUESTER_NAME, s.requester_name),
        (SUBMISSION_REQUESTER_EMAIL, s.requester_email),
        (SUBMISSION_SUBJECT_EMAIL, s.subject_email),
    ] {
        sealed.push(store.seal_for_submission(id, place, plain).await?);
    }
    sqlx::query(
        "UPDATE privacy_submissions SET comments = $1, emailed_message = $2, \
         requester_name = $3, requester_email = $4, subject_email = $5 WHERE id = $6",
    )
    .bind(comments)
    .bind(emailed_message)
    .bind(&sealed[0])
    .bind(&sealed[1])
    .bind(&sealed[2])
    .bind(id)
    .execute(&mut **tx)
    .await
    .context("storing a submission's correspondence")?;
    Ok(id)
}

pub async fn insert_request(tx: &mut Tx, r: &NewRequest<'_>) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO privacy_requests (submission_id, right_name, jurisdiction, \
         written_opt_out, state, required_level, status_json, received_at, received_on, \
         due_on, next_reminder_at, updated_at, specific_pieces) VALUES ($1, $2, $3, $4, $5, \
         $6, $7, $8, $9, $10, $11, $8, $12) RETURNING id",
    )
    .bind(r.submission_id)
    .bind(r.right_name)
    .bind(r.jurisdiction)
    .bind(r.written_opt_out)
    .bind(r.state)
    .bind(r.required_level)
    .bind(r.status_json)
    .bind(r.received_at)
    .bind(r.received_on)
    .bind(r.due_on)
    .bind(r.next_reminder_at)
    .bind(i64::from(r.specific_pieces))
    .fetch_one(&mut **tx)
    .await
    .context("inserting a privacy request")?;
    Ok(id)
}

/// Reads a request inside a transaction, locking its row on PostgreSQL so that two staff
/// members acting at once take turns (SQLite's writer lock already serializes them).
pub async fn request_for_update(
    tx: &mut Tx,
    store: &Store,
    id: i64,
) -> anyhow::Result<Option<RequestRow>> {
    let lock = if store.skip_locked().is_empty() {
        ""
    } else {
        "FOR UPDATE"
    };
    let sql = format!("SELECT {REQUEST_COLUMNS} FROM privacy_requests WHERE id = $1 {lock}");
    let row: Option<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .context("reading a privacy request to change it")?;
    match row {
        Some(row) => Ok(Some(store.open_request(row).await?)),
        None => Ok(None),
    }
}

/// The submission inside the caller's transaction, opened like [`Store::submission`].
pub async fn submission_in_tx(
    tx: &mut Tx,
    store: &Store,
    id: i64,
) -> anyhow::Result<SubmissionRow> {
    let sql = format!("SELECT {SUBMISSION_COLUMNS} FROM privacy_submissions WHERE id = $1");
    let row: SubmissionRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .context("reading a privacy request submission")?;
    Ok(store
        .open_submission(Some(row))
        .await?
        .expect("an opened row stays a row"))
}

/// Applies a transition; a decision text is sealed under the submission's key.
pub async fn update_request(
    tx: &mut Tx,
    store: &Store,
    u: &RequestUpdate<'_>,
) -> anyhow::Result<()> {
    let decision_text = match u.decision_text {
        Some(text) => {
            let submission = submission_id_of_request(tx, u.id).await?;
            Some(
                store
                    .seal_for_submission(submission, REQUEST_DECISION_TEXT, text)
                    .await?,
            )
        }
        None => None,
    };
    sqlx::query(
        "UPDATE privacy_requests SET state = $1, verification = $2, status_json = $3, \
         decline_code = COALESCE($4, decline_code), decision_text = COALESCE($5, decision_text), \
         closed_at = $6, appeal_due_on = COALESCE($7, appeal_due_on), next_reminder_at = $8, \
         nearly_due_alarm_at = CASE WHEN $7 IS NULL THEN nearly_due_alarm_at END, \
         overdue_alarm_at = CASE WHEN $7 IS NULL THEN overdue_alarm_at END, \
         updated_at = $9 WHERE id = $10",
    )
    .bind(u.state)
    .bind(u.verification)
    .bind(u.status_json)
    .bind(u.decline_code)
    .bind(decision_text)
    .bind(u.closed_at)
    .bind(u.appeal_due_on)
    .bind(u.next_reminder_at)
    .bind(u.now)
    .bind(u.id)
    .execute(&mut **tx)
    .await
    .context("updating a privacy request")?;
    Ok(())
}

pub async fn mark_handed_to_fulfilment(tx: &mut Tx, id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE privacy_requests SET handed_to_fulfilment_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await
        .context("marking a request handed to fulfilment")?;
    Ok(())
}

/// The submission a request belongs to, inside the caller's transaction.
async fn submission_id_of_request(tx: &mut Tx, request_id: i64) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as("SELECT submission_id FROM privacy_requests WHERE id = $1")
        .bind(request_id)
        .fetch_one(&mut **tx)
        .await
        .context("reading a request's submission")?;
    Ok(id)
}

/// Extends a request's deadline; the reason is sealed under the submission's key.
pub async fn set_extension(
    tx: &mut Tx,
    store: &Store,
    id: i64,
    extended_due_on: &str,
    reason: &str,
    now: i64,
) -> anyhow::Result<()> {
    let submission = submission_id_of_request(tx, id).await?;
    let reason = store
        .seal_for_submission(submission, REQUEST_EXTENSION_REASON, reason)
        .await?;
    sqlx::query(
        "UPDATE privacy_requests SET extended_due_on = $1, extension_reason = $2, \
         overdue_alarm_at = NULL, nearly_due_alarm_at = NULL, updated_at = $3 WHERE id = $4",
    )
    .bind(extended_due_on)
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await
    .context("extending a request's deadline")?;
    Ok(())
}

pub async fn set_assignee(
    tx: &mut Tx,
    id: i64,
    assignee: Option<i64>,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE privacy_requests SET assigned_to = $1, updated_at = $2 WHERE id = $3")
        .bind(assignee)
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await
        .context("assigning a request")?;
    Ok(())
}

pub async fn set_reminder(
    tx: &mut Tx,
    id: i64,
    next_reminder_at: Option<i64>,
    reminders_sent: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE privacy_requests SET next_reminder_at = $1, reminders_sent = $2 WHERE id = $3",
    )
    .bind(next_reminder_at)
    .bind(reminders_sent)
    .bind(id)
    .execute(&mut **tx)
    .await
    .context("scheduling a verification reminder")?;
    Ok(())
}

/// Adds a note to a request; its body is sealed under the key of the request's submission
/// (`NOTE_BODY`), like the rest of its correspondence.
pub async fn insert_note(
    tx: &mut Tx,
    store: &Store,
    request: (i64, i64),
    author_id: Option<i64>,
    body: &str,
    now: i64,
) -> anyhow::Result<i64> {
    let (request_id, submission_id) = request;
    let body = store
        .seal_for_submission(submission_id, NOTE_BODY, body)
        .await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO privacy_request_notes (request_id, author_id, body, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(request_id)
    .bind(author_id)
    .bind(body)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .context("adding a note to a request")?;
    Ok(id)
}

/// Stores an agent's evidence file, sealed under its submission's key (`EVIDENCE_CONTENT`).
pub async fn insert_evidence(
    tx: &mut Tx,
    store: &Store,
    submission_id: i64,
    content_type: &str,
    sha256: &str,
    content: &[u8],
    now: i64,
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO privacy_request_evidence (submission_id, content_type, size_bytes, sha256, \
         content, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(submission_id)
    .bind(content_type)
    .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
    .bind(sha256)
    .bind(
        store
            .seal_bytes_for_submission(submission_id, EVIDENCE_CONTENT, content)
            .await?,
    )
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .context("storing an agent's evidence")?;
    Ok(id)
}

/// The latest consent a parent gave, from `parent_email` (compared in lower case, by its keyed
/// hash), for the minor whose account is `user_id`; pending requests for consent do not count.
pub async fn given_parental_consent(
    store: &Store,
    tx: &mut Tx,
    user_id: i64,
    parent_email: &str,
) -> anyhow::Result<Option<ConsentEvidenceRow>> {
    let lookup = store.lookup_hash(&crate::sealing::lookup_text(
        super::PARENT_EMAIL,
        parent_email,
    ))?;
    sqlx::query_as(
        "SELECT id, user_id, consented_at, policy_version FROM parental_consents \
         WHERE user_id = $1 AND parent_email_lookup = $2 AND consented_at IS NOT NULL \
         ORDER BY consented_at DESC, id DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(lookup)
    .fetch_optional(&mut **tx)
    .await
    .context("looking for a parent's consent")
}

/// One evidence file of a submission: its stored type and its bytes. Read inside the
/// transaction that audits the read, so no read goes unrecorded.
pub async fn evidence_content(
    tx: &mut Tx,
    store: &Store,
    submission_id: i64,
    evidence_id: i64,
) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT content_type, content FROM privacy_request_evidence \
         WHERE id = $1 AND submission_id = $2",
    )
    .bind(evidence_id)
    .bind(submission_id)
    .fetch_optional(&mut **tx)
    .await
    .context("reading an agent's evidence file")?;
    let Some((content_type, stored)) = row else {
        return Ok(None);
    };
    // A file whose key is gone is no file any more.
    Ok(store
        .open_bytes_for_submission(submission_id, EVIDENCE_CONTENT, stored)
        .await?
        .map(|bytes| (content_type, bytes)))
}

pub async fn insert_link(
    tx: &mut Tx,
    token_digest: &str,
    submission_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO privacy_request_links (token_digest, submission_id, created_at) \
         VALUES ($1, $2, $3)",
    )
    .bind(token_digest)
    .bind(submission_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .context("storing a status link")?;
    Ok(())
}

pub async fn count_evidence(tx: &mut Tx, submission_id: i64) -> anyhow::Result<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM privacy_request_evidence WHERE submission_id = $1")
            .bind(submission_id)
            .fetch_one(&mut **tx)
            .await
            .context("counting an agent's evidence")?;
    Ok(n)
}

/// A new code under a new verification link (reminders and "send another code").
pub async fn set_code(
    tx: &mut Tx,
    submission_id: i64,
    subject_token_digest: &str,
    code_digest: &str,
    expires_at: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE privacy_submissions SET code_digest = $1, code_expires_at = $2, \
         subject_token_digest = $4 WHERE id = $3",
    )
    .bind(code_digest)
    .bind(expires_at)
    .bind(submission_id)
    .bind(subject_token_digest)
    .execute(&mut **tx)
    .await
    .context("storing a verification code")?;
    Ok(())
}

/// Counts a wrong code; returns the attempts so far.
pub async fn count_code_attempt(tx: &mut Tx, submission_id: i64) -> anyhow::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "UPDATE privacy_submissions SET code_attempts = code_attempts + 1 WHERE id = $1 \
         RETURNING code_attempts",
    )
    .bind(submission_id)
    .fetch_one(&mut **tx)
    .await
    .context("counting a verification attempt")?;
    Ok(n)
}

pub async fn set_submission_verification(
    tx: &mut Tx,
    submission_id: i64,
    level: &str,
    subject_confirmed_at: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE privacy_submissions SET verification = $1, \
         subject_confirmed_at = COALESCE(subject_confirmed_at, $2) WHERE id = $3",
    )
    .bind(level)
    .bind(subject_confirmed_at)
    .bind(submission_id)
    .execute(&mut **tx)
    .await
    .context("recording a verification")?;
    Ok(())
}

/// Claims open requests whose day has passed (`due_column` < `today`) and that have not had
/// this alarm yet, marking them in the same statement; several nodes never claim one twice.
pub async fn claim_alarms(
    tx: &mut Tx,
    store: &Store,
    mark_column: AlarmColumn,
    before_day: &str,
    now: i64,
) -> anyhow::Result<Vec<i64>> {
    let column = match mark_column {
        AlarmColumn::NearlyDue => "nearly_due_alarm_at",
        AlarmColumn::Overdue => "overdue_alarm_at",
    };
    let sql = format!(
        "UPDATE privacy_requests SET {column} = $1 WHERE id IN (SELECT id FROM \
         privacy_requests WHERE state IN {OPEN_STATES} AND {column} IS NULL \
         AND {DUE} <= $2 ORDER BY id LIMIT 200 {}) RETURNING id",
        store.skip_locked()
    );
    let mut ids: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(before_day)
        .fetch_all(&mut **tx)
        .await
        .context("claiming deadline alarms")?;
    ids.sort();
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// The queue's filter as SQL over `privacy_requests r`, with `$1` to `$4` bound to the right,
/// state, jurisdiction and assignee (each NULL for "any").
fn queue_condition(filter: &QueueFilter) -> String {
    let open = if filter.open_only {
        format!("AND r.state IN {OPEN_STATES}")
    } else {
        String::new()
    };
    format!(
        "($1 IS NULL OR r.right_name = $1) AND ($2 IS NULL OR r.state = $2) \
         AND ($3 IS NULL OR r.jurisdiction = $3) AND ($4 IS NULL OR r.assigned_to = $4) {open}"
    )
}

#[derive(Debug, Clone, Copy)]
pub enum AlarmColumn {
    NearlyDue,
    Overdue,
}

impl Store {
    /// The submission whose verification link (sent to the subject) is `digest`.
    pub async fn submission_by_subject_token(
        &self,
        digest: &str,
    ) -> anyhow::Result<Option<SubmissionRow>> {
        let sql = format!(
            "SELECT {SUBMISSION_COLUMNS} FROM privacy_submissions WHERE subject_token_digest = $1"
        );
        let row: Option<SubmissionRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await
            .context("reading a submission by its verification link")?;
        self.open_submission(row).await
    }

    /// The submission whose status link (sent to the requester) is `digest`.
    pub async fn submission_by_requester_token(
        &self,
        digest: &str,
    ) -> anyhow::Result<Option<SubmissionRow>> {
        let sql = format!(
            "SELECT {SUBMISSION_COLUMNS} FROM privacy_submissions WHERE requester_token_digest = $1 \
             OR id = (SELECT submission_id FROM privacy_request_links WHERE token_digest = $1)"
        );
        let row: Option<SubmissionRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await
            .context("reading a submission by its status link")?;
        self.open_submission(row).await
    }

    /// A submission read from the store with its sealed fields opened (empty once the
    /// submission's key is gone).
    pub(crate) async fn open_submission(
        &self,
        row: Option<SubmissionRow>,
    ) -> anyhow::Result<Option<SubmissionRow>> {
        let Some(mut row) = row else {
            return Ok(None);
        };
        row.comments = self
            .open_for_submission(row.id, SUBMISSION_COMMENTS, &row.comments)
            .await?;
        row.requester_name = self
            .open_for_submission(row.id, SUBMISSION_REQUESTER_NAME, &row.requester_name)
            .await?;
        row.requester_email = self
            .open_for_submission(row.id, SUBMISSION_REQUESTER_EMAIL, &row.requester_email)
            .await?;
        row.subject_email = self
            .open_for_submission(row.id, SUBMISSION_SUBJECT_EMAIL, &row.subject_email)
            .await?;
        if let Some(text) = row.emailed_message.take() {
            row.emailed_message = Some(
                self.open_for_submission(row.id, SUBMISSION_EMAILED_MESSAGE, &text)
                    .await?,
            );
        }
        Ok(Some(row))
    }

    pub async fn submission(&self, id: i64) -> anyhow::Result<Option<SubmissionRow>> {
        let sql = format!("SELECT {SUBMISSION_COLUMNS} FROM privacy_submissions WHERE id = $1");
        let row: Option<SubmissionRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a submission")?;
        self.open_submission(row).await
    }

    pub async fn requests_of_submission(
        &self,
        submission_id: i64,
    ) -> anyhow::Result<Vec<RequestRow>> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM privacy_requests WHERE submission_id = $1 ORDER BY id"
        );
        let rows: Vec<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(submission_id)
            .fetch_all(self.pool())
            .await
            .context("reading the requests of a submission")?;
        self.open_requests(rows).await
    }

    /// A request with its decision and extension reason opened (empty once the submission's
    /// key is gone).
    pub(crate) async fn open_request(&self, mut row: RequestRow) -> anyhow::Result<RequestRow> {
        if let Some(text) = row.decision_text.take() {
            row.decision_text = Some(
                self.open_for_submission(row.submission_id, REQUEST_DECISION_TEXT, &text)
                    .await?,
            );
        }
        if let Some(text) = row.extension_reason.take() {
            row.extension_reason = Some(
                self.open_for_submission(row.submission_id, REQUEST_EXTENSION_REASON, &text)
                    .await?,
            );
        }
        Ok(row)
    }

    async fn open_requests(&self, rows: Vec<RequestRow>) -> anyhow::Result<Vec<RequestRow>> {
        let mut opened = Vec::with_capacity(rows.len());
        for row in rows {
            opened.push(self.open_request(row).await?);
        }
        Ok(opened)
    }

    pub async fn privacy_request(&self, id: i64) -> anyhow::Result<Option<RequestRow>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM privacy_requests WHERE id = $1");
        let row: Option<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a privacy request")?;
        match row {
            Some(row) => Ok(Some(self.open_request(row).await?)),
            None => Ok(None),
        }
    }

    /// The requests a member made or that are about them, newest first, all of them: the
    /// intake's limits per address keep one member's list short, and none may go missing from
    /// their own page.
    pub async fn requests_of_member(&self, user_id: i64) -> anyhow::Result<Vec<RequestRow>> {
        let columns = REQUEST_COLUMNS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM privacy_requests r JOIN privacy_submissions s \
             ON s.id = r.submission_id WHERE s.subject_user_id = $1 OR s.requester_user_id = $1 \
             ORDER BY r.id DESC"
        );
        let rows: Vec<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .context("reading a member's privacy requests")?;
        self.open_requests(rows).await
    }

    /// The whole staff queue the filter selects, earliest due first: every page of
    /// `request_queue_after`, walked to its end.
    pub async fn request_queue(&self, filter: &QueueFilter) -> anyhow::Result<Vec<RequestRow>> {
        let mut all: Vec<RequestRow> = Vec::new();
        loop {
            let after = all.last().map(QueueCursor::of);
            let page = self
                .request_queue_after(filter, after.as_ref(), 500)
                .await?;
            let done = page.len() < 500;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Up to `limit` requests of the staff queue that come after `after` (the place of the
    /// last request of the previous page), earliest due first, then by number. The place is
    /// a value, not a count: a request that leaves the filter between two pages (decided,
    /// say) moves no other request across the boundary, so a walk repeats and skips none.
    /// A request whose due day moves during the walk (an extension) moves in the order too.
    /// The rows' decision texts and extension reasons stay sealed (the queue shows neither;
    /// [`Store::privacy_request`] opens them).
    pub async fn request_queue_after(
        &self,
        filter: &QueueFilter,
        after: Option<&QueueCursor>,
        limit: i64,
    ) -> anyhow::Result<Vec<RequestRow>> {
        let columns = REQUEST_COLUMNS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM privacy_requests r WHERE {} \
             AND ($5 IS NULL OR {DUE_R} > $5 OR ({DUE_R} = $5 AND r.id > $6)) \
             ORDER BY {DUE_R}, r.id LIMIT $7",
            queue_condition(filter)
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.right_name.as_deref())
            .bind(filter.state.as_deref())
            .bind(filter.jurisdiction.as_deref())
            .bind(filter.assigned_to)
            .bind(after.map(|a| a.due_on.as_str()))
            .bind(after.map_or(0, |a| a.id))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("reading a page of the request queue")
    }

    /// One page of the staff queue: earliest due first, then by number, so that pages neither
    /// repeat nor skip a request.
    pub async fn request_queue_page(
        &self,
        filter: &QueueFilter,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<Vec<QueueRow>> {
        let sql = format!(
            "SELECT r.id, r.right_name, r.jurisdiction, r.state, r.verification, r.received_on, \
             r.due_on, r.extended_due_on, r.appeal_due_on, r.assigned_to, s.channel, \
             s.relationship, \
             r.specific_pieces \
             FROM privacy_requests r JOIN privacy_submissions s ON s.id = r.submission_id \
             WHERE {} ORDER BY {DUE_R}, r.id LIMIT $5 OFFSET $6",
            queue_condition(filter)
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.right_name.as_deref())
            .bind(filter.state.as_deref())
            .bind(filter.jurisdiction.as_deref())
            .bind(filter.assigned_to)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await
            .context("reading the request queue")
    }

    /// How many requests the queue's filter selects, for its pages.
    pub async fn count_request_queue(&self, filter: &QueueFilter) -> anyhow::Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM privacy_requests r WHERE {}",
            queue_condition(filter)
        );
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.right_name.as_deref())
            .bind(filter.state.as_deref())
            .bind(filter.jurisdiction.as_deref())
            .bind(filter.assigned_to)
            .fetch_one(self.pool())
            .await
            .context("counting the request queue")?;
        Ok(n)
    }

    /// A parent's consent by its number (the evidence of a parent's request).
    pub async fn consent_evidence(&self, id: i64) -> anyhow::Result<Option<ConsentEvidenceRow>> {
        sqlx::query_as(
            "SELECT id, user_id, consented_at, policy_version FROM parental_consents \
             WHERE id = $1 AND consented_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .context("reading a parent's consent")
    }

    /// A request's notes, their bodies opened (empty once the submission's key is gone).
    pub async fn request_notes(&self, request_id: i64) -> anyhow::Result<Vec<NoteRow>> {
        let mut notes: Vec<NoteRow> = sqlx::query_as(
            "SELECT id, author_id, body, created_at FROM privacy_request_notes \
             WHERE request_id = $1 ORDER BY id",
        )
        .bind(request_id)
        .fetch_all(self.pool())
        .await
        .context("reading a request's notes")?;
        if notes.iter().any(|n| crate::sealing::is_sealed(&n.body)) {
            let submission = self.submission_of_request(request_id).await?;
            for note in &mut notes {
                note.body = match submission {
                    Some(id) => self.open_for_submission(id, NOTE_BODY, &note.body).await?,
                    None => String::new(),
                };
            }
        }
        Ok(notes)
    }

    /// The submission a request came in, if the request exists.
    pub async fn submission_of_request(&self, request_id: i64) -> anyhow::Result<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT submission_id FROM privacy_requests WHERE id = $1")
                .bind(request_id)
                .fetch_optional(self.pool())
                .await
                .context("reading a request's submission")?;
        Ok(row.map(|(id,)| id))
    }

    pub async fn submission_evidence(
        &self,
        submission_id: i64,
    ) -> anyhow::Result<Vec<EvidenceRow>> {
        sqlx::query_as(
            "SELECT id, content_type, size_bytes, sha256, uploaded_at \
             FROM privacy_request_evidence WHERE submission_id = $1 ORDER BY id",
        )
        .bind(submission_id)
        .fetch_all(self.pool())
        .await
        .context("reading an agent's evidence")
    }

    /// Claims up to `limit` unverified requests whose reminder is due, pushing their next
    /// reminder to `lease_until` so that another node leaves them alone meanwhile.
    pub async fn claim_unverified_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let sql = format!(
            "UPDATE privacy_requests SET next_reminder_at = $1 WHERE id IN (SELECT id FROM \
             privacy_requests WHERE state IN ('received', 'verifying') \
             AND next_reminder_at IS NOT NULL AND next_reminder_at <= $2 ORDER BY id LIMIT $3 {}) \
             RETURNING id",
            self.skip_locked()
        );
        let mut tx = self.begin().await?;
        let mut ids: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .context("claiming unverified requests")?;
        tx.commit().await.context("claiming unverified requests")?;
        ids.sort();
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Requests handed to fulfilment at or before `stale_before` and still in progress, of the
    /// rights carried out at once (a node died between the hand-over and the work): claimed by
    /// moving their hand-over time to `now`, so another node skips them for a while.
    pub async fn claim_unfinished_hand_overs(
        &self,
        now: i64,
        stale_before: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let sql = format!(
            "UPDATE privacy_requests SET handed_to_fulfilment_at = $1 WHERE id IN (SELECT id FROM \
             privacy_requests WHERE state = 'in_progress' AND handed_to_fulfilment_at IS NOT NULL \
             AND handed_to_fulfilment_at <= $2 \
             AND right_name IN ('deletion', 'access', 'portability') AND submission_id IN \
             (SELECT id FROM privacy_submissions WHERE subject_user_id IS NOT NULL) \
             ORDER BY id LIMIT $3 {}) \
             RETURNING id",
            self.skip_locked()
        );
        let mut tx = self.begin().await?;
        let mut ids: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(stale_before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .context("claiming unfinished hand-overs")?;
        tx.commit()
            .await
            .context("claiming unfinished hand-overs")?;
        ids.sort();
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// How many open requests are due on or before `day` (for alarms and metrics).
    pub async fn count_open_due_by(&self, day: &str) -> anyhow::Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM privacy_requests WHERE state IN {OPEN_STATES} \
             AND {DUE} <= $1"
        );
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(day)
            .fetch_one(self.pool())
            .await
            .context("counting requests by due day")?;
        Ok(n)
    }

    /// Addresses of the members who handle privacy requests.
    pub async fn privacy_staff_emails(&self) -> anyhow::Result<Vec<(i64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, email FROM users WHERE role IN ('privacy_officer', 'administrator') \
             ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .context("reading privacy staff")?;
        let mut opened = Vec::with_capacity(rows.len());
        for (id, email) in rows {
            let email = self.open_for_member(id, super::USERS_EMAIL, &email).await?;
            opened.push((id, email));
        }
        Ok(opened)
    }

    /// Requests received in `[from, until)` for the yearly report.
    pub async fn report_rows(&self, from: i64, until: i64) -> anyhow::Result<Vec<ReportRow>> {
        sqlx::query_as(
            "SELECT right_name, state, decline_code, received_at, closed_at FROM privacy_requests \
             WHERE received_at >= $1 AND received_at < $2 ORDER BY id",
        )
        .bind(from)
        .bind(until)
        .fetch_all(self.pool())
        .await
        .context("reading requests for the report")
    }

    /// Test and operator helper: moves a request's receipt back in time (demo data, tests of
    /// reminders and deadlines). Never called by the server itself.
    pub async fn backdate_request(
        &self,
        id: i64,
        received_at: i64,
        received_on: &str,
        due_on: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE privacy_requests SET received_at = $1, received_on = $2, due_on = $3 \
             WHERE id = $4",
        )
        .bind(received_at)
        .bind(received_on)
        .bind(due_on)
        .bind(id)
        .execute(self.pool())
        .await
        .context("backdating a request")?;
        Ok(())
    }
}
