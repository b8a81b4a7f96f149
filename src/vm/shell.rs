//! Quoting for a POSIX shell: every value that reaches a remote command line goes through
//! [`quote`], so spaces, quotes, `;`, `$()`, backquotes and newlines stay data.

/// `s` as one single-quoted POSIX shell word (`'` becomes `'\''`). The result means `s`
/// to `sh`, `bash`, `dash` and `zsh` whatever it holds; `None` for text with a NUL byte,
/// which no command line can carry.
pub fn quote(s: &str) -> Option<String> {
    if s.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn hostile_values_come_back_unchanged_through_sh() {
        for v in [
            "plain",
            "with space",
            "it's",
            "'",
            "''",
            "a;b",
            "$(touch /tmp/x)",
            "`id`",
            "line\nbreak",
            "back\\slash",
            "*",
            "~",
            "-e",
            "",
            "tab\there",
            "!bang",
            "\"dq\"",
        ] {
            let q = quote(v).unwrap();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {q}"))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), v, "{q}");
        }
        assert_eq!(quote("a\0b"), None);
    }
}
