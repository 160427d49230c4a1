//! The `tiled` dump (`attnc build --emit tiled`): the loop nest of each kernel with its tile sizes,
//! the placement of each buffer, the tiles the mask lets through and the predicted time.

use super::cost_model::RegisterBlock;
use super::{Place, TiledBody, TiledProgram};
use std::fmt::Write;

pub fn dump_tiled(program: &TiledProgram) -> String {
    let mut out = String::new();
    let dims: Vec<String> = program
        .dims
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(out, "target {}", program.target);
    let _ = writeln!(
        out,
        "dims {}{}",
        dims.join(", "),
        if program.nominal {
            " (nominal: pass --shape to tile for yours)"
        } else {
            ""
        }
    );
    for k in &program.kernels {
        match &k.body {
            TiledBody::Parallel {
                problem,
                choice,
                tiles,
                buffers,
            } => {
                let (bq, bk) = (choice.query_tile, choice.key_tile);
                let _ = writeln!(out, "kernel {}: query tile {bq}, key tile {bk}", k.name);
                let _ = writeln!(
                    out,
                    "  parallel for (b, h, query tile) in {} x {}: one work item per core at a time",
                    problem.slices,
                    problem.queries.div_ceil(bq)
                );
                let _ = writeln!(
                    out,
                    "    load the query tile, compute its query-side values"
                );
                let _ = writeln!(out, "    for sweep in 0..{}:", problem.sweeps);
                let _ = writeln!(
                    out,
                    "      for key tile in 0..{} not skipped by the tile rule:",
                    problem.keys.div_ceil(bk)
                );
                let _ = writeln!(
                    out,
                    "        load the key and value tiles, compute their key-side values"
                );
                let _ = writeln!(
                    out,
                    "        pair tile = query tile x key tile^T ({bq} x {bk} x {}), then the pair values and the mask",
                    problem.d_qk
                );
                let _ = writeln!(out, "          {}", block_text(choice.score_block));
                let _ = writeln!(
                    out,
                    "        update the running statistics and rescale and accumulate the online terms"
                );
                let _ = writeln!(
                    out,
                    "          accumulators += weights x value rows: {}",
                    block_text(choice.aggregate_block)
                );
                let _ = writeln!(
                    out,
                    "    finish the rows (epilogue) and store the output tile"
                );
                let visited = tiles.total - tiles.skipped;
                let _ = writeln!(
                    out,
                    "  tiles per (b, h): {visited} of {} visited ({:.1}%), {} of them without a per-element mask",
                    tiles.total,
                    100.0 * visited as f64 / tiles.total.max(1) as f64,
                    tiles.full
                );
                for b in buffers {
                    let _ = writeln!(
                        out,
                        "  buffer {:<20} {:<30} in {}",
                        b.name,
                        b.shape,
                        place(b.place)
                    );
                }
                let _ = writeln!(
                    out,
                    "  working set {} bytes per work item; predicted {:.3} ms",
                    choice.working_set,
                    choice.predicted_seconds * 1e3
                );
            }
            TiledBody::Recurrent {
                chunk,
                state_bytes,
                place: p,
            } => {
                match chunk {
                    Some(c) => {
                        let _ = writeln!(out, "kernel {}: chunks of {c} steps", k.name);
                        let _ = writeln!(
                            out,
                            "  parallel for (b, h): one work item per core at a time"
                        );
                        let _ = writeln!(out, "    for chunk in t / {c}:");
                        let _ = writeln!(
                            out,
                            "      within the chunk: pair block ({c} x {c}) of the read-outs with the decay between steps"
                        );
                        let _ = writeln!(
                            out,
                            "      across chunks: read out the carried states, then advance them by the chunk"
                        );
                    }
                    None => {
                        let _ = writeln!(out, "kernel {}: step by step", k.name);
                        let _ = writeln!(
                            out,
                            "  parallel for (b, h): one work item per core at a time"
                        );
                        let _ =
                            writeln!(out, "    for t in order: update the states, read them out");
                    }
                }
                let _ = writeln!(
                    out,
                    "  buffer {:<20} {:<30} in {}",
                    "states",
                    format!("{state_bytes} bytes per (b, h)"),
                    place(*p)
                );
            }
        }
    }
    out
}

fn place(p: Place) -> &'static str {
    match p {
        Place::Registers => "registers",
        Place::L1 => "L1",
        Place::L2 => "L2",
        Place::Memory => "memory",
    }
}

/// How a contraction is computed: its register block, or why it has none.
fn block_text(block: Option<RegisterBlock>) -> String {
    match block {
        Some(b) => format!(
            "register block {} rows x {} (accumulators: {} vectors of {} f32)",
            b.rows,
            b.width(),
            b.rows * b.vectors,
            b.lanes
        ),
        None => "no register block (not a whole number of vectors): scalar loops".to_string(),
    }
}
