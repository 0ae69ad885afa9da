//! A subset of go-bexpr (the `filter` query parameter), parsed and evaluated
//! against the JSON encoding of a full Node or Allocation.
//!
//! Supported, with go-bexpr's semantics (hashicorp/go-bexpr `grammar.peg`,
//! `evaluate.go`):
//! * `Sel == V`, `Sel != V`, `V in Sel`, `V not in Sel`, `Sel contains V`,
//!   `Sel not contains V`, `Sel is empty`, `Sel is not empty`;
//! * `and`, `or`, `not`, parentheses;
//! * selectors `A.B`, `A["k"]`, `A.k`; values: `"string"`, `` `raw` ``,
//!   numbers, and bare words (taken literally, as go-bexpr does).
//!
//! Evaluation follows go-bexpr on Nomad's structs: the value is coerced to
//! the field's type (bool, integer); an unknown field is an evaluation error
//! ("error finding value in datum"), which Nomad turns into a 400. A missing
//! map key is not an error since go-bexpr v0.1.12 (Nomad >= 1.6 vendors it;
//! 1.11.1 has v0.1.15): the operator's `NotPresentDisposition` decides
//! (`==`, `in`, `contains`, `is not empty` false; `!=`, `not in`,
//! `not contains`, `is empty` true), as hashicorp/nomad#16758 asked. `matches`, JSON-pointer
//! selectors, inline value lists and `all`/`any` are not supported and are
//! rejected with a 400 instead of being guessed at.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// The expression does not parse (or uses unsupported syntax).
    #[error("{0}")]
    Parse(String),
    /// Evaluation against one object failed.
    #[error("{0}")]
    Eval(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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
fn lex(s: &str) -> Result<(Vec<Tok>, Vec<bool>), FilterError> {
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
                let mut j = i + 1;
                let mut v = String::new();
                loop {
                    match c.get(j) {
                        None => {
                            return Err(FilterError::Parse("Unterminated string literal".into()));
                        }
                        Some('"') => break,
                        Some('\\') => {
                            let e = c.get(j + 1).ok_or_else(|| {
                                FilterError::Parse("Unterminated string literal".into())
                            })?;
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
                out.push(Tok::Str(v));
                i = j + 1;
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

struct Parser {
    t: Vec<Tok>,
    /// Whitespace right before token `i` (`t.len()`: at the end).
    spaced: Vec<bool>,
    p: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.p)
    }
    fn peek_ident(&self, off: usize, word: &str) -> bool {
        matches!(self.t.get(self.p + off), Some(Tok::Ident(w)) if w == word)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.t.get(self.p).cloned();
        self.p += 1;
        t
    }

    /// The connective `word` next, with whitespace on both sides as
    /// go-bexpr's grammar asks (`_ "or" _`, `_ "and" _`): without it
    /// (`"a"or b`, `(x)and(y)`) the expression does not parse.
    fn connective(&self, word: &str) -> bool {
        self.peek_ident(0, word) && self.spaced[self.p] && self.spaced[self.p + 1]
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let l = self.and()?;
        if self.connective("or") {
            self.p += 1;
            let r = self.or()?;
            return Ok(Expr::Or(Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let l = self.not()?;
        if self.connective("and") {
            self.p += 1;
            let r = self.and()?;
            return Ok(Expr::And(Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        // `"not" _ NotExpression`: `not(x)` is not a negation.
        if self.peek_ident(0, "not") && self.spaced[self.p + 1] {
            self.p += 1;
            let e = self.not()?;
            return Ok(match e {
                Expr::Not(inner) => *inner,
                other => Expr::Not(Box::new(other)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::LParen) {
            self.p += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err(FilterError::Parse("Unmatched parentheses".into()));
            }
            return Ok(e);
        }
        if self.peek() == Some(&Tok::LBracket) {
            return Err(FilterError::Parse(
                "nomad-sim: inline value lists are not supported".into(),
            ));
        }
        // `Value in Selector` / `Value not in Selector`
        let value_first = match self.peek() {
            Some(Tok::Str(_)) | Some(Tok::Num(_)) => true,
            Some(Tok::Ident(_)) => {
                // A bare word followed by `in` / `not in` is a value.
                let save = self.p;
                let _ = self.selector();
                let r = self.peek_ident(0, "in")
                    || (self.peek_ident(0, "not") && self.peek_ident(1, "in"));
                self.p = save;
                r
            }
            _ => false,
        };
        if value_first {
            let value = self.value()?;
            let op = if self.peek_ident(0, "in") {
                self.p += 1;
                Op::In
            } else if self.peek_ident(0, "not") && self.peek_ident(1, "in") {
                self.p += 2;
                Op::NotIn
            } else {
                return Err(FilterError::Parse(
                    "a value must be followed by \"in\" or \"not in\"".into(),
                ));
            };
            let selector = self.selector()?;
            return Ok(Expr::Match {
                selector,
                op,
                value: Some(value),
            });
        }
        let selector = self.selector()?;
        match self.next() {
            Some(Tok::EqEq) => Ok(Expr::Match {
                selector,
                op: Op::Eq,
                value: Some(self.value()?),
            }),
            Some(Tok::NotEq) => Ok(Expr::Match {
                selector,
                op: Op::Ne,
                value: Some(self.value()?),
            }),
            Some(Tok::Ident(w)) if w == "contains" => Ok(Expr::Match {
                selector,
                op: Op::In,
                value: Some(self.value()?),
            }),
            Some(Tok::Ident(w)) if w == "is" => {
                if self.peek_ident(0, "empty") {
                    self.p += 1;
                    Ok(Expr::Match {
                        selector,
                        op: Op::IsEmpty,
                        value: None,
                    })
                } else if self.peek_ident(0, "not") && self.peek_ident(1, "empty") {
                    self.p += 2;
                    Ok(Expr::Match {
                        selector,
                        op: Op::IsNotEmpty,
                        value: None,
                    })
                } else {
                    Err(FilterError::Parse(
                        "expected \"empty\" or \"not empty\" after \"is\"".into(),
                    ))
                }
            }
            Some(Tok::Ident(w)) if w == "not" => {
                if self.peek_ident(0, "contains") {
                    self.p += 1;
                    Ok(Expr::Match {
                        selector,
                        op: Op::NotIn,
                        value: Some(self.value()?),
                    })
                } else if self.peek_ident(0, "matches") {
                    Err(FilterError::Parse(
                        "nomad-sim: the \"not matches\" operator is not supported".into(),
                    ))
                } else {
                    Err(FilterError::Parse(
                        "unexpected \"not\" after selector".into(),
                    ))
                }
            }
            Some(Tok::Ident(w)) if w == "matches" => Err(FilterError::Parse(
                "nomad-sim: the \"matches\" operator is not supported".into(),
            )),
            Some(t) => Err(FilterError::Parse(format!(
                "unexpected token {t:?} after selector"
            ))),
            None => Err(FilterError::Parse(
                "expected an operator after the selector".into(),
            )),
        }
    }

    fn selector(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = match self.next() {
            Some(Tok::Ident(w)) if !matches!(w.as_str(), "and" | "or" | "not" | "in") => vec![w],
            Some(Tok::Str(_)) => {
                return Err(FilterError::Parse(
                    "nomad-sim: JSON-pointer selectors are not supported".into(),
                ));
            }
            other => {
                return Err(FilterError::Parse(format!(
                    "expected a selector, got {other:?}"
                )));
            }
        };
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.p += 1;
                    match self.next() {
                        Some(Tok::Ident(w)) => path.push(w),
                        Some(Tok::Num(n)) => path.push(n),
                        _ => return Err(FilterError::Parse("Invalid selector".into())),
                    }
                }
                Some(Tok::LBracket) => {
                    self.p += 1;
                    let k = match self.next() {
                        Some(Tok::Str(s)) => s,
                        _ => return Err(FilterError::Parse("Invalid index".into())),
                    };
                    if self.next() != Some(Tok::RBracket) {
                        return Err(FilterError::Parse("Unclosed index expression".into()));
                    }
                    path.push(k);
                }
                _ => break,
            }
        }
        Ok(path)
    }

    fn value(&mut self) -> Result<String, FilterError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.p += 1;
                Ok(s)
            }
            Some(Tok::Num(n)) => {
                self.p += 1;
                Ok(n)
            }
            Some(Tok::Ident(_)) => {
                // go-bexpr accepts a bare selector as a value and uses its text.
                let sel = self.selector()?;
                Ok(sel.join("."))
            }
            other => Err(FilterError::Parse(format!(
                "expected a value, got {other:?}"
            ))),
        }
    }
}

/// Parses a go-bexpr expression.
pub fn parse(s: &str) -> Result<Expr, FilterError> {
    let (toks, spaced) = lex(s)?;
    if toks.is_empty() {
        return Err(FilterError::Parse("empty filter expression".into()));
    }
    let mut p = Parser {
        t: toks,
        spaced,
        p: 0,
    };
    let e = p.or()?;
    if p.p != p.t.len() {
        return Err(FilterError::Parse(format!(
            "unexpected trailing input at token {}",
            p.p
        )));
    }
    Ok(e)
}

/// Fields that are Go maps (key lookups, `in` tests keys); everything else
/// that is a JSON object is a struct.
const MAP_FIELDS: &[&str] = &[
    "Attributes",
    "Meta",
    "Links",
    "Drivers",
    "HostVolumes",
    "HostNetworks",
    "CSIControllerPlugins",
    "CSINodePlugins",
    "TaskStates",
    "Details",
    "Config",
];

/// What a selector resolved to.
enum Resolved<'a> {
    Found(&'a Value, bool /* is map */),
    /// A key missing from a map (go-bexpr `evaluateNotPresent`).
    NotPresent,
}

fn resolve<'a>(v: &'a Value, path: &[String]) -> Result<Resolved<'a>, FilterError> {
    let mut cur = v;
    let mut is_map = false;
    for (i, part) in path.iter().enumerate() {
        let ptr = format!("/{}", path.join("/"));
        match cur {
            Value::Object(m) => match m.get(part) {
                Some(x) => {
                    is_map = MAP_FIELDS.contains(&part.as_str()) && !is_map;
                    cur = x;
                }
                None if is_map => return Ok(Resolved::NotPresent),
                None => {
                    let why = if is_map {
                        format!("couldn't find key {part:?}")
                    } else {
                        format!("couldn't find struct field with name {part:?}")
                    };
                    return Err(FilterError::Eval(format!(
                        "error finding value in datum: {ptr} at part {i}: {why}"
                    )));
                }
            },
            Value::Array(a) => {
                let idx: usize = part.parse().map_err(|_| {
                    FilterError::Eval(format!(
                        "error finding value in datum: {ptr} at part {i}: invalid slice index {part:?}"
                    ))
                })?;
                cur = a.get(idx).ok_or_else(|| {
                    FilterError::Eval(format!(
                        "error finding value in datum: {ptr} at part {i}: index out of range"
                    ))
                })?;
                is_map = false;
            }
            // A nil Go map: every key is missing.
            Value::Null if is_map => return Ok(Resolved::NotPresent),
            _ => {
                return Err(FilterError::Eval(format!(
                    "error finding value in datum: {ptr} at part {i}: invalid value kind"
                )));
            }
        }
    }
    Ok(Resolved::Found(cur, is_map))
}

fn coerce_bool(s: &str) -> Result<bool, FilterError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(FilterError::Eval(format!(
            "error getting match value in expression: strconv.ParseBool: parsing {s:?}: invalid syntax"
        ))),
    }
}

fn equal(v: &Value, raw: &str) -> Result<bool, FilterError> {
    match v {
        Value::String(s) => Ok(s == raw),
        Value::Bool(b) => Ok(*b == coerce_bool(raw)?),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                raw.parse::<u64>().map(|x| x == u).or_else(|_| {
                    raw.parse::<i64>().map(|x| x >= 0 && x as u64 == u).map_err(|_| {
                        FilterError::Eval(format!(
                            "error getting match value in expression: strconv.ParseUint: parsing {raw:?}: invalid syntax"
                        ))
                    })
                })
            } else if let Some(i) = n.as_i64() {
                raw.parse::<i64>().map(|x| x == i).map_err(|_| {
                    FilterError::Eval(format!(
                        "error getting match value in expression: strconv.ParseInt: parsing {raw:?}: invalid syntax"
                    ))
                })
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                raw.parse::<f64>().map(|x| x == f).map_err(|_| {
                    FilterError::Eval(format!(
                        "error getting match value in expression: strconv.ParseFloat: parsing {raw:?}: invalid syntax"
                    ))
                })
            }
        }
        _ => Err(FilterError::Eval(
            "unable to find suitable primitive comparison function for matching".into(),
        )),
    }
}

fn eval_match(
    v: &Value,
    selector: &[String],
    op: &Op,
    value: Option<&str>,
) -> Result<bool, FilterError> {
    let (found, is_map) = match resolve(v, selector)? {
        Resolved::Found(f, m) => (f, m),
        Resolved::NotPresent => {
            return Ok(matches!(op, Op::Ne | Op::NotIn | Op::IsEmpty));
        }
    };
    let raw = value.unwrap_or("");
    match op {
        Op::Eq => equal(found, raw),
        Op::Ne => equal(found, raw).map(|b| !b),
        Op::In | Op::NotIn => {
            let r = match found {
                Value::Object(m) if is_map => m.contains_key(raw),
                Value::Null if is_map => false,
                Value::Null => false,
                Value::Array(a) => {
                    let mut hit = false;
                    for item in a {
                        if equal(item, raw).unwrap_or(false) {
                            hit = true;
                            break;
                        }
                    }
                    hit
                }
                Value::String(s) => s.contains(raw),
                _ => {
                    return Err(FilterError::Eval(format!(
                        "Cannot perform in/contains operations on type {} for selector: {:?}",
                        kind(found),
                        selector.join(".")
                    )));
                }
            };
            Ok(if *op == Op::In { r } else { !r })
        }
        Op::IsEmpty | Op::IsNotEmpty => {
            let empty = match found {
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(m) if is_map => m.is_empty(),
                Value::Null => true,
                _ => {
                    return Err(FilterError::Eval(format!(
                        "nomad-sim: \"is empty\" is not defined for a {} selector {:?}",
                        kind(found),
                        selector.join(".")
                    )));
                }
            };
            Ok(if *op == Op::IsEmpty { empty } else { !empty })
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "ptr",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "struct",
    }
}

impl Expr {
    /// Evaluates against the JSON of one object. `and`/`or` short-circuit
    /// like go-bexpr, so an error in a branch that is not evaluated does not
    /// surface.
    pub fn eval(&self, v: &Value) -> Result<bool, FilterError> {
        match self {
            Expr::And(l, r) => Ok(l.eval(v)? && r.eval(v)?),
            Expr::Or(l, r) => Ok(l.eval(v)? || r.eval(v)?),
            Expr::Not(e) => Ok(!e.eval(v)?),
            Expr::Match {
                selector,
                op,
                value,
            } => eval_match(v, selector, op, value.as_deref()),
        }
    }

    /// Adds to `out` the keys of map field `field` the expression reads, and
    /// says whether single keys are all it reads of it (`Meta["a"]`,
    /// `Meta.a`); false when it reads the whole map (`"a" in Meta`, `Meta
    /// is empty`). Lets a caller build a map of thousands of nodes' keys
    /// without copying every key of each.
    pub fn map_keys(&self, field: &str, out: &mut Vec<String>) -> bool {
        match self {
            Expr::And(l, r) | Expr::Or(l, r) => {
                let left = l.map_keys(field, out);
                r.map_keys(field, out) && left
            }
            Expr::Not(e) => e.map_keys(field, out),
            Expr::Match { selector, .. } if selector[0] == field => match selector.get(1) {
                Some(k) => {
                    // Once each: a batch ORs the same key for many values.
                    if !out.contains(k) {
                        out.push(k.clone());
                    }
                    true
                }
                None => false,
            },
            Expr::Match { .. } => true,
        }
    }

    /// Top-level field names the expression reads (to build only those).
    pub fn fields(&self, out: &mut Vec<String>) {
        match self {
            Expr::And(l, r) | Expr::Or(l, r) => {
                l.fields(out);
                r.fields(out);
            }
            Expr::Not(e) => e.fields(out),
            Expr::Match { selector, .. } => {
                if !out.contains(&selector[0]) {
                    out.push(selector[0].clone());
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
