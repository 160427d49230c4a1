//! Launch signatures: the plain, serialisable description of how a generated kernel is called.
//!
//! The code generator writes one `KernelSignature` next to each kernel it emits, and a bundle
//! manifest stores it as JSON. The host JIT checks it against the lowered function before handing
//! out a callable kernel, and checks every call's arguments against it, so a manifest that drifts
//! from its code is caught at load time, not by a crash.
//!
//! The calling convention it describes: parameters in order, each a bare pointer to the first
//! element of a dense buffer (`!llvm.ptr`), a signed 64-bit integer (`i64`) or an `f32` scalar;
//! no results. In MLIR, declare each buffer parameter as `memref<f32>`: its shape is static, so
//! `use-bare-ptr-memref-call-conv` (in [`crate::CPU_LOWERING_PIPELINE`]) makes it one pointer;
//! `memref.reinterpret_cast` it to its dynamic shape inside the kernel (the tests' kernels do).

use serde::{Deserialize, Serialize};

/// How one kernel is launched: its symbol and its parameters in call order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSignature {
    /// The function's symbol in the module (`@name`).
    pub name: String,
    pub params: Vec<Param>,
}

/// One parameter of a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Param {
    /// A bare pointer to element 0 of a dense buffer. The kernel touches only elements below
    /// `extent` (the product of its dims): the code generator guarantees it, and the safe call
    /// checks each buffer is at least that long.
    Buffer {
        name: String,
        element: ElementType,
        access: Access,
        extent: Vec<Dim>,
    },
    /// A signed 64-bit integer: a size, a bound, a tile index.
    Int { name: String },
    /// An `f32` scalar, e.g. a softmax scale chosen at launch time.
    F32 { name: String },
}

/// The element type of a buffer parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementType {
    F32,
    F64,
    I32,
    I64,
    /// One byte per element, e.g. a boolean mask.
    U8,
}

/// What the kernel does with a buffer; the runtime uses it to order launches and copy results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// One factor of a buffer's extent: a compile-time constant or an `Int` parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Param(String),
}

impl Param {
    pub fn name(&self) -> &str {
        match self {
            Param::Buffer { name, .. } | Param::Int { name } | Param::F32 { name } => name,
        }
    }

    /// The parameter's type in the lowered LLVM-dialect function.
    pub(crate) fn llvm_type(&self) -> &'static str {
        match self {
            Param::Buffer { .. } => "ptr",
            Param::Int { .. } => "i64",
            Param::F32 { .. } => "f32",
        }
    }

    /// What the parameter takes, in words, for argument errors.
    pub(crate) fn describe(&self) -> String {
        match self {
            Param::Buffer {
                element, access, ..
            } => format!("a {access:?} buffer of {element:?}"),
            Param::Int { .. } => "an i64".to_owned(),
            Param::F32 { .. } => "an f32".to_owned(),
        }
    }
}

impl KernelSignature {
    /// The LLVM-dialect type the lowered function must have, as MLIR prints it.
    pub(crate) fn llvm_function_type(&self) -> String {
        let params: Vec<&str> = self.params.iter().map(Param::llvm_type).collect();
        format!("!llvm.func<void ({})>", params.join(", "))
    }

    /// Checks that every extent names an `Int` parameter and that names are unique.
    pub(crate) fn check_names(&self) -> Result<(), String> {
        for (index, param) in self.params.iter().enumerate() {
            if self.params[..index]
                .iter()
                .any(|earlier| earlier.name() == param.name())
            {
                return Err(format!("parameter name `{}` repeats", param.name()));
            }
            let Param::Buffer { name, extent, .. } = param else {
                continue;
            };
            for dim in extent {
                if let Dim::Param(dim) = dim
                    && !self
                        .params
                        .iter()
                        .any(|p| matches!(p, Param::Int { name } if name == dim))
                {
                    return Err(format!(
                        "the extent of `{name}` uses `{dim}`, which is not an Int parameter"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The value of `Int` parameter `name` among `ints` (one slot per parameter, `None` for
    /// non-integers), given that `check_names` passed.
    pub(crate) fn int_value(&self, ints: &[Option<i64>], name: &str) -> Option<i64> {
        self.params
            .iter()
            .zip(ints)
            .find_map(|(param, value)| (param.name() == name).then_some(*value).flatten())
    }
}
