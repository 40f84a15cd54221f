//! Framing of tagged messages: a one-byte tag and a four-byte length that counts itself.
//!
//! The parsers look only at headers and never allocate for a message that has not fully
//! arrived, so a peer announcing a huge length costs nothing until it is rejected.

use bytes::{Bytes, BytesMut};

use super::ProtocolError;
use super::tag;

/// Servers are trusted more than clients, but a corrupt stream must still not make us reserve
/// gigabytes: PostgreSQL's own limit for a single message is 1 GiB.
pub const MAX_BACKEND_MESSAGE: usize = 1 << 30;

/// One whole message, header included, exactly as it travelled.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    pub bytes: Bytes,
}

impl Frame {
    /// The message body after the tag and length.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }

    /// A message as a client would send it: `tag`, the length, `body`.
    #[cfg(test)]
    pub fn from_body(tag: u8, body: &[u8]) -> Frame {
        let mut bytes = Vec::with_capacity(5 + body.len());
        bytes.push(tag);
        bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        bytes.extend_from_slice(body);
        Frame {
            tag,
            bytes: Bytes::from(bytes),
        }
    }
}

const FRONTEND_TAGS: &[u8] = &[
    tag::QUERY,
    tag::PARSE,
    tag::BIND,
    tag::DESCRIBE,
    tag::EXECUTE,
    tag::CLOSE,
    tag::SYNC,
    tag::FLUSH,
    tag::FUNCTION_CALL,
    tag::COPY_DATA,
    tag::COPY_DONE,
    tag::COPY_FAIL,
    tag::TERMINATE,
    tag::PASSWORD,
];

/// Splits one client message off the front of `buf` once it has fully arrived.
pub fn try_frontend_frame(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<Frame>, ProtocolError> {
    if let Some(&first) = buf.first()
        && !FRONTEND_TAGS.contains(&first)
    {
        return Err(ProtocolError::UnknownMessageType(first));
    }
    try_frame(buf, max_len, "frontend message")
}

/// Splits one server message off the front of `buf` once it has fully arrived.
pub fn try_backend_frame(buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
    try_frame(buf, MAX_BACKEND_MESSAGE, "server message")
}

fn try_frame(
    buf: &mut BytesMut,
    max_len: usize,
    what: &'static str,
) -> Result<Option<Frame>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > max_len {
        return Err(ProtocolError::InvalidLength {
            what,
            len: i64::from(len),
            min: 4,
            max: max_len,
        });
    }
    let total = len as usize + 1;
    if buf.len() < total {
        // Reserve for the rest now that the length is known to be acceptable.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame {
        tag,
        bytes: buf.split_to(total).freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn waits_for_whole_frame_then_splits_it() {
        let full = msg(b'Q', b"select 1\0");
        let mut buf = BytesMut::from(&full[..7]);
        assert!(try_frontend_frame(&mut buf, 1024).unwrap().is_none());
        buf.extend_from_slice(&full[7..]);
        buf.extend_from_slice(b"X");
        let frame = try_frontend_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(frame.tag, b'Q');
        assert_eq!(frame.body(), b"select 1\0");
        assert_eq!(&buf[..], b"X");
    }

    #[test]
    fn rejects_lengths_out_of_range_before_allocating() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(matches!(
            try_frontend_frame(&mut buf, 1024),
            Err(ProtocolError::InvalidLength { len: 3, .. })
        ));
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(try_frontend_frame(&mut buf, 1024).is_err());
        assert!(buf.capacity() < 1 << 20);
        let mut buf = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(try_frontend_frame(&mut buf, 1024).is_err());
    }

    #[test]
    fn rejects_unknown_frontend_tags_at_once() {
        let mut buf = BytesMut::from(&b"?"[..]);
        assert!(matches!(
            try_frontend_frame(&mut buf, 1024),
            Err(ProtocolError::UnknownMessageType(b'?'))
        ));
    }

    #[test]
    fn backend_frames_accept_any_tag() {
        let mut buf = msg(b'T', b"");
        assert_eq!(try_backend_frame(&mut buf).unwrap().unwrap().tag, b'T');
    }
}
