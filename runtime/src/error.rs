use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Everything that can go wrong in `ember-runtime`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A gradient norm was NaN or infinite while the caller asked for an error
    /// (`error_if_nonfinite`). `path` names the first parameter whose gradient
    /// is not finite.
    NonFiniteGradNorm {
        /// The total norm that was computed.
        total_norm: f64,
        /// Path of the first parameter with a non-finite gradient, if found.
        path: Option<String>,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        message: String,
    },
    /// A file is not valid safetensors (truncated, bad header, bad offsets,
    /// unknown dtype, …).
    Safetensors {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Tensors of a file do not fit a module. Every problem is listed.
    Load {
        /// The file.
        path: String,
        /// Module parameters the file has no tensor for.
        missing: Vec<String>,
        /// File tensors no module parameter matches.
        unexpected: Vec<String>,
        /// Tensors whose shape differs, with both shapes.
        mismatched: Vec<String>,
    },
    /// Training kept producing non-finite losses or gradients after the
    /// allowed number of rollbacks.
    Diverged {
        /// The step at which the run gave up.
        step: u64,
        /// Rollbacks done before giving up.
        rollbacks: usize,
    },
    /// Training or evaluation data failed its checks; every problem is listed.
    Data {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// A compute device was asked for that is unknown, not compiled into this
    /// build, or not present on this machine.
    Device {
        /// The device as it was named.
        device: String,
        /// Why it cannot be used, and what would make it usable.
        message: String,
    },
    /// An argument was out of its valid range.
    InvalidArgument {
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NonFiniteGradNorm {
                total_norm,
                path: Some(path),
            } => write!(
                f,
                "the total gradient norm is {total_norm}: the gradient of `{path}` is not finite"
            ),
            Error::NonFiniteGradNorm {
                total_norm,
                path: None,
            } => {
                write!(f, "the total gradient norm is {total_norm}")
            }
            Error::Diverged { step, rollbacks } => write!(
                f,
                "training diverged: non-finite losses or gradients at step {step} after {rollbacks} rollbacks to the last good checkpoint (lower the learning rate, clip gradients, or check the data)"
            ),
            Error::Data { problems } => {
                write!(
                    f,
                    "the data failed its checks ({} problems)",
                    problems.len()
                )?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
            Error::InvalidArgument { message } => write!(f, "invalid argument: {message}"),
            Error::Device { device, message } => write!(f, "device `{device}`: {message}"),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Safetensors { path, message } => {
                write!(f, "{path}: not a valid safetensors file: {message}")
            }
            Error::Load {
                path,
                missing,
                unexpected,
                mismatched,
            } => {
                write!(f, "{path}: tensors do not match the model")?;
                let lists = [
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape mismatch", mismatched),
                ];
                for (what, list) in lists {
                    if !list.is_empty() {
                        write!(f, "\n  {what} ({}): {}", list.len(), list.join(", "))?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl core::error::Error for Error {}
