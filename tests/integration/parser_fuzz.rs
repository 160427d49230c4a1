//! No input may make the compiler panic: arbitrary text, and the examples mutated by deleting,
//! duplicating and swapping characters and tokens, go through parsing, graph building,
//! verification and the dump. Errors are fine; panics are bugs.

use crate::common;
use attnc_frontend::Sources;
use proptest::prelude::*;

/// Runs the front half of the compiler; returns whether it produced a graph.
fn compile_any(text: &str) -> bool {
    let mut sources = Sources::new();
    let file = sources.add("fuzz.attn", text);
    match attnc_frontend::compile_to_graph(&mut sources, file) {
        Ok(graph) => {
            let _ = attnc_ir::dump::dump_graph(&graph);
            true
        }
        Err(diags) => {
            // Rendering walks the spans: a span outside its file would show here.
            let _ = attnc_frontend::render_all(&diags, &sources);
            false
        }
    }
}

fn examples() -> Vec<String> {
    common::example_files()
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable example"))
        .collect()
}

/// Tokens that make mutations likely to stay near the grammar, to reach the later stages.
const TOKENS: &[&str] = &[
    "kernel",
    "fn",
    "dim",
    "input",
    "output",
    "let",
    "mask",
    "require",
    "recurrence",
    "state",
    "b",
    "h",
    "i",
    "j",
    "t",
    "S",
    "D",
    "q",
    "k",
    "v",
    "s",
    "o",
    "sum_j",
    "max_j",
    "softmax",
    "dot",
    "outer",
    "diag",
    "@",
    "//",
    "/",
    "*",
    "+",
    "-",
    "<=",
    "&&",
    "!",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ";",
    ",",
    ":",
    "=",
    "f32",
    "bf16",
    "i32",
    "in",
    "0",
    "1",
    "2.5",
    "1e-6",
    "inf",
    "#",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Duplicate { at: usize, len: usize },
    Swap { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..12).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
    ]
}

/// Applies a mutation on character boundaries, so the text stays valid UTF-8.
fn apply(text: &str, m: &Mutation) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len().max(1);
    let mut out = chars.clone();
    match *m {
        Mutation::Delete { at, len } => {
            let at = at % n;
            out.drain(at..(at + len).min(chars.len()));
        }
        Mutation::Insert { at, token } => {
            let at = at % (chars.len() + 1);
            let tok: Vec<char> = format!(" {} ", TOKENS[token]).chars().collect();
            out.splice(at..at, tok);
        }
        Mutation::Duplicate { at, len } => {
            let at = at % n;
            let piece: Vec<char> = chars[at..(at + len).min(chars.len())].to_vec();
            out.splice(at..at, piece);
        }
        Mutation::Swap { a, b } => {
            let (a, b) = (a % n, b % n);
            if a < chars.len() && b < chars.len() {
                out.swap(a, b);
            }
        }
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        compile_any(&text);
    }

    #[test]
    fn arbitrary_token_soup_never_panics(tokens in proptest::collection::vec(0..TOKENS.len(), 0..80)) {
        let text: Vec<&str> = tokens.iter().map(|t| TOKENS[*t]).collect();
        compile_any(&text.join(" "));
    }

    #[test]
    fn mutated_examples_never_panic(which in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let sources = examples();
        let mut text = sources[which % sources.len()].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        compile_any(&text);
    }
}

/// The mutation strategy reaches the later stages, not only the parser: some mutated examples
/// still compile, which means the type checker and graph builder see odd but valid programs.
#[test]
fn mutations_reach_the_graph_builder() {
    let sources = examples();
    let mut compiled = 0;
    for (k, text) in sources.iter().enumerate() {
        for step in 0..20 {
            let m = Mutation::Swap {
                a: k * 31 + step * 7,
                b: k * 17 + step * 13,
            };
            if compile_any(&apply(text, &m)) {
                compiled += 1;
            }
        }
    }
    assert!(
        compiled > 0,
        "no mutated example compiled; the fuzz test only exercises the parser"
    );
}
