//! Output to the terminal that cannot stop a run. `eprintln!` panics when
//! stderr cannot be written: a pipe whose reader is gone (`| head`, a
//! `tee` that was killed) or a terminal that hung up. A panic half-way
//! through a run leaves a phase half-done, with no rollback and a report
//! that still says "running". Here a failed write is dropped instead: the
//! report and the event log are files, and they say everything.
//! `[lints.clippy] print_stderr` and `print_stdout` keep the std macros out
//! of src/.

use std::io::Write;

/// Write to stderr; what cannot be written is dropped.
pub fn err(args: std::fmt::Arguments) {
    let _ = std::io::stderr().write_fmt(args);
}

/// Write to stdout; what cannot be written is dropped.
pub fn out(args: std::fmt::Arguments) {
    let _ = std::io::stdout().write_fmt(args);
}

/// `eprintln!`, without the panic ([`err`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::term::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!`, without the panic ([`err`]).
#[macro_export]
macro_rules! say_part {
    ($($arg:tt)*) => {
        $crate::term::err(format_args!($($arg)*))
    };
}

/// `println!`, without the panic ([`out`]).
#[macro_export]
macro_rules! show {
    ($($arg:tt)*) => {
        $crate::term::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
