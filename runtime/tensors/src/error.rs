//! Errors of this crate: one type for building a tensor in memory, one for reading or writing a
//! file. File errors name the file and, where there is one, the tensor, so a caller can show the
//! message to the user as it is.

use std::io;
use std::path::{Path, PathBuf};

use crate::ElementType;

/// A [`crate::HostTensor`] could not be built: the bytes or values do not fit the shape and type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostTensorError {
    #[error("shape {shape:?} has more elements than this machine can address")]
    ShapeOverflow { shape: Vec<usize> },
    #[error("a {dtype} tensor of shape {shape:?} takes {expected} bytes, but {actual} were given")]
    ByteLength {
        dtype: ElementType,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("shape {shape:?} has {expected} elements, but {actual} values were given")]
    ValueCount {
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("value {value} at flat index {index} is not representable as {dtype}")]
    NotRepresentable {
        dtype: ElementType,
        index: usize,
        value: f64,
    },
    #[error("byte {byte} at flat index {index} is not a bool (0 or 1)")]
    InvalidBool { index: usize, byte: u8 },
    #[error("only a u16 tensor can be reinterpreted as bf16, but this one is {dtype}")]
    NotU16 { dtype: ElementType },
}

/// Reading or writing a tensor file failed.
///
/// The I/O error's text is part of the message rather than a `source()`, so that printing the
/// error alone already tells the user everything; match on the variant for its `io::ErrorKind`.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{}: unknown tensor file extension; expected .npy, .npz or .safetensors",
        path.display()
    )]
    UnknownExtension { path: PathBuf },
    #[error(
        "{}: {}corrupt or truncated file: {detail}",
        path.display(),
        tensor_prefix(tensor.as_deref())
    )]
    Corrupt {
        path: PathBuf,
        /// The tensor being read, when the damage is inside one rather than in the file's index.
        tensor: Option<String>,
        detail: String,
    },
    #[error("{}: tensor '{tensor}' has element type {dtype}, which attnc cannot read", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        /// The type as the file spells it (NumPy's `'<i2'`, safetensors' `U8`, …).
        dtype: String,
    },
    #[error(
        "{}: member '{member}' is not a .npy array; an .npz file holds only .npy members",
        path.display()
    )]
    UnexpectedNpzMember { path: PathBuf, member: String },
    #[error("{}: tensor name '{tensor}' appears more than once", path.display())]
    DuplicateName { path: PathBuf, tensor: String },
    #[error(
        "{}: a .npy file holds exactly one tensor, but {count} were given; use .npz or .safetensors",
        path.display()
    )]
    NpyHoldsOneTensor { path: PathBuf, count: usize },
}

fn tensor_prefix(tensor: Option<&str>) -> String {
    tensor.map_or_else(String::new, |name| format!("tensor '{name}': "))
}

/// What went wrong inside one array, before the caller adds which file and tensor it was; lets
/// the per-format decoders stay ignorant of paths.
#[derive(Debug)]
pub(crate) enum ArrayProblem {
    Corrupt(String),
    UnsupportedDtype(String),
}

impl ArrayProblem {
    pub(crate) fn in_tensor(self, path: &Path, tensor: &str) -> TensorFileError {
        match self {
            ArrayProblem::Corrupt(detail) => TensorFileError::Corrupt {
                path: path.to_path_buf(),
                tensor: Some(tensor.to_owned()),
                detail,
            },
            ArrayProblem::UnsupportedDtype(dtype) => TensorFileError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: tensor.to_owned(),
                dtype,
            },
        }
    }
}

impl From<HostTensorError> for ArrayProblem {
    /// Bytes read from a file that do not make a valid tensor (a bool byte of 2, say) mean the
    /// file is damaged.
    fn from(error: HostTensorError) -> Self {
        ArrayProblem::Corrupt(error.to_string())
    }
}

/// Builds the error for a failed read or write of `path`.
pub(crate) fn io_error(path: &Path, error: io::Error) -> TensorFileError {
    TensorFileError::Io {
        path: path.to_path_buf(),
        error,
    }
}
