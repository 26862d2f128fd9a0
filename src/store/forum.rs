//! Categories, topics (forum discussions and blog articles) and their posts.

use super::{Store, Tx, unique_violation};
use anyhow::Context;
use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct CategoryRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub n_topics: i64,
}

/// A topic as lists show it.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct TopicRow {
    pub id: i64,
    /// `discussion` or `blog`.
    pub kind: String,
    pub category_id: Option<i64>,
    pub title: String,
    pub slug: String,
    pub author: String,
    pub created_at: i64,
    pub last_posted_at: i64,
    pub n_posts: i64,
    /// 1 while the topic is unlisted: its opening post waits for a moderator, or a moderator
    /// hid it from the queue of held posts.
    #[serde(skip)]
    pub hidden: i64,
    /// Who opened it.
    #[serde(skip)]
    pub user_id: i64,
}

/// A post as a topic page shows it. Personal data recorded with it (IP, user agent) is not read.
#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct PostRow {
    pub id: i64,
    pub topic_id: i64,
    pub post_number: i64,
    #[serde(skip)]
    pub user_id: i64,
    pub author: String,
    pub body_md: String,
    pub body_html: String,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub hidden_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// Since when the post waits for a moderator (the spam and unsafe-link check held it);
    /// only its author and moderators see it meanwhile.
    pub held_at: Option<i64>,
}

/// A held post as the moderators' queue shows it.
#[derive(Debug, Clone, FromRow)]
pub struct HeldPostRow {
    #[sqlx(flatten)]
    pub post: PostRow,
    /// `unsafe_link` or `spam_pattern`.
    pub held_reason: String,
    pub topic_kind: String,
    pub topic_title: String,
    pub topic_slug: String,
}

pub struct NewPost<'a> {
    pub topic_id: i64,
    pub user_id: i64,
    pub body_md: &'a str,
    pub body_html: &'a str,
    pub now: i64,
    pub ip: &'a str,
    pub user_agent: &'a str,
    /// Why the post waits for a moderator, if it does (a word from a fixed list).
    pub held_reason: Option<&'static str>,
}

// Restriction (T2) is enforced here, on every read of posts and topics: the name of a member
// whose account record is restricted, and the text of a restricted post, are stored but never
// shown; pages and the API get a placeholder instead.
const TOPIC_COLUMNS: &str = "t.id, t.kind, t.category_id, t.title, t.slug, \
     CASE WHEN u.restricted_at IS NULL THEN u.username ELSE 'former member' END AS author, \
     t.created_at, t.last_posted_at, t.n_posts, t.hidden, t.user_id";
const POST_COLUMNS: &str = "p.id, p.topic_id, p.post_number, p.user_id, \
     CASE WHEN u.restricted_at IS NULL THEN u.username ELSE 'former member' END AS author, \
     CASE WHEN p.restricted_at IS NULL THEN b.body_md ELSE '' END AS body_md, \
     CASE WHEN p.restricted_at IS NULL THEN b.body_html \
     ELSE '<p><em>Kept in storage only: its author closed their account.</em></p>' END AS body_html, \
     p.created_at, p.edited_at, p.hidden_at, p.deleted_at, p.held_at";
/// The tables [`POST_COLUMNS`] reads: a post, its text (`post_bodies`, apart so that the sweep's
/// rewrites of posts do not rewrite their text) and its author.
const POST_TABLES: &str =
    "posts p JOIN post_bodies b ON b.post_id = p.id JOIN users u ON u.id = p.user_id";

impl Store {
    pub async fn categories(&self) -> anyhow::Result<Vec<CategoryRow>> {
        sqlx::query_as(
            "SELECT c.id, c.slug, c.name, c.description, \
             (SELECT COUNT(*) FROM topics t WHERE t.category_id = c.id AND t.hidden = 0) AS n_topics \
             FROM categories c ORDER BY c.position, c.id",
        )
        .fetch_all(self.pool())
        .await
        .context("listing categories")
    }

    pub async fn category_by_slug(&self, slug: &str) -> anyhow::Result<Option<CategoryRow>> {
        sqlx::query_as(
            "SELECT c.id, c.slug, c.name, c.description, \
             (SELECT COUNT(*) FROM topics t WHERE t.category_id = c.id AND t.hidden = 0) AS n_topics \
             FROM categories c WHERE c.slug = $1",
        )
        .bind(slug)
        .fetch_optional(self.pool())
        .await
        .context("reading a category")
    }

    /// A category's slug and name, without counting its topics.
    pub async fn category_name(&self, id: i64) -> anyhow::Result<Option<(String, String)>> {
        sqlx::query_as("SELECT slug, name FROM categories WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a category's name")
    }

    pub async fn insert_category(
        &self,
        slug: &str,
        name: &str,
        description: &str,
    ) -> anyhow::Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO categories (slug, name, description, position) \
             VALUES ($1, $2, $3, (SELECT COALESCE(MAX(position), 0) + 1 FROM categories)) \
             RETURNING id",
        )
        .bind(slug)
        .bind(name)
        .bind(description)
        .fetch_one(self.pool())
        .await
        .map_err(|e| unique_violation(e, &[("slug", "slug")], "inserting a category"))?;
        Ok(id)
    }

    /// Visible topics of one kind, newest activity first; in one category when given.
    pub async fn topics(
        &self,
        kind: &str,
        category_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<Vec<TopicRow>> {
        let filter = if category_id.is_some() {
            "AND t.category_id = $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TOPIC_COLUMNS} FROM topics t JOIN users u ON u.id = t.user_id \
             WHERE t.kind = $1 AND t.hidden = 0 {filter} \
             ORDER BY t.last_posted_at DESC, t.id DESC LIMIT $2 OFFSET $3"
        );
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .bind(limit)
            .bind(offset);
        if let Some(id) = category_id {
            query = query.bind(id);
        }
        query.fetch_all(self.pool()).await.context("listing topics")
    }

    pub async fn count_topics(&self, kind: &str, category_id: Option<i64>) -> anyhow::Result<i64> {
        let (n,): (i64,) = match category_id {
            Some(id) => sqlx::query_as(
                "SELECT COUNT(*) FROM topics WHERE kind = $1 AND hidden = 0 AND category_id = $2",
            )
            .bind(kind)
            .bind(id)
            .fetch_one(self.pool())
            .await,
            None => {
                sqlx::query_as("SELECT COUNT(*) FROM topics WHERE kind = $1 AND hidden = 0")
                    .bind(kind)
                    .fetch_one(self.pool())
                    .await
            }
        }
        .context("counting topics")?;
        Ok(n)
    }

    pub async fn topic_by_id(&self, id: i64) -> anyhow::Result<Option<TopicRow>> {
        let sql = format!(
            "SELECT {TOPIC_COLUMNS} FROM topics t JOIN users u ON u.id = t.user_id WHERE t.id = $1"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a topic")
    }

    /// A topic with its category's slug and name, for its page: one read instead of two.
    pub async fn topic_with_category(
        &self,
        id: i64,
    ) -> anyhow::Result<Option<(TopicRow, Option<(String, String)>)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            topic: TopicRow,
            category_slug: Option<String>,
            category_name: Option<String>,
        }
        let sql = format!(
            "SELECT {TOPIC_COLUMNS}, c.slug AS category_slug, c.name AS category_name \
             FROM topics t JOIN users u ON u.id = t.user_id \
             LEFT JOIN categories c ON c.id = t.category_id WHERE t.id = $1"
        );
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a topic")?;
        Ok(row.map(|r| {
            let category = r.category_slug.zip(r.category_name);
            (r.topic, category)
        }))
    }

    pub async fn blog_topic_by_slug(&self, slug: &str) -> anyhow::Result<Option<TopicRow>> {
        let sql = format!(
            "SELECT {TOPIC_COLUMNS} FROM topics t JOIN users u ON u.id = t.user_id \
             WHERE t.kind = 'blog' AND t.slug = $1"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(slug)
            .fetch_optional(self.pool())
            .await
            .context("reading a blog article")
    }

    /// A page of a topic's posts in order.
    pub async fn posts_of_topic(
        &self,
        topic_id: i64,
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<Vec<PostRow>> {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM {POST_TABLES} \
             WHERE p.topic_id = $1 ORDER BY p.post_number LIMIT $2 OFFSET $3"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(topic_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await
            .context("reading a topic's posts")
    }

    pub async fn post_by_id(&self, id: i64) -> anyhow::Result<Option<PostRow>> {
        let sql = format!("SELECT {POST_COLUMNS} FROM {POST_TABLES} WHERE p.id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .context("reading a post")
    }

    /// A member's most recent posts that anyone may see.
    pub async fn public_posts_of_user(
        &self,
        user_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(PostRow, String, String)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            post: PostRow,
            topic_title: String,
            topic_slug: String,
        }
        let sql = format!(
            "SELECT {POST_COLUMNS}, t.title AS topic_title, t.slug AS topic_slug \
             FROM {POST_TABLES} JOIN topics t ON t.id = p.topic_id \
             WHERE p.user_id = $1 AND p.hidden_at IS NULL AND p.deleted_at IS NULL \
             AND p.held_at IS NULL AND t.hidden = 0 ORDER BY p.created_at DESC, p.id DESC LIMIT $2"
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("reading a member's posts")?;
        Ok(rows
            .into_iter()
            .map(|r| (r.post, r.topic_title, r.topic_slug))
            .collect())
    }

    pub async fn count_public_posts_of_user(&self, user_id: i64) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM posts WHERE user_id = $1 AND hidden_at IS NULL \
             AND deleted_at IS NULL AND held_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.pool())
        .await
        .context("counting a member's posts")?;
        Ok(n)
    }
}

impl Store {
    /// The posts waiting for a moderator, oldest first; one its author deleted waits no more.
    pub async fn held_posts(&self, limit: i64) -> anyhow::Result<Vec<HeldPostRow>> {
        let sql = format!(
            "SELECT {POST_COLUMNS}, COALESCE(p.held_reason, '') AS held_reason, \
             t.kind AS topic_kind, t.title AS topic_title, t.slug AS topic_slug \
             FROM {POST_TABLES} JOIN topics t ON t.id = p.topic_id \
             WHERE p.held_at IS NOT NULL AND p.deleted_at IS NULL \
             ORDER BY p.held_at, p.id LIMIT $1"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .context("reading the held posts")
    }

    pub async fn count_held_posts(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM posts WHERE held_at IS NOT NULL AND deleted_at IS NULL",
        )
        .fetch_one(self.pool())
        .await
        .context("counting the held posts")?;
        Ok(n)
    }
}

/// Creates a topic without posts; its first post follows with [`insert_post`].
#[allow(clippy::too_many_arguments)]
pub async fn insert_topic(
    tx: &mut Tx,
    kind: &str,
    category_id: Option<i64>,
    user_id: i64,
    title: &str,
    slug: &str,
    now: i64,
) -> anyhow::Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO topics (kind, category_id, user_id, title, slug, created_at, last_posted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(kind)
    .bind(category_id)
    .bind(user_id)
    .bind(title)
    .bind(slug)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| unique_violation(e, &[("slug", "title")], "inserting a topic"))?;
    Ok(id)
}

/// Appends a post to a topic, numbering it after the topic's last post.
/// Inserts a post; its author's IP address and user agent are sealed with the author's key.
pub async fn insert_post(
    store: &Store,
    tx: &mut Tx,
    post: &NewPost<'_>,
) -> anyhow::Result<(i64, i64)> {
    let ip = store
        .seal_for_member(post.user_id, "post_devices.ip", post.ip)
        .await?;
    let user_agent = store
        .seal_for_member(post.user_id, "post_devices.user_agent", post.user_agent)
        .await?;
    let (post_number,): (i64,) = sqlx::query_as(
        "UPDATE topics SET n_posts = n_posts + 1, last_posted_at = $1 WHERE id = $2 \
         RETURNING n_posts",
    )
    .bind(post.now)
    .bind(post.topic_id)
    .fetch_one(&mut **tx)
    .await
    .context("numbering a new post")?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO posts (topic_id, user_id, post_number, created_at, held_at, held_reason) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(post.topic_id)
    .bind(post.user_id)
    .bind(post_number)
    .bind(post.now)
    .bind(post.held_reason.map(|_| post.now))
    .bind(post.held_reason)
    .fetch_one(&mut **tx)
    .await
    .context("inserting a post")?;
    sqlx::query("INSERT INTO post_bodies (post_id, body_md, body_html) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(post.body_md)
        .bind(post.body_html)
        .execute(&mut **tx)
        .await
        .context("storing a post's text")?;
    sqlx::query(
        "INSERT INTO post_devices (post_id, user_id, ip, user_agent, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(post.user_id)
    .bind(ip)
    .bind(user_agent)
    .bind(post.now)
    .execute(&mut **tx)
    .await
    .context("recording a post's device")?;
    Ok((id, post_number))
}

/// Replaces a post's text. With a reason, the post waits for a moderator from now on (a post
/// already waiting keeps its place in the queue); without one, its state does not change: only
/// a moderator ends a hold.
pub async fn update_post_body(
    tx: &mut Tx,
    post_id: i64,
    body_md: &str,
    body_html: &str,
    now: i64,
    held_reason: Option<&'static str>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE post_bodies SET body_md = $1, body_html = $2 WHERE post_id = $3")
        .bind(body_md)
        .bind(body_html)
        .bind(post_id)
        .execute(&mut **tx)
        .await
        .context("editing a post's text")?;
    let sql = match held_reason {
        None => "UPDATE posts SET edited_at = $1 WHERE id = $2",
        Some(_) => {
            "UPDATE posts SET edited_at = $1, held_at = COALESCE(held_at, $1), held_reason = $3 \
             WHERE id = $2"
        }
    };
    let mut query = sqlx::query(sql).bind(now).bind(post_id);
    if let Some(reason) = held_reason {
        query = query.bind(reason);
    }
    query.execute(&mut **tx).await.context("editing a post")?;
    Ok(())
}

/// Deletes a post's content at its author's wish. The row stays so that numbering and replies
/// keep their places; its text and the IP address and user agent recorded with it go.
pub async fn delete_post_content(tx: &mut Tx, post_id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE post_bodies SET body_md = '', body_html = '' WHERE post_id = $1")
        .bind(post_id)
        .execute(&mut **tx)
        .await
        .context("deleting a post's text")?;
    sqlx::query("UPDATE posts SET deleted_at = $1 WHERE id = $2")
        .bind(now)
        .bind(post_id)
        .execute(&mut **tx)
        .await
        .context("deleting a post")?;
    sqlx::query("DELETE FROM post_devices WHERE post_id = $1")
        .bind(post_id)
        .execute(&mut **tx)
        .await
        .context("deleting a post's device")?;
    Ok(())
}

/// Hides or shows a post (moderation); `by` is the moderator.
pub async fn set_post_hidden(
    tx: &mut Tx,
    post_id: i64,
    hidden_at: Option<i64>,
    by: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE posts SET hidden_at = $1, hidden_by = $2 WHERE id = $3")
        .bind(hidden_at)
        .bind(by)
        .bind(post_id)
        .execute(&mut **tx)
        .await
        .context("hiding a post")?;
    Ok(())
}

/// Lists or unlists a topic; a new topic whose opening post is held is unlisted until a
/// moderator releases that post.
pub async fn set_topic_hidden(tx: &mut Tx, topic_id: i64, hidden: bool) -> anyhow::Result<()> {
    sqlx::query("UPDATE topics SET hidden = $1 WHERE id = $2")
        .bind(i64::from(hidden))
        .bind(topic_id)
        .execute(&mut **tx)
        .await
        .context("listing or unlisting a topic")?;
    Ok(())
}

/// Ends a post's hold by showing it; false when it was not held (another moderator decided
/// first), so that two decisions on one post cannot both be recorded.
pub async fn release_held_post(tx: &mut Tx, post_id: i64) -> anyhow::Result<bool> {
    let released: Option<(i64,)> = sqlx::query_as(
        "UPDATE posts SET held_at = NULL, held_reason = NULL \
         WHERE id = $1 AND held_at IS NOT NULL RETURNING id",
    )
    .bind(post_id)
    .fetch_optional(&mut **tx)
    .await
    .context("releasing a held post")?;
    Ok(released.is_some())
}

/// Ends a post's hold by hiding it as a moderator hides any post; false when it was not held.
pub async fn hide_held_post(
    tx: &mut Tx,
    post_id: i64,
    now: i64,
    moderator_id: i64,
) -> anyhow::Result<bool> {
    let hidden: Option<(i64,)> = sqlx::query_as(
        "UPDATE posts SET held_at = NULL, held_reason = NULL, hidden_at = $2, hidden_by = $3 \
         WHERE id = $1 AND held_at IS NOT NULL RETURNING id",
    )
    .bind(post_id)
    .bind(now)
    .bind(moderator_id)
    .fetch_optional(&mut **tx)
    .await
    .context("hiding a held post")?;
    Ok(hidden.is_some())
}
