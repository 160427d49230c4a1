//! The SPIR-V kernel ABI as code: which descriptor binding and which push-constant offset each
//! parameter of a [`KernelSignature`] gets, and the bytes of the push-constant block of one
//! launch. The crate's top documentation states the ABI in words; this module is the one place
//! that computes it, with no device involved, so the SPIR-V code generator can call it too.

use attnc_device::ArgValue;
use attnc_kernel_abi::{KernelSignature, Param};

/// Bytes of one push-constant slot: every scalar parameter is a 32-bit value.
pub const SCALAR_BYTES: u32 = 4;

/// Where the parameters of one signature live in a Vulkan compute pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchLayout {
    /// `buffers[k]` is the index (in the signature) of the parameter bound at binding `k` of
    /// descriptor set 0.
    pub buffers: Vec<usize>,
    /// `scalars[s]` is the index of the `Int` or `F32` parameter at push-constant offset `4·s`.
    pub scalars: Vec<usize>,
}

/// Why the push constants of a launch cannot be formed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AbiError {
    #[error(
        "its {count} scalar parameters need a {bytes}-byte push-constant block; the device allows {max} bytes"
    )]
    PushConstantsTooLarge { count: usize, bytes: u32, max: u32 },
    #[error(
        "`Int` parameter `{param}` is {value}, which does not fit the 32-bit push constant the SPIR-V ABI passes it in"
    )]
    IntOutOfRange { param: String, value: i64 },
    #[error("parameter `{param}` ({wanted}) was given {given:?} (a runtime bug)")]
    Mismatch {
        param: String,
        wanted: String,
        given: String,
    },
}

impl LaunchLayout {
    pub fn of(signature: &KernelSignature) -> LaunchLayout {
        let mut layout = LaunchLayout {
            buffers: Vec::new(),
            scalars: Vec::new(),
        };
        for (index, param) in signature.params.iter().enumerate() {
            match param {
                Param::Buffer { .. } => layout.buffers.push(index),
                Param::Int { .. } | Param::F32 { .. } => layout.scalars.push(index),
            }
        }
        layout
    }

    /// Size of the push-constant block; 0 when the signature has no scalar.
    pub fn push_constant_bytes(&self) -> u32 {
        SCALAR_BYTES.saturating_mul(self.scalars.len() as u32)
    }

    /// Checks the block against the device's `maxPushConstantsSize`.
    pub fn check_push_constants(&self, max: u32) -> Result<(), AbiError> {
        let bytes = self.push_constant_bytes();
        if bytes > max {
            return Err(AbiError::PushConstantsTooLarge {
                count: self.scalars.len(),
                bytes,
                max,
            });
        }
        Ok(())
    }

    /// The push-constant block for `args` (one per parameter, as `attnc_device::launch_args`
    /// forms them): `Int`s as little-endian `i32`, `F32`s as their bits.
    pub fn push_constants(
        &self,
        signature: &KernelSignature,
        args: &[ArgValue<'_>],
    ) -> Result<Vec<u8>, AbiError> {
        let mut block = Vec::with_capacity(self.push_constant_bytes() as usize);
        for &index in &self.scalars {
            let param = &signature.params[index];
            let word = match (param, args.get(index)) {
                (Param::Int { name }, Some(ArgValue::Int(value))) => i32::try_from(*value)
                    .map_err(|_| AbiError::IntOutOfRange {
                        param: name.clone(),
                        value: *value,
                    })?
                    .to_le_bytes(),
                (Param::F32 { .. }, Some(ArgValue::F32(value))) => value.to_bits().to_le_bytes(),
                (param, given) => {
                    return Err(AbiError::Mismatch {
                        param: param.name().to_string(),
                        wanted: param.describe(),
                        given: format!("{given:?}"),
                    });
                }
            };
            block.extend_from_slice(&word);
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attnc_kernel_abi::{Access, ElementType};

    fn signature() -> KernelSignature {
        let buffer = |name: &str| Param::Buffer {
            name: name.into(),
            element: ElementType::F32,
            access: Access::Read,
            extent: vec![],
        };
        KernelSignature {
            name: "k".into(),
            params: vec![
                Param::Int { name: "n".into() },
                buffer("x"),
                Param::F32 {
                    name: "scale".into(),
                },
                buffer("y"),
                Param::Int { name: "m".into() },
            ],
        }
    }

    #[test]
    fn buffers_and_scalars_are_numbered_in_signature_order() {
        let layout = LaunchLayout::of(&signature());
        assert_eq!(layout.buffers, vec![1, 3]);
        assert_eq!(layout.scalars, vec![0, 2, 4]);
        assert_eq!(layout.push_constant_bytes(), 12);
        assert!(layout.check_push_constants(12).is_ok());
        assert_eq!(
            layout.check_push_constants(8).unwrap_err().to_string(),
            "its 3 scalar parameters need a 12-byte push-constant block; the device allows 8 bytes"
        );
    }

    #[test]
    fn push_constants_are_packed_as_32_bit_words() {
        let sig = signature();
        let layout = LaunchLayout::of(&sig);
        let args = [
            ArgValue::Int(-3),
            ArgValue::Tensor("x"),
            ArgValue::F32(0.5),
            ArgValue::Tensor("y"),
            ArgValue::Int(i32::MAX as i64),
        ];
        let block = layout.push_constants(&sig, &args).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&(-3i32).to_le_bytes());
        want.extend_from_slice(&0.5f32.to_bits().to_le_bytes());
        want.extend_from_slice(&i32::MAX.to_le_bytes());
        assert_eq!(block, want);

        let mut big = args.clone();
        big[4] = ArgValue::Int(1 << 31);
        assert_eq!(
            layout.push_constants(&sig, &big).unwrap_err(),
            AbiError::IntOutOfRange {
                param: "m".into(),
                value: 1 << 31
            }
        );
    }
}
