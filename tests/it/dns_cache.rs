//! The answers mxguard keeps for its checks, against a real DNS server
//! (the fixture): an answer is reused for as long as its TTL says and no
//! longer, a name that does not exist for as long as its zone's negative
//! TTL. The server is stopped after the first round, so what a second
//! round finds came from what was kept. (That a failure is never kept:
//! the unit tests of `dns`.)

use crate::dns_fixture::DnsFixture;
use mxguard::config::checks::Dns as DnsConfig;
use mxguard::config::duration::HumanDuration;
use mxguard::dns::{Answer, Dns};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// A zone with answers of every kind the checks ask for, one of them with
/// a TTL of zero; its SOA makes "does not exist" last 60 seconds.
const ZONE: &str = "\
$ORIGIN cache.test.
@ 3600 IN SOA ns.cache.test. hostmaster.cache.test. 1 3600 600 86400 60
kept 3600 IN A 192.0.2.1
kept 3600 IN AAAA 2001:db8::1
kept 3600 IN TXT \"listed for spam\"
kept 3600 IN MX 10 mail.cache.test.
fleeting 0 IN A 192.0.2.2
";

fn resolver(fixture: &DnsFixture) -> Dns {
    let config = DnsConfig {
        nameservers: vec![fixture.addr],
        timeout: HumanDuration(Duration::from_millis(500)),
    };
    Dns::new(&config).expect("resolver for the fixture")
}

/// Everything the test asks, in one round.
async fn ask(dns: &Dns) -> Vec<String> {
    vec![
        format!("{:?}", dns.ipv4("kept.cache.test.").await),
        format!("{:?}", dns.addresses("KEPT.cache.test").await),
        format!("{:?}", dns.txt("kept.cache.test.").await),
        format!("{:?}", dns.mx("kept.cache.test").await),
        format!("{:?}", dns.ipv4("missing.cache.test.").await),
        format!("{:?}", dns.ipv4("fleeting.cache.test.").await),
    ]
}

#[tokio::test]
async fn answers_are_kept_for_their_ttl_and_asked_again_after_it() {
    let fixture = DnsFixture::with_zones(vec![("cache.test.".into(), ZONE.into())]);
    let dns = resolver(&fixture);
    let first = ask(&dns).await;
    assert_eq!(
        first,
        [
            format!("{:?}", Answer::Found(vec![Ipv4Addr::new(192, 0, 2, 1)])),
            format!(
                "{:?}",
                Answer::Found(vec![
                    IpAddr::from([192, 0, 2, 1]),
                    "2001:db8::1".parse::<IpAddr>().unwrap()
                ])
            ),
            format!("{:?}", Answer::Found(vec!["listed for spam".to_string()])),
            format!(
                "{:?}",
                Answer::Found(vec![(10u16, "mail.cache.test".to_string())])
            ),
            format!("{:?}", Answer::<Vec<Ipv4Addr>>::NotFound),
            format!("{:?}", Answer::Found(vec![Ipv4Addr::new(192, 0, 2, 2)])),
        ]
    );

    drop(fixture);
    let second = ask(&dns).await;
    // Kept (the upper-case name is the same name), except the answer whose
    // TTL was zero: asked again, of a server that is gone.
    assert_eq!(second[..5], first[..5]);
    assert!(second[5].starts_with("Failed("), "{second:?}");
}
