//! Hostile programs from issue 17: expressions deep enough to overflow the stack of any
//! recursive walk, and programs whose inlining or `let`s grew faster than their text. Each must
//! end in a diagnostic with a place in the source, or build, in bounded time.

use attnc_frontend::{Diagnostic, Sources, compile_to_graph, render_all};
use std::time::{Duration, Instant};

const HEAD: &str = "kernel k {
  dim B, H, S, D;
  input q, k, v: f32[B, H, S, D];
  output o: f32[B, H, S, D];
";
const TAIL: &str = "  o[b, h, i] = sum_j(softmax(s) * v[b, h, j]);\n}\n";
const SCORE: &str = "dot(q[b, h, i], k[b, h, j])";

/// A kernel whose score is `body` (which binds `s`), after the functions `prefix`.
fn kernel(prefix: &str, body: &str) -> String {
    format!("{prefix}{HEAD}{body}{TAIL}")
}

/// Compiles `text`, which must take less than `limit`; returns the diagnostics, if any.
fn compile_within(text: &str, limit: Duration) -> Result<attnc_ir::Graph, Vec<Diagnostic>> {
    let mut sources = Sources::new();
    let file = sources.add("hostile.attn", text);
    let start = Instant::now();
    let result = compile_to_graph(&mut sources, file);
    let took = start.elapsed();
    assert!(took < limit, "took {took:?}, more than {limit:?}");
    if let Err(d) = &result {
        // Rendering must not walk the deep tree either.
        let shown = render_all(d, &sources);
        assert!(shown.contains("hostile.attn:"), "no location in:\n{shown}");
    }
    result
}

fn expect_error(text: &str, wanted: &str) {
    let diags = compile_within(text, Duration::from_secs(20))
        .err()
        .unwrap_or_else(|| panic!("expected an error containing `{wanted}`"));
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains(wanted) && !d.labels.is_empty()),
        "expected `{wanted}` with a span, got {diags:?}"
    );
}

#[test]
fn a_chain_of_18000_additions_is_refused_with_a_location() {
    let body = format!("  let s = {SCORE}{};\n", " + 1.0".repeat(18_000));
    expect_error(&kernel("", &body), "nested more than 256 levels");
}

#[test]
fn deeply_nested_calls_unary_operators_and_conjunctions_are_refused() {
    let calls = format!(
        "  let s = {}{SCORE}{};\n",
        "exp(".repeat(18_000),
        ")".repeat(18_000)
    );
    expect_error(&kernel("", &calls), "nested more than 256 levels");
    let unary = format!("  let s = {}{SCORE};\n", "-".repeat(18_000));
    expect_error(&kernel("", &unary), "nested more than 256 levels");
    let ands = format!(
        "  let s = {SCORE};\n  mask j <= i{};\n",
        " && j <= i".repeat(18_000)
    );
    expect_error(&kernel("", &ands), "nested more than 256 levels");
}

#[test]
fn deep_parentheses_alone_do_not_nest_the_tree() {
    let body = format!(
        "  let s = {}{SCORE}{};\n",
        "(".repeat(18_000),
        ")".repeat(18_000)
    );
    assert!(compile_within(&kernel("", &body), Duration::from_secs(20)).is_ok());
}

#[test]
fn the_deepest_accepted_expression_still_builds() {
    // 250 levels: just under the parser's limit.
    let body = format!("  let s = {SCORE}{};\n", " + 1.0".repeat(249));
    assert!(compile_within(&kernel("", &body), Duration::from_secs(20)).is_ok());
}

#[test]
fn a_long_chain_of_functions_is_refused_once_too_deep() {
    let mut fns = "fn fun0(x) { x + 1.0 }\n".to_string();
    for n in 1..3000 {
        fns.push_str(&format!("fn fun{n}(x) {{ fun{}(x) + 1.0 }}\n", n - 1));
    }
    let body = format!("  let s = fun2999({SCORE});\n");
    expect_error(&kernel(&fns, &body), "levels deep once functions");
}

/// `fn funN(x) { funN-1(ARG) + funN-1(ARG) }` (not `fN`: `f16` and `f32` are dtypes), 41 levels: 2^41 calls if inlined as a tree.
fn doubling(arg: &str, with_lets: bool) -> String {
    let mut fns = "fn fun0(x) { x + 1.0 }\n".to_string();
    for n in 1..=40 {
        let m = n - 1;
        if with_lets {
            fns.push_str(&format!(
                "fn fun{n}(x) {{ let a = fun{m}({arg}); let c = fun{m}({arg}); a + c }}\n"
            ));
        } else {
            fns.push_str(&format!(
                "fn fun{n}(x) {{ fun{m}({arg}) + fun{m}({arg}) }}\n"
            ));
        }
    }
    kernel(&fns, &format!("  let s = fun40({SCORE});\n"))
}

#[test]
fn functions_calling_the_next_twice_inline_in_linear_time() {
    for (arg, lets) in [
        ("x", false),
        ("x", true),
        ("x * 2.0", false),
        ("x * 2.0", true),
    ] {
        let graph = compile_within(&doubling(arg, lets), Duration::from_secs(10))
            .unwrap_or_else(|d| panic!("{arg} {lets}: {d:?}"));
        assert!(graph.node_count() < 400, "{} nodes", graph.node_count());
    }
}

#[test]
fn constants_that_double_at_every_let_hit_a_limit() {
    let mut body = "  let c0 = 1;\n".to_string();
    for n in 1..=60 {
        body.push_str(&format!("  let c{n} = c{} + c{};\n", n - 1, n - 1));
    }
    body.push_str(&format!("  let s = {SCORE} + c60;\n"));
    // Either limit may be reached first; both name the place.
    let diags = compile_within(&kernel("", &body), Duration::from_secs(20))
        .expect_err("2^60 nodes cannot build");
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("once its functions are inlined")
                || d.message.contains("levels deep once functions")),
        "{diags:?}"
    );
}

#[test]
fn eighty_thousand_lets_build_in_linear_time() {
    let mut unused = format!("  let s = {SCORE};\n");
    let mut chain = format!("  let s0 = {SCORE};\n");
    for n in 0..80_000 {
        unused.push_str(&format!("  let u{n} = s + {n}.0;\n"));
        chain.push_str(&format!("  let s{} = s{n} + 1.0;\n", n + 1));
    }
    chain.push_str("  let s = s80000;\n");
    // Debug builds, shared machines: well above the 1-3 s these take, well below the 30 s
    // and more the quadratic removal of unused lets took.
    for text in [unused, chain] {
        assert!(compile_within(&kernel("", &text), Duration::from_secs(20)).is_ok());
    }
}
