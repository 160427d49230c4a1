//! What a Vulkan device can do, as a plain struct the compiler's Vulkan target preset reads
//! (subgroup size, shared-memory and workgroup limits, 16-bit and 64-bit support, cooperative
//! matrix shapes), and the features and extensions the runtime enables because they are
//! present. Nothing is enabled that the device does not report, so device creation never fails
//! on a missing feature.

use ash::vk;
use attnc_kernel_abi::ElementType;
use std::ffi::CStr;
use std::fmt;

/// The extension that adds bfloat16 types to SPIR-V; ash 0.38 predates it, so it is named here.
const KHR_SHADER_BFLOAT16: &CStr = c"VK_KHR_shader_bfloat16";
/// `VK_COMPONENT_TYPE_BFLOAT16_KHR`, from the same extension.
const COMPONENT_TYPE_BFLOAT16: i32 = 1_000_141_000;

/// The device's capabilities, read once when it is opened.
#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    /// Threads per subgroup when a pipeline asks for no particular size.
    pub subgroup_size: u32,
    /// `VK_EXT_subgroup_size_control` (core in 1.3): the sizes a pipeline may require.
    pub subgroup_size_control: Option<SubgroupSizeControl>,
    pub subgroup_operations: Vec<SubgroupOperation>,
    /// The shader stages subgroup operations work in.
    pub subgroup_stages: Vec<ShaderStage>,
    /// Bytes of workgroup (shared) memory one compute workgroup may use.
    pub max_compute_shared_memory_bytes: u32,
    pub max_compute_workgroup_invocations: u32,
    pub max_compute_workgroup_size: [u32; 3],
    pub max_compute_workgroup_count: [u32; 3],
    pub max_push_constants_bytes: u32,
    /// Bytes one storage-buffer descriptor can cover: the largest tensor a binding can hold.
    pub max_storage_buffer_range: u32,
    /// Bytes of the largest single allocation (and buffer, where the device reports it).
    pub max_allocation_bytes: u64,
    pub shader_float16: bool,
    pub storage_buffer_16bit_access: bool,
    pub shader_int64: bool,
    /// Whether the Vulkan memory model is available (and enabled) for SPIR-V that declares it.
    pub vulkan_memory_model: bool,
    /// Whether the device lists `VK_KHR_shader_bfloat16` (reported only; not enabled yet).
    pub bfloat16_extension: bool,
    /// `VK_KHR_cooperative_matrix` with its supported shapes, where present.
    pub cooperative_matrix: Option<CooperativeMatrix>,
    pub memory_heaps: Vec<MemoryHeap>,
    /// Nanoseconds per timestamp tick, where the compute queue has timestamps.
    pub timestamp_period_ns: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubgroupSizeControl {
    pub min_size: u32,
    pub max_size: u32,
    pub max_compute_workgroup_subgroups: u32,
    /// Whether compute pipelines may require a subgroup size.
    pub required_size_in_compute: bool,
}

/// A class of subgroup operations (`VkSubgroupFeatureFlagBits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubgroupOperation {
    Basic,
    Vote,
    Arithmetic,
    Ballot,
    Shuffle,
    ShuffleRelative,
    Clustered,
    Quad,
    PartitionedNv,
    Rotate,
    RotateClustered,
}

impl SubgroupOperation {
    const BITS: [(u32, SubgroupOperation); 11] = [
        (0x1, SubgroupOperation::Basic),
        (0x2, SubgroupOperation::Vote),
        (0x4, SubgroupOperation::Arithmetic),
        (0x8, SubgroupOperation::Ballot),
        (0x10, SubgroupOperation::Shuffle),
        (0x20, SubgroupOperation::ShuffleRelative),
        (0x40, SubgroupOperation::Clustered),
        (0x80, SubgroupOperation::Quad),
        (0x100, SubgroupOperation::PartitionedNv),
        (0x200, SubgroupOperation::Rotate),
        (0x400, SubgroupOperation::RotateClustered),
    ];

    fn from_flags(flags: vk::SubgroupFeatureFlags) -> Vec<SubgroupOperation> {
        Self::BITS
            .iter()
            .filter(|(bit, _)| flags.as_raw() & bit != 0)
            .map(|(_, op)| *op)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShaderStage {
    Vertex,
    TessellationControl,
    TessellationEvaluation,
    Geometry,
    Fragment,
    Compute,
}

impl ShaderStage {
    fn from_flags(flags: vk::ShaderStageFlags) -> Vec<ShaderStage> {
        [
            (vk::ShaderStageFlags::VERTEX, ShaderStage::Vertex),
            (
                vk::ShaderStageFlags::TESSELLATION_CONTROL,
                ShaderStage::TessellationControl,
            ),
            (
                vk::ShaderStageFlags::TESSELLATION_EVALUATION,
                ShaderStage::TessellationEvaluation,
            ),
            (vk::ShaderStageFlags::GEOMETRY, ShaderStage::Geometry),
            (vk::ShaderStageFlags::FRAGMENT, ShaderStage::Fragment),
            (vk::ShaderStageFlags::COMPUTE, ShaderStage::Compute),
        ]
        .into_iter()
        .filter(|(bit, _)| flags.contains(*bit))
        .map(|(_, stage)| stage)
        .collect()
    }
}

/// `VK_KHR_cooperative_matrix` on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CooperativeMatrix {
    pub shapes: Vec<CooperativeMatrixShape>,
    /// Whether compute shaders may use cooperative matrices.
    pub in_compute: bool,
}

/// One row of `vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR`: result = A (M×K) · B (K×N) + C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CooperativeMatrixShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a: ComponentType,
    pub b: ComponentType,
    pub c: ComponentType,
    pub result: ComponentType,
    pub saturating_accumulation: bool,
    pub scope: Scope,
}

/// The element type of a cooperative matrix (`VkComponentTypeKHR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentType {
    F16,
    F32,
    F64,
    Bf16,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    /// A value this runtime does not name (an 8-bit float of a newer extension, say).
    Other(i32),
}

impl ComponentType {
    /// The project's element type for this component, where it has one (the target preset's
    /// matrix shapes are stated in element types).
    pub fn element(self) -> Option<ElementType> {
        Some(match self {
            ComponentType::F16 => ElementType::F16,
            ComponentType::F32 => ElementType::F32,
            ComponentType::F64 => ElementType::F64,
            ComponentType::Bf16 => ElementType::Bf16,
            ComponentType::I32 => ElementType::I32,
            ComponentType::I64 => ElementType::I64,
            ComponentType::U16 => ElementType::U16,
            _ => return None,
        })
    }

    fn from_vk(t: vk::ComponentTypeKHR) -> ComponentType {
        match t.as_raw() {
            0 => ComponentType::F16,
            1 => ComponentType::F32,
            2 => ComponentType::F64,
            3 => ComponentType::I8,
            4 => ComponentType::I16,
            5 => ComponentType::I32,
            6 => ComponentType::I64,
            7 => ComponentType::U8,
            8 => ComponentType::U16,
            9 => ComponentType::U32,
            10 => ComponentType::U64,
            COMPONENT_TYPE_BFLOAT16 => ComponentType::Bf16,
            other => ComponentType::Other(other),
        }
    }
}

impl fmt::Display for ComponentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentType::Other(raw) => write!(f, "component type {raw}"),
            other => write!(f, "{}", format!("{other:?}").to_lowercase()),
        }
    }
}

/// The scope of a cooperative matrix (`VkScopeKHR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Device,
    Workgroup,
    Subgroup,
    QueueFamily,
    Other(i32),
}

impl Scope {
    fn from_vk(s: vk::ScopeKHR) -> Scope {
        match s {
            vk::ScopeKHR::DEVICE => Scope::Device,
            vk::ScopeKHR::WORKGROUP => Scope::Workgroup,
            vk::ScopeKHR::SUBGROUP => Scope::Subgroup,
            vk::ScopeKHR::QUEUE_FAMILY => Scope::QueueFamily,
            other => Scope::Other(other.as_raw()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryHeap {
    pub bytes: u64,
    pub device_local: bool,
}

impl Capabilities {
    pub fn has_subgroup(&self, op: SubgroupOperation) -> bool {
        self.subgroup_operations.contains(&op)
            && self.subgroup_stages.contains(&ShaderStage::Compute)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(f, "subgroup size {}", self.subgroup_size)?;
        if let Some(c) = &self.subgroup_size_control {
            write!(f, " (size control {}..{})", c.min_size, c.max_size)?;
        }
        writeln!(
            f,
            "; operations {:?} in {:?}",
            self.subgroup_operations, self.subgroup_stages
        )?;
        writeln!(
            f,
            "shared memory {} bytes; workgroup at most {} invocations, size {:?}, count {:?}; push constants {} bytes",
            self.max_compute_shared_memory_bytes,
            self.max_compute_workgroup_invocations,
            self.max_compute_workgroup_size,
            self.max_compute_workgroup_count,
            self.max_push_constants_bytes
        )?;
        writeln!(
            f,
            "float16 {}, 16-bit storage {}, int64 {}, memory model {}, bfloat16 extension {}",
            yes(self.shader_float16),
            yes(self.storage_buffer_16bit_access),
            yes(self.shader_int64),
            yes(self.vulkan_memory_model),
            yes(self.bfloat16_extension)
        )?;
        match &self.cooperative_matrix {
            None => write!(f, "cooperative matrix: no")?,
            Some(c) => {
                write!(f, "cooperative matrix:")?;
                for s in &c.shapes {
                    write!(
                        f,
                        " {}x{}x{} {}·{}+{}→{} ({:?});",
                        s.m, s.n, s.k, s.a, s.b, s.c, s.result, s.scope
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// What probing a physical device found: the public capabilities, and what to enable.
pub(crate) struct Probe {
    pub(crate) capabilities: Capabilities,
    pub(crate) queue_family: u32,
    pub(crate) timestamp_valid_bits: u32,
    pub(crate) memory: vk::PhysicalDeviceMemoryProperties,
    pub(crate) memory_budget: bool,
    pub(crate) extensions: Vec<&'static CStr>,
    pub(crate) enable: Enable,
}

/// The features to turn on at device creation, each one the device reported.
#[derive(Clone, Copy, Default)]
pub(crate) struct Enable {
    pub(crate) shader_int64: bool,
    pub(crate) shader_int16: bool,
    pub(crate) storage_buffer_16bit_access: bool,
    pub(crate) shader_float16: bool,
    pub(crate) shader_int8: bool,
    pub(crate) storage_buffer_8bit_access: bool,
    pub(crate) vulkan_memory_model: bool,
    pub(crate) vulkan_memory_model_device_scope: bool,
    pub(crate) subgroup_size_control: bool,
    pub(crate) compute_full_subgroups: bool,
    pub(crate) cooperative_matrix: bool,
}

/// Reads everything above from a Vulkan 1.3 physical device. `None` when it has no compute queue.
pub(crate) fn probe(
    entry: &ash::Entry,
    instance: &ash::Instance,
    device: vk::PhysicalDevice,
) -> Option<Probe> {
    // SAFETY: `device` came from `instance`'s enumeration and is at least Vulkan 1.3 (the
    // caller checked), so the 1.1-1.3 property and feature structures are valid in chains.
    let extension_names: Vec<String> =
        unsafe { instance.enumerate_device_extension_properties(device) }
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.extension_name_as_c_str().ok())
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
    let has = |name: &CStr| {
        extension_names
            .iter()
            .any(|n| n.as_bytes() == name.to_bytes())
    };
    let has_coopmat = has(ash::khr::cooperative_matrix::NAME);
    let memory_budget = has(ash::ext::memory_budget::NAME);

    let mut v11 = vk::PhysicalDeviceVulkan11Properties::default();
    let mut v13 = vk::PhysicalDeviceVulkan13Properties::default();
    let mut coop_props = vk::PhysicalDeviceCooperativeMatrixPropertiesKHR::default();
    let mut props2 = vk::PhysicalDeviceProperties2::default()
        .push_next(&mut v11)
        .push_next(&mut v13);
    if has_coopmat {
        props2 = props2.push_next(&mut coop_props);
    }
    // SAFETY: as above; the chain only holds structures of extensions the device lists.
    unsafe { instance.get_physical_device_properties2(device, &mut props2) };
    let props = props2.properties;

    let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
    let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
    let mut coop_features = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default();
    let mut features2 = vk::PhysicalDeviceFeatures2::default()
        .push_next(&mut f11)
        .push_next(&mut f12)
        .push_next(&mut f13);
    if has_coopmat {
        features2 = features2.push_next(&mut coop_features);
    }
    // SAFETY: as above.
    unsafe { instance.get_physical_device_features2(device, &mut features2) };
    let core = features2.features;

    // SAFETY: as above.
    let families = unsafe { instance.get_physical_device_queue_family_properties(device) };
    let (queue_family, family) = families
        .iter()
        .enumerate()
        .filter(|(_, f)| f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.queue_count > 0)
        .min_by_key(|(_, f)| f.timestamp_valid_bits == 0)?;
    // SAFETY: as above.
    let memory = unsafe { instance.get_physical_device_memory_properties(device) };

    let on = |b: vk::Bool32| b == vk::TRUE;
    let enable = Enable {
        shader_int64: on(core.shader_int64),
        shader_int16: on(core.shader_int16),
        storage_buffer_16bit_access: on(f11.storage_buffer16_bit_access),
        shader_float16: on(f12.shader_float16),
        shader_int8: on(f12.shader_int8),
        storage_buffer_8bit_access: on(f12.storage_buffer8_bit_access),
        vulkan_memory_model: on(f12.vulkan_memory_model),
        vulkan_memory_model_device_scope: on(f12.vulkan_memory_model_device_scope),
        subgroup_size_control: on(f13.subgroup_size_control),
        compute_full_subgroups: on(f13.compute_full_subgroups),
        cooperative_matrix: has_coopmat && on(coop_features.cooperative_matrix),
    };

    let cooperative_matrix = if enable.cooperative_matrix {
        let ext = ash::khr::cooperative_matrix::Instance::new(entry, instance);
        // SAFETY: the device lists the extension, so the entry point exists.
        let rows = unsafe { ext.get_physical_device_cooperative_matrix_properties(device) }
            .unwrap_or_default();
        Some(CooperativeMatrix {
            shapes: rows
                .iter()
                .map(|r| CooperativeMatrixShape {
                    m: r.m_size,
                    n: r.n_size,
                    k: r.k_size,
                    a: ComponentType::from_vk(r.a_type),
                    b: ComponentType::from_vk(r.b_type),
                    c: ComponentType::from_vk(r.c_type),
                    result: ComponentType::from_vk(r.result_type),
                    saturating_accumulation: on(r.saturating_accumulation),
                    scope: Scope::from_vk(r.scope),
                })
                .collect(),
            in_compute: coop_props
                .cooperative_matrix_supported_stages
                .contains(vk::ShaderStageFlags::COMPUTE),
        })
    } else {
        None
    };

    let limits = props.limits;
    let heaps =
        &memory.memory_heaps[..memory.memory_heap_count.min(vk::MAX_MEMORY_HEAPS as u32) as usize];
    let capabilities = Capabilities {
        subgroup_size: v11.subgroup_size,
        subgroup_size_control: enable.subgroup_size_control.then(|| SubgroupSizeControl {
            min_size: v13.min_subgroup_size,
            max_size: v13.max_subgroup_size,
            max_compute_workgroup_subgroups: v13.max_compute_workgroup_subgroups,
            required_size_in_compute: v13
                .required_subgroup_size_stages
                .contains(vk::ShaderStageFlags::COMPUTE),
        }),
        subgroup_operations: SubgroupOperation::from_flags(v11.subgroup_supported_operations),
        subgroup_stages: ShaderStage::from_flags(v11.subgroup_supported_stages),
        max_compute_shared_memory_bytes: limits.max_compute_shared_memory_size,
        max_compute_workgroup_invocations: limits.max_compute_work_group_invocations,
        max_compute_workgroup_size: limits.max_compute_work_group_size,
        max_compute_workgroup_count: limits.max_compute_work_group_count,
        max_push_constants_bytes: limits.max_push_constants_size,
        max_storage_buffer_range: limits.max_storage_buffer_range,
        max_allocation_bytes: match v13.max_buffer_size {
            0 => v11.max_memory_allocation_size,
            b => b.min(v11.max_memory_allocation_size),
        },
        shader_float16: enable.shader_float16,
        storage_buffer_16bit_access: enable.storage_buffer_16bit_access,
        shader_int64: enable.shader_int64,
        vulkan_memory_model: enable.vulkan_memory_model,
        bfloat16_extension: has(KHR_SHADER_BFLOAT16),
        cooperative_matrix,
        memory_heaps: heaps
            .iter()
            .map(|h| MemoryHeap {
                bytes: h.size,
                device_local: h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
            })
            .collect(),
        // timestampComputeAndGraphics promises timestamps on every compute queue, but a device
        // without it may still have them on some families: the chosen family's valid bits decide.
        timestamp_period_ns: (family.timestamp_valid_bits > 0 && limits.timestamp_period > 0.0)
            .then_some(limits.timestamp_period as f64),
    };
    let mut extensions = Vec::new();
    if enable.cooperative_matrix {
        extensions.push(ash::khr::cooperative_matrix::NAME);
    }
    if memory_budget {
        extensions.push(ash::ext::memory_budget::NAME);
    }
    Some(Probe {
        capabilities,
        queue_family: queue_family as u32,
        timestamp_valid_bits: family.timestamp_valid_bits,
        memory,
        memory_budget,
        extensions,
        enable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vulkan_enums_map_to_ours() {
        assert_eq!(
            ComponentType::from_vk(vk::ComponentTypeKHR::FLOAT16).element(),
            Some(ElementType::F16)
        );
        let bf16 = ComponentType::from_vk(vk::ComponentTypeKHR::from_raw(COMPONENT_TYPE_BFLOAT16));
        assert_eq!(
            (bf16, bf16.element()),
            (ComponentType::Bf16, Some(ElementType::Bf16))
        );
        assert_eq!(
            ComponentType::from_vk(vk::ComponentTypeKHR::SINT8).element(),
            None
        );
        assert_eq!(ComponentType::Other(99).to_string(), "component type 99");
        assert_eq!(Scope::from_vk(vk::ScopeKHR::SUBGROUP), Scope::Subgroup);
        let ops = SubgroupOperation::from_flags(
            vk::SubgroupFeatureFlags::BASIC | vk::SubgroupFeatureFlags::SHUFFLE,
        );
        assert_eq!(
            ops,
            vec![SubgroupOperation::Basic, SubgroupOperation::Shuffle]
        );
    }
}
