//! Launch signatures: how one generated kernel function is called.
//!
//! A code generator writes a `KernelSignature` next to each kernel it emits. Every runtime
//! checks it against what it loads (the host JIT against the lowered function's type, the CUDA
//! runtime against the PTX entry, the Vulkan runtime against the shader's bindings) and checks
//! every call's arguments against it, so a manifest that drifts from its code is caught at load
//! time, not by a crash.
//!
//! The calling convention it describes: parameters in order, each a pointer to element 0 of a
//! dense buffer, a signed 64-bit integer, or an `f32` scalar; no results.

use crate::element::ElementType;
use serde::{Deserialize, Serialize};

/// How one kernel is launched: its symbol and its parameters in call order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSignature {
    /// The function's symbol (the PTX entry, the SPIR-V entry point, the host function).
    pub name: String,
    pub params: Vec<Param>,
}

/// One parameter of a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Param {
    /// A pointer to element 0 of a dense buffer. The kernel touches only elements below
    /// `extent` (the product of its factors): the code generator guarantees it, and a runtime
    /// checks each buffer is at least that long.
    Buffer {
        name: String,
        element: ElementType,
        access: Access,
        extent: Vec<Extent>,
    },
    /// A signed 64-bit integer: a size, a bound, a tile index.
    Int { name: String },
    /// An `f32` scalar.
    F32 { name: String },
}

/// What the kernel does with a buffer; a runtime uses it to order launches and copy results.
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
pub enum Extent {
    Fixed(u64),
    Param(String),
}

impl Param {
    pub fn name(&self) -> &str {
        match self {
            Param::Buffer { name, .. } | Param::Int { name } | Param::F32 { name } => name,
        }
    }

    /// What the parameter takes, in words, for argument errors.
    pub fn describe(&self) -> String {
        match self {
            Param::Buffer {
                element, access, ..
            } => format!("a {access:?} buffer of {element}"),
            Param::Int { .. } => "an i64".to_owned(),
            Param::F32 { .. } => "an f32".to_owned(),
        }
    }
}

impl KernelSignature {
    /// Checks that every extent names an `Int` parameter and that names are unique.
    pub fn check_names(&self) -> Result<(), String> {
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
                if let Extent::Param(dim) = dim
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
    pub fn int_value(&self, ints: &[Option<i64>], name: &str) -> Option<i64> {
        self.params
            .iter()
            .zip(ints)
            .find_map(|(param, value)| (param.name() == name).then_some(*value).flatten())
    }

    /// The element count a buffer parameter's extent gives, with the `Int` values of `ints`.
    pub fn buffer_len(&self, ints: &[Option<i64>], extent: &[Extent]) -> Option<u64> {
        extent.iter().try_fold(1u64, |acc, factor| {
            let f = match factor {
                Extent::Fixed(n) => *n,
                Extent::Param(p) => u64::try_from(self.int_value(ints, p)?).ok()?,
            };
            acc.checked_mul(f)
        })
    }
}
