//! Tokens of a filter expression. Whitespace is not a token but matters:
//! go-bexpr's connectives (`and`, `or`, `not`, `in`, `contains`) need it on
//! both sides, so the lexer records where it was.

use super::errors::{ParseError, Position};

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

/// The tokens of an expression, with what the parser needs to say where
/// it stopped as go-bexpr does.
pub(super) struct Lexed {
    pub toks: Vec<Tok>,
    /// For each token, and at `toks.len()` for the end: whether whitespace
    /// comes right before it (go-bexpr's connectives need it on both
    /// sides).
    pub spaced: Vec<bool>,
    /// For each token, and at `toks.len()` for the end: its byte offset.
    pub starts: Vec<usize>,
    /// For each token: the byte offset right after it.
    pub ends: Vec<usize>,
}

pub(super) fn lex(s: &str) -> Result<Lexed, ParseError> {
    let c: Vec<char> = s.chars().collect();
    // Byte offset of each character, and of the end.
    let offs: Vec<usize> = s.char_indices().map(|(b, _)| b).chain([s.len()]).collect();
    let mut l = Lexed {
        toks: Vec::new(),
        spaced: Vec::new(),
        starts: Vec::new(),
        ends: Vec::new(),
    };
    let mut i = 0;
    let mut gap = false;
    while i < c.len() {
        if matches!(c[i], ' ' | '\t' | '\r' | '\n') {
            gap = true;
            i += 1;
            continue;
        }
        let (tok, next) = token(&c, i).map_err(|e| match e {
            LexFail::Unterminated => ParseError::UnterminatedString {
                at: Position::of(s, s.len()),
            },
            LexFail::Escape(escape) => ParseError::UnsupportedEscape { escape },
            LexFail::Unexpected => ParseError::UnexpectedCharacter {
                ch: c[i],
                offset: offs[i],
            },
        })?;
        l.toks.push(tok);
        l.spaced.push(gap);
        l.starts.push(offs[i]);
        l.ends.push(offs[next]);
        gap = false;
        i = next;
    }
    l.spaced.push(gap);
    l.starts.push(s.len());
    Ok(l)
}

/// Why no token could be read.
enum LexFail {
    /// A string literal runs to the end of the expression.
    Unterminated,
    /// A backslash escape nomad-sim does not decode.
    Escape(char),
    /// No token starts with this character.
    Unexpected,
}

/// The token starting at `c[i]` (not whitespace), and the index after it.
fn token(c: &[char], i: usize) -> Result<(Tok, usize), LexFail> {
    let two = c.get(i + 1) == Some(&'=');
    Ok(match c[i] {
        '(' => (Tok::LParen, i + 1),
        ')' => (Tok::RParen, i + 1),
        '[' => (Tok::LBracket, i + 1),
        ']' => (Tok::RBracket, i + 1),
        '.' => (Tok::Dot, i + 1),
        '=' if two => (Tok::EqEq, i + 2),
        '!' if two => (Tok::NotEq, i + 2),
        '"' => {
            let (v, next) = quoted(c, i)?;
            (Tok::Str(v), next)
        }
        '`' => {
            let len = c[i + 1..]
                .iter()
                .position(|x| *x == '`')
                .ok_or(LexFail::Unterminated)?;
            let v = c[i + 1..i + 1 + len].iter().collect();
            (Tok::Str(v), i + 1 + len + 1)
        }
        '-' | '0'..='9' => {
            let j = run(c, i + 1, |x| x.is_ascii_digit() || x == '.');
            (Tok::Num(c[i..j].iter().collect()), j)
        }
        x if x.is_ascii_alphabetic() => {
            let j = run(c, i + 1, |x| {
                x.is_ascii_alphanumeric() || x == '_' || x == '/'
            });
            (Tok::Ident(c[i..j].iter().collect()), j)
        }
        _ => return Err(LexFail::Unexpected),
    })
}

/// The index after the run of characters from `c[i]` that `f` accepts.
fn run(c: &[char], i: usize, f: impl Fn(char) -> bool) -> usize {
    c[i..]
        .iter()
        .position(|x| !f(*x))
        .map_or(c.len(), |n| i + n)
}

/// A `"`-quoted string starting at `c[i]`, with Go's escapes: its value
/// and the index after the closing quote.
fn quoted(c: &[char], i: usize) -> Result<(String, usize), LexFail> {
    let mut j = i + 1;
    let mut v = String::new();
    loop {
        match c.get(j) {
            None => return Err(LexFail::Unterminated),
            Some('"') => break,
            Some('\\') => {
                let e = c.get(j + 1).ok_or(LexFail::Unterminated)?;
                v.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    other => {
                        return Err(LexFail::Escape(*other));
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
