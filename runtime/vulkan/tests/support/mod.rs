//! What the device tests share: opening a device or saying why the test is skipped, and building
//! manifests and bundles (round-tripped through the `.attnb` bytes, as a runtime reads them).

pub mod shaders;

use attnc_bundle::Bundle;
use attnc_device::DeviceError;
use attnc_kernel_abi::{
    ABI_VERSION, Access, Arg, DimDecl, ElementType, Expr, Extent, Guard, KernelManifest,
    KernelSignature, Launch, Param, STATUS_WORDS, TensorDecl, Workspace,
};
use attnc_vulkan::VulkanDevice;

/// The best Vulkan device, or `None` after printing why the test is skipped. With
/// `ATTNC_REQUIRE_VULKAN` set (CI installs lavapipe), a missing device fails the test instead.
pub fn device() -> Option<VulkanDevice> {
    match VulkanDevice::open("vulkan") {
        Ok(d) => Some(d),
        Err(DeviceError::Unavailable(why)) => {
            if std::env::var_os("ATTNC_REQUIRE_VULKAN").is_some() {
                panic!("ATTNC_REQUIRE_VULKAN is set, but no Vulkan device is usable: {why}");
            }
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("opening a Vulkan device failed: {e}"),
    }
}

pub fn e(text: &str) -> Expr {
    Expr::parse(text).unwrap()
}

pub fn dim(name: &str) -> DimDecl {
    DimDecl {
        name: name.into(),
        specialised: None,
        default: None,
    }
}

pub fn tensor(name: &str, shape: &[&str]) -> TensorDecl {
    TensorDecl {
        name: name.into(),
        element: ElementType::F32,
        shape: shape.iter().map(|s| e(s)).collect(),
        range: None,
    }
}

pub fn workspace(name: &str, len: &str) -> Workspace {
    Workspace {
        name: name.into(),
        element: ElementType::F32,
        len: e(len),
    }
}

/// An f32 buffer parameter of `len` elements (an `Int` parameter's name).
pub fn buffer(name: &str, access: Access, len: &str) -> Param {
    Param::Buffer {
        name: name.into(),
        element: ElementType::F32,
        access,
        extent: vec![Extent::Param(len.into())],
    }
}

pub fn status_param() -> Param {
    Param::Buffer {
        name: "status".into(),
        element: ElementType::I32,
        access: Access::ReadWrite,
        extent: vec![Extent::Fixed(STATUS_WORDS as u64)],
    }
}

pub fn int(name: &str) -> Param {
    Param::Int { name: name.into() }
}

pub fn tensor_arg(name: &str) -> Arg {
    Arg::Tensor { name: name.into() }
}

pub fn int_arg(value: &str) -> Arg {
    Arg::Int { value: e(value) }
}

/// A launch of entry point `name` over `ceil_div(L, 64)` workgroups of 64.
pub fn launch(name: &str, params: Vec<Param>, args: Vec<Arg>) -> Launch {
    Launch {
        code: "kernel.spv".into(),
        signature: KernelSignature {
            name: name.into(),
            params,
        },
        args,
        grid: [
            e(&format!("ceil_div(L, {})", shaders::GROUP)),
            Expr::Const(1),
            Expr::Const(1),
        ],
        block: [shaders::GROUP, 1, 1],
        shared_bytes: 0,
    }
}

/// A `vulkan` manifest over dim `L` (plus `extra_dims`).
pub fn manifest(
    kernel: &str,
    extra_dims: &[&str],
    inputs: Vec<TensorDecl>,
    outputs: Vec<TensorDecl>,
    launches: Vec<Launch>,
) -> KernelManifest {
    KernelManifest {
        abi_version: ABI_VERSION,
        kernel: kernel.into(),
        source: format!("tests/{kernel}.attn"),
        target: "vulkan".parse().unwrap(),
        dims: std::iter::once("L")
            .chain(extra_dims.iter().copied())
            .map(dim)
            .collect(),
        requirements: vec![],
        inputs,
        outputs,
        workspaces: vec![],
        launches,
        guards: vec![Guard {
            code: 7,
            message: "index {value} is outside `x` (size {bound})".into(),
            location: Some(format!("tests/{kernel}.attn:3:9")),
        }],
        tiling: String::new(),
    }
}

/// The bundle as a runtime reads it from a file: written to bytes, read and validated.
pub fn bundle(manifest: KernelManifest, code: Vec<u8>) -> Bundle {
    let b = Bundle {
        manifest,
        sections: vec![("kernel.spv".into(), code)],
    };
    Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap()
}
