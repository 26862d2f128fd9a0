//! Erasure (R8): every declared personal column of the subject is deleted or anonymized as the
//! policy's category says; rows other members' rows depend on (posts, topics, the account row
//! the posts point at) stay, blanked, authored by "deleted user"; mentions of the subject in
//! anyone's public text are rewritten. An entry in the erasure ledger (database and file)
//! makes a backup restored later erased again before the server starts on it.

use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::error::{Error, Result};
use crate::inventory::{self, Anonymize, Data, Mentions, Rows, Table};
use crate::store::{self, SetTo, Store, TableErasure};
use anyhow::Context;
use covenant_core::policy::{CategoryKey, Policy, RetentionEnd};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What becomes of the subject's public posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentChoice {
    /// Posts stay, authored by "deleted user" (the policy's anonymization of public content).
    KeepAnonymized,
    /// The subject asked for their posts to go too: their text is removed, the places stay.
    Remove,
}

impl ContentChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepAnonymized => "keep_anonymized",
            Self::Remove => "remove",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "keep_anonymized" => Some(Self::KeepAnonymized),
            "remove" => Some(Self::Remove),
            _ => None,
        }
    }
}

/// What an erasure did, table by table, and what it kept and why: the answer to the requester.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReport {
    pub user_id: i64,
    pub erased_at: i64,
    pub content: ContentChoice,
    pub tables: Vec<TableOutcome>,
    /// Other members' posts whose mentions of the subject were rewritten.
    pub mentions_rewritten: usize,
    pub kept: Vec<Kept>,
    /// The reasons of the legal holds that kept data back; empty means no holds.
    pub holds: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableOutcome {
    pub table: &'static str,
    /// `deleted` or `blanked`.
    pub action: &'static str,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub what: String,
    pub why: String,
}

/// The step for one table, from the policy's end (delete or anonymize) of each category.
/// Columns of a `held` category are left as they are, and their rows stay.
pub fn table_erasure(
    table: &Table,
    policy: &Policy,
    content: ContentChoice,
    held: &Held,
) -> TableErasure {
    let end = |category: &str| {
        CategoryKey::parse(category)
            .ok()
            .and_then(|key| policy.retention_for(&key).map(|rule| rule.then))
            .unwrap_or(RetentionEnd::Delete)
    };
    let any_anonymized = table
        .personal_columns()
        .any(|(_, p)| end(p.category) == RetentionEnd::Anonymize);
    let any_held = table
        .personal_columns()
        .any(|(_, p)| held.covers(p.category));
    if table.rows == Rows::Removable && !any_anonymized && !any_held {
        return TableErasure::DeleteRows;
    }
    let mut sets = Vec::new();
    for (column, personal) in table.personal_columns() {
        if held.covers(personal.category) {
            continue;
        }
        let keep = end(personal.category) == RetentionEnd::Anonymize
            && content == ContentChoice::KeepAnonymized
            && matches!(
                personal.anonymize,
                Anonymize::KeepText | Anonymize::RenderedFrom(_)
            );
        if !keep {
            sets.push((column.name, SetTo::Blank(personal.blank)));
        }
    }
    if content == ContentChoice::Remove
        && let Some(tombstone) = table.tombstone
    {
        sets.push((tombstone, SetTo::Now));
    }
    TableErasure::Update(sets)
}

/// The categories standing legal holds keep for one subject (T3), with their reasons.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// A hold on every category.
    pub everything: bool,
    pub categories: Vec<String>,
    pub reasons: Vec<String>,
}

impl Held {
    pub fn covers(&self, category: &str) -> bool {
        self.everything || self.categories.iter().any(|c| c == category)
    }

    /// The standing holds on `user_id` (or on everyone). A hold bounded by creation days is
    /// taken as holding its whole category: erasure keeps more, never less, than a hold asks.
    pub async fn of(store: &Store, user_id: i64) -> anyhow::Result<Self> {
        let mut held = Self::default();
        for hold in store.holds().await? {
            if hold.released_at.is_some()
                || hold
                    .subject_user_id
                    .is_some_and(|subject| subject != user_id)
            {
                continue;
            }
            let categories: Vec<String> = hold
                .categories
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if categories.is_empty() {
                held.everything = true;
            }
            held.categories.extend(categories);
            held.reasons.push(hold.reason);
        }
        Ok(held)
    }
}

/// The categories of the sealed columns (`inventory::SEALED`): a hold on any of them keeps
/// the subject's key, which would otherwise go with the erasure.
fn sealed_categories() -> impl Iterator<Item = &'static str> {
    inventory::SEALED
        .iter()
        .filter_map(|sealed| inventory::table(sealed.table)?.column(sealed.column))
        .filter_map(|column| match column.data {
            Data::Personal(personal) => Some(personal.category),
            _ => None,
        })
}

/// The ledger file: one line `user_id erased_at content` per erasure, outside the database.
pub fn ledger_path(data_dir: &Path) -> PathBuf {
    data_dir.join("erasure-ledger.txt")
}

fn append_ledger_file(data_dir: &Path, entries: &[(i64, i64, String)]) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(data_dir).context("creating the data folder")?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger_path(data_dir))
        .context("opening the erasure ledger file")?;
    for (user_id, erased_at, content) in entries {
        writeln!(file, "{user_id} {erased_at} {content}").context("writing the ledger file")?;
    }
    file.sync_all().context("syncing the erasure ledger file")
}

fn read_ledger_file(data_dir: &Path) -> anyhow::Result<Vec<(i64, i64, String)>> {
    let text = match std::fs::read_to_string(ledger_path(data_dir)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(anyhow::Error::new(error).context("reading the ledger file")),
    };
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let parsed = (|| {
            let user_id = parts.next()?.parse().ok()?;
            let erased_at = parts.next()?.parse().ok()?;
            let content = ContentChoice::parse(parts.next()?)?;
            Some((user_id, erased_at, content.as_str().to_string()))
        })();
        match parsed {
            Some(entry) => entries.push(entry),
            None if line.trim().is_empty() => {}
            None => anyhow::bail!(
                "line {} of the erasure ledger file is not valid",
                number + 1
            ),
        }
    }
    Ok(entries)
}

/// One row of someone's public text to rewrite: its table, key, and new column values.
type Rewrite = (&'static Table, i64, Vec<(&'static str, String)>);

/// `@name` followed by anything a username cannot contain, matched without regard to case.
fn rewrite_mentions(text: &str, username: &str) -> Option<String> {
    let needle = format!("@{}", username.to_ascii_lowercase());
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut changed = false;
    let mut from = 0;
    while let Some(found) = lower[from..].find(&needle) {
        let start = from + found;
        let end = start + needle.len();
        let boundary = lower[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if boundary {
            out.push_str(&text[last..start]);
            out.push_str("@deleted-user");
            last = end;
            changed = true;
        }
        from = end;
    }
    changed.then(|| {
        out.push_str(&text[last..]);
        out
    })
}

/// Erases a member: the entry point for a verified deletion request (and `covenant subject
/// erase`). Returns what was done and kept; `NotFound` if there is no such live account.
pub async fn erase_subject(
    store: &Store,
    audit_key: &AuditKey,
    policy: &Policy,
    data_dir: &Path,
    user_id: i64,
    content: ContentChoice,
    actor_id: Option<i64>,
) -> Result<ErasureReport> {
    let now = crate::now();
    let report = erase_in_store(
        store, audit_key, policy, data_dir, user_id, content, actor_id, now,
    )
    .await?;
    if let Err(error) = append_ledger_file(data_dir, &[(user_id, now, content.as_str().into())]) {
        // The database ledger has the entry; the next start copies it to the file.
        tracing::error!(user_id, error = %format!("{error:#}"), "the erasure ledger file was not written");
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn erase_in_store(
    store: &Store,
    audit_key: &AuditKey,
    policy: &Policy,
    data_dir: &Path,
    user_id: i64,
    content: ContentChoice,
    actor_id: Option<i64>,
    erased_at: i64,
) -> Result<ErasureReport> {
    if !store.is_erasable(user_id).await? {
        return Err(Error::NotFound("account"));
    }
    let user = store
        .user_by_id(user_id)
        .await?
        .ok_or(Error::NotFound("account"))?;
    // Read before the write transaction, so the scan does not hold the write lock.
    let mut rewrites: Vec<Rewrite> = Vec::new();
    for table in inventory::TABLES {
        for column in table.columns {
            let Data::Personal(personal) = column.data else {
                continue;
            };
            let since = match personal.mentions {
                Mentions::No => continue,
                Mentions::Anywhere => None,
                Mentions::Since(condition) => Some((condition, user.created_at)),
            };
            let needle = format!("@{}", user.username);
            for (key, text) in store
                .rows_containing(table, column.name, &needle, since)
                .await?
            {
                let Some(rewritten) = rewrite_mentions(&text, &user.username) else {
                    continue;
                };
                let mut values = vec![(column.name, rewritten.clone())];
                for (other, other_personal) in table.personal_columns() {
                    if other_personal.anonymize == Anonymize::RenderedFrom(column.name) {
                        values.push((other.name, crate::markdown::render(&rewritten)));
                    }
                }
                rewrites.push((table, key, values));
            }
        }
    }
    let files = store.export_files_of(user_id).await?;
    let held = Held::of(store, user_id).await?;
    // The key goes first: from here on, whatever it sealed is unreadable in every copy (a
    // backup too), even if the rest of the erasure were cut short. A hold on the sealed
    // categories keeps it.
    let key_destroyed = if sealed_categories().any(|c| held.covers(c)) {
        false
    } else {
        store.destroy_member_key(user_id).await?
    };

    let address_lookup = store.address_lookup(&user.email)?;
    let mut doomed = Vec::new();
    let mut tx = store.begin().await?;
    for (table, key, values) in &rewrites {
        store::rewrite_row_text(&mut tx, table, *key, values).await?;
    }
    let mut tables = Vec::new();
    for table in inventory::subject_tables() {
        if table.rows == Rows::Evidence {
            continue;
        }
        let step = table_erasure(table, policy, content, &held);
        let rows = store::erase_subject_rows(
            &mut tx,
            table,
            user_id,
            &address_lookup,
            &step,
            erased_at,
            &mut doomed,
        )
        .await?;
        if rows > 0 {
            let action = match step {
                TableErasure::DeleteRows => "deleted",
                TableErasure::Update(_) => "blanked",
            };
            tables.push(TableOutcome {
                table: table.name,
                action,
                rows,
            });
        }
    }
    store::mark_user_erased(&mut tx, user_id, erased_at).await?;
    store::insert_ledger_entry(&mut tx, user_id, erased_at, content.as_str()).await?;
    let n_rows: u64 = tables.iter().map(|t| t.rows).sum();
    audit::record(
        &mut tx,
        audit_key,
        Event::new(AuditKind::DataErased)
            .actor(actor_id)
            .subject(Some(user_id))
            .detail(Detail::Method(content.as_str()))
            .detail(Detail::Count(n_rows as i64)),
    )
    .await?;
    if key_destroyed {
        audit::record(
            &mut tx,
            audit_key,
            Event::new(AuditKind::SubjectKeyDestroyed)
                .actor(actor_id)
                .subject(Some(user_id)),
        )
        .await?;
    }
    tx.commit().await.context("committing an erasure")?;
    // Rows sealed under keys of their own that went (a provider sign-up under the address).
    store.destroy_row_keys(&doomed).await?;
    for file in files {
        remove_archive_file(data_dir, &file);
    }
    tracing::info!(
        user_id,
        n_rows,
        n_mentions = rewrites.len(),
        "subject erased"
    );
    Ok(ErasureReport {
        user_id,
        erased_at,
        content,
        tables,
        mentions_rewritten: rewrites.len(),
        kept: kept_explanation(content, &held),
        holds: held.reasons,
    })
}

fn kept_explanation(content: ContentChoice, held: &Held) -> Vec<Kept> {
    let mut kept = vec![
        Kept {
            what: "The account's number, as the author \"deleted user\" of kept posts".into(),
            why: "Replies of other members point at your posts and your posts at their author; \
                  the number says nothing about you, and your name, address, birth year, \
                  password and devices are gone."
                .into(),
        },
        Kept {
            what: "Audit log entries naming the account's number (never a value)".into(),
            why: "The tamper-evident log proves how the forum handled your data, this erasure \
                  included; it holds identifiers and fixed words only."
                .into(),
        },
        Kept {
            what: "The records of your privacy requests and of how they were handled".into(),
            why: "The law asks us to prove how each request was answered; the policy keeps \
                  them for their own fixed period (see the retention of privacy requests), \
                  then they are deleted."
                .into(),
        },
        Kept {
            what: "One erasure ledger entry: the account's number and the time".into(),
            why: "A backup taken before today is erased again from it before it is used.".into(),
        },
    ];
    if held.everything || !held.categories.is_empty() {
        let what = if held.everything {
            "Every category of your data".to_string()
        } else {
            format!("The categories {}", held.categories.join(", "))
        };
        kept.push(Kept {
            what,
            why: format!(
                "A legal hold keeps them while a legal claim stands ({}); they are erased \
                 when it is released.",
                held.reasons.join("; ")
            ),
        });
    }
    if content == ContentChoice::KeepAnonymized {
        kept.push(Kept {
            what: "The text of your public posts and topics, authored by \"deleted user\"".into(),
            why: "The policy anonymizes public posts so that discussions stay readable; \
                  mentions of your username were rewritten. Ask for removal to have the text \
                  removed too."
                .into(),
        });
    }
    kept
}

/// Removes an archive file; a missing file is already gone.
pub(crate) fn remove_archive_file(data_dir: &Path, file_name: &str) {
    let path = super::export::archive_dir(data_dir).join(file_name);
    if let Err(error) = std::fs::remove_file(&path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(error = %error, "an export archive could not be removed");
    }
}

/// Brings the database and the ledger file to the same entries. Run before the server serves:
/// every erasure recorded in the file but missing from the database (a backup from before it
/// was restored) is applied again, and entries only in the database are copied to the file.
/// Returns how many subjects were erased again.
pub async fn reapply_erasure_ledger(
    store: &Store,
    audit_key: &AuditKey,
    policy: &Policy,
    data_dir: &Path,
) -> anyhow::Result<usize> {
    let in_file = read_ledger_file(data_dir)?;
    let in_store = store.erasure_ledger().await?;
    let mut erased_again = 0;
    for entry in &in_file {
        if in_store.contains(entry) {
            continue;
        }
        let (user_id, erased_at, content) = entry;
        let content = ContentChoice::parse(content).unwrap_or(ContentChoice::Remove);
        if store.is_erasable(*user_id).await? {
            erase_in_store(
                store, audit_key, policy, data_dir, *user_id, content, None, *erased_at,
            )
            .await
            .map_err(|e| anyhow::anyhow!("erasing account {user_id} again: {e}"))?;
            erased_again += 1;
        } else {
            let mut tx = store.begin().await?;
            store::insert_ledger_entry(&mut tx, *user_id, *erased_at, content.as_str()).await?;
            tx.commit().await.context("copying a ledger entry")?;
        }
    }
    let missing: Vec<_> = in_store
        .into_iter()
        .filter(|entry| !in_file.contains(entry))
        .collect();
    append_ledger_file(data_dir, &missing)?;
    erased_again += reapply_address_ledger(store, audit_key, data_dir).await?;
    if erased_again > 0 {
        tracing::warn!(
            erased_again,
            "erased accounts again from the ledger (a backup was restored)"
        );
    }
    Ok(erased_again)
}

/// The ledger file of erasures by address: one line `k1:<hex> erased_at` per person, the
/// keyed hash of their address (never the address), outside the database.
pub fn address_ledger_path(data_dir: &Path) -> PathBuf {
    data_dir.join("erased-addresses.txt")
}

fn read_address_ledger_file(data_dir: &Path) -> anyhow::Result<Vec<(String, i64)>> {
    let text = match std::fs::read_to_string(address_ledger_path(data_dir)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(anyhow::Error::new(error).context("reading the address ledger file"));
        }
    };
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let parsed = (|| {
            let lookup = parts.next()?;
            let erased_at = parts.next()?.parse().ok()?;
            lookup
                .starts_with(crate::sealing::LOOKUP)
                .then(|| (lookup.to_string(), erased_at))
        })();
        match parsed {
            Some(entry) => entries.push(entry),
            None if line.trim().is_empty() => {}
            None => anyhow::bail!(
                "line {} of the address ledger file is not valid",
                number + 1
            ),
        }
    }
    Ok(entries)
}

/// Appends the entries the file does not have yet.
fn append_address_ledger_file(data_dir: &Path, entries: &[(String, i64)]) -> anyhow::Result<()> {
    let present = read_address_ledger_file(data_dir)?;
    let new: Vec<_> = entries
        .iter()
        .filter(|(lookup, _)| !present.iter().any(|(p, _)| p == lookup))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(data_dir).context("creating the data folder")?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(address_ledger_path(data_dir))
        .context("opening the address ledger file")?;
    for (lookup, erased_at) in new {
        writeln!(file, "{lookup} {erased_at}").context("writing the address ledger file")?;
    }
    file.sync_all().context("syncing the address ledger file")
}

/// The erasures by address in the file but not in the database (a backup from before them was
/// restored) are applied again: every address the `ADDRESS_COLUMNS` hold is hashed, and the
/// ones the ledger names are erased as they were the first time. Entries only in the database
/// are copied to the file. Returns how many people were erased again.
async fn reapply_address_ledger(
    store: &Store,
    audit_key: &AuditKey,
    data_dir: &Path,
) -> anyhow::Result<usize> {
    let in_file = read_address_ledger_file(data_dir)?;
    let in_store = store.address_erasures().await?;
    let missing: Vec<&(String, i64)> = in_file
        .iter()
        .filter(|(lookup, _)| !in_store.iter().any(|(l, _)| l == lookup))
        .collect();
    let mut erased_again = 0;
    if !missing.is_empty() {
        // Each keyed hash held anywhere, with the plain address where a plain column holds it.
        let mut held: std::collections::BTreeMap<String, Option<String>> = Default::default();
        for link in inventory::ADDRESS_COLUMNS {
            for address in store.addresses_in(link).await? {
                held.insert(store.lookup_hash(&address)?, Some(address));
            }
            for lookup in store.lookups_in(link).await? {
                held.entry(lookup).or_insert(None);
            }
        }
        for (lookup, address) in held {
            if missing.iter().any(|(l, _)| *l == lookup) {
                erase_address_by(
                    store,
                    audit_key,
                    data_dir,
                    address.as_deref(),
                    &lookup,
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("erasing an address again: {e}"))?;
                erased_again += 1;
            }
        }
        let mut tx = store.begin().await?;
        for (lookup, erased_at) in &missing {
            store::insert_address_erasure(&mut tx, lookup, *erased_at).await?;
        }
        tx.commit()
            .await
            .context("copying entries of the address ledger")?;
    }
    append_address_ledger_file(data_dir, &in_store)?;
    if erased_again > 0 {
        tracing::warn!(
            erased_again,
            "erased addresses again from the ledger (a backup was restored)"
        );
    }
    Ok(erased_again)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_rewritten_only_as_whole_names() {
        assert_eq!(
            rewrite_mentions("Thanks @Alice, and @alice_2 too. @ALICE!", "alice").as_deref(),
            Some("Thanks @deleted-user, and @alice_2 too. @deleted-user!")
        );
        assert_eq!(rewrite_mentions("@alicea", "alice"), None);
    }

    #[test]
    fn posts_stay_and_devices_go_under_the_default_policy() {
        let policy = Policy::default_policy();
        let posts = inventory::table("posts").unwrap();
        let TableErasure::Update(sets) = table_erasure(
            posts,
            &policy,
            ContentChoice::KeepAnonymized,
            &Held::default(),
        ) else {
            panic!("posts are kept");
        };
        assert!(sets.is_empty(), "{sets:?}");
        for devices in ["post_devices", "sessions"] {
            let table = inventory::table(devices).unwrap();
            assert!(matches!(
                table_erasure(
                    table,
                    &policy,
                    ContentChoice::KeepAnonymized,
                    &Held::default()
                ),
                TableErasure::DeleteRows
            ));
        }
    }
}

impl Held {
    /// The standing holds on everyone (a person without an account can be named by no other).
    pub async fn on_everyone(store: &Store) -> anyhow::Result<Self> {
        let mut held = Self::default();
        for hold in store.holds().await? {
            if hold.released_at.is_some() || hold.subject_user_id.is_some() {
                continue;
            }
            let categories: Vec<String> = hold
                .categories
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if categories.is_empty() {
                held.everything = true;
            }
            held.categories.extend(categories);
            held.reasons.push(hold.reason);
        }
        Ok(held)
    }
}

/// What an erasure by address did and kept.
#[derive(Debug, Clone, Serialize)]
pub struct AddressErasure {
    pub tables: Vec<TableOutcome>,
    pub kept: Vec<Kept>,
    /// The reasons of the legal holds that kept data back; empty means no holds.
    pub holds: Vec<String>,
}

/// Erases a person who has no account, known by their address alone (a verified deletion
/// request from the public form): every column of `inventory::ADDRESS_COLUMNS` is visited.
/// Rows that are theirs are deleted; rows of a member that hold their address (a minor's
/// parental consent) lose the address and the person's credentials; the records of privacy
/// requests stay as proof of how they were handled. Nothing of the address reaches the audit
/// log or the logs.
pub async fn erase_address(
    store: &Store,
    audit_key: &AuditKey,
    data_dir: &Path,
    address: &str,
    request_id: Option<i64>,
) -> Result<AddressErasure> {
    let lookup = store.lookup_hash(&address.to_lowercase())?;
    erase_address_by(
        store,
        audit_key,
        data_dir,
        Some(address),
        &lookup,
        request_id,
    )
    .await
}

/// [`erase_address`] by the address's keyed hash, `lookup`: sealed columns are matched by it,
/// plain ones by `address` (unknown when a ledger entry is applied again and no plain column
/// holds it; the sealed ones still do).
async fn erase_address_by(
    store: &Store,
    audit_key: &AuditKey,
    data_dir: &Path,
    address: Option<&str>,
    lookup: &str,
    request_id: Option<i64>,
) -> Result<AddressErasure> {
    let now = crate::now();
    let lookup = lookup.to_string();
    let held = Held::on_everyone(store).await?;
    let mut tables: Vec<TableOutcome> = Vec::new();
    let mut evidence_kept = false;
    let mut doomed = Vec::new();
    let mut tx = store.begin().await?;
    for link in inventory::ADDRESS_COLUMNS {
        let table =
            inventory::table(link.table).with_context(|| format!("{} is declared", link.table))?;
        let Some(Data::Personal(personal)) = table.column(link.column).map(|c| c.data) else {
            continue;
        };
        if held.covers(personal.category) {
            continue;
        }
        if table.rows == Rows::Evidence {
            evidence_kept = true;
            continue;
        }
        let owned = TableErasure::Update(
            table
                .personal_columns()
                .filter(|(_, p)| {
                    (p.category == inventory::EMAIL || p.category == inventory::CREDENTIALS)
                        && !held.covers(p.category)
                })
                .map(|(c, p)| (c.name, SetTo::Blank(p.blank)))
                .collect(),
        );
        let rows = store::erase_address_rows(
            &mut tx,
            table,
            link,
            address,
            &lookup,
            &TableErasure::DeleteRows,
            &owned,
            now,
            &mut doomed,
        )
        .await?;
        if rows > 0 {
            tables.push(TableOutcome {
                table: table.name,
                action: "erased",
                rows,
            });
        }
    }
    let n_rows: u64 = tables.iter().map(|t| t.rows).sum();
    let mut event = Event::new(AuditKind::DataErased)
        .detail(Detail::Method("address"))
        .detail(Detail::Count(n_rows as i64));
    if let Some(id) = request_id {
        event = event.detail(Detail::Request(id));
    }
    audit::record(&mut tx, audit_key, event).await?;
    store::insert_address_erasure(&mut tx, &lookup, now).await?;
    tx.commit()
        .await
        .context("committing an erasure by address")?;
    // The keys of the rows that went (mail to the address, a provider sign-up): every copy of
    // them, in a backup too, opens no more.
    store.destroy_row_keys(&doomed).await?;
    if let Err(error) = append_address_ledger_file(data_dir, &[(lookup, now)]) {
        // The database has the entry; the next start copies it to the file.
        tracing::error!(error = %format!("{error:#}"), "the address ledger file was not written");
    }
    tracing::info!(n_rows, "a person without an account erased");
    let mut kept = vec![
        Kept {
            what: "Audit log entries about this erasure (never your address)".into(),
            why: "The tamper-evident log proves how the forum handled your data; it holds \
                  identifiers and fixed words only."
                .into(),
        },
        Kept {
            what: "A keyed fingerprint of your address and the time, in the erasure ledger \
                   (never the address itself)"
                .into(),
            why: "If a backup from before this erasure is ever restored, the fingerprint is \
                  how the forum finds your data in it and erases it again; without the \
                  forum's secret key it cannot be linked to any address."
                .into(),
        },
    ];
    if evidence_kept {
        kept.push(Kept {
            what: "The records of your privacy requests and of how they were handled, with \
                   the address you wrote from"
                .into(),
            why: "The law asks us to prove how each request was answered; the policy keeps \
                  them for their own fixed period (see the retention of privacy requests), \
                  then they are deleted."
                .into(),
        });
    }
    kept.push(Kept {
        what: "This answer, until it is delivered to you".into(),
        why: "It is the one message we still send to your address.".into(),
    });
    if held.everything || !held.categories.is_empty() {
        kept.push(Kept {
            what: if held.everything {
                "Every category of your data".to_string()
            } else {
                format!("The categories {}", held.categories.join(", "))
            },
            why: format!(
                "A legal hold keeps them while a legal claim stands ({}); they are erased \
                 when it is released.",
                held.reasons.join("; ")
            ),
        });
    }
    Ok(AddressErasure {
        tables,
        kept,
        holds: held.reasons,
    })
}
