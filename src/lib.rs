//! haul: pull container images from any OCI / Docker registry into tars that `docker load`
//! accepts, through a verified, content-addressed, resumable cache.
//!
//! Data flows one way: [`reference`](mod@reference) → [`resolve`] (registry, manifest, platform) → [`plan`]
//! → [`fetch`] (registry into [`cache`]) → [`export`] (cache into a tar). [`pipeline`] runs
//! that flow for every image command; [`registry`] is the only module that speaks HTTP, and
//! [`cache::gc`] decides what the cache keeps. Only [`cli`] and [`commands`] know about the
//! terminal and exit codes. [`verify`] reads an exported tar back and checks that it is whole;
//! [`inspect`] reports what images are. [`delta`] decides what a bundle may leave out,
//! [`patch`] makes and applies layer patches, and [`rebuild`] turns a patch delta back into a
//! whole bundle at the site. Blocking work runs through [`blocking`].
//!
//! Three boundaries are crates, so that the compiler keeps them (re-exported here under their
//! module names):
//! - `haul-oci`: [`digest`], [`reference`](mod@reference), [`platform`], [`manifest`] and
//!   [`error`]: leaves without I/O, importing no haul crate;
//! - `haul-registry`: [`registry`], the HTTP client; it imports `haul-oci` only;
//! - `haul-sigstore`: [`signature::keyless`], the offline sigstore verifier; it imports no
//!   haul crate.
//!
//! Modules are listed alphabetically.

pub mod blocking;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decompress;
pub mod delta;
pub mod engine;
pub mod export;
pub mod fetch;
pub mod fsx;
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod list;
pub mod load;
pub mod parts;
pub mod patch;
pub mod pipeline;
pub mod plan;
pub mod portable;
pub mod progress;
pub mod push;
pub mod rebuild;
pub mod referrers;
pub mod resolve;
pub mod signature;
pub mod units;
pub mod verify;

// The crates haul is built from, under the names the modules had before they were crates.
pub use haul_oci::{digest, error, manifest, platform, reference};
pub use haul_registry as registry;
