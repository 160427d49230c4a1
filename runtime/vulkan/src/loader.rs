//! The Vulkan loader and instance, and the list of physical devices a `--device vulkan:N`
//! selector picks from. libvulkan is opened at run time (ash's `loaded`), so a machine without a
//! loader, a driver or a device gets [`DeviceError::Unavailable`] with the reason, never a panic.

use crate::driver_error::Call;
use ash::vk;
use attnc_device::DeviceError;
use std::fmt;

/// What a machine without Vulkan needs, said once for every "unavailable" message.
const INSTALL_HINT: &str = "install the Vulkan loader (Debian: libvulkan1) and a driver (the GPU vendor's, or mesa-vulkan-drivers for the CPU implementation lavapipe)";

/// The loaded library and one instance; destroys the instance when dropped.
pub(crate) struct Loader {
    /// Also keeps the library loaded while the instance lives.
    pub(crate) entry: ash::Entry,
    pub(crate) instance: ash::Instance,
}

impl Loader {
    pub(crate) fn new() -> Result<Loader, DeviceError> {
        // SAFETY: loading libvulkan runs its initialisers; the loader is a well-behaved system
        // library, and ash keeps it loaded for as long as `Entry` lives.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            DeviceError::Unavailable(format!(
                "no Vulkan loader on this machine ({e}): {INSTALL_HINT}"
            ))
        })?;
        // SAFETY: `entry` holds valid function pointers from the loaded library.
        let version = unsafe { entry.try_enumerate_instance_version() }
            .call("vkEnumerateInstanceVersion")
            .map_err(|e| DeviceError::Unavailable(format!("the Vulkan loader failed: {e}")))?
            .unwrap_or(vk::API_VERSION_1_0);
        if version < vk::API_VERSION_1_1 {
            return Err(DeviceError::Unavailable(format!(
                "the Vulkan loader is version {}, attnc needs 1.1 or newer (and a Vulkan 1.3 device)",
                ApiVersion(version)
            )));
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"attnc")
            .engine_name(c"attnc")
            .api_version(vk::API_VERSION_1_3);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: `info` and what it points to live across the call; no allocator is passed.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|result| {
            DeviceError::Unavailable(match result {
                vk::Result::ERROR_INCOMPATIBLE_DRIVER => {
                    format!("the Vulkan loader found no driver: {INSTALL_HINT}")
                }
                other => format!("cannot create a Vulkan instance: {other} ({other:?})"),
            })
        })?;
        Ok(Loader { entry, instance })
    }

    /// Every physical device, in the loader's order (the `N` of `vulkan:N`).
    pub(crate) fn physical_devices(&self) -> Result<Vec<vk::PhysicalDevice>, DeviceError> {
        // SAFETY: the instance is valid until `self` drops.
        let devices = unsafe { self.instance.enumerate_physical_devices() }
            .call("vkEnumeratePhysicalDevices")
            .map_err(|e| DeviceError::Unavailable(e.to_string()))?;
        if devices.is_empty() {
            return Err(DeviceError::Unavailable(format!(
                "the Vulkan loader found no device: {INSTALL_HINT}"
            )));
        }
        Ok(devices)
    }

    /// What device `index` is, for listings and selection.
    pub(crate) fn describe(&self, index: usize, device: vk::PhysicalDevice) -> DeviceInfo {
        // SAFETY: `device` came from this instance's enumeration.
        let props = unsafe { self.instance.get_physical_device_properties(device) };
        let name = props
            .device_name_as_c_str()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unnamed device".into());
        let mut driver = format!("driver version {:#x}", props.driver_version);
        if props.api_version >= vk::API_VERSION_1_2 {
            let mut driver_props = vk::PhysicalDeviceDriverProperties::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut driver_props);
            // SAFETY: the structure chain is well formed and the device supports 1.2, where
            // VkPhysicalDeviceDriverProperties is core.
            unsafe {
                self.instance
                    .get_physical_device_properties2(device, &mut props2)
            };
            let text = |c: Result<&std::ffi::CStr, _>| {
                c.map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let (name, info) = (
                text(driver_props.driver_name_as_c_str()),
                text(driver_props.driver_info_as_c_str()),
            );
            driver = if info.is_empty() {
                name
            } else {
                format!("{name} ({info})")
            };
        }
        DeviceInfo {
            index,
            name,
            kind: DeviceKind::from_vk(props.device_type),
            vendor_id: props.vendor_id,
            driver,
            api_version: ApiVersion(props.api_version),
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // SAFETY: every object made from the instance (the logical device) is destroyed before
        // the loader drops: `VulkanDevice` destroys its device first.
        unsafe { self.instance.destroy_instance(None) };
    }
}

/// A Vulkan version number (`VK_MAKE_API_VERSION`), printed as `1.3.230`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32);

impl ApiVersion {
    pub const V1_3: ApiVersion = ApiVersion(vk::API_VERSION_1_3);
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            vk::api_version_major(self.0),
            vk::api_version_minor(self.0),
            vk::api_version_patch(self.0)
        )
    }
}

/// The kind of a physical device, in the order `open("vulkan")` prefers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A CPU implementation, such as Mesa's lavapipe.
    Cpu,
    Other,
}

impl DeviceKind {
    fn from_vk(t: vk::PhysicalDeviceType) -> DeviceKind {
        match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::DiscreteGpu,
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::IntegratedGpu,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::VirtualGpu,
            vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
            _ => DeviceKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::DiscreteGpu => "discrete GPU",
            DeviceKind::IntegratedGpu => "integrated GPU",
            DeviceKind::VirtualGpu => "virtual GPU",
            DeviceKind::Cpu => "CPU",
            DeviceKind::Other => "other",
        }
    }
}

/// One physical device as `enumerate` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The `N` of `vulkan:N`: the loader's order.
    pub index: usize,
    pub name: String,
    pub kind: DeviceKind,
    /// The PCI vendor id, or a Khronos vendor id (0x10005 is Mesa).
    pub vendor_id: u32,
    /// Driver name and version text (`llvmpipe (Mesa 22.3.6 …)`).
    pub driver: String,
    pub api_version: ApiVersion,
}

impl DeviceInfo {
    /// The vendor's name where the id is a well-known one.
    pub fn vendor(&self) -> String {
        match self.vendor_id {
            0x10de => "NVIDIA".into(),
            0x1002 => "AMD".into(),
            0x8086 => "Intel".into(),
            0x13b5 => "ARM".into(),
            0x5143 => "Qualcomm".into(),
            0x106b => "Apple".into(),
            0x1010 => "Imagination".into(),
            0x10005 => "Mesa".into(),
            id => format!("vendor {id:#x}"),
        }
    }

    /// Whether attnc's `vulkan` targets run here (they are SPIR-V for Vulkan 1.3).
    pub fn is_supported(&self) -> bool {
        self.api_version >= ApiVersion::V1_3
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vulkan:{}  {} ({}, {}), Vulkan {}, driver {}",
            self.index,
            self.name,
            self.kind.name(),
            self.vendor(),
            self.api_version,
            self.driver
        )?;
        if !self.is_supported() {
            write!(f, " (unsupported: attnc needs Vulkan 1.3)")?;
        }
        Ok(())
    }
}

/// Every Vulkan device on this machine, for `attnc devices` and `--device vulkan:N`.
pub fn enumerate() -> Result<Vec<DeviceInfo>, DeviceError> {
    let loader = Loader::new()?;
    Ok(loader
        .physical_devices()?
        .into_iter()
        .enumerate()
        .map(|(index, device)| loader.describe(index, device))
        .collect())
}

/// Which device a selector names: `vulkan` (the best supported one) or `vulkan:N`.
pub(crate) fn select(selector: &str, devices: &[DeviceInfo]) -> Result<usize, DeviceError> {
    let listing = || {
        devices
            .iter()
            .map(|d| format!("\n  {d}"))
            .collect::<String>()
    };
    if selector == "vulkan" {
        return devices
            .iter()
            .filter(|d| d.is_supported())
            .min_by_key(|d| (d.kind, d.index))
            .map(|d| d.index)
            .ok_or_else(|| {
                DeviceError::Unavailable(format!(
                    "no Vulkan 1.3 device on this machine; found:{}",
                    listing()
                ))
            });
    }
    let index = selector
        .strip_prefix("vulkan:")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| {
            DeviceError::Input(format!(
                "unknown Vulkan device `{selector}`: expected `vulkan` or `vulkan:N` with N a device index"
            ))
        })?;
    let Some(device) = devices.get(index) else {
        return Err(DeviceError::Unavailable(format!(
            "there is no device {selector}; this machine has:{}",
            listing()
        )));
    };
    if !device.is_supported() {
        return Err(DeviceError::Unavailable(format!(
            "{device}: attnc's Vulkan kernels need a Vulkan 1.3 device"
        )));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(index: usize, kind: DeviceKind, api: u32) -> DeviceInfo {
        DeviceInfo {
            index,
            name: format!("dev{index}"),
            kind,
            vendor_id: 0x10005,
            driver: "test".into(),
            api_version: ApiVersion(api),
        }
    }

    #[test]
    fn selection_prefers_gpus_and_needs_vulkan_1_3() {
        let v13 = vk::API_VERSION_1_3;
        let devices = [
            device(0, DeviceKind::Cpu, v13),
            device(1, DeviceKind::IntegratedGpu, v13),
            device(2, DeviceKind::DiscreteGpu, vk::API_VERSION_1_2),
            device(3, DeviceKind::DiscreteGpu, v13),
        ];
        assert_eq!(select("vulkan", &devices).unwrap(), 3);
        assert_eq!(select("vulkan", &devices[..3]).unwrap(), 1);
        assert_eq!(select("vulkan:0", &devices).unwrap(), 0);
        let old = select("vulkan:2", &devices).unwrap_err().to_string();
        assert!(old.contains("need a Vulkan 1.3 device"), "{old}");
        let missing = select("vulkan:7", &devices).unwrap_err().to_string();
        assert!(missing.contains("there is no device vulkan:7"), "{missing}");
        assert!(
            missing.contains("vulkan:3  dev3 (discrete GPU, Mesa)"),
            "{missing}"
        );
        assert!(matches!(
            select("vulkan:x", &devices),
            Err(DeviceError::Input(_))
        ));
        assert!(matches!(
            select("vulkan", &devices[2..3]),
            Err(DeviceError::Unavailable(_))
        ));
    }
}
