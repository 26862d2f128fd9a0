//! Pages for the people the policy names (promises F6, M1): one-click unsubscribe (RFC 8058),
//! the member's email preferences, and a parent's consent for a minor's account. Also the
//! country and state lists the registration form offers.

use crate::digest::{DIGEST_OPT_IN_TEXT, DigestMethod};
use crate::error::Error;
use crate::news::{NEWS_OPT_IN_TEXT, NewsMethod};
use crate::web::AppState;
use crate::web::auth::{Viewer, check_form};
use crate::web::error::PageResult;
use crate::web::forms::{Form, decode_form};
use crate::web::pages::{Layout, date, page, see_other};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;

/// Countries offered at registration: every EU/EEA country, the UK, the US and a few more
/// by name; anyone else picks "another country" (`ZZ`, a code ISO 3166 leaves unassigned).
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AU", "Australia"),
    ("AT", "Austria"),
    ("BE", "Belgium"),
    ("BR", "Brazil"),
    ("BG", "Bulgaria"),
    ("CA", "Canada"),
    ("HR", "Croatia"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DK", "Denmark"),
    ("EE", "Estonia"),
    ("FI", "Finland"),
    ("FR", "France"),
    ("DE", "Germany"),
    ("GR", "Greece"),
    ("HU", "Hungary"),
    ("IS", "Iceland"),
    ("IN", "India"),
    ("IE", "Ireland"),
    ("IT", "Italy"),
    ("JP", "Japan"),
    ("LV", "Latvia"),
    ("LI", "Liechtenstein"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("MT", "Malta"),
    ("MX", "Mexico"),
    ("NL", "Netherlands"),
    ("NZ", "New Zealand"),
    ("NO", "Norway"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("RO", "Romania"),
    ("SK", "Slovakia"),
    ("SI", "Slovenia"),
    ("ES", "Spain"),
    ("SE", "Sweden"),
    ("CH", "Switzerland"),
    ("GB", "United Kingdom"),
    ("US", "United States"),
    ("ZZ", "Another country"),
];

/// US states and DC by postal code, for residents of the US.
pub const US_STATES: &[(&str, &str)] = &[
    ("AL", "Alabama"),
    ("AK", "Alaska"),
    ("AZ", "Arizona"),
    ("AR", "Arkansas"),
    ("CA", "California"),
    ("CO", "Colorado"),
    ("CT", "Connecticut"),
    ("DE", "Delaware"),
    ("DC", "District of Columbia"),
    ("FL", "Florida"),
    ("GA", "Georgia"),
    ("HI", "Hawaii"),
    ("ID", "Idaho"),
    ("IL", "Illinois"),
    ("IN", "Indiana"),
    ("IA", "Iowa"),
    ("KS", "Kansas"),
    ("KY", "Kentucky"),
    ("LA", "Louisiana"),
    ("ME", "Maine"),
    ("MD", "Maryland"),
    ("MA", "Massachusetts"),
    ("MI", "Michigan"),
    ("MN", "Minnesota"),
    ("MS", "Mississippi"),
    ("MO", "Missouri"),
    ("MT", "Montana"),
    ("NE", "Nebraska"),
    ("NV", "Nevada"),
    ("NH", "New Hampshire"),
    ("NJ", "New Jersey"),
    ("NM", "New Mexico"),
    ("NY", "New York"),
    ("NC", "North Carolina"),
    ("ND", "North Dakota"),
    ("OH", "Ohio"),
    ("OK", "Oklahoma"),
    ("OR", "Oregon"),
    ("PA", "Pennsylvania"),
    ("RI", "Rhode Island"),
    ("SC", "South Carolina"),
    ("SD", "South Dakota"),
    ("TN", "Tennessee"),
    ("TX", "Texas"),
    ("UT", "Utah"),
    ("VT", "Vermont"),
    ("VA", "Virginia"),
    ("WA", "Washington"),
    ("WV", "West Virginia"),
    ("WI", "Wisconsin"),
    ("WY", "Wyoming"),
];

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct UnsubscribePage {
    layout: Layout,
    action: String,
    /// What the button stops.
    what: &'static str,
}

/// The page an unsubscribe link opens: a confirm button, so that a link scanner fetching the
/// URL does not unsubscribe anyone.
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    if state.news.token_user(&token).is_none() {
        return Err(Error::InvalidToken.into());
    }
    page(&UnsubscribePage {
        layout: Layout::new(&state, &viewer, "Leave the product-news list"),
        action: format!("/unsubscribe/{token}"),
        what: "product news",
    })
}

#[derive(Deserialize, Default)]
struct OneClick {
    #[serde(default, rename = "List-Unsubscribe")]
    list_unsubscribe: String,
}

/// The one-click unsubscribe (RFC 8058): works without a session or cookie, the signed token
/// in the address being the proof. No anti-forgery token is asked: a mail provider posts
/// here on its own, and a forger cannot know the token. Any body is accepted; the standard's
/// `List-Unsubscribe=One-Click` marks the mail client's post, the rest the page's button.
pub async fn unsubscribe(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
    body: Bytes,
) -> PageResult {
    let form: OneClick = decode_form(&body).unwrap_or_default();
    let method = if form.list_unsubscribe == "One-Click" {
        NewsMethod::OneClick
    } else {
        NewsMethod::UnsubscribePage
    };
    let policy = state.policy.current().await?;
    state
        .news
        .unsubscribe(&token, method, policy.policy.version())
        .await?;
    page(&crate::web::pages::MessagePage {
        layout: Layout::new(&state, &viewer, "You left the product-news list"),
        paragraphs: vec![
            "You will get no more product news from us. Messages about your account, and \
             notices of changes to the privacy policy, still reach you."
                .into(),
        ],
        link: Some(("/".into(), "Go to the forum".into())),
    })
}

#[derive(Template)]
#[template(path = "account/email.html")]
struct EmailPreferencesPage {
    layout: Layout,
    news_text: &'static str,
    subscribed: bool,
    since: String,
    minor_without_parent: bool,
    digest_text: &'static str,
    digest_subscribed: bool,
    digest_since: String,
    notice: Option<&'static str>,
}

async fn render_preferences(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<&'static str>,
) -> PageResult {
    let signed_in = viewer.require()?;
    let user_id = signed_in.user.user_id;
    let choice = state.store.news_choice_of(user_id).await?;
    let facts = state
        .store
        .age_facts_of(user_id)
        .await?
        .ok_or(Error::NotFound("member"))?;
    let year = time::OffsetDateTime::now_utc().year() as i64;
    let digest_since = state.digest.subscribed_since(user_id).await?;
    page(&EmailPreferencesPage {
        layout: Layout::new(state, viewer, "Email preferences"),
        news_text: NEWS_OPT_IN_TEXT,
        subscribed: choice.as_ref().is_some_and(|c| c.subscribed != 0),
        since: choice.map(|c| date(c.recorded_at)).unwrap_or_default(),
        minor_without_parent: year - facts.birth_year <= crate::news::NEWS_ADULT_AGE
            && facts.parent_allows_news == 0,
        digest_text: DIGEST_OPT_IN_TEXT,
        digest_subscribed: digest_since.is_some(),
        digest_since: digest_since.map(date).unwrap_or_default(),
        notice,
    })
}

pub async fn email_preferences(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    render_preferences(&state, &viewer, None).await
}

#[derive(Deserialize)]
pub struct PreferencesForm {
    #[serde(default)]
    csrf: String,
    /// Present only when the box is ticked.
    #[serde(default)]
    news: Option<String>,
}

pub async fn save_email_preferences(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<PreferencesForm>,
) -> PageResult {
    let signed_in = viewer.require()?;
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let policy = state.policy.current().await?;
    state
        .news
        .choose(
            signed_in.user.user_id,
            form.news.is_some(),
            NewsMethod::AccountPage,
            policy.policy.version(),
        )
        .await?;
    render_preferences(&state, &viewer, Some("Your choice is saved.")).await
}

#[derive(Deserialize)]
pub struct DigestPreferenceForm {
    #[serde(default)]
    csrf: String,
    /// Present only when the box is ticked; it is never pre-ticked for a member who did not
    /// ask.
    #[serde(default)]
    digest: Option<String>,
}

/// The digest choice, a form of its own so that saving product news never changes it.
pub async fn save_digest_preference(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<DigestPreferenceForm>,
) -> PageResult {
    let signed_in = viewer.require()?;
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let policy = state.policy.current().await?;
    state
        .digest
        .choose(
            signed_in.user.user_id,
            form.digest.is_some(),
            DigestMethod::AccountPage,
            policy.policy.version(),
        )
        .await?;
    render_preferences(&state, &viewer, Some("Your choice is saved.")).await
}

/// The page a digest's unsubscribe link opens: a confirm button, so that a link scanner
/// fetching the URL turns nothing off.
pub async fn digest_unsubscribe_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    if state.digest.token_user(&token).is_none() {
        return Err(Error::InvalidToken.into());
    }
    page(&UnsubscribePage {
        layout: Layout::new(&state, &viewer, "Stop the digest of followed topics"),
        action: format!("/digest/unsubscribe/{token}"),
        what: "the digest of topics you follow",
    })
}

/// The digest's one-click unsubscribe (RFC 8058), like the product-news one: the signed
/// token is the proof, so no session and no anti-forgery token are asked.
pub async fn digest_unsubscribe(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
    body: Bytes,
) -> PageResult {
    let form: OneClick = decode_form(&body).unwrap_or_default();
    let method = if form.list_unsubscribe == "One-Click" {
        DigestMethod::OneClick
    } else {
        DigestMethod::UnsubscribePage
    };
    let policy = state.policy.current().await?;
    state
        .digest
        .unsubscribe(&token, method, policy.policy.version())
        .await?;
    page(&crate::web::pages::MessagePage {
        layout: Layout::new(&state, &viewer, "The digest is off"),
        paragraphs: vec![
            "You will get no more digests of the topics you follow. You still follow them, \
             and can ask for the digest again from your email preferences."
                .into(),
        ],
        link: Some(("/".into(), "Go to the forum".into())),
    })
}

/// Follows the topic for the signed-in member and goes back to it.
pub async fn follow_topic(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    set_follow(state, viewer, headers, slug, id, form, true).await
}

pub async fn unfollow_topic(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    set_follow(state, viewer, headers, slug, id, form, false).await
}

async fn set_follow(
    state: AppState,
    viewer: Viewer,
    headers: HeaderMap,
    slug: String,
    id: String,
    form: CsrfOnly,
    follow: bool,
) -> PageResult {
    let signed_in = viewer.require()?;
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let id: i64 = id.parse().map_err(|_| Error::NotFound("topic"))?;
    let topic = state
        .store
        .topic_by_id(id)
        .await?
        .filter(|topic| topic.kind == "discussion" && topic.slug == slug)
        .ok_or(Error::NotFound("topic"))?;
    let actor = signed_in.actor();
    if !crate::forum::may_see_topic(&topic, Some(&actor)) {
        return Err(Error::NotFound("topic").into());
    }
    let user_id = signed_in.user.user_id;
    if follow {
        state.digest.follow(user_id, topic.id).await?;
    } else {
        state.digest.unfollow(user_id, topic.id).await?;
    }
    Ok(see_other(&format!("/t/{}/{}", topic.slug, topic.id)))
}

#[derive(Template)]
#[template(path = "parental_consent.html")]
struct ParentalConsentPage {
    layout: Layout,
    action: String,
    text: String,
    news_text: &'static str,
}

/// What a parent sees from the emailed link: the account, what it involves, and a consent
/// button (nothing is recorded by opening the link).
pub async fn parental_consent_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    let username = state.accounts.parental_request(&token).await?;
    page(&ParentalConsentPage {
        layout: Layout::new(&state, &viewer, "A parent's consent"),
        action: format!("/parental-consent/{token}"),
        text: crate::accounts::parent_consent_text(&state.config.site_name, &username),
        news_text: crate::accounts::PARENT_NEWS_TEXT,
    })
}

#[derive(Deserialize)]
pub struct ParentalConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    news: Option<String>,
}

pub async fn give_parental_consent(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<ParentalConsentForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let policy = state.policy.current().await?;
    state
        .accounts
        .give_parental_consent(&token, form.news.is_some(), &policy.policy)
        .await?;
    Ok(see_other("/parental-consent-recorded"))
}

pub async fn parental_consent_recorded(
    State(state): State<AppState>,
    viewer: Viewer,
) -> PageResult {
    page(&crate::web::pages::MessagePage {
        layout: Layout::new(&state, &viewer, "Thank you"),
        paragraphs: vec![
            "Your consent is recorded, with the date and the text you saw. The account can \
             now post. You can withdraw it and have the account deleted at any time from the \
             privacy page."
                .into(),
        ],
        link: Some(("/privacy".into(), "Read the privacy policy".into())),
    })
}

#[derive(Template)]
#[template(path = "feedback.html")]
struct FeedbackPage {
    layout: Layout,
    may_publish_text: &'static str,
    may_name_text: &'static str,
    errors: Vec<crate::domain::InvalidField>,
    sent: bool,
}

pub async fn feedback_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require()?;
    page(&FeedbackPage {
        layout: Layout::new(&state, &viewer, "Feedback and support"),
        may_publish_text: crate::feedback::MAY_PUBLISH_TEXT,
        may_name_text: crate::feedback::MAY_NAME_TEXT,
        errors: vec![],
        sent: false,
    })
}

#[derive(Deserialize)]
pub struct FeedbackForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
    /// Present only when ticked; never pre-ticked.
    #[serde(default)]
    may_publish: Option<String>,
    #[serde(default)]
    may_name: Option<String>,
}

pub async fn send_feedback(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<FeedbackForm>,
) -> PageResult {
    let signed_in = viewer.require()?;
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let result = state
        .feedback
        .submit(
            &signed_in.actor(),
            &form.body,
            form.may_publish.is_some(),
            form.may_name.is_some(),
        )
        .await;
    let errors = match result {
        Ok(_) => vec![],
        Err(Error::Invalid(errors)) => errors,
        Err(other) => return Err(other.into()),
    };
    page(&FeedbackPage {
        layout: Layout::new(&state, &viewer, "Feedback and support"),
        may_publish_text: crate::feedback::MAY_PUBLISH_TEXT,
        may_name_text: crate::feedback::MAY_NAME_TEXT,
        sent: errors.is_empty(),
        errors,
    })
}

struct PublishedLine {
    author: String,
    body: String,
    when: String,
}

#[derive(Template)]
#[template(path = "feedback_published.html")]
struct PublishedFeedbackPage {
    layout: Layout,
    lines: Vec<PublishedLine>,
}

pub async fn published_feedback(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let lines = state
        .feedback
        .published()
        .await?
        .into_iter()
        .map(|item| PublishedLine {
            author: item.author.unwrap_or_else(|| "A member".into()),
            body: item.body,
            when: date(item.published_at),
        })
        .collect();
    page(&PublishedFeedbackPage {
        layout: Layout::new(&state, &viewer, "What members told us"),
        lines,
    })
}

struct StaffFeedbackLine {
    id: i64,
    username: String,
    body: String,
    received: String,
    may_publish: bool,
    may_name: bool,
    published: bool,
    /// The gate let this row's personal fields show (the sender's processing is not
    /// restricted, and the reader's role may read them).
    shown: bool,
}

#[derive(Template)]
#[template(path = "staff/feedback.html")]
struct StaffFeedbackPage {
    layout: Layout,
    lines: Vec<StaffFeedbackLine>,
}

pub async fn staff_feedback(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let signed_in = viewer.require()?;
    let rows = state.feedback.for_staff(&signed_in.actor()).await?;
    // Members' messages to staff, with their usernames: each row is a read of its sender's
    // data, gated (role, purpose, the sender's restriction) and audited on its own.
    let categories = [crate::inventory::PRIVATE, crate::inventory::USERNAME];
    let reads: Vec<_> = rows
        .iter()
        .map(|row| crate::purpose::StaffRead {
            staff_id: signed_in.user.user_id,
            role: signed_in.actor().role,
            purpose: crate::purpose::StaffPurpose::FeedbackHandling,
            subject: Some(row.user_id),
            categories: &categories,
            assigned_to_me: false,
            request: None,
            count: None,
            item: Some(crate::audit::Detail::Feedback(row.id)),
        })
        .collect();
    let shown = state.purpose.staff_read_rows(&reads).await?;
    let lines = rows
        .into_iter()
        .zip(shown)
        .map(|(row, shown)| StaffFeedbackLine {
            id: row.id,
            username: if shown { row.username } else { String::new() },
            body: if shown { row.body } else { String::new() },
            received: date(row.created_at),
            may_publish: row.may_publish != 0,
            may_name: row.may_name != 0,
            published: row.published_at.is_some(),
            shown,
        })
        .collect();
    page(&StaffFeedbackPage {
        layout: Layout::new(&state, &viewer, "Feedback"),
        lines,
    })
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn publish_feedback(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    let signed_in = viewer.require()?;
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let id: i64 = id.parse().map_err(|_| Error::NotFound("feedback"))?;
    state.feedback.publish(&signed_in.actor(), id).await?;
    Ok(see_other("/staff/feedback"))
}

#[derive(Template)]
#[template(path = "account/profile.html")]
struct ProfileForm {
    layout: Layout,
    bio: String,
    saved: bool,
}

/// `GET /account/profile`: the member's own profile fields, to correct (R9).
pub async fn profile_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let Some(signed_in) = viewer.0.as_ref() else {
        return Ok(see_other("/sign-in"));
    };
    let user = state
        .store
        .user_by_id(signed_in.user.user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    page(&ProfileForm {
        layout: Layout::new(&state, &viewer, "Your profile"),
        bio: user.bio,
        saved: false,
    })
}

#[derive(Deserialize)]
pub struct ProfileFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    bio: String,
}

/// `POST /account/profile`: the member corrects their profile; audited with value classes.
pub async fn save_profile(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<ProfileFields>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let user_id = viewer.require()?.user.user_id;
    state
        .fulfilment
        .rectify(user_id, user_id, None, "bio", &form.bio)
        .await?;
    page(&ProfileForm {
        layout: Layout::new(&state, &viewer, "Your profile"),
        bio: form.bio.trim().to_string(),
        saved: true,
    })
}
