use alloc::string::String;
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
    /// An argument was out of its valid range.
    InvalidArgument {
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NonFiniteGradNorm { total_norm, path: Some(path) } => write!(
                f,
                "the total gradient norm is {total_norm}: the gradient of `{path}` is not finite"
            ),
            Error::NonFiniteGradNorm { total_norm, path: None } => {
                write!(f, "the total gradient norm is {total_norm}")
            }
            Error::InvalidArgument { message } => write!(f, "invalid argument: {message}"),
        }
    }
}

impl core::error::Error for Error {}
