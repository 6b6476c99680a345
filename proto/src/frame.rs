//! Length-prefixed framing and the postcard payload codec.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Bytes in the big-endian length prefix of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Largest payload either side accepts. Requests are a path (at most
/// `PATH_MAX`); responses carry at most [`crate::MAX_REPORTED_FAILURES`]
/// failures of at most [`crate::MAX_REPORTED_PATH_LEN`] bytes each, which
/// fits well inside this bound. A larger declared length is refused before
/// any of it is read, so a peer cannot make the other side allocate it.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Why a frame or its payload was refused. Like every error of vmrm, its
/// message carries the cause, and `source()` is not set, so that printing
/// the message alone says everything, once.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The declared or encoded length is over [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    TooLarge {
        /// The length, in bytes.
        len: usize,
    },
    /// A frame of length zero, which no message encodes to.
    #[error("empty frame")]
    Empty,
    /// The payload does not decode as a message.
    #[error("malformed payload: {0}")]
    Malformed(postcard::Error),
    /// The payload holds a message followed by more bytes.
    #[error("{trailing} trailing bytes after the message")]
    TrailingBytes {
        /// Bytes left over after the message.
        trailing: usize,
    },
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing the stream failed.
    #[error("i/o error: {0}")]
    Io(io::Error),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> FrameError {
        FrameError::Io(e)
    }
}

/// Serialize `msg` into one complete frame: length prefix and payload.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let payload = encode_payload(msg)?;
    // `encode_payload` bounds the length far below u32::MAX.
    let len =
        u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge { len: payload.len() })?;
    let mut out = Vec::with_capacity(LENGTH_PREFIX_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Serialize `msg` into a payload (no length prefix), for a codec that adds
/// the prefix itself. Refuses a payload the other side would refuse.
pub fn encode_payload<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let payload = postcard::to_stdvec(msg).map_err(FrameError::Malformed)?;
    check_len(payload.len())?;
    Ok(payload)
}

/// Deserialize one payload (without its length prefix). Bytes left over after
/// the message are an error: a well-behaved peer never sends them, and
/// accepting them would let two readers disagree on what was asked.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            trailing: rest.len(),
        });
    }
    Ok(msg)
}

fn check_len(len: usize) -> Result<(), FrameError> {
    match len {
        0 => Err(FrameError::Empty),
        len if len > MAX_FRAME_LEN => Err(FrameError::TooLarge { len }),
        _ => Ok(()),
    }
}

/// Read one frame's payload from a blocking reader. `Ok(None)` is a clean end
/// of stream before any byte of a new frame.
pub fn read_frame(reader: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    let mut got = 0;
    while got < LENGTH_PREFIX_LEN {
        match reader.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    check_len(len)?;
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            _ => FrameError::Io(e),
        })?;
    Ok(Some(payload))
}

/// Encode `msg` and write it as one frame to a blocking writer.
pub fn write_frame<T: Serialize>(writer: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let frame = encode(msg)?;
    writer.write_all(&frame)?;
    Ok(())
}

/// The same framing for tokio: a length-delimited codec whose frames are the
/// payloads that [`decode`] takes and whose maximum is [`MAX_FRAME_LEN`].
#[cfg(feature = "tokio-codec")]
pub fn codec() -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_PREFIX_LEN)
        .big_endian()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, Request};

    fn ping() -> ClientMessage {
        ClientMessage::Request {
            id: 7,
            request: Request::Ping,
        }
    }

    #[test]
    fn round_trip_through_reader() {
        let frame = encode(&ping()).unwrap();
        let payload = read_frame(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(decode::<ClientMessage>(&payload).unwrap(), ping());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let frame = encode(&ping()).unwrap();
        let mut payload = frame[LENGTH_PREFIX_LEN..].to_vec();
        payload.push(0);
        assert!(matches!(
            decode::<ClientMessage>(&payload),
            Err(FrameError::TrailingBytes { trailing: 1 })
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let prefix = u32::MAX.to_be_bytes();
        assert!(matches!(
            read_frame(&mut &prefix[..]),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frames_are_reported() {
        let frame = encode(&ping()).unwrap();
        for cut in 1..frame.len() {
            assert!(
                matches!(read_frame(&mut &frame[..cut]), Err(FrameError::Truncated)),
                "cut at {cut}"
            );
        }
        assert!(read_frame(&mut &frame[..0]).unwrap().is_none());
    }

    #[test]
    fn empty_frame_is_refused() {
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..]),
            Err(FrameError::Empty)
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes: Vec<u8>) {
            let _ = decode::<ClientMessage>(&bytes);
            let _ = decode::<crate::ServerMessage>(&bytes);
            let _ = read_frame(&mut &bytes[..]);
        }

        #[test]
        fn remove_requests_round_trip(path: Vec<u8>, id: u64) {
            let msg = ClientMessage::Request { id, request: Request::Remove { path } };
            let frame = encode(&msg).unwrap();
            let payload = read_frame(&mut &frame[..]).unwrap().unwrap();
            proptest::prop_assert_eq!(decode::<ClientMessage>(&payload).unwrap(), msg);
        }
    }
}
