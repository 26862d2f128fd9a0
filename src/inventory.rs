//! The personal-data inventory: every table and column of the schema, declared once, saying
//! which columns hold personal data, under which policy category, and how each row links to
//! its subject. Export, erasure and the retention sweep walk this list; none keeps its own.
//!
//! `tests/inventory.rs` compares it with the live schema of both stores, so a column added by a
//! migration without a line here fails the build. It is pure data: it must never run SQL.

/// How a table's rows belong to a data subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The table holds nobody's personal data (forum structure, settings, policy versions).
    Nobody,
    /// The table of subjects itself: the row whose `column` is the subject's id.
    Subject { column: &'static str },
    /// A direct column holding the subject's user id.
    UserId { column: &'static str },
    /// A text column naming the subject as `account:<user id>` (consent evidence).
    AccountSubject { column: &'static str },
    /// A join path: `column` holds one of the ids `ids` selects, where `$1` is the user id.
    Through {
        column: &'static str,
        ids: &'static str,
    },
    /// A text column holding `prefix` followed by the keyed hash of the subject's address in
    /// lower case (`sealing::Sealing::lookup`): the address itself is sealed beside it.
    EmailKey {
        column: &'static str,
        prefix: &'static str,
    },
    /// Identifiers only (who acted, about whom), no personal value; kept on erasure because it
    /// is the evidence that the forum kept its promises (the audit log, the erasure ledger).
    IdsOnly,
}

/// What happens to a table's rows of an erased subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// The record of how a privacy request was handled: exported, and kept by erasure for the
    /// policy's fixed period of its category (proof of compliance); the sweep ends it.
    Evidence,
    /// Rows are deleted when every personal column's category says "delete".
    Removable,
    /// Other people's rows point at these (a reply at its topic, a post at its author): the row
    /// stays and its personal columns are blanked or anonymized in place.
    Kept,
}

/// The column's SQL type, as far as the `Any` driver is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bytes,
}

/// What replaces a personal value that is erased in a kept row. `{id}` is the subject's id, so
/// unique columns stay unique without keeping anything of the old value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blank {
    Text(&'static str),
    /// The text followed by the row's key, for columns unique across rows (a blog slug).
    TextAndKey(&'static str),
    Int(i64),
    Null,
}

/// How a column of a category the policy anonymizes is anonymized in a kept row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymize {
    /// Replaced by the blank value (the author's name becomes "deleted user").
    Blank,
    /// Public text that stays: it is kept as written unless the subject asked for removal.
    KeepText,
    /// HTML rendered from the Markdown column named here; re-rendered after a rewrite.
    RenderedFrom(&'static str),
}

/// Where public text may mention a member by name, so that erasure rewrites it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mentions {
    No,
    Anywhere,
    /// Only rows matching this condition, `$2` being the time the account was made: nobody
    /// mentions a name before it is theirs.
    Since(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Personal {
    /// A category key of the policy (`user.contact.email`); its retention rule and "then"
    /// (delete or anonymize) come from the policy in force.
    pub category: &'static str,
    pub blank: Blank,
    pub anonymize: Anonymize,
    /// Public text where other members may have mentioned the subject (`@username`).
    pub mentions: Mentions,
    /// A live secret left out of export archives: whoever held the archive could act as the
    /// subject with it. The archive says it exists and is withheld.
    pub withheld: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Not about a person: structure, counters, flags, times of non-personal events.
    NonPersonal,
    /// An identifier of a member (the link itself, an author, a moderator): no personal value
    /// on its own; its row goes or stays as the row's table says.
    Reference,
    Personal(Personal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub data: Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub link: Link,
    pub rows: Rows,
    /// The column that orders the subject's rows in an export, and names a row in CSV files.
    pub key: &'static str,
    /// Set to the erasure time when the subject asked for their content to be removed too.
    pub tombstone: Option<&'static str>,
    pub columns: &'static [Column],
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn personal_columns(&self) -> impl Iterator<Item = (&'static Column, Personal)> + '_ {
        self.columns.iter().filter_map(|c| match c.data {
            Data::Personal(p) => Some((c, p)),
            _ => None,
        })
    }

    /// Whether erasure and export have anything to do here.
    pub fn holds_personal_data(&self) -> bool {
        self.personal_columns().next().is_some()
    }

    /// Whether export and erasure visit the subject's rows here: the table holds personal
    /// data, or erasure marks its rows (a tombstone: `posts`, whose text is in `post_bodies`,
    /// are exported with their places and times and marked deleted when their text goes).
    pub fn concerns_subject(&self) -> bool {
        self.holds_personal_data() || self.tombstone.is_some()
    }
}

const fn plain(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        data: Data::NonPersonal,
    }
}

const fn reference(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
        data: Data::Reference,
    }
}

const fn personal(name: &'static str, kind: Kind, category: &'static str, blank: Blank) -> Column {
    Column {
        name,
        kind,
        data: Data::Personal(Personal {
            category,
            blank,
            anonymize: Anonymize::Blank,
            mentions: Mentions::No,
            withheld: false,
        }),
    }
}

const fn withheld(name: &'static str, category: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
        data: Data::Personal(Personal {
            category,
            blank: Blank::Text(""),
            anonymize: Anonymize::Blank,
            mentions: Mentions::No,
            withheld: true,
        }),
    }
}

/// Public text that stays on anonymization (with mentions of erased members rewritten).
const fn public_text(name: &'static str, blank: &'static str, since: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
        data: Data::Personal(Personal {
            category: CONTENT,
            blank: Blank::Text(blank),
            anonymize: Anonymize::KeepText,
            mentions: Mentions::Since(since),
            withheld: false,
        }),
    }
}

pub const USERNAME: &str = "user.account.username";
pub const EMAIL: &str = "user.contact.email";
pub const CREDENTIALS: &str = "user.authorization.credentials";
const BIRTH_YEAR: &str = "user.account.birth_year";
pub const IP: &str = "user.device.ip_address";
pub const USER_AGENT: &str = "user.device.user_agent";
const CONTENT: &str = "user.content.public";
const CONSENT: &str = "user.behavior.consent";
pub const REQUESTS: &str = "user.privacy_request.details";
pub const PRIVATE: &str = "user.content.private";
const SOCIAL: &str = "user.social.profile";
const SUBMISSIONS_OF_SUBJECT: &str =
    "SELECT id FROM privacy_submissions WHERE subject_user_id = $1";

use Kind::{Bytes, Int, Text};

const fn nobody(name: &'static str, key: &'static str, columns: &'static [Column]) -> Table {
    Table {
        name,
        link: Link::Nobody,
        rows: Rows::Removable,
        key,
        tombstone: None,
        columns,
    }
}

const fn owned(
    name: &'static str,
    user_column: &'static str,
    key: &'static str,
    columns: &'static [Column],
) -> Table {
    Table {
        name,
        link: Link::UserId {
            column: user_column,
        },
        rows: Rows::Removable,
        key,
        tombstone: None,
        columns,
    }
}

/// Every table of the schema (migrations 0001 to 0019).
pub static TABLES: &[Table] = &[
    nobody(
        "settings",
        "key",
        &[plain("key", Text), plain("value", Text)],
    ),
    Table {
        name: "users",
        link: Link::Subject { column: "id" },
        rows: Rows::Kept,
        key: "id",
        tombstone: None,
        columns: &[
            reference("id"),
            Column {
                name: "username",
                kind: Text,
                data: Data::Personal(Personal {
                    category: USERNAME,
                    blank: Blank::Text("deleted user"),
                    anonymize: Anonymize::Blank,
                    mentions: Mentions::No,
                    withheld: false,
                }),
            },
            personal(
                "username_lower",
                Text,
                USERNAME,
                Blank::Text("deleted user {id}"),
            ),
            // Sealed with the member's key (`SEALED`).
            personal("email", Text, EMAIL, Blank::Text("erased-{id}@invalid")),
            // The keyed hash of the address in lower case (`sealing::Sealing::lookup`), for
            // sign-in, registration's uniqueness and request intake; never the address.
            personal(
                "email_lookup",
                Text,
                EMAIL,
                Blank::Text("erased-{id}@invalid"),
            ),
            personal("password_hash", Text, CREDENTIALS, Blank::Text("!")),
            // Sealed with the member's key (`SEALED`): the year in decimal (0035).
            personal("birth_year", Text, BIRTH_YEAR, Blank::Text("")),
            plain("role", Text),
            // Public, but about the person rather than a discussion: blanked, never kept.
            Column {
                name: "bio",
                kind: Text,
                data: Data::Personal(Personal {
                    category: CONTENT,
                    blank: Blank::Text(""),
                    anonymize: Anonymize::Blank,
                    mentions: Mentions::Anywhere,
                    withheld: false,
                }),
            },
            plain("email_verified_at", Int),
            plain("created_at", Int),
            plain("password_changed_at", Int),
            plain("erased_at", Int),
            plain("last_active_at", Int),
            plain("news_subscribed_at", Int),
            plain("news_ended_at", Int),
            plain("closed_at", Int),
            plain("closed_reason", Text),
            // When the sweep warned of closure for inactivity (0042).
            plain("inactivity_warned_at", Int),
            // Where the member lives decides their rights: asked with a privacy request.
            personal("jurisdiction", Text, REQUESTS, Blank::Null),
            plain("restricted_at", Int),
            plain("anonymized_at", Int),
            // Residence, asked for the age and rights rules. The policy has no location
            // category yet; it is filed with the privacy-request details it decides.
            personal("country", Text, REQUESTS, Blank::Null),
            personal("us_state", Text, REQUESTS, Blank::Null),
            plain("parent_consent_needed", Int),
            plain("parent_consented_at", Int),
            plain("parent_allows_news", Int),
        ],
    },
    owned(
        "sessions",
        "user_id",
        "created_at",
        &[
            personal("token_hash", Text, CREDENTIALS, Blank::Text("")),
            reference("user_id"),
            withheld("csrf_token", CREDENTIALS),
            plain("created_at", Int),
            plain("last_seen_at", Int),
            plain("expires_at", Int),
            personal("ip", Text, IP, Blank::Text("")),
            personal("user_agent", Text, USER_AGENT, Blank::Text("")),
            plain("authenticated_at", Int),
        ],
    ),
    owned(
        "sign_ins",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            plain("at", Int),
            personal("ip", Text, IP, Blank::Text("")),
            personal("user_agent", Text, USER_AGENT, Blank::Text("")),
        ],
    ),
    owned(
        "account_tokens",
        "user_id",
        "created_at",
        &[
            personal("token_hash", Text, CREDENTIALS, Blank::Text("")),
            reference("user_id"),
            plain("purpose", Text),
            plain("created_at", Int),
            plain("expires_at", Int),
            plain("used_at", Int),
            // The address an email change waits to confirm (0037), sealed with the member's
            // key (`SEALED`); blank on other tokens.
            personal("new_email", Text, EMAIL, Blank::Text("")),
        ],
    ),
    nobody(
        "categories",
        "id",
        &[
            plain("id", Int),
            plain("slug", Text),
            plain("name", Text),
            plain("description", Text),
            plain("position", Int),
        ],
    ),
    Table {
        name: "topics",
        link: Link::UserId { column: "user_id" },
        rows: Rows::Kept,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            plain("kind", Text),
            plain("category_id", Int),
            reference("user_id"),
            public_text("title", "[deleted]", "last_posted_at >= $2"),
            Column {
                name: "slug",
                kind: Text,
                data: Data::Personal(Personal {
                    category: CONTENT,
                    blank: Blank::TextAndKey("deleted-"),
                    anonymize: Anonymize::KeepText,
                    mentions: Mentions::No,
                    withheld: false,
                }),
            },
            plain("created_at", Int),
            plain("last_posted_at", Int),
            plain("n_posts", Int),
            plain("hidden", Int),
        ],
    },
    Table {
        name: "posts",
        link: Link::UserId { column: "user_id" },
        rows: Rows::Kept,
        key: "id",
        tombstone: Some("deleted_at"),
        columns: &[
            plain("id", Int),
            plain("topic_id", Int),
            reference("user_id"),
            plain("post_number", Int),
            plain("created_at", Int),
            plain("edited_at", Int),
            plain("hidden_at", Int),
            reference("hidden_by"),
            plain("deleted_at", Int),
            plain("restricted_at", Int),
            // The moderation state of the post, and why the check held it: a word from a
            // fixed list (`unsafe_link`, `spam_pattern`), never the text that matched.
            plain("held_at", Int),
            plain("held_reason", Text),
        ],
    },
    // A post's text (0043), apart from the post so that the sweep's rewrites of posts (giving
    // them to the deleted user) do not write their text again. Its rows are the subject's
    // through the posts they wrote; a post given to the deleted user keeps its text, which is
    // then nobody's.
    Table {
        name: "post_bodies",
        link: Link::Through {
            column: "post_id",
            ids: "SELECT id FROM posts WHERE user_id = $1",
        },
        rows: Rows::Kept,
        key: "post_id",
        tombstone: None,
        columns: &[
            plain("post_id", Int),
            // Only posts written in topics active since the account was made, or edited since,
            // can mention it: each side of the OR has its index (the topics' recency, the
            // partial index of edited posts) instead of a walk over every post.
            public_text(
                "body_md",
                "",
                "post_id IN (SELECT id FROM posts WHERE (created_at >= $2 AND topic_id IN \
                 (SELECT id FROM topics WHERE last_posted_at >= $2)) OR edited_at >= $2)",
            ),
            Column {
                name: "body_html",
                kind: Text,
                data: Data::Personal(Personal {
                    category: CONTENT,
                    blank: Blank::Text(""),
                    anonymize: Anonymize::RenderedFrom("body_md"),
                    mentions: Mentions::No,
                    withheld: false,
                }),
            },
        ],
    },
    // The author's device when a post was written, apart from the post so that minimizing it
    // changes a narrow row, not the post. `user_id` is the author then (a post given to the
    // deleted user loses its row here).
    owned(
        "post_devices",
        "user_id",
        "post_id",
        &[
            plain("post_id", Int),
            reference("user_id"),
            personal("ip", Text, IP, Blank::Text("")),
            personal("user_agent", Text, USER_AGENT, Blank::Text("")),
            plain("created_at", Int),
        ],
    ),
    owned(
        "mail_outbox",
        "user_id",
        "id",
        &[
            plain("id", Int),
            plain("idempotency_key", Text),
            personal("recipient", Text, EMAIL, Blank::Text("")),
            reference("user_id"),
            personal("subject", Text, EMAIL, Blank::Text("")),
            personal("body_text", Text, EMAIL, Blank::Text("")),
            plain("created_at", Int),
            plain("attempts", Int),
            plain("next_attempt_at", Int),
            plain("claimed_until", Int),
            plain("sent_at", Int),
            plain("last_error", Text),
            personal("list_unsubscribe", Text, EMAIL, Blank::Null),
            plain("withheld_at", Int),
            // Why it was withheld: 'restricted' or 'account closed' (0040).
            plain("withheld_reason", Text),
            // The privacy-request submission whose key seals the body (0034).
            plain("submission_id", Int),
            // The keyed hash of the address of mail to a person without an account, whose
            // address is sealed (0041): erasure by address finds the mail by it.
            personal("recipient_lookup", Text, EMAIL, Blank::Text("")),
        ],
    ),
    nobody(
        "policy_versions",
        "id",
        &[
            plain("id", Int),
            plain("version_label", Text),
            plain("effective_on", Text),
            plain("published_at", Int),
            plain("toml_text", Text),
            plain("sha256", Text),
            plain("material", Int),
            plain("diff_json", Text),
        ],
    ),
    owned(
        "policy_acknowledgements",
        "user_id",
        "version_id",
        &[
            reference("user_id"),
            plain("version_id", Int),
            personal("acknowledged_at", Int, CONSENT, Blank::Null),
        ],
    ),
    nobody(
        "policy_notice_runs",
        "version_id",
        &[
            plain("version_id", Int),
            plain("after_user_id", Int),
            plain("n_queued", Int),
            plain("created_at", Int),
            plain("finished_at", Int),
        ],
    ),
    Table {
        name: "consent_records",
        link: Link::AccountSubject { column: "subject" },
        rows: Rows::Removable,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            plain("receipt_id", Text),
            // The record is evidence about its subject; its other fields are words from closed
            // lists, exported with it as its context.
            personal("subject", Text, CONSENT, Blank::Text("")),
            plain("category", Text),
            plain("choice", Text),
            plain("method", Text),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("recorded_at", Int),
        ],
    },
    Table {
        name: "consent_gpc",
        link: Link::AccountSubject { column: "subject" },
        rows: Rows::Removable,
        key: "record_id",
        tombstone: None,
        columns: &[
            personal("subject", Text, CONSENT, Blank::Text("")),
            plain("record_id", Int),
            plain("first_seen_at", Int),
        ],
    },
    Table {
        name: "audit_log",
        link: Link::IdsOnly,
        rows: Rows::Kept,
        key: "seq",
        tombstone: None,
        columns: &[
            plain("seq", Int),
            plain("at", Int),
            reference("actor_id"),
            reference("subject_id"),
            plain("kind", Text),
            plain("details", Text),
            plain("prev_hash", Text),
            plain("entry_hash", Text),
            plain("mac", Text),
        ],
    },
    nobody(
        "audit_head",
        "id",
        &[
            plain("id", Int),
            plain("seq", Int),
            plain("hash", Text),
            plain("mac", Text),
        ],
    ),
    owned(
        "two_factor",
        "user_id",
        "created_at",
        &[
            reference("user_id"),
            withheld("secret", CREDENTIALS),
            plain("created_at", Int),
            plain("enabled_at", Int),
            plain("last_used_step", Int),
        ],
    ),
    owned(
        "recovery_codes",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            personal("code_hash", Text, CREDENTIALS, Blank::Text("")),
            plain("created_at", Int),
            plain("used_at", Int),
        ],
    ),
    owned(
        "export_archives",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            personal("token_hash", Text, CREDENTIALS, Blank::Text("")),
            plain("file_name", Text),
            personal("jurisdiction", Text, REQUESTS, Blank::Text("")),
            plain("created_at", Int),
            plain("expires_at", Int),
            plain("downloaded_at", Int),
            plain("purged_at", Int),
            // An archive awaiting its download: a later archive says it exists rather
            // than nesting it.
            Column {
                name: "content",
                kind: Bytes,
                data: Data::Personal(Personal {
                    category: REQUESTS,
                    blank: Blank::Null,
                    anonymize: Anonymize::Blank,
                    mentions: Mentions::No,
                    withheld: true,
                }),
            },
        ],
    ),
    // Erasures by address (people without an account): the keyed hash of the address, which
    // names no one without the audit key file, kept as the proof that makes a restored backup
    // erased again.
    Table {
        name: "address_erasures",
        link: Link::IdsOnly,
        rows: Rows::Kept,
        key: "lookup",
        tombstone: None,
        columns: &[plain("lookup", Text), plain("erased_at", Int)],
    },
    Table {
        name: "erasure_ledger",
        link: Link::IdsOnly,
        rows: Rows::Kept,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            reference("user_id"),
            plain("erased_at", Int),
            plain("content", Text),
        ],
    },
    owned(
        "parental_consents",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            // The parent's address, held about the minor's account.
            personal("parent_email", Text, EMAIL, Blank::Text("")),
            personal("token_hash", Text, CREDENTIALS, Blank::Text("")),
            plain("requested_at", Int),
            plain("expires_at", Int),
            plain("consented_at", Int),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("news_allowed", Int),
            // The keyed hash of the parent's address in lower case (0034).
            personal("parent_email_lookup", Text, EMAIL, Blank::Text("")),
        ],
    ),
    owned(
        "news_subscriptions",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            personal("subscribed", Int, CONSENT, Blank::Int(0)),
            plain("method", Text),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("recorded_at", Int),
        ],
    ),
    // What a member follows is theirs alone (nobody else sees it): private content.
    owned(
        "topic_follows",
        "user_id",
        "created_at",
        &[
            reference("user_id"),
            personal("topic_id", Int, PRIVATE, Blank::Int(0)),
            plain("created_at", Int),
        ],
    ),
    owned(
        "digest_subscriptions",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            personal("subscribed", Int, CONSENT, Blank::Int(0)),
            plain("method", Text),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("recorded_at", Int),
        ],
    ),
    // The digests sent: up to which post a member was told about the topics they follow.
    owned(
        "digest_sends",
        "user_id",
        "period",
        &[
            reference("user_id"),
            plain("period", Int),
            personal("up_to_post_id", Int, PRIVATE, Blank::Int(0)),
            plain("sent_at", Int),
        ],
    ),
    // Restrictions of processing asked for by the subject (R9), and who lifted them.
    owned(
        "processing_restrictions",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            plain("request_id", Int),
            personal("started_at", Int, REQUESTS, Blank::Int(0)),
            plain("lifted_at", Int),
            reference("lifted_by"),
            plain("lifted_how", Text),
        ],
    ),
    nobody(
        "newsletters",
        "id",
        &[
            plain("id", Int),
            plain("digest", Text),
            plain("subject", Text),
            plain("body_text", Text),
            plain("created_at", Int),
        ],
    ),
    owned(
        "feedback",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            personal("body", Text, PRIVATE, Blank::Text("")),
            plain("may_publish", Int),
            plain("may_name", Int),
            plain("created_at", Int),
            plain("published_at", Int),
            reference("published_by"),
        ],
    ),
    // A sign-in started on the consent page and waiting (ten minutes at most) for the provider's
    // redirect; user_id is set only when a member links a provider.
    owned(
        "social_flows",
        "user_id",
        "created_at",
        &[
            personal("state_hash", Text, CREDENTIALS, Blank::Text("")),
            plain("provider", Text),
            withheld("pkce_verifier", CREDENTIALS),
            withheld("nonce", CREDENTIALS),
            reference("user_id"),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("created_at", Int),
            plain("expires_at", Int),
        ],
    ),
    // A provider account waiting (an hour at most) for its registration form; no member yet,
    // so it is found by the keyed hash of the address the provider gave (0041): the address
    // and the provider account's id are sealed under the row's own key.
    Table {
        name: "social_pending",
        link: Link::EmailKey {
            column: "email_lookup",
            prefix: "",
        },
        rows: Rows::Removable,
        key: "authorized_at",
        tombstone: None,
        columns: &[
            personal("token_hash", Text, CREDENTIALS, Blank::Text("")),
            plain("provider", Text),
            personal("subject", Text, SOCIAL, Blank::Text("")),
            personal("email", Text, EMAIL, Blank::Text("")),
            plain("email_verified", Int),
            plain("fields_received", Text),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("authorized_at", Int),
            plain("expires_at", Int),
            personal("email_lookup", Text, EMAIL, Blank::Text("")),
        ],
    },
    // The data's source: which provider account, which claims (names only), and the member's
    // authorization (when, under which policy version and text).
    owned(
        "social_links",
        "user_id",
        "id",
        &[
            plain("id", Int),
            reference("user_id"),
            plain("provider", Text),
            personal("subject", Text, SOCIAL, Blank::Text("")),
            plain("fields_received", Text),
            plain("policy_version", Text),
            plain("text_hash", Text),
            plain("authorized_at", Int),
            plain("linked_at", Int),
            plain("last_sign_in_at", Int),
            // The keyed hash of the provider account's id (0034).
            personal("subject_lookup", Text, SOCIAL, Blank::Text("")),
        ],
    ),
    Table {
        name: "privacy_submissions",
        link: Link::UserId {
            column: "subject_user_id",
        },
        rows: Rows::Evidence,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            plain("channel", Text),
            plain("relationship", Text),
            personal("requester_name", Text, REQUESTS, Blank::Text("")),
            personal("requester_email", Text, REQUESTS, Blank::Text("")),
            personal("subject_email", Text, REQUESTS, Blank::Text("")),
            reference("subject_user_id"),
            reference("requester_user_id"),
            personal("region", Text, REQUESTS, Blank::Text("")),
            personal("postal_code", Text, REQUESTS, Blank::Text("")),
            personal("jurisdiction", Text, REQUESTS, Blank::Text("")),
            personal("comments", Text, REQUESTS, Blank::Text("")),
            personal("emailed_message", Text, REQUESTS, Blank::Null),
            reference("logged_by"),
            personal("subject_token_digest", Text, CREDENTIALS, Blank::Text("")),
            personal("requester_token_digest", Text, CREDENTIALS, Blank::Text("")),
            personal("code_digest", Text, CREDENTIALS, Blank::Null),
            plain("code_expires_at", Int),
            plain("code_attempts", Int),
            plain("subject_confirmed_at", Int),
            plain("verification", Text),
            plain("created_at", Int),
            // Which parent's consent stood as the evidence of parenthood (0015).
            personal("parental_consent_id", Int, REQUESTS, Blank::Null),
            // The keyed hashes of the two addresses in lower case (0034).
            personal("requester_email_lookup", Text, REQUESTS, Blank::Text("")),
            personal("subject_email_lookup", Text, REQUESTS, Blank::Text("")),
        ],
    },
    Table {
        name: "privacy_requests",
        link: Link::Through {
            column: "submission_id",
            ids: SUBMISSIONS_OF_SUBJECT,
        },
        rows: Rows::Evidence,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            plain("submission_id", Int),
            plain("right_name", Text),
            plain("jurisdiction", Text),
            plain("written_opt_out", Text),
            plain("state", Text),
            plain("verification", Text),
            plain("required_level", Text),
            plain("status_json", Text),
            plain("received_at", Int),
            plain("received_on", Text),
            plain("due_on", Text),
            plain("extended_due_on", Text),
            personal("extension_reason", Text, REQUESTS, Blank::Null),
            plain("appeal_due_on", Text),
            reference("assigned_to"),
            plain("decline_code", Text),
            personal("decision_text", Text, REQUESTS, Blank::Null),
            plain("closed_at", Int),
            plain("handed_to_fulfilment_at", Int),
            plain("next_reminder_at", Int),
            plain("reminders_sent", Int),
            plain("specific_pieces", Int),
            plain("nearly_due_alarm_at", Int),
            plain("overdue_alarm_at", Int),
            plain("updated_at", Int),
        ],
    },
    Table {
        name: "privacy_request_notes",
        link: Link::Through {
            column: "request_id",
            ids: "SELECT r.id FROM privacy_requests r JOIN privacy_submissions s \
                  ON s.id = r.submission_id WHERE s.subject_user_id = $1",
        },
        rows: Rows::Evidence,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            plain("request_id", Int),
            reference("author_id"),
            personal("body", Text, REQUESTS, Blank::Text("")),
            plain("created_at", Int),
        ],
    },
    Table {
        name: "privacy_request_evidence",
        link: Link::Through {
            column: "submission_id",
            ids: SUBMISSIONS_OF_SUBJECT,
        },
        rows: Rows::Evidence,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            plain("submission_id", Int),
            plain("content_type", Text),
            plain("size_bytes", Int),
            plain("sha256", Text),
            personal("content", Bytes, REQUESTS, Blank::Null),
            plain("uploaded_at", Int),
        ],
    },
    // Rate-limit counters (`rate_limit`): the key is an HMAC of a scope and a client address
    // or login under a key derived from the audit key file, which is outside the database; no
    // query can find a subject's rows, and each row is forgotten a day after its last event.
    Table {
        name: "rate_limits",
        link: Link::Nobody,
        rows: Rows::Removable,
        key: "key",
        tombstone: None,
        columns: &[
            plain("key", Text),
            plain("window_start", Int),
            plain("events", Int),
            plain("blocked_until", Int),
            plain("next_wait", Int),
            plain("updated_at", Int),
        ],
    },
    Table {
        name: "privacy_request_links",
        link: Link::Through {
            column: "submission_id",
            ids: SUBMISSIONS_OF_SUBJECT,
        },
        rows: Rows::Evidence,
        key: "created_at",
        tombstone: None,
        columns: &[
            personal("token_digest", Text, CREDENTIALS, Blank::Text("")),
            plain("submission_id", Int),
            plain("created_at", Int),
        ],
    },
    // Legal holds outlive the erasure of their subject: that is what they are for. The reason
    // is a claim reference written by staff, who must not put personal values in it.
    Table {
        name: "legal_holds",
        link: Link::IdsOnly,
        rows: Rows::Kept,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            reference("subject_user_id"),
            plain("categories", Text),
            plain("created_from", Text),
            plain("created_until", Text),
            plain("reason", Text),
            reference("created_by"),
            plain("created_at", Int),
            reference("released_by"),
            plain("released_at", Int),
        ],
    },
    // Disclosures to third parties and authorities (A3, 0019): evidence of the forum's
    // accountability, kept by erasure like the request records. A record whose notice the law
    // forbids is left out of the subject's rows (so out of their export) while it is so marked.
    Table {
        name: "disclosures",
        link: Link::Through {
            column: "id",
            ids: "SELECT id FROM disclosures WHERE subject_user_id = $1 AND notice_forbidden = 0",
        },
        rows: Rows::Evidence,
        key: "id",
        tombstone: None,
        columns: &[
            plain("id", Int),
            reference("subject_user_id"),
            plain("legal_basis", Text),
            personal("requesting_body", Text, REQUESTS, Blank::Text("")),
            personal("reference", Text, REQUESTS, Blank::Text("")),
            plain("categories", Text),
            plain("disclosed_on", Text),
            plain("notice_forbidden", Int),
            reference("approved_by"),
            plain("created_at", Int),
            plain("notified_at", Int),
        ],
    },
    nobody(
        "sweep_runs",
        "id",
        &[
            plain("id", Int),
            plain("open", Int),
            plain("as_of", Int),
            plain("started_at", Int),
            plain("after_user_id", Int),
            plain("n_subjects", Int),
            plain("n_restricted", Int),
            plain("n_deleted", Int),
            plain("n_anonymized", Int),
            plain("n_held", Int),
            plain("finished_at", Int),
        ],
    ),
    // Daily totals without any identifier (F2).
    nobody(
        "visit_counts",
        "day",
        &[
            plain("day", Text),
            plain("topic_id", Int),
            plain("browser", Text),
            plain("language", Text),
            plain("referrer", Text),
            plain("views", Int),
        ],
    ),
];

/// The declaration of one table, if the inventory has it.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// Every category key the inventory uses, in first-use order.
pub fn categories() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for table in TABLES {
        for (_, personal) in table.personal_columns() {
            if !keys.contains(&personal.category) {
                keys.push(personal.category);
            }
        }
    }
    keys
}

/// A column where an address alone finds a person who has no account: a visitor's privacy
/// request, a parent asked for consent, a provider sign-up never finished, mail sent to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressColumn {
    pub table: &'static str,
    /// Holds the address as typed or in lower case.
    pub column: &'static str,
    /// A column naming the member a row belongs to (a minor's parental consent): such rows
    /// are that member's and lose only the person's address and credentials.
    pub owner: Option<&'static str>,
    /// Where the column is sealed: the column holding the keyed hash of the address in lower
    /// case, which rows are matched by instead.
    pub lookup: Option<&'static str>,
}

/// A column sealed with its member's key (crate::sealing, R8): it holds `s1:…` (or a blank, or
/// a plain value from before sealing, sealed at start), and `member` names the column of the
/// same row holding the member's id.
#[derive(Debug, Clone, Copy)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub member: &'static str,
    /// The column of the same row holding the value's keyed hash, where rows are found by
    /// equality (`sealing::lookup_text` says what is hashed).
    pub lookup: Option<&'static str>,
}

/// Every sealed column. Export and transfer open them; erasure destroys the member's key.
pub static SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "users",
        column: "email",
        member: "id",
        lookup: None,
    },
    SealedColumn {
        table: "users",
        column: "birth_year",
        member: "id",
        lookup: None,
    },
    SealedColumn {
        table: "account_tokens",
        column: "new_email",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "sessions",
        column: "ip",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "sessions",
        column: "user_agent",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "sign_ins",
        column: "ip",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "sign_ins",
        column: "user_agent",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "post_devices",
        column: "ip",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "post_devices",
        column: "user_agent",
        member: "user_id",
        lookup: None,
    },
    // Mail to a member: its address and its subject line (which says what happened to the
    // member: a disclosure, a request's outcome). Mail to a person without an account is
    // sealed under its request's key or its own (SEALED_BY_SUBMISSION, SEALED_BY_ROW).
    SealedColumn {
        table: "mail_outbox",
        column: "recipient",
        member: "user_id",
        lookup: None,
    },
    SealedColumn {
        table: "mail_outbox",
        column: "subject",
        member: "user_id",
        lookup: None,
    },
    // A parent's address, held about the minor's account: under the minor's key, found by its
    // keyed hash (the parent's own requests, erasure by address).
    SealedColumn {
        table: "parental_consents",
        column: "parent_email",
        member: "user_id",
        lookup: Some("parent_email_lookup"),
    },
    // The provider account's id: social sign-in finds the member by its keyed hash.
    SealedColumn {
        table: "social_links",
        column: "subject",
        member: "user_id",
        lookup: Some("subject_lookup"),
    },
];

/// A column sealed under the key of a privacy-request submission (`sealing::submission`), not
/// of a member: request correspondence is evidence that erasure keeps, so it cannot die with
/// the member's key; the retention sweep destroys the key with the submission's records.
#[derive(Debug, Clone, Copy)]
pub struct SubmissionSealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub submission: SubmissionOf,
    /// The column of the same row holding the value's keyed hash (see [`SealedColumn`]).
    pub lookup: Option<&'static str>,
}

/// Where a row sealed per submission names its submission.
#[derive(Debug, Clone, Copy)]
pub enum SubmissionOf {
    /// A column of the same row holds the submission's id.
    Column(&'static str),
    /// A column of the same row holds a request's id; the request names the submission.
    Request(&'static str),
}

impl SubmissionOf {
    pub fn column(&self) -> &'static str {
        match self {
            Self::Column(c) | Self::Request(c) => c,
        }
    }
}

/// Every column sealed per submission. Export and transfer open them.
pub static SEALED_BY_SUBMISSION: &[SubmissionSealedColumn] = &[
    SubmissionSealedColumn {
        table: "privacy_submissions",
        column: "comments",
        submission: SubmissionOf::Column("id"),
        lookup: None,
    },
    SubmissionSealedColumn {
        table: "privacy_submissions",
        column: "emailed_message",
        submission: SubmissionOf::Column("id"),
        lookup: None,
    },
    SubmissionSealedColumn {
        table: "privacy_request_notes",
        column: "body",
        submission: SubmissionOf::Request("request_id"),
        lookup: None,
    },
    // Who asked and for whom: the addresses are found by their keyed hashes.
    SubmissionSealedColumn {
        table: "privacy_submissions",
        column: "requester_name",
        submission: SubmissionOf::Column("id"),
        lookup: None,
    },
    SubmissionSealedColumn {
        table: "privacy_submissions",
        column: "requester_email",
        submission: SubmissionOf::Column("id"),
        lookup: Some("requester_email_lookup"),
    },
    SubmissionSealedColumn {
        table: "privacy_submissions",
        column: "subject_email",
        submission: SubmissionOf::Column("id"),
        lookup: Some("subject_email_lookup"),
    },
    // The answer and the reason for more time, as written by staff to the requester.
    SubmissionSealedColumn {
        table: "privacy_requests",
        column: "decision_text",
        submission: SubmissionOf::Column("submission_id"),
        lookup: None,
    },
    SubmissionSealedColumn {
        table: "privacy_requests",
        column: "extension_reason",
        submission: SubmissionOf::Column("submission_id"),
        lookup: None,
    },
    // The body of a request's email (its decision, a template, a code), to anyone.
    SubmissionSealedColumn {
        table: "mail_outbox",
        column: "body_text",
        submission: SubmissionOf::Column("submission_id"),
        lookup: None,
    },
    // The address and subject line of a request's email to a person without an account (a
    // member's are under the member's key: SEALED, which opens and seals first).
    SubmissionSealedColumn {
        table: "mail_outbox",
        column: "recipient",
        submission: SubmissionOf::Column("submission_id"),
        lookup: Some("recipient_lookup"),
    },
    SubmissionSealedColumn {
        table: "mail_outbox",
        column: "subject",
        submission: SubmissionOf::Column("submission_id"),
        lookup: None,
    },
    // An agent's evidence file (bytes: `s1:`, the nonce and the ciphertext).
    SubmissionSealedColumn {
        table: "privacy_request_evidence",
        column: "content",
        submission: SubmissionOf::Column("submission_id"),
        lookup: None,
    },
];

/// A column sealed under a key of its own row (R8): a row that belongs to nobody yet (a
/// provider sign-up not finished) or to a person without an account (mail to them). The key
/// is named `prefix:` and the value of the row's `key` column (`sealing::row`); it is destroyed
/// when the row goes (taken, expired, erased), so no copy of the row opens after.
#[derive(Debug, Clone, Copy)]
pub struct RowSealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// The column naming the row, unique in its table.
    pub key: &'static str,
    pub prefix: &'static str,
    /// Rows where any of these columns is set are sealed under another key (their member's,
    /// their submission's): only the others are sealed under the row's.
    pub unless: &'static [&'static str],
    /// The column of the same row holding the value's keyed hash (see [`SealedColumn`]).
    pub lookup: Option<&'static str>,
}

/// Every column sealed per row.
pub static SEALED_BY_ROW: &[RowSealedColumn] = &[
    RowSealedColumn {
        table: "social_pending",
        column: "email",
        key: "token_hash",
        prefix: "social_pending",
        unless: &[],
        lookup: Some("email_lookup"),
    },
    RowSealedColumn {
        table: "social_pending",
        column: "subject",
        key: "token_hash",
        prefix: "social_pending",
        unless: &[],
        lookup: None,
    },
    RowSealedColumn {
        table: "mail_outbox",
        column: "recipient",
        key: "idempotency_key",
        prefix: "mail",
        unless: &["user_id", "submission_id"],
        lookup: Some("recipient_lookup"),
    },
    RowSealedColumn {
        table: "mail_outbox",
        column: "subject",
        key: "idempotency_key",
        prefix: "mail",
        unless: &["user_id", "submission_id"],
        lookup: None,
    },
];

/// Every column an erasure by address alone (`fulfilment::erase_address`) visits, declared
/// once; a test holds each to a personal column of [`TABLES`].
pub static ADDRESS_COLUMNS: &[AddressColumn] = &[
    AddressColumn {
        table: "mail_outbox",
        column: "recipient",
        owner: Some("user_id"),
        lookup: Some("recipient_lookup"),
    },
    AddressColumn {
        table: "parental_consents",
        column: "parent_email",
        owner: Some("user_id"),
        lookup: Some("parent_email_lookup"),
    },
    AddressColumn {
        table: "social_pending",
        column: "email",
        owner: None,
        lookup: Some("email_lookup"),
    },
    AddressColumn {
        table: "privacy_submissions",
        column: "requester_email",
        owner: None,
        lookup: Some("requester_email_lookup"),
    },
    AddressColumn {
        table: "privacy_submissions",
        column: "subject_email",
        owner: None,
        lookup: Some("subject_email_lookup"),
    },
];

/// Tables whose rows are some subject's, in the order export and erasure visit them: children
/// before the rows they point at.
pub fn subject_tables() -> impl Iterator<Item = &'static Table> {
    TABLES
        .iter()
        .rev()
        .filter(|t| t.concerns_subject() && !matches!(t.link, Link::Nobody | Link::IdsOnly))
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_core::policy::{CategoryKey, Policy};

    #[test]
    fn every_address_column_is_a_declared_personal_column() {
        for link in ADDRESS_COLUMNS {
            let table = table(link.table).expect("a declared table");
            let column = table.column(link.column).expect("a declared column");
            assert!(
                matches!(column.data, Data::Personal(_)),
                "{}.{}",
                link.table,
                link.column
            );
            if let Some(owner) = link.owner {
                assert!(table.column(owner).is_some(), "{}.{owner}", link.table);
            }
        }
    }

    #[test]
    fn every_sealed_column_is_a_declared_personal_text_column_beside_its_member() {
        for sealed in SEALED_BY_SUBMISSION {
            let table = table(sealed.table).expect("a declared table");
            let column = table.column(sealed.column).expect("a declared column");
            assert!(
                matches!(column.data, Data::Personal(_))
                    && matches!(column.kind, Kind::Text | Kind::Bytes),
                "{}.{}",
                sealed.table,
                sealed.column
            );
            assert!(table.column(sealed.submission.column()).is_some());
        }
        for sealed in SEALED_BY_ROW {
            let table = table(sealed.table).expect("a declared table");
            let column = table.column(sealed.column).expect("a declared column");
            assert!(
                matches!(column.data, Data::Personal(_)) && column.kind == Kind::Text,
                "{}.{}",
                sealed.table,
                sealed.column
            );
            let key = table.column(sealed.key).expect("a declared key column");
            assert_eq!(key.kind, Kind::Text, "{}.{}", sealed.table, sealed.key);
            for other in sealed.unless {
                assert!(table.column(other).is_some(), "{}.{other}", sealed.table);
            }
        }
        for sealed in SEALED {
            let table = table(sealed.table).expect("a declared table");
            let column = table.column(sealed.column).expect("a declared column");
            assert!(
                matches!(column.data, Data::Personal(_)) && column.kind == Kind::Text,
                "{}.{}",
                sealed.table,
                sealed.column
            );
            let member = table
                .column(sealed.member)
                .expect("a declared member column");
            assert_eq!(member.kind, Kind::Int, "{}.{}", sealed.table, sealed.member);
        }
    }

    #[test]
    fn every_keyed_hash_is_a_personal_text_column_and_address_links_use_it() {
        let lookups = SEALED
            .iter()
            .map(|s| (s.table, s.column, s.lookup))
            .chain(
                SEALED_BY_SUBMISSION
                    .iter()
                    .map(|s| (s.table, s.column, s.lookup)),
            )
            .chain(SEALED_BY_ROW.iter().map(|s| (s.table, s.column, s.lookup)));
        for (table_name, column, lookup) in lookups {
            let Some(lookup) = lookup else { continue };
            let hash = table(table_name)
                .and_then(|t| t.column(lookup))
                .expect("a declared keyed-hash column");
            assert!(
                matches!(hash.data, Data::Personal(_)) && hash.kind == Kind::Text,
                "{table_name}.{lookup}"
            );
            // An erasure by address finds the sealed column by its hash.
            if let Some(link) = ADDRESS_COLUMNS
                .iter()
                .find(|a| a.table == table_name && a.column == column)
            {
                assert_eq!(link.lookup, Some(lookup), "{table_name}.{column}");
            }
        }
        for link in ADDRESS_COLUMNS.iter().filter(|a| a.lookup.is_some()) {
            let sealed = SEALED
                .iter()
                .any(|s| s.table == link.table && s.column == link.column)
                || SEALED_BY_SUBMISSION
                    .iter()
                    .any(|s| s.table == link.table && s.column == link.column)
                || SEALED_BY_ROW
                    .iter()
                    .any(|s| s.table == link.table && s.column == link.column);
            assert!(
                sealed,
                "{}.{} is matched by hash but not sealed",
                link.table, link.column
            );
        }
    }

    #[test]
    fn every_category_exists_in_the_default_policy_with_a_retention_rule() {
        let policy = Policy::default_policy();
        for key in categories() {
            let parsed = CategoryKey::parse(key).expect("a well-formed category key");
            assert!(
                policy.category(&parsed).is_some(),
                "{key} is not in the policy"
            );
            assert!(
                policy.retention_for(&parsed).is_some(),
                "{key} has no retention"
            );
        }
    }

    #[test]
    fn tables_and_columns_are_declared_once() {
        let mut names = std::collections::HashSet::new();
        for table in TABLES {
            assert!(names.insert(table.name), "{} twice", table.name);
            let mut columns = std::collections::HashSet::new();
            for column in table.columns {
                assert!(
                    columns.insert(column.name),
                    "{}.{}",
                    table.name,
                    column.name
                );
            }
            assert!(table.column(table.key).is_some(), "{} key", table.name);
            match table.link {
                Link::Subject { column }
                | Link::UserId { column }
                | Link::AccountSubject { column }
                | Link::Through { column, .. }
                | Link::EmailKey { column, .. } => {
                    assert!(table.column(column).is_some(), "{} link", table.name)
                }
                Link::Nobody => assert!(!table.holds_personal_data(), "{}", table.name),
                Link::IdsOnly => assert!(!table.holds_personal_data(), "{}", table.name),
            }
        }
    }
}
