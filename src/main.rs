//! The `runbook` binary: parse arguments, call the library, exit.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(runbook::cli::main(std::env::args_os()))
}
