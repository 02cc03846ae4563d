//! Any bytes as an SPF record, and as macro strings: parsed or refused,
//! never a panic; an expanded name at most 253 octets; and a record that
//! parses evaluated to a verdict in a bounded number of rounds, every TXT
//! lookup answering with the record itself (so `include` and `redirect`
//! recurse into it), every other lookup finding something.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::spf::eval::Step;
use mxguard::spf::macros::{Context, MacroString, Values};
use mxguard::spf::record::Record;
use mxguard::spf::{Answer, Evaluation, Lookup, Params, Query};

fuzz_target!(|data: &[u8]| {
    let _ = Record::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        for context in [Context::Domain, Context::Modifier, Context::Explanation] {
            if let Ok(spec) = MacroString::parse(text, context) {
                let values = Values {
                    sender: "a.b-c@example.com",
                    local: "a.b-c",
                    sender_domain: "example.com",
                    domain: "example.com",
                    ip: "2001:db8::1".parse().unwrap(),
                    ptr: "mail.example.com",
                    helo: "mail.example.com",
                    receiver: "mx.test",
                    now: 1,
                };
                assert!(spec.expand_name(&values).len() <= 253);
            }
        }
        let _ = MacroString::domain_spec(text);
    }
    let mut record = b"v=spf1 ".to_vec();
    record.extend_from_slice(data);
    let mut evaluation = Evaluation::new(Params {
        ip: "192.0.2.1".parse().unwrap(),
        sender: "a@example.com".into(),
        helo: "mail.example.com".into(),
        receiver: "mx.test".into(),
        now: 1,
    });
    let mut step = evaluation.start();
    for _ in 0..64 {
        match step {
            Step::Done(verdict) => {
                assert!(verdict.explanation.is_none_or(|e| e.is_ascii()));
                return;
            }
            Step::Ask(queries) => {
                assert!(!queries.is_empty() && queries.len() <= 10);
                let answers = queries
                    .iter()
                    .map(|q| match q {
                        Query::Txt(_) => Answer::Txt(Lookup::Found(vec![record.clone()])),
                        Query::A(_) => {
                            Answer::Addresses(Lookup::Found(vec!["192.0.2.1".parse().unwrap()]))
                        }
                        Query::Aaaa(_) => Answer::Addresses(Lookup::NotFound),
                        Query::Mx(_) => Answer::Mx(Lookup::Found(vec!["mx.example.com".into()])),
                        Query::Ptr(_) => Answer::Ptr(Lookup::Found(vec!["example.com".into()])),
                    })
                    .collect();
                step = evaluation.resume(answers);
            }
        }
    }
    panic!("no verdict after 64 rounds");
});
