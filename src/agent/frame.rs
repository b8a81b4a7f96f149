//! The agent's framing: a header line `<kind> <len>...\n` followed by the fields' bytes.
//!
//! Transport-agnostic: frames are read from any `BufRead` and written to any `Write` (a
//! child's pipes, an SSH channel). See `PROTOCOL.md` beside this file.

use std::io::{self, BufRead, Read, Write};

/// Longest header line accepted (kind plus lengths).
const MAX_HEADER: usize = 256;
/// Most fields in one frame.
const MAX_FIELDS: usize = 8;
/// Largest single field accepted (1 GiB): a bound, not a buffer size.
const MAX_FIELD: usize = 1 << 30;

/// One received frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: String,
    pub fields: Vec<Vec<u8>>,
}

impl Frame {
    /// Field `i`, or empty when the frame has fewer fields.
    pub fn field(&self, i: usize) -> &[u8] {
        self.fields.get(i).map_or(&[][..], Vec::as_slice)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Appends the frame to `buf` (so a request goes out in one write).
pub fn encode(buf: &mut Vec<u8>, kind: &str, fields: &[&[u8]]) {
    buf.extend_from_slice(kind.as_bytes());
    for f in fields {
        buf.push(b' ');
        buf.extend_from_slice(f.len().to_string().as_bytes());
    }
    buf.push(b'\n');
    for f in fields {
        buf.extend_from_slice(f);
    }
}

/// Writes one frame and flushes. `scratch` is reused between calls.
pub fn write(
    w: &mut impl Write,
    scratch: &mut Vec<u8>,
    kind: &str,
    fields: &[&[u8]],
) -> io::Result<()> {
    scratch.clear();
    encode(scratch, kind, fields);
    w.write_all(scratch)?;
    w.flush()
}

/// Reads one frame. End of input before the first byte is `UnexpectedEof` too: the peer
/// went away.
pub fn read(r: &mut impl BufRead) -> io::Result<Frame> {
    let mut header = Vec::with_capacity(32);
    (&mut *r)
        .take(MAX_HEADER as u64 + 1)
        .read_until(b'\n', &mut header)?;
    if header.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed its output",
        ));
    }
    if header.last() != Some(&b'\n') {
        if header.len() > MAX_HEADER {
            return Err(invalid(format!(
                "agent frame header longer than {MAX_HEADER} bytes: {:?}",
                String::from_utf8_lossy(&header[..64])
            )));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed its output in the middle of a frame",
        ));
    }
    header.pop();
    let text = std::str::from_utf8(&header).map_err(|_| {
        invalid(format!(
            "agent frame header is not text: {:?}",
            String::from_utf8_lossy(&header)
        ))
    })?;
    let mut parts = text.split(' ');
    let kind = parts.next().unwrap_or_default();
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(invalid(format!("not an agent frame: {text:?}")));
    }
    let mut fields = Vec::new();
    for p in parts {
        let n: usize =
            p.parse().ok().filter(|n| *n <= MAX_FIELD).ok_or_else(|| {
                invalid(format!("bad field length in agent frame header {text:?}"))
            })?;
        if fields.len() == MAX_FIELDS {
            return Err(invalid(format!(
                "too many fields in agent frame header {text:?}"
            )));
        }
        // Grows with the data that arrives: a forged length cannot allocate by itself.
        let mut f = Vec::with_capacity(n.min(64 << 10));
        (&mut *r).take(n as u64).read_to_end(&mut f)?;
        if f.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed its output in the middle of a frame",
            ));
        }
        fields.push(f);
    }
    Ok(Frame {
        kind: kind.to_string(),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, "exec", &[b"return 1\n\0x", b"", b"=(bioxen_vm)"]);
        encode(&mut buf, "ping", &[]);
        assert!(buf.starts_with(b"exec 11 0 12\nreturn 1\n\0x=(bioxen_vm)ping\n"));
        let mut r = &buf[..];
        let f = read(&mut r).unwrap();
        assert_eq!(f.kind, "exec");
        assert_eq!(f.field(0), b"return 1\n\0x");
        assert_eq!(f.field(1), b"");
        assert_eq!(f.field(2), b"=(bioxen_vm)");
        assert_eq!(f.field(3), b"");
        assert_eq!(read(&mut r).unwrap().kind, "ping");
        assert_eq!(
            read(&mut r).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"Hello world\n"[..],
            b"out x\n",
            b"out 99999999999999\n",
            b"\n",
            b"out 1 1 1 1 1 1 1 1 1\n123456789",
        ] {
            let mut r = bad;
            assert_eq!(
                read(&mut r).unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "{bad:?}"
            );
        }
        let long = vec![b'a'; 400];
        assert_eq!(
            read(&mut &long[..]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // Truncated input is the peer going away.
        assert_eq!(
            read(&mut &b"out 5\nab"[..]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            read(&mut &b"out 5"[..]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
