//! The client against a fake milter in the test, on loopback TCP or a unix
//! socket: it reads packets and answers as each test scripts it.

use super::*;
use crate::milter::codec::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

const SECOND: Duration = Duration::from_secs(1);

fn timeouts() -> Timeouts {
    Timeouts {
        connect: SECOND,
        command: SECOND,
        content: SECOND,
    }
}

/// The milter's end of a session.
struct Fake<S> {
    stream: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Fake<S> {
    async fn packet(&mut self) -> (u8, Vec<u8>) {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.unwrap();
        let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut data).await.unwrap();
        let code = data.remove(0);
        (code, data)
    }

    /// The next packet, which must have this code.
    async fn expect(&mut self, code: u8) -> Vec<u8> {
        let (got, data) = self.packet().await;
        assert_eq!(char::from(got), char::from(code), "data {data:?}");
        data
    }

    async fn send(&mut self, code: u8, data: &[u8]) {
        let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(code);
        p.extend_from_slice(data);
        self.stream.write_all(&p).await.unwrap();
    }

    /// Answers the negotiation with version 6, these actions and flags.
    async fn negotiate(&mut self, actions: u32, protocol: u32) -> Vec<u8> {
        let offer = self.expect(b'O').await;
        let answer = [6, actions, protocol].map(u32::to_be_bytes).concat();
        self.send(b'O', &answer).await;
        offer
    }
}

/// A fake milter on loopback TCP running `script`, and its address.
async fn milter<F, Fut>(script: F) -> (Address, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Fake<tokio::net::TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(Fake { stream }).await;
    });
    (Address::Inet("127.0.0.1".into(), port), task)
}

const ALL: u32 = 0x1ff;

#[tokio::test]
async fn negotiation_offers_version_6_and_keeps_what_the_milter_asked_for() {
    let (addr, task) = milter(|mut m| async move {
        let offer = m
            .negotiate(ALL, SMFIP_NOHELO | SMFIP_NR_CONN | SMFIP_HDR_LEADSPC)
            .await;
        assert_eq!(
            offer,
            [6, SMFIF_ADDHDRS | SMFIF_CHGHDRS, OFFERED_PROTOCOL]
                .map(u32::to_be_bytes)
                .concat()
        );
        assert_eq!(OFFERED_PROTOCOL, 0x1f_ffff);
        // HELO is skipped: the next packet is MAIL.
        m.expect(b'M').await;
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), SMFIF_ADDHDRS | SMFIF_CHGHDRS)
        .await
        .unwrap();
    assert_eq!(conn.actions(), SMFIF_ADDHDRS | SMFIF_CHGHDRS);
    assert_eq!(conn.version(), 6);
    assert!(conn.skips(SMFIP_NOHELO));
    assert!(!conn.skips(SMFIP_NOMAIL));
    assert_ne!(conn.protocol() & SMFIP_HDR_LEADSPC, 0);
    assert_eq!(
        conn.step(&[], Command::Helo("client")).await.unwrap(),
        Response::Continue
    );
    let from = ["<a@example.com>".to_string()];
    assert_eq!(
        conn.step(&[], Command::Mail(&from)).await.unwrap(),
        Response::Continue
    );
    task.await.unwrap();
}

#[tokio::test]
async fn an_old_milter_is_taken_at_its_version_and_never_gets_data() {
    let (addr, task) = milter(|mut m| async move {
        m.expect(b'O').await;
        m.send(
            b'O',
            &[2u32, SMFIF_ADDHDRS, 0].map(u32::to_be_bytes).concat(),
        )
        .await;
        m.expect(b'N').await;
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), ALL).await.unwrap();
    assert_eq!(conn.version(), 2);
    assert!(conn.skips(SMFIP_NODATA));
    assert_eq!(
        conn.step(&[], Command::Data).await.unwrap(),
        Response::Continue
    );
    assert_eq!(
        conn.step(&[], Command::EndOfHeaders).await.unwrap(),
        Response::Continue
    );
    task.await.unwrap();
}

#[tokio::test]
async fn negotiation_refuses_version_1_and_flags_not_offered() {
    for answer in [[1u32, 0, 0], [6, 0, 0x20_0000]] {
        let (addr, _task) = milter(move |mut m| async move {
            m.expect(b'O').await;
            m.send(b'O', &answer.map(u32::to_be_bytes).concat()).await;
        })
        .await;
        let err = Connection::open(&addr, timeouts(), ALL)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, MilterError::Unexpected("negotiation", _)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_reject_at_rcpt_comes_back_with_its_macros_sent_first() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
        m.expect(b'C').await;
        m.send(b'c', b"").await;
        assert_eq!(m.expect(b'D').await, b"Ri\0ABC123\0");
        assert_eq!(m.expect(b'R').await, b"<x@example.com>\0");
        m.send(b'y', b"550 5.1.1 no such user\0").await;
        m.expect(b'R').await;
        m.send(b'r', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let connect = Command::Connect {
        hostname: "client.example",
        addr: Some("192.0.2.1:4000".parse().unwrap()),
    };
    assert_eq!(conn.step(&[], connect).await.unwrap(), Response::Continue);
    let macros = [("i".to_string(), "ABC123".to_string())];
    let rcpt = ["<x@example.com>".to_string()];
    assert_eq!(
        conn.step(&macros, Command::Rcpt(&rcpt)).await.unwrap(),
        Response::ReplyCode {
            code: 550,
            text: "550 5.1.1 no such user".into()
        }
    );
    assert_eq!(
        conn.step(&[], Command::Rcpt(&rcpt)).await.unwrap(),
        Response::Reject
    );
    task.await.unwrap();
}

/// An 8-bit body of `len` octets, in lines.
fn body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 80 == 79 {
                b'\n'
            } else {
                (i % 251) as u8 | 0x20
            }
        })
        .collect()
}

#[tokio::test]
async fn a_one_mebibyte_body_goes_in_chunks_of_at_most_64_kib() {
    let sent = body(1 << 20);
    let expected = sent.clone();
    let (addr, task) = milter(move |mut m| async move {
        m.negotiate(0, 0).await;
        assert_eq!(m.expect(b'L').await, b"Subject\0hi\0");
        m.send(b'c', b"").await;
        m.expect(b'N').await;
        m.send(b'c', b"").await;
        let mut got = Vec::new();
        loop {
            let (code, data) = m.packet().await;
            if code == b'E' {
                break;
            }
            assert_eq!(code, b'B');
            assert!(
                !data.is_empty() && data.len() <= BODY_CHUNK,
                "{}",
                data.len()
            );
            got.extend_from_slice(&data);
            m.send(b'c', b"").await;
        }
        assert_eq!(got, expected);
        m.send(b'a', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let fields = [("Subject".to_string(), b"hi".to_vec())];
    let mut replaced = Vec::new();
    let end = conn
        .message(&[], &fields, &sent[..], &mut replaced, 0)
        .await
        .unwrap();
    assert_eq!(end.response, Response::Accept);
    assert!(!end.body_replaced && end.modifications.is_empty());
    task.await.unwrap();
}

#[tokio::test]
async fn skip_stops_the_body() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, SMFIP_SKIP | SMFIP_NOHDRS).await;
        m.expect(b'N').await;
        m.send(b'c', b"").await;
        m.expect(b'B').await;
        m.send(b's', b"").await;
        m.expect(b'E').await;
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let fields = [("Subject".to_string(), b"not sent".to_vec())];
    let end = conn
        .message(&[], &fields, &body(300_000)[..], &mut Vec::new(), 0)
        .await
        .unwrap();
    assert_eq!(end.response, Response::Continue);
    task.await.unwrap();
}

#[tokio::test]
async fn skip_stops_the_header_fields() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, SMFIP_SKIP | SMFIP_NOBODY).await;
        m.expect(b'L').await;
        m.send(b's', b"").await;
        m.expect(b'N').await;
        m.send(b'c', b"").await;
        m.expect(b'E').await;
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let fields = [
        ("From".to_string(), b"a".to_vec()),
        ("To".to_string(), b"not sent".to_vec()),
    ];
    let end = conn
        .message(&[], &fields, &b""[..], &mut Vec::new(), 0)
        .await
        .unwrap();
    assert_eq!(end.response, Response::Continue);
    task.await.unwrap();
}

#[tokio::test]
async fn a_reject_in_the_header_ends_the_message_early() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
        m.expect(b'L').await;
        m.send(b't', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let fields = [
        ("From".to_string(), b"a".to_vec()),
        ("To".to_string(), b"b".to_vec()),
    ];
    let end = conn
        .message(&[], &fields, &b"body\r\n"[..], &mut Vec::new(), 0)
        .await
        .unwrap();
    assert_eq!(end, EndOfMessage::early(Response::Tempfail));
    task.await.unwrap();
}

#[tokio::test]
async fn progress_keeps_a_slow_end_of_message_alive_past_the_content_timeout() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOBODY)
            .await;
        assert_eq!(m.expect(b'D').await, b"E{msg_id}\0x\0");
        m.expect(b'E').await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            m.send(b'p', b"").await;
        }
        m.send(b'd', b"").await;
    })
    .await;
    let short = Timeouts {
        content: Duration::from_millis(150),
        ..timeouts()
    };
    let mut conn = Connection::open(&addr, short, 0).await.unwrap();
    let macros = [("{msg_id}".to_string(), "x".to_string())];
    let end = conn
        .message(&macros, &[], &b""[..], &mut Vec::new(), 0)
        .await
        .unwrap();
    assert_eq!(end.response, Response::Discard);
    task.await.unwrap();
}

#[tokio::test]
async fn a_silent_milter_times_out() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
        m.expect(b'H').await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    let short = Timeouts {
        command: Duration::from_millis(100),
        ..timeouts()
    };
    let mut conn = Connection::open(&addr, short, 0).await.unwrap();
    let err = conn.step(&[], Command::Helo("x")).await.unwrap_err();
    assert!(matches!(err, MilterError::Timeout("helo")), "{err}");
    assert_eq!(err.to_string(), "milter timeout at helo");
    task.await.unwrap();
}

#[tokio::test]
async fn a_milter_that_closes_or_garbles_is_an_error() {
    let (addr, _task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
        m.expect(b'H').await;
        m.send(b'Z', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let err = conn.step(&[], Command::Helo("x")).await.unwrap_err();
    assert!(
        matches!(
            err,
            MilterError::Protocol("helo", DecodeError::UnknownCode(b'Z'))
        ),
        "{err}"
    );

    let (addr, _task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let err = conn.step(&[], Command::Helo("x")).await.unwrap_err();
    assert!(
        matches!(
            err,
            MilterError::Closed("helo") | MilterError::Io("helo", _)
        ),
        "{err}"
    );
}

#[tokio::test]
async fn modifications_and_a_replaced_body_are_collected_at_the_end() {
    let actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_CHGBODY | SMFIF_QUARANTINE;
    let (addr, task) = milter(move |mut m| async move {
        m.negotiate(ALL, SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOBODY)
            .await;
        m.expect(b'E').await;
        m.send(b'h', b"X-Spam\0yes\0").await;
        m.send(b'p', b"").await;
        m.send(b'm', b"\0\0\0\x01Subject\0[SPAM] hi\0").await;
        m.send(b'+', b"<copy@example.com>\0").await;
        m.send(b'b', b"new body\r\n").await;
        m.send(b'b', b"second chunk\r\n").await;
        m.send(b'q', b"looks bad\0").await;
        m.send(b'e', b"<other@example.com>\0").await;
        m.send(b'-', b"<x@example.com>\0").await;
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), actions).await.unwrap();
    assert_eq!(conn.actions(), actions);
    let mut replaced = Vec::new();
    let end = conn
        .message(&[], &[], &b"old\r\n"[..], &mut replaced, 1000)
        .await
        .unwrap();
    assert_eq!(end.response, Response::Continue);
    assert_eq!(
        end.modifications,
        [
            Modification::AddHeader {
                name: "X-Spam".into(),
                value: b"yes".to_vec()
            },
            Modification::ChangeHeader {
                index: 1,
                name: "Subject".into(),
                value: b"[SPAM] hi".to_vec()
            },
            Modification::AddRcpt {
                addr: "<copy@example.com>".into(),
                args: None
            },
        ]
    );
    assert!(end.body_replaced);
    assert_eq!(replaced, b"new body\r\nsecond chunk\r\n");
    assert_eq!(end.quarantine.as_deref(), Some("looks bad"));
    assert_eq!(end.refused, ["change sender", "delete recipient"]);
    task.await.unwrap();
}

#[tokio::test]
async fn a_replaced_body_over_the_limit_is_an_error() {
    let (addr, _task) = milter(|mut m| async move {
        m.negotiate(SMFIF_CHGBODY, SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOBODY)
            .await;
        m.expect(b'E').await;
        m.send(b'b', &[b'x'; 600]).await;
        m.send(b'b', &[b'x'; 600]).await;
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), SMFIF_CHGBODY)
        .await
        .unwrap();
    let err = conn
        .message(&[], &[], &b""[..], &mut Vec::new(), 1000)
        .await
        .unwrap_err();
    assert!(matches!(err, MilterError::ReplacedTooLarge(1000)), "{err}");
}

#[tokio::test]
async fn steps_the_milter_does_not_answer_are_not_waited_for() {
    let no_reply = SMFIP_NR_CONN | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA;
    let (addr, task) = milter(move |mut m| async move {
        m.negotiate(0, no_reply).await;
        m.expect(b'C').await;
        m.expect(b'H').await;
        m.send(b'c', b"").await;
        m.expect(b'T').await;
        m.expect(b'L').await;
        m.expect(b'L').await;
        m.expect(b'N').await;
        m.expect(b'B').await;
        m.expect(b'B').await;
        m.expect(b'E').await;
        m.send(b'a', b"").await;
        m.expect(b'A').await;
        m.expect(b'Q').await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    let connect = Command::Connect {
        hostname: "unknown",
        addr: None,
    };
    assert_eq!(conn.step(&[], connect).await.unwrap(), Response::Continue);
    assert_eq!(
        conn.step(&[], Command::Helo("x")).await.unwrap(),
        Response::Continue
    );
    assert_eq!(
        conn.step(&[], Command::Data).await.unwrap(),
        Response::Continue
    );
    let fields = [
        ("A".to_string(), b"1".to_vec()),
        ("B".to_string(), b"2".to_vec()),
    ];
    let end = conn
        .message(&[], &fields, &body(BODY_CHUNK + 10)[..], &mut Vec::new(), 0)
        .await
        .unwrap();
    assert_eq!(end.response, Response::Accept);
    conn.abort().await.unwrap();
    conn.quit().await;
    task.await.unwrap();
}

#[tokio::test]
async fn abort_and_quit_are_never_waited_for() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
        m.expect(b'A').await;
        m.expect(b'Q').await;
        // Silent until the client has closed.
        let mut rest = Vec::new();
        m.stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    })
    .await;
    let slow = Timeouts {
        command: Duration::from_secs(30),
        ..timeouts()
    };
    let mut conn = Connection::open(&addr, slow, 0).await.unwrap();
    let quick = tokio::time::timeout(SECOND, async {
        conn.abort().await.unwrap();
        conn.quit().await;
    });
    quick.await.expect("abort and quit waited for an answer");
    task.await.unwrap();
}

#[tokio::test]
async fn a_milter_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("milter.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut m = Fake { stream };
        m.negotiate(0, 0).await;
        m.expect(b'H').await;
        m.send(b'a', b"").await;
    });
    let addr = Address::parse(&format!("unix:{}", path.display())).unwrap();
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    assert_eq!(
        conn.step(&[], Command::Helo("x")).await.unwrap(),
        Response::Accept
    );
    task.await.unwrap();
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let addr = Address::Inet("127.0.0.1".into(), port);
    let err = Connection::open(&addr, timeouts(), 0).await.err().unwrap();
    assert!(matches!(err, MilterError::Connect(_)), "{err}");
}

#[test]
fn addresses_in_postfix_and_sendmail_forms() {
    let inet = |h: &str, p| Ok(Address::Inet(h.into(), p));
    assert_eq!(
        Address::parse("inet:127.0.0.1:11332"),
        inet("127.0.0.1", 11332)
    );
    assert_eq!(
        Address::parse("inet:localhost:8891"),
        inet("localhost", 8891)
    );
    assert_eq!(Address::parse("inet:[::1]:11332"), inet("::1", 11332));
    assert_eq!(Address::parse("inet6:[::1]:11332"), inet("::1", 11332));
    assert_eq!(Address::parse("inet6:::1:11332"), inet("::1", 11332));
    assert_eq!(
        Address::parse("inet:11332@127.0.0.1"),
        inet("127.0.0.1", 11332)
    );
    assert_eq!(Address::parse("inet6:11332@[::1]"), inet("::1", 11332));
    assert_eq!(Address::parse("INET:11332@host"), inet("host", 11332));
    assert_eq!(
        Address::parse("unix:/run/rspamd/milter.sock"),
        Ok(Address::Unix("/run/rspamd/milter.sock".into()))
    );
    assert_eq!(
        Address::parse("local:/var/run/x"),
        Ok(Address::Unix("/var/run/x".into()))
    );
}

#[test]
fn addresses_refused() {
    for bad in ["", "/run/x.sock", "tcp:1.2.3.4:5", "unix:", "inet:1.2.3.4"] {
        assert!(Address::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Address::parse("inet::25"),
        Err(AddressError::NoHost("inet::25".into()))
    );
    assert_eq!(
        Address::parse("inet:[]:25"),
        Err(AddressError::NoHost("inet:[]:25".into()))
    );
    for port in ["inet:h:0", "inet:h:65536", "inet:h:x", "inet:@h"] {
        assert_eq!(Address::parse(port), Err(AddressError::Port(port.into())));
    }
}

#[test]
fn addresses_display_as_postfix_writes_them() {
    for text in ["inet:127.0.0.1:11332", "inet:[::1]:25", "unix:/run/m.sock"] {
        assert_eq!(Address::parse(text).unwrap().to_string(), text);
    }
}

#[tokio::test]
async fn a_milter_asking_for_endless_changes_is_an_error_not_a_memory_sink() {
    let (addr, _task) = milter(|mut m| async move {
        m.negotiate(SMFIF_ADDHDRS, SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOBODY)
            .await;
        m.expect(b'E').await;
        for _ in 0..=MAX_CHANGES {
            m.send(b'h', b"X-More\0yes\0").await;
        }
        m.send(b'c', b"").await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), SMFIF_ADDHDRS)
        .await
        .unwrap();
    let mut replaced = Vec::new();
    let end = conn.message(&[], &[], &b""[..], &mut replaced, 0).await;
    assert!(matches!(end, Err(MilterError::TooManyChanges)), "{end:?}");
}

#[tokio::test]
async fn no_reply_is_awaited_for_abort_and_quit_even_without_nr_flags() {
    let (addr, task) = milter(|mut m| async move {
        m.negotiate(0, 0).await;
        m.expect(b'A').await;
        m.expect(b'Q').await;
    })
    .await;
    let mut conn = Connection::open(&addr, timeouts(), 0).await.unwrap();
    // The fake answers nothing: a wait would be a timeout error.
    conn.abort().await.unwrap();
    conn.quit().await;
    task.await.unwrap();
}
