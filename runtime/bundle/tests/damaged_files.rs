//! A bundle survives a round trip, and every kind of damage gives its own clear error: never a
//! panic, never a manifest that was not validated.

use attnc_bundle::{Bundle, BundleError, FORMAT_VERSION, MAGIC};
use attnc_kernel_abi::{
    ABI_VERSION, Access, Arg, DimDecl, ElementType, Expr, KernelManifest, KernelSignature, Launch,
    Param, TensorDecl,
};

fn sample() -> Bundle {
    let e = |s: &str| Expr::parse(s).unwrap();
    let manifest = KernelManifest {
        abi_version: ABI_VERSION,
        kernel: "scale".into(),
        source: "scale.attn".into(),
        target: "cuda:sm_90a".parse().unwrap(),
        dims: vec![DimDecl {
            name: "N".into(),
            specialised: None,
            default: None,
        }],
        requirements: vec![],
        inputs: vec![TensorDecl {
            name: "x".into(),
            element: ElementType::F32,
            shape: vec![e("N")],
            range: None,
        }],
        outputs: vec![TensorDecl {
            name: "y".into(),
            element: ElementType::F32,
            shape: vec![e("N")],
            range: None,
        }],
        workspaces: vec![],
        launches: vec![Launch {
            code: "kernel.ptx".into(),
            signature: KernelSignature {
                name: "scale".into(),
                params: vec![
                    Param::Buffer {
                        name: "x".into(),
                        element: ElementType::F32,
                        access: Access::Read,
                        extent: vec![],
                    },
                    Param::Buffer {
                        name: "y".into(),
                        element: ElementType::F32,
                        access: Access::Write,
                        extent: vec![],
                    },
                    Param::Int { name: "n".into() },
                ],
            },
            args: vec![
                Arg::Tensor { name: "x".into() },
                Arg::Tensor { name: "y".into() },
                Arg::Int { value: e("N") },
            ],
            grid: [e("ceil_div(N, 256)"), e("1"), e("1")],
            block: [256, 1, 1],
            shared_bytes: 0,
        }],
        guards: vec![],
        tiling: String::new(),
    };
    Bundle {
        manifest,
        sections: vec![(
            "kernel.ptx".into(),
            b".version 8.0\n.target sm_90a\n".to_vec(),
        )],
    }
}

#[test]
fn round_trip_through_a_file() {
    let b = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.attnb");
    b.write(&path).unwrap();
    let back = Bundle::read(&path).unwrap();
    assert_eq!(back, b);
    assert_eq!(
        back.section("kernel.ptx").unwrap(),
        b.sections[0].1.as_slice()
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().to_bytes().unwrap();
    for len in 0..bytes.len() {
        let err = Bundle::from_bytes(&bytes[..len]).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::NotABundle | BundleError::Truncated { .. } | BundleError::Corrupt(_)
            ),
            "at {len}: {err}"
        );
    }
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = sample().to_bytes().unwrap();
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(
            Bundle::from_bytes(&bad).is_err(),
            "a flip at byte {at} went unnoticed"
        );
    }
}

#[test]
fn wrong_version_wrong_target_and_bad_manifests_say_so() {
    let mut bytes = sample().to_bytes().unwrap();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Bundle::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, BundleError::Version { found } if found == FORMAT_VERSION + 1));
    assert!(err.to_string().contains("rebuild the bundle"));

    let mut text = b"not a bundle at all".to_vec();
    assert!(matches!(
        Bundle::from_bytes(&text),
        Err(BundleError::NotABundle)
    ));
    text.splice(0..0, MAGIC.iter().copied());
    assert!(Bundle::from_bytes(&text).is_err());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.attnb");
    sample().write(&path).unwrap();
    let err = Bundle::read_for(&path, "vulkan", |t| t.to_string() == "vulkan").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the bundle was built for cuda:sm_90a, not for vulkan"
    );

    let mut b = sample();
    b.manifest.abi_version = ABI_VERSION + 1;
    let err = Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap_err();
    assert!(matches!(err, BundleError::Manifest(_)), "{err}");

    let mut b = sample();
    b.sections.clear();
    let err = Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap_err();
    assert!(err.to_string().contains("lacks"), "{err}");

    let err = Bundle::read(&dir.path().join("missing.attnb")).unwrap_err();
    assert!(err.to_string().contains("missing.attnb"), "{err}");
}
