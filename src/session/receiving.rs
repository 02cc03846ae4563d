//! A message being received: each decoded DATA piece goes through the
//! [`Intake`] and into the spool file, on a blocking thread (the scanning,
//! the DKIM body hashing and the write all stay off the async threads; a
//! small last piece, which is only scanned, is scanned in place), so a
//! session holds at most one piece of the message in memory.

use crate::message::intake::{Finished, Flaw, Intake};
use crate::spool::Pending;

/// The longest last piece scanned on the session's own thread (the
/// header checks, the DKIM body hash: tens of microseconds); a longer one
/// goes to a blocking thread like every other piece.
const INLINE_LAST_PIECE: usize = 32 * 1024;

/// Why a received message cannot be queued.
#[derive(Debug)]
pub enum ReceiveError {
    /// The spool could not be written: a temporary failure.
    Spool(String),
    /// The content is refused.
    Flaw(Flaw),
}

/// A message whose content has all been taken: what is still to be
/// written (`tail`) and what the intake found.
pub struct Received {
    pub pending: Pending,
    pub tail: Vec<u8>,
    pub finished: Finished,
}

pub struct Receiving {
    pending: Option<Pending>,
    intake: Option<Intake>,
    error: Option<String>,
}

impl Receiving {
    pub fn new(pending: Pending, intake: Intake) -> Receiving {
        Receiving {
            pending: Some(pending),
            intake: Some(intake),
            error: None,
        }
    }

    /// Takes the next decoded piece. After a spool error or a refused
    /// content, pieces are read and dropped (the message is refused at the
    /// end, once the client has sent it all).
    pub async fn take(&mut self, piece: Vec<u8>) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some(intake) = self.intake.take() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || absorb(pending, intake, &piece)).await;
        match done {
            Ok((pending, intake, written)) => {
                self.intake = Some(intake);
                match written {
                    Ok(()) => self.pending = pending,
                    Err(e) => self.error = Some(e),
                }
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// The last piece; the message as it is to be committed.
    pub async fn finish(mut self, last: Vec<u8>) -> Result<Received, ReceiveError> {
        if let Some(error) = self.error.take() {
            return Err(ReceiveError::Spool(error));
        }
        let size = last.len();
        let (pending, intake) = (self.pending.take(), self.intake.take());
        let last_piece = move || {
            let mut intake = intake?;
            let mut tail = Vec::with_capacity(last.len());
            intake.feed(&last, &mut tail);
            let finished = intake.finish(&mut tail);
            Some((tail, finished))
        };
        // A small last piece costs less to scan here than the hand-over to
        // a blocking thread and back (nothing is written yet).
        let finished = match size <= INLINE_LAST_PIECE {
            true => Ok(last_piece()),
            false => tokio::task::spawn_blocking(last_piece).await,
        };
        let (tail, finished) = match finished {
            Ok(Some(both)) => both,
            Ok(None) => return Err(ReceiveError::Spool("the message was lost".into())),
            Err(e) => return Err(ReceiveError::Spool(e.to_string())),
        };
        if let Some(flaw) = finished.flaw {
            return Err(ReceiveError::Flaw(flaw));
        }
        match pending {
            Some(pending) => Ok(Received {
                pending,
                tail,
                finished,
            }),
            None => Err(ReceiveError::Spool("the message was lost".into())),
        }
    }
}

/// One piece through the intake into the spool file (blocking). Once the
/// intake has refused the content, the spool file is dropped (and with it
/// the file in `tmp/`).
fn absorb(
    mut pending: Pending,
    mut intake: Intake,
    piece: &[u8],
) -> (Option<Pending>, Intake, Result<(), String>) {
    let mut out = Vec::with_capacity(piece.len() + piece.len() / 64);
    intake.feed(piece, &mut out);
    if intake.flawed() {
        return (None, intake, Ok(()));
    }
    let written = pending.append(&out).map_err(|e| e.to_string());
    (Some(pending), intake, written)
}
