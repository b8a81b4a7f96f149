//! The agent: a small portable Lua script (Lua 5.1–5.4, no C modules) that a child or
//! remote interpreter runs, and the host side of its framed protocol.
//!
//! The host starts `<lua> -e <SOURCE>`, so the interpreter's stdin and stdout carry frames
//! (see `PROTOCOL.md`). Nothing here knows whether the bytes travel over pipes or an SSH
//! channel: [`Conn`] works over any reader and writer.

pub mod frame;

use std::io::{self, BufReader, Read, Write};

/// The agent script, started as `lua -e SOURCE`.
pub const SOURCE: &str = include_str!("agent.lua");

/// The protocol version this host speaks (the agent's `ready` frame names its own).
pub const PROTOCOL_VERSION: &[u8] = b"1";

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
}

/// The `done` frame of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub status: Status,
    /// JSON array of the returned values.
    pub values_json: Vec<u8>,
    /// Message and traceback when `status` is `Error`.
    pub error: Vec<u8>,
}

/// What the agent said when it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// `_VERSION` of the interpreter, e.g. "Lua 5.4".
    pub lua_version: String,
}

/// One connection to a running agent.
pub struct Conn<R, W> {
    reader: BufReader<R>,
    writer: W,
    scratch: Vec<u8>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read, W: Write> Conn<R, W> {
    pub fn new(reader: R, writer: W) -> Self {
        Conn {
            reader: BufReader::with_capacity(64 << 10, reader),
            writer,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Reads the agent's `ready` frame.
    pub fn handshake(&mut self) -> io::Result<Hello> {
        let f = frame::read(&mut self.reader)?;
        if f.kind != "ready" {
            return Err(invalid(format!(
                "expected the agent's ready frame, got '{}'",
                f.kind
            )));
        }
        if f.field(0) != PROTOCOL_VERSION {
            return Err(invalid(format!(
                "the agent speaks protocol {}, this library {}",
                String::from_utf8_lossy(f.field(0)),
                String::from_utf8_lossy(PROTOCOL_VERSION)
            )));
        }
        Ok(Hello {
            lua_version: String::from_utf8_lossy(f.field(1)).into_owned(),
        })
    }

    /// Runs `code` with `args_json` (a JSON array text, or empty for none) as `...`.
    /// Output chunks go to `sink` as they arrive.
    pub fn exec(
        &mut self,
        code: &[u8],
        args_json: &[u8],
        chunk_name: &[u8],
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) -> io::Result<Done> {
        frame::write(
            &mut self.writer,
            &mut self.scratch,
            "exec",
            &[code, args_json, chunk_name],
        )?;
        self.until_done(sink)
    }

    /// Evaluates interactive input (see `Backend::repl_eval`).
    pub fn repl(
        &mut self,
        chunk: &[u8],
        first_line: bool,
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) -> io::Result<Done> {
        let flag: &[u8] = if first_line { b"1" } else { b"0" };
        frame::write(&mut self.writer, &mut self.scratch, "repl", &[chunk, flag])?;
        self.until_done(sink)
    }

    /// Checks that the agent answers.
    pub fn ping(&mut self) -> io::Result<()> {
        frame::write(&mut self.writer, &mut self.scratch, "ping", &[])?;
        let f = frame::read(&mut self.reader)?;
        match f.kind.as_str() {
            "pong" => Ok(()),
            other => Err(invalid(format!("expected pong, got '{other}'"))),
        }
    }

    /// Asks the agent to exit (it also exits when its input closes).
    pub fn quit(&mut self) -> io::Result<()> {
        frame::write(&mut self.writer, &mut self.scratch, "quit", &[])
    }

    fn until_done(&mut self, sink: &mut dyn FnMut(Stream, &[u8])) -> io::Result<Done> {
        loop {
            let f = frame::read(&mut self.reader)?;
            match f.kind.as_str() {
                "out" => sink(Stream::Stdout, f.field(0)),
                "err" => sink(Stream::Stderr, f.field(0)),
                "done" => {
                    let status = match f.field(0) {
                        b"ok" => Status::Ok,
                        b"error" => Status::Error,
                        b"incomplete" => Status::Incomplete,
                        other => {
                            return Err(invalid(format!(
                                "unknown done status '{}'",
                                String::from_utf8_lossy(other)
                            )))
                        }
                    };
                    let mut fields = f.fields.into_iter().skip(1);
                    let values_json = fields.next().unwrap_or_default();
                    let error = fields.next().unwrap_or_default();
                    return Ok(Done {
                        status,
                        values_json,
                        error,
                    });
                }
                "fatal" => {
                    return Err(invalid(format!(
                        "the agent failed: {}",
                        String::from_utf8_lossy(f.field(0))
                    )))
                }
                other => return Err(invalid(format!("unexpected agent frame '{other}'"))),
            }
        }
    }
}

impl<R: Read + std::os::fd::AsRawFd, W: Write> Conn<R, W> {
    /// Waits up to `limit` for the agent's output to close (it exited, or every holder of
    /// the pipe did), discarding what still arrives. Whether it closed in time.
    pub fn wait_for_eof(&mut self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let fd = self.reader.get_ref().as_raw_fd();
        let mut scratch = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for a descriptor this connection owns.
            let n = unsafe { libc::poll(&mut p, 1, left.as_millis().clamp(1, 1000) as i32) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return false;
            }
            if n > 0 {
                match self.reader.get_mut().read(&mut scratch) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
        }
    }
}
