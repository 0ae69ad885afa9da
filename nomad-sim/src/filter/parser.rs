//! The grammar: `or` of `and` of `not` of primaries (a match, or a
//! parenthesized expression), as go-bexpr's `grammar.peg` has it;
//! unsupported forms are refused here, before anything is evaluated.

use super::errors::{Expected, ParseError, Position};
use super::lexer::{StrFault, Tok, lex};
use super::{Expr, Op};

struct Parser<'a> {
    src: &'a str,
    t: Vec<Tok>,
    /// Whitespace right before token `i` (`t.len()`: at the end).
    spaced: Vec<bool>,
    /// Byte offset of token `i` (`t.len()`: the end).
    starts: Vec<usize>,
    p: usize,
}

impl Parser<'_> {
    /// Where token `i` starts (the end of the expression past the last).
    fn at(&self, i: usize) -> Position {
        Position::of(self.src, self.starts[i.min(self.t.len())])
    }

    /// pigeon's `no match found` at token `i`.
    fn no_match(&self, i: usize, expected: Expected) -> ParseError {
        ParseError::NoMatch {
            at: self.at(i),
            expected,
        }
    }

    /// Token `i` is preceded by whitespace (at the end: trailing
    /// whitespace).
    fn spaced_at(&self, i: usize) -> bool {
        self.spaced[i.min(self.t.len())]
    }

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

    fn or(&mut self) -> Result<Expr, ParseError> {
        let l = self.and()?;
        if self.connective("or") {
            self.p += 1;
            let r = self.or()?;
            return Ok(Expr::Or(Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let l = self.not()?;
        if self.connective("and") {
            self.p += 1;
            let r = self.and()?;
            return Ok(Expr::And(Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        // `"not" _ NotExpression`: `not(x)` is not a negation.
        if self.peek_ident(0, "not") && self.spaced[self.p + 1] {
            let save = self.p;
            self.p += 1;
            let negated = match self.not() {
                Ok(e) => e,
                Err(e) if e.is_rule() => return Err(e),
                Err(e) => {
                    // go-bexpr's next alternative: `not` as a word, as in
                    // `not in Meta` (is the key "not" in Meta).
                    self.p = save;
                    return self.primary().map_err(|other| e.or_other(other));
                }
            };
            return Ok(match negated {
                Expr::Not(inner) => *inner,
                other => Expr::Not(Box::new(other)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::LParen) {
            self.p += 1;
            let inside = self.p;
            let e = match self.or() {
                Ok(e) => e,
                Err(e) if e.is_rule() => return Err(e),
                Err(e) => {
                    // go-bexpr's third alternative, `"(" _? OrExpression _?
                    // !")"`: the longest expression that parses inside,
                    // and no ")" after it, is its rule's refusal.
                    self.p = inside;
                    if !self.longest() || self.peek() == Some(&Tok::RParen) {
                        return Err(e);
                    }
                    return Err(ParseError::UnmatchedParentheses {
                        at: self.at(self.p),
                    });
                }
            };
            if self.peek() != Some(&Tok::RParen) {
                return Err(ParseError::UnmatchedParentheses {
                    at: self.at(self.p),
                });
            }
            self.p += 1;
            return Ok(e);
        }
        if self.peek() == Some(&Tok::LBracket) {
            return Err(ParseError::InlineValueList);
        }
        if self.value_first() {
            return self.value_match();
        }
        self.selector_match()
    }

    /// Reads the longest expression that parses from here, backtracking at
    /// a connective whose right side fails, as a PEG parser does; false
    /// when not even one operand parses.
    fn longest(&mut self) -> bool {
        let start = self.p;
        if self.not().is_err() {
            self.p = start;
            return false;
        }
        loop {
            let before = self.p;
            if self.connective("and") || self.connective("or") {
                self.p += 1;
                if self.not().is_ok() {
                    continue;
                }
            }
            self.p = before;
            return true;
        }
    }

    /// `Value in Selector` / `Value not in Selector`: the primary starts
    /// with a value (a string, a number, or a bare word followed by `in`).
    fn value_first(&mut self) -> bool {
        match self.peek() {
            Some(Tok::Str(_) | Tok::BadStr(_) | Tok::Num(_)) => true,
            Some(Tok::Ident(_)) => {
                // A bare word followed by `in` / `not in` is a value.
                let save = self.p;
                let _ = self.selector();
                let r = self.spaced_at(self.p) && (self.peek_ident(0, "in") || self.not_in());
                self.p = save;
                r
            }
            _ => false,
        }
    }

    /// `Value in Selector` / `Value not in Selector`.
    fn value_match(&mut self) -> Result<Expr, ParseError> {
        let first = self.p;
        let value = self.value()?;
        let op = if self.peek_ident(0, "in") {
            self.p += 1;
            Op::In
        } else if self.not_in() {
            self.p += 2;
            Op::NotIn
        } else {
            return Err(self.value_without_in(first));
        };
        // `_ "in" _ Selector`, else the "match" rule's `Invalid selector`.
        self.whitespace()?;
        let selector = match self.peek() {
            Some(Tok::Ident(_)) => self.selector_path(),
            Some(Tok::Str(_)) => return Err(ParseError::JsonPointerSelector),
            _ => {
                return Err(ParseError::InvalidSelector {
                    at: self.at(self.p),
                });
            }
        }?;
        Ok(Expr::Match {
            selector,
            op,
            value: Some(value),
        })
    }

    /// `not in` next, with whitespace between the words.
    fn not_in(&self) -> bool {
        self.peek_ident(0, "not") && self.peek_ident(1, "in") && self.spaced_at(self.p + 1)
    }

    /// go-bexpr's refusal of a string literal met where it reads one.
    fn bad_string(&self, fault: StrFault) -> ParseError {
        match fault {
            StrFault::Unterminated => ParseError::UnterminatedString {
                at: Position::of(self.src, self.src.len()),
            },
            StrFault::Invalid => ParseError::InvalidString {
                at: self.at(self.p),
            },
            StrFault::Unsupported(escape) => ParseError::UnsupportedEscape { escape },
        }
    }

    /// A value (token `first` on) not followed by `in`: go-bexpr's
    /// expected list when whitespace follows it, or a JSON-pointer
    /// selector (`"/a/b" == 1`) when it was one.
    fn value_without_in(&self, first: usize) -> ParseError {
        let p = self.p;
        match (&self.t[first], self.spaced_at(p)) {
            (Tok::Str(s), _) if s.starts_with('/') => ParseError::JsonPointerSelector,
            (Tok::Str(_), false) => self.no_match(p, Expected::WHITESPACE),
            (_, true) if self.peek_ident(0, "not") && self.spaced_at(p + 1) => {
                self.no_match(p + 1, Expected::IN)
            }
            (_, true) if self.peek_ident(0, "not") => self.no_match(p + 1, Expected::WHITESPACE),
            (_, true) => self.no_match(p, Expected::IN_OR_NOT),
            // Not reached from `value_match` (a number glued to what
            // follows is already `number`'s refusal); kept as the
            // simulator's own wording rather than a guess.
            (_, false) => ParseError::ValueWithoutIn,
        }
    }

    /// Whitespace before the next token, as go-bexpr's `_` after a keyword
    /// asks.
    fn whitespace(&self) -> Result<(), ParseError> {
        if self.spaced_at(self.p) {
            Ok(())
        } else {
            Err(self.no_match(self.p, Expected::WHITESPACE))
        }
    }

    /// What go-bexpr expects right after the selector just read when no
    /// whitespace follows: more of the selector or `==` / `!=`.
    fn after_selector(&self) -> Expected {
        match self.t.get(self.p.wrapping_sub(1)) {
            Some(Tok::RBracket) => Expected::AFTER_INDEX,
            Some(Tok::Num(_)) => Expected::AFTER_NUMERIC_PART,
            _ => Expected::AFTER_IDENTIFIER,
        }
    }

    /// `Selector Op Value`, `Selector is [not] empty`.
    fn selector_match(&mut self) -> Result<Expr, ParseError> {
        let selector = self.selector()?;
        let m = |op, value| Expr::Match {
            selector: selector.clone(),
            op,
            value,
        };
        // Only `==` and `!=` may follow a selector without whitespace.
        if !self.spaced_at(self.p) && !matches!(self.peek(), Some(Tok::EqEq | Tok::NotEq)) {
            return Err(self.no_match(self.p, self.after_selector()));
        }
        let word = match self.peek() {
            Some(Tok::EqEq) => {
                self.p += 1;
                return Ok(m(Op::Eq, Some(self.value()?)));
            }
            Some(Tok::NotEq) => {
                self.p += 1;
                return Ok(m(Op::Ne, Some(self.value()?)));
            }
            Some(Tok::Ident(w)) => w.clone(),
            _ => String::new(),
        };
        match word.as_str() {
            "contains" => {
                self.p += 1;
                self.whitespace()?;
                Ok(m(Op::In, Some(self.value()?)))
            }
            "is" => {
                self.p += 1;
                self.whitespace()?;
                if self.peek_ident(0, "empty") {
                    self.p += 1;
                    return Ok(m(Op::IsEmpty, None));
                }
                if !self.peek_ident(0, "not") {
                    return Err(self.no_match(self.p, Expected::AFTER_IS));
                }
                self.p += 1;
                self.whitespace()?;
                if !self.peek_ident(0, "empty") {
                    return Err(self.no_match(self.p, Expected::AFTER_IS_NOT));
                }
                self.p += 1;
                Ok(m(Op::IsNotEmpty, None))
            }
            "not" => {
                self.p += 1;
                self.whitespace()?;
                if self.peek_ident(0, "matches") {
                    return Err(ParseError::NotMatches);
                }
                if !self.peek_ident(0, "contains") {
                    return Err(self.no_match(self.p, Expected::AFTER_NOT));
                }
                self.p += 1;
                self.whitespace()?;
                Ok(m(Op::NotIn, Some(self.value()?)))
            }
            "matches" => Err(ParseError::Matches),
            _ => Err(self.no_match(self.p, Expected::OPERATOR)),
        }
    }

    /// The selector a match starts with.
    fn selector(&mut self) -> Result<Vec<String>, ParseError> {
        match self.peek() {
            Some(Tok::Ident(_)) => self.selector_path(),
            Some(Tok::Str(_)) => Err(ParseError::JsonPointerSelector),
            _ => Err(self.expected_expression()),
        }
    }

    /// A primary starts with what cannot start one: what go-bexpr expected
    /// there depends on what came before (the start, `(`, `or`, `and` or
    /// `not`, the only places a primary starts).
    fn expected_expression(&self) -> ParseError {
        let expected = match self.p.checked_sub(1).map(|i| &self.t[i]) {
            Some(Tok::Ident(w)) if w == "and" => Expected::AND_OPERAND,
            Some(Tok::Ident(w)) if w == "not" => Expected::NOT_OPERAND,
            _ => Expected::EXPRESSION,
        };
        self.no_match(self.p, expected)
    }

    /// A number taking a value's place, checked as go-bexpr's
    /// `NumberLiteral` (`-? (0 / [1-9][0-9]*) (. [0-9]+)?`, then
    /// whitespace, `)` or the end).
    fn number(&mut self, text: &str) -> Result<String, ParseError> {
        let i = self.p;
        let start = self.starts[i];
        let b = text.as_bytes();
        let mut m = usize::from(b.first() == Some(&b'-'));
        let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        match b.get(m) {
            Some(b'0') => m += 1,
            Some(b'1'..=b'9') => m += digits(m),
            _ => {
                return Err(ParseError::NoMatch {
                    at: Position::of(self.src, start + m),
                    expected: Expected::DIGIT,
                });
            }
        }
        if b.get(m) == Some(&b'.') && digits(m + 1) > 0 {
            m += 1 + digits(m + 1);
        }
        let glued = i + 1 < self.t.len() && !self.spaced[i + 1] && self.t[i + 1] != Tok::RParen;
        if m < b.len() || glued {
            return Err(ParseError::InvalidNumber {
                at: Position::of(self.src, start + m),
            });
        }
        self.p += 1;
        Ok(text.to_string())
    }

    /// A selector from its first identifier on: `A.b`, `A.0`, `A["k"]`.
    /// Any word is an identifier here, `and` or `in` included, as in
    /// go-bexpr's grammar.
    fn selector_path(&mut self) -> Result<Vec<String>, ParseError> {
        let mut path = match self.next() {
            Some(Tok::Ident(w)) => vec![w],
            _ => unreachable!("selector_path starts at an identifier"),
        };
        // Parts follow without whitespace (`SelectorOrIndex*`).
        while !self.spaced_at(self.p) {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.p += 1;
                    match self.t.get(self.p).filter(|_| !self.spaced_at(self.p)) {
                        Some(Tok::Ident(w)) => path.push(w.clone()),
                        Some(Tok::Num(w)) if w.bytes().all(|b| b.is_ascii_digit()) => {
                            path.push(w.clone())
                        }
                        _ => {
                            // Right after the dot, whitespace or not.
                            let after_dot = self.starts[self.p - 1] + 1;
                            return Err(ParseError::NoMatch {
                                at: Position::of(self.src, after_dot),
                                expected: Expected::AFTER_DOT,
                            });
                        }
                    }
                    self.p += 1;
                }
                Some(Tok::LBracket) => {
                    self.p += 1;
                    let k = match self.peek().cloned() {
                        Some(Tok::Str(k)) => k,
                        Some(Tok::BadStr(fault)) => return Err(self.bad_string(fault)),
                        _ => {
                            return Err(ParseError::InvalidIndex {
                                at: self.at(self.p),
                            });
                        }
                    };
                    self.p += 1;
                    if self.peek() != Some(&Tok::RBracket) {
                        return Err(ParseError::UnclosedIndex {
                            at: self.at(self.p),
                        });
                    }
                    self.p += 1;
                    path.push(k);
                }
                _ => break,
            }
        }
        Ok(path)
    }

    fn value(&mut self) -> Result<String, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.p += 1;
                Ok(s)
            }
            Some(Tok::Num(n)) => self.number(&n),
            Some(Tok::BadStr(fault)) => Err(self.bad_string(fault)),
            // go-bexpr accepts a bare selector as a value and uses its text.
            Some(Tok::Ident(_)) => Ok(self.selector_path()?.join(".")),
            _ => Err(self.no_match(self.p, Expected::VALUE)),
        }
    }

    /// Input left after a whole expression: what go-bexpr expected there.
    fn trailing(&self) -> ParseError {
        let p = self.p;
        let connective = self.peek_ident(0, "and") || self.peek_ident(0, "or");
        if self.spaced_at(p) && connective {
            // `_ "and" _`: the connective lacks whitespace after it.
            return self.no_match(p + 1, Expected::WHITESPACE);
        }
        if self.spaced_at(p) {
            return self.no_match(p, Expected::CONNECTIVE);
        }
        match &self.t[p - 1] {
            Tok::Str(_) | Tok::RParen => self.no_match(p, Expected::END),
            _ => ParseError::TrailingInput { token: p },
        }
    }
}

/// Parses a go-bexpr expression.
pub(super) fn parse(s: &str) -> Result<Expr, ParseError> {
    let l = lex(s);
    let mut p = Parser {
        src: s,
        t: l.toks,
        spaced: l.spaced,
        starts: l.starts,
        p: 0,
    };
    if p.t.is_empty() {
        return Err(p.no_match(0, Expected::EXPRESSION));
    }
    let e = p.or()?;
    if p.p != p.t.len() {
        return Err(p.trailing());
    }
    Ok(e)
}
