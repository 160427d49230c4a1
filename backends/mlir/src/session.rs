//! The MLIR session: the entry of the MLIR edge, where generated MLIR text becomes a module that
//! pass pipelines lower and that translates to LLVM IR.
//!
//! One session owns one MLIR context with every dialect, pass and LLVM translation registered,
//! and a diagnostic handler, so each failure comes back as an [`MlirError`] holding MLIR's own
//! message. A context is single-threaded: compile kernels in parallel with one session per thread.

use crate::{diagnostics::DiagnosticLog, error::MlirError};
use melior::{
    Context,
    dialect::DialectRegistry,
    ir::{
        Attribute, BlockLike, Location, Module, Operation, RegionLike,
        attribute::StringAttribute,
        operation::{OperationLike, OperationMutLike},
    },
    pass::PassManager,
    utility::{
        parse_pass_pipeline, register_all_dialects, register_all_llvm_translations,
        register_all_passes,
    },
};
use mlir_sys::{
    LLVMContextCreate, LLVMContextDispose, LLVMDisposeMessage, LLVMDisposeModule,
    LLVMPrintModuleToString, mlirOperationClone, mlirTranslateModuleToLLVMIR,
};
use std::{
    ffi::CStr,
    fmt::{self, Display, Formatter},
};

/// An MLIR context ready for the compiler's modules.
pub struct MlirSession {
    context: Context,
    diagnostics: DiagnosticLog,
}

impl MlirSession {
    /// Creates a context with all dialects, passes and LLVM translations registered.
    ///
    /// MLIR's own threading is off: the modules are small (a few kernels), and the compiler
    /// parallelises across kernels with one session each, so a thread pool per context would
    /// only oversubscribe the cores.
    pub fn new() -> Self {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        register_all_passes();
        let context = Context::new_with_registry(&registry, false);
        register_all_llvm_translations(&context);
        let diagnostics = DiagnosticLog::default();
        diagnostics.attach(&context);
        Self {
            context,
            diagnostics,
        }
    }

    /// Parses MLIR text into a module; the error holds MLIR's messages with `line:col`.
    pub fn parse(&self, text: &str) -> Result<MlirModule<'_>, MlirError> {
        self.diagnostics.clear();
        match Module::parse(&self.context, text) {
            Some(module) => Ok(MlirModule {
                session: self,
                module,
            }),
            None => Err(MlirError::Parse {
                diagnostics: self.diagnostics.take(),
            }),
        }
    }
}

impl Default for MlirSession {
    fn default() -> Self {
        Self::new()
    }
}

/// A parsed module, tied to the session whose context owns it.
pub struct MlirModule<'s> {
    session: &'s MlirSession,
    module: Module<'s>,
}

impl<'s> MlirModule<'s> {
    /// Checks every op's invariants; a failure is a bug in whatever wrote the module.
    pub fn verify(&self) -> Result<(), MlirError> {
        self.session.diagnostics.clear();
        if self.module.as_operation().verify() {
            Ok(())
        } else {
            Err(MlirError::Verify {
                diagnostics: self.session.diagnostics.take(),
            })
        }
    }

    /// Runs a textual pass pipeline anchored on the module, e.g.
    /// `builtin.module(convert-scf-to-cf, func.func(canonicalize))`.
    ///
    /// The verifier runs after every pass. On failure the module may be half-converted; print
    /// it to see where the pipeline stopped.
    pub fn run_pipeline(&mut self, pipeline: &str) -> Result<(), MlirError> {
        let session = self.session;
        session.diagnostics.clear();
        let manager = PassManager::new(&session.context);
        parse_pass_pipeline(manager.as_operation_pass_manager(), pipeline).map_err(|error| {
            MlirError::PipelineSyntax {
                pipeline: pipeline.to_owned(),
                message: match error {
                    melior::Error::ParsePassPipeline(message) => message,
                    other => other.to_string(),
                },
            }
        })?;
        manager
            .run(&mut self.module)
            .map_err(|_| MlirError::Pipeline {
                pipeline: pipeline.to_owned(),
                diagnostics: session.diagnostics.take(),
            })
    }

    /// Makes every top-level `llvm.func` generate code for `cpu` (an LLVM CPU name such as
    /// `haswell`) with exactly `features` (such as `+avx2,+fma`) instead of the JIT's host.
    ///
    /// LLVM reads a function's `target-cpu` and `target-features` attributes over its target
    /// machine's own, both in the IR passes (the vectoriser's register width) and in code
    /// generation, so an AVX-512 host can build and time the code an AVX2 machine would run.
    /// The features replace the target machine's, so none of the host's extra ones leak in.
    /// The functions are also kept out of line: the JIT's packed wrappers (`_mlir_<name>`) are
    /// compiled for the host, and LLVM would inline a kernel into its wrapper (a subset of the
    /// host's features is inline-compatible) and vectorise it there with the host's registers.
    pub fn set_target_cpu(&mut self, cpu: &str, features: &str) -> Result<(), MlirError> {
        let context = &self.session.context;
        let quoted: Vec<String> = features
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| format!("\"{f}\""))
            .collect();
        let text = format!("#llvm.target_features<[{}]>", quoted.join(", "));
        let features = Attribute::parse(context, &text).ok_or_else(|| MlirError::Parse {
            diagnostics: format!("not a list of LLVM target features: {text}"),
        })?;
        let cpu = StringAttribute::new(context, cpu);
        let body = self.module.body();
        let mut op = body.first_operation_mut();
        while let Some(mut current) = op {
            if current.name().as_string_ref().as_str() == Ok("llvm.func") {
                current.set_attribute("target_cpu", cpu.into());
                current.set_attribute("target_features", features);
                current.set_attribute("no_inline", Attribute::unit(context));
            }
            op = current.next_in_block_mut();
        }
        Ok(())
    }

    /// Translates a module that is entirely in the LLVM dialect to LLVM IR text (`--emit llvm`).
    ///
    /// Uses `mlirTranslateModuleToLLVMIR` rather than `mlirTranslateModuleToLLVMIRToString`:
    /// the latter prints the translated module without checking it exists, and crashes on a
    /// module that does not translate.
    pub fn to_llvm_ir(&self) -> Result<String, MlirError> {
        translate(self.session, self.module.as_operation().to_raw())
    }

    /// Translates the contents of `gpu.module @name`, once lowered to the LLVM and NVVM
    /// dialects ([`crate::NVVM_LOWERING_PIPELINE`]), to LLVM IR: its kernels become
    /// `ptx_kernel` functions. The body is copied into a builtin module of its own, since MLIR
    /// translates builtin modules only.
    pub fn gpu_module_to_llvm_ir(&self, name: &str) -> Result<String, MlirError> {
        let context = &self.session.context;
        let device = Module::new(Location::unknown(context));
        let mut found = false;
        let mut op = self.module.body().first_operation();
        while let Some(current) = op {
            let symbol = current
                .attribute("sym_name")
                .ok()
                .and_then(|a| StringAttribute::try_from(a).ok())
                .map(|s| s.value().to_string());
            if current.name().as_string_ref().as_str() == Ok("gpu.module")
                && symbol.as_deref() == Some(name)
            {
                found = true;
                let block = current.region(0).ok().and_then(|r| r.first_block());
                let mut inner = block.and_then(|b| b.first_operation());
                while let Some(o) = inner {
                    // SAFETY: `mlirOperationClone` returns a new operation owned by the caller and
                    // attached to no block; `Operation::from_raw` takes that ownership, and
                    // `append_operation` moves it into the new module's body.
                    let cloned = unsafe { Operation::from_raw(mlirOperationClone(o.to_raw())) };
                    device.body().append_operation(cloned);
                    inner = o.next_in_block();
                }
            }
            op = current.next_in_block();
        }
        if !found {
            return Err(MlirError::Translate {
                diagnostics: format!("the module has no gpu.module @{name}"),
            });
        }
        translate(self.session, device.as_operation().to_raw())
    }
    /// The melior module, for the host JIT in this crate.
    pub(crate) fn module(&self) -> &Module<'s> {
        &self.module
    }

    /// The session's diagnostics, so the JIT can report what translation said.
    pub(crate) fn diagnostics(&self) -> &DiagnosticLog {
        &self.session.diagnostics
    }
}

/// Prints the module as MLIR text, for `--emit mlir` dumps and snapshots.
impl Display for MlirModule<'_> {
    fn fmt(&self, formatter: &mut Formatter) -> fmt::Result {
        write!(formatter, "{}", self.module.as_operation())
    }
}

/// Translates one module operation (of the session's context) to LLVM IR text.
fn translate(session: &MlirSession, module: mlir_sys::MlirOperation) -> Result<String, MlirError> {
    session.diagnostics.clear();
    // SAFETY: the LLVM context is created here, outlives the module translated into it, and is
    // disposed after it; `module` is a live module operation of the session's context.
    unsafe {
        let llvm_context = LLVMContextCreate();
        let llvm_module = mlirTranslateModuleToLLVMIR(module, llvm_context);
        let result = if llvm_module.is_null() {
            Err(MlirError::Translate {
                diagnostics: session.diagnostics.take(),
            })
        } else {
            let printed = LLVMPrintModuleToString(llvm_module);
            // SAFETY: LLVM returns a NUL-terminated copy that we own until disposed.
            let text = CStr::from_ptr(printed).to_string_lossy().into_owned();
            LLVMDisposeMessage(printed);
            LLVMDisposeModule(llvm_module);
            Ok(text)
        };
        LLVMContextDispose(llvm_context);
        result
    }
}
