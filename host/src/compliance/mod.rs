//! The processor's promises, each provable: data-subject rights
//! ([`dsr`]), retention ([`retention`]), tenant offboarding
//! ([`offboarding`]) and backups that never resurrect erased data
//! ([`backup`]). The audit trail that records all of them is
//! [`crate::audit`].

pub mod backup;
pub mod dsr;
pub mod offboarding;
pub mod retention;
