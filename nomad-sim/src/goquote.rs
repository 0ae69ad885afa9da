//! Go's `%q`: the quoting of `strconv.Quote`.
//! Nomad and go-bexpr quote user input with `%q` in their error texts, and
//! the simulator answers with the same texts; a Rust `{:?}` differs for
//! control and non-printable characters (`\u{1b}` where Go writes `\x1b`)
//! and would make Rust's Debug format part of the wire.

use std::fmt::Write;

/// `strconv.Quote(s)`: `s` in double quotes with Go's escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_into(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// One rune as `appendEscapedRune` writes it (not ASCII-only, not
/// graphic-only).
fn escape_into(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if c < ' ' || c == '\x7f' => write!(out, "\\x{:02x}", c as u32).unwrap(),
        c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32).unwrap(),
        c => write!(out, "\\U{:08x}", c as u32).unwrap(),
    }
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols
/// and the ASCII space. Rust's Debug escaping leaves unescaped exactly the
/// characters outside Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs (space excepted),
/// the same set, so it is the oracle here. `str::escape_debug` escapes a
/// grapheme extender (a mark, printable for Go) only as the first
/// character, hence the leading 'a'.
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let n = 1 + c.encode_utf8(&mut buf[1..]).len();
    let probe = std::str::from_utf8(&buf[..n]).unwrap();
    probe.escape_debug().skip(1).eq([c])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected texts are what Go 1.26's `strconv.Quote` printed for the
    /// same inputs.
    #[test]
    fn quotes_as_go_strconv_quote() {
        for (input, go) in [
            ("", r#""""#),
            ("hello", r#""hello""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("it's", r#""it's""#),
            ("\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            ("\x00\x1b\x7f", r#""\x00\x1b\x7f""#),
            ("\u{85}", r#""\u0085""#),
            ("\u{a0}", r#""\u00a0""#),
            ("é", "\"é\""),
            ("e\u{301}", "\"e\u{301}\""),
            ("日本語", "\"日本語\""),
            ("\u{200b}", r#""\u200b""#),
            ("\u{2028}", r#""\u2028""#),
            ("\u{feff}", r#""\ufeff""#),
            ("\u{e000}", r#""\ue000""#),
            ("\u{378}", r#""\u0378""#),
            ("😀", "\"😀\""),
            ("\u{e0001}", r#""\U000e0001""#),
            ("\u{10ffff}", r#""\U0010ffff""#),
            ("\u{fffd}", "\"\u{fffd}\""),
            ("a b", r#""a b""#),
            ("\u{3000}", r#""\u3000""#),
            ("\u{ad}", r#""\u00ad""#),
        ] {
            assert_eq!(go_quote(input), go, "{input:?}");
        }
    }
}
