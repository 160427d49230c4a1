//! attnc-cuda on a real GPU: hand-written PTX kernels (tests/ptx/, checked with
//! `ptxas -arch=sm_90a`) bundled here and run through the runtime on seeded random inputs,
//! every element checked. Covers each kind of argument, the NaN poison of unwritten outputs,
//! dynamic shared memory past 48 KiB, a guard's status report, JIT failures, the memory check
//! and timing.
//!
//! Without a CUDA driver each test prints "skipped: no CUDA driver (…)" and returns. On the GPU
//! machine, set `ATTNC_REQUIRE_GPU=1` to make a skip a failure.

use attnc_bundle::Bundle;
use attnc_cuda::CudaDevice;
use attnc_device::{Device, DeviceError, Tensors};
use attnc_kernel_abi::{
    ABI_VERSION, Access, Arg, DimDecl, DimValues, ElementType, Expr, Extent, Guard, KernelManifest,
    KernelSignature, Launch, Param, STATUS_WORDS, StatusError, TensorDecl, Workspace,
};
use attnc_tensors::HostTensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const AXPB_PTX: &str = include_str!("ptx/axpb.ptx");
const GUARD_PTX: &str = include_str!("ptx/guard.ptx");

/// The device, or `None` after printing why the test is skipped.
fn gpu() -> Option<CudaDevice> {
    match CudaDevice::open(0) {
        Ok(device) => Some(device),
        Err(DeviceError::Unavailable(why)) => {
            let reason = if attnc_cuda::driver_present() {
                format!("skipped: no CUDA device ({why})")
            } else {
                "skipped: no CUDA driver (libcuda.so cannot be opened)".to_string()
            };
            assert!(
                std::env::var_os("ATTNC_REQUIRE_GPU").is_none(),
                "ATTNC_REQUIRE_GPU is set, but {reason}"
            );
            println!("{reason}");
            None
        }
        Err(other) => panic!("opening cuda:0 failed: {other}"),
    }
}

fn e(s: &str) -> Expr {
    Expr::parse(s).unwrap()
}

fn tensor(name: &str, element: ElementType, shape: &str) -> TensorDecl {
    TensorDecl {
        name: name.into(),
        element,
        shape: vec![e(shape)],
        range: None,
    }
}

fn buffer(name: &str, element: ElementType, access: Access, extent: &str) -> Param {
    Param::Buffer {
        name: name.into(),
        element,
        access,
        extent: vec![Extent::Param(extent.into())],
    }
}

fn dims(pairs: &[(&str, i64)]) -> DimValues {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn dim(name: &str) -> DimDecl {
    DimDecl {
        name: name.into(),
        specialised: None,
        default: None,
    }
}

/// `y[i] = a * x[i] + n` for i < `n` (an expression of N), with `a` = 2.
fn axpb(n: &str) -> Bundle {
    let manifest = KernelManifest {
        abi_version: ABI_VERSION,
        kernel: "axpb".into(),
        source: "tests/ptx/axpb.ptx".into(),
        target: "cuda:sm_80".parse().unwrap(),
        dims: vec![dim("N")],
        requirements: vec![],
        inputs: vec![tensor("x", ElementType::F32, "N")],
        outputs: vec![tensor("y", ElementType::F32, "N")],
        workspaces: vec![],
        launches: vec![Launch {
            code: "axpb.ptx".into(),
            signature: KernelSignature {
                name: "attnc_axpb".into(),
                params: vec![
                    buffer("x", ElementType::F32, Access::Read, "n"),
                    buffer("y", ElementType::F32, Access::Write, "n"),
                    Param::Int { name: "n".into() },
                    Param::F32 { name: "a".into() },
                ],
            },
            args: vec![
                Arg::Tensor { name: "x".into() },
                Arg::Tensor { name: "y".into() },
                Arg::Int { value: e(n) },
                Arg::F32 { value: 2.0 },
            ],
            grid: [e("ceil_div(N, 256)"), e("1"), e("1")],
            block: [256, 1, 1],
            shared_bytes: 0,
        }],
        guards: vec![],
        tiling: "one element per thread".into(),
    };
    Bundle {
        manifest,
        sections: vec![("axpb.ptx".into(), AXPB_PTX.as_bytes().to_vec())],
    }
}

fn random_f32(n: usize, seed: u64) -> (HostTensor, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-4.0f32..4.0)).collect();
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    (
        HostTensor::new(ElementType::F32, vec![n], bytes).unwrap(),
        values,
    )
}

fn f32s(t: &HostTensor) -> Vec<f32> {
    assert_eq!(t.dtype(), ElementType::F32);
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn axpb_matches_every_element() {
    let Some(gpu) = gpu() else { return };
    println!("on {}", gpu.name());
    let bundle = axpb("N");
    let kernel = gpu.load(&bundle).unwrap();
    for (n, seed) in [(1usize, 1u64), (1000, 2), (256 * 33 + 7, 3)] {
        println!("N={n}, seed {seed}");
        let (x, values) = random_f32(n, seed);
        let inputs: Tensors = [("x".to_string(), x)].into();
        let out = kernel.run(&dims(&[("N", n as i64)]), &inputs).unwrap();
        let y = f32s(&out["y"]);
        assert_eq!(y.len(), n);
        for (i, (got, xi)) in y.iter().zip(&values).enumerate() {
            let want = 2.0f32.mul_add(*xi, n as f32);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "y[{i}] = {got}, want {want} (seed {seed})"
            );
        }
    }
}

#[test]
fn unwritten_outputs_come_back_nan() {
    let Some(gpu) = gpu() else { return };
    let bundle = axpb("N - 3");
    let kernel = gpu.load(&bundle).unwrap();
    let (x, values) = random_f32(100, 4);
    let out = kernel
        .run(&dims(&[("N", 100)]), &[("x".to_string(), x)].into())
        .unwrap();
    let y = f32s(&out["y"]);
    for (i, got) in y.iter().enumerate() {
        if i < 97 {
            assert_eq!(*got, 2.0f32.mul_add(values[i], 97.0), "y[{i}]");
        } else {
            assert!(
                got.is_nan(),
                "y[{i}] = {got}, but the kernel does not write it"
            );
        }
    }
}

#[test]
fn dynamic_shared_memory_past_48_kib() {
    let Some(gpu) = gpu() else { return };
    let mut bundle = axpb("N");
    let launch = &mut bundle.manifest.launches[0];
    launch.signature = KernelSignature {
        name: "attnc_copy_shared".into(),
        params: vec![
            buffer("x", ElementType::F32, Access::Read, "n"),
            buffer("y", ElementType::F32, Access::Write, "n"),
            Param::Int { name: "n".into() },
        ],
    };
    launch.args.pop();
    launch.shared_bytes = 64 * 1024;
    let kernel = gpu.load(&bundle).unwrap();
    let (x, values) = random_f32(5000, 5);
    let out = kernel
        .run(&dims(&[("N", 5000)]), &[("x".to_string(), x)].into())
        .unwrap();
    assert_eq!(f32s(&out["y"]), values);
}

/// `y[i] = table[idx[i]]`, with guard 3 on `0 <= idx[i] < T`.
fn gather() -> Bundle {
    let status = Param::Buffer {
        name: "status".into(),
        element: ElementType::I32,
        access: Access::ReadWrite,
        extent: vec![Extent::Fixed(STATUS_WORDS as u64)],
    };
    let manifest = KernelManifest {
        abi_version: ABI_VERSION,
        kernel: "gather".into(),
        source: "tests/ptx/guard.ptx".into(),
        target: "cuda:sm_80".parse().unwrap(),
        dims: vec![dim("N"), dim("T")],
        requirements: vec![],
        inputs: vec![
            tensor("table", ElementType::F32, "T"),
            tensor("idx", ElementType::I32, "N"),
        ],
        outputs: vec![tensor("y", ElementType::F32, "N")],
        workspaces: vec![],
        launches: vec![Launch {
            code: "guard.ptx".into(),
            signature: KernelSignature {
                name: "attnc_gather".into(),
                params: vec![
                    buffer("table", ElementType::F32, Access::Read, "bound"),
                    buffer("idx", ElementType::I32, Access::Read, "n"),
                    buffer("y", ElementType::F32, Access::Write, "n"),
                    status,
                    Param::Int { name: "n".into() },
                    Param::Int {
                        name: "bound".into(),
                    },
                ],
            },
            args: vec![
                Arg::Tensor {
                    name: "table".into(),
                },
                Arg::Tensor { name: "idx".into() },
                Arg::Tensor { name: "y".into() },
                Arg::Status,
                Arg::Int { value: e("N") },
                Arg::Int { value: e("T") },
            ],
            grid: [e("ceil_div(N, 128)"), e("1"), e("1")],
            block: [128, 1, 1],
            shared_bytes: 0,
        }],
        guards: vec![Guard {
            code: 3,
            message: "index {value} is outside axis 0 of `table` (size {bound})".into(),
            location: Some("gather.attn:4:12".into()),
        }],
        tiling: String::new(),
    };
    Bundle {
        manifest,
        sections: vec![("guard.ptx".into(), GUARD_PTX.as_bytes().to_vec())],
    }
}

#[test]
fn a_failed_guard_reports_its_message() {
    let Some(gpu) = gpu() else { return };
    let bundle = gather();
    let kernel = gpu.load(&bundle).unwrap();
    let (table, table_values) = random_f32(64, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut idx: Vec<i32> = (0..1000).map(|_| rng.random_range(0..64)).collect();
    let as_tensor = |idx: &[i32]| {
        let bytes = idx.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor::new(ElementType::I32, vec![idx.len()], bytes).unwrap()
    };
    let d = dims(&[("N", 1000), ("T", 64)]);
    let inputs: Tensors = [
        ("table".to_string(), table.clone()),
        ("idx".to_string(), as_tensor(&idx)),
    ]
    .into();
    let out = kernel.run(&d, &inputs).unwrap();
    let y = f32s(&out["y"]);
    for (i, j) in idx.iter().enumerate() {
        assert_eq!(y[i], table_values[*j as usize], "y[{i}]");
    }
    idx[613] = 99;
    let inputs: Tensors = [
        ("table".to_string(), table),
        ("idx".to_string(), as_tensor(&idx)),
    ]
    .into();
    let err = kernel.run(&d, &inputs).unwrap_err();
    match &err {
        DeviceError::Status(StatusError::Failed(message)) => assert_eq!(
            message,
            "gather.attn:4:12: index 99 is outside axis 0 of `table` (size 64)"
        ),
        other => panic!("expected the guard's message, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("the run failed: gather.attn:4:12")
    );
}

#[test]
fn timing_gives_device_times() {
    let Some(gpu) = gpu() else { return };
    let bundle = axpb("N");
    let kernel = gpu.load(&bundle).unwrap();
    let (x, _) = random_f32(1 << 20, 8);
    let t = kernel
        .time(
            &dims(&[("N", 1 << 20)]),
            &[("x".to_string(), x)].into(),
            3,
            20,
        )
        .unwrap();
    println!(
        "axpb over 2^20 floats: median {} s, min {} s",
        t.median_s, t.min_s
    );
    assert_eq!(t.samples, 20);
    assert!(
        t.min_s > 0.0 && t.min_s <= t.median_s && t.median_s < 1.0,
        "{t:?}"
    );
}

#[test]
fn bad_ptx_gives_the_jit_log() {
    let Some(gpu) = gpu() else { return };
    let mut bundle = axpb("N");
    let broken = AXPB_PTX.replace("fma.rn.f32", "fma.rn.f77");
    bundle.sections[0].1 = broken.into_bytes();
    let err = gpu.load(&bundle).err().expect("broken PTX must not load");
    println!("{err}");
    match &err {
        DeviceError::Load { kernel, detail } => {
            assert_eq!(kernel, "attnc_axpb");
            assert!(
                detail.contains("cannot load section `axpb.ptx`"),
                "{detail}"
            );
        }
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn targets_calls_too_large_and_missing_inputs_are_refused() {
    let Some(gpu) = gpu() else { return };
    let mut bundle = axpb("N");
    bundle.manifest.target = "cuda:sm_100a".parse().unwrap();
    let err = gpu
        .load(&bundle)
        .err()
        .expect("sm_100a code must not load on this device");
    assert!(matches!(err, DeviceError::WrongTarget { .. }), "{err:?}");

    let mut bundle = axpb("N");
    bundle.manifest.workspaces.push(Workspace {
        name: "huge".into(),
        element: ElementType::F32,
        len: e("N * 1099511627776"),
    });
    let kernel = gpu.load(&bundle).unwrap();
    let (x, _) = random_f32(4, 9);
    let err = kernel
        .run(&dims(&[("N", 4)]), &[("x".to_string(), x)].into())
        .unwrap_err();
    assert!(matches!(err, DeviceError::Memory { .. }), "{err:?}");
    println!("{err}");

    let err = kernel.run(&dims(&[("N", 4)]), &Tensors::new()).unwrap_err();
    assert_eq!(err.to_string(), "input `x` was not given");
}

/// Runs everywhere: the bundles above are valid, their PTX entries match their signatures, and
/// their calls form; so a failure on the GPU is the runtime's or the driver's, not the test's.
#[test]
fn the_test_bundles_are_consistent() {
    use attnc_cuda::DeviceLimits;
    use attnc_cuda::launch_plan::plan_call;
    use attnc_cuda::ptx_entry::check_entry;
    for (bundle, d) in [
        (axpb("N"), dims(&[("N", 1000)])),
        (gather(), dims(&[("N", 1000), ("T", 64)])),
    ] {
        let back = Bundle::from_bytes(&bundle.to_bytes().unwrap()).unwrap();
        assert_eq!(back, bundle);
        for launch in &bundle.manifest.launches {
            let ptx = std::str::from_utf8(bundle.section(&launch.code).unwrap()).unwrap();
            check_entry(ptx, &launch.signature).unwrap();
        }
        plan_call(&bundle.manifest, &d, &DeviceLimits::HOPPER).unwrap();
    }
}

/// `ptxas -arch=sm_90a` on the test kernels, where ptxas is found (`$PTXAS`, or on PATH).
#[test]
fn ptxas_accepts_the_test_kernels() {
    let ptxas = std::env::var_os("PTXAS").unwrap_or_else(|| "ptxas".into());
    // The embedded text, so the check holds wherever the test executable runs.
    let dir = std::env::temp_dir().join(format!("attnc-cuda-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [("axpb.ptx", AXPB_PTX), ("guard.ptx", GUARD_PTX)] {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let run = std::process::Command::new(&ptxas)
            .arg("-arch=sm_90a")
            .arg(&path)
            .args(["-o", "/dev/null"])
            .output();
        match run {
            Err(e) => {
                println!(
                    "skipped: no ptxas ({}: {e}; set PTXAS to its path)",
                    ptxas.to_string_lossy()
                );
                break;
            }
            Ok(out) => assert!(
                out.status.success(),
                "ptxas rejects {file}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
