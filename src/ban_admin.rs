//! `mxguard ban list | add IP [--for D] | remove IP`: the administrator's
//! hand on the ban list. With the memory backend, a running server is
//! asked through the control socket (it holds the state); without one, the
//! saved state file is edited. With Redis, the shared store is used
//! directly, so a ban added on one host holds on every host at once.

use crate::abuse::bans::{self, Bans};
use crate::config::{Backend, Config};
use crate::control::AdminError;
use crate::log::Logger;
use crate::state::{State, Store};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the administrator asked.
#[derive(Debug, Clone)]
pub enum Request {
    List,
    Add { client: IpAddr, length: Duration },
    Remove { client: IpAddr },
}

/// Carries out `request`; the text to print.
pub async fn run(config: Arc<Config>, request: Request) -> Result<String, AdminError> {
    if let Request::Add { client, .. } = &request {
        // The server also knows the exception list; this is what the
        // configuration alone says.
        if config
            .relay
            .trusted_networks
            .iter()
            .any(|n| n.contains(*client))
        {
            return Err(AdminError::Exempt(*client));
        }
    }
    if config.state.backend == Backend::Memory {
        let line = match &request {
            Request::List => "ban list".to_string(),
            Request::Add { client, length } => format!("ban add {client} {}", length.as_secs()),
            Request::Remove { client } => format!("ban remove {client}"),
        };
        if let Some(answer) = crate::control::ask_server(&config.spool.dir, line).await? {
            return Ok(answer);
        }
    }
    // No server holds the memory state, or the store is Redis.
    // The ban is logged where the server logs, for the report and fail2ban.
    let log = Logger::open(&config.log).map_err(AdminError::Log)?;
    let log = Arc::new(log);
    let state = State::closed(Store::open(&config)?, log.clone());
    let state = Arc::new(state);
    let bans = Bans::new(config.clone(), state.clone(), log);
    let text = match request {
        Request::List => bans::list(&state.store)
            .await?
            .iter()
            .map(|b| bans::describe(b) + "\n")
            .collect(),
        Request::Add { client, length } => {
            let ban = bans
                .ban(client, Some(length), "manual")
                .await
                .map_err(|_| AdminError::Unavailable)?;
            bans::describe(&ban) + "\n"
        }
        Request::Remove { client } => {
            bans.unban(client)
                .await
                .map_err(|_| AdminError::Unavailable)?;
            String::new()
        }
    };
    state.store.save()?;
    Ok(text.trim_end().to_string())
}
