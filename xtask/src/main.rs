//! `cargo xtask evidence`: runs the whole test suite and reports, promise by promise, the tests
//! that prove it and whether they passed, in the terminal and as Markdown and HTML files.
//! Exits non-zero when a test fails or a promise called kept or partial has no passing test.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use xtask::{Outcome, Status, load_registry, parse_test_output, problems, results_of, scan_tests};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("evidence") => evidence(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask evidence [--out DIR] [-- extra cargo test arguments]");
            ExitCode::from(2)
        }
    }
}

fn evidence(args: &[String]) -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf();
    let mut out_dir = root.join("target/evidence");
    let mut extra = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--out" => out_dir = PathBuf::from(iter.next().expect("--out needs a folder")),
            "--" => extra.extend(iter.by_ref().cloned()),
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let registry = match load_registry(&root.join("promises.toml")) {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let tests = scan_tests(&[
        root.join("src"),
        root.join("tests"),
        root.join("crates"),
        root.join("xtask/src"),
    ]);
    let mut failures = problems(&registry, &tests);

    eprintln!("running the test suite: cargo test --workspace --no-fail-fast");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(&extra)
        .output()
        .expect("running cargo test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results = parse_test_output(&stdout);
    let n_failed = results.values().filter(|o| **o == Outcome::Failed).count();
    if !output.status.success() || n_failed > 0 {
        // The failing tests' own output: every block from `failures:` to its `test result:`.
        let mut in_failures = false;
        for line in stdout.lines() {
            if line == "failures:" {
                in_failures = true;
            } else if line.starts_with("test result:") {
                in_failures = false;
            }
            if in_failures {
                eprintln!("{line}");
            }
        }
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        failures.push(format!("the test suite failed ({n_failed} failing tests)"));
    }

    let mut markdown = String::from("# Evidence: every promise and the tests that keep it\n\n");
    markdown.push_str(&format!(
        "{} tests ran; {} failed.\n\n",
        results.len(),
        n_failed
    ));
    markdown.push_str("| promise | status | statement | tests (passed/run) |\n|---|---|---|---|\n");
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>Covenant evidence</title>\
         <style>body{font:15px system-ui;margin:2rem}td,th{border:1px solid #ccc;padding:.4rem;vertical-align:top}\
         table{border-collapse:collapse}.kept{color:#05620f}.partial{color:#8a5300}.open{color:#a1140c}</style>\
         <h1>Evidence: every promise and the tests that keep it</h1><table><tr><th>Promise<th>Status<th>Statement<th>Tests</tr>",
    );
    println!("{:<4} {:<8} {:>6}  tests", "id", "status", "passed");
    for promise in &registry.promise {
        let proving: Vec<_> = tests
            .iter()
            .filter(|t| t.promises.contains(&promise.id))
            .collect();
        let mut lines = Vec::new();
        let (mut passed, mut run) = (0, 0);
        for test in &proving {
            let outcomes = results_of(test, &results);
            if outcomes.is_empty() {
                lines.push(format!("{} (did not run)", test.name));
            }
            for (path, outcome) in outcomes {
                run += 1;
                if outcome == Outcome::Passed {
                    passed += 1;
                }
                lines.push(format!(
                    "{path}: {}",
                    match outcome {
                        Outcome::Passed => "passed",
                        Outcome::Failed => "FAILED",
                        Outcome::Ignored => "ignored",
                    }
                ));
            }
        }
        if promise.status != Status::Open && passed == 0 {
            failures.push(format!("promise {} has no passing test", promise.id));
        }
        println!(
            "{:<4} {:<8} {:>3}/{:<3} {}",
            promise.id,
            promise.status.as_str(),
            passed,
            run,
            promise.statement
        );
        if let Some(missing) = &promise.missing {
            println!("{:<18}missing: {missing}", "");
        }
        let missing_md = promise
            .missing
            .as_ref()
            .map(|m| format!("<br>**Missing:** {m}"))
            .unwrap_or_default();
        markdown.push_str(&format!(
            "| {} | {} | {}{} | {}/{}: {} |\n",
            promise.id,
            promise.status.as_str(),
            promise.statement,
            missing_md,
            passed,
            run,
            lines.join("<br>")
        ));
        let missing_html = promise
            .missing
            .as_ref()
            .map(|m| format!("<p><b>Missing:</b> {}</p>", escape(m)))
            .unwrap_or_default();
        html.push_str(&format!(
            "<tr><td>{}<td class={}>{}<td>{}{}<td>{}/{}<br>{}</tr>",
            promise.id,
            promise.status.as_str(),
            promise.status.as_str(),
            escape(&promise.statement),
            missing_html,
            passed,
            run,
            lines
                .iter()
                .map(|l| escape(l))
                .collect::<Vec<_>>()
                .join("<br>")
        ));
    }
    html.push_str("</table>");
    if std::fs::create_dir_all(&out_dir).is_ok() {
        let _ = std::fs::write(out_dir.join("evidence.md"), &markdown);
        let _ = std::fs::write(out_dir.join("evidence.html"), &html);
        println!("\nreport written to {}", out_dir.display());
    }
    if failures.is_empty() {
        println!("every kept or partial promise has a passing test");
        ExitCode::SUCCESS
    } else {
        for failure in &failures {
            eprintln!("evidence: {failure}");
        }
        ExitCode::FAILURE
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
