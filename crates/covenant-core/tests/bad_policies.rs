//! A table of broken policy files: each must be rejected with a message naming the file, the
//! line at fault and the field.

use covenant_core::policy::Policy;

const SMALL: &str = include_str!("fixtures/small.toml");

struct Case {
    name: &'static str,
    /// Text of the small policy to replace (its first occurrence) …
    find: &'static str,
    /// … and what to put there.
    replace: &'static str,
    /// A piece of text on the line the error must point at, in the broken file.
    line_with: &'static str,
    /// What the message must name as the field at fault.
    field: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "security log kept for no day",
        find: "[aggregate_statistics]\n",
        replace: "[minimization]\nsecurity_log_days = 0\n\n[aggregate_statistics]\n",
        line_with: "security_log_days = 0",
        field: "minimization.security_log_days",
    },
    Case {
        name: "accounts closed after a week away",
        find: "[aggregate_statistics]\n",
        replace: "[inactivity]\naccount_days = 7\n\n[aggregate_statistics]\n",
        line_with: "account_days = 7",
        field: "inactivity.account_days",
    },
    Case {
        name: "unknown key",
        find: "sensitive = false\n",
        replace: "sensitive = false\ncolour = \"blue\"\n",
        line_with: "colour = ",
        field: "categories[user.contact.email].colour",
    },
    Case {
        name: "wrong type",
        find: "minimum_age = 13",
        replace: "minimum_age = \"thirteen\"",
        line_with: "minimum_age = ",
        field: "jurisdictions[other].minimum_age",
    },
    Case {
        name: "purpose with unknown category",
        find: "categories = [\"user.contact.email\"]\nsubjects",
        replace: "categories = [\"user.contact.email\", \"user.contact.phone\"]\nsubjects",
        line_with: "\"user.contact.phone\"",
        field: "purposes[account].categories[1]",
    },
    Case {
        name: "malformed category key",
        find: "key = \"user.content.public\"",
        replace: "key = \"User Content\"",
        line_with: "key = \"User Content\"",
        field: "categories[User Content].key",
    },
    Case {
        name: "retention rule without a period",
        find: "period = { months = 6 }\n",
        replace: "",
        line_with: "[[retention]]\ncategory = \"user.content.public\"",
        field: "retention[user.content.public].period",
    },
    Case {
        name: "retention rule for an unknown category",
        find: "category = \"user.content.public\"\nperiod",
        replace: "category = \"user.content.draft\"\nperiod",
        line_with: "\"user.content.draft\"",
        field: "retention[user.content.draft].category",
    },
    Case {
        name: "unknown right",
        find: "rights = [\"access\", \"deletion\"]",
        replace: "rights = [\"access\", \"teleportation\"]",
        line_with: "\"teleportation\"",
        field: "jurisdictions[other].rights",
    },
    Case {
        name: "sub-processor without approval",
        find: "approval = { on = 2025-01-15, by = \"Test Operator\" }\n",
        replace: "",
        line_with: "[[providers]]\nid = \"backup\"",
        field: "providers[backup].approval",
    },
    Case {
        name: "provider outside the EEA without a transfer safeguard",
        find: "country = \"DE\"\nin_eea = true",
        replace: "country = \"US\"\nin_eea = false",
        line_with: "[[providers]]\nid = \"host\"",
        field: "providers[host].transfer_safeguard",
    },
    Case {
        name: "duplicate category key",
        find: "key = \"user.content.public\"",
        replace: "key = \"user.contact.email\"",
        line_with: "[[categories]]\nkey = \"user.contact.email\"\nname = \"Posts\"",
        field: "categories[user.contact.email]",
    },
    Case {
        name: "recipient with unknown category",
        find: "categories = [\"user.contact.email\"]\nproviders",
        replace: "categories = [\"user.location.precise\"]\nproviders",
        line_with: "\"user.location.precise\"",
        field: "recipients[service_providers].categories[0]",
    },
    Case {
        name: "recipient naming an unknown provider",
        find: "providers = [\"host\"]",
        replace: "providers = [\"cdn\"]",
        line_with: "providers = [\"cdn\"]",
        field: "recipients[service_providers].providers[0]",
    },
    Case {
        name: "bad date",
        find: "on = 2025-01-15",
        replace: "on = 2025-02-30",
        line_with: "on = 2025-02-30",
        field: "providers.approval",
    },
    Case {
        name: "date given as text",
        find: "on = 2025-01-15",
        replace: "on = \"15 January\"",
        line_with: "on = \"15 January\"",
        field: "providers[backup].approval.on",
    },
    Case {
        name: "jurisdiction granting an unknown right",
        find: "id = \"other\"",
        replace: "id = \"atlantis\"",
        line_with: "id = \"atlantis\"",
        field: "jurisdictions[atlantis].id",
    },
    Case {
        name: "no jurisdiction for everyone else",
        find: "id = \"other\"",
        replace: "id = \"oregon\"",
        line_with: "[[jurisdictions]]",
        field: "jurisdictions",
    },
    Case {
        name: "appeal right without an appeal rule",
        find: "rights = [\"access\", \"deletion\"]",
        replace: "rights = [\"access\", \"appeal\"]",
        line_with: "[[jurisdictions]]",
        field: "jurisdictions[other].appeal",
    },
    Case {
        name: "sale flagged while the policy sells nothing",
        find: "providers = [\"host\"]",
        replace: "providers = [\"host\"]\nsold_for = \"money\"",
        line_with: "sold_for = ",
        field: "recipients[service_providers].sold_for",
    },
    Case {
        name: "purpose without a basis for everyone else",
        find: "legal_basis = { eu_eea = \"contract\", other = \"notice\" }",
        replace: "legal_basis = { eu_eea = \"contract\" }",
        line_with: "legal_basis = ",
        field: "purposes[account].legal_basis",
    },
    Case {
        name: "notice as a GDPR basis",
        find: "eu_eea = \"contract\"",
        replace: "eu_eea = \"notice\"",
        line_with: "legal_basis = ",
        field: "purposes[account].legal_basis.eu_eea",
    },
    Case {
        name: "optional necessary cookies",
        find: "optional = false",
        replace: "optional = true",
        line_with: "optional = true",
        field: "cookies[necessary].optional",
    },
    Case {
        name: "category without a retention rule",
        find: "category = \"user.content.public\"\nperiod = { months = 6 }",
        replace: "category = \"user.contact.email\"\nperiod = { months = 6 }",
        line_with: "key = \"user.content.public\"",
        field: "categories[user.content.public].key",
    },
    Case {
        name: "syntax error",
        find: "name = \"Test Host\"",
        replace: "name = \"Test Host",
        line_with: "name = \"Test Host\n",
        field: "providers.name",
    },
];

fn line_of(text: &str, needle: &str) -> usize {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` is not in the file"));
    text[..offset].matches('\n').count() + 1
}

#[test]
fn the_small_policy_used_as_a_base_is_valid() {
    if let Err(error) = Policy::from_toml_str(SMALL, "small.toml") {
        panic!("{error}");
    }
}

#[test]
fn every_broken_policy_is_rejected_with_file_line_and_field() {
    for case in CASES {
        assert!(
            SMALL.contains(case.find),
            "{}: `{}` not found",
            case.name,
            case.find
        );
        let broken = SMALL.replacen(case.find, case.replace, 1);
        let error = match Policy::from_toml_str(&broken, "broken.toml") {
            Ok(_) => panic!("{}: the broken policy was accepted", case.name),
            Err(error) => error,
        };
        let expected = format!(
            "broken.toml:{}: {}",
            line_of(&broken, case.line_with),
            case.field
        );
        let message = error.to_string();
        assert!(
            message.lines().any(|line| line.starts_with(&expected)),
            "{}: expected a line starting with `{expected}`, got:\n{message}",
            case.name,
        );
    }
}

#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let broken = SMALL
        .replacen("providers = [\"host\"]", "providers = [\"cdn\"]", 1)
        .replacen(
            "country = \"DE\"\nin_eea = true",
            "country = \"US\"\nin_eea = false",
            1,
        );
    let error = Policy::from_toml_str(&broken, "broken.toml").unwrap_err();
    let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "recipients[service_providers].providers[0]",
            "providers[host].transfer_safeguard"
        ]
    );
}
