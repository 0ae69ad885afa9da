//! Evaluation against the JSON of one Node or Allocation: selectors
//! resolved through structs and Go maps, values coerced to the field's
//! type, and a missing map key handled as go-bexpr's
//! `NotPresentDisposition` does. Separate from parsing because this is
//! where Nomad's struct layout (which objects are maps) comes in.

use std::collections::HashSet;

use serde_json::Value;

use super::{Expr, FilterError, Op};
use crate::goquote::go_quote;

/// Why a filter could not be evaluated against one object, worded as
/// go-bexpr's evaluation errors (with Go's `%q` quoting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A selector part names no field of a struct (pointerstructure's
    /// error behind go-bexpr's).
    #[error(
        "error finding value in datum: {pointer} at part {part}: couldn't find struct field with name {}",
        go_quote(.name)
    )]
    NoSuchField {
        pointer: String,
        part: usize,
        name: String,
    },
    #[error(
        "error finding value in datum: {pointer} at part {part}: invalid slice index {}",
        go_quote(.index)
    )]
    InvalidSliceIndex {
        pointer: String,
        part: usize,
        index: String,
    },
    #[error("error finding value in datum: {pointer} at part {part}: index out of range")]
    IndexOutOfRange { pointer: String, part: usize },
    /// A selector goes on past a value that has no parts.
    #[error("error finding value in datum: {pointer} at part {part}: invalid value kind")]
    InvalidValueKind { pointer: String, part: usize },
    /// The match value does not convert to the field's type (`parse`:
    /// the `strconv` function that refused it).
    #[error(
        "error getting match value in expression: strconv.{parse}: parsing {}: invalid syntax",
        go_quote(.raw)
    )]
    MatchValue { parse: &'static str, raw: String },
    #[error("unable to find suitable primitive comparison function for matching")]
    NoComparison,
    #[error(
        "Cannot perform in/contains operations on type {kind} for selector: {}",
        go_quote(.selector)
    )]
    InOnKind {
        kind: &'static str,
        selector: String,
    },
    #[error(
        "nomad-sim: \"is empty\" is not defined for a {kind} selector {}",
        go_quote(.selector)
    )]
    EmptyOnKind {
        kind: &'static str,
        selector: String,
    },
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

fn resolve<'a>(v: &'a Value, path: &[String]) -> Result<Resolved<'a>, EvalError> {
    // The pointer only names a selector in an error: built per node and
    // part it was most of the simulator's CPU in a filtered node list of
    // 20,000 nodes (BENCHMARKS.md, eighteenth pass).
    let ptr = || format!("/{}", path.join("/"));
    let mut cur = v;
    let mut is_map = false;
    for (i, part) in path.iter().enumerate() {
        match cur {
            Value::Object(m) => match m.get(part) {
                Some(x) => {
                    // A key of a map is never a map field itself.
                    is_map = !is_map && MAP_FIELDS.contains(&part.as_str());
                    cur = x;
                }
                None if is_map => return Ok(Resolved::NotPresent),
                None => {
                    return Err(EvalError::NoSuchField {
                        pointer: ptr(),
                        part: i,
                        name: part.clone(),
                    });
                }
            },
            Value::Array(a) => {
                let idx: usize = part.parse().map_err(|_| EvalError::InvalidSliceIndex {
                    pointer: ptr(),
                    part: i,
                    index: part.clone(),
                })?;
                cur = a.get(idx).ok_or_else(|| EvalError::IndexOutOfRange {
                    pointer: ptr(),
                    part: i,
                })?;
                is_map = false;
            }
            // A nil Go map: every key is missing.
            Value::Null if is_map => return Ok(Resolved::NotPresent),
            _ => {
                return Err(EvalError::InvalidValueKind {
                    pointer: ptr(),
                    part: i,
                });
            }
        }
    }
    Ok(Resolved::Found(cur, is_map))
}

fn coerce_bool(s: &str) -> Result<bool, EvalError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(refused("ParseBool", s)),
    }
}

fn refused(parse: &'static str, raw: &str) -> EvalError {
    EvalError::MatchValue {
        parse,
        raw: raw.to_string(),
    }
}

fn equal(v: &Value, raw: &str) -> Result<bool, EvalError> {
    match v {
        Value::String(s) => Ok(s == raw),
        Value::Bool(b) => Ok(*b == coerce_bool(raw)?),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                raw.parse::<u64>().map(|x| x == u).or_else(|_| {
                    raw.parse::<i64>()
                        .map(|x| x >= 0 && x as u64 == u)
                        .map_err(|_| refused("ParseUint", raw))
                })
            } else if let Some(i) = n.as_i64() {
                raw.parse::<i64>()
                    .map(|x| x == i)
                    .map_err(|_| refused("ParseInt", raw))
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                raw.parse::<f64>()
                    .map(|x| x == f)
                    .map_err(|_| refused("ParseFloat", raw))
            }
        }
        _ => Err(EvalError::NoComparison),
    }
}

fn eval_match(
    v: &Value,
    selector: &[String],
    op: &Op,
    value: Option<&str>,
) -> Result<bool, EvalError> {
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
                    return Err(EvalError::InOnKind {
                        kind: kind(found),
                        selector: selector.join("."),
                    });
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
                    return Err(EvalError::EmptyOnKind {
                        kind: kind(found),
                        selector: selector.join("."),
                    });
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
            } => eval_match(v, selector, op, value.as_deref()).map_err(FilterError::Eval),
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

/// An expression readied for many objects. The operator reads the nodes of
/// up to 50 VMs in one list, `A["k"] == "v1" or A["k"] == "v2" or ...`:
/// term by term that is 50 lookups per node of the cluster, so such an
/// `or` of `==` on one selector becomes one lookup and a set test. Same
/// answers and errors as `Expr::eval`: every term resolves the same
/// selector, so a missing map key fails them all (`==` is false), and
/// anything but a string value (coercion, an error) goes term by term.
#[derive(Debug)]
pub struct Prepared {
    expr: Expr,
    any_of: Option<(Vec<String>, HashSet<String>)>,
}

impl Prepared {
    pub fn new(expr: Expr) -> Prepared {
        let mut terms = Vec::new();
        let any_of = or_terms(&expr, &mut terms).then(|| {
            let selector = terms.first().map(|(s, _)| s.to_vec()).unwrap_or_default();
            let same = terms.iter().all(|(s, _)| *s == selector.as_slice());
            let values = terms.iter().map(|(_, v)| v.to_string()).collect();
            same.then_some((selector, values))
        });
        Prepared {
            any_of: any_of.flatten(),
            expr,
        }
    }

    /// The key and the values when the expression is such a set test on
    /// one key of map field `field` (`field["k"] == "a" or ...`): a caller
    /// holding that map can answer without building the object's JSON (a
    /// missing key is no match, a present one is a string).
    pub fn key_in_set(&self, field: &str) -> Option<(&str, &HashSet<String>)> {
        match &self.any_of {
            Some((selector, values)) if selector.len() == 2 && selector[0] == field => {
                Some((selector[1].as_str(), values))
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn is_set_test(&self) -> bool {
        self.any_of.is_some()
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn eval(&self, v: &Value) -> Result<bool, FilterError> {
        if let Some((selector, values)) = &self.any_of {
            match resolve(v, selector) {
                Ok(Resolved::NotPresent) => return Ok(false),
                Ok(Resolved::Found(Value::String(s), _)) => return Ok(values.contains(s)),
                _ => {}
            }
        }
        self.expr.eval(v)
    }
}

/// Collects the `Sel == "v"` terms of an `or` chain; false when the
/// expression is anything else.
fn or_terms<'a>(e: &'a Expr, out: &mut Vec<(&'a [String], &'a str)>) -> bool {
    match e {
        Expr::Or(l, r) => or_terms(l, out) && or_terms(r, out),
        Expr::Match {
            selector,
            op: Op::Eq,
            value: Some(v),
        } => {
            out.push((selector, v));
            true
        }
        _ => false,
    }
}
