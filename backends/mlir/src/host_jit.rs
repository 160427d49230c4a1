//! The host JIT: the last stage of the CPU path, turning a module lowered to the LLVM dialect
//! into machine code for this CPU and handing out callable kernels.
//!
//! It wraps MLIR's `ExecutionEngine` (LLVM ORC). The engine detects the host the way `llc
//! -mcpu=native` does (`JITTargetMachineBuilder::detectHost`: CPU name and every feature, so
//! AVX-512 where the CPU has it), runs LLVM's `-O<n>` pipeline with that target machine (so the
//! loop vectoriser knows the vector width), and generates code with it. [`HostCpu`] reports what
//! it detected.
//!
//! Kernels are called through the packed wrapper `_mlir_<name>(void **args)` that the engine
//! adds for every function: one calling path for any parameter list, no per-arity fn types.

use crate::{
    error::MlirError,
    kernel_call::{Kernel, PackedFn},
    session::MlirModule,
};
use attnc_kernel_abi::{KernelSignature, Param};
use melior::{
    StringRef,
    ir::{
        BlockLike,
        attribute::{StringAttribute, TypeAttribute},
        operation::OperationLike,
    },
};
use mlir_sys::{
    LLVMDisposeMessage, MlirExecutionEngine, mlirExecutionEngineCreate, mlirExecutionEngineDestroy,
    mlirExecutionEngineDumpToObjectFile, mlirExecutionEngineInitialize,
    mlirExecutionEngineLookupPacked,
};
use std::{
    ffi::{CStr, c_char},
    path::Path,
    ptr,
};

unsafe extern "C" {
    // LLVM's C API (libLLVMTarget, linked with MLIR) has these; mlir-sys does not bind them.
    fn LLVMGetHostCPUName() -> *mut c_char;
    fn LLVMGetHostCPUFeatures() -> *mut c_char;
}

/// How the JIT compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitOptions {
    /// LLVM optimisation level, 0 to 3 (IR passes and code generation).
    pub opt_level: u8,
    /// Keep the object code so [`HostJit::write_object_file`] can save it for inspection.
    pub keep_object: bool,
}

impl Default for JitOptions {
    fn default() -> Self {
        Self {
            opt_level: 3,
            keep_object: false,
        }
    }
}

/// Machine code for a module's kernels, callable while this value lives.
pub struct HostJit {
    engine: MlirExecutionEngine,
    kernels: Vec<(KernelSignature, PackedFn)>,
    keeps_object: bool,
}

impl HostJit {
    /// Compiles `module` (already lowered to the LLVM dialect, e.g. by
    /// [`crate::CPU_LOWERING_PIPELINE`]) and looks up every kernel in `signatures`.
    ///
    /// Each signature is checked against the lowered function's type first. Compilation is
    /// eager: all of it happens here, none at the first call.
    pub fn compile(
        module: &MlirModule,
        signatures: &[KernelSignature],
        options: JitOptions,
    ) -> Result<Self, MlirError> {
        for (index, signature) in signatures.iter().enumerate() {
            if signatures[..index].iter().any(|s| s.name == signature.name) {
                return Err(MlirError::Signature {
                    kernel: signature.name.clone(),
                    problem: "two signatures have this name".to_owned(),
                });
            }
            check_signature(module, signature)?;
        }
        module.diagnostics().clear();
        // SAFETY: the module is live for the call; the engine translates it into its own LLVM
        // context and keeps no reference to it. No shared-library paths are passed.
        let engine = unsafe {
            mlirExecutionEngineCreate(
                module.module().to_raw(),
                i32::from(options.opt_level.min(3)),
                0,
                ptr::null(),
                options.keep_object,
                false,
            )
        };
        if engine.ptr.is_null() {
            let diagnostics = module.diagnostics().take();
            return Err(MlirError::Jit {
                message: if diagnostics.is_empty() {
                    "MLIR's ExecutionEngine could not be created for the host".to_owned()
                } else {
                    format!("cannot translate the module to LLVM IR:\n{diagnostics}")
                },
            });
        }
        let mut jit = Self {
            engine,
            kernels: Vec::with_capacity(signatures.len()),
            keeps_object: options.keep_object,
        };
        // SAFETY: the engine is non-null and owned by `jit`. Initialising runs the module's
        // global constructors, before any kernel can run.
        unsafe { mlirExecutionEngineInitialize(jit.engine) };
        for signature in signatures {
            let entry = jit.lookup_packed(&signature.name)?;
            jit.kernels.push((signature.clone(), entry));
        }
        Ok(jit)
    }

    /// The kernel named `name`, checked against its signature at [`HostJit::compile`].
    pub fn kernel(&self, name: &str) -> Result<Kernel<'_>, MlirError> {
        self.kernels
            .iter()
            .find(|(signature, _)| signature.name == name)
            .map(|(signature, entry)| Kernel::new(signature, *entry))
            .ok_or_else(|| MlirError::Jit {
                message: format!("no kernel `{name}` was compiled (is it in the signatures?)"),
            })
    }

    /// Writes the compiled object code (ELF on Linux) to `path`, e.g. to disassemble it.
    /// Needs [`JitOptions::keep_object`].
    pub fn write_object_file(&self, path: &Path) -> Result<(), MlirError> {
        let fail = |message: String| MlirError::Jit { message };
        if !self.keeps_object {
            return Err(fail(
                "compile with JitOptions::keep_object to write the object".into(),
            ));
        }
        let text = path
            .to_str()
            .ok_or_else(|| fail(format!("{} is not UTF-8", path.display())))?;
        // The engine reports a failed write only on stderr: remove any old file, look after.
        if let Err(error) = std::fs::remove_file(path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(fail(format!("cannot replace {}: {error}", path.display())));
        }
        // SAFETY: the engine is live; the name is copied before the call returns.
        unsafe { mlirExecutionEngineDumpToObjectFile(self.engine, StringRef::new(text).to_raw()) };
        if path.is_file() {
            Ok(())
        } else {
            Err(fail(format!(
                "the engine wrote no object to {}",
                path.display()
            )))
        }
    }

    fn lookup_packed(&self, name: &str) -> Result<PackedFn, MlirError> {
        // SAFETY: the engine is live. The lookup compiles the module on first use.
        let address =
            unsafe { mlirExecutionEngineLookupPacked(self.engine, StringRef::new(name).to_raw()) };
        if address.is_null() {
            return Err(MlirError::Jit {
                message: format!(
                    "cannot compile or find `_mlir_{name}` (LLVM prints the reason to stderr, \
                     e.g. an unresolved libm symbol)"
                ),
            });
        }
        // SAFETY: the engine defines `_mlir_<name>` for each function as
        // `void (void **)`, and the address stays valid while the engine lives.
        Ok(unsafe { std::mem::transmute::<*mut std::ffi::c_void, PackedFn>(address) })
    }
}

impl Drop for HostJit {
    fn drop(&mut self) {
        // SAFETY: the engine is non-null (checked in `compile`) and dropped once. Kernels borrow
        // `self`, so none can run after this.
        unsafe { mlirExecutionEngineDestroy(self.engine) }
    }
}

/// The LLVM-dialect type the lowered function must have, as MLIR prints it: buffers are bare
/// pointers (`use-bare-ptr-memref-call-conv`), integers i64, scalars f32, no result.
fn llvm_function_type(signature: &KernelSignature) -> String {
    let params: Vec<&str> = signature
        .params
        .iter()
        .map(|p| match p {
            Param::Buffer { .. } => "ptr",
            Param::Int { .. } => "i64",
            Param::F32 { .. } => "f32",
        })
        .collect();
    format!("!llvm.func<void ({})>", params.join(", "))
}

/// Checks that `module` defines `@name` as an LLVM function of the signature's type.
fn check_signature(module: &MlirModule, signature: &KernelSignature) -> Result<(), MlirError> {
    let problem = |problem: String| MlirError::Signature {
        kernel: signature.name.clone(),
        problem,
    };
    signature.check_names().map_err(problem)?;
    let expected = llvm_function_type(signature);
    match lowered_function_type(module, &signature.name) {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(problem(format!(
            "the module's function has type {found}, the signature {expected}"
        ))),
        None => Err(problem(
            "the module has no `llvm.func` of that name (lower it to the LLVM dialect first)"
                .into(),
        )),
    }
}

/// The printed `function_type` of the top-level `llvm.func @name`, if there is one.
fn lowered_function_type(module: &MlirModule, name: &str) -> Option<String> {
    let body = module.module().body();
    let mut operation = body.first_operation();
    while let Some(current) = operation {
        let symbol = current
            .attribute("sym_name")
            .ok()
            .and_then(|attribute| StringAttribute::try_from(attribute).ok());
        if current.name().as_string_ref().as_str() == Ok("llvm.func")
            && symbol.is_some_and(|symbol| symbol.value() == name)
        {
            let function_type = current.attribute("function_type").ok()?;
            return Some(
                TypeAttribute::try_from(function_type)
                    .ok()?
                    .value()
                    .to_string(),
            );
        }
        operation = current.next_in_block();
    }
    None
}

/// The CPU the JIT compiles for, as LLVM detects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpu {
    /// LLVM's name for it, e.g. `znver5` or `sapphirerapids`.
    pub name: String,
    /// The features it has, without the `+`, e.g. `avx512f`.
    pub features: Vec<String>,
}

impl HostCpu {
    /// Asks LLVM, with the same calls the JIT's `detectHost` makes, so this is what it targets.
    /// Also a key for caches of tuned kernels.
    pub fn detect() -> Self {
        // SAFETY: both return a fresh NUL-terminated string that we own until disposed.
        let (name, features) = unsafe {
            (
                take_llvm_string(LLVMGetHostCPUName()),
                take_llvm_string(LLVMGetHostCPUFeatures()),
            )
        };
        let features = features
            .split(',')
            .filter_map(|feature| feature.strip_prefix('+'))
            .map(str::to_owned)
            .collect();
        Self { name, features }
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|candidate| candidate == feature)
    }
}

/// Copies and frees a string LLVM allocated.
///
/// # Safety
/// `raw` must be null or a NUL-terminated string from LLVM, not used afterwards.
unsafe fn take_llvm_string(raw: *mut c_char) -> String {
    if raw.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe {
        let text = CStr::from_ptr(raw).to_string_lossy().into_owned();
        LLVMDisposeMessage(raw);
        text
    }
}
