//! Abuse defense, in front of every other check: bans earned by offences
//! ([`bans`]), rate limits ([`rates`]), greylisting ([`greylist`]), the
//! pregreet memory and the tarpit's global cap. All state goes through the
//! [`State`] store, so a fleet shares it; the pipeline decides when to ask.

pub mod bans;
pub mod greylist;
pub mod rates;

use crate::config::Config;
use crate::log::Logger;
use crate::state::{State, Unavailable};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Abuse {
    pub state: Arc<State>,
    pub bans: bans::Bans,
    pub rates: rates::Rates,
    pub greylist: greylist::Greylist,
    config: Arc<Config>,
    /// One permit per tarpitted connection (`abuse.tarpit_max`).
    tarpit: Arc<Semaphore>,
}

impl Abuse {
    pub fn new(config: Arc<Config>, state: Arc<State>, log: Arc<Logger>) -> Abuse {
        Abuse {
            bans: bans::Bans::new(config.clone(), state.clone(), log.clone()),
            rates: rates::Rates::new(config.clone(), state.clone()),
            greylist: greylist::Greylist::new(config.clone(), state.clone(), log),
            tarpit: Arc::new(Semaphore::new(config.abuse.tarpit_max)),
            state,
            config,
        }
    }

    /// Whether `client` must pass the pregreet test now: it is on, and the
    /// client has not passed it within `abuse.greet_pass_ttl`.
    pub async fn must_wait_for_greeting(&self, client: IpAddr) -> Result<bool, Unavailable> {
        if self.config.abuse.greet_wait.0.is_zero() {
            return Ok(false);
        }
        Ok(self.state.get(&greet_key(client)).await?.is_none())
    }

    /// The client waited for the banner: remember it.
    pub async fn greeting_passed(&self, client: IpAddr) -> Result<(), Unavailable> {
        let ttl = self.config.abuse.greet_pass_ttl.0;
        if ttl.is_zero() {
            return Ok(());
        }
        self.state.put(&greet_key(client), "1", ttl).await
    }

    /// A tarpit slot, or `None` when `abuse.tarpit_max` are taken.
    pub fn enter_tarpit(&self) -> Option<OwnedSemaphorePermit> {
        self.tarpit.clone().try_acquire_owned().ok()
    }
}

fn greet_key(client: IpAddr) -> String {
    ["greet:", &client_id(client)].concat()
}

/// How the abuse defenses name a client: its IPv4 address, or the /64 of
/// its IPv6 address (one host usually owns a whole /64, and could rotate
/// through it to dodge a ban or a limit).
pub use crate::net::client_id;
