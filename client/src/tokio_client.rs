//! The tokio client: the same protocol and semantics as [`crate::Client`],
//! shareable between tasks (`&self` methods; requests on one connection are
//! sent one at a time).

use std::io;
use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::timeout;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use vmrm_proto::{
    codec, decode, encode_payload, Answer, ClientMessage, Outcome, Request, RequestId,
    ServerMessage, Stats,
};

use crate::error::Waiting;
use crate::session::{self, ClientOptions, Denied, Removal};
use crate::ClientError;

type Conn = Framed<UnixStream, LengthDelimitedCodec>;

/// How long to look for a refusal the helper sent before hanging up; it is
/// already in our receive buffer, so this only bounds a surprise.
const REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// An async connection to vmrmd; see [`crate::Client`] for the semantics.
#[derive(Debug)]
pub struct AsyncClient {
    options: ClientOptions,
    conn: Mutex<(Option<Conn>, RequestId)>,
}

impl AsyncClient {
    /// A client for `$VMRM_SOCKET` or the default socket.
    pub fn new() -> AsyncClient {
        AsyncClient::with_options(ClientOptions::default())
    }

    /// A client with these options; it connects on its first request.
    pub fn with_options(options: ClientOptions) -> AsyncClient {
        AsyncClient {
            options,
            conn: Mutex::new((None, 1)),
        }
    }

    /// The socket it connects to.
    pub fn socket(&self) -> &Path {
        &self.options.socket
    }

    /// Remove the tree at `path`; never returns `Emptied` (see
    /// [`crate::Client::remove`]).
    pub async fn remove(&self, path: &Path) -> Result<Outcome, ClientError> {
        let mut removal = Removal::new(path);
        loop {
            let answer = self.call(removal.request()).await?;
            // Finishing is one rmdir of an empty directory at most: too small
            // to be worth a trip to the blocking pool.
            if let Some(outcome) = removal.answer(&self.options.socket, answer)? {
                return Ok(outcome);
            }
        }
    }

    /// Is the helper there? Returns its version string.
    pub async fn ping(&self) -> Result<String, ClientError> {
        let answer = self.call(Request::Ping).await?;
        session::pong(&self.options.socket, answer)
    }

    /// The helper's counters since it started, or its refusal to show them.
    pub async fn stats(&self) -> Result<Result<Stats, Denied>, ClientError> {
        let answer = self.call(Request::Stats).await?;
        session::stats(&self.options.socket, answer)
    }

    /// Send one request and await its answer, reconnecting once if a reused
    /// connection turns out to be dead.
    pub async fn call(&self, request: Request) -> Result<Answer, ClientError> {
        let mut guard = self.conn.lock().await;
        let (conn, next_id) = &mut *guard;
        let reused = conn.is_some();
        let first = self.call_once(conn, next_id, request.clone()).await;
        match first {
            Err(e) if reused && e.is_retryable() => self.call_once(conn, next_id, request).await,
            other => other,
        }
    }

    async fn call_once(
        &self,
        conn: &mut Option<Conn>,
        next_id: &mut RequestId,
        request: Request,
    ) -> Result<Answer, ClientError> {
        let id = *next_id;
        *next_id += 1;
        let fresh = conn.is_none();
        if fresh {
            *conn = Some(self.connect().await?);
        }
        let result = match conn.as_mut() {
            Some(c) => {
                self.exchange(c, fresh, &session::request(id, request))
                    .await
            }
            None => Err(ClientError::Closed {
                socket: self.options.socket.clone(),
            }),
        };
        let result = result.and_then(|msg| session::check_response(&self.options.socket, id, msg));
        if result.is_err() {
            *conn = None;
        }
        result
    }

    /// A new connection: nothing is written yet.
    async fn connect(&self) -> Result<Conn, ClientError> {
        let stream = UnixStream::connect(&self.options.socket)
            .await
            .map_err(|error| session::connect_error(&self.options, error))?;
        Ok(Framed::new(stream, codec()))
    }

    /// Send `msg` and await the answer. On a `fresh` connection our hello
    /// goes out with `msg` in one write (pipelined, PROTOCOL.md), and the
    /// helper's hello is read and checked before the answer; a helper that
    /// refuses the hello never executes `msg`.
    async fn exchange(
        &self,
        conn: &mut Conn,
        fresh: bool,
        msg: &ClientMessage,
    ) -> Result<ServerMessage, ClientError> {
        match self.send(conn, fresh, msg).await {
            Ok(()) => {}
            // A helper at its connection limit sends "busy" and hangs up
            // without reading our hello: report its refusal, not EPIPE.
            Err(ClientError::Io { socket, error }) if fresh && session::peer_hung_up(&error) => {
                let refusal = match timeout(REFUSAL_WAIT, conn.next()).await {
                    Ok(Some(Ok(frame))) => decode(&frame).ok(),
                    _ => None,
                };
                return Err(match refusal {
                    Some(msg) => match session::check_hello(&self.options.socket, msg) {
                        Err(refused) => refused,
                        Ok(()) => ClientError::Io { socket, error },
                    },
                    None => ClientError::Io { socket, error },
                });
            }
            Err(e) => return Err(e),
        }
        if fresh {
            let hello = self.receive(conn).await?;
            session::check_hello(&self.options.socket, hello)?;
        }
        self.receive(conn).await
    }

    /// Write `msg`, after our hello on a `fresh` connection: one write.
    async fn send(
        &self,
        conn: &mut Conn,
        fresh: bool,
        msg: &ClientMessage,
    ) -> Result<(), ClientError> {
        let socket = || self.options.socket.clone();
        let payload = |msg: &ClientMessage| {
            encode_payload(msg)
                .map(bytes::Bytes::from)
                .map_err(|error| ClientError::Frame {
                    socket: socket(),
                    error,
                })
        };
        let request = payload(msg)?;
        let hello = if fresh {
            Some(payload(&session::hello())?)
        } else {
            None
        };
        let sent = timeout(self.options.send_timeout, async {
            if let Some(hello) = hello {
                conn.feed(hello).await?;
            }
            conn.send(request).await
        });
        match sent.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClientError::Io {
                socket: socket(),
                error: e,
            }),
            Err(_) => Err(ClientError::Timeout {
                socket: socket(),
                waiting: Waiting::Send,
                after: self.options.send_timeout,
            }),
        }
    }

    /// The next message, within the response timeout.
    async fn receive(&self, conn: &mut Conn) -> Result<ServerMessage, ClientError> {
        let socket = || self.options.socket.clone();
        match timeout(self.options.response_timeout, conn.next()).await {
            Ok(Some(Ok(frame))) => decode(&frame).map_err(|error| ClientError::Frame {
                socket: socket(),
                error,
            }),
            Ok(Some(Err(e))) if e.kind() == io::ErrorKind::InvalidData => Err(ClientError::Frame {
                socket: socket(),
                error: vmrm_proto::FrameError::Io(e),
            }),
            Ok(Some(Err(e))) => Err(ClientError::Io {
                socket: socket(),
                error: e,
            }),
            Ok(None) => Err(ClientError::Closed { socket: socket() }),
            Err(_) => Err(ClientError::Timeout {
                socket: socket(),
                waiting: Waiting::Answer,
                after: self.options.response_timeout,
            }),
        }
    }
}

impl Default for AsyncClient {
    fn default() -> Self {
        AsyncClient::new()
    }
}
