//! The durable queue on disk, Postfix's discipline in plain files:
//!
//! ```text
//! <spool.dir>/tmp/          being written, and delivered messages' files
//!                           kept emptied for reuse ([`recycle`]); emptied at start
//! <spool.dir>/queue/ID      envelope lines, a blank line, the message
//! <spool.dir>/queue/ID.state  delivery progress, once an attempt happened
//! <spool.dir>/quarantine/   messages that failed for good, with their state
//! ```
//!
//! A message is written to `tmp/`, fsync'ed, renamed into `queue/`, and the
//! directory fsync'ed before [`Spool::commit`] returns, so a `250` after
//! DATA survives a crash at any moment; commits at the same time share the
//! directory's fsync ([`group`]). All calls block: use them from
//! `spawn_blocking`.
//!
//! Size: under 500 lines of code, the rest are the crash and permission
//! tests that belong next to the discipline they check.

pub mod envelope;
pub mod group;
pub mod id;
pub mod recycle;

pub use envelope::{DeliveryState, Envelope};
pub use id::QueueId;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A spool operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{id}: {source}")]
    Format {
        id: QueueId,
        source: envelope::FormatError,
    },
    #[error("{0}: no such message in the queue")]
    NotFound(QueueId),
    #[error("{dir}: another mxguard{} is still serving this spool", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: String, holder: Option<u32> },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A message being received: written to `tmp/` as it arrives (so memory
/// stays bounded), made durable and moved into the queue by
/// [`Pending::commit`]. Dropped without a commit, it leaves nothing behind.
pub struct Pending {
    id: QueueId,
    /// The envelope `head` starts with (as the queue file will hold it).
    envelope: Envelope,
    /// Envelope lines and trace header, written before the first data
    /// (kept, to know where the message starts in the file).
    head: Vec<u8>,
    tmp: PathBuf,
    dest: PathBuf,
    queue: PathBuf,
    quarantine: PathBuf,
    /// Where the envelope lines end in `head` (and in the file).
    envelope_len: usize,
    /// The queue directory's fsyncs, shared with every other commit.
    queue_sync: Arc<group::DirSync>,
    /// Emptied files of delivered messages, written into before a new
    /// file is made.
    recycler: Arc<recycle::Recycler>,
    file: Option<File>,
}

impl Pending {
    fn open(&mut self) -> Result<&mut File, SpoolError> {
        if self.file.is_none() {
            let mut file = match self.recycler.take() {
                Some((file, path)) => {
                    self.tmp = path;
                    file
                }
                None => crate::owned::new_file(&self.tmp).map_err(io_err(&self.tmp))?,
            };
            file.write_all(&self.head).map_err(io_err(&self.tmp))?;
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or(SpoolError::NotFound(self.id.clone()))
    }

    /// Adds message bytes (blocking).
    pub fn append(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        self.write(data)
    }

    /// Writes to the file in `tmp/`, opened first if need be.
    fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        self.open()?;
        match self.file.as_mut() {
            Some(file) => file.write_all(data).map_err(io_err(&self.tmp)),
            None => Err(SpoolError::NotFound(self.id.clone())),
        }
    }

    /// Writes the last bytes, fsyncs, renames into the queue and fsyncs the
    /// directory (blocking). Only after this may the client hear 250.
    /// Returns the queue entry as [`Spool::read`] would read it back.
    pub fn commit(self, rest: &[u8]) -> Result<Entry, SpoolError> {
        self.commit_with(&[], rest)
    }

    /// As [`Pending::commit`], with `header` placed right after the trace
    /// header.
    pub fn commit_with(mut self, header: &[u8], rest: &[u8]) -> Result<Entry, SpoolError> {
        self.complete(header, rest)?;
        self.commit_completed()
    }

    /// Writes the last bytes, with `header` placed right after the trace
    /// header, without committing: the message is then whole in `tmp/`,
    /// for the content filters to read ([`Pending::message`]) and change
    /// ([`Pending::rewrite`]). When part of the message is already on
    /// disk, the file is written again behind the header (only messages
    /// over one DATA piece).
    pub fn complete(&mut self, header: &[u8], rest: &[u8]) -> Result<(), SpoolError> {
        let tmp = self.tmp.clone();
        let written = match self.file.take() {
            Some(file) if !header.is_empty() => {
                drop(file);
                let again = self.tmp.with_extension("header");
                let copied = crate::owned::new_file(&again).and_then(|mut out| {
                    out.write_all(&self.head)?;
                    out.write_all(header)?;
                    let mut old = File::open(&tmp)?;
                    old.seek(SeekFrom::Start(self.head.len() as u64))?;
                    std::io::copy(&mut old, &mut out)?;
                    Ok(out)
                });
                let _ = fs::remove_file(&tmp);
                self.tmp = again;
                copied.map_err(io_err(&self.tmp))?
            }
            Some(file) => file,
            None => {
                let mut head = std::mem::take(&mut self.head);
                head.extend_from_slice(header);
                self.head = head;
                self.open()?;
                self.file
                    .take()
                    .ok_or(SpoolError::NotFound(self.id.clone()))?
            }
        };
        self.file = Some(written);
        self.write(rest)
    }

    /// The message as it stands in `tmp/` (after [`Pending::complete`]),
    /// positioned at its first header, the trace (blocking).
    pub fn message(&self) -> Result<File, SpoolError> {
        let mut file = File::open(&self.tmp).map_err(io_err(&self.tmp))?;
        file.seek(SeekFrom::Start(self.envelope_len as u64))
            .map_err(io_err(&self.tmp))?;
        Ok(file)
    }

    /// A path beside the message in `tmp/` for a scratch file (`what`:
    /// its extension), emptied with `tmp/` at start.
    pub fn scratch(&self, what: &str) -> PathBuf {
        self.tmp.with_extension(what)
    }

    /// Writes the message again with `envelope`, the header block `header`
    /// in place of the first `old_header` octets of the message, and then
    /// the old body, or the one in the file `body` (blocking). The new
    /// file replaces the old one in `tmp/`; nothing is committed.
    pub fn rewrite(
        &mut self,
        envelope: &Envelope,
        header: &[u8],
        old_header: u64,
        body: Option<&Path>,
    ) -> Result<(), SpoolError> {
        let rendered = envelope.render().into_bytes();
        let again = match self.tmp.extension() == Some("rewrite".as_ref()) {
            true => self.tmp.with_extension("again"),
            false => self.tmp.with_extension("rewrite"),
        };
        let written = crate::owned::new_file(&again).and_then(|mut out| {
            out.write_all(&rendered)?;
            out.write_all(header)?;
            match body {
                Some(body) => std::io::copy(&mut File::open(body)?, &mut out)?,
                None => {
                    let mut old = File::open(&self.tmp)?;
                    old.seek(SeekFrom::Start(self.envelope_len as u64 + old_header))?;
                    std::io::copy(&mut old, &mut out)?
                }
            };
            Ok(out)
        });
        let out = match written {
            Ok(out) => out,
            Err(e) => {
                let _ = fs::remove_file(&again);
                return Err(io_err(&again)(e));
            }
        };
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
        self.tmp = again;
        self.file = Some(out);
        self.envelope_len = rendered.len();
        self.envelope = envelope.clone();
        Ok(())
    }

    /// Makes a message [`Pending::complete`] made whole durable in the
    /// queue: fsync, rename, fsync of the directory (blocking). Returns
    /// the queue entry as [`Spool::read`] would read it back.
    pub fn commit_completed(mut self) -> Result<Entry, SpoolError> {
        self.open()?;
        let tmp = self.tmp.clone();
        let file = self.open()?;
        file.sync_all().map_err(io_err(&tmp))?;
        let len = file.metadata().map_err(io_err(&tmp))?.len();
        fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
        self.file = None;
        match self.queue == self.queue_sync.dir() {
            true => self.queue_sync.sync().map_err(io_err(&self.queue))?,
            false => fsync_dir(&self.queue)?,
        }
        let body = self.envelope_len as u64;
        Ok(Entry {
            envelope: self.envelope.clone(),
            state: DeliveryState::default(),
            path: self.dest.clone(),
            body,
            size: len.saturating_sub(body),
            fresh: true,
        })
    }

    /// Makes the whole message durable in the quarantine instead, with
    /// `reason` in its state file (a content filter's verdict; blocking).
    pub fn commit_quarantined(mut self, reason: &str) -> Result<(), SpoolError> {
        self.open()?;
        let tmp = self.tmp.clone();
        let file = self.open()?;
        file.sync_all().map_err(io_err(&tmp))?;
        let state = DeliveryState {
            last_error: Some(reason.to_string()),
            ..DeliveryState::default()
        };
        let state_path = Spool::state_file(&self.quarantine, &self.id);
        let _ = fs::remove_file(&state_path);
        write_synced(&state_path, &[state.render().as_bytes()])?;
        let dest = self.quarantine.join(self.id.as_str());
        fs::rename(&self.tmp, &dest).map_err(io_err(&dest))?;
        self.file = None;
        fsync_dir(&self.quarantine)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A queue entry read back from disk: its envelope and delivery state;
/// the message stays in the file, read a piece at a time by whoever sends
/// it on (never whole in memory).
#[derive(Clone)]
pub struct Entry {
    pub envelope: Envelope,
    pub state: DeliveryState,
    /// The queue file.
    pub path: PathBuf,
    /// Where the message starts in it, and its length.
    pub body: u64,
    pub size: u64,
    /// Returned by its commit (not read back): the file was just written,
    /// so its pages are in memory.
    pub fresh: bool,
}

/// The longest envelope read back: `limits.max_recipients` (at most
/// 10,000) recipients of up to 1,000 octets each, and the rest.
const MAX_ENVELOPE: usize = 16 << 20;

impl Entry {
    /// The message file, positioned at the message (blocking).
    pub fn open_message(&self) -> std::io::Result<File> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.body))?;
        Ok(file)
    }

    /// The message's header block, up to and with the empty line that ends
    /// it, at most `max` octets (blocking).
    pub fn header_block(&self, max: usize) -> std::io::Result<Vec<u8>> {
        let mut block = Vec::new();
        self.open_message()?
            .take(max as u64)
            .read_to_end(&mut block)?;
        if let Some(end) = block.windows(4).position(|w| w == b"\r\n\r\n") {
            block.truncate(end + 4);
        }
        Ok(block)
    }

    /// The whole message (blocking; for `mxguard queue show`).
    pub fn read_message(&self) -> std::io::Result<Vec<u8>> {
        let mut message = Vec::new();
        self.open_message()?.read_to_end(&mut message)?;
        Ok(message)
    }
}

/// Held by the serving process; the lock is released when it is dropped
/// (or the process dies).
pub struct SpoolLock {
    _file: File,
}

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    queue: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    queue_sync: Arc<group::DirSync>,
    recycler: Arc<recycle::Recycler>,
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Takes the exclusive lock on `file` if no one holds it.
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Writes `parts` to `path` and fsyncs the file.
fn write_synced(path: &Path, parts: &[&[u8]]) -> Result<(), SpoolError> {
    let mut file = crate::owned::new_file(path).map_err(io_err(path))?;
    for part in parts {
        file.write_all(part).map_err(io_err(path))?;
    }
    file.sync_all().map_err(io_err(path))
}

impl Spool {
    /// Opens (creating) the spool for reading and administration, as
    /// `mxguard queue` does: nothing is cleaned up, a server may be running.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: root.to_path_buf(),
            queue: root.join("queue"),
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
            queue_sync: Arc::new(group::DirSync::new(&root.join("queue"))),
            recycler: Arc::new(recycle::Recycler::new(&root.join("tmp"))),
        };
        // Missing directories are made 0700; existing ones keep their mode
        // (the server sets it, under its lock: a command run by root or by
        // a member of control.group must not change it).
        for dir in [&spool.root, &spool.queue, &spool.tmp, &spool.quarantine] {
            crate::owned::new_dir(dir).map_err(io_err(dir))?;
        }
        Ok(spool)
    }

    /// The modes the serving process keeps: everything 0700, but the
    /// spool directory itself 0710 and group `gid`'s when a group may use
    /// the control socket (set-group-ID, so the socket made in it gets the
    /// group without a chown; the group must already be the directory's
    /// where mxguard may not chown, as under the packaged unit).
    fn tighten(&self, gid: Option<u32>) -> Result<(), SpoolError> {
        use std::os::unix::fs::PermissionsExt;
        for dir in [&self.queue, &self.tmp, &self.quarantine] {
            crate::owned::dir(dir, crate::owned::DIR_MODE).map_err(io_err(dir))?;
        }
        let root = &self.root;
        let shared = |gid: u32| {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::metadata(root)?;
            if meta.gid() == gid && meta.mode() & 0o7777 == 0o2710 {
                // As the administrator made it (install -d -m 2710 -g
                // GROUP): a chmod by a user outside the group would clear
                // the set-group-ID bit.
                return Ok(());
            }
            crate::owned::chgrp(root, gid)?;
            fs::set_permissions(root, fs::Permissions::from_mode(0o2710))
        };
        match gid {
            None => crate::owned::dir(root, crate::owned::DIR_MODE),
            Some(gid) => shared(gid),
        }
        .map_err(io_err(root))
    }

    /// Opens the spool for the one server that owns it: takes the lock
    /// (held while the returned [`SpoolLock`] lives; the lock file then
    /// holds our process ID), then removes what an interrupted run left in
    /// `tmp/` (never acknowledged) and state files whose message is gone.
    /// While another process holds the lock — one that is still dying
    /// after `kill -9`, say — this waits for it, up to `wait`, calling
    /// `waiting` once with the holder's process ID (blocking). The modes
    /// are then made right (see `tighten`; `group` may use the control
    /// socket).
    pub fn open_exclusive(
        root: &Path,
        group: Option<u32>,
        wait: std::time::Duration,
        waiting: impl FnOnce(Option<u32>),
    ) -> Result<(Spool, SpoolLock), SpoolError> {
        let spool = Spool::open(root)?;
        let lock_path = root.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(crate::owned::FILE_MODE)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let deadline = std::time::Instant::now() + wait;
        let mut waiting = Some(waiting);
        while !try_lock(&lock) {
            let mut text = String::new();
            let _ = (&lock).seek(SeekFrom::Start(0));
            let _ = (&lock).take(32).read_to_string(&mut text);
            let holder = text.trim().parse().ok();
            if let Some(tell) = waiting.take() {
                tell(holder);
            }
            if std::time::Instant::now() >= deadline {
                return Err(SpoolError::Locked {
                    dir: root.display().to_string(),
                    holder,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        spool.tighten(group)?;
        let pid = format!("{}\n", std::process::id());
        lock.set_len(0)
            .and_then(|()| lock.seek(SeekFrom::Start(0)))
            .and_then(|_| lock.write_all(pid.as_bytes()))
            .map_err(io_err(&lock_path))?;
        for entry in fs::read_dir(&spool.tmp)
            .map_err(io_err(&spool.tmp))?
            .flatten()
        {
            let _ = fs::remove_file(entry.path());
        }
        for entry in fs::read_dir(&spool.queue)
            .map_err(io_err(&spool.queue))?
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "state") && !path.with_extension("").exists() {
                let _ = fs::remove_file(&path);
            }
        }
        Ok((spool, SpoolLock { _file: lock }))
    }

    /// Where a queued message's file is (for copying it without reading
    /// it into memory).
    pub fn path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(id.as_str())
    }

    fn state_file(dir: &Path, id: &QueueId) -> PathBuf {
        dir.join(format!("{id}.state"))
    }

    /// Starts a queue entry; nothing is on disk until the first
    /// [`Pending::append`] or [`Pending::commit`].
    pub fn start(&self, envelope: &Envelope, header: &[u8]) -> Pending {
        let mut head = envelope.render().into_bytes();
        let envelope_len = head.len();
        head.extend_from_slice(header);
        Pending {
            id: envelope.id.clone(),
            envelope: envelope.clone(),
            head,
            envelope_len,
            quarantine: self.quarantine.clone(),
            tmp: self.tmp.join(envelope.id.as_str()),
            dest: self.path(&envelope.id),
            queue: self.queue.clone(),
            queue_sync: self.queue_sync.clone(),
            recycler: self.recycler.clone(),
            file: None,
        }
    }

    /// Makes a message durable in one go (envelope, then message parts).
    pub fn commit(&self, envelope: &Envelope, message: &[&[u8]]) -> Result<(), SpoolError> {
        let mut pending = self.start(envelope, &[]);
        for part in message {
            pending.append(part)?;
        }
        pending.commit(&[]).map(drop)
    }

    /// IDs in the queue, oldest first.
    pub fn list(&self) -> Result<Vec<QueueId>, SpoolError> {
        Self::ids_in(&self.queue)
    }

    fn ids_in(dir: &Path) -> Result<Vec<QueueId>, SpoolError> {
        let mut ids: Vec<QueueId> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .flatten()
            .filter_map(|e| QueueId::parse(e.file_name().to_str()?))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads a queued message with its delivery state.
    pub fn read(&self, id: &QueueId) -> Result<Entry, SpoolError> {
        Self::read_in(&self.queue, id)
    }

    /// Reads a quarantined message with its final state.
    pub fn read_quarantined(&self, id: &QueueId) -> Result<Entry, SpoolError> {
        Self::read_in(&self.quarantine, id)
    }

    fn read_in(dir: &Path, id: &QueueId) -> Result<Entry, SpoolError> {
        let path = dir.join(id.as_str());
        let file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.clone()))
            }
            other => other.map_err(io_err(&path))?,
        };
        let len = file.metadata().map_err(io_err(&path))?.len();
        // The envelope ends at the first empty line: read up to it only.
        let mut head = Vec::with_capacity(4096);
        let mut reader = std::io::BufReader::new(file.take(MAX_ENVELOPE as u64));
        loop {
            let read = reader.read_until(b'\n', &mut head).map_err(io_err(&path))?;
            if read == 0 || head.ends_with(b"\n\n") {
                break;
            }
        }
        let (envelope, body) = Envelope::parse(&head).map_err(|source| SpoolError::Format {
            id: id.clone(),
            source,
        })?;
        let body = body as u64;
        Ok(Entry {
            envelope,
            state: Self::state_in(dir, id),
            path,
            body,
            size: len.saturating_sub(body),
            fresh: false,
        })
    }

    /// The delivery state alone, without reading the message.
    pub fn read_state(&self, id: &QueueId) -> DeliveryState {
        Self::state_in(&self.queue, id)
    }

    /// No state file yet means no attempt yet.
    fn state_in(dir: &Path, id: &QueueId) -> DeliveryState {
        match fs::read_to_string(Self::state_file(dir, id)) {
            Ok(text) => DeliveryState::parse(&text),
            Err(_) => DeliveryState::default(),
        }
    }

    /// Records delivery progress durably (written aside, then renamed).
    pub fn save_state(&self, id: &QueueId, state: &DeliveryState) -> Result<(), SpoolError> {
        if !self.path(id).exists() {
            return Err(SpoolError::NotFound(id.clone()));
        }
        let tmp = self.tmp.join(format!("{id}.state"));
        let _ = fs::remove_file(&tmp);
        write_synced(&tmp, &[state.render().as_bytes()])?;
        let dest = Self::state_file(&self.queue, id);
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        fsync_dir(&self.queue)
    }

    /// Removes a message deleted by the administrator, durably.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        // Removed, never recycled: `tmp/` belongs to the serving process,
        // which may be writing there now (this may be `mxguard queue`).
        self.removed(id, fs::remove_file(self.path(id)), true)?;
        fsync_dir(&self.queue)
    }

    /// Removes a message that is done, without waiting for the directory
    /// to reach the disk: a crash of the machine (not of the process) just
    /// after may bring it back, to be delivered again — a duplicate, never
    /// a loss (Postfix's queue manager makes the same choice). Saves a
    /// directory fsync per message. Its file is kept, emptied, for a new
    /// message ([`recycle`]); its state file removed when it `may_have_state`
    /// (it has none before its first attempt ends). For the serving process
    /// only (the owner of `tmp/`).
    pub fn remove_delivered(&self, id: &QueueId, may_have_state: bool) -> Result<(), SpoolError> {
        let path = self.path(id);
        let removed = match self.recycler.keep(&path) {
            Ok(true) => Ok(()),
            Ok(false) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        self.removed(id, removed, may_have_state)
    }

    /// After a message's file left the queue (`removed`): its state file
    /// too, when it may have one.
    fn removed(
        &self,
        id: &QueueId,
        removed: std::io::Result<()>,
        may_have_state: bool,
    ) -> Result<(), SpoolError> {
        match removed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.clone()))
            }
            other => other.map_err(io_err(&self.path(id)))?,
        }
        if may_have_state {
            let _ = fs::remove_file(Self::state_file(&self.queue, id));
        }
        Ok(())
    }

    /// Moves a message to the quarantine with its final state.
    pub fn quarantine(&self, id: &QueueId, state: &DeliveryState) -> Result<(), SpoolError> {
        let state_path = Self::state_file(&self.quarantine, id);
        let _ = fs::remove_file(&state_path);
        write_synced(&state_path, &[state.render().as_bytes()])?;
        let dest = self.quarantine.join(id.as_str());
        fs::rename(self.path(id), &dest).map_err(io_err(&dest))?;
        fsync_dir(&self.quarantine)?;
        let _ = fs::remove_file(Self::state_file(&self.queue, id));
        fsync_dir(&self.queue)
    }

    /// The control socket of the running server.
    pub fn control_socket(&self) -> PathBuf {
        Spool::control_socket_in(&self.root)
    }

    /// The control socket of the spool at `dir`.
    pub fn control_socket_in(dir: &Path) -> PathBuf {
        dir.join("control.sock")
    }
}

/// An envelope for the tests of the spool and of its users.
#[cfg(test)]
pub(crate) fn test_envelope() -> Envelope {
    Envelope {
        id: QueueId::generate(),
        arrival: 1_700_000_000,
        client: "192.0.2.1".parse().unwrap(),
        helo: "client.example".into(),
        from: "<a@example.org>".into(),
        body_8bit: false,
        rcpts: vec!["b@example.com".into()],
        smtputf8: false,
        dsn: Default::default(),
        client_name: None,
        esmtp: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        test_envelope()
    }

    #[test]
    fn commit_read_state_remove() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let e = envelope();
        spool
            .commit(&e, &[b"Received: x\r\n", b"body\r\n"])
            .unwrap();
        assert_eq!(spool.list().unwrap(), vec![e.id.clone()]);
        let entry = spool.read(&e.id).unwrap();
        assert_eq!(entry.envelope, e);
        assert_eq!(entry.read_message().unwrap(), b"Received: x\r\nbody\r\n");
        assert_eq!(entry.state, DeliveryState::default());

        let state = DeliveryState {
            attempts: 1,
            next_attempt: 5,
            ..Default::default()
        };
        spool.save_state(&e.id, &state).unwrap();
        assert_eq!(spool.read(&e.id).unwrap().state, state);
        assert_eq!(
            spool.list().unwrap().len(),
            1,
            "state files are not messages"
        );

        spool.remove(&e.id).unwrap();
        assert!(spool.list().unwrap().is_empty());
        assert!(matches!(spool.read(&e.id), Err(SpoolError::NotFound(_))));
        assert!(fs::read_dir(dir.path().join("queue"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn a_commit_returns_the_entry_as_it_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let e = envelope();
        let mut pending = spool.start(&e, b"Received: x\r\n");
        pending.append(b"part one\r\n").unwrap();
        let committed = pending.commit_with(b"A-R: y\r\n", b"part two\r\n").unwrap();
        let read = spool.read(&e.id).unwrap();
        assert_eq!(committed.envelope, read.envelope);
        assert_eq!(committed.state, read.state);
        assert_eq!(
            (&committed.path, committed.body, committed.size),
            (&read.path, read.body, read.size)
        );
        assert!(committed.fresh && !read.fresh);
        assert_eq!(
            committed.read_message().unwrap(),
            b"Received: x\r\nA-R: y\r\npart one\r\npart two\r\n"
        );
    }

    #[test]
    fn an_administrators_removal_leaves_tmp_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let server = Spool::open(dir.path()).unwrap();
        let admin = Spool::open(dir.path()).unwrap();
        let (delivered, deleted) = (envelope(), envelope());
        server.commit(&delivered, &[b"one\r\n"]).unwrap();
        server.commit(&deleted, &[b"two\r\n"]).unwrap();
        server.remove_delivered(&delivered.id, false).unwrap();
        let tmp = || -> Vec<(std::ffi::OsString, u64)> {
            use std::os::unix::fs::MetadataExt;
            fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| (e.file_name(), e.metadata().unwrap().ino()))
                .collect()
        };
        let kept = tmp();
        assert_eq!(kept.len(), 1, "the delivered file kept for reuse");
        admin.remove(&deleted.id).unwrap();
        // The same file under the same name: the server may be writing
        // into it, nothing of the administrator's may replace it.
        assert_eq!(tmp(), kept);
        assert!(admin.list().unwrap().is_empty());
    }

    #[test]
    fn a_delivered_message_is_removed_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let e = envelope();
        spool.commit(&e, &[b"body\r\n"]).unwrap();
        spool.save_state(&e.id, &DeliveryState::default()).unwrap();
        spool.remove_delivered(&e.id, true).unwrap();
        assert!(fs::read_dir(dir.path().join("queue"))
            .unwrap()
            .next()
            .is_none());
        assert!(matches!(
            spool.remove_delivered(&e.id, false),
            Err(SpoolError::NotFound(_))
        ));
    }

    #[test]
    fn a_header_goes_after_the_trace_whether_or_not_data_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let small = envelope();
        spool
            .start(&small, b"Received: x\r\n")
            .commit_with(b"A-R: y\r\n", b"body\r\n")
            .unwrap();
        assert_eq!(
            spool.read(&small.id).unwrap().read_message().unwrap(),
            b"Received: x\r\nA-R: y\r\nbody\r\n"
        );

        let large = envelope();
        let mut pending = spool.start(&large, b"Received: x\r\n");
        pending.append(b"part one\r\n").unwrap();
        pending.commit_with(b"A-R: y\r\n", b"part two\r\n").unwrap();
        let entry = spool.read(&large.id).unwrap();
        assert_eq!(
            entry.read_message().unwrap(),
            b"Received: x\r\nA-R: y\r\npart one\r\npart two\r\n"
        );
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn quarantine_keeps_message_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let e = envelope();
        spool.commit(&e, &[b"body\r\n"]).unwrap();
        let state = DeliveryState {
            failed: vec![("b@example.com".into(), "550 5.1.1 unknown".into())],
            ..Default::default()
        };
        spool.quarantine(&e.id, &state).unwrap();
        assert!(spool.list().unwrap().is_empty());
        let q = spool.read_quarantined(&e.id).unwrap();
        assert_eq!(q.state, state);
        assert_eq!(q.read_message().unwrap(), b"body\r\n");
    }

    #[test]
    fn leftovers_are_cleaned_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        fs::write(dir.path().join("tmp/half-written"), b"x").unwrap();
        fs::write(
            dir.path().join("queue/00000000000000000000.state"),
            b"attempts: 1\n",
        )
        .unwrap();
        drop(spool);
        let none = std::time::Duration::ZERO;
        let (_spool, lock) = Spool::open_exclusive(dir.path(), None, none, |_| {}).unwrap();
        // The lock file names its holder (flock locks are per open file,
        // so a second open in this process is refused as another's would be).
        let mut told = None;
        let second = Spool::open_exclusive(dir.path(), None, none, |pid| told = pid);
        let me = Some(std::process::id());
        assert!(matches!(second, Err(SpoolError::Locked { holder, .. }) if holder == me));
        assert_eq!(told, me);
        // A start that waits gets the spool once the holder is gone (here
        // it goes when told someone waits).
        let wait = std::time::Duration::from_secs(30);
        let (_spool, _lock) =
            Spool::open_exclusive(dir.path(), None, wait, move |_| drop(lock)).unwrap();
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        assert!(fs::read_dir(dir.path().join("queue"))
            .unwrap()
            .next()
            .is_none());
    }
}
