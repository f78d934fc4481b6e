//! Run-time backend choice: `burn-wgpu` on a GPU adapter when there is one, else Burn's
//! pure-Rust CPU backend (Flex, which Burn 0.22 recommends over the deprecated NdArray).

use burn::prelude::*;

/// What the user asked for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum BackendChoice {
    /// A hardware GPU if wgpu finds one, else the CPU.
    #[default]
    Auto,
    /// wgpu on any adapter (a software Vulkan adapter such as lavapipe included).
    Gpu,
    /// The CPU backend.
    Cpu,
}

/// The device chosen, with a description for the user.
#[derive(Debug, Clone)]
pub struct ChosenBackend {
    /// The Burn device (without autodiff).
    pub device: Device,
    /// `true` for wgpu.
    pub gpu: bool,
    /// e.g. `wgpu: NVIDIA H100 (Vulkan, DiscreteGpu)` or `cpu: flex (2 threads)`.
    pub description: String,
}

/// Adapters wgpu sees: `(name, backend, device type)`.
pub fn wgpu_adapters() -> Vec<burn_wgpu::wgpu::AdapterInfo> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return Vec::new();
    };
    let instance = burn_wgpu::wgpu::Instance::new(
        burn_wgpu::wgpu::InstanceDescriptor::new_without_display_handle(),
    );
    rt.block_on(instance.enumerate_adapters(burn_wgpu::wgpu::Backends::all()))
        .iter()
        .map(burn_wgpu::wgpu::Adapter::get_info)
        .collect()
}

/// Picks the device for `choice`.
pub fn choose(choice: BackendChoice) -> super::Result<ChosenBackend> {
    use burn_wgpu::wgpu::DeviceType;
    let cpu = || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ChosenBackend {
            device: Device::flex(),
            gpu: false,
            description: format!("cpu: flex ({threads} threads)"),
        }
    };
    if choice == BackendChoice::Cpu {
        return Ok(cpu());
    }
    let adapters = wgpu_adapters();
    let hardware = |t: DeviceType| {
        matches!(
            t,
            DeviceType::DiscreteGpu | DeviceType::IntegratedGpu | DeviceType::VirtualGpu
        )
    };
    let pick = adapters
        .iter()
        .find(|a| a.device_type == DeviceType::DiscreteGpu)
        .or_else(|| adapters.iter().find(|a| hardware(a.device_type)))
        .or_else(|| {
            (choice == BackendChoice::Gpu)
                .then(|| adapters.first())
                .flatten()
        });
    match pick {
        Some(info) => {
            let kind = match info.device_type {
                DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
                DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
                DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
                DeviceType::Cpu => DeviceKind::Cpu,
                DeviceType::Other => DeviceKind::DefaultDevice,
            };
            Ok(ChosenBackend {
                device: Device::wgpu(kind),
                gpu: true,
                description: format!(
                    "wgpu: {} ({:?}, {:?})",
                    info.name, info.backend, info.device_type
                ),
            })
        }
        None if choice == BackendChoice::Gpu => Err(super::ModelError::Backend(
            "--backend gpu: wgpu found no adapter (install a Vulkan driver, e.g. \
             mesa-vulkan-drivers)"
                .into(),
        )),
        None => Ok(cpu()),
    }
}
