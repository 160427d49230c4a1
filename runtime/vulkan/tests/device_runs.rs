//! The Vulkan runtime on a real device: lavapipe in CI (Mesa's CPU driver), any Vulkan 1.3 GPU
//! elsewhere. Each test builds its SPIR-V with rspirv, bundles it with a manifest, and checks
//! every output element, the status words, launch order, and the errors a user can meet. With
//! no loader or device, each test prints "skipped: …" and returns.

mod support;

use attnc_device::{Device, DeviceError, Tensors};
use attnc_kernel_abi::{Access, Arg, DimValues, ElementType, StatusError, TargetId};
use attnc_tensors::HostTensor;
use attnc_vulkan::{VulkanDevice, enumerate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::*;

fn random(seed: u64, n: usize) -> Vec<f32> {
    println!("seed {seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-4.0f32..4.0)).collect()
}

fn tensor_of(values: &[f32]) -> HostTensor {
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    HostTensor::new(ElementType::F32, vec![values.len()], bytes).unwrap()
}

fn values(t: &HostTensor) -> Vec<f32> {
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn dims(l: i64) -> DimValues {
    [("L".to_string(), l)].into()
}

fn inputs(x: &[f32]) -> Tensors {
    [("x".to_string(), tensor_of(x))].into()
}

/// `y = two * x + n` with `len` threads writing; the other elements must stay NaN.
fn affine_manifest(len: &str, n: &str) -> attnc_kernel_abi::KernelManifest {
    manifest(
        "affine",
        &[],
        vec![tensor("x", &["L"])],
        vec![tensor("y", &["L"])],
        vec![launch(
            "affine",
            vec![
                buffer("x", Access::Read, "len"),
                int("len"),
                buffer("y", Access::Write, "len"),
                attnc_kernel_abi::Param::F32 { name: "two".into() },
                int("n"),
            ],
            vec![
                tensor_arg("x"),
                int_arg(len),
                tensor_arg("y"),
                Arg::F32 { value: 2.0 },
                int_arg(n),
            ],
        )],
    )
}

#[test]
fn lists_devices_and_reads_capabilities() {
    let Some(dev) = device() else { return };
    let devices = enumerate().unwrap();
    for d in &devices {
        println!("{d}");
    }
    assert!(devices.iter().any(|d| d == dev.info()), "{devices:?}");
    let caps = dev.capabilities();
    println!("{}\n{caps}", dev.name());
    assert!(caps.subgroup_size >= 1);
    assert!(
        caps.max_compute_shared_memory_bytes >= 16384,
        "Vulkan's minimum"
    );
    assert!(caps.max_push_constants_bytes >= 128, "Vulkan's minimum");
    assert!(caps.max_compute_workgroup_invocations >= 128);
    assert!(!caps.memory_heaps.is_empty());
    let target = |s: &str| s.parse::<TargetId>().unwrap();
    assert!(dev.accepts(&target("vulkan")));
    assert!(!dev.accepts(&target("cuda:sm_90a")) && !dev.accepts(&target("cpu")));
    assert_eq!(
        dev.accepts(&target("vulkan:coopmat")),
        caps.cooperative_matrix
            .as_ref()
            .is_some_and(|c| c.in_compute)
    );
    let again = VulkanDevice::open(&format!("vulkan:{}", dev.info().index)).unwrap();
    assert_eq!(again.info(), dev.info());
}

#[test]
fn affine_kernel_writes_every_element_and_leaves_the_rest_nan() {
    let Some(dev) = device() else { return };
    let l = 1000;
    let x = random(11, l);
    let kernel = dev
        .load(&bundle(
            affine_manifest("L", "L + 7"),
            support::shaders::affine(),
        ))
        .unwrap();
    // Twice: the second call reuses the pipelines made at load.
    for _ in 0..2 {
        let out = kernel.run(&dims(l as i64), &inputs(&x)).unwrap();
        let y = values(&out["y"]);
        assert_eq!(y.len(), l);
        for (i, (yi, xi)) in y.iter().zip(&x).enumerate() {
            let want = 2.0f32 * xi + (l as f32 + 7.0);
            assert_eq!(yi.to_bits(), want.to_bits(), "y[{i}] = {yi}, want {want}");
        }
    }

    let partial = dev
        .load(&bundle(
            affine_manifest("L - 10", "0"),
            support::shaders::affine(),
        ))
        .unwrap();
    let y = values(&partial.run(&dims(l as i64), &inputs(&x)).unwrap()["y"]);
    for (i, (yi, xi)) in y.iter().zip(&x).enumerate() {
        if i < l - 10 {
            assert_eq!(*yi, 2.0 * xi, "y[{i}]");
        } else {
            assert!(
                yi.is_nan(),
                "y[{i}] = {yi} was never written, so it must be NaN"
            );
        }
    }
}

fn gather_manifest(offset: &str, code: &str) -> attnc_kernel_abi::KernelManifest {
    manifest(
        "gather",
        &[],
        vec![tensor("x", &["L"])],
        vec![tensor("y", &["L"])],
        vec![launch(
            "gather",
            vec![
                buffer("x", Access::Read, "len"),
                buffer("y", Access::Write, "len"),
                status_param(),
                int("len"),
                int("offset"),
                int("code"),
            ],
            vec![
                tensor_arg("x"),
                tensor_arg("y"),
                Arg::Status,
                int_arg("L"),
                int_arg(offset),
                int_arg(code),
            ],
        )],
    )
}

#[test]
fn a_failed_guard_is_reported_with_its_message() {
    let Some(dev) = device() else { return };
    let l = 300;
    let x = random(12, l);
    let code = support::shaders::guarded_gather();
    let fine = dev
        .load(&bundle(gather_manifest("0", "7"), code.clone()))
        .unwrap();
    let y = values(&fine.run(&dims(l as i64), &inputs(&x)).unwrap()["y"]);
    assert_eq!(y, x);

    let failing = dev
        .load(&bundle(gather_manifest("5", "7"), code.clone()))
        .unwrap();
    let err = failing.run(&dims(l as i64), &inputs(&x)).unwrap_err();
    let DeviceError::Status(StatusError::Failed(message)) = &err else {
        panic!("expected a failed guard, got {err}");
    };
    let value: i32 = message
        .strip_prefix("tests/gather.attn:3:9: index ")
        .and_then(|m| m.strip_suffix(" is outside `x` (size 300)"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message: {message}"));
    assert!((300..305).contains(&value), "{message}");

    let unknown = dev.load(&bundle(gather_manifest("5", "9"), code)).unwrap();
    let err = unknown.run(&dims(l as i64), &inputs(&x)).unwrap_err();
    assert!(
        matches!(err, DeviceError::Status(StatusError::Unknown(9))),
        "{err}"
    );
}

fn two_stage_manifest(
    workspace_len: &str,
    extra_dims: &[&str],
) -> attnc_kernel_abi::KernelManifest {
    let ws = || Arg::Workspace { name: "ws".into() };
    let mut m = manifest(
        "two_stage",
        extra_dims,
        vec![tensor("x", &["L"])],
        vec![tensor("y", &["L"])],
        vec![
            launch(
                "accumulate",
                vec![
                    buffer("x", Access::Read, "len"),
                    buffer("ws", Access::ReadWrite, "len"),
                    int("len"),
                ],
                vec![tensor_arg("x"), ws(), int_arg("L")],
            ),
            launch(
                "finish",
                vec![
                    buffer("ws", Access::Read, "len"),
                    buffer("x", Access::Read, "len"),
                    buffer("y", Access::Write, "len"),
                    int("len"),
                ],
                vec![ws(), tensor_arg("x"), tensor_arg("y"), int_arg("L")],
            ),
        ],
    );
    m.workspaces = vec![workspace("ws", workspace_len)];
    m
}

#[test]
fn launches_run_in_order_on_a_zeroed_workspace_and_time() {
    let Some(dev) = device() else { return };
    let l = 777;
    let x = random(13, l);
    let kernel = dev
        .load(&bundle(
            two_stage_manifest("L", &[]),
            support::shaders::two_stage(),
        ))
        .unwrap();
    // The first launch adds into the workspace: a second call sees it zeroed again.
    for _ in 0..2 {
        let y = values(&kernel.run(&dims(l as i64), &inputs(&x)).unwrap()["y"]);
        for (i, (yi, xi)) in y.iter().zip(&x).enumerate() {
            let want = 3.0f32 * xi + xi;
            assert_eq!(yi.to_bits(), want.to_bits(), "y[{i}] = {yi}, want {want}");
        }
    }
    let timing = kernel.time(&dims(l as i64), &inputs(&x), 2, 5).unwrap();
    println!("{timing:?}");
    assert_eq!(timing.samples, 5);
    assert!(
        timing.min_s > 0.0 && timing.min_s <= timing.median_s,
        "{timing:?}"
    );
    assert!(timing.median_s < 10.0, "{timing:?}");
    assert!(matches!(
        kernel.time(&dims(l as i64), &inputs(&x), 0, 0),
        Err(DeviceError::Input(_))
    ));
}

#[test]
fn staging_copies_give_the_same_results() {
    let Some(mut dev) = device() else { return };
    dev.set_always_stage(true);
    let l = 333;
    let x = random(14, l);
    let affine = dev
        .load(&bundle(
            affine_manifest("L - 3", "L"),
            support::shaders::affine(),
        ))
        .unwrap();
    let y = values(&affine.run(&dims(l as i64), &inputs(&x)).unwrap()["y"]);
    for (i, (yi, xi)) in y.iter().zip(&x).enumerate() {
        if i < l - 3 {
            assert_eq!(yi.to_bits(), (2.0f32 * xi + l as f32).to_bits(), "y[{i}]");
        } else {
            assert!(yi.is_nan(), "y[{i}] = {yi}");
        }
    }
    let gather = dev
        .load(&bundle(
            gather_manifest("1", "7"),
            support::shaders::guarded_gather(),
        ))
        .unwrap();
    let err = gather.run(&dims(l as i64), &inputs(&x)).unwrap_err();
    assert!(
        err.to_string().contains("is outside `x` (size 333)"),
        "{err}"
    );
    let two_stage = dev
        .load(&bundle(
            two_stage_manifest("L", &[]),
            support::shaders::two_stage(),
        ))
        .unwrap();
    for _ in 0..2 {
        let y = values(&two_stage.run(&dims(l as i64), &inputs(&x)).unwrap()["y"]);
        for (i, (yi, xi)) in y.iter().zip(&x).enumerate() {
            assert_eq!(yi.to_bits(), (3.0f32 * xi + xi).to_bits(), "y[{i}]");
        }
    }
    let timing = two_stage.time(&dims(l as i64), &inputs(&x), 1, 3).unwrap();
    assert_eq!(timing.samples, 3);
}

/// Loads `manifest` with `code` and returns the load error's text.
fn load_error(
    dev: &VulkanDevice,
    manifest: attnc_kernel_abi::KernelManifest,
    code: Vec<u8>,
) -> String {
    match dev.load(&bundle(manifest, code)) {
        Ok(_) => panic!("the kernel loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_kernel_and_the_problem() {
    let Some(dev) = device() else { return };
    let caps = dev.capabilities().clone();
    let affine = support::shaders::affine;

    // More scalars than fit in the device's push constants.
    let many = caps.max_push_constants_bytes as usize / 4 + 1;
    let mut m = affine_manifest("L", "0");
    for k in 0..many {
        m.launches[0]
            .signature
            .params
            .push(int(&format!("extra{k}")));
        m.launches[0].args.push(int_arg("1"));
    }
    let err = load_error(&dev, m, affine());
    assert!(
        err.starts_with("cannot load kernel `affine`: launch `affine`: its ")
            && err.contains(&format!(
                "the device allows {} bytes",
                caps.max_push_constants_bytes
            )),
        "{err}"
    );

    // An `Int` that does not fit its 32-bit push constant.
    let kernel = dev
        .load(&bundle(affine_manifest("L", "L + 3000000000"), affine()))
        .unwrap();
    let err = kernel
        .run(&dims(4), &inputs(&[1.0; 4]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kernel `affine`, launch `affine`: `Int` parameter `n` is 3000000004, which does not fit"),
        "{err}"
    );

    // Bundles for other targets.
    let mut m = affine_manifest("L", "0");
    m.target = "cuda:sm_90a".parse().unwrap();
    let err = load_error(&dev, m, affine());
    assert!(
        err.starts_with("the bundle is for cuda:sm_90a, which "),
        "{err}"
    );
    if caps.cooperative_matrix.is_none() {
        let mut m = affine_manifest("L", "0");
        m.target = "vulkan:coopmat".parse().unwrap();
        let err = load_error(&dev, m, affine());
        assert!(
            err.starts_with("the bundle is for vulkan:coopmat, which "),
            "{err}"
        );
    }

    // A manifest that drifted from its shader, or asks more than the device has.
    let mut m = affine_manifest("L", "0");
    m.launches[0].block = [32, 1, 1];
    let err = load_error(&dev, m, affine());
    assert!(
        err.contains(
            "the shader's workgroup size is [64, 1, 1], the manifest's block is [32, 1, 1]"
        ),
        "{err}"
    );
    let mut m = affine_manifest("L", "0");
    m.launches[0].signature.name = "nope".into();
    let err = load_error(&dev, m, affine());
    assert!(
        err.contains("no GLCompute entry point `nope` (it has: affine)"),
        "{err}"
    );
    let mut m = affine_manifest("L", "0");
    m.launches[0].shared_bytes = caps.max_compute_shared_memory_bytes + 4;
    let err = load_error(&dev, m, affine());
    assert!(err.contains("(maxComputeSharedMemorySize)"), "{err}");
    let mut m = two_stage_manifest("L", &[]);
    m.launches[1].signature.params.remove(2);
    m.launches[1].args.remove(2);
    let err = load_error(&dev, m, support::shaders::two_stage());
    assert!(
        err.contains("launch `finish`: the shader uses descriptor set 0 binding 2, but the signature provides bindings 0 to 1"),
        "{err}"
    );
    let err = load_error(&dev, affine_manifest("L", "0"), b"not SPIR-V!!".to_vec());
    assert!(
        err.contains("does not start with the SPIR-V magic number"),
        "{err}"
    );

    // Calls the device cannot hold, and inputs of the wrong shape.
    let kernel = dev
        .load(&bundle(
            two_stage_manifest("L * R", &["R"]),
            support::shaders::two_stage(),
        ))
        .unwrap();
    let mut huge = dims(4);
    huge.insert("R".into(), 1 << 40);
    let err = kernel.run(&huge, &inputs(&[1.0; 4])).unwrap_err();
    assert!(matches!(err, DeviceError::Memory { .. }), "{err}");
    let err = kernel
        .run(&dims(5), &inputs(&[1.0; 4]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("input `x` must be f32[5]"), "{err}");
}
