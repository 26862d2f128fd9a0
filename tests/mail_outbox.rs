//! The mail outbox: durable, idempotent, retried when a sender dies mid-send.

mod common;

use covenant::mail::Mail;

/// The worker only runs when woken here, so the test's own claims do not race it.
async fn quiet_app(backend: common::Backend) -> Option<common::TestApp> {
    common::spawn_app_with(backend, |config| config.mail.poll_seconds = 3600).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_queues_one_message_and_a_lapsed_claim_is_sent_again_on_sqlite() {
    let app = quiet_app(common::Backend::Sqlite).await.unwrap();
    same_event_once_and_lapsed_claims_retried(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_queues_one_message_and_a_lapsed_claim_is_sent_again_on_postgres() {
    let Some(app) = quiet_app(common::Backend::Postgres).await else {
        return;
    };
    same_event_once_and_lapsed_claims_retried(&app).await;
    app.stop().await;
}

async fn same_event_once_and_lapsed_claims_retried(app: &common::TestApp) {
    {
        let mail = Mail {
            subject: "Hello".into(),
            body: "Body text".into(),
        };
        for _ in 0..2 {
            let mut tx = app.store.begin().await.unwrap();
            mail.enqueue(
                &app.store,
                &mut tx,
                "test:once",
                "once@example.org",
                None,
                covenant::now(),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        app.state.mailer.wake();
        app.wait_for_mail("once@example.org", "Hello").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            app.mail_to("once@example.org").len(),
            1,
            "queued twice under one key, sent once"
        );

        // A worker that claimed a message and died: its lease lapses and another round sends it.
        let mut tx = app.store.begin().await.unwrap();
        mail.enqueue(
            &app.store,
            &mut tx,
            "test:lapsed",
            "lapsed@example.org",
            None,
            covenant::now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let now = covenant::now();
        let claimed = app.store.claim_due_mail(now, now - 1, 10).await.unwrap();
        assert!(
            claimed.iter().any(|m| m.recipient == "lapsed@example.org"),
            "claimed by the worker that dies"
        );
        app.state.mailer.deliver_due().await.unwrap();
        let body = app.wait_for_mail("lapsed@example.org", "Hello").await;
        assert!(body.contains("Body text"));
        assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0);
    }
}

on_both_stores! {
    async fn two_workers_never_claim_the_same_message(app) {
        let mail = Mail { subject: "Many".into(), body: "x".into() };
        let mut tx = app.store.begin().await.unwrap();
        for i in 0..40 {
            mail.enqueue(&app.store, &mut tx, &format!("test:many:{i}"), &format!("m{i}@example.org"), None, covenant::now() + 3600).await.unwrap();
        }
        tx.commit().await.unwrap();
        let later = covenant::now() + 7200;
        let (a, b) = tokio::join!(
            app.store.claim_due_mail(later, later + 120, 25),
            app.store.claim_due_mail(later, later + 120, 25),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 40);
        assert!(a.iter().all(|m| b.iter().all(|n| n.id != m.id)), "no message claimed twice");
    }
}
