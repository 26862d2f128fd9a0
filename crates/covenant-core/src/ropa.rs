//! The record of processing activities (GDPR Art. 30), generated from the policy: one activity
//! per purpose with its data, subjects, recipients, transfers out of the EEA, retention and
//! security measures. Only derives; the policy file stays the single source.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::policy::{
    CategoryKey, Controller, DataSubject, Jurisdiction, LegalBasis, Policy, Purpose, PurposeId,
    RetentionRule, ServiceProvider, TransferSafeguard,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordOfProcessing {
    pub policy_version: String,
    pub controller: Controller,
    pub activities: Vec<ProcessingActivity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessingActivity {
    pub purpose: PurposeId,
    pub name: String,
    pub description: String,
    pub legal_bases: BTreeMap<Jurisdiction, LegalBasis>,
    pub data_categories: Vec<CategoryKey>,
    pub data_subjects: Vec<DataSubject>,
    /// Names of the recipients that receive any of the activity's categories.
    pub recipients: Vec<String>,
    pub transfers: Vec<Transfer>,
    pub retention: Vec<RetentionRule>,
    pub security_measures: Vec<String>,
}

/// A service provider outside the EEA that handles the activity's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub provider: String,
    pub country: String,
    pub safeguard: TransferSafeguard,
}

pub fn record_of_processing(policy: &Policy) -> RecordOfProcessing {
    RecordOfProcessing {
        policy_version: policy.version().to_owned(),
        controller: policy.controller().clone(),
        activities: policy
            .purposes()
            .iter()
            .map(|purpose| activity(policy, purpose))
            .collect(),
    }
}

fn activity(policy: &Policy, purpose: &Purpose) -> ProcessingActivity {
    let recipients: Vec<_> = policy
        .recipients()
        .iter()
        .filter(|recipient| {
            recipient
                .categories
                .iter()
                .any(|key| purpose.categories.contains(key))
        })
        .collect();
    let mut providers: Vec<&ServiceProvider> = Vec::new();
    for id in recipients.iter().flat_map(|recipient| &recipient.providers) {
        let engaged = policy
            .providers()
            .iter()
            .filter(|p| p.engaged_by.as_ref() == Some(id));
        for provider in policy.provider(id).into_iter().chain(engaged) {
            if !providers.iter().any(|known| known.id == provider.id) {
                providers.push(provider);
            }
        }
    }
    ProcessingActivity {
        purpose: purpose.id.clone(),
        name: purpose.name.clone(),
        description: purpose.description.clone(),
        legal_bases: purpose.legal_basis.clone(),
        data_categories: purpose.categories.clone(),
        data_subjects: purpose.subjects.clone(),
        recipients: recipients
            .iter()
            .map(|recipient| recipient.name.clone())
            .collect(),
        transfers: providers
            .iter()
            .filter(|provider| !provider.in_eea)
            .filter_map(|provider| {
                Some(Transfer {
                    provider: provider.name.clone(),
                    country: provider.country.clone(),
                    safeguard: provider.transfer_safeguard?,
                })
            })
            .collect(),
        retention: purpose
            .categories
            .iter()
            .filter_map(|key| policy.retention_for(key).cloned())
            .collect(),
        security_measures: policy
            .security_measures()
            .iter()
            .map(|m| m.name.clone())
            .collect(),
    }
}

impl RecordOfProcessing {
    /// A header row, then one row per activity; lists are joined with "; ".
    pub fn to_csv_rows(&self) -> Vec<Vec<String>> {
        let header = [
            "purpose",
            "name",
            "legal bases",
            "data categories",
            "data subjects",
            "recipients",
            "transfers outside the EEA",
            "retention",
            "security measures",
        ];
        let join = |items: Vec<String>| items.join("; ");
        let rows = self.activities.iter().map(|activity| {
            vec![
                activity.purpose.to_string(),
                activity.name.clone(),
                join(
                    activity
                        .legal_bases
                        .iter()
                        .map(|(j, b)| format!("{}: {b}", j.as_str()))
                        .collect(),
                ),
                join(
                    activity
                        .data_categories
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
                join(
                    activity
                        .data_subjects
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
                join(activity.recipients.clone()),
                join(
                    activity
                        .transfers
                        .iter()
                        .map(|t| format!("{} ({}, {})", t.provider, t.country, t.safeguard))
                        .collect(),
                ),
                join(
                    activity
                        .retention
                        .iter()
                        .map(|r| format!("{}: {r}", r.category))
                        .collect(),
                ),
                join(activity.security_measures.clone()),
            ]
        });
        std::iter::once(header.map(str::to_owned).to_vec())
            .chain(rows)
            .collect()
    }
}
