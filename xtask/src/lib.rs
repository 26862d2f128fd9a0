//! The evidence behind the policy: the promise registry (`promises.toml`), the tests that name
//! promises in their doc comments (`/// Proves: R3, R5`), and the results of a test run, joined
//! into one report. It reads files and test output; it never judges a test by its name alone.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub promise: Vec<Promise>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promise {
    pub id: String,
    pub statement: String,
    pub modules: Vec<String>,
    pub status: Status,
    #[serde(default)]
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Kept,
    Partial,
    Open,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Kept => "kept",
            Status::Partial => "partial",
            Status::Open => "open",
        }
    }
}

/// A test that says which promises it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvingTest {
    /// The test function's name (for `on_both_stores!` tests, the name of the generated module).
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub promises: Vec<String>,
}

pub fn load_registry(path: &Path) -> Result<Registry, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Finds every `/// Proves: …` doc comment under `roots` and the test function it documents.
pub fn scan_tests(roots: &[PathBuf]) -> Vec<ProvingTest> {
    let mut files = Vec::new();
    for root in roots {
        collect_rust_files(root, &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let Some(list) = line.trim().strip_prefix("/// Proves:") else {
                continue;
            };
            let promises: Vec<String> = list
                .split(',')
                .map(|id| id.trim().to_string())
                .filter(|id| !id.is_empty())
                .collect();
            let name = lines[index + 1..].iter().find_map(|l| function_name(l));
            if let Some(name) = name {
                found.push(ProvingTest {
                    name,
                    file: file.clone(),
                    line: index + 1,
                    promises,
                });
            }
        }
    }
    found
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                collect_rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The name in `fn name(` or `async fn name(`, if the line declares a function.
fn function_name(line: &str) -> Option<String> {
    let rest = line.trim().split("fn ").nth(1)?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && !line.trim().starts_with("//")).then_some(name)
}

/// What the registry and the tests say about each other that cannot be right.
/// The modules a promise names that do not exist under `root`: a registry pointing at a file
/// that was moved or never written tells an auditor nothing.
pub fn missing_modules(registry: &Registry, root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    for promise in &registry.promise {
        if promise.modules.is_empty() && promise.status != Status::Open {
            missing.push(format!("promise {} names no module", promise.id));
        }
        for module in &promise.modules {
            if !root.join(module).is_file() {
                missing.push(format!(
                    "promise {} names {module}, which does not exist",
                    promise.id
                ));
            }
        }
    }
    missing
}

pub fn problems(registry: &Registry, tests: &[ProvingTest]) -> Vec<String> {
    let mut problems = Vec::new();
    let known: BTreeMap<&str, &Promise> = registry
        .promise
        .iter()
        .map(|p| (p.id.as_str(), p))
        .collect();
    if known.len() != registry.promise.len() {
        problems.push("promises.toml lists a promise id twice".to_string());
    }
    for test in tests {
        for id in &test.promises {
            if !known.contains_key(id.as_str()) {
                problems.push(format!(
                    "{}:{}: test {} names unknown promise {id}",
                    test.file.display(),
                    test.line,
                    test.name
                ));
            }
        }
    }
    for promise in &registry.promise {
        let n_tests = tests
            .iter()
            .filter(|t| t.promises.contains(&promise.id))
            .count();
        match promise.status {
            Status::Kept | Status::Partial if n_tests == 0 => problems.push(format!(
                "promise {} is marked {} but no test proves it",
                promise.id,
                promise.status.as_str()
            )),
            Status::Partial | Status::Open
                if promise.missing.as_deref().unwrap_or("").trim().is_empty() =>
            {
                problems.push(format!(
                    "promise {} is {} but does not say what is missing",
                    promise.id,
                    promise.status.as_str()
                ))
            }
            _ => {}
        }
    }
    problems
}

/// The outcome of one test in a run, by the test's full path as libtest prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

/// Reads libtest's `test path::name ... ok` lines.
pub fn parse_test_output(output: &str) -> BTreeMap<String, Outcome> {
    let mut results = BTreeMap::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, outcome)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let outcome = match outcome.trim() {
            "ok" => Outcome::Passed,
            "FAILED" => Outcome::Failed,
            o if o.starts_with("ignored") => Outcome::Ignored,
            _ => continue,
        };
        // Property tests and others may print `- should panic`; keep the path only.
        let name = name.split(" - ").next().unwrap_or(name).trim().to_string();
        results.insert(name, outcome);
    }
    results
}

/// The results that belong to a proving test: its own, or those of the `sqlite`/`postgres`
/// tests that `on_both_stores!` generates inside a module of its name.
pub fn results_of<'a>(
    test: &ProvingTest,
    results: &'a BTreeMap<String, Outcome>,
) -> Vec<(&'a str, Outcome)> {
    results
        .iter()
        .filter(|(path, _)| {
            let segments: Vec<&str> = path.split("::").collect();
            let last = segments.last().copied();
            let parent = segments.len().checked_sub(2).map(|i| segments[i]);
            last == Some(test.name.as_str())
                || (parent == Some(test.name.as_str())
                    && matches!(last, Some("sqlite" | "postgres")))
        })
        .map(|(path, outcome)| (path.as_str(), *outcome))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> Registry {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn libtest_lines_become_outcomes() {
        let output = "running 3 tests\ntest a::b ... ok\ntest c ... FAILED\ntest d ... ignored, slow\ntest e::sqlite ... ok\n";
        let results = parse_test_output(output);
        assert_eq!(results["a::b"], Outcome::Passed);
        assert_eq!(results["c"], Outcome::Failed);
        assert_eq!(results["d"], Outcome::Ignored);
        let test = ProvingTest {
            name: "e".into(),
            file: "x.rs".into(),
            line: 1,
            promises: vec![],
        };
        assert_eq!(
            results_of(&test, &results),
            vec![("e::sqlite", Outcome::Passed)]
        );
    }

    #[test]
    fn a_kept_promise_without_a_test_and_an_unknown_id_are_problems() {
        let registry = registry(
            "[[promise]]\nid = \"F1\"\nstatement = \"s\"\nmodules = []\nstatus = \"kept\"\n\
             [[promise]]\nid = \"F2\"\nstatement = \"s\"\nmodules = []\nstatus = \"open\"\n",
        );
        let tests = vec![ProvingTest {
            name: "t".into(),
            file: "x.rs".into(),
            line: 3,
            promises: vec!["Z9".into()],
        }];
        let problems = problems(&registry, &tests);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("F1") && p.contains("no test")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("unknown promise Z9")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("F2") && p.contains("missing")),
            "{problems:?}"
        );
    }

    /// Every module says what it is for in its first line.
    #[test]
    fn every_module_starts_with_a_doc_line() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        for dir in ["src", "crates/covenant-core/src", "xtask/src"] {
            collect_rust_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 10);
        let undocumented: Vec<_> = files
            .iter()
            .filter(|f| {
                !std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .starts_with("//!")
            })
            .collect();
        assert!(
            undocumented.is_empty(),
            "modules without a //! line: {undocumented:?}"
        );
    }

    /// The tidy check on the real repository: every promise the registry calls kept or partial
    /// has a test, and every test names promises that exist.
    #[test]
    fn the_registry_and_the_tests_agree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let registry = load_registry(&root.join("promises.toml")).unwrap();
        let tests = scan_tests(&[
            root.join("src"),
            root.join("tests"),
            root.join("crates"),
            root.join("xtask/src"),
        ]);
        let ids: Vec<&str> = registry.promise.iter().map(|p| p.id.as_str()).collect();
        for expected in ["F1", "F6", "C4", "R10", "T4", "A7", "M1", "J1"] {
            assert!(ids.contains(&expected), "the registry lists {expected}");
        }
        assert_eq!(
            ids.len(),
            33,
            "the registry lists the 33 promises of the map"
        );
        let problems = problems(&registry, &tests);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let missing = missing_modules(&registry, root);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn a_promise_naming_a_file_that_does_not_exist_is_a_problem() {
        let registry = registry(
            "[[promise]]\nid = \"F1\"\nstatement = \"s\"\nmodules = [\"Cargo.toml\", \"src/nowhere.rs\"]\nstatus = \"kept\"\n",
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let missing = missing_modules(&registry, root);
        assert_eq!(
            missing,
            vec!["promise F1 names src/nowhere.rs, which does not exist".to_string()]
        );
    }
}
