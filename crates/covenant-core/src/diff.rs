//! The semantic difference between two policy versions: every change with its path, a plain
//! description and its class. Material when it touches the data collected, the purposes, the
//! sharing or the rights; editorial when only wording or contact details change. Deciding what
//! a material change triggers (notices, fresh consent) belongs to the caller.

use serde::Serialize;
use toml::Value;

use crate::policy::{CategoryKey, FieldPath, ID_FIELDS, Policy, PurposeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeClass {
    Editorial,
    Material,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Where the change is, as in `purposes[account].categories`.
    pub path: String,
    pub description: String,
    pub class: ChangeClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    changes: Vec<Change>,
    added_purposes: Vec<PurposeId>,
    added_categories: Vec<CategoryKey>,
}

impl PolicyDiff {
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    pub fn is_material(&self) -> bool {
        self.changes
            .iter()
            .any(|change| change.class == ChangeClass::Material)
    }
    /// Purposes the new version declares and the old one did not: consent must be asked anew.
    pub fn added_purposes(&self) -> &[PurposeId] {
        &self.added_purposes
    }
    /// Data categories the new version declares and the old one did not.
    pub fn added_categories(&self) -> &[CategoryKey] {
        &self.added_categories
    }
}

/// Sections that hold only labels and contact details.
const EDITORIAL_SECTIONS: [&str; 3] = ["version", "controller", "business_transfer"];
/// Fields that hold wording wherever they appear. Any other field is material, so a field
/// added to the model later is treated as material until someone decides otherwise.
const EDITORIAL_FIELDS: [&str; 8] = [
    "name",
    "description",
    "explanation",
    "instructions",
    "service",
    "law",
    "regulator",
    "approval",
];

pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    let mut changes = Vec::new();
    compare(
        FieldPath::default(),
        &as_value(old),
        &as_value(new),
        &mut changes,
    );
    PolicyDiff {
        changes,
        added_purposes: new
            .purposes()
            .iter()
            .filter(|purpose| old.purpose(&purpose.id).is_none())
            .map(|purpose| purpose.id.clone())
            .collect(),
        added_categories: new
            .categories()
            .iter()
            .filter(|category| old.category(&category.key).is_none())
            .map(|category| category.key.clone())
            .collect(),
    }
}

fn as_value(policy: &Policy) -> Value {
    Value::try_from(policy).expect("every policy serializes to a TOML value")
}

fn class_of(path: &FieldPath) -> ChangeClass {
    let mut keys = path.keys();
    let editorial_section = keys.next().is_some_and(|s| EDITORIAL_SECTIONS.contains(&s));
    if editorial_section || keys.any(|key| EDITORIAL_FIELDS.contains(&key)) {
        ChangeClass::Editorial
    } else {
        ChangeClass::Material
    }
}

fn record(changes: &mut Vec<Change>, path: FieldPath, description: String) {
    let class = class_of(&path);
    changes.push(Change {
        path: path.to_string(),
        description,
        class,
    });
}

/// Tables compare key by key, arrays of identified tables element by id, other arrays as
/// sets (their order carries no meaning), and everything else by value.
fn compare(path: FieldPath, old: &Value, new: &Value, changes: &mut Vec<Change>) {
    match (old, new) {
        (Value::Table(old), Value::Table(new)) => {
            for (key, old_value) in old {
                match new.get(key) {
                    Some(new_value) => compare(path.key(key), old_value, new_value, changes),
                    None => record(changes, path.key(key), format!("removed (was {old_value})")),
                }
            }
            for (key, new_value) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
                record(changes, path.key(key), format!("added: {new_value}"));
            }
        }
        (Value::Array(old), Value::Array(new)) => match (ids_of(old), ids_of(new)) {
            (Some(old_ids), Some(new_ids)) => {
                for (index, id) in old_ids.iter().enumerate() {
                    let item = path.item(index, Some(id));
                    match new_ids.iter().position(|new_id| new_id == id) {
                        Some(at) => compare(item, &old[index], &new[at], changes),
                        None => record(changes, item, "removed".to_owned()),
                    }
                }
                for (index, id) in new_ids.iter().enumerate() {
                    if !old_ids.contains(id) {
                        record(changes, path.item(index, Some(id)), "added".to_owned());
                    }
                }
            }
            _ => {
                for value in old.iter().filter(|value| !new.contains(value)) {
                    record(changes, path.clone(), format!("{value} removed"));
                }
                for value in new.iter().filter(|value| !old.contains(value)) {
                    record(changes, path.clone(), format!("{value} added"));
                }
            }
        },
        _ if old != new => record(changes, path, format!("changed from {old} to {new}")),
        _ => {}
    }
}

/// The ids of an array's elements, if every element is a table carrying one.
fn ids_of(items: &[Value]) -> Option<Vec<String>> {
    items
        .iter()
        .map(|item| {
            let table = item.as_table()?;
            ID_FIELDS
                .iter()
                .find_map(|field| table.get(*field)?.as_str().map(str::to_owned))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::deadline::DeadlineRule;
    use crate::policy::{Category, Jurisdiction, LegalBasis, Right, SourceKind};

    const ALL_RIGHTS: [Right; 14] = [
        Right::Know,
        Right::Access,
        Right::Portability,
        Right::Rectification,
        Right::Deletion,
        Right::Restriction,
        Right::Objection,
        Right::ObjectDirectMarketing,
        Right::WithdrawConsent,
        Right::OptOutSale,
        Right::OptOutTargetedAdvertising,
        Right::LimitSensitive,
        Right::Appeal,
        Right::ComplainToAuthority,
    ];

    /// Applies one edit to the data collected, the purposes, the sharing or the rights.
    /// Returns false when the chosen edit would leave the policy as it was.
    fn material_edit(policy: &mut Policy, edit: u8, a: Index, b: Index) -> bool {
        let document = &mut policy.0;
        let category_keys: Vec<CategoryKey> =
            document.categories.iter().map(|c| c.key.clone()).collect();
        let purpose = a.get_mut(&mut document.purposes);
        match edit % 13 {
            0 => {
                let key = format!("user.added.c{}", b.index(1000));
                document.categories.push(Category {
                    key: CategoryKey::parse(&key).expect("a well-formed key"),
                    name: "Added".to_owned(),
                    description: "Added by the test".to_owned(),
                    sensitive: false,
                    sources: vec![SourceKind::Directly],
                });
            }
            1 => {
                document.categories.remove(a.index(category_keys.len()));
            }
            2 => a.get_mut(&mut document.categories).sensitive ^= true,
            3 => {
                document.purposes.remove(a.index(document.purposes.len()));
            }
            4 if purpose.categories.is_empty() => return false,
            4 => {
                purpose.categories.remove(b.index(purpose.categories.len()));
            }
            5 => {
                let key = b.get(&category_keys);
                if purpose.categories.contains(key) {
                    return false;
                }
                purpose.categories.push(key.clone());
            }
            6 => {
                let basis = match purpose.legal_basis_in(Jurisdiction::EuEea) {
                    Some(LegalBasis::Consent) => LegalBasis::LegitimateInterests,
                    _ => LegalBasis::Consent,
                };
                purpose.legal_basis.insert(Jurisdiction::EuEea, basis);
            }
            7 => {
                document
                    .recipients
                    .remove(a.index(document.recipients.len()));
            }
            8 => {
                let recipient = a.get_mut(&mut document.recipients);
                if recipient.categories.is_empty() {
                    return false;
                }
                recipient
                    .categories
                    .remove(b.index(recipient.categories.len()));
            }
            9 => a.get_mut(&mut document.recipients).targeted_advertising ^= true,
            10 => {
                let rules = a.get_mut(&mut document.jurisdictions);
                if rules.rights.is_empty() {
                    return false;
                }
                rules.rights.remove(b.index(rules.rights.len()));
            }
            11 => {
                let rules = a.get_mut(&mut document.jurisdictions);
                match ALL_RIGHTS
                    .iter()
                    .find(|right| !rules.rights.contains(right))
                {
                    Some(right) => rules.rights.push(*right),
                    None => return false,
                }
            }
            _ => {
                let rules = a.get_mut(&mut document.jurisdictions);
                rules.deadline = match rules.deadline {
                    DeadlineRule::BusinessDays(n) => DeadlineRule::BusinessDays(n + 1),
                    DeadlineRule::CalendarMonths(n) => DeadlineRule::CalendarMonths(n + 1),
                    DeadlineRule::CalendarDays(n) => DeadlineRule::CalendarDays(n + 1),
                };
            }
        }
        true
    }

    /// Replaces one piece of wording (a name, a description, an explanation, a contact).
    fn wording_edit(policy: &mut Policy, edit: u8, a: Index, text: String) {
        let document = &mut policy.0;
        match edit % 8 {
            0 => a.get_mut(&mut document.categories).name = text,
            1 => a.get_mut(&mut document.categories).description = text,
            2 => a.get_mut(&mut document.purposes).description = text,
            3 => a.get_mut(&mut document.recipients).name = text,
            4 => a.get_mut(&mut document.jurisdictions).law = text,
            5 => a.get_mut(&mut document.automated_processes).explanation = text,
            6 => a.get_mut(&mut document.providers).instructions = text,
            _ => document.controller.address = text,
        }
    }

    proptest! {
        /// Proves: A5
        #[test]
        fn a_policy_compared_with_itself_has_no_changes(
            edit in any::<u8>(), a in any::<Index>(), b in any::<Index>(),
        ) {
            let mut policy = Policy::default_policy();
            material_edit(&mut policy, edit, a, b);
            prop_assert!(diff(&policy, &policy).is_empty());
        }

        /// Proves: A5
        #[test]
        fn any_change_to_categories_purposes_recipients_or_rights_is_material(
            edit in any::<u8>(), a in any::<Index>(), b in any::<Index>(),
        ) {
            let old = Policy::default_policy();
            let mut new = old.clone();
            prop_assume!(material_edit(&mut new, edit, a, b));
            let changes = diff(&old, &new);
            prop_assert!(changes.is_material(), "not material: {:?}", changes.changes());
        }

        /// Proves: A5
        #[test]
        fn a_pure_wording_change_is_editorial_only(
            edit in any::<u8>(), a in any::<Index>(), text in "[A-Za-z ,.]{0,40}",
        ) {
            let old = Policy::default_policy();
            let mut new = old.clone();
            wording_edit(&mut new, edit, a, text);
            let changes = diff(&old, &new);
            prop_assert!(!changes.is_material(), "material: {:?}", changes.changes());
            prop_assert_eq!(changes.is_empty(), old == new);
        }
    }

    /// Proves: A5
    #[test]
    fn a_new_purpose_and_category_are_reported_as_added() {
        let old = Policy::default_policy();
        let mut new = old.clone();
        let mut purpose = new.0.purposes[0].clone();
        purpose.id = PurposeId::parse("research").expect("a well-formed id");
        let mut category = new.0.categories[0].clone();
        category.key = CategoryKey::parse("user.behavior.reading").expect("a well-formed key");
        new.0.purposes.push(purpose);
        new.0.categories.push(category);

        let changes = diff(&old, &new);

        assert!(changes.is_material());
        assert_eq!(
            changes.added_purposes(),
            [PurposeId::parse("research").unwrap()]
        );
        let added = CategoryKey::parse("user.behavior.reading").unwrap();
        assert_eq!(changes.added_categories(), [added]);
        assert!(
            changes
                .changes()
                .iter()
                .any(|c| c.path == "purposes[research]")
        );
    }
}
