//! Configuration: defaults, then a TOML file, then `COVENANT_*` environment variables, then flags.
//!
//! Every setting has a default that runs a working forum on this machine; the file and the
//! environment only say what differs. The environment name of a setting is its path in the file,
//! upper-cased and joined by `_`: `[mail] smtp_host` is `COVENANT_MAIL_SMTP_HOST`.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port the HTTP server listens on.
    pub bind: String,
    /// Folder holding the SQLite database, the mail folder and backups.
    pub data_dir: PathBuf,
    /// `postgres://…` to run on PostgreSQL; empty for the embedded SQLite file in `data_dir`.
    pub database_url: String,
    /// The key store of sealed private fields (R8), a database apart from the main one:
    /// empty for `<database file>.keys.sqlite` beside the SQLite file, or, on PostgreSQL, a
    /// database named like the main one with `_keys` on the same server (created if missing).
    /// Every node must use the same one; a backup of the main database must not include it.
    pub keys_database_url: String,
    /// The address members reach the forum at, used in links sent by email.
    pub base_url: String,
    /// The forum's name, shown in every page header and email.
    pub site_name: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Size of the database connection pool.
    pub db_max_connections: u32,
    /// Take the client's address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Serve HTTPS natively: the certificate chain (PEM). Set together with `tls_key`; both
    /// empty (the default) serves plain HTTP, for a proxy that terminates TLS or development.
    pub tls_cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: PathBuf,
    pub argon2: Argon2Config,
    pub session: SessionConfig,
    pub mail: MailConfig,
    /// The key that signs the audit log, kept outside the database; empty for
    /// `<data_dir>/audit.key`, created (mode 0600) on first start. Every node needs the same file.
    pub audit_key_file: PathBuf,
    /// Where this node records the audit chain's head (sequence number and hash, signed with
    /// the audit key), outside the database, so that a database restored from an older copy
    /// is detected; empty for `audit.anchor` beside the audit key file. One file per node.
    pub audit_anchor_file: PathBuf,
    /// The policy file the site starts from until a version is published with
    /// `covenant policy publish`; empty for the policy built into the binary.
    pub policy_file: PathBuf,
    /// Who runs the forum: these facts replace the placeholders of the policy file.
    pub operator: OperatorConfig,
    /// Social sign-in providers (OpenID Connect), each a `[[social_providers]]` table in the
    /// file; none by default.
    pub social_providers: Vec<SocialProviderConfig>,
    pub retention: RetentionConfig,
    /// Privacy requests: verification, reminders, holidays, evidence and alarms.
    pub requests: RequestsConfig,
    /// The spam and unsafe-link check of new and edited posts.
    pub moderation: ModerationConfig,
    /// Limits on failed sign-ins, registrations and reset emails, with growing waits.
    pub rate_limits: RateLimitConfig,
    /// Each node's cache of pages rendered for visitors without a session.
    pub page_cache: PageCacheConfig,
}

/// The cache of visitors' pages (`web::page_cache`). A write through this node shows at once;
/// one through another node or the command line within `seconds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PageCacheConfig {
    /// Seconds a page stays cached, at most 60; 0 turns the cache off.
    pub seconds: u64,
    /// Pages kept at most.
    pub max_entries: usize,
    /// Bytes of pages kept at most.
    pub max_bytes: usize,
}

impl Default for PageCacheConfig {
    fn default() -> Self {
        Self {
            seconds: 1,
            max_entries: 4096,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Rate limits (promise A4). A limit reached blocks its key for `first_wait_seconds`, doubled
/// by each later block of the same key up to `max_wait_seconds`; a day without events (or a
/// successful sign-in, for a login) starts it over. Privacy requests use `[requests]` limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Minutes in which failed sign-ins and 2-step codes are counted.
    pub window_minutes: i64,
    /// Failed sign-ins (wrong password or 2-step code) for one username or email address,
    /// from any client, before it waits; also wrong 2-step codes of a signed-in member.
    pub failures_per_account: i64,
    /// Failed sign-ins from one client address, for any login, before it waits.
    pub failures_per_client: i64,
    /// Registrations accepted from one client address per hour.
    pub registrations_per_client_per_hour: i64,
    /// Password-reset emails asked for one address per hour.
    pub resets_per_address_per_hour: i64,
    /// Password-reset emails asked from one client address per hour.
    pub resets_per_client_per_hour: i64,
    /// The first wait once a limit is reached.
    pub first_wait_seconds: i64,
    /// The longest wait, however often the limit is reached.
    pub max_wait_seconds: i64,
    /// Hours after its last event at which a counter (and its grown wait) is forgotten.
    pub forget_after_hours: i64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            window_minutes: 15,
            failures_per_account: 5,
            failures_per_client: 20,
            registrations_per_client_per_hour: 5,
            resets_per_address_per_hour: 3,
            resets_per_client_per_hour: 10,
            first_wait_seconds: 60,
            max_wait_seconds: 3600,
            forget_after_hours: 24,
        }
    }
}

/// What makes a post wait for a moderator (promises A4, A6). Both lists are empty by default:
/// the operator knows which sites and phrases plague their forum. In the environment, entries
/// are separated by commas.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModerationConfig {
    /// Domains whose links hold a post, each matching itself and its subdomains in any case
    /// (`spam.example` also holds `www.spam.example`).
    pub unsafe_domains: Vec<String>,
    /// Phrases that hold a post whose text contains them, in any case and spacing.
    pub spam_patterns: Vec<String>,
}

impl ModerationConfig {
    /// The check built from these lists.
    pub fn filter(&self) -> anyhow::Result<crate::spam::SpamFilter> {
        Ok(crate::spam::SpamFilter::new(
            &self.unsafe_domains,
            &self.spam_patterns,
        )?)
    }
}

/// Retention sweeps and visitor statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// The jurisdiction (`eu_eea`, `california`, … `other`) whose limitation period applies to
    /// members whose residence is not recorded.
    pub default_jurisdiction: String,
    /// Minutes between two sweeps inside `serve`; 0 turns the schedule off.
    pub sweep_interval_minutes: u64,
    /// Members per sweep batch (a transaction takes batches up to 1,000 members).
    pub sweep_batch: i64,
    /// Seconds between two writes of the page views counted in memory.
    pub stats_flush_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default_jurisdiction: "other".into(),
            sweep_interval_minutes: 60,
            sweep_batch: 200,
            stats_flush_seconds: 10,
        }
    }
}

/// How privacy requests are handled (promises R3-R5).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    /// Days after which a request nobody verified closes as unverifiable.
    pub unverified_close_days: i64,
    /// Days between two reminders to verify.
    pub reminder_days: i64,
    /// Minutes an emailed code stays valid.
    pub code_minutes: i64,
    /// Wrong codes allowed before the request closes as unverifiable.
    pub code_attempts: i64,
    /// Requests (or new codes) accepted per subject address per hour.
    pub per_address_per_hour: i64,
    /// Requests, codes and code attempts accepted per client address per hour.
    pub per_ip_per_hour: i64,
    /// Largest evidence file an agent may upload.
    pub evidence_max_bytes: usize,
    /// Days before the due date at which a request counts as nearly due.
    pub nearly_due_days: i64,
    /// Holidays (YYYY-MM-DD) that do not count as business days.
    pub holidays: Vec<String>,
    /// Seconds between two runs of the request job (reminders, closing, alarms).
    pub job_seconds: u64,
    /// Carry out verified deletion, access and portability requests of members at once (the
    /// default); `false` leaves every verified request for privacy staff to review and decide.
    pub fulfil_at_once: bool,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        Self {
            unverified_close_days: 7,
            fulfil_at_once: true,
            reminder_days: 2,
            code_minutes: 15,
            code_attempts: 5,
            per_address_per_hour: 3,
            per_ip_per_hour: 20,
            evidence_max_bytes: 5 * 1024 * 1024,
            nearly_due_days: 3,
            holidays: Vec::new(),
            job_seconds: 60,
        }
    }
}

/// The operator's own facts, shown in the privacy policy. Empty means "keep the policy file's".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// The controller's legal name.
    pub name: String,
    /// The controller's postal address.
    pub address: String,
    /// Where privacy questions and requests by email go.
    pub privacy_email: String,
    /// How to reach the data protection officer.
    pub dpo_contact: String,
    /// The representative in the EU, for an operator established outside it.
    pub eu_representative: String,
    /// Where security researchers report vulnerabilities (`Contact:` of
    /// `/.well-known/security.txt`): a `mailto:` or `https:` URI. Empty for `mailto:` the
    /// privacy email; with neither, no security.txt is served.
    pub security_contact: String,
}

impl OperatorConfig {
    /// The facts as the policy model takes them: only those given.
    pub fn facts(&self) -> covenant_core::policy::OperatorFacts {
        let given = |value: &str| {
            let value = value.trim();
            (!value.is_empty()).then(|| value.to_string())
        };
        covenant_core::policy::OperatorFacts {
            name: given(&self.name),
            address: given(&self.address),
            privacy_email: given(&self.privacy_email),
            dpo_contact: given(&self.dpo_contact),
            eu_representative: given(&self.eu_representative),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// How long a sign-in lasts without activity, in days.
    pub max_age_days: i64,
    /// How long a sign-in (or password re-entry) stays fresh enough for sensitive account
    /// actions (sessions, 2-step verification, export, closing the account), in hours.
    pub reauthenticate_after_hours: i64,
    /// Minutes without activity after which a session no longer signs in (ASVS 3.3.2), to
    /// within five minutes (activity is noted at most every five); 0 (the default) leaves only
    /// `max_age_days`. At least 10 when set.
    pub idle_timeout_minutes: i64,
    /// Mark cookies `Secure`. Defaults to true when `base_url` starts with `https://` or the
    /// server speaks TLS itself (`tls_cert`).
    pub secure_cookies: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// `file` writes each message as an `.eml` file under `<data_dir>/mail`; `smtp` sends it.
    pub transport: MailTransportKind,
    /// The sender address of every message.
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_username: String,
    pub smtp_password: String,
    /// `starttls`, `tls` or `none`.
    pub smtp_security: SmtpSecurity,
    /// Seconds between two looks at the outbox when nothing wakes the worker.
    pub poll_seconds: u64,
    /// Seconds a worker holds the messages it claimed; a message still unsent when its claim
    /// lapses (the node died mid-send) is sent again, by any node.
    pub lease_seconds: u64,
    /// Whether this server delivers the outbox. With several nodes on one PostgreSQL, nodes
    /// that only serve pages may leave delivery to the others; at least one must deliver.
    pub worker: bool,
}

/// One OpenID Connect provider members may sign in with. A preset fills in what a well-known
/// provider needs (issuer, scopes, and the fields shown before the member authorizes); anything
/// given here overrides it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocialProviderConfig {
    /// The name in URLs and records, such as `google` (lowercase letters, digits, `-`).
    pub id: String,
    #[serde(default)]
    pub preset: SocialPreset,
    /// The name on buttons; the preset's when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The issuer URL, from which `/.well-known/openid-configuration` is discovered; the
    /// preset's when empty (required for `generic`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    /// Scopes asked for besides `openid`; the preset's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// What the provider will give, in plain words, shown before the member authorizes; the
    /// preset's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocialPreset {
    #[default]
    Generic,
    Google,
    Facebook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransportKind {
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("covenant-data"),
            database_url: String::new(),
            keys_database_url: String::new(),
            base_url: "http://127.0.0.1:8080".into(),
            site_name: "Covenant Forum".into(),
            max_body_bytes: 256 * 1024,
            db_max_connections: 8,
            trust_forwarded_for: false,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            argon2: Argon2Config::default(),
            session: SessionConfig::default(),
            mail: MailConfig::default(),
            audit_key_file: PathBuf::new(),
            audit_anchor_file: PathBuf::new(),
            policy_file: PathBuf::new(),
            operator: OperatorConfig::default(),
            retention: RetentionConfig::default(),
            requests: RequestsConfig::default(),
            social_providers: Vec::new(),
            moderation: ModerationConfig::default(),
            rate_limits: RateLimitConfig::default(),
            page_cache: PageCacheConfig::default(),
        }
    }
}

impl Default for Argon2Config {
    /// OWASP's recommended argon2id settings: 19 MiB, two passes, one lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_age_days: 30,
            reauthenticate_after_hours: 12,
            idle_timeout_minutes: 0,
            secure_cookies: None,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransportKind::File,
            from: "Covenant Forum <forum@localhost>".into(),
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_security: SmtpSecurity::Starttls,
            poll_seconds: 5,
            lease_seconds: 120,
            worker: true,
        }
    }
}

impl Config {
    /// Builds the configuration from the optional file and the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// Builds the configuration from the optional file and the given environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut table = toml::Table::try_from(Config::default()).context("encoding defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration file {}", path.display()))?;
            let from_file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("in the configuration file {}", path.display()))?;
            // Deserialize once on its own so that unknown keys are reported against the file.
            let _: Config = from_file
                .clone()
                .try_into()
                .with_context(|| format!("in the configuration file {}", path.display()))?;
            merge(&mut table, from_file);
        }
        for (name, value) in env {
            let Some(path) = name.strip_prefix("COVENANT_") else {
                continue;
            };
            // Variables that are flags of the command line, not settings; `COVENANT_TEST_*`
            // belong to the test suite (database, chromedriver) and reach the binary it runs.
            if matches!(path, "CONFIG" | "LOG_FORMAT") || path.starts_with("TEST_") {
                continue;
            }
            apply_env(&mut table, &path.to_ascii_lowercase(), &value)
                .and_then(|()| Ok(table.clone().try_into::<Config>().map(|_| ())?))
                .with_context(|| format!("in the environment variable {name}"))?;
        }
        let config: Config = table.try_into().context("reading the configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks settings that must agree with each other; called again after flags are applied.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.database_url.is_empty()
            && !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
            && !self.database_url.starts_with("sqlite:")
        {
            bail!("database_url must start with postgres://, postgresql:// or sqlite:");
        }
        if !self.keys_database_url.is_empty()
            && !self.keys_database_url.starts_with("postgres://")
            && !self.keys_database_url.starts_with("postgresql://")
            && !self.keys_database_url.starts_with("sqlite:")
        {
            bail!("keys_database_url must start with postgres://, postgresql:// or sqlite:");
        }
        if !self.base_url.starts_with("http://") && !self.base_url.starts_with("https://") {
            bail!("base_url must start with http:// or https://");
        }
        if self.tls_cert.as_os_str().is_empty() != self.tls_key.as_os_str().is_empty() {
            bail!("tls_cert and tls_key go together: set both to serve HTTPS, or neither");
        }
        if self.mail.transport == MailTransportKind::Smtp && self.mail.smtp_host.is_empty() {
            bail!("mail.smtp_host is required when mail.transport is smtp");
        }
        for day in &self.requests.holidays {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            if time::Date::parse(day, &format).is_err() {
                bail!("requests.holidays must be days such as 2026-12-25");
            }
        }
        if self.requests.unverified_close_days < 1 || self.requests.code_attempts < 1 {
            bail!("requests.unverified_close_days and requests.code_attempts must be at least 1");
        }
        if self.session.max_age_days < 1 {
            bail!("session.max_age_days must be at least 1");
        }
        if self.session.reauthenticate_after_hours < 1 {
            bail!("session.reauthenticate_after_hours must be at least 1");
        }
        if self.session.idle_timeout_minutes != 0 && self.session.idle_timeout_minutes < 10 {
            bail!("session.idle_timeout_minutes must be 0 (off) or at least 10");
        }
        if self
            .retention
            .default_jurisdiction
            .parse::<covenant_core::policy::Jurisdiction>()
            .is_err()
        {
            bail!(
                "retention.default_jurisdiction must be one of eu_eea, uk, california, nevada, virginia, colorado, connecticut, montana, oregon, texas, utah or other"
            );
        }
        if self.retention.sweep_batch < 1 {
            bail!("retention.sweep_batch must be at least 1");
        }
        if self.retention.stats_flush_seconds < 1 {
            bail!("retention.stats_flush_seconds must be at least 1");
        }
        if self.page_cache.seconds > crate::web::page_cache::MAX_SECONDS {
            bail!(
                "page_cache.seconds must be at most {}",
                crate::web::page_cache::MAX_SECONDS
            );
        }
        let limits = &self.rate_limits;
        if [
            limits.window_minutes,
            limits.failures_per_account,
            limits.failures_per_client,
            limits.registrations_per_client_per_hour,
            limits.resets_per_address_per_hour,
            limits.resets_per_client_per_hour,
            limits.first_wait_seconds,
            limits.forget_after_hours,
        ]
        .iter()
        .any(|value| *value < 1)
            || limits.max_wait_seconds < limits.first_wait_seconds
        {
            bail!(
                "rate_limits settings must be at least 1, and max_wait_seconds at least first_wait_seconds"
            );
        }
        if self.requests.per_address_per_hour < 1 || self.requests.per_ip_per_hour < 1 {
            bail!("requests.per_address_per_hour and requests.per_ip_per_hour must be at least 1");
        }
        let contact = self.operator.security_contact.trim();
        if !contact.is_empty()
            && !contact.starts_with("mailto:")
            && !contact.starts_with("https://")
            && !contact.starts_with("tel:")
        {
            bail!("operator.security_contact must be a mailto:, https: or tel: URI");
        }
        self.moderation.filter()?;
        Ok(())
    }

    /// Whether session cookies carry the `Secure` flag.
    pub fn secure_cookies(&self) -> bool {
        self.session
            .secure_cookies
            .unwrap_or_else(|| self.base_url.starts_with("https://") || self.native_tls())
    }

    /// Whether the server answers HTTPS itself (`tls_cert` and `tls_key` are set).
    pub fn native_tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty()
    }

    /// Where the audit log's key is kept.
    pub fn audit_key_path(&self) -> PathBuf {
        if self.audit_key_file.as_os_str().is_empty() {
            self.data_dir.join("audit.key")
        } else {
            self.audit_key_file.clone()
        }
    }

    /// Where this node's audit anchor is kept.
    pub fn audit_anchor_path(&self) -> PathBuf {
        if self.audit_anchor_file.as_os_str().is_empty() {
            self.audit_key_path().with_file_name("audit.anchor")
        } else {
            self.audit_anchor_file.clone()
        }
    }

    /// Whether the forum is reached over TLS (native TLS, an `https://` base URL, or cookies
    /// forced `Secure` behind a proxy that terminates TLS): browsers are then told to use
    /// nothing else (HSTS). A plain-HTTP server with an `http://` base URL never sends it.
    pub fn served_over_tls(&self) -> bool {
        self.secure_cookies()
    }

    /// The `Contact:` URI of security.txt: the configured one, else `mailto:` the privacy email.
    pub fn security_contact(&self) -> Option<String> {
        let explicit = self.operator.security_contact.trim();
        if !explicit.is_empty() {
            return Some(explicit.to_string());
        }
        let privacy = self.operator.privacy_email.trim();
        (!privacy.is_empty()).then(|| format!("mailto:{privacy}"))
    }

    /// The base URL without a trailing slash, for building links.
    pub fn base_url(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Sets the setting named by `path` (`mail_smtp_host`) from an environment string, keeping the
/// setting's type. Section names are matched first so that `mail_smtp_host` finds `[mail]`;
/// a key with no default (an optional setting) is written as given and checked when the whole
/// configuration is read.
fn apply_env(table: &mut toml::Table, path: &str, raw: &str) -> anyhow::Result<()> {
    if let Some(existing) = table.get(path) {
        let value = match existing {
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.parse().context("expected a number")?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(raw.parse().context("expected true or false")?)
            }
            // Lists of words: `a.example, b.example`.
            toml::Value::Array(_) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .map(|entry| toml::Value::String(entry.to_string()))
                    .collect(),
            ),
            _ => toml::Value::String(raw.to_string()),
        };
        table.insert(path.to_string(), value);
        return Ok(());
    }
    for (section, value) in table.iter_mut() {
        if let (Some(rest), toml::Value::Table(inner)) =
            (path.strip_prefix(&format!("{section}_")), value)
        {
            if !inner.contains_key(rest)
                && !inner.keys().any(|k| rest.starts_with(&format!("{k}_")))
            {
                let value = raw
                    .parse::<bool>()
                    .map(toml::Value::Boolean)
                    .unwrap_or_else(|_| toml::Value::String(raw.to_string()));
                inner.insert(rest.to_string(), value);
                return Ok(());
            }
            return apply_env(inner, rest, raw);
        }
    }
    bail!("no such setting")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The page cache's lifetime comes from the environment like any setting, and a lifetime
    /// that would outlive the visitors' form token's margin is refused.
    #[test]
    fn page_cache_seconds_are_set_and_capped() {
        let config = Config::load_from(None, env(&[("COVENANT_PAGE_CACHE_SECONDS", "0")])).unwrap();
        assert_eq!(config.page_cache.seconds, 0);
        assert_eq!(Config::default().page_cache.seconds, 1);
        let error = format!(
            "{:#}",
            Config::load_from(None, env(&[("COVENANT_PAGE_CACHE_SECONDS", "3600")])).unwrap_err()
        );
        assert!(error.contains("page_cache.seconds"), "{error}");
    }

    #[test]
    fn test_suite_variables_are_not_settings() {
        let config = Config::load_from(
            None,
            env(&[
                (
                    "COVENANT_TEST_DATABASE_URL",
                    "postgres://x@127.0.0.1/postgres",
                ),
                ("COVENANT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
            ]),
        )
        .unwrap();
        assert!(config.database_url.is_empty());
    }

    #[test]
    fn defaults_run_a_local_forum_on_sqlite() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config.bind, "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("covenant-data"));
        assert!(config.database_url.is_empty());
        assert!(!config.secure_cookies());
    }

    #[test]
    fn the_environment_overrides_the_file_and_keeps_types() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("covenant.toml");
        std::fs::write(&file, "site_name = \"From file\"\n[mail]\nsmtp_port = 25\n").unwrap();
        let config = Config::load_from(
            Some(&file),
            env(&[
                ("COVENANT_MAIL_SMTP_PORT", "2525"),
                ("COVENANT_ARGON2_MEMORY_KIB", "4096"),
                ("COVENANT_SESSION_SECURE_COOKIES", "true"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.site_name, "From file");
        assert_eq!(config.mail.smtp_port, 2525);
        assert_eq!(config.argon2.memory_kib, 4096);
        assert!(config.secure_cookies());
    }

    #[test]
    fn unknown_settings_and_bad_values_are_refused_with_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("covenant.toml");
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        let error = format!(
            "{:#}",
            Config::load_from(Some(&file), env(&[])).unwrap_err()
        );
        assert!(
            error.contains("covenant.toml") && error.contains("colour"),
            "{error}"
        );

        let error = format!(
            "{:#}",
            Config::load_from(None, env(&[("COVENANT_MAIL_SMTP_PORT", "many")])).unwrap_err()
        );
        assert!(error.contains("COVENANT_MAIL_SMTP_PORT"), "{error}");

        let error = format!(
            "{:#}",
            Config::load_from(None, env(&[("COVENANT_DATABASE_URL", "mysql://x")])).unwrap_err()
        );
        assert!(error.contains("database_url"), "{error}");
    }

    #[test]
    fn moderation_lists_come_from_the_file_or_as_commas_from_the_environment() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert!(config.moderation.unsafe_domains.is_empty());
        assert!(config.moderation.spam_patterns.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("covenant.toml");
        std::fs::write(
            &file,
            "[moderation]\nunsafe_domains = [\"spam.example\"]\nspam_patterns = [\"cheap pills\"]\n",
        )
        .unwrap();
        let config = Config::load_from(Some(&file), env(&[])).unwrap();
        assert_eq!(config.moderation.unsafe_domains, ["spam.example"]);
        assert_eq!(config.moderation.spam_patterns, ["cheap pills"]);

        let config = Config::load_from(
            Some(&file),
            env(&[(
                "COVENANT_MODERATION_UNSAFE_DOMAINS",
                "junk.example, *.more.example,",
            )]),
        )
        .unwrap();
        assert_eq!(
            config.moderation.unsafe_domains,
            ["junk.example", "*.more.example"]
        );
        assert_eq!(config.moderation.spam_patterns, ["cheap pills"]);

        let error = format!(
            "{:#}",
            Config::load_from(
                None,
                env(&[(
                    "COVENANT_MODERATION_UNSAFE_DOMAINS",
                    "ok.example,not a domain"
                )])
            )
            .unwrap_err()
        );
        assert!(
            error.contains("moderation.unsafe_domains") && error.contains("entry 2"),
            "{error}"
        );
    }

    #[test]
    fn operator_facts_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("covenant.toml");
        std::fs::write(&file, "[operator]\nname = \"Door Sensors Ltd\"\n").unwrap();
        let config = Config::load_from(
            Some(&file),
            env(&[
                ("COVENANT_OPERATOR_PRIVACY_EMAIL", "privacy@doors.example"),
                ("COVENANT_POLICY_FILE", "/etc/covenant/policy.toml"),
            ]),
        )
        .unwrap();
        let facts = config.operator.facts();
        assert_eq!(facts.name.as_deref(), Some("Door Sensors Ltd"));
        assert_eq!(
            facts.privacy_email.as_deref(),
            Some("privacy@doors.example")
        );
        assert_eq!(facts.address, None);
        assert_eq!(
            config.policy_file,
            PathBuf::from("/etc/covenant/policy.toml")
        );
    }
}
