//! The emails of the request workflow. Bodies name the right and the state, never the other
//! person's address or name: an agent's message says "the person you act for".

use crate::mail::Mail;
use crate::requests::{Relationship, Template};
use crate::store::Tx;
use covenant_core::policy::Regulator;
use covenant_core::requests::RequestState;

pub struct Message(Mail);

/// What a new request waits for, as the acknowledgement tells the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Nothing: the requester is the subject, and we answer.
    Answer,
    /// An agent's (or a parent's without consent on record) evidence and the subject's word.
    ConfirmationAndEvidence,
    /// A parent whose recorded consent is the evidence: only the subject's word.
    ConfirmationOnly,
}

impl Message {
    fn new(subject: String, body: String) -> Self {
        Self(Mail { subject, body })
    }

    /// Queues the message; with the submission it is about, its body is sealed under that
    /// submission's key (request correspondence). Staff alarms name no one and have none.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue(
        &self,
        store: &crate::store::Store,
        tx: &mut Tx,
        key: &str,
        recipient: &str,
        user_id: Option<i64>,
        submission_id: Option<i64>,
        now: i64,
    ) -> anyhow::Result<bool> {
        match submission_id {
            Some(submission) => {
                self.0
                    .enqueue_for_submission(store, tx, key, recipient, user_id, submission, now)
                    .await
            }
            None => {
                self.0
                    .enqueue(store, tx, key, recipient, user_id, now)
                    .await
            }
        }
    }

    pub fn verify_code(site: &str, code: &str, verify: &str, status: &str, minutes: i64) -> Self {
        let status = if status.is_empty() {
            String::new()
        } else {
            format!("\nYou can follow your request here at any time:\n\n{status}\n")
        };
        Self::new(
            format!("Your privacy request code for {site}"),
            format!(
                "Hello,\n\nA privacy request was made on {site} for this address.\n\
                 To confirm it is yours, enter this code within {minutes} minutes:\n\n    \
                 {code}\n\non this page:\n\n{verify}\n{status}\n\
                 If you did not make it, ignore this message: nothing happens without the code, \
                 and the request closes by itself.\n"
            ),
        )
    }

    pub fn confirm_agent(
        site: &str,
        relationship: Relationship,
        code: &str,
        verify: &str,
        minutes: i64,
    ) -> Self {
        let who = match relationship {
            Relationship::Parent => "a parent or guardian",
            _ => "an authorized agent",
        };
        Self::new(
            format!("Did you ask someone to make a privacy request on {site}?"),
            format!(
                "Hello,\n\nSomeone saying they are {who} acting for you made a privacy \
                 request on {site} about this address.\n\
                 If you authorized it, confirm with this code within {minutes} minutes:\n\n    \
                 {code}\n\non this page:\n\n{verify}\n\n\
                 If you did not, ignore this message: the request does not go on without your \
                 confirmation.\n"
            ),
        )
    }

    pub fn received(site: &str, status: &str, next: NextStep) -> Self {
        let next = match next {
            NextStep::Answer => "We will answer by the due date shown on the status page.",
            NextStep::ConfirmationAndEvidence => {
                "We have asked the person you act for to confirm. Please also upload your \
                 evidence of authority (a power of attorney or a signed letter, as a PDF, PNG or \
                 JPEG) on the status page; the request goes on when we have both."
            }
            NextStep::ConfirmationOnly => {
                "We have asked the person you act for to confirm. The consent you gave from this \
                 address as their parent or guardian is on record and serves as your evidence, \
                 so there is nothing to upload; the request goes on once they confirm."
            }
        };
        Self::new(
            format!("We received your privacy request on {site}"),
            format!(
                "Hello,\n\nWe received your privacy request. {next}\n\n\
                 Status page:\n\n{status}\n"
            ),
        )
    }

    pub fn reminder(site: &str, code: &str, verify: &str, minutes: i64) -> Self {
        Self::new(
            format!("Reminder: confirm your privacy request on {site}"),
            format!(
                "Hello,\n\nA privacy request about this address is waiting for confirmation. \
                 Here is a new code, valid for {minutes} minutes:\n\n    {code}\n\n\
                 Enter it here:\n\n{verify}\n\n\
                 Requests that nobody confirms close by themselves.\n"
            ),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn decision(
        site: &str,
        right: &str,
        state: RequestState,
        explanation: &str,
        staff_text: Option<&str>,
        appeal_days: Option<u32>,
        regulator: Option<&Regulator>,
        status: &str,
    ) -> Self {
        let headline = match state {
            RequestState::Fulfilled => "We did what you asked",
            RequestState::PartlyFulfilled => "We did part of what you asked",
            RequestState::Declined => "We declined your request",
            RequestState::Unverifiable => "Your request was closed unverified",
            _ => "Your request was decided",
        };
        let mut body = format!("Hello,\n\n{headline}: \"{right}\".\n\n{explanation}\n");
        if let Some(text) = staff_text.filter(|t| !t.trim().is_empty()) {
            body.push_str(&format!("\nIn our words: {}\n", text.trim()));
        }
        match appeal_days {
            Some(days) => body.push_str(&format!(
                "\nYou can appeal this decision within {days} days from the status page; a \
                 different member of our staff will decide the appeal:\n\n{status}\n"
            )),
            None => body.push_str(&format!("\nStatus page:\n\n{status}\n")),
        }
        if let Some(regulator) = regulator {
            body.push_str(&format!(
                "\nYou may also complain to {}: {}\n",
                regulator.name, regulator.url
            ));
        }
        Self::new(format!("Your privacy request on {site}: {headline}"), body)
    }

    pub fn appeal_decided(
        site: &str,
        right: &str,
        upheld: bool,
        reason: &str,
        regulator: Option<&Regulator>,
        status: &str,
    ) -> Self {
        let outcome = if upheld {
            "We reviewed your appeal and kept our decision"
        } else {
            "We reviewed your appeal and reversed our decision; we will now act on your request"
        };
        let mut body = format!(
            "Hello,\n\n{outcome} (\"{right}\").\n\nWhy: {reason}\n\nStatus page:\n\n{status}\n"
        );
        if let Some(regulator) = regulator {
            body.push_str(&format!(
                "\nIf you disagree, you can contact {}: {}\n",
                regulator.name, regulator.url
            ));
        }
        Self::new(format!("Your appeal on {site} was decided"), body)
    }

    pub fn extended(site: &str, right: &str, day: &str, reason: &str, status: &str) -> Self {
        Self::new(
            format!("Your privacy request on {site} needs more time"),
            format!(
                "Hello,\n\nWe need more time to answer your request \"{right}\", as the law \
                 allows. We will answer by {day}.\n\nWhy: {reason}\n\nStatus page:\n\n{status}\n"
            ),
        )
    }

    pub fn template(site: &str, template: Template, right: &str, status: &str) -> Self {
        let text = match template {
            Template::NeedMoreInformation => {
                "To answer your request we need a little more information. Please reply to \
                 this message with the details that help us find your data."
            }
            Template::WorkingOnIt => {
                "We are working on your request and will answer by the due date on the status \
                 page."
            }
            Template::VerifyReminder => {
                "Your request is waiting for you to confirm who you are; please use the code \
                 we sent you, or ask for a new one on the verification page."
            }
        };
        Self::new(
            format!("About your privacy request on {site}"),
            format!(
                "Hello,\n\nAbout your request \"{right}\":\n\n{text}\n\nStatus page:\n\n{status}\n"
            ),
        )
    }

    pub fn alarm(site: &str, overdue: bool, ids: &[i64], queue: &str) -> Self {
        let what = if overdue { "overdue" } else { "nearly due" };
        let list = ids
            .iter()
            .map(|id| format!("#{id}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            format!("{site}: {} privacy request(s) {what}", ids.len()),
            format!("Privacy requests {what}: {list}\n\nQueue:\n\n{queue}\n"),
        )
    }
}
