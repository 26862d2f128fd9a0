//! The HTML pages: what a visitor or member sees, rendered on the server from compile-time
//! checked templates, usable without JavaScript.

use crate::accounts::Registration;
use crate::domain::InvalidField;
use crate::error::Error;
use crate::forum::{POSTS_PER_PAGE, TOPICS_PER_PAGE, page_count};
use crate::store::{CategoryRow, PostRow, TopicRow};
use crate::web::AppState;
use crate::web::auth::{
    ClientOrigin, Viewer, check_form, clear_session_cookie, form_token, session_cookie,
};
use crate::web::error::{PageError, PageResult};
use crate::web::forms::Form;
use askama::Template;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

/// What every page's frame needs.
pub struct Layout {
    pub site_name: String,
    pub title: String,
    pub user: Option<LayoutUser>,
    pub csrf: String,
    /// A material policy change the signed-in member has not acknowledged yet.
    pub policy_notice: Option<crate::web::privacy::PolicyNotice>,
    /// The request's one consent decision: the banner and every optional tag ask it.
    pub consent: crate::web::consent::RequestConsent,
}

pub struct LayoutUser {
    pub username: String,
    pub email_verified: bool,
    /// A moderator with 2-step verification on: the nav links the queue of held posts.
    pub moderator: bool,
}

impl Layout {
    pub fn new(state: &AppState, viewer: &Viewer, title: impl Into<String>) -> Self {
        Self {
            site_name: state.config.site_name.clone(),
            title: title.into(),
            user: viewer.0.as_ref().map(|s| LayoutUser {
                username: s.user.username.clone(),
                email_verified: s.user.email_verified_at.is_some(),
                moderator: s.actor().acts_as_staff(),
            }),
            csrf: form_token(state, viewer),
            policy_notice: viewer
                .0
                .as_ref()
                .and_then(|_| crate::web::privacy::pending_notice()),
            consent: crate::web::consent::current(),
        }
    }

    /// The first-visit banner: until a choice exists, and only where its forms can be sent.
    pub fn show_banner(&self) -> bool {
        self.consent.context.show_banner() && !self.csrf.is_empty()
    }

    pub fn banner_intro(&self) -> &'static str {
        crate::consent::COOKIE_NOTICE_INTRO
    }
}

pub(crate) fn page(template: &impl Template) -> PageResult {
    let html = template
        .render()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("rendering a page")))?;
    Ok(Html(html).into_response())
}

pub(crate) fn page_with_status(status: StatusCode, template: &impl Template) -> PageResult {
    let mut response = page(template)?;
    *response.status_mut() = status;
    Ok(response)
}

pub(crate) fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location.to_string())]).into_response()
}

/// Dates as people read them, in UTC.
pub fn date(epoch: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    layout: Layout,
    heading: String,
    pub message: String,
}

impl ErrorPage {
    pub fn new(status: StatusCode, message: String) -> Self {
        let heading = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Sign in needed",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        Self {
            layout: Layout {
                site_name: "Covenant".into(),
                title: heading.into(),
                user: None,
                csrf: String::new(),
                policy_notice: None,
                consent: crate::web::consent::current(),
            },
            heading: heading.into(),
            message,
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub(crate) layout: Layout,
    pub(crate) paragraphs: Vec<String>,
    pub(crate) link: Option<(String, String)>,
}

pub struct Pager {
    pub base: String,
    /// Filters every page keeps, URL-encoded and ending with `&` (empty when none).
    pub query: String,
    pub current: i64,
    pub count: i64,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub(crate) page: Option<String>,
}

impl PageQuery {
    /// The requested page number, refusing anything that is not a positive number.
    pub(crate) fn number(&self) -> Result<i64, Error> {
        match &self.page {
            None => Ok(1),
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(Error::BadRequest("page must be a positive number".into())),
            },
        }
    }
}

pub struct TopicLine {
    href: String,
    title: String,
    author: String,
    n_posts: i64,
    activity: String,
}

fn topic_href(topic: &TopicRow) -> String {
    if topic.kind == "blog" {
        format!("/blog/{}", topic.slug)
    } else {
        format!("/t/{}/{}", topic.slug, topic.id)
    }
}

fn topic_lines(topics: Vec<TopicRow>) -> Vec<TopicLine> {
    topics
        .into_iter()
        .map(|t| TopicLine {
            href: topic_href(&t),
            activity: date(t.last_posted_at),
            title: t.title,
            author: t.author,
            n_posts: t.n_posts,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    categories: Vec<CategoryRow>,
    topics: Vec<TopicLine>,
    pager: Pager,
}

pub async fn home(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: OriginalUri,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let current = query.number()?;
    let render = async {
        let categories = state.store.categories().await?;
        let total = state.store.count_topics("discussion", None).await?;
        let topics = state
            .store
            .topics(
                "discussion",
                None,
                TOPICS_PER_PAGE,
                (current - 1) * TOPICS_PER_PAGE,
            )
            .await?;
        page(&HomePage {
            layout: Layout::new(&state, &viewer, "Latest"),
            categories,
            topics: topic_lines(topics),
            pager: Pager {
                base: "/".into(),
                query: String::new(),
                current,
                count: page_count(total, TOPICS_PER_PAGE),
            },
        })
    };
    state.page_cache.serve(&viewer, &uri, render).await
}

#[derive(Template)]
#[template(path = "category.html")]
struct CategoryPage {
    layout: Layout,
    category: CategoryRow,
    topics: Vec<TopicLine>,
    pager: Pager,
}

pub async fn category(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: OriginalUri,
    Path(slug): Path<String>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let current = query.number()?;
    let render = async {
        let category = state
            .store
            .category_by_slug(&slug)
            .await?
            .ok_or(Error::NotFound("category"))?;
        let topics = state
            .store
            .topics(
                "discussion",
                Some(category.id),
                TOPICS_PER_PAGE,
                (current - 1) * TOPICS_PER_PAGE,
            )
            .await?;
        page(&CategoryPage {
            layout: Layout::new(&state, &viewer, category.name.clone()),
            pager: Pager {
                base: format!("/c/{}", category.slug),
                query: String::new(),
                current,
                count: page_count(category.n_topics, TOPICS_PER_PAGE),
            },
            topics: topic_lines(topics),
            category,
        })
    };
    state.page_cache.serve(&viewer, &uri, render).await
}

struct PostView {
    id: i64,
    number: i64,
    author: String,
    html: String,
    created: String,
    edited: bool,
    hidden: bool,
    show_hidden: bool,
    /// Waits for a moderator; only its author and moderators get this far.
    held: bool,
    own: bool,
    deleted: bool,
    can_edit: bool,
    can_moderate: bool,
}

fn post_views(posts: Vec<PostRow>, viewer: &Viewer) -> Vec<PostView> {
    let actor = viewer.0.as_ref().map(|s| s.actor());
    let moderator = actor.as_ref().is_some_and(|a| a.acts_as_staff());
    posts
        .into_iter()
        .filter(|p| crate::forum::may_see_post(p, actor.as_ref()))
        .map(|p| {
            let deleted = p.deleted_at.is_some();
            let own = actor.as_ref().is_some_and(|a| a.user_id == p.user_id);
            PostView {
                id: p.id,
                number: p.post_number,
                created: date(p.created_at),
                edited: p.edited_at.is_some(),
                hidden: p.hidden_at.is_some(),
                show_hidden: moderator,
                held: p.held_at.is_some(),
                own,
                deleted,
                can_edit: own && !deleted,
                can_moderate: moderator && !deleted,
                html: if p.hidden_at.is_some() && !moderator {
                    String::new()
                } else {
                    p.body_html
                },
                author: p.author,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "topic.html")]
struct TopicPage {
    layout: Layout,
    title: String,
    category: Option<(String, String)>,
    posts: Vec<PostView>,
    pager: Pager,
    reply_action: Option<String>,
    reply_label: &'static str,
    /// The topic is unlisted while its opening post waits for a moderator.
    unlisted: bool,
    errors: Vec<InvalidField>,
    draft: String,
    /// For a signed-in member on a discussion: the follow or unfollow form's action and label.
    follow: Option<(String, &'static str)>,
}

struct TopicPageInput {
    topic: TopicRow,
    /// The category's slug and name when they were read with the topic (`Some(None)`: it has
    /// none); `None` reads them here.
    category: Option<Option<(String, String)>>,
    current: i64,
    errors: Vec<InvalidField>,
    draft: String,
}

async fn render_topic(
    state: &AppState,
    viewer: &Viewer,
    input: TopicPageInput,
) -> Result<TopicPage, Error> {
    let TopicPageInput {
        topic,
        category,
        current,
        errors,
        draft,
    } = input;
    let actor = viewer.0.as_ref().map(|s| s.actor());
    if !crate::forum::may_see_topic(&topic, actor.as_ref()) {
        return Err(Error::NotFound("topic"));
    }
    let unlisted = topic.hidden != 0;
    let posts = state
        .store
        .posts_of_topic(topic.id, POSTS_PER_PAGE, (current - 1) * POSTS_PER_PAGE)
        .await?;
    if posts.is_empty() && current > 1 {
        return Err(Error::NotFound("page"));
    }
    let category = match (category, topic.category_id) {
        (Some(known), _) => known,
        (None, Some(id)) => state.store.category_name(id).await?,
        (None, None) => None,
    }
    .map(|(slug, name)| (format!("/c/{slug}"), name));
    let href = topic_href(&topic);
    let blog = topic.kind == "blog";
    let follow = match &viewer.0 {
        Some(signed_in) if !blog => {
            if state
                .digest
                .follows(signed_in.user.user_id, topic.id)
                .await?
            {
                Some((format!("{href}/unfollow"), "Unfollow"))
            } else {
                Some((format!("{href}/follow"), "Follow"))
            }
        }
        _ => None,
    };
    Ok(TopicPage {
        layout: Layout::new(state, viewer, topic.title.clone()),
        title: topic.title.clone(),
        category,
        posts: post_views(posts, viewer),
        pager: Pager {
            base: href.clone(),
            query: String::new(),
            current,
            count: page_count(topic.n_posts, POSTS_PER_PAGE),
        },
        reply_action: viewer
            .0
            .as_ref()
            .filter(|_| !unlisted)
            .map(|_| format!("{href}/reply")),
        reply_label: if blog { "Comment" } else { "Reply" },
        unlisted,
        errors,
        draft,
        follow,
    })
}

pub async fn topic(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    uri: OriginalUri,
    Path((slug, id)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let current = query.number()?;
    let id: i64 = id.parse().map_err(|_| Error::NotFound("topic"))?;
    let render = async {
        let (topic, category) = state
            .store
            .topic_with_category(id)
            .await?
            .ok_or(Error::NotFound("topic"))?;
        if topic.kind != "discussion" {
            return Err(Error::NotFound("topic").into());
        }
        if topic.slug != slug {
            return Ok(Redirect::permanent(&topic_href(&topic)).into_response());
        }
        page(
            &render_topic(
                &state,
                &viewer,
                TopicPageInput {
                    topic,
                    category: Some(category),
                    current,
                    errors: vec![],
                    draft: String::new(),
                },
            )
            .await?,
        )
    };
    // A page from the cache is a view like any other.
    let response = state.page_cache.serve(&viewer, &uri, render).await?;
    if response.status() == StatusCode::OK {
        crate::web::retention::count_view(&state, &headers, id);
    }
    Ok(response)
}

pub async fn blog_article(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(slug): Path<String>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let current = query.number()?;
    let topic = state
        .store
        .blog_topic_by_slug(&slug)
        .await?
        .ok_or(Error::NotFound("article"))?;
    page(
        &render_topic(
            &state,
            &viewer,
            TopicPageInput {
                topic,
                category: None,
                current,
                errors: vec![],
                draft: String::new(),
            },
        )
        .await?,
    )
}

#[derive(Deserialize)]
pub struct BodyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
}

async fn post_reply(
    state: AppState,
    viewer: Viewer,
    headers: HeaderMap,
    origin: ClientOrigin,
    topic: TopicRow,
    form: BodyForm,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    match state
        .forum
        .reply(&signed_in.actor(), topic.id, &form.body, &origin.0)
        .await
    {
        Ok(place) => {
            let page_number = (place.post_number - 1) / POSTS_PER_PAGE + 1;
            let href = topic_href(&topic);
            let target = if page_number > 1 {
                format!("{href}?page={page_number}#post-{}", place.post_number)
            } else {
                format!("{href}#post-{}", place.post_number)
            };
            Ok(see_other(&target))
        }
        Err(Error::Invalid(errors)) => {
            let current = page_count(topic.n_posts, POSTS_PER_PAGE);
            let page = render_topic(
                &state,
                &viewer,
                TopicPageInput {
                    topic,
                    category: None,
                    current,
                    errors,
                    draft: form.body,
                },
            )
            .await?;
            page_with_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn reply(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Path((_slug, id)): Path<(String, String)>,
    Form(form): Form<BodyForm>,
) -> PageResult {
    let id: i64 = id.parse().map_err(|_| Error::NotFound("topic"))?;
    let topic = state
        .store
        .topic_by_id(id)
        .await?
        .filter(|t| t.kind == "discussion")
        .ok_or(Error::NotFound("topic"))?;
    post_reply(state, viewer, headers, origin, topic, form).await
}

pub async fn blog_comment(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<BodyForm>,
) -> PageResult {
    let topic = state
        .store
        .blog_topic_by_slug(&slug)
        .await?
        .ok_or(Error::NotFound("article"))?;
    post_reply(state, viewer, headers, origin, topic, form).await
}

#[derive(Template)]
#[template(path = "new_topic.html")]
struct NewTopicPage {
    layout: Layout,
    action: &'static str,
    categories: Vec<CategoryRow>,
    selected: String,
    title: String,
    body: String,
    errors: Vec<InvalidField>,
}

#[derive(Deserialize)]
pub struct NewTopicQuery {
    category: Option<String>,
}

pub async fn new_topic_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<NewTopicQuery>,
) -> PageResult {
    if viewer.0.is_none() {
        return Ok(see_other("/sign-in"));
    }
    page(&NewTopicPage {
        layout: Layout::new(&state, &viewer, "New topic"),
        action: "/new-topic",
        categories: state.store.categories().await?,
        selected: query.category.unwrap_or_default(),
        title: String::new(),
        body: String::new(),
        errors: vec![],
    })
}

#[derive(Deserialize)]
pub struct NewTopicForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

pub async fn new_topic(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<NewTopicForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    match state
        .forum
        .create_topic(
            &signed_in.actor(),
            &form.category,
            &form.title,
            &form.body,
            &origin.0,
        )
        .await
    {
        Ok(place) => {
            let topic = state
                .store
                .topic_by_id(place.topic_id)
                .await?
                .ok_or(Error::NotFound("topic"))?;
            Ok(see_other(&topic_href(&topic)))
        }
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &NewTopicPage {
                layout: Layout::new(&state, &viewer, "New topic"),
                action: "/new-topic",
                categories: state.store.categories().await?,
                selected: form.category,
                title: form.title,
                body: form.body,
                errors,
            },
        ),
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "blog_index.html")]
struct BlogIndexPage {
    layout: Layout,
    can_write: bool,
    topics: Vec<TopicLine>,
    pager: Pager,
}

pub async fn blog_index(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let current = query.number()?;
    let total = state.store.count_topics("blog", None).await?;
    let topics = state
        .store
        .topics(
            "blog",
            None,
            TOPICS_PER_PAGE,
            (current - 1) * TOPICS_PER_PAGE,
        )
        .await?;
    page(&BlogIndexPage {
        can_write: viewer.0.as_ref().is_some_and(|s| s.actor().acts_as_staff()),
        layout: Layout::new(&state, &viewer, "Blog"),
        topics: topic_lines(topics),
        pager: Pager {
            base: "/blog".into(),
            query: String::new(),
            current,
            count: page_count(total, TOPICS_PER_PAGE),
        },
    })
}

pub async fn new_article_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let signed_in = viewer.require()?;
    signed_in.actor().require_staff()?;
    page(&NewTopicPage {
        layout: Layout::new(&state, &viewer, "New blog article"),
        action: "/blog/new",
        categories: vec![],
        selected: String::new(),
        title: String::new(),
        body: String::new(),
        errors: vec![],
    })
}

pub async fn new_article(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<NewTopicForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    match state
        .forum
        .create_article(&signed_in.actor(), &form.title, &form.body, &origin.0)
        .await
    {
        Ok((_, slug)) => Ok(see_other(&format!("/blog/{slug}"))),
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &NewTopicPage {
                layout: Layout::new(&state, &viewer, "New blog article"),
                action: "/blog/new",
                categories: vec![],
                selected: String::new(),
                title: form.title,
                body: form.body,
                errors,
            },
        ),
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "edit_post.html")]
struct EditPostPage {
    layout: Layout,
    post_id: i64,
    body: String,
    back: String,
    errors: Vec<InvalidField>,
}

fn parse_id(raw: &str, what: &'static str) -> Result<i64, Error> {
    raw.parse().map_err(|_| Error::NotFound(what))
}

async fn post_href(state: &AppState, post: &PostRow) -> Result<String, Error> {
    let topic = state
        .store
        .topic_by_id(post.topic_id)
        .await?
        .ok_or(Error::NotFound("topic"))?;
    let page_number = (post.post_number - 1) / POSTS_PER_PAGE + 1;
    let href = topic_href(&topic);
    Ok(if page_number > 1 {
        format!("{href}?page={page_number}#post-{}", post.post_number)
    } else {
        format!("{href}#post-{}", post.post_number)
    })
}

pub async fn edit_post_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let signed_in = viewer.require()?;
    let post = state
        .store
        .post_by_id(parse_id(&id, "post")?)
        .await?
        .ok_or(Error::NotFound("post"))?;
    if post.user_id != signed_in.user.user_id || post.deleted_at.is_some() {
        return Err(Error::Forbidden.into());
    }
    page(&EditPostPage {
        layout: Layout::new(&state, &viewer, "Edit post"),
        post_id: post.id,
        back: post_href(&state, &post).await?,
        body: post.body_md,
        errors: vec![],
    })
}

pub async fn edit_post(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BodyForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    let id = parse_id(&id, "post")?;
    match state.forum.edit(&signed_in.actor(), id, &form.body).await {
        Ok(post) => Ok(see_other(&post_href(&state, &post).await?)),
        Err(Error::Invalid(errors)) => {
            let post = state
                .store
                .post_by_id(id)
                .await?
                .ok_or(Error::NotFound("post"))?;
            page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &EditPostPage {
                    layout: Layout::new(&state, &viewer, "Edit post"),
                    post_id: id,
                    back: post_href(&state, &post).await?,
                    body: form.body,
                    errors,
                },
            )
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn delete_post(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    let post = state
        .forum
        .delete(&signed_in.actor(), parse_id(&id, "post")?)
        .await?;
    Ok(see_other(&post_href(&state, &post).await?))
}

async fn moderate(
    state: AppState,
    viewer: Viewer,
    headers: HeaderMap,
    id: String,
    form: CsrfForm,
    hidden: bool,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let signed_in = viewer.require()?;
    let post = state
        .forum
        .set_hidden(&signed_in.actor(), parse_id(&id, "post")?, hidden)
        .await?;
    Ok(see_other(&post_href(&state, &post).await?))
}

pub async fn hide_post(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    moderate(state, viewer, headers, id, form, true).await
}

pub async fn unhide_post(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    moderate(state, viewer, headers, id, form, false).await
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    layout: Layout,
    username: String,
    joined: String,
    n_posts: i64,
    bio: String,
    posts: Vec<(String, String, String)>,
    /// The member restricted processing (R9): only their public posts are shown.
    restricted: bool,
}

pub async fn profile(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(username): Path<String>,
) -> PageResult {
    let user = state
        .store
        .user_by_username(&username.to_ascii_lowercase())
        .await?
        .filter(|user| user.closed_at.is_none())
        .ok_or(Error::NotFound("member"))?;
    // The purpose gate: a restricted member's profile shows only their public posts.
    let restricted = !state
        .purpose
        .allows(user.id, crate::purpose::Purpose::ProfileDetails)
        .await?;
    let posts = state.store.public_posts_of_user(user.id, 20).await?;
    let n_posts = if restricted {
        0
    } else {
        state.store.count_public_posts_of_user(user.id).await?
    };
    let posts = posts
        .into_iter()
        .map(|(post, title, slug)| {
            let href = format!("/t/{slug}/{}#post-{}", post.topic_id, post.post_number);
            (title, href, date(post.created_at))
        })
        .collect();
    page(&ProfilePage {
        layout: Layout::new(&state, &viewer, user.username.clone()),
        username: user.username,
        joined: if restricted {
            String::new()
        } else {
            date(user.created_at)
        },
        n_posts,
        bio: if restricted { String::new() } else { user.bio },
        posts,
        restricted,
    })
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    layout: Layout,
    username: String,
    email: String,
    birth_year: String,
    country: String,
    us_state: String,
    news: bool,
    ask_birth_date: bool,
    ask_parent: bool,
    news_text: &'static str,
    countries: &'static [(&'static str, &'static str)],
    us_states: &'static [(&'static str, &'static str)],
    errors: Vec<InvalidField>,
}

impl RegisterPage {
    /// An empty form: nothing typed is shown back.
    fn empty(layout: Layout) -> Self {
        Self {
            layout,
            username: String::new(),
            email: String::new(),
            birth_year: String::new(),
            country: String::new(),
            us_state: String::new(),
            news: false,
            ask_birth_date: false,
            ask_parent: false,
            news_text: crate::news::NEWS_OPT_IN_TEXT,
            countries: crate::web::people::COUNTRIES,
            us_states: crate::web::people::US_STATES,
            errors: vec![],
        }
    }
}

pub async fn register_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    page(&RegisterPage::empty(Layout::new(
        &state,
        &viewer,
        "Create an account",
    )))
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    birth_year: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    us_state: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    parent_email: String,
    /// Present only when the (never pre-ticked) box is ticked.
    #[serde(default)]
    news: Option<String>,
}

pub async fn register(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    let policy = state.policy.current().await?;
    let result = state
        .accounts
        .register(
            &Registration {
                username: &form.username,
                email: &form.email,
                password: &form.password,
                birth_year: &form.birth_year,
                country: &form.country,
                us_state: &form.us_state,
                birth_date: &form.birth_date,
                parent_email: &form.parent_email,
                news: form.news.is_some(),
                client_ip: origin.0.ip.expose(),
            },
            &policy.policy,
        )
        .await;
    let errors = match result {
        Ok(registered) => {
            state.mailer.wake();
            let mut paragraphs = vec![
                "Your account is created. We sent a link to the address you gave: open it to confirm the address.".to_string(),
            ];
            if registered.awaiting_parent {
                paragraphs.push("Where you live, a parent has to agree before you can post: we emailed the parent you named a link to do so.".into());
            }
            return page(&MessagePage {
                layout: Layout::new(&state, &viewer, "Check your email"),
                paragraphs,
                link: Some(("/sign-in".into(), "Sign in".into())),
            });
        }
        Err(Error::BelowMinimumAge { minimum_age }) => {
            // Nothing typed is shown back or kept: the form starts empty.
            let mut empty = RegisterPage::empty(Layout::new(&state, &viewer, "Create an account"));
            empty.errors = vec![InvalidField::new(
                "birth_year",
                format!(
                    "members must be at least {minimum_age} years old; nothing you typed was kept"
                ),
            )];
            return page_with_status(StatusCode::UNPROCESSABLE_ENTITY, &empty);
        }
        Err(Error::Invalid(errors)) => errors,
        Err(Error::Conflict { field }) => vec![InvalidField::new(field, "is already taken")],
        Err(other) => return Err(other.into()),
    };
    let asks = |field: &str| errors.iter().any(|e| e.field == field);
    let mut again = RegisterPage::empty(Layout::new(&state, &viewer, "Create an account"));
    again.ask_birth_date = asks("birth_date");
    again.ask_parent = asks("parent_email");
    again.username = form.username;
    again.email = form.email;
    again.birth_year = form.birth_year;
    again.country = form.country;
    again.us_state = form.us_state;
    again.news = form.news.is_some();
    again.errors = errors;
    page_with_status(StatusCode::UNPROCESSABLE_ENTITY, &again)
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    action: String,
    fields: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    button: &'static str,
    errors: Vec<InvalidField>,
}

pub async fn verify_email_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    page(&ConfirmPage {
        layout: Layout::new(&state, &viewer, "Confirm your email address"),
        action: format!("/verify-email/{token}"),
        fields: vec![],
        button: "Confirm my address",
        errors: vec![],
    })
}

pub async fn verify_email(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    state.accounts.verify_email(&token).await?;
    page(&MessagePage {
        layout: Layout::new(&state, &viewer, "Address confirmed"),
        paragraphs: vec!["Thank you: your email address is confirmed and you can post.".into()],
        link: Some(("/".into(), "Go to the forum".into())),
    })
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    login: String,
    errors: Vec<InvalidField>,
    /// The account has 2-step verification: ask for the code with the password.
    ask_code: bool,
    /// Configured social sign-in providers: (id, name).
    providers: Vec<(String, String)>,
}

fn social_providers(state: &AppState) -> Vec<(String, String)> {
    state
        .social
        .providers()
        .iter()
        .map(|p| (p.id.clone(), p.name.clone()))
        .collect()
}

pub async fn sign_in_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    page(&SignInPage {
        layout: Layout::new(&state, &viewer, "Sign in"),
        login: String::new(),
        errors: vec![],
        ask_code: false,
        providers: social_providers(&state),
    })
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    match state
        .accounts
        .sign_in(&form.login, &form.password, Some(&form.code), &origin.0)
        .await
    {
        Ok(session) => {
            crate::web::consent::merge_at_sign_in(&state, &headers, session.user_id).await;
            // A new token on every sign-in: a session id planted before sign-in is worthless.
            if let Some(old) = &viewer.0 {
                state.accounts.sign_out(&old.token).await?;
            }
            let cookie = session_cookie(
                &session.token,
                session.max_age_seconds,
                state.config.secure_cookies(),
            );
            Ok((
                StatusCode::SEE_OTHER,
                [(LOCATION, "/".to_string()), (SET_COOKIE, cookie)],
            )
                .into_response())
        }
        Err(Error::BadCredentials) => page_with_status(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                layout: Layout::new(&state, &viewer, "Sign in"),
                login: form.login,
                errors: vec![InvalidField::new(
                    "password",
                    "does not match that username or email address",
                )],
                ask_code: false,
                providers: social_providers(&state),
            },
        ),
        Err(error @ (Error::SecondFactorRequired | Error::InvalidSecondFactor)) => {
            page_with_status(
                StatusCode::UNAUTHORIZED,
                &SignInPage {
                    layout: Layout::new(&state, &viewer, "Sign in"),
                    login: form.login,
                    errors: vec![InvalidField::new("code", error.to_string())],
                    ask_code: true,
                    providers: social_providers(&state),
                },
            )
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    if let Some(signed_in) = &viewer.0 {
        state.accounts.sign_out(&signed_in.token).await?;
    }
    let cookie = clear_session_cookie(state.config.secure_cookies());
    Ok((
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/".to_string()),
            (SET_COOKIE, cookie),
            (
                HeaderName::from_static("clear-site-data"),
                crate::web::auth::CLEAR_SITE_DATA.to_string(),
            ),
        ],
    )
        .into_response())
}

pub async fn password_reset_form(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    page(&ConfirmPage {
        layout: Layout::new(&state, &viewer, "Reset your password"),
        action: "/password-reset".into(),
        fields: vec![("email", "Your account's email address", "email", "email")],
        button: "Send me a link",
        errors: vec![],
    })
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

pub async fn password_reset_request(
    State(state): State<AppState>,
    viewer: Viewer,
    origin: ClientOrigin,
    headers: HeaderMap,
    Form(form): Form<EmailForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    match state
        .accounts
        .request_password_reset(&form.email, origin.0.ip.expose())
        .await
    {
        Ok(()) => {
            state.mailer.wake();
            page(&MessagePage {
                layout: Layout::new(&state, &viewer, "Check your email"),
                paragraphs: vec!["If an account uses that address, a link to choose a new password is on its way. It works for one hour.".into()],
                link: None,
            })
        }
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ConfirmPage {
                layout: Layout::new(&state, &viewer, "Reset your password"),
                action: "/password-reset".into(),
                fields: vec![("email", "Your account's email address", "email", "email")],
                button: "Send me a link",
                errors,
            },
        ),
        Err(other) => Err(other.into()),
    }
}

fn new_password_page(
    state: &AppState,
    viewer: &Viewer,
    token: &str,
    errors: Vec<InvalidField>,
) -> ConfirmPage {
    ConfirmPage {
        layout: Layout::new(state, viewer, "Choose a new password"),
        action: format!("/password-reset/{token}"),
        fields: vec![(
            "password",
            "New password (at least 12 characters; a few unrelated words work well)",
            "password",
            "new-password",
        )],
        button: "Save the new password",
        errors,
    }
}

pub async fn password_reset_token_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> PageResult {
    if !state.accounts.reset_token_is_valid(&token).await? {
        return Err(Error::InvalidToken.into());
    }
    page(&new_password_page(&state, &viewer, &token, vec![]))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

pub async fn password_reset(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> PageResult {
    check_form(&state, &viewer, &headers, &form.csrf)?;
    match state.accounts.reset_password(&token, &form.password).await {
        Ok(_) => page(&MessagePage {
            layout: Layout::new(&state, &Viewer(None), "Password changed"),
            paragraphs: vec![
                "Your new password is saved and every other sign-in was ended.".into(),
            ],
            link: Some(("/sign-in".into(), "Sign in".into())),
        }),
        Err(Error::Invalid(errors)) => page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &new_password_page(&state, &viewer, &token, errors),
        ),
        Err(other) => Err(other.into()),
    }
}

pub async fn not_found() -> PageError {
    PageError(Error::NotFound("page"))
}
