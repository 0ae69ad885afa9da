//! The grammar: `or` of `and` of `not` of primaries (a match, or a
//! parenthesized expression), as go-bexpr's `grammar.peg` has it;
//! unsupported forms are refused here, before anything is evaluated.

use super::lexer::{Tok, lex};
use super::{Expr, FilterError, Op};

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
        if self.value_first() {
            return self.value_match();
        }
        self.selector_match()
    }

    /// `Value in Selector` / `Value not in Selector`: the primary starts
    /// with a value (a string, a number, or a bare word followed by `in`).
    fn value_first(&mut self) -> bool {
        match self.peek() {
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
        }
    }

    /// `Value in Selector` / `Value not in Selector`.
    fn value_match(&mut self) -> Result<Expr, FilterError> {
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
        Ok(Expr::Match {
            selector,
            op,
            value: Some(value),
        })
    }

    /// `Selector Op Value`, `Selector is [not] empty`.
    fn selector_match(&mut self) -> Result<Expr, FilterError> {
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
