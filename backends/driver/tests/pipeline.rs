//! The driver's pipeline: its stages in order, where it stops, and each back end's build from
//! the same sequence (the CPU's checked against the reference).

use attnc_driver::{Backend, Observer, Until};
use attnc_frontend::Sources;
use attnc_ir::{Bindings, Graph};
use attnc_passes::fusion::FusedProgram;
use attnc_passes::pass_manager::Timing;
use attnc_passes::tiling::TiledProgram;
use attnc_passes::tiling::target::{CpuTarget, Target};
use std::collections::BTreeMap;

fn example(name: &str) -> Graph {
    let path = format!("{}/../../examples/{name}.attn", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the example is there");
    let mut sources = Sources::new();
    let file = sources.add(path, text);
    attnc_frontend::compile_to_graph(&mut sources, file)
        .unwrap_or_else(|d| panic!("{}", attnc_frontend::render_all(&d, &sources)))
}

fn bindings(graph: &Graph, dims: &[(&str, i64)]) -> Bindings {
    let fixed: BTreeMap<String, i64> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    attnc_ir::bind_dims(graph, &fixed, &BTreeMap::new()).expect("dims bind")
}

/// Records what the driver shows it, in order.
#[derive(Default)]
struct Log(Vec<String>);

impl Observer for Log {
    fn after_pass(&mut self, pass: &str, _changed: bool, _graph: &Graph) {
        self.0.push(format!("pass {pass}"));
    }
    fn passes_done(&mut self, _graph: &Graph, timings: Vec<Timing>) {
        self.0
            .push(format!("passes done ({} timed)", timings.len()));
    }
    fn fused(&mut self, _graph: &Graph, fused: &FusedProgram) {
        self.0.push(format!("fused {}", fused.kernels.len()));
    }
    fn tiled(&mut self, tiled: &TiledProgram) {
        self.0.push(format!("tiled for {}", tiled.target));
    }
}

#[test]
fn stages_come_in_order_and_the_driver_stops_where_asked() {
    let graph = example("softmax_causal");
    let backend = attnc_driver::Cpu::new(CpuTarget::xeon_avx512_2core());
    let mut log = Log::default();
    let fused_only = attnc_driver::compile(&backend, &graph, None, Until::Fused, &mut log)
        .expect("compiles to the fused stage");
    assert!(fused_only.fused.is_some());
    assert!(fused_only.tiled.is_none() && fused_only.build.is_none());
    let passes = log.0.iter().filter(|l| l.starts_with("pass ")).count();
    assert!(passes >= 2, "{:?}", log.0);
    assert_eq!(
        &log.0[passes..],
        [
            format!("passes done ({passes} timed)"),
            "fused 1".to_string()
        ],
        "{:?}",
        log.0
    );

    let mut log = Log::default();
    let graph_only = attnc_driver::compile(&backend, &graph, None, Until::Graph, &mut log)
        .expect("runs the passes");
    assert!(graph_only.fused.is_none());
    assert!(log.0.last().is_some_and(|l| l.starts_with("passes done")));

    let mut log = Log::default();
    let tiled =
        attnc_driver::compile(&backend, &graph, None, Until::Tiled, &mut log).expect("tiles");
    assert!(tiled.tiled.is_some() && tiled.build.is_none());
    assert_eq!(
        log.0.last().map(String::as_str),
        Some(format!("tiled for {}", backend.target()).as_str())
    );
}

#[test]
fn the_cpu_build_matches_the_reference() {
    let graph = example("softmax_causal");
    let b = bindings(&graph, &[("B", 1), ("H", 2), ("S", 40), ("D", 16)]);
    let host = attnc_reference::random_inputs(&graph, &b, 7).expect("inputs");
    let inputs = attnc_reference::to_f64_tensors(&host);
    let want = attnc_reference::interpret(&graph, &b, &inputs).expect("the reference runs");
    let kernel = attnc_driver::build(&attnc_driver::Cpu::host(), &graph, Some(&b))
        .expect("compiles for the host");
    let arrays = inputs
        .iter()
        .map(|(n, t)| (n.clone(), (t.shape.clone(), t.data.clone())))
        .collect();
    let got = kernel.run(&b, &arrays).expect("runs");
    let (o, want) = want.iter().next().expect("one output");
    let scale = want.data.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let worst = got[o]
        .1
        .iter()
        .zip(&want.data)
        .map(|(a, w)| (a - w).abs() / scale)
        .fold(0.0f64, f64::max);
    assert!(worst < 1e-5, "largest relative difference {worst:e}");
}

#[test]
fn the_gpu_back_ends_build_from_the_same_pipeline() {
    let graph = example("softmax_causal");
    let b = bindings(&graph, &[("B", 1), ("H", 2), ("S", 128), ("D", 64)]);
    let cuda = attnc_driver::Cuda::new(Target::preset("cuda:sm_80").expect("preset"));
    let build = attnc_driver::build(&cuda, &graph, Some(&b)).expect("compiles to PTX");
    assert!(build.ptx.contains(".entry"), "no kernel entry in the PTX");
    let vulkan = attnc_driver::Vulkan::new(
        Target::preset("vulkan").expect("preset"),
        attnc_spirv::Options::default(),
    );
    let build = attnc_driver::build(&vulkan, &graph, Some(&b)).expect("compiles to SPIR-V");
    assert!(build.disassembly.contains("OpEntryPoint"), "no entry point");
}

/// A tiling refusal comes back as the driver's tiling stage, with the tiler's typed error.
#[test]
fn a_refusal_of_the_tiler_is_the_tiling_stage() {
    let graph = example("softmax_full");
    let b = bindings(&graph, &[("B", 1), ("H", 1), ("S", 64), ("D", 1_000_000)]);
    let backend = attnc_driver::Cpu::new(CpuTarget::xeon_avx512_2core());
    match attnc_driver::build(&backend, &graph, Some(&b)) {
        Err(attnc_driver::DriverError::Tiling(attnc_driver::CpuError::Tiling(e))) => {
            assert!(e.span().is_some() && !e.is_internal(), "{e}");
        }
        Err(e) => panic!("not a tiling refusal: {e}"),
        Ok(_) => panic!("a head dim of a million tiled"),
    }
}
