//! Element types a host tensor can hold: the runtime's own dtypes plus the few a user's file is
//! likely to carry instead, so a mismatch is reported by name rather than as an unreadable file.

use std::fmt;

/// The type of one tensor element, stored little-endian in [`crate::HostTensor`]'s bytes.
///
/// Kernels take `F32`, `F16`, `Bf16` and `I32`. `F64`, `I64`, `U16` and `Bool` exist so that a
/// file holding them is still read, and the caller can say "expected bf16, the file has f64"
/// instead of "cannot read file". `U16` is also how a bf16 tensor saved as a NumPy `uint16` view
/// arrives; see [`crate::HostTensor::reinterpret_u16_as_bf16`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
