//! Values between Lua and the host.
//!
//! Out of Lua, straight from stack slots (no intermediate value tree): the JSON text of
//! returned values, and their text as the Lua REPL prints them. Nil is null; booleans,
//! integers and finite floats are themselves; strings are JSON strings (invalid UTF-8 is
//! replaced with U+FFFD); a table whose keys are exactly 1..n is an array, any other table
//! an object with its keys as strings (an empty table is `{}`); what JSON cannot hold
//! (functions, userdata, threads, NaN and the infinities, a table met again on its own
//! path, tables nested deeper than `MAX_DEPTH`) becomes its `tostring` text, without
//! calling metamethods.
//!
//! A table two of whose keys would give the same object key (`[1]` and `["1"]`, `[true]`
//! and `["true"]`, two floats equal to 14 digits, a float and the string of its text, two
//! strings whose invalid UTF-8 is replaced alike, a table and the string of its
//! `tostring`) is written losslessly instead, as `{"$lua_pairs": [[key, value], ...]}`,
//! with the keys as JSON values and the pairs sorted by the JSON text of the key.
//!
//! Bounds: the JSON text never grows past the VM's `max_output` (the conversion stops
//! there and reports how far past it was), the REPL text goes through the stdout cap, and
//! the conversion reads the VM's stop flag at every table and every `STOP_CHECK_NODES`
//! values, abandoning the work when a timeout or an interrupt is pending. So a DAG of
//! shared subtables, whose JSON grows exponentially, ends at the cap or the deadline.
//!
//! Only Lua API calls that cannot raise an error are made here, except through
//! `lua_pcall`: these functions run inside Rust frames that a Lua error must not cross.
//!
//! Into Lua: JSON arguments are pushed as Lua values.

use super::capture::{push_stoppable, Capture, STDOUT};
use super::stop::stop_pending;
use mlua::ffi;
use serde_json::Value as Json;
use std::ffi::c_void;
use std::os::raw::c_int;

/// Deepest nesting converted; deeper tables become their `tostring` text.
pub const MAX_DEPTH: usize = 64;

/// Values converted between two looks at the stop flag (each table looks at it too).
const STOP_CHECK_NODES: u32 = 4096;

/// How converting the returned values to JSON ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Converted {
    /// The JSON array is complete.
    Fit,
    /// It would not fit in `max_output`: at least this many bytes were past it.
    TooLarge(u64),
    /// A timeout or an interrupt is pending: the conversion was abandoned.
    Stopped,
}

/// Appends the returned values in slots `first..=last` to the captured stdout as the Lua
/// REPL prints them (`tostring` of each, its `__tostring` honoured through the function
/// in registry slot `tostring_ref`; tab-separated; a newline) and writes them to `json`
/// as a JSON array of at most `limit` bytes. Each value is looked at once; an integer is
/// formatted once for both. On anything but `Fit`, `json` holds no meaningful text.
///
/// # Safety
/// `l` must be a valid state whose slots `first..=last` exist, with 8 free slots;
/// `capture` the VM's capture, not otherwise borrowed (Lua code run by `__tostring` writes
/// to it too).
pub unsafe fn write_returned(
    l: *mut ffi::lua_State,
    first: c_int,
    last: c_int,
    tostring_ref: c_int,
    capture: *mut Capture,
    json: &mut Vec<u8>,
    limit: usize,
) -> Converted {
    json.clear();
    let mut w = Writer::new(l, json, limit);
    w.byte(b'[');
    for i in first..=last {
        if i > first {
            (*capture).push(STDOUT, b"\t");
            w.byte(b',');
        }
        if ffi::lua_type(l, i) == ffi::LUA_TNUMBER && ffi::lua_isinteger(l, i) != 0 {
            let mut digits = Digits::new();
            let text = digits.of(ffi::lua_tointegerx(l, i, std::ptr::null_mut()));
            (*capture).push(STDOUT, text);
            w.push(text);
            continue;
        }
        write_repl_value(l, i, tostring_ref, capture);
        if !w.done() {
            w.value(l, i);
        } else if w.stopped || stop_pending(l) {
            // Nothing more to build: only the REPL text of the rest, which is capped.
            w.stopped = true;
        }
    }
    (*capture).push(STDOUT, b"\n");
    w.byte(b']');
    if w.stopped {
        Converted::Stopped
    } else if w.over > 0 {
        Converted::TooLarge(w.over)
    } else {
        Converted::Fit
    }
}

/// JSON text bounded by `limit` bytes.
struct Writer<'a> {
    l: *mut ffi::lua_State,
    out: &'a mut Vec<u8>,
    limit: usize,
    /// Bytes that were past `limit` when the writer stopped (0 while everything fits).
    over: u64,
    /// The stop flag was seen set.
    stopped: bool,
    nodes: u32,
    path: Vec<*const c_void>,
}

/// serde_json's escapes: 0 for a byte written as is, else the letter after the backslash
/// (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Bytes of a string converted between two looks at the stop flag.
const STRING_PIECE: usize = 64 << 10;

/// A length of at most `max` (or all of `bytes`, when shorter) where `bytes` can be cut
/// without changing how it decodes: before a byte that starts a character, or inside a
/// run of continuation bytes too long to belong to any character.
fn utf8_split(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| !is_continuation(bytes[i]))
        .filter(|&i| i > 0)
        .unwrap_or(max)
}

impl<'a> Writer<'a> {
    fn new(l: *mut ffi::lua_State, out: &'a mut Vec<u8>, limit: usize) -> Self {
        Writer {
            l,
            out,
            limit,
            over: 0,
            stopped: false,
            nodes: 0,
            path: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.over != 0 || self.stopped
    }

    /// Appends `b` if it fits, else stops with the excess counted.
    fn push(&mut self, b: &[u8]) {
        if self.done() {
            return;
        }
        let len = self.out.len() + b.len();
        if len > self.limit {
            self.over = (len - self.limit) as u64;
        } else {
            self.out.extend_from_slice(b);
        }
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        if self.out.len() < self.limit && !self.done() {
            self.out.push(b);
        } else {
            self.push(&[b]);
        }
    }

    /// Counts one value; every `STOP_CHECK_NODES` values, looks at the stop flag.
    unsafe fn node(&mut self, l: *mut ffi::lua_State) {
        self.nodes = self.nodes.wrapping_add(1);
        if self.nodes.is_multiple_of(STOP_CHECK_NODES) && stop_pending(l) {
            self.stopped = true;
        }
    }

    /// A JSON string of `bytes` (invalid UTF-8 replaced as `String::from_utf8_lossy` does).
    fn string(&mut self, bytes: &[u8]) {
        // The escaped text is never shorter than the bytes: reject early what cannot fit.
        let need = self.out.len() + bytes.len() + 2;
        if need > self.limit && !self.done() {
            self.over = (need - self.limit) as u64;
        }
        if self.done() {
            return;
        }
        self.byte(b'"');
        let mut rest = bytes;
        while !rest.is_empty() {
            // Long strings go in pieces, with a look at the stop flag after each.
            let (piece, more) = rest.split_at(utf8_split(rest, STRING_PIECE));
            for chunk in piece.utf8_chunks() {
                self.escaped(chunk.valid().as_bytes());
                if !chunk.invalid().is_empty() {
                    self.push(REPLACEMENT);
                }
                if self.done() {
                    return;
                }
            }
            rest = more;
            // SAFETY: `l` is the state being converted, alive for the whole conversion.
            if !rest.is_empty() && unsafe { stop_pending(self.l) } {
                self.stopped = true;
                return;
            }
        }
        self.byte(b'"');
    }

    fn escaped(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut start = 0;
        for (i, &b) in s.iter().enumerate() {
            let e = ESCAPE[b as usize];
            if e == 0 {
                continue;
            }
            if start < i {
                self.push(&s[start..i]);
            }
            if e == b'u' {
                self.push(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
            } else {
                self.push(&[b'\\', e]);
            }
            start = i + 1;
            if self.done() {
                return;
            }
        }
        if start < s.len() {
            self.push(&s[start..]);
        }
    }

    fn integer(&mut self, n: i64) {
        let mut digits = Digits::new();
        self.push(digits.of(n));
    }

    fn float(&mut self, n: f64) {
        if n.is_finite() {
            let mut buf = [0u8; 32];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = serde_json::to_writer(&mut cursor, &n);
            let len = cursor.position() as usize;
            self.push(&buf[..len]);
        } else {
            self.string(float_text(n).as_bytes());
        }
    }

    /// The value in slot `idx`.
    unsafe fn value(&mut self, l: *mut ffi::lua_State, idx: c_int) {
        self.node(l);
        if self.done() {
            return;
        }
        match ffi::lua_type(l, idx) {
            ffi::LUA_TNIL => self.push(b"null"),
            ffi::LUA_TBOOLEAN => self.push(if ffi::lua_toboolean(l, idx) != 0 {
                b"true"
            } else {
                b"false"
            }),
            ffi::LUA_TNUMBER => {
                if ffi::lua_isinteger(l, idx) != 0 {
                    self.integer(ffi::lua_tointegerx(l, idx, std::ptr::null_mut()));
                } else {
                    self.float(ffi::lua_tonumberx(l, idx, std::ptr::null_mut()));
                }
            }
            ffi::LUA_TSTRING => self.string(string_at(l, idx)),
            ffi::LUA_TTABLE => self.table(l, idx),
            _ => self.string(opaque_text(l, idx).as_bytes()),
        }
    }

    unsafe fn table(&mut self, l: *mut ffi::lua_State, idx: c_int) {
        if stop_pending(l) {
            self.stopped = true;
            return;
        }
        let p = ffi::lua_topointer(l, idx);
        if self.path.len() >= MAX_DEPTH || self.path.contains(&p) || ffi::lua_checkstack(l, 8) == 0
        {
            self.string(opaque_text(l, idx).as_bytes());
            return;
        }
        let idx = ffi::lua_absindex(l, idx);
        self.path.push(p);
        let n = ffi::lua_rawlen(l, idx);
        let keys = survey(l, idx, n);
        if keys.count == usize::MAX {
            self.stopped = true;
        } else if keys.is_array && keys.count == n {
            self.array(l, idx, n);
        } else {
            match keys
                .clash
                .resolve(l, idx, self.limit.saturating_sub(self.out.len()))
            {
                Clash::No => self.object(l, idx),
                Clash::Yes => self.pairs(l, idx),
                Clash::TooLarge(over) => self.over = over.max(1),
                Clash::Stopped => self.stopped = true,
            }
        }
        self.path.pop();
    }

    unsafe fn array(&mut self, l: *mut ffi::lua_State, idx: c_int, n: usize) {
        self.byte(b'[');
        for i in 1..=n {
            if i > 1 {
                self.byte(b',');
            }
            ffi::lua_rawgeti(l, idx, i as ffi::lua_Integer);
            self.value(l, -1);
            ffi::lua_pop(l, 1);
            if self.done() {
                return;
            }
        }
        self.byte(b']');
    }

    unsafe fn object(&mut self, l: *mut ffi::lua_State, idx: c_int) {
        self.byte(b'{');
        let mut first = true;
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, idx) != 0 {
            if !first {
                self.byte(b',');
            }
            first = false;
            self.key(l, -2);
            self.byte(b':');
            self.value(l, -1);
            ffi::lua_pop(l, 1);
            if self.done() {
                ffi::lua_pop(l, 1);
                return;
            }
        }
        self.byte(b'}');
    }

    /// `{"$lua_pairs":[[key,value],...]}`, sorted by the JSON text of the key. The pairs
    /// are written to a scratch buffer first (bounded by the room left), then in order.
    unsafe fn pairs(&mut self, l: *mut ffi::lua_State, idx: c_int) {
        let room = self.limit.saturating_sub(self.out.len());
        let mut scratch = Vec::new();
        std::mem::swap(self.out, &mut scratch);
        let saved_limit = std::mem::replace(&mut self.limit, room);
        // (key start, key end = value start, value end) in the scratch buffer.
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, idx) != 0 {
            let start = self.out.len();
            self.value(l, -2);
            let mid = self.out.len();
            self.value(l, -1);
            spans.push((start, mid, self.out.len()));
            ffi::lua_pop(l, 1);
            if self.done() {
                ffi::lua_pop(l, 1);
                break;
            }
        }
        std::mem::swap(self.out, &mut scratch);
        self.limit = saved_limit;
        if self.done() {
            return;
        }
        spans.sort_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
        self.push(b"{\"$lua_pairs\":[");
        for (i, &(k, v, e)) in spans.iter().enumerate() {
            if i > 0 {
                self.byte(b',');
            }
            self.byte(b'[');
            self.push(&scratch[k..v]);
            self.byte(b',');
            self.push(&scratch[v..e]);
            self.byte(b']');
        }
        self.push(b"]}");
    }

    unsafe fn key(&mut self, l: *mut ffi::lua_State, idx: c_int) {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TSTRING => self.string(string_at(l, idx)),
            _ => {
                let mut text = Vec::new();
                if !write_plain(l, idx, &mut text) {
                    text = opaque_text(l, idx).into_bytes();
                }
                self.string(&text);
            }
        }
    }
}

/// What one pass over a table's keys found.
struct Survey {
    /// Number of entries (`usize::MAX`: a stop is pending).
    count: usize,
    /// Every key is an integer in 1..=n.
    is_array: bool,
    clash: Suspects,
}

/// Kinds of keys whose object-key texts could coincide; see [`Suspects::resolve`].
#[derive(Default)]
struct Suspects {
    /// A certain clash found in the pass: a string key that is the decimal text of an
    /// integer key, or "true"/"false" with that boolean also a key.
    certain: bool,
    floats: bool,
    invalid_utf8: bool,
    opaque: bool,
}

enum Clash {
    No,
    Yes,
    /// Deciding needed more room than the JSON has left: it cannot fit either way.
    TooLarge(u64),
    Stopped,
}

/// Counts the entries of the table at `idx` (absolute), checks whether it is a sequence
/// 1..n, and notes which keys could clash as object keys.
unsafe fn survey(l: *mut ffi::lua_State, idx: c_int, n: usize) -> Survey {
    let mut s = Survey {
        count: 0,
        is_array: n > 0,
        clash: Suspects::default(),
    };
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        s.count += 1;
        match ffi::lua_type(l, -2) {
            ffi::LUA_TNUMBER => {
                if ffi::lua_isinteger(l, -2) != 0 {
                    let k = ffi::lua_tointegerx(l, -2, std::ptr::null_mut());
                    s.is_array &= k >= 1 && (k as u64) <= n as u64;
                } else {
                    s.is_array = false;
                    s.clash.floats = true;
                }
            }
            ffi::LUA_TSTRING => {
                s.is_array = false;
                if !s.clash.certain {
                    note_string_key(l, idx, string_at(l, -2), &mut s.clash);
                }
            }
            ffi::LUA_TBOOLEAN => s.is_array = false,
            _ => {
                s.is_array = false;
                s.clash.opaque = true;
            }
        }
        ffi::lua_pop(l, 1);
        if s.count.is_multiple_of(STOP_CHECK_NODES as usize) && stop_pending(l) {
            ffi::lua_pop(l, 1);
            s.count = usize::MAX;
            return s;
        }
    }
    s
}

/// Notes what a string key could clash with. Integer and boolean keys are looked up at
/// once (reading a table while `lua_next` walks it is allowed).
unsafe fn note_string_key(l: *mut ffi::lua_State, t: c_int, k: &[u8], c: &mut Suspects) {
    if std::str::from_utf8(k).is_err() {
        c.invalid_utf8 = true;
        return;
    }
    if let Some(i) = canonical_integer(k) {
        if ffi::lua_rawgeti(l, t, i) != ffi::LUA_TNIL {
            c.certain = true;
        }
        ffi::lua_pop(l, 1);
    } else if k == b"true" || k == b"false" {
        ffi::lua_pushboolean(l, c_int::from(k == b"true"));
        if ffi::lua_rawget(l, t) != ffi::LUA_TNIL {
            c.certain = true;
        }
        ffi::lua_pop(l, 1);
    }
}

/// The integer whose decimal text `k` is exactly.
fn canonical_integer(k: &[u8]) -> Option<ffi::lua_Integer> {
    let digits = k.strip_prefix(b"-").unwrap_or(k);
    if digits.is_empty()
        || digits.len() > 19
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && (digits.len() > 1 || k.len() > 1))
    {
        return None;
    }
    std::str::from_utf8(k).ok()?.parse().ok()
}

/// Whether `k` could be `float_text` of some float (a loose test).
fn looks_like_float(k: &[u8]) -> bool {
    matches!(k, b"inf" | b"-inf" | b"nan" | b"-nan")
        || (!k.is_empty()
            && k.iter()
                .all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-')))
}

/// Type names that `opaque_text` writes for keys.
const OPAQUE_TYPES: [&[u8]; 4] = [b"table", b"function", b"userdata", b"thread"];

/// The type index and address of an `opaque_text` ("table: 0x55d0...").
fn opaque_parts(k: &[u8]) -> Option<(usize, usize)> {
    if k.len() > 40 {
        return None;
    }
    let colon = k.iter().position(|&b| b == b':')?;
    let ty = OPAQUE_TYPES.iter().position(|t| *t == &k[..colon])?;
    let hex = k[colon..].strip_prefix(b": 0x")?;
    let addr = usize::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    // Exactly the text `{:p}` gives (no leading zeros, lowercase).
    (format!("{:x}", addr).as_bytes() == hex).then_some((ty, addr))
}

impl Suspects {
    /// Decides whether two keys of the table at `idx` share an object-key text. What a
    /// single pass could not settle is settled by a second one: the texts of floats,
    /// invalid strings and the strings that could equal them are sorted and compared;
    /// opaque keys are matched against the strings that name them. The scratch space is
    /// bounded by `room` (each of those keys takes at least its text in the JSON, so once
    /// the texts pass `room` neither form can fit).
    unsafe fn resolve(&self, l: *mut ffi::lua_State, idx: c_int, room: usize) -> Clash {
        if self.certain {
            return Clash::Yes;
        }
        if !self.floats && !self.invalid_utf8 && !self.opaque {
            return Clash::No;
        }
        let mut arena: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut names: Vec<(usize, usize)> = Vec::new();
        let mut seen = 0usize;
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, idx) != 0 {
            ffi::lua_pop(l, 1);
            seen += 1;
            if seen.is_multiple_of(STOP_CHECK_NODES as usize) && stop_pending(l) {
                ffi::lua_pop(l, 1);
                return Clash::Stopped;
            }
            // The text of this key if it needs comparing, and whether it names an
            // opaque value.
            let mut text: Option<std::borrow::Cow<[u8]>> = None;
            match ffi::lua_type(l, -1) {
                ffi::LUA_TNUMBER if self.floats && ffi::lua_isinteger(l, -1) == 0 => {
                    let n = ffi::lua_tonumberx(l, -1, std::ptr::null_mut());
                    text = Some(float_text(n).into_bytes().into());
                }
                ffi::LUA_TSTRING => {
                    let k = string_at(l, -1);
                    let valid = std::str::from_utf8(k).is_ok();
                    // (Each text takes at least its length in the JSON: a text too long
                    // for the room is not copied.)
                    if k.len() > room {
                        ffi::lua_pop(l, 1);
                        return Clash::TooLarge((k.len() - room) as u64);
                    }
                    if !valid && self.invalid_utf8 {
                        text = Some(String::from_utf8_lossy(k).into_owned().into_bytes().into());
                    } else if valid
                        && ((self.floats && looks_like_float(k))
                            || (self.invalid_utf8
                                && k.windows(REPLACEMENT.len()).any(|w| w == REPLACEMENT)))
                    {
                        text = Some(k.into());
                    }
                    if self.opaque && valid {
                        if let Some(parts) = opaque_parts(k) {
                            names.push(parts);
                        }
                    }
                }
                _ => {}
            }
            if let Some(t) = text {
                let start = arena.len();
                arena.extend_from_slice(&t);
                spans.push((start, arena.len()));
            }
            // A lower bound of the JSON these keys take in either form: a text in the
            // arena at least its length and 3 bytes more, a name at least 14 bytes.
            let least = arena.len() + 3 * spans.len() + 14 * names.len();
            if least > room {
                ffi::lua_pop(l, 1);
                return Clash::TooLarge((least - room) as u64);
            }
        }
        spans.sort_by(|a, b| arena[a.0..a.1].cmp(&arena[b.0..b.1]));
        if spans
            .windows(2)
            .any(|w| arena[w[0].0..w[0].1] == arena[w[1].0..w[1].1])
        {
            return Clash::Yes;
        }
        if !names.is_empty() {
            names.sort_unstable();
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, idx) != 0 {
                ffi::lua_pop(l, 1);
                let t = ffi::lua_type(l, -1);
                if matches!(
                    t,
                    ffi::LUA_TTABLE
                        | ffi::LUA_TFUNCTION
                        | ffi::LUA_TUSERDATA
                        | ffi::LUA_TLIGHTUSERDATA
                        | ffi::LUA_TTHREAD
                ) {
                    let name = std::ffi::CStr::from_ptr(ffi::luaL_typename(l, -1)).to_bytes();
                    let ty = OPAQUE_TYPES.iter().position(|x| *x == name);
                    let addr = ffi::lua_topointer(l, -1) as usize;
                    if ty.is_some_and(|ty| names.binary_search(&(ty, addr)).is_ok()) {
                        ffi::lua_pop(l, 1);
                        return Clash::Yes;
                    }
                }
            }
        }
        Clash::No
    }
}

/// The decimal digits of an integer (as Lua and serde_json write it), built from the end
/// of a buffer that holds any `i64`.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn new() -> Self {
        Digits {
            buf: [0; 20],
            start: 20,
        }
    }

    fn of(&mut self, n: i64) -> &[u8] {
        let mut m = n.unsigned_abs();
        loop {
            self.start -= 1;
            self.buf[self.start] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        if n < 0 {
            self.start -= 1;
            self.buf[self.start] = b'-';
        }
        &self.buf[self.start..]
    }
}

/// The bytes of the string at `idx` (which must be a string: no conversion happens).
unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    std::slice::from_raw_parts(p as *const u8, len)
}

/// `tostring` text of a value without calling metamethods (`table: 0x...`).
unsafe fn opaque_text(l: *mut ffi::lua_State, idx: c_int) -> String {
    let name = std::ffi::CStr::from_ptr(ffi::luaL_typename(l, idx)).to_string_lossy();
    format!("{name}: {:p}", ffi::lua_topointer(l, idx))
}

/// Appends the text of a nil, boolean, number or string as `tostring` gives it; other
/// values as their opaque text. Returns `false` for values that have a richer `tostring`
/// (tables, userdata) so the caller can call it.
unsafe fn write_plain(l: *mut ffi::lua_State, idx: c_int, out: &mut Vec<u8>) -> bool {
    match ffi::lua_type(l, idx) {
        ffi::LUA_TNIL => out.extend_from_slice(b"nil"),
        ffi::LUA_TBOOLEAN => out.extend_from_slice(if ffi::lua_toboolean(l, idx) != 0 {
            b"true"
        } else {
            b"false"
        }),
        ffi::LUA_TNUMBER => {
            if ffi::lua_isinteger(l, idx) != 0 {
                let mut digits = Digits::new();
                out.extend_from_slice(digits.of(ffi::lua_tointegerx(l, idx, std::ptr::null_mut())));
            } else {
                out.extend_from_slice(
                    float_text(ffi::lua_tonumberx(l, idx, std::ptr::null_mut())).as_bytes(),
                );
            }
        }
        ffi::LUA_TSTRING => out.extend_from_slice(string_at(l, idx)),
        ffi::LUA_TTABLE | ffi::LUA_TUSERDATA => return false,
        _ => out.extend_from_slice(opaque_text(l, idx).as_bytes()),
    }
    true
}

/// Appends the value in slot `i` to the captured stdout as `tostring` gives it (through
/// the function in registry slot `tostring_ref` for tables and userdata, under
/// `lua_pcall`).
unsafe fn write_repl_value(
    l: *mut ffi::lua_State,
    i: c_int,
    tostring_ref: c_int,
    capture: *mut Capture,
) {
    match ffi::lua_type(l, i) {
        // A string may be long: pushed in place (in pieces), the cap takes what fits.
        ffi::LUA_TSTRING => {
            push_stoppable(l, capture, STDOUT, string_at(l, i));
            return;
        }
        ffi::LUA_TTABLE | ffi::LUA_TUSERDATA => {}
        _ => {
            let mut text = Vec::new();
            write_plain(l, i, &mut text);
            return (*capture).push(STDOUT, &text);
        }
    }
    if ffi::lua_checkstack(l, 2) == 0 {
        return (*capture).push(STDOUT, opaque_text(l, i).as_bytes());
    }
    ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, tostring_ref as ffi::lua_Integer);
    ffi::lua_pushvalue(l, i);
    let status = ffi::lua_pcall(l, 1, 1, 0);
    if status == ffi::LUA_OK && ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
        push_stoppable(l, capture, STDOUT, string_at(l, -1));
    } else if ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
        (*capture).push(STDOUT, b"<tostring failed: ");
        (*capture).push(STDOUT, string_at(l, -1));
        (*capture).push(STDOUT, b">");
    } else {
        (*capture).push(STDOUT, opaque_text(l, i).as_bytes());
    }
    ffi::lua_pop(l, 1);
}

/// A float as Lua 5.4 prints it (`%.14g`, with `.0` added to integral values).
pub fn float_text(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format_g14(n);
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        format!("{s}.0")
    } else {
        s
    }
}

/// C's `%.14g`.
fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.13e}", n);
    let (mant, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    if !(-4..14).contains(&e) {
        let mant = trim_zeros(mant);
        let sign = if e < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", e.abs())
    } else {
        let decimals = (13 - e).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, n)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Pushes a JSON value as a Lua value (arrays and objects become tables, null becomes nil).
/// May raise a memory error: call it only inside a protected call. It keeps no value with
/// a destructor alive across the calls that may raise.
///
/// # Safety
/// `l` must have room for 3 more slots per nesting level (checked here).
pub unsafe fn push_json(l: *mut ffi::lua_State, v: &Json) {
    ffi::luaL_checkstack(l, 3, c"arguments nested too deeply".as_ptr());
    match v {
        Json::Null => ffi::lua_pushnil(l),
        Json::Bool(b) => ffi::lua_pushboolean(l, c_int::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => ffi::lua_pushinteger(l, i),
            None => ffi::lua_pushnumber(l, n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => {
            ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
        }
        Json::Array(a) => {
            ffi::lua_createtable(l, a.len().min(c_int::MAX as usize) as c_int, 0);
            for (i, x) in a.iter().enumerate() {
                push_json(l, x);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
            }
        }
        Json::Object(o) => {
            ffi::lua_createtable(l, 0, o.len().min(c_int::MAX as usize) as c_int);
            for (k, x) in o {
                ffi::lua_pushlstring(l, k.as_ptr().cast(), k.len());
                push_json(l, x);
                ffi::lua_rawset(l, -3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{float_text, utf8_split, Digits};

    #[test]
    fn long_strings_are_cut_where_their_decoding_stays_the_same() {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let cases: Vec<Vec<u8>> = vec![
            "€".repeat(40).into_bytes(),
            [b"a".repeat(9), vec![0xE2, 0x82], b"b".repeat(9)].concat(),
            [vec![0xE2, 0x82], vec![0x80; 20], "€".as_bytes().to_vec()].concat(),
            vec![0x80; 30],
            [b"ab".to_vec(), "😀".repeat(10).into_bytes()].concat(),
        ];
        for bytes in cases {
            for max in 4..12 {
                let mut out = String::new();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let cut = utf8_split(rest, max);
                    assert!(cut > 0 && cut <= max);
                    out += &lossy(&rest[..cut]);
                    rest = &rest[cut..];
                }
                assert_eq!(out, lossy(&bytes), "{bytes:x?} in pieces of {max}");
            }
        }
    }

    #[test]
    fn integers_print_as_serde_json_does() {
        for n in [0, 1, -1, 9, 10, -10, 4096, i64::MAX, i64::MIN, i64::MIN + 1] {
            assert_eq!(
                Digits::new().of(n),
                serde_json::to_string(&n).unwrap().as_bytes()
            );
        }
    }

    #[test]
    fn floats_print_as_lua_does() {
        for (n, s) in [
            (4.0, "4.0"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345678901234e+14"),
            (1e-5, "1e-05"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_text(n), s, "{n}");
        }
    }
}
