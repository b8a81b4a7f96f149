//! Generated Lua programs with the outcome each must have.
//!
//! A program is rendered for one call with that call's token: every program prints the
//! token first, and a program that returns returns the token as its first value, so a
//! result carrying another call's token (or none) is a result given to the wrong call. The
//! values, the printed text and the error of a bounded program are computed here from a
//! small model of Lua, so a result is checked as a whole, not only for its token.

use proptest::prelude::*;
use serde_json::{json, Value as Json};

/// A Lua value as the model computes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Lv {
    Nil,
    Bool(bool),
    Int(i64),
    /// Only halves of small integers: exact, and printed without rounding questions.
    Float(f64),
    Str(Vec<u8>),
    /// A table whose keys are 1..n.
    Array(Vec<Lv>),
    /// A table with string keys (empty: `{}`).
    Object(Vec<(String, Lv)>),
}

impl Lv {
    pub fn json(&self) -> Json {
        match self {
            Lv::Nil => Json::Null,
            Lv::Bool(b) => json!(b),
            Lv::Int(i) => json!(i),
            Lv::Float(f) => json!(f),
            Lv::Str(s) => Json::String(String::from_utf8(s.clone()).expect("ASCII/UTF-8 model")),
            Lv::Array(a) if a.is_empty() => json!({}),
            Lv::Array(a) => Json::Array(a.iter().map(Lv::json).collect()),
            Lv::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), v.json())).collect()),
        }
    }

    /// What `tostring` gives, as the REPL prints returned values.
    fn repl(&self, out: &mut Vec<Seg>) {
        let text = match self {
            Lv::Nil => "nil".to_string(),
            Lv::Bool(b) => b.to_string(),
            Lv::Int(i) => i.to_string(),
            Lv::Float(f) => float_text(*f),
            Lv::Str(s) => return lit(out, s),
            Lv::Array(_) | Lv::Object(_) => {
                out.push(Seg::Address("table: "));
                return;
            }
        };
        lit(out, text.as_bytes())
    }
}

/// `%.14g` for the halves the model makes, with `.0` for integral values as Lua prints.
fn float_text(f: f64) -> String {
    if f == f.trunc() {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// A piece of expected output: literal bytes, or `<prefix>0x<hex>` (a table's address).
#[derive(Clone, Debug, PartialEq)]
pub enum Seg {
    Lit(Vec<u8>),
    Address(&'static str),
}

fn lit(out: &mut Vec<Seg>, b: &[u8]) {
    if b.is_empty() {
        return;
    }
    if let Some(Seg::Lit(last)) = out.last_mut() {
        last.extend_from_slice(b);
    } else {
        out.push(Seg::Lit(b.to_vec()));
    }
}

/// Whether `got` is exactly `want` (`whole`) or a prefix of it.
pub fn matches(want: &[Seg], got: &[u8], whole: bool) -> bool {
    let mut g = got;
    for seg in want {
        match seg {
            Seg::Lit(l) => {
                if g.len() < l.len() {
                    return !whole && l.starts_with(g);
                }
                if !g.starts_with(l) {
                    return false;
                }
                g = &g[l.len()..];
            }
            Seg::Address(prefix) => {
                let p = format!("{prefix}0x");
                let p = p.as_bytes();
                if g.len() < p.len() {
                    return !whole && p.starts_with(g);
                }
                if !g.starts_with(p) {
                    return false;
                }
                g = &g[p.len()..];
                let hex = g.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                if hex == 0 {
                    return !whole && g.is_empty();
                }
                g = &g[hex..];
            }
        }
    }
    g.is_empty()
}

/// The length the expected output has (a table address counted as 23 bytes).
pub fn seg_len(s: &[Seg]) -> usize {
    s.iter()
        .map(|x| match x {
            Seg::Lit(l) => l.len(),
            Seg::Address(p) => p.len() + 16,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Expressions.

#[derive(Clone, Debug)]
pub enum ArOp {
    Add,
    Sub,
    Mul,
    IDiv,
    Mod,
}

#[derive(Clone, Debug)]
pub enum Val {
    Int(i64),
    Arith(Box<Val>, ArOp, Box<Val>),
    /// `(n / 2)`: a float.
    Half(i64),
    /// `math.floor(n / 2)`: an integer.
    FloorHalf(i64),
    Str(Vec<u8>),
    Concat(Box<Val>, Box<Val>),
    Rep(Vec<u8>, u8),
    Upper(Vec<u8>),
    Len(Box<Val>),
    Format(i64, Vec<u8>),
    Sub(Vec<u8>, u8, u8),
    Lt(i64, i64),
    Bool(bool),
    Nil,
    Array(Vec<Val>),
    Object(Vec<(String, Val)>),
    /// `(function() local s = 0 for i = 1, n do s = s + i end return s end)()`.
    ForSum(u16),
    /// The same with `while`.
    WhileSum(u16),
    /// A coroutine that yields `a + 1`, then returns twice what it is resumed with.
    Coroutine(i64, i64),
    /// `table.concat({...}, ",")` of string literals.
    TableConcat(Vec<Vec<u8>>),
    /// `utf8.len` of a literal.
    Utf8Len(Vec<u8>),
    /// `math.max(a, b)`.
    Max(i64, i64),
}

fn quote(s: &[u8]) -> String {
    let mut v = vec![b'"'];
    for &b in s {
        match b {
            b'\n' => v.extend_from_slice(b"\\n"),
            0 => v.extend_from_slice(b"\\0"),
            b'"' => v.extend_from_slice(b"\\\""),
            b'\\' => v.extend_from_slice(b"\\\\"),
            _ => v.push(b),
        }
    }
    v.push(b'"');
    String::from_utf8(v).expect("literals are UTF-8")
}

/// Lua's `//` on integers (the divisor is never 0 here).
fn floor_div(a: i64, b: i64) -> i64 {
    let q = a.wrapping_div(b);
    if (a.wrapping_rem(b) != 0) && ((a < 0) != (b < 0)) {
        q.wrapping_sub(1)
    } else {
        q
    }
}

/// Lua's `%` on integers.
fn floor_mod(a: i64, b: i64) -> i64 {
    a.wrapping_sub(floor_div(a, b).wrapping_mul(b))
}

impl Val {
    pub fn src(&self) -> String {
        match self {
            Val::Int(i) if *i < 0 => format!("({i})"),
            Val::Int(i) => i.to_string(),
            Val::Arith(a, op, b) => {
                let o = match op {
                    ArOp::Add => "+",
                    ArOp::Sub => "-",
                    ArOp::Mul => "*",
                    ArOp::IDiv => "//",
                    ArOp::Mod => "%",
                };
                format!("({} {o} {})", a.src(), b.src())
            }
            Val::Half(n) => format!("({n} / 2)"),
            Val::FloorHalf(n) => format!("math.floor({n} / 2)"),
            Val::Str(s) => quote(s),
            Val::Concat(a, b) => format!("({} .. {})", a.src(), b.src()),
            Val::Rep(s, n) => format!("string.rep({}, {n})", quote(s)),
            Val::Upper(s) => format!("({}):upper()", quote(s)),
            Val::Len(v) => format!("#{}", v.src()),
            Val::Format(i, s) => format!("string.format(\"%d:%s\", {i}, {})", quote(s)),
            Val::Sub(s, i, j) => format!("({}):sub({i}, {j})", quote(s)),
            Val::Lt(a, b) => format!("({a} < {b})"),
            Val::Bool(b) => b.to_string(),
            Val::Nil => "nil".into(),
            Val::Array(items) => {
                let v: Vec<String> = items.iter().map(Val::src).collect();
                format!("{{{}}}", v.join(", "))
            }
            Val::Object(kv) => {
                let v: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {}", v.src())).collect();
                format!("{{{}}}", v.join(", "))
            }
            Val::ForSum(n) => {
                format!("(function() local s = 0 for i = 1, {n} do s = s + i end return s end)()")
            }
            Val::WhileSum(n) => format!(
                "(function() local i, s = 0, 0 while i < {n} do i = i + 1 s = s + i end return s end)()"
            ),
            Val::Coroutine(a, b) => format!(
                "(function() local co = coroutine.wrap(function(x) local y = coroutine.yield(x + 1) \
                 return y * 2 end) local p = co({a}) return p + co({b}) end)()"
            ),
            Val::TableConcat(items) => {
                let v: Vec<String> = items.iter().map(|s| quote(s)).collect();
                format!("table.concat({{{}}}, \",\")", v.join(", "))
            }
            Val::Utf8Len(s) => format!("utf8.len({})", quote(s)),
            Val::Max(a, b) => format!("math.max({a}, {b})"),
        }
    }

    pub fn eval(&self) -> Lv {
        match self {
            Val::Int(i) => Lv::Int(*i),
            Val::Arith(a, op, b) => {
                let (Lv::Int(x), Lv::Int(y)) = (a.eval(), b.eval()) else {
                    unreachable!("integer operands")
                };
                Lv::Int(match op {
                    ArOp::Add => x.wrapping_add(y),
                    ArOp::Sub => x.wrapping_sub(y),
                    ArOp::Mul => x.wrapping_mul(y),
                    ArOp::IDiv => floor_div(x, y),
                    ArOp::Mod => floor_mod(x, y),
                })
            }
            Val::Half(n) => Lv::Float(*n as f64 / 2.0),
            Val::FloorHalf(n) => Lv::Int(floor_div(*n, 2)),
            Val::Str(s) => Lv::Str(s.clone()),
            Val::Concat(a, b) => {
                let mut x = str_of(&a.eval());
                x.extend(str_of(&b.eval()));
                Lv::Str(x)
            }
            Val::Rep(s, n) => Lv::Str(s.repeat(*n as usize)),
            Val::Upper(s) => Lv::Str(s.to_ascii_uppercase()),
            Val::Len(v) => match v.eval() {
                Lv::Str(s) => Lv::Int(s.len() as i64),
                Lv::Array(a) => Lv::Int(a.len() as i64),
                _ => unreachable!("length of a string or an array"),
            },
            Val::Format(i, s) => {
                let mut v = format!("{i}:").into_bytes();
                v.extend_from_slice(s);
                Lv::Str(v)
            }
            Val::Sub(s, i, j) => {
                // `sub` starts at 1 at the earliest and ends at the length at the latest.
                let (i, j) = ((*i as usize).max(1), (*j as usize).min(s.len()));
                Lv::Str(if i <= j {
                    s[i - 1..j].to_vec()
                } else {
                    Vec::new()
                })
            }
            Val::Lt(a, b) => Lv::Bool(a < b),
            Val::Bool(b) => Lv::Bool(*b),
            Val::Nil => Lv::Nil,
            Val::Array(items) => Lv::Array(items.iter().map(Val::eval).collect()),
            Val::Object(kv) => {
                let mut o: Vec<(String, Lv)> = Vec::new();
                for (k, v) in kv {
                    o.retain(|(x, _)| x != k);
                    o.push((k.clone(), v.eval()));
                }
                o.sort_by(|a, b| a.0.cmp(&b.0));
                Lv::Object(o)
            }
            Val::ForSum(n) | Val::WhileSum(n) => {
                let n = *n as i64;
                Lv::Int(n * (n + 1) / 2)
            }
            Val::Coroutine(a, b) => Lv::Int(a + 1 + 2 * b),
            Val::TableConcat(items) => Lv::Str(items.join(&b","[..])),
            Val::Utf8Len(s) => {
                Lv::Int(std::str::from_utf8(s).expect("UTF-8").chars().count() as i64)
            }
            Val::Max(a, b) => Lv::Int(*a.max(b)),
        }
    }
}

fn str_of(v: &Lv) -> Vec<u8> {
    match v {
        Lv::Str(s) => s.clone(),
        Lv::Int(i) => i.to_string().into_bytes(),
        _ => unreachable!("concatenation of strings and integers"),
    }
}

fn small_int() -> impl Strategy<Value = i64> {
    -99i64..=99
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => "[a-z]{1,6}".prop_map(String::into_bytes),
        2 => "[A-Z _.:-]{1,4}".prop_map(String::into_bytes),
        1 => Just("ä€".as_bytes().to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"\0".to_vec()),
    ];
    prop::collection::vec(piece, 0..3).prop_map(|v| v.concat())
}

fn ascii_text() -> impl Strategy<Value = Vec<u8>> {
    "[a-z]{0,8}".prop_map(String::into_bytes)
}

fn int_val() -> impl Strategy<Value = Val> {
    let leaf = prop_oneof![
        4 => small_int().prop_map(Val::Int),
        1 => small_int().prop_map(Val::FloorHalf),
        1 => text().prop_map(|s| Val::Len(Box::new(Val::Str(s)))),
        1 => (1u16..3000).prop_map(Val::ForSum),
        1 => (1u16..3000).prop_map(Val::WhileSum),
        1 => (small_int(), small_int()).prop_map(|(a, b)| Val::Coroutine(a, b)),
        1 => (small_int(), small_int()).prop_map(|(a, b)| Val::Max(a, b)),
        1 => Just(Val::Utf8Len("aä€".as_bytes().to_vec())),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone(), 0..3u8).prop_map(|(a, b, o)| {
                let op = [ArOp::Add, ArOp::Sub, ArOp::Mul][o as usize].clone();
                Val::Arith(Box::new(a), op, Box::new(b))
            }),
            (inner, prop_oneof![-9i64..=-1, 1i64..=9], any::<bool>()).prop_map(|(a, d, m)| {
                let op = if m { ArOp::Mod } else { ArOp::IDiv };
                Val::Arith(Box::new(a), op, Box::new(Val::Int(d)))
            }),
        ]
    })
}

fn str_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => text().prop_map(Val::Str),
        1 => (text(), small_int()).prop_map(|(s, i)| {
            Val::Concat(Box::new(Val::Str(s)), Box::new(Val::Int(i)))
        }),
        1 => (text(), text()).prop_map(|(a, b)| {
            Val::Concat(Box::new(Val::Str(a)), Box::new(Val::Str(b)))
        }),
        1 => (text(), 0u8..4).prop_map(|(s, n)| Val::Rep(s, n)),
        1 => text().prop_map(Val::Upper),
        1 => (small_int(), text()).prop_map(|(i, s)| Val::Format(i, s)),
        1 => (ascii_text(), 0u8..6, 0u8..9).prop_map(|(s, i, j)| Val::Sub(s, i, j)),
        1 => prop::collection::vec(ascii_text(), 1..4).prop_map(Val::TableConcat),
    ]
}

fn scalar_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => int_val(),
        3 => str_val(),
        1 => small_int().prop_map(Val::Half),
        1 => (small_int(), small_int()).prop_map(|(a, b)| Val::Lt(a, b)),
        1 => any::<bool>().prop_map(Val::Bool),
    ]
}

const KEYS: &[&str] = &["a", "b", "key", "x1", "name", "n"];

/// A value that is not nil (table elements).
fn element_val() -> impl Strategy<Value = Val> {
    scalar_val().prop_recursive(2, 10, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Val::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 1..4).prop_map(|kv| {
                Val::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn any_val() -> impl Strategy<Value = Val> {
    prop_oneof![9 => element_val(), 1 => Just(Val::Nil)]
}

// ---------------------------------------------------------------------------------------
// Programs.

/// One item of a `return` list (some give several values).
#[derive(Clone, Debug)]
pub enum Ret {
    One(Val),
    /// `pcall(error, "m")`: false, "m".
    PcallError(Vec<u8>),
    /// `pcall(error, {code = n})`: false, a table.
    PcallTable(i64),
    /// `pcall(function() return v end)`: true, v.
    PcallOk(Val),
    /// `(s):gsub("a", "XY")`: the new string and the count.
    Gsub(Vec<u8>),
    /// `string.find(s, t, 1, true)`: start and end, or nil.
    Find(Vec<u8>, Vec<u8>),
    /// `table.unpack({...})`.
    Unpack(Vec<Val>),
    /// `...`: the call's arguments.
    Args,
    /// `select("#", ...)`.
    ArgCount,
}

impl Ret {
    fn src(&self) -> String {
        match self {
            Ret::One(v) => v.src(),
            Ret::PcallError(m) => format!("pcall(error, {})", quote(m)),
            Ret::PcallTable(n) => format!("pcall(error, {{code = {n}}})"),
            Ret::PcallOk(v) => format!("pcall(function() return {} end)", v.src()),
            Ret::Gsub(s) => format!("({}):gsub(\"a\", \"XY\")", quote(s)),
            Ret::Find(s, t) => format!("string.find({}, {}, 1, true)", quote(s), quote(t)),
            Ret::Unpack(items) => {
                let v: Vec<String> = items.iter().map(Val::src).collect();
                format!("table.unpack({{{}}})", v.join(", "))
            }
            Ret::Args => "...".into(),
            Ret::ArgCount => "select(\"#\", ...)".into(),
        }
    }

    /// The values it gives; `last` when it ends the list (else truncated to one value).
    fn values(&self, args: &[Lv], last: bool) -> Vec<Lv> {
        let all = match self {
            Ret::One(v) => vec![v.eval()],
            Ret::PcallError(m) => vec![Lv::Bool(false), Lv::Str(m.clone())],
            Ret::PcallTable(n) => vec![
                Lv::Bool(false),
                Lv::Object(vec![("code".into(), Lv::Int(*n))]),
            ],
            Ret::PcallOk(v) => vec![Lv::Bool(true), v.eval()],
            Ret::Gsub(s) => {
                let n = s.iter().filter(|b| **b == b'a').count();
                let mut out = Vec::new();
                for &b in s {
                    if b == b'a' {
                        out.extend_from_slice(b"XY");
                    } else {
                        out.push(b);
                    }
                }
                vec![Lv::Str(out), Lv::Int(n as i64)]
            }
            Ret::Find(s, t) => match find(s, t) {
                Some(i) => vec![Lv::Int(i as i64 + 1), Lv::Int((i + t.len()) as i64)],
                None => vec![Lv::Nil],
            },
            Ret::Unpack(items) => {
                // `table.unpack` of a constructor with nils is a border question: keep to
                // lists without nil (the generator only makes those).
                items.iter().map(Val::eval).collect()
            }
            Ret::Args => args.to_vec(),
            Ret::ArgCount => vec![Lv::Int(args.len() as i64)],
        };
        if last {
            all
        } else {
            vec![all.into_iter().next().unwrap_or(Lv::Nil)]
        }
    }
}

fn find(s: &[u8], t: &[u8]) -> Option<usize> {
    if t.is_empty() {
        return Some(0);
    }
    s.windows(t.len()).position(|w| w == t)
}

/// A statement before the end of a bounded program.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `print(v)`.
    Print(Val),
    /// `io.write` of 1..n separated by commas, then a newline.
    WriteLoop(u16),
    /// `io.stderr:write(...)` of a literal.
    Stderr(Vec<u8>),
    /// A global counter (state kept across calls; its value is not checked).
    Counter,
    /// `collectgarbage("collect")` or `"count"`.
    Gc(bool),
}

impl Stmt {
    /// The source; `trusted`: the full `io` writes to the real stderr, so `warn` is used.
    fn src(&self, trusted: bool) -> String {
        match self {
            Stmt::Stderr(s) if trusted => format!("warn(\"@on\") warn({})", quote(s)),
            Stmt::Print(v) => format!("print({})", v.src()),
            Stmt::WriteLoop(n) => {
                format!("for i = 1, {n} do io.write(i, \",\") end io.write(\"\\n\")")
            }
            Stmt::Stderr(s) => format!("io.stderr:write({})", quote(s)),
            Stmt::Counter => "fuzz_counter = (fuzz_counter or 0) + 1".into(),
            Stmt::Gc(true) => "collectgarbage(\"collect\")".into(),
            Stmt::Gc(false) => "local _ = collectgarbage(\"count\")".into(),
        }
    }

    fn stdout(&self, out: &mut Vec<Seg>) {
        match self {
            Stmt::Print(v) => {
                v.eval().repl(out);
                lit(out, b"\n");
            }
            Stmt::WriteLoop(n) => {
                let mut s = String::new();
                for i in 1..=*n {
                    s.push_str(&format!("{i},"));
                }
                s.push('\n');
                lit(out, s.as_bytes());
            }
            _ => {}
        }
    }
}

/// How a bounded program ends.
#[derive(Clone, Debug)]
pub enum End {
    Return(Vec<Ret>),
    /// `error("<token> ...")`.
    ErrorString(Vec<u8>),
    /// `error("<token>", 0)`: no position added.
    ErrorLevel0,
    /// `error({code = n})`.
    ErrorTable(i64),
    /// `error()`.
    ErrorNil,
    /// Indexing nil.
    IndexNil,
    /// `1 // 0`.
    DivZero,
    /// An error raised inside a coroutine and re-raised by `coroutine.wrap`.
    CoroutineError,
    /// Code that does not compile.
    Syntax,
}

/// Code that runs until something stops it.
#[derive(Clone, Debug, PartialEq)]
pub enum Spin {
    Empty,
    Counting,
    Garbage,
    /// `pcall` around an endless loop, in an endless loop: pcall cannot swallow the stop.
    Pcall,
    /// Endless inside a coroutine.
    Coroutine,
    /// A coroutine resumed endlessly.
    Resume,
    /// Printing endlessly (output past `max_output` is dropped).
    Print,
    /// A table growing endlessly (the memory limit or the deadline stops it).
    Grow,
    /// A string doubling endlessly: only on VMs with a memory limit.
    Double,
    /// Known bug (issue 10, class 1): a C library loop with no stop check.
    CLoop(u8),
}

impl Spin {
    /// Whether it may end on MEMORY_LIMIT.
    pub fn allocates(&self) -> bool {
        matches!(
            self,
            Spin::Grow | Spin::Double | Spin::Garbage | Spin::CLoop(_)
        )
    }

    fn src(&self) -> &'static str {
        match self {
            Spin::Empty => "while true do end",
            Spin::Counting => "local i = 0 while true do i = i + 1 end",
            Spin::Garbage => "while true do local t = {1, 2, 3} end",
            Spin::Pcall => "while true do pcall(function() while true do end end) end",
            Spin::Coroutine => "coroutine.wrap(function() while true do end end)()",
            Spin::Resume => {
                "local co = coroutine.wrap(function() while true do coroutine.yield() end end) \
                 while true do co() end"
            }
            Spin::Print => "while true do print(\"spam spam spam\") end",
            Spin::Grow => "local t, i = {}, 0 while true do i = i + 1 t[i] = i end",
            Spin::Double => "local s = \"x\" while true do s = s .. s end",
            Spin::CLoop(n) => C_LOOPS[*n as usize % C_LOOPS.len()],
        }
    }
}

/// Library functions that loop in C without a stop check today (issue 10, class 1).
pub const C_LOOPS: &[&str] = &[
    "table.move({}, 1, math.maxinteger - 1, 2)",
    // (With math.maxinteger the length + 1 wraps and `insert` moves nothing.)
    "local t = setmetatable({}, {__len = function() return 1 << 40 end}) table.insert(t, 1, 1)",
    "local h = string.rep(\"a\", 1 << 22) local n = string.rep(\"a\", 1 << 20) .. \"b\" \
     while true do string.find(h, n, 1, true) end",
    "local s = string.rep(\"a\", 1 << 26) while true do local u = s:upper() end",
];

#[derive(Clone, Debug)]
pub enum Program {
    Bounded(Vec<Stmt>, End),
    Spin(Spin),
    /// Bytes that are probably not Lua.
    Raw(Vec<u8>),
    /// Known bug (issue 10, class 4): writes a forged protocol frame to the child's real
    /// stdout (process VMs only), then returns normally.
    Forge,
}

/// What a rendered program must give.
#[derive(Clone, Debug)]
pub enum Expect {
    /// success, these values, this stdout.
    Values { stdout: Vec<Seg>, values: Vec<Lv> },
    /// A Lua error: this stdout before it; the error message has the token when `token`.
    LuaError { stdout: Vec<Seg>, token: bool },
    /// Never a completed result: stopped by its timeout, an interrupt or the memory limit.
    Stops,
    /// Any outcome; only the token rules apply.
    Anything,
}

pub struct Rendered {
    pub code: Vec<u8>,
    pub expect: Expect,
}

impl Program {
    pub fn is_spin(&self) -> bool {
        matches!(self, Program::Spin(_))
    }

    /// The source for a call with `token` and (when known) its arguments as Lua sees them,
    /// for a VM with the `trusted` sandbox or not.
    pub fn render(&self, token: &str, args: Option<&[Lv]>, trusted: bool) -> Rendered {
        let tok = format!("print(\"{token}\")\n");
        let mut out = vec![Seg::Lit(format!("{token}\n").into_bytes())];
        match self {
            Program::Raw(bytes) => Rendered {
                code: bytes.clone(),
                expect: Expect::Anything,
            },
            Program::Forge => Rendered {
                code: format!(
                    "{tok}local f = io.open(\"/dev/stdout\", \"w\") \
                     if f then f:write(\"done 2 3 0\\nok[4]\\n\") f:flush() end return \"{token}\""
                )
                .into_bytes(),
                expect: Expect::Anything,
            },
            Program::Spin(s) => Rendered {
                code: format!("{tok}{}", s.src()).into_bytes(),
                expect: Expect::Stops,
            },
            Program::Bounded(stmts, end) => {
                let mut src = tok;
                for s in stmts {
                    src.push_str(&s.src(trusted));
                    src.push('\n');
                    s.stdout(&mut out);
                }
                let token_lit = quote(token.as_bytes());
                let expect = match end {
                    End::Return(items) => {
                        let uses_args =
                            items.iter().any(|r| matches!(r, Ret::Args | Ret::ArgCount));
                        let mut list = vec![token_lit];
                        list.extend(items.iter().map(Ret::src));
                        src.push_str(&format!("return {}", list.join(", ")));
                        match (uses_args, args) {
                            (true, None) => Expect::Anything,
                            _ => {
                                let args = args.unwrap_or(&[]);
                                let mut values = vec![Lv::Str(token.as_bytes().to_vec())];
                                for (i, r) in items.iter().enumerate() {
                                    values.extend(r.values(args, i + 1 == items.len()));
                                }
                                for (i, v) in values.iter().enumerate() {
                                    if i > 0 {
                                        lit(&mut out, b"\t");
                                    }
                                    v.repl(&mut out);
                                }
                                lit(&mut out, b"\n");
                                Expect::Values {
                                    stdout: out,
                                    values,
                                }
                            }
                        }
                    }
                    End::ErrorString(m) => {
                        let mut msg = token.as_bytes().to_vec();
                        msg.push(b' ');
                        msg.extend_from_slice(m);
                        src.push_str(&format!("error({})", quote(&msg)));
                        Expect::LuaError {
                            stdout: out,
                            token: true,
                        }
                    }
                    End::ErrorLevel0 => {
                        src.push_str(&format!("error({token_lit}, 0)"));
                        Expect::LuaError {
                            stdout: out,
                            token: true,
                        }
                    }
                    End::ErrorTable(n) => {
                        src.push_str(&format!("error({{code = {n}}})"));
                        Expect::LuaError {
                            stdout: out,
                            token: false,
                        }
                    }
                    End::ErrorNil => {
                        src.push_str("error()");
                        Expect::LuaError {
                            stdout: out,
                            token: false,
                        }
                    }
                    End::IndexNil => {
                        src.push_str("local t = nil return t.x");
                        Expect::LuaError {
                            stdout: out,
                            token: false,
                        }
                    }
                    End::DivZero => {
                        src.push_str("local z = 0 return 1 // z");
                        Expect::LuaError {
                            stdout: out,
                            token: false,
                        }
                    }
                    End::CoroutineError => {
                        src.push_str(&format!(
                            "coroutine.wrap(function() error({token_lit}) end)()"
                        ));
                        Expect::LuaError {
                            stdout: out,
                            token: true,
                        }
                    }
                    End::Syntax => {
                        // Nothing runs: the chunk does not compile, the token is not printed.
                        src.push_str("return 1 +");
                        Expect::LuaError {
                            stdout: Vec::new(),
                            token: false,
                        }
                    }
                };
                Rendered {
                    code: src.into_bytes(),
                    expect,
                }
            }
        }
    }
}

fn ret_item() -> impl Strategy<Value = Ret> {
    prop_oneof![
        10 => any_val().prop_map(Ret::One),
        1 => text().prop_map(Ret::PcallError),
        1 => small_int().prop_map(Ret::PcallTable),
        1 => element_val().prop_map(Ret::PcallOk),
        1 => ascii_text().prop_map(Ret::Gsub),
        1 => (ascii_text(), "[a-c]{0,2}".prop_map(String::into_bytes))
            .prop_map(|(s, t)| Ret::Find(s, t)),
        1 => prop::collection::vec(element_val(), 0..4).prop_map(Ret::Unpack),
        2 => Just(Ret::Args),
        1 => Just(Ret::ArgCount),
    ]
}

fn stmt() -> impl Strategy<Value = Stmt> {
    prop_oneof![
        4 => scalar_val().prop_map(Stmt::Print),
        2 => (1u16..400).prop_map(Stmt::WriteLoop),
        1 => text().prop_map(Stmt::Stderr),
        1 => Just(Stmt::Counter),
        1 => any::<bool>().prop_map(Stmt::Gc),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        12 => prop::collection::vec(ret_item(), 0..4).prop_map(End::Return),
        2 => text().prop_map(End::ErrorString),
        1 => Just(End::ErrorLevel0),
        1 => small_int().prop_map(End::ErrorTable),
        1 => Just(End::ErrorNil),
        1 => Just(End::IndexNil),
        1 => Just(End::DivZero),
        1 => Just(End::CoroutineError),
        1 => Just(End::Syntax),
    ]
}

pub fn spin(c_loops: bool) -> BoxedStrategy<Spin> {
    let common = prop_oneof![
        Just(Spin::Empty),
        Just(Spin::Counting),
        Just(Spin::Garbage),
        Just(Spin::Pcall),
        Just(Spin::Coroutine),
        Just(Spin::Resume),
        Just(Spin::Print),
        Just(Spin::Grow),
        Just(Spin::Double),
    ];
    if c_loops {
        prop_oneof![6 => common, 1 => (0u8..8).prop_map(Spin::CLoop)].boxed()
    } else {
        common.boxed()
    }
}

pub fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "[ -~\n]{0,40}".prop_map(String::into_bytes),
        Just(b"   \n\t ".to_vec()),
        Just(b"\x1bLua\x54\x00".to_vec()),
        Just(b"return 1\0return 2".to_vec()),
    ]
}

pub fn program(c_loops: bool, forge: bool) -> BoxedStrategy<Program> {
    let bounded =
        (prop::collection::vec(stmt(), 0..3), end()).prop_map(|(s, e)| Program::Bounded(s, e));
    let mut p = prop_oneof![
        20 => bounded,
        3 => spin(c_loops).prop_map(Program::Spin),
        1 => raw_bytes().prop_map(Program::Raw),
    ]
    .boxed();
    if forge {
        p = prop_oneof![12 => p, 1 => Just(Program::Forge)].boxed();
    }
    p
}

// ---------------------------------------------------------------------------------------
// Arguments.

/// The arguments of a call, as JSON text.
#[derive(Clone, Debug)]
pub enum Args {
    None,
    /// A valid JSON array: its elements are checked coming back through `...`.
    Json(Json),
    /// Any bytes (made NUL-free; the string ends at the first NUL, as C sees it).
    Raw(Vec<u8>),
}

impl Args {
    /// The elements as Lua receives them, when the arguments are a valid array.
    pub fn lua(&self) -> Option<Vec<Lv>> {
        match self {
            Args::None => Some(Vec::new()),
            Args::Json(Json::Array(a)) => Some(a.iter().map(json_to_lua).collect()),
            _ => None,
        }
    }
}

/// JSON as `push_json` makes it a Lua value; arrays with nulls have holes.
fn json_to_lua(v: &Json) -> Lv {
    match v {
        Json::Null => Lv::Nil,
        Json::Bool(b) => Lv::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Lv::Int(i),
            None => Lv::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Lv::Str(s.as_bytes().to_vec()),
        Json::Array(a) => {
            if a.iter().any(Json::is_null) {
                // Holes: the table's keys are the indices of the non-null elements.
                let kv: Vec<(String, Lv)> = a
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| !x.is_null())
                    .map(|(i, x)| ((i + 1).to_string(), json_to_lua(x)))
                    .collect();
                let n = kv.len();
                if kv
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| *k == (i + 1).to_string())
                    && n > 0
                {
                    Lv::Array(kv.into_iter().map(|(_, v)| v).collect())
                } else {
                    Lv::Object(kv)
                }
            } else {
                Lv::Array(a.iter().map(json_to_lua).collect())
            }
        }
        Json::Object(o) => Lv::Object(
            o.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), json_to_lua(x)))
                .collect(),
        ),
    }
}

fn json_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-1000i64..1000).prop_map(|i| json!(i)),
        (-100i64..100).prop_map(|i| json!(i as f64 + 0.5)),
        "[a-z ä\\x00\"\\\\]{0,6}".prop_map(Json::String),
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    json_leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

pub fn args() -> impl Strategy<Value = Args> {
    prop_oneof![
        6 => Just(Args::None),
        4 => prop::collection::vec(json_value(), 0..4).prop_map(|v| Args::Json(Json::Array(v))),
        1 => json_value().prop_map(Args::Json),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Args::Raw),
        1 => "[\\[\\]{}\",:0-9a-z ]{0,12}".prop_map(|s| Args::Raw(s.into_bytes())),
    ]
}

// ---------------------------------------------------------------------------------------
// Session lines.

/// One input of an interactive session.
#[derive(Clone, Debug)]
pub enum Line {
    /// `print("<token>")`.
    Print,
    /// `"<token>"`: the REPL prints the value.
    Expr,
    /// `error("<token>")`: the message goes to stderr.
    Error,
    /// A chunk over three lines printing the token twice.
    Multi,
    /// An assignment (no output).
    Assign,
    /// Endless: only sent where the VM has a default timeout (else sent as `Print`).
    Spin,
    /// Any bytes.
    Raw(Vec<u8>),
}

impl Line {
    /// The lines to send, and whether the token goes to stdout (true) or stderr.
    pub fn render(&self, token: &str) -> (Vec<u8>, Option<bool>) {
        match self {
            Line::Print => (format!("print(\"{token}\")\n").into_bytes(), Some(true)),
            Line::Expr => (format!("\"{token}\"\n").into_bytes(), Some(true)),
            Line::Error => (format!("error(\"{token}\")\n").into_bytes(), Some(false)),
            Line::Multi => (
                format!("for i = 1, 2 do\nprint(\"{token}\", i)\nend\n").into_bytes(),
                Some(true),
            ),
            Line::Assign => (b"fuzz_x = (fuzz_x or 0) + 1\n".to_vec(), None),
            Line::Spin => (
                format!("print(\"{token}\") while true do end\n").into_bytes(),
                Some(true),
            ),
            Line::Raw(b) => {
                let mut b: Vec<u8> = b.iter().copied().filter(|c| *c != b'\n').collect();
                b.push(b'\n');
                (b, None)
            }
        }
    }
}

pub fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => Just(Line::Print),
        2 => Just(Line::Expr),
        2 => Just(Line::Error),
        1 => Just(Line::Multi),
        1 => Just(Line::Assign),
        2 => Just(Line::Spin),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Line::Raw),
    ]
}
