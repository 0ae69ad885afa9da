//! Tokens of a filter expression. Whitespace is not a token but matters:
//! go-bexpr's connectives (`and`, `or`, `not`, `in`, `contains`) need it on
//! both sides, so the lexer records where it was.

use super::FilterError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    EqEq,
    NotEq,
}

/// The tokens of `s`, and for each token (and the end) whether whitespace
/// comes right before it: go-bexpr's connectives need it on both sides.
pub(super) fn lex(s: &str) -> Result<(Vec<Tok>, Vec<bool>), FilterError> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let mut spaced = Vec::new();
    let mut gap = false;
    while i < c.len() {
        let ch = c[i];
        // Every other character starts a token, which its arm lexes whole.
        let blank = matches!(ch, ' ' | '\t' | '\r' | '\n');
        if !blank {
            spaced.push(gap);
        }
        gap = blank;
        match ch {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1
            }
            '=' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::EqEq);
                i += 2
            }
            '!' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::NotEq);
                i += 2
            }
            '"' => {
                let (v, next) = quoted(&c, i)?;
                out.push(Tok::Str(v));
                i = next;
            }
            '`' => {
                let rest: String = c[i + 1..].iter().collect();
                let end = rest
                    .find('`')
                    .ok_or_else(|| FilterError::Parse("Unterminated string literal".into()))?;
                out.push(Tok::Str(rest[..end].to_string()));
                i += 1 + rest[..end].chars().count() + 1;
            }
            '-' | '0'..='9' => {
                let mut j = i + 1;
                while j < c.len() && (c[j].is_ascii_digit() || c[j] == '.') {
                    j += 1;
                }
                out.push(Tok::Num(c[i..j].iter().collect()));
                i = j;
            }
            x if x.is_ascii_alphabetic() => {
                let mut j = i + 1;
                while j < c.len() && (c[j].is_ascii_alphanumeric() || c[j] == '_' || c[j] == '/') {
                    j += 1;
                }
                out.push(Tok::Ident(c[i..j].iter().collect()));
                i = j;
            }
            other => {
                return Err(FilterError::Parse(format!(
                    "unexpected character {other:?} at offset {i}"
                )));
            }
        }
    }
    spaced.push(gap);
    Ok((out, spaced))
}

/// A `"`-quoted string starting at `c[i]`, with Go's escapes: its value
/// and the index after the closing quote.
fn quoted(c: &[char], i: usize) -> Result<(String, usize), FilterError> {
    let mut j = i + 1;
    let mut v = String::new();
    loop {
        match c.get(j) {
            None => {
                return Err(FilterError::Parse("Unterminated string literal".into()));
            }
            Some('"') => break,
            Some('\\') => {
                let e = c
                    .get(j + 1)
                    .ok_or_else(|| FilterError::Parse("Unterminated string literal".into()))?;
                v.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    other => {
                        return Err(FilterError::Parse(format!(
                            "nomad-sim: unsupported escape \\{other} in string literal"
                        )));
                    }
                });
                j += 2;
                continue;
            }
            Some(x) => v.push(*x),
        }
        j += 1;
    }
    Ok((v, j + 1))
}
