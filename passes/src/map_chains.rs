//! Merges a map into the one map that reads it when both vary with the same indices, so a chain
//! of `let`s is one expression rather than one buffer and one loop per `let` in every back end
//! (a chain of 300 lets overflowed the CPU kernel's stack with 300 tile buffers, and LLVM's loop
//! passes took minutes on 500). A merge never duplicates work: the merged map is the producer's
//! only reader. Merged expressions stay at most [`MAX_MERGED_DEPTH`] deep, so a long chain
//! becomes a few maps, each a bounded walk for every recursive consumer of an arena.

use crate::pass_manager::Pass;
use attnc_ir::expr::{ExprArena, ExprId, ExprNode};
use attnc_ir::graph::{Node, Op, PortType};
use attnc_ir::{Graph, ValueRef};
use petgraph::stable_graph::NodeIndex;

/// The deepest expression a merge may make.
pub const MAX_MERGED_DEPTH: usize = 48;

pub struct MergeMapChains;

impl Pass for MergeMapChains {
    fn name(&self) -> &'static str {
        "merge-map-chains"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool, String> {
        let mut changed = false;
        // Producers in topological order: each merge leaves the chain's next link a map that
        // reads the merged one, so one pass over the order merges whole chains.
        let order = graph.topo_order().ok_or("the graph has a cycle")?;
        let mut replaced: std::collections::BTreeMap<NodeIndex, NodeIndex> = Default::default();
        for mut p in order {
            // A map merged away earlier continues as its merged node.
            while let Some(&m) = replaced.get(&p) {
                p = m;
            }
            let Some(c) = merge_target(graph, p) else {
                continue;
            };
            let merged = merge(graph, p, c);
            replaced.insert(c, merged);
            changed = true;
        }
        Ok(changed)
    }
}

/// The map `p` may be merged into: its only reader, a map over the same indices, with the
/// merged expression within the depth bound.
fn merge_target(graph: &Graph, p: NodeIndex) -> Option<NodeIndex> {
    let Op::Map { expr, root } = &graph.node(p).op else {
        return None;
    };
    let users = graph.users(p);
    let [c] = users.as_slice() else {
        return None;
    };
    let Op::Map {
        expr: c_expr,
        root: c_root,
    } = &graph.node(*c).op
    else {
        return None;
    };
    let indices = |n: NodeIndex| match graph.node(n).results.first() {
        Some(PortType::Value(t)) => Some(t.indices),
        _ => None,
    };
    if indices(p)? != indices(*c)? || graph.node(p).results.len() != 1 {
        return None;
    }
    (depth(expr, *root) + depth(c_expr, *c_root) <= MAX_MERGED_DEPTH).then_some(*c)
}

/// The depth of an arena expression (a leaf is 1); arenas list children before parents.
fn depth(arena: &ExprArena, root: ExprId) -> usize {
    let mut d = vec![1usize; arena.len()];
    for id in arena.ids() {
        let below = arena
            .node(id)
            .children()
            .iter()
            .map(|c| d[c.index()])
            .max()
            .unwrap_or(0);
        d[id.index()] = below + 1;
        if id == root {
            break;
        }
    }
    d.get(root.index()).copied().unwrap_or(1)
}

/// Replaces `c` by one map computing `c` with `p`'s expression in place of its reads of `p`;
/// removes both. Returns the new node.
fn merge(graph: &mut Graph, p: NodeIndex, c: NodeIndex) -> NodeIndex {
    let p_operands: Vec<ValueRef> = graph.operands(p).iter().map(|(v, _)| *v).collect();
    let c_operands: Vec<ValueRef> = graph.operands(c).iter().map(|(v, _)| *v).collect();
    let (Op::Map { expr: pe, root: pr }, Op::Map { expr: ce, root: cr }) =
        (&graph.node(p).op, &graph.node(c).op)
    else {
        unreachable!("merge_target checked both are maps");
    };
    // The merged map's operands: c's other operands, then p's, each once.
    let mut operands: Vec<ValueRef> = Vec::new();
    let position = |v: ValueRef, operands: &mut Vec<ValueRef>| -> u32 {
        match operands.iter().position(|o| *o == v) {
            Some(k) => k as u32,
            None => {
                operands.push(v);
                operands.len() as u32 - 1
            }
        }
    };
    let mut arena = ExprArena::default();
    let p_positions: Vec<u32> = p_operands
        .iter()
        .map(|v| position(*v, &mut operands))
        .collect();
    let p_leaf = |k: u32| Leaf::Operand(p_positions[k as usize]);
    let p_root = copy(pe, *pr, &mut arena, &p_leaf, &mut Vec::new());
    let c_positions: Vec<Option<u32>> = c_operands
        .iter()
        .map(|v| (v.node != p).then(|| position(*v, &mut operands)))
        .collect();
    let leaf = |k: u32| match c_positions.get(k as usize).copied().flatten() {
        Some(pos) => Leaf::Operand(pos),
        None => Leaf::Merged(p_root),
    };
    let root = copy(ce, *cr, &mut arena, &leaf, &mut Vec::new());
    let old = graph.node(c);
    let node = Node {
        op: Op::Map { expr: arena, root },
        results: old.results.clone(),
        name: old.name.clone(),
        span: old.span,
    };
    // c's readers, to be pointed at the merged node.
    let readers: Vec<(NodeIndex, u32, u32)> = graph
        .users(c)
        .into_iter()
        .flat_map(|u| {
            graph
                .operands(u)
                .into_iter()
                .filter(|(v, _)| v.node == c)
                .map(|(v, e)| (u, v.result, e.operand))
                .collect::<Vec<_>>()
        })
        .collect();
    let merged = graph.add_node(node);
    for (k, v) in operands.iter().enumerate() {
        graph.connect(*v, merged, k as u32);
    }
    for (u, result, operand) in readers {
        graph.connect(
            ValueRef {
                node: merged,
                result,
            },
            u,
            operand,
        );
    }
    graph.remove_node(c);
    graph.remove_node(p);
    merged
}

/// What an operand of the copied expression becomes.
enum Leaf {
    Operand(u32),
    /// The already-copied producer's root.
    Merged(ExprId),
}

/// Copies the expression at `id` of `src` into `dst`, operands mapped by `leaf`; `memo` shares
/// nodes the source shares. Depth is bounded by [`MAX_MERGED_DEPTH`].
fn copy(
    src: &ExprArena,
    id: ExprId,
    dst: &mut ExprArena,
    leaf: &dyn Fn(u32) -> Leaf,
    memo: &mut Vec<Option<ExprId>>,
) -> ExprId {
    if memo.len() < src.len() {
        memo.resize(src.len(), None);
    }
    if let Some(done) = memo[id.index()] {
        return done;
    }
    let ty = src.ty(id).clone();
    let span = src.span(id);
    let sub = |c: ExprId, dst: &mut ExprArena, memo: &mut Vec<Option<ExprId>>| {
        copy(src, c, dst, leaf, memo)
    };
    let new = match src.node(id).clone() {
        ExprNode::Operand(k) => match leaf(k) {
            Leaf::Operand(pos) => dst.push(ExprNode::Operand(pos), ty, span),
            Leaf::Merged(root) => root,
        },
        ExprNode::Unary(op, a) => {
            let a = sub(a, dst, memo);
            dst.push(ExprNode::Unary(op, a), ty, span)
        }
        ExprNode::Binary(op, a, b) => {
            let a = sub(a, dst, memo);
            let b = sub(b, dst, memo);
            dst.push(ExprNode::Binary(op, a, b), ty, span)
        }
        ExprNode::Call(f, args) => {
            let args = args.iter().map(|a| sub(*a, dst, memo)).collect();
            dst.push(ExprNode::Call(f, args), ty, span)
        }
        ExprNode::Extract(v, k) => {
            let v = sub(v, dst, memo);
            let k = sub(k, dst, memo);
            dst.push(ExprNode::Extract(v, k), ty, span)
        }
        other => dst.push(other, ty, span),
    };
    memo[id.index()] = Some(new);
    new
}
