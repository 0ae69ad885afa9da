//! go-bexpr's grammar and evaluation, as `filter` follows them.

use super::*;
use serde_json::{Value, json};

fn node() -> Value {
    json!({"ID": "abc", "NodePool": "batch", "Status": "ready", "Drain": false,
           "SchedulingEligibility": "eligible", "CreateIndex": 7,
           "Meta": {"team": "a"}, "Attributes": {"unique.platform.aws.instance-id": "i-1"},
           "Links": null})
}

fn ev(s: &str) -> Result<bool, FilterError> {
    parse(s)?.eval(&node())
}

#[test]
fn basic_forms() {
    assert_eq!(ev(r#"NodePool == "batch""#), Ok(true));
    assert_eq!(ev(r#"NodePool != "batch""#), Ok(false));
    assert_eq!(ev(r#"Status == ready"#), Ok(true));
    assert_eq!(ev(r#"Meta["team"] == "a" and Status == "ready""#), Ok(true));
    assert_eq!(
        ev(r#"Meta.team == "b" or not (Status == "down")"#),
        Ok(true)
    );
    assert_eq!(ev(r#""team" in Meta"#), Ok(true));
    assert_eq!(ev(r#""x" not in Meta"#), Ok(true));
    assert_eq!(ev(r#"NodePool contains "atc""#), Ok(true));
    assert_eq!(ev(r#"Meta is not empty"#), Ok(true));
    assert_eq!(ev(r#"Links is empty"#), Ok(true));
    assert_eq!(ev(r#"CreateIndex == 7"#), Ok(true));
    assert_eq!(ev(r#"Drain == false"#), Ok(true));
    assert_eq!(
        ev(r#"Attributes["unique.platform.aws.instance-id"] == "i-1""#),
        Ok(true)
    );
}

/// go-bexpr >= v0.1.12 `NotPresentDisposition` (grammar/ast.go).
#[test]
fn missing_map_keys_are_not_errors() {
    assert_eq!(ev(r#"Meta["missing"] == "x""#), Ok(false));
    assert_eq!(ev(r#"Meta.missing == "x""#), Ok(false));
    assert_eq!(ev(r#"Meta["missing"] != "x""#), Ok(true));
    assert_eq!(ev(r#""x" in Meta["missing"]"#), Ok(false));
    assert_eq!(ev(r#""x" not in Meta["missing"]"#), Ok(true));
    assert_eq!(ev(r#"Meta["missing"] contains "x""#), Ok(false));
    assert_eq!(ev(r#"Meta["missing"] is empty"#), Ok(true));
    assert_eq!(ev(r#"Meta["missing"] is not empty"#), Ok(false));
    assert_eq!(ev(r#"not (Meta["missing"] == "x")"#), Ok(true));
    // A nil map (Links: null) is a map without keys.
    assert_eq!(ev(r#"Links["x"] == "y""#), Ok(false));
    assert_eq!(ev(r#"Links["x"] != "y""#), Ok(true));
}

/// go-bexpr `grammar/grammar.peg`: `OrExpression <- AndExpression _
/// "or" _ OrExpression / AndExpression`, `AndExpression` likewise with
/// "and", `NotExpression <- "not" _ NotExpression / ...`, where `_` is
/// `[ \t\r\n]+`: `and` binds tighter than `or`, a chain is right
/// associative, and a connective needs whitespace on both sides.
#[test]
fn connectives_follow_go_bexpr_grammar() {
    // batch or (x and down), not (batch or x) and down.
    assert_eq!(
        ev(r#"NodePool == "batch" or NodePool == "x" and Status == "down""#),
        Ok(true)
    );
    assert_eq!(
        ev(r#"(NodePool == "batch" or NodePool == "x") and Status == "down""#),
        Ok(false)
    );
    // The operator's batched sibling lists: one VM among many.
    let attr = "Attributes[\"unique.platform.aws.instance-id\"]";
    let chain = |ids: &[String]| {
        ids.iter()
            .map(|i| format!("{attr} == \"{i}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let mut ids: Vec<String> = (2..52).map(|i| format!("i-{i}")).collect();
    assert_eq!(ev(&chain(&ids)), Ok(false));
    ids.push("i-1".into());
    assert_eq!(ev(&chain(&ids)), Ok(true));
    ids.rotate_right(1);
    assert_eq!(ev(&chain(&ids)), Ok(true));
    // Any whitespace counts.
    assert_eq!(ev("NodePool == \"x\"\tor\nStatus == \"ready\""), Ok(true));
    assert_eq!(ev(r#"not  (Status == "down")"#), Ok(true));
    for unspaced in [
        r#"NodePool == "x"or Status == "ready""#,
        r#"NodePool == "x" or(Status == "ready")"#,
        r#"(NodePool == "x")or (Status == "ready")"#,
        r#"NodePool == "batch"and Status == "ready""#,
        r#"(NodePool == "batch") and(Status == "ready")"#,
        r#"not(Status == "down")"#,
    ] {
        assert!(
            matches!(ev(unspaced), Err(FilterError::Parse(_))),
            "{unspaced}: {:?}",
            ev(unspaced)
        );
    }
}

#[test]
fn errors_are_errors() {
    assert!(matches!(ev(r#"Nope == "x""#), Err(FilterError::Eval(_))));
    assert!(matches!(
        ev(r#"Name matches "x""#),
        Err(FilterError::Parse(_))
    ));
    assert!(matches!(ev(r#"NodePool =="#), Err(FilterError::Parse(_))));
    assert!(matches!(
        ev(r#"(NodePool == "a""#),
        Err(FilterError::Parse(_))
    ));
    assert!(matches!(ev(r#"Drain == maybe"#), Err(FilterError::Eval(_))));
    // short-circuit: the bad branch is never evaluated
    assert_eq!(
        ev(r#"Status == "down" and Meta["missing"] == "x""#),
        Ok(false)
    );
}
