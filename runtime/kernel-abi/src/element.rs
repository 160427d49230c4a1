//! Element types: of tensors in files and in device memory, of kernel buffers, and of the values a
//! kernel computes in. One enum serves the whole pipeline, from the IR's tensor types to a
//! runtime's buffers, so nothing maps between look-alike enums.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The type of one element, stored little-endian.
///
/// `.attn` tensors are `F32`, `F16`, `Bf16` or `I32`. `F64`, `I64`, `U16` and `Bool` exist so that
/// a file holding them is still read and the caller can say "expected bf16, the file has f64"
/// instead of "cannot read file" (`U16` is also how a bf16 tensor saved as a NumPy `uint16` view
/// arrives), and for kernel buffers that are not tensors (a status word, a byte mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementType {
    F32,
    F16,
    Bf16,
    I32,
    F64,
    I64,
    U16,
    /// One byte per element, always 0 or 1 (NumPy's and safetensors' convention).
    Bool,
}

impl ElementType {
    /// Every element type, in a fixed order (tests and exhaustive tables iterate this).
    pub const ALL: [ElementType; 8] = [
        ElementType::F32,
        ElementType::F16,
        ElementType::Bf16,
        ElementType::I32,
        ElementType::F64,
        ElementType::I64,
        ElementType::U16,
        ElementType::Bool,
    ];

    /// Bytes per element.
    pub const fn size_bytes(self) -> usize {
        match self {
            ElementType::Bool => 1,
            ElementType::F16 | ElementType::Bf16 | ElementType::U16 => 2,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F64 | ElementType::I64 => 8,
        }
    }

    /// Whether the type can hold NaN or an infinity.
    pub const fn is_float(self) -> bool {
        matches!(
            self,
            ElementType::F32 | ElementType::F16 | ElementType::Bf16 | ElementType::F64
        )
    }

    /// The type arithmetic on stored values is done in: 16-bit floats are widened to f32 (the
    /// matrix units accumulate in f32 too); every other type computes as itself.
    pub const fn compute(self) -> ElementType {
        match self {
            ElementType::F16 | ElementType::Bf16 => ElementType::F32,
            other => other,
        }
    }

    /// The type a name in `.attn` or a manifest stands for (`f32`, `bf16`, …).
    pub fn from_name(name: &str) -> Option<ElementType> {
        ElementType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The short name used in messages and in `.attn` type annotations (`f32`, `bf16`, …).
    pub const fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "f32",
            ElementType::F16 => "f16",
            ElementType::Bf16 => "bf16",
            ElementType::I32 => "i32",
            ElementType::F64 => "f64",
            ElementType::I64 => "i64",
            ElementType::U16 => "u16",
            ElementType::Bool => "bool",
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
