//! What `ember finetune` tells: the progress bar and console lines, every
//! step, evaluation and anomaly in `metrics.jsonl`, the curves in
//! `curves.png`, and the run's summary, printed and written as
//! `summary.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ember_runtime::memory::peak_rss_mib;
use ember_runtime::precision::Precision;
use ember_runtime::recompute::Strategy;
use ember_runtime::train::{Callback, EvalRecord, Event};
use indicatif::ProgressBar;

use super::settings::Resolved;
use crate::plot;

/// What a training run of either task reports.
pub(super) struct Trained<M> {
    pub(super) model: M,
    pub(super) before: EvalRecord,
    pub(super) after: EvalRecord,
    pub(super) steps: (u64, u64),
    pub(super) seconds: f64,
    pub(super) anomalies: usize,
    pub(super) trainable: (usize, usize),
    pub(super) peak_heap: usize,
    /// The batch, precision and recomputation it ran with (the memory
    /// planner's choice under a budget).
    pub(super) plan: Plan,
    pub(super) overflows: usize,
    pub(super) final_loss: Option<f64>,
}

/// The batch, precision and recomputation of a run.
pub(super) struct Plan {
    pub(super) batch_size: usize,
    pub(super) grad_accumulation: usize,
    pub(super) precision: Precision,
    pub(super) recompute: Strategy,
}

/// Progress bar, metrics file and console messages.
pub(super) struct Reporter {
    pub(super) bar: ProgressBar,
    pub(super) metrics: std::fs::File,
    pub(super) started: Instant,
    pub(super) seen: usize,
}

impl Reporter {
    /// A line for the user: above the bar, or on stderr without one.
    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}")
        } else {
            self.bar.println(line)
        }
    }
}

impl<M> Callback<M> for Reporter {
    fn on_event(&mut self, event: &Event<'_>) {
        let line = match event {
            Event::Start { step, total_steps } => {
                self.bar.set_length(*total_steps);
                self.bar.set_position(*step);
                None
            }
            Event::Step(r) => {
                self.seen += r.examples;
                let rate = self.seen as f64 / self.started.elapsed().as_secs_f64();
                self.bar.set_position(r.step + 1);
                self.bar
                    .set_message(format!("loss {:.4} lr {:.2e} {rate:.1} ex/s", r.loss, r.lr));
                Some(
                    serde_json::json!({"step": r.step, "epoch": r.epoch, "loss": r.loss, "lr": r.lr, "grad_norm": r.grad_norm, "accuracy": r.accuracy}),
                )
            }
            Event::Anomaly(a) => {
                self.bar.set_position(a.step + 1);
                self.say(format!("warning: {a}"));
                Some(
                    serde_json::json!({"step": a.step, "anomaly": format!("{:?}", a.kind).to_lowercase(), "path": a.path, "value": a.value}),
                )
            }
            Event::Warning { step, warning } => {
                self.say(format!("step {step}: {warning}"));
                None
            }
            Event::Overflow {
                step,
                scale,
                new_scale,
            } => Some(
                serde_json::json!({"step": step, "overflow_scale": scale, "new_scale": new_scale}),
            ),
            Event::Rollback { step, to_step } => {
                self.say(format!("step {step}: too many bad steps in a row; rolled back to the state of step {to_step}"));
                Some(serde_json::json!({"step": step, "rollback_to": to_step}))
            }
            Event::Eval(r) => {
                let acc = r
                    .accuracy
                    .map(|a| format!(", accuracy {:.1} %", a * 100.0))
                    .unwrap_or_default();
                self.bar.println(format!(
                    "step {} (epoch {}): held-out loss {:.4}{acc}",
                    r.step,
                    r.epoch + 1,
                    r.loss
                ));
                Some(
                    serde_json::json!({"step": r.step, "epoch": r.epoch, "test_loss": r.loss, "test_accuracy": r.accuracy}),
                )
            }
            Event::EarlyStop {
                step,
                best_step,
                best_loss,
            } => {
                self.say(format!("step {step}: early stop; keeping the model of step {best_step} (held-out loss {best_loss:.4})"));
                None
            }
            Event::Message(m) => {
                self.say(m.to_string());
                None
            }
            _ => None,
        };
        if let Some(line) = line {
            let _ = writeln!(self.metrics, "{line}");
        }
    }
}

/// The curves of `metrics.jsonl` (the whole run, resumed parts included; a
/// step run twice after a crash counts once, the later time).
pub(super) fn plot_metrics(out: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let mut train = std::collections::BTreeMap::new();
    let mut eval = std::collections::BTreeMap::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let Some(step) = v["step"].as_f64() else {
            continue;
        };
        if let Some(loss) = v["loss"].as_f64() {
            train.insert(step as u64, loss);
        }
        if let Some(loss) = v["test_loss"].as_f64() {
            eval.insert(step as u64, (loss, v["test_accuracy"].as_f64()));
        }
    }
    let train: Vec<(f64, f64)> = train
        .into_iter()
        .map(|(s, l)| (s as f64 + 1.0, l))
        .collect();
    let eval_loss: Vec<(f64, f64)> = eval.iter().map(|(s, (l, _))| (*s as f64, *l)).collect();
    let eval_acc: Vec<(f64, f64)> = eval
        .iter()
        .filter_map(|(s, (_, a))| a.map(|a| (*s as f64, a)))
        .collect();
    let path = out.join("curves.png");
    plot::training_curves(&path, &train, &eval_loss, &eval_acc)?;
    Ok(path)
}

fn accuracy(r: &EvalRecord) -> String {
    r.accuracy
        .map_or("n/a".into(), |a| format!("{:.1} %", a * 100.0))
}

/// The run's summary: written to `summary.json` in the output directory
/// (every figure as a number, for scripts and benchmarks) and returned as
/// the text `ember finetune` prints. `files` are the outputs besides the
/// metrics, curves and checkpoints.
pub(super) fn summary<M>(
    r: &Resolved,
    what: &str,
    t: &Trained<M>,
    files: &[&str],
) -> Result<String, String> {
    let curves = plot_metrics(&r.out)?;
    let curves = curves.file_name().unwrap_or_default().to_string_lossy();
    let rss = peak_rss_mib();
    let heap_mib = t.peak_heap as f64 / 1048576.0;
    let mut wrote: Vec<&str> = files.to_vec();
    wrote.extend(["metrics.jsonl", &curves, "checkpoints/", "summary.json"]);
    let json = serde_json::json!({
        "task": r.task,
        "what": what,
        "device": r.device.name(),
        "precision": t.plan.precision.to_string(),
        "recompute": t.plan.recompute.to_string(),
        "batch_size": t.plan.batch_size,
        "grad_accumulation": t.plan.grad_accumulation,
        "first_step": t.steps.0,
        "last_step": t.steps.1,
        "train_seconds": t.seconds,
        "peak_rss_mib": rss,
        "peak_heap_mib": heap_mib,
        "skipped_steps": t.anomalies,
        "loss_scale_overflows": t.overflows,
        "final_training_loss": t.final_loss,
        "trainable_parameters": t.trainable.0,
        "parameters": t.trainable.1,
        "held_out_examples": t.after.examples,
        "accuracy_before": t.before.accuracy,
        "accuracy_after": t.after.accuracy,
        "loss_before": t.before.loss,
        "loss_after": t.after.loss,
        "files": wrote,
    });
    let path = r.out.join("summary.json");
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    ember_runtime::io::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;

    let rss = rss
        .map(|m| format!(", peak RSS {m:.0} MiB"))
        .unwrap_or_default();
    let heap = format!(", peak heap while training {heap_mib:.0} MiB");
    let anomalies = if t.anomalies > 0 {
        format!(", {} steps skipped (see metrics.jsonl)", t.anomalies)
    } else {
        String::new()
    };
    let overflows = if t.overflows > 0 {
        format!(", {} loss-scale overflows skipped", t.overflows)
    } else {
        String::new()
    };
    let last = t
        .final_loss
        .map(|l| format!(", final training loss {l:.4}"))
        .unwrap_or_default();
    let p = &t.plan;
    Ok(format!(
        "{what}: steps {}..{} in {:.1} s{rss}{heap}{anomalies}{overflows}\n\
         device {}, precision {}, recompute {}, batch {}×{}{last}\n\
         trainable parameters: {} of {} ({:.2} %)\n\
         held-out accuracy: {} before, {} after ({} examples)\n\
         held-out loss: {:.4} before, {:.4} after\n\
         wrote {}: {}",
        t.steps.0,
        t.steps.1,
        t.seconds,
        r.device,
        p.precision,
        p.recompute,
        p.batch_size,
        p.grad_accumulation,
        t.trainable.0,
        t.trainable.1,
        100.0 * t.trainable.0 as f64 / t.trainable.1.max(1) as f64,
        accuracy(&t.before),
        accuracy(&t.after),
        t.after.examples,
        t.before.loss,
        t.after.loss,
        r.out.display(),
        wrote.join(", "),
    ))
}
