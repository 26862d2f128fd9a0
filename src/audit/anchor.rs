//! The audit chain's anchor: the head (sequence number and entry hash) recorded in a file
//! outside the database, signed with the audit key. The chain alone cannot tell a database
//! restored from an older copy, or one whose newest entries were cut off with the head set
//! back to a head the key once signed: both are internally consistent. The anchor remembers
//! how far the chain had reached; a database behind it, or whose entry at the anchored number
//! is another one, was rolled back.
//!
//! Each node keeps its own anchor (`audit_anchor_file`, default `audit.anchor` beside the
//! audit key file). The server writes it at most once a second after the chain moves, and at
//! shutdown; it never moves an anchor backwards: once it finds the database behind, it stops
//! writing, so that the evidence stays until an operator accepts the rollback
//! ([`accept_rollback`], run by `covenant restore` and `covenant audit reanchor`), which
//! records an audit event saying so and anchors the new head.

use super::{AuditKey, AuditKind, Detail, Event, Problem, hex};
use crate::store::Store;
use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::Path;
use subtle::ConstantTimeEq;

const FORMAT: &str = "covenant-audit-anchor-v1";

/// A head of the chain: the last sequence number and the hash of that entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl Anchor {
    /// The database's head now.
    pub async fn of_head(store: &Store) -> anyhow::Result<Self> {
        let (seq, hash, _) = store.audit_head().await?;
        Ok(Self { seq, hash })
    }

    fn mac(&self, key: &AuditKey) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
        mac.update(b"covenant-audit-anchor:");
        mac.update(&self.seq.to_be_bytes());
        mac.update(self.hash.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Reads an anchor file; `None` when there is none. A file that is not an anchor signed
    /// by `key` is an error: someone wrote it without the key.
    pub fn read(path: &Path, key: &AuditKey) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("reading the audit anchor {}", path.display())));
            }
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let parsed = match fields.as_slice() {
            [format, seq, hash, mac] if *format == FORMAT => seq.parse::<i64>().ok().map(|seq| {
                (
                    Self {
                        seq,
                        hash: hash.to_string(),
                    },
                    *mac,
                )
            }),
            _ => None,
        };
        let Some((anchor, mac)) = parsed else {
            anyhow::bail!("the audit anchor {} is not an anchor file", path.display());
        };
        if !bool::from(anchor.mac(key).as_bytes().ct_eq(mac.as_bytes())) {
            anyhow::bail!(
                "the audit anchor {} is not signed by the audit key: it was written or changed \
                 by someone without the key",
                path.display()
            );
        }
        Ok(Some(anchor))
    }

    /// Writes the anchor (owner-readable only), replacing the file in one step so that a
    /// crash leaves the old anchor or the new one, never half of one.
    pub fn write(&self, path: &Path, key: &AuditKey) -> anyhow::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder of {}", path.display()))?;
        }
        let mut name = path
            .file_name()
            .context("the audit anchor path names no file")?
            .to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let line = format!("{FORMAT} {} {} {}\n", self.seq, self.hash, self.mac(key));
        options
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(line.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, path))
            .with_context(|| format!("writing the audit anchor {}", path.display()))
    }
}

/// Whether the database's chain has reached at least as far as `anchor`, through the same
/// entry: `None` when it has, otherwise the problem (rolled back, or another entry where the
/// anchored one was). `head` is the chain's head to judge (the database's own by default).
pub async fn check(
    store: &Store,
    anchor: &Anchor,
    head: Option<&Anchor>,
) -> anyhow::Result<Option<Problem>> {
    let head = match head {
        Some(head) => head.clone(),
        None => Anchor::of_head(store).await?,
    };
    if head.seq < anchor.seq {
        return Ok(Some(Problem::RolledBack {
            anchored: anchor.seq,
            head: head.seq,
        }));
    }
    if anchor.seq == 0 {
        return Ok(None);
    }
    let hash = if head.seq == anchor.seq {
        Some(head.hash)
    } else {
        store
            .audit_rows_after(anchor.seq - 1, 1)
            .await?
            .into_iter()
            .find(|row| row.seq == anchor.seq)
            .map(|row| row.entry_hash)
    };
    if hash.as_deref() != Some(anchor.hash.as_str()) {
        return Ok(Some(Problem::AnchorDiffers {
            seq: anchor.seq,
            head: head.seq,
        }));
    }
    Ok(None)
}

/// An operator accepts the database as it is (a restored backup): when `anchor` shows it was
/// rolled back, records an audit event saying to which entry and from which, then anchors
/// the new head at `path`. `restored` is the head the restore put back, when entries were
/// appended since (erasures re-applied); by default the database's head. Returns the
/// rollback found, if any.
pub async fn accept_rollback(
    store: &Store,
    key: &AuditKey,
    path: &Path,
    anchor: Option<&Anchor>,
    restored: Option<&Anchor>,
) -> anyhow::Result<Option<Problem>> {
    let found = match anchor {
        Some(anchor) => check(store, anchor, restored).await?,
        None => None,
    };
    if let (Some(problem), Some(anchor)) = (&found, anchor) {
        let head = match problem {
            Problem::RolledBack { head, .. } | Problem::AnchorDiffers { head, .. } => *head,
            _ => anchor.seq,
        };
        super::record_alone(
            store,
            key,
            Event::new(AuditKind::AuditLogRolledBack)
                .detail(Detail::RolledBackTo(head))
                .detail(Detail::Anchored(anchor.seq)),
        )
        .await?;
    }
    Anchor::of_head(store).await?.write(path, key)?;
    Ok(found)
}

/// The server's anchor keeper: started with the head the node finds (checked against the
/// anchor file), it writes the anchor when the chain has moved, at most once per tick.
pub struct Keeper {
    store: Store,
    key: AuditKey,
    path: std::path::PathBuf,
    last: Option<Anchor>,
    /// The database was found behind the anchor (or the file was not ours): the anchor is
    /// left as it is, as evidence, until an operator accepts the rollback.
    frozen: bool,
}

impl Keeper {
    /// Reads this node's anchor and checks the database against it.
    pub async fn start(store: Store, key: AuditKey, path: std::path::PathBuf) -> Self {
        let mut keeper = Self {
            store,
            key,
            path,
            last: None,
            frozen: false,
        };
        match Anchor::read(&keeper.path, &keeper.key) {
            Ok(anchor) => keeper.last = anchor,
            Err(error) => {
                tracing::error!(
                    error = %format!("{error:#}"),
                    "the audit anchor cannot be trusted; it is left as it is"
                );
                keeper.frozen = true;
            }
        }
        keeper
    }

    /// Writes the anchor if the chain moved since the last write and still runs through the
    /// anchored entry; stops for good when it does not.
    pub async fn tick(&mut self) {
        if self.frozen {
            return;
        }
        if let Err(error) = self.try_tick().await {
            tracing::error!(error = %format!("{error:#}"), "writing the audit anchor failed");
        }
    }

    async fn try_tick(&mut self) -> anyhow::Result<()> {
        let head = Anchor::of_head(&self.store).await?;
        if self.last.as_ref() == Some(&head) {
            return Ok(());
        }
        if let Some(last) = &self.last
            && let Some(problem) = check(&self.store, last, Some(&head)).await?
        {
            tracing::error!(
                %problem,
                "the audit log was rolled back behind its anchor; the anchor is kept as \
                 evidence: run `covenant audit verify`, and `covenant audit reanchor` if an \
                 operator restored a backup"
            );
            self.frozen = true;
            return Ok(());
        }
        head.write(&self.path, &self.key)?;
        self.last = Some(head);
        Ok(())
    }

    /// Runs until shutdown: a tick each `every`, and one last at shutdown.
    pub async fn run(
        mut self,
        every: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            self.tick().await;
            let stopping = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = shutdown.changed() => true,
            };
            if stopping {
                self.tick().await;
                return;
            }
        }
    }
}
