//! Just enough of the Prometheus formats to check the alerting rules and
//! the dashboard against what the operator really exports: the text
//! exposition (`/metrics`) as families, series names and label names, and
//! the metric names and label names a PromQL expression refers to.

use std::collections::{BTreeMap, BTreeSet};

/// What one or more scrapes of `/metrics` showed.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name (`# TYPE` line) → its type.
    pub families: BTreeMap<String, String>,
    /// Series name → the label names seen on it, over every sample.
    pub labels: BTreeMap<String, BTreeSet<String>>,
    /// Every sample as (series name, labels, value).
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    /// Add one scrape's text.
    pub fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                self.families.insert(name.into(), kind.trim().into());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (name, labels, value) = parse_sample(line);
                let names = self.labels.entry(name.clone()).or_default();
                names.extend(labels.keys().cloned());
                self.samples.push((name, labels, value));
            }
        }
    }

    /// The series names a family of this type writes (OpenMetrics).
    pub fn series_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (name, kind) in &self.families {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
        out
    }

    /// Samples of `series` whose labels include every pair of `with`.
    pub fn values(&self, series: &str, with: &[(&str, &str)]) -> Vec<f64> {
        (self.samples.iter())
            .filter(|(n, l, _)| {
                n == series
                    && with
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .collect()
    }
}

/// `name{a="x",b="y \" z"} 1.5` → (name, labels, 1.5).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line.find(['{', ' ']).expect("a sample has a value");
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().expect("labels end with }");
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    let (_, quote) = chars.next().expect("a label value");
                    assert_eq!(quote, '"', "label values are quoted: {line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("a closing quote").1 {
                            '\\' => value.push(match chars.next().expect("an escape").1 {
                                'n' => '\n',
                                other => other,
                            }),
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .expect("a sample value")
        .parse()
        .unwrap_or_else(|e| panic!("sample value in {line}: {e}"));
    (name, labels, value)
}

/// What a PromQL expression refers to: metrics (with the label names their
/// selectors match on) and the label names of its `by (...)` groupings.
#[derive(Debug, Default, PartialEq)]
pub struct Refs {
    pub metrics: BTreeMap<String, BTreeSet<String>>,
    pub grouping: BTreeSet<String>,
}

const KEYWORDS: [&str; 4] = ["by", "without", "on", "ignoring"];

/// The metrics named `prefix…` in `expr`, their matchers' label names, and
/// the labels it groups by. Strings are skipped, so a label value that
/// looks like a metric name is not taken for one.
pub fn refs(expr: &str, prefix: &str) -> Refs {
    let mut out = Refs::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut last_ident = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
            last_ident.clear();
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            last_ident = chars[start..i].iter().collect();
            if last_ident.starts_with(prefix) {
                let labels = out.metrics.entry(last_ident.clone()).or_default();
                let j = skip_spaces(&chars, i);
                if chars.get(j) == Some(&'{') {
                    let (names, end) = label_list(&chars, j + 1, '}');
                    labels.extend(names);
                    i = end;
                }
            }
        } else if c == '(' && KEYWORDS.contains(&last_ident.as_str()) {
            let (names, end) = label_list(&chars, i + 1, ')');
            if last_ident == "by" {
                out.grouping.extend(names);
            }
            i = end;
            last_ident.clear();
        } else {
            if !c.is_whitespace() {
                last_ident.clear();
            }
            i += 1;
        }
    }
    out
}

fn skip_spaces(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Index just past the string starting at `i`.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if chars[j] == '\\' { 2 } else { 1 };
    }
    j + 1
}

/// The label names in `a="x", b=~"y"` (matchers) or `a, b` (a grouping)
/// from `i` up to `close`; the index past `close`.
fn label_list(chars: &[char], mut i: usize, close: char) -> (BTreeSet<String>, usize) {
    let mut names = BTreeSet::new();
    let mut current = String::new();
    while i < chars.len() && chars[i] != close {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            current.push(c);
        } else if !current.is_empty() {
            names.insert(std::mem::take(&mut current));
        }
        i += 1;
    }
    if !current.is_empty() {
        names.insert(current);
    }
    (names, i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_spaces_and_escapes_in_label_values() {
        let mut e = Exposition::default();
        e.add(concat!(
            "# TYPE npo_requests counter\n",
            "npo_requests_total{endpoint=\"GET /v1/node/:id\",code=\"200\"} 3\n",
            "npo_requests_total{endpoint=\"say \\\"hi\\\", then }\",code=\"error\"} 1.5\n",
            "# TYPE npo_leader gauge\n",
            "npo_leader 1\n",
            "# EOF\n",
        ));
        assert_eq!(e.values("npo_requests_total", &[("code", "200")]), [3.0]);
        assert_eq!(
            e.values("npo_requests_total", &[("endpoint", "say \"hi\", then }")]),
            [1.5]
        );
        assert_eq!(e.values("npo_leader", &[]), [1.0]);
        assert_eq!(
            e.labels["npo_requests_total"],
            BTreeSet::from(["code".to_string(), "endpoint".to_string()])
        );
        assert!(e.series_names().contains("npo_requests_total"));
        assert!(!e.series_names().contains("npo_requests"));
    }

    #[test]
    fn refs_find_metrics_matchers_and_groupings_but_not_strings() {
        let r = refs(
            "sum by (endpoint) (rate(npo_requests_total{code=~\"error|5..\", pool=\"npo_fake\"}[5m]))\n / on (x) sum without (y) (npo_other) > 0 or absent(npo_leader)",
            "npo_",
        );
        assert_eq!(
            r.metrics,
            BTreeMap::from([
                (
                    "npo_requests_total".to_string(),
                    BTreeSet::from(["code".to_string(), "pool".to_string()])
                ),
                ("npo_other".to_string(), BTreeSet::new()),
                ("npo_leader".to_string(), BTreeSet::new()),
            ])
        );
        assert_eq!(r.grouping, BTreeSet::from(["endpoint".to_string()]));
        // `by` after the aggregation's arguments.
        let r = refs("max(npo_x) by (pool, deadline)", "npo_");
        assert_eq!(
            r.grouping,
            BTreeSet::from(["deadline".to_string(), "pool".to_string()])
        );
    }
}
