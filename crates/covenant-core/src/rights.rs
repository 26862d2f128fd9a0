//! Rights by jurisdiction: which rights a person has where they live, how long the operator
//! has to answer, how much longer with an extension, and whether an appeal is open.
//! Read from the policy; it decides nothing about a particular request.

use serde::Serialize;

use crate::deadline::DeadlineRule;
use crate::policy::{AppealRule, Jurisdiction, Policy, Regulator, Right};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RightsProfile {
    /// The jurisdiction whose rules apply: `Other` when the asked one is not in the policy.
    pub jurisdiction: Jurisdiction,
    pub rights: Vec<Right>,
    pub deadline: DeadlineRule,
    pub extension: Option<DeadlineRule>,
    pub appeal: Option<AppealRule>,
    pub regulator: Option<Regulator>,
}

impl RightsProfile {
    pub fn has(&self, right: Right) -> bool {
        self.rights.contains(&right)
    }
}

pub fn rights_for(policy: &Policy, jurisdiction: Jurisdiction) -> RightsProfile {
    let rules = policy.jurisdiction(jurisdiction);
    RightsProfile {
        jurisdiction: rules.id,
        rights: rules.rights.clone(),
        deadline: rules.deadline,
        extension: rules.extension,
        appeal: rules.appeal,
        regulator: rules.regulator.clone(),
    }
}
