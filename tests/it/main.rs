//! The integration tests: the real binary over real sockets, with swaks and
//! Postfix's smtp-sink as peers (installed by `scripts/test`).

mod dns_fixture;
mod harness;

mod abuse;
mod authentication;
mod backup_mx;
mod checks;
mod config_cli;
mod content;
mod crash;
mod delivery;
mod dovecot;
mod downstream_features;
mod downstream_tls;
mod equivalence;
mod fake_milter;
mod filters;
mod fleet;
mod forwarded;
mod greylisting;
mod import;
mod layers;
mod lifecycle;
mod limits;
mod logging;
mod metrics;
mod milter;
mod milter_filters;
mod ownership;
mod policy_server;
mod postfix;
mod props;
mod proxy;
mod queue;
mod recipients;
mod redis_server;
mod relay;
mod report;
mod routes;
mod smuggling;
mod spamhaus;
mod spf_fronts;
mod spf_suite;
mod starttls;
mod swaks_e2e;
