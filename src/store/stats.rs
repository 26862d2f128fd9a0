//! Visitor statistics (promise F2): daily totals of topic views by browser family, language and
//! referring domain. The table has no column that could hold a person's identifier; nothing
//! here reads or writes one.

use super::Store;
use anyhow::Context;
use sqlx::FromRow;

/// One cell of the daily totals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitKey {
    pub day: String,
    pub topic_id: i64,
    pub browser: String,
    pub language: String,
    pub referrer: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct TopicViews {
    pub topic_id: i64,
    pub title: String,
    pub slug: String,
    pub views: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct LabelViews {
    pub label: String,
    pub views: i64,
}

impl Store {
    /// Adds counted views to the daily totals, in one transaction.
    pub async fn add_visit_counts(&self, counts: &[(VisitKey, i64)]) -> anyhow::Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (key, views) in counts {
            sqlx::query(
                "INSERT INTO visit_counts (day, topic_id, browser, language, referrer, views) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (day, topic_id, browser, language, referrer) \
                 DO UPDATE SET views = visit_counts.views + excluded.views",
            )
            .bind(&key.day)
            .bind(key.topic_id)
            .bind(&key.browser)
            .bind(&key.language)
            .bind(&key.referrer)
            .bind(views)
            .execute(&mut *tx)
            .await
            .context("adding visit counts")?;
        }
        tx.commit().await.context("committing visit counts")?;
        Ok(())
    }

    /// The most viewed visible topics from `from_day` on, leaving out totals below `min_views`.
    pub async fn popular_topics(
        &self,
        from_day: &str,
        min_views: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<TopicViews>> {
        sqlx::query_as(
            "SELECT v.topic_id, t.title, t.slug, CAST(SUM(v.views) AS BIGINT) AS views FROM visit_counts v \
             JOIN topics t ON t.id = v.topic_id \
             WHERE v.day >= $1 AND t.hidden = 0 AND t.kind = 'discussion' \
             GROUP BY v.topic_id, t.title, t.slug HAVING SUM(v.views) >= $2 \
             ORDER BY views DESC, v.topic_id LIMIT $3",
        )
        .bind(from_day)
        .bind(min_views)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .context("reading the most viewed topics")
    }

    /// Views from `from_day` on grouped by one dimension (`browser`, `language`, `referrer` or
    /// `day`), leaving out totals below `min_views`.
    pub async fn views_by(
        &self,
        dimension: VisitDimension,
        from_day: &str,
        min_views: i64,
    ) -> anyhow::Result<Vec<LabelViews>> {
        let column = match dimension {
            VisitDimension::Browser => "browser",
            VisitDimension::Language => "language",
            VisitDimension::Referrer => "referrer",
            VisitDimension::Day => "day",
        };
        let order = if dimension == VisitDimension::Day {
            "label"
        } else {
            "views DESC, label"
        };
        let sql = format!(
            "SELECT {column} AS label, CAST(SUM(views) AS BIGINT) AS views FROM visit_counts WHERE day >= $1 \
             GROUP BY {column} HAVING SUM(views) >= $2 ORDER BY {order}"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from_day)
            .bind(min_views)
            .fetch_all(self.pool())
            .await
            .context("reading visit totals")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitDimension {
    Browser,
    Language,
    Referrer,
    Day,
}
