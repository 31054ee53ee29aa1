#!/usr/bin/env bash
# The GitHub Action's one step that runs runbook (action.yml). Every input
# arrives in an environment variable (INPUT_*), never pasted into the
# script, so a param or a file name cannot inject shell. It prints what it
# runs (without secrets: runbook redacts its own output), writes
# `exit-code` and `report-dir` to $GITHUB_OUTPUT, and exits 0: the action's
# last step fails the job with runbook's code, after the reports are
# uploaded.
set -u

die() { echo "::error title=runbook action::$1" >&2; echo "exit-code=5" >> "${GITHUB_OUTPUT:-/dev/null}"; exit 0; }

command="${INPUT_COMMAND:-exec}"
file="${INPUT_FILE:-}"
[ -n "$file" ] || die "the input 'file' is required: the runbook (or, for lint, the paths) to use"
report_dir="${INPUT_REPORT_DIR:-}"
if [ -z "$report_dir" ]; then
  report_dir="runbook-reports/${GITHUB_JOB:-local}-${GITHUB_RUN_ID:-0}-${GITHUB_RUN_ATTEMPT:-1}"
fi

args=()
# One NAME=VALUE per line; blank lines and #-comments are skipped.
add_lines() {
  local flag="$1" text="$2" line
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    [ -z "$line" ] || [ "${line#\#}" != "$line" ] && continue
    args+=("$flag" "$line")
  done <<< "$text"
}
truthy() { case "${1:-false}" in true|yes|1) return 0 ;; *) return 1 ;; esac; }

case "$command" in
  validate)
    args=(validate "$file")
    add_lines --set "${INPUT_PARAMS:-}"
    ;;
  lint)
    args=(lint)
    # lint takes several paths, one per line.
    while IFS= read -r p || [ -n "$p" ]; do [ -n "$p" ] && args+=("$p"); done <<< "$file"
    args+=(--format github)
    ;;
  plan)
    args=(plan "$file")
    add_lines --set "${INPUT_PARAMS:-}"
    ;;
  exec)
    args=(exec "$file" --report-dir "$report_dir" --junit "$report_dir/junit.xml")
    add_lines --set "${INPUT_PARAMS:-}"
    add_lines --approve "${INPUT_APPROVE:-}"
    add_lines --approval "${INPUT_APPROVAL_FILES:-}"
    [ -n "${INPUT_PARAMS_FILE:-}" ] && args+=(--params-file "$INPUT_PARAMS_FILE")
    truthy "${INPUT_YES:-false}" && args+=(--yes)
    if truthy "${INPUT_EPHEMERAL:-false}"; then
      args+=(--ephemeral)
    elif [ -n "${INPUT_TARGETS:-}" ]; then
      args+=(--targets "$INPUT_TARGETS")
      [ -n "${INPUT_SHARD:-}" ] && args+=(--shard "$INPUT_SHARD")
      [ -n "${INPUT_PARALLEL:-}" ] && args+=(--parallel "$INPUT_PARALLEL")
    elif [ -n "${INPUT_DATABASE_URL:-}" ]; then
      # The URL (and its password) reaches runbook in its environment,
      # never on a command line that `ps` shows.
      export DATABASE_URL="$INPUT_DATABASE_URL"
    fi
    # A short-lived password (an IAM token) comes from a command that
    # runbook runs for each login, from its environment too.
    if [ -n "${INPUT_PASSWORD_COMMAND:-}" ] && ! truthy "${INPUT_EPHEMERAL:-false}"; then
      export RUNBOOK_PASSWORD_COMMAND="$INPUT_PASSWORD_COMMAND"
    fi
    ;;
  *) die "the input 'command' is '$command'; it is one of validate, lint, plan, exec" ;;
esac

# The command and the file only: params are on the command line, and a
# secret never belongs there (give secrets in params-file or the runbook's
# env()), but the echo is kept to what is surely not one.
echo "runbook $command $file"
# A cancelled job gets SIGINT, then SIGTERM 7.5 s later, then is killed;
# the runner sends them to the step's entry process, which is this script
# (action.yml execs it), and a shell does not pass them on to the command
# it waits for: runbook would run on, unwatched, until it was killed
# without a rollback. So runbook runs in the background, each signal is
# passed on to it (it stops its step and rolls back, and a second one
# stops the rollback), and the script waits for it to end.
runbook "${args[@]}" &
pid=$!
for sig in INT TERM HUP; do
  # shellcheck disable=SC2064 # $pid and $sig are meant to expand now
  trap "kill -s $sig $pid 2>/dev/null" "$sig"
done
code=0
while :; do
  # `wait` returns early when a trapped signal arrives; runbook may still
  # be rolling back.
  wait "$pid"
  code=$?
  kill -0 "$pid" 2>/dev/null || break
done
{
  echo "exit-code=$code"
  echo "report-dir=$report_dir"
} >> "${GITHUB_OUTPUT:-/dev/null}"
exit 0
