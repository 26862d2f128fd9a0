//! Covenant's pure core: the policy model and every decision made from it (material change,
//! rights and deadlines by jurisdiction, the right-to-know answer, the record of processing,
//! consent, age rules, retention verdicts and the privacy-request life cycle).
//! It must never perform I/O: no clock, no file, no network, no database.

pub mod age;
pub mod consent;
pub mod deadline;
pub mod diff;
pub mod policy;
pub mod requests;
pub mod retention;
pub mod right_to_know;
pub mod rights;
pub mod ropa;
pub mod stored;
