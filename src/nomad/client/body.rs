//! Response bodies with a size limit per endpoint, decoded as they arrive.
//!
//! An answer larger than any real cluster's (a misbehaving proxy, a body
//! that never ends) must not take the operator past its memory limit, which
//! would crash-loop every pool it serves. So each endpoint has a cap,
//! generous for a large cluster, and lists are decoded one element at a
//! time while the body streams in: memory holds the decoded values and at
//! most one element's bytes, never the whole body.
//!
//! The caps, from the documentation samples in `tests/fixtures/nomad`
//! (compact JSON) and a cluster of 10,000 clients:
//! - `GET /v1/nodes`: 1,625 bytes per node stub (6 drivers): 10,000 nodes
//!   are 16 MB. Cap 40 MiB, 2.5 times that, for nodes with more drivers,
//!   attributes and host volumes.
//! - `GET /v1/node/:id/allocations`: 5,050 bytes per allocation with its job
//!   (1,945 bytes of job). A busy node with 200 allocations (terminal ones
//!   stay until garbage collection) and jobs ten times the sample's is
//!   10 MB. Cap 32 MiB.
//! - `GET /v1/allocations` (live ones, without task states): 785 bytes per
//!   allocation: 25 per client on 10,000 clients are 196 MB. Cap 256 MiB;
//!   only the decoded stubs stay in memory.
//! - `GET /v1/node/:id`: 5,008 bytes; cap 4 MiB.
//! - An event-stream frame (one NDJSON line) carries whole nodes: cap
//!   16 MiB, about 3,000 of the sample's nodes in one batch.
//! - Everything else (writes, the leader, ACL token, role and policy
//!   reads, a one-node page) is a few hundred bytes: cap 1 MiB.

use super::*;

const MIB: usize = 1 << 20;
pub(super) const NODE_LIST_LIMIT: usize = 40 * MIB;
pub(super) const NODE_ALLOCATIONS_LIMIT: usize = 32 * MIB;
pub(super) const ALLOCATIONS_LIMIT: usize = 256 * MIB;
pub(super) const NODE_LIMIT: usize = 4 * MIB;
pub(super) const EVENT_FRAME_LIMIT: usize = 16 * MIB;
pub(crate) const SMALL_LIMIT: usize = MIB;
/// Of an error answer only the start is shown, so only that much is read.
const ERROR_BODY_READ: usize = 64 * 1024;

fn too_large(endpoint: &str, limit: usize) -> NomadError {
    NomadError::BodyTooLarge {
        endpoint: endpoint.to_owned(),
        limit,
    }
}

/// Refuse at once what announces itself as too large.
fn check_length(resp: &reqwest::Response, limit: usize, endpoint: &str) -> Result<(), NomadError> {
    match resp.content_length() {
        Some(n) if n > limit as u64 => Err(too_large(endpoint, limit)),
        _ => Ok(()),
    }
}

/// The whole body, up to `limit` bytes.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    endpoint: &str,
) -> Result<Vec<u8>, NomadError> {
    check_length(&resp, limit, endpoint)?;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| NomadError::from_reqwest(endpoint, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large(endpoint, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The start of an error answer, whatever its length.
pub(super) async fn error_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_READ {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_READ);
    body
}

pub(super) fn decode<T: DeserializeOwned>(body: &[u8], endpoint: &str) -> Result<T, NomadError> {
    serde_json::from_slice(body).map_err(|source| NomadError::Decode {
        endpoint: endpoint.to_owned(),
        source,
    })
}

/// A JSON list, decoded element by element as the body arrives, up to
/// `limit` bytes in all, each turned into what the list holds by `each`.
pub(super) async fn decode_list<T: DeserializeOwned, U>(
    mut resp: reqwest::Response,
    limit: usize,
    endpoint: &str,
    each: fn(T) -> U,
) -> Result<Vec<U>, NomadError> {
    check_length(&resp, limit, endpoint)?;
    let decode_err = |source| NomadError::Decode {
        endpoint: endpoint.to_owned(),
        source,
    };
    let mut items = Vec::new();
    let mut split = ListSplitter::default();
    let mut total = 0usize;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| NomadError::from_reqwest(endpoint, e))?
    {
        total += chunk.len();
        if total > limit {
            return Err(too_large(endpoint, limit));
        }
        split
            .feed(&chunk, &mut |element| {
                items.push(each(serde_json::from_slice(element)?));
                Ok(())
            })
            .map_err(decode_err)?;
    }
    split.finish().map_err(decode_err)?;
    Ok(items)
}

/// A successful response whose body is not read yet.
pub(super) struct Reply {
    pub(super) endpoint: String,
    pub(super) resp: reqwest::Response,
    /// The request's connection until the body is read (see `budget`).
    pub(super) _permit: super::budget::Permit,
}

impl Reply {
    pub(super) async fn json<T: DeserializeOwned>(self, limit: usize) -> Result<T, NomadError> {
        let body = read_capped(self.resp, limit, &self.endpoint).await?;
        decode(&body, &self.endpoint)
    }
}

impl QueryResponse<()> {
    pub(super) fn with<T>(self, value: T) -> QueryResponse<T> {
        self.map(|()| value)
    }
}

fn syntax(message: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(message)
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Place {
    #[default]
    Before,
    Inside,
    After,
}

/// Cuts a JSON list into its elements' bytes without decoding them: it only
/// tracks nesting and strings, and leaves each element's syntax to serde.
#[derive(Default)]
pub(super) struct ListSplitter {
    place: Place,
    depth: usize,
    in_string: bool,
    escaped: bool,
    element: Vec<u8>,
    /// Elements handed out, and whether a comma was seen: `[]` is empty,
    /// `[,]` and `[1,]` are not valid.
    elements: usize,
    comma: bool,
}

/// The bytes that end a run inside a string (its quote, an escape), and
/// outside one (a string, nesting, a separator): scanning by table lookup
/// splits a 9 MB allocation list at about 1 GB/s, 2.8 times the speed of
/// matching each byte (one measurement of both versions, on a list of
/// the fixture allocation repeated 1,000 times).
const STRING_END: [bool; 256] = byte_set(b"\"\\");
const STRUCTURAL: [bool; 256] = byte_set(b"\"{}[],");

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

type Emit<'a> = dyn FnMut(&[u8]) -> Result<(), serde_json::Error> + 'a;

impl ListSplitter {
    /// Scans `chunk` a run at a time (a string's bytes up to its next quote
    /// or backslash in one search) and hands out an element lying within
    /// one chunk straight from it: each draining client's allocation list
    /// is read again whenever one of its allocations changes, and a match
    /// and a copy per byte took 7.8 % of the operator's CPU at 5,000
    /// clients (BENCHMARKS.md, nineteenth pass).
    pub(super) fn feed(
        &mut self,
        chunk: &[u8],
        emit: &mut Emit<'_>,
    ) -> Result<(), serde_json::Error> {
        // Where the current element's bytes in this chunk begin.
        let mut from = 0;
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.place {
                Place::Before if b.is_ascii_whitespace() => {}
                Place::Before if b == b'[' => {
                    self.place = Place::Inside;
                    from = i + 1;
                }
                Place::Before => return Err(syntax("expected a JSON list")),
                Place::After if b.is_ascii_whitespace() => {}
                Place::After => return Err(syntax("trailing characters after the list")),
                Place::Inside if self.in_string => {
                    i = self.skip_string(chunk, i);
                    continue;
                }
                Place::Inside => match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' if self.depth > 0 => self.depth -= 1,
                    b']' => {
                        self.end_element(&chunk[from..i], true, emit)?;
                        self.place = Place::After;
                    }
                    b'}' => return Err(syntax("unbalanced '}' in the list")),
                    b',' if self.depth == 0 => {
                        self.end_element(&chunk[from..i], false, emit)?;
                        from = i + 1;
                    }
                    // On to the next byte that means something here (a
                    // comma within an element is not one).
                    _ => {
                        i += 1 + chunk[i + 1..]
                            .iter()
                            .position(|&c| STRUCTURAL[usize::from(c)])
                            .unwrap_or(chunk.len() - i - 1);
                        continue;
                    }
                },
            }
            i += 1;
        }
        if self.place == Place::Inside {
            self.element.extend_from_slice(&chunk[from..]);
        }
        Ok(())
    }

    /// Inside a string from `i`: the index after its closing quote, or the
    /// chunk's end.
    fn skip_string(&mut self, chunk: &[u8], mut i: usize) -> usize {
        if self.escaped {
            self.escaped = false;
            return i + 1;
        }
        match chunk[i..].iter().position(|&c| STRING_END[usize::from(c)]) {
            None => chunk.len(),
            Some(p) => {
                i += p;
                if chunk[i] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                i + 1
            }
        }
    }

    /// The element ends with `tail`, the part of it in the current chunk.
    fn end_element(
        &mut self,
        tail: &[u8],
        closing: bool,
        emit: &mut Emit<'_>,
    ) -> Result<(), serde_json::Error> {
        let whole = if self.element.is_empty() {
            tail
        } else {
            self.element.extend_from_slice(tail);
            &self.element
        };
        let element = whole.trim_ascii();
        let empty_list = closing && element.is_empty() && self.elements == 0 && !self.comma;
        if !empty_list {
            // An empty element (`[,]`) fails here, as serde would fail it.
            emit(element)?;
            self.elements += 1;
        }
        self.comma |= !closing;
        self.element.clear();
        Ok(())
    }

    pub(super) fn finish(&self) -> Result<(), serde_json::Error> {
        match self.place {
            Place::After => Ok(()),
            Place::Before => Err(syntax("empty body where a JSON list was expected")),
            Place::Inside => Err(syntax("the body ended inside the list")),
        }
    }
}

/// `40 MiB`, `64 KiB`: how limits are shown in errors and conditions.
pub(crate) fn show_size(bytes: usize) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        let mut out = Vec::new();
        let mut s = ListSplitter::default();
        for c in chunks {
            s.feed(c, &mut |e| {
                out.push(serde_json::from_slice(e)?);
                Ok(())
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn splits_a_list_into_its_elements_across_any_chunking() {
        let body = br#" [ {"A":"x,]}\"","B":[1,{"c":"]"}]} , 2,"s\\" ,null, [[]] ] "#;
        let whole: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(split(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(split(&bytes).unwrap(), whole);
    }

    #[test]
    fn empty_lists_and_malformed_ones() {
        assert!(split(&[b"[]"]).unwrap().is_empty());
        assert!(split(&[b" [ \n ] "]).unwrap().is_empty());
        for bad in [
            &b"[,]"[..],
            b"[1,]",
            b"[1 2]",
            b"[1",
            b"",
            b"null",
            b"{}",
            b"[1] x",
            b"[1}",
            b"[{]",
        ] {
            assert!(split(&[bad]).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_fixtures_split_as_serde_reads_them() {
        for f in [
            "node-list.json",
            "node-allocations.json",
            "allocations-list.json",
        ] {
            let path = format!(
                "{}/tests/fixtures/nomad/{f}",
                std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")
            );
            let body = std::fs::read(path).unwrap();
            let whole: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            let chunks: Vec<&[u8]> = body.chunks(7).collect();
            assert_eq!(split(&chunks).unwrap(), whole, "{f}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(show_size(NODE_LIST_LIMIT), "40 MiB");
        assert_eq!(show_size(ERROR_BODY_READ), "64 KiB");
        assert_eq!(show_size(1000), "1000 bytes");
    }
}
