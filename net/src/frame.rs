//! Frames: a 4-byte big-endian size, then that many bytes of body (header + message).
//!
//! Invariants:
//! - The size is checked against the caller's maximum (`socket.request.max.bytes`) before a
//!   single body byte is buffered, so a peer cannot make us reserve memory with a large size.
//! - A negative size is an error, never a huge `usize`.
//! - Fewer than 4 buffered bytes is "need more", not an error and never a panic.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the size prefix.
pub const FRAME_SIZE_BYTES: usize = 4;

/// Why a frame cannot be read; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("frame size {0} is negative; the peer is not speaking the Kafka protocol")]
    NegativeSize(i32),
    /// The size prefix exceeds the configured maximum.
    #[error(
        "frame of {size} bytes exceeds the maximum of {max} bytes \
         (raise socket.request.max.bytes if the peer is legitimate)"
    )]
    TooLarge { size: usize, max: usize },
    /// The body is too short to hold even the fixed part of a header.
    #[error("frame body of {size} bytes is shorter than the {needed}-byte fixed header")]
    TooShort { size: usize, needed: usize },
}

/// Reads the size prefix at the start of `buf`: `Ok(None)` while fewer than 4 bytes are
/// buffered, else the body length (not counting the prefix), checked against `max`.
pub fn read_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..FRAME_SIZE_BYTES) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let Ok(size) = usize::try_from(size) else {
        return Err(FrameError::NegativeSize(size));
    };
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(size))
}

/// Splits one whole frame's body off the front of `buf`, if it is all there. The body shares
/// `buf`'s memory (no copy). `Ok(None)` means "read more"; the caller may `reserve` the
/// returned size hint first via [`read_frame_len`].
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = read_frame_len(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < FRAME_SIZE_BYTES + size {
        return Ok(None);
    }
    buf.advance(FRAME_SIZE_BYTES);
    Ok(Some(buf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames shorter than the prefix, negative sizes and sizes over the maximum each give
    /// their own answer, and a split frame leaves the next frame's bytes in the buffer.
    #[test]
    fn frame_sizes() {
        assert_eq!(read_frame_len(&[], 100), Ok(None));
        assert_eq!(read_frame_len(&[0, 0, 1], 100), Ok(None));
        assert_eq!(read_frame_len(&[0, 0, 0, 5], 100), Ok(Some(5)));
        assert_eq!(
            read_frame_len(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::NegativeSize(-1))
        );
        assert_eq!(
            read_frame_len(&[0x7f, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLarge {
                size: i32::MAX as usize,
                max: 100
            })
        );
        assert_eq!(read_frame_len(&[0, 0, 0, 100], 100), Ok(Some(100)));
        assert_eq!(
            read_frame_len(&[0, 0, 0, 101], 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        );

        let mut buf = BytesMut::from(&[0, 0, 0, 2, 7, 8, 0, 0][..]);
        assert_eq!(
            split_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(&[7, 8])))
        );
        assert_eq!(&buf[..], &[0, 0]);
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1][..]);
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
        assert_eq!(buf.len(), 5);
    }
}
