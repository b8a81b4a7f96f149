//! The agent's framing: a header line `<kind> <len>...\n` followed by the fields' bytes.
//!
//! Transport-agnostic: requests are encoded into a buffer that any transport writes, and
//! responses are decoded incrementally from whatever bytes arrive ([`Decoder::feed`]), so
//! a transport never blocks on a frame and the host never holds more than the caller's
//! bound of any field. See `PROTOCOL.md` beside this file.

use super::Stream;

/// Longest header line accepted (kind plus lengths).
const MAX_HEADER: usize = 256;
/// Longest field that is kept whole and must be short (tokens, statuses, versions).
const MAX_SMALL: usize = 64;
/// Most digits of one length.
const MAX_DIGITS: usize = 15;

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

/// The frames an agent sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ready,
    Out,
    Err,
    Sync,
    Done,
    Pong,
    /// The agent's own bytecode (`string.dump` of its chunk), for a `code` request.
    Code,
    Fatal,
}

/// How one field of a frame is received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldKind {
    /// The current request's token: must match it exactly.
    Token,
    /// A short field kept whole (at most `MAX_SMALL` bytes, else the frame is refused).
    Small,
    /// Output data, handed on in pieces as it arrives (never buffered).
    Stream,
    /// Kept up to the caller's bound; the rest is discarded and counted.
    Capped,
}

use FieldKind::*;

impl Kind {
    fn parse(word: &[u8]) -> Option<Kind> {
        Some(match word {
            b"ready" => Kind::Ready,
            b"out" => Kind::Out,
            b"err" => Kind::Err,
            b"sync" => Kind::Sync,
            b"done" => Kind::Done,
            b"pong" => Kind::Pong,
            b"code" => Kind::Code,
            b"fatal" => Kind::Fatal,
            _ => return None,
        })
    }

    fn fields(self) -> &'static [FieldKind] {
        match self {
            Kind::Ready => &[Small, Small],
            Kind::Out | Kind::Err => &[Token, Stream],
            Kind::Sync | Kind::Pong => &[Token],
            Kind::Code => &[Token, Capped],
            Kind::Done => &[Token, Small, Capped, Capped, Small],
            Kind::Fatal => &[Capped],
        }
    }
}

/// One complete frame that is not output data. Its token (if the kind has one) has been
/// checked and is not kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    /// The kept fields, token excluded.
    pub fields: Vec<Vec<u8>>,
    /// Bytes of capped fields that were discarded.
    pub cut: u64,
}

impl Frame {
    /// Field `i` (token excluded), or empty when the frame has fewer fields.
    pub fn field(&self, i: usize) -> &[u8] {
        self.fields.get(i).map_or(&[][..], Vec::as_slice)
    }
}

/// What the decoder found in the bytes fed to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A piece of an `out` or `err` frame's data.
    Data(Stream, &'a [u8]),
    /// A complete frame of another kind.
    Frame(Frame),
}

/// Bytes that are not a well-formed frame for the current request: a broken or forged
/// stream. The message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

enum State {
    Header,
    Body {
        kind: Kind,
        lens: [usize; 5],
        count: usize,
        index: usize,
        left: usize,
    },
}

/// Decodes agent frames from a byte stream, incrementally and within bounds.
pub struct Decoder {
    state: State,
    header: Vec<u8>,
    field: Vec<u8>,
    fields: Vec<Vec<u8>>,
    cut: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

fn corrupt(what: impl Into<String>) -> Corrupt {
    Corrupt(what.into())
}

fn shown(bytes: &[u8]) -> String {
    let n = bytes.len().min(64);
    format!("{:?}", String::from_utf8_lossy(&bytes[..n]))
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            state: State::Header,
            header: Vec::with_capacity(64),
            field: Vec::new(),
            fields: Vec::with_capacity(4),
            cut: 0,
        }
    }

    /// Forgets a partial frame (after the peer was restarted).
    pub fn reset(&mut self) {
        self.state = State::Header;
        self.header.clear();
        self.field = Vec::new();
        self.fields.clear();
        self.cut = 0;
    }

    /// Whether the decoder is between frames.
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Header) && self.header.is_empty()
    }

    /// Decodes what `input` holds. Returns how many bytes were used: it stops right after
    /// a frame for which `stop_after` returns true (so the caller can act between that
    /// frame and the bytes behind it), else uses everything. `token` is the current
    /// request's token (empty while starting, when no frame may carry one); `cap` bounds
    /// each capped field.
    pub fn feed(
        &mut self,
        input: &[u8],
        token: &[u8],
        cap: usize,
        on: &mut dyn FnMut(Event<'_>),
        stop_after: &dyn Fn(Kind) -> bool,
    ) -> Result<usize, Corrupt> {
        let mut at = 0;
        while at < input.len() {
            let finished = match &mut self.state {
                State::Header => {
                    let rest = &input[at..];
                    let nl = rest.iter().position(|&b| b == b'\n');
                    let part = &rest[..nl.unwrap_or(rest.len())];
                    if self.header.len() + part.len() > MAX_HEADER {
                        return Err(corrupt(format!(
                            "a frame header longer than {MAX_HEADER} bytes: {}",
                            shown(&[&self.header[..], part].concat())
                        )));
                    }
                    self.header.extend_from_slice(part);
                    match nl {
                        Some(nl) => {
                            at += nl + 1;
                            self.start_body()?;
                            self.advance(token)?
                        }
                        None => {
                            at = input.len();
                            None
                        }
                    }
                }
                State::Body {
                    kind,
                    lens,
                    index,
                    left,
                    ..
                } => {
                    let kind = *kind;
                    let field = kind.fields()[*index];
                    let take = (*left).min(input.len() - at);
                    let piece = &input[at..at + take];
                    *left -= take;
                    at += take;
                    match field {
                        Stream => {
                            let stream = if kind == Kind::Err {
                                Stream::Stderr
                            } else {
                                Stream::Stdout
                            };
                            on(Event::Data(stream, piece));
                        }
                        Capped => {
                            if self.field.capacity() == 0 {
                                self.field.reserve(lens[*index].min(cap).min(64 << 10));
                            }
                            let keep = cap.saturating_sub(self.field.len()).min(piece.len());
                            self.field.extend_from_slice(&piece[..keep]);
                            self.cut += (piece.len() - keep) as u64;
                        }
                        Token | Small => self.field.extend_from_slice(piece),
                    }
                    if *left == 0 {
                        self.end_field(token)?;
                        self.advance(token)?
                    } else {
                        None
                    }
                }
            };
            if let Some(kind) = finished {
                if kind != Kind::Out && kind != Kind::Err {
                    on(Event::Frame(Frame {
                        kind,
                        fields: std::mem::take(&mut self.fields),
                        cut: std::mem::take(&mut self.cut),
                    }));
                }
                if stop_after(kind) {
                    return Ok(at);
                }
            }
        }
        Ok(at)
    }

    /// Passes over empty fields; when every field is in, returns the frame's kind and
    /// goes back to reading headers.
    fn advance(&mut self, token: &[u8]) -> Result<Option<Kind>, Corrupt> {
        loop {
            let State::Body {
                kind,
                lens,
                count,
                index,
                ..
            } = &self.state
            else {
                return Ok(None);
            };
            if *index == *count {
                let kind = *kind;
                self.state = State::Header;
                return Ok(Some(kind));
            }
            if lens[*index] != 0 {
                return Ok(None);
            }
            self.end_field(token)?;
        }
    }

    /// Parses the header line gathered so far and moves to the frame's body.
    fn start_body(&mut self) -> Result<(), Corrupt> {
        let header = std::mem::take(&mut self.header);
        let mut words = header.split(|&b| b == b' ');
        let word = words.next().unwrap_or_default();
        let kind = Kind::parse(word)
            .ok_or_else(|| corrupt(format!("not an agent frame: {}", shown(&header))))?;
        let spec = kind.fields();
        let mut lens = [0usize; 5];
        let mut count = 0;
        for w in words {
            if count == spec.len() {
                return Err(corrupt(format!(
                    "too many fields in frame header {}",
                    shown(&header)
                )));
            }
            if w.is_empty() || w.len() > MAX_DIGITS || !w.iter().all(u8::is_ascii_digit) {
                return Err(corrupt(format!(
                    "bad field length in frame header {}",
                    shown(&header)
                )));
            }
            let n: usize = std::str::from_utf8(w)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| corrupt(format!("bad field length in {}", shown(&header))))?;
            if matches!(spec[count], Token | Small) && n > MAX_SMALL {
                return Err(corrupt(format!(
                    "field {} of a '{}' frame is {n} bytes long (at most {MAX_SMALL})",
                    count + 1,
                    String::from_utf8_lossy(word)
                )));
            }
            lens[count] = n;
            count += 1;
        }
        if count != spec.len() {
            return Err(corrupt(format!(
                "a '{}' frame needs {} fields: {}",
                String::from_utf8_lossy(word),
                spec.len(),
                shown(&header)
            )));
        }
        self.header = header;
        self.header.clear();
        self.fields.clear();
        self.cut = 0;
        self.state = State::Body {
            kind,
            lens,
            count,
            index: 0,
            left: lens[0],
        };
        Ok(())
    }

    /// The current field is complete: checks or keeps it, and moves to the next one.
    fn end_field(&mut self, token: &[u8]) -> Result<(), Corrupt> {
        let State::Body {
            kind,
            lens,
            count,
            index,
            left,
        } = &mut self.state
        else {
            return Ok(());
        };
        match kind.fields()[*index] {
            Token => {
                if token.is_empty() || self.field != token {
                    return Err(corrupt(format!(
                        "a '{}' frame that does not belong to the current request",
                        format!("{kind:?}").to_lowercase()
                    )));
                }
                self.field.clear();
            }
            Stream => {}
            Small | Capped => self.fields.push(std::mem::take(&mut self.field)),
        }
        *index += 1;
        if *index < *count {
            *left = lens[*index];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], token: &[u8], cap: usize) -> Result<Vec<String>, Corrupt> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        while used < input.len() {
            let n = d.feed(
                &input[used..],
                token,
                cap,
                &mut |e| {
                    out.push(match e {
                        Event::Data(s, b) => format!("{s:?}:{}", String::from_utf8_lossy(b)),
                        Event::Frame(f) => format!(
                            "{:?}{:?}/{}",
                            f.kind,
                            f.fields
                                .iter()
                                .map(|x| String::from_utf8_lossy(x).into_owned())
                                .collect::<Vec<_>>(),
                            f.cut
                        ),
                    })
                },
                &|_| false,
            )?;
            used += n;
        }
        Ok(out)
    }

    #[test]
    fn frames_of_the_current_request() {
        let mut buf = Vec::new();
        encode(&mut buf, "ready", &[b"2", b"Lua 5.4"]);
        assert_eq!(
            decode(&buf, b"", 100).unwrap(),
            vec![r#"Ready["2", "Lua 5.4"]/0"#]
        );
        buf.clear();
        encode(&mut buf, "out", &[b"ab12", b"hello\n"]);
        encode(&mut buf, "sync", &[b"ab12"]);
        encode(&mut buf, "err", &[b"ab12", b""]);
        encode(&mut buf, "done", &[b"ab12", b"ok", b"[4]", b"", b"0"]);
        assert_eq!(
            decode(&buf, b"ab12", 100).unwrap(),
            vec![
                "Stdout:hello\n",
                "Sync[]/0",
                r#"Done["ok", "[4]", "", "0"]/0"#
            ]
        );
        // Byte by byte gives the same frames (output data in pieces).
        let mut d = Decoder::new();
        let mut kinds = Vec::new();
        for b in &buf {
            d.feed(
                std::slice::from_ref(b),
                b"ab12",
                100,
                &mut |e| {
                    if let Event::Frame(f) = e {
                        kinds.push(f.kind)
                    }
                },
                &|_| false,
            )
            .unwrap();
        }
        assert_eq!(kinds, vec![Kind::Sync, Kind::Done]);
        assert!(d.idle());
    }

    #[test]
    fn capped_fields_are_cut_and_counted() {
        let mut buf = Vec::new();
        let big = vec![b'x'; 1000];
        encode(&mut buf, "done", &[b"t1", b"error", b"[]", &big, b"0"]);
        let got = decode(&buf, b"t1", 10).unwrap();
        assert_eq!(got, vec![r#"Done["error", "[]", "xxxxxxxxxx", "0"]/990"#]);
    }

    #[test]
    fn foreign_and_stale_frames_are_refused() {
        for (bad, token) in [
            (&b"done 2 2 2 0 1\nt0ok[]0"[..], &b"t1"[..]),
            (b"out 5 1\nstalex", b"t1"),
            (b"Hello world\n", b"t1"),
            (b"out x 1\n", b"t1"),
            (b"out 1 99999999999999999\n", b"t1"),
            (b"\n", b"t1"),
            (b"done 2 2 2 0\nt1ok[]", b"t1"),
            (b"done 2 2 2 0 0 0\n", b"t1"),
            (b"done 2 99 2 0 1\n", b"t1"),
            (b"out 2 1\nt1x", b""),
        ] {
            assert!(decode(bad, token, 100).is_err(), "{bad:?}");
        }
        let long = vec![b'a'; 400];
        assert!(decode(&long, b"t1", 100).is_err());
    }

    #[test]
    fn feed_stops_after_a_barrier() {
        let mut buf = Vec::new();
        encode(&mut buf, "sync", &[b"t"]);
        encode(&mut buf, "out", &[b"t", b"after"]);
        let mut d = Decoder::new();
        let mut seen = 0;
        let n = d
            .feed(&buf, b"t", 10, &mut |_| seen += 1, &|k| k == Kind::Sync)
            .unwrap();
        assert_eq!(n, b"sync 1\nt".len());
        assert_eq!(seen, 1);
    }
}
