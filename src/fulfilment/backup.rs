//! `covenant backup` and `covenant restore` (R8): a consistent copy of the SQLite database, and
//! putting one back. Restoring re-applies the erasure ledger (kept in a file beside the
//! database) before anything can be served from the copy, so nobody erased since the backup
//! was taken comes back. PostgreSQL is backed up with pg_dump; `covenant serve` re-applies the
//! ledger on every start, so a database restored with pg_restore is erased again the same way.

use crate::audit::AuditKey;
use crate::config::Config;
use crate::store::{Store, StoreKind};
use anyhow::{Context, bail};
use std::path::Path;

/// Copies the live SQLite database into `out` (which must not exist yet).
pub async fn backup(store: &Store, out: &Path) -> anyhow::Result<()> {
    if store.kind() != StoreKind::Sqlite {
        bail!(
            "back up PostgreSQL with pg_dump; `covenant serve` re-applies the erasure ledger to any restored copy"
        );
    }
    if out.exists() {
        bail!("{} already exists", out.display());
    }
    let path = out
        .to_str()
        .context("the backup path must be valid UTF-8")?
        .to_string();
    store.backup_sqlite_into(&path).await
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// How many members the ledger erased again.
    pub erased_again: usize,
    /// How the restored audit log stands against this node's anchor: rolled back (recorded
    /// in the log as `audit_log_rolled_back`, then anchored anew), or `None`.
    pub rollback: Option<crate::audit::Problem>,
}

/// Replaces the SQLite database of `config` with the backup file, then erases again everyone
/// the ledger file lists. The server must be stopped. A backup is older than the audit log's
/// anchor: the rollback is recorded in the log and the anchor moved to the restored head.
pub async fn restore(config: &Config, backup: &Path) -> anyhow::Result<Restored> {
    if !config.database_url.is_empty() {
        bail!(
            "restore PostgreSQL with pg_restore, then run `covenant audit reanchor`; `covenant serve` re-applies the erasure ledger on start"
        );
    }
    if !backup.is_file() {
        bail!("{} is not a backup file", backup.display());
    }
    let audit_key = AuditKey::load_or_create(&config.audit_key_path())?;
    let anchor_path = config.audit_anchor_path();
    let anchor = crate::audit::anchor::Anchor::read(&anchor_path, &audit_key)?;
    let database = config.data_dir.join("covenant.db");
    for suffix in ["-wal", "-shm"] {
        let side = config.data_dir.join(format!("covenant.db{suffix}"));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(anyhow::Error::new(error).context("removing the old journal"));
            }
        }
    }
    std::fs::copy(backup, &database).context("copying the backup into place")?;
    let store = Store::open(&config.data_dir, "", 1).await?;
    let restored = async {
        store.migrate().await?;
        // The key store is not part of the backup: keys destroyed since it was taken stay gone.
        let store = store
            .clone()
            .with_keys(&config.data_dir, &config.keys_database_url, &audit_key)
            .await?;
        // The chain as the backup left it, before re-applied erasures append to it.
        let restored_head = crate::audit::anchor::Anchor::of_head(&store).await?;
        let policies = crate::policy::Policies::load(store.clone(), config).await?;
        let policy = policies.current().await?;
        let erased_again =
            super::reapply_erasure_ledger(&store, &audit_key, &policy.policy, &config.data_dir)
                .await?;
        let rollback = crate::audit::anchor::accept_rollback(
            &store,
            &audit_key,
            &anchor_path,
            anchor.as_ref(),
            Some(&restored_head),
        )
        .await?;
        Ok(Restored {
            erased_again,
            rollback,
        })
    }
    .await;
    store.close().await;
    restored
}
