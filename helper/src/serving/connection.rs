//! One client connection, served on a thread of its own: credentials,
//! handshake, then requests and responses until the client leaves, idles
//! out, or misbehaves.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmrm_policy::{authorize_peer, Denial, Gid, PeerCredentials};
use vmrm_proto::{
    decode, Answer, ClientMessage, FrameError, Outcome, ProtocolErrorKind, Request, RequestId,
    ServerMessage, PROTOCOL_VERSION,
};

use crate::removal;
use crate::serving::accounting::Account;
use crate::serving::admission::Ticket;
use crate::serving::audit;
use crate::serving::service::{Policy, Service};
use crate::serving::wire::{Wire, WireError};
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
    wire: Wire,
}

/// Serve one accepted connection from `peer` (its kernel credentials, taken
/// at connect) on the calling thread, which it blocks until the client
/// leaves, idles out or misbehaves. `_ticket` is its place under the
/// connection caps, given back on return.
///
/// A thread per connection (connections are capped, 256 by default): a
/// request is read, checked, carried out and answered by the thread the
/// kernel woke for it, with no hand-off to another thread and no runtime
/// in between (SECURITY.md, "Threads").
pub fn serve(service: Arc<Service>, stream: UnixStream, peer: PeerCredentials, _ticket: Ticket) {
    let groups: Vec<Gid> = match sys::peer_groups(stream.as_fd()) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, peer_uid = peer.uid.0, "cannot read peer groups");
            Vec::new()
        }
    };
    let account = service.account_of(peer.uid);
    let limits = &service.limits;
    let wire = Wire::new(stream, limits.idle_timeout(), limits.frame_timeout());
    let mut conn = Conn {
        service,
        peer,
        groups,
        account,
        wire,
    };
    let end = conn.run();
    if let ReadEnd::Protocol(kind, message) = end {
        // The pid only when the kernel gave one: never a made-up 0.
        tracing::info!(peer_uid = conn.peer.uid.0, peer_pid = conn.peer.pid.map(|p| p.0), ?kind, %message, "closing connection");
        let _ = conn.send(&ServerMessage::Error { kind, message });
    }
}

impl Conn {
    fn run(&mut self) -> ReadEnd {
        match self.next_message() {
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
        if self.feed(&hello).is_err() {
            return ReadEnd::Broken;
        }
        // A client may pipeline its first request behind its hello (PROTOCOL.md,
        // "Pipelining"). Then our hello waits in the output and leaves in
        // one write with that response, so the client wakes once, not twice.
        // Otherwise the client waits for our hello before it asks: send it now.
        if !self.wire.frame_buffered() && self.wire.flush().is_err() {
            return ReadEnd::Broken;
        }
        loop {
            let (id, request) = match self.next_message() {
                Ok(ClientMessage::Request { id, request }) => (id, request),
                Ok(ClientMessage::Hello { .. }) => {
                    return ReadEnd::Protocol(
                        ProtocolErrorKind::UnexpectedMessage,
                        "a second hello".into(),
                    )
                }
                Err(end) => return end,
            };
            let (answer, record) = self.handle(id, request);
            let response = ServerMessage::Response { id, answer };
            let sent = self.send(&response);
            // The end line, the counters and the close of the removed top
            // come after the answer: formatting a JSON line costs tens of µs
            // on a cold CPU, and the last close of a removed directory up to
            // 2 ms on ext4; the client should not wait for either. The start
            // line, written before the removal began, is what a crash must
            // not lose.
            // A record comes only with a removal's answer, whose outcome it
            // logs: taken back from the sent message, not copied before.
            if let (
                Some(record),
                ServerMessage::Response {
                    answer: Answer::Removal(outcome),
                    ..
                },
            ) = (record, response)
            {
                record.write(&outcome, &self.peer, id, &self.service);
            }
            if sent.is_err() {
                return ReadEnd::Broken;
            }
        }
    }

    /// The answer, and for a removal what its audit line and the counters
    /// must record (besides the outcome, which the answer carries) once the
    /// answer is on its way.
    fn handle(&self, id: RequestId, request: Request) -> (Answer, Option<Record>) {
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
                let (outcome, removal, top) = self.remove(id, &path);
                let took = started.elapsed();
                let record = Record {
                    removal,
                    path,
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
    fn remove(
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
        let Ok(_slot) = self.service.removals.wait_for(self.account) else {
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
        // On this connection's own thread: no other connection waits for it.
        let finished = removal::remove(&policy.config, &policy.prefixes, &self.peer, path);
        (finished.outcome, removal, finished.top)
    }

    /// The next decoded message (see [`Wire::next_frame`] for the waits).
    fn next_message(&mut self) -> Result<ClientMessage, ReadEnd> {
        let payload = self.wire.next_frame().map_err(|e| match e {
            WireError::Closed => ReadEnd::Closed,
            WireError::Broken => ReadEnd::Broken,
            WireError::Idle(idle) => ReadEnd::Protocol(
                ProtocolErrorKind::Timeout,
                format!("idle for {}s", idle.as_secs()),
            ),
            WireError::Incomplete(frame) => ReadEnd::Protocol(
                ProtocolErrorKind::Timeout,
                format!("frame not complete within {}s", frame.as_secs()),
            ),
            WireError::TooLarge => ReadEnd::Protocol(
                ProtocolErrorKind::FrameTooLarge,
                format!("frame exceeds {} bytes", vmrm_proto::MAX_FRAME_LEN),
            ),
        })?;
        decode::<ClientMessage>(payload).map_err(|e: FrameError| {
            ReadEnd::Protocol(ProtocolErrorKind::MalformedFrame, e.to_string())
        })
    }

    /// Send one message, with whatever [`Conn::feed`] left in the output
    /// before it.
    fn send(&mut self, msg: &ServerMessage) -> Result<(), ()> {
        self.feed(msg)?;
        self.wire.flush().map_err(drop)
    }

    /// Put one message in the output, to leave with the next send.
    fn feed(&mut self, msg: &ServerMessage) -> Result<(), ()> {
        self.wire.feed(encode(msg)?);
        Ok(())
    }
}

/// One message as a frame.
fn encode(msg: &ServerMessage) -> Result<Vec<u8>, ()> {
    match vmrm_proto::encode(msg) {
        Ok(frame) => Ok(frame),
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
    took: Duration,
    top: Option<OwnedFd>,
}

impl Record {
    fn write(self, outcome: &Outcome, peer: &PeerCredentials, id: RequestId, service: &Service) {
        service.stats.record(outcome, self.took);
        let actor = audit::Actor::Peer(peer, id);
        audit::removal(actor, self.removal, &self.path, outcome, self.took);
        // The last close of a removed directory frees its inode (up to 2 ms
        // on ext4): after the answer, on this connection's own thread.
        drop(self.top);
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
