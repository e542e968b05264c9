//! Maps a field path (`routes[3].upstream`) to its line and column in the YAML source, so a
//! diagnostic about meaning (an unknown upstream, a shadowed route) names the line it is about.
//!
//! Built from yaml-rust2's event parser, which marks every event with its position. Paths are
//! the ones [`super::yaml::schema`] and [`super::compile`] produce: mapping keys joined by `.`,
//! sequence indices as `[n]`, e.g. `upstreams.users-svc.instances[0]`. Only the first document is
//! indexed; text after a syntax error is not (lookups fall back to the nearest indexed ancestor).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Nodes nested deeper than this are not indexed: a path's length grows with its depth, so a
/// pathological `[[[[…` input would otherwise cost memory quadratic in its size. No config field
/// is nested anywhere near this deep; lookups below it fall back to the deepest indexed ancestor.
const MAX_INDEXED_DEPTH: usize = 64;

/// 1-based line and column.
pub type Position = (usize, usize);

/// Where every node of a YAML document is, by field path.
#[derive(Debug, Default)]
pub struct LineIndex {
    nodes: HashMap<String, NodeInfo>,
    duplicates: Vec<DuplicateKey>,
}

#[derive(Debug, Clone, Copy)]
struct NodeInfo {
    /// The key that introduces this node, when its parent is a mapping.
    key: Option<Position>,
    /// The node itself: a scalar's first character, a flow collection's bracket, a block
    /// mapping's first key, a block sequence's first `-`.
    node: Position,
    /// A scalar with text: the diagnostic points at the value rather than its key.
    non_empty_scalar: bool,
}

/// A key that appears twice in the same mapping (YAML forbids it; serde would keep only one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Field path of the second occurrence, e.g. `upstreams.users-svc`.
    pub path: String,
    /// Where the second occurrence's key is.
    pub at: Position,
    /// Line of the first occurrence.
    pub first_line: usize,
}

impl LineIndex {
    /// Indexes `text`. Never fails: on a syntax error the index holds what was read before it.
    pub fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd | Event::DocumentEnd, _)) | Err(_) => break,
                Ok((event, mark)) => {
                    if builder.on_event(event, mark) == Flow::Stop {
                        break;
                    }
                }
            }
        }
        // The scanner's end-of-stream mark can sit on a line past the end of the text.
        let end = end_of(text);
        for info in builder.nodes.values_mut() {
            info.key = info.key.map(|at| inside(end, at));
            info.node = inside(end, info.node);
        }
        for duplicate in &mut builder.duplicates {
            duplicate.at = inside(end, duplicate.at);
        }
        LineIndex {
            nodes: builder.nodes,
            duplicates: builder.duplicates,
        }
    }

    /// Line and column (1-based) of the node at `path`, or of its nearest ancestor that exists.
    ///
    /// A scalar value is located at the value (`upstream: nope` points at `nope`); a mapping or
    /// sequence value, an empty value, or a missing one at its key; a sequence element at the
    /// element. The empty path is the document itself.
    pub fn locate(&self, path: &str) -> Option<Position> {
        self.find(path).map(|info| {
            if info.non_empty_scalar {
                info.node
            } else {
                info.key.unwrap_or(info.node)
            }
        })
    }

    /// Like [`Self::locate`], but a mapping entry is always located at its key: what an
    /// `unknown field` diagnostic points at.
    pub fn locate_key(&self, path: &str) -> Option<Position> {
        self.find(path).map(|info| info.key.unwrap_or(info.node))
    }

    /// Keys written twice in the same mapping, in document order.
    pub fn duplicate_keys(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    fn find(&self, path: &str) -> Option<&NodeInfo> {
        let mut path = path;
        loop {
            if let Some(info) = self.nodes.get(path) {
                return Some(info);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }
}

/// `a.b[2]` → `a.b` → `a` → ``. A key that itself contains `.` or `[` is cut at that character;
/// the lookup then keeps climbing until it meets a path that exists.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// A YAML scanner moves to a new line at the end of the stream, so a position at the end of a
/// text without a final line break can name a line the text does not have: such a position is
/// placed just after the last character instead, where an editor can go.
pub fn inside_text(text: &str, at: Position) -> Position {
    inside(end_of(text), at)
}

fn inside(end: Position, at: Position) -> Position {
    if at.0 <= end.0 { at } else { end }
}

/// The last line of `text` and the column just after its last character. Every break either
/// YAML reader counts (CR LF, CR, LF, and YAML 1.1's NEL, LS and PS) starts a line, so no
/// position a reader gives inside the text is moved.
fn end_of(text: &str) -> Position {
    let mut lines = 1;
    let mut last_line_start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let is_break = match c {
            '\r' => {
                chars.next_if(|&(_, next)| next == '\n');
                true
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => true,
            _ => false,
        };
        if is_break {
            lines += 1;
            last_line_start = chars.peek().map_or(text.len(), |&(next, _)| next);
        }
    }
    (lines, text[last_line_start..].chars().count() + 1)
}

fn position(mark: Marker) -> Position {
    // yaml-rust2 lines are 1-based, columns 0-based.
    (mark.line(), mark.col() + 1)
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

#[derive(Debug, Default)]
struct Builder {
    nodes: HashMap<String, NodeInfo>,
    duplicates: Vec<DuplicateKey>,
    stack: Vec<Frame>,
    /// Set once the root node has been seen; its end ends the (first) document.
    root_seen: bool,
}

#[derive(Debug)]
struct Frame {
    /// This collection's field path; `None` below [`MAX_INDEXED_DEPTH`] or inside a complex key.
    path: Option<String>,
    kind: FrameKind,
}

#[derive(Debug)]
enum FrameKind {
    Sequence {
        next_index: usize,
    },
    Mapping {
        /// The key just read, waiting for its value: its text (`None` for a non-scalar key)
        /// and position.
        pending_key: Option<(Option<String>, Position)>,
        /// Keys seen so far and the line of each.
        seen: HashMap<String, usize>,
    },
}

/// What a node event is, for the builder.
enum NodeEvent {
    Scalar(String),
    /// An alias: a node with no text of its own.
    Alias,
    Mapping,
    Sequence,
}

impl Builder {
    fn on_event(&mut self, event: Event, mark: Marker) -> Flow {
        let node = match event {
            Event::Scalar(text, ..) => NodeEvent::Scalar(text),
            Event::Alias(_) => NodeEvent::Alias,
            Event::MappingStart(..) => NodeEvent::Mapping,
            Event::SequenceStart(..) => NodeEvent::Sequence,
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                return if self.stack.is_empty() {
                    Flow::Stop
                } else {
                    Flow::Continue
                };
            }
            _ => return Flow::Continue,
        };
        if self.stack.is_empty() && self.root_seen {
            return Flow::Stop;
        }
        self.root_seen = true;
        let at = position(mark);
        match self.place(&node, at) {
            Placed::Key => {
                // A collection used as a key is walked (its events must be consumed) but never
                // indexed.
                if matches!(node, NodeEvent::Mapping | NodeEvent::Sequence) {
                    self.push(None, &node);
                }
            }
            Placed::Value { path, key } => {
                let path = path.filter(|_| self.stack.len() < MAX_INDEXED_DEPTH);
                if let Some(p) = &path {
                    let non_empty_scalar = matches!(&node, NodeEvent::Scalar(t) if !t.is_empty());
                    self.nodes.insert(
                        p.clone(),
                        NodeInfo {
                            key,
                            node: at,
                            non_empty_scalar,
                        },
                    );
                }
                if matches!(node, NodeEvent::Mapping | NodeEvent::Sequence) {
                    self.push(path, &node);
                }
            }
        }
        Flow::Continue
    }

    /// Decides whether `node` is a mapping key or a value, and a value's path and key position.
    fn place(&mut self, node: &NodeEvent, at: Position) -> Placed {
        let Some(frame) = self.stack.last_mut() else {
            return Placed::Value {
                path: Some(String::new()),
                key: None,
            };
        };
        let parent = frame.path.as_deref();
        match &mut frame.kind {
            FrameKind::Sequence { next_index } => {
                let i = *next_index;
                *next_index += 1;
                Placed::Value {
                    path: parent.map(|p| format!("{p}[{i}]")),
                    key: None,
                }
            }
            FrameKind::Mapping { pending_key, seen } => match pending_key.take() {
                None => {
                    let text = match node {
                        NodeEvent::Scalar(text) => Some(text.clone()),
                        _ => None,
                    };
                    *pending_key = Some((text, at));
                    // yaml-rust2 marks a block mapping's start after its first key (and a flow
                    // mapping's at its `{`): the earlier of the two is where the mapping starts.
                    if let Some(info) = parent.and_then(|p| self.nodes.get_mut(p)) {
                        if at < info.node {
                            info.node = at;
                        }
                    }
                    Placed::Key
                }
                Some((text, key_at)) => {
                    let path = match (parent, text) {
                        (Some(parent), Some(text)) => {
                            let path = if parent.is_empty() {
                                text.clone()
                            } else {
                                format!("{parent}.{text}")
                            };
                            if let Some(&first_line) = seen.get(&text) {
                                self.duplicates.push(DuplicateKey {
                                    path,
                                    at: key_at,
                                    first_line,
                                });
                                // The first occurrence keeps the path.
                                None
                            } else {
                                seen.insert(text, key_at.0);
                                Some(path)
                            }
                        }
                        _ => None,
                    };
                    Placed::Value {
                        path,
                        key: Some(key_at),
                    }
                }
            },
        }
    }

    fn push(&mut self, path: Option<String>, node: &NodeEvent) {
        let kind = match node {
            NodeEvent::Mapping => FrameKind::Mapping {
                pending_key: None,
                seen: HashMap::new(),
            },
            _ => FrameKind::Sequence { next_index: 0 },
        };
        self.stack.push(Frame { path, kind });
    }
}

enum Placed {
    Key,
    Value {
        path: Option<String>,
        key: Option<Position>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# a comment
listeners:
  - name: public
    address: 127.0.0.1:8080
upstreams:
  users-svc:
    instances: [\"127.0.0.1:9101\", {address: \"127.0.0.1:9102\", weight: 2}]
  svc.v2:
    instances:
      - 127.0.0.1:9103
routes:
  - name: users
    match:
      path: /api/*
      methods: [GET]
    upstream:
    respond: {status: 404}
limits:
  idle_timeout: 30s
";

    #[test]
    fn locates_fields_values_and_elements() {
        let index = LineIndex::build(DOC);
        let cases: &[(&str, Option<Position>)] = &[
            // Scalar values point at the value.
            ("listeners[0].name", Some((3, 11))),
            ("listeners[0].address", Some((4, 14))),
            ("limits.idle_timeout", Some((19, 17))),
            ("routes[0].match.path", Some((14, 13))),
            ("routes[0].match.methods[0]", Some((15, 17))),
            // Flow collections: the elements, and a flow mapping's fields.
            ("upstreams.users-svc.instances[0]", Some((7, 17))),
            ("upstreams.users-svc.instances[1]", Some((7, 35))),
            ("upstreams.users-svc.instances[1].weight", Some((7, 71))),
            // A key whose value is a collection or empty points at the key.
            ("routes[0].match", Some((13, 5))),
            ("routes[0].upstream", Some((16, 5))),
            ("upstreams.users-svc.instances", Some((7, 5))),
            ("limits", Some((18, 1))),
            // A sequence element that is a block mapping points at its first key.
            ("routes[0]", Some((12, 5))),
            ("listeners[0]", Some((3, 5))),
            // A key containing a dot.
            ("upstreams.svc.v2.instances[0]", Some((10, 9))),
            // Fallback to the nearest ancestor.
            ("routes[0].match.nope", Some((13, 5))),
            ("routes[7].upstream", Some((11, 1))),
            ("nothing.here", Some((2, 1))),
            ("routes[0].respond.detail", Some((17, 5))),
            // The document.
            ("", Some((2, 1))),
        ];
        for (path, want) in cases {
            assert_eq!(index.locate(path), *want, "locate({path:?})");
        }
    }

    #[test]
    fn locate_key_points_at_keys_of_scalars() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.locate_key("listeners[0].address"), Some((4, 5)));
        assert_eq!(index.locate_key("limits.idle_timeout"), Some((19, 3)));
        assert_eq!(index.locate_key("routes[0]"), Some((12, 5)));
    }

    #[test]
    fn reports_duplicate_keys_with_both_lines() {
        let index = LineIndex::build("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n");
        assert_eq!(
            index.duplicate_keys(),
            &[
                DuplicateKey {
                    path: "b.c".into(),
                    at: (4, 3),
                    first_line: 3
                },
                DuplicateKey {
                    path: "a".into(),
                    at: (5, 1),
                    first_line: 1
                },
            ]
        );
        // The first occurrence stays the one located.
        assert_eq!(index.locate("a"), Some((1, 4)));
    }

    #[test]
    fn empty_and_broken_documents() {
        assert_eq!(LineIndex::build("").locate("a.b"), None);
        assert_eq!(LineIndex::build("# only a comment\n").locate(""), None);
        assert_eq!(LineIndex::build("just text").locate("x"), Some((1, 1)));
        // What precedes a syntax error is still indexed.
        let index = LineIndex::build("a: 1\nb: [1, 2\nc: 3\n");
        assert_eq!(index.locate("a"), Some((1, 4)));
        // Only the first document counts.
        let index = LineIndex::build("a: 1\n---\nb: 2\n");
        assert_eq!(index.locate("b"), Some((1, 1)));
    }

    #[test]
    fn complex_keys_and_aliases_do_not_confuse_paths() {
        let index = LineIndex::build("? [x, y]\n: 1\nbase: &b {k: v}\nother: *b\nz: 2\n");
        assert_eq!(index.locate("z"), Some((5, 4)));
        assert_eq!(index.locate("other"), Some((4, 1)));
        assert_eq!(index.locate("base.k"), Some((3, 14)));
    }

    /// Found by fuzzing: an empty sequence element at the end of a text without a final
    /// newline was located on a line past the end.
    #[test]
    fn a_node_at_the_end_of_a_text_without_a_final_newline_is_inside_it() {
        let text = "a:\n  - x\n  - ";
        let index = LineIndex::build(text);
        let at = index.locate("a[1]");
        assert!(at.is_some_and(|(line, _)| line <= 3), "{at:?}");
        assert_eq!(inside_text(text, (4, 1)), (3, 5));
        assert_eq!(inside_text(text, (2, 3)), (2, 3));
        // Found by fuzzing too: a lone CR breaks a line for YAML, so positions past the LF
        // count are real and stay.
        assert_eq!(inside_text("a\rb\rc", (3, 1)), (3, 1));
        assert_eq!(inside_text("a\r\nb\r\nc", (4, 1)), (3, 2));
        assert_eq!(inside_text("a\u{2028}b", (2, 2)), (2, 2));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // Deeper than the index goes, within what yaml-rust2 parses (255 flow levels).
        let depth = 200;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let index = LineIndex::build(&text);
        assert!(index.nodes.len() <= MAX_INDEXED_DEPTH + 1);
        assert_eq!(index.locate(&"[0]".repeat(depth - 1)), Some((1, 64)));
        // Beyond what the parser accepts: nothing indexed, nothing broken.
        let text = "[".repeat(5_000);
        assert_eq!(LineIndex::build(&text).locate("[0]"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_stays_inside_the_text(
            text in "[ a-z0-9:\\-\\[\\]{},#&*!|>'\"\n?~.]{0,200}",
            path in "[a-z0-9.\\[\\]-]{0,20}",
        ) {
            let index = LineIndex::build(&text);
            let lines = text.lines().count() + 1;
            for at in [index.locate(&path), index.locate_key(&path)].into_iter().flatten() {
                proptest::prop_assert!((1..=lines).contains(&at.0), "{at:?} beyond {lines} lines");
                proptest::prop_assert!(at.1 >= 1);
            }
        }
    }
}
