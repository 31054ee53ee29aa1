//! Who is acting, and where: what approvals, journal rows and baselines
//! record about the person behind them.

/// The local user: `$USER`, `$LOGNAME`, else the effective user's name.
pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            nix::unistd::User::from_uid(nix::unistd::Uid::effective())
                .ok()
                .flatten()
                .map_or_else(|| "unknown".into(), |u| u.name)
        })
}

/// This machine's name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The person acting: `--as NAME` when given, else the CI's actor
/// (`$GITHUB_ACTOR`), else the local user.
pub fn person(named: Option<&str>) -> String {
    named
        .map(str::to_string)
        .or_else(|| std::env::var("GITHUB_ACTOR").ok().filter(|a| !a.is_empty()))
        .unwrap_or_else(whoami)
}
