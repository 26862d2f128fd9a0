//! The one interface between the request workflow and what a right does to the data.
//!
//! The workflow calls [`Fulfilment::carry_out`] once a request is verified and has moved to
//! "in progress", inside the transaction that moved it. What access, deletion and the other
//! rights do to the data belongs to the implementation; the workflow owns everything else
//! (verification, clocks, decisions, appeals). It must never be called for an unverified
//! request: it only accepts a [`VerifiedRequest`], which only the workflow can make.

use crate::store::{self, Tx};
use covenant_core::policy::{Jurisdiction, Right};
use covenant_core::requests::VerificationLevel;
use std::future::Future;
use std::pin::Pin;

/// A request whose identity check reached the level its right needs. Only the workflow in
/// `crate::requests` constructs one.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    pub(super) id: i64,
    pub(super) submission_id: i64,
    pub(super) right: Right,
    pub(super) jurisdiction: Jurisdiction,
    pub(super) subject_user_id: Option<i64>,
    pub(super) level: VerificationLevel,
}

impl VerifiedRequest {
    pub fn id(&self) -> i64 {
        self.id
    }
    pub fn submission_id(&self) -> i64 {
        self.submission_id
    }
    pub fn right(&self) -> Right {
        self.right
    }
    pub fn jurisdiction(&self) -> Jurisdiction {
        self.jurisdiction
    }
    /// The subject's account, when the subject's address belongs to one.
    pub fn subject_user_id(&self) -> Option<i64> {
        self.subject_user_id
    }
    pub fn level(&self) -> VerificationLevel {
        self.level
    }
}

/// What the fulfilment did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FulfilmentOutcome {
    /// Taken over; staff (or a later job) will record the decision.
    HandedOver,
    /// Carried out in full; the workflow records the request as fulfilled.
    Done,
    /// Carried out in full, with something the requester needs (a download link) to tell
    /// them in the decision's message.
    Delivered { note: String },
    /// Carried out in part; the reason is sent to the requester.
    PartlyDone { reason: String },
}

pub type FulfilmentFuture<'a> =
    Pin<Box<dyn Future<Output = anyhow::Result<FulfilmentOutcome>> + Send + 'a>>;

/// What a right does to the data. Implementations run inside the workflow's transaction, so a
/// failure rolls the hand-over back and the request stays verified.
pub trait Fulfilment: Send + Sync {
    fn carry_out<'a>(
        &'a self,
        tx: &'a mut Tx,
        request: &'a VerifiedRequest,
    ) -> FulfilmentFuture<'a>;

    /// Runs once the hand-over is committed, for work that needs transactions of its own
    /// (an erasure, an export archive). `HandedOver` leaves the decision to privacy staff; any
    /// other outcome is recorded as the request's decision.
    fn complete<'a>(&'a self, _request: &'a VerifiedRequest) -> FulfilmentFuture<'a> {
        Box::pin(async { Ok(FulfilmentOutcome::HandedOver) })
    }
}

/// The default until the fulfilment engine exists: records that the request was handed over
/// and leaves the decision to privacy staff.
pub struct RecordHandOff;

impl Fulfilment for RecordHandOff {
    fn carry_out<'a>(
        &'a self,
        tx: &'a mut Tx,
        request: &'a VerifiedRequest,
    ) -> FulfilmentFuture<'a> {
        Box::pin(async move {
            store::mark_handed_to_fulfilment(tx, request.id, crate::now()).await?;
            Ok(FulfilmentOutcome::HandedOver)
        })
    }
}
