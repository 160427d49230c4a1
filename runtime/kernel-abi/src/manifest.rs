//! The kernel manifest: everything a runtime needs to run a compiled kernel, as data.
//!
//! It names the kernel's dims (those the code was specialised for, and those bound at every
//! call), its `require` conditions, its tensors with their symbolic shapes and declared value
//! ranges, scratch buffers, the launches in order (each with its signature, how every argument
//! is formed, and its grid as expressions over the dims) and the run-time checks the code makes.
//! A runtime binds the dims from the tensors it is given, checks them, allocates, launches, and
//! reads the status word back: no `Graph`, no passes, no compiler.

use crate::element::ElementType;
use crate::expr::Expr;
use crate::signature::KernelSignature;
use crate::target::TargetId;
use serde::{Deserialize, Serialize};

/// The layout version of [`KernelManifest`]; a runtime refuses any other.
pub const ABI_VERSION: u32 = 1;

/// Words of the status buffer every launch with a [`Arg::Status`] argument writes.
///
/// All start at 0. The first failing check of a run stores its [`Guard::code`] in word 0 (by an
/// atomic compare-and-swap from 0, so one failure is reported whole), the offending value in
/// word 1 and the bound it broke in word 2, each as a signed 32-bit integer.
pub const STATUS_WORDS: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelManifest {
    pub abi_version: u32,
    /// The `.attn` kernel's name.
    pub kernel: String,
    /// The source file it was compiled from, as given to the compiler.
    pub source: String,
    pub target: TargetId,
    pub dims: Vec<DimDecl>,
    pub requirements: Vec<Requirement>,
    pub inputs: Vec<TensorDecl>,
    pub outputs: Vec<TensorDecl>,
    #[serde(default)]
    pub workspaces: Vec<Workspace>,
    pub launches: Vec<Launch>,
    /// The checks the code makes while it runs, by status code.
    #[serde(default)]
    pub guards: Vec<Guard>,
    /// How the code was tiled, in words (for `attnc-run --info` and bug reports).
    #[serde(default)]
    pub tiling: String,
}

/// A dim of the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimDecl {
    pub name: String,
    /// The value the code was compiled for; every call must bind the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialised: Option<i64>,
    /// `dim W = 256;`: the value when neither a tensor nor the caller gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Expr>,
}

/// A `require` condition on the dims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// As written in the source.
    pub text: String,
    pub condition: Expr,
}

/// An input or output tensor: dense, row-major, in `element`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDecl {
    pub name: String,
    pub element: ElementType,
    pub shape: Vec<Expr>,
    /// `in [lo, hi]`: every value must lie in the range (an integer input's indices rely on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ValueRange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueRange {
    pub lo: Bound,
    pub hi: Bound,
}

/// One end of a declared value range: a float constant, or an integer expression of the dims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Float(f64),
    Int(Expr),
}

/// A scratch buffer the runtime allocates for a call (a per-head prefix sum, partial results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub name: String,
    pub element: ElementType,
    pub len: Expr,
}

/// One kernel launch. A call runs every launch of the manifest in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The bundle section that holds the code (PTX text, SPIR-V words).
    pub code: String,
    pub signature: KernelSignature,
    /// How each parameter of the signature is formed, in order.
    pub args: Vec<Arg>,
    /// Work groups (CUDA blocks) along x, y, z.
    pub grid: [Expr; 3],
    /// Threads per work group along x, y, z.
    pub block: [u32; 3],
    /// Dynamic shared (workgroup) memory per work group, in bytes.
    #[serde(default)]
    pub shared_bytes: u32,
}

/// Where one argument of a launch comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Arg {
    /// The buffer of an input or output tensor.
    Tensor {
        name: String,
    },
    Workspace {
        name: String,
    },
    /// The call's status buffer ([`STATUS_WORDS`] i32 words).
    Status,
    /// An integer computed from the bound dims.
    Int {
        value: Expr,
    },
    F32 {
        value: f64,
    },
    /// A buffer of TMA tensor maps (CUDA on sm_90 and later), [`TENSOR_MAP_BYTES`] each, in
    /// order: the runtime encodes each for the call's tensor with its device address and shape.
    /// The code reads tiles through them with bulk tensor copies instead of per-thread loads.
    TensorMaps {
        maps: Vec<TensorMap>,
    },
}

/// Bytes of one encoded tensor map (`CUtensorMap`); the buffer holds them back to back, each
/// 64-byte aligned as the hardware requires.
pub const TENSOR_MAP_BYTES: usize = 128;

/// One TMA tensor map: which tensor it covers and the box one copy moves, as data, so that a
/// runtime encodes it for the tensor it is given without knowing anything of the kernel.
///
/// The map covers the whole tensor, dense and row-major as every [`TensorDecl`] is, with no
/// swizzle and no interleave; a box element outside the tensor reads as zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMap {
    /// The input tensor it reads.
    pub tensor: String,
    /// Elements of one box along each axis of the tensor, in the tensor's axis order. The last
    /// (contiguous) axis' box is a whole number of 16-byte pieces.
    #[serde(rename = "box")]
    pub boxed: Vec<u32>,
}

impl TensorMap {
    /// What a runtime passes to the driver: dims, byte strides of every axis but the
    /// contiguous one, and the box, each innermost first (the driver's order), for a tensor of
    /// `shape` with elements of `bytes` bytes.
    pub fn encoding(&self, shape: &[u64], bytes: u64) -> Result<TensorMapEncoding, String> {
        let rank = shape.len();
        if rank == 0 || rank > 5 || self.boxed.len() != rank {
            return Err(format!(
                "tensor map of `{}`: a box of {} axes for a tensor of {rank} (1 to 5)",
                self.tensor,
                self.boxed.len()
            ));
        }
        let dims: Vec<u64> = shape.iter().rev().copied().collect();
        let boxed: Vec<u32> = self.boxed.iter().rev().copied().collect();
        let mut strides = Vec::with_capacity(rank - 1);
        let mut stride = bytes;
        for d in &dims[..rank - 1] {
            stride = stride
                .checked_mul(*d)
                .ok_or("a tensor map stride overflows")?;
            strides.push(stride);
        }
        if dims.iter().any(|&d| d == 0 || d > 1 << 32) {
            return Err(format!(
                "tensor map of `{}`: dims {shape:?} are not all in 1..=2^32",
                self.tensor
            ));
        }
        if strides
            .iter()
            .any(|&s| !s.is_multiple_of(16) || s >= 1 << 40)
        {
            return Err(format!(
                "tensor map of `{}`: its rows are {} bytes, not a multiple of 16",
                self.tensor,
                strides.first().copied().unwrap_or(0)
            ));
        }
        if boxed.iter().any(|&b| b == 0 || b > 256)
            || !(u64::from(boxed[0]) * bytes).is_multiple_of(16)
        {
            return Err(format!(
                "tensor map of `{}`: box {:?} has an axis outside 1..=256, or its rows are not whole 16-byte pieces",
                self.tensor, self.boxed
            ));
        }
        Ok(TensorMapEncoding {
            dims,
            strides,
            boxed,
        })
    }
}

/// A [`TensorMap`] for one tensor, in the driver's terms (innermost axis first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMapEncoding {
    pub dims: Vec<u64>,
    /// Byte strides of axes 1.. (axis 0 is contiguous).
    pub strides: Vec<u64>,
    pub boxed: Vec<u32>,
}

/// A check the code makes at run time (a computed index against its axis, a value against its
/// declared range). Its message is shown when the run's status word holds its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    /// Non-zero; unique within the manifest.
    pub code: u32,
    /// What failed, with `{value}` and `{bound}` standing for status words 1 and 2.
    pub message: String,
    /// `file:line:col` of the source construct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Guard {
    /// The message for a failure that stored `value` and `bound`.
    pub fn describe(&self, value: i32, bound: i32) -> String {
        let message = self
            .message
            .replace("{value}", &value.to_string())
            .replace("{bound}", &bound.to_string());
        match &self.location {
            Some(at) => format!("{at}: {message}"),
            None => message,
        }
    }
}

/// What a status buffer read back after a call says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("{0}")]
    Failed(String),
    #[error(
        "the kernel reported status code {0}, which its manifest does not list (a compiler bug)"
    )]
    Unknown(u32),
}

impl KernelManifest {
    pub fn input(&self, name: &str) -> Option<&TensorDecl> {
        self.inputs.iter().find(|t| t.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&TensorDecl> {
        self.outputs.iter().find(|t| t.name == name)
    }

    /// Whether some launch takes the status buffer.
    pub fn uses_status(&self) -> bool {
        self.launches
            .iter()
            .any(|l| l.args.iter().any(|a| matches!(a, Arg::Status)))
    }

    /// Interprets the status words of a finished call.
    pub fn check_status(&self, words: &[i32]) -> Result<(), StatusError> {
        let code = words.first().copied().unwrap_or(0) as u32;
        if code == 0 {
            return Ok(());
        }
        let value = words.get(1).copied().unwrap_or(0);
        let bound = words.get(2).copied().unwrap_or(0);
        match self.guards.iter().find(|g| g.code == code) {
            Some(g) => Err(StatusError::Failed(g.describe(value, bound))),
            None => Err(StatusError::Unknown(code)),
        }
    }

    /// Checks what a runtime relies on before it trusts a manifest read from a file: one
    /// argument per parameter, arguments of the parameter's kind naming declared tensors and
    /// workspaces, launch geometry that names only declared dims, distinct guard codes.
    pub fn validate(&self) -> Result<(), String> {
        if self.abi_version != ABI_VERSION {
            return Err(format!(
                "manifest ABI version {} (this runtime reads version {ABI_VERSION})",
                self.abi_version
            ));
        }
        let known_dim = |d: &str| self.dims.iter().any(|x| x.name == d);
        let check_expr = |what: &str, e: &Expr| -> Result<(), String> {
            match e.dims().into_iter().find(|d| !known_dim(d)) {
                Some(d) => Err(format!("{what} `{e}` names `{d}`, which is not a dim")),
                None => Ok(()),
            }
        };
        for t in self.inputs.iter().chain(&self.outputs) {
            for e in &t.shape {
                check_expr(&format!("the shape of `{}`", t.name), e)?;
            }
        }
        for w in &self.workspaces {
            check_expr(&format!("the length of workspace `{}`", w.name), &w.len)?;
        }
        if self.launches.is_empty() {
            return Err("the manifest has no launch".into());
        }
        for l in &self.launches {
            let name = &l.signature.name;
            l.signature.check_names()?;
            if l.args.len() != l.signature.params.len() {
                return Err(format!(
                    "launch `{name}` has {} parameters but {} arguments",
                    l.signature.params.len(),
                    l.args.len()
                ));
            }
            for e in &l.grid {
                check_expr(&format!("the grid of `{name}`"), e)?;
            }
            if l.block.contains(&0) {
                return Err(format!("launch `{name}` has an empty block {:?}", l.block));
            }
            for (p, a) in l.signature.params.iter().zip(&l.args) {
                use crate::signature::Param;
                let ok = match (p, a) {
                    (Param::Buffer { .. }, Arg::Tensor { name }) => {
                        self.input(name).is_some() || self.output(name).is_some()
                    }
                    (Param::Buffer { .. }, Arg::Workspace { name }) => {
                        self.workspaces.iter().any(|w| &w.name == name)
                    }
                    (Param::Buffer { element, .. }, Arg::Status) => *element == ElementType::I32,
                    (Param::Int { .. }, Arg::Int { value }) => {
                        check_expr(&format!("argument `{}`", p.name()), value)?;
                        true
                    }
                    (Param::F32 { .. }, Arg::F32 { .. }) => true,
                    (Param::Buffer { element, .. }, Arg::TensorMaps { maps }) => {
                        *element == ElementType::I64
                            && !maps.is_empty()
                            && maps.iter().all(|m| {
                                self.input(&m.tensor)
                                    .is_some_and(|t| t.shape.len() == m.boxed.len())
                            })
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "launch `{name}`: parameter `{}` ({}) cannot take {a:?}",
                        p.name(),
                        p.describe()
                    ));
                }
            }
        }
        for (k, g) in self.guards.iter().enumerate() {
            if g.code == 0 || self.guards[..k].iter().any(|x| x.code == g.code) {
                return Err(format!("guard code {} is 0 or repeats", g.code));
            }
        }
        Ok(())
    }
}
