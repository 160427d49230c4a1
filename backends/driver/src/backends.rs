//! The three back ends as [`Backend`]s: each wraps its crate's entry points (tiling and code
//! generation) and keeps its target and options.

use crate::Backend;
use attnc_cpu::{CodegenError, CpuKernel};
use attnc_ir::{Bindings, Graph};
use attnc_passes::fusion::FusedProgram;
use attnc_passes::tiling::target::{CpuTarget, Target};
use attnc_passes::tiling::{TiledProgram, TilingError};

/// The host back end: kernels JIT-compiled for this process (`attnc run --device cpu`, `bench`).
pub struct Cpu {
    target: Target,
    /// Run a recurrence as the sequential scan even where its chunked form applies.
    pub scan: bool,
}

impl Cpu {
    /// For this machine, as `attnc run --device cpu` compiles.
    pub fn host() -> Self {
        Cpu::new(CpuTarget::host())
    }

    /// For a CPU target: tiled by its parameters, code generated for its LLVM CPU model (an
    /// AVX2 preset builds AVX2 code on an AVX-512 host), run on this machine.
    pub fn new(target: CpuTarget) -> Self {
        Cpu {
            target: Target::Cpu(target),
            scan: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error(transparent)]
    Tiling(#[from] TilingError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
}

impl CpuError {
    /// Whether the error is a construct the backend does not lower yet (a limitation it names)
    /// rather than a compiler bug.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, CpuError::Codegen(CodegenError::Unsupported(_)))
    }
}

impl Backend for Cpu {
    type Build = CpuKernel;
    type Error = CpuError;

    fn target(&self) -> &Target {
        &self.target
    }

    fn tile(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        given: Option<&Bindings>,
    ) -> Result<TiledProgram, CpuError> {
        Ok(attnc_passes::tiling::tile(
            graph,
            fused,
            &self.target,
            given,
        )?)
    }

    fn generate(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        tiled: &TiledProgram,
    ) -> Result<CpuKernel, CpuError> {
        Ok(CpuKernel::compile_as(graph, fused, tiled, self.scan)?)
    }
}

/// The CUDA back end: PTX through NVPTX, tiled to fit the exact shared-memory layout it writes.
pub struct Cuda {
    target: Target,
    /// Run a recurrence as the sequential scan even where its chunked form applies.
    pub scan: bool,
}

impl Cuda {
    pub fn new(target: Target) -> Self {
        Cuda {
            target,
            scan: false,
        }
    }
}

impl Backend for Cuda {
    type Build = attnc_nvptx::GpuBuild;
    type Error = attnc_nvptx::NvptxError;

    fn target(&self) -> &Target {
        &self.target
    }

    fn tile(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        given: Option<&Bindings>,
    ) -> Result<TiledProgram, Self::Error> {
        let mut tiled = attnc_nvptx::fit(graph, fused, &self.target, given)?;
        if self.scan {
            tiled.scan_recurrences("--scan forces the scan");
        }
        Ok(tiled)
    }

    fn generate(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        tiled: &TiledProgram,
    ) -> Result<Self::Build, Self::Error> {
        attnc_nvptx::compile(graph, fused, tiled)
    }
}

/// The Vulkan back end: one SPIR-V compute shader, with the device-dependent [`Options`].
///
/// [`Options`]: attnc_spirv::Options
pub struct Vulkan {
    target: Target,
    pub options: attnc_spirv::Options,
}

impl Vulkan {
    pub fn new(target: Target, options: attnc_spirv::Options) -> Self {
        Vulkan { target, options }
    }
}

impl Backend for Vulkan {
    type Build = attnc_spirv::SpirvBuild;
    type Error = attnc_spirv::SpirvError;

    fn target(&self) -> &Target {
        &self.target
    }

    fn tile(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        given: Option<&Bindings>,
    ) -> Result<TiledProgram, Self::Error> {
        let mut tiled = attnc_spirv::tile(graph, fused, &self.target, given)?;
        if !self.options.chunk_recurrences {
            tiled.scan_recurrences(
                "the SPIR-V back end's chunked form is opt-in (Options::chunk_recurrences): it goes wrong at long S on lavapipe",
            );
        }
        Ok(tiled)
    }

    fn generate(
        &self,
        graph: &Graph,
        fused: &FusedProgram,
        tiled: &TiledProgram,
    ) -> Result<Self::Build, Self::Error> {
        attnc_spirv::compile_with(graph, fused, tiled, self.options)
    }
}
