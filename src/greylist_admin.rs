//! `mxguard greylist list | pass CLIENT|NETWORK`: the triplets waiting for
//! their retry, and letting a waiting sender's network through now (for
//! `greylist.allow_for`). With the memory backend, a running server is
//! asked through its control socket (it holds the state); without one,
//! the saved state file is used. With Redis, the shared store is used
//! directly, so every host of a fleet lets the network through at once.

use crate::abuse::greylist::{self, Greylist};
use crate::config::{Backend, Config};
use crate::control::AdminError;
use crate::log::Logger;
use crate::state::{State, Store};
use std::net::IpAddr;
use std::sync::Arc;

/// What the administrator asked.
#[derive(Debug, Clone)]
pub enum Request {
    List,
    Pass { client: IpAddr },
}

/// Carries out `request`; the text to print.
pub async fn run(config: Arc<Config>, request: Request) -> Result<String, AdminError> {
    if config.state.backend == Backend::Memory {
        let line = match &request {
            Request::List => "greylist list".to_string(),
            Request::Pass { client } => format!("greylist pass {client}"),
        };
        if let Some(answer) = crate::control::ask_server(&config.spool.dir, line).await? {
            return Ok(answer);
        }
    }
    // No server holds the memory state, or the store is Redis; what is
    // done is logged where the server logs.
    let log = Arc::new(Logger::open(&config.log).map_err(AdminError::Log)?);
    let state = Arc::new(State::closed(Store::open(&config)?, log.clone()));
    let text = match request {
        Request::List => {
            let now = crate::time::unix_now();
            let list = greylist::waiting(&state.store).await?;
            list.iter().map(|w| w.describe(now) + "\n").collect()
        }
        Request::Pass { client } => {
            let greylist = Greylist::new(config.clone(), state.clone(), log);
            let net = greylist
                .let_through(client)
                .await
                .map_err(|_| AdminError::Unavailable)?;
            format!("{net} passes greylisting\n")
        }
    };
    state.store.save()?;
    Ok(text.trim_end().to_string())
}
