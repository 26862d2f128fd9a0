//! The right-to-know answer for a jurisdiction: the categories collected and their sources,
//! the purposes, what is disclosed and to whom (named third parties where the law asks), and
//! what is sold or shared. Built from the policy alone; the person's own data is not here.

use serde::Serialize;

use crate::policy::{
    CategoryKey, Jurisdiction, LegalBasis, Policy, PurposeId, Recipient, RecipientKind,
    SaleDefinition, SourceKind,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RightToKnow {
    pub jurisdiction: Jurisdiction,
    pub categories_collected: Vec<CollectedCategory>,
    pub sources: Vec<SourceSummary>,
    pub purposes: Vec<PurposeSummary>,
    pub disclosed: Vec<Disclosure>,
    pub sold: Vec<Disclosure>,
    pub shared_for_targeted_advertising: Vec<Disclosure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectedCategory {
    pub key: CategoryKey,
    pub name: String,
    pub sensitive: bool,
    pub sources: Vec<SourceKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSummary {
    pub kind: SourceKind,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeSummary {
    pub id: PurposeId,
    pub name: String,
    pub categories: Vec<CategoryKey>,
    pub legal_basis: Option<LegalBasis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disclosure {
    pub recipient: String,
    pub kind: RecipientKind,
    pub name: String,
    pub categories: Vec<CategoryKey>,
    /// The specific third parties, given only where the jurisdiction asks for them (Oregon).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named_third_parties: Vec<String>,
}

pub fn right_to_know(policy: &Policy, jurisdiction: Jurisdiction) -> RightToKnow {
    let rules = policy.jurisdiction(jurisdiction);
    // Where a law defines no "sale", count every exchange for value: the wider reading.
    let sale_definition = rules
        .sale_definition
        .unwrap_or(SaleDefinition::MonetaryOrOtherValuable);
    let disclosure = |recipient: &Recipient| Disclosure {
        recipient: recipient.id.clone(),
        kind: recipient.kind,
        name: recipient.name.clone(),
        categories: recipient.categories.clone(),
        named_third_parties: if rules.names_third_parties {
            let providers = recipient
                .providers
                .iter()
                .filter_map(|id| policy.provider(id));
            providers.map(|provider| provider.name.clone()).collect()
        } else {
            Vec::new()
        },
    };
    let disclosures_where = |keep: &dyn Fn(&Recipient) -> bool| -> Vec<Disclosure> {
        policy
            .recipients()
            .iter()
            .filter(|r| keep(r))
            .map(disclosure)
            .collect()
    };
    RightToKnow {
        jurisdiction: rules.id,
        categories_collected: policy
            .categories()
            .iter()
            .map(|category| CollectedCategory {
                key: category.key.clone(),
                name: category.name.clone(),
                sensitive: category.sensitive,
                sources: category.sources.clone(),
            })
            .collect(),
        sources: policy
            .sources()
            .iter()
            .map(|source| SourceSummary {
                kind: source.kind,
                name: source.name.clone(),
                description: source.description.clone(),
            })
            .collect(),
        purposes: policy
            .purposes()
            .iter()
            .map(|purpose| PurposeSummary {
                id: purpose.id.clone(),
                name: purpose.name.clone(),
                categories: purpose.categories.clone(),
                legal_basis: purpose.legal_basis_in(rules.id),
            })
            .collect(),
        disclosed: disclosures_where(&|_| true),
        sold: disclosures_where(&|recipient| recipient.is_sale_under(sale_definition)),
        shared_for_targeted_advertising: disclosures_where(&|recipient| {
            recipient.targeted_advertising
        }),
    }
}
