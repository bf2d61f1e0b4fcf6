//! haul's integration tests: one binary (as uv's are), so the harness is compiled and linked
//! once. Each module tests one command or concern against a real registry process and real
//! Docker engines (see `harness`); `fault_proxy` sits between haul and a registry to cut,
//! stall and corrupt.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod fault_proxy;
mod harness;

mod bundle;
mod ca_store;
mod cache;
mod clients;
mod crash_loop;
mod credentials;
mod delta;
mod demo;
mod disk_full;
mod errors;
mod export;
mod faults;
mod formats;
mod huge_layer;
mod inspect;
mod keyless;
mod lists;
mod load;
mod networks;
mod parts;
mod patch;
mod progress;
mod push;
mod repository;
mod signatures;
mod sites;
mod ssh;
mod token_auth;
mod verify;
