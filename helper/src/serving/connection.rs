//! One client connection: credentials, handshake, then requests and
//! responses until the client leaves, idles out, or misbehaves.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::net::unix::UCred;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec, LengthDelimitedCodecError};
use vmrm_policy::{authorize_peer, Denial, Gid, PeerCredentials, Pid, Uid};
use vmrm_proto::{
    codec, decode, encode_payload, Answer, ClientMessage, FrameError, Outcome, ProtocolErrorKind,
    Request, RequestId, ServerMessage, LENGTH_PREFIX_LEN, PROTOCOL_VERSION,
};

use crate::removal;
use crate::serving::accounting::Account;
use crate::serving::admission::Ticket;
use crate::serving::audit;
use crate::serving::service::{Policy, Service};
use crate::sys;

/// `PATH_MAX`: a longer path cannot name anything.
const PATH_MAX: usize = 4096;

/// The server's self-description in hello and pong.
pub fn server_name() -> String {
    format!("vmrmd {}", env!("CARGO_PKG_VERSION"))
}

fn denied(d: Denial) -> Outcome {
    Outcome::Denied {
        reason: d.reason,
        message: d.message,
    }
}

/// Why the read side of a connection ended.
enum ReadEnd {
    /// Clean close between frames.
    Closed,
    /// Tell the peer why, then close.
    Protocol(ProtocolErrorKind, String),
    /// The connection broke; nothing to tell.
    Broken,
}

struct Conn {
    service: Arc<Service>,
    peer: PeerCredentials,
    /// Taken by the kernel at connect, like the uid; the allow-lists they
    /// are checked against are the policy in force at each request.
    groups: Vec<Gid>,
    /// Whose removal slots this connection's removals take.
    account: Account,
    reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
}

/// Serve one accepted connection from the peer with credentials `cred`.
/// `_ticket` is its place under the connection caps, given back on return.
pub async fn serve(service: Arc<Service>, stream: UnixStream, cred: UCred, _ticket: Ticket) {
    let peer = PeerCredentials {
        uid: Uid(cred.uid()),
        gid: Gid(cred.gid()),
        pid: cred.pid().map(Pid),
    };
    let groups: Vec<Gid> = match sys::peer_groups(stream.as_fd()) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, peer_uid = peer.uid.0, "cannot read peer groups");
            Vec::new()
        }
    };
    let account = service.account_of(peer.uid);
    let (read, write) = stream.into_split();
    let mut conn = Conn {
        service,
        peer,
        groups,
        account,
        reader: FramedRead::new(read, codec()),
        writer: FramedWrite::new(write, codec()),
    };
    let end = conn.run().await;
    if let ReadEnd::Protocol(kind, message) = end {
        // The pid only when the kernel gave one: never a made-up 0.
        tracing::info!(peer_uid = conn.peer.uid.0, peer_pid = conn.peer.pid.map(|p| p.0), ?kind, %message, "closing connection");
        let _ = conn.send(&ServerMessage::Error { kind, message }).await;
    }
}

impl Conn {
    async fn run(&mut self) -> ReadEnd {
        match self.next_message().await {
            Ok(ClientMessage::Hello { version }) if version == PROTOCOL_VERSION => {}
            Ok(ClientMessage::Hello { version }) => {
                return ReadEnd::Protocol(
                    ProtocolErrorKind::UnsupportedVersion,
                    format!("client speaks protocol {version}, vmrmd speaks {PROTOCOL_VERSION}"),
                )
            }
            Ok(ClientMessage::Request { .. }) => {
                return ReadEnd::Protocol(
                    ProtocolErrorKind::UnexpectedMessage,
                    "a request came before the hello".into(),
                )
            }
            Err(end) => return end,
        }
        // Only now, with the version agreed, is anything after the hello
        // read: a request pipelined behind a hello we refused above is never
        // executed (the client could not know how we would read it).
        let hello = ServerMessage::Hello {
            version: PROTOCOL_VERSION,
            server: server_name(),
        };
        if self.feed(&hello).await.is_err() {
            return ReadEnd::Broken;
        }
        // A client may pipeline its first request behind its hello (PROTOCOL.md,
        // "Pipelining"). Then our hello waits in the write buffer and leaves in
        // one write with that response, so the client wakes once, not twice.
        // Otherwise the client waits for our hello before it asks: send it now.
        if !self.frame_buffered() && self.flush().await.is_err() {
            return ReadEnd::Broken;
        }
        loop {
            let (id, request) = match self.next_message().await {
                Ok(ClientMessage::Request { id, request }) => (id, request),
                Ok(ClientMessage::Hello { .. }) => {
                    return ReadEnd::Protocol(
                        ProtocolErrorKind::UnexpectedMessage,
                        "a second hello".into(),
                    )
                }
                Err(end) => return end,
            };
            let (answer, record) = self.handle(id, request).await;
            let sent = self.send(&ServerMessage::Response { id, answer }).await;
            // The end line and the counters come after the answer: formatting
            // a JSON line costs tens of µs on a cold CPU, and the client
            // should not wait for it. The start line, written before the
            // removal began, is what a crash must not lose.
            if let Some(record) = record {
                record.write(&self.peer, id, &self.service);
            }
            if sent.is_err() {
                return ReadEnd::Broken;
            }
        }
    }

    /// The answer, and for a removal what its audit line and the counters
    /// must record once the answer is on its way.
    async fn handle(&self, id: RequestId, request: Request) -> (Answer, Option<Record>) {
        match request {
            Request::Ping => (
                Answer::Pong {
                    server: server_name(),
                },
                None,
            ),
            Request::Stats => match self.denial(&self.service.policy()) {
                Some(Denial { reason, message }) => (Answer::Denied { reason, message }, None),
                None => (Answer::Stats(self.service.stats.snapshot()), None),
            },
            Request::Remove { path } => {
                let started = Instant::now();
                let (outcome, removal, top) = self.remove(id, &path).await;
                let took = started.elapsed();
                let record = Record {
                    removal,
                    path,
                    outcome: outcome.clone(),
                    took,
                    top,
                };
                (Answer::Removal(outcome), Some(record))
            }
        }
    }

    /// The allow-lists of the policy in force now, not of the one at
    /// connect: a reload that drops a uid ends its persistent connection's
    /// removals at the next request (issue 8, attack 7).
    #[must_use]
    fn denial(&self, policy: &Policy) -> Option<Denial> {
        authorize_peer(&policy.config, &self.peer, &self.groups).err()
    }

    /// The outcome, the audit id of the removal when it got as far as
    /// starting (a well-formed path with a removal slot), and the top
    /// directory's fd when it was opened (closed after the answer).
    async fn remove(
        &self,
        id: RequestId,
        path: &[u8],
    ) -> (Outcome, Option<audit::RemovalId>, Option<OwnedFd>) {
        if let Some(d) = self.denial(&self.service.policy()) {
            return (denied(d), None, None);
        }
        if path.len() > PATH_MAX {
            let message = format!("path of {} bytes exceeds PATH_MAX", path.len());
            return (Outcome::BadRequest { message }, None, None);
        }
        // In fair turn with other accounts, within this account's cap.
        let Ok(_slot) = self.service.removals.acquire_for(self.account).await else {
            let message = "vmrmd is shutting down".into();
            return (Outcome::Unavailable { message }, None, None);
        };
        // Checked again under the policy the removal runs with: a reload
        // while this request waited for its slot counts.
        let policy = self.service.policy();
        if let Some(d) = self.denial(&policy) {
            return (denied(d), None, None);
        }
        // Only a path of the grammar starts a removal (so its start line is
        // short); a crash from here on leaves a start with no end.
        let removal = policy
            .config
            .target(path)
            .is_ok()
            .then(|| audit::started(audit::Actor::Peer(&self.peer, id), path));
        let peer = self.peer;
        let path = path.to_vec();
        // Run the removal on this worker thread, handing the runtime's other
        // tasks to another: no thread hop (and its wake-up latency) between
        // reading the request and removing. Never without the hand-off: the
        // sockets are polled by one parked worker at a time, and a long
        // removal run in place on the worker that last polled them leaves
        // every other connection unheard until it ends (SECURITY.md,
        // "Threads").
        let finished = tokio::task::block_in_place(move || {
            removal::remove(&policy.config, &policy.prefixes, &peer, &path)
        });
        (finished.outcome, removal, finished.top)
    }

    /// The next decoded message. Waits up to the idle timeout for a frame to
    /// start, then up to the frame timeout for all of it, so a client that
    /// trickles one byte a second cannot hold a slot for long.
    async fn next_message(&mut self) -> Result<ClientMessage, ReadEnd> {
        let idle = self.service.limits.idle_timeout();
        let frame = self.service.limits.frame_timeout();
        if self.reader.read_buffer().is_empty()
            && timeout(idle, self.reader.get_ref().readable())
                .await
                .is_err()
        {
            return Err(ReadEnd::Protocol(
                ProtocolErrorKind::Timeout,
                format!("idle for {}s", idle.as_secs()),
            ));
        }
        let payload: BytesMut = match timeout(frame, self.reader.next()).await {
            Err(_) => {
                return Err(ReadEnd::Protocol(
                    ProtocolErrorKind::Timeout,
                    format!("frame not complete within {}s", frame.as_secs()),
                ))
            }
            Ok(None) => return Err(ReadEnd::Closed),
            Ok(Some(Ok(payload))) => payload,
            Ok(Some(Err(e))) => {
                let too_large = e
                    .get_ref()
                    .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
                return Err(if too_large {
                    ReadEnd::Protocol(
                        ProtocolErrorKind::FrameTooLarge,
                        format!("frame exceeds {} bytes", vmrm_proto::MAX_FRAME_LEN),
                    )
                } else {
                    ReadEnd::Broken
                });
            }
        };
        decode::<ClientMessage>(&payload).map_err(|e: FrameError| {
            ReadEnd::Protocol(ProtocolErrorKind::MalformedFrame, e.to_string())
        })
    }

    /// Whether the read buffer already holds the next frame whole (or a
    /// length the codec refuses at once), so reading it waits for nothing.
    fn frame_buffered(&self) -> bool {
        let buffered = self.reader.read_buffer();
        let Some(prefix) = buffered.first_chunk::<LENGTH_PREFIX_LEN>() else {
            return false;
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        len > vmrm_proto::MAX_FRAME_LEN || buffered.len() - LENGTH_PREFIX_LEN >= len
    }

    /// Send one message, with whatever [`Conn::feed`] left in the write
    /// buffer before it; a client that does not take them within the frame
    /// timeout is dropped.
    async fn send(&mut self, msg: &ServerMessage) -> Result<(), ()> {
        let payload = encode(msg)?;
        let limit: Duration = self.service.limits.frame_timeout();
        match timeout(limit, self.writer.send(payload)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Put one message in the write buffer, to leave with the next
    /// [`Conn::send`] or [`Conn::flush`].
    async fn feed(&mut self, msg: &ServerMessage) -> Result<(), ()> {
        let payload = encode(msg)?;
        let limit: Duration = self.service.limits.frame_timeout();
        match timeout(limit, self.writer.feed(payload)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Write what [`Conn::feed`] buffered, within the frame timeout.
    async fn flush(&mut self) -> Result<(), ()> {
        let limit: Duration = self.service.limits.frame_timeout();
        let flush = SinkExt::<bytes::Bytes>::flush(&mut self.writer);
        match timeout(limit, flush).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// One message's payload, for the length-delimited writer.
fn encode(msg: &ServerMessage) -> Result<bytes::Bytes, ()> {
    match encode_payload(msg) {
        Ok(payload) => Ok(bytes::Bytes::from(payload)),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode response");
            Err(())
        }
    }
}

/// What one removal leaves to do once it is answered: its audit line, the
/// counters, and closing the top directory's fd.
struct Record {
    removal: Option<audit::RemovalId>,
    path: Vec<u8>,
    outcome: Outcome,
    took: Duration,
    top: Option<OwnedFd>,
}

impl Record {
    fn write(self, peer: &PeerCredentials, id: RequestId, service: &Service) {
        if let Some(top) = self.top {
            // The last close of a removed directory frees its inode (up to
            // 2 ms on ext4): on a blocking thread, so neither this client
            // nor the runtime's other connections wait for it.
            tokio::task::spawn_blocking(move || drop(top));
        }
        service.stats.record(&self.outcome, self.took);
        let actor = audit::Actor::Peer(peer, id);
        audit::removal(actor, self.removal, &self.path, &self.outcome, self.took);
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
