//! The exported C functions: the only module of the crate with `unsafe` code.
//!
//! # Invariants this module upholds
//!
//! * **No unwinding across the boundary.** Every exported function runs its
//!   body inside [`std::panic::catch_unwind`] (see `run`); a caught panic
//!   becomes [`EmberStatus::Panic`] with its message. Built with
//!   `panic = "abort"` nothing can be caught, so the safe code validates
//!   every argument before it reaches Burn.
//! * **Pointers are checked before use.** NULL pointers give
//!   [`EmberStatus::NullPointer`] naming the argument; misaligned pointers,
//!   lengths whose byte size overflows `isize`, and input and output buffers
//!   that overlap give [`EmberStatus::InvalidArgument`]. Optional outputs
//!   (documented as "may be NULL") are skipped when NULL.
//! * **What cannot be checked is the caller's contract**, stated in the
//!   header: a non-NULL pointer points to as many readable (or writable)
//!   elements as its length says; a handle came from `ember_*_new` and has
//!   not been freed; a handle is not used by two threads at the same time.
//! * **Handles** are `Box`es turned into raw pointers by `ember_*_new` and
//!   back by `ember_*_free` only. References made from them live for one
//!   call. A call interrupted by a panic leaves its handle marked
//!   `poisoned`; later calls on it fail with [`EmberStatus::Panic`].
//! * **Strings** are read with [`CStr::from_ptr`] (NUL-terminated) and must be
//!   UTF-8. Strings returned to C are `'static` or this thread's last-error
//!   buffer, valid until the thread's next call.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::config::{EmberFitReport, EmberMlpConfig, EmberTrainConfig, MlpSpec, TrainSpec};
use crate::last_error;
use crate::mlp::EmberMlp;
use crate::status::{EmberStatus, Failure};
use crate::train::EmberTrainer;

/// Runs `body` with panics caught, records its failure (or clears the last
/// error on success) and returns its status. `function` prefixes messages.
fn run(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> EmberStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            last_error::clear();
            EmberStatus::Ok
        }
        Ok(Err(failure)) => {
            last_error::set(&Failure::new(
                failure.status,
                format!("{function}: {}", failure.message),
            ));
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            last_error::set(&Failure::new(
                EmberStatus::Panic,
                format!("{function}: internal error: {what}"),
            ));
            EmberStatus::Panic
        }
    }
}

/// The bytes `len` elements of `T` occupy, if that fits in `isize`.
fn byte_len<T>(len: usize, name: &str) -> Result<usize, Failure> {
    len.checked_mul(size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| Failure::invalid(format!("`{name}`: {len} elements do not fit in memory")))
}

fn check_pointer<T>(ptr: *const T, name: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!(
            "`{name}` is not aligned for its type ({} bytes)",
            align_of::<T>()
        )));
    }
    Ok(())
}

/// `len` elements at `ptr`, checked for NULL, alignment and size.
///
/// # Safety
/// A non-NULL, aligned `ptr` must point to `len` initialised elements that
/// nothing writes to during the call.
unsafe fn slice_in<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], Failure> {
    check_pointer(ptr, name)?;
    byte_len::<T>(len, name)?;
    // SAFETY: non-NULL, aligned, size within isize (checked above); the
    // elements are the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// `len` writable elements at `ptr`, checked for NULL, alignment and size.
///
/// # Safety
/// A non-NULL, aligned `ptr` must point to `len` writable elements that
/// nothing else reads or writes during the call.
unsafe fn slice_out<'a, T>(ptr: *mut T, len: usize, name: &str) -> Result<&'a mut [T], Failure> {
    check_pointer(ptr, name)?;
    byte_len::<T>(len, name)?;
    // SAFETY: as `slice_in`, plus exclusive access (the caller's contract;
    // callers check overlap with inputs before calling this function).
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Fails when `a_len` elements at `a` and `b_len` elements at `b` overlap.
/// Checked on addresses, before any reference to either exists (a shared
/// and a mutable reference to the same bytes must never coexist).
fn disjoint<T, U>(
    a: *const T,
    a_len: usize,
    b: *const U,
    b_len: usize,
    names: &str,
) -> Result<(), Failure> {
    let (a0, b0) = (a as usize, b as usize);
    let a1 = a0.saturating_add(a_len.saturating_mul(size_of::<T>()));
    let b1 = b0.saturating_add(b_len.saturating_mul(size_of::<U>()));
    if a0 < b1 && b0 < a1 {
        return Err(Failure::invalid(format!("{names} overlap")));
    }
    Ok(())
}

/// `n × per` elements, with overflow checked.
fn count(n: usize, per: usize, name: &str) -> Result<usize, Failure> {
    if n == 0 {
        return Err(Failure::invalid(format!(
            "`{name}` is 0: at least one example is needed"
        )));
    }
    n.checked_mul(per)
        .ok_or_else(|| Failure::invalid(format!("`{name}` = {n} examples × {per} overflows")))
}

/// A UTF-8, non-empty path from a NUL-terminated string.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string.
unsafe fn path_in<'a>(ptr: *const c_char, name: &str) -> Result<&'a Path, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL; NUL termination is the caller's contract.
    let text = unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| Failure::invalid(format!("`{name}` is not UTF-8: {e}")))?;
    if text.is_empty() {
        return Err(Failure::invalid(format!("`{name}` is empty")));
    }
    Ok(Path::new(text))
}

/// Writes `value` to `out`.
///
/// # Safety
/// A non-NULL, aligned `out` must be writable.
unsafe fn write_out<T>(out: *mut T, value: T, name: &str) -> Result<(), Failure> {
    check_pointer(out, name)?;
    // SAFETY: non-NULL and aligned (checked); writability is the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes `value` to `out` unless `out` is NULL.
///
/// # Safety
/// As [`write_out`].
unsafe fn write_optional<T>(out: *mut T, value: T, name: &str) -> Result<(), Failure> {
    if out.is_null() {
        Ok(())
    } else {
        unsafe { write_out(out, value, name) }
    }
}

fn poisoned(what: &str) -> Failure {
    Failure::new(
        EmberStatus::Panic,
        format!("`{what}` was left unusable by an earlier internal error; free it"),
    )
}

/// The model behind `ptr`, for reading.
///
/// # Safety
/// A non-NULL `ptr` must come from `ember_mlp_new` and not be freed or
/// used mutably elsewhere during the call.
unsafe fn model_ref<'a>(ptr: *const EmberMlp) -> Result<&'a EmberMlp, Failure> {
    check_pointer(ptr, "model")?;
    // SAFETY: checked above; validity is the caller's contract.
    let model = unsafe { &*ptr };
    if model.poisoned {
        Err(poisoned("model"))
    } else {
        Ok(model)
    }
}

/// Runs `f` on the model behind `ptr`; a panic inside leaves it poisoned.
///
/// # Safety
/// A non-NULL `ptr` must come from `ember_mlp_new`, not be freed, and not
/// be used elsewhere during the call.
unsafe fn with_model<R>(
    ptr: *mut EmberMlp,
    f: impl FnOnce(&mut EmberMlp) -> Result<R, Failure>,
) -> Result<R, Failure> {
    check_pointer(ptr, "model")?;
    // SAFETY: checked above; validity and exclusivity are the caller's contract.
    let model = unsafe { &mut *ptr };
    if model.poisoned {
        return Err(poisoned("model"));
    }
    model.poisoned = true;
    let result = f(model);
    model.poisoned = false;
    result
}

/// Runs `f` on the trainer behind `ptr`; a panic inside leaves it poisoned.
///
/// # Safety
/// As [`with_model`], for a pointer from `ember_trainer_new`.
unsafe fn with_trainer<R>(
    ptr: *mut EmberTrainer,
    f: impl FnOnce(&mut EmberTrainer) -> Result<R, Failure>,
) -> Result<R, Failure> {
    check_pointer(ptr, "trainer")?;
    // SAFETY: checked above; validity and exclusivity are the caller's contract.
    let trainer = unsafe { &mut *ptr };
    if trainer.poisoned {
        return Err(poisoned("trainer"));
    }
    trainer.poisoned = true;
    let result = f(trainer);
    trainer.poisoned = false;
    result
}

/// The version of the library, e.g. `"0.1.0"` (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn ember_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The message of the last error on this thread, `""` if the last call
/// succeeded. The string belongs to the library and stays valid until this
/// thread's next call to a function returning `EmberStatus`; copy it to
/// keep it. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ember_last_error() -> *const c_char {
    catch_unwind(last_error::as_ptr).unwrap_or(c"".as_ptr())
}

/// The name of a status code, e.g. `"EMBER_STATUS_IO"`, or
/// `"EMBER_STATUS_UNKNOWN"` for a value that is none (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn ember_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match EmberStatus::from_code(status) {
        Some(EmberStatus::Ok) => c"EMBER_STATUS_OK",
        Some(EmberStatus::NullPointer) => c"EMBER_STATUS_NULL_POINTER",
        Some(EmberStatus::InvalidArgument) => c"EMBER_STATUS_INVALID_ARGUMENT",
        Some(EmberStatus::Io) => c"EMBER_STATUS_IO",
        Some(EmberStatus::Format) => c"EMBER_STATUS_FORMAT",
        Some(EmberStatus::Mismatch) => c"EMBER_STATUS_MISMATCH",
        Some(EmberStatus::Shape) => c"EMBER_STATUS_SHAPE",
        Some(EmberStatus::NonFinite) => c"EMBER_STATUS_NON_FINITE",
        Some(EmberStatus::Panic) => c"EMBER_STATUS_PANIC",
        None => c"EMBER_STATUS_UNKNOWN",
    };
    name.as_ptr()
}

/// Fills `*config_out` with the defaults: learning rate 5e-3, weight decay
/// 0.01, batch 32, 20 epochs, seed 0, clipping at 1.0, warm-up + cosine,
/// every parameter trains (the settings of `ember finetune --task digits`).
///
/// # Safety
/// `config_out` must be NULL or point to a writable `EmberTrainConfig`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_train_config_default(
    config_out: *mut EmberTrainConfig,
) -> EmberStatus {
    run("ember_train_config_default", || unsafe {
        write_out(config_out, EmberTrainConfig::default(), "config_out")
    })
}

/// Creates a network of the shape `*config` describes, with PyTorch's
/// default initialisation drawn from `config->seed`, and stores it in
/// `*model_out` (set to NULL on failure). Free it with `ember_mlp_free`.
///
/// # Safety
/// `config` must be NULL or point to an `EmberMlpConfig` whose `hidden`
/// points to `hidden_len` widths (or is NULL with `hidden_len` 0);
/// `model_out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_new(
    config: *const EmberMlpConfig,
    model_out: *mut *mut EmberMlp,
) -> EmberStatus {
    run("ember_mlp_new", || {
        unsafe { write_out(model_out, std::ptr::null_mut(), "model_out") }?;
        check_pointer(config, "config")?;
        // SAFETY: checked above; validity is the caller's contract.
        let c = unsafe { *config };
        let hidden: &[usize] = if c.hidden_len == 0 {
            &[]
        } else {
            unsafe { slice_in(c.hidden, c.hidden_len, "config->hidden") }?
        };
        let spec = MlpSpec::new(c.input, hidden, c.classes, c.dropout, c.seed)?;
        let model = Box::into_raw(Box::new(EmberMlp::new(&spec)));
        // SAFETY: `model_out` was checked and written above.
        unsafe { model_out.write(model) };
        Ok(())
    })
}

/// Frees a network. NULL is ignored. Free the trainers made for it too:
/// they cannot be used without it.
///
/// # Safety
/// `model` must be NULL or come from `ember_mlp_new` and not be freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_free(model: *mut EmberMlp) {
    if !model.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `ember_mlp_new`.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(model) })));
    }
}

/// Stores the number of input features and of outputs (classes) per
/// example in `*input_out` and `*classes_out` (either may be NULL).
///
/// # Safety
/// `model` must be NULL or a live model; the outputs NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_dims(
    model: *const EmberMlp,
    input_out: *mut usize,
    classes_out: *mut usize,
) -> EmberStatus {
    run("ember_mlp_dims", || {
        let model = unsafe { model_ref(model) }?;
        unsafe { write_optional(input_out, model.input_size(), "input_out") }?;
        unsafe { write_optional(classes_out, model.classes(), "classes_out") }
    })
}

/// Loads weights from a safetensors file, or from `model.safetensors` in a
/// directory, strictly: every parameter must be in the file with the right
/// shape and the file must hold nothing else. Names may be PyTorch's
/// `nn.Sequential` names (`0.weight`, as `ember_mlp_save` writes them) or
/// Ember's module paths (`layers.0.weight`, as `ember finetune` writes
/// them). On error the model is unchanged.
///
/// # Safety
/// `model` must be NULL or a live model; `path` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_load(model: *mut EmberMlp, path: *const c_char) -> EmberStatus {
    run("ember_mlp_load", || {
        let path = unsafe { path_in(path, "path") }?;
        unsafe { with_model(model, |m| m.load(path, true)) }.map(|_| ())
    })
}

/// Like `ember_mlp_load`, but the file may hold a subset of the parameters
/// (for example what `ember_mlp_save_trainable` wrote); parameters it does
/// not hold keep their values. Shapes must still match, and at least one
/// tensor must be a parameter of the model.
///
/// # Safety
/// As `ember_mlp_load`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_load_partial(
    model: *mut EmberMlp,
    path: *const c_char,
) -> EmberStatus {
    run("ember_mlp_load_partial", || {
        let path = unsafe { path_in(path, "path") }?;
        unsafe { with_model(model, |m| m.load(path, false)) }.map(|_| ())
    })
}

/// Writes every parameter to `path` as safetensors with PyTorch's
/// `nn.Sequential` names and layouts (a `torch.nn.Sequential` of the same
/// shape loads it with `load_state_dict`), atomically.
///
/// # Safety
/// `model` must be NULL or a live model; `path` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_save(
    model: *const EmberMlp,
    path: *const c_char,
) -> EmberStatus {
    run("ember_mlp_save", || {
        let path = unsafe { path_in(path, "path") }?;
        unsafe { model_ref(model) }?.save(path, false)
    })
}

/// Writes only the parameters that train (after `ember_trainer_new` with
/// `EMBER_TRAINABLE_HEAD`: the last layer; with
/// `EMBER_TRAINABLE_BIAS_AND_HEAD`: the biases and the last layer) — the
/// small file a fine-tune adds to a base model. `ember_mlp_load_partial`
/// applies it to the base model.
///
/// # Safety
/// As `ember_mlp_save`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_save_trainable(
    model: *const EmberMlp,
    path: *const c_char,
) -> EmberStatus {
    run("ember_mlp_save_trainable", || {
        let path = unsafe { path_in(path, "path") }?;
        unsafe { model_ref(model) }?.save(path, true)
    })
}

/// Computes the logits of `n` examples: `x` holds `n × input` floats
/// (row-major), `logits_out` receives `n × classes` floats and holds
/// `out_len ≥ n × classes`. Dropout is off. The buffers must not overlap.
///
/// # Safety
/// `model` must be NULL or a live model; `x` NULL or `n × input` readable
/// floats; `logits_out` NULL or `out_len` writable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_predict(
    model: *const EmberMlp,
    x: *const f32,
    n: usize,
    logits_out: *mut f32,
    out_len: usize,
) -> EmberStatus {
    run("ember_mlp_predict", || {
        let model = unsafe { model_ref(model) }?;
        let x_len = count(n, model.input_size(), "n")?;
        let needed = count(n, model.classes(), "n")?;
        let x = unsafe { slice_in(x, x_len, "x") }?;
        if out_len < needed {
            return Err(Failure::shape(format!(
                "out_len is {out_len}; {n} examples × {} classes need {needed}",
                model.classes()
            )));
        }
        check_pointer(logits_out, "logits_out")?;
        disjoint(
            x.as_ptr(),
            x_len,
            logits_out,
            out_len,
            "`x` and `logits_out`",
        )?;
        let out = unsafe { slice_out(logits_out, out_len, "logits_out") }?;
        model.predict(x, out)
    })
}

/// Stores in `*accuracy_out` the fraction (0 to 1) of the `n` examples in
/// `x` (`n × input` floats) whose largest logit is at their label
/// (`labels`: `n` values in `0..classes`).
///
/// # Safety
/// `model` must be NULL or a live model; `x`, `labels` NULL or readable for
/// their lengths; `accuracy_out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_mlp_accuracy(
    model: *const EmberMlp,
    x: *const f32,
    labels: *const i32,
    n: usize,
    accuracy_out: *mut f64,
) -> EmberStatus {
    run("ember_mlp_accuracy", || {
        check_pointer(accuracy_out, "accuracy_out")?;
        let model = unsafe { model_ref(model) }?;
        let x = unsafe { slice_in(x, count(n, model.input_size(), "n")?, "x") }?;
        let labels = unsafe { slice_in(labels, n, "labels") }?;
        let accuracy = model.accuracy(x, labels)?;
        unsafe { write_out(accuracy_out, accuracy, "accuracy_out") }
    })
}

/// Creates a trainer for `model` with the settings of `*config` (AdamW,
/// cross-entropy) and stores it in `*trainer_out` (NULL on failure). It
/// marks which parameters of `model` train (`config->trainable`); the
/// others stay frozen from then on. Free it with `ember_trainer_free`
/// before or after the model.
///
/// # Safety
/// `model` must be NULL or a live model; `config` NULL or readable;
/// `trainer_out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_trainer_new(
    model: *mut EmberMlp,
    config: *const EmberTrainConfig,
    trainer_out: *mut *mut EmberTrainer,
) -> EmberStatus {
    run("ember_trainer_new", || {
        unsafe { write_out(trainer_out, std::ptr::null_mut(), "trainer_out") }?;
        check_pointer(config, "config")?;
        // SAFETY: checked above; validity is the caller's contract.
        let spec = TrainSpec::from_c(unsafe { &*config })?;
        let trainer = unsafe { with_model(model, |m| Ok(EmberTrainer::new(m, spec))) }?;
        // SAFETY: `trainer_out` was checked and written above.
        unsafe { trainer_out.write(Box::into_raw(Box::new(trainer))) };
        Ok(())
    })
}

/// Frees a trainer. NULL is ignored.
///
/// # Safety
/// `trainer` must be NULL or come from `ember_trainer_new` and not be freed
/// yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_trainer_free(trainer: *mut EmberTrainer) {
    if !trainer.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `ember_trainer_new`.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(trainer) })));
    }
}

/// One AdamW step of `model` on a batch of `n` examples (`x`: `n × input`
/// floats, `labels`: `n` class indices) at the configured learning rate,
/// with the configured clipping and dropout. Stores the batch's mean
/// cross-entropy before the step in `*loss_out` (may be NULL). With a
/// non-finite loss or gradient no step is taken (`EMBER_STATUS_NON_FINITE`).
///
/// # Safety
/// `trainer` and `model` must be NULL or live handles, the model the one
/// the trainer was made for; `x`, `labels` NULL or readable for their
/// lengths; `loss_out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_train_step(
    trainer: *mut EmberTrainer,
    model: *mut EmberMlp,
    x: *const f32,
    labels: *const i32,
    n: usize,
    loss_out: *mut f32,
) -> EmberStatus {
    run("ember_train_step", || {
        if !loss_out.is_null() {
            check_pointer(loss_out, "loss_out")?;
        }
        let loss = unsafe {
            with_trainer(trainer, |t| {
                with_model(model, |m| {
                    let x = slice_in(x, count(n, m.input_size(), "n")?, "x")?;
                    let labels = slice_in(labels, n, "labels")?;
                    t.step(m, x, labels)
                })
            })
        }?;
        unsafe { write_optional(loss_out, loss, "loss_out") }
    })
}

/// Trains `model` for `config->epochs` epochs on `n` examples (`x`:
/// `n × input` floats, `labels`: `n` class indices) in shuffled batches of
/// `config->batch_size`, with the configured schedule (restarted at each
/// call; the optimizer state carries over), clipping and dropout. Steps
/// with a non-finite loss or gradient are skipped; repeated ones roll the
/// model back, and a run that keeps diverging fails with
/// `EMBER_STATUS_NON_FINITE` leaving model and trainer unchanged. Stores
/// what happened in `*report_out` (may be NULL).
///
/// # Safety
/// As `ember_train_step`; `report_out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fit(
    trainer: *mut EmberTrainer,
    model: *mut EmberMlp,
    x: *const f32,
    labels: *const i32,
    n: usize,
    report_out: *mut EmberFitReport,
) -> EmberStatus {
    run("ember_fit", || {
        if !report_out.is_null() {
            check_pointer(report_out, "report_out")?;
        }
        let report = unsafe {
            with_trainer(trainer, |t| {
                with_model(model, |m| {
                    let x = slice_in(x, count(n, m.input_size(), "n")?, "x")?;
                    let labels = slice_in(labels, n, "labels")?;
                    t.fit(m, x, labels)
                })
            })
        }?;
        unsafe { write_optional(report_out, report, "report_out") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_becomes_a_status_and_poisons_the_handle() {
        assert_eq!(run("f", || panic!("boom")), EmberStatus::Panic);
        assert_eq!(last_error::message(), "f: internal error: boom");
        let model = Box::into_raw(Box::new(EmberMlp::new(
            &MlpSpec::new(2, &[], 2, 0.0, 0).unwrap(),
        )));
        let status = run("g", || unsafe {
            with_model(model, |_| -> Result<(), Failure> { panic!("inside") })
        });
        assert_eq!(status, EmberStatus::Panic);
        let mut input = 0usize;
        assert_eq!(
            unsafe { ember_mlp_dims(model, &mut input, std::ptr::null_mut()) },
            EmberStatus::Panic
        );
        assert!(
            last_error::message().contains("unusable"),
            "{}",
            last_error::message()
        );
        unsafe { ember_mlp_free(model) };
    }
}
