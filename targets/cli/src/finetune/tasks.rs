//! The two tasks of `ember finetune` and the training run they share:
//! the learning-rate range test, or the memory plan, evaluation before and
//! after, [`Trainer`] with checkpoints and the reporter, and the trained
//! weights written in their formats.

use std::io::Write;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use ember_models::adapter::save_peft_adapter;
use ember_models::classifier::SentenceClassifier;
use ember_models::cnn::SmallCnnConfig;
use ember_models::mlp::MlpConfig;
use ember_models::sentence::SentenceEncoder;
use ember_runtime::Error;
use ember_runtime::checkpoint::Checkpointer;
use ember_runtime::clip::GlobalNormClip;
use ember_runtime::freeze::{TrainMode, set_trainable, trainable_count};
use ember_runtime::io::{PathFilter, SaveOptions, save_safetensors};
use ember_runtime::lr_find::LrFinder;
use ember_runtime::optim;
use ember_runtime::peft::LoraConfig;
use ember_runtime::plan::Planner;
use ember_runtime::precision::{self, Precision};
use ember_runtime::recompute::{Recomputed, Strategy};
use ember_runtime::schedule::WarmupCosine;
use ember_runtime::train::{
    Dataset, EarlyStopping, ForwardFn, Objective, Output, Trainer, TrainerConfig, evaluate,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::data::{TextData, check_text, read_digits, read_text_dataset};
use super::report::{Plan, Reporter, Trained, summary};
use super::settings::{Arch, Mode, Options, Resolved};
use crate::plot;

/// Either the range test's summary or a trained model.
pub(super) enum Outcome<M> {
    LrFind(String),
    Trained(Trained<M>),
}

/// The part both tasks share: range test, or training with evaluation before
/// and after, checkpoints, metrics and curves.
/// The objective of a recomputation strategy: `None` when the network cannot
/// be split into blocks.
type Objectives<'a, M, B> = &'a dyn Fn(Strategy) -> Option<Box<dyn Objective<M, B>>>;

/// The objective (plain backward, or segment recomputation) of a network
/// that implements [`ember_runtime::recompute::Segmented`].
fn segmented<
    const N: usize,
    M: ember_runtime::recompute::Segmented<N, Batch = B> + 'static,
    B: 'static,
>() -> impl Fn(Strategy) -> Option<Box<dyn Objective<M, B>>> {
    // Without recomputation too the blocks run through `recompute` (with
    // its per-block RNG seeding), so that every strategy draws the same
    // dropout masks and trains to the same result.
    move |s| match s {
        Strategy::None | Strategy::Balanced => {
            Some(Box::new(Recomputed::<N>(Strategy::None)) as Box<dyn Objective<M, B>>)
        }
        s => Some(Box::new(Recomputed::<N>(s))),
    }
}

/// The objective of a network without blocks: plain backward only.
fn plain<M: Module + 'static, B: 'static>(
    forward: impl Fn(&M, &B) -> Output + Copy + 'static,
) -> impl Fn(Strategy) -> Option<Box<dyn Objective<M, B>>> {
    move |s| match s {
        Strategy::None | Strategy::Balanced => {
            Some(Box::new(ForwardFn(forward)) as Box<dyn Objective<M, B>>)
        }
        _ => None,
    }
}

/// Peak heap bytes of two training steps of `model` (a copy) on the first
/// `batch` training examples with `precision` and `objective`.
fn probe_peak<M: Module, D: Dataset>(
    model: &M,
    train: &D,
    device: &Device,
    batch: usize,
    precision: Precision,
    objective: &dyn Objective<M, D::Batch>,
) -> Result<usize, Error> {
    let indices: Vec<usize> = (0..batch.min(train.len())).collect();
    let data = train.batch(&indices, device)?;
    let heap = &crate::HEAP;
    heap.reset_peak();
    let mut m = model.clone();
    let mut optimizer = optim::adamw(0.01).init();
    for _ in 0..2 {
        let (_, grads) =
            precision::autocast(precision, || objective.forward_backward(&m, &data, 1.0));
        m = optimizer.step(1e-6, m, grads);
    }
    Ok(heap.stats().peak_bytes)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call per task; the task API replaces it with a typed request"
)]
fn train_task<M: Module, D: Dataset>(
    r: &Resolved,
    o: &Options,
    model: M,
    train: &D,
    test: &D,
    device: &Device,
    forward: impl Fn(&M, &D::Batch) -> Output + Copy,
    objectives: Objectives<'_, M, D::Batch>,
) -> Result<Outcome<M>, String> {
    let e = |e: Error| e.to_string();
    std::fs::create_dir_all(&r.out).map_err(|e| format!("{}: {e}", r.out.display()))?;
    let optimizer = optim::adamw(0.01).init();
    let (mut batch_size, mut grad_accumulation, mut precision, mut recompute) =
        (r.batch_size, r.grad_accumulation, r.precision, r.recompute);
    if let Some(budget) = r.memory_budget {
        let mut candidates = Vec::new();
        for p in [Precision::Fp32, Precision::Bf16] {
            for s in [Strategy::None, Strategy::Auto] {
                if objectives(s).is_some() {
                    candidates.push((p, s));
                }
            }
        }
        let plan = Planner::new(budget, r.batch_size)
            .with_candidates(candidates)
            .plan(|b, p, s| {
                let objective = objectives(s).expect("candidate has an objective");
                probe_peak(&model, train, device, b, p, &*objective)
            })
            .map_err(e)?;
        eprintln!("{}", plan.explain());
        batch_size = plan.choice.batch_size;
        grad_accumulation = r.grad_accumulation * plan.choice.grad_accumulation;
        precision = plan.choice.precision;
        recompute = plan.choice.recompute;
    }
    let objective = objectives(recompute).ok_or_else(|| {
        format!("recompute {recompute} needs a network of blocks; this one has none")
    })?;
    let forward = move |m: &M, b: &D::Batch| precision::autocast(precision, || forward(m, b));
    if o.lr_find {
        let curve = LrFinder::new(r.batch_size)
            .with_seed(r.seed)
            .run(&model, &optimizer, train, device, forward)
            .map_err(e)?;
        std::fs::write(r.out.join("lr_find.csv"), curve.to_csv())
            .map_err(|e| format!("{}: {e}", r.out.display()))?;
        let points: Vec<(f64, f64)> = curve.points.iter().map(|p| (p.lr, p.smoothed)).collect();
        plot::lr_curve(&r.out.join("lr_find.png"), &points, curve.suggested)?;
        let suggestion = match curve.suggested {
            Some(lr) => format!("suggested learning rate: {lr:.2e} (steepest descent of the smoothed loss)"),
            None => "no suggestion: the loss diverged within the first steps; lower the start of the range".into(),
        };
        return Ok(Outcome::LrFind(format!(
            "learning-rate range test: {} steps from {:.0e}\n{suggestion}\nwrote {}/lr_find.csv and lr_find.png",
            curve.points.len(),
            curve.points.first().map_or(0.0, |p| p.lr),
            r.out.display()
        )));
    }

    let plain = device.clone().without_autodiff();
    let before = evaluate(&model.valid(), test, 64, &plain, forward).map_err(e)?;
    let steps_per_epoch = train.len().div_ceil(batch_size).div_ceil(grad_accumulation);
    let total = steps_per_epoch * r.epochs;
    let warmup = (total / 10).max(1);
    let schedule = WarmupCosine::new(
        r.lr,
        0.1,
        warmup,
        total.saturating_sub(warmup).max(1),
        r.lr * 0.01,
    );
    let mut config = TrainerConfig::new(batch_size)
        .with_epochs(r.epochs)
        .with_grad_accumulation(grad_accumulation)
        .with_clip(GlobalNormClip::new(1.0))
        .with_precision(precision)
        .with_seed(r.seed);
    if r.eval_every > 0 {
        config = config.with_eval_every(r.eval_every);
    }
    if r.checkpoint_every > 0 {
        config = config.with_checkpoint_every(r.checkpoint_every);
    }
    if r.patience > 0 {
        config = config.with_early_stopping(EarlyStopping::new(r.patience));
    }
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(r.out.join("metrics.jsonl"))
        .map_err(|e| format!("{}: {e}", r.out.display()))?;
    if !o.resume {
        let line = serde_json::json!({"step": 0, "test_loss": before.loss, "test_accuracy": before.accuracy});
        writeln!(metrics, "{line}").map_err(|e| format!("{}: {e}", r.out.display()))?;
    }
    let bar = if o.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    let trainable = trainable_count(&model);
    crate::HEAP.reset_peak();
    let started = Instant::now();
    let reporter = Reporter {
        bar: bar.clone(),
        metrics,
        started,
        seen: 0,
    };
    // Frozen parameters come from the model directory again on resume: a
    // checkpoint holds only what trains (0.6 MB instead of 91 MB for LoRA).
    let partial = trainable.0 < trainable.1;
    let checkpointer = Checkpointer::new(r.out.join("checkpoints"), 2)
        .map_err(e)?
        .trainable_only(partial);
    let fit = Trainer::new(config, schedule, device.clone())
        .with_checkpointer(checkpointer)
        .resume(o.resume)
        .with_callback(reporter)
        .fit_with(model, optimizer, train, Some(test), &*objective)
        .map_err(e)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let peak_heap = crate::HEAP.stats().peak_bytes;
    let after = evaluate(&fit.model.valid(), test, 64, &plain, forward).map_err(e)?;
    let first = fit.history.steps.first().map_or(fit.state.step, |s| s.step);
    Ok(Outcome::Trained(Trained {
        model: fit.model,
        before,
        after,
        steps: (first, fit.state.step),
        seconds,
        anomalies: fit.history.anomalies.len(),
        trainable,
        peak_heap,
        plan: Plan {
            batch_size,
            grad_accumulation,
            precision,
            recompute,
        },
        overflows: fit.history.overflows.len(),
        final_loss: fit.history.steps.last().map(|s| s.loss),
    }))
}

fn trainable(mode: Mode, head: &str) -> TrainMode {
    match mode {
        Mode::Lora => TrainMode::Lora {
            also: vec![head.into()],
        },
        Mode::Bias => TrainMode::BiasOnly {
            also: vec![head.into()],
        },
        Mode::Head => TrainMode::HeadOnly {
            prefix: head.into(),
        },
        Mode::Full => TrainMode::Full,
    }
}

pub(super) fn run_intents(r: &Resolved, o: &Options, device: &Device) -> Result<String, String> {
    let mut labels = Vec::new();
    let train = read_text_dataset(&r.train, &mut labels, true)?;
    let test = read_text_dataset(&r.test, &mut labels, false)?;
    let report = check_text(&r.train, &train, labels.len())?;
    check_text(&r.test, &test, labels.len())?;
    for w in &report.warnings {
        eprintln!("warning: {}: {w}", r.train);
    }
    let model_dir = super::default_model_dir(r.model.clone())?;
    let encoder = SentenceEncoder::from_dir(&model_dir, device).map_err(|e| e.to_string())?;
    let lora = LoraConfig::new(r.rank)
        .with_alpha(2.0 * r.rank as f64)
        .with_target_modules(vec!["query".into(), "value".into()]);
    let bert = if r.mode == Mode::Lora {
        encoder.model().clone().with_lora(&lora, device)
    } else {
        encoder.model().clone()
    };
    let mode = trainable(r.mode, "head");
    let model = set_trainable(SentenceClassifier::new(bert, labels.len(), device), |p| {
        mode.trains(p)
    });
    let (train_data, test_data) = (
        TextData {
            examples: &train,
            encoder: &encoder,
        },
        TextData {
            examples: &test,
            encoder: &encoder,
        },
    );
    let forward = |m: &SentenceClassifier,
                   (ids, mask, y): &(Tensor<2, Int>, Tensor<2>, Tensor<1, Int>)| {
        Output::classification(m.forward(ids.clone(), mask.clone()), y.clone())
    };
    let objectives = segmented::<3, SentenceClassifier, _>();
    let t = match train_task(
        r,
        o,
        model,
        &train_data,
        &test_data,
        device,
        forward,
        &objectives,
    )? {
        Outcome::LrFind(s) => return Ok(s),
        Outcome::Trained(t) => t,
    };
    let trained = t.model.valid();
    let io = |e: Error| e.to_string();
    let files = if r.mode == Mode::Lora {
        save_peft_adapter(&trained.encoder, &lora, r.out.join("adapter"))
            .map_err(|e| e.to_string())?;
        save_safetensors(
            &trained,
            r.out.join("head.safetensors"),
            &SaveOptions {
                only: Some(PathFilter::new().with_predicate(|path, _| path.starts_with("head."))),
                ..Default::default()
            },
        )
        .map_err(io)?;
        vec!["adapter/", "head.safetensors", "labels.json"]
    } else {
        save_safetensors(
            &trained,
            r.out.join("model.safetensors"),
            &SaveOptions::default(),
        )
        .map_err(io)?;
        vec!["model.safetensors", "labels.json"]
    };
    std::fs::write(
        r.out.join("labels.json"),
        serde_json::to_string(&labels).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", r.out.display()))?;
    let how = match r.mode {
        Mode::Lora => format!("LoRA r={} on query/value + head", r.rank),
        Mode::Bias => "biases + head (BitFit)".into(),
        Mode::Head => "the head only".into(),
        Mode::Full => "all parameters".into(),
    };
    let what = format!(
        "fine-tuned {} ({how}) on {} examples, {} labels",
        encoder.name(),
        train.len(),
        labels.len()
    );
    summary(r, &what, &t, &files)
}

pub(super) fn run_digits(r: &Resolved, o: &Options, device: &Device) -> Result<String, String> {
    let (train, report) = read_digits(&r.train)?;
    let (test, _) = read_digits(&r.test)?;
    for w in &report.warnings {
        eprintln!("warning: {}: {w}", r.train);
    }
    let what = |name: &str| {
        format!(
            "trained the digits {name} from scratch on {} images",
            train.len()
        )
    };
    match r.arch {
        Arch::Mlp => {
            let mode = trainable(r.mode, "layers.2");
            let model = set_trainable(
                MlpConfig::new(vec![64, 128, 64, 10])
                    .with_dropout(0.1)
                    .init(device),
                |p| mode.trains(p),
            );
            let forward = |m: &ember_models::mlp::Mlp, (x, y): &(Tensor<2>, Tensor<1, Int>)| {
                Output::classification(m.forward(x.clone()), y.clone())
            };
            let objectives = segmented::<2, ember_models::mlp::Mlp, _>();
            let outcome = train_task(r, o, model, &train, &test, device, forward, &objectives)?;
            save_whole(r, &what("MLP 64-128-64-10"), outcome)
        }
        Arch::Cnn => {
            let mode = trainable(r.mode, "fc");
            let model = set_trainable(SmallCnnConfig::new().init(device), |p| mode.trains(p));
            let forward = |m: &ember_models::cnn::SmallCnn,
                           (x, y): &(Tensor<2>, Tensor<1, Int>)| {
                let n = x.dims()[0];
                Output::classification(m.forward(x.clone().reshape([n, 1, 8, 8])), y.clone())
            };
            let objectives = plain(forward);
            let outcome = train_task(r, o, model, &train, &test, device, forward, &objectives)?;
            save_whole(r, &what("CNN"), outcome)
        }
    }
}

/// A trained network saved whole (`model.safetensors`), and the summary;
/// or the range test's summary.
fn save_whole<M: Module>(r: &Resolved, what: &str, outcome: Outcome<M>) -> Result<String, String> {
    let t = match outcome {
        Outcome::LrFind(s) => return Ok(s),
        Outcome::Trained(t) => t,
    };
    save_safetensors(
        &t.model.valid(),
        r.out.join("model.safetensors"),
        &SaveOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    summary(r, what, &t, &["model.safetensors"])
}
