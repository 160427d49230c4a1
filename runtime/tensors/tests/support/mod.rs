//! Test data shared by the integration tests: seeded random tensors whose elements are never
//! all-zero bytes, so a reader that drops, shifts or zero-fills data cannot pass by luck.

use attnc_tensors::{ElementType, HostTensor, HostTensorError};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random bit patterns (NaN payloads, subnormals and infinities included for float types);
/// bools alternate randomly between 0 and 1, the only valid bytes.
pub fn random_bits(
    rng: &mut impl RngCore,
    dtype: ElementType,
    shape: &[usize],
) -> Result<HostTensor, HostTensorError> {
    let count: usize = shape.iter().product();
    let size = dtype.size_bytes();
    let mut data = vec![0u8; count * size];
    rng.fill_bytes(&mut data);
    if dtype == ElementType::Bool {
        data.iter_mut().for_each(|byte| *byte &= 1);
    } else {
        for element in data.chunks_exact_mut(size) {
            if element.iter().all(|&byte| byte == 0) {
                element[0] = 1;
            }
        }
    }
    HostTensor::new(dtype, shape.to_vec(), data)
}
