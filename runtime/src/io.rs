//! Safetensors in and out, on top of `burn-store` (std only).
//!
//! [`load_safetensors`] reads a file written by PyTorch (`safetensors.torch`,
//! Hugging Face checkpoints) into a module by parameter path, with Burn's
//! PyTorch layout adapter (Linear weights transposed, norm `weight`/`bias` ↔
//! `gamma`/`beta`) and regex key remapping. In strict mode *every* problem is
//! reported in one [`Error::Load`]: missing tensors, unexpected tensors and
//! shape mismatches. A file that is not valid safetensors (truncated, a header
//! length past the end, a header that is not JSON, overlapping or out-of-bounds
//! offsets, an unknown dtype) is an [`Error::Safetensors`] naming the file.
//!
//! [`save_safetensors`] writes a module with PyTorch names and layouts,
//! optionally cast to f16/bf16, with header metadata, atomically (temporary
//! file, fsync, rename).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot,
    PyTorchToBurnAdapter, SafetensorsStore, SafetensorsStoreError,
};
use burn::tensor::DType;

use crate::Error;

/// Burn's selection of tensors by module path, for [`SaveOptions::only`].
pub use burn::store::PathFilter;

/// How [`load_safetensors`] maps and checks tensors.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Fail on any missing, unexpected or mismatched tensor (default true).
    pub strict: bool,
    /// `(regex, replacement)` pairs applied to the file's keys before
    /// matching module paths (e.g. `(r"\.self\.", ".self_attn.")`).
    pub remap: Vec<(String, String)>,
    /// Regexes of file keys that may be present without a matching
    /// parameter even in strict mode (e.g. a pooler the model does not use).
    pub ignore_unexpected: Vec<String>,
    /// Cast every float tensor to this dtype while loading (default F32, so
    /// f16/bf16 files compute in f32); `None` keeps the file's dtype.
    pub cast_to: Option<DType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            strict: true,
            remap: Vec::new(),
            ignore_unexpected: Vec::new(),
            cast_to: Some(DType::F32),
        }
    }
}

impl LoadOptions {
    /// Adds a key remapping.
    pub fn remap(mut self, from: &str, to: &str) -> Self {
        self.remap.push((from.to_string(), to.to_string()));
        self
    }

    /// Allows file keys matching `pattern` to go unused.
    pub fn ignore_unexpected(mut self, pattern: &str) -> Self {
        self.ignore_unexpected.push(pattern.to_string());
        self
    }

    /// Sets strict mode.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Module paths that received a tensor.
    pub applied: Vec<String>,
    /// Module paths the file had no tensor for (non-strict loads only).
    pub missing: Vec<String>,
    /// File keys no parameter matched (ignored ones included).
    pub unexpected: Vec<String>,
}

fn store_error(path: &Path, e: SafetensorsStoreError) -> Error {
    match e {
        SafetensorsStoreError::Io(io) => Error::Io {
            path: path.display().to_string(),
            message: io.to_string(),
        },
        other => Error::Safetensors {
            path: path.display().to_string(),
            message: other.to_string(),
        },
    }
}

/// Loads `path` into `module`. See the [module documentation](self).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Safetensors`] when it
/// is not valid safetensors, [`Error::Load`] (strict mode) listing every
/// missing, unexpected and shape-mismatched tensor.
pub fn load_safetensors<M: Module>(
    module: M,
    path: impl AsRef<Path>,
    options: &LoadOptions,
) -> Result<(M, LoadReport), Error> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::Io {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    load_safetensors_bytes(module, bytes, path, options)
}

/// [`load_safetensors`] from bytes already in memory; `name` is used in
/// error messages.
pub fn load_safetensors_bytes<M: Module>(
    mut module: M,
    bytes: Vec<u8>,
    name: impl AsRef<Path>,
    options: &LoadOptions,
) -> Result<(M, LoadReport), Error> {
    let path = name.as_ref();
    // Validate the container and every tensor's byte length first, so that a
    // bad file is a clear error here rather than a failure deeper down.
    match safetensors::SafeTensors::deserialize(&bytes) {
        Err(e) => {
            return Err(Error::Safetensors {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
        Ok(st) => {
            for (name, view) in st.tensors() {
                let numel: Option<usize> = view
                    .shape()
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d));
                let expected =
                    numel.and_then(|n| n.checked_mul(view.dtype().bitsize()).map(|b| b / 8));
                if expected != Some(view.data().len()) {
                    return Err(Error::Safetensors {
                        path: path.display().to_string(),
                        message: format!(
                            "tensor `{name}`: shape {:?} does not match its {} bytes",
                            view.shape(),
                            view.data().len()
                        ),
                    });
                }
            }
        }
    }
    let store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let mut store = match options.cast_to {
        Some(dtype) => {
            store.with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(dtype)))
        }
        None => store.with_from_adapter(PyTorchToBurnAdapter),
    };
    for (from, to) in &options.remap {
        store = store.with_key_remapping(from, to.clone());
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| store_error(path, e))?;

    let ignore: Vec<regex::Regex> = options
        .ignore_unexpected
        .iter()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| Error::InvalidArgument {
                message: format!("ignore pattern `{p}`: {e}"),
            })
        })
        .collect::<Result<_, _>>()?;
    let unexpected_fatal: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !ignore.iter().any(|r| r.is_match(k)))
        .cloned()
        .collect();
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    let mismatched: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => {
                format!(
                    "{path}: module expects {:?}, file has {:?}",
                    expected.as_slice(),
                    found.as_slice()
                )
            }
            other => format!("{other}"),
        })
        .collect();
    if !mismatched.is_empty()
        || (options.strict && (!missing.is_empty() || !unexpected_fatal.is_empty()))
    {
        return Err(Error::Load {
            path: path.display().to_string(),
            missing,
            unexpected: unexpected_fatal,
            mismatched,
        });
    }
    Ok((
        module,
        LoadReport {
            applied: result.applied,
            missing,
            unexpected: result.unused,
        },
    ))
}

/// How [`save_safetensors`] writes.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// `(regex, replacement)` pairs applied to module paths (e.g. to restore
    /// PyTorch names such as `.self_attn.` → `.self.`).
    pub remap: Vec<(String, String)>,
    /// Store floats as this dtype (e.g. F16/BF16); `None` keeps them.
    pub dtype: Option<DType>,
    /// Header metadata.
    pub metadata: Vec<(String, String)>,
    /// Which tensors are written, by module path: exact paths (e.g.
    /// [`peft::adapter_paths`](crate::peft::adapter_paths) for an adapter
    /// file), regexes ([`regex_filter`]) or predicates on the path (Burn's
    /// safetensors writer gives predicates no module types); `None` writes
    /// every tensor.
    pub only: Option<PathFilter>,
}

/// A filter matching the module paths that match any of `patterns`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming an invalid regular expression.
pub fn regex_filter(patterns: &[&str]) -> Result<PathFilter, Error> {
    for pattern in patterns {
        regex::Regex::new(pattern).map_err(|e| Error::InvalidArgument {
            message: format!("filter `{pattern}`: {e}"),
        })?;
    }
    Ok(PathFilter::new().with_regexes(patterns.iter().copied()))
}

/// Writes `module` to `path` with PyTorch names and layouts, atomically: the
/// bytes go to a temporary file in the same directory, which is synced and
/// renamed over `path`, so a crash leaves either the old file or the new one.
///
/// # Errors
/// [`Error::Io`] when writing fails (full disk, permissions), [`Error::Safetensors`]
/// when serialisation fails.
pub fn save_safetensors<M: Module>(
    module: &M,
    path: impl AsRef<Path>,
    options: &SaveOptions,
) -> Result<(), Error> {
    let path = path.as_ref();
    let store = SafetensorsStore::from_bytes(None);
    let mut store = match options.dtype {
        Some(dtype) => {
            store.with_to_adapter(BurnToPyTorchAdapter.chain(FloatCastAdapter::to(dtype)))
        }
        None => store.with_to_adapter(BurnToPyTorchAdapter),
    };
    for (from, to) in &options.remap {
        store = store.with_key_remapping(from, to.clone());
    }
    if let Some(filter) = &options.only {
        store = store.filter(filter.clone());
    }
    store = store.metadata("format", "pt");
    for (k, v) in &options.metadata {
        store = store.metadata(k.clone(), v.clone());
    }
    module
        .save_into(&mut store)
        .map_err(|e| store_error(path, e))?;
    let bytes = store.get_bytes().map_err(|e| store_error(path, e))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let io_err = |p: &Path, e: std::io::Error| Error::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::InvalidArgument {
        message: format!("{} is not a file path", path.display()),
    })?;
    let mut tmp = PathBuf::from(dir);
    tmp.push(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}
