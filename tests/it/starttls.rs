//! STARTTLS: offered with `[tls]`, plaintext pipelined after STARTTLS is
//! never answered, the client must EHLO again, and swaks can deliver over it.
//! Certificates (seen by `openssl s_client`): a certbot renewal is served
//! without a restart, after `tls reload` or the periodic check; a broken
//! renewal keeps the certificate in use; `[[tls.certificate]]` is chosen by
//! SNI; a key that is not its certificate's is a configuration error.

use crate::harness::*;
use rustls::pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls_config(dir: &std::path::Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[relay]\ndomains = [\"example.test\"]\n"
        .to_string()
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &tls_config(dir.path()));
    let mut c = Client::connect(mx.addr).await;
    c.reply().await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.contains("250-STARTTLS\r\n") || ehlo.contains("250 STARTTLS\r\n"),
        "{ehlo}"
    );
    // The injection: a command in the same packet as STARTTLS.
    c.send(b"STARTTLS\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await, "220 2.0.0 Ready to start TLS\r\n");
    let stream = c.into_stream();
    let connector =
        tokio_rustls::TlsConnector::from(mxguard::tls::client::any_certificate_config());
    let name = rustls::pki_types::ServerName::try_from("mx.test").unwrap();
    let mut tls = connector
        .connect(name, stream)
        .await
        .expect("TLS handshake");
    // The first thing we read after the handshake answers what we send
    // now, not the injected NOOP; and the session starts over.
    tls.write_all(b"MAIL FROM:<a@client.test>\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
    tls.write_all(b"EHLO client.test\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    let ehlo = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ehlo.starts_with("250-mx.test\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    tls.write_all(b"STARTTLS\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "554 5.5.1 Error: TLS already active\r\n"
    );
    tls.write_all(b"QUIT\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "221 2.0.0 Bye\r\n");
    let line = mx.wait_log(&["event=disconnect", "tls="]);
    assert!(line.contains("TLSv1_3"), "{line}");
    assert!(!mx
        .log_lines()
        .iter()
        .any(|l| l.contains("check=protocol") && l.contains("NOOP")));
}

#[test]
fn swaks_delivers_over_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &(tls_config(dir.path()) + &smtp_downstream(sink.port)),
    );
    let out = swaks(
        mx.addr,
        &["--tls", "--from", "a@client.test", "--to", "b@example.test"],
    );
    assert!(out.contains("<~  250 2.0.0 Ok: queued as"), "{out}");
    mx.wait_log(&["event=delivery", "status=sent"]);
    let m = &sink.messages()[0];
    assert!(m.contains("(mxguard) with ESMTPS id"), "{m}");
}

#[test]
fn delivery_uses_starttls_when_the_downstream_offers_it() {
    let outer = tempfile::tempdir().unwrap();
    let (down_dir, front_dir) = (outer.path().join("downstream"), outer.path().join("front"));
    std::fs::create_dir_all(&down_dir).unwrap();
    std::fs::create_dir_all(&front_dir).unwrap();
    let downstream = Mxguard::start(
        &down_dir,
        &(tls_config(&down_dir) + "[downstream]\ntargets = [\"maildir:Maildir\"]\n"),
    );
    let front = Mxguard::start(&front_dir, &relay_to(downstream.addr.port()));
    let out = swaks(
        front.addr,
        &["--from", "a@client.test", "--to", "b@example.test"],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = front.wait_log(&["event=delivery", "status=sent"]);
    assert!(line.contains(" tls=TLSv1_3 "), "{line}");
    let line = downstream.wait_log(&["event=disconnect", "helo=mx.test"]);
    assert!(line.contains("tls=\"TLSv1_3"), "{line}");
    let maildir = down_dir.join("Maildir/new");
    let file = wait_for("the message in the downstream's Maildir", || {
        std::fs::read_dir(&maildir)
            .ok()?
            .flatten()
            .next()
            .map(|e| e.path())
    });
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.starts_with(
            "Received: from mx.test ([127.0.0.1])\r\n\tby mx.test (mxguard) with ESMTPS id "
        ),
        "{text}"
    );
}

/// A self-signed certificate for `names` with common name `cn`: its PEM
/// files `stem.crt` and `stem.key` in `dir`.
fn certificate(dir: &Path, stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let paths = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    paths
}

/// What certbot does at a renewal: new files `archive/mx.test/*N.pem`, and
/// the `live/mx.test/*.pem` symlinks re-pointed at them (each renamed over
/// the old one). With `key_of`, the key is that other certificate's.
fn certbot_renew(le: &Path, n: u32, cn: &str, key_of: Option<&str>) {
    let archive = le.join("archive/mx.test");
    let (cert, mut key) = certificate(&archive, &format!("new{n}"), cn, &["mx.test"]);
    if let Some(other) = key_of {
        key = certificate(&archive, "other", other, &["mx.test"]).1;
    }
    std::fs::rename(cert, archive.join(format!("fullchain{n}.pem"))).unwrap();
    std::fs::rename(key, archive.join(format!("privkey{n}.pem"))).unwrap();
    let live = le.join("live/mx.test");
    std::fs::create_dir_all(&live).unwrap();
    for link in ["fullchain", "privkey"] {
        let tmp = live.join(format!("{link}.pem.new"));
        std::os::unix::fs::symlink(format!("../../archive/mx.test/{link}{n}.pem"), &tmp).unwrap();
        std::fs::rename(&tmp, live.join(format!("{link}.pem"))).unwrap();
    }
}

/// `[tls]` on certbot's live/ files under `le`, checked every `interval`.
fn certbot_config(interval: &str) -> String {
    format!(
        "[tls]\ncert = \"le/live/mx.test/fullchain.pem\"\nkey = \"le/live/mx.test/privkey.pem\"\n\
         check_interval = \"{interval}\"\n"
    )
}

/// The subject common name of the certificate `openssl s_client -starttls
/// smtp` is served, asking for `name` by SNI (or for no name).
fn served_cn(addr: std::net::SocketAddr, name: Option<&str>) -> String {
    let mut s_client = Command::new("openssl");
    s_client.args([
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        &addr.to_string(),
    ]);
    match name {
        Some(name) => s_client.args(["-servername", name]),
        None => s_client.arg("-noservername"),
    };
    let out = s_client
        .stdin(Stdio::null())
        .output()
        .expect("openssl (Debian package openssl) must be installed: run scripts/test");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = x509.stdin.take().unwrap();
        stdin.write_all(&out.stdout).unwrap();
    }
    let subject = x509.wait_with_output().unwrap();
    let subject = String::from_utf8_lossy(&subject.stdout);
    subject
        .trim()
        .strip_prefix("subject=CN=")
        .unwrap_or_else(|| {
            panic!(
                "no subject in what s_client printed: {subject}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// STARTTLS on a session that has said EHLO; the TLS stream.
async fn starttls(mut c: Client) -> Tls {
    assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready to start TLS\r\n");
    let connector =
        tokio_rustls::TlsConnector::from(mxguard::tls::client::any_certificate_config());
    let name = rustls::pki_types::ServerName::try_from("mx.test").unwrap();
    connector
        .connect(name, c.into_stream())
        .await
        .expect("TLS handshake")
}

/// Sends a command over TLS; the reply (one read: these are one line).
async fn tls_cmd(tls: &mut Tls, line: &str) -> String {
    tls.write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The end-entity certificate a TLS session was served.
fn peer_certificate(tls: &Tls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn pem_certificate(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[tokio::test]
async fn a_certbot_renewal_is_served_after_tls_reload_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let le = dir.path().join("le");
    certbot_renew(&le, 1, "first", None);
    let mx = Mxguard::start(dir.path(), &certbot_config("1h"));
    let pid = mx.pid();
    assert_eq!(served_cn(mx.addr, None), "first");
    // One session in TLS before the renewal, one that upgrades after it.
    let mut before = starttls(Client::greet(mx.addr).await).await;
    let first = pem_certificate(&le.join("archive/mx.test/fullchain1.pem"));
    assert_eq!(peer_certificate(&before), first);
    let plain = Client::greet(mx.addr).await;

    certbot_renew(&le, 2, "second", None);
    let answer = mx.control("tls reload");
    assert_eq!(answer, "ok\ntls ok not_after=4096-01-01T00:00:00Z\n");
    let cert = dir.path().join("le/live/mx.test/fullchain.pem");
    mx.wait_log(&[
        "event=tls_reload status=ok name=tls",
        &format!(" cert={} not_after=4096-01-01T00:00:00Z", cert.display()),
    ]);
    assert_eq!(served_cn(mx.addr, None), "second");
    assert_eq!(served_cn(mx.addr, Some("mx.test")), "second");

    // The same process, started once.
    assert_eq!(mx.pid(), pid);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        mx.log_lines()
            .iter()
            .filter(|l| l.contains("event=listen"))
            .count(),
        1
    );
    // The session in TLS from before goes on with its certificate.
    assert_eq!(tls_cmd(&mut before, "NOOP").await, "250 2.0.0 Ok\r\n");
    assert_eq!(peer_certificate(&before), first);
    assert_eq!(tls_cmd(&mut before, "QUIT").await, "221 2.0.0 Bye\r\n");
    // The one connected before and upgraded after gets the new one.
    let after = starttls(plain).await;
    assert_eq!(
        peer_certificate(&after),
        pem_certificate(&le.join("archive/mx.test/fullchain2.pem"))
    );
    // Nothing changed since: nothing to do, nothing logged.
    assert_eq!(mx.control("tls reload"), "ok\ntls unchanged\n");
    assert_eq!(mx.wait_log_count(&["event=tls_reload"], 1).len(), 1);
}

#[test]
fn the_periodic_check_serves_a_renewal_and_keeps_the_old_certificate_when_it_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let le = dir.path().join("le");
    certbot_renew(&le, 1, "first", None);
    let mx = Mxguard::start(dir.path(), &certbot_config("1s"));
    assert_eq!(served_cn(mx.addr, None), "first");

    // A renewal whose key is another certificate's.
    certbot_renew(&le, 2, "second", Some("stranger"));
    let live = dir.path().join("le/live/mx.test");
    let error = format!(
        "error=\"tls.key: {} does not match tls.cert {}\"",
        live.join("privkey.pem").display(),
        live.join("fullchain.pem").display()
    );
    let line = mx.wait_log(&["event=tls_reload status=failed name=tls", &error]);
    assert!(
        line.ends_with(" action=\"kept the certificate in use\""),
        "{line}"
    );
    assert_eq!(served_cn(mx.addr, None), "first");
    let answer = mx.control("tls reload");
    assert!(
        answer.starts_with("ok\ntls failed: tls.key: ") && answer.contains(" does not match "),
        "{answer}"
    );
    assert_eq!(served_cn(mx.addr, None), "first");

    // The next renewal is good: the periodic check finds it.
    certbot_renew(&le, 3, "third", None);
    mx.wait_log(&["event=tls_reload status=ok name=tls"]);
    assert_eq!(served_cn(mx.addr, None), "third");
}

#[test]
fn the_certificate_is_chosen_by_the_name_the_client_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "default", "default", &["mx.test"]);
    certificate(dir.path(), "a", "a", &["a.test"]);
    certificate(dir.path(), "b", "b", &["b.test", "*.wild.test"]);
    let config = "[tls]\ncert = \"default.crt\"\nkey = \"default.key\"\n\
                  [[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"a.crt\"\nkey = \"a.key\"\n\
                  [[tls.certificate]]\nnames = [\"b.test\", \"*.wild.test\"]\ncert = \"b.crt\"\nkey = \"b.key\"\n";
    let mx = Mxguard::start(dir.path(), config);
    for (name, want) in [
        (Some("a.test"), "a"),
        (Some("A.Test"), "a"),
        (Some("b.test"), "b"),
        (None, "default"),
        (Some("mx.test"), "default"),
        (Some("other.test"), "default"),
        (Some("x.wild.test"), "b"),
        (Some("y.x.wild.test"), "default"),
        (Some("wild.test"), "default"),
    ] {
        assert_eq!(served_cn(mx.addr, name), want, "for {name:?}");
    }
    assert_eq!(
        mx.control("tls reload"),
        "ok\ntls unchanged\ntls.certificate[0] unchanged\ntls.certificate[1] unchanged\n"
    );

    // Without [tls] cert and key, the first [[tls.certificate]] is the
    // default.
    let other = dir.path().join("only");
    std::fs::create_dir_all(&other).unwrap();
    let config = "[[tls.certificate]]\nnames = [\"a.test\"]\ncert = \"../a.crt\"\nkey = \"../a.key\"\n\
                  [[tls.certificate]]\nnames = [\"b.test\"]\ncert = \"../b.crt\"\nkey = \"../b.key\"\n";
    let mx = Mxguard::start(&other, config);
    assert_eq!(served_cn(mx.addr, None), "a");
    assert_eq!(served_cn(mx.addr, Some("b.test")), "b");
    assert_eq!(served_cn(mx.addr, Some("c.test")), "a");
}

#[test]
fn a_key_that_is_not_its_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path(), "a", "a", &["a.test"]);
    let (b_cert, b_key) = certificate(dir.path(), "b", "b", &["b.test"]);
    let file = dir.path().join("mxguard.toml");
    let check = |toml: &str| {
        std::fs::write(&file, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        check("[tls]\ncert = \"a.crt\"\nkey = \"b.key\"\n"),
        (
            Some(78),
            format!(
                "mxguard: {}: tls.key: {} does not match tls.cert {}\n",
                file.display(),
                b_key.display(),
                cert.display()
            )
        )
    );
    assert_eq!(
        check(
            "[tls]\ncert = \"a.crt\"\nkey = \"a.key\"\n\
             [[tls.certificate]]\nnames = [\"b.test\"]\ncert = \"b.crt\"\nkey = \"b.key\"\n\
             [[tls.certificate]]\nnames = [\"c.test\"]\ncert = \"b.crt\"\nkey = \"a.key\"\n"
        ),
        (
            Some(78),
            format!(
                "mxguard: {}: tls.certificate[1].key: {} does not match tls.certificate[1].cert {}\n",
                file.display(),
                dir.path().join("a.key").display(),
                b_cert.display()
            )
        )
    );
    // The same pairs, right, pass.
    let (code, err) = check(
        "[tls]\ncert = \"a.crt\"\nkey = \"a.key\"\n\
         [[tls.certificate]]\nnames = [\"b.test\"]\ncert = \"b.crt\"\nkey = \"b.key\"\n",
    );
    assert_eq!((code, err.as_str()), (Some(0), ""));
    // And the server refuses to start with a wrong one.
    std::fs::write(
        &file,
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[tls]\ncert = \"a.crt\"\nkey = \"b.key\"\n",
    )
    .unwrap();
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_mxguard"))
            .args(["serve", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_for("mxguard to refuse to start", || {
        server.0.try_wait().unwrap()
    });
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains(&format!(
            "tls.key: {} does not match tls.cert {}",
            b_key.display(),
            cert.display()
        )),
        "{err}"
    );
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_serves_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let le = dir.path().join("le");
    certbot_renew(&le, 1, "first", None);
    let mx = Mxguard::start(dir.path(), &certbot_config("1h"));
    let pid = mx.pid();
    assert_eq!(served_cn(mx.addr, None), "first");
    certbot_renew(&le, 2, "second", None);
    mx.signal(libc::SIGHUP);
    mx.wait_log(&["event=reload", "status=ok"]);
    mx.wait_log(&["event=tls_reload status=ok name=tls"]);
    assert_eq!(served_cn(mx.addr, None), "second");
    assert_eq!(mx.pid(), pid);
}
