//! Choosing the compute device: the CPU backend (burn-flex), wgpu (Vulkan,
//! Metal, DX12, WebGPU), or CUDA — validated, never guessed.
//!
//! With several backends compiled in, Burn's `Device::default()` prefers a GPU
//! backend over the CPU one, and an unknown `BURN_DEVICE` value panics. Ember
//! never relies on either: the device is named (a [`Backend`] parsed from
//! `--device` or `EMBER_DEVICE`), checked against the backends this build
//! has, and brought up with an error — not a panic — when it is absent.
//!
//! | name | Cargo feature | Burn device |
//! |---|---|---|
//! | `cpu` (alias `flex`) | always | [`cpu()`]: Burn's CPU backend |
//! | `wgpu` | `wgpu` | `Device::wgpu(DefaultDevice)`: the best adapter, its native shader language or WGSL |
//! | `vulkan` | `vulkan` | `Device::vulkan(DefaultDevice)`: pinned to Vulkan, SPIR-V kernels |
//! | `metal` | `metal` | `Device::metal(DefaultDevice)`: pinned to Metal, MSL kernels |
//! | `cuda` | `cuda` | `Device::cuda(0)` |
//!
//! ```
//! use ember_runtime::device::{self, Backend};
//!
//! let cpu = device::init(Backend::Cpu).unwrap();
//! assert_eq!(cpu, device::cpu());
//! assert_eq!("flex".parse::<Backend>().unwrap(), Backend::Cpu);
//! assert!("tpu".parse::<Backend>().unwrap_err().to_string().contains("unknown device `tpu`"));
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use burn::tensor::Device;
use core::fmt;
use core::str::FromStr;

use crate::Error;

/// A compute backend Ember can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// The CPU backend, burn-flex: pure Rust, threads and SIMD chosen at run
    /// time. Always compiled in.
    Cpu,
    /// wgpu with the graphics API and shader language settled at run time
    /// (Vulkan/Metal/DX12; WGSL where no native path is compiled in).
    Wgpu,
    /// wgpu pinned to Vulkan, kernels compiled to SPIR-V.
    Vulkan,
    /// wgpu pinned to Metal, kernels compiled to MSL.
    Metal,
    /// NVIDIA CUDA (first GPU).
    Cuda,
}

impl Backend {
    /// Every backend Ember knows, compiled in or not.
    pub const ALL: [Backend; 5] = [
        Backend::Cpu,
        Backend::Wgpu,
        Backend::Vulkan,
        Backend::Metal,
        Backend::Cuda,
    ];

    /// The name used by `--device` and `EMBER_DEVICE` (also the Cargo feature
    /// name for the GPU backends).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this build has the backend (its Cargo feature was enabled).
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Cpu => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Metal => cfg!(feature = "metal"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends this build has.
    pub fn compiled() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_compiled())
            .collect()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// Parses `cpu` (or `flex`), `wgpu`, `vulkan`, `metal`, `cuda`,
    /// case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            "vulkan" => Ok(Backend::Vulkan),
            "metal" => Ok(Backend::Metal),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(Error::Device {
                device: s.to_string(),
                message: format!("unknown device `{s}`; {}", compiled_list()),
            }),
        }
    }
}

fn compiled_list() -> String {
    let names: Vec<&str> = Backend::compiled().into_iter().map(Backend::name).collect();
    format!("this build has: {}", names.join(", "))
}

/// The CPU device (Burn's CPU backend, burn-flex), always available; no
/// autodiff (call `.autodiff()` for training).
///
/// ```
/// let device = ember_runtime::device::cpu().autodiff();
/// let x = burn::tensor::Tensor::<1>::ones([2], &device);
/// assert_eq!(x.sum().into_scalar::<f32>(), 2.0);
/// ```
pub fn cpu() -> Device {
    ember_ops::cpu_device()
}

/// Brings up `backend`'s device, or says why it cannot: not compiled in
/// (with the Cargo feature to enable), or compiled in but absent on this
/// machine (no adapter, no driver). The returned device has no autodiff;
/// call `.autodiff()` for training.
///
/// GPU devices are initialised here, once per process; later calls return
/// the same device.
pub fn init(backend: Backend) -> Result<Device, Error> {
    if !backend.is_compiled() {
        return Err(Error::Device {
            device: backend.name().to_string(),
            message: format!(
                "not compiled in: rebuild with `--features {}` ({})",
                backend.name(),
                compiled_list()
            ),
        });
    }
    match backend {
        Backend::Cpu => Ok(cpu()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => init_wgpu(backend, burn::tensor::wgpu::WgpuBackend::Auto),
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => init_wgpu(backend, burn::tensor::wgpu::WgpuBackend::Vulkan),
        #[cfg(feature = "metal")]
        Backend::Metal => init_wgpu(backend, burn::tensor::wgpu::WgpuBackend::Metal),
        #[cfg(feature = "cuda")]
        Backend::Cuda => init_cuda(),
        #[allow(unreachable_patterns)]
        _ => unreachable!("is_compiled() covers every backend without a constructor"),
    }
}

/// A GPU device brought up by [`init`]: its adapter's description and
/// whether its shaders have f16 arithmetic.
#[cfg(feature = "wgpu")]
struct Adapter {
    backend: Backend,
    device: Device,
    description: String,
    api: Option<GraphicsApi>,
    f16: bool,
}

#[cfg(feature = "wgpu")]
type Started = std::sync::Mutex<Vec<Adapter>>;

/// The adapter `backend` was brought up on, if it was.
#[cfg(feature = "wgpu")]
fn adapter<R>(backend: Backend, f: impl FnOnce(&Adapter) -> R) -> Option<R> {
    started()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|a| a.backend == backend)
        .map(f)
}

/// GPU devices brought up so far, with their adapter descriptions.
#[cfg(feature = "wgpu")]
fn started() -> &'static Started {
    static STARTED: std::sync::OnceLock<Started> = std::sync::OnceLock::new();
    STARTED.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

#[cfg(feature = "wgpu")]
fn init_wgpu(backend: Backend, api: burn::tensor::wgpu::WgpuBackend) -> Result<Device, Error> {
    use burn::tensor::wgpu::wgpu;
    // wgpu registers one runtime per (adapter, API): a second `init` of the
    // same selector is an error, so keep the first device.
    let mut started = started().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = started.iter().find(|a| a.backend == backend) {
        return Ok(a.device.clone());
    }
    let (device, setup) = Device::wgpu_options()
        .graphics_api(api)
        .init_with_setup()
        .map_err(|e| Error::Device {
            device: backend.name().to_string(),
            message: format!("no usable GPU adapter: {e}"),
        })?;
    let info = setup.adapter.get_info();
    let f16 = setup
        .adapter
        .features()
        .contains(wgpu::Features::SHADER_F16);
    let description = format!(
        "{} ({:?}, {:?}, driver {} {}; shader f16: {})",
        info.name,
        info.device_type,
        setup.backend,
        info.driver,
        info.driver_info,
        if f16 { "yes" } else { "no" }
    );
    started.push(Adapter {
        backend,
        device: device.clone(),
        description,
        api: api_of(setup.backend),
        f16,
    });
    Ok(device)
}

#[cfg(feature = "wgpu")]
fn api_of(backend: burn::tensor::wgpu::wgpu::Backend) -> Option<GraphicsApi> {
    use burn::tensor::wgpu::wgpu::Backend as Api;
    match backend {
        Api::Vulkan => Some(GraphicsApi::Vulkan),
        Api::Metal => Some(GraphicsApi::Metal),
        Api::Dx12 => Some(GraphicsApi::Dx12),
        Api::Gl => Some(GraphicsApi::Gl),
        Api::BrowserWebGpu => Some(GraphicsApi::WebGpu),
        Api::Noop => None,
    }
}

/// Whether `backend` computes in `precision`'s dtype: always for fp32 and on
/// the CPU backend (f16/bf16 stored, computed via f32); f16 on a wgpu
/// device when [`init`] found shader f16 on its adapter; never bf16 on wgpu
/// (WGSL, SPIR-V and MSL kernels have no bf16 type); f16 and bf16 on CUDA.
pub fn supports(backend: Backend, precision: crate::precision::Precision) -> bool {
    use crate::precision::Precision;
    match (backend, precision) {
        (_, Precision::Fp32) | (Backend::Cpu, _) => true,
        (Backend::Cuda, _) => true,
        (_, Precision::Bf16) => false,
        #[cfg(feature = "wgpu")]
        (_, Precision::F16) => adapter(backend, |a| a.f16).unwrap_or(false),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The graphics API under a wgpu device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GraphicsApi {
    /// Vulkan (Linux, Windows, Android; Mesa's lavapipe on the CPU).
    Vulkan,
    /// Apple's Metal.
    Metal,
    /// DirectX 12.
    Dx12,
    /// OpenGL (ES), through EGL or WGL.
    Gl,
    /// The browser's WebGPU.
    WebGpu,
}

impl GraphicsApi {
    /// Lower-case name, as `ember devices --format json` prints it.
    pub fn name(self) -> &'static str {
        match self {
            GraphicsApi::Vulkan => "vulkan",
            GraphicsApi::Metal => "metal",
            GraphicsApi::Dx12 => "dx12",
            GraphicsApi::Gl => "gl",
            GraphicsApi::WebGpu => "webgpu",
        }
    }
}

/// The graphics API a wgpu backend settled on when [`init`] brought it up;
/// `None` before that, for the CPU and CUDA, and in builds without wgpu.
/// [`Backend::Wgpu`] takes OpenGL only where no other API has an adapter
/// (Mesa's EGL on a machine without a Vulkan driver, say).
pub fn graphics_api(backend: Backend) -> Option<GraphicsApi> {
    #[cfg(feature = "wgpu")]
    {
        adapter(backend, |a| a.api).flatten()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = backend;
        None
    }
}

/// What `backend` runs on, once [`init`] brought it up: the adapter's name,
/// type, graphics API, driver and whether its shaders have f16 arithmetic;
/// for the CPU, the thread count. `None` for a GPU backend not brought up.
pub fn description(backend: Backend) -> Option<String> {
    match backend {
        #[cfg(feature = "std")]
        Backend::Cpu => Some(format!(
            "burn-flex on the CPU, {} threads",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        )),
        #[cfg(not(feature = "std"))]
        Backend::Cpu => Some("burn-flex on the CPU".to_string()),
        #[cfg(feature = "wgpu")]
        other => adapter(other, |a| a.description.clone()),
        #[cfg(not(feature = "wgpu"))]
        _ => None,
    }
}

#[cfg(feature = "cuda")]
fn init_cuda() -> Result<Device, Error> {
    // The CUDA runtime panics when no driver or GPU is present; turn that into
    // an error by touching the device once.
    std::panic::catch_unwind(|| {
        let device = Device::cuda(0);
        let _ = burn::tensor::Tensor::<1>::zeros([1], &device).into_data();
        device
    })
    .map_err(|panic| Error::Device {
        device: "cuda".to_string(),
        message: format!(
            "no usable CUDA device: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the CUDA runtime failed to start")
        ),
    })
}

/// The device named by `choice`, else by the `EMBER_DEVICE` environment
/// variable, else the CPU — what the CLI's `--device` does.
///
/// ```
/// let device = ember_runtime::device::select(Some("cpu")).unwrap();
/// assert_eq!(device, ember_runtime::device::cpu());
/// ```
#[cfg(feature = "std")]
pub fn select(choice: Option<&str>) -> Result<Device, Error> {
    init(selected(choice)?)
}

/// The backend [`select`] would bring up, without bringing it up.
#[cfg(feature = "std")]
pub fn selected(choice: Option<&str>) -> Result<Backend, Error> {
    match choice {
        Some(name) => name.parse(),
        None => chosen(None),
    }
}

/// `choice` (a backend already parsed, e.g. from a flag), else the one the
/// `EMBER_DEVICE` environment variable names, else the CPU.
#[cfg(feature = "std")]
pub fn chosen(choice: Option<Backend>) -> Result<Backend, Error> {
    if let Some(backend) = choice {
        return Ok(backend);
    }
    match std::env::var("EMBER_DEVICE") {
        Ok(name) if !name.trim().is_empty() => name.parse().map_err(|e| match e {
            Error::Device { device, message } => Error::Device {
                device,
                message: format!("EMBER_DEVICE: {message}"),
            },
            other => other,
        }),
        _ => Ok(Backend::Cpu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.name().to_uppercase().parse::<Backend>().unwrap(), b);
        }
        let e = "tpu".parse::<Backend>().unwrap_err().to_string();
        assert!(
            e.contains("unknown device `tpu`") && e.contains("cpu"),
            "{e}"
        );
    }

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        for b in Backend::ALL.into_iter().filter(|b| !b.is_compiled()) {
            let e = init(b).unwrap_err().to_string();
            assert!(e.contains(&format!("--features {}", b.name())), "{e}");
        }
        assert_eq!(init(Backend::Cpu).unwrap(), cpu());
    }
}
