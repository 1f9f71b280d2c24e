//! The processor's promises: retention (and, with the compliance issue,
//! data-subject rights, offboarding and backups).

pub mod retention;
