//! The policy in the running forum: which version is in force, publishing a new one (checked,
//! compared with the last, stored for good) and queuing the notice of a material change to
//! every member with an address, in batches that resume where a crash left them.
//! The decisions themselves (validity, material or editorial) are `covenant_core`'s; this
//! module only carries them to the store and the outbox. It never logs an address.

use crate::config::Config;
use crate::mail::Mail;
use crate::store::{self, NewPolicyVersion, PolicyVersionRow, Store};
use anyhow::Context;
use covenant_core::diff::{Change, ChangeClass, PolicyDiff, diff};
use covenant_core::policy::{OperatorFacts, Policy, PolicyError};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use time::Date;

/// How many members one notice transaction covers.
pub const NOTICE_BATCH: i64 = 200;

/// The policy shown to people: a published version, or the starting file before any is.
#[derive(Debug)]
pub struct PolicyInForce {
    /// With the operator's facts from configuration.
    pub policy: Arc<Policy>,
    /// `None` while nothing published is in force yet.
    pub version: Option<VersionInfo>,
}

#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub id: i64,
    pub label: String,
    pub effective_on: String,
    pub published_at: i64,
    pub material: bool,
    pub sha256: String,
}

impl From<&PolicyVersionRow> for VersionInfo {
    fn from(row: &PolicyVersionRow) -> Self {
        Self {
            id: row.id,
            label: row.version_label.clone(),
            effective_on: row.effective_on.clone(),
            published_at: row.published_at,
            material: row.material != 0,
            sha256: row.sha256.clone(),
        }
    }
}

impl From<&store::PolicyVersionSummary> for VersionInfo {
    fn from(row: &store::PolicyVersionSummary) -> Self {
        Self {
            id: row.id,
            label: row.version_label.clone(),
            effective_on: row.effective_on.clone(),
            published_at: row.published_at,
            material: row.material != 0,
            sha256: row.sha256.clone(),
        }
    }
}

/// The policy file the site starts from: `policy_file`, or the one built into the binary.
pub fn starting_policy(config: &Config) -> anyhow::Result<Policy> {
    if config.policy_file.as_os_str().is_empty() {
        return Ok(Policy::default_policy());
    }
    let path = &config.policy_file;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy file {}", path.display()))?;
    Policy::from_toml_str(&text, &path.display().to_string())
        .map_err(|problems| anyhow::anyhow!("the policy file is invalid:\n{problems}"))
}

/// Parses a stored version. It was valid when published; should a later release check more
/// strictly, the version is still shown as published rather than refused.
pub fn parse_stored(row: &PolicyVersionRow) -> anyhow::Result<Policy> {
    Policy::from_toml_str(&row.toml_text, &format!("policy version {}", row.id)).map_err(
        |problems| {
            anyhow::anyhow!(
                "stored policy version {} no longer loads: {problems}",
                row.id
            )
        },
    )
}

/// The policy in force, kept in memory and reloaded when the store says another version
/// took over (publishing runs in another process, `covenant policy publish`).
#[derive(Clone)]
pub struct Policies {
    store: Store,
    operator: OperatorFacts,
    starting: Arc<Policy>,
    cached: Arc<RwLock<Arc<PolicyInForce>>>,
}

impl Policies {
    pub async fn load(store: Store, config: &Config) -> anyhow::Result<Self> {
        let operator = config.operator.facts();
        let starting = Arc::new(starting_policy(config)?.with_operator(operator.clone()));
        let policies = Self {
            store,
            operator,
            cached: Arc::new(RwLock::new(Arc::new(PolicyInForce {
                policy: starting.clone(),
                version: None,
            }))),
            starting,
        };
        policies.current().await?;
        Ok(policies)
    }

    /// The policy in force now: one cheap query, and a reload only when the version changed.
    pub async fn current(&self) -> anyhow::Result<Arc<PolicyInForce>> {
        let in_force = self.store.policy_version_in_force(&today()).await?;
        self.at(in_force).await
    }

    /// [`Self::at`] when the version named is the one held in memory; `None` otherwise.
    pub fn in_memory(&self, in_force: Option<i64>) -> Option<Arc<PolicyInForce>> {
        let cached = self
            .cached
            .read()
            .expect("the policy lock is never poisoned");
        (cached.version.as_ref().map(|v| v.id) == in_force).then(|| cached.clone())
    }

    /// The policy of the version the caller found in force (`None`: nothing published is in
    /// force yet), from memory unless it is not the one held.
    pub async fn at(&self, in_force: Option<i64>) -> anyhow::Result<Arc<PolicyInForce>> {
        let cached = self
            .cached
            .read()
            .expect("the policy lock is never poisoned")
            .clone();
        if cached.version.as_ref().map(|v| v.id) == in_force {
            return Ok(cached);
        }
        let fresh = match in_force {
            None => PolicyInForce {
                policy: self.starting.clone(),
                version: None,
            },
            Some(id) => {
                let row = self
                    .store
                    .policy_version(id)
                    .await?
                    .context("the policy version in force vanished")?;
                PolicyInForce {
                    policy: Arc::new(self.with_operator(parse_stored(&row)?)),
                    version: Some(VersionInfo::from(&row)),
                }
            }
        };
        let fresh = Arc::new(fresh);
        *self
            .cached
            .write()
            .expect("the policy lock is never poisoned") = fresh.clone();
        Ok(fresh)
    }

    /// A stored version as people see it, with the operator's facts.
    pub fn with_operator(&self, policy: Policy) -> Policy {
        policy.with_operator(self.operator.clone())
    }

    /// What the site showed before anything was published.
    pub fn starting(&self) -> &Policy {
        &self.starting
    }
}

/// Today in UTC, as `YYYY-MM-DD`.
pub fn today() -> String {
    day_text(today_number())
}

/// Today (UTC) as days since 1970-01-01: a key that costs no formatting, for what changes at
/// midnight (the policy version in force).
pub fn today_number() -> i64 {
    time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400)
}

/// A day number's date as `YYYY-MM-DD` (UTC), as [`today`] writes it.
pub fn day_text(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc().date().to_string())
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(PolicyError),
    #[error(
        "the policy is the same as version {latest_id} in everything but comments and layout; nothing was published"
    )]
    NoChange { latest_id: i64 },
    #[error(
        "version label `{0}` is already used by a published version; change `version` in the file"
    )]
    LabelTaken(String),
    #[error(
        "the effective date {effective} is before {latest}, the effective date of the latest version"
    )]
    EffectiveTooEarly { effective: String, latest: String },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What `publish` did.
#[derive(Debug)]
pub struct Published {
    pub version_id: i64,
    /// False when this exact file was already the latest version (publishing it again only
    /// resumes its notices).
    pub created: bool,
    pub material: bool,
    /// The changes from the version before (or from the starting policy for the first one).
    pub diff: PolicyDiff,
}

/// Checks `text`, compares it with the latest published version (or, for the first, with
/// the policy the site started from) and stores it. A material version is stored together
/// with the run that owes its notices; queue them with [`queue_notices`].
pub async fn publish(
    store: &Store,
    starting: &Policy,
    text: &str,
    file_name: &str,
    effective: Date,
) -> Result<Published, PublishError> {
    let policy = Policy::from_toml_str(text, file_name).map_err(PublishError::Invalid)?;
    let sha256 = sha256_hex(text);
    let effective_on = effective.to_string();
    let mut tx = store.begin().await?;
    let latest = store::latest_policy_version_in(&mut tx).await?;
    if let Some(latest) = &latest
        && latest.sha256 == sha256
    {
        let old = parse_stored(latest)?;
        return Ok(Published {
            version_id: latest.id,
            created: false,
            material: latest.material != 0,
            diff: diff(&old, &old),
        });
    }
    let baseline = match &latest {
        Some(row) => parse_stored(row)?,
        None => starting.clone(),
    };
    let changes = diff(&baseline, &policy);
    if let Some(latest) = &latest {
        if changes.is_empty() {
            return Err(PublishError::NoChange {
                latest_id: latest.id,
            });
        }
        if effective_on < latest.effective_on {
            return Err(PublishError::EffectiveTooEarly {
                effective: effective_on,
                latest: latest.effective_on.clone(),
            });
        }
    }
    // The first version has no earlier published one to differ from: members registered
    // under the starting policy, so only a material difference from it is announced.
    let material = changes.is_material();
    let diff_json = serde_json::to_string(&changes).context("encoding the policy diff")?;
    let version_id = store::insert_policy_version(
        &mut tx,
        &NewPolicyVersion {
            version_label: policy.version(),
            effective_on: &effective_on,
            published_at: crate::now(),
            toml_text: text,
            sha256: &sha256,
            material,
            diff_json: &diff_json,
        },
    )
    .await
    .map_err(|error| match error.downcast_ref::<store::Duplicate>() {
        Some(_) => PublishError::LabelTaken(policy.version().to_string()),
        None => PublishError::Store(error),
    })?;
    tx.commit().await.context("publishing a policy version")?;
    tracing::info!(version_id, material, "published a policy version");
    Ok(Published {
        version_id,
        created: true,
        material,
        diff: changes,
    })
}

/// How far a notice run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeProgress {
    /// Notices newly queued by this call.
    pub queued: i64,
    pub finished: bool,
}

/// Queues the notice of a material version to every member with an address, `batch_size`
/// members per transaction, stopping after `max_batches` when given. Each batch queues its
/// mail and moves the run's cursor in one transaction, and every notice carries the key
/// `policy-notice:{version}:{user}`, so a run cut short anywhere resumes without sending
/// anyone the same notice twice.
pub async fn queue_notices(
    store: &Store,
    config: &Config,
    version_id: i64,
    batch_size: i64,
    max_batches: Option<usize>,
) -> anyhow::Result<NoticeProgress> {
    let Some(row) = store.policy_version(version_id).await? else {
        anyhow::bail!("there is no policy version {version_id}");
    };
    let changes = parse_diff(&row.diff_json);
    let mut progress = NoticeProgress {
        queued: 0,
        finished: false,
    };
    let mut batches = 0;
    loop {
        if max_batches.is_some_and(|max| batches >= max) {
            return Ok(progress);
        }
        batches += 1;
        let mut tx = store.begin().await?;
        let Some(run) = store::lock_notice_run(store, &mut tx, version_id).await? else {
            // No run (an editorial version), or another node holds it right now.
            return Ok(progress);
        };
        if run.finished_at.is_some() {
            progress.finished = true;
            return Ok(progress);
        }
        let recipients =
            store::notice_recipients_after(store, &mut tx, run.after_user_id, batch_size.max(1))
                .await?;
        let now = crate::now();
        let mut queued = 0;
        for recipient in &recipients {
            let mail = notice_mail(config, &row, &changes, &recipient.username);
            let key = format!("policy-notice:{version_id}:{}", recipient.id);
            if mail
                .enqueue(
                    store,
                    &mut tx,
                    &key,
                    &recipient.email,
                    Some(recipient.id),
                    now,
                )
                .await?
            {
                queued += 1;
            }
        }
        let done = (recipients.len() as i64) < batch_size.max(1);
        let cursor = recipients.last().map_or(run.after_user_id, |r| r.id);
        store::advance_notice_run(&mut tx, version_id, cursor, queued, done.then_some(now)).await?;
        tx.commit()
            .await
            .context("queuing a batch of policy notices")?;
        progress.queued += queued;
        tracing::info!(
            version_id,
            after_user_id = cursor,
            queued,
            "queued policy notices"
        );
        if done {
            progress.finished = true;
            return Ok(progress);
        }
    }
}

/// Finishes every notice run left open, for instance by a publisher that crashed.
pub async fn resume_notices(store: &Store, config: &Config) -> anyhow::Result<i64> {
    let mut queued = 0;
    for version_id in store.unfinished_notice_runs().await? {
        queued += queue_notices(store, config, version_id, NOTICE_BATCH, None)
            .await?
            .queued;
    }
    Ok(queued)
}

/// The changes stored with a version; an unreadable summary (written by a later release)
/// reads as none.
pub fn parse_diff(json: &str) -> Vec<Change> {
    #[derive(serde::Deserialize)]
    struct Stored {
        changes: Vec<StoredChange>,
    }
    #[derive(serde::Deserialize)]
    struct StoredChange {
        path: String,
        description: String,
        class: String,
    }
    let stored: Stored = serde_json::from_str(json).unwrap_or(Stored { changes: vec![] });
    stored
        .changes
        .into_iter()
        .map(|c| Change {
            path: c.path,
            description: c.description,
            class: if c.class == "editorial" {
                ChangeClass::Editorial
            } else {
                ChangeClass::Material
            },
        })
        .collect()
}

const MAX_LINES_IN_MAIL: usize = 20;
const MAX_LINE_CHARS: usize = 160;

fn notice_mail(
    config: &Config,
    row: &PolicyVersionRow,
    changes: &[Change],
    username: &str,
) -> Mail {
    let site = &config.site_name;
    let base = config.base_url();
    let material: Vec<String> = changes
        .iter()
        .filter(|c| c.class == ChangeClass::Material)
        .map(|c| {
            let line = format!("- {}: {}", c.path, c.description.replace('\n', " "));
            match line.char_indices().nth(MAX_LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => line,
            }
        })
        .collect();
    let mut summary = material
        .iter()
        .take(MAX_LINES_IN_MAIL)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if material.len() > MAX_LINES_IN_MAIL {
        summary.push_str(&format!(
            "\n… and {} more changes.",
            material.len() - MAX_LINES_IN_MAIL
        ));
    }
    Mail {
        subject: format!("{site} is changing its privacy policy"),
        body: format!(
            "Hello {username},\n\n\
             We publish a new version ({label}) of the privacy policy of {site}. It takes effect \
             on {effective}. It changes what data we handle, why, who receives it or which \
             rights you have, so we tell you before it applies:\n\n{summary}\n\n\
             Read the new version:\n{base}/privacy/versions/{id}\n\n\
             Every earlier version stays available at {base}/privacy/history\n\n\
             You get this message once for this version, because your account has an email \
             address. It is not a newsletter and needs no reply.\n",
            label = row.version_label,
            effective = row.effective_on,
            id = row.id,
        ),
    }
}
