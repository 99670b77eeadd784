//! Status codes and the error type behind them.

use std::fmt;

/// The result of every fallible function of the C API.
///
/// `EMBER_STATUS_OK` (0) is success; every other value is an error whose
/// message `ember_last_error()` returns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmberStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// An argument is out of its valid range (a zero size, a negative learning
    /// rate, an unknown enum value, a label outside the classes, a path that is
    /// not UTF-8, a misaligned pointer, a model that does not belong to the
    /// trainer, …).
    InvalidArgument = 2,
    /// A file could not be read or written (missing file, permissions, full
    /// disk).
    Io = 3,
    /// A file is not valid safetensors (truncated, bad header, bad offsets).
    Format = 4,
    /// The tensors of a file do not fit the model: missing, unexpected or
    /// differently shaped tensors (every one is listed in the message).
    Mismatch = 5,
    /// A buffer is too small or sizes do not agree with the model.
    Shape = 6,
    /// An input, a loss or a gradient is NaN or infinite, or training diverged.
    NonFinite = 7,
    /// An internal error was caught at the boundary. The handle involved
    /// must not be used again except to free it.
    Panic = 8,
}

impl EmberStatus {
    /// The variant's name as the header spells it.
    pub fn name(self) -> &'static str {
        match self {
            EmberStatus::Ok => "EMBER_STATUS_OK",
            EmberStatus::NullPointer => "EMBER_STATUS_NULL_POINTER",
            EmberStatus::InvalidArgument => "EMBER_STATUS_INVALID_ARGUMENT",
            EmberStatus::Io => "EMBER_STATUS_IO",
            EmberStatus::Format => "EMBER_STATUS_FORMAT",
            EmberStatus::Mismatch => "EMBER_STATUS_MISMATCH",
            EmberStatus::Shape => "EMBER_STATUS_SHAPE",
            EmberStatus::NonFinite => "EMBER_STATUS_NON_FINITE",
            EmberStatus::Panic => "EMBER_STATUS_PANIC",
        }
    }

    /// The status whose numeric value is `code`, if any.
    pub fn from_code(code: i32) -> Option<Self> {
        const ALL: [EmberStatus; 9] = [
            EmberStatus::Ok,
            EmberStatus::NullPointer,
            EmberStatus::InvalidArgument,
            EmberStatus::Io,
            EmberStatus::Format,
            EmberStatus::Mismatch,
            EmberStatus::Shape,
            EmberStatus::NonFinite,
            EmberStatus::Panic,
        ];
        ALL.into_iter().find(|s| *s as i32 == code)
    }
}

/// A failed call: the status returned to C and the message stored for
/// [`ember_last_error`](crate::ffi::ember_last_error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The status code.
    pub status: EmberStatus,
    /// What went wrong, in one or more lines.
    pub message: String,
}

impl Failure {
    /// A failure with `status` and `message`.
    pub fn new(status: EmberStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// [`EmberStatus::NullPointer`] naming the argument.
    pub fn null(argument: &str) -> Self {
        Self::new(EmberStatus::NullPointer, format!("`{argument}` is NULL"))
    }

    /// [`EmberStatus::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(EmberStatus::InvalidArgument, message)
    }

    /// [`EmberStatus::Shape`].
    pub fn shape(message: impl Into<String>) -> Self {
        Self::new(EmberStatus::Shape, message)
    }

    /// [`EmberStatus::NonFinite`].
    pub fn non_finite(message: impl Into<String>) -> Self {
        Self::new(EmberStatus::NonFinite, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<ember_runtime::Error> for Failure {
    fn from(e: ember_runtime::Error) -> Self {
        use ember_runtime::Error as E;
        let status = match &e {
            E::Io { .. } => EmberStatus::Io,
            E::Safetensors { .. } => EmberStatus::Format,
            E::Load { .. } => EmberStatus::Mismatch,
            E::NonFiniteGradNorm { .. } | E::Diverged { .. } => EmberStatus::NonFinite,
            _ => EmberStatus::InvalidArgument,
        };
        Self::new(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..9 {
            let status = EmberStatus::from_code(code).unwrap();
            assert_eq!(status as i32, code);
            assert!(status.name().starts_with("EMBER_STATUS_"));
        }
        assert_eq!(EmberStatus::from_code(9), None);
        assert_eq!(EmberStatus::from_code(-1), None);
    }

    #[test]
    fn runtime_errors_map_to_codes() {
        let io = ember_runtime::Error::Io {
            path: "x".into(),
            message: "no such file".into(),
        };
        assert_eq!(Failure::from(io).status, EmberStatus::Io);
        let load = ember_runtime::Error::Load {
            path: "x".into(),
            missing: vec!["a".into()],
            unexpected: vec![],
            mismatched: vec![],
        };
        let failure = Failure::from(load);
        assert_eq!(failure.status, EmberStatus::Mismatch);
        assert!(
            failure.message.contains("missing (1): a"),
            "{}",
            failure.message
        );
    }
}
