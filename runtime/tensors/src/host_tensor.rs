//! A tensor in host memory: what every file format decodes to and encodes from, and what the
//! runtime copies to and from a device.

use crate::{ElementType, HostTensorError, element_values};

/// A dense tensor in host memory: little-endian elements in row-major (C) order.
///
/// The fields are private so that `data.len()` always equals the element count times the
/// element size, and a `Bool` tensor holds only bytes 0 and 1; every constructor checks both.
/// A shape of `[]` is a scalar (one element); any zero in the shape makes an empty tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTensor {
    dtype: ElementType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl HostTensor {
    /// Wraps `data` (little-endian, row-major) after checking its length against the shape.
    pub fn new(
        dtype: ElementType,
        shape: Vec<usize>,
        data: Vec<u8>,
    ) -> Result<Self, HostTensorError> {
        let elements = element_count(&shape)?;
        let expected = elements.checked_mul(dtype.size_bytes()).ok_or_else(|| {
            HostTensorError::ShapeOverflow {
                shape: shape.clone(),
            }
        })?;
        if data.len() != expected {
            return Err(HostTensorError::ByteLength {
                dtype,
                actual: data.len(),
                shape,
                expected,
            });
        }
        if dtype == ElementType::Bool
            && let Some((index, &byte)) = data.iter().enumerate().find(|&(_, &byte)| byte > 1)
        {
            return Err(HostTensorError::InvalidBool { index, byte });
        }
        Ok(HostTensor { dtype, shape, data })
    }

    /// Builds a tensor from `f64` values in row-major order.
    ///
    /// `f32`, `f16` and `bf16` round to nearest, ties to even, from the exact `f64` (no double
    /// rounding). Integer and bool types take only values they hold exactly, and fail with
    /// [`HostTensorError::NotRepresentable`] otherwise rather than truncating.
    pub fn from_f64(
        dtype: ElementType,
        shape: Vec<usize>,
        values: &[f64],
    ) -> Result<Self, HostTensorError> {
        let expected = element_count(&shape)?;
        if values.len() != expected {
            return Err(HostTensorError::ValueCount {
                shape,
                expected,
                actual: values.len(),
            });
        }
        let mut data = Vec::with_capacity(values.len().saturating_mul(dtype.size_bytes()));
        for (index, &value) in values.iter().enumerate() {
            element_values::encode(dtype, value, &mut data).ok_or(
                HostTensorError::NotRepresentable {
                    dtype,
                    index,
                    value,
                },
            )?;
        }
        Ok(HostTensor { dtype, shape, data })
    }

    pub fn dtype(&self) -> ElementType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements' bytes: little-endian, row-major.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Gives up the bytes without copying, e.g. to hand them to a device upload.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn element_count(&self) -> usize {
        self.data.len() / self.dtype.size_bytes()
    }

    /// Every element as `f64`, in row-major order.
    ///
    /// Exact for all types except `i64` values beyond ±2^53, which round to the nearest `f64`.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.values().collect()
    }

    /// The first NaN or infinity in row-major order, as (flat index, value); `None` for integer
    /// and bool tensors. Lets the runtime name the offending element of an input or output.
    pub fn first_nonfinite(&self) -> Option<(usize, f64)> {
        if !self.dtype.is_float() {
            return None;
        }
        self.values()
            .enumerate()
            .find(|(_, value)| !value.is_finite())
    }

    /// Relabels a `u16` tensor as `bf16` without touching its bytes.
    ///
    /// NumPy has no bf16, so a user without `ml_dtypes` saves bf16 bits as a `uint16` view
    /// (`t.view(torch.int16).numpy().view(np.uint16)`); the file then reads as `U16`. Only the
    /// caller knows, from the program's declared type, that those bits are bf16.
    pub fn reinterpret_u16_as_bf16(self) -> Result<Self, HostTensorError> {
        if self.dtype != ElementType::U16 {
            return Err(HostTensorError::NotU16 { dtype: self.dtype });
        }
        Ok(HostTensor {
            dtype: ElementType::Bf16,
            ..self
        })
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.data
            .chunks_exact(self.dtype.size_bytes())
            .map(|bytes| element_values::decode(self.dtype, bytes))
    }
}

/// The product of `shape`, or an error if it overflows `usize`.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize, HostTensorError> {
    shape
        .iter()
        .try_fold(1usize, |count, &dim| count.checked_mul(dim))
        .ok_or_else(|| HostTensorError::ShapeOverflow {
            shape: shape.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_byte_length_against_shape() {
        let error = HostTensor::new(ElementType::F32, vec![2, 3], vec![0; 23]);
        assert_eq!(
            error,
            Err(HostTensorError::ByteLength {
                dtype: ElementType::F32,
                shape: vec![2, 3],
                expected: 24,
                actual: 23
            })
        );
        let scalar = HostTensor::new(ElementType::F64, vec![], vec![0; 8]);
        assert_eq!(scalar.map(|t| t.element_count()), Ok(1));
        let empty = HostTensor::new(ElementType::I32, vec![4, 0, 2], vec![]);
        assert_eq!(empty.map(|t| t.element_count()), Ok(0));
    }

    #[test]
    fn new_rejects_overflowing_shapes_and_bad_bools() {
        let huge = vec![usize::MAX, 2];
        assert_eq!(
            HostTensor::new(ElementType::U16, huge.clone(), vec![]),
            Err(HostTensorError::ShapeOverflow { shape: huge })
        );
        assert_eq!(
            HostTensor::new(ElementType::Bool, vec![3], vec![1, 0, 2]),
            Err(HostTensorError::InvalidBool { index: 2, byte: 2 })
        );
    }

    #[test]
    fn from_f64_checks_count_and_representability() {
        assert_eq!(
            HostTensor::from_f64(ElementType::F32, vec![2], &[1.0]),
            Err(HostTensorError::ValueCount {
                shape: vec![2],
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            HostTensor::from_f64(ElementType::I32, vec![2], &[1.0, 0.5]),
            Err(HostTensorError::NotRepresentable {
                dtype: ElementType::I32,
                index: 1,
                value: 0.5
            })
        );
    }

    #[test]
    fn to_f64_vec_is_exact_for_the_kernel_types() {
        let values = [1.5, -0.09375, 65504.0, 6.103515625e-5];
        for dtype in [ElementType::F32, ElementType::F16, ElementType::F64] {
            let tensor = HostTensor::from_f64(dtype, vec![2, 2], &values);
            assert_eq!(
                tensor.map(|t| t.to_f64_vec()),
                Ok(values.to_vec()),
                "{dtype}"
            );
        }
        let bf16 = [1.5, -0.09375, 3.3895313892515355e38, -2f64.powi(-133)];
        let tensor = HostTensor::from_f64(ElementType::Bf16, vec![4], &bf16);
        assert_eq!(tensor.map(|t| t.to_f64_vec()), Ok(bf16.to_vec()));
        let ints = [f64::from(i32::MIN), -1.0, 7.0, f64::from(i32::MAX)];
        let tensor = HostTensor::from_f64(ElementType::I32, vec![4], &ints);
        assert_eq!(tensor.map(|t| t.to_f64_vec()), Ok(ints.to_vec()));
    }

    #[test]
    fn first_nonfinite_finds_the_first_nan_or_infinity() {
        let values = [1.0, 2.0, f64::INFINITY, f64::NAN];
        let tensor = HostTensor::from_f64(ElementType::F16, vec![4], &values);
        assert_eq!(
            tensor.map(|t| t.first_nonfinite()),
            Ok(Some((2, f64::INFINITY)))
        );
        let nan = HostTensor::from_f64(ElementType::Bf16, vec![2], &[0.5, f64::NAN]);
        let found = nan.map(|t| t.first_nonfinite());
        assert!(matches!(found, Ok(Some((1, value))) if value.is_nan()));
        let ints = HostTensor::from_f64(ElementType::I64, vec![1], &[3.0]);
        assert_eq!(ints.map(|t| t.first_nonfinite()), Ok(None));
        // f16 overflows to infinity, and that is what the runtime must report.
        let overflow = HostTensor::from_f64(ElementType::F16, vec![1], &[1e5]);
        assert_eq!(
            overflow.map(|t| t.first_nonfinite()),
            Ok(Some((0, f64::INFINITY)))
        );
    }

    #[test]
    fn reinterpret_keeps_bits_and_accepts_only_u16() {
        // 0x3FC0 is bf16 1.5; 0xC010 is bf16 -2.25.
        let u16s = HostTensor::new(ElementType::U16, vec![2], vec![0xC0, 0x3F, 0x10, 0xC0]);
        let bf16 = u16s.and_then(HostTensor::reinterpret_u16_as_bf16);
        assert_eq!(bf16.map(|t| t.to_f64_vec()), Ok(vec![1.5, -2.25]));
        let f32s = HostTensor::new(ElementType::F32, vec![1], vec![0; 4]);
        assert_eq!(
            f32s.and_then(HostTensor::reinterpret_u16_as_bf16),
            Err(HostTensorError::NotU16 {
                dtype: ElementType::F32
            })
        );
    }
}
