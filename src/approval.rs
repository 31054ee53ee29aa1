//! Approvals given ahead of time: `runbook approve RUNBOOK --phase P`
//! writes a file that says who approved which phase of which runbook text
//! (its sha256) with which params; `exec --approval FILE` counts it at
//! that phase's gate. A file that does not match the runbook and the
//! params of the run is refused before anything runs: an approval is for
//! the change that was reviewed, not for whatever the file says today.
//!
//! Secret params are bound by name only: their values are never written to
//! a file, and hashing them would let a weak secret be guessed from it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// What an approval file says it is.
pub const KIND: &str = "runbook-approval";
pub const VERSION: u32 = 1;

/// One person's approval of one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFile {
    pub kind: String,
    pub version: u32,
    /// `metadata.name`.
    pub runbook: String,
    /// The runbook's text, as `plan` and the report identify it.
    pub sha256: String,
    /// The params the approval is for: see [`params_sha256`].
    pub params_sha256: String,
    pub phase: String,
    pub approver: String,
    pub host: String,
    pub at: String,
}

/// An approval file as a run holds it: what it says, and where it was read.
#[derive(Debug, Clone)]
pub struct Given {
    pub file: ApprovalFile,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("cannot read the approval file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an approval file: {why}", path.display())]
    Malformed { path: PathBuf, why: String },
    #[error("{} approves {what}", path.display())]
    Mismatch { path: PathBuf, what: String },
}

impl ApprovalError {
    pub fn hint(&self) -> &'static str {
        match self {
            ApprovalError::Unreadable { .. } | ApprovalError::Malformed { .. } => {
                "approval files are written by `runbook approve RUNBOOK --phase PHASE`"
            }
            ApprovalError::Mismatch { .. } => {
                "an approval is for the runbook text and params that were reviewed: approve this version with `runbook approve`, with the same --set and --params-file as the run"
            }
        }
    }
}

/// sha256 of the run's params: each name with its value as the plan shows
/// it (a secret's value is redacted, so only its name is bound), in name
/// order.
pub fn params_sha256(plan: &Plan) -> String {
    let mut pairs: Vec<(&String, &serde_json::Value)> =
        plan.params.iter().map(|(k, p)| (k, &p.value)).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = serde_json::to_string(&map).unwrap_or_default();
    crate::hash::sha256_hex(text.as_bytes())
}

impl ApprovalFile {
    /// `approver`'s approval of `phase` of this plan, now, on this machine.
    pub fn new(plan: &Plan, phase: &str, approver: String, at: String) -> ApprovalFile {
        ApprovalFile {
            kind: KIND.into(),
            version: VERSION,
            runbook: plan.runbook.name.clone(),
            sha256: plan.runbook.sha256.clone(),
            params_sha256: params_sha256(plan),
            phase: phase.into(),
            approver,
            host: crate::who::hostname(),
            at,
        }
    }
}

/// Read an approval file and check it against the plan about to run.
pub fn read(path: &Path, plan: &Plan) -> Result<Given, ApprovalError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApprovalError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let malformed = |why: String| ApprovalError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let file: ApprovalFile = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if file.kind != KIND || file.version != VERSION {
        return Err(malformed(format!(
            "kind `{}` version {}, expected `{KIND}` version {VERSION}",
            file.kind, file.version
        )));
    }
    let mismatch = |what: String| ApprovalError::Mismatch {
        path: path.to_path_buf(),
        what,
    };
    let short = |h: &str| h.chars().take(12).collect::<String>();
    if file.runbook != plan.runbook.name {
        return Err(mismatch(format!(
            "runbook `{}`, not `{}`",
            file.runbook, plan.runbook.name
        )));
    }
    if file.sha256 != plan.runbook.sha256 {
        return Err(mismatch(format!(
            "a different text of this runbook (sha256 {}…; this one is {}…): it changed after the approval",
            short(&file.sha256),
            short(&plan.runbook.sha256)
        )));
    }
    let params = params_sha256(plan);
    if file.params_sha256 != params {
        return Err(mismatch(format!(
            "other params (sha256 {}…; this run's are {}…)",
            short(&file.params_sha256),
            short(&params)
        )));
    }
    match plan.phases.iter().find(|p| p.id == file.phase) {
        None => Err(mismatch(format!(
            "phase `{}`, which this runbook does not have",
            file.phase
        ))),
        Some(p) if p.approval.is_none() => Err(mismatch(format!(
            "phase `{}`, which has no approval gate",
            file.phase
        ))),
        Some(_) => Ok(Given {
            file,
            path: path.to_path_buf(),
        }),
    }
}
