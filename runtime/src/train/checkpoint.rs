//! Crash-safe training checkpoints (std only).
//!
//! A checkpoint is a directory `step-{step:010}` holding the model record
//! (`model.bpk`, Burn's burnpack format, every parameter and buffer by path;
//! or, with [`Checkpointer::trainable_only`], `trainable.bpk` holding only the
//! parameters that train, for LoRA the adapters and the head only),
//! the optimizer state (`optimizer.bpk`), the training state (`state.txt`:
//! step, epoch, data-loader position, scheduler steps, RNG seed) and a
//! `MANIFEST` with the size and FNV-1a hash of each file, written last.
//!
//! Writing is atomic: everything goes to a hidden temporary directory, each
//! file is fsynced, the directory is renamed into place and the parent
//! directory fsynced. A crash at any moment leaves the previous checkpoints
//! intact and at worst a temporary directory, which is ignored (and removed by
//! the next save). [`Checkpointer::resume`] takes the newest checkpoint whose
//! manifest verifies and reports every newer one it had to skip, with the
//! reason. Only the `keep_last` newest checkpoints are kept.
//!
//! Bit-identical resumption needs the randomness of a step to depend on the
//! step alone: seed the device from [`TrainState::rng_seed`] and the step
//! (e.g. `device.seed(state.rng_seed + step)`) before each step.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleRecord, ModuleSnapshot, PathFilter};
use burn::tensor::Bytes;

use crate::Error;
use crate::freeze::trainable_paths;

pub use super::state::TrainState;

fn state_to_text(s: TrainState) -> String {
    format!(
        "step={}\nepoch={}\ndata_position={}\nscheduler_steps={}\nrng_seed={}\nloss_scale_bits={}\nscale_growth_tracker={}\n",
        s.step,
        s.epoch,
        s.data_position,
        s.scheduler_steps,
        s.rng_seed,
        s.loss_scale.to_bits(),
        s.scale_growth_tracker
    )
}

fn state_from_text(text: &str) -> Option<TrainState> {
    let mut s = TrainState::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "step" => s.step = v,
            "epoch" => s.epoch = v,
            "data_position" => s.data_position = v,
            "scheduler_steps" => s.scheduler_steps = v,
            "rng_seed" => s.rng_seed = v,
            "loss_scale_bits" => s.loss_scale = f64::from_bits(v),
            "scale_growth_tracker" => s.scale_growth_tracker = v,
            _ => return None,
        }
    }
    Some(s)
}

/// A run restored from a checkpoint.
pub struct Resumed<M> {
    /// The model with the checkpoint's parameters.
    pub model: M,
    /// The optimizer with the checkpoint's state.
    pub optimizer: ModuleOptimizer,
    /// The training state.
    pub state: TrainState,
    /// The checkpoint directory used.
    pub path: PathBuf,
    /// Newer checkpoints that were skipped, each with the reason.
    pub skipped: Vec<String>,
}

/// Saves and restores checkpoints in one directory.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
    keep_last: usize,
    trainable_only: bool,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn io(path: &Path, e: impl ToString) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = std::fs::File::create(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

const FILES: [&str; 3] = ["model.bpk", "optimizer.bpk", "state.txt"];
const TRAINABLE_FILE: &str = "trainable.bpk";

impl Checkpointer {
    /// Checkpoints in `dir` (created if needed), keeping the `keep_last` newest.
    pub fn new(dir: impl Into<PathBuf>, keep_last: usize) -> Result<Self, Error> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Self {
            dir,
            keep_last: keep_last.max(1),
            trainable_only: false,
        })
    }

    /// Stores only parameters with `require_grad` (adapters, a head, unfrozen
    /// layers). Frozen parameters and buffers are not written: on resume they
    /// come from the model passed to [`Checkpointer::resume`], which must be
    /// built the same way (e.g. from the same pretrained weights). Not for
    /// models with running statistics (batch norm) that change in training.
    pub fn trainable_only(mut self, yes: bool) -> Self {
        self.trainable_only = yes;
        self
    }

    /// Steps and paths of the checkpoint directories present, oldest first
    /// (valid or not).
    pub fn list(&self) -> Vec<(u64, PathBuf)> {
        let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("step-")?.parse().ok()?;
                Some((step, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    /// Writes a checkpoint atomically and prunes old ones. Returns its path.
    pub fn save<M: Module>(
        &self,
        model: &M,
        optimizer: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf, Error> {
        let name = format!("step-{:010}", state.step);
        let final_dir = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        let record = |e: burn::store::RecordError| Error::Io {
            path: tmp.display().to_string(),
            message: e.to_string(),
        };
        let model_bytes = if self.trainable_only {
            let paths: Vec<String> = trainable_paths(model)
                .into_iter()
                .filter(|(_, t)| *t)
                .map(|(p, _)| p)
                .collect();
            let mut store = BurnpackStore::from_bytes(None)
                .with_filter(PathFilter::new().with_full_paths(paths));
            let pack = |e: burn::store::burn_pack::Error| Error::Io {
                path: tmp.display().to_string(),
                message: e.to_string(),
            };
            model.save_into(&mut store).map_err(pack)?;
            store.get_bytes().map_err(pack)?
        } else {
            model.clone().into_record().into_bytes().map_err(record)?
        };
        let model_file = if self.trainable_only {
            TRAINABLE_FILE
        } else {
            FILES[0]
        };
        let optim_bytes = optimizer.into_bytes().map_err(record)?;
        let state_text = state_to_text(*state);
        let contents: [&[u8]; 3] = [&model_bytes, &optim_bytes, state_text.as_bytes()];
        let mut manifest = String::new();
        for (file, bytes) in [model_file, FILES[1], FILES[2]].into_iter().zip(contents) {
            write_synced(&tmp.join(file), bytes)?;
            manifest.push_str(&format!("{file} {} {:016x}\n", bytes.len(), fnv1a(bytes)));
        }
        write_synced(&tmp.join("MANIFEST"), manifest.as_bytes())?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.prune();
        Ok(final_dir)
    }

    fn prune(&self) {
        let list = self.list();
        if list.len() > self.keep_last {
            for (_, path) in &list[..list.len() - self.keep_last] {
                let _ = std::fs::remove_dir_all(path);
            }
        }
        // Temporary directories of interrupted saves of other processes.
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".step-") && !name.ends_with(&format!("-{}", std::process::id())) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Reads and verifies one checkpoint's files.
    fn read_verified(path: &Path) -> Result<([Vec<u8>; 3], bool), String> {
        let manifest =
            std::fs::read_to_string(path.join("MANIFEST")).map_err(|e| format!("MANIFEST: {e}"))?;
        let trainable = manifest
            .lines()
            .any(|l| l.split(' ').next() == Some(TRAINABLE_FILE));
        let files = [
            if trainable { TRAINABLE_FILE } else { FILES[0] },
            FILES[1],
            FILES[2],
        ];
        let mut out: [Vec<u8>; 3] = Default::default();
        for (i, file) in files.iter().enumerate() {
            let line = manifest
                .lines()
                .find(|l| l.split(' ').next() == Some(file))
                .ok_or(format!("MANIFEST lacks {file}"))?;
            let mut parts = line.split(' ').skip(1);
            let size: usize = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or("bad MANIFEST")?;
            let hash = parts
                .next()
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or("bad MANIFEST")?;
            let bytes = std::fs::read(path.join(file)).map_err(|e| format!("{file}: {e}"))?;
            if bytes.len() != size {
                return Err(format!(
                    "{file}: {} bytes, the manifest says {size}",
                    bytes.len()
                ));
            }
            if fnv1a(&bytes) != hash {
                return Err(format!("{file}: contents do not match the manifest's hash"));
            }
            out[i] = bytes;
        }
        Ok((out, trainable))
    }

    /// Restores the newest valid checkpoint into `model` and `optimizer`
    /// (freshly built, of the same architecture). `Ok(None)` when there is
    /// none; newer checkpoints that fail verification are skipped and listed
    /// in [`Resumed::skipped`].
    pub fn resume<M: Module>(
        &self,
        model: M,
        optimizer: ModuleOptimizer,
    ) -> Result<Option<Resumed<M>>, Error> {
        let mut skipped = Vec::new();
        for (_, path) in self.list().into_iter().rev() {
            let files = match Self::read_verified(&path) {
                Ok(f) => f,
                Err(reason) => {
                    skipped.push(format!("{}: {reason}", path.display()));
                    continue;
                }
            };
            let ([model_bytes, optim_bytes, state_text], trainable_only) = files;
            let Some(state) = core::str::from_utf8(&state_text)
                .ok()
                .and_then(state_from_text)
            else {
                skipped.push(format!(
                    "{}: state.txt is not a training state",
                    path.display()
                ));
                continue;
            };
            let model = if trainable_only {
                let file = path.join(TRAINABLE_FILE);
                let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(model_bytes)))
                    .allow_partial(true);
                let mut model = model;
                let result = model.load_from(&mut store).map_err(|e| io(&file, e))?;
                if !result.errors.is_empty() || !result.unused.is_empty() {
                    let mut problems: Vec<String> =
                        result.errors.iter().map(|e| format!("{e}")).collect();
                    problems.extend(
                        result
                            .unused
                            .iter()
                            .map(|p| format!("{p}: not a parameter of the model")),
                    );
                    return Err(io(
                        &file,
                        format!(
                            "the checkpoint does not fit the model: {}",
                            problems.join("; ")
                        ),
                    ));
                }
                model
            } else {
                let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes))
                    .map_err(|e| io(&path.join("model.bpk"), e))?;
                model
                    .try_load_record(record)
                    .map_err(|e| io(&path.join("model.bpk"), e))?
            };
            let optimizer = optimizer
                .from_bytes(Bytes::from_bytes_vec(optim_bytes))
                .map_err(|e| io(&path.join("optimizer.bpk"), e))?;
            return Ok(Some(Resumed {
                model,
                optimizer,
                state,
                path,
                skipped,
            }));
        }
        Ok(None)
    }
}
