//! The `covenant` command as an operator types it.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

fn covenant(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(args)
        .env_remove("COVENANT_DATABASE_URL")
        .env_remove("COVENANT_DATA_DIR")
        .output()
        .expect("running covenant")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["demo-data", "--help"],
        vec!["user", "set-role", "--help"],
        vec!["category", "add", "--help"],
        vec!["sweep", "--help"],
        vec!["hold", "add", "--help"],
        vec!["hold", "release", "--help"],
        vec!["hold", "list", "--help"],
    ] {
        let output = covenant(&args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        assert!(text(&output).contains("Usage:"), "{args:?}");
    }
    let serve = text(&covenant(&["serve", "--help"]));
    for option in ["--bind", "--data-dir", "--database-url", "--config"] {
        assert!(serve.contains(option), "serve --help lists {option}");
    }
}

#[test]
fn bad_arguments_are_explained_and_exit_non_zero() {
    let output = covenant(&["serve", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("--no-such-flag"));
    let output = covenant(&["demo-data", "--users", "many"]);
    assert_eq!(output.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = covenant(&[
        "demo-data",
        "--users",
        "0",
        "--topics",
        "5",
        "--posts",
        "5",
        "--data-dir",
        data,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("at least one user"));
    let output = covenant(&[
        "migrate",
        "--database-url",
        "mysql://nope",
        "--data-dir",
        data,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("database_url"), "{}", text(&output));
    let output = covenant(&["user", "set-role", "nobody", "emperor", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("unknown role"));
    let config = dir.path().join("covenant.toml");
    std::fs::write(&config, "bind = 42\n").unwrap();
    let output = covenant(&[
        "migrate",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("covenant.toml"), "{}", text(&output));
}

fn dump(data: &str) -> Vec<(i64, String, String, i64)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = covenant::Store::open(std::path::Path::new(data), "", 1)
            .await
            .unwrap();
        let mut rows = Vec::new();
        for topic in store.topics("discussion", None, 1000, 0).await.unwrap() {
            for post in store.posts_of_topic(topic.id, 1000, 0).await.unwrap() {
                rows.push((post.id, topic.title.clone(), post.body_md, post.user_id));
            }
        }
        store.close().await;
        rows.sort();
        rows
    })
}

#[test]
fn demo_data_is_deterministic_and_complete() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for dir in [&one, &two] {
        let output = covenant(&[
            "demo-data",
            "--users",
            "40",
            "--topics",
            "12",
            "--posts",
            "90",
            "--seed",
            "7",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", text(&output));
        assert!(text(&output).contains("Added 40 members, 12 topics and 90 posts"));
    }
    let a = dump(one.path().to_str().unwrap());
    assert_eq!(a.len(), 90);
    assert_eq!(
        a,
        dump(two.path().to_str().unwrap()),
        "the same seed gives the same forum"
    );
    let other = tempfile::tempdir().unwrap();
    let output = covenant(&[
        "demo-data",
        "--users",
        "40",
        "--topics",
        "12",
        "--posts",
        "90",
        "--seed",
        "8",
        "--data-dir",
        other.path().to_str().unwrap(),
    ]);
    assert!(output.status.success());
    assert_ne!(
        a,
        dump(other.path().to_str().unwrap()),
        "another seed gives another forum"
    );
}

#[test]
fn demo_members_can_sign_in_with_the_printed_password() {
    let dir = tempfile::tempdir().unwrap();
    let output = covenant(&[
        "demo-data",
        "--users",
        "3",
        "--topics",
        "1",
        "--posts",
        "2",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(text(&output).contains(covenant::demo::DEMO_PASSWORD));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = common::test_config(dir.path().to_path_buf(), String::new());
        let state = covenant::web::AppState::open(config).await.unwrap();
        let user = state.store.user_by_id(1).await.unwrap().unwrap();
        let origin = covenant::accounts::Origin::new("127.0.0.1", "test");
        assert!(
            state
                .accounts
                .sign_in(&user.username, covenant::demo::DEMO_PASSWORD, None, &origin)
                .await
                .is_ok()
        );
    });
}

#[test]
fn serve_creates_its_database_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .env_remove("COVENANT_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            healthy = answer.starts_with("HTTP/1.1 200");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "the server answers /healthz");
    assert!(
        dir.path().join("covenant.db").exists(),
        "the SQLite file is created on first start"
    );
    let wal = std::fs::read(dir.path().join("covenant.db")).unwrap();
    assert_eq!(wal[18], 2, "the database is in WAL mode (write version 2)");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut status = None;
    for _ in 0..100 {
        if let Some(done) = child.try_wait().unwrap() {
            status = Some(done);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("the server stops within ten seconds of SIGTERM");
    assert!(status.success(), "a clean shutdown exits 0");
}

#[test]
fn migrate_and_demo_data_run_on_postgresql_too() {
    let Some(admin) = common::postgres_url() else {
        eprintln!("skipped on PostgreSQL: COVENANT_TEST_DATABASE_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(common::fresh_postgres_database(&admin));
    let dir = tempfile::tempdir().unwrap();
    let output = covenant(&[
        "migrate",
        "--database-url",
        &url,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let output = covenant(&[
        "demo-data",
        "--users",
        "20",
        "--topics",
        "5",
        "--posts",
        "30",
        "--database-url",
        &url,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    // Ids keep counting after the bulk load: a normal registration still works.
    runtime.block_on(async {
        let audit_key =
            covenant::audit::AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
        let store = covenant::Store::connect(&url, 2)
            .await
            .unwrap()
            .with_keys(dir.path(), "", &audit_key)
            .await
            .unwrap();
        assert_eq!(store.count_users().await.unwrap(), 20);
        let mut tx = store.begin().await.unwrap();
        let id = covenant::store::insert_user(
            &store,
            &mut tx,
            &covenant::store::NewUser {
                username: "late",
                username_lower: "late",
                email: "late@example.org",
                email_lower: "late@example.org",
                password_hash: "x",
                birth_year: 1990,
                created_at: 0,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(id, 21);
    });
    assert!(
        !dir.path().join("covenant.db").exists(),
        "no SQLite file when running on PostgreSQL"
    );
}

/// Proves: T3, T4
#[test]
fn an_operator_rehearses_a_sweep_and_places_a_hold_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = covenant(&[
        "demo-data",
        "--users",
        "5",
        "--topics",
        "2",
        "--posts",
        "6",
        "--data-dir",
        data,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let output = covenant(&[
        "hold",
        "add",
        "--category",
        "user.contact.email",
        "--reason",
        "Claim 7",
        "--data-dir",
        data,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("Legal hold #1 placed."));
    let output = covenant(&[
        "hold",
        "add",
        "--category",
        "user.nonsense",
        "--reason",
        "x",
        "--data-dir",
        data,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("categories"), "{}", text(&output));
    let listed = text(&covenant(&["hold", "list", "--data-dir", data]));
    assert!(
        listed.contains("#1 standing: everyone, user.contact.email"),
        "{listed}"
    );
    let output = covenant(&[
        "sweep",
        "--dry-run",
        "--now",
        "2040-01-01",
        "--data-dir",
        data,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("Dry run as of 2040-01-01: nothing was changed"),
        "{}",
        text(&output)
    );
    let output = covenant(&["sweep", "--now", "yesterday", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(1));
    let output = covenant(&["hold", "release", "1", "--data-dir", data]);
    assert!(
        text(&output).contains("Legal hold #1 released."),
        "{}",
        text(&output)
    );
    let output = covenant(&["hold", "release", "1", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(1));
}
