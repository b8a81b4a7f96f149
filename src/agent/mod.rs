//! The agent: a small portable Lua script (Lua 5.1–5.4, no C modules) that a child or
//! remote interpreter runs, and the host side of its framed protocol.
//!
//! The host starts `<lua> -e <BOOTSTRAP>` with the interpreter's descriptor 3 as the
//! frame channel, writes `<len>\n<SOURCE>` to its stdin, and then exchanges frames (see
//! `PROTOCOL.md`): requests on stdin, responses on descriptor 3, while the interpreter's
//! real stdout and stderr stay what user code and its subprocesses write. Nothing here
//! knows whether the bytes travel over pipes or an SSH channel: requests are encoded into
//! buffers and responses decoded from whatever bytes arrive ([`frame::Decoder`]).

pub mod code_cache;
pub mod frame;

/// The agent script, sent to the bootstrap on stdin.
pub const SOURCE: &str = include_str!("agent.lua");

/// The `-e` argument that starts the agent: it reads a length line and that many bytes of
/// agent source from stdin and runs them. Short, free of `'`, and not starting with `-`,
/// so that it passes as one POSIX-quoted word on any command line.
pub const BOOTSTRAP: &str = bootstrap();

const fn bootstrap() -> &'static str {
    // The file ends with a newline, which the command line does without.
    let text = include_str!("bootstrap.lua").as_bytes();
    let (line, _) = text.split_at(text.len() - 1);
    match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(_) => panic!("bootstrap.lua is UTF-8"),
    }
}

/// The protocol version this host speaks (the agent's `ready` frame names its own).
pub const PROTOCOL_VERSION: &[u8] = b"2";

/// What the host writes first: the agent behind its length, as source or (`code`) as
/// the bytecode that same interpreter dumped (see [`code_cache`]).
pub fn preamble(code: Option<&[u8]>) -> Vec<u8> {
    let body = code.unwrap_or(SOURCE.as_bytes());
    let mut v = Vec::with_capacity(body.len() + 16);
    v.extend_from_slice(body.len().to_string().as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

/// The `code` request: the agent answers with its own bytecode.
pub fn code_request(buf: &mut Vec<u8>, token: &[u8]) {
    frame::encode(buf, "code", &[token]);
}

/// What the bootstrap writes on stderr (and exits 72) when the interpreter refuses the
/// agent it was sent, e.g. bytecode of another build.
pub const REFUSED: &str = "bioxen-vm-agent-refused";

/// Where an output chunk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    /// Interactive input that needs more lines (nothing ran).
    Incomplete,
    /// The returned values did not fit in the request's limit as JSON.
    TooBig,
}

impl Status {
    pub fn parse(word: &[u8]) -> Option<Status> {
        Some(match word {
            b"ok" => Status::Ok,
            b"error" => Status::Error,
            b"incomplete" => Status::Incomplete,
            b"toobig" => Status::TooBig,
            _ => return None,
        })
    }
}

/// The `done` frame of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub status: Option<Status>,
    /// JSON array of the returned values (cut to the request's limit).
    pub values_json: Vec<u8>,
    /// Message and traceback when `status` is `Error` (cut to the request's limit).
    pub error: Vec<u8>,
    /// Bytes of the values and the error that the host discarded past the limit.
    pub cut: u64,
    /// Bytes the agent cut from the error text and the values' printed text, or by which
    /// the values' JSON passed the limit (`TooBig`).
    pub dropped: u64,
}

/// Fills `buf` from the system's random source; how many bytes it got.
fn system_random(buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most the remaining bytes of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n <= 0 {
            break;
        }
        filled += n as usize;
    }
    filled
}

fn hex_token(raw: [u8; 8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in raw.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

/// Request tokens from system randomness drawn 4 KiB at a time (one system call per 512
/// tokens). Each token is 8 fresh random bytes: knowing earlier tokens says nothing of the
/// next one.
#[derive(Default)]
pub struct TokenSource {
    pool: parking_lot::Mutex<(Vec<u8>, usize)>,
}

impl TokenSource {
    pub fn next(&self) -> [u8; 16] {
        let mut p = self.pool.lock();
        let (buf, at) = &mut *p;
        if *at + 8 > buf.len() {
            buf.resize(4096, 0);
            let got = system_random(buf);
            buf.truncate(got - got % 8);
            *at = 0;
            if buf.is_empty() {
                drop(p);
                return new_token();
            }
        }
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&buf[*at..*at + 8]);
        // Used bytes are wiped: no token stays in memory longer than needed.
        buf[*at..*at + 8].fill(0);
        *at += 8;
        hex_token(raw)
    }
}

/// A request token: 16 hex digits from the system's random source, so that no frame
/// written before the request was sent can carry it.
pub fn new_token() -> [u8; 16] {
    let mut raw = [0u8; 8];
    if system_random(&mut raw) < raw.len() {
        // No random source (never seen on Linux): a clock- and counter-based value still
        // differs from every earlier token of this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        raw = (t ^ n.rotate_left(32) ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex_token(raw)
}

/// A request, encoded.
pub enum Request<'a> {
    /// Run `code` with `args_json` (a JSON array text, or empty for none) as `...`.
    Exec {
        code: &'a [u8],
        args_json: &'a [u8],
        chunk_name: &'a [u8],
    },
    /// Evaluate interactive input (see `Backend::repl_eval`).
    Repl { chunk: &'a [u8], first_line: bool },
}

impl Request<'_> {
    /// Appends the request frame with `token` and `limit` (the bound on the values and
    /// error text the agent may send back) to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>, token: &[u8], limit: usize) {
        let limit = limit.max(1).to_string();
        match self {
            Request::Exec {
                code,
                args_json,
                chunk_name,
            } => frame::encode(
                buf,
                "exec",
                &[token, code, args_json, chunk_name, limit.as_bytes()],
            ),
            Request::Repl { chunk, first_line } => {
                let flag: &[u8] = if *first_line { b"1" } else { b"0" };
                frame::encode(buf, "repl", &[token, chunk, flag, limit.as_bytes()])
            }
        }
    }
}

/// The request that asks the agent to exit.
pub const QUIT: &[u8] = b"quit\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_are_hex() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        let src = TokenSource::default();
        let many: std::collections::HashSet<[u8; 16]> = (0..2000).map(|_| src.next()).collect();
        assert_eq!(many.len(), 2000);
    }

    #[test]
    fn bootstrap_is_one_quotable_word() {
        assert!(!BOOTSTRAP.starts_with('-'));
        assert!(!BOOTSTRAP.contains('\''));
        assert!(!BOOTSTRAP.contains('\n'));
    }
}
