//! The async shell of an introduction channel, shared by the introduction
//! server and the netlayer (feature `io`).
//!
//! An intro connection carries Syrup messages and introductions (a
//! `uds:new-connection` record, then one separate `sendmsg` of 4 body bytes
//! carrying the socket). The framing rules are the sans-I/O
//! [`IntroChannel`]; this module only moves
//! bytes and fds between it and an [`FdStream`]:
//!
//! * [`IntroReader`] reads events (messages and introductions with their
//!   fd). Its `next`/`poll_next` are cancel-safe: all state lives in the
//!   reader, so a `select!` may drop the future at any point.
//! * [`UnitWriter`] sends one [`Outgoing`] unit (a message, or a record and
//!   its fd) across as many writes as the socket needs, keeping its progress
//!   in itself; it too may be polled from a `select!` and resumed.
//! * [`IntroWriter`] is a writer task fed by a bounded channel: callers
//!   enqueue units and await the outcome, and dropping a caller's future can
//!   never leave half a unit on the wire. Every unit has a send timeout;
//!   when one expires the connection is unusable (a unit was cut) and the
//!   writer stops.
//!
//! The introduction server drives one `IntroReader` and one `UnitWriter`
//! from each client's task, fed by its router's per-client queue (another
//! task may write a unit straight to an idle client, one at a time, as the
//! router hands out one unit per client at once); the netlayer runs an `IntroReader` in each
//! link task and sends through an `IntroWriter`.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uds_fdpass::{FdStream, RecvError, SendError};
use uds_syrup::{Limits, SCM_RIGHTS_BODY};

use crate::channel::{ChannelError, ChannelEvent, IntroChannel};

/// Why reading an intro connection failed. The connection must be closed;
/// the fds involved have been closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes or fds broke the channel's framing rules.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The kernel truncated the fds of a receive (more than 253, or no free
    /// fd slot); what arrived was closed.
    #[error(
        "the kernel truncated the passed fds (room for {room}, no free fd slot?); the {closed} \
         that arrived were closed"
    )]
    Truncated {
        /// Room the receiver had, in fds.
        room: usize,
        /// How many arrived and were closed.
        closed: usize,
    },
    /// The connection must be used only by one process (see
    /// [`IntroReader::only_from_pid`]) and another one wrote to it.
    #[error("the socket reserved for pid {expected} was used by {}", .found.map_or("an unknown process".to_owned(), |p| format!("pid {p}")))]
    WrongPid {
        /// The one process allowed.
        expected: i32,
        /// The process that sent the bytes, if the kernel said.
        found: Option<i32>,
    },
    /// The socket failed (the peer hung up, ...).
    #[error("read failed: {0}")]
    Io(io::Error),
}

impl ReadError {
    /// Whether this is the peer going away (a reset, a broken pipe) rather
    /// than bad input.
    pub fn is_hangup(&self) -> bool {
        matches!(self, ReadError::Io(_))
    }
}

fn read_error(e: RecvError) -> ReadError {
    match e {
        RecvError::Truncated { room, closed } => ReadError::Truncated { room, closed },
        RecvError::Io(e) => ReadError::Io(e),
        other => ReadError::Io(io::Error::other(other)),
    }
}

/// Reads an intro connection: bytes and fds go into an
/// [`IntroChannel`], which yields messages and introductions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use uds_fdpass::FdStream;
/// use uds_handshake::channel::ChannelEvent;
/// use uds_handshake::io::IntroReader;
/// use uds_syrup::Limits;
///
/// let (a, b) = FdStream::pair().unwrap();
/// a.send(b"<4'ping>", &[]).await.unwrap();
/// drop(a);
/// let mut reader = IntroReader::new(Limits::intro_channel());
/// match reader.next(&b).await.unwrap() {
///     Some(ChannelEvent::Message { value, .. }) => assert_eq!(value.to_string(), "<ping>"),
///     other => panic!("{other:?}"),
/// }
/// assert!(reader.next(&b).await.unwrap().is_none()); // end of stream
/// # }
/// ```
#[derive(Debug)]
pub struct IntroReader {
    chan: Option<IntroChannel<OwnedFd>>,
    limits: Limits,
    only_pid: Option<i32>,
    release_idle: bool,
    ended: bool,
}

impl IntroReader {
    /// A reader enforcing `limits` on each message.
    pub fn new(limits: Limits) -> IntroReader {
        IntroReader {
            chan: None,
            limits,
            only_pid: None,
            release_idle: false,
            ended: false,
        }
    }

    /// Requires every receive to come from process `pid`, as reported by
    /// `SCM_CREDENTIALS` (turn `SO_PASSCRED` on for the socket *before* the
    /// other process can write to it, or its first bytes carry no
    /// credentials and are refused).
    pub fn only_from_pid(mut self, pid: i32) -> IntroReader {
        self.only_pid = Some(pid);
        self
    }

    /// Frees the receive buffer whenever nothing is pending in it, so that
    /// an idle connection holds no buffer (at the cost of an allocation per
    /// burst of input). Meant for servers with many idle clients.
    pub fn release_idle_buffer(mut self, on: bool) -> IntroReader {
        self.release_idle = on;
        self
    }

    /// Whether no partial message, fd or body byte is pending.
    pub fn is_idle(&self) -> bool {
        self.chan.as_ref().is_none_or(IntroChannel::is_idle)
    }

    /// The next event from bytes already received, without reading.
    pub fn next_buffered(&mut self) -> Result<Option<ChannelEvent<OwnedFd>>, ReadError> {
        let Some(chan) = self.chan.as_mut() else {
            return Ok(None);
        };
        let event = chan.next_event()?;
        if event.is_none() && self.release_idle && chan.is_idle() {
            self.chan = None;
        }
        Ok(event)
    }

    /// Polls for the next event; `Ready(Ok(None))` at end of stream.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        stream: &FdStream,
    ) -> Poll<Result<Option<ChannelEvent<OwnedFd>>, ReadError>> {
        loop {
            if let Some(event) = self.next_buffered()? {
                return Poll::Ready(Ok(Some(event)));
            }
            if self.ended {
                return Poll::Ready(Ok(None));
            }
            ready!(stream.poll_read_ready(cx)).map_err(ReadError::Io)?;
            let limits = self.limits;
            let chan = self.chan.get_or_insert_with(|| IntroChannel::new(limits));
            let received = match stream.try_recv(chan.buffer_mut()) {
                Ok(r) => r,
                Err(e) if e.is_would_block() => continue,
                Err(e) => return Poll::Ready(Err(read_error(e))),
            };
            if received.is_eof() {
                self.ended = true;
                chan.finish()?;
                self.chan = None;
                return Poll::Ready(Ok(None));
            }
            if let Some(pid) = self.only_pid {
                let from = received.credentials.map(|c| c.pid);
                if from != Some(pid) {
                    return Poll::Ready(Err(ReadError::WrongPid {
                        expected: pid,
                        found: from,
                    }));
                }
            }
            chan.push_fds(received.fds);
        }
    }

    /// The next event; `Ok(None)` at end of stream.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: bytes and fds are taken from the socket and handed to
    /// the channel in one step, so dropping the future loses nothing; the
    /// next call continues where this one stopped.
    pub async fn next(
        &mut self,
        stream: &FdStream,
    ) -> Result<Option<ChannelEvent<OwnedFd>>, ReadError> {
        poll_fn(|cx| self.poll_next(cx, stream)).await
    }
}

/// One unit to send on an intro connection.
#[derive(Debug)]
pub enum Outgoing {
    /// A complete Syrup message.
    Message(Bytes),
    /// A `uds:new-connection` record and the socket it introduces, sent as
    /// the record, then one `sendmsg` of the 4 body bytes carrying the fd.
    Intro {
        /// The encoded record.
        record: Bytes,
        /// The socket to pass; closed once sent (or when the unit is
        /// dropped).
        fd: OwnedFd,
    },
}

impl Outgoing {
    /// The bytes the unit puts on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.len(),
            Outgoing::Intro { record, .. } => record.len() + SCM_RIGHTS_BODY.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Main,
    Body,
    Done,
}

/// Sends one [`Outgoing`] unit, across as many writes as needed, keeping
/// its progress in itself.
#[derive(Debug)]
pub struct UnitWriter {
    unit: Outgoing,
    stage: Stage,
    sent: usize,
}

impl UnitWriter {
    /// A writer for `unit`.
    pub fn new(unit: Outgoing) -> UnitWriter {
        UnitWriter {
            unit,
            stage: Stage::Main,
            sent: 0,
        }
    }

    /// Whether nothing of the unit has reached the socket yet (so dropping
    /// it now leaves the connection usable).
    pub fn is_untouched(&self) -> bool {
        self.stage == Stage::Main && self.sent == 0
    }

    /// Polls the unit out. After `Ready(Ok(()))` the unit is on the wire
    /// (the fd, if any, may be dropped). After an error the connection is
    /// unusable unless [`is_untouched`](Self::is_untouched).
    pub fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        stream: &FdStream,
    ) -> Poll<Result<(), SendError>> {
        loop {
            match self.stage {
                Stage::Done => return Poll::Ready(Ok(())),
                Stage::Main => {
                    let data = match &self.unit {
                        Outgoing::Message(m) => m,
                        Outgoing::Intro { record, .. } => record,
                    };
                    if self.sent == data.len() {
                        self.sent = 0;
                        self.stage = match self.unit {
                            Outgoing::Message(_) => Stage::Done,
                            Outgoing::Intro { .. } => Stage::Body,
                        };
                        continue;
                    }
                    let n = ready!(stream.poll_send(cx, &data[self.sent..], &[]))?;
                    self.sent += n;
                }
                Stage::Body => {
                    let Outgoing::Intro { fd, .. } = &self.unit else {
                        self.stage = Stage::Done;
                        continue;
                    };
                    if self.sent == SCM_RIGHTS_BODY.len() {
                        self.stage = Stage::Done;
                        continue;
                    }
                    // The fd goes with the first body byte; a partial write
                    // sends the rest without it.
                    let with_fd = [fd.as_fd()];
                    let fds: &[_] = if self.sent == 0 { &with_fd } else { &[] };
                    let n = ready!(stream.poll_send(cx, &SCM_RIGHTS_BODY[self.sent..], fds))?;
                    self.sent += n;
                }
            }
        }
    }

    /// Sends the unit.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in the sense that the progress is kept in `self`: call
    /// again to continue. Dropping `self` half-way leaves a partial unit on
    /// the wire.
    pub async fn write(&mut self, stream: &FdStream) -> Result<(), SendError> {
        poll_fn(|cx| self.poll_write(cx, stream)).await
    }

    /// The unit (for example to recover the fd of an unsent intro).
    pub fn into_unit(self) -> Outgoing {
        self.unit
    }
}

/// Why a unit given to an [`IntroWriter`] was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The peer did not take the unit within the send timeout; the
    /// connection was cut.
    #[error("the other side did not read for {0:?}: the connection was closed")]
    Timeout(Duration),
    /// The socket failed.
    #[error("write failed: {0}")]
    Io(Arc<io::Error>),
    /// The unit was refused before any byte was written.
    #[error("{0}")]
    Refused(Arc<SendError>),
    /// The writer has stopped (the connection is closed or failed earlier).
    #[error("the connection is closed")]
    Closed,
}

fn write_error(e: SendError) -> WriteError {
    match e {
        SendError::Io(e) => WriteError::Io(Arc::new(e)),
        other => WriteError::Refused(Arc::new(other)),
    }
}

type Request = (Outgoing, oneshot::Sender<Result<(), WriteError>>);
type Handover = (UnitWriter, oneshot::Sender<Result<(), WriteError>>);

/// What the writer task and the callers' fast path share.
#[derive(Debug)]
struct Shared {
    stream: Arc<FdStream>,
    state: std::sync::Mutex<State>,
    /// Wakes the task: a handover, or the end of a caller's write.
    wake: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    /// A unit is being written (by a caller's fast path or by the task).
    busy: bool,
    /// A unit a caller started but could not finish without waiting: the
    /// task finishes it before anything else.
    handover: Option<Handover>,
    /// The connection failed, or the task is gone: nothing more is
    /// written.
    closed: bool,
    /// The task holds a queued unit it has not started yet: a caller must
    /// not overtake it.
    pending: bool,
}

/// Held by the writer task: however it ends (returned, aborted, panicked),
/// the handles see the writer closed, and a unit handed over that it will
/// never write is failed (its caller gets [`WriteError::Closed`]).
struct TaskAlive(Arc<Shared>);

impl Drop for TaskAlive {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.closed = true;
        st.pending = false;
        drop(st.handover.take());
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle to a connection's writer task: the only code that writes to
/// the connection, apart from a caller that finds it idle and writes a
/// unit at once without waiting (which saves waking the task; a unit it
/// cannot finish at once is handed to the task). Cheap to clone.
#[derive(Debug, Clone)]
pub struct IntroWriter {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// What the task writes next.
enum Item {
    Handover(Handover),
    Queued(Request),
}

impl IntroWriter {
    /// Starts the writer task of `stream`: it sends the units it is given,
    /// in order, each within `timeout`, until every handle is dropped or a
    /// unit fails. `capacity` units may wait. The task's result says why it
    /// stopped (`Ok` when the handles were dropped). Must be called inside a
    /// tokio runtime.
    pub fn spawn(
        stream: Arc<FdStream>,
        capacity: usize,
        timeout: Duration,
    ) -> (IntroWriter, tokio::task::JoinHandle<Result<(), WriteError>>) {
        let (tx, mut rx) = mpsc::channel::<Request>(capacity.max(1));
        let shared = Arc::new(Shared {
            stream,
            state: std::sync::Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
        });
        let task_shared = shared.clone();
        let task = tokio::spawn(async move {
            let alive = TaskAlive(task_shared);
            let shared = &alive.0;
            let mut pending: Option<Request> = None;
            let mut senders_gone = false;
            loop {
                let broken = {
                    let st = shared.state();
                    st.closed && !st.busy
                };
                if broken {
                    // A caller's write broke the connection.
                    rx.close();
                    if let Some((_, done)) = pending.take() {
                        let _ = done.send(Err(WriteError::Closed));
                    }
                    while let Some((_, done)) = rx.recv().await {
                        let _ = done.send(Err(WriteError::Closed));
                    }
                    return Err(WriteError::Closed);
                }
                let item = {
                    let mut st = shared.state();
                    if let Some(h) = st.handover.take() {
                        Some(Item::Handover(h))
                    } else if st.busy {
                        None
                    } else if let Some(req) = pending.take().or_else(|| rx.try_recv().ok()) {
                        st.busy = true;
                        st.pending = false;
                        Some(Item::Queued(req))
                    } else {
                        None
                    }
                };
                let Some(item) = item else {
                    if senders_gone && !shared.state().busy {
                        return Ok(());
                    }
                    if pending.is_some() || senders_gone {
                        shared.wake.notified().await;
                    } else {
                        tokio::select! {
                            _ = shared.wake.notified() => {}
                            r = rx.recv() => match r {
                                Some(req) => {
                                    shared.state().pending = true;
                                    pending = Some(req);
                                }
                                None => senders_gone = true,
                            },
                        }
                    }
                    continue;
                };
                let (mut w, done) = match item {
                    Item::Handover(h) => h,
                    Item::Queued((unit, done)) => (UnitWriter::new(unit), done),
                };
                let result = match tokio::time::timeout(timeout, w.write(&shared.stream)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(write_error(e)),
                    Err(_) => Err(WriteError::Timeout(timeout)),
                };
                let failed = match &result {
                    Ok(()) => None,
                    // A unit refused before any byte left does not break
                    // the connection.
                    Err(WriteError::Refused(_)) if w.is_untouched() => None,
                    Err(e) => Some(e.clone()),
                };
                drop(w);
                {
                    let mut st = shared.state();
                    st.busy = false;
                    st.closed = failed.is_some();
                }
                let _ = done.send(result);
                if let Some(e) = failed {
                    rx.close();
                    if let Some((_, done)) = pending.take() {
                        let _ = done.send(Err(WriteError::Closed));
                    }
                    while let Some((_, done)) = rx.recv().await {
                        let _ = done.send(Err(WriteError::Closed));
                    }
                    return Err(e);
                }
            }
        });
        (IntroWriter { tx, shared }, task)
    }

    /// Sends `unit` and waits until it is on the wire.
    ///
    /// When nothing is queued and nobody is writing, the unit is written
    /// from this call at once; a unit the socket cannot take at once is
    /// handed to the writer task, which finishes it within the timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the unit was queued sends nothing;
    /// dropping it afterwards still sends the whole unit (only the outcome is
    /// lost). The connection never carries half a unit because of a caller:
    /// the fast path writes or hands over without waiting in between.
    pub async fn send(&self, unit: Outgoing) -> Result<(), WriteError> {
        let fast = {
            let mut st = self.shared.state();
            if st.closed || self.tx.is_closed() {
                return Err(WriteError::Closed);
            }
            let idle = !st.busy
                && !st.pending
                && st.handover.is_none()
                && self.tx.capacity() == self.tx.max_capacity();
            if idle {
                st.busy = true;
            }
            idle
        };
        if !fast {
            let (done, outcome) = oneshot::channel();
            self.tx
                .send((unit, done))
                .await
                .map_err(|_| WriteError::Closed)?;
            return outcome.await.unwrap_or(Err(WriteError::Closed));
        }
        let mut w = UnitWriter::new(unit);
        let polled = {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            w.poll_write(&mut cx, &self.shared.stream)
        };
        match polled {
            Poll::Ready(result) => {
                let result = result.map_err(write_error);
                let broken = match &result {
                    Ok(()) => false,
                    Err(WriteError::Refused(_)) => !w.is_untouched(),
                    Err(_) => true,
                };
                drop(w);
                {
                    let mut st = self.shared.state();
                    st.busy = false;
                    st.closed |= broken;
                }
                // Units queued meanwhile (or the end of the connection).
                self.shared.wake.notify_one();
                result
            }
            Poll::Pending => {
                let (done, outcome) = oneshot::channel();
                {
                    let mut st = self.shared.state();
                    if st.closed {
                        // The task is gone: nobody would finish the unit.
                        return Err(WriteError::Closed);
                    }
                    st.handover = Some((w, done));
                }
                self.shared.wake.notify_one();
                outcome.await.unwrap_or(Err(WriteError::Closed))
            }
        }
    }

    /// Whether the writer task has stopped or the connection failed.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.shared.state().closed
    }
}
