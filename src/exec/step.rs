//! One step: its attempts and retries, the lock monitor around it, the
//! journal rows before and after it, and how its outcome is judged.

use super::*;

impl<'a> Run<'a> {
    /// Run one step with its timeout, retries and cancellation, and
    /// record it in the journal: before it starts, and when it ends.
    pub(super) async fn step(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> Outcome {
        self.journal_seq = None;
        let o = self.step_body(s, phase, role, for_step).await;
        self.journal_end(s, phase, role, for_step, &o).await;
        o
    }

    /// A journal row for a step, written before it runs.
    async fn journal_start(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
        status: StepStatus,
    ) {
        if !self.journal.is_on() {
            return;
        }
        let row = journal::StepRow {
            seq: 0,
            phase: phase.map(str::to_string),
            step: s.id.clone(),
            role: serde_json::to_value(role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            for_step: for_step.map(str::to_string),
            kind: s.action.kind().into(),
            status: status.name().into(),
            attempts: 0,
            changed_nothing: false,
            partial: false,
            compensations: s.rollback.iter().map(|r| r.id.clone()).collect(),
            compensated: None,
            output: json!({}),
            error: None,
        };
        let (seq, wrote) = self.journal.step_started(row).await;
        self.journal_seq = Some(seq);
        self.journal_failed(wrote);
    }

    /// The step's journal row, updated with how it ended.
    async fn journal_end(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
        o: &Outcome,
    ) {
        if !self.journal.is_on() {
            return;
        }
        if self.journal_seq.is_none() {
            // Skipped before it started (`when` was false).
            self.journal_start(s, phase, role, for_step, o.status).await;
        }
        let Some(seq) = self.journal_seq.take() else {
            return;
        };
        let output = self.redacted(self.steps_out.get(&s.id).unwrap_or(&json!({})));
        let wrote = self
            .journal
            .step_finished(seq, |row| {
                row.status = o.status.name().into();
                row.attempts = i32::try_from(o.attempts).unwrap_or(i32::MAX);
                row.changed_nothing = o.unchanged.is_some();
                row.partial = o.partial;
                row.error.clone_from(&o.error);
                row.output = output;
            })
            .await;
        self.journal_failed(wrote);
    }

    /// The running step's outputs so far, in its journal row, so that a
    /// runner that dies in it leaves what it did: a migrate step's
    /// migrations, as each one commits.
    pub(super) async fn journal_progress(&mut self, output: serde_json::Value) {
        let Some(seq) = self.journal_seq.filter(|_| self.journal.is_on()) else {
            return;
        };
        let output = self.redacted(&output);
        let wrote = self
            .journal
            .step_finished(seq, |row| row.output = output)
            .await;
        self.journal_failed(wrote);
    }

    /// A step's outputs as the journal keeps them: no secret in them.
    fn redacted(&self, output: &serde_json::Value) -> serde_json::Value {
        serde_json::from_str(&self.bus.redactor().redact(&output.to_string())).unwrap_or(json!({}))
    }

    /// Say once that the journal could not be written, and stop writing it.
    pub(super) fn journal_failed(&mut self, r: Result<(), journal::JournalError>) {
        if let Err(why) = r {
            self.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "the run journal could not be written: {why}; it is off for the rest of this run, so `runbook resume` and `runbook rollback` see only what came before"
                ),
            });
            self.journal.turn_off();
        }
    }

    async fn step_body(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> Outcome {
        let kind = s.action.kind();
        let phase_kind = phase
            .and_then(|id| self.plan.phases.iter().find(|p| p.id == id))
            .map(|p| p.kind);
        match self.when(&s.when) {
            Ok(true) => {}
            Ok(false) => {
                self.bus.emit(Event::StepSkipped {
                    at: now(),
                    step: s.id.clone(),
                    phase: phase.map(str::to_string),
                    kind: kind.into(),
                    role,
                    reason: format!(
                        "when: {}",
                        s.when.as_ref().map_or("false", |w| w.expr.as_str())
                    ),
                });
                self.record(&s.id, StepStatus::Skipped, Map::new());
                return Outcome {
                    status: StepStatus::Skipped,
                    attempts: 0,
                    error: None,
                    partial: false,
                    fatal: false,
                    unchanged: Some(super::Unchanged::NothingTookEffect),
                    judged: false,
                };
            }
            Err(e) => {
                let error = ErrorInfo {
                    class: ErrorKind::Template,
                    message: format!("failed to evaluate `when`: {e}"),
                    ..ErrorInfo::default()
                };
                return self.finish_step(
                    s,
                    phase_kind,
                    Instant::now(),
                    0,
                    Err(Fail::new(StepStatus::Failed, error).unchanged()),
                    None,
                );
            }
        }
        self.journal_start(s, phase, role, for_step, StepStatus::Running)
            .await;
        let started = Instant::now();
        // A session lost during an earlier step (terminated, a server
        // restart) is replaced, and the run lock taken again, before this
        // one runs: above all before a compensation.
        if self.db.is_lost()
            && let Err(e) = self.recover_session(&s.id).await
        {
            return self.finish_step(
                s,
                phase_kind,
                started,
                0,
                Err(Fail::new(StepStatus::Failed, e).unchanged()),
                None,
            );
        }
        let monitor = self.start_monitor(s).await;
        let undoing = std::mem::replace(
            &mut self.undoing,
            for_step
                .filter(|_| role == Role::Compensation)
                .map(str::to_string),
        );
        let (attempts, result) = self.attempts(s, phase, role, for_step).await;
        self.undoing = undoing;
        let impact = match monitor {
            Some(m) => Some(m.stop().await),
            None => None,
        };
        if let Some(l) = &impact {
            self.warn_about_impact(s, l);
        }
        self.finish_step(s, phase_kind, started, attempts, result, impact)
    }

    /// Attempts until one succeeds, the error is not retryable, the
    /// attempts run out, or the run is interrupted.
    async fn attempts(
        &mut self,
        s: &PlanStep,
        phase: Option<&str>,
        role: Role,
        for_step: Option<&str>,
    ) -> (u32, Attempt) {
        let kind = s.action.kind();
        let mut attempt = 0;
        // What a failed attempt changed stays changed: a later attempt that
        // fails having changed nothing does not make the step unchanged.
        let mut changed_before = false;
        loop {
            attempt += 1;
            let shown = self.describe(&s.action);
            self.bus.emit(Event::StepStarted {
                at: now(),
                step: s.id.clone(),
                phase: phase.map(str::to_string),
                kind: kind.into(),
                role,
                for_step: for_step.map(str::to_string),
                name: s.name.clone(),
                attempt,
                action: shown,
            });
            let result = self.attempt(s).await;
            for n in self.db.drain_notices() {
                self.bus.emit(Event::StepOutput {
                    at: now(),
                    step: s.id.clone(),
                    stream: "notice".into(),
                    line: n,
                });
            }
            match result {
                Err(f)
                    if attempt < s.retry.attempts
                        && f.retry_class.is_some_and(|c| s.retry.on.contains(&c))
                        && self.interrupt_count() < self.stop_level =>
                {
                    changed_before |= f.unchanged.is_none();
                    let wait = backoff(s, attempt);
                    self.bus.emit(Event::StepRetry {
                        at: now(),
                        step: s.id.clone(),
                        attempt,
                        error: f.error.clone(),
                        wait_ms: ms(wait),
                    });
                    if f.retry_class == Some(ErrorClass::Connection)
                        && let Err(e) = self.reconnect().await
                    {
                        return (attempt, Err(Fail::new(StepStatus::Failed, e)));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.stop_signal() => {
                            return (attempt, Err(Fail::new(StepStatus::Cancelled, cancelled_error())));
                        }
                    }
                }
                mut r => {
                    self.sql_resume = None;
                    self.migrate_resume = None;
                    self.backfill_resume = None;
                    if let Err(f) = &mut r
                        && changed_before
                    {
                        f.unchanged = None;
                    }
                    return (attempt, r);
                }
            }
        }
    }

    /// The lock monitor for a step that may take locks others wait on:
    /// every kind but `check` (read-only) and `sleep`. Its session is opened
    /// once, on first use. If it cannot be opened, the run goes on, and a
    /// warning says the impact was not measured.
    async fn start_monitor(&mut self, s: &PlanStep) -> Option<monitor::Monitor> {
        // A rehearsal on a scratch database takes no lock on the run's.
        if matches!(
            s.action,
            Action::Check(_)
                | Action::Wait(_)
                | Action::Watch(_)
                | Action::Sleep { .. }
                | Action::Snapshot(_)
        ) || matches!(&s.action, Action::Rehearse(x) if x.scratch.is_some())
        {
            return None;
        }
        let settings = s.settings.as_ref().unwrap_or(&self.plan.settings);
        if settings.lock_monitor == Some(false) {
            return None;
        }
        if self.monitor.is_none() {
            let app = self.monitor_app();
            let connected = self.db.connect_to(&self.database, &app).await;
            let version = match &connected {
                Ok(m) => m
                    .client
                    .query_one("SELECT current_setting('server_version_num')::int", &[])
                    .await
                    .map(|r| r.get::<_, i32>(0))
                    .map_err(|e| db::error_info(&e, None)),
                Err(e) => Err(e.clone()),
            };
            match (connected, version) {
                (Ok(m), Ok(v)) => {
                    self.monitor = Some(Some((Arc::new(m), monitor::sample_sql(v).into())));
                }
                (Err(e), _) | (_, Err(e)) => {
                    self.bus.emit(Event::Warning {
                        at: now(),
                        message: format!(
                            "the lock monitor could not connect ({}); lock impact is not measured in this run",
                            e.message
                        ),
                    });
                    self.monitor = Some(None);
                }
            }
        }
        let (m, sql) = self.monitor.as_ref()?.as_ref()?;
        Some(monitor::Monitor::start(
            m.clone(),
            sql.clone(),
            self.app_name.clone(),
        ))
    }

    /// The lock monitor session's application_name (as the server keeps
    /// it: at most 63 bytes).
    pub(crate) fn monitor_app(&self) -> String {
        let mut app = format!("{}/monitor", self.app_name);
        while app.len() > 63 {
            app.pop();
        }
        app
    }

    /// A report warning when other sessions waited on this step's locks
    /// longer than `lock_wait_warning` (default 1s).
    fn warn_about_impact(&mut self, s: &PlanStep, l: &LockImpact) {
        let settings = s.settings.as_ref().unwrap_or(&self.plan.settings);
        let limit = settings.lock_wait_warning.map_or(
            Duration::from_millis(crate::plan::DEFAULT_LOCK_WAIT_WARNING_MS),
            |d| d.0,
        );
        if l.waited_max_ms > ms(limit) {
            self.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "step `{}` made {} other session(s) wait on its locks: the longest wait was {} ms, {} ms in all, {} waiting at the worst moment",
                    s.id, l.sessions_waited, l.waited_max_ms, l.waited_total_ms, l.waiting_max
                ),
            });
        }
    }

    /// The session was lost: say so, connect again (with backoff, while a
    /// restarting server refuses) and take the run lock again.
    async fn recover_session(&mut self, before_step: &str) -> Result<(), ErrorInfo> {
        self.bus.emit(Event::Warning {
            at: now(),
            message: format!(
                "the database session was lost; reconnecting before step `{before_step}`"
            ),
        });
        self.monitor = None;
        let started = Instant::now();
        match self.reconnect().await {
            Ok(()) => {
                self.bus.emit(Event::Warning {
                    at: now(),
                    message: format!(
                        "reconnected in {} ms and took the run lock again",
                        ms(started.elapsed())
                    ),
                });
                Ok(())
            }
            Err(mut e) => {
                e.message = format!(
                    "the database session was lost and reconnecting failed: {}",
                    e.message
                );
                Err(e)
            }
        }
    }

    /// A new session after a lost one, with the run lock taken again: the
    /// old session's lock died with it.
    async fn reconnect(&mut self) -> Result<(), ErrorInfo> {
        self.db.reconnect(&self.app_name).await?;
        // After a failover the new session may have reached another of
        // several hosts: the children follow it.
        let config = &self.db.config().config;
        if config.get_hosts().len().max(config.get_hostaddrs().len()) > 1 {
            let mut conn = self.db.config().clone();
            conn.reached = self.db.reached_host().await;
            let passfile = self
                .pg_env
                .iter()
                .find(|(k, _)| k == "PGPASSFILE")
                .map(|(_, v)| PathBuf::from(v));
            self.pg_env = db::libpq_env(&conn, &self.app_name, passfile.as_deref());
        }
        self.relock().await
    }

    /// The children's libpq environment. With `--password-command`, a new
    /// password goes into their password file first (one taken earlier may
    /// have expired), and is a secret from then on.
    pub(crate) async fn child_env(&mut self) -> Result<Vec<(String, String)>, ErrorInfo> {
        if let Some(refill) = self.refill() {
            let password = refill.refill().await?;
            self.bus.add_secret(&password);
        }
        Ok(self.pg_env.clone())
    }

    /// What refills the children's password file, when a
    /// `--password-command` gives the passwords and the children have one.
    pub(crate) fn refill(&self) -> Option<db::Refill> {
        let conn = self.db.config();
        let command = conn.password_command.clone()?;
        let passfile = self.pg_env.iter().find(|(k, _)| k == "PGPASSFILE")?;
        Some(db::Refill {
            command,
            target: db::password_target(&conn.config),
            passfile: PathBuf::from(&passfile.1),
        })
    }

    /// Take the run lock again on a new main session.
    pub(crate) async fn relock(&mut self) -> Result<(), ErrorInfo> {
        match self.db.try_lock(self.lock_key).await? {
            Ok(()) => Ok(()),
            Err(holder) => Err(ErrorInfo {
                class: ErrorKind::Lock,
                message: format!(
                    "lost the run lock while reconnecting: another run took the database{}",
                    holder.map_or_else(String::new, |h| format!(
                        " (pid {}, run {})",
                        h.pid,
                        h.run_id()
                    ))
                ),
                ..ErrorInfo::default()
            }),
        }
    }

    /// The step's action in one line, templates rendered as they run.
    fn describe(&self, a: &Action) -> String {
        a.describe(&|t: &Text| {
            self.render(t)
                .map_or_else(|_| t.text.clone(), |(_, shown)| shown)
        })
    }

    async fn attempt(&mut self, s: &PlanStep) -> Attempt {
        let timeout = s.timeout.map(|d| d.0);
        match &s.action {
            Action::Sql {
                statements,
                transaction,
            } => {
                let plan = self.plan;
                let settings = s.settings.as_ref().unwrap_or(&plan.settings);
                sql::run(self, &s.id, statements, *transaction, timeout, settings).await
            }
            Action::Check(c) => check::run(self, s, c, timeout).await,
            Action::Shell(sh) => shell::run(self, s, sh, timeout).await,
            Action::Backup(b) => backup::run(self, s, b, timeout).await,
            Action::Restore(rs) => restore::run(self, s, rs, timeout).await,
            Action::Backfill(b) => backfill::run(self, s, b, timeout).await,
            Action::Migrate(m) => migrate::run(self, s, m, timeout).await,
            Action::Snapshot(x) => snapshot::run(self, s, x, timeout).await,
            Action::Rehearse(x) => rehearse::run(self, s, x, timeout).await,
            Action::Wait(w) => wait::run(self, s, w, timeout).await,
            Action::Watch(w) => watch::run(self, s, w, timeout).await,
            Action::Sleep { duration } => {
                let limit = timeout.unwrap_or(Duration::MAX);
                tokio::select! {
                    () = tokio::time::sleep(duration.0.min(limit)) => {
                        if duration.0 > limit {
                            Err(Fail::new(StepStatus::TimedOut, timeout_error(timeout)))
                        } else {
                            Ok(Done::default())
                        }
                    }
                    () = self.stop_signal() => Err(Fail::new(StepStatus::Cancelled, cancelled_error())),
                }
            }
        }
    }

    pub(super) fn finish_step(
        &mut self,
        s: &PlanStep,
        phase: Option<PhaseKind>,
        started: Instant,
        attempts: u32,
        r: Attempt,
        lock_impact: Option<LockImpact>,
    ) -> Outcome {
        let (status, done, error, unchanged, judged) = match r {
            Ok(d) => (StepStatus::Succeeded, d, None, None, false),
            Err(f) => (f.status, f.partial, Some(f.error), f.unchanged, f.judged),
        };
        let warn_only =
            matches!(&s.action, Action::Check(c) if c.severity == crate::model::Severity::Warn);
        let fatal = status.is_failure() && !(warn_only && status == StepStatus::Failed);
        // A failure that may have committed part of the step's work.
        let partial = status.is_failure()
            && unchanged.is_none()
            && may_change(&s.action, phase.unwrap_or(PhaseKind::Migrate));
        if status.is_failure() && !fatal {
            self.bus.emit(Event::Warning {
                at: now(),
                message: format!(
                    "check `{}` failed (severity warn): {}",
                    s.id,
                    error.as_ref().map_or("", |e| e.message.as_str())
                ),
            });
        }
        let message = error
            .as_ref()
            .map(|e| self.bus.redactor().redact(&e.message).into_owned());
        self.bus.emit(Event::StepFinished {
            at: now(),
            step: s.id.clone(),
            status,
            duration_ms: ms(started.elapsed()),
            attempts,
            rows_affected: done.rows_affected,
            exit_code: done.exit_code,
            check: done.check,
            error,
            stdout_tail: done.stdout_tail,
            stderr_tail: done.stderr_tail,
            details: done.details,
            partial,
            lock_impact,
        });
        self.record(&s.id, status, done.output);
        Outcome {
            status,
            attempts,
            error: message,
            partial,
            fatal,
            unchanged,
            judged,
        }
    }
}

/// Whether a step may change the database. Checks, waits, sleeps, snapshots,
/// backups and rehearsals on a scratch database never do; a shell step in
/// a preflight or verify phase is taken to be read-only, as those phases
/// promise.
pub(super) fn may_change(a: &Action, phase: PhaseKind) -> bool {
    match a {
        Action::Check(_)
        | Action::Wait(_)
        | Action::Watch(_)
        | Action::Sleep { .. }
        | Action::Snapshot(_)
        | Action::Backup(_) => false,
        Action::Rehearse(x) => x.scratch.is_none(),
        Action::Shell(_) => !matches!(phase, PhaseKind::Preflight | PhaseKind::Verify),
        Action::Sql { .. } | Action::Restore(_) | Action::Backfill(_) | Action::Migrate(_) => true,
    }
}

/// Exponential backoff with full jitter in [50%, 100%] of the nominal wait.
fn backoff(s: &PlanStep, attempt: u32) -> Duration {
    let r = &s.retry;
    let nominal = r.initial.0.as_secs_f64() * r.factor.powi(attempt.saturating_sub(1) as i32);
    let capped = nominal.min(r.max.0.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
}

#[cfg(test)]
mod tests {
    use super::may_change;
    use crate::model::PhaseKind;
    use crate::plan::{Action, PlanShell, Text};

    fn shell() -> Action {
        Action::Shell(Box::new(PlanShell {
            script: Some(Text {
                text: "true".into(),
                raw: crate::secret::Secret::new("true".into()),
                pointer: String::new(),
                template: None,
                after: Vec::new(),
            }),
            argv: Vec::new(),
            env: Default::default(),
            cwd: None,
            expect_exit: vec![0],
        }))
    }

    /// What a failed step may have changed decides whether its
    /// compensation runs: a shell step in a read-only phase changed
    /// nothing, elsewhere it may have.
    #[test]
    fn a_shell_step_may_change_the_database_outside_read_only_phases() {
        for (phase, expected) in [
            (PhaseKind::Preflight, false),
            (PhaseKind::Verify, false),
            (PhaseKind::Expand, true),
            (PhaseKind::Migrate, true),
            (PhaseKind::Contract, true),
        ] {
            assert_eq!(may_change(&shell(), phase), expected, "{phase:?}");
        }
        let sleep = Action::Sleep {
            duration: crate::duration::Duration(std::time::Duration::from_secs(1)),
        };
        assert!(!may_change(&sleep, PhaseKind::Migrate));
    }
}
