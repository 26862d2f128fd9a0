//! The policy as people read it: `/privacy` (the version in force), its history and past
//! versions, the automated processes, the record of processing for administrators, and the
//! site notice of a material change with its acknowledgement form.
//! Every sentence about data comes from the policy value; this module only adds the frame
//! (headings, labels of the model's enums). It never sets a cookie for a visitor.

use crate::error::Error;
use crate::policy::{PolicyInForce, VersionInfo, parse_diff, parse_stored};
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::error::PageResult;
use crate::web::forms::Form;
use crate::web::pages::{Layout, date};
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use covenant_core::deadline::DeadlineRule;
use covenant_core::diff::ChangeClass;
use covenant_core::policy::{
    CookieCategory, Jurisdiction, LimitationPeriod, Policy, ProviderRole, RecipientKind, Right,
    SaleDefinition, SourceKind,
};
use covenant_core::ropa::{RecordOfProcessing, record_of_processing};
use serde::Deserialize;

/// The notice of a material version the signed-in member has not acknowledged yet.
#[derive(Debug, Clone)]
pub struct PolicyNotice {
    pub version_id: i64,
    pub label: String,
    pub effective_on: String,
}

tokio::task_local! {
    // Set around each page request by `policy_notice`, read by `Layout::new`: the layout is
    // built synchronously in every handler, and this keeps the lookup in one place.
    static POLICY_NOTICE: Option<PolicyNotice>;
}

/// The pending notice of the request being handled, if any.
pub fn pending_notice() -> Option<PolicyNotice> {
    POLICY_NOTICE.try_with(Clone::clone).ok().flatten()
}

/// Middleware: for a signed-in member's page, looks up whether the latest material version
/// awaits their acknowledgement. API, static files and visitors cost no query.
pub async fn policy_notice(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let is_page = request.method() == Method::GET
        && !path.starts_with("/api/")
        && !path.starts_with("/static/")
        && path != "/healthz";
    if !is_page {
        return POLICY_NOTICE.scope(None, next.run(request)).await;
    }
    let (mut parts, body) = request.into_parts();
    // The extractor keeps the viewer in the request, so the handler does not look it up again.
    let viewer = <Viewer as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await;
    let notice = match viewer {
        Ok(Viewer(Some(signed_in))) => match state
            .store
            .unacknowledged_material_version(signed_in.user.user_id)
            .await
        {
            Ok(version) => version.map(|v| PolicyNotice {
                version_id: v.id,
                label: v.version_label,
                effective_on: v.effective_on,
            }),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "reading a policy acknowledgement failed");
                None
            }
        },
        _ => None,
    };
    let request = Request::from_parts(parts, body);
    POLICY_NOTICE.scope(notice, next.run(request)).await
}

fn render(template: &impl Template) -> PageResult {
    let html = template
        .render()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("rendering a page")))?;
    Ok(Html(html).into_response())
}

/// Wording for the model's enums. Public so that tests can look for every right by name.
pub fn right_label(right: Right) -> &'static str {
    match right {
        Right::Know => "Know what we collect, from where, why and who receives it",
        Right::Access => "Get a copy of your data",
        Right::Portability => "Take your data elsewhere in a machine-readable format",
        Right::Rectification => "Have inaccurate data corrected",
        Right::Deletion => "Have your data deleted",
        Right::Restriction => "Have processing restricted to storage",
        Right::Objection => "Object to processing based on legitimate interests or a public task",
        Right::ObjectDirectMarketing => "Object to direct marketing at any time",
        Right::WithdrawConsent => "Withdraw a consent you gave, at any time",
        Right::OptOutSale => "Opt out of the sale of your data",
        Right::OptOutTargetedAdvertising => "Opt out of targeted advertising",
        Right::LimitSensitive => "Limit the use of sensitive data",
        Right::Appeal => "Appeal our decision on your request",
        Right::ComplainToAuthority => "Complain to the authority that oversees us",
    }
}

fn source_kind_label(kind: SourceKind) -> &'static str {
    kind.describe()
}

fn recipient_kind_label(kind: RecipientKind) -> &'static str {
    match kind {
        RecipientKind::ServiceProviders => "service providers",
        RecipientKind::Affiliates => "affiliates",
        RecipientKind::AdvertisingPartners => "advertising partners",
        RecipientKind::BusinessPartners => "business partners",
        RecipientKind::Authorities => "authorities",
        RecipientKind::Public => "the public",
    }
}

fn role_label(role: ProviderRole) -> &'static str {
    match role {
        ProviderRole::Processor => "processor",
        ProviderRole::SubProcessor => "sub-processor",
        ProviderRole::IndependentThirdParty => "independent third party",
    }
}

fn cookie_category_label(category: CookieCategory) -> &'static str {
    match category {
        CookieCategory::Necessary => "necessary",
        CookieCategory::Preferences => "preferences",
        CookieCategory::Analytics => "analytics",
        CookieCategory::Advertising => "advertising",
    }
}

fn limitation_label(period: LimitationPeriod) -> String {
    let (n, unit) = match period {
        LimitationPeriod::Months(n) => (n, "month"),
        LimitationPeriod::Years(n) => (n, "year"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn sale_label(definition: SaleDefinition) -> &'static str {
    match definition {
        SaleDefinition::Monetary => "only an exchange of personal data for money",
        SaleDefinition::MonetaryOrOtherValuable => {
            "an exchange of personal data for money or anything else of value"
        }
    }
}

fn deadline_label(rule: DeadlineRule) -> String {
    rule.to_string()
}

fn anchor(prefix: &str, id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{prefix}-{id}")
}

pub struct SourceView {
    anchor: String,
    kind: &'static str,
    name: String,
    description: String,
    examples: String,
}

pub struct CategoryView {
    anchor: String,
    key: String,
    name: String,
    description: String,
    sensitive: bool,
    sources: String,
    retention: String,
}

pub struct Named {
    href: String,
    name: String,
}

pub struct PurposeView {
    anchor: String,
    name: String,
    description: String,
    categories: Vec<Named>,
    subjects: String,
    bases: Vec<(String, String)>,
    direct_marketing: bool,
}

pub struct RecipientView {
    anchor: String,
    name: String,
    kind: &'static str,
    description: String,
    categories: Vec<Named>,
    providers: Vec<Named>,
    sold: bool,
    targeted_advertising: bool,
}

pub struct ProviderView {
    anchor: String,
    name: String,
    role: &'static str,
    service: String,
    instructions: String,
    security: Vec<String>,
    country: String,
    location: String,
    engaged_by: Option<String>,
    approval: Option<String>,
}

pub struct CookieView {
    name: String,
    category: &'static str,
    description: String,
    optional: bool,
}

pub struct RetentionView {
    href: String,
    category: String,
    rule: String,
}

pub struct JurisdictionView {
    anchor: String,
    name: String,
    law: String,
    rights: Vec<&'static str>,
    deadline: String,
    extension: Option<String>,
    appeal: Option<String>,
    limitation: String,
    minimum_age: u8,
    parental_consent_under: Option<u8>,
    sale_definition: Option<&'static str>,
    regulator: Option<(String, String)>,
    names_third_parties: bool,
}

pub struct AutomatedView {
    anchor: String,
    name: String,
    explanation: String,
    categories: Vec<Named>,
    significant_effect: bool,
}

/// Everything the policy page shows, worded from one policy value.
pub struct PolicyView {
    version_label: String,
    controller_name: String,
    controller_address: String,
    privacy_email: String,
    dpo_contact: String,
    eu_representative: Option<String>,
    sells: bool,
    shares: bool,
    honors_gpc: bool,
    business_transfer: String,
    statistics_description: String,
    statistics_collects: Vec<String>,
    smallest_published_count: u32,
    security_log_days: u32,
    /// Days without use after which an account is closed, if the policy sets a limit.
    inactive_account_days: Option<u32>,
    /// How long before such a closure the member is told.
    inactivity_notice_days: u32,
    sources: Vec<SourceView>,
    categories: Vec<CategoryView>,
    purposes: Vec<PurposeView>,
    recipients: Vec<RecipientView>,
    providers: Vec<ProviderView>,
    cookies: Vec<CookieView>,
    retention: Vec<RetentionView>,
    jurisdictions: Vec<JurisdictionView>,
    automated: Vec<AutomatedView>,
    any_significant_effect: bool,
    security: Vec<(String, String)>,
}

fn jurisdiction_name(policy: &Policy, jurisdiction: Jurisdiction) -> String {
    policy
        .jurisdictions()
        .iter()
        .find(|rules| rules.id == jurisdiction)
        .map(|rules| rules.name.clone())
        .unwrap_or_else(|| jurisdiction.as_str().replace('_', " "))
}

fn category_link(policy: &Policy, key: &covenant_core::policy::CategoryKey) -> Named {
    Named {
        href: format!("#{}", anchor("category", key.as_str())),
        name: policy
            .category(key)
            .map_or_else(|| key.to_string(), |c| c.name.clone()),
    }
}

impl PolicyView {
    pub fn new(policy: &Policy) -> Self {
        let controller = policy.controller();
        let source_name = |kind: SourceKind| {
            policy
                .sources()
                .iter()
                .find(|source| source.kind == kind)
                .map_or_else(|| source_kind_label(kind).to_string(), |s| s.name.clone())
        };
        Self {
            version_label: policy.version().to_string(),
            controller_name: controller.name.clone(),
            controller_address: controller.address.clone(),
            privacy_email: controller.privacy_email.clone(),
            dpo_contact: controller.dpo_contact.clone(),
            eu_representative: controller.eu_representative.clone(),
            sells: policy.sells_personal_data(),
            shares: policy.shares_for_targeted_advertising(),
            honors_gpc: policy.honors_global_privacy_control(),
            business_transfer: policy.business_transfer().trim().to_string(),
            statistics_description: policy.aggregate_statistics().description.trim().to_string(),
            statistics_collects: policy.aggregate_statistics().collects.clone(),
            smallest_published_count: policy.aggregate_statistics().smallest_published_count,
            security_log_days: policy.minimization().security_log_days,
            inactive_account_days: policy.inactivity().account_days,
            inactivity_notice_days: crate::retention::INACTIVITY_NOTICE_DAYS,
            sources: policy
                .sources()
                .iter()
                .map(|source| SourceView {
                    anchor: anchor("source", source_kind_label(source.kind)),
                    kind: source_kind_label(source.kind),
                    name: source.name.clone(),
                    description: source.description.trim().to_string(),
                    examples: source.examples.join(", "),
                })
                .collect(),
            categories: policy
                .categories()
                .iter()
                .map(|category| CategoryView {
                    anchor: anchor("category", category.key.as_str()),
                    key: category.key.to_string(),
                    name: category.name.clone(),
                    description: category.description.trim().to_string(),
                    sensitive: category.sensitive,
                    sources: category
                        .sources
                        .iter()
                        .map(|kind| source_name(*kind))
                        .collect::<Vec<_>>()
                        .join("; "),
                    retention: policy
                        .retention_for(&category.key)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                })
                .collect(),
            purposes: policy
                .purposes()
                .iter()
                .map(|purpose| PurposeView {
                    anchor: anchor("purpose", purpose.id.as_str()),
                    name: purpose.name.clone(),
                    description: purpose.description.trim().to_string(),
                    categories: purpose
                        .categories
                        .iter()
                        .map(|key| category_link(policy, key))
                        .collect(),
                    subjects: purpose
                        .subjects
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    bases: purpose
                        .legal_basis
                        .iter()
                        .map(|(jurisdiction, basis)| {
                            let where_ = if *jurisdiction == Jurisdiction::Other {
                                format!(
                                    "{} (and wherever no other rule is given)",
                                    jurisdiction_name(policy, *jurisdiction)
                                )
                            } else {
                                jurisdiction_name(policy, *jurisdiction)
                            };
                            (where_, basis.to_string())
                        })
                        .collect(),
                    direct_marketing: purpose.direct_marketing,
                })
                .collect(),
            recipients: policy
                .recipients()
                .iter()
                .map(|recipient| RecipientView {
                    anchor: anchor("recipient", &recipient.id),
                    name: recipient.name.clone(),
                    kind: recipient_kind_label(recipient.kind),
                    description: recipient.description.trim().to_string(),
                    categories: recipient
                        .categories
                        .iter()
                        .map(|key| category_link(policy, key))
                        .collect(),
                    providers: recipient
                        .providers
                        .iter()
                        .map(|id| Named {
                            href: format!("#{}", anchor("provider", id)),
                            name: policy
                                .provider(id)
                                .map_or_else(|| id.clone(), |p| p.name.clone()),
                        })
                        .collect(),
                    sold: recipient.sold_for.is_some(),
                    targeted_advertising: recipient.targeted_advertising,
                })
                .collect(),
            providers: policy
                .providers()
                .iter()
                .map(|provider| ProviderView {
                    anchor: anchor("provider", &provider.id),
                    name: provider.name.clone(),
                    role: role_label(provider.role),
                    service: provider.service.clone(),
                    instructions: provider.instructions.clone(),
                    security: provider.security.clone(),
                    country: provider.country.clone(),
                    location: if provider.in_eea {
                        "inside the EEA".to_string()
                    } else {
                        match provider.transfer_safeguard {
                            Some(safeguard) => format!("outside the EEA, under {safeguard}"),
                            None => "outside the EEA".to_string(),
                        }
                    },
                    engaged_by: provider.engaged_by.as_ref().map(|id| {
                        policy
                            .provider(id)
                            .map_or_else(|| id.clone(), |p| p.name.clone())
                    }),
                    approval: provider
                        .approval
                        .as_ref()
                        .map(|a| format!("approved in writing by {} on {}", a.by, a.on)),
                })
                .collect(),
            cookies: policy
                .cookies()
                .iter()
                .map(|group| CookieView {
                    name: group.name.clone(),
                    category: cookie_category_label(group.category),
                    description: group.description.trim().to_string(),
                    optional: group.optional,
                })
                .collect(),
            retention: policy
                .retention()
                .iter()
                .map(|rule| {
                    let link = category_link(policy, &rule.category);
                    RetentionView {
                        href: link.href,
                        category: link.name,
                        rule: rule.to_string(),
                    }
                })
                .collect(),
            jurisdictions: policy
                .jurisdictions()
                .iter()
                .map(|rules| JurisdictionView {
                    anchor: anchor("jurisdiction", rules.id.as_str()),
                    name: rules.name.clone(),
                    law: rules.law.clone(),
                    rights: rules.rights.iter().map(|r| right_label(*r)).collect(),
                    deadline: deadline_label(rules.deadline),
                    extension: rules.extension.map(deadline_label),
                    appeal: rules.appeal.map(|appeal| {
                        format!(
                            "within {} days of our decision; we decide an appeal within {}",
                            appeal.window_days, appeal.decide_within
                        )
                    }),
                    limitation: limitation_label(rules.limitation_period),
                    minimum_age: rules.minimum_age,
                    parental_consent_under: rules.parental_consent_under,
                    sale_definition: rules.sale_definition.map(sale_label),
                    regulator: rules
                        .regulator
                        .as_ref()
                        .map(|r| (r.name.clone(), r.url.clone())),
                    names_third_parties: rules.names_third_parties,
                })
                .collect(),
            automated: policy
                .automated_processes()
                .iter()
                .map(|process| AutomatedView {
                    anchor: anchor("process", &process.id),
                    name: process.name.clone(),
                    explanation: process.explanation.trim().to_string(),
                    categories: process
                        .categories
                        .iter()
                        .map(|key| Named {
                            href: format!("/privacy#{}", anchor("category", key.as_str())),
                            name: category_link(policy, key).name,
                        })
                        .collect(),
                    significant_effect: process.significant_effect,
                })
                .collect(),
            any_significant_effect: policy
                .automated_processes()
                .iter()
                .any(|process| process.significant_effect),
            security: policy
                .security_measures()
                .iter()
                .map(|m| (m.name.clone(), m.description.clone()))
                .collect(),
        }
    }
}

/// What the page says about which version it shows.
pub struct VersionBanner {
    effective_on: Option<String>,
    /// Set on a past or future version's page.
    status: Option<String>,
    changes: Vec<(String, String, &'static str)>,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    layout: Layout,
    policy: PolicyView,
    banner: VersionBanner,
}

pub async fn privacy_page(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let in_force: std::sync::Arc<PolicyInForce> = state.policy.current().await?;
    render(&PrivacyPage {
        layout: Layout::new(&state, &viewer, "Privacy policy"),
        policy: PolicyView::new(&in_force.policy),
        banner: VersionBanner {
            effective_on: in_force.version.as_ref().map(|v| v.effective_on.clone()),
            status: None,
            changes: vec![],
        },
    })
}

pub struct VersionLine {
    id: i64,
    label: String,
    effective_on: String,
    published: String,
    material: bool,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "privacy_history.html")]
struct HistoryPage {
    layout: Layout,
    versions: Vec<VersionLine>,
}

fn version_state(version: &VersionInfo, in_force: Option<i64>, today: &str) -> &'static str {
    if Some(version.id) == in_force {
        "in force"
    } else if version.effective_on.as_str() > today {
        "upcoming"
    } else {
        "replaced"
    }
}

pub async fn history(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let in_force = state.policy.current().await?;
    let in_force_id = in_force.version.as_ref().map(|v| v.id);
    let today = crate::policy::today();
    let versions = state
        .store
        .policy_versions()
        .await?
        .iter()
        .map(VersionInfo::from)
        .map(|v| VersionLine {
            state: version_state(&v, in_force_id, &today),
            id: v.id,
            published: date(v.published_at),
            label: v.label,
            effective_on: v.effective_on,
            material: v.material,
        })
        .collect();
    render(&HistoryPage {
        layout: Layout::new(&state, &viewer, "Privacy policy history"),
        versions,
    })
}

pub async fn version_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let id: i64 = id.parse().map_err(|_| Error::NotFound("policy version"))?;
    let row = state
        .store
        .policy_version(id)
        .await?
        .ok_or(Error::NotFound("policy version"))?;
    let policy = state.policy.with_operator(parse_stored(&row)?);
    let in_force = state.policy.current().await?;
    let info = VersionInfo::from(&row);
    let status = match version_state(
        &info,
        in_force.version.as_ref().map(|v| v.id),
        &crate::policy::today(),
    ) {
        "in force" => "This is the version in force.".to_string(),
        "upcoming" => format!("This version takes effect on {}.", info.effective_on),
        _ => "A later version replaced this one.".to_string(),
    };
    let changes = parse_diff(&row.diff_json)
        .into_iter()
        .map(|change| {
            let class = match change.class {
                ChangeClass::Material => "material",
                ChangeClass::Editorial => "editorial",
            };
            (change.path, change.description, class)
        })
        .collect();
    render(&PrivacyPage {
        layout: Layout::new(
            &state,
            &viewer,
            format!("Privacy policy, version {}", row.version_label),
        ),
        policy: PolicyView::new(&policy),
        banner: VersionBanner {
            effective_on: Some(row.effective_on.clone()),
            status: Some(status),
            changes,
        },
    })
}

#[derive(Template)]
#[template(path = "automated_decisions.html")]
struct AutomatedPage {
    layout: Layout,
    policy: PolicyView,
}

pub async fn automated_decisions(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let in_force = state.policy.current().await?;
    render(&AutomatedPage {
        layout: Layout::new(&state, &viewer, "Automated decisions"),
        policy: PolicyView::new(&in_force.policy),
    })
}

/// The record of processing as an HTML fragment's data; shared by the staff page and
/// `covenant ropa --format html`.
pub struct RopaView {
    pub record: RecordOfProcessing,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    policy: PolicyView,
}

impl RopaView {
    pub fn new(policy: &Policy) -> Self {
        let record = record_of_processing(policy);
        let mut rows = record.to_csv_rows();
        let header = if rows.is_empty() {
            Vec::new()
        } else {
            rows.remove(0)
        };
        Self {
            record,
            header,
            rows,
            policy: PolicyView::new(policy),
        }
    }
}

#[derive(Template)]
#[template(path = "ropa.html")]
struct RopaPage {
    layout: Layout,
    ropa: RopaView,
}

/// The record as a standalone HTML document, for `covenant ropa --format html`.
#[derive(Template)]
#[template(path = "ropa_document.html")]
pub struct RopaDocument {
    pub ropa: RopaView,
    pub generated_on: String,
}

pub async fn staff_ropa(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let Some(signed_in) = &viewer.0 else {
        return Ok((StatusCode::SEE_OTHER, [(LOCATION, "/sign-in")]).into_response());
    };
    if signed_in.actor().role != crate::domain::Role::Administrator {
        return Err(Error::Forbidden.into());
    }
    let in_force = state.policy.current().await?;
    render(&RopaPage {
        layout: Layout::new(&state, &viewer, "Record of processing activities"),
        ropa: RopaView::new(&in_force.policy),
    })
}

#[derive(Deserialize)]
pub struct AcknowledgeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: String,
}

/// A member confirms having read the notice of a material version.
pub async fn acknowledge(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<AcknowledgeForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    let version_id: i64 = form
        .version
        .parse()
        .map_err(|_| Error::NotFound("policy version"))?;
    let version = state
        .store
        .policy_version(version_id)
        .await?
        .ok_or(Error::NotFound("policy version"))?;
    state
        .store
        .acknowledge_policy_version(signed_in.user.user_id, version.id, crate::now())
        .await?;
    Ok((StatusCode::SEE_OTHER, [(LOCATION, "/privacy")]).into_response())
}
