//! Fleets: one runbook over many databases (`exec --targets FILE`), in
//! waves under stop rules, with one merged report. Work that outgrows one
//! machine is split with `--shard K/N` over a CI matrix or a Kubernetes
//! Indexed Job, and the shards' reports are joined by `report merge`.
//! See docs/fleet.md.

pub mod cmd;
pub mod report;
pub mod rollout;
pub mod run;
pub mod targets;
