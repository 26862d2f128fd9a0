//! Fulfilment of the rights of access, portability and erasure (promises R7, R8, A7): the
//! export archive and its single-use download link, erasure by the policy's categories with
//! its ledger, and the re-application of that ledger to a restored backup.
//!
//! Both walk `crate::inventory` and nothing else, so a column added to the schema is exported
//! and erased as soon as it is declared (and the build fails until it is). The entry points the
//! privacy-request engine calls are [`export_subject`] and [`erase_subject`]. This module never
//! logs a personal value: only ids, counts and table names.

mod backup;
mod erase;
mod export;
mod rectify;
mod requests;
mod transfer;

pub use backup::*;
pub use erase::*;
pub use export::*;
pub use rectify::value_class;
pub use requests::RequestEngine;
pub use transfer::*;
