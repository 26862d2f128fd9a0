//! The per-request consent decision (issue 4: "well under one microsecond"). Every page asks
//! `decide` for the analytics and advertising tags after merging the device's and the
//! account's standing choices with `stricter`; these benches time both over the inputs a
//! real request brings: no choice yet, choices on the device, on the account or both, a
//! withdrawal, the GPC signal and a known minor. A benchmark, not a test: see BENCHMARKS.md.
//!
//! cargo bench -p covenant-core --bench decide

use covenant_core::consent::{
    Choice, ConsentRecord, ConsentState, ConsentSubject, Method, Signals, decide, stricter,
};
use covenant_core::policy::CookieCategory;
use divan::{Bencher, black_box};
use time::OffsetDateTime;

fn main() {
    divan::main();
}

fn record(
    subject: &ConsentSubject,
    category: CookieCategory,
    choice: Choice,
    at: i64,
) -> ConsentRecord {
    ConsentRecord {
        id: format!("receipt-{at}"),
        subject: subject.clone(),
        category,
        choice,
        method: Method::Banner,
        policy_version: "2025.1".to_owned(),
        text_hash: "0".repeat(64),
        recorded_at: OffsetDateTime::from_unix_timestamp(1_750_000_000 + at)
            .expect("a time in range"),
    }
}

/// The standing choices of the device and of the account for one named situation.
fn states(case: &str) -> (ConsentState, ConsentState) {
    use Choice::{Denied, Granted};
    use CookieCategory::{Advertising, Analytics, Preferences};
    let device = ConsentSubject::Device("d".repeat(43));
    let account = ConsentSubject::Account(42);
    let all = |subject: &ConsentSubject, choice: Choice| {
        [Preferences, Analytics, Advertising]
            .map(|category| record(subject, category, choice, 0))
            .to_vec()
    };
    let (on_device, on_account) = match case {
        "no choice" => (vec![], vec![]),
        "device granted all" => (all(&device, Granted), vec![]),
        "device refused all" => (all(&device, Denied), vec![]),
        "device withdrew analytics" => {
            let mut records = all(&device, Granted);
            records.push(record(&device, Analytics, Denied, 60));
            (records, vec![])
        }
        "account granted all" => (vec![], all(&account, Granted)),
        "device and account disagree" => (all(&device, Granted), {
            let mut records = all(&account, Granted);
            records.push(record(&account, Analytics, Denied, 60));
            records
        }),
        other => panic!("no case {other}"),
    };
    (
        ConsentState::from_records(&on_device),
        ConsentState::from_records(&on_account),
    )
}

/// Realistic requests: a situation, then the request's signals after a comma.
const REQUESTS: [&str; 10] = [
    "no choice",
    "no choice, gpc",
    "device granted all",
    "device granted all, gpc",
    "device granted all, minor",
    "device refused all",
    "device withdrew analytics",
    "account granted all",
    "device and account disagree",
    "device and account disagree, gpc and minor",
];

fn request(name: &str) -> (ConsentState, ConsentState, Signals) {
    let (case, kind) = name.split_once(", ").unwrap_or((name, "plain"));
    let (device, account) = states(case);
    (device, account, signals(kind))
}

fn signals(kind: &str) -> Signals {
    match kind {
        "plain" => Signals::default(),
        "gpc" => Signals {
            gpc: true,
            ..Signals::default()
        },
        "minor" => Signals {
            known_minor_under_16: true,
            ..Signals::default()
        },
        "gpc and minor" => Signals {
            gpc: true,
            known_minor_under_16: true,
            ..Signals::default()
        },
        other => panic!("no signals {other}"),
    }
}

/// One decision for one category (advertising: every rule applies to it), over the merged
/// choices.
#[divan::bench(args = REQUESTS)]
fn decide_one(bencher: Bencher, name: &str) {
    let (device, account, signals) = request(name);
    let state = stricter(&device, &account);
    bencher.bench(|| {
        decide(
            black_box(&state),
            black_box(CookieCategory::Advertising),
            black_box(signals),
        )
    });
}

/// What one page request does: merge the device's and the account's choices, then decide
/// every category (the banner, the analytics tag and the advertising tag ask).
#[divan::bench(args = REQUESTS)]
fn per_request(bencher: Bencher, name: &str) {
    let (device, account, signals) = request(name);
    bencher.bench(|| {
        let state = stricter(black_box(&device), black_box(&account));
        CookieCategory::ALL
            .iter()
            .filter(|category| decide(&state, **category, black_box(signals)).allowed)
            .count()
    });
}
