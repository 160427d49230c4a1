//! The `tiled` dump (`attnc build --emit tiled`): the loop nest of each kernel with its tile sizes,
//! the placement of each buffer, the tiles the mask lets through and the predicted time.

use super::cost_model::RegisterBlock;
use super::{Instruction, Mapping, ParallelTiling, Place, Role, TiledBody, TiledProgram};
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
            TiledBody::Parallel(t) => match t.mapping {
                Mapping::Cores { .. } => cpu_parallel(&mut out, &k.name, t),
                Mapping::Blocks { .. } => gpu_parallel(&mut out, &k.name, t),
            },
            TiledBody::Recurrent {
                chunk,
                why_scan,
                delta_rule,
                state_bytes,
                place: p,
            } => {
                match chunk {
                    Some(c) => {
                        let _ = writeln!(out, "kernel {}: chunks of {c} steps", k.name);
                        let _ = match program.target {
                            super::target::Target::Gpu(_) => writeln!(
                                out,
                                "  a block per (b, h) and slice of value columns, the states' slices in its shared memory; the chunk's products on the matrix units"
                            ),
                            super::target::Target::Cpu(_) => writeln!(
                                out,
                                "  parallel for (b, h): one work item per core at a time"
                            ),
                        };
                        let _ = writeln!(out, "    for chunk in t / {c}:");
                        let _ = writeln!(
                            out,
                            "      per step of the chunk: the decay, the read-out rows and the terms' vectors"
                        );
                        let _ = writeln!(
                            out,
                            "      decay between steps: running products over the chunk ({c} x {c}, per row for a diagonal)"
                        );
                        if *delta_rule {
                            let _ = writeln!(
                                out,
                                "      delta rule: the corrected values u_t by forward substitution over the chunk (the UT transform), then a term outer(k_t, u_t)"
                            );
                        }
                        let _ = writeln!(
                            out,
                            "      within the chunk: (read-out rows . left vectors, masked s <= t, times the decay) @ right vectors"
                        );
                        let _ = writeln!(
                            out,
                            "      across chunks: read-out rows times the decay since the chunk began @ the carried states"
                        );
                        let _ = writeln!(
                            out,
                            "      state passing: states = total decay * states + sum over the chunk of decay to its end * terms"
                        );
                    }
                    None => {
                        let _ = writeln!(out, "kernel {}: step by step", k.name);
                        if let Some(why) = why_scan {
                            let _ = writeln!(out, "  no chunked form: {why}");
                        }
                        let _ = match program.target {
                            super::target::Target::Gpu(_) => writeln!(
                                out,
                                "  a block per (b, h) and slice of value columns: a few threads per column of the matrix states (its rows split between their registers), the other states in shared memory"
                            ),
                            super::target::Target::Cpu(_) => writeln!(
                                out,
                                "  parallel for (b, h): one work item per core at a time"
                            ),
                        };
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

fn cpu_parallel(out: &mut String, name: &str, t: &ParallelTiling) {
    let (bq, bk) = (t.query_tile, t.key_tile);
    let problem = &t.problem;
    let _ = writeln!(out, "kernel {name}: query tile {bq}, key tile {bk}");
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
    let _ = writeln!(
        out,
        "          {}",
        block_text(t.register_block(Role::Score))
    );
    let _ = writeln!(
        out,
        "        update the running statistics and rescale and accumulate the online terms"
    );
    let _ = writeln!(
        out,
        "          accumulators += weights x value rows: {}",
        block_text(t.register_block(Role::Aggregate))
    );
    let _ = writeln!(
        out,
        "    finish the rows (epilogue) and store the output tile"
    );
    tiles_and_buffers(out, t);
    let _ = writeln!(
        out,
        "  working set {} bytes per work item; predicted {:.3} ms",
        t.working_set,
        t.predicted_seconds * 1e3
    );
}

fn gpu_parallel(out: &mut String, name: &str, t: &ParallelTiling) {
    let Mapping::Blocks {
        warps,
        threads,
        stages,
        shared_bytes,
        registers_per_thread,
        query_in_registers,
    } = t.mapping
    else {
        return;
    };
    let (bq, bk) = (t.query_tile, t.key_tile);
    let problem = &t.problem;
    let _ = writeln!(
        out,
        "kernel {name}: query tile {bq}, key tile {bk}, {warps} warps ({threads} threads), {stages} stages"
    );
    let _ = writeln!(
        out,
        "  grid: (query tiles, h, b) = ({}, ...) blocks; each warp owns 16 query rows",
        problem.queries.div_ceil(bq)
    );
    let _ = writeln!(
        out,
        "    copy the query tile to shared memory, compute its query-side values{}",
        if query_in_registers {
            "; score fragments of the query tile stay in registers"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "    for sweep in 0..{}:", problem.sweeps);
    let _ = writeln!(
        out,
        "      for key tile in 0..{} not skipped by the tile rule (evaluated in the kernel):",
        problem.keys.div_ceil(bk)
    );
    let _ = writeln!(
        out,
        "        the next key and value tiles copy asynchronously into shared memory ({stages} stages)"
    );
    for c in &t.contractions {
        let what = match c.role {
            Role::Score => "scores = query tile x key tile^T",
            Role::Aggregate => "accumulators += weights x value tile",
        };
        let _ = writeln!(
            out,
            "        {what} ({} x {} x {}, {} operands, {} accumulators): {}",
            c.m,
            c.n,
            c.k,
            c.operand,
            c.accumulator,
            instruction_text(c.instruction)
        );
    }
    let _ = writeln!(
        out,
        "        pair values, mask and online statistics on the score fragments; row reductions across each quad of lanes by warp shuffles"
    );
    let _ = writeln!(
        out,
        "    accumulators to shared memory, then the epilogue per (row, feature) and coalesced output stores"
    );
    tiles_and_buffers(out, t);
    let _ = writeln!(
        out,
        "  shared memory {shared_bytes} bytes per block, about {registers_per_thread} registers per thread; predicted {:.3} ms",
        t.predicted_seconds * 1e3
    );
}

fn tiles_and_buffers(out: &mut String, t: &ParallelTiling) {
    let tiles = &t.tiles;
    let visited = tiles.total - tiles.skipped;
    let _ = writeln!(
        out,
        "  tiles per (b, h): {visited} of {} visited ({:.1}%), {} of them without a per-element mask",
        tiles.total,
        100.0 * visited as f64 / tiles.total.max(1) as f64,
        tiles.full
    );
    for b in &t.buffers {
        let _ = writeln!(
            out,
            "  buffer {:<20} {:<30} in {}",
            b.name,
            b.shape,
            place(b.place)
        );
    }
}

fn instruction_text(i: Instruction) -> String {
    match i {
        Instruction::Matrix(m) => format!(
            "matrix unit {}x{}x{} {}{} -> {}",
            m.m,
            m.n,
            m.k,
            m.operand,
            if m.tf32 { " (as tf32)" } else { "" },
            m.accumulator
        ),
        Instruction::Warpgroup(m) => format!(
            "wgmma {}x{}x{} {} -> {} per warpgroup, from shared memory",
            m.m, m.n, m.k, m.operand, m.accumulator
        ),
        Instruction::ThreadFma => "FMAs per thread (no matrix unit for these operands)".into(),
        Instruction::VectorFma(b) => block_text(Some(b)),
        Instruction::ScalarLoops => block_text(None),
    }
}

fn place(p: Place) -> &'static str {
    match p {
        Place::Registers => "registers",
        Place::L1 => "L1",
        Place::L2 => "L2",
        Place::Shared => "shared memory",
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
