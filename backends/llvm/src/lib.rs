//! The LLVM edge of attnc: LLVM IR text (from MLIR's translation) in, PTX out.
//!
//! inkwell drives LLVM's own NVPTX target machine: the module is parsed, given the target's
//! triple and data layout, optimised with LLVM's `default<O3>` pipeline (MLIR's translation
//! emits unoptimised IR), and compiled to PTX assembly. LLVM links statically, the same copy
//! MLIR's C API uses (no `*-force-dynamic` feature), so one process holds one LLVM.

use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetTriple,
};
use std::sync::Once;

#[derive(Debug, thiserror::Error)]
pub enum LlvmError {
    #[error("LLVM cannot parse the translated module (a compiler bug): {0}")]
    Parse(String),
    #[error("LLVM has no target machine for {triple} {cpu}: {message}")]
    Target {
        triple: String,
        cpu: String,
        message: String,
    },
    #[error("the LLVM module does not verify (a compiler bug): {0}")]
    Verify(String),
    #[error("LLVM's optimisation pipeline failed: {0}")]
    Optimise(String),
    #[error("LLVM's code generation failed: {0}")]
    Codegen(String),
}

/// A PTX target: the compute capability (`sm_90a`) and the PTX ISA version (`+ptx80`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtxTarget {
    pub cpu: String,
    pub features: String,
}

impl PtxTarget {
    /// `sm` as in `sm_90a`; PTX ISA 8.0 (CUDA 12.0) covers sm_80 through sm_90a.
    pub fn new(sm: &str) -> Self {
        PtxTarget {
            cpu: sm.to_string(),
            features: "+ptx80".to_string(),
        }
    }
}

const NVPTX_TRIPLE: &str = "nvptx64-nvidia-cuda";

fn initialise() {
    static INIT: Once = Once::new();
    INIT.call_once(|| Target::initialize_nvptx(&InitializationConfig::default()));
}

/// Optimises `llvm_ir` and compiles it to PTX text for `target`.
pub fn llvm_ir_to_ptx(llvm_ir: &str, target: &PtxTarget) -> Result<String, LlvmError> {
    initialise();
    let context = Context::create();
    let buffer = MemoryBuffer::create_from_memory_range_copy(llvm_ir.as_bytes(), "kernel");
    let module = context
        .create_module_from_ir(buffer)
        .map_err(|e| LlvmError::Parse(e.to_string()))?;
    let triple = TargetTriple::create(NVPTX_TRIPLE);
    let target_error = |message: String| LlvmError::Target {
        triple: NVPTX_TRIPLE.to_string(),
        cpu: target.cpu.clone(),
        message,
    };
    let llvm_target = Target::from_triple(&triple).map_err(|e| target_error(e.to_string()))?;
    let machine = llvm_target
        .create_target_machine(
            &triple,
            &target.cpu,
            &target.features,
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| target_error("create_target_machine returned nothing".into()))?;
    module.set_triple(&triple);
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module
        .verify()
        .map_err(|e| LlvmError::Verify(e.to_string()))?;
    module
        .run_passes("default<O3>", &machine, PassBuilderOptions::create())
        .map_err(|e| LlvmError::Optimise(e.to_string()))?;
    let ptx = machine
        .write_to_memory_buffer(&module, FileType::Assembly)
        .map_err(|e| LlvmError::Codegen(e.to_string()))?;
    Ok(String::from_utf8_lossy(ptx.as_slice()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel in LLVM IR as MLIR's NVVM translation writes it: `y[tid] = 2 * x[tid]`.
    const SCALE: &str = r#"
define ptx_kernel void @scale(ptr addrspace(1) %x, ptr addrspace(1) %y) {
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %i = zext i32 %tid to i64
  %px = getelementptr float, ptr addrspace(1) %x, i64 %i
  %v = load float, ptr addrspace(1) %px
  %w = fmul float %v, 2.0
  %py = getelementptr float, ptr addrspace(1) %y, i64 %i
  store float %w, ptr addrspace(1) %py
  ret void
}
declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
"#;

    #[test]
    fn llvm_ir_compiles_to_ptx_for_hopper_and_ampere() {
        for sm in ["sm_90a", "sm_80"] {
            let ptx = llvm_ir_to_ptx(SCALE, &PtxTarget::new(sm)).expect("compiles");
            assert!(ptx.contains(&format!(".target {sm}")), "{ptx}");
            assert!(ptx.contains(".entry scale"), "{ptx}");
            assert!(
                ptx.contains("ld.global") && ptx.contains("st.global"),
                "{ptx}"
            );
        }
    }

    #[test]
    fn broken_ir_is_an_error_not_a_crash() {
        let err = llvm_ir_to_ptx("define void @f( {", &PtxTarget::new("sm_90a")).unwrap_err();
        assert!(matches!(err, LlvmError::Parse(_)), "{err}");
    }
}
