//! The benchmarks' own small harness, shared by `vm.rs`, `sessions.rs` and `process.rs`:
//! paired timing of the library against its anchor, statistics, a gate that waits for a
//! quiet machine, and the result table (text and Markdown).

#[allow(dead_code)]
pub mod libvm;
#[allow(dead_code)]
pub mod manager;

use bioxen_vm::ffi::bioxen_vm_last_error_message;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Other processes' CPU share above which the machine counts as busy.
pub const BUSY_SHARE: f64 = 0.20;

/// Longest wait for a quiet machine before a section.
pub const MAX_QUIET_WAIT: Duration = Duration::from_secs(30);

pub fn last_error() -> String {
    let p = bioxen_vm_last_error_message();
    if p.is_null() {
        return "(no message)".into();
    }
    // SAFETY: the library returns a NUL-terminated string valid until this thread's next call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: f64,
    pub p99: f64,
}

pub fn stats(mut v: Vec<f64>) -> Stats {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
    Stats {
        median,
        p99: v[rank - 1],
    }
}

pub fn median(v: &[f64]) -> f64 {
    stats(v.to_vec()).median
}

/// Nanoseconds per operation over one batch.
#[inline(never)]
pub fn time_batch<F: FnMut()>(f: &mut F, batch: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        f();
    }
    t.elapsed().as_nanos() as f64 / batch as f64
}

pub struct Plan {
    pub warmup: usize,
    pub samples: usize,
    pub batch: usize,
}

/// Warms up both sides, then takes `samples` batches of each, alternating (and flipping
/// which goes first on every sample). Returns per-operation statistics for `a` and `b`.
pub fn paired<A: FnMut(), B: FnMut()>(p: &Plan, mut a: A, mut b: B) -> (Stats, Stats) {
    for _ in 0..p.warmup {
        a();
        b();
    }
    let mut sa = Vec::with_capacity(p.samples);
    let mut sb = Vec::with_capacity(p.samples);
    for i in 0..p.samples {
        if i % 2 == 0 {
            sa.push(time_batch(&mut a, p.batch));
            sb.push(time_batch(&mut b, p.batch));
        } else {
            sb.push(time_batch(&mut b, p.batch));
            sa.push(time_batch(&mut a, p.batch));
        }
    }
    (stats(sa), stats(sb))
}

/// As [`paired`] with three sides; the order rotates on every sample.
pub fn paired3<A: FnMut(), B: FnMut(), C: FnMut()>(
    p: &Plan,
    mut a: A,
    mut b: B,
    mut c: C,
) -> (Stats, Stats, Stats) {
    for _ in 0..p.warmup {
        a();
        b();
        c();
    }
    let mut s = [
        Vec::with_capacity(p.samples),
        Vec::with_capacity(p.samples),
        Vec::with_capacity(p.samples),
    ];
    for i in 0..p.samples {
        for k in 0..3 {
            let side = (i + k) % 3;
            let t = match side {
                0 => time_batch(&mut a, p.batch),
                1 => time_batch(&mut b, p.batch),
                _ => time_batch(&mut c, p.batch),
            };
            s[side].push(t);
        }
    }
    let [x, y, z] = s;
    (stats(x), stats(y), stats(z))
}

#[derive(Clone, Copy)]
pub struct CpuSnap {
    pub busy: u64,
    pub total: u64,
    pub own: u64,
}

pub fn cpu_snap() -> CpuSnap {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let idle = f[3] + f[4];
    let total: u64 = f.iter().take(8).sum();
    let me = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &me[me.rfind(')').expect("comm") + 1..];
    let g: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse::<u64>().unwrap_or(0))
        .sum();
    CpuSnap {
        busy: total - idle,
        total,
        own: g, // utime + stime + cutime + cstime
    }
}

/// Share of the whole machine's CPU (all cores) that other processes used between a and b.
pub fn other_share(a: CpuSnap, b: CpuSnap) -> f64 {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return 0.0;
    }
    let busy = b.busy.saturating_sub(a.busy);
    let own = b.own.saturating_sub(a.own);
    busy.saturating_sub(own) as f64 / total as f64
}

pub struct Gate {
    pub checked: bool,
    pub waited: Duration,
    pub quiet: bool,
}

/// Waits until other processes used at most `BUSY_SHARE` of the CPU over 1 s, for at
/// most `MAX_QUIET_WAIT`.
pub fn wait_quiet() -> Gate {
    let start = Instant::now();
    loop {
        let a = cpu_snap();
        std::thread::sleep(Duration::from_secs(1));
        let share = other_share(a, cpu_snap());
        if share <= BUSY_SHARE {
            return Gate {
                checked: true,
                waited: start.elapsed().saturating_sub(Duration::from_secs(1)),
                quiet: true,
            };
        }
        if start.elapsed() >= MAX_QUIET_WAIT {
            return Gate {
                checked: true,
                waited: start.elapsed(),
                quiet: false,
            };
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub enum Met {
    Yes,
    No,
    Info,
}

pub struct Row {
    pub op: String,
    pub lib: String,
    pub anchor: String,
    pub ratio: String,
    pub target: String,
    pub met: Met,
    pub other: String,
}

pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

pub fn fmt_stats(s: Stats) -> String {
    format!("{} (p99 {})", fmt_ns(s.median), fmt_ns(s.p99))
}

pub fn other_text(share: f64, gate: &Gate) -> String {
    let mut s = format!("{:.1}%", share * 100.0);
    if !gate.checked {
        s += " (not checked before)";
    } else if !gate.quiet {
        let _ = write!(
            s,
            " (busy before: gave up after {} s)",
            gate.waited.as_secs()
        );
    } else if gate.waited >= Duration::from_secs(1) {
        let _ = write!(s, " (waited {} s)", gate.waited.as_secs());
    }
    s
}

pub const HEADERS: [&str; 7] = [
    "operation",
    "bioxen_vm",
    "raw mlua anchor",
    "ratio",
    "target",
    "met?",
    "other CPU",
];

pub fn cells(r: &Row) -> [String; 7] {
    let met = match r.met {
        Met::Yes => "yes",
        Met::No => "NO",
        Met::Info => "n/a",
    };
    [
        r.op.clone(),
        r.lib.clone(),
        r.anchor.clone(),
        r.ratio.clone(),
        r.target.clone(),
        met.to_string(),
        r.other.clone(),
    ]
}

/// The plain-text table with the given column names.
pub fn text_table_with(headers: &[&str; 7], rows: &[Row]) -> String {
    let all: Vec<[String; 7]> = rows.iter().map(cells).collect();
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for c in &all {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::new();
        for (i, x) in c.iter().enumerate() {
            let pad = w[i] - x.chars().count();
            let _ = write!(
                s,
                "{}{x}{}",
                if i == 0 { "" } else { " | " },
                " ".repeat(pad)
            );
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&headers.map(String::from));
    out += &(w
        .iter()
        .map(|n| "-".repeat(*n))
        .collect::<Vec<_>>()
        .join("-|-")
        + "\n");
    for c in &all {
        out += &line(c);
    }
    out
}

/// The Markdown table with the given column names.
pub fn markdown_table_with(headers: &[&str; 7], rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out += "|---|---:|---:|---:|---|---|---:|\n";
    for r in rows {
        let c = cells(r).map(|s| s.replace('|', "\\|"));
        out += &format!("| {} |\n", c.join(" | "));
    }
    out
}

pub struct Ctx {
    pub quick: bool,
}

impl Ctx {
    pub fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

pub type Section = fn(&Ctx) -> (Vec<Row>, String);

pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Exits with a usage message when `--only` names no section.
fn check_only(only: Option<&str>, sections: &[(&str, Section)]) {
    if let Some(o) = only {
        if !sections.iter().any(|(n, _)| *n == o) {
            let names: Vec<&str> = sections.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown section {o:?}; sections: {}", names.join(", "));
            std::process::exit(2);
        }
    }
}

/// What running the sections gave.
pub struct SectionsRun {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Highest share of the machine other processes used during a section.
    pub max_other: f64,
    /// Sections that started although the machine never became quiet.
    pub gave_up: usize,
}

impl SectionsRun {
    /// "sections started on a busy machine" as the table heads say it.
    pub fn busy_text(&self, no_wait: bool) -> String {
        if no_wait {
            "not checked (--no-wait)".to_string()
        } else {
            self.gave_up.to_string()
        }
    }
}

/// Runs the sections (all, or the one `only` names), each after waiting for a quiet
/// machine unless `no_wait`, and records how busy the machine was while each ran.
pub fn run_sections(
    cx: &Ctx,
    sections: &[(&str, Section)],
    only: Option<&str>,
    no_wait: bool,
) -> SectionsRun {
    let mut run = SectionsRun {
        rows: Vec::new(),
        notes: Vec::new(),
        max_other: 0.0,
        gave_up: 0,
    };
    for (name, f) in sections {
        if only.is_some_and(|o| o != *name) {
            continue;
        }
        eprintln!("[{name}] waiting for a quiet machine (load {})", loadavg());
        let gate = if no_wait {
            Gate {
                checked: false,
                waited: Duration::ZERO,
                quiet: false,
            }
        } else {
            wait_quiet()
        };
        eprintln!("[{name}] running");
        let a = cpu_snap();
        let (section_rows, note) = f(cx);
        let share = other_share(a, cpu_snap());
        run.max_other = run.max_other.max(share);
        if gate.checked && !gate.quiet {
            run.gave_up += 1;
        }
        for mut row in section_rows {
            row.other = other_text(share, &gate);
            run.rows.push(row);
        }
        run.notes.push(note);
    }
    run
}

/// Prints the head, the table and the foot (with one line per note), and writes them as
/// Markdown to `markdown` when given.
pub fn report(
    head: &str,
    mut foot: String,
    run: &SectionsRun,
    headers: &[&str; 7],
    markdown: Option<&str>,
) {
    for n in &run.notes {
        let _ = writeln!(foot, "- {n}");
    }
    println!("{head}\n{}\n{foot}", text_table_with(headers, &run.rows));
    if let Some(path) = markdown {
        let md = format!(
            "{}\n{}\n{}",
            head.lines().map(|l| format!("{l}  \n")).collect::<String>(),
            markdown_table_with(headers, &run.rows),
            foot
        );
        if let Err(e) = std::fs::write(path, md) {
            eprintln!("could not write {path}: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints a usage message and exits with status 2.
pub fn usage_exit(message: &str) -> ! {
    eprintln!("{message}; use --markdown <path>, --quick, --only <section>, --no-wait");
    std::process::exit(2);
}

/// The command-line options every bench takes.
pub struct Opts {
    pub markdown: Option<String>,
    pub only: Option<String>,
    pub quick: bool,
    pub no_wait: bool,
}

/// Parses the common options; any other argument goes to `child` with the arguments from
/// it on (a bench's child-process modes, which never return). What `child` returns for is
/// a usage error. `--only` is checked against `sections`.
pub fn parse_opts(sections: &[(&str, Section)], child: impl Fn(&[String])) -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        markdown: None,
        only: None,
        quick: false,
        no_wait: false,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--bench" => {}
            "--quick" => o.quick = true,
            "--no-wait" => o.no_wait = true,
            "--markdown" | "--only" if i + 1 < args.len() => {
                let v = args[i + 1].clone();
                if args[i] == "--markdown" {
                    o.markdown = Some(v);
                } else {
                    o.only = Some(v);
                }
                i += 1;
            }
            other => {
                child(&args[i..]);
                usage_exit(&format!("unknown or incomplete argument {other:?}"))
            }
        }
        i += 1;
    }
    check_only(o.only.as_deref(), sections);
    o
}

#[allow(dead_code)]
pub fn ratio(lib: Stats, anchor: Stats) -> String {
    let r = anchor.median / lib.median;
    if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

#[allow(dead_code)]
pub fn row(op: &str, lib: Stats, anchor_label: &str, anchor: Stats, target_ns: Option<f64>) -> Row {
    Row {
        op: op.into(),
        lib: fmt_stats(lib),
        anchor: format!("{anchor_label}{}", fmt_stats(anchor)),
        ratio: ratio(lib, anchor),
        target: match target_ns {
            Some(t) => format!("≤ {}", fmt_ns(t)),
            None => "– (reported)".into(),
        },
        met: match target_ns {
            Some(t) if lib.median <= t => Met::Yes,
            Some(_) => Met::No,
            None => Met::Info,
        },
        other: String::new(),
    }
}

/// A bench's whole `main`: parses the options, runs the sections, and reports under a head
/// naming `what` (e.g. "package-environment") and `setting` (what the anchors run on).
#[allow(dead_code)]
pub fn bench_main(sections: &[(&str, Section)], what: &str, setting: &str, headers: &[&str; 7]) {
    let Opts {
        markdown,
        only,
        quick,
        no_wait,
    } = parse_opts(sections, |_| {});
    let cx = Ctx { quick };
    let started = utc_now();
    let wall = Instant::now();
    let run = run_sections(&cx, sections, only.as_deref(), no_wait);
    let mut head = String::new();
    let _ = writeln!(
        head,
        "bioxen_vm {what} benchmarks ({}) — {started}, {}; {setting}",
        if quick { "QUICK run" } else { "full run" },
        cpu_model(),
    );
    let _ = writeln!(
        head,
        "highest other-process CPU share in a section: {:.1}% of the machine; sections started on a busy machine: {}; run took {:.0} s",
        run.max_other * 100.0,
        run.busy_text(no_wait),
        wall.elapsed().as_secs_f64()
    );
    report(&head, String::new(), &run, headers, markdown.as_deref());
}
