//! Semantic checks of a deserialized policy file: ids are unique, every reference resolves,
//! and the declarations hold together (nothing flagged as sold when the policy says nothing is
//! sold, no transfer out of the EEA without a safeguard, …). It only reports; it never repairs.

use std::collections::HashSet;

use serde::Serialize;

use super::{
    CategoryKey, CookieCategory, FieldPath, Inactivity, Jurisdiction, LegalBasis, Minimization,
    PolicyDocument, ProviderRole, Right,
};

type Problems = Vec<(FieldPath, String)>;

pub(super) fn validate(document: &PolicyDocument) -> Problems {
    let mut problems = Problems::new();
    check_unique_ids(document, &mut problems);
    check_categories(document, &mut problems);
    check_purposes(document, &mut problems);
    check_recipients(document, &mut problems);
    check_cookies(document, &mut problems);
    check_retention(document, &mut problems);
    check_jurisdictions(document, &mut problems);
    check_automated_processes(document, &mut problems);
    check_providers(document, &mut problems);
    if document.aggregate_statistics.smallest_published_count < 2 {
        problems.push((
            FieldPath::default()
                .key("aggregate_statistics")
                .key("smallest_published_count"),
            "must be at least 2, so that no single visit shows in the statistics".to_owned(),
        ));
    }
    let days = document.minimization.security_log_days;
    if !(1..=Minimization::MAX_SECURITY_LOG_DAYS).contains(&days) {
        problems.push((
            FieldPath::default()
                .key("minimization")
                .key("security_log_days"),
            format!(
                "must be between 1 and {} days (it was {days}): the security log needs recent \
                 sign-ins, and their IP addresses must not be kept without limit",
                Minimization::MAX_SECURITY_LOG_DAYS
            ),
        ));
    }
    if let Some(days) = document.inactivity.account_days
        && !(Inactivity::MIN_ACCOUNT_DAYS..=Inactivity::MAX_ACCOUNT_DAYS).contains(&days)
    {
        problems.push((
            FieldPath::default().key("inactivity").key("account_days"),
            format!(
                "must be between {} and {} days (it was {days}): a shorter limit would close \
                 the accounts of members who are merely away",
                Inactivity::MIN_ACCOUNT_DAYS,
                Inactivity::MAX_ACCOUNT_DAYS
            ),
        ));
    }
    problems
}

fn element(section: &str, index: usize, id: &str) -> FieldPath {
    FieldPath::default().key(section).item(index, Some(id))
}

/// The name a value has in the policy file (`social_sign_in`, `eu_eea`, …).
fn file_name_of(value: impl Serialize) -> String {
    toml::Value::try_from(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn check_unique_ids(document: &PolicyDocument, problems: &mut Problems) {
    let mut check = |section: &str, ids: Vec<String>| {
        let mut seen = HashSet::new();
        for (index, id) in ids.iter().enumerate() {
            if !seen.insert(id) {
                problems.push((
                    element(section, index, id),
                    format!("`{id}` is declared twice"),
                ));
            }
        }
    };
    let d = document;
    check(
        "sources",
        d.sources.iter().map(|s| file_name_of(s.kind)).collect(),
    );
    check(
        "categories",
        d.categories.iter().map(|c| c.key.to_string()).collect(),
    );
    check(
        "purposes",
        d.purposes.iter().map(|p| p.id.to_string()).collect(),
    );
    check(
        "recipients",
        d.recipients.iter().map(|r| r.id.clone()).collect(),
    );
    check(
        "cookies",
        d.cookies.iter().map(|c| file_name_of(c.category)).collect(),
    );
    check(
        "retention",
        d.retention.iter().map(|r| r.category.to_string()).collect(),
    );
    check(
        "jurisdictions",
        d.jurisdictions
            .iter()
            .map(|j| j.id.as_str().to_owned())
            .collect(),
    );
    check(
        "automated_processes",
        d.automated_processes.iter().map(|a| a.id.clone()).collect(),
    );
    check(
        "security_measures",
        d.security_measures.iter().map(|s| s.id.clone()).collect(),
    );
    check(
        "providers",
        d.providers.iter().map(|p| p.id.clone()).collect(),
    );
}

/// Reports each key of `keys` that names no declared data category.
fn check_category_refs(
    document: &PolicyDocument,
    at: FieldPath,
    keys: &[CategoryKey],
    problems: &mut Problems,
) {
    for (index, key) in keys.iter().enumerate() {
        if !document
            .categories
            .iter()
            .any(|category| &category.key == key)
        {
            problems.push((
                at.item(index, None),
                format!("unknown data category `{key}`"),
            ));
        }
    }
}

fn check_categories(document: &PolicyDocument, problems: &mut Problems) {
    for (index, category) in document.categories.iter().enumerate() {
        let at = element("categories", index, category.key.as_str());
        for (source_index, kind) in category.sources.iter().enumerate() {
            if !document.sources.iter().any(|source| source.kind == *kind) {
                let name = file_name_of(kind);
                let message = format!("source `{name}` is not declared in [[sources]]");
                problems.push((at.key("sources").item(source_index, None), message));
            }
        }
        if !document
            .retention
            .iter()
            .any(|rule| rule.category == category.key)
        {
            problems.push((
                at.key("key"),
                "this category has no retention rule".to_owned(),
            ));
        }
    }
}

fn check_purposes(document: &PolicyDocument, problems: &mut Problems) {
    for (index, purpose) in document.purposes.iter().enumerate() {
        let at = element("purposes", index, purpose.id.as_str());
        if purpose.categories.is_empty() {
            let message = "a purpose must name the data categories it uses".to_owned();
            problems.push((at.key("categories"), message));
        }
        check_category_refs(
            document,
            at.key("categories"),
            &purpose.categories,
            problems,
        );
        let bases = at.key("legal_basis");
        if !purpose.legal_basis.contains_key(&Jurisdiction::Other) {
            let message = "needs an `other` entry, which applies wherever no jurisdiction is named";
            problems.push((bases.clone(), message.to_owned()));
        }
        for (jurisdiction, basis) in &purpose.legal_basis {
            if jurisdiction.is_gdpr() && *basis == LegalBasis::Notice {
                let message = "notice alone is not a legal basis under the GDPR".to_owned();
                problems.push((bases.key(jurisdiction.as_str()), message));
            }
        }
    }
}

fn check_recipients(document: &PolicyDocument, problems: &mut Problems) {
    for (index, recipient) in document.recipients.iter().enumerate() {
        let at = element("recipients", index, &recipient.id);
        check_category_refs(
            document,
            at.key("categories"),
            &recipient.categories,
            problems,
        );
        for (provider_index, id) in recipient.providers.iter().enumerate() {
            if !document.providers.iter().any(|provider| &provider.id == id) {
                let message = format!("unknown service provider `{id}`");
                problems.push((at.key("providers").item(provider_index, None), message));
            }
        }
        if recipient.sold_for.is_some() && !document.sells_personal_data {
            let message = "the policy says no personal data is sold (`sells_personal_data`)";
            problems.push((at.key("sold_for"), message.to_owned()));
        }
        if recipient.targeted_advertising && !document.shares_for_targeted_advertising {
            let message = "the policy says nothing is shared for targeted advertising \
                           (`shares_for_targeted_advertising`)";
            problems.push((at.key("targeted_advertising"), message.to_owned()));
        }
    }
}

fn check_cookies(document: &PolicyDocument, problems: &mut Problems) {
    for (index, group) in document.cookies.iter().enumerate() {
        let necessary = group.category == CookieCategory::Necessary;
        if group.optional == necessary {
            let message = if necessary {
                "necessary cookies cannot be optional"
            } else {
                "only necessary cookies may be set without consent, so this group must be optional"
            };
            let at = element("cookies", index, &file_name_of(group.category));
            problems.push((at.key("optional"), message.to_owned()));
        }
    }
}

fn check_retention(document: &PolicyDocument, problems: &mut Problems) {
    for (index, rule) in document.retention.iter().enumerate() {
        if !document
            .categories
            .iter()
            .any(|category| category.key == rule.category)
        {
            let at = element("retention", index, rule.category.as_str());
            problems.push((
                at.key("category"),
                format!("unknown data category `{}`", rule.category),
            ));
        }
    }
}

fn check_jurisdictions(document: &PolicyDocument, problems: &mut Problems) {
    if !document
        .jurisdictions
        .iter()
        .any(|rules| rules.id == Jurisdiction::Other)
    {
        let message = "an `other` jurisdiction is required: it applies to everyone not covered \
                       by a listed one";
        problems.push((
            FieldPath::default().key("jurisdictions"),
            message.to_owned(),
        ));
    }
    for (index, rules) in document.jurisdictions.iter().enumerate() {
        let at = element("jurisdictions", index, rules.id.as_str());
        let mut seen = HashSet::new();
        for (right_index, right) in rules.rights.iter().enumerate() {
            if !seen.insert(right) {
                let message = format!("right `{}` is listed twice", file_name_of(right));
                problems.push((at.key("rights").item(right_index, None), message));
            }
        }
        if rules.rights.contains(&Right::Appeal) != rules.appeal.is_some() {
            let message = "the `appeal` right and an `appeal` rule must be declared together";
            problems.push((at.key("appeal"), message.to_owned()));
        }
        if rules.rights.contains(&Right::ComplainToAuthority) && rules.regulator.is_none() {
            let message = "the right to complain to an authority needs a `regulator` to name";
            problems.push((at.key("regulator"), message.to_owned()));
        }
        if let Some(age) = rules.parental_consent_under
            && age <= rules.minimum_age
        {
            let message = format!("must be above the minimum age ({})", rules.minimum_age);
            problems.push((at.key("parental_consent_under"), message));
        }
    }
}

fn check_automated_processes(document: &PolicyDocument, problems: &mut Problems) {
    for (index, process) in document.automated_processes.iter().enumerate() {
        let at = element("automated_processes", index, &process.id).key("categories");
        check_category_refs(document, at, &process.categories, problems);
    }
}

fn check_providers(document: &PolicyDocument, problems: &mut Problems) {
    for (index, provider) in document.providers.iter().enumerate() {
        let at = element("providers", index, &provider.id);
        if !provider.in_eea && provider.transfer_safeguard.is_none() {
            let message = "a provider outside the EEA needs a transfer safeguard \
                           (adequacy, sccs or bcrs)";
            problems.push((at.key("transfer_safeguard"), message.to_owned()));
        }
        if provider.role != ProviderRole::SubProcessor {
            continue;
        }
        if provider.approval.is_none() {
            let message = "a sub-processor needs a recorded written approval \
                           (`approval = { on = 2025-01-15, by = \"…\" }`)";
            problems.push((at.key("approval"), message.to_owned()));
        }
        let engaged_by_processor = provider.engaged_by.as_ref().is_some_and(|id| {
            document
                .providers
                .iter()
                .any(|other| &other.id == id && other.role == ProviderRole::Processor)
        });
        if !engaged_by_processor {
            let message = "a sub-processor must name the processor that engaged it";
            problems.push((at.key("engaged_by"), message.to_owned()));
        }
    }
}
