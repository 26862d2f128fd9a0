//! The command line: `covenant serve`, `migrate`, `demo-data` and the operator's small tools.
//! Every command that touches data takes the same `--data-dir` and `--database-url`.

use crate::config::Config;
use crate::store::Store;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "covenant",
    version,
    about = "A community forum whose privacy policy is executable"
)]
pub struct Cli {
    /// Configuration file (TOML). Settings can also come from COVENANT_* variables.
    #[arg(long, global = true, env = "COVENANT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "COVENANT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

/// Where the data lives.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Folder for the SQLite database, mail files and backups [default: ./covenant-data].
    #[arg(long, env = "COVENANT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run on PostgreSQL instead of the embedded SQLite file (postgres://user:pass@host/db).
    #[arg(
        long,
        env = "COVENANT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// The key store of sealed private fields, a database apart from the main one [default:
    /// beside the SQLite file, or the main PostgreSQL database's name with `_keys`].
    #[arg(
        long,
        env = "COVENANT_KEYS_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    keys_database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the forum over HTTP (creating and migrating the database on first start).
    Serve {
        /// Address and port to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "COVENANT_BIND", value_name = "ADDR")]
        bind: Option<String>,
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
        #[arg(
            long,
            env = "COVENANT_TLS_CERT",
            value_name = "PEM",
            requires = "tls_key"
        )]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(
            long,
            env = "COVENANT_TLS_KEY",
            value_name = "PEM",
            requires = "tls_cert"
        )]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create or update the database schema.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Fill the forum with a deterministic, realistic demo community.
    DemoData {
        /// Number of members.
        #[arg(long, default_value_t = 1_000)]
        users: u64,
        /// Number of topics.
        #[arg(long, default_value_t = 500)]
        topics: u64,
        /// Number of posts, first posts of topics included (at least one per topic).
        #[arg(long, default_value_t = 5_000)]
        posts: u64,
        /// Seed: the same seed gives the same forum.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage members.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage categories.
    #[command(subcommand)]
    Category(CategoryCommand),
    /// Check the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check, compare and publish privacy policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Apply the retention rules: restrict, delete or anonymize what is due, in resumable,
    /// audited batches. With --dry-run, print what would happen and why, changing nothing.
    Sweep {
        /// Change nothing; print, per category, what a sweep would do now and why.
        #[arg(long)]
        dry_run: bool,
        /// Take the verdicts as of this day (YYYY-MM-DD, UTC midnight) instead of now.
        #[arg(long, value_name = "YYYY-MM-DD")]
        now: Option<String>,
        /// Members per batch (a transaction takes batches up to 1,000 members) [default:
        /// retention.sweep_batch].
        #[arg(long)]
        batch_size: Option<i64>,
        /// Stop after this many batches, leaving the run open to resume (for rehearsing a crash).
        #[arg(long, hide = true)]
        stop_after_batches: Option<u64>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Place, release and list legal holds.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Product-news mail to the members who asked for it.
    #[command(subcommand)]
    News(NewsCommand),
    /// Privacy requests: the yearly report.
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// Copy the SQLite database into a new file while the forum runs.
    Backup {
        /// The backup file to create.
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a backup in place of the SQLite database (stop the server first); everyone erased
    /// since the backup was taken is erased again before anything is served from it.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Fulfil access and deletion requests for one member (after verifying the request).
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// Export the whole dataset, with the policy obligations attached, for a business transfer.
    ExportAll {
        /// The ZIP file to create.
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the record of processing activities of the policy in force.
    Ropa {
        #[arg(long, value_enum, default_value = "json")]
        format: RopaFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RopaFormat {
    Json,
    Csv,
    Html,
}

#[derive(Subcommand, Debug)]
enum PrivacyCommand {
    /// Requests received in a year, per right: complied with in whole or in part, denied by
    /// reason, and the mean and median days to respond.
    Report {
        #[arg(long, value_name = "YYYY")]
        year: i32,
        #[arg(long, value_enum, default_value = "json")]
        format: RopaFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validate a policy file; errors name the file, line and field.
    Check { file: PathBuf },
    /// Show every change between two policy files, each material or editorial.
    Diff { old: PathBuf, new: PathBuf },
    /// Publish a policy file as a new version. A material change emails every member.
    Publish {
        file: PathBuf,
        /// The day the version takes effect (YYYY-MM-DD).
        #[arg(long, value_name = "YYYY-MM-DD")]
        effective: String,
        /// Members per notice transaction.
        #[arg(long, default_value_t = crate::policy::NOTICE_BATCH)]
        batch_size: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum HoldCommand {
    /// Place a hold: what it covers is kept, neither restricted nor removed, until released.
    Add {
        /// The member whose data is held (username); everyone's when not given.
        #[arg(long)]
        subject: Option<String>,
        /// A category key to hold (repeat for several); every category when not given.
        #[arg(long = "category", value_name = "KEY")]
        categories: Vec<String>,
        /// First creation day of the records held (YYYY-MM-DD).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// Last creation day of the records held (YYYY-MM-DD, included).
        #[arg(long, value_name = "YYYY-MM-DD")]
        until: Option<String>,
        /// The claim reference or order the hold serves.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Release a standing hold.
    Release {
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List every hold, standing ones first.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Give a member a role: member, moderator, administrator, privacy_officer or support_agent.
    SetRole {
        username: String,
        role: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum NewsCommand {
    /// Queue a newsletter to every current subscriber (each message carries one-click
    /// unsubscribe). Running it again with the same subject and body sends nothing twice.
    Send {
        #[arg(long)]
        subject: String,
        /// A plain-text file holding the body.
        #[arg(long, value_name = "FILE")]
        body_file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SubjectCommand {
    /// Write a member's export archive (JSON and CSV per category, with the manifest).
    Export {
        username: String,
        /// The ZIP file to create.
        #[arg(long)]
        out: PathBuf,
        /// Whose right-to-know rules the manifest follows (eu_eea, california, …).
        #[arg(long, default_value = "other")]
        jurisdiction: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Erase a member as the policy says; prints what was done and kept, as JSON.
    Erase {
        username: String,
        /// Remove the member's posts' text too (by default it stays, by "deleted user").
        #[arg(long)]
        remove_content: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Walk the audit chain; report every edited, deleted or reordered entry, and a log
    /// rolled back behind an anchor (exit 1 if any).
    Verify {
        /// An anchor file written by a node (repeat for several nodes) [default: this
        /// configuration's `audit_anchor_file`].
        #[arg(long = "anchor", value_name = "FILE")]
        anchors: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Accept the database's audit log as it is after an operator restored a backup (with
    /// pg_restore, or by copying files): a rollback behind this node's anchor is recorded in
    /// the log, then the anchor is moved to the log's head. Run it on each node.
    Reanchor {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
enum CategoryCommand {
    /// Add a category.
    Add {
        /// URL name, such as `help` (lowercase letters, digits and '-').
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs the command line and turns failures into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn config_with(cli_config: Option<&PathBuf>, store: &StoreArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(cli_config.map(|p| p.as_path()))?;
    if let Some(dir) = &store.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &store.database_url {
        config.database_url = url.clone();
    }
    if let Some(url) = &store.keys_database_url {
        config.keys_database_url = url.clone();
    }
    config.validate()?;
    Ok(config)
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::open(
        &config.data_dir,
        &config.database_url,
        config.db_max_connections,
    )
    .await?;
    store.migrate().await?;
    let audit_key = crate::audit::AuditKey::load_or_create(&config.audit_key_path())?;
    store
        .with_keys(&config.data_dir, &config.keys_database_url, &audit_key)
        .await
}

async fn subject_command(file: Option<&PathBuf>, command: SubjectCommand) -> anyhow::Result<()> {
    let (username, store_args) = match &command {
        SubjectCommand::Export {
            username, store, ..
        }
        | SubjectCommand::Erase {
            username, store, ..
        } => (username.to_lowercase(), store),
    };
    let config = config_with(file, store_args)?;
    let state = crate::web::AppState::open(config).await?;
    let user = state
        .store
        .user_by_username(&username)
        .await?
        .context("no such member")?;
    let in_force = state.policy.current().await?;
    let started = std::time::Instant::now();
    match command {
        SubjectCommand::Export {
            out, jurisdiction, ..
        } => {
            let jurisdiction = jurisdiction.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let version = in_force.version.as_ref().map(|v| v.label.as_str());
            let bytes = crate::fulfilment::build_archive(
                &state.store,
                &in_force.policy,
                version,
                user.id,
                jurisdiction,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let elapsed = started.elapsed();
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "Archive of member {} built in {:.1} ms ({} bytes), written to {}.",
                user.id,
                elapsed.as_secs_f64() * 1000.0,
                bytes.len(),
                out.display()
            );
        }
        SubjectCommand::Erase { remove_content, .. } => {
            let content = if remove_content {
                crate::fulfilment::ContentChoice::Remove
            } else {
                crate::fulfilment::ContentChoice::KeepAnonymized
            };
            let report = state
                .fulfilment
                .erase_subject(&in_force.policy, user.id, content, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let elapsed = started.elapsed();
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!(
                "Member {} erased in {:.1} ms.",
                user.id,
                elapsed.as_secs_f64() * 1000.0
            );
        }
    }
    state.store.close().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.as_ref();
    match cli.command {
        Command::Serve {
            bind,
            tls_cert,
            tls_key,
            store,
        } => {
            let mut config = config_with(file, &store)?;
            if let Some(bind) = bind {
                config.bind = bind;
            }
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                config.tls_cert = cert;
                config.tls_key = key;
            }
            config.validate()?;
            crate::web::serve(config).await
        }
        Command::Backup { out, store } => {
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            crate::fulfilment::backup(&store, &out).await?;
            println!("Backed up to {}.", out.display());
            Ok(())
        }
        Command::Restore {
            file: backup,
            store,
        } => {
            let config = config_with(file, &store)?;
            let restored = crate::fulfilment::restore(&config, &backup).await?;
            println!(
                "Restored {}; {} members erased again from the ledger.",
                backup.display(),
                restored.erased_again
            );
            if let Some(rollback) = restored.rollback {
                println!(
                    "{rollback}. The rollback is recorded in the audit log and the anchor \
                     moved to the restored log."
                );
            }
            Ok(())
        }
        Command::Subject(command) => subject_command(file, command).await,
        Command::ExportAll { out, store } => {
            let config = config_with(file, &store)?;
            let state = crate::web::AppState::open(config).await?;
            let in_force = state.policy.current().await?;
            let started = std::time::Instant::now();
            let n_rows =
                crate::fulfilment::export_all(&state.store, &in_force.policy, &out).await?;
            println!(
                "Wrote {n_rows} rows to {} in {} ms.",
                out.display(),
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Command::Migrate { store } => {
            let config = config_with(file, &store)?;
            open_store(&config).await?;
            println!("The database schema is up to date.");
            Ok(())
        }
        Command::DemoData {
            users,
            topics,
            posts,
            seed,
            store,
        } => {
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let plan = crate::demo::Plan {
                users,
                topics,
                posts,
                seed,
            };
            let summary = crate::demo::generate(&store, &plan, true).await?;
            println!(
                "Added {} members, {} topics and {} posts in {:.1} s.",
                summary.users, summary.topics, summary.posts, summary.seconds
            );
            println!(
                "Every demo member signs in with the password: {}",
                crate::demo::DEMO_PASSWORD
            );
            Ok(())
        }
        Command::User(UserCommand::SetRole {
            username,
            role,
            store,
        }) => {
            let Some(role) = crate::domain::Role::parse(&role) else {
                bail!(
                    "unknown role {role:?}: use member, moderator, administrator, privacy_officer or support_agent"
                );
            };
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let user = store
                .user_by_username(&username.to_ascii_lowercase())
                .await?
                .with_context(|| format!("no member is called {username}"))?;
            let audit_key = crate::audit::AuditKey::load_or_create(&config.audit_key_path())?;
            crate::accounts::Accounts::new(store, std::sync::Arc::new(config), audit_key)?
                .set_role(user.id, role)
                .await?;
            println!("{} is now {}.", user.username, role.as_str());
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { anchors, store }) => {
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let key = crate::audit::AuditKey::load(&config.audit_key_path())?;
            let mut verification = crate::audit::verify(&store, &key).await?;
            let anchors = if anchors.is_empty() {
                vec![config.audit_anchor_path()]
            } else {
                anchors
            };
            let mut anchored = 0;
            for path in &anchors {
                let Some(anchor) = crate::audit::anchor::Anchor::read(path, &key)? else {
                    println!(
                        "No anchor at {}: a rollback to an older copy cannot be detected from it.",
                        path.display()
                    );
                    continue;
                };
                anchored += 1;
                if let Some(problem) = crate::audit::anchor::check(&store, &anchor, None).await? {
                    println!("{} (anchor {})", problem, path.display());
                    verification.problems.push(problem);
                }
            }
            if verification.is_intact() {
                println!(
                    "OK: the audit log's {} entries are intact{}.",
                    verification.entries,
                    if anchored > 0 {
                        format!(" and reach every anchor ({anchored})")
                    } else {
                        String::new()
                    }
                );
                Ok(())
            } else {
                for problem in &verification.problems {
                    if !matches!(
                        problem,
                        crate::audit::Problem::RolledBack { .. }
                            | crate::audit::Problem::AnchorDiffers { .. }
                    ) {
                        println!("{problem}");
                    }
                }
                bail!(
                    "the audit log was tampered with: {} problem(s) in {} entries",
                    verification.problems.len(),
                    verification.entries
                )
            }
        }
        Command::Audit(AuditCommand::Reanchor { store }) => {
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let key = crate::audit::AuditKey::load(&config.audit_key_path())?;
            let path = config.audit_anchor_path();
            let anchor = crate::audit::anchor::Anchor::read(&path, &key)?;
            let found =
                crate::audit::anchor::accept_rollback(&store, &key, &path, anchor.as_ref(), None)
                    .await?;
            store.close().await;
            if let Some(problem) = found {
                println!("{problem}. The rollback is recorded in the audit log.");
            }
            println!("Anchored the audit log's head at {}.", path.display());
            Ok(())
        }
        Command::Category(CategoryCommand::Add {
            slug,
            name,
            description,
            store,
        }) => {
            if crate::domain::slugify(&slug) != slug {
                bail!(
                    "the slug must be lowercase letters, digits and '-', such as {:?}",
                    crate::domain::slugify(&slug)
                );
            }
            if name.trim().is_empty() {
                bail!("the name must not be empty");
            }
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            store
                .insert_category(&slug, name.trim(), description.trim())
                .await
                .map_err(|e| match e.downcast_ref::<crate::store::Duplicate>() {
                    Some(_) => anyhow::anyhow!("a category with the slug {slug:?} already exists"),
                    None => e,
                })?;
            println!("Category {slug} added.");
            Ok(())
        }
        Command::Policy(command) => run_policy(file, command).await,
        Command::Sweep {
            dry_run,
            now,
            batch_size,
            stop_after_batches,
            store,
        } => {
            let config = config_with(file, &store)?;
            let now = match now {
                Some(day) => crate::retention::parse_day(&day)
                    .with_context(|| format!("--now {day:?} is not a day such as 2031-03-15"))?
                    .midnight()
                    .assume_utc(),
                None => time::OffsetDateTime::now_utc(),
            };
            let batch_size = batch_size.unwrap_or(config.retention.sweep_batch);
            let state = crate::web::AppState::open(config).await?;
            run_sweep(&state, now, dry_run, batch_size, stop_after_batches).await
        }
        Command::Hold(command) => run_hold(file, command).await,
        Command::News(NewsCommand::Send {
            subject,
            body_file,
            store,
        }) => {
            let body = std::fs::read_to_string(&body_file)
                .with_context(|| format!("reading the body file {}", body_file.display()))?;
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let news = crate::news::News::open(store, &config).await?;
            let (newsletter, queued) =
                news.send(&subject, &body, crate::now())
                    .await
                    .map_err(|e| match e {
                        crate::error::Error::Internal(e) => e,
                        other => anyhow::anyhow!("{other}"),
                    })?;
            println!(
                "Newsletter {newsletter}: {queued} messages queued; the server's mail worker \
                 delivers them."
            );
            Ok(())
        }
        Command::Privacy(PrivacyCommand::Report {
            year,
            format,
            store,
        }) => {
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let report = crate::requests::report::for_year(&store, year).await?;
            let text = match format {
                RopaFormat::Json => {
                    serde_json::to_string_pretty(&report).context("encoding the report")? + "\n"
                }
                RopaFormat::Csv => report.csv(),
                RopaFormat::Html => report.html(),
            };
            print!("{text}");
            Ok(())
        }
        Command::Ropa { format, store } => {
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let policies = crate::policy::Policies::load(store, &config).await?;
            let in_force = policies.current().await?;
            print!("{}", ropa_text(&in_force.policy, format)?);
            Ok(())
        }
    }
}

fn read_policy(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy file {}", path.display()))?;
    Ok((text, path.display().to_string()))
}

/// Loads a policy file, printing each problem as `file:line: field: message` on failure.
fn load_policy(path: &std::path::Path) -> anyhow::Result<covenant_core::policy::Policy> {
    let (text, name) = read_policy(path)?;
    covenant_core::policy::Policy::from_toml_str(&text, &name).map_err(|error| {
        for problem in error.problems() {
            eprintln!("{problem}");
        }
        let n = error.problems().len();
        anyhow::anyhow!(
            "{name} is not a valid policy ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )
    })
}

fn class_label(class: covenant_core::diff::ChangeClass) -> &'static str {
    match class {
        covenant_core::diff::ChangeClass::Material => "material",
        covenant_core::diff::ChangeClass::Editorial => "editorial",
    }
}

fn print_changes(changes: &covenant_core::diff::PolicyDiff) {
    for change in changes.changes() {
        println!(
            "{:<9}  {}: {}",
            class_label(change.class),
            change.path,
            change.description.replace('\n', " ")
        );
    }
    let verdict = if changes.is_empty() {
        "no change"
    } else if changes.is_material() {
        "material"
    } else {
        "editorial"
    };
    println!("verdict: {verdict}");
}

async fn run_policy(file: Option<&PathBuf>, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check { file } => {
            let policy = load_policy(&file)?;
            println!(
                "OK: {} is a valid policy (version {}: {} categories, {} purposes, {} recipients, {} jurisdictions)",
                file.display(),
                policy.version(),
                policy.categories().len(),
                policy.purposes().len(),
                policy.recipients().len(),
                policy.jurisdictions().len()
            );
            Ok(())
        }
        PolicyCommand::Diff { old, new } => {
            let old = load_policy(&old)?;
            let new = load_policy(&new)?;
            print_changes(&covenant_core::diff::diff(&old, &new));
            Ok(())
        }
        PolicyCommand::Publish {
            file: policy_file,
            effective,
            batch_size,
            store,
        } => {
            let effective = time::Date::parse(
                &effective,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .with_context(|| {
                format!("--effective {effective:?} is not a date such as 2026-03-01")
            })?;
            let (text, name) = read_policy(&policy_file)?;
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let starting = crate::policy::starting_policy(&config)?;
            let published = match crate::policy::publish(&store, &starting, &text, &name, effective)
                .await
            {
                Ok(published) => published,
                Err(crate::policy::PublishError::Invalid(error)) => {
                    for problem in error.problems() {
                        eprintln!("{problem}");
                    }
                    bail!("{name} is not a valid policy; nothing was published");
                }
                Err(crate::policy::PublishError::NoChange { latest_id }) => {
                    println!("Nothing to publish: {name} says the same as version #{latest_id}.");
                    return Ok(());
                }
                Err(other) => return Err(other.into()),
            };
            if published.created {
                print_changes(&published.diff);
                println!(
                    "Published version #{} ({}), effective {}.",
                    published.version_id,
                    if published.material {
                        "material"
                    } else {
                        "editorial"
                    },
                    effective
                );
            } else {
                println!(
                    "{name} is already the latest version (#{}); nothing new was stored.",
                    published.version_id
                );
            }
            if published.material {
                let progress = crate::policy::queue_notices(
                    &store,
                    &config,
                    published.version_id,
                    batch_size,
                    None,
                )
                .await?;
                println!(
                    "Queued {} notice email(s); {}.",
                    progress.queued,
                    if progress.finished {
                        "every member with an address has one"
                    } else {
                        "another process is queuing the rest"
                    }
                );
            } else if published.created {
                println!("An editorial change: no notice is sent.");
            }
            Ok(())
        }
    }
}

/// The record of processing in the asked format.
fn ropa_text(policy: &covenant_core::policy::Policy, format: RopaFormat) -> anyhow::Result<String> {
    use askama::Template;
    let record = covenant_core::ropa::record_of_processing(policy);
    Ok(match format {
        RopaFormat::Json => {
            let mut text =
                serde_json::to_string_pretty(&record).context("encoding the record as JSON")?;
            text.push('\n');
            text
        }
        RopaFormat::Csv => record
            .to_csv_rows()
            .iter()
            .map(|row| {
                let cells: Vec<String> = row.iter().map(|cell| csv_cell(cell)).collect();
                cells.join(",") + "\r\n"
            })
            .collect(),
        RopaFormat::Html => crate::web::privacy::RopaDocument {
            ropa: crate::web::privacy::RopaView::new(policy),
            generated_on: crate::policy::today(),
        }
        .render()
        .context("rendering the record as HTML")?,
    })
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

async fn run_sweep(
    state: &crate::web::AppState,
    now: time::OffsetDateTime,
    dry_run: bool,
    batch_size: i64,
    stop_after_batches: Option<u64>,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let total = state.store.count_closed_accounts_to_sweep().await?;
    // A progress bar on long runs, on a terminal only (scripts and tests read plain lines).
    let bar = (total > 10_000 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} closed accounts ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    let options = crate::retention::SweepOptions {
        now,
        dry_run,
        batch_size,
        stop_after_batches,
    };
    let report = state
        .retention
        .sweep(&options, &|n| {
            if let Some(bar) = &bar {
                bar.inc(n);
            }
        })
        .await?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let as_of = time::OffsetDateTime::from_unix_timestamp(report.as_of)
        .map(|t| t.date().to_string())
        .unwrap_or_default();
    if dry_run {
        println!("Dry run as of {as_of}: nothing was changed. A sweep now would do this:");
    } else {
        match report.run_id {
            Some(id) => println!("Sweep run #{id} as of {as_of}:"),
            None => println!("Sweep as of {as_of}:"),
        }
    }
    println!(
        "{:<32} {:<10} {:>10}  why (first record; others differ only in their days)",
        "category", "action", "records"
    );
    for ((category, action), line) in &report.lines {
        println!(
            "{category:<32} {action:<10} {:>10}  {}",
            line.records, line.example_reason
        );
    }
    if report.lines.is_empty() {
        println!("(nothing is due)");
    }
    let records = report.changed();
    println!(
        "{} closed account(s) in {} batch(es), {records} record(s) {}, in {seconds:.2} s ({:.0} records/s).",
        report.subjects,
        report.batches,
        if dry_run { "would change" } else { "changed" },
        records as f64 / seconds.max(1e-9),
    );
    if !report.finished {
        println!("Stopped before the end: the next sweep resumes after the last batch.");
    }
    Ok(())
}

async fn run_hold(file: Option<&PathBuf>, command: HoldCommand) -> anyhow::Result<()> {
    match command {
        HoldCommand::Add {
            subject,
            categories,
            from,
            until,
            reason,
            store,
        } => {
            let config = config_with(file, &store)?;
            let state = crate::web::AppState::open(config).await?;
            let subject_user_id = match subject {
                Some(name) => Some(
                    state
                        .store
                        .user_by_username(&name.to_ascii_lowercase())
                        .await?
                        .with_context(|| format!("no member is called {name}"))?
                        .id,
                ),
                None => None,
            };
            let request = crate::retention::HoldRequest {
                subject_user_id,
                categories: categories.join(" "),
                created_from: from.unwrap_or_default(),
                created_until: until.unwrap_or_default(),
                reason,
            };
            let id = match state.retention.place_hold(None, &request).await {
                Ok(id) => id,
                Err(crate::error::Error::Invalid(fields)) => {
                    for field in &fields {
                        eprintln!("{field}");
                    }
                    bail!("the hold was not placed");
                }
                Err(other) => return Err(other.into()),
            };
            println!("Legal hold #{id} placed.");
            Ok(())
        }
        HoldCommand::Release { id, store } => {
            let config = config_with(file, &store)?;
            let state = crate::web::AppState::open(config).await?;
            state.retention.release_hold(None, id).await?;
            println!("Legal hold #{id} released.");
            Ok(())
        }
        HoldCommand::List { store } => {
            let config = config_with(file, &store)?;
            let state = crate::web::AppState::open(config).await?;
            let holds = state.retention.holds().await?;
            if holds.is_empty() {
                println!("No legal holds.");
            }
            for hold in holds {
                let subject = hold
                    .subject_user_id
                    .map(|id| format!("member {id}"))
                    .unwrap_or_else(|| "everyone".into());
                let categories = if hold.categories.is_empty() {
                    "every category".to_string()
                } else {
                    hold.categories.clone()
                };
                let days = format!(
                    "{}..{}",
                    hold.created_from.as_deref().unwrap_or(""),
                    hold.created_until.as_deref().unwrap_or("")
                );
                let status = match hold.released_at {
                    Some(at) => format!("released {}", crate::web::pages::date(at)),
                    None => "standing".into(),
                };
                println!(
                    "#{} {status}: {subject}, {categories}, created {days}; reason: {}",
                    hold.id, hold.reason
                );
            }
            Ok(())
        }
    }
}
