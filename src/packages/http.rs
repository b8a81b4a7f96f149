//! A minimal HTTP/1.0 GET for `http://` rocks servers (their manifests, and the health
//! check's reachability test). `https://` servers are left to luarocks itself.

use super::error::{PResult, PkgError};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest body read.
const MAX_BODY: usize = 64 << 20;

/// GETs `url` (http only), following up to 3 redirects. `Ok(None)` for a 404.
pub fn get(url: &str, timeout: Duration) -> PResult<Option<Vec<u8>>> {
    let mut url = url.to_string();
    for _ in 0..4 {
        match get_once(&url, timeout)? {
            Reply::Body(b) => return Ok(Some(b)),
            Reply::NotFound => return Ok(None),
            Reply::Redirect(to) if to.starts_with("http://") => url = to,
            Reply::Redirect(to) => {
                return Err(PkgError::new(
                    crate::status::bioxen_vm_status::PackageError,
                    "server_unreachable",
                    format!("{url} redirects to {to}, which is not an http:// URL"),
                ))
            }
        }
    }
    Err(unreachable_err(&url, "too many redirects"))
}

enum Reply {
    Body(Vec<u8>),
    NotFound,
    Redirect(String),
}

fn unreachable_err(url: &str, why: &str) -> PkgError {
    PkgError::new(
        crate::status::bioxen_vm_status::PackageError,
        "server_unreachable",
        format!("cannot fetch {url}: {why}"),
    )
    .with("url", url)
}

fn get_once(url: &str, timeout: Duration) -> PResult<Reply> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| unreachable_err(url, "not an http:// URL"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') && !hostport.ends_with(']') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| unreachable_err(url, &e.to_string()))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut s = stream.ok_or_else(|| unreachable_err(url, &last))?;
    let io = |e: std::io::Error| unreachable_err(url, &e.to_string());
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let host = hostport.split(':').next().unwrap_or(hostport);
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: bioxen_vm\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut data = Vec::new();
    s.take(MAX_BODY as u64 + 65536)
        .read_to_end(&mut data)
        .map_err(io)?;
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| unreachable_err(url, "no HTTP response"))?;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let body = data[end + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| unreachable_err(url, "a malformed status line"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    match status {
        200 => Ok(Reply::Body(body)),
        404 | 410 => Ok(Reply::NotFound),
        301 | 302 | 303 | 307 | 308 => {
            let loc = header("location")
                .ok_or_else(|| unreachable_err(url, "a redirect without Location"))?;
            let to = if loc.starts_with('/') {
                format!("http://{hostport}{loc}")
            } else {
                loc
            };
            Ok(Reply::Redirect(to))
        }
        other => Err(unreachable_err(url, &format!("HTTP status {other}"))),
    }
}
