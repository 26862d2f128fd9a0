//! Staff roles and need-to-know (promise A4), on both stores: a support agent sees the contact
//! data of the privacy requests assigned to them and nothing else; a moderator never sees an
//! email; every staff read of personal data leaves exactly one audit event that names the
//! purpose and holds no personal value; and the audit chain stays intact.

mod common;

use common::csrf_of;
use covenant::domain::Role;
use reqwest::StatusCode;

const PASSWORD: &str = "a long enough password";

async fn user_id(app: &common::TestApp, name: &str) -> i64 {
    app.store.user_by_username(name).await.unwrap().unwrap().id
}

/// A browser signed in through the sign-in page.
async fn browser_for(app: &common::TestApp, login: &str, code: Option<String>) -> reqwest::Client {
    let browser = app.new_client();
    let form = app.page(&browser, "/sign-in").await;
    let mut fields = vec![
        ("csrf", csrf_of(&form)),
        ("login", login.to_string()),
        ("password", PASSWORD.to_string()),
    ];
    if let Some(code) = code {
        fields.push(("code", code));
    }
    let response = browser
        .post(app.url("/sign-in"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "sign-in of {login}"
    );
    browser
}

/// A member of staff in `role` with 2-step verification on, signed in with a browser.
async fn staff(app: &common::TestApp, name: &str, role: Role) -> (reqwest::Client, i64) {
    app.member(name).await;
    let id = user_id(app, name).await;
    app.state.accounts.set_role(id, role).await.unwrap();
    let setup = app.state.accounts.two_factor_setup(id, name).await.unwrap();
    let step = common::settled_totp_step().await;
    let code = common::totp_code(&setup.secret, step - 1);
    app.state
        .accounts
        .enable_two_factor(id, &code)
        .await
        .unwrap();
    let code = common::totp_code(&setup.secret, step);
    (browser_for(app, name, Some(code)).await, id)
}

/// A member who files an access request from their account; returns the request's number.
async fn member_with_request(app: &common::TestApp, name: &str) -> i64 {
    let token = app.member(name).await;
    let browser = browser_for(app, name, None).await;
    let page = app.page(&browser, "/account/privacy").await;
    let response = browser
        .post(app.url("/account/privacy/requests"))
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("right", "access"),
            ("jurisdiction", "eu_eea"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_redirection() || response.status().is_success(),
        "{}",
        response.status()
    );
    let mine: serde_json::Value = app
        .client
        .get(app.url("/api/v1/privacy-requests"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    mine[0]["id"]
        .as_i64()
        .expect("the member sees their request")
}

/// The staff reads of personal data recorded so far.
async fn reads(app: &common::TestApp) -> Vec<covenant::store::AuditRow> {
    app.store
        .audit_page(&Default::default(), 10_000, 0)
        .await
        .unwrap()
        .0
        .into_iter()
        .filter(|row| row.kind == "personal_data_read")
        .collect()
}

/// The refusals of the purpose gate recorded so far.
async fn refusals(app: &common::TestApp) -> Vec<covenant::store::AuditRow> {
    app.store
        .audit_page(&Default::default(), 10_000, 0)
        .await
        .unwrap()
        .0
        .into_iter()
        .filter(|row| row.kind == "personal_data_read_refused")
        .collect()
}

/// A member's message to staff; returns its number.
async fn feedback_from(app: &common::TestApp, user_id: i64, body: &str) -> i64 {
    let sender = covenant::forum::Actor {
        user_id,
        role: Role::Member,
        email_verified: true,
        two_factor: false,
        awaiting_parent: false,
    };
    app.state
        .feedback
        .submit(&sender, body, false, false)
        .await
        .unwrap()
}

/// A disclosure of `subject`'s email to a court, approved by `approver`; returns its number.
async fn disclosure_of(app: &common::TestApp, approver: i64, subject: i64, body: &str) -> i64 {
    app.state
        .disclosures
        .record(
            approver,
            &covenant::disclosures::DisclosureRequest {
                subject_user_id: subject,
                legal_basis: "court_order".into(),
                requesting_body: body.into(),
                reference: format!("case of {subject}"),
                categories: "user.contact.email".into(),
                disclosed_on: "2026-01-05".into(),
                notice_forbidden: false,
            },
        )
        .await
        .unwrap()
}

async fn get(client: &reqwest::Client, app: &common::TestApp, path: &str) -> (StatusCode, String) {
    let response = client.get(app.url(path)).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Checks one new read: who, whose, for what, and that its text holds no personal value.
fn assert_one_read(
    before: usize,
    after: &[covenant::store::AuditRow],
    actor: i64,
    subject: Option<i64>,
    purpose: &str,
) {
    assert_eq!(after.len(), before + 1, "exactly one audit event per read");
    let row = after
        .iter()
        .find(|r| r.actor_id == Some(actor) && r.details.contains(&format!("reason={purpose}")))
        .expect("the read is recorded with its purpose");
    assert_eq!(row.subject_id, subject);
    assert!(
        !row.details.contains('@') && !row.details.contains("example.org"),
        "no personal value in the audit text: {}",
        row.details
    );
    assert!(row.details.contains("category="), "{}", row.details);
}

on_both_stores! {
    /// Proves: A3
    async fn a_support_agent_sees_contact_data_of_assigned_requests_only(app) {
        let bea_request = member_with_request(app, "bea").await;
        let cat_request = member_with_request(app, "cat").await;
        let bea = user_id(app, "bea").await;
        let cat = user_id(app, "cat").await;
        let (officer, officer_id) = staff(app, "olga", Role::PrivacyOfficer).await;
        let (agent, agent_id) = staff(app, "sam", Role::SupportAgent).await;
        app.state.requests.assign(officer_id, bea_request, Some(agent_id)).await.unwrap();

        // The agent's queue holds the assigned request only, even when asking for all.
        let (status, queue) = get(&agent, app, "/staff/requests?all=1").await;
        assert_eq!(status, StatusCode::OK);
        assert!(queue.contains(&format!("href=\"/staff/requests/{bea_request}\"")));
        assert!(!queue.contains(&format!("href=\"/staff/requests/{cat_request}\"")));

        // The assigned request's page shows its contact data, and no action or evidence.
        let before = reads(app).await.len();
        let (status, page) = get(&agent, app, &format!("/staff/requests/{bea_request}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("bea@example.org"));
        assert!(!page.contains(&format!("/staff/requests/{bea_request}/actions")));
        assert!(!page.contains("/evidence/"));
        assert_one_read(before, &reads(app).await, agent_id, Some(bea), "account_support");

        // Another's request is refused, and the refusal reads nothing but is audited: who,
        // whose, in which role, for what, why, and the categories asked for.
        let before = reads(app).await.len();
        let refused_before = refusals(app).await.len();
        let (status, page) = get(&agent, app, &format!("/staff/requests/{cat_request}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!page.contains("cat@example.org"));
        assert_eq!(reads(app).await.len(), before);
        let refused = refusals(app).await;
        assert_eq!(refused.len(), refused_before + 1);
        assert_eq!(refused[0].actor_id, Some(agent_id));
        assert_eq!(refused[0].subject_id, Some(cat));
        for part in ["reason=account_support", "refused=need_to_know", "role=support_agent",
                     &format!("request={cat_request}"), "category=user.contact.email"] {
            assert!(refused[0].details.contains(part), "{part}: {}", refused[0].details);
        }
        assert!(!refused[0].details.contains('@'), "{}", refused[0].details);

        // No evidence, no actions (erasure and every decision), no disclosure log.
        let (status, _) = get(&agent, app, &format!("/staff/requests/{bea_request}/evidence/1")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let response = agent
            .post(app.url(&format!("/staff/requests/{bea_request}/actions")))
            .form(&[("csrf", csrf_of(&queue).as_str()), ("action", "fulfil")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let (status, _) = get(&agent, app, "/staff/disclosures").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Privacy staff read any request for handling it: one event each, with that purpose.
        let before = reads(app).await.len();
        let (status, page) = get(&officer, app, &format!("/staff/requests/{cat_request}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("cat@example.org"));
        assert_one_read(before, &reads(app).await, officer_id, Some(cat), "request_handling");

        // Each record of the disclosure log is a read of its subject's data for the
        // legal-disclosure purpose.
        let disclosure = disclosure_of(app, officer_id, cat, "Court of Example").await;
        let before = reads(app).await.len();
        let (status, page) = get(&officer, app, "/staff/disclosures").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Court of Example"));
        let after = reads(app).await;
        assert_one_read(before, &after, officer_id, Some(cat), "legal_disclosure");
        assert!(after[0].details.contains(&format!("disclosure={disclosure}")), "{}", after[0].details);

        // Support stops while the subject's processing is restricted; request handling goes on.
        let mut tx = app.store.begin().await.unwrap();
        app.state.purpose.restrict(&mut tx, bea, None).await.unwrap();
        tx.commit().await.unwrap();
        let (status, page) = get(&agent, app, &format!("/staff/requests/{bea_request}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!page.contains("bea@example.org"));
        let (status, _) = get(&officer, app, &format!("/staff/requests/{bea_request}")).await;
        assert_eq!(status, StatusCode::OK);

        let report = covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap();
        assert!(report.is_intact());
    }
}

on_both_stores! {
    /// Proves: A3
    async fn a_moderator_never_sees_an_email(app) {
        let bea_request = member_with_request(app, "bea").await;
        let bea = user_id(app, "bea").await;
        feedback_from(app, bea, "The search could be faster.").await;
        let (moderator, moderator_id) = staff(app, "mona", Role::Moderator).await;
        let before = reads(app).await.len();
        for path in [
            "/staff/requests".to_string(),
            format!("/staff/requests/{bea_request}"),
            format!("/staff/requests/{bea_request}/evidence/1"),
            "/staff/disclosures".to_string(),
            "/staff/requests/report".to_string(),
        ] {
            let (status, page) = get(&moderator, app, &path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            assert!(!page.contains("bea@example.org"), "{path}");
        }
        // What a moderator may open shows no email either.
        for path in ["/staff/held", "/staff/feedback", "/u/bea", "/"] {
            let (status, page) = get(&moderator, app, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(!page.contains("bea@example.org"), "{path}");
        }
        // Their one read of personal data is bea's message in the feedback list, for handling
        // feedback, and it names no email category.
        let after = reads(app).await;
        assert_one_read(before, &after, moderator_id, Some(bea), "feedback_handling");
        assert!(after.iter().all(|r| !r.details.contains("user.contact.email")
            || r.actor_id != Some(moderator_id)));
        let report = covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap();
        assert!(report.is_intact());
    }
}

on_both_stores! {
    /// A moderator who asks the purpose gate for a member's email is refused, and the audit
    /// log shows the refusal (who, whose, role, purpose, category, why), with no personal
    /// value; a read refused because the subject's processing is restricted is recorded too.
    /// Proves: A3
    async fn a_refused_staff_read_is_audited(app) {
        app.member("bea").await;
        let bea = user_id(app, "bea").await;
        let (_, moderator_id) = staff(app, "mona", Role::Moderator).await;
        let read = covenant::purpose::StaffRead {
            staff_id: moderator_id,
            role: Role::Moderator,
            purpose: covenant::purpose::StaffPurpose::AbuseHandling,
            subject: Some(bea),
            categories: &[covenant::inventory::EMAIL],
            assigned_to_me: false,
            request: None,
            count: None,
            item: None,
        };
        let before = reads(app).await.len();
        let result = app.state.purpose.staff_read(&read).await;
        assert!(matches!(result, Err(covenant::error::Error::Forbidden)), "{result:?}");
        assert_eq!(reads(app).await.len(), before, "nothing was read");
        let refused = refusals(app).await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].actor_id, Some(moderator_id));
        assert_eq!(refused[0].subject_id, Some(bea));
        assert_eq!(
            refused[0].details,
            "reason=abuse_handling refused=need_to_know role=moderator category=user.contact.email"
        );

        // Feedback handling is allowed to a moderator, but not while bea's processing is
        // restricted.
        let mut tx = app.store.begin().await.unwrap();
        app.state.purpose.restrict(&mut tx, bea, None).await.unwrap();
        tx.commit().await.unwrap();
        let read = covenant::purpose::StaffRead {
            purpose: covenant::purpose::StaffPurpose::FeedbackHandling,
            categories: &[covenant::inventory::PRIVATE],
            ..read
        };
        let result = app.state.purpose.staff_read(&read).await;
        assert!(matches!(result, Err(covenant::error::Error::Forbidden)), "{result:?}");
        let refused = refusals(app).await;
        assert_eq!(refused.len(), 2);
        assert!(refused[0].details.contains("refused=restricted"), "{}", refused[0].details);
        assert!(refused[0].details.contains("reason=feedback_handling"), "{}", refused[0].details);

        let report = covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
    }
}

on_both_stores! {
    /// The feedback list shows each message only as its sender's restriction and the reader's
    /// role allow, and each row is its own audited read (or refusal).
    /// Proves: A3, R9
    async fn each_feedback_row_goes_through_the_gate(app) {
        app.member("bea").await;
        app.member("cat").await;
        let (bea, cat) = (user_id(app, "bea").await, user_id(app, "cat").await);
        let from_bea = feedback_from(app, bea, "Dark mode please.").await;
        let from_cat = feedback_from(app, cat, "Bigger fonts please.").await;
        let mut tx = app.store.begin().await.unwrap();
        app.state.purpose.restrict(&mut tx, cat, None).await.unwrap();
        tx.commit().await.unwrap();
        let (moderator, moderator_id) = staff(app, "mona", Role::Moderator).await;

        let before = reads(app).await.len();
        let (status, page) = get(&moderator, app, "/staff/feedback").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Dark mode please."));
        assert!(!page.contains("Bigger fonts please."), "cat's processing is restricted");
        assert!(page.contains(&format!("data-feedback=\"{from_cat}\" class=\"withheld\"")));

        let after = reads(app).await;
        assert_one_read(before, &after, moderator_id, Some(bea), "feedback_handling");
        assert!(after[0].details.contains(&format!("feedback={from_bea}")), "{}", after[0].details);
        let refused = refusals(app).await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].subject_id, Some(cat));
        assert!(refused[0].details.contains("refused=restricted"), "{}", refused[0].details);
        assert!(refused[0].details.contains(&format!("feedback={from_cat}")), "{}", refused[0].details);

        // Lifting the restriction shows cat's message again.
        app.state
            .purpose
            .lift(cat, moderator_id, covenant::purpose::LiftedBy::Staff)
            .await
            .unwrap();
        let (_, page) = get(&moderator, app, "/staff/feedback").await;
        assert!(page.contains("Bigger fonts please."));

        let report = covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
    }
}

on_both_stores! {
    /// Every row of the disclosure log is a read of its own subject's data, audited with the
    /// record's number.
    /// Proves: A3
    async fn each_disclosure_row_is_its_own_audited_read(app) {
        app.member("bea").await;
        app.member("cat").await;
        let (bea, cat) = (user_id(app, "bea").await, user_id(app, "cat").await);
        let (officer, officer_id) = staff(app, "olga", Role::PrivacyOfficer).await;
        let first = disclosure_of(app, officer_id, bea, "Court of Example").await;
        let second = disclosure_of(app, officer_id, cat, "Tax Office of Example").await;
        let before = reads(app).await.len();
        let (status, page) = get(&officer, app, "/staff/disclosures").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Court of Example") && page.contains("Tax Office of Example"));
        let after = reads(app).await;
        assert_eq!(after.len(), before + 2, "one read per record");
        for (subject, record) in [(bea, first), (cat, second)] {
            let row = after
                .iter()
                .find(|r| r.details.contains(&format!("disclosure={record}")))
                .expect("each record's read is audited");
            assert_eq!(row.subject_id, Some(subject));
            assert_eq!(row.actor_id, Some(officer_id));
            assert!(row.details.contains("reason=legal_disclosure"), "{}", row.details);
            assert!(!row.details.contains("Example"), "{}", row.details);
        }
        let report = covenant::audit::verify(&app.store, &app.state.audit_key).await.unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
    }
}
