//! The disclosure log, on both stores: privacy staff record a disclosure of a member's data to
//! an authority from their page; the member is emailed unless the law forbids it, finds the
//! record in their access export (unless so forbidden, until staff say the law allows telling
//! them), and the audit log holds the events with identifiers only. Moderators and members
//! cannot reach the pages.

mod common;

use common::csrf_of;
use covenant::domain::Role;
use reqwest::StatusCode;
use std::io::Read;

const PASSWORD: &str = "a long enough password";
const NOTICE: &str = "disclosed some of your data";

async fn user_id(app: &common::TestApp, name: &str) -> i64 {
    app.store
        .user_by_email(&format!("{name}@example.org"))
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A member of staff in `role` with 2-step verification on, signed in with a browser.
async fn staff_member(app: &common::TestApp, name: &str, role: Role) -> (reqwest::Client, i64) {
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
    let browser = app.new_client();
    let form = app.page(&browser, "/sign-in").await;
    let response = browser
        .post(app.url("/sign-in"))
        .form(&[
            ("csrf", csrf_of(&form)),
            ("login", name.to_string()),
            ("password", PASSWORD.to_string()),
            ("code", code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "sign-in of {name}"
    );
    (browser, id)
}

/// Sends the disclosure form from the staff page; returns the response.
async fn record(
    app: &common::TestApp,
    browser: &reqwest::Client,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = app.page(browser, "/staff/disclosures").await;
    let mut all = vec![("csrf".to_string(), csrf_of(&page))];
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    browser
        .post(app.url("/staff/disclosures"))
        .form(&all)
        .send()
        .await
        .unwrap()
}

/// The member's export archive, every file as text, by name.
async fn export(app: &common::TestApp, bearer: &str) -> Vec<(String, String)> {
    let response = app
        .client
        .post(app.url("/api/v1/me/export"))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"jurisdiction": "oregon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let bytes = app
        .client
        .get(body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            (file.name().unwrap().to_string(), text)
        })
        .collect()
}

/// The audit entries of `kind`: (actor, subject, details).
async fn audit_of(app: &common::TestApp, kind: &str) -> Vec<(Option<i64>, Option<i64>, String)> {
    app.store
        .audit_rows_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.kind == kind)
        .map(|row| (row.actor_id, row.subject_id, row.details))
        .collect()
}

on_both_stores! {
    /// Proves: A3, R7
    async fn a_recorded_disclosure_is_emailed_to_the_member_exported_and_audited(app) {
        let bearer = app.member("subject").await;
        let subject = user_id(app, "subject").await;
        let (officer, officer_id) = staff_member(app, "officer", Role::PrivacyOfficer).await;
        let subject_text = subject.to_string();
        let response = record(app, &officer, &[
            ("subject", subject_text.as_str()),
            ("legal_basis", "court_order"),
            ("requesting_body", "Zqm District Court"),
            ("reference", "Case 12-345"),
            ("categories", "user.contact.email user.device.ip_address"),
            ("disclosed_on", "2026-11-02"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);

        // The member is told: to whom, why, which kinds of data, and when.
        let mail = app.wait_for_mail("subject@example.org", NOTICE).await;
        for needed in ["Zqm District Court", "Case 12-345", "a court order", "2026-11-02",
                       "user.contact.email", "user.device.ip_address", "/account/privacy"] {
            assert!(mail.contains(needed), "{needed} missing from the notice: {mail}");
        }

        // The staff list shows it, with the approver and the notice sent.
        let list = app.page(&officer, "/staff/disclosures").await;
        assert!(list.contains("Zqm District Court"));
        assert!(list.contains("a court order"));
        assert!(list.contains(&format!("<td>{officer_id}</td>")), "the approver");
        assert!(list.contains("sent "), "the notice is marked sent");

        // The member's access export holds the record.
        let files = export(app, &bearer).await;
        let (_, requests) = files
            .iter()
            .find(|(name, _)| name == "data/user.privacy_request.details.json")
            .expect("the export has the disclosure records' category");
        let document: serde_json::Value = serde_json::from_str(requests).unwrap();
        let records = document["records"]["disclosures"].as_array().expect("a disclosures table");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["requesting_body"], "Zqm District Court");
        assert_eq!(records[0]["legal_basis"], "court_order");
        assert_eq!(records[0]["categories"], "user.contact.email user.device.ip_address");
        assert_eq!(records[0]["disclosed_on"], "2026-11-02");
        let (_, manifest) = files.iter().find(|(name, _)| name == "manifest.json").unwrap();
        assert!(manifest.contains("disclosure_records"), "the manifest explains the records");

        // The audit log has the event, with identifiers and fixed words only.
        let entries = audit_of(app, "disclosure").await;
        assert_eq!(entries.len(), 1);
        let (actor, about, details) = &entries[0];
        assert_eq!((*actor, *about), (Some(officer_id), Some(subject)));
        for needed in ["disclosure=", "method=court_order", "reason=subject_notified",
                       "category=user.contact.email", "category=user.device.ip_address"] {
            assert!(details.contains(needed), "{needed} missing from {details}");
        }
        assert!(!details.contains("Zqm") && !details.contains("12-345"), "{details}");
    }
}

on_both_stores! {
    /// Proves: A3, R7
    async fn a_disclosure_the_law_forbids_telling_is_neither_emailed_nor_exported_until_it_allows(app) {
        let bearer = app.member("subject").await;
        let subject = user_id(app, "subject").await;
        let (admin, _) = staff_member(app, "admin", Role::Administrator).await;
        let subject_text = subject.to_string();
        let response = record(app, &admin, &[
            ("subject", subject_text.as_str()),
            ("legal_basis", "subpoena"),
            ("requesting_body", "Zqm Secret Inquiry"),
            ("categories", "user.contact.email"),
            ("disclosed_on", "2026-11-01"),
            ("notice_forbidden", "1"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        // A later disclosure that may be told: once its notice has arrived, the earlier one
        // would have too, had it been queued.
        let response = record(app, &admin, &[
            ("subject", subject_text.as_str()),
            ("legal_basis", "protection_of_rights"),
            ("requesting_body", "Zqm Open Office"),
            ("categories", "user.account.username"),
            ("disclosed_on", "2026-11-03"),
        ]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        app.wait_for_mail("subject@example.org", NOTICE).await;
        let notices: Vec<String> = app
            .mail_to("subject@example.org")
            .into_iter()
            .filter(|m| m.contains(NOTICE))
            .collect();
        assert_eq!(notices.len(), 1, "only the disclosure that may be told is emailed");
        assert!(notices[0].contains("Zqm Open Office"));
        assert!(!notices[0].contains("Zqm Secret Inquiry"));

        // The staff list keeps both, and says which one the law keeps secret.
        let list = app.page(&admin, "/staff/disclosures").await;
        assert!(list.contains("Zqm Secret Inquiry") && list.contains("Zqm Open Office"));
        assert!(list.contains("forbidden by law"));

        // The export shows the told one only: the secret one would tell the member.
        let files = export(app, &bearer).await;
        let everything: String = files.iter().map(|(_, text)| text.as_str()).collect();
        assert!(everything.contains("Zqm Open Office"));
        assert!(!everything.contains("Zqm Secret Inquiry"));

        // Both are audited; the secret one says why nobody was told.
        let entries = audit_of(app, "disclosure").await;
        assert_eq!(entries.len(), 2);
        assert!(entries[0].2.contains("reason=notice_forbidden_by_law"), "{}", entries[0].2);
        assert!(entries[1].2.contains("reason=subject_notified"), "{}", entries[1].2);

        // Once the law allows it, staff tell the member from the list: the notice goes out and
        // the record joins the export.
        let secret = app.store.disclosures().await.unwrap().into_iter()
            .find(|d| d.requesting_body == "Zqm Secret Inquiry").unwrap();
        let action = format!("/disclosures/{}/notify", secret.id);
        assert!(list.contains(&action), "the list offers to tell the member");
        let response = admin.post(app.url(&format!("/staff{action}")))
            .form(&[("csrf", csrf_of(&list))]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let mut told = None;
        for _ in 0..300 {
            told = app.mail_to("subject@example.org").into_iter()
                .find(|m| m.contains(NOTICE) && m.contains("Zqm Secret Inquiry"));
            if told.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let told = told.expect("the member is told once the law allows it");
        assert!(told.contains("a subpoena") && told.contains("2026-11-01"), "{told}");
        let files = export(app, &bearer).await;
        let everything: String = files.iter().map(|(_, text)| text.as_str()).collect();
        assert!(everything.contains("Zqm Secret Inquiry"));
        let allowed = audit_of(app, "disclosure_notice_allowed").await;
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].1, Some(subject));
        assert!(allowed[0].2.contains(&format!("disclosure={}", secret.id)), "{}", allowed[0].2);
        // Only a standing ban can be lifted.
        let response = admin.post(app.url(&format!("/staff{action}")))
            .form(&[("csrf", csrf_of(&list))]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}

on_both_stores! {
    /// Proves: A3
    async fn moderators_and_members_cannot_reach_the_disclosure_log_and_bad_input_is_refused(app) {
        app.member("subject").await;
        let subject = user_id(app, "subject").await;
        let subject_text = subject.to_string();
        let fields = [
            ("subject", subject_text.as_str()),
            ("legal_basis", "court_order"),
            ("requesting_body", "Zqm Court"),
            ("categories", "user.contact.email"),
            ("disclosed_on", "2026-11-02"),
        ];
        let (moderator, _) = staff_member(app, "moderator", Role::Moderator).await;
        let member = app.new_client();
        let form = app.page(&member, "/sign-in").await;
        member.post(app.url("/sign-in"))
            .form(&[("csrf", csrf_of(&form).as_str()), ("login", "subject"), ("password", PASSWORD)])
            .send().await.unwrap();
        for browser in [&moderator, &member] {
            let response = browser.get(app.url("/staff/disclosures")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            // Even with a valid form token (taken from a page they may see).
            let page = app.page(browser, "/").await;
            let mut all = vec![("csrf".to_string(), csrf_of(&page))];
            all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let response = browser.post(app.url("/staff/disclosures")).form(&all).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        let anonymous = app.new_client();
        let response = anonymous.get(app.url("/staff/disclosures")).send().await.unwrap();
        assert_ne!(response.status(), StatusCode::OK);

        // Privacy staff are refused a record without a known category or legal basis.
        let (officer, _) = staff_member(app, "officer", Role::PrivacyOfficer).await;
        let response = record(app, &officer, &[
            ("subject", subject_text.as_str()),
            ("legal_basis", "curiosity"),
            ("requesting_body", "Zqm Court"),
            ("categories", "user.shoe_size"),
            ("disclosed_on", "2026-11-02"),
        ]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = response.text().await.unwrap();
        assert!(page.contains("legal_basis") && page.contains("categories"), "{page}");
        assert!(app.store.disclosures().await.unwrap().is_empty());
        assert!(audit_of(app, "disclosure").await.is_empty());
    }
}
