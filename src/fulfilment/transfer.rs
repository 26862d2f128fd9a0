//! The whole dataset for a business transfer (A7): every table of the inventory as JSON lines,
//! with the policy versions (their table), the policy in force, the inventory's declaration of
//! each column (personal or not, category, retention) and the policy's transfer clause, so
//! the receiving organisation gets the obligations with the data.

use crate::inventory::{self, Data};
use crate::store::Store;
use anyhow::Context;
use covenant_core::policy::{CategoryKey, Policy};
use serde_json::{Map, json};
use std::io::Write;
use std::path::Path;

/// Writes the archive to `out` (which must not exist); returns the number of rows written.
pub async fn export_all(store: &Store, policy: &Policy, out: &Path) -> anyhow::Result<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let mut writer = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut n_rows = 0u64;
    let mut tables = Vec::new();
    for table in inventory::TABLES {
        let rows = store.all_rows(table).await?;
        writer
            .start_file(format!("tables/{}.jsonl", table.name), options)
            .context("writing the archive")?;
        for row in &rows {
            let mut object = Map::new();
            for (column, value) in table.columns.iter().zip(row) {
                object.insert(column.name.into(), json!(value));
            }
            serde_json::to_writer(&mut writer, &object).context("writing a row")?;
            writer.write_all(b"\n").context("writing a row")?;
        }
        n_rows += rows.len() as u64;
        let columns: Vec<_> = table
            .columns
            .iter()
            .map(|column| match column.data {
                Data::Personal(p) => {
                    let retention = CategoryKey::parse(p.category)
                        .ok()
                        .and_then(|key| policy.retention_for(&key).map(|r| r.to_string()));
                    json!({"column": column.name, "personal": true, "category": p.category,
                           "retention": retention})
                }
                Data::Reference => {
                    json!({"column": column.name, "personal": false, "identifies_a_member": true})
                }
                Data::NonPersonal => json!({"column": column.name, "personal": false}),
            })
            .collect();
        tables.push(json!({"table": table.name, "rows": rows.len(), "columns": columns}));
    }
    writer
        .start_file("policy-in-force.json", options)
        .context("writing the archive")?;
    serde_json::to_writer_pretty(&mut writer, policy).context("writing the policy")?;
    let manifest = json!({
        "format": "covenant-transfer/1",
        "generated_at": crate::now(),
        "policy_version": policy.version(),
        "obligations": policy.business_transfer(),
        "controller": policy.controller(),
        "tables": tables,
        "notes": [
            "tables/policy_versions.jsonl holds every published version of the policy.",
            "tables/consent_records.jsonl holds every consent decision as evidence; tables/erasure_ledger.jsonl lists the members erased, who must stay erased.",
            "Columns marked personal keep their category and retention rule: the receiving organisation must keep the policy's promises for them."
        ],
    });
    writer
        .start_file("manifest.json", options)
        .context("writing the archive")?;
    serde_json::to_writer_pretty(&mut writer, &manifest).context("writing the manifest")?;
    let mut inner = writer.finish().context("finishing the archive")?;
    inner.flush().context("flushing the archive")?;
    Ok(n_rows)
}
