//! An end of the relationship the operator may set in the policy file: an account nobody has
//! used for `inactivity.account_days` is closed by the sweep as of the day the limit was
//! reached, then swept like any closed account. On both stores.

mod common;

use covenant::retention::{SweepOptions, SweepReport};
use reqwest::StatusCode;
use time::OffsetDateTime;

const DAY: i64 = 86_400;
const LIMIT_DAYS: i64 = 365;
const DEFAULT_POLICY: &str = include_str!("../crates/covenant-core/policy/default.toml");

/// The default policy with an inactivity limit of a year.
fn with_inactivity_limit(config: &mut covenant::config::Config) {
    let text = format!("{DEFAULT_POLICY}\n[inactivity]\naccount_days = {LIMIT_DAYS}\n");
    let path = config.data_dir.join("policy-with-inactivity.toml");
    std::fs::create_dir_all(&config.data_dir).unwrap();
    std::fs::write(&path, text).unwrap();
    config.policy_file = path;
}

async fn sweep(app: &common::TestApp, now: OffsetDateTime, dry_run: bool) -> SweepReport {
    let options = SweepOptions {
        now,
        dry_run,
        batch_size: 100,
        stop_after_batches: None,
    };
    app.state.retention.sweep(&options, &|_| {}).await.unwrap()
}

async fn id_of(app: &common::TestApp, username: &str) -> i64 {
    app.store
        .user_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn set_last_active(app: &common::TestApp, user_id: i64, at: i64) {
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE users SET last_active_at = $1 WHERE id = $2")
        .bind(at)
        .bind(user_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

on_both_stores! {
    /// An account unused past the policy's inactivity limit is closed by the sweep, dated the
    /// day the limit was reached (`reason=inactivity` in the audit log), signs in no more,
    /// and its data then follows the closed-account rules; an account in use, one whose
    /// member still receives product news, and staff accounts stay open; the dry run counts
    /// the closures and changes nothing; the policy page states the limit.
    /// Proves: T1, T4
    async fn an_account_unused_past_the_policys_limit_is_closed_by_the_sweep(app) where config: with_inactivity_limit; {
        assert_eq!(app.state.policy.current().await.unwrap().policy.inactivity().account_days, Some(365));
        let now = covenant::now();
        for name in ["idle", "busy", "reader"] {
            app.member(name).await;
        }
        let (idle, busy, reader) = (id_of(app, "idle").await, id_of(app, "busy").await, id_of(app, "reader").await);
        let last_seen = now - 400 * DAY;
        set_last_active(app, idle, last_seen).await;
        set_last_active(app, reader, last_seen).await;
        set_last_active(app, busy, now - 30 * DAY).await;
        let pool = app.raw_pool().await;
        sqlx::query("UPDATE users SET news_subscribed_at = $1 WHERE id = $2")
            .bind(now - 500 * DAY)
            .bind(reader)
            .execute(&pool)
            .await
            .unwrap();
        // Staff are never closed for inactivity.
        let staff_idle: Vec<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE role <> 'member'")
            .fetch_all(&pool)
            .await
            .unwrap();
        for (id,) in &staff_idle {
            set_last_active(app, *id, last_seen).await;
        }
        pool.close().await;

        let dry = sweep(app, OffsetDateTime::now_utc(), true).await;
        let line = dry.lines.get(&("user.account.username", "close")).expect("the closure is reported");
        assert_eq!(line.records, 1);
        assert!(line.example_reason.contains("365 days"), "{}", line.example_reason);
        assert!(app.store.relationship(idle).await.unwrap().unwrap().closed_at.is_none(), "a dry run changes nothing");

        let real = sweep(app, OffsetDateTime::now_utc(), false).await;
        assert_eq!(real.lines.get(&("user.account.username", "close")).map(|l| l.records), Some(1));
        let closed = app.store.relationship(idle).await.unwrap().unwrap();
        assert_eq!(closed.closed_reason.as_deref(), Some("inactivity"));
        assert_eq!(closed.closed_at, Some(last_seen + LIMIT_DAYS * DAY), "closed as of the day the limit was reached");
        for open in [busy, reader] {
            assert!(app.store.relationship(open).await.unwrap().unwrap().closed_at.is_none());
        }
        for (id,) in &staff_idle {
            assert!(app.store.relationship(*id).await.unwrap().unwrap().closed_at.is_none());
        }
        let refused = app.client.post(app.url("/api/v1/session"))
            .json(&serde_json::json!({"login": "idle", "password": "a long enough password"}))
            .send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let audit: Vec<(Option<i64>, String)> = app.store.audit_rows_after(0, 100_000).await.unwrap()
            .into_iter()
            .filter(|row| row.kind == "account_closed")
            .map(|row| (row.subject_id, row.details))
            .collect();
        assert_eq!(audit, vec![(Some(idle), "reason=inactivity".to_string())]);
        // Closed once: the next run finds nobody new.
        let again = sweep(app, OffsetDateTime::now_utc(), false).await;
        assert!(!again.lines.contains_key(&("user.account.username", "close")));

        // The closed-account rules then run from that day: restricted now, and past the
        // limitation period (6 years) plus 2 months the account is anonymized, its reason
        // naming the inactivity limit.
        let verdicts = app.state.retention.verdicts_of(idle, OffsetDateTime::now_utc()).await.unwrap();
        assert!(
            verdicts.iter().any(|(_, v)| v.reason.contains("reached the inactivity limit")),
            "{verdicts:?}"
        );
        let later = OffsetDateTime::now_utc() + time::Duration::days(7 * 365);
        let report = sweep(app, later, false).await;
        assert!(report.lines.contains_key(&("user.account.username", "anonymize")), "{:?}", report.lines.keys());
        assert!(app.store.user_by_username("idle").await.unwrap().is_none(), "anonymized");

        // The policy page tells members the limit.
        let page = app.client.get(app.url("/privacy")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("used for 365 days is closed"), "the policy page states the limit");
    }
}
