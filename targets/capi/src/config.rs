//! The configuration structures C fills in, and their checked Rust forms.
//!
//! Enumerations inside C structures are plain `uint32_t` fields (a C
//! program may store any integer there); [`TrainSpec::from_c`] rejects values
//! that name no variant.

use crate::status::Failure;

/// Largest width of one layer.
pub const EMBER_MAX_WIDTH: usize = 1 << 20;
/// Largest number of layers (hidden plus output).
pub const EMBER_MAX_LAYERS: usize = 64;
/// Largest number of parameters of one network (256 Mi floats, 1 GiB).
pub const EMBER_MAX_PARAMETERS: usize = 1 << 28;

/// The shape of a multi-layer perceptron: `input → hidden[0] → … → classes`,
/// ReLU between layers, dropout after each hidden activation.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EmberMlpConfig {
    /// Features per example (at least 1).
    pub input: usize,
    /// Widths of the hidden layers, `hidden_len` of them (NULL when
    /// `hidden_len` is 0).
    pub hidden: *const usize,
    /// Number of hidden layers (at most 63).
    pub hidden_len: usize,
    /// Outputs (classes) per example (at least 1).
    pub classes: usize,
    /// Dropout probability after each hidden activation, in `[0, 1)`; 0
    /// disables it.
    pub dropout: f32,
    /// Seed of the weight initialisation (PyTorch's default scheme).
    pub seed: u64,
}

/// Learning-rate schedules, for the `schedule` field of `EmberTrainConfig`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmberSchedule {
    /// `learning_rate` at every step.
    Constant = 0,
    /// Linear warm-up from 10 % over the first 10 % of the steps of
    /// `ember_fit`, then cosine decay to 1 % of `learning_rate`.
    /// `ember_train_step` uses `learning_rate` as it is.
    WarmupCosine = 1,
}

/// Which parameters train, for the `trainable` field of `EmberTrainConfig`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmberTrainable {
    /// Every weight and bias.
    All = 0,
    /// The last layer only (a new head on a frozen body).
    Head = 1,
    /// Every bias and the last layer (BitFit).
    BiasAndHead = 2,
}

/// How a trainer trains: AdamW with PyTorch's arithmetic and defaults
/// (β = 0.9, 0.999, ε = 1e-8), cross-entropy loss.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EmberTrainConfig {
    /// Peak learning rate (> 0).
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay (≥ 0).
    pub weight_decay: f64,
    /// Examples per optimizer step in `ember_fit` (≥ 1).
    pub batch_size: usize,
    /// Epochs of one `ember_fit` call (≥ 1).
    pub epochs: usize,
    /// Seed of the data order and of dropout.
    pub seed: u64,
    /// Largest global L2 norm of the gradients (clipped above it); 0 turns
    /// clipping off.
    pub clip_norm: f64,
    /// An `EmberSchedule` value.
    pub schedule: u32,
    /// An `EmberTrainable` value.
    pub trainable: u32,
}

impl Default for EmberTrainConfig {
    /// The settings of `ember finetune --task digits`: learning rate 5e-3,
    /// weight decay 0.01, batch 32, 20 epochs, seed 0, clipping at 1.0,
    /// warm-up + cosine, every parameter trains.
    fn default() -> Self {
        Self {
            learning_rate: 5e-3,
            weight_decay: 0.01,
            batch_size: 32,
            epochs: 20,
            seed: 0,
            clip_norm: 1.0,
            schedule: EmberSchedule::WarmupCosine as u32,
            trainable: EmberTrainable::All as u32,
        }
    }
}

/// What one `ember_fit` call did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EmberFitReport {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Steps skipped because a loss or gradient was not finite.
    pub skipped_steps: u64,
    /// Mean training loss over the steps of the last epoch.
    pub final_loss: f64,
    /// Training accuracy over the steps of the last epoch, in `[0, 1]`.
    pub final_accuracy: f64,
}

/// A checked [`EmberMlpConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpSpec {
    /// Layer widths, input first, classes last.
    pub sizes: Vec<usize>,
    /// Dropout probability.
    pub dropout: f64,
    /// Initialisation seed.
    pub seed: u64,
}

impl MlpSpec {
    /// Checks `input`, `hidden`, `classes` and `dropout`.
    ///
    /// # Errors
    /// [`EmberStatus::InvalidArgument`](crate::EmberStatus::InvalidArgument)
    /// for zero or too large widths, too many layers, too many parameters or
    /// a dropout outside `[0, 1)`.
    pub fn new(
        input: usize,
        hidden: &[usize],
        classes: usize,
        dropout: f32,
        seed: u64,
    ) -> Result<Self, Failure> {
        if hidden.len() + 1 > EMBER_MAX_LAYERS {
            return Err(Failure::invalid(format!(
                "{} hidden layers: at most {} are supported",
                hidden.len(),
                EMBER_MAX_LAYERS - 1
            )));
        }
        let mut sizes = Vec::with_capacity(hidden.len() + 2);
        sizes.push(input);
        sizes.extend_from_slice(hidden);
        sizes.push(classes);
        for (i, &w) in sizes.iter().enumerate() {
            let what = if i == 0 {
                "input".to_string()
            } else if i + 1 == sizes.len() {
                "classes".to_string()
            } else {
                format!("hidden[{}]", i - 1)
            };
            if w == 0 || w > EMBER_MAX_WIDTH {
                return Err(Failure::invalid(format!(
                    "{what} is {w}: widths must be between 1 and {EMBER_MAX_WIDTH}"
                )));
            }
        }
        let parameters = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum::<usize>();
        if parameters > EMBER_MAX_PARAMETERS {
            return Err(Failure::invalid(format!(
                "{parameters} parameters: at most {EMBER_MAX_PARAMETERS} are supported"
            )));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Failure::invalid(format!(
                "dropout is {dropout}: it must be in [0, 1)"
            )));
        }
        Ok(Self {
            sizes,
            dropout: f64::from(dropout),
            seed,
        })
    }
}

/// A checked [`EmberTrainConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSpec {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Examples per step in `fit`.
    pub batch_size: usize,
    /// Epochs per `fit`.
    pub epochs: usize,
    /// Seed.
    pub seed: u64,
    /// Clipping threshold (`None`: off).
    pub clip_norm: Option<f64>,
    /// Schedule.
    pub schedule: EmberSchedule,
    /// Which parameters train.
    pub trainable: EmberTrainable,
}

impl TrainSpec {
    /// Checks every field of `c`.
    ///
    /// # Errors
    /// [`EmberStatus::InvalidArgument`](crate::EmberStatus::InvalidArgument)
    /// naming the first field out of range.
    pub fn from_c(c: &EmberTrainConfig) -> Result<Self, Failure> {
        if !(c.learning_rate.is_finite() && c.learning_rate > 0.0) {
            return Err(Failure::invalid(format!(
                "learning_rate is {}: it must be finite and > 0",
                c.learning_rate
            )));
        }
        if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
            return Err(Failure::invalid(format!(
                "weight_decay is {}: it must be finite and ≥ 0",
                c.weight_decay
            )));
        }
        if c.batch_size == 0 {
            return Err(Failure::invalid("batch_size is 0: it must be at least 1"));
        }
        if c.epochs == 0 {
            return Err(Failure::invalid("epochs is 0: it must be at least 1"));
        }
        if !(c.clip_norm.is_finite() && c.clip_norm >= 0.0) {
            return Err(Failure::invalid(format!(
                "clip_norm is {}: it must be finite and ≥ 0 (0 turns clipping off)",
                c.clip_norm
            )));
        }
        let schedule = match c.schedule {
            0 => EmberSchedule::Constant,
            1 => EmberSchedule::WarmupCosine,
            other => {
                return Err(Failure::invalid(format!(
                    "schedule is {other}: expected an EmberSchedule value (0 or 1)"
                )));
            }
        };
        let trainable = match c.trainable {
            0 => EmberTrainable::All,
            1 => EmberTrainable::Head,
            2 => EmberTrainable::BiasAndHead,
            other => {
                return Err(Failure::invalid(format!(
                    "trainable is {other}: expected an EmberTrainable value (0, 1 or 2)"
                )));
            }
        };
        Ok(Self {
            learning_rate: c.learning_rate,
            weight_decay: c.weight_decay,
            batch_size: c.batch_size,
            epochs: c.epochs,
            seed: c.seed,
            clip_norm: (c.clip_norm > 0.0).then_some(c.clip_norm),
            schedule,
            trainable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmberStatus;

    #[test]
    fn mlp_spec_checks_every_width() {
        let spec = MlpSpec::new(64, &[128, 64], 10, 0.1, 7).unwrap();
        assert_eq!(spec.sizes, vec![64, 128, 64, 10]);
        for (input, hidden, classes, dropout) in [
            (0, vec![8], 2, 0.0),
            (4, vec![0], 2, 0.0),
            (4, vec![8], 0, 0.0),
            (4, vec![8], 2, 1.0),
            (4, vec![8], 2, f32::NAN),
        ] {
            let e = MlpSpec::new(input, &hidden, classes, dropout, 0).unwrap_err();
            assert_eq!(e.status, EmberStatus::InvalidArgument, "{e}");
        }
        let e = MlpSpec::new(EMBER_MAX_WIDTH, &[EMBER_MAX_WIDTH], 2, 0.0, 0).unwrap_err();
        assert!(e.message.contains("parameters"), "{e}");
    }

    #[test]
    fn train_spec_rejects_unknown_enum_values() {
        let ok = TrainSpec::from_c(&EmberTrainConfig::default()).unwrap();
        assert_eq!(ok.clip_norm, Some(1.0));
        let bad = EmberTrainConfig {
            trainable: 7,
            ..Default::default()
        };
        assert!(
            TrainSpec::from_c(&bad)
                .unwrap_err()
                .message
                .contains("trainable is 7")
        );
        let bad = EmberTrainConfig {
            learning_rate: f64::NAN,
            ..Default::default()
        };
        assert!(
            TrainSpec::from_c(&bad)
                .unwrap_err()
                .message
                .contains("learning_rate")
        );
        let off = TrainSpec::from_c(&EmberTrainConfig {
            clip_norm: 0.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.clip_norm, None);
    }
}
