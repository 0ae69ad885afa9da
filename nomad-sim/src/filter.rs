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
//!
//! The rooms follow the pipeline: `lexer`, `parser`, `eval`; `errors`
//! holds the parse errors, worded as go-bexpr's.

mod errors;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

pub use errors::{Expected, ParseError, Position};
pub use eval::{EvalError, Prepared};

/// Parses a go-bexpr expression.
pub fn parse(s: &str) -> Result<Expr, FilterError> {
    parser::parse(s).map_err(FilterError::Parse)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// The expression does not parse (or uses unsupported syntax).
    #[error(transparent)]
    Parse(ParseError),
    /// Evaluation against one object failed.
    #[error(transparent)]
    Eval(EvalError),
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
