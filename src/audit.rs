//! The tamper-evident audit log: what happened to whom, by whom, recorded in the same
//! transaction as the change itself.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's own fields, and
//! each hash is signed with an HMAC-SHA256 under a key kept outside the database
//! (`audit_key_file`), so someone who can write to the database alone can neither edit an entry
//! nor rebuild the chain after one. `verify` walks the chain and names every entry that was
//! edited, deleted or moved. Entries hold identifiers only: the `Detail` type cannot carry a
//! personal value, so no email, IP address or text can reach the log.

pub mod anchor;

use crate::domain::Role;
use crate::store::{self, AuditRow, Store, Tx};
use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Everything the audit log records. One closed list: a test checks that each kind is written
/// somewhere in the code, or is listed in [`AuditKind::RESERVED`] for work not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    AccountRegistered,
    EmailVerified,
    SignedIn,
    SignInFailed,
    SignedOut,
    PasswordReset,
    PasswordChanged,
    PostHidden,
    PostUnhidden,
    /// The spam and unsafe-link check held a new or edited post for a moderator (A6); the
    /// reason is a fixed word, never what matched.
    PostHeld,
    /// A moderator released a held post: it shows.
    HeldPostReleased,
    /// A moderator hid a held post: it stays out of sight, as a hidden post.
    HeldPostHidden,
    RoleChanged,
    TwoFactorEnabled,
    TwoFactorDisabled,
    RecoveryCodeUsed,
    SessionRevoked,
    AuditLogViewed,
    /// A parent consented, from the emailed link, to a minor's account (promise M1).
    ParentalConsentGiven,
    /// A member linked a provider account for social sign-in (promise F5).
    SocialLinked,
    /// A member removed a provider link.
    SocialUnlinked,
    /// Staff published a feedback message its sender agreed to publish (promise F6).
    FeedbackPublished,
    /// A subject's export archive was built (R7).
    DataExported,
    /// A subject was erased (R8).
    DataErased,
    /// A subject's key was destroyed with their erasure (R8): what it sealed, in any copy of
    /// the database, opens no more. Ids only.
    SubjectKeyDestroyed,
    /// A staff read of personal data through the purpose gate (A4): the purpose as
    /// `reason=`, the categories shown, and the request read or the count of records listed.
    PersonalDataRead,
    /// The purpose gate refused a staff read of personal data (A4): the purpose as `reason=`,
    /// the reader's role, why (`refused=need_to_know` or `refused=restricted`) and the
    /// categories asked for. Nothing was shown.
    PersonalDataReadRefused,
    /// The audit log was found behind its anchor, kept outside the database, and an operator
    /// accepted it (a restored backup): `rolled_back_to=` the restored head, `anchored=` the
    /// head the anchor had recorded.
    AuditLogRolledBack,
    /// A disclosure of a member's data to a third party or an authority (A3): the record's
    /// number, the legal basis, the categories, and whether the member was told.
    Disclosure,
    /// The law no longer forbids telling the member of a disclosure: they were told then.
    DisclosureNoticeAllowed,
    /// A member closed their account, or staff did: the relationship ended (T1).
    AccountClosed,
    /// The sweep restricted records to storage and security (T2).
    DataRestricted,
    /// The sweep deleted records (T4).
    DataDeleted,
    /// The sweep anonymized records (T4).
    DataAnonymized,
    /// Privacy staff placed a legal hold (T3).
    LegalHoldPlaced,
    /// Privacy staff released a legal hold (T3).
    LegalHoldReleased,
    /// A sweep run went through every subject.
    SweepFinished,
    /// A privacy request was received (one entry per right asked).
    RequestReceived,
    /// A privacy request moved in its life cycle; `method=` names the core event.
    RequestTransitioned,
    /// A verified request was handed to fulfilment.
    RequestHandedToFulfilment,
    RequestAssigned,
    RequestNoteAdded,
    /// The deadline was extended, with notice to the requester.
    RequestExtended,
    /// A message (template or reminder) was sent about a request.
    RequestMessageSent,
    /// An agent uploaded evidence of authority.
    RequestEvidenceAdded,
    /// Privacy staff opened (downloaded) an evidence file of a request.
    RequestEvidenceOpened,
    /// A wrong verification code was entered.
    RequestCodeFailed,
    /// A verified request restricted the subject's processing to storage (R9).
    ProcessingRestricted,
    /// A restriction of processing was lifted, by staff or by the subject (R9).
    RestrictionLifted,
    /// A profile field was corrected (R9); the details give the old and new value classes.
    DataRectified,
    /// A verified objection or withdrawal of consent stopped the processing it names (R9).
    ProcessingStopped,
    /// A signed-in member was refused a staff route (a plain 403): the route's template and
    /// method, once per member and route per minute, so a flood of refusals cannot flood the log.
    AccessRefused,
}

impl AuditKind {
    pub const ALL: [AuditKind; 52] = [
        Self::AccountRegistered,
        Self::EmailVerified,
        Self::SignedIn,
        Self::SignInFailed,
        Self::SignedOut,
        Self::PasswordReset,
        Self::PasswordChanged,
        Self::PostHidden,
        Self::PostUnhidden,
        Self::PostHeld,
        Self::HeldPostReleased,
        Self::HeldPostHidden,
        Self::RoleChanged,
        Self::TwoFactorEnabled,
        Self::TwoFactorDisabled,
        Self::RecoveryCodeUsed,
        Self::SessionRevoked,
        Self::AuditLogViewed,
        Self::ParentalConsentGiven,
        Self::FeedbackPublished,
        Self::DataExported,
        Self::DataErased,
        Self::SubjectKeyDestroyed,
        Self::SocialLinked,
        Self::SocialUnlinked,
        Self::PersonalDataRead,
        Self::PersonalDataReadRefused,
        Self::AuditLogRolledBack,
        Self::Disclosure,
        Self::DisclosureNoticeAllowed,
        Self::AccountClosed,
        Self::DataRestricted,
        Self::DataDeleted,
        Self::DataAnonymized,
        Self::LegalHoldPlaced,
        Self::LegalHoldReleased,
        Self::SweepFinished,
        Self::RequestReceived,
        Self::RequestTransitioned,
        Self::RequestHandedToFulfilment,
        Self::RequestAssigned,
        Self::RequestNoteAdded,
        Self::RequestExtended,
        Self::RequestMessageSent,
        Self::RequestEvidenceAdded,
        Self::RequestEvidenceOpened,
        Self::RequestCodeFailed,
        Self::ProcessingRestricted,
        Self::RestrictionLifted,
        Self::DataRectified,
        Self::ProcessingStopped,
        Self::AccessRefused,
    ];

    /// Kinds kept for work that is planned but not built; nothing writes them yet.
    pub const RESERVED: [AuditKind; 0] = [];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountRegistered => "account_registered",
            Self::EmailVerified => "email_verified",
            Self::SignedIn => "signed_in",
            Self::SignInFailed => "sign_in_failed",
            Self::SignedOut => "signed_out",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::PostHidden => "post_hidden",
            Self::PostUnhidden => "post_unhidden",
            Self::PostHeld => "post_held",
            Self::HeldPostReleased => "held_post_released",
            Self::HeldPostHidden => "held_post_hidden",
            Self::RoleChanged => "role_changed",
            Self::TwoFactorEnabled => "two_factor_enabled",
            Self::TwoFactorDisabled => "two_factor_disabled",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::SessionRevoked => "session_revoked",
            Self::AuditLogViewed => "audit_log_viewed",
            Self::ParentalConsentGiven => "parental_consent_given",
            Self::FeedbackPublished => "feedback_published",
            Self::DataExported => "data_exported",
            Self::DataErased => "data_erased",
            Self::SubjectKeyDestroyed => "subject_key_destroyed",
            Self::SocialLinked => "social_linked",
            Self::SocialUnlinked => "social_unlinked",
            Self::PersonalDataRead => "personal_data_read",
            Self::PersonalDataReadRefused => "personal_data_read_refused",
            Self::AuditLogRolledBack => "audit_log_rolled_back",
            Self::Disclosure => "disclosure",
            Self::DisclosureNoticeAllowed => "disclosure_notice_allowed",
            Self::AccountClosed => "account_closed",
            Self::DataRestricted => "data_restricted",
            Self::DataDeleted => "data_deleted",
            Self::DataAnonymized => "data_anonymized",
            Self::LegalHoldPlaced => "legal_hold_placed",
            Self::LegalHoldReleased => "legal_hold_released",
            Self::SweepFinished => "sweep_finished",
            Self::RequestReceived => "request_received",
            Self::RequestTransitioned => "request_transitioned",
            Self::RequestHandedToFulfilment => "request_handed_to_fulfilment",
            Self::RequestAssigned => "request_assigned",
            Self::RequestNoteAdded => "request_note_added",
            Self::RequestExtended => "request_extended",
            Self::RequestMessageSent => "request_message_sent",
            Self::RequestEvidenceAdded => "request_evidence_added",
            Self::RequestEvidenceOpened => "request_evidence_opened",
            Self::RequestCodeFailed => "request_code_failed",
            Self::ProcessingRestricted => "processing_restricted",
            Self::RestrictionLifted => "restriction_lifted",
            Self::DataRectified => "data_rectified",
            Self::ProcessingStopped => "processing_stopped",
            Self::AccessRefused => "access_refused",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// One detail of an entry. Every variant is an identifier or a word from a fixed list, so a
/// personal value cannot be written into the log by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    Post(i64),
    Feedback(i64),
    /// A privacy request, by number.
    Request(i64),
    /// An evidence file of a privacy request, by number.
    Evidence(i64),
    /// A configured sign-in provider's id (operator configuration, not personal).
    Provider(String),
    Role(Role),
    PreviousRole(Role),
    /// A session's public handle (a prefix of its token digest, not the token).
    Session(String),
    /// Why something was refused or how it was done, from a fixed vocabulary.
    Reason(&'static str),
    Method(&'static str),
    /// A decision's reason code (a privacy request's decline code), from a fixed vocabulary.
    Code(&'static str),
    Count(i64),
    /// A data category key of the policy (`user.contact.email`); only `[a-z0-9._]` is kept.
    Category(String),
    Hold(i64),
    SweepRun(i64),
    /// A disclosure record, by number.
    Disclosure(i64),
    /// A profile field's name, from a fixed list.
    Field(&'static str),
    /// The class of a field's value before a correction ("empty", "short", "long"), never
    /// the value.
    Before(&'static str),
    /// The class of the value after the correction.
    After(&'static str),
    /// Why the purpose gate refused a read, from a fixed vocabulary.
    Refused(&'static str),
    /// A route's template (`/staff/requests/{id}`): only `[A-Za-z0-9/_{}.-]` is kept, so no
    /// value from the URL can enter.
    Route(String),
    /// The sequence number an audit log was rolled back to.
    RolledBackTo(i64),
    /// The sequence number the anchor outside the database had recorded.
    Anchored(i64),
}

impl Detail {
    fn render(&self) -> String {
        match self {
            Self::Post(id) => format!("post={id}"),
            Self::Feedback(id) => format!("feedback={id}"),
            Self::Request(id) => format!("request={id}"),
            Self::Evidence(id) => format!("evidence={id}"),
            Self::Provider(id) => {
                let id: String = id
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(32)
                    .collect();
                format!("provider={id}")
            }
            Self::Role(role) => format!("role={}", role.as_str()),
            Self::PreviousRole(role) => format!("previous_role={}", role.as_str()),
            Self::Session(handle) => {
                let handle: String = handle
                    .chars()
                    .filter(|c| c.is_ascii_hexdigit())
                    .take(16)
                    .collect();
                format!("session={handle}")
            }
            Self::Reason(reason) => format!("reason={reason}"),
            Self::Method(method) => format!("method={method}"),
            Self::Code(code) => format!("code={code}"),
            Self::Count(n) => format!("count={n}"),
            Self::Category(key) => {
                let key: String = key
                    .chars()
                    .filter(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '_'
                    })
                    .take(64)
                    .collect();
                format!("category={key}")
            }
            Self::Hold(id) => format!("hold={id}"),
            Self::SweepRun(id) => format!("sweep_run={id}"),
            Self::Disclosure(id) => format!("disclosure={id}"),
            Self::Field(name) => format!("field={name}"),
            Self::Before(class) => format!("before={class}"),
            Self::After(class) => format!("after={class}"),
            Self::Refused(why) => format!("refused={why}"),
            Self::Route(template) => format!(
                "route={}",
                template
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "/_{}.-".contains(*c))
                    .collect::<String>()
            ),
            Self::RolledBackTo(seq) => format!("rolled_back_to={seq}"),
            Self::Anchored(seq) => format!("anchored={seq}"),
        }
    }
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: AuditKind,
    /// Who acted: a member or staff id; `None` for the system or the operator's command line.
    pub actor_id: Option<i64>,
    /// Whose account or data the event is about, when known.
    pub subject_id: Option<i64>,
    pub details: Vec<Detail>,
}

impl Event {
    pub fn new(kind: AuditKind) -> Self {
        Self {
            kind,
            actor_id: None,
            subject_id: None,
            details: Vec::new(),
        }
    }

    /// The member acted on their own account.
    pub fn by_self(kind: AuditKind, user_id: i64) -> Self {
        Self::new(kind).actor(Some(user_id)).subject(Some(user_id))
    }

    pub fn actor(mut self, actor_id: Option<i64>) -> Self {
        self.actor_id = actor_id;
        self
    }

    pub fn subject(mut self, subject_id: Option<i64>) -> Self {
        self.subject_id = subject_id;
        self
    }

    pub fn detail(mut self, detail: Detail) -> Self {
        self.details.push(detail);
        self
    }
}

/// The key that signs the chain. Kept in a file outside the database; never printed.
#[derive(Clone)]
pub struct AuditKey(Arc<Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

impl AuditKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Zeroizing::new(bytes)))
    }

    /// Reads the key file, creating it (readable by the owner only) with a random key if it
    /// does not exist. Every node of one forum must be given the same file.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text)
                .with_context(|| format!("the audit key file {} is not valid", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("creating the folder of the audit key {}", dir.display())
                    })?;
                }
                let key = crate::accounts::random_token();
                write_private(path, &key)?;
                tracing::info!(path = %path.display(), "created a new audit key");
                Self::load_or_create(path)
            }
            Err(error) => Err(anyhow::Error::new(error)
                .context(format!("reading the audit key file {}", path.display()))),
        }
    }

    /// Reads an existing key file; never creates one (for `audit verify`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the audit key file {}", path.display()))?;
        Self::parse(&text)
            .with_context(|| format!("the audit key file {} is not valid", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let key = text.trim();
        anyhow::ensure!(key.len() >= 32, "the key must be at least 32 characters");
        Ok(Self::from_bytes(key.as_bytes().to_vec()))
    }

    /// A key for another purpose (rate-limit digests), derived from this one so that it too
    /// stays outside the database and is the same on every node.
    pub fn derive(&self, purpose: &str) -> Zeroizing<Vec<u8>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"covenant-derive:");
        mac.update(purpose.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().to_vec())
    }

    /// The MAC of the chain's head: its sequence number and the hash it points at.
    fn head_mac(&self, seq: i64, hash: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"covenant-audit-head:");
        mac.update(&seq.to_be_bytes());
        mac.update(hash.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    fn mac(&self, entry_hash: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"covenant-audit:");
        mac.update(entry_hash.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another node or process created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("creating the audit key file {}", path.display())));
        }
    };
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the audit key file {}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of an entry: SHA-256 over the previous hash and every field, each length-prefixed
/// so that no two different entries can produce the same input. The sequence number is left
/// out on purpose: the chain of hashes is what fixes an entry's place.
fn entry_hash(prev_hash: &str, row: &AuditRow) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&row.at.to_be_bytes());
    field(
        row.actor_id
            .map(|id| id.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(
        row.subject_id
            .map(|id| id.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(row.kind.as_bytes());
    field(row.details.as_bytes());
    hex(&hasher.finalize())
}

/// Appends `event` to the chain inside the caller's transaction, so the entry commits or rolls
/// back with the change it records.
pub async fn record(tx: &mut Tx, key: &AuditKey, event: Event) -> anyhow::Result<i64> {
    let (seq, prev_hash) = store::advance_audit_head(tx).await?;
    let details: Vec<String> = event.details.iter().map(Detail::render).collect();
    let mut row = AuditRow {
        seq,
        at: crate::now(),
        actor_id: event.actor_id,
        subject_id: event.subject_id,
        kind: event.kind.as_str().to_string(),
        details: details.join(" "),
        prev_hash,
        entry_hash: String::new(),
        mac: String::new(),
    };
    row.entry_hash = entry_hash(&row.prev_hash, &row);
    row.mac = key.mac(&row.entry_hash);
    // The head is signed too: without the key, deleted newest entries cannot be hidden by
    // rewinding the head to the last entry kept.
    let head_mac = key.head_mac(row.seq, &row.entry_hash);
    store::append_audit_row(tx, &row, &head_mac).await?;
    Ok(seq)
}

/// Appends `events` to the chain in the caller's transaction, in their order, with one move of
/// the head and a few multi-row inserts: the chain is the same as recording them one by one
/// (the sweep writes one entry per member and category, thousands a batch).
pub async fn record_many(
    store: &Store,
    tx: &mut Tx,
    key: &AuditKey,
    events: Vec<Event>,
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len() as i64;
    let (last_seq, mut prev_hash) = store::advance_audit_head_by(tx, n).await?;
    let at = crate::now();
    let mut rows = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let details: Vec<String> = event.details.iter().map(Detail::render).collect();
        let mut row = AuditRow {
            seq: last_seq - n + 1 + i as i64,
            at,
            actor_id: event.actor_id,
            subject_id: event.subject_id,
            kind: event.kind.as_str().to_string(),
            details: details.join(" "),
            prev_hash,
            entry_hash: String::new(),
            mac: String::new(),
        };
        row.entry_hash = entry_hash(&row.prev_hash, &row);
        row.mac = key.mac(&row.entry_hash);
        prev_hash = row.entry_hash.clone();
        rows.push(row);
    }
    // The head is signed as `record` signs it, so that a batch that ends the chain leaves
    // a head `verify` accepts.
    let head_mac = key.head_mac(last_seq, &prev_hash);
    store.append_audit_rows(tx, &rows, &head_mac).await
}

/// Records `event` in a transaction of its own, for events that change nothing else (a refused
/// sign-in, a page viewed).
pub async fn record_alone(store: &Store, key: &AuditKey, event: Event) -> anyhow::Result<i64> {
    let mut tx = store.begin().await?;
    let seq = record(&mut tx, key, event).await?;
    tx.commit().await.context("committing an audit entry")?;
    Ok(seq)
}

/// What `verify` found wrong, by sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry's fields, hash or MAC do not match: it was changed after it was written.
    Edited(i64),
    /// No entry has this number although later ones (or the head) do: it was deleted.
    Deleted(i64),
    /// The entry is intact but does not follow the entry before it: entries were moved.
    Reordered(i64),
    /// The chain's head does not point at the last entry.
    HeadMismatch,
    /// The head's MAC does not match it: the head was rewound or rewritten by someone without
    /// the key (or not signed since the upgrade that signs heads), so the newest entries may
    /// have been deleted.
    HeadRewritten,
    /// The database's chain ends at `head`, before the entry `anchored` that this node's
    /// anchor (kept outside the database) recorded: it was rolled back to an older copy.
    RolledBack { anchored: i64, head: i64 },
    /// The entry `seq` the anchor recorded is not the one in the database (whose chain ends
    /// at `head`): the log was rolled back and written again since.
    AnchorDiffers { seq: i64, head: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Edited(seq) => write!(f, "entry {seq} was edited"),
            Self::Deleted(seq) => write!(f, "entry {seq} was deleted"),
            Self::Reordered(seq) => write!(f, "entry {seq} is out of order"),
            Self::HeadMismatch => write!(f, "the chain's head does not match its last entry"),
            Self::HeadRewritten => write!(
                f,
                "the chain's head is not signed by the audit key: it was rewound or rewritten, \
                 and the newest entries may have been deleted"
            ),
            Self::RolledBack { anchored, head } => write!(
                f,
                "the audit log was rolled back: the anchor recorded entry {anchored}, the \
                 database's chain ends at entry {head} (restored from an older copy, or the \
                 newest entries were removed)"
            ),
            Self::AnchorDiffers { seq, head } => write!(
                f,
                "the audit log was rolled back and written again: entry {seq} is not the one \
                 the anchor recorded (the database's chain ends at entry {head})"
            ),
        }
    }
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub entries: i64,
    pub problems: Vec<Problem>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Walks the chain from the first entry and reports every edited, deleted or reordered entry.
pub async fn verify(store: &Store, key: &AuditKey) -> anyhow::Result<Verification> {
    let mut problems = Vec::new();
    let mut expected_seq = 1;
    let mut previous_hash = GENESIS.to_string();
    let mut entries = 0;
    let mut after = 0;
    loop {
        let batch = store.audit_rows_after(after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for row in batch {
            entries += 1;
            let gap = row.seq > expected_seq;
            for missing in expected_seq..row.seq {
                problems.push(Problem::Deleted(missing));
            }
            let recomputed = entry_hash(&row.prev_hash, &row);
            let hash_ok = bool::from(recomputed.as_bytes().ct_eq(row.entry_hash.as_bytes()));
            let mac_ok = bool::from(
                key.mac(&row.entry_hash)
                    .as_bytes()
                    .ct_eq(row.mac.as_bytes()),
            );
            if !(hash_ok && mac_ok) {
                problems.push(Problem::Edited(row.seq));
            } else if row.prev_hash != previous_hash && !gap {
                problems.push(Problem::Reordered(row.seq));
            }
            previous_hash = row.entry_hash;
            expected_seq = row.seq + 1;
        }
    }
    let (head_seq, head_hash, head_mac) = store.audit_head().await?;
    // A chain nothing was appended to has an unsigned head; any other head must carry the MAC
    // of its number and hash, which only the key's holder can write.
    let fresh = head_seq == 0 && head_hash == GENESIS && head_mac.is_empty();
    let signed = bool::from(
        key.head_mac(head_seq, &head_hash)
            .as_bytes()
            .ct_eq(head_mac.as_bytes()),
    );
    if !fresh && !signed {
        problems.push(Problem::HeadRewritten);
    }
    for missing in expected_seq..=head_seq {
        problems.push(Problem::Deleted(missing));
    }
    if head_seq < expected_seq - 1 || (head_seq == expected_seq - 1 && head_hash != previous_hash) {
        problems.push(Problem::HeadMismatch);
    }
    Ok(Verification { entries, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_hold_identifiers_only() {
        let event = Event::by_self(AuditKind::SignedIn, 7)
            .detail(Detail::Session(
                "ab12cd34ef56ab78-and-more@example.org".into(),
            ))
            .detail(Detail::Method("totp"));
        let rendered: Vec<String> = event.details.iter().map(Detail::render).collect();
        assert_eq!(rendered, ["session=ab12cd34ef56ab78", "method=totp"]);
    }

    #[test]
    fn kinds_have_distinct_names_that_parse_back() {
        let names: std::collections::HashSet<_> =
            AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), AuditKind::ALL.len());
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn the_hash_covers_every_field_and_the_mac_needs_the_key() {
        let row = AuditRow {
            seq: 1,
            at: 10,
            actor_id: Some(1),
            subject_id: Some(2),
            kind: "signed_in".into(),
            details: String::new(),
            prev_hash: GENESIS.into(),
            entry_hash: String::new(),
            mac: String::new(),
        };
        let hash = entry_hash(GENESIS, &row);
        for changed in [
            AuditRow {
                at: 11,
                ..row.clone()
            },
            AuditRow {
                actor_id: None,
                ..row.clone()
            },
            AuditRow {
                subject_id: Some(3),
                ..row.clone()
            },
            AuditRow {
                kind: "signed_out".into(),
                ..row.clone()
            },
            AuditRow {
                details: "post=1".into(),
                ..row.clone()
            },
        ] {
            assert_ne!(entry_hash(GENESIS, &changed), hash);
        }
        let a = AuditKey::from_bytes(vec![1; 32]);
        let b = AuditKey::from_bytes(vec![2; 32]);
        assert_ne!(a.mac(&hash), b.mac(&hash));
    }
}
