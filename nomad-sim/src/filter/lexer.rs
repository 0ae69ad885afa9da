//! Tokens of a filter expression. Whitespace is not a token but matters:
//! go-bexpr's connectives (`and`, `or`, `not`, `in`, `contains`) need it on
//! both sides, so the lexer records where it was.

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
    /// A string literal Go's `strconv.Unquote` refuses. Like `Other`, it
    /// is refused where the parser meets it: go-bexpr reports a bad string
    /// only where it tries to read one.
    BadStr(StrFault),
    /// A character no token starts with. The parser refuses it where it
    /// stands, so the error says what go-bexpr expected there.
    Other(char),
}

/// What is wrong with a string literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum StrFault {
    /// It runs to the end of the expression.
    Unterminated,
    /// An escape Go refuses, or a raw newline (`invalid syntax`).
    Invalid,
    /// An escape Go takes but nomad-sim does not decode (a byte >= 0x80).
    Unsupported(char),
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
}

pub(super) fn lex(s: &str) -> Lexed {
    let c: Vec<char> = s.chars().collect();
    // Byte offset of each character, and of the end.
    let offs: Vec<usize> = s.char_indices().map(|(b, _)| b).chain([s.len()]).collect();
    let mut l = Lexed {
        toks: Vec::new(),
        spaced: Vec::new(),
        starts: Vec::new(),
    };
    let mut i = 0;
    let mut gap = false;
    while i < c.len() {
        if matches!(c[i], ' ' | '\t' | '\r' | '\n') {
            gap = true;
            i += 1;
            continue;
        }
        // After a dot, digits are a selector part (`A.0`), not a number.
        let part = !gap && l.toks.last() == Some(&Tok::Dot) && c[i].is_ascii_digit();
        let (tok, next) = if part {
            let j = run(&c, i, |x| x.is_ascii_digit());
            (Tok::Num(c[i..j].iter().collect()), j)
        } else {
            token(&c, i)
        };
        l.toks.push(tok);
        l.spaced.push(gap);
        l.starts.push(offs[i]);
        gap = false;
        i = next;
    }
    l.spaced.push(gap);
    l.starts.push(s.len());
    l
}

/// The token starting at `c[i]` (not whitespace), and the index after it.
fn token(c: &[char], i: usize) -> (Tok, usize) {
    let two = c.get(i + 1) == Some(&'=');
    match c[i] {
        '(' => (Tok::LParen, i + 1),
        ')' => (Tok::RParen, i + 1),
        '[' => (Tok::LBracket, i + 1),
        ']' => (Tok::RBracket, i + 1),
        '.' => (Tok::Dot, i + 1),
        '=' if two => (Tok::EqEq, i + 2),
        '!' if two => (Tok::NotEq, i + 2),
        // go-bexpr's `'"' DoubleStringChar* '"'` (where `DoubleStringChar
        // <- !'"' .`, so a backslash does not escape the closing quote) and
        // `` '`' RawStringChar* '`' ``, then `strconv.Unquote`.
        q @ ('"' | '`') => match c[i + 1..].iter().position(|x| *x == q) {
            None => (Tok::BadStr(StrFault::Unterminated), c.len()),
            Some(len) => {
                let body = &c[i + 1..i + 1 + len];
                let tok = match q {
                    '"' => unquote(body).map_or_else(Tok::BadStr, Tok::Str),
                    // Unquote drops carriage returns from a raw string.
                    _ => Tok::Str(body.iter().filter(|x| **x != '\r').collect()),
                };
                (tok, i + len + 2)
            }
        },
        // The longest run that may be a number; the parser checks it
        // against go-bexpr's `NumberLiteral` where it takes a value.
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
        other => (Tok::Other(other), i + 1),
    }
}

/// The index after the run of characters from `c[i]` that `f` accepts.
fn run(c: &[char], i: usize, f: impl Fn(char) -> bool) -> usize {
    c[i..]
        .iter()
        .position(|x| !f(*x))
        .map_or(c.len(), |n| i + n)
}

/// The value of a double-quoted string's body, as `strconv.Unquote`
/// decodes it.
fn unquote(body: &[char]) -> Result<String, StrFault> {
    let mut v = String::new();
    let mut it = body.iter().copied();
    while let Some(ch) = it.next() {
        match ch {
            '\n' => return Err(StrFault::Invalid),
            '\\' => v.push(escape(&mut it)?),
            x => v.push(x),
        }
    }
    Ok(v)
}

/// One escape after its backslash (`unquoteChar`).
fn escape(it: &mut impl Iterator<Item = char>) -> Result<char, StrFault> {
    let e = it.next().ok_or(StrFault::Invalid)?;
    let mut digits = |n: usize, radix: u32| -> Result<u32, StrFault> {
        let mut x = 0;
        for _ in 0..n {
            let d = it.next().and_then(|d| d.to_digit(radix));
            x = x * radix + d.ok_or(StrFault::Invalid)?;
        }
        Ok(x)
    };
    let byte = |x: u32| match char::from_u32(x) {
        Some(ch) if ch.is_ascii() => Ok(ch),
        // A raw byte: Go keeps it, possibly as invalid UTF-8.
        _ => Err(StrFault::Unsupported(e)),
    };
    Ok(match e {
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        '\\' => '\\',
        'x' => byte(digits(2, 16)?)?,
        '0'..='7' => {
            let x = e.to_digit(8).unwrap() * 64 + digits(2, 8)?;
            if x > 255 {
                return Err(StrFault::Invalid);
            }
            byte(x)?
        }
        'u' => char::from_u32(digits(4, 16)?).ok_or(StrFault::Invalid)?,
        'U' => char::from_u32(digits(8, 16)?).ok_or(StrFault::Invalid)?,
        _ => return Err(StrFault::Invalid),
    })
}
