//! The kernel ABI of attnc as data, shared by the compiler and every runtime.
//!
//! The compiler's back ends write, next to the code they generate, a [`KernelManifest`]: the
//! kernel's dims, tensors, launches and run-time checks. A runtime (the host JIT, CUDA, Vulkan)
//! needs nothing else to run the code: this crate links no compiler, no LLVM, no MLIR and no
//! device library, so everything that runs kernels can depend on it.
//!
//! - [`ElementType`]: the one element-type enum of the project (tensors, buffers, IR types);
//! - [`Expr`]: integer expressions over dims (extents, grids, conditions), stored as text;
//! - [`KernelSignature`]: a kernel function's parameters, checked at load and at every call;
//! - [`KernelManifest`]: a whole compiled kernel, and [`KernelManifest::bind`] to bind a call.

mod bind;
mod element;
mod expr;
mod manifest;
mod signature;
mod target;

pub use bind::{BindError, DimValues, dims_text};
pub use element::ElementType;
pub use expr::{BinOp, EvalError, Expr, ParseError};
pub use manifest::{
    ABI_VERSION, Arg, Bound, DimDecl, Guard, KernelManifest, Launch, Requirement, STATUS_WORDS,
    StatusError, TENSOR_MAP_BYTES, TensorDecl, TensorMap, TensorMapEncoding, ValueRange, Workspace,
};
pub use signature::{Access, Extent, KernelSignature, Param};
pub use target::{TargetId, UnknownTarget};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A causal GQA kernel compiled for D=128: one launch over (query tiles, H, B).
    fn gqa() -> KernelManifest {
        let e = |s: &str| Expr::parse(s).unwrap();
        let tensor = |name: &str, shape: &[&str]| TensorDecl {
            name: name.into(),
            element: ElementType::Bf16,
            shape: shape.iter().map(|s| e(s)).collect(),
            range: None,
        };
        let buffer = |name: &str, access| Param::Buffer {
            name: name.into(),
            element: ElementType::Bf16,
            access,
            extent: vec![],
        };
        KernelManifest {
            abi_version: ABI_VERSION,
            kernel: "gqa_causal".into(),
            source: "examples/gqa_causal.attn".into(),
            target: "cuda:sm_90a".parse().unwrap(),
            dims: ["B", "H", "Hkv", "S"]
                .iter()
                .map(|d| DimDecl {
                    name: d.to_string(),
                    specialised: None,
                    default: None,
                })
                .chain([DimDecl {
                    name: "D".into(),
                    specialised: Some(128),
                    default: None,
                }])
                .collect(),
            requirements: vec![Requirement {
                text: "H % Hkv == 0".into(),
                condition: e("H % Hkv == 0"),
            }],
            inputs: vec![
                tensor("q", &["B", "H", "S", "D"]),
                tensor("k", &["B", "Hkv", "S", "D"]),
                tensor("v", &["B", "Hkv", "S", "D"]),
            ],
            outputs: vec![tensor("o", &["B", "H", "S", "D"])],
            workspaces: vec![],
            launches: vec![Launch {
                code: "kernel.ptx".into(),
                signature: KernelSignature {
                    name: "attnc_gqa_causal".into(),
                    params: vec![
                        buffer("q", Access::Read),
                        buffer("k", Access::Read),
                        buffer("v", Access::Read),
                        buffer("o", Access::Write),
                        Param::Buffer {
                            name: "status".into(),
                            element: ElementType::I32,
                            access: Access::ReadWrite,
                            extent: vec![Extent::Fixed(STATUS_WORDS as u64)],
                        },
                        Param::Int { name: "S".into() },
                    ],
                },
                args: vec![
                    Arg::Tensor { name: "q".into() },
                    Arg::Tensor { name: "k".into() },
                    Arg::Tensor { name: "v".into() },
                    Arg::Tensor { name: "o".into() },
                    Arg::Status,
                    Arg::Int { value: e("S") },
                ],
                grid: [e("ceil_div(S, 64)"), e("H"), e("B")],
                block: [128, 1, 1],
                shared_bytes: 65536,
            }],
            guards: vec![Guard {
                code: 1,
                message: "index {value} is outside axis 1 of `k` (size {bound})".into(),
                location: Some("gqa_causal.attn:9:31".into()),
            }],
            tiling: "query tile 64, key tile 64".into(),
        }
    }

    #[test]
    fn a_manifest_round_trips_through_json_and_validates() {
        let m = gqa();
        m.validate().unwrap();
        let text = serde_json::to_string_pretty(&m).unwrap();
        assert!(text.contains("\"ceil_div(S, 64)\""), "{text}");
        let back: KernelManifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn validation_catches_drift() {
        let mut m = gqa();
        m.launches[0].args.pop();
        assert!(m.validate().unwrap_err().contains("6 parameters but 5"));
        let mut m = gqa();
        m.launches[0].args[0] = Arg::Tensor { name: "x".into() };
        assert!(m.validate().unwrap_err().contains("cannot take"));
        let mut m = gqa();
        m.launches[0].grid[0] = Expr::parse("ceil_div(T, 64)").unwrap();
        assert!(
            m.validate()
                .unwrap_err()
                .contains("`T`, which is not a dim")
        );
        let mut m = gqa();
        m.abi_version = 99;
        assert!(m.validate().unwrap_err().contains("version 99"));
    }

    /// A tensor map's encoding is the tensor's dims and row-major byte strides and the box,
    /// innermost axis first; a manifest's tensor-map argument names inputs of its box's rank.
    #[test]
    fn tensor_maps_encode_in_the_drivers_order_and_validate() {
        let map = TensorMap {
            tensor: "k".into(),
            boxed: vec![1, 1, 64, 8],
        };
        let enc = map.encoding(&[2, 4, 1000, 128], 2).unwrap();
        assert_eq!(enc.dims, vec![128, 1000, 4, 2]);
        assert_eq!(enc.strides, vec![256, 256 * 1000, 256 * 1000 * 4]);
        assert_eq!(enc.boxed, vec![8, 64, 1, 1]);
        // Rows of 36 bytes are no multiple of 16; a box of 4 bf16 is not a 16-byte piece.
        assert!(
            map.encoding(&[2, 4, 1000, 18], 2)
                .unwrap_err()
                .contains("multiple of 16")
        );
        let narrow = TensorMap {
            tensor: "k".into(),
            boxed: vec![1, 1, 64, 4],
        };
        assert!(narrow.encoding(&[2, 4, 1000, 128], 2).is_err());
        assert!(map.encoding(&[4, 1000, 128], 2).is_err());

        let mut m = gqa();
        m.launches[0].signature.params.push(Param::Buffer {
            name: "tmaps".into(),
            element: ElementType::I64,
            access: Access::Read,
            extent: vec![Extent::Fixed(16)],
        });
        m.launches[0].args.push(Arg::TensorMaps {
            maps: vec![map.clone()],
        });
        m.validate().unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"from\":\"tensor_maps\""), "{text}");
        assert_eq!(serde_json::from_str::<KernelManifest>(&text).unwrap(), m);
        let mut bad = m.clone();
        bad.launches[0].args[6] = Arg::TensorMaps {
            maps: vec![TensorMap {
                tensor: "nothing".into(),
                boxed: vec![1, 1, 64, 8],
            }],
        };
        assert!(bad.validate().unwrap_err().contains("cannot take"));
    }

    #[test]
    fn binding_takes_shapes_and_checks_everything() {
        let m = gqa();
        let shapes: BTreeMap<String, Vec<usize>> = [
            ("q".to_string(), vec![2, 8, 77, 128]),
            ("k".to_string(), vec![2, 2, 77, 128]),
            ("v".to_string(), vec![2, 2, 77, 128]),
        ]
        .into();
        let dims = m.bind(&BTreeMap::new(), &shapes).unwrap();
        assert_eq!(dims_text(&dims), "B=2, D=128, H=8, Hkv=2, S=77");
        assert_eq!(
            m.shape_of(&m.outputs[0], &dims).unwrap(),
            vec![2, 8, 77, 128]
        );

        let mut wrong = shapes.clone();
        wrong.insert("k".into(), vec![2, 3, 77, 128]);
        wrong.insert("v".into(), vec![2, 3, 77, 128]);
        let errors = m.bind(&BTreeMap::new(), &wrong).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].0.contains("requirement `H % Hkv == 0`"),
            "{errors:?}"
        );

        let mut wrong = shapes.clone();
        for t in ["q", "k", "v"] {
            let mut s = shapes[t].clone();
            s[3] = 64;
            wrong.insert(t.into(), s);
        }
        let errors = m.bind(&BTreeMap::new(), &wrong).unwrap_err();
        assert!(errors[0].0.contains("compiled for D=128"), "{errors:?}");

        let errors = m.bind(&[("X".to_string(), 3)].into(), &shapes).unwrap_err();
        assert!(errors[0].0.contains("`X` is not a dim"), "{errors:?}");
    }

    #[test]
    fn status_words_name_the_failed_check() {
        let m = gqa();
        assert_eq!(m.check_status(&[0, 0, 0, 0]), Ok(()));
        assert_eq!(
            m.check_status(&[1, 9, 2, 0]),
            Err(StatusError::Failed(
                "gqa_causal.attn:9:31: index 9 is outside axis 1 of `k` (size 2)".into()
            ))
        );
        assert_eq!(m.check_status(&[7, 0, 0, 0]), Err(StatusError::Unknown(7)));
    }
}
