//! The accept loop: connection cap, a thread for each connection admitted,
//! shutdown, and waiting for removals in flight before exit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vmrm_policy::{Gid, PeerCredentials, Pid, Uid};
use vmrm_proto::{encode, ProtocolErrorKind, ServerMessage};

use crate::serving::admission::Refusal;
use crate::serving::connection;
use crate::serving::service::Service;

/// How long shutdown waits for removals in flight to finish.
const DRAIN: Duration = Duration::from_secs(30);

/// How long a refused connection stays open after its "busy" frame, so the
/// client's hello lands (rather than failing with EPIPE) and it reads why.
const LINGER: Duration = Duration::from_secs(1);

/// Refused connections kept open at once for [`LINGER`]; past that, a flood
/// of refused connections is closed at once, fds are not held for it.
const MAX_LINGERING: usize = 64;

/// Accept and serve connections until `shutdown` resolves.
pub async fn serve(
    service: Arc<Service>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // connections already open keep being served.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The kernel's record of who connected (SO_PEERCRED), taken at
        // connect time: a peer that changes uid afterwards, or passes the
        // socket on, is still judged as who it was.
        let peer = match getsockopt(&stream, sockopt::PeerCredentials) {
            Ok(cred) => PeerCredentials {
                uid: Uid(cred.uid()),
                gid: Gid(cred.gid()),
                // 0: the peer is in a pid namespace we cannot see.
                pid: Some(cred.pid()).filter(|p| *p != 0).map(Pid),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; closing");
                continue;
            }
        };
        // Charged to the account, not the uid: a tenant's subordinate uids
        // (a user namespace) share its cap (issue 8, attack 5).
        match service.admission.admit(service.account_of(peer.uid)) {
            Ok(ticket) => {
                service.stats.connection_accepted();
                // Off the runtime: its own thread waits on it from now on.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take a connection off the runtime; closing");
                        continue;
                    }
                };
                let service = Arc::clone(&service);
                // The blocking pool holds a thread for every admitted
                // connection (daemon.rs sizes it), and keeps idle ones for
                // the next connection.
                tokio::task::spawn_blocking(move || {
                    connection::serve(service, stream, peer, ticket)
                });
            }
            Err(refusal) => {
                service.stats.connection_refused();
                let linger = Arc::clone(&lingering).try_acquire_owned().ok();
                tokio::spawn(refuse_busy(stream, refusal, linger));
            }
        }
    }
    drain(&service).await;
}

/// Over the connection cap: say so at once, then close. With `linger`,
/// the socket stays open up to [`LINGER`] taking (and dropping) what the
/// client sends, so a client that writes its hello first still reads the
/// frame instead of seeing "Broken pipe".
async fn refuse_busy(
    mut stream: tokio::net::UnixStream,
    refusal: Refusal,
    linger: Option<OwnedSemaphorePermit>,
) {
    let message = match refusal {
        Refusal::Full => "vmrmd is at its connection limit; retry later",
        Refusal::UidFull => {
            "this uid (counted with the other uids of its subordinate range) holds as many \
             connections as vmrmd allows one tenant; close some"
        }
    };
    let msg = ServerMessage::Error {
        kind: ProtocolErrorKind::Busy,
        message: message.into(),
    };
    let Ok(frame) = encode(&msg) else { return };
    let sent = tokio::time::timeout(Duration::from_millis(100), stream.write_all(&frame)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    // shutdown(SHUT_WR): the client reads the frame, then end of stream.
    let _ = stream.shutdown().await;
    let Some(_linger) = linger else { return };
    let discard = async {
        let mut buf = [0u8; 4096];
        let mut taken = 0usize;
        // A hello is a few bytes; past 64 KiB the client is streaming
        // junk, and not worth holding an fd for.
        while taken < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => taken += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, discard).await;
}

/// Start no more removals (waiting ones are told vmrmd is shutting down),
/// and wait until none runs, bounded by [`DRAIN`].
async fn drain(service: &Service) {
    service.removals.close();
    match tokio::time::timeout(DRAIN, service.removals.idle()).await {
        Ok(()) => tracing::info!("no removal in flight; exiting"),
        Err(_) => tracing::warn!(
            "removals still running after {}s; exiting anyway",
            DRAIN.as_secs()
        ),
    }
}
