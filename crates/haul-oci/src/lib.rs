//! haul's leaves: what the OCI and Docker specs call things, with no I/O.
//!
//! - [`digest`]: `sha256:…` digests, parsed and computed.
//! - [`reference`]: image references (`registry/repository:tag@digest`), as docker reads them.
//! - [`manifest`]: manifests and indexes, their media types and size limits.
//! - [`platform`]: `os/arch/variant`, and the host's own.
//! - [`error`]: an error and its causes on one line.
//!
//! It imports no other haul crate; every other crate may import it.

pub mod digest;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod manifest;
pub mod platform;
pub mod reference;
