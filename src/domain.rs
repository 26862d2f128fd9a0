//! Parsed input: every value a person types is turned into a type that can only hold valid data.
//!
//! Constructors return [`InvalidField`], which names the field at fault and says, in words a
//! member can act on, what is wrong. Messages never repeat the value itself: it may be personal.

use crate::secret::Redacted;
use serde::Serialize;

/// Why one field of a form or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvalidField {
    /// The field's name as the form and the API spell it.
    pub field: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

impl InvalidField {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidField {}

/// A member's public handle: 3 to 20 letters, digits, `_` or `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let name = raw.trim();
        let len = name.chars().count();
        if !(3..=20).contains(&len) {
            return Err(InvalidField::new(
                "username",
                "must be between 3 and 20 characters",
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(InvalidField::new(
                "username",
                "may contain only letters, digits, '_' and '-'",
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(InvalidField::new(
                "username",
                "must start with a letter or a digit",
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for uniqueness: `Alice` and `alice` are the same member.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// An email address, checked for shape only: whether it exists is what verification proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(Redacted<String>);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let email = raw.trim();
        let invalid = || InvalidField::new("email", "is not a valid email address");
        if email.is_empty() {
            return Err(InvalidField::new("email", "is required"));
        }
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(Redacted::new(email.to_string())))
    }

    pub fn as_str(&self) -> &str {
        self.0.expose()
    }

    /// The form used for lookups and uniqueness.
    pub fn canonical(&self) -> String {
        self.0.expose().to_lowercase()
    }
}

/// The fewest characters a new password may have (ASVS 2.1.1).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The most characters a password may have; long passphrases are welcome (ASVS 2.1.2).
pub const PASSWORD_MAX_CHARS: usize = 256;
/// How many leading characters the strength estimate reads: its cost grows with the length, and
/// a password whose first 64 characters are hard to guess is hard to guess.
const STRENGTH_CHARS: usize = 64;

/// A new password as typed: 12 to 256 characters, not a common or breached password, not built
/// from the member's own name or address. It never prints.
#[derive(Debug, Clone)]
pub struct Password(Redacted<String>);

impl Password {
    /// Parses a new password. `related` are the member's own words (username, email address),
    /// which a password must not lean on. The check is offline: zxcvbn's built-in lists of
    /// passwords found in breaches, common words, names and keyboard patterns; a password must
    /// need more than 10^8 guesses by its estimate (score 3 of 4). Messages never repeat the
    /// password.
    pub fn parse(raw: &str, related: &[&str]) -> Result<Self, InvalidField> {
        let len = raw.chars().count();
        if len < PASSWORD_MIN_CHARS {
            return Err(InvalidField::new(
                "password",
                format!("must be at least {PASSWORD_MIN_CHARS} characters"),
            ));
        }
        if len > PASSWORD_MAX_CHARS {
            return Err(InvalidField::new(
                "password",
                format!("must be at most {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        let head: String = raw.chars().take(STRENGTH_CHARS).collect();
        let estimate = zxcvbn::zxcvbn(&head, related);
        if estimate.score() < zxcvbn::Score::Three {
            let why = estimate
                .feedback()
                .and_then(|feedback| feedback.warning())
                .map(|warning| format!(" ({})", warning.to_string().trim_end_matches('.')))
                .unwrap_or_default();
            return Err(InvalidField::new(
                "password",
                format!(
                    "is too easy to guess{why}: it is a common or breached password, or close \
                     to one or to your name or address; a few unrelated words make a strong one"
                ),
            ));
        }
        Ok(Self(Redacted::new(raw.to_string())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// The year a member was born, asked only to apply the policy's age rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthYear(i64);

/// The youngest age, in years, at which anyone may hold an account.
pub const MINIMUM_AGE: i64 = 13;

impl BirthYear {
    /// Parses a year between 1900 and `current_year`, and refuses anyone who is certainly under
    /// [`MINIMUM_AGE`] in that year.
    pub fn parse(raw: &str, current_year: i64) -> Result<Self, InvalidField> {
        let year: i64 = raw
            .trim()
            .parse()
            .map_err(|_| InvalidField::new("birth_year", "must be a year such as 1990"))?;
        if year < 1900 || year > current_year {
            return Err(InvalidField::new(
                "birth_year",
                format!("must be between 1900 and {current_year}"),
            ));
        }
        if current_year - year < MINIMUM_AGE {
            return Err(InvalidField::new(
                "birth_year",
                format!("members must be at least {MINIMUM_AGE} years old"),
            ));
        }
        Ok(Self(year))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A topic's title: 3 to 150 characters once trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTitle(String);

impl TopicTitle {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let title = raw.trim();
        let len = title.chars().count();
        if !(3..=150).contains(&len) {
            return Err(InvalidField::new(
                "title",
                "must be between 3 and 150 characters",
            ));
        }
        if title.chars().any(|c| c.is_control()) {
            return Err(InvalidField::new(
                "title",
                "may not contain control characters",
            ));
        }
        Ok(Self(title.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL form of the title: lowercase words joined by `-`.
    pub fn slug(&self) -> String {
        slugify(&self.0)
    }
}

/// The Markdown body of a post, reply or comment: 1 to 32,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostBody(String);

impl PostBody {
    pub const MAX_CHARS: usize = 32_000;

    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let body = raw.trim();
        if body.is_empty() {
            return Err(InvalidField::new("body", "is required"));
        }
        if body.chars().count() > Self::MAX_CHARS {
            return Err(InvalidField::new(
                "body",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(body.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lowercase ASCII words joined by `-`; `topic` when nothing usable is left.
pub fn slugify(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "topic".to_string()
    } else {
        slug.to_string()
    }
}

/// What a member may do beyond posting. Staff roles grow with the security issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Moderator,
    Administrator,
    /// Handles privacy requests (R2-R6); no moderation powers.
    PrivacyOfficer,
    /// Helps the requesters of the privacy requests assigned to them: sees those requests'
    /// contact data, nothing else, and decides nothing (A4, need-to-know).
    SupportAgent,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "member" => Some(Self::Member),
            "moderator" => Some(Self::Moderator),
            "administrator" => Some(Self::Administrator),
            "privacy_officer" => Some(Self::PrivacyOfficer),
            "support_agent" => Some(Self::SupportAgent),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Moderator => "moderator",
            Self::Administrator => "administrator",
            Self::PrivacyOfficer => "privacy_officer",
            Self::SupportAgent => "support_agent",
        }
    }

    /// Moderators and administrators may hide posts and write blog articles.
    pub fn can_moderate(self) -> bool {
        matches!(self, Self::Moderator | Self::Administrator)
    }

    /// Privacy officers and administrators handle privacy requests.
    pub fn handles_privacy_requests(self) -> bool {
        matches!(self, Self::PrivacyOfficer | Self::Administrator)
    }

    /// Who a privacy request may be assigned to: privacy staff, and support agents who help
    /// its requester.
    pub fn takes_request_assignments(self) -> bool {
        self.handles_privacy_requests() || self == Self::SupportAgent
    }

    /// Any staff role: these accounts must turn on 2-step verification before acting.
    pub fn is_staff(self) -> bool {
        self != Self::Member
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_as_written() {
        for role in [
            Role::Member,
            Role::Moderator,
            Role::Administrator,
            Role::PrivacyOfficer,
            Role::SupportAgent,
        ] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("support_agent"), Some(Role::SupportAgent));
        assert!(Role::SupportAgent.is_staff());
        assert!(!Role::SupportAgent.handles_privacy_requests());
        assert!(!Role::SupportAgent.can_moderate());
        assert!(Role::SupportAgent.takes_request_assignments());
        assert!(!Role::Moderator.takes_request_assignments());
    }

    #[test]
    fn usernames_are_short_plain_handles() {
        assert!(Username::parse("alice_01").is_ok());
        for bad in [
            "al",
            "a".repeat(21).as_str(),
            "al ice",
            "_alice",
            "älice",
            "",
        ] {
            assert_eq!(Username::parse(bad).unwrap_err().field, "username", "{bad}");
        }
        assert_eq!(Username::parse("Alice").unwrap().canonical(), "alice");
    }

    #[test]
    fn email_shapes_are_checked_and_never_echoed() {
        assert!(EmailAddress::parse("a.b+c@example.co.uk").is_ok());
        for bad in [
            "",
            "plain",
            "a@b",
            "a@@b.org",
            "a b@c.org",
            "@c.org",
            "a@.org",
            "a@c..org",
        ] {
            let error = EmailAddress::parse(bad).unwrap_err();
            assert_eq!(error.field, "email");
            assert!(bad.is_empty() || !error.message.contains(bad));
        }
        let email = EmailAddress::parse("Someone@Example.org").unwrap();
        assert_eq!(email.canonical(), "someone@example.org");
        assert!(!format!("{email:?}").contains("Someone"));
    }

    #[test]
    fn passwords_have_a_length_and_never_print() {
        assert!(Password::parse("short", &[]).is_err());
        let eleven = Password::parse("kettle-moss", &[]).unwrap_err();
        assert_eq!(eleven.message, "must be at least 12 characters");
        let password = Password::parse("correct horse battery", &[]).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
        assert!(Password::parse(&"x".repeat(257), &[]).is_err());
        let long = "seven green parrots sang loudly at dawn while the kettle boiled over twice";
        assert!(
            long.len() > 64 && Password::parse(long, &[]).is_ok(),
            "long passphrases are welcome"
        );
    }

    /// Proves: A4
    #[test]
    fn common_breached_and_personal_passwords_are_refused_with_a_reason() {
        // From the lists of passwords most found in breaches, and keyboard runs and repeats, each
        // 12 characters or more.
        for weak in [
            "password1234",
            "123456789012",
            "qwertyuiopasdf",
            "iloveyou1234",
            "aaaaaaaaaaaaaaaa",
            "Password123!",
        ] {
            let refused = Password::parse(weak, &[]).unwrap_err();
            assert_eq!(refused.field, "password");
            assert!(
                refused.message.starts_with("is too easy to guess"),
                "{weak}: {refused}"
            );
            assert!(
                !refused.message.contains(weak),
                "the message never repeats it"
            );
        }
        // A member's own name and address do not make a password.
        let own = Password::parse("adalovelace1815", &["adalovelace1815", "ada@example.org"]);
        assert!(own.is_err());
        // Unrelated words do, whatever their case or punctuation.
        for strong in [
            "a long enough password",
            "correct horse battery",
            "Tulip-Granite-Ferry",
        ] {
            assert!(Password::parse(strong, &[]).is_ok(), "{strong}");
        }
    }

    #[test]
    fn birth_years_refuse_children_under_thirteen_and_nonsense() {
        assert_eq!(BirthYear::parse("1990", 2026).unwrap().get(), 1990);
        assert_eq!(BirthYear::parse(" 2013 ", 2026).unwrap().get(), 2013);
        for bad in ["2014", "2030", "1800", "nineteen", ""] {
            assert_eq!(BirthYear::parse(bad, 2026).unwrap_err().field, "birth_year");
        }
    }

    #[test]
    fn slugs_are_lowercase_words() {
        assert_eq!(slugify("Hello, World! Ça va?"), "hello-world-a-va");
        assert_eq!(slugify("!!!"), "topic");
        assert_eq!(
            TopicTitle::parse("  My first topic ").unwrap().slug(),
            "my-first-topic"
        );
    }

    #[test]
    fn bodies_must_say_something_and_not_too_much() {
        assert!(PostBody::parse("   ").is_err());
        assert!(PostBody::parse(&"x".repeat(PostBody::MAX_CHARS + 1)).is_err());
        assert!(PostBody::parse("Hello").is_ok());
    }
}
