//! The throwaway cluster starts as an unprivileged user, serves, and is removed.

use runbook::ephemeral::Ephemeral;

#[test]
fn starts_serves_and_cleans_up() {
    let pg = Ephemeral::start().expect("cluster starts");
    let dir = pg.dir().to_path_buf();
    let out = std::process::Command::new("psql")
        .args([
            &pg.url("postgres"),
            "-XAtc",
            "SELECT current_user || ' ' || inet_server_addr()::text",
        ])
        .output()
        .expect("psql runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "runbook 127.0.0.1/32",
        "{out:?}"
    );
    if nix::unistd::Uid::effective().is_root() {
        // The server process must not be root.
        let owner = std::fs::metadata(dir.join("data"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        assert_ne!(owner, 0, "the data directory belongs to root");
    }
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
}
