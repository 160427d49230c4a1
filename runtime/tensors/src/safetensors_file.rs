//! Hugging Face `.safetensors` files, to and from named tensors, through the `safetensors`
//! crate. bf16 and f16 are native there (`BF16`, `F16`), so no convention is needed.

use std::borrow::Cow;
use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, SafeTensorError, View};

use crate::error::ArrayProblem;
use crate::{ElementType, HostTensor, TensorFileError};

/// Decodes every tensor of the file image `bytes`, in no particular order.
pub(crate) fn read(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(String, HostTensor)>, TensorFileError> {
    let file = SafeTensors::deserialize(bytes).map_err(|error| TensorFileError::Corrupt {
        path: path.to_path_buf(),
        tensor: None,
        detail: error.to_string(),
    })?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let decoded = element_type(view.dtype())
                .ok_or_else(|| ArrayProblem::UnsupportedDtype(view.dtype().to_string()))
                .and_then(|dtype| {
                    Ok(HostTensor::new(
                        dtype,
                        view.shape().to_vec(),
                        view.data().to_vec(),
                    )?)
                });
            match decoded {
                Ok(tensor) => Ok((name, tensor)),
                Err(problem) => Err(problem.in_tensor(path, &name)),
            }
        })
        .collect()
}

/// Encodes `tensors` as a complete file image. The crate orders the tensors itself (by
/// alignment, then name); reading sorts by name anyway.
pub(crate) fn encode(tensors: &[(String, HostTensor)]) -> Result<Vec<u8>, SafeTensorError> {
    let views = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), Borrowed(tensor)));
    safetensors::serialize(views, None)
}

/// Lets the serializer read a tensor's bytes in place (the orphan rule forbids implementing
/// the foreign `View` on `&HostTensor` directly).
struct Borrowed<'a>(&'a HostTensor);

impl View for Borrowed<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.dtype() {
            ElementType::F32 => Dtype::F32,
            ElementType::F16 => Dtype::F16,
            ElementType::Bf16 => Dtype::BF16,
            ElementType::I32 => Dtype::I32,
            ElementType::F64 => Dtype::F64,
            ElementType::I64 => Dtype::I64,
            ElementType::U16 => Dtype::U16,
            ElementType::Bool => Dtype::BOOL,
        }
    }

    fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.0.data())
    }

    fn data_len(&self) -> usize {
        self.0.data().len()
    }
}

/// The inverse of `Borrowed::dtype`; `None` for the types attnc does not hold (U8, F8_E4M3, …).
fn element_type(dtype: Dtype) -> Option<ElementType> {
    Some(match dtype {
        Dtype::F32 => ElementType::F32,
        Dtype::F16 => ElementType::F16,
        Dtype::BF16 => ElementType::Bf16,
        Dtype::I32 => ElementType::I32,
        Dtype::F64 => ElementType::F64,
        Dtype::I64 => ElementType::I64,
        Dtype::U16 => ElementType::U16,
        Dtype::BOOL => ElementType::Bool,
        _ => return None,
    })
}
