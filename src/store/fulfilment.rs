//! SQL for access and erasure, written from the inventory: a subject's rows of any declared
//! table, in-place blanking and row deletion, mention rewriting, export download links and the
//! erasure ledger. Table and column names come only from `crate::inventory`'s static
//! declarations, never from input, which is what makes the dynamic SQL here safe.

use super::{Store, StoreKind, Tx};
use crate::inventory::{Blank, Kind, Link, Table};
use anyhow::Context;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, FromRow, Row};

/// One stored value, as the `Any` driver carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    /// Exported as base64 text.
    Bytes(#[serde(serialize_with = "base64_bytes")] Option<Vec<u8>>),
}

fn base64_bytes<S: serde::Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    match bytes {
        Some(bytes) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes)),
        None => s.serialize_none(),
    }
}

impl Value {
    /// The value as CSV and text scans see it; empty for NULL.
    pub fn as_text(&self) -> String {
        match self {
            Value::Text(text) => text.clone().unwrap_or_default(),
            Value::Int(n) => n.map(|n| n.to_string()).unwrap_or_default(),
            Value::Bytes(bytes) => {
                use base64::Engine;
                bytes
                    .as_ref()
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                    .unwrap_or_default()
            }
        }
    }
}

/// How a table's link is bound: the user id, or the `account:<id>` subject text.
#[derive(Clone)]
enum Key {
    Id(i64),
    Text(String),
}

/// The `WHERE` condition selecting the subject's rows, with `$1` bound to the key;
/// `address_lookup` is the keyed hash of the subject's address in lower case (tables keyed by
/// it, such as `social_pending`), empty when the address no longer opens.
fn link_of(table: &Table, user_id: i64, address_lookup: &str) -> Option<(String, Key)> {
    match table.link {
        Link::Subject { column } | Link::UserId { column } => {
            Some((format!("{column} = $1"), Key::Id(user_id)))
        }
        Link::AccountSubject { column } => Some((
            format!("{column} = $1"),
            Key::Text(format!("account:{user_id}")),
        )),
        Link::Through { column, ids } => Some((format!("{column} IN ({ids})"), Key::Id(user_id))),
        // The rows keep only a keyed hash of the address: the caller hashes the member's
        // address, opened from its seal. An empty one (key gone) matches nothing.
        Link::EmailKey { column, prefix } => Some((
            format!("{column} = $1 AND {column} <> '{prefix}'"),
            Key::Text(format!("{prefix}{address_lookup}")),
        )),
        Link::Nobody | Link::IdsOnly => None,
    }
}

fn decode(row: &AnyRow, table: &Table) -> anyhow::Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(match column.kind {
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::Bytes => Value::Bytes(row.try_get(i)?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .with_context(|| format!("decoding a row of {}", table.name))
}

/// What to write into one column of the subject's kept rows.
#[derive(Debug, Clone)]
pub enum SetTo {
    Blank(Blank),
    /// The erasure time (a tombstone column).
    Now,
}

/// An erasure step for one table, decided by the fulfilment service from the policy.
#[derive(Debug, Clone)]
pub enum TableErasure {
    DeleteRows,
    Update(Vec<(&'static str, SetTo)>),
}

impl Store {
    /// Every row of `table` that belongs to the subject, every declared column, in key order.
    pub async fn subject_rows(
        &self,
        table: &Table,
        user_id: i64,
    ) -> anyhow::Result<Vec<Vec<Value>>> {
        let address = match table.link {
            Link::EmailKey { .. } => {
                let address = self
                    .user_by_id(user_id)
                    .await?
                    .map(|u| u.email.to_lowercase())
                    .unwrap_or_default();
                self.address_lookup(&address)?
            }
            _ => String::new(),
        };
        let Some((filter, key)) = link_of(table, user_id, &address) else {
            return Ok(Vec::new());
        };
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter} ORDER BY {}",
            names.join(", "),
            table.name,
            table.key
        );
        let query = sqlx::query(AssertSqlSafe(sql));
        let query = match key {
            Key::Id(id) => query.bind(id),
            Key::Text(text) => query.bind(text),
        };
        let rows = query
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("reading the subject's rows of {}", table.name))?;
        let mut rows = rows
            .iter()
            .map(|row| decode(row, table))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.open_sealed(table, &mut rows).await?;
        Ok(rows)
    }

    /// The keyed hash of an address in lower case, as `Link::EmailKey` columns hold it; empty
    /// for an empty address (it matches nothing).
    pub fn address_lookup(&self, address: &str) -> anyhow::Result<String> {
        if address.is_empty() {
            return Ok(String::new());
        }
        self.lookup_hash(&address.to_lowercase())
    }

    /// Opens the sealed columns of `rows` (every declared column of `table`, in order): a
    /// value whose member's key is gone reads as empty.
    async fn open_sealed(&self, table: &Table, rows: &mut [Vec<Value>]) -> anyhow::Result<()> {
        for sealed in crate::inventory::SEALED
            .iter()
            .filter(|s| s.table == table.name)
        {
            let position = |name: &str| table.columns.iter().position(|c| c.name == name);
            let (Some(value_at), Some(member_at)) =
                (position(sealed.column), position(sealed.member))
            else {
                anyhow::bail!(
                    "{}.{} is sealed but not declared",
                    table.name,
                    sealed.column
                );
            };
            let place = format!("{}.{}", table.name, sealed.column);
            for row in rows.iter_mut() {
                let (Value::Text(Some(stored)), Value::Int(Some(member))) =
                    (&row[value_at], &row[member_at])
                else {
                    continue;
                };
                let opened = self.open_for_member(*member, &place, stored).await?;
                row[value_at] = Value::Text(Some(opened));
            }
        }
        for sealed in crate::inventory::SEALED_BY_SUBMISSION
            .iter()
            .filter(|s| s.table == table.name)
        {
            let position = |name: &str| table.columns.iter().position(|c| c.name == name);
            let (Some(value_at), Some(submission_at)) = (
                position(sealed.column),
                position(sealed.submission.column()),
            ) else {
                anyhow::bail!(
                    "{}.{} is sealed but not declared",
                    table.name,
                    sealed.column
                );
            };
            let place = format!("{}.{}", table.name, sealed.column);
            for row in rows.iter_mut() {
                if let (Value::Bytes(Some(stored)), Value::Int(Some(id))) =
                    (&row[value_at], &row[submission_at])
                {
                    // Only files are sealed as bytes, and they name their submission.
                    let opened = self
                        .open_bytes_for_submission(*id, &place, stored.clone())
                        .await?;
                    row[value_at] = Value::Bytes(opened);
                    continue;
                }
                let (Value::Text(Some(stored)), Value::Int(Some(id))) =
                    (&row[value_at], &row[submission_at])
                else {
                    continue;
                };
                if !crate::sealing::is_sealed(stored) {
                    continue;
                }
                let submission = match sealed.submission {
                    crate::inventory::SubmissionOf::Column(_) => Some(*id),
                    crate::inventory::SubmissionOf::Request(_) => {
                        self.submission_of_request(*id).await?
                    }
                };
                let opened = match submission {
                    Some(submission) => {
                        self.open_for_submission(submission, &place, stored).await?
                    }
                    None => String::new(),
                };
                row[value_at] = Value::Text(Some(opened));
            }
        }
        for sealed in crate::inventory::SEALED_BY_ROW
            .iter()
            .filter(|s| s.table == table.name)
        {
            let position = |name: &str| table.columns.iter().position(|c| c.name == name);
            let (Some(value_at), Some(key_at)) = (position(sealed.column), position(sealed.key))
            else {
                anyhow::bail!(
                    "{}.{} is sealed but not declared",
                    table.name,
                    sealed.column
                );
            };
            let others: Vec<usize> = sealed.unless.iter().filter_map(|c| position(c)).collect();
            let place = format!("{}.{}", table.name, sealed.column);
            for row in rows.iter_mut() {
                let under_another_key = others
                    .iter()
                    .any(|&at| !matches!(row[at], Value::Int(None) | Value::Text(None)));
                let (Value::Text(Some(stored)), Value::Text(Some(key))) =
                    (&row[value_at], &row[key_at])
                else {
                    continue;
                };
                if under_another_key || !crate::sealing::is_sealed(stored) {
                    continue;
                }
                let opened = self
                    .open_for_row(sealed.prefix, key, &place, stored)
                    .await?;
                row[value_at] = Value::Text(Some(opened));
            }
        }
        Ok(())
    }

    /// Every row of a table, for the whole-dataset export.
    pub async fn all_rows(&self, table: &Table) -> anyhow::Result<Vec<Vec<Value>>> {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            names.join(", "),
            table.name,
            table.key
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("reading every row of {}", table.name))?;
        let mut rows = rows
            .iter()
            .map(|row| decode(row, table))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.open_sealed(table, &mut rows).await?;
        Ok(rows)
    }

    /// Rows (key, text) of `table` whose `column` contains `needle`, compared in lower case.
    pub async fn rows_containing(
        &self,
        table: &Table,
        column: &str,
        needle: &str,
        since: Option<(&str, i64)>,
    ) -> anyhow::Result<Vec<(i64, String)>> {
        let pattern = format!("%{}%", needle.to_lowercase());
        let scope = since.map(|(condition, _)| format!("AND {condition}"));
        let sql = format!(
            "SELECT {}, {column} FROM {} WHERE lower({column}) LIKE $1 {}",
            table.key,
            table.name,
            scope.unwrap_or_default()
        );
        let mut query = sqlx::query_as(AssertSqlSafe(sql)).bind(pattern);
        if let Some((_, at)) = since {
            query = query.bind(at);
        }
        query
            .fetch_all(self.pool())
            .await
            .with_context(|| format!("looking for mentions in {}.{column}", table.name))
    }

    /// The subject's archive files not yet purged (to remove with the subject).
    pub async fn export_files_of(&self, user_id: i64) -> anyhow::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT file_name FROM export_archives WHERE user_id = $1 AND purged_at IS NULL",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .context("listing a subject's export archives")?;
        Ok(rows.into_iter().map(|(f,)| f).collect())
    }

    /// Archives whose link expired or was used and whose file is still on disk.
    pub async fn export_files_to_purge(&self, now: i64) -> anyhow::Result<Vec<(i64, String)>> {
        sqlx::query_as(
            "SELECT id, file_name FROM export_archives WHERE purged_at IS NULL \
             AND (expires_at <= $1 OR downloaded_at IS NOT NULL)",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await
        .context("listing export archives to purge")
    }

    pub async fn mark_export_purged(&self, id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE export_archives SET purged_at = $1, content = NULL WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await
            .context("marking an export archive purged")?;
        Ok(())
    }

    /// Uses a download link once: returns the archive (its file name and content; no content
    /// for an archive written to disk by an earlier version) if the link's row exists, was not
    /// used, is not purged and has not expired. One statement, so two clicks cannot both win.
    pub async fn consume_export_link(
        &self,
        id: i64,
        token_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<(i64, String, Option<Vec<u8>>)>> {
        sqlx::query_as(
            "UPDATE export_archives SET downloaded_at = $1 WHERE id = $2 AND token_hash = $3 \
             AND downloaded_at IS NULL AND purged_at IS NULL AND expires_at > $1 \
             RETURNING user_id, file_name, content",
        )
        .bind(now)
        .bind(id)
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await
        .context("using an export download link")
    }

    /// Every ledger entry: (user id, erased at, content mode).
    pub async fn erasure_ledger(&self) -> anyhow::Result<Vec<(i64, i64, String)>> {
        sqlx::query_as("SELECT user_id, erased_at, content FROM erasure_ledger ORDER BY id")
            .fetch_all(self.pool())
            .await
            .context("reading the erasure ledger")
    }

    /// The erasures by address: (keyed hash of the address, when), oldest first.
    pub async fn address_erasures(&self) -> anyhow::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT lookup, erased_at FROM address_erasures ORDER BY erased_at, lookup")
            .fetch_all(self.pool())
            .await
            .context("reading the erasure ledger of addresses")
    }

    /// The distinct addresses (in lower case) an address column holds in plain text (a
    /// declared `inventory::ADDRESS_COLUMNS` entry; sealed values are left out: see
    /// [`Store::lookups_in`]).
    pub async fn addresses_in(
        &self,
        link: &crate::inventory::AddressColumn,
    ) -> anyhow::Result<Vec<String>> {
        let (table, column) = (link.table, link.column);
        if link.lookup.is_some() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT DISTINCT LOWER({column}) FROM {table} WHERE {column} <> '' \
             AND {column} NOT LIKE 's1:%'"
        )))
        .fetch_all(self.pool())
        .await
        .with_context(|| format!("reading the addresses of {table}.{column}"))?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }

    /// The distinct keyed hashes of the addresses a sealed address column holds (its lookup
    /// column); none for a plain one.
    pub async fn lookups_in(
        &self,
        link: &crate::inventory::AddressColumn,
    ) -> anyhow::Result<Vec<String>> {
        let Some(lookup) = link.lookup else {
            return Ok(Vec::new());
        };
        let table = link.table;
        let rows: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT DISTINCT {lookup} FROM {table} WHERE {lookup} <> ''"
        )))
        .fetch_all(self.pool())
        .await
        .with_context(|| format!("reading the keyed hashes of {table}.{lookup}"))?;
        Ok(rows.into_iter().map(|(l,)| l).collect())
    }

    /// Whether the account exists and is not erased yet.
    pub async fn is_erasable(&self, user_id: i64) -> anyhow::Result<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM users WHERE id = $1 AND erased_at IS NULL")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await
                .context("looking up an account to erase")?;
        Ok(row.is_some())
    }

    /// Copies the SQLite database into a new file, consistently, while the forum runs.
    pub async fn backup_sqlite_into(&self, path: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.kind() == StoreKind::Sqlite,
            "backups of PostgreSQL are taken with pg_dump"
        );
        // A file name, quoted as an SQL string literal (VACUUM INTO takes no bound parameter
        // through the driver).
        let sql = format!("VACUUM INTO '{}'", path.replace('\'', "''"));
        sqlx::query(AssertSqlSafe(sql))
            .execute(self.pool())
            .await
            .context("copying the database into the backup file")?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_export_archive(
    tx: &mut Tx,
    user_id: i64,
    token_hash: &str,
    file_name: &str,
    jurisdiction: &str,
    now: i64,
    expires_at: i64,
    content: &[u8],
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO export_archives (user_id, token_hash, file_name, jurisdiction, created_at, \
         expires_at, content) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(user_id)
    .bind(token_hash)
    .bind(file_name)
    .bind(jurisdiction)
    .bind(now)
    .bind(expires_at)
    .bind(content)
    .fetch_one(&mut **tx)
    .await
    .context("recording an export archive")?;
    Ok(id)
}

/// Applies one table's erasure step to the subject's rows; returns the rows touched.
/// `address_lookup` is the keyed hash of the subject's address ([`Store::address_lookup`];
/// empty when it no longer opens). The keys of deleted rows sealed under their own
/// (`inventory::SEALED_BY_ROW`) are added to `doomed`, for the caller to destroy once the
/// transaction is committed.
#[allow(clippy::too_many_arguments)]
pub async fn erase_subject_rows(
    tx: &mut Tx,
    table: &Table,
    user_id: i64,
    address_lookup: &str,
    step: &TableErasure,
    now: i64,
    doomed: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let Some((filter, key)) = link_of(table, user_id, address_lookup) else {
        return Ok(0);
    };
    erase_rows(
        tx,
        table,
        &filter,
        key,
        &user_id.to_string(),
        step,
        now,
        doomed,
    )
    .await
}

/// Erases the rows of `table` whose `link.column` holds `address` (any case): a person
/// without an account. A sealed column is matched by its keyed hash, `lookup` (the address
/// itself may be unknown then: a ledger applied again knows only the hash). With
/// `link.owner`, a column naming the member a row belongs to, rows that belong to no member
/// get `unowned` and rows of a member get `owned`; without, every row gets `unowned`.
#[allow(clippy::too_many_arguments)]
pub async fn erase_address_rows(
    tx: &mut Tx,
    table: &Table,
    link: &crate::inventory::AddressColumn,
    address: Option<&str>,
    lookup: &str,
    unowned: &TableErasure,
    owned: &TableErasure,
    now: i64,
    doomed: &mut Vec<String>,
) -> anyhow::Result<u64> {
    let (matches, address) = match (link.lookup, address) {
        (Some(column), _) => (format!("{column} = $1"), lookup.to_string()),
        (None, Some(address)) => (
            format!("LOWER({}) = $1", link.column),
            address.to_lowercase(),
        ),
        (None, None) => return Ok(0),
    };
    let Some(owner) = link.owner else {
        return erase_rows(
            tx,
            table,
            &matches,
            Key::Text(address),
            "0",
            unowned,
            now,
            doomed,
        )
        .await;
    };
    let free = format!("{matches} AND {owner} IS NULL");
    let held = format!("{matches} AND {owner} IS NOT NULL");
    Ok(erase_rows(
        tx,
        table,
        &free,
        Key::Text(address.clone()),
        "0",
        unowned,
        now,
        doomed,
    )
    .await?
        + erase_rows(
            tx,
            table,
            &held,
            Key::Text(address),
            "0",
            owned,
            now,
            doomed,
        )
        .await?)
}

/// One erasure step over the rows `filter` selects, `$1` bound to `key`; `{id}` in blank
/// values becomes `subject_id`. Deleted rows sealed under keys of their own name them in
/// `doomed`.
#[allow(clippy::too_many_arguments)]
async fn erase_rows(
    tx: &mut Tx,
    table: &Table,
    filter: &str,
    key: Key,
    subject_id: &str,
    step: &TableErasure,
    now: i64,
    doomed: &mut Vec<String>,
) -> anyhow::Result<u64> {
    if matches!(step, TableErasure::DeleteRows) {
        doomed.extend(row_keys_of(tx, table, filter, key.clone()).await?);
    }
    let mut texts: Vec<String> = Vec::new();
    let mut ints: Vec<Option<i64>> = Vec::new();
    let sql = match step {
        TableErasure::DeleteRows => format!("DELETE FROM {} WHERE {filter}", table.name),
        TableErasure::Update(sets) => {
            // $1 is the link; text values follow, then integer ones.
            let mut assignments = Vec::new();
            let n_texts = sets
                .iter()
                .filter(|(_, s)| matches!(s, SetTo::Blank(Blank::Text(_) | Blank::TextAndKey(_))))
                .count();
            for (name, set) in sets {
                let expression = match set {
                    SetTo::Blank(Blank::Text(text)) => {
                        texts.push(text.replace("{id}", subject_id));
                        format!("${}", 1 + texts.len())
                    }
                    SetTo::Blank(Blank::TextAndKey(text)) => {
                        texts.push(text.replace("{id}", subject_id));
                        format!("${} || CAST({} AS TEXT)", 1 + texts.len(), table.key)
                    }
                    SetTo::Blank(Blank::Int(n)) => {
                        ints.push(Some(*n));
                        format!("${}", 1 + n_texts + ints.len())
                    }
                    SetTo::Blank(Blank::Null) => "NULL".to_string(),
                    SetTo::Now => {
                        ints.push(Some(now));
                        format!("${}", 1 + n_texts + ints.len())
                    }
                };
                assignments.push(format!("{name} = {expression}"));
            }
            if assignments.is_empty() {
                return Ok(0);
            }
            format!(
                "UPDATE {} SET {} WHERE {filter}",
                table.name,
                assignments.join(", ")
            )
        }
    };
    let query = sqlx::query(AssertSqlSafe(sql));
    let mut query = match key {
        Key::Id(id) => query.bind(id),
        Key::Text(text) => query.bind(text),
    };
    for text in texts {
        query = query.bind(text);
    }
    for int in ints {
        query = query.bind(int);
    }
    let done = query
        .execute(&mut **tx)
        .await
        .with_context(|| format!("erasing the subject's rows of {}", table.name))?;
    Ok(done.rows_affected())
}

/// The key-store subjects of the rows `filter` selects that are sealed under keys of their
/// own (`inventory::SEALED_BY_ROW`).
async fn row_keys_of(
    tx: &mut Tx,
    table: &Table,
    filter: &str,
    key: Key,
) -> anyhow::Result<Vec<String>> {
    let mut subjects = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for sealed in crate::inventory::SEALED_BY_ROW
        .iter()
        .filter(|s| s.table == table.name)
    {
        if !seen.insert((sealed.key, sealed.prefix, sealed.unless)) {
            continue;
        }
        let unless: String = sealed
            .unless
            .iter()
            .map(|c| format!(" AND {c} IS NULL"))
            .collect();
        let sql = format!(
            "SELECT DISTINCT {} FROM {} WHERE {filter}{unless}",
            sealed.key, table.name
        );
        let query = sqlx::query_as(AssertSqlSafe(sql));
        let query = match key.clone() {
            Key::Id(id) => query.bind(id),
            Key::Text(text) => query.bind(text),
        };
        let rows: Vec<(String,)> = query
            .fetch_all(&mut **tx)
            .await
            .with_context(|| format!("naming the row keys of {}", table.name))?;
        subjects.extend(
            rows.into_iter()
                .map(|(k,)| crate::sealing::row(sealed.prefix, &k)),
        );
    }
    Ok(subjects)
}

/// Writes new text into one row's columns (a rewritten mention and its re-rendered HTML).
pub async fn rewrite_row_text(
    tx: &mut Tx,
    table: &Table,
    key: i64,
    values: &[(&'static str, String)],
) -> anyhow::Result<()> {
    let assignments: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("{name} = ${}", i + 2))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = $1",
        table.name,
        assignments.join(", "),
        table.key
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(key);
    for (_, value) in values {
        query = query.bind(value.clone());
    }
    query
        .execute(&mut **tx)
        .await
        .with_context(|| format!("rewriting a mention in {}", table.name))?;
    Ok(())
}

/// Marks the account erased (it cannot sign in and has no profile from now on).
pub async fn mark_user_erased(tx: &mut Tx, user_id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET erased_at = $1 WHERE id = $2")
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .context("marking an account erased")?;
    Ok(())
}

pub async fn insert_ledger_entry(
    tx: &mut Tx,
    user_id: i64,
    erased_at: i64,
    content: &str,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO erasure_ledger (user_id, erased_at, content) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(erased_at)
        .bind(content)
        .execute(&mut **tx)
        .await
        .context("writing the erasure ledger")?;
    Ok(())
}

/// Records an erasure by address, by the address's keyed hash; an entry already there stays.
pub async fn insert_address_erasure(
    tx: &mut Tx,
    lookup: &str,
    erased_at: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO address_erasures (lookup, erased_at) VALUES ($1, $2) \
         ON CONFLICT (lookup) DO NOTHING",
    )
    .bind(lookup)
    .bind(erased_at)
    .execute(&mut **tx)
    .await
    .context("writing the erasure ledger of addresses")?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct LedgerRow {
    pub user_id: i64,
    pub erased_at: i64,
    pub content: String,
}
