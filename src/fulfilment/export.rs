//! Access and portability (R7): a ZIP archive of everything the inventory links to the subject,
//! as JSON and CSV per policy category, with a README and a `manifest.json` carrying what the
//! right to know requires for the subject's jurisdiction (categories, sources, purposes,
//! recipients and named third parties, retention) and the consent receipts.
//!
//! The archive is personal data too: it is written under `<data_dir>/exports` (owner-only),
//! handed out through a link that is HMAC-signed, single-use and expires, and deleted once
//! downloaded or expired. Only the digest of the link's random part is stored.

use crate::accounts::{random_token, token_digest};
use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::consent::Consent;
use crate::error::{Error, Result};
use crate::inventory::{self, Data, Table};
use crate::store::{self, Store, Value};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use covenant_core::policy::{CategoryKey, Jurisdiction, Policy};
use covenant_core::right_to_know::right_to_know;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// How long a download link works.
pub const EXPORT_LINK_SECONDS: i64 = 24 * 3600;

/// Where earlier versions kept archives on disk (they are in the database now, so that any node
/// can hand them out); files left there are removed as their links are used or expire.
pub fn archive_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("exports")
}

/// A link to one archive: the path (append it to the forum's address) and its expiry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ExportLink {
    pub path: String,
    pub expires_at: i64,
}

/// The subject's rows of one table, as read.
struct TableRows {
    table: &'static Table,
    rows: Vec<Vec<Value>>,
}

/// Everything export needs besides the subject: the store, the audit key, the link key and
/// the data folder. The privacy-request engine holds one (in `AppState`) and calls
/// [`Fulfilment::export_subject`] and [`Fulfilment::erase_subject`].
#[derive(Clone)]
pub struct Fulfilment {
    store: Store,
    audit_key: AuditKey,
    link_key: std::sync::Arc<Vec<u8>>,
    data_dir: PathBuf,
}

impl Fulfilment {
    /// The store the fulfilment works on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }

    pub async fn new(store: Store, audit_key: AuditKey, data_dir: PathBuf) -> anyhow::Result<Self> {
        let key = store
            .setting_or_insert("export_link_key", &random_token())
            .await?;
        Ok(Self {
            store,
            audit_key,
            link_key: std::sync::Arc::new(key.into_bytes()),
            data_dir,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Builds the subject's archive, stores it and returns its single-use download link.
    pub async fn export_subject(
        &self,
        policy: &Policy,
        policy_version: Option<&str>,
        user_id: i64,
        jurisdiction: Jurisdiction,
        actor_id: Option<i64>,
    ) -> Result<ExportLink> {
        self.purge_archives().await?;
        if !self.store.is_erasable(user_id).await? {
            return Err(Error::NotFound("account"));
        }
        let bytes =
            build_archive(&self.store, policy, policy_version, user_id, jurisdiction).await?;
        let now = crate::now();
        let expires_at = now + EXPORT_LINK_SECONDS;
        let secret = random_token();
        let file_name = format!("{}.zip", token_digest(&random_token()));
        let mut tx = self.store.begin().await?;
        let id = store::insert_export_archive(
            &mut tx,
            user_id,
            &token_digest(&secret),
            &file_name,
            jurisdiction.as_str(),
            now,
            expires_at,
            &bytes,
        )
        .await?;
        audit::record(
            &mut tx,
            &self.audit_key,
            Event::new(AuditKind::DataExported)
                .actor(actor_id)
                .subject(Some(user_id))
                .detail(Detail::Count(bytes.len() as i64)),
        )
        .await?;
        tx.commit().await.context("recording an export archive")?;
        let token = sign_link(&self.link_key, id, expires_at, &secret);
        Ok(ExportLink {
            path: format!("/privacy/export/{token}"),
            expires_at,
        })
    }

    /// Hands out an archive once: refuses a tampered, expired or used link alike. The file
    /// is deleted as it is handed out.
    pub async fn download(&self, token: &str) -> Result<Vec<u8>> {
        let now = crate::now();
        let (id, expires_at, secret) =
            verify_link(&self.link_key, token).ok_or(Error::InvalidToken)?;
        if expires_at <= now {
            return Err(Error::InvalidToken);
        }
        let (_user_id, file_name, content) = self
            .store
            .consume_export_link(id, &token_digest(&secret), now)
            .await?
            .ok_or(Error::InvalidToken)?;
        let bytes = match content {
            Some(bytes) => bytes,
            // An archive an earlier version wrote to this node's disk.
            None => std::fs::read(archive_dir(&self.data_dir).join(&file_name))
                .map_err(|_| Error::NotFound("archive"))?,
        };
        super::erase::remove_archive_file(&self.data_dir, &file_name);
        self.store.mark_export_purged(id, now).await?;
        Ok(bytes)
    }

    /// Deletes the files of archives whose link expired or was used. Returns how many.
    pub async fn purge_archives(&self) -> anyhow::Result<usize> {
        let now = crate::now();
        let due = self.store.export_files_to_purge(now).await?;
        for (id, file_name) in &due {
            super::erase::remove_archive_file(&self.data_dir, file_name);
            self.store.mark_export_purged(*id, now).await?;
        }
        Ok(due.len())
    }

    /// Erases the subject; see [`super::erase_subject`].
    /// Erases a person without an account, by address (see [`super::erase_address`]).
    pub async fn erase_address(
        &self,
        address: &str,
        request_id: Option<i64>,
    ) -> Result<super::AddressErasure> {
        super::erase_address(
            &self.store,
            &self.audit_key,
            &self.data_dir,
            address,
            request_id,
        )
        .await
    }

    pub async fn erase_subject(
        &self,
        policy: &Policy,
        user_id: i64,
        content: super::ContentChoice,
        actor_id: Option<i64>,
    ) -> Result<super::ErasureReport> {
        super::erase_subject(
            &self.store,
            &self.audit_key,
            policy,
            &self.data_dir,
            user_id,
            content,
            actor_id,
        )
        .await
    }
}

type HmacSha256 = Hmac<Sha256>;

fn link_mac(key: &[u8], id: i64, expires_at: i64, secret: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("covenant-export:{id}:{expires_at}:{secret}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `id.expires.secret.mac`: the archive's row, the expiry, the random part whose digest the
/// row holds, and an HMAC over all three under the forum's link key.
pub fn sign_link(key: &[u8], id: i64, expires_at: i64, secret: &str) -> String {
    let mac = URL_SAFE_NO_PAD.encode(link_mac(key, id, expires_at, secret));
    format!("{id}.{expires_at}.{secret}.{mac}")
}

/// The link's parts if its signature holds.
pub fn verify_link(key: &[u8], token: &str) -> Option<(i64, i64, String)> {
    let mut parts = token.split('.');
    let id: i64 = parts.next()?.parse().ok()?;
    let expires_at: i64 = parts.next()?.parse().ok()?;
    let secret = parts.next()?;
    let mac = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    let expected = link_mac(key, id, expires_at, secret);
    bool::from(expected.ct_eq(&mac)).then(|| (id, expires_at, secret.to_string()))
}

fn zip_error(error: zip::result::ZipError) -> anyhow::Error {
    anyhow::Error::new(error).context("writing the export archive")
}

/// Reads every inventory table for the subject: those with personal data, and those whose rows
/// are the subject's without any (`posts`, whose text is in `post_bodies`), which the archive
/// gives as context.
async fn subject_data(store: &Store, user_id: i64) -> anyhow::Result<Vec<TableRows>> {
    let mut data = Vec::new();
    let tables = inventory::TABLES.iter().filter(|t| {
        t.concerns_subject()
            && !matches!(t.link, inventory::Link::Nobody | inventory::Link::IdsOnly)
    });
    for table in tables {
        let rows = store.subject_rows(table, user_id).await?;
        if !rows.is_empty() {
            data.push(TableRows { table, rows });
        }
    }
    Ok(data)
}

/// One row as a JSON object: its non-personal context, then the columns of `category`.
fn row_object(table: &Table, row: &[Value], category: &str) -> Map<String, serde_json::Value> {
    let mut object = Map::new();
    for (column, value) in table.columns.iter().zip(row) {
        match column.data {
            Data::NonPersonal => {
                object.insert(column.name.into(), json!(value));
            }
            Data::Personal(p) if p.category == category => {
                let value = if p.withheld {
                    json!("[withheld: a live secret]")
                } else {
                    json!(value)
                };
                object.insert(column.name.into(), value);
            }
            _ => {}
        }
    }
    object
}

/// The archive's bytes.
pub async fn build_archive(
    store: &Store,
    policy: &Policy,
    policy_version: Option<&str>,
    user_id: i64,
    jurisdiction: Jurisdiction,
) -> Result<Vec<u8>> {
    let data = subject_data(store, user_id).await?;
    let receipts = Consent::new(store.clone())
        .receipts(user_id, policy)
        .await?;
    let now = crate::now();
    let answer = right_to_know(policy, jurisdiction);

    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut files: Vec<String> = Vec::new();
    let mut categories_manifest = Vec::new();
    for category_key in inventory::categories() {
        let key = CategoryKey::parse(category_key).ok();
        let category = key.as_ref().and_then(|k| policy.category(k));
        let retention = key
            .as_ref()
            .and_then(|k| policy.retention_for(k))
            .map(|rule| rule.to_string());
        let mut by_table: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(["table", "row", "column", "value"])
            .context("writing a CSV header")?;
        let mut tables_manifest = Vec::new();
        let mut withheld = Vec::new();
        for TableRows { table, rows } in &data {
            let columns: Vec<_> = table
                .personal_columns()
                .filter(|(_, p)| p.category == category_key)
                .collect();
            if columns.is_empty() {
                continue;
            }
            let key_index = table
                .columns
                .iter()
                .position(|c| c.name == table.key)
                .unwrap_or(0);
            for row in rows {
                by_table
                    .entry(table.name)
                    .or_default()
                    .push(serde_json::Value::Object(row_object(
                        table,
                        row,
                        category_key,
                    )));
                for (column, personal) in &columns {
                    let index = table
                        .columns
                        .iter()
                        .position(|c| c.name == column.name)
                        .expect("a column of its own table");
                    let value = if personal.withheld {
                        "[withheld: a live secret]".to_string()
                    } else {
                        row[index].as_text()
                    };
                    csv.write_record([table.name, &row[key_index].as_text(), column.name, &value])
                        .context("writing a CSV row")?;
                }
            }
            withheld.extend(
                columns
                    .iter()
                    .filter(|(_, p)| p.withheld)
                    .map(|(c, _)| format!("{}.{}", table.name, c.name)),
            );
            tables_manifest.push(json!({
                "table": table.name,
                "columns": columns.iter().map(|(c, _)| c.name).collect::<Vec<_>>(),
                "rows": rows.len(),
            }));
        }
        if by_table.is_empty() {
            continue;
        }
        let json_name = format!("data/{category_key}.json");
        let csv_name = format!("data/{category_key}.csv");
        let document = json!({
            "category": category_key,
            "name": category.map(|c| c.name.clone()),
            "description": category.map(|c| c.description.clone()),
            "records": by_table,
        });
        writer
            .start_file(json_name.as_str(), options)
            .map_err(zip_error)?;
        serde_json::to_writer_pretty(&mut writer, &document).context("writing a JSON file")?;
        writer
            .start_file(csv_name.as_str(), options)
            .map_err(zip_error)?;
        let csv_bytes = csv.into_inner().context("finishing a CSV file")?;
        writer.write_all(&csv_bytes).context("writing a CSV file")?;
        let purposes: Vec<_> = policy
            .purposes()
            .iter()
            .filter(|p| key.as_ref().is_some_and(|k| p.categories.contains(k)))
            .map(|p| json!({"id": p.id, "name": p.name, "legal_basis": p.legal_basis_in(jurisdiction)}))
            .collect();
        let recipients: Vec<_> = answer
            .disclosed
            .iter()
            .filter(|d| key.as_ref().is_some_and(|k| d.categories.contains(k)))
            .map(|d| json!({"name": d.name, "kind": d.kind, "named_third_parties": d.named_third_parties}))
            .collect();
        categories_manifest.push(json!({
            "key": category_key,
            "name": category.map(|c| c.name.clone()),
            "sources": category.map(|c| c.sources.clone()),
            "purposes": purposes,
            "recipients": recipients,
            "retention": retention,
            "files": [json_name, csv_name],
            "tables": tables_manifest,
            "withheld": withheld,
        }));
        files.push(json_name);
        files.push(csv_name);
    }

    // Rows of the subject's that hold nothing personal themselves but say where and when the
    // rest was written (a post's topic, number and times, beside its text in `post_bodies`).
    let mut context_manifest = Vec::new();
    for TableRows { table, rows } in data.iter().filter(|t| !t.table.holds_personal_data()) {
        let name = format!("data/context/{}.json", table.name);
        let records: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                let object: Map<String, serde_json::Value> = table
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(column, value)| (column.name.to_string(), json!(value)))
                    .collect();
                serde_json::Value::Object(object)
            })
            .collect();
        writer
            .start_file(name.as_str(), options)
            .map_err(zip_error)?;
        serde_json::to_writer_pretty(
            &mut writer,
            &json!({"table": table.name, "records": records}),
        )
        .context("writing a context file")?;
        context_manifest.push(json!({"table": table.name, "rows": rows.len(), "file": name}));
        files.push(name);
    }

    writer
        .start_file("consent/receipts.json", options)
        .map_err(zip_error)?;
    serde_json::to_writer_pretty(&mut writer, &receipts).context("writing consent receipts")?;
    files.push("consent/receipts.json".into());

    let manifest = json!({
        "format": "covenant-export/1",
        "generated_at": now,
        "subject": {"user_id": user_id},
        "jurisdiction": jurisdiction.as_str(),
        "policy_version": policy_version.unwrap_or(policy.version()),
        "controller": policy.controller(),
        "categories": categories_manifest,
        "context": context_manifest,
        "right_to_know": answer,
        "consent_records": receipts.len(),
        "request_records": "Privacy requests are recorded under the category user.privacy_request.details above, where any exist.",
        "disclosure_records": "Disclosures of your data to authorities or third parties (table disclosures: legal basis, recipient, categories disclosed, day) are recorded under the category user.privacy_request.details above, where any exist.",
        "files": files,
    });
    writer
        .start_file("manifest.json", options)
        .map_err(zip_error)?;
    serde_json::to_writer_pretty(&mut writer, &manifest).context("writing the manifest")?;
    writer
        .start_file("README.txt", options)
        .map_err(zip_error)?;
    writer
        .write_all(readme(policy, jurisdiction, &files).as_bytes())
        .context("writing the README")?;
    let cursor = writer.finish().map_err(zip_error)?;
    Ok(cursor.into_inner())
}

/// The answer to an access request verified at the lower level (R3): which categories of
/// personal data the forum holds about the subject, from which sources, why, who receives them
/// and for how long, without any of the data itself. The data goes only to a requester who
/// reached the higher level (access to specific pieces, or portability).
pub async fn categories_summary(
    store: &Store,
    policy: &Policy,
    user_id: i64,
    jurisdiction: Jurisdiction,
) -> Result<String> {
    let data = subject_data(store, user_id).await?;
    let answer = right_to_know(policy, jurisdiction);
    let mut text = String::from("The categories of personal data we hold about you:\n");
    let mut any = false;
    for category_key in inventory::categories() {
        let n_records: usize = data
            .iter()
            .filter(|t| {
                t.table
                    .personal_columns()
                    .any(|(_, p)| p.category == category_key)
            })
            .map(|t| t.rows.len())
            .sum();
        if n_records == 0 {
            continue;
        }
        any = true;
        let key = CategoryKey::parse(category_key).ok();
        let category = key.as_ref().and_then(|k| policy.category(k));
        let name = category.map_or(category_key, |c| c.name.as_str());
        text.push_str(&format!("\n- {name} ({n_records} records)\n"));
        if let Some(category) = category
            && !category.sources.is_empty()
        {
            let sources: Vec<&str> = category.sources.iter().map(|s| s.describe()).collect();
            text.push_str(&format!("  From: {}\n", sources.join(", ")));
        }
        let purposes: Vec<&str> = policy
            .purposes()
            .iter()
            .filter(|p| key.as_ref().is_some_and(|k| p.categories.contains(k)))
            .map(|p| p.name.as_str())
            .collect();
        if !purposes.is_empty() {
            text.push_str(&format!("  Used for: {}\n", purposes.join("; ")));
        }
        let recipients: Vec<&str> = answer
            .disclosed
            .iter()
            .filter(|d| key.as_ref().is_some_and(|k| d.categories.contains(k)))
            .map(|d| d.name.as_str())
            .collect();
        if !recipients.is_empty() {
            text.push_str(&format!("  Given to: {}\n", recipients.join("; ")));
        }
        if let Some(rule) = key.as_ref().and_then(|k| policy.retention_for(k)) {
            text.push_str(&format!("  Kept: {rule}\n"));
        }
    }
    if !any {
        text.push_str("\nNone.\n");
    }
    Ok(text)
}

fn readme(policy: &Policy, jurisdiction: Jurisdiction, files: &[String]) -> String {
    let controller = policy.controller();
    let mut text = format!(
        "Your data from the forum run by {}\n\n\
         This archive holds every piece of personal data the forum keeps about you, sorted by \
         the categories of its privacy policy (version {}). Each category is given twice: as \
         JSON (data/<category>.json, one list of records per kind of record) and as CSV \
         (data/<category>.csv: table, row, column, value), so that another service can read it.\n\n\
         manifest.json says, for the rules of {}: which categories we collect and from which \
         sources, why we use them and on which legal basis, who receives them (naming the third \
         parties where the law asks), and how long each is kept. consent/receipts.json holds \
         every privacy choice you made, with the policy version and the time. \
         data/context/posts.json says where and when you wrote each post whose text is under \
         the public content category (by post_id).\n\n\
         Two values are listed but withheld: your 2-step verification key and the anti-forgery \
         token of your open sessions. Whoever held this file could act as you with them.\n\n\
         Questions: {}\n\nFiles:\n",
        controller.name,
        policy.version(),
        jurisdiction.as_str(),
        controller.privacy_email,
    );
    for file in files {
        text.push_str("  ");
        text.push_str(file);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_only_with_their_own_signature() {
        let key = b"0123456789abcdef0123456789abcdef";
        let token = sign_link(key, 7, 1_000, "secret");
        assert_eq!(verify_link(key, &token), Some((7, 1_000, "secret".into())));
        assert_eq!(
            verify_link(b"another key, just as long as that", &token),
            None
        );
        let tampered = token.replacen("7.", "8.", 1);
        assert_eq!(verify_link(key, &tampered), None);
        let later = token.replacen(".1000.", ".9000.", 1);
        assert_eq!(verify_link(key, &later), None);
        assert_eq!(verify_link(key, "garbage"), None);
    }
}
