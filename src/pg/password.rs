//! `--password-command`: a command that prints the password, run for each
//! login. Managed databases hand out short-lived passwords (an RDS IAM
//! token lasts 15 minutes; Cloud SQL and Azure AD tokens an hour), and a
//! run logs in more than once: its own session, pg_dump and pg_restore,
//! the sessions a backup or a restore check opens, a reconnect. A password
//! taken once at the start fails the logins after it expires; one asked
//! for at each login does not.
//!
//! The command runs under `sh -c`, with the target in `PGHOST`, `PGPORT`,
//! `PGUSER` and `PGDATABASE` (so one command serves every host), and its
//! first line of output is the password. Each password it gives is a
//! secret: the caller redacts it from every output.

use std::time::Duration;

use thiserror::Error;

/// How long one call may take; a hung helper must not hang the run.
const LIMIT: Duration = Duration::from_secs(60);

/// Why the command gave no password.
#[derive(Debug, Error)]
pub enum PasswordError {
    #[error("failed to start `sh -c` for the password command: {0}")]
    Spawn(std::io::Error),
    #[error("the password command did not finish within {} s", LIMIT.as_secs())]
    Timeout,
    #[error("the password command exited with {code}{said}")]
    Failed { code: String, said: String },
    #[error("the password command printed no password")]
    Empty,
}

/// The command, as given; never shown (it may name where a secret is).
#[derive(Clone)]
pub struct PasswordCommand(String);

impl std::fmt::Debug for PasswordCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordCommand(..)")
    }
}

impl PasswordCommand {
    pub fn new(command: String) -> Self {
        Self(command)
    }

    /// A password for a login to `target` (its `PGHOST`, `PGPORT`,
    /// `PGUSER` and `PGDATABASE`), from a new call. Blocking: from async
    /// code, call it on a blocking thread.
    pub fn password(&self, target: &[(&str, String)]) -> Result<String, PasswordError> {
        // duct reads both streams as they come, so a talkative command
        // cannot fill a pipe and stall.
        let mut expr = duct::cmd("sh", ["-c", self.0.as_str()]);
        for (k, v) in target {
            expr = expr.env(k, v);
        }
        let handle = expr
            .env_remove("PGPASSWORD")
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .start()
            .map_err(PasswordError::Spawn)?;
        let deadline = std::time::Instant::now() + LIMIT;
        let out = loop {
            if let Some(out) = handle.try_wait().map_err(PasswordError::Spawn)? {
                break out;
            }
            if std::time::Instant::now() > deadline {
                let _ = handle.kill();
                return Err(PasswordError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(PasswordError::Failed {
                code: out
                    .status
                    .code()
                    .map_or_else(|| "a signal".into(), |c| format!("code {c}")),
                said: last.map_or_else(String::new, |l| format!(": {}", l.trim())),
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let password = stdout.lines().next().unwrap_or_default().trim_end();
        if password.is_empty() {
            return Err(PasswordError::Empty);
        }
        Ok(password.to_string())
    }

    /// [`PasswordCommand::password`], on a blocking thread.
    pub async fn password_async(
        &self,
        target: Vec<(&'static str, String)>,
    ) -> Result<String, PasswordError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.password(&target))
            .await
            .unwrap_or_else(|e| Err(PasswordError::Spawn(std::io::Error::other(e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", "db.internal".into()),
            ("PGPORT", "6543".into()),
            ("PGUSER", "app".into()),
            ("PGDATABASE", "shop".into()),
        ]
    }

    #[test]
    fn the_first_line_is_the_password_and_the_target_is_in_the_environment() {
        let c = PasswordCommand::new(
            r#"printf '%s\n' "$PGUSER@$PGHOST:$PGPORT/$PGDATABASE" more"#.into(),
        );
        assert_eq!(c.password(&config()).unwrap(), "app@db.internal:6543/shop");
    }

    #[test]
    fn a_failure_or_no_output_is_an_error_that_says_why() {
        let failed = PasswordCommand::new("echo 'token service down' >&2; exit 3".into())
            .password(&config())
            .unwrap_err()
            .to_string();
        assert_eq!(
            failed,
            "the password command exited with code 3: token service down"
        );
        let empty = PasswordCommand::new("true".into()).password(&config());
        assert!(matches!(empty, Err(PasswordError::Empty)));
        // Never shown: it may name where the secret is.
        let shown = format!("{:?}", PasswordCommand::new("vault read x".into()));
        assert!(!shown.contains("vault"), "{shown}");
    }
}
