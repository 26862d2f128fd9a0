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
    /// An account unused for all but 30 days of the policy's inactivity limit gets a warning
    /// by email naming the day it will close; 30 days later the sweep closes it
    /// (`reason=inactivity` in the audit log), it signs in no more, and its data then follows
    /// the closed-account rules; a member who comes back after the warning, an account in use,
    /// one whose member still receives product news, and staff accounts stay open; dry runs
    /// count warnings and closures and change nothing; the policy page states the limit.
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

        // First the member is told; nothing is closed yet.
        let start = OffsetDateTime::now_utc();
        let dry = sweep(app, start, true).await;
        let line = dry.lines.get(&("user.account.username", "warn")).expect("the warning is reported");
        assert_eq!(line.records, 1);
        assert!(line.example_reason.contains("335 days"), "{}", line.example_reason);
        assert!(!dry.lines.contains_key(&("user.account.username", "close")), "nobody was warned yet");
        let warned = sweep(app, start, false).await;
        assert_eq!(warned.lines.get(&("user.account.username", "warn")).map(|l| l.records), Some(1));
        let warning = app.wait_for_mail("idle@example.org", "will be closed on").await;
        let closes_on = (start + time::Duration::days(30)).date().to_string();
        assert!(warning.contains(&closes_on), "the warning names the day: {warning}");
        assert!(warning.contains("/sign-in"), "{warning}");
        assert!(app.store.relationship(idle).await.unwrap().unwrap().closed_at.is_none(), "warned, not closed");
        for other in ["busy@example.org", "reader@example.org"] {
            assert!(app.mail_to(other).iter().all(|m| !m.contains("will be closed on")), "{other} was warned");
        }
        // Warned once: the next run, still within the notice, does nothing more.
        let again = sweep(app, start + time::Duration::days(10), false).await;
        assert!(!again.lines.contains_key(&("user.account.username", "warn")));
        assert!(!again.lines.contains_key(&("user.account.username", "close")));

        // A member who comes back after the warning is not closed: the warning lapses.
        app.member("back").await;
        let back = id_of(app, "back").await;
        set_last_active(app, back, last_seen).await;
        sweep(app, start, false).await;
        app.wait_for_mail("back@example.org", "will be closed on").await;
        set_last_active(app, back, now + DAY).await;

        // Thirty days after the warning, the account is closed, dated that day.
        let later = start + time::Duration::days(31);
        let dry = sweep(app, later, true).await;
        let line = dry.lines.get(&("user.account.username", "close")).expect("the closure is reported");
        assert_eq!(line.records, 1);
        assert!(line.example_reason.contains("365 days"), "{}", line.example_reason);
        assert!(app.store.relationship(idle).await.unwrap().unwrap().closed_at.is_none(), "a dry run changes nothing");
        let real = sweep(app, later, false).await;
        assert_eq!(real.lines.get(&("user.account.username", "close")).map(|l| l.records), Some(1));
        let closed = app.store.relationship(idle).await.unwrap().unwrap();
        assert_eq!(closed.closed_reason.as_deref(), Some("inactivity"));
        assert_eq!(
            closed.closed_at,
            Some(start.unix_timestamp() + 30 * DAY),
            "closed as of the later of the limit's day and the notice's end"
        );
        for open in [busy, reader, back] {
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
        let again = sweep(app, later, false).await;
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
