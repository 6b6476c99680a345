//! One connection's frames, read and written by the thread that serves it:
//! blocking, with deadlines (the idle timeout for a frame to start, the
//! frame timeout for the rest of it and for an answer to leave), so a
//! client that trickles bytes, or stops reading, holds its thread for a
//! bounded time only.
//!
//! Every wait is a `poll(2)` with the time left, and every read or write is
//! non-blocking (`MSG_DONTWAIT`): no socket option to set (the seccomp
//! filter allows no `setsockopt`), and a request that arrives on an idle
//! connection costs one `poll` and one `recv`, its answer one `send`.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{recv, send, RecvFlags, SendFlags};
use vmrm_proto::{LENGTH_PREFIX_LEN, MAX_FRAME_LEN};

use crate::deadline;

/// Bytes asked of the kernel per read. A request is at most a path of
/// `PATH_MAX` bytes, so one read takes it whole (or a pipelined hello and
/// request together); a longer frame is read in more.
const READ_CHUNK: usize = 8 * 1024;

/// Buffer room a connection keeps between frames.
const KEPT_CAPACITY: usize = 2 * READ_CHUNK;

/// Why no frame came.
#[derive(Debug)]
pub enum WireError {
    /// The client closed the connection between frames.
    Closed,
    /// No frame started within the idle timeout.
    Idle(Duration),
    /// A frame started but was not whole within the frame timeout.
    Incomplete(Duration),
    /// A frame declares a length over [`MAX_FRAME_LEN`]; refused before any
    /// of it is read, so a client cannot make vmrmd allocate it.
    TooLarge,
    /// The connection broke: reset, closed inside a frame, or an answer
    /// the client did not take within the frame timeout.
    Broken,
}

/// The socket with what was read and not yet taken, and what waits to be
/// written.
pub struct Wire {
    stream: UnixStream,
    /// `input[taken..]` is read and not yet handed out.
    input: Vec<u8>,
    taken: usize,
    output: Vec<u8>,
    idle: Duration,
    frame: Duration,
}

impl Wire {
    pub fn new(stream: UnixStream, idle: Duration, frame: Duration) -> Wire {
        Wire {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            taken: 0,
            output: Vec::new(),
            idle,
            frame,
        }
    }

    /// The next frame's payload. Waits up to the idle timeout for a frame
    /// to start, then up to the frame timeout for all of it.
    pub fn next_frame(&mut self) -> Result<&[u8], WireError> {
        self.compact();
        if self.input.is_empty() {
            let deadline = deadline::after(self.idle);
            match self.fill(deadline) {
                Filled::Some => {}
                Filled::End => return Err(WireError::Closed),
                Filled::TimedOut => return Err(WireError::Idle(self.idle)),
                Filled::Broken => return Err(WireError::Broken),
            }
        }
        let deadline = deadline::after(self.frame);
        loop {
            if let Some(len) = self.whole_frame()? {
                let start = self.taken + LENGTH_PREFIX_LEN;
                self.taken = start + len;
                return Ok(&self.input[start..start + len]);
            }
            match self.fill(deadline) {
                Filled::Some => {}
                // Closed inside a frame: nothing to answer.
                Filled::End | Filled::Broken => return Err(WireError::Broken),
                Filled::TimedOut => return Err(WireError::Incomplete(self.frame)),
            }
        }
    }

    /// Whether the next frame is already read whole (or its length is one
    /// that is refused at once), so taking it waits for nothing.
    pub fn frame_buffered(&self) -> bool {
        !matches!(self.whole_frame(), Ok(None))
    }

    /// Put one frame in the output, to leave with the next [`Wire::flush`]
    /// (taken as it is when nothing waits before it: no copy).
    pub fn feed(&mut self, frame: Vec<u8>) {
        if self.output.is_empty() {
            self.output = frame;
        } else {
            self.output.extend_from_slice(&frame);
        }
    }

    /// Write the output; a client that does not take it within the frame
    /// timeout is dropped.
    pub fn flush(&mut self) -> Result<(), WireError> {
        let deadline = deadline::after(self.frame);
        let mut sent = 0;
        let result = loop {
            if sent == self.output.len() {
                break Ok(());
            }
            let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            match send(self.stream.as_fd(), &self.output[sent..], flags) {
                // A stream socket takes something or says why not; nothing
                // taken would only spin.
                Ok(0) => break Err(WireError::Broken),
                Ok(n) => sent += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !self.wait(PollFlags::OUT, deadline) {
                        break Err(WireError::Broken);
                    }
                }
                Err(_) => break Err(WireError::Broken),
            }
        };
        self.output.clear();
        self.output.shrink_to(KEPT_CAPACITY);
        result
    }

    /// The length of the frame at the front of the input when all of it is
    /// there.
    fn whole_frame(&self) -> Result<Option<usize>, WireError> {
        let pending = &self.input[self.taken..];
        let Some(prefix) = pending.first_chunk::<LENGTH_PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Err(WireError::TooLarge);
        }
        Ok((pending.len() - LENGTH_PREFIX_LEN >= len).then_some(len))
    }

    /// Drop what was handed out, keeping the rest at the front; give back
    /// the room a large frame took (up to [`MAX_FRAME_LEN`]), so idle
    /// connections that each sent one do not keep it.
    fn compact(&mut self) {
        if self.taken > 0 {
            self.input.drain(..self.taken);
            self.taken = 0;
        }
        self.input.shrink_to(KEPT_CAPACITY);
    }

    /// Read what the client sent, waiting for it until `deadline`. Called
    /// only when what was read so far is not a whole frame, so more is
    /// rarely there yet: wait first, then read (one `recv` per request,
    /// not a failed one before the wait).
    fn fill(&mut self, deadline: Instant) -> Filled {
        // Room for one more chunk; the frame length is checked against
        // MAX_FRAME_LEN before a frame is read, so this stays bounded.
        self.input.reserve(READ_CHUNK);
        loop {
            if !self.wait(PollFlags::IN, deadline) {
                return Filled::TimedOut;
            }
            let spare = rustix::buffer::spare_capacity(&mut self.input);
            match recv(self.stream.as_fd(), spare, RecvFlags::DONTWAIT) {
                Ok((0, _)) => return Filled::End,
                Ok(_) => return Filled::Some,
                // Woken for nothing (or by a signal): wait again.
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(_) => return Filled::Broken,
            }
        }
    }

    /// Wait until the socket is ready for `events` (or hung up, which the
    /// next read or write reports); false when `deadline` passed first.
    fn wait(&self, events: PollFlags, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let timeout = Timespec::try_from(left).ok();
            let mut fds = [PollFd::new(&self.stream, events)];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) | Err(Errno::INTR) => {}
                Ok(_) => return true,
                // poll on one valid fd fails only for want of memory: give
                // up on this connection rather than spin.
                Err(_) => return false,
            }
        }
    }
}

/// What one read gave.
enum Filled {
    Some,
    End,
    TimedOut,
    Broken,
}
