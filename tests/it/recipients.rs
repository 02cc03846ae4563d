//! The recipient table: unknown users refused at RCPT, the file reloaded on
//! change without restart, a broken file keeping the last good table.

use crate::harness::*;

#[tokio::test]
async fn table_refuses_unknown_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("recipients");
    std::fs::write(&table, "alice@example.test\n@catchall.test\n").unwrap();
    let mx = Mxguard::start(
        dir.path(),
        "[relay]\ndomains = [\"example.test\", \"catchall.test\"]\n[recipients]\ntable = \"recipients\"\n",
    );
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        c.cmd("RCPT TO:<Alice@Example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<anyone@catchall.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.test>").await,
        "550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown\r\n"
    );
    let line = mx.wait_log(&["event=reject", "to=<bob@example.test>"]);
    assert!(
        line.contains("stage=rcpt check=recipient_table action=reject"),
        "{line}"
    );

    // Edited while running: the next RCPT sees the new table.
    std::fs::write(&table, "alice@example.test\nbob@example.test\n").unwrap();
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(c
        .cmd("RCPT TO:<x@catchall.test>")
        .await
        .starts_with("550 5.1.1 "));
    mx.wait_log(&["event=file_reload", "key=recipients.table"]);

    // Broken: the last good table stays, and the log says why.
    std::fs::write(&table, "alice@example.test\nthis is not an address\n").unwrap();
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    let err = mx.wait_log(&["event=file_error", "key=recipients.table"]);
    assert!(err.contains("is neither an address nor @domain"), "{err}");
    assert!(err.contains("action=\"kept last good version\""), "{err}");
}
