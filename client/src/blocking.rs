//! The blocking client: one persistent connection, no async runtime (the
//! CLI starts in a millisecond).

use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use vmrm_proto::{
    decode, encode, read_frame, Answer, ClientMessage, FrameError, Outcome, Request, RequestId,
    ServerMessage, Stats,
};

use crate::error::Waiting;
use crate::session::{self, ClientOptions, Denied, Removal};
use crate::ClientError;

/// A blocking connection to vmrmd. Connects on first use; reconnects once
/// when the helper dropped an idle connection or restarted (every request
/// is safe to repeat). A new connection's hello goes out with its first
/// request in one write (pipelined, PROTOCOL.md): one round trip, not two.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    /// Read through a buffer: the helper's hello and first response come in
    /// one write, and are then read with one read(2), not four.
    stream: Option<BufReader<UnixStream>>,
    next_id: RequestId,
    /// Our hello went out with a request and the helper's answer to it,
    /// which comes before the response, is still to be read.
    hello_unread: bool,
}

impl Client {
    /// A client for `$VMRM_SOCKET` or the default socket.
    pub fn new() -> Client {
        Client::with_options(ClientOptions::default())
    }

    /// A client with these options; it connects on its first request.
    pub fn with_options(options: ClientOptions) -> Client {
        Client {
            options,
            stream: None,
            next_id: 1,
            hello_unread: false,
        }
    }

    /// The socket it connects to.
    pub fn socket(&self) -> &Path {
        &self.options.socket
    }

    /// Remove the directory tree at `path` (absolute). Returns the helper's
    /// verdict; an `Emptied` top in a sticky prefix is finished here, so the
    /// result is never `Emptied`.
    pub fn remove(&mut self, path: &Path) -> Result<Outcome, ClientError> {
        let mut removal = Removal::new(path);
        loop {
            let answer = self.call(removal.request())?;
            if let Some(outcome) = removal.answer(&self.options.socket, answer)? {
                return Ok(outcome);
            }
        }
    }

    /// Is the helper there? Returns its version string.
    pub fn ping(&mut self) -> Result<String, ClientError> {
        let answer = self.call(Request::Ping)?;
        session::pong(&self.options.socket, answer)
    }

    /// The helper's counters since it started, or its refusal to show them.
    pub fn stats(&mut self) -> Result<Result<Stats, Denied>, ClientError> {
        let answer = self.call(Request::Stats)?;
        session::stats(&self.options.socket, answer)
    }

    /// Send one request and wait for its answer, reconnecting once if a
    /// reused connection turns out to be dead.
    pub fn call(&mut self, request: Request) -> Result<Answer, ClientError> {
        let reused = self.stream.is_some();
        match self.call_once(request.clone()) {
            Err(e) if reused && e.is_retryable() => {
                self.stream = None;
                self.call_once(request)
            }
            other => other,
        }
    }

    fn call_once(&mut self, request: Request) -> Result<Answer, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let result = self
            .exchange(&session::request(id, request))
            .and_then(|msg| session::check_response(&self.options.socket, id, msg));
        if result.is_err() {
            // Never reuse a connection in an unknown state.
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, msg: &ClientMessage) -> Result<ServerMessage, ClientError> {
        self.send(msg)?;
        self.receive_hello()?;
        self.receive()
    }

    /// Write `msg`; on a new connection, our hello and `msg` together, in
    /// one write. A helper that refuses the hello never executes `msg`.
    fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        // Bytes the helper sent that no request of ours asked for would be
        // taken for the next answer (and an event loop would wait for the fd
        // while they sit here): such a connection is not reused.
        if self.stream.as_ref().is_some_and(|s| !s.buffer().is_empty()) {
            self.stream = None;
        }
        let fresh = self.stream.is_none();
        let mut frame = Vec::new();
        if fresh {
            self.connect()?;
            frame = encode(&session::hello()).map_err(|error| self.frame_err(error))?;
        }
        let request = encode(msg).map_err(|error| self.frame_err(error))?;
        frame.extend_from_slice(&request);
        let stream = self.stream.as_mut().ok_or_else(|| ClientError::Closed {
            socket: self.options.socket.clone(),
        })?;
        let Err(e) = stream.get_mut().write_all(&frame) else {
            self.hello_unread = fresh;
            return Ok(());
        };
        // A helper at its connection limit sends "busy" and hangs up
        // without reading our hello: report its refusal, not EPIPE.
        let refusal = if fresh && session::peer_hung_up(&e) {
            self.receive().ok()
        } else {
            None
        };
        self.stream = None;
        Err(match refusal {
            Some(msg) => match session::check_hello(&self.options.socket, msg) {
                Err(refused) => refused,
                Ok(()) => self.io_err(e, Waiting::Send),
            },
            None => self.io_err(e, Waiting::Send),
        })
    }

    /// A new connection: nothing is written yet.
    fn connect(&mut self) -> Result<(), ClientError> {
        let stream = UnixStream::connect(&self.options.socket)
            .map_err(|error| session::connect_error(&self.options, error))?;
        let timeouts = stream
            .set_read_timeout(Some(self.options.response_timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.options.send_timeout)));
        timeouts.map_err(|e| self.io_err(e, Waiting::Send))?;
        self.stream = Some(BufReader::new(stream));
        self.hello_unread = false;
        Ok(())
    }

    /// Read and check the helper's hello, when it is still to be read: it
    /// comes before the response to the request sent with ours. An error
    /// here (a refused version, "busy") is the connection's end.
    fn receive_hello(&mut self) -> Result<(), ClientError> {
        if !self.hello_unread {
            return Ok(());
        }
        self.hello_unread = false;
        let msg = self.receive()?;
        session::check_hello(&self.options.socket, msg)
    }

    /// Whether something is there to read now, without waiting: an answer,
    /// an end of stream, or an error to report.
    fn readable_now(&self) -> bool {
        let Some(stream) = self.stream.as_ref() else {
            return true;
        };
        if !stream.buffer().is_empty() {
            return true;
        }
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        !matches!(
            rustix::net::recv(stream.get_ref(), &mut [0u8; 1], flags),
            Err(rustix::io::Errno::AGAIN)
        )
    }

    fn receive(&mut self) -> Result<ServerMessage, ClientError> {
        let stream = self.stream.as_mut().ok_or_else(|| ClientError::Closed {
            socket: self.options.socket.clone(),
        })?;
        match read_frame(stream) {
            Ok(Some(payload)) => decode(&payload).map_err(|error| self.frame_err(error)),
            Ok(None) => Err(ClientError::Closed {
                socket: self.options.socket.clone(),
            }),
            Err(FrameError::Io(e)) => Err(self.io_err(e, Waiting::Answer)),
            Err(FrameError::Truncated) => Err(ClientError::Closed {
                socket: self.options.socket.clone(),
            }),
            Err(error) => Err(self.frame_err(error)),
        }
    }

    /// The error for a failed read or write; a timeout says which wait ran
    /// out, and how long it was.
    fn io_err(&self, e: io::Error, waiting: Waiting) -> ClientError {
        let after = match waiting {
            Waiting::Send => self.options.send_timeout,
            Waiting::Answer => self.options.response_timeout,
        };
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                socket: self.options.socket.clone(),
                waiting,
                after,
            },
            _ => ClientError::Io {
                socket: self.options.socket.clone(),
                error: e,
            },
        }
    }

    fn frame_err(&self, error: FrameError) -> ClientError {
        ClientError::Frame {
            socket: self.options.socket.clone(),
            error,
        }
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// A removal sent and not yet answered; see [`Client::send_remove`].
#[derive(Debug)]
pub struct PendingRemoval {
    removal: Removal,
    id: RequestId,
    /// Sent on a connection an earlier request used: one resend is allowed
    /// if it turns out to be dead.
    reused: bool,
}

/// [`Client::remove`] in two halves, for an event loop (asyncio) that waits
/// for the answer itself instead of blocking a thread: no thread hop per
/// call. Same semantics: one resend on a stale connection, the sticky-top
/// finish, refilled tops asked again.
impl Client {
    /// Connect if needed (connect(2) only: the hello goes out with the
    /// request, and the helper's hello is read with the answer), send the
    /// request, return without waiting. Then wait until [`Client::as_fd`] is readable
    /// and call [`Client::finish_remove`].
    pub fn send_remove(&mut self, path: &Path) -> Result<PendingRemoval, ClientError> {
        let mut pending = PendingRemoval {
            removal: Removal::new(path),
            id: 0,
            reused: false,
        };
        self.send_pending(&mut pending)?;
        Ok(pending)
    }

    /// The connection's fd, to wait for readability; `None` when closed.
    pub fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.stream.as_ref().map(|s| s.get_ref().as_fd())
    }

    /// Whether [`Client::finish_remove`] would find something to read now
    /// without waiting (an answer, an end of stream or an error): a small
    /// removal is often answered by the time [`Client::send_remove`]
    /// returns, and an event loop can then skip its wait.
    pub fn answer_waiting(&self) -> bool {
        self.readable_now()
    }

    /// Read the answer (it should be waiting) and finish. `Ok(Err(p))`: the
    /// request was sent again (stale connection, refilled top), or only the
    /// helper's hello had come yet; wait for readability and call this
    /// again with `p`.
    pub fn finish_remove(
        &mut self,
        mut pending: PendingRemoval,
    ) -> Result<Result<Outcome, PendingRemoval>, ClientError> {
        // On a new connection the helper's hello comes first; it normally
        // arrives in one write with the answer, but if it came alone, the
        // answer is not there yet: wait for readability again, not here.
        let hello_was_unread = self.hello_unread;
        let answer = self.receive_hello().and_then(|()| {
            if hello_was_unread && !self.readable_now() {
                return Ok(None);
            }
            let msg = self.receive()?;
            session::check_response(&self.options.socket, pending.id, msg).map(Some)
        });
        let answer = match answer {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ok(Err(pending)),
            Err(e) => {
                self.stream = None;
                if pending.reused && e.is_retryable() {
                    pending.reused = false;
                    self.send_pending(&mut pending)?;
                    return Ok(Err(pending));
                }
                return Err(e);
            }
        };
        match pending.removal.answer(&self.options.socket, answer)? {
            Some(outcome) => Ok(Ok(outcome)),
            None => {
                self.send_pending(&mut pending)?;
                Ok(Err(pending))
            }
        }
    }

    /// Give up on a pending answer (its caller was cancelled): drop the
    /// connection, so a half-read answer is never taken for the next one.
    pub fn abandon(&mut self) {
        self.stream = None;
    }

    fn send_pending(&mut self, pending: &mut PendingRemoval) -> Result<(), ClientError> {
        let request = pending.removal.request();
        let mut resend = true;
        loop {
            let reused = self.stream.is_some();
            pending.id = self.next_id;
            self.next_id += 1;
            match self.send(&session::request(pending.id, request.clone())) {
                Ok(()) => {
                    pending.reused = pending.reused || reused;
                    return Ok(());
                }
                Err(e) => {
                    self.stream = None;
                    if !(reused && resend && e.is_retryable()) {
                        return Err(e);
                    }
                    resend = false;
                }
            }
        }
    }
}
