//! runbook: safe, rehearsable PostgreSQL releases from versioned YAML runbooks.
//!
//! The pipeline runs in one direction:
//! `load` (YAML + spans) → `schema` + `validate` (typed [`model::Runbook`])
//! → `plan` (every template rendered) → execute → report.
//! See docs/ARCHITECTURE.md.

pub mod approval;
pub mod backups;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod diag;
pub mod duration;
pub mod ephemeral;
pub mod events;
pub mod exec;
pub mod exit;
pub mod fields;
pub mod fleet;
pub mod fsutil;
pub mod hash;
pub mod history;
pub mod init;
mod injection;
pub mod lint;
pub mod load;
pub mod migrations;
pub mod model;
pub mod params;
pub mod pg;
pub mod plan;
pub mod redact;
pub mod report;
pub mod run;
pub mod schema;
pub mod secret;
pub mod signals;
pub mod snapshot;
pub mod source;
pub mod template;
pub mod term;
pub mod validate;
pub mod who;
