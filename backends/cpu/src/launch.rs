//! Compiling a fused, tiled kernel for the host and running it: MLIR text through MLIR's CPU
//! pipeline and the JIT once, then one call per (b, h, query tile) work item on all cores.

use crate::parallel;
use crate::parallel::index_guard::STATUS_LEN;
use crate::{CodegenError, Layout};
use attnc_ir::bind::Bindings;
use attnc_ir::graph::{Graph, Op};
use attnc_ir::types::FrameIndex;
use attnc_mlir::{Arg, CPU_LOWERING_PIPELINE, HostJit, JitOptions, KernelSignature, MlirSession};
use attnc_passes::fusion::tile_rule::{Coverage, key_tile_coverage, mask_tree};
use attnc_passes::fusion::tree::Tree;
use attnc_passes::fusion::{FusedProgram, Template};
use attnc_passes::tiling::target::Target;
use attnc_passes::tiling::{Role, TiledBody, TiledProgram};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A dense row-major array: its shape and its values.
pub type Array = (Vec<usize>, Vec<f64>);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("input `{0}` was not given")]
    MissingInput(String),
    #[error("input `{name}` has shape {given:?}; the bound dims make it {expected:?}")]
    Shape {
        name: String,
        given: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{0}")]
    Dims(String),
    #[error("kernel call failed: {0}")]
    Call(#[from] attnc_mlir::MlirError),
    /// A computed index outside its axis, in the reference interpreter's words.
    #[error("{0}")]
    Index(String),
}

/// A kernel compiled for this machine.
pub struct CpuKernel {
    graph: Graph,
    /// The dims the code was specialised for (empty for a shape-generic kernel).
    specialised: BTreeMap<String, i64>,
    layout: Layout,
    jit: HostJit,
    mlir: String,
    llvm_ir: String,
    /// The chunked form the tiling chose for a recurrence (kept when `--scan` runs it as a
    /// scan), so its work is counted the same either way.
    pub(crate) chunked_work: Option<ChunkedWork>,
}

/// A recurrence's chunked form and chunk length, for [`attnc_passes::fusion::chunked::flops`].
#[derive(Clone, Debug)]
pub(crate) struct ChunkedWork {
    recurrence: petgraph::stable_graph::NodeIndex,
    form: attnc_passes::fusion::chunked::ChunkedForm,
    chunk: usize,
}

/// The chunked form of the program's recurrence and the chunk the tiling chose, if it has both.
pub(crate) fn chunked_work(fused: &FusedProgram, tiled: &TiledProgram) -> Option<ChunkedWork> {
    let (kernel, tiles) = (fused.kernels.first()?, tiled.kernels.first()?);
    match (&kernel.template, &tiles.body) {
        (Template::Recurrent(r), TiledBody::Recurrent { chunk: Some(c), .. }) => {
            Some(ChunkedWork {
                recurrence: r.recurrence,
                form: r.chunked.as_ref().ok()?.clone(),
                chunk: *c,
            })
        }
        _ => None,
    }
}

/// The kernel as MLIR text (`--emit mlir`), its launch signature and host layout.
pub fn generate_mlir(
    graph: &Graph,
    fused: &FusedProgram,
    tiled: &TiledProgram,
) -> Result<(String, KernelSignature, Layout), CodegenError> {
    let (Some(kernel), Some(tiles)) = (fused.kernels.first(), tiled.kernels.first()) else {
        return Err(CodegenError::Internal("no kernel to compile".into()));
    };
    let constants = specialised_dims(tiled);
    let plan = match &kernel.template {
        Template::Parallel(plan) => plan,
        Template::Recurrent(r) => {
            // The chunked form where fusion derived one and the tiling chose its chunk size.
            let chunk = match &tiles.body {
                TiledBody::Recurrent { chunk, .. } => *chunk,
                TiledBody::Parallel(_) => None,
            };
            let lanes = match &tiled.target {
                attnc_passes::tiling::target::Target::Cpu(cpu) => cpu.f32_lanes,
                attnc_passes::tiling::target::Target::Gpu(_) => 1,
            };
            let (function, signature, layout) = match (&r.chunked, chunk) {
                (Ok(form), Some(c)) => {
                    crate::chunked::generate(graph, r, form, c.max(1), lanes, &constants)?
                }
                _ => crate::recurrent::generate(graph, r, &constants)?,
            };
            return Ok((format!("module {{\n{function}}}\n"), signature, layout));
        }
    };
    let TiledBody::Parallel(tiling) = &tiles.body else {
        return Err(CodegenError::Internal(
            "a parallel kernel tiled as a recurrence".into(),
        ));
    };
    let attnc_passes::tiling::target::Target::Cpu(cpu) = &tiled.target else {
        return Err(CodegenError::Internal(format!(
            "the CPU backend was given a kernel tiled for {}",
            tiled.target
        )));
    };
    let blocks = parallel::Blocks {
        score: tiling.register_block(Role::Score),
        aggregate: tiling.register_block(Role::Aggregate),
        lanes: cpu.f32_lanes,
    };
    let (function, signature, layout) = parallel::generate(
        graph,
        plan,
        tiling.query_tile,
        tiling.key_tile,
        blocks,
        &constants,
    )?;
    Ok((format!("module {{\n{function}}}\n"), signature, layout))
}

/// Tiled for given dims: the kernel is specialised for them. Nominal dims stay parameters.
fn specialised_dims(tiled: &TiledProgram) -> BTreeMap<String, i64> {
    if tiled.nominal {
        BTreeMap::new()
    } else {
        tiled.dims.clone()
    }
}

/// The kernel's MLIR lowered by MLIR's CPU pipeline and translated to LLVM IR (`--emit llvm`),
/// its functions marked for the target's CPU model where it names one.
pub fn lower_to_llvm(mlir: &str, target: &Target) -> Result<String, CodegenError> {
    let session = MlirSession::new();
    let mut module = session.parse(mlir)?;
    module.verify()?;
    module.run_pipeline(CPU_LOWERING_PIPELINE)?;
    mark_cpu(&mut module, target)?;
    Ok(module.to_llvm_ir()?)
}

/// Marks the lowered functions with the target's LLVM CPU model (an AVX2 preset on an AVX-512
/// host), so the JIT's vectoriser and code generator use that ISA; the host's otherwise.
fn mark_cpu(module: &mut attnc_mlir::MlirModule, target: &Target) -> Result<(), CodegenError> {
    if let Target::Cpu(cpu) = target
        && let Some(model) = &cpu.llvm_cpu
    {
        module.set_target_cpu(&model.name, &model.features)?;
    }
    Ok(())
}

impl CpuKernel {
    pub fn compile(
        graph: &Graph,
        fused: &FusedProgram,
        tiled: &TiledProgram,
    ) -> Result<CpuKernel, CodegenError> {
        let (mlir, signature, layout) = generate_mlir(graph, fused, tiled)?;
        let specialised = specialised_dims(tiled);
        let session = MlirSession::new();
        let mut module = session.parse(&mlir)?;
        module.verify()?;
        module.run_pipeline(CPU_LOWERING_PIPELINE)?;
        mark_cpu(&mut module, &tiled.target)?;
        let llvm_ir = module.to_llvm_ir()?;
        let jit = HostJit::compile(
            &module,
            std::slice::from_ref(&signature),
            JitOptions::default(),
        )?;
        Ok(CpuKernel {
            graph: graph.clone(),
            specialised,
            layout,
            jit,
            mlir,
            llvm_ir,
            chunked_work: chunked_work(fused, tiled),
        })
    }

    /// As [`CpuKernel::compile`]; with `scan`, a recurrence runs as the sequential scan even
    /// where the tiling chose its chunked form (to time one against the other), and its work is
    /// still counted as the chunked form's.
    pub fn compile_as(
        graph: &Graph,
        fused: &FusedProgram,
        tiled: &TiledProgram,
        scan: bool,
    ) -> Result<CpuKernel, CodegenError> {
        if !scan {
            return Self::compile(graph, fused, tiled);
        }
        let work = chunked_work(fused, tiled);
        let mut scanned = tiled.clone();
        for k in &mut scanned.kernels {
            if let TiledBody::Recurrent { chunk, .. } = &mut k.body {
                *chunk = None;
            }
        }
        let mut kernel = Self::compile(graph, fused, &scanned)?;
        kernel.chunked_work = work;
        Ok(kernel)
    }

    /// The steps per chunk the tiling chose for this kernel's recurrence (also under `--scan`),
    /// if it has a chunked form.
    pub fn chunk(&self) -> Option<usize> {
        self.chunked_work.as_ref().map(|w| w.chunk)
    }

    /// The FLOPs of the chunked form of this kernel's recurrence at `bindings`
    /// ([`attnc_passes::fusion::chunked::flops`]); `None` for a parallel kernel or a
    /// recurrence with no chunked form.
    pub fn chunked_flops(&self, bindings: &Bindings) -> Option<Result<f64, String>> {
        let w = self.chunked_work.as_ref()?;
        Some(attnc_passes::fusion::chunked::flops(
            &self.graph,
            w.recurrence,
            &w.form,
            w.chunk,
            bindings,
        ))
    }

    /// The kernel in MLIR, before MLIR's passes (`--emit mlir`).
    pub fn mlir(&self) -> &str {
        &self.mlir
    }

    /// The kernel in LLVM IR, from MLIR's translation (`--emit llvm`).
    pub fn llvm_ir(&self) -> &str {
        &self.llvm_ir
    }

    pub fn signature(&self) -> Result<&KernelSignature, CodegenError> {
        Ok(self.jit.kernel(self.layout.entry)?.signature())
    }

    /// Runs on `inputs` (by name) under `bindings`; outputs start as NaN, so an element no work
    /// item wrote stays visible.
    pub fn run(
        &self,
        bindings: &Bindings,
        inputs: &BTreeMap<String, Array>,
    ) -> Result<BTreeMap<String, Array>, RunError> {
        let g = &self.graph;
        for (name, v) in &self.specialised {
            if bindings.dims.get(name) != Some(v) {
                return Err(RunError::Dims(format!(
                    "the kernel was compiled for {name}={v}, the call binds {name}={}",
                    bindings
                        .dims
                        .get(name)
                        .map_or("nothing".to_string(), |x| x.to_string())
                )));
            }
        }
        let shape = |dims: &[attnc_ir::types::Dim]| {
            bindings
                .shape(dims)
                .map_err(|e| RunError::Dims(format!("{e:?}")))
        };
        let mut floats: Vec<Vec<f32>> = Vec::new();
        let mut ints: Vec<Vec<i32>> = Vec::new();
        let mut lengths = Vec::new();
        for name in &self.layout.inputs {
            let (_, _, ty) = g
                .inputs()
                .into_iter()
                .find(|(_, n, _)| n == name)
                .ok_or_else(|| RunError::MissingInput(name.clone()))?;
            let (given, data) = inputs
                .get(name)
                .ok_or_else(|| RunError::MissingInput(name.clone()))?;
            let expected = shape(&ty.dims)?;
            if *given != expected || data.len() != expected.iter().product::<usize>() {
                return Err(RunError::Shape {
                    name: name.clone(),
                    given: given.clone(),
                    expected,
                });
            }
            lengths.push(data.len() as i64);
            // Converted on all cores: for a large input this copy is a tenth of the call.
            if self.layout.int_inputs.contains(name) {
                ints.push(data.par_iter().map(|x| *x as i32).collect());
                floats.push(Vec::new());
            } else {
                floats.push(data.par_iter().map(|x| *x as f32).collect());
                ints.push(Vec::new());
            }
        }
        let extent = |fi| {
            if g.extents.contains_key(&fi) {
                bindings.extent(g, fi)
            } else {
                1
            }
        };
        // A parallel kernel's work item is a query tile; a scan's is the whole sequence of steps.
        let scan = self.layout.scan;
        let (row_index, n_rows) = if scan {
            (FrameIndex::T, extent(FrameIndex::T))
        } else {
            (FrameIndex::I, extent(FrameIndex::I))
        };
        let tile_rows = if scan { n_rows } else { self.layout.query_tile };
        let n_j = extent(FrameIndex::J);
        let key_tiles = if scan {
            0
        } else {
            n_j.div_ceil(self.layout.key_tile)
        };
        let mut out_shapes = Vec::new();
        let mut row_lens = Vec::new();
        for o in &self.layout.outputs {
            let s = shape(&o.dims)?;
            row_lens.push(if o.axes.len() < o.dims.len() {
                *s.last().unwrap_or(&1)
            } else {
                1
            });
            out_shapes.push(s);
        }
        let dims: Vec<i64> = self
            .layout
            .dims
            .iter()
            .map(|d| bindings.dims.get(d).copied().unwrap_or(0))
            .collect();
        let tiles_per_slice = n_rows.div_ceil(tile_rows.max(1));
        let items: Vec<(usize, usize, usize)> = (0..extent(FrameIndex::B))
            .flat_map(|b| {
                (0..extent(FrameIndex::H))
                    .flat_map(move |h| (0..tiles_per_slice).map(move |q| (b, h, q)))
            })
            .collect();
        let kernel = self.jit.kernel(self.layout.entry)?;
        // The JIT engine is not shared with the workers: only the reentrant kernel is.
        let layout = &self.layout;
        let mask = layout.mask.map(|m| mask_tree(g, m));
        let tiles: Vec<(Vec<Vec<f32>>, Vec<i32>)> = items
            .par_iter()
            .map(|&(b, h, qt)| {
                let cov = if scan {
                    Vec::new()
                } else {
                    coverage_codes(
                        g,
                        mask.as_ref(),
                        layout,
                        bindings,
                        (b, h, qt),
                        n_rows,
                        n_j,
                        key_tiles,
                    )
                };
                let mut outs: Vec<Vec<f32>> = row_lens
                    .iter()
                    .map(|f| vec![f32::NAN; tile_rows * f])
                    .collect();
                let mut args: Vec<Arg> = Vec::new();
                for (k, name) in layout.inputs.iter().enumerate() {
                    if layout.int_inputs.contains(name) {
                        args.push(Arg::input(&ints[k]));
                    } else {
                        args.push(Arg::input(&floats[k]));
                    }
                }
                let mut status = vec![0i32; STATUS_LEN];
                for o in outs.iter_mut() {
                    args.push(Arg::output(o.as_mut_slice()));
                }
                args.push(Arg::output(status.as_mut_slice()));
                if !scan {
                    args.push(Arg::input(&cov));
                }
                args.extend(lengths.iter().map(|l| Arg::Int(*l)));
                args.extend(row_lens.iter().map(|f| Arg::Int(*f as i64)));
                args.push(Arg::Int(if scan { n_rows } else { key_tiles } as i64));
                args.extend(dims.iter().map(|d| Arg::Int(*d)));
                let work: &[usize] = if scan { &[b, h] } else { &[b, h, qt] };
                args.extend(work.iter().map(|x| Arg::Int(*x as i64)));
                kernel.call(&args)?;
                drop(args);
                Ok((outs, status))
            })
            .collect::<Result<_, RunError>>()?;
        // The first work item, in (b, h, tile) order, that read outside a tensor fails the run.
        if let Some((_, status)) = tiles.iter().find(|(_, s)| s[0] != 0) {
            return Err(RunError::Index(index_message(g, bindings, status)));
        }
        let mut outputs = BTreeMap::new();
        for (k, o) in self.layout.outputs.iter().enumerate() {
            let s = &out_shapes[k];
            let mut data = vec![f64::NAN; s.iter().product()];
            let mut strides = vec![1usize; s.len()];
            for a in (0..s.len().saturating_sub(1)).rev() {
                strides[a] = strides[a + 1] * s[a + 1];
            }
            let f = row_lens[k];
            for (&(b, h, qt), item) in items.iter().zip(&tiles) {
                let rows = tile_rows.min(n_rows - qt * tile_rows);
                for ii in 0..rows {
                    let offset: usize = o
                        .axes
                        .iter()
                        .zip(&strides)
                        .map(|(fi, st)| {
                            st * match fi {
                                FrameIndex::B => b,
                                FrameIndex::H => h,
                                fi if *fi == row_index => qt * tile_rows + ii,
                                _ => 0,
                            }
                        })
                        .sum();
                    for e in 0..f {
                        data[offset + e] = item.0[k][ii * f + e] as f64;
                    }
                }
            }
            outputs.insert(o.name.clone(), (s.clone(), data));
        }
        Ok(outputs)
    }
}

/// The reference interpreter's message for the read a status buffer records.
fn index_message(graph: &Graph, bindings: &Bindings, status: &[i32]) -> String {
    let load = petgraph::stable_graph::NodeIndex::new(status[1].max(0) as usize);
    let axis = status[2].max(0) as usize;
    let input = graph
        .operands(load)
        .first()
        .map(|(v, _)| &graph.node(v.node).op);
    let (name, dim) = match input {
        Some(Op::Input { name, ty, .. }) => (name.clone(), ty.dims.get(axis).cloned()),
        _ => ("?".to_string(), None),
    };
    let size = dim
        .as_ref()
        .and_then(|d| bindings.eval(d).ok())
        .map_or("?".to_string(), |v| v.to_string());
    let dim = dim.map_or("?".to_string(), |d| d.to_string());
    let point: Vec<String> = FrameIndex::ALL
        .iter()
        .zip(&status[4..])
        .map(|(fi, v)| format!("{}={}", fi.name(), (*v).max(0)))
        .collect();
    let coord = status[3];
    let negative = if coord < 0 { " (negative)" } else { "" };
    format!(
        "index out of range: axis {axis} of `{name}` ({dim}) has size {size}, the index is {coord}{negative} at ({})",
        point.join(", ")
    )
}

/// Per key tile of one work item: 0 to skip it, 1 to mask per element, 2 when fully kept.
#[allow(clippy::too_many_arguments)]
fn coverage_codes(
    graph: &Graph,
    mask: Option<&Tree>,
    layout: &Layout,
    bindings: &Bindings,
    (b, h, qt): (usize, usize, usize),
    n_i: usize,
    n_j: usize,
    key_tiles: usize,
) -> Vec<i32> {
    let Some(mask) = mask else {
        return vec![2; key_tiles.max(1)];
    };
    let (bq, bk) = (layout.query_tile, layout.key_tile);
    let i0 = qt * bq;
    let mut codes: Vec<i32> = key_tile_coverage(
        graph,
        mask,
        &bindings.dims,
        (b, h),
        i0..(i0 + bq).min(n_i),
        bk,
        n_j,
    )
    .into_iter()
    .map(Coverage::code)
    .collect();
    debug_assert_eq!(codes.len(), key_tiles);
    if codes.is_empty() {
        codes.push(0);
    }
    codes
}
