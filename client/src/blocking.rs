//! The blocking client: one persistent connection, no async runtime (the
//! CLI starts in a millisecond).

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use vmrm_proto::{
    decode, encode, read_frame, Answer, FrameError, Outcome, Request, RequestId, ServerMessage,
    Stats,
};

use crate::error::Waiting;
use crate::session::{self, ClientOptions, Denied, Removal};
use crate::ClientError;

/// A blocking connection to vmrmd. Connects on first use; reconnects once
/// when the helper dropped an idle connection or restarted (every request
/// is safe to repeat).
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    stream: Option<UnixStream>,
    next_id: RequestId,
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

    fn exchange(&mut self, msg: &vmrm_proto::ClientMessage) -> Result<ServerMessage, ClientError> {
        if self.stream.is_none() {
            self.connect()?;
        }
        let frame = encode(msg).map_err(|error| self.frame_err(error))?;
        let stream = self.stream.as_mut().ok_or_else(|| ClientError::Closed {
            socket: self.options.socket.clone(),
        })?;
        let sent = stream.write_all(&frame);
        sent.map_err(|e| self.io_err(e, Waiting::Send))?;
        self.receive()
    }

    fn connect(&mut self) -> Result<(), ClientError> {
        let stream = UnixStream::connect(&self.options.socket)
            .map_err(|error| session::connect_error(&self.options, error))?;
        let timeouts = stream
            .set_read_timeout(Some(self.options.response_timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.options.send_timeout)));
        timeouts.map_err(|e| self.io_err(e, Waiting::Send))?;
        self.stream = Some(stream);
        let frame = encode(&session::hello()).map_err(|error| self.frame_err(error))?;
        let written = self.stream.as_mut().map(|s| s.write_all(&frame));
        if let Some(Err(e)) = written {
            // A helper at its connection limit sends "busy" and hangs up
            // without reading our hello: report its refusal, not EPIPE.
            let refusal = if session::peer_hung_up(&e) {
                self.receive().ok()
            } else {
                None
            };
            self.stream = None;
            return Err(match refusal {
                Some(msg) => match session::check_hello(&self.options.socket, msg) {
                    Err(refused) => refused,
                    Ok(()) => self.io_err(e, Waiting::Send),
                },
                None => self.io_err(e, Waiting::Send),
            });
        }
        let hello = self.receive();
        match hello.and_then(|msg| session::check_hello(&self.options.socket, msg)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
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
    /// Connect if needed (blocking: once per connection), send the request,
    /// return without waiting. Then wait until [`Client::as_fd`] is readable
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
        self.stream.as_ref().map(|s| s.as_fd())
    }

    /// Read the answer (it should be waiting) and finish. `Ok(Err(p))`: the
    /// request was sent again (stale connection, refilled top); wait for
    /// readability and call this again with `p`.
    pub fn finish_remove(
        &mut self,
        mut pending: PendingRemoval,
    ) -> Result<Result<Outcome, PendingRemoval>, ClientError> {
        let answer = self
            .receive()
            .and_then(|msg| session::check_response(&self.options.socket, pending.id, msg));
        let answer = match answer {
            Ok(answer) => answer,
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
            if !reused {
                self.connect()?;
            }
            pending.id = self.next_id;
            self.next_id += 1;
            let frame = encode(&session::request(pending.id, request.clone()))
                .map_err(|error| self.frame_err(error))?;
            let stream = self.stream.as_mut().ok_or_else(|| ClientError::Closed {
                socket: self.options.socket.clone(),
            })?;
            match stream.write_all(&frame) {
                Ok(()) => {
                    pending.reused = pending.reused || reused;
                    return Ok(());
                }
                Err(e) => {
                    self.stream = None;
                    let e = self.io_err(e, Waiting::Send);
                    if !(reused && resend && e.is_retryable()) {
                        return Err(e);
                    }
                    resend = false;
                }
            }
        }
    }
}
