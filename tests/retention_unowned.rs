//! What the retention sweep removes that belongs to no member: sign-in flows and provider
//! sign-ups left unfinished past their expiry, and mail to people without an account once it
//! is as old as the security logs may be; each with the key that sealed it. On both stores.

mod common;

use covenant::retention::{SweepOptions, SweepReport};
use time::OffsetDateTime;

const DAY: i64 = 86_400;
const OLD_VISITOR: &str = "zq.old-visitor@example.org";
const NEW_VISITOR: &str = "zq.new-visitor@example.org";
const PENDING_ADDRESS: &str = "zq.unfinished@example.org";

async fn sweep(app: &common::TestApp, dry_run: bool) -> SweepReport {
    let options = SweepOptions {
        now: OffsetDateTime::now_utc(),
        dry_run,
        batch_size: 100,
        stop_after_batches: None,
    };
    app.state.retention.sweep(&options, &|_| {}).await.unwrap()
}

async fn count(pool: &sqlx::AnyPool, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.unwrap();
    n
}

/// Mail to a person without an account, delivered `days_ago` days ago.
async fn sent_visitor_mail(app: &common::TestApp, key: &str, to: &str, days_ago: i64) {
    let mail = covenant::mail::Mail {
        subject: "A notice".into(),
        body: "Hello".into(),
    };
    let mut tx = app.store.begin().await.unwrap();
    mail.enqueue(&app.store, &mut tx, key, to, None, covenant::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.state.mailer.wake();
    app.wait_for_mail(to, "A notice").await;
    let pool = app.raw_pool().await;
    sqlx::query("UPDATE mail_outbox SET sent_at = $1 WHERE idempotency_key = $2")
        .bind(covenant::now() - days_ago * DAY)
        .bind(key)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn unfinished_sign_up(app: &common::TestApp, token: &str, expires_at: i64) {
    let mut tx = app.store.begin().await.unwrap();
    covenant::store::insert_social_flow(
        &mut tx,
        &covenant::store::NewSocialFlow {
            state_hash: &format!("{token}-state"),
            provider: "test-id",
            pkce_verifier: "verifier",
            nonce: "nonce",
            user_id: None,
            policy_version: "2025.1",
            text_hash: "hash",
            now: expires_at - 600,
            expires_at,
        },
    )
    .await
    .unwrap();
    covenant::store::insert_social_pending(
        &app.store,
        &mut tx,
        &covenant::store::NewSocialPending {
            token_hash: token,
            provider: "test-id",
            subject: "ZqProviderAccount",
            email: PENDING_ADDRESS,
            email_verified: true,
            fields_received: "subject,email",
            policy_version: "2025.1",
            text_hash: "hash",
            authorized_at: expires_at - 600,
            expires_at,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

on_both_stores! {
    /// Expired sign-in flows and unfinished provider sign-ups go with the sweep (not only when
    /// the next person starts a social sign-in), and mail to a person without an account goes
    /// once it is older than the security logs may be; a dry run shows each and changes
    /// nothing; the real run audits each kind with its count and destroys the keys that sealed
    /// the rows, so their copies in backups open no more.
    /// Proves: T3, T4, R8
    async fn the_sweep_removes_expired_sign_ups_and_old_mail_to_people_without_an_account(app) {
        let days = app.state.policy.current().await.unwrap().policy.minimization().security_log_days;
        let days = i64::from(days);
        sent_visitor_mail(app, "test:old-visitor", OLD_VISITOR, days + 1).await;
        sent_visitor_mail(app, "test:new-visitor", NEW_VISITOR, days - 1).await;
        unfinished_sign_up(app, "zq-expired-token", covenant::now() - 60).await;
        unfinished_sign_up(app, "zq-live-token", covenant::now() + 3600).await;
        let old_key = covenant::sealing::row(covenant::store::OUTBOX_ROW_KEY, "test:old-visitor");
        let new_key = covenant::sealing::row(covenant::store::OUTBOX_ROW_KEY, "test:new-visitor");
        let expired_key = covenant::store::pending_key_subject("zq-expired-token");
        let live_key = covenant::store::pending_key_subject("zq-live-token");

        let dry = sweep(app, true).await;
        let line = |report: &SweepReport, category: &str, action: &str| {
            report.lines.get(&(category, action)).map(|l| (l.records, l.example_reason.clone()))
        };
        let (n, why) = line(&dry, "user.contact.email", "delete").expect("old mail is reported");
        assert_eq!(n, 1);
        assert!(why.contains(&format!("{days} days")), "{why}");
        let (n, why) = line(&dry, "user.social.profile", "expire").expect("sign-up is reported");
        assert_eq!(n, 1);
        assert!(why.contains("expired"), "{why}");
        assert_eq!(line(&dry, "user.authorization.credentials", "expire").map(|l| l.0), Some(1));
        let pool = app.raw_pool().await;
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM social_pending").await, 2, "a dry run changes nothing");
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM social_flows").await, 2);
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM mail_outbox WHERE user_id IS NULL").await, 2);
        assert!(app.store.has_key(&old_key).await.unwrap());
        assert!(app.store.has_key(&expired_key).await.unwrap());

        let real = sweep(app, false).await;
        assert!(real.finished);
        assert_eq!(line(&real, "user.contact.email", "delete").map(|l| l.0), Some(1));
        assert_eq!(line(&real, "user.social.profile", "expire").map(|l| l.0), Some(1));
        assert_eq!(
            count(&pool, "SELECT COUNT(*) FROM mail_outbox WHERE idempotency_key = 'test:old-visitor'").await,
            0
        );
        assert_eq!(
            count(&pool, "SELECT COUNT(*) FROM mail_outbox WHERE idempotency_key = 'test:new-visitor'").await,
            1,
            "recent mail stays"
        );
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM social_pending").await, 1);
        assert_eq!(count(&pool, "SELECT COUNT(*) FROM social_flows").await, 1);
        pool.close().await;
        assert!(app.store.social_pending("zq-live-token", covenant::now()).await.unwrap().is_some());
        assert!(!app.store.has_key(&old_key).await.unwrap(), "the old mail's key is gone");
        assert!(!app.store.has_key(&expired_key).await.unwrap(), "the sign-up's key is gone");
        assert!(app.store.has_key(&new_key).await.unwrap());
        assert!(app.store.has_key(&live_key).await.unwrap());

        // Each kind is one audit entry with its count, and no address in its text.
        let rows = app.store.audit_rows_after(0, 100_000).await.unwrap();
        let deleted: Vec<&str> = rows
            .iter()
            .filter(|row| row.kind == "data_deleted" && row.subject_id.is_none())
            .map(|row| row.details.as_str())
            .collect();
        for category in ["user.contact.email", "user.social.profile", "user.authorization.credentials"] {
            assert!(
                deleted.iter().any(|d| d.contains(category) && d.contains("count=1")),
                "no audit entry for {category}: {deleted:?}"
            );
        }
        for row in &rows {
            for address in [OLD_VISITOR, PENDING_ADDRESS] {
                assert!(!row.details.contains(address), "an address in the audit log");
            }
        }
        // A key left behind by a row that went without it (a process stopped between an
        // erasure's commit and the key's destruction) goes once it is a day old.
        let orphan = covenant::sealing::row(covenant::store::OUTBOX_ROW_KEY, "test:lost-row");
        app.store.keys().unwrap().key_for(&orphan).await.unwrap();
        sweep(app, false).await;
        assert!(app.store.has_key(&orphan).await.unwrap(), "a fresh key may belong to a row being written");
        let key_pool = app.key_store_pool().await;
        sqlx::query("UPDATE subject_keys SET created_at = $1 WHERE subject = $2")
            .bind(covenant::now() - 2 * DAY)
            .bind(&orphan)
            .execute(&key_pool)
            .await
            .unwrap();
        key_pool.close().await;
        sweep(app, false).await;
        assert!(!app.store.has_key(&orphan).await.unwrap(), "the orphaned key is gone");
        assert!(app.store.has_key(&new_key).await.unwrap(), "a key with its row stays");
        assert!(app.store.has_key(&live_key).await.unwrap());

        // A second run finds nothing more of them.
        let again = sweep(app, true).await;
        assert!(line(&again, "user.contact.email", "delete").is_none());
        assert!(line(&again, "user.social.profile", "expire").is_none());
    }
}
