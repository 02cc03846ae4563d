//! `mxguard config check` and configuration errors at start.

use std::process::Command;

fn mxguard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn config_check_accepts_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mxguard.toml");
    let out = mxguard(&["config", "check", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{example}: ok\n")
    );
}

#[test]
fn errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let cases = [
        (
            "[server]\nlisen = [\"127.0.0.1:25\"]\n",
            "bad.toml:2: server.lisen: unknown field `lisen`",
        ),
        (
            "[limits]\nmax_errors = \"ten\"\n",
            "bad.toml:2: limits.max_errors: invalid type",
        ),
        (
            "[relay]\ndomains = [\"ex ample.com\"]\n",
            "bad.toml:2: relay.domains: `ex ample.com` is not a domain name",
        ),
        (
            "[downstream]\ntargets = [\"ftp://x\"]\n",
            "bad.toml:2: downstream.targets: `ftp://x` is not a target",
        ),
        (
            "[bogus]\nx = 1\n",
            "bad.toml:1: bogus: unknown field `bogus`",
        ),
        (
            "[recipients]\ntable = \"missing-file\"\n",
            "recipients.table",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let out = mxguard(&["config", "check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn serve_refuses_a_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[limits]\nmax_recipients = 0\n").unwrap();
    let out = mxguard(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limits.max_recipients: must be at least 1")
    );
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(mxguard(&["frobnicate"]).status.code(), Some(2));
}
