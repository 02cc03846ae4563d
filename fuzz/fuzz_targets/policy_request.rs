//! Any bytes as a policy connection: requests and at most one error, never
//! a panic, the same whether the bytes come at once or in pieces of any
//! size; an answer built from any request is one line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::policy_server::protocol::{Answer, Decoder, ProtocolError, Request};
use mxguard::smtp::reply::Reply;

fn decode(input: &[u8], piece: usize) -> (Vec<Request>, Option<ProtocolError>) {
    let mut decoder = Decoder::new();
    let mut requests = Vec::new();
    for chunk in input.chunks(piece) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match decoder.decode(rest) {
                Ok((used, request)) => {
                    assert!(used > 0 && used <= rest.len());
                    assert!(request.is_some() || used == rest.len());
                    requests.extend(request);
                    rest = &rest[used..];
                }
                Err(e) => return (requests, Some(e)),
            }
        }
    }
    (requests, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len().max(1));
    let pieces = decode(input, usize::from(first).max(1));
    assert_eq!(whole, pieces);
    for request in &whole.0 {
        for text in [&request.helo_name, &request.sender, &request.recipient] {
            let reply = Reply::new(550, "5.7.1", text.as_str());
            for answer in [Answer::Refuse(reply.clone()), Answer::DeferIfPermit(reply)] {
                let wire = answer.encode();
                assert!(wire.starts_with("action="));
                assert_eq!(wire.find('\n'), Some(wire.len() - 2));
            }
        }
    }
});
