//! Host tensors and the files they come from and go to: `.npy`, `.npz` and `.safetensors`.
//!
//! This crate is the runtime's format layer. It knows nothing of the `.attn` language: it turns
//! a user's files (activations saved from PyTorch or NumPy, say) into [`HostTensor`]s and writes
//! kernel outputs back, and leaves checking types and shapes against a program to the caller.
//! The parsers are those of well-kept crates (`npyz`, `zip`, `safetensors`); this crate maps
//! their types onto [`ElementType`] and their failures onto [`TensorFileError`], and never
//! panics on a damaged file.
//!
//! ```no_run
//! use attnc_tensors::{ElementType, HostTensor, read_tensors, write_tensors};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let inputs = read_tensors("activations.npz")?; // sorted by name
//! let out = HostTensor::from_f64(ElementType::Bf16, vec![2], &[1.5, -2.25])?;
//! write_tensors("out.safetensors", &[("o".to_owned(), out)])?;
//! # Ok(()) }
//! ```
//!
//! # bf16 in `.npy` and `.npz`
//!
//! NumPy has no bfloat16. `ml_dtypes.bfloat16` arrays are saved by `np.save` with the 2-byte
//! void type `<V2`, which NumPy loads back as `|V2`. This crate reads `<V2`, `|V2` (and `>V2`,
//! byte-swapped) as [`ElementType::Bf16`], and writes bf16 as `|V2`, so attnc reads its own
//! outputs back as bf16, and a user who forgets to convert gets an error from NumPy rather than
//! integers. A `uint16` view (`<u2`) reads as [`ElementType::U16`]; when the program declares
//! bf16, the caller accepts it with [`HostTensor::reinterpret_u16_as_bf16`].
//!
//! With plain NumPy (no ml_dtypes), an attnc bf16 output becomes exact float32 values with:
//!
//! ```python
//! import numpy as np
//! v = np.load("out.npy")                              # dtype |V2: raw bf16 bits
//! u = v.view(np.uint16)                               # the bit patterns as integers
//! f = (u.astype(np.uint32) << 16).view(np.float32)    # exact float32 values
//! ```
//!
//! With ml_dtypes installed, `v.view(ml_dtypes.bfloat16)` gives a bf16 array directly. In
//! `.safetensors` files bf16 and f16 are native types and need none of this.

mod atomic_write;

mod element_values;
mod error;
mod fortran_order;
mod host_tensor;
mod npy;
mod npz;
mod safetensors_file;
mod tensor_file;

pub use attnc_kernel_abi::ElementType;
pub use error::{HostTensorError, TensorFileError};
pub use host_tensor::HostTensor;
pub use tensor_file::{TensorFormat, read_tensors, write_tensors};
