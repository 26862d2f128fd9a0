//! The policy file's typed model: who the controller is, what personal data the forum collects,
//! from where, why, who receives it, how long it is kept and which rights apply where.
//! A `Policy` only comes out of `Policy::from_toml_str`, so every one in the program is valid.

mod ids;
mod load;
mod validate;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::deadline::DeadlineRule;
pub use ids::{CategoryKey, IdError, PurposeId};
pub(crate) use load::{FieldPath, ID_FIELDS};
pub use load::{PolicyError, PolicyProblem};

/// The policy shipped with Covenant, describing what the forum software itself does.
const DEFAULT_POLICY: &str = include_str!("../../policy/default.toml");

/// A validated policy. Read it through the accessors; change it only by loading a new file
/// (or by `with_operator`, which touches nothing but the controller's contact facts).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Policy(pub(crate) PolicyDocument);

/// The file as written. Kept private so that nothing can deserialize a `Policy` without
/// validating it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyDocument {
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) sells_personal_data: bool,
    #[serde(default)]
    pub(crate) shares_for_targeted_advertising: bool,
    pub(crate) honors_global_privacy_control: bool,
    pub(crate) business_transfer: String,
    pub(crate) controller: Controller,
    pub(crate) aggregate_statistics: AggregateStatistics,
    /// Optional in the file: a policy without it gets [`Minimization::default`].
    #[serde(default)]
    pub(crate) minimization: Minimization,
    /// Optional: without it, an account lasts until its member or staff close it.
    #[serde(default, skip_serializing_if = "Inactivity::is_unset")]
    pub(crate) inactivity: Inactivity,
    pub(crate) sources: Vec<Source>,
    pub(crate) categories: Vec<Category>,
    pub(crate) purposes: Vec<Purpose>,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) cookies: Vec<CookieGroup>,
    pub(crate) retention: Vec<RetentionRule>,
    pub(crate) jurisdictions: Vec<JurisdictionRules>,
    pub(crate) automated_processes: Vec<AutomatedProcess>,
    pub(crate) security_measures: Vec<SecurityMeasure>,
    pub(crate) providers: Vec<ServiceProvider>,
}

impl Policy {
    /// Parses and validates a policy file. `file_name` only labels the errors.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<Policy, PolicyError> {
        load::load(text, file_name)
    }

    /// The policy embedded in the binary (`policy/default.toml`).
    pub fn default_policy() -> Policy {
        Policy::from_toml_str(DEFAULT_POLICY, "default.toml")
            .expect("the embedded default policy is valid (checked by its tests)")
    }

    /// The same policy with the operator's own contact facts, taken from configuration.
    pub fn with_operator(mut self, facts: OperatorFacts) -> Policy {
        let controller = &mut self.0.controller;
        let replace = |field: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        replace(&mut controller.name, facts.name);
        replace(&mut controller.address, facts.address);
        replace(&mut controller.privacy_email, facts.privacy_email);
        replace(&mut controller.dpo_contact, facts.dpo_contact);
        if facts.eu_representative.is_some() {
            controller.eu_representative = facts.eu_representative;
        }
        self
    }

    pub fn version(&self) -> &str {
        &self.0.version
    }
    pub fn sells_personal_data(&self) -> bool {
        self.0.sells_personal_data
    }
    pub fn shares_for_targeted_advertising(&self) -> bool {
        self.0.shares_for_targeted_advertising
    }
    pub fn honors_global_privacy_control(&self) -> bool {
        self.0.honors_global_privacy_control
    }
    pub fn business_transfer(&self) -> &str {
        &self.0.business_transfer
    }
    pub fn controller(&self) -> &Controller {
        &self.0.controller
    }
    pub fn aggregate_statistics(&self) -> &AggregateStatistics {
        &self.0.aggregate_statistics
    }
    pub fn minimization(&self) -> &Minimization {
        &self.0.minimization
    }
    pub fn inactivity(&self) -> &Inactivity {
        &self.0.inactivity
    }
    pub fn sources(&self) -> &[Source] {
        &self.0.sources
    }
    pub fn categories(&self) -> &[Category] {
        &self.0.categories
    }
    pub fn purposes(&self) -> &[Purpose] {
        &self.0.purposes
    }
    pub fn recipients(&self) -> &[Recipient] {
        &self.0.recipients
    }
    pub fn cookies(&self) -> &[CookieGroup] {
        &self.0.cookies
    }
    pub fn retention(&self) -> &[RetentionRule] {
        &self.0.retention
    }
    pub fn jurisdictions(&self) -> &[JurisdictionRules] {
        &self.0.jurisdictions
    }
    pub fn automated_processes(&self) -> &[AutomatedProcess] {
        &self.0.automated_processes
    }
    pub fn security_measures(&self) -> &[SecurityMeasure] {
        &self.0.security_measures
    }
    pub fn providers(&self) -> &[ServiceProvider] {
        &self.0.providers
    }

    pub fn category(&self, key: &CategoryKey) -> Option<&Category> {
        self.0
            .categories
            .iter()
            .find(|category| &category.key == key)
    }
    pub fn purpose(&self, id: &PurposeId) -> Option<&Purpose> {
        self.0.purposes.iter().find(|purpose| &purpose.id == id)
    }
    pub fn provider(&self, id: &str) -> Option<&ServiceProvider> {
        self.0.providers.iter().find(|provider| provider.id == id)
    }
    pub fn retention_for(&self, category: &CategoryKey) -> Option<&RetentionRule> {
        self.0
            .retention
            .iter()
            .find(|rule| &rule.category == category)
    }

    /// The rules for a jurisdiction; one the policy does not list gets the `other` rules.
    pub fn jurisdiction(&self, jurisdiction: Jurisdiction) -> &JurisdictionRules {
        let find = |id| self.0.jurisdictions.iter().find(|rules| rules.id == id);
        find(jurisdiction)
            .or_else(|| find(Jurisdiction::Other))
            .expect("validation requires an `other` jurisdiction")
    }
}

/// Who answers for the processing. These are operator facts: the shipped file holds
/// placeholders and configuration supplies the real values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    pub name: String,
    pub address: String,
    pub privacy_email: String,
    pub dpo_contact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eu_representative: Option<String>,
}

/// Operator facts from configuration; each one given replaces the policy file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorFacts {
    pub name: Option<String>,
    pub address: Option<String>,
    pub privacy_email: Option<String>,
    pub dpo_contact: Option<String>,
    pub eu_representative: Option<String>,
}

/// Visit statistics that identify nobody (promise F2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateStatistics {
    pub description: String,
    /// What a visit contributes, in plain words (browser family, language, …).
    pub collects: Vec<String>,
    /// Counts below this are never published, so nobody can be singled out.
    pub smallest_published_count: u32,
}

/// Device data kept shorter than its category's rule, whatever the relationship (issue 7,
/// point 5): the security log's IP addresses and browser descriptions are blanked after
/// `security_log_days`; sessions and one-time tokens go when they expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Minimization {
    /// Days a sign-in keeps its IP address and user agent (1 to 3650).
    pub security_log_days: u32,
}

impl Minimization {
    pub const DEFAULT_SECURITY_LOG_DAYS: u32 = 90;
    pub const MAX_SECURITY_LOG_DAYS: u32 = 3650;
}

impl Default for Minimization {
    fn default() -> Self {
        Self {
            security_log_days: Self::DEFAULT_SECURITY_LOG_DAYS,
        }
    }
}

/// An end of the relationship the operator may set (issue 7, point 1): an account nobody has
/// used for `account_days` is closed by the retention sweep, as of the day the limit was
/// reached, unless its member still receives product news (a relationship of its own) or
/// holds a staff role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inactivity {
    /// Days without activity after which an account is closed (30 to 36,500); none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_days: Option<u32>,
}

impl Inactivity {
    pub const MIN_ACCOUNT_DAYS: u32 = 30;
    pub const MAX_ACCOUNT_DAYS: u32 = 36_500;

    pub fn is_unset(&self) -> bool {
        self.account_days.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Directly,
    Automatically,
    SocialSignIn,
    ThirdParties,
}

impl SourceKind {
    /// How the policy's pages and answers name the source, after "collected …".
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::Directly => "directly from you",
            SourceKind::Automatically => "automatically",
            SourceKind::SocialSignIn => "social sign-in",
            SourceKind::ThirdParties => "third parties",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub kind: SourceKind,
    pub name: String,
    pub description: String,
    /// Named examples, such as the social sign-in providers offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub key: CategoryKey,
    pub name: String,
    pub description: String,
    /// "Sensitive" in the sense of the US state laws (account credentials, for instance).
    pub sensitive: bool,
    pub sources: Vec<SourceKind>,
}

/// The ground a purpose rests on: GDPR Art. 6(1)(a)–(f), or notice where the law asks no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
    Notice,
}

impl LegalBasis {
    pub fn gdpr_article(self) -> Option<&'static str> {
        Some(match self {
            LegalBasis::Consent => "Art. 6(1)(a)",
            LegalBasis::Contract => "Art. 6(1)(b)",
            LegalBasis::LegalObligation => "Art. 6(1)(c)",
            LegalBasis::VitalInterests => "Art. 6(1)(d)",
            LegalBasis::PublicTask => "Art. 6(1)(e)",
            LegalBasis::LegitimateInterests => "Art. 6(1)(f)",
            LegalBasis::Notice => return None,
        })
    }

    /// The right to object exists only against processing on these two grounds.
    pub fn allows_objection(self) -> bool {
        matches!(
            self,
            LegalBasis::PublicTask | LegalBasis::LegitimateInterests
        )
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal obligation",
            LegalBasis::VitalInterests => "vital interests",
            LegalBasis::PublicTask => "public task",
            LegalBasis::LegitimateInterests => "legitimate interests",
            LegalBasis::Notice => "notice",
        };
        match self.gdpr_article() {
            Some(article) => write!(f, "{label} (GDPR {article})"),
            None => f.write_str(label),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSubject {
    Visitors,
    Members,
    /// People who file a privacy request, including agents and parents acting for someone.
    Requesters,
}

impl fmt::Display for DataSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataSubject::Visitors => "visitors",
            DataSubject::Members => "members",
            DataSubject::Requesters => "requesters",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub id: PurposeId,
    pub name: String,
    pub description: String,
    pub categories: Vec<CategoryKey>,
    pub subjects: Vec<DataSubject>,
    /// Keyed by jurisdiction; `other` applies wherever no entry is given.
    pub legal_basis: BTreeMap<Jurisdiction, LegalBasis>,
    #[serde(default)]
    pub direct_marketing: bool,
}

impl Purpose {
    pub fn legal_basis_in(&self, jurisdiction: Jurisdiction) -> Option<LegalBasis> {
        self.legal_basis
            .get(&jurisdiction)
            .or_else(|| self.legal_basis.get(&Jurisdiction::Other))
            .copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    ServiceProviders,
    Affiliates,
    AdvertisingPartners,
    BusinessPartners,
    Authorities,
    Public,
}

/// What a recipient gives in return for data, which decides whether a law counts it as a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consideration {
    Money,
    OtherValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub id: String,
    pub kind: RecipientKind,
    pub name: String,
    pub description: String,
    pub categories: Vec<CategoryKey>,
    /// Entries of the service provider register this recipient stands for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sold_for: Option<Consideration>,
    #[serde(default)]
    pub targeted_advertising: bool,
}

impl Recipient {
    /// Whether handing data to this recipient is a sale under the given definition.
    pub fn is_sale_under(&self, definition: SaleDefinition) -> bool {
        match (self.sold_for, definition) {
            (None, _) => false,
            (Some(Consideration::Money), _) => true,
            (Some(Consideration::OtherValue), SaleDefinition::Monetary) => false,
            (Some(Consideration::OtherValue), SaleDefinition::MonetaryOrOtherValuable) => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CookieCategory {
    Necessary,
    Preferences,
    Analytics,
    Advertising,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieGroup {
    pub category: CookieCategory,
    pub name: String,
    pub description: String,
    /// Optional cookies are set only after consent; necessary ones never are optional.
    pub optional: bool,
}

/// How long data is kept in active use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionPeriod {
    /// While the account, subscription or other relationship lasts.
    Relationship,
    Days(u32),
    Months(u32),
    Years(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionEnd {
    Delete,
    Anonymize,
}

/// Kept for `period`, then for the jurisdiction's limitation period plus
/// `restricted_extra_months`, restricted to storage and security, then deleted or anonymized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    pub category: CategoryKey,
    pub period: RetentionPeriod,
    pub restricted_extra_months: u32,
    pub then: RetentionEnd,
}

impl fmt::Display for RetentionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period {
            RetentionPeriod::Relationship => f.write_str("while the relationship lasts")?,
            RetentionPeriod::Days(n) => write!(f, "for {n} days")?,
            RetentionPeriod::Months(n) => write!(f, "for {n} months")?,
            RetentionPeriod::Years(n) => write!(f, "for {n} years")?,
        }
        let end = match self.then {
            RetentionEnd::Delete => "deleted",
            RetentionEnd::Anonymize => "anonymized",
        };
        write!(
            f,
            ", then the limitation period plus {} months restricted to storage, then {end}",
            self.restricted_extra_months
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jurisdiction {
    EuEea,
    Uk,
    California,
    Nevada,
    Virginia,
    Colorado,
    Connecticut,
    Montana,
    Oregon,
    Texas,
    Utah,
    Other,
}

impl Jurisdiction {
    pub const ALL: [Jurisdiction; 12] = [
        Jurisdiction::EuEea,
        Jurisdiction::Uk,
        Jurisdiction::California,
        Jurisdiction::Nevada,
        Jurisdiction::Virginia,
        Jurisdiction::Colorado,
        Jurisdiction::Connecticut,
        Jurisdiction::Montana,
        Jurisdiction::Oregon,
        Jurisdiction::Texas,
        Jurisdiction::Utah,
        Jurisdiction::Other,
    ];

    /// The identifier used in policy files, forms and URLs (`eu_eea`, `california`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Jurisdiction::EuEea => "eu_eea",
            Jurisdiction::Uk => "uk",
            Jurisdiction::California => "california",
            Jurisdiction::Nevada => "nevada",
            Jurisdiction::Virginia => "virginia",
            Jurisdiction::Colorado => "colorado",
            Jurisdiction::Connecticut => "connecticut",
            Jurisdiction::Montana => "montana",
            Jurisdiction::Oregon => "oregon",
            Jurisdiction::Texas => "texas",
            Jurisdiction::Utah => "utah",
            Jurisdiction::Other => "other",
        }
    }

    /// Whether the GDPR (or the UK GDPR) governs, which rules out bases such as mere notice.
    pub fn is_gdpr(self) -> bool {
        matches!(self, Jurisdiction::EuEea | Jurisdiction::Uk)
    }
}

impl std::str::FromStr for Jurisdiction {
    type Err = UnknownJurisdiction;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Jurisdiction::ALL
            .into_iter()
            .find(|jurisdiction| jurisdiction.as_str() == text)
            .ok_or_else(|| UnknownJurisdiction(text.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown jurisdiction `{0}`")]
pub struct UnknownJurisdiction(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    Know,
    Access,
    Portability,
    Rectification,
    Deletion,
    Restriction,
    Objection,
    ObjectDirectMarketing,
    WithdrawConsent,
    OptOutSale,
    OptOutTargetedAdvertising,
    LimitSensitive,
    Appeal,
    ComplainToAuthority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealRule {
    /// Days after the decision during which an appeal is accepted.
    pub window_days: u32,
    /// How long the operator has to decide the appeal.
    pub decide_within: DeadlineRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitationPeriod {
    Months(u32),
    Years(u32),
}

/// What a law counts as a "sale" of personal data (Nevada: only an exchange for money).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleDefinition {
    Monetary,
    MonetaryOrOtherValuable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regulator {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JurisdictionRules {
    pub id: Jurisdiction,
    pub name: String,
    pub law: String,
    pub rights: Vec<Right>,
    pub deadline: DeadlineRule,
    /// How much longer an answer may take, with notice to the requester before the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<DeadlineRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeal: Option<AppealRule>,
    pub limitation_period: LimitationPeriod,
    pub minimum_age: u8,
    /// Below this age a parent must consent; absent where the minimum age is the only rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parental_consent_under: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_definition: Option<SaleDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regulator: Option<Regulator>,
    /// Whether the right to know lists the specific third parties by name (Oregon).
    #[serde(default)]
    pub names_third_parties: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomatedProcess {
    pub id: String,
    pub name: String,
    pub explanation: String,
    pub categories: Vec<CategoryKey>,
    /// Whether its outcome has a legal or similarly significant effect on a person.
    pub significant_effect: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityMeasure {
    pub id: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderRole {
    Processor,
    SubProcessor,
    IndependentThirdParty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferSafeguard {
    Adequacy,
    Sccs,
    Bcrs,
}

impl fmt::Display for TransferSafeguard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferSafeguard::Adequacy => "adequacy decision",
            TransferSafeguard::Sccs => "standard contractual clauses",
            TransferSafeguard::Bcrs => "binding corporate rules",
        })
    }
}

/// The written approval a sub-processor needs before it may process anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    #[serde(with = "toml_date")]
    pub on: Date,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProvider {
    pub id: String,
    pub name: String,
    pub role: ProviderRole,
    pub service: String,
    pub instructions: String,
    pub security: Vec<String>,
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    pub in_eea: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_safeguard: Option<TransferSafeguard>,
    /// For a sub-processor: the processor that engaged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engaged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// Dates are written as TOML local dates (`2025-01-15`) and serialized as ISO 8601 text.
mod toml_date {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use time::{Date, Month};

    pub fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(date)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let written = toml::value::Datetime::deserialize(deserializer)?;
        let (Some(date), None, None) = (written.date, written.time, written.offset) else {
            return Err(D::Error::custom(format!(
                "expected a date such as 2025-01-15, found `{written}`"
            )));
        };
        Month::try_from(date.month)
            .and_then(|month| Date::from_calendar_date(date.year.into(), month, date.day))
            .map_err(|error| D::Error::custom(format!("invalid date `{written}`: {error}")))
    }
}
