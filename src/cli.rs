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
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the forum over HTTP (creating and migrating the database on first start).
    Serve {
        /// Address and port to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "COVENANT_BIND", value_name = "ADDR")]
        bind: Option<String>,
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
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Give a member a role: member, moderator or administrator.
    SetRole {
        username: String,
        role: String,
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
    Ok(store)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.as_ref();
    match cli.command {
        Command::Serve { bind, store } => {
            let mut config = config_with(file, &store)?;
            if let Some(bind) = bind {
                config.bind = bind;
            }
            crate::web::serve(config).await
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
                bail!("unknown role {role:?}: use member, moderator or administrator");
            };
            let config = config_with(file, &store)?;
            let store = open_store(&config).await?;
            let user = store
                .user_by_username(&username.to_ascii_lowercase())
                .await?
                .with_context(|| format!("no member is called {username}"))?;
            store.set_role(user.id, role.as_str()).await?;
            println!("{} is now {}.", user.username, role.as_str());
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
    }
}
