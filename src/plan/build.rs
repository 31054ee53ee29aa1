//! Building the plan: render every template of a validated runbook, with
//! its JSON pointer, and resolve what can be known before the run.

use minijinja::Environment;
use minijinja::value::Value as JValue;
use serde_json::Value;

use super::*;

/// Build the plan of a validated runbook.
pub fn build(v: &Validated, run: &RunInfo) -> Result<Plan, Invalid> {
    let rb = &v.runbook;
    let mut redactor = Redactor::new(
        v.params
            .secret_values()
            .into_iter()
            .chain(crate::migrations::flyway_secret_values()),
    );
    let metadata = serde_json::json!({
        "name": rb.metadata.name,
        "version": rb.metadata.version,
        "description": rb.metadata.description,
        "owner": rb.metadata.owner,
        "labels": rb.metadata.labels,
    });
    // The run's status and failed step exist only once it ends (for
    // `finally`); its id exists once `exec` starts.
    let run_value = match &run.id {
        Some(id) => minijinja::context! {
            id => id,
            started_at => run.started_at.clone(),
            status => Deferred::value("run.status"),
            failed_step => Deferred::value("run.failed_step"),
            changed => Deferred::value("run.changed"),
        },
        None => Deferred::value("run"),
    };
    let env = template::environment();
    let params = JValue::from(minijinja::value::Serde(v.params.defined()));
    let mut errors = Vec::new();
    let vars = render_vars(
        v,
        &env,
        (&params, &metadata, &run_value),
        &mut redactor,
        &mut errors,
    );
    let ctx = minijinja::context! {
        params => params,
        vars => JValue::from(minijinja::value::Serde(&vars)),
        metadata => JValue::from(minijinja::value::Serde(&metadata)),
        run => run_value,
        steps => JValue::from_object(DeferredSteps),
    };
    let mut p = Planner {
        doc: &v.doc,
        env,
        ctx,
        rb,
        fields: crate::fields::Fields::of(&v.doc, rb),
        redactor,
        errors,
        unset: v.params.unset().into_iter().map(str::to_string).collect(),
    };
    let (database, database_url) = p.database();
    let mut phases: Vec<PlanPhase> = rb.phases.iter().map(|ph| p.phase(ph)).collect();
    let risk = PlanRisk::of(rb.metadata.risk, &phases);
    for (ph, model) in phases.iter_mut().zip(&rb.phases) {
        let asked = model.approval.as_ref().and_then(|a| a.approvers);
        if let Some(a) = &mut ph.approval {
            a.approvers = asked.unwrap_or(risk.level.default_approvers());
        }
    }
    let abort_when = rb.abort_when.iter().map(|t| p.trigger(t)).collect();
    let on_failure = p.steps(&rb.on_failure);
    let finally_steps = p.steps(&rb.finally);
    if !p.errors.is_empty() {
        return Err(Invalid {
            file: v.doc.source.name().to_string(),
            files: vec![FileDiagnostics {
                source: v.doc.source.clone(),
                diagnostics: p.errors,
            }],
        });
    }
    let redactor = p.redactor;
    let context = RenderContext {
        params: serde_json::to_value(v.params.defined()).unwrap_or_default(),
        vars: Value::Object(vars.clone()),
        metadata,
    };
    let mut vars = Value::Object(vars);
    redactor.redact_json(&mut vars);
    let Value::Object(vars) = vars else {
        unreachable!("vars is an object")
    };
    let params = plan_params(v);
    Ok(Plan {
        runbook: RunbookInfo {
            name: rb.metadata.name.clone(),
            version: rb.metadata.version.clone(),
            description: rb.metadata.description.clone(),
            owner: rb.metadata.owner.clone(),
            file: v.doc.source.name().to_string(),
            sha256: crate::validate::sha256(&v.doc),
        },
        params,
        vars: vars.into_iter().collect(),
        database,
        settings: effective_settings(&rb.settings),
        phases,
        risk,
        abort_when,
        on_failure,
        finally_steps,
        redactor,
        context,
        database_url,
    })
}

impl Planner<'_> {
    /// Where the run connects: the runbook's URL (rendered, redacted in
    /// the plan, its password taught to the redactor), or the one given at
    /// run time.
    fn database(&mut self) -> (PlanDatabase, Option<String>) {
        let mut database_url = None;
        let database = match &self.rb.database.url {
            Some(url) => {
                let t = self.text(url);
                self.redactor.add_url(t.raw.expose());
                database_url = Some(t.raw.expose().clone());
                PlanDatabase {
                    url: Some(self.redactor.redact(t.raw.expose()).into_owned()),
                    source: "runbook",
                }
            }
            None => PlanDatabase {
                url: None,
                source: "--database-url or DATABASE_URL at run time",
            },
        };
        (database, database_url)
    }

    fn phase(&mut self, ph: &model::Phase) -> PlanPhase {
        PlanPhase {
            id: ph.id.clone(),
            kind: ph.kind,
            description: ph.description.clone(),
            when: self.when(&ph.when),
            approval: ph.approval.as_ref().map(|a| PlanApproval {
                prompt: match &a.prompt {
                    Some(t) => self.text(t),
                    None => plain(format!("Run phase `{}`?", ph.id)),
                },
                required: a.required,
                // Filled in by the runbook's risk once every phase is planned.
                approvers: a.approvers.unwrap_or_default(),
            }),
            on_failure: match &ph.on_failure {
                OnFailure::Mode(FailureMode::Rollback) => PlanOnFailure::Rollback,
                OnFailure::Mode(FailureMode::Abort) => PlanOnFailure::Abort,
                OnFailure::Mode(FailureMode::Continue) => PlanOnFailure::Continue,
                OnFailure::Steps(s) => PlanOnFailure::Steps(self.steps(s)),
            },
            steps: self.steps(&ph.steps),
        }
    }
}

/// Vars render in order; each sees the ones before it. A var that reads a
/// secret param is redacted wherever its value appears.
fn render_vars(
    v: &Validated,
    env: &Environment<'static>,
    (params, metadata, run_value): (&JValue, &Value, &JValue),
    redactor: &mut Redactor,
    errors: &mut Vec<Diagnostic>,
) -> serde_json::Map<String, Value> {
    let mut vars = serde_json::Map::new();
    for (name, raw) in &v.runbook.vars {
        let ctx = minijinja::context! {
            params => params.clone(),
            vars => JValue::from(minijinja::value::Serde(&vars)),
            metadata => JValue::from(minijinja::value::Serde(metadata)),
            run => run_value.clone(),
        };
        let reads_secret = uses_secret(env, raw, v);
        match render_value(env, raw, &ctx) {
            Ok(val) => {
                if reads_secret {
                    collect_strings(&val, &mut |s| redactor.add(s));
                }
                vars.insert(name.clone(), val);
            }
            Err(e) => errors.push(
                Diagnostic::new(format!("failed to render var `{name}`: {}", error_text(&e)))
                    .at(v
                        .doc
                        .spans()
                        .value(&format!("/vars/{}", crate::load::pointer_segment(name))))
                    .label("here"),
            ),
        }
    }
    vars
}

/// The params as the plan shows them: a secret's value redacted.
fn plan_params(v: &Validated) -> IndexMap<String, PlanParam> {
    v.params
        .0
        .iter()
        .map(|(k, pv)| {
            let value = if pv.secret && !pv.value.is_null() {
                Value::String(REDACTED.into())
            } else {
                pv.value.clone()
            };
            (
                k.clone(),
                PlanParam {
                    value,
                    origin: pv.origin,
                    secret: pv.secret,
                },
            )
        })
        .collect()
}

fn uses_secret(env: &Environment<'_>, raw: &Value, v: &Validated) -> bool {
    let mut found = false;
    collect_strings(raw, &mut |s| {
        if let Ok(refs) = template::references(env, s, false) {
            found |= refs.iter().any(|r| {
                r.strip_prefix("params.")
                    .and_then(|n| v.params.0.get(n.split('.').next().unwrap_or(n)))
                    .is_some_and(|p| p.secret)
            });
        }
    });
    found
}

fn collect_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, f)),
        Value::Object(m) => m.values().for_each(|x| collect_strings(x, f)),
        _ => {}
    }
}

fn render_value(
    env: &Environment<'_>,
    raw: &Value,
    ctx: &JValue,
) -> Result<Value, minijinja::Error> {
    Ok(match raw {
        Value::String(s) => Value::String(template::render(env, s, ctx)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_value(env, x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(env, x, ctx)?)))
                .collect::<Result<_, minijinja::Error>>()?,
        ),
        other => other.clone(),
    })
}

fn error_text(e: &minijinja::Error) -> String {
    e.detail()
        .map_or_else(|| e.kind().to_string(), str::to_string)
}

fn plain(text: String) -> Text {
    Text {
        raw: Secret::new(text.clone()),
        text,
        pointer: String::new(),
        template: None,
        after: Vec::new(),
    }
}

/// Of a template's references, those known only at run time: a step's
/// outputs (`steps.ID`) and the run itself (`run`).
fn known_at_run_time(refs: &[String]) -> Vec<String> {
    refs.iter()
        .filter_map(|r| {
            let mut it = r.split('.');
            match (it.next(), it.next()) {
                (Some("steps"), Some(id)) => Some(format!("steps.{id}")),
                (Some("run"), _) => Some("run".to_string()),
                _ => None,
            }
        })
        .collect()
}

impl Planner<'_> {
    /// Render one template field; on a render error, record a diagnostic.
    /// `source` is borrowed from the runbook: its pointer comes from
    /// [`crate::fields`], which walked the same model.
    pub(super) fn text(&mut self, source: &str) -> Text {
        let found = self.fields.pointer_of(source);
        debug_assert!(
            found.is_some() || source.is_empty(),
            "a templated field the walk missed: {source:?}"
        );
        let pointer = found.unwrap_or_default().to_string();
        let pointer = pointer.as_str();
        match template::render(&self.env, source, &self.ctx) {
            Ok(out) => {
                let after = if template::mentions_deferred(&out) {
                    let refs = template::references(&self.env, source, false).unwrap_or_default();
                    let mut names = known_at_run_time(&refs);
                    names.dedup();
                    names
                } else {
                    Vec::new()
                };
                let text = self.redactor.redact(&out).into_owned();
                Text {
                    template: (!after.is_empty()).then(|| source.to_string()),
                    text,
                    raw: Secret::new(out),
                    pointer: pointer.to_string(),
                    after,
                }
            }
            Err(e) => {
                // Arithmetic or filters on a run-time value cannot be done
                // now: show the template itself and say when it is known.
                let refs = template::references(&self.env, source, false).unwrap_or_default();
                let after = known_at_run_time(&refs);
                let unset: Vec<&String> = self
                    .unset
                    .iter()
                    .filter(|n| {
                        refs.iter().any(|r| {
                            r.strip_prefix("params.")
                                .is_some_and(|rest| rest.split('.').next() == Some(n.as_str()))
                        })
                    })
                    .collect();
                if let Some(name) = unset.first() {
                    self.errors.push(
                        Diagnostic::new(format!(
                            "param `{name}` is used here but has no value and no default"
                        ))
                        .at(self.rb_span(pointer))
                        .label("uses an unset param")
                        .hint(format!(
                            "pass `--set {name}=VALUE`, give it a `default:`, or test it with `params.{name} is defined`"
                        )),
                    );
                    return plain(String::new());
                }
                if after.is_empty() {
                    self.errors.push(
                        Diagnostic::new(format!("failed to render template: {}", error_text(&e)))
                            .at(self.rb_span(pointer))
                            .label("here")
                            .hint("check the names and filters used in this template"),
                    );
                    return plain(String::new());
                }
                Text {
                    text: self.redactor.redact(source).into_owned(),
                    raw: Secret::new(source.to_string()),
                    pointer: pointer.to_string(),
                    template: Some(source.to_string()),
                    after,
                }
            }
        }
    }

    /// A rehearsal's `errors`: a list, or a template rendered now and read
    /// as comma-separated verdict names.
    pub(super) fn verdicts(&mut self, v: Option<&model::VerdictList>) -> Vec<model::Verdict> {
        let source = match v {
            None => return model::Verdict::default_errors(),
            Some(model::VerdictList::List(list)) => return list.clone(),
            Some(model::VerdictList::Template(t)) => t,
        };
        let rendered = self.text(source);
        let mut out = Vec::new();
        for name in rendered
            .raw
            .expose()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
        {
            match model::Verdict::ALL.iter().find(|v| v.name() == name) {
                Some(v) if !out.contains(v) => out.push(*v),
                Some(_) => {}
                None => self.errors.push(
                    Diagnostic::new(format!("unknown verdict `{name}` in `errors`"))
                        .at(self.span_of(source))
                        .label("renders to an unknown verdict")
                        .hint(format!(
                            "expected a comma-separated list of: {}",
                            model::Verdict::ALL
                                .iter()
                                .filter(|v| **v != model::Verdict::Ok)
                                .map(|v| v.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                ),
            }
        }
        out
    }

    /// A duration as written, or a template rendered now and read as one;
    /// `default` when absent (or when the rendered text is refused, with a
    /// diagnostic naming the key).
    pub(super) fn duration_setting(
        &mut self,
        v: Option<&model::DurationSetting>,
        default: std::time::Duration,
        key: &str,
    ) -> crate::duration::Duration {
        let source = match v {
            None => return crate::duration::Duration(default),
            Some(model::DurationSetting::Fixed(d)) => return *d,
            Some(model::DurationSetting::Template(t)) => t,
        };
        let rendered = self.text(source);
        match crate::duration::Duration::parse(rendered.raw.expose().trim()) {
            Ok(d) => d,
            Err(e) => {
                self.errors.push(
                    Diagnostic::new(format!("`{key}` renders to `{}`: {e}", rendered.text))
                        .at(self.span_of(source))
                        .label("not a duration")
                        .hint("a whole number and a unit: 500ms, 5s, 10min, 1h"),
                );
                crate::duration::Duration(default)
            }
        }
    }

    /// A whole number of 1 or more, as written or from a template rendered
    /// now; `None`, with a diagnostic naming the key, when it is not one.
    pub(super) fn count_setting(&mut self, source: &str, key: &str) -> Option<u32> {
        let rendered = self.text(source);
        let why = match rendered.raw.expose().trim().parse::<u32>() {
            Ok(0) => "is zero: say 1 or more",
            Ok(n) => return Some(n),
            Err(_) => "is not a whole number",
        };
        self.errors.push(
            Diagnostic::new(format!(
                "`{key}` renders to `{}`, which {why}",
                rendered.text
            ))
            .at(self.span_of(source))
            .label("expected a whole number, 1 or more")
            .hint("a number, or a param that holds one: `--set NAME=14`"),
        );
        None
    }

    pub(super) fn rb_span(&self, pointer: &str) -> Option<crate::source::Span> {
        self.doc.spans().value(pointer)
    }

    /// Where a templated field's text sits in the runbook.
    pub(super) fn span_of(&self, text: &str) -> Option<crate::source::Span> {
        self.rb_span(self.fields.pointer_of(text)?)
    }

    pub(super) fn when(&mut self, when: &Option<When>) -> Option<PlanWhen> {
        match when {
            None => None,
            Some(When::Literal(b)) => Some(PlanWhen {
                expr: b.to_string(),
                value: Some(*b),
            }),
            Some(When::Expr(e)) => {
                let refs = template::references(&self.env, e, true).unwrap_or_default();
                let runtime = refs
                    .iter()
                    .any(|r| r.starts_with("steps") || r.starts_with("run"));
                let value = if runtime {
                    None
                } else {
                    match self
                        .env
                        .compile_expression(e)
                        .and_then(|x| x.eval(self.ctx.clone()))
                    {
                        Ok(v) => Some(v.is_true()),
                        Err(err) => {
                            self.errors.push(
                                Diagnostic::new(format!(
                                    "failed to evaluate `when`: {}",
                                    error_text(&err)
                                ))
                                .at(self.span_of(e))
                                .label("here"),
                            );
                            None
                        }
                    }
                };
                Some(PlanWhen {
                    expr: e.clone(),
                    value,
                })
            }
        }
    }

    pub(super) fn steps(&mut self, steps: &[Step]) -> Vec<PlanStep> {
        steps.iter().map(|s| self.step(s)).collect()
    }

    pub(super) fn retry(&self, step: &Step) -> PlanRetry {
        let d = self.rb.defaults.retry.as_ref();
        let s = step.retry.as_ref();
        // Backfills resume from their checkpoint, so a retry repeats no work.
        let sql = matches!(
            step.kind,
            StepKind::Sql(_) | StepKind::Check(_) | StepKind::Backfill(_) | StepKind::Migrate(_)
        );
        let given = s.and_then(|r| r.attempts).or(d.and_then(|r| r.attempts));
        let attempts = given.unwrap_or(if sql { DEFAULT_SQL_ATTEMPTS } else { 1 });
        let b = |f: fn(&model::BackoffSpec) -> Option<Duration>| {
            s.and_then(|r| r.backoff.as_ref())
                .and_then(f)
                .or(d.and_then(|r| r.backoff.as_ref()).and_then(f))
        };
        PlanRetry {
            attempts,
            initial: b(|x| x.initial).unwrap_or(Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS)),
            factor: s
                .and_then(|r| r.backoff.as_ref())
                .and_then(|x| x.factor)
                .or(d.and_then(|r| r.backoff.as_ref()).and_then(|x| x.factor))
                .unwrap_or(DEFAULT_BACKOFF_FACTOR),
            max: b(|x| x.max).unwrap_or(Duration::from_millis(DEFAULT_BACKOFF_MAX_MS)),
            on: s
                .and_then(|r| r.on.clone())
                .or(d.and_then(|r| r.on.clone()))
                .unwrap_or_else(|| match (given, sql) {
                    (None, true) => DEFAULT_SQL_RETRY_ON.to_vec(),
                    _ if attempts > 1 => DEFAULT_RETRY_ON.to_vec(),
                    _ => Vec::new(),
                }),
        }
    }

    /// A step's own settings over the runbook's, when it has any.
    pub(super) fn settings(&self, step: &Step) -> Option<model::Settings> {
        let own = step.settings.as_ref()?;
        let mut s = effective_settings(&self.rb.settings);
        if own.lock_timeout.is_some() {
            s.lock_timeout = own.lock_timeout;
        }
        if own.statement_timeout.is_some() {
            s.statement_timeout = own.statement_timeout;
        }
        if own.wait_for_blockers.is_some() {
            s.wait_for_blockers = own.wait_for_blockers;
        }
        if own.lock_wait_warning.is_some() {
            s.lock_wait_warning = own.lock_wait_warning;
        }
        if own.lock_monitor.is_some() {
            s.lock_monitor = own.lock_monitor;
        }
        Some(s)
    }

    pub(super) fn step(&mut self, s: &Step) -> PlanStep {
        let action = match &s.kind {
            StepKind::Sql(sql) => Action::Sql {
                statements: self.text(&sql.statements),
                transaction: sql.transaction,
            },
            StepKind::Check(c) => Action::Check(Box::new(self.check(c))),
            StepKind::Wait(w) => self.wait(w),
            StepKind::Watch(w) => self.watch(w),
            StepKind::Shell(sh) => self.shell(sh),
            StepKind::Sleep(d) => Action::Sleep { duration: *d },
            StepKind::Backup(b) => self.backup(b),
            StepKind::Restore(r) => self.restore(r),
            StepKind::Backfill(b) => self.backfill(b),
            StepKind::Migrate(m) => self.migrate(m),
            StepKind::Snapshot(x) => self.snapshot(x),
            StepKind::Rehearse(x) => self.rehearse(x),
        };
        if let (
            Action::Watch(w),
            StepKind::Watch(model::WatchStep {
                duration: model::DurationSetting::Template(src),
                ..
            }),
            Some(t),
        ) = (&action, &s.kind, s.timeout.or(self.rb.defaults.timeout))
            && t.0 <= w.duration.0
        {
            // As validate says of a written duration, once this one is known.
            self.errors.push(
                Diagnostic::new(format!(
                    "watch `{}` holds for {}, but its step times out after {t}: it could never finish",
                    s.id, w.duration
                ))
                .at(self.span_of(src))
                .label("longer than the step's timeout")
                .hint("set the step's `timeout:` above `duration` (a minute more leaves room for the last sample)"),
            );
        }
        let rollback = if s.rollback_single {
            vec![self.step(&s.rollback[0])]
        } else {
            self.steps(&s.rollback)
        };
        PlanStep {
            id: s.id.clone(),
            name: s.name.clone(),
            when: self.when(&s.when),
            timeout: s.timeout.or(self.rb.defaults.timeout),
            retry: self.retry(s),
            settings: self.settings(s),
            action,
            rollback,
            rollback_on_partial: s.rollback_on_partial,
        }
    }
}
