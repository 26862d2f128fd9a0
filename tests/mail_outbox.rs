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

on_both_stores! {
    /// A member closes their account with mail still queued: it is withheld, with the reason
    /// staff see beside it, instead of waiting in the outbox for ever; the answer to their
    /// privacy request is still owed to them and goes out.
    /// Proves: T1
    async fn mail_queued_for_a_closed_account_is_withheld_but_a_request_answer_still_goes(app)
        where config: |config| config.mail.poll_seconds = 3600; {
        let bearer = app.member("zqcloser").await;
        let address = "zqcloser@example.org";
        let id = app.store.user_by_username("zqcloser").await.unwrap().unwrap().id;
        // Their privacy request, made signed in.
        let response = app
            .client
            .post(app.url("/api/v1/privacy-requests"))
            .bearer_auth(&bearer)
            .json(&serde_json::json!({"requester_name": "Zq Closer", "requester_email": address,
                "relationship": "self", "country": "US", "state": "CA", "rights": ["know"]}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        app.state.mailer.deliver_due().await.unwrap();
        let (submission,) = {
            let pool = sqlx::AnyPool::connect(&match app.backend {
                common::Backend::Sqlite => format!("sqlite://{}", app.data_dir.path().join("covenant.db").display()),
                common::Backend::Postgres => app.state.config.database_url.clone(),
            }).await.unwrap();
            let row: (i64,) = sqlx::query_as("SELECT id FROM privacy_submissions ORDER BY id DESC")
                .fetch_one(&pool).await.unwrap();
            pool.close().await;
            row
        };
        assert!(app.state.retention
            .close_account(id, covenant_core::retention::ClosureReason::ByMember, Some(id))
            .await
            .unwrap());
        // Queued after the closure: a notice to the member, and their request's answer.
        let mut tx = app.store.begin().await.unwrap();
        let notice = Mail { subject: "Zq notice".into(), body: "For the member".into() };
        notice.enqueue(&app.store, &mut tx, "test:closed:notice", address, Some(id), covenant::now())
            .await.unwrap();
        let answer = Mail { subject: "Zq answer".into(), body: "Your request was answered".into() };
        answer.enqueue_for_submission(&app.store, &mut tx, "test:closed:answer", address, Some(id),
            submission, covenant::now()).await.unwrap();
        tx.commit().await.unwrap();
        app.state.mailer.deliver_due().await.unwrap();
        let sent = app.wait_for_mail(address, "Zq answer").await;
        assert!(sent.contains("Your request was answered"));
        assert!(
            !app.mail_to(address).iter().any(|m| m.contains("Zq notice")),
            "nothing else goes to a closed account"
        );
        assert_eq!(app.store.count_unsent_mail().await.unwrap(), 0, "nothing left waiting");
        let withheld = app.store.withheld_mail(10).await.unwrap();
        assert_eq!(withheld.len(), 1, "{withheld:?}");
        assert_eq!(withheld[0].user_id, Some(id));
        assert_eq!(withheld[0].withheld_reason, covenant::store::WITHHELD_ACCOUNT_CLOSED);
        // Administrators see it, with its reason, on the outbox's page of withheld mail.
        let admin = administrator(app, "zqadmin").await;
        let page = app.page(&admin, "/staff/mail/withheld").await;
        let row = page
            .split(&format!("<tr data-mail=\"{}\">", withheld[0].id))
            .nth(1)
            .expect("the withheld message is listed");
        let row = row.split("</tr>").next().unwrap();
        assert!(row.contains(&format!(">{id}<")) && row.contains("account closed"), "{row}");
        assert!(!page.contains(address) && !page.contains("Zq notice"), "numbers and reasons only");
    }
}

/// An administrator with 2-step verification on, signed in with a browser.
async fn administrator(app: &common::TestApp, name: &str) -> reqwest::Client {
    app.member(name).await;
    let id = app.store.user_by_username(name).await.unwrap().unwrap().id;
    app.state
        .accounts
        .set_role(id, covenant::domain::Role::Administrator)
        .await
        .unwrap();
    let setup = app.state.accounts.two_factor_setup(id, name).await.unwrap();
    let step = common::settled_totp_step().await;
    app.state
        .accounts
        .enable_two_factor(id, &common::totp_code(&setup.secret, step - 1))
        .await
        .unwrap();
    let browser = app.new_client();
    let form = app.page(&browser, "/sign-in").await;
    let response = browser
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", common::csrf_of(&form)),
            ("login", name.to_string()),
            ("password", "a long enough password".to_string()),
            ("code", common::totp_code(&setup.secret, step)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "sign-in of {name}");
    browser
}
