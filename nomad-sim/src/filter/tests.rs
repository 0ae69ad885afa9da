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

fn parse_text(s: &str) -> String {
    match parse(s) {
        Err(FilterError::Parse(e)) => e.to_string(),
        other => panic!("{s}: {other:?}"),
    }
}

/// Each text is what go-bexpr v0.1.15 (the version Nomad 1.11 vendors)
/// returned from `CreateEvaluator` for the same expression, so that a 400
/// reads as Nomad's.
#[test]
fn parse_errors_are_go_bexprs() {
    let op = r#""!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]"#;
    let value = r#""-", "0", "\"", "`", [ \t\r\n], [1-9] or [a-zA-Z]"#;
    for (expr, go) in [
        ("Status bar", format!("1:8 (7): no match found, expected: {op}")),
        ("Status ", format!("1:8 (7): no match found, expected: {op}")),
        ("Status\n bar", format!("2:2 (8): no match found, expected: {op}")),
        (r#"Meta["a" ] ) "#, format!("1:12 (11): no match found, expected: {op}")),
        (
            "Status)",
            r#"1:7 (6): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_/]"#.into(),
        ),
        (
            "not(Status == a)",
            r#"1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_/]"#.into(),
        ),
        (
            r#"Meta["a"]"x""#,
            r#"1:10 (9): no match found, expected: "!=", ".", "==", "[" or [ \t\r\n]"#.into(),
        ),
        (
            "Status not bar",
            r#"1:12 (11): no match found, expected: "contains", "in", "matches" or [ \t\r\n]"#.into(),
        ),
        ("Status not)", r"1:11 (10): no match found, expected: [ \t\r\n]".into()),
        (
            "Status is x",
            r#"1:11 (10): no match found, expected: "empty", "not" or [ \t\r\n]"#.into(),
        ),
        (
            "Status is not x",
            r#"1:15 (14): no match found, expected: "empty" or [ \t\r\n]"#.into(),
        ),
        ("NodePool ==", format!("1:12 (11): no match found, expected: {value}")),
        ("NodePool == )", format!("1:13 (12): no match found, expected: {value}")),
        (
            "NodePool not contains )",
            format!("1:23 (22): no match found, expected: {value}"),
        ),
        ("NodePool contains)", r"1:18 (17): no match found, expected: [ \t\r\n]".into()),
        (
            r#"Status == "a")"#,
            r"1:14 (13): no match found, expected: [ \t\r\n] or EOF".into(),
        ),
        (
            "(Status == a) b",
            r#"1:15 (14): no match found, expected: "and", "or", [ \t\r\n] or EOF"#.into(),
        ),
        (
            r#"Meta["é"] == 1 x"#,
            r#"1:16 (16): no match found, expected: "and", "or", [ \t\r\n] or EOF"#.into(),
        ),
        ("Status == a and", r"1:16 (15): no match found, expected: [ \t\r\n]".into()),
        ("Status == a.", "1:13 (12): no match found, expected: [0-9] or [a-zA-Z]".into()),
        (
            r#""a" == x"#,
            r#"1:5 (4): no match found, expected: "in", "not" or [ \t\r\n]"#.into(),
        ),
        (r#""a"==x"#, r"1:4 (3): no match found, expected: [ \t\r\n]".into()),
        (
            r#""a" not x"#,
            r#"1:9 (8): no match found, expected: "in" or [ \t\r\n]"#.into(),
        ),
        ("Status in", r"1:10 (9): no match found, expected: [ \t\r\n]".into()),
        (
            "   ",
            r#"1:4 (3): no match found, expected: "(", "-", "0", "\"", "`", "all", "any", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#.into(),
        ),
        ("(foo == 4", r#"1:10 (9): rule "grouping": Unmatched parentheses"#.into()),
        ("(foo == 4 x", r#"1:11 (10): rule "grouping": Unmatched parentheses"#.into()),
        (
            r#"foo == "12x"#,
            r#"1:12 (11): rule "string": Unterminated string literal"#.into(),
        ),
        (
            "foo == `12x",
            r#"1:12 (11): rule "string": Unterminated string literal"#.into(),
        ),
        ("foo[3] == abc", r#"1:5 (4): rule "index": Invalid index"#.into()),
        (
            r#"x in foo["abc""#,
            r#"1:15 (14): rule "index": Unclosed index expression"#.into(),
        ),
        (
            r#"foo["abc" == 3"#,
            r#"1:11 (10): rule "index": Unclosed index expression"#.into(),
        ),
        ("x in 32", r#"1:6 (5): rule "match": Invalid selector"#.into()),
        (r#""a" in )"#, r#"1:8 (7): rule "match": Invalid selector"#.into()),
    ] {
        assert_eq!(parse_text(expr), go, "{expr}");
    }
}

/// Words go-bexpr takes as identifiers wherever a selector or value may
/// stand, connectives included.
#[test]
fn keywords_are_identifiers_where_go_bexpr_allows_them() {
    for expr in [
        "NodePool == and",
        "Status in and",
        "and == 1",
        "x in Meta.or",
    ] {
        assert!(parse(expr).is_ok(), "{expr}: {:?}", parse(expr));
    }
}

/// A character no token starts with, a primary that cannot start, a
/// number go-bexpr's grammar refuses: go-bexpr v0.1.15's texts, as above.
#[test]
fn unknown_characters_missing_operands_and_bad_numbers_are_go_bexprs() {
    let and = r#""(", "-", "0", "\"", "`", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#;
    let connective = r#""and", "or", [ \t\r\n] or EOF"#;
    for (expr, go) in [
        (
            r#"Status == "a" $"#,
            format!("1:15 (14): no match found, expected: {connective}"),
        ),
        (
            "Status == \"é\" \u{200b}",
            format!("1:15 (15): no match found, expected: {connective}"),
        ),
        (
            ") == 1",
            r#"1:1 (0): no match found, expected: "(", "-", "0", "\"", "`", "all", "any", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#.into(),
        ),
        (
            "not not )",
            r#"1:9 (8): no match found, expected: "!=", "(", "-", "0", "==", "\"", "`", "contains", "in", "is", "matches", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#.into(),
        ),
        ("a == 1 and ==", format!("1:12 (11): no match found, expected: {and}")),
        ("a == 1 and ", format!("1:12 (11): no match found, expected: {and}")),
        ("Status == 1.", r#"1:12 (11): rule "number": Invalid number literal"#.into()),
        ("Status == 01", r#"1:12 (11): rule "number": Invalid number literal"#.into()),
        ("Status == 3]", r#"1:12 (11): rule "number": Invalid number literal"#.into()),
        ("32==32", r#"1:3 (2): rule "number": Invalid number literal"#.into()),
        ("- == 1", r#"1:2 (1): no match found, expected: "0" or [1-9]"#.into()),
    ] {
        assert_eq!(parse_text(expr), go, "{expr}");
    }
    for ok in [
        "x in Meta.0",
        "Meta.0.b == 1",
        "(CreateIndex == 7)",
        "-1 in Meta",
    ] {
        assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
    }
}

/// Evaluation errors quote user input as go-bexpr's `%q` does (Rust's
/// Debug would write `\u{1b}` for the escape character).
#[test]
fn eval_errors_quote_as_go() {
    let text = |s: &str| match ev(s) {
        Err(FilterError::Eval(e)) => e.to_string(),
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(
        text("Drain == \"\u{1b}\""),
        r#"error getting match value in expression: strconv.ParseBool: parsing "\x1b": invalid syntax"#
    );
    assert_eq!(
        text(r#"Nope == "x""#),
        r#"error finding value in datum: /Nope at part 0: couldn't find struct field with name "Nope""#
    );
    assert_eq!(
        text(r#"CreateIndex == "7x""#),
        r#"error getting match value in expression: strconv.ParseUint: parsing "7x": invalid syntax"#
    );
    assert_eq!(
        text(r#""x" in CreateIndex"#),
        r#"Cannot perform in/contains operations on type int for selector: "CreateIndex""#
    );
}

/// Where go-bexpr's PEG parser backtracks (`not` as a word, the longest
/// expression inside parentheses), where whitespace ends a selector, and
/// string literals as `strconv.Unquote` reads them: go-bexpr v0.1.15's
/// texts and verdicts.
#[test]
fn backtracking_selectors_and_strings_are_go_bexprs() {
    let op = r#""!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]"#;
    for (expr, go) in [
        (
            "not in 1",
            r#"1:8 (7): rule "match": Invalid selector"#.to_string(),
        ),
        (
            "(a == 1 or b ==)",
            r#"1:9 (8): rule "grouping": Unmatched parentheses"#.into(),
        ),
        (
            "(a == 1 and )",
            r#"1:9 (8): rule "grouping": Unmatched parentheses"#.into(),
        ),
        (
            "Meta .a == 1",
            format!("1:6 (5): no match found, expected: {op}"),
        ),
        (
            r#"Meta ["a"] == 1"#,
            format!("1:6 (5): no match found, expected: {op}"),
        ),
        (
            "A.0in Status",
            r#"1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [0-9]"#.into(),
        ),
        (
            r#"Status "un"#,
            format!("1:8 (7): no match found, expected: {op}"),
        ),
        (
            r#"Status == "a" "un"#,
            r#"1:15 (14): no match found, expected: "and", "or", [ \t\r\n] or EOF"#.into(),
        ),
        (
            r#"Status == "a\"b""#,
            r#"1:11 (10): rule "string": invalid syntax"#.into(),
        ),
        (
            r#"Status == "a\'""#,
            r#"1:11 (10): rule "string": invalid syntax"#.into(),
        ),
        (
            r#"Status == "a\q""#,
            r#"1:11 (10): rule "string": invalid syntax"#.into(),
        ),
        (
            "Status == \"a\nb\"",
            r#"1:11 (10): rule "string": invalid syntax"#.into(),
        ),
        (
            r#"Status == "a\"#,
            r#"1:14 (13): rule "string": Unterminated string literal"#.into(),
        ),
    ] {
        assert_eq!(parse_text(expr), go, "{expr:?}");
    }
    for ok in [
        "not in Meta",
        r#"Status == "a\x41\101\u00e9\tb""#,
        r#"Meta[ "a" ] == 1"#,
        "not not Status == a",
    ] {
        assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok));
    }
    // The escapes decode as Go's do.
    assert_eq!(
        ev(r#"Meta["team"] == "\x61""#),
        Ok(true),
        r#""\x61" is "a""#
    );
}

/// `Prepared` (an `or` of `==` on one selector read as a set test) answers
/// exactly what the term-by-term evaluation answers, errors included.
#[test]
fn prepared_answers_as_term_by_term() {
    let data = [
        node(),
        json!({"Attributes": {"unique.platform.aws.instance-id": "i-3"}, "Meta": null}),
        json!({"Attributes": {"other": "i-1"}, "Meta": {"n": 5}}),
        json!({"Attributes": null, "Meta": {"team": "b"}}),
        json!({"Attributes": {"unique.platform.aws.instance-id": 5}}),
        json!({"Attributes": {"unique.platform.aws.instance-id": true}}),
        json!({"Attributes": {"unique.platform.aws.instance-id": ["i-1"]}}),
        json!({"Meta": {"team": "a"}}),
    ];
    let attr = r#"Attributes["unique.platform.aws.instance-id"]"#;
    let filters = [
        format!(r#"{attr} == "i-1""#),
        format!(r#"{attr} == "i-9" or {attr} == "i-3" or {attr} == "i-1""#),
        format!(r#"{attr} == "5" or {attr} == "true""#),
        format!(r#"{attr} == "i-9" or {attr} != "i-3""#),
        format!(r#"{attr} == "i-9" or Meta.team == "b""#),
        r#"Meta.team == "a" or Meta.team == "b""#.to_string(),
        r#"Meta.n == "5" or Meta.n == "x""#.to_string(),
        r#"Nope == "a" or Nope == "b""#.to_string(),
        r#"Meta.team == a"#.to_string(),
    ];
    let mut fast = 0;
    for f in &filters {
        let expr = parse(f).unwrap();
        let prepared = Prepared::new(expr.clone());
        fast += usize::from(prepared.is_set_test());
        for d in &data {
            assert_eq!(prepared.eval(d), expr.eval(d), "{f} on {d}");
        }
    }
    let attr_set = Prepared::new(parse(&filters[1]).unwrap());
    let (key, values) = attr_set.key_in_set("Attributes").unwrap();
    assert_eq!(key, "unique.platform.aws.instance-id");
    assert_eq!(values.len(), 3);
    assert!(attr_set.key_in_set("Meta").is_none());
    let meta = Prepared::new(parse(&filters[5]).unwrap());
    assert!(meta.key_in_set("Attributes").is_none());
    assert!(
        Prepared::new(parse(r#"Status == "ready""#).unwrap())
            .key_in_set("Status")
            .is_none()
    );
    assert_eq!(
        fast, 7,
        "the `or`s of `==` on one selector take the set test"
    );
}
