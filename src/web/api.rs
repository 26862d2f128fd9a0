//! The JSON API under `/api/v1`: every action the pages offer, for the operator's other
//! services and for clients. Authentication is `Authorization: Bearer <token>` from
//! `POST /api/v1/session`; bearer tokens are not sent by browsers on their own, so the API
//! needs no anti-forgery token. Errors are `{"error": {"code", "message", "fields"}}`.

use crate::accounts::Registration;
use crate::error::Error;
use crate::forum::{POSTS_PER_PAGE, TOPICS_PER_PAGE};
use crate::store::{CategoryRow, PostRow, TopicRow};
use crate::web::AppState;
use crate::web::auth::{ClientOrigin, Viewer};
use crate::web::error::{ApiErrorBody, ApiResult};
use crate::web::forms::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "Covenant API", description = "The forum's JSON API. Errors carry a stable `code` from the ErrorCode catalogue."),
    paths(
        register, verify_email, create_session, delete_session, request_password_reset,
        complete_password_reset, me, categories, category_topics, topic, create_topic, reply,
        edit_post, delete_post, hide_post, unhide_post, blog, blog_article, create_article,
        comment, profile, policy, policy_versions, policy_version, policy_diff, ropa,
        crate::web::consent::api_decision, crate::web::consent::api_record_choice,
        crate::web::consent::api_receipts, crate::web::consent::api_written_opt_out,
        crate::web::requests::api_create, crate::web::requests::api_verify,
        crate::web::requests::api_mine, crate::web::requests::api_appeal,
        crate::web::requests::api_status, crate::web::requests::api_withdraw,
        crate::web::requests::api_evidence,
        crate::web::requests::api_queue, crate::web::requests::api_staff_action,
        crate::web::fulfilment::api_export
    ),
    components(schemas(crate::web::error::ErrorCode, crate::domain::InvalidField)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn signed_in(viewer: &Viewer) -> Result<&crate::web::auth::SignedIn, Error> {
    viewer.require()
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// The year of birth, as a number or a string of digits.
    #[serde(default)]
    #[schema(value_type = i64)]
    birth_year: serde_json::Value,
    /// ISO 3166-1 alpha-2 code of the country of residence; `ZZ` for one not listed.
    #[serde(default)]
    country: String,
    /// Two-letter state code, required when `country` is `US`.
    #[serde(default)]
    us_state: String,
    /// `YYYY-MM-DD`, required only when the birth year alone cannot decide the age rules
    /// (the error names `birth_date`); used once, never kept.
    #[serde(default)]
    birth_date: String,
    /// A parent's address, required where the member's age needs a parent's consent (the
    /// error names `parent_email`).
    #[serde(default)]
    parent_email: String,
    /// Opt in to product-news email. Never assumed.
    #[serde(default)]
    news: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    user_id: i64,
    /// Always true: a verification link was sent to the address.
    verification_sent: bool,
    /// True when the account waits for a parent's consent (emailed) before it can post.
    awaiting_parent: bool,
}

/// Create an account; a verification link is emailed.
#[utoipa::path(post, path = "/api/v1/users", request_body = RegisterRequest,
    responses((status = 201, body = Registered), (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    origin: ClientOrigin,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let birth_year = match &body.birth_year {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let policy = state.policy.current().await?;
    let registered = state
        .accounts
        .register(
            &Registration {
                username: &body.username,
                email: &body.email,
                password: &body.password,
                birth_year: &birth_year,
                country: &body.country,
                us_state: &body.us_state,
                birth_date: &body.birth_date,
                parent_email: &body.parent_email,
                news: body.news,
                client_ip: origin.0.ip.expose(),
            },
            &policy.policy,
        )
        .await?;
    state.mailer.wake();
    Ok((
        StatusCode::CREATED,
        axum::Json(Registered {
            user_id: registered.user_id,
            verification_sent: true,
            awaiting_parent: registered.awaiting_parent,
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    #[serde(default)]
    token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Done {
    ok: bool,
}

/// Confirm an email address with the token from the verification link.
#[utoipa::path(post, path = "/api/v1/users/verify-email", request_body = TokenRequest,
    responses((status = 200, body = Done), (status = 400, body = ApiErrorBody)))]
pub async fn verify_email(
    State(state): State<AppState>,
    Json(body): Json<TokenRequest>,
) -> ApiResult<axum::Json<Done>> {
    state.accounts.verify_email(&body.token).await?;
    Ok(axum::Json(Done { ok: true }))
}

#[derive(Deserialize, ToSchema)]
pub struct SignInRequest {
    /// Username or email address.
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    /// The authenticator app's six-digit code, or a recovery code, for accounts with 2-step
    /// verification; without it such an account gets `second_factor_required`.
    #[serde(default)]
    code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    user_id: i64,
    expires_in_seconds: i64,
}

/// Sign in and receive a bearer token.
#[utoipa::path(post, path = "/api/v1/session", request_body = SignInRequest,
    responses((status = 201, body = SessionCreated), (status = 401, body = ApiErrorBody)))]
pub async fn create_session(
    State(state): State<AppState>,
    origin: ClientOrigin,
    Json(body): Json<SignInRequest>,
) -> ApiResult<Response> {
    let session = state
        .accounts
        .sign_in(&body.login, &body.password, body.code.as_deref(), &origin.0)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SessionCreated {
            token: session.token,
            user_id: session.user_id,
            expires_in_seconds: session.max_age_seconds,
        }),
    )
        .into_response())
}

/// Sign out: the bearer token stops working.
#[utoipa::path(delete, path = "/api/v1/session", security(("bearer" = [])),
    responses((status = 200, body = Done), (status = 401, body = ApiErrorBody)))]
pub async fn delete_session(
    State(state): State<AppState>,
    viewer: Viewer,
) -> ApiResult<axum::Json<Done>> {
    let signed_in = signed_in(&viewer)?;
    state.accounts.sign_out(&signed_in.token).await?;
    Ok(axum::Json(Done { ok: true }))
}

#[derive(Deserialize, ToSchema)]
pub struct EmailRequest {
    #[serde(default)]
    email: String,
}

/// Ask for a password reset link. The answer is the same whether or not the address has an account.
#[utoipa::path(post, path = "/api/v1/password-reset", request_body = EmailRequest,
    responses((status = 202, body = Done), (status = 422, body = ApiErrorBody)))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    origin: ClientOrigin,
    Json(body): Json<EmailRequest>,
) -> ApiResult<Response> {
    state
        .accounts
        .request_password_reset(&body.email, origin.0.ip.expose())
        .await?;
    state.mailer.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(Done { ok: true })).into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct NewPasswordRequest {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

/// Set a new password with the token from the reset link; every session of the account ends.
#[utoipa::path(post, path = "/api/v1/password-reset/complete", request_body = NewPasswordRequest,
    responses((status = 200, body = Done), (status = 400, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn complete_password_reset(
    State(state): State<AppState>,
    Json(body): Json<NewPasswordRequest>,
) -> ApiResult<axum::Json<Done>> {
    state
        .accounts
        .reset_password(&body.token, &body.password)
        .await?;
    Ok(axum::Json(Done { ok: true }))
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    user_id: i64,
    username: String,
    role: String,
    email_verified: bool,
}

/// The signed-in member.
#[utoipa::path(get, path = "/api/v1/me", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ApiErrorBody)))]
pub async fn me(viewer: Viewer) -> ApiResult<axum::Json<Me>> {
    let signed_in = signed_in(&viewer)?;
    let user = &signed_in.user;
    Ok(axum::Json(Me {
        user_id: user.user_id,
        username: user.username.clone(),
        role: user.role.clone(),
        email_verified: user.email_verified_at.is_some(),
    }))
}

/// Every category.
#[utoipa::path(get, path = "/api/v1/categories", responses((status = 200, body = Vec<CategoryRow>)))]
pub async fn categories(State(state): State<AppState>) -> ApiResult<axum::Json<Vec<CategoryRow>>> {
    Ok(axum::Json(state.store.categories().await?))
}

#[derive(Deserialize, IntoParams)]
pub struct PageParams {
    /// Page number, from 1.
    page: Option<i64>,
}

impl PageParams {
    fn offset(&self, per_page: i64) -> Result<i64, Error> {
        match self.page {
            None => Ok(0),
            Some(n) if (1..=1_000_000).contains(&n) => Ok((n - 1) * per_page),
            Some(_) => Err(Error::BadRequest("page must be a positive number".into())),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TopicList {
    topics: Vec<TopicRow>,
    total: i64,
    per_page: i64,
}

/// The topics of a category, newest activity first.
#[utoipa::path(get, path = "/api/v1/categories/{slug}/topics", params(("slug" = String, Path), PageParams),
    responses((status = 200, body = TopicList), (status = 404, body = ApiErrorBody)))]
pub async fn category_topics(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<TopicList>> {
    let offset = params.offset(TOPICS_PER_PAGE)?;
    let category = state
        .store
        .category_by_slug(&slug)
        .await?
        .ok_or(Error::NotFound("category"))?;
    let topics = state
        .store
        .topics("discussion", Some(category.id), TOPICS_PER_PAGE, offset)
        .await?;
    Ok(axum::Json(TopicList {
        topics,
        total: category.n_topics,
        per_page: TOPICS_PER_PAGE,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TopicWithPosts {
    topic: TopicRow,
    posts: Vec<PostRow>,
    per_page: i64,
}

/// The posts the viewer may see: held posts only for their author and moderators, and hidden
/// posts without their text except for moderators.
fn visible_posts(posts: Vec<PostRow>, viewer: &Viewer) -> Vec<PostRow> {
    let actor = viewer.0.as_ref().map(|s| s.actor());
    let moderator = actor.as_ref().is_some_and(|a| a.acts_as_staff());
    let mut posts: Vec<PostRow> = posts
        .into_iter()
        .filter(|post| crate::forum::may_see_post(post, actor.as_ref()))
        .collect();
    for post in &mut posts {
        if post.hidden_at.is_some() && !moderator {
            post.body_md.clear();
            post.body_html.clear();
        }
    }
    posts
}

async fn topic_with_posts(
    state: &AppState,
    viewer: &Viewer,
    topic: TopicRow,
    params: &PageParams,
) -> Result<TopicWithPosts, Error> {
    let actor = viewer.0.as_ref().map(|s| s.actor());
    if !crate::forum::may_see_topic(&topic, actor.as_ref()) {
        return Err(Error::NotFound("topic"));
    }
    let posts = state
        .store
        .posts_of_topic(topic.id, POSTS_PER_PAGE, params.offset(POSTS_PER_PAGE)?)
        .await?;
    Ok(TopicWithPosts {
        topic,
        posts: visible_posts(posts, viewer),
        per_page: POSTS_PER_PAGE,
    })
}

/// A topic with one page of its posts.
#[utoipa::path(get, path = "/api/v1/topics/{id}", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = TopicWithPosts), (status = 404, body = ApiErrorBody)))]
pub async fn topic(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<TopicWithPosts>> {
    let id: i64 = id.parse().map_err(|_| Error::NotFound("topic"))?;
    let topic = state
        .store
        .topic_by_id(id)
        .await?
        .filter(|t| t.kind == "discussion")
        .ok_or(Error::NotFound("topic"))?;
    Ok(axum::Json(
        topic_with_posts(&state, &viewer, topic, &params).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct NewTopicRequest {
    /// The category's slug.
    #[serde(default)]
    category: String,
    #[serde(default)]
    title: String,
    /// Markdown.
    #[serde(default)]
    body: String,
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    topic_id: i64,
    post_id: i64,
    post_number: i64,
    /// Where the page shows it.
    url: String,
    /// True when the spam and unsafe-link check held the post: until a moderator releases it,
    /// only its author and moderators see it (and, for a new topic, the topic itself).
    held: bool,
}

/// Open a topic with its first post.
#[utoipa::path(post, path = "/api/v1/topics", request_body = NewTopicRequest, security(("bearer" = [])),
    responses((status = 201, body = Created), (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn create_topic(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    Json(body): Json<NewTopicRequest>,
) -> ApiResult<Response> {
    let actor = signed_in(&viewer)?.actor();
    let place = state
        .forum
        .create_topic(&actor, &body.category, &body.title, &body.body, &origin.0)
        .await?;
    let topic = state
        .store
        .topic_by_id(place.topic_id)
        .await?
        .ok_or(Error::NotFound("topic"))?;
    let url = format!("{}/t/{}/{}", state.config.base_url(), topic.slug, topic.id);
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            topic_id: place.topic_id,
            post_id: place.post_id,
            post_number: place.post_number,
            url,
            held: place.held,
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct BodyRequest {
    /// Markdown.
    #[serde(default)]
    body: String,
}

/// Reply to a topic.
#[utoipa::path(post, path = "/api/v1/topics/{id}/posts", params(("id" = i64, Path)), request_body = BodyRequest, security(("bearer" = [])),
    responses((status = 201, body = Created), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn reply(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    Path(id): Path<String>,
    Json(body): Json<BodyRequest>,
) -> ApiResult<Response> {
    let actor = signed_in(&viewer)?.actor();
    let id: i64 = id.parse().map_err(|_| Error::NotFound("topic"))?;
    let topic = state
        .store
        .topic_by_id(id)
        .await?
        .filter(|t| t.kind == "discussion")
        .ok_or(Error::NotFound("topic"))?;
    let place = state
        .forum
        .reply(&actor, topic.id, &body.body, &origin.0)
        .await?;
    let url = format!(
        "{}/t/{}/{}#post-{}",
        state.config.base_url(),
        topic.slug,
        topic.id,
        place.post_number
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            topic_id: place.topic_id,
            post_id: place.post_id,
            post_number: place.post_number,
            url,
            held: place.held,
        }),
    )
        .into_response())
}

fn parse_post_id(raw: &str) -> Result<i64, Error> {
    raw.parse().map_err(|_| Error::NotFound("post"))
}

/// Replace the text of one's own post. An edit the spam and unsafe-link check flags makes the
/// post wait for a moderator: `held_at` is set in the answer.
#[utoipa::path(patch, path = "/api/v1/posts/{id}", params(("id" = i64, Path)), request_body = BodyRequest, security(("bearer" = [])),
    responses((status = 200, body = PostRow), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn edit_post(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Json(body): Json<BodyRequest>,
) -> ApiResult<axum::Json<PostRow>> {
    let actor = signed_in(&viewer)?.actor();
    Ok(axum::Json(
        state
            .forum
            .edit(&actor, parse_post_id(&id)?, &body.body)
            .await?,
    ))
}

/// Delete the content of one's own post.
#[utoipa::path(delete, path = "/api/v1/posts/{id}", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Done), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
pub async fn delete_post(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Done>> {
    let actor = signed_in(&viewer)?.actor();
    state.forum.delete(&actor, parse_post_id(&id)?).await?;
    Ok(axum::Json(Done { ok: true }))
}

/// Hide a post from members (moderators). For a held post, this is the decision to hide it.
#[utoipa::path(post, path = "/api/v1/posts/{id}/hide", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Done), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
pub async fn hide_post(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Done>> {
    let actor = signed_in(&viewer)?.actor();
    state
        .forum
        .set_hidden(&actor, parse_post_id(&id)?, true)
        .await?;
    Ok(axum::Json(Done { ok: true }))
}

/// Show a hidden post again (moderators). For a held post, this is the decision to release it.
#[utoipa::path(post, path = "/api/v1/posts/{id}/unhide", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Done), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
pub async fn unhide_post(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Done>> {
    let actor = signed_in(&viewer)?.actor();
    state
        .forum
        .set_hidden(&actor, parse_post_id(&id)?, false)
        .await?;
    Ok(axum::Json(Done { ok: true }))
}

/// Blog articles, newest first.
#[utoipa::path(get, path = "/api/v1/blog", params(PageParams), responses((status = 200, body = TopicList)))]
pub async fn blog(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<TopicList>> {
    let offset = params.offset(TOPICS_PER_PAGE)?;
    let topics = state
        .store
        .topics("blog", None, TOPICS_PER_PAGE, offset)
        .await?;
    let total = state.store.count_topics("blog", None).await?;
    Ok(axum::Json(TopicList {
        topics,
        total,
        per_page: TOPICS_PER_PAGE,
    }))
}

/// A blog article with one page of its comments (the article is post 1).
#[utoipa::path(get, path = "/api/v1/blog/{slug}", params(("slug" = String, Path), PageParams),
    responses((status = 200, body = TopicWithPosts), (status = 404, body = ApiErrorBody)))]
pub async fn blog_article(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(slug): Path<String>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<TopicWithPosts>> {
    let topic = state
        .store
        .blog_topic_by_slug(&slug)
        .await?
        .ok_or(Error::NotFound("article"))?;
    Ok(axum::Json(
        topic_with_posts(&state, &viewer, topic, &params).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct NewArticleRequest {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

/// Publish a blog article (moderators and administrators).
#[utoipa::path(post, path = "/api/v1/blog", request_body = NewArticleRequest, security(("bearer" = [])),
    responses((status = 201, body = Created), (status = 403, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn create_article(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    Json(body): Json<NewArticleRequest>,
) -> ApiResult<Response> {
    let actor = signed_in(&viewer)?.actor();
    let (place, slug) = state
        .forum
        .create_article(&actor, &body.title, &body.body, &origin.0)
        .await?;
    let url = format!("{}/blog/{slug}", state.config.base_url());
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            topic_id: place.topic_id,
            post_id: place.post_id,
            post_number: place.post_number,
            url,
            held: place.held,
        }),
    )
        .into_response())
}

/// Comment on a blog article.
#[utoipa::path(post, path = "/api/v1/blog/{slug}/comments", params(("slug" = String, Path)), request_body = BodyRequest, security(("bearer" = [])),
    responses((status = 201, body = Created), (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn comment(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    Path(slug): Path<String>,
    Json(body): Json<BodyRequest>,
) -> ApiResult<Response> {
    let actor = signed_in(&viewer)?.actor();
    let topic = state
        .store
        .blog_topic_by_slug(&slug)
        .await?
        .ok_or(Error::NotFound("article"))?;
    let place = state
        .forum
        .reply(&actor, topic.id, &body.body, &origin.0)
        .await?;
    let url = format!(
        "{}/blog/{slug}#post-{}",
        state.config.base_url(),
        place.post_number
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(Created {
            topic_id: place.topic_id,
            post_id: place.post_id,
            post_number: place.post_number,
            url,
            held: place.held,
        }),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct Profile {
    username: String,
    /// Left out while the member's processing is restricted (R9), as are `bio` and `n_posts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    joined_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_posts: Option<i64>,
}

/// A member's public profile.
#[utoipa::path(get, path = "/api/v1/users/{username}", params(("username" = String, Path)),
    responses((status = 200, body = Profile), (status = 404, body = ApiErrorBody)))]
pub async fn profile(
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> ApiResult<axum::Json<Profile>> {
    let user = state
        .store
        .user_by_username(&username.to_ascii_lowercase())
        .await?
        .filter(|user| user.closed_at.is_none())
        .ok_or(Error::NotFound("member"))?;
    // The purpose gate: a restricted member's profile shows nothing beyond their name.
    if !state
        .purpose
        .allows(user.id, crate::purpose::Purpose::ProfileDetails)
        .await?
    {
        return Ok(axum::Json(Profile {
            username: user.username,
            joined_at: None,
            bio: None,
            n_posts: None,
        }));
    }
    let n_posts = state.store.count_public_posts_of_user(user.id).await?;
    Ok(axum::Json(Profile {
        username: user.username,
        joined_at: Some(user.created_at),
        bio: Some(user.bio),
        n_posts: Some(n_posts),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PolicyVersionMeta {
    id: i64,
    /// The `version` written in the policy file.
    label: String,
    /// `YYYY-MM-DD`.
    effective_on: String,
    /// Epoch seconds.
    published_at: i64,
    /// Whether the change from the version before was material (a notice was sent).
    material: bool,
    /// SHA-256 of the published file, hex.
    sha256: String,
    /// `in force`, `upcoming` or `replaced`.
    status: &'static str,
}

fn version_meta(
    info: &crate::policy::VersionInfo,
    in_force: Option<i64>,
    today: &str,
) -> PolicyVersionMeta {
    PolicyVersionMeta {
        id: info.id,
        label: info.label.clone(),
        effective_on: info.effective_on.clone(),
        published_at: info.published_at,
        material: info.material,
        sha256: info.sha256.clone(),
        status: if Some(info.id) == in_force {
            "in force"
        } else if info.effective_on.as_str() > today {
            "upcoming"
        } else {
            "replaced"
        },
    }
}

#[derive(Serialize, ToSchema)]
pub struct PolicyDocument {
    /// Absent while no published version is in force (the starting policy is shown).
    version: Option<PolicyVersionMeta>,
    /// The whole policy, as in the policy file, with the operator's facts.
    #[schema(value_type = Object)]
    policy: serde_json::Value,
    /// The changes from the version before (empty for the policy in force).
    #[schema(value_type = Vec<Object>)]
    changes: Vec<covenant_core::diff::Change>,
}

fn policy_json(policy: &covenant_core::policy::Policy) -> Result<serde_json::Value, Error> {
    serde_json::to_value(policy)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("encoding a policy")))
}

/// The privacy policy in force.
#[utoipa::path(get, path = "/api/v1/policy", responses((status = 200, body = PolicyDocument)))]
pub async fn policy(State(state): State<AppState>) -> ApiResult<axum::Json<PolicyDocument>> {
    let in_force = state.policy.current().await?;
    let today = crate::policy::today();
    let id = in_force.version.as_ref().map(|v| v.id);
    Ok(axum::Json(PolicyDocument {
        version: in_force
            .version
            .as_ref()
            .map(|v| version_meta(v, id, &today)),
        policy: policy_json(&in_force.policy)?,
        changes: vec![],
    }))
}

/// Every published version of the privacy policy, newest first.
#[utoipa::path(get, path = "/api/v1/policy/versions", responses((status = 200, body = Vec<PolicyVersionMeta>)))]
pub async fn policy_versions(
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Vec<PolicyVersionMeta>>> {
    let in_force = state.policy.current().await?;
    let id = in_force.version.as_ref().map(|v| v.id);
    let today = crate::policy::today();
    let versions = state.store.policy_versions().await?;
    Ok(axum::Json(
        versions
            .iter()
            .map(|row| version_meta(&crate::policy::VersionInfo::from(row), id, &today))
            .collect(),
    ))
}

async fn stored_policy(
    state: &AppState,
    id: i64,
) -> Result<
    (
        crate::store::PolicyVersionRow,
        covenant_core::policy::Policy,
    ),
    Error,
> {
    let row = state
        .store
        .policy_version(id)
        .await?
        .ok_or(Error::NotFound("policy version"))?;
    let policy = state
        .policy
        .with_operator(crate::policy::parse_stored(&row)?);
    Ok((row, policy))
}

/// One published version of the privacy policy, with its changes from the version before.
#[utoipa::path(get, path = "/api/v1/policy/versions/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = PolicyDocument), (status = 404, body = ApiErrorBody)))]
pub async fn policy_version(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PolicyDocument>> {
    let id: i64 = id.parse().map_err(|_| Error::NotFound("policy version"))?;
    let (row, policy) = stored_policy(&state, id).await?;
    let in_force = state.policy.current().await?;
    let meta = version_meta(
        &crate::policy::VersionInfo::from(&row),
        in_force.version.as_ref().map(|v| v.id),
        &crate::policy::today(),
    );
    Ok(axum::Json(PolicyDocument {
        version: Some(meta),
        policy: policy_json(&policy)?,
        changes: crate::policy::parse_diff(&row.diff_json),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct DiffParams {
    /// The older version's id.
    from: Option<String>,
    /// The newer version's id.
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyDiffBody {
    from: i64,
    to: i64,
    /// True when any change is material (data collected, purposes, sharing or rights).
    material: bool,
    #[schema(value_type = Vec<Object>)]
    changes: Vec<covenant_core::diff::Change>,
}

/// The semantic difference between two published versions, each change classified.
#[utoipa::path(get, path = "/api/v1/policy/diff", params(DiffParams),
    responses((status = 200, body = PolicyDiffBody), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
pub async fn policy_diff(
    State(state): State<AppState>,
    Query(params): Query<DiffParams>,
) -> ApiResult<axum::Json<PolicyDiffBody>> {
    let id = |raw: &Option<String>, name: &str| -> Result<i64, Error> {
        raw.as_deref()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::BadRequest(format!("{name} must be a policy version id")))
    };
    let (from, to) = (id(&params.from, "from")?, id(&params.to, "to")?);
    let (_, old) = stored_policy(&state, from).await?;
    let (_, new) = stored_policy(&state, to).await?;
    let changes = covenant_core::diff::diff(&old, &new);
    Ok(axum::Json(PolicyDiffBody {
        from,
        to,
        material: changes.is_material(),
        changes: changes.changes().to_vec(),
    }))
}

/// The record of processing activities (GDPR Art. 30) of the policy in force. Administrators only.
#[utoipa::path(get, path = "/api/v1/ropa", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody)))]
pub async fn ropa(
    State(state): State<AppState>,
    viewer: Viewer,
) -> ApiResult<axum::Json<covenant_core::ropa::RecordOfProcessing>> {
    if signed_in(&viewer)?.actor().role != crate::domain::Role::Administrator {
        return Err(Error::Forbidden.into());
    }
    let in_force = state.policy.current().await?;
    Ok(axum::Json(covenant_core::ropa::record_of_processing(
        &in_force.policy,
    )))
}

/// The OpenAPI document.
pub async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

/// Unknown API paths answer in the API's format.
pub async fn not_found() -> crate::web::error::ApiError {
    crate::web::error::ApiError(Error::NotFound("endpoint"))
}
