//! `mxguard config check` and configuration errors at start; the shipped
//! example configuration, checked and started.

use crate::harness::*;
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

/// Kills the server when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The banner a server at `addr` sends.
async fn banner(addr: &str) -> String {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        DEADLINE,
        tokio::io::BufReader::new(stream).read_line(&mut line),
    )
    .await
    .expect("a banner in time")
    .unwrap();
    line
}

/// The shipped configuration (/etc/mxguard/mxguard.toml in the Debian
/// package) starts as it is, but for its ports and the directories it
/// writes to: its listen addresses bind together, and IPv4 and IPv6
/// clients both get the banner, the IPv4 one known by its IPv4 address.
#[tokio::test]
async fn the_example_listens_for_ipv4_and_ipv6_clients() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mxguard.toml");
    let mut config: toml::Table = std::fs::read_to_string(example).unwrap().parse().unwrap();
    let port = free_port();
    let server = config["server"].as_table_mut().unwrap();
    let listen: Vec<toml::Value> = server["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let addr: std::net::SocketAddr = a.as_str().unwrap().parse().unwrap();
            std::net::SocketAddr::new(addr.ip(), port)
                .to_string()
                .into()
        })
        .collect();
    let listeners = listen.len();
    server.insert("listen".into(), listen.into());
    let spool = dir.path().join("spool").display().to_string();
    config["spool"]
        .as_table_mut()
        .unwrap()
        .insert("dir".into(), spool.into());
    let log = dir.path().join("mxguard.log");
    config["log"]
        .as_table_mut()
        .unwrap()
        .insert("file".into(), log.display().to_string().into());
    let file = dir.path().join("mxguard.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    // The package installs the greylist allow-list beside it.
    let allow = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/greylist-allow");
    std::fs::copy(allow, dir.path().join("greylist-allow")).unwrap();

    let mut server = Running(
        Command::new(env!("CARGO_BIN_EXE_mxguard"))
            .args(["serve", "--config"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("every listen address bound", || {
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("mxguard exited with {status}: {err}");
        }
        (lines().matches("event=listen ").count() == listeners).then_some(())
    });
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let banner = banner(&addr).await;
        assert!(
            banner.starts_with("220 mx2.example.com "),
            "{addr}: {banner}"
        );
    }
    wait_for("both sessions logged", || {
        let log = lines();
        (log.contains("event=disconnect client=127.0.0.1 ")
            && log.contains("event=disconnect client=::1 "))
        .then_some(())
    });
    assert!(!lines().contains("::ffff:"), "{}", lines());
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
        (
            "[policy_server]\nlisten = \"unix:/run/p.sock\"\ngroup = \"no-such-group\"\n",
            "bad.toml:3: policy_server.group: unknown group \"no-such-group\"",
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
fn config_check_warns_about_side_listeners_on_network_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wide.toml");
    std::fs::write(
        &file,
        "[policy_server]\nlisten = \"0.0.0.0:10040\"\n[metrics]\nlisten = \"[::]:9425\"\n",
    )
    .unwrap();
    let name = file.to_str().unwrap();
    let out = mxguard(&["config", "check", name]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{name}: ok\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "mxguard: {name}: warning: policy_server.listen: 0.0.0.0:10040 is not a loopback \
             address: any peer policy_server.allow lets in can ask about any client and feed \
             greylisting; prefer a loopback address or a unix socket\n\
             mxguard: {name}: warning: metrics.listen: [::]:9425 is not a loopback address, but \
             metrics.allow lets only this host in: add your Prometheus server's address to \
             metrics.allow\n"
        )
    );
    // Loopback listeners, or metrics open to a chosen peer: no warning.
    std::fs::write(
        &file,
        "[policy_server]\nlisten = \"127.0.0.1:10040\"\n\
         [metrics]\nlisten = \"0.0.0.0:9425\"\nallow = [\"192.0.2.9\"]\n",
    )
    .unwrap();
    let out = mxguard(&["config", "check", name]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
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
