//! Walking a module's float parameters by path.
//!
//! Paths are the field names Burn's `#[derive(Module)]` produces, joined by
//! `.` (`encoder.layer.0.attention.self.query.weight`): the same keys Burn's
//! records and `burn-store` use, and for Ember's models the same keys PyTorch's
//! `state_dict()` uses.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// One float parameter of a module.
#[derive(Debug, Clone)]
pub struct ParamEntry {
    /// Dotted path of the parameter inside the module.
    pub path: String,
    /// Burn's identifier of the parameter (the key of its gradient).
    pub id: ParamId,
    /// Shape of the parameter.
    pub shape: Vec<usize>,
    /// Value, flattened to one dimension and detached from any graph.
    pub value: Tensor<1>,
    /// Gradient, flattened, when one was found.
    pub grad: Option<Tensor<1>>,
}

impl ParamEntry {
    /// Number of scalars in the parameter.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Path-tracking visitor shared by the walkers of this crate: the names
/// entered so far and, for each, the type of the module that holds it
/// (Burn's `container_type`: `Struct:Linear`, `Vec`, …).
#[derive(Default)]
pub(crate) struct PathTracker {
    stack: Vec<(String, String)>,
}

impl PathTracker {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }
    pub(crate) fn exit(&mut self) {
        self.stack.pop();
    }
    pub(crate) fn path(&self) -> String {
        let names: Vec<&str> = self.stack.iter().map(|(n, _)| n.as_str()).collect();
        names.join(".")
    }
    /// Whether a module of `container_type` holds the current position.
    pub(crate) fn within(&self, container_type: &str) -> bool {
        self.stack.iter().any(|(_, c)| c == container_type)
    }
}

struct Collect<'a> {
    tracker: PathTracker,
    grads: Option<&'a GradientsParams>,
    out: Vec<ParamEntry>,
}

fn flat<const D: usize>(tensor: Tensor<D>) -> Tensor<1> {
    let numel = tensor.shape().num_elements();
    tensor.reshape([numel])
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach();
        let shape = value.shape().dims::<D>().to_vec();
        let grad = self.grads.and_then(|g| g.get::<D>(param.id)).map(flat);
        self.out.push(ParamEntry {
            path: self.tracker.path(),
            id: param.id,
            shape,
            value: flat(value),
            grad,
        });
    }
}

/// Every float parameter of `module`, in declaration order, with its gradient
/// from `grads` when given.
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::Device;
/// use ember_runtime::params::parameters;
///
/// let linear = LinearConfig::new(3, 2).init(&ember_runtime::device::cpu());
/// let paths: Vec<_> = parameters(&linear, None).into_iter().map(|p| p.path).collect();
/// assert_eq!(paths, ["weight", "bias"]);
/// ```
pub fn parameters<M: Module>(module: &M, grads: Option<&GradientsParams>) -> Vec<ParamEntry> {
    let mut visitor = Collect {
        tracker: PathTracker::default(),
        grads,
        out: Vec::new(),
    };
    module.visit(&mut visitor);
    visitor.out
}

/// Multiplies every gradient of `module` found in `grads` by `factor`, in place.
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, grad.mul_scalar(self.factor));
            }
        }
    }
    module.visit(&mut Scale { grads, factor });
}

/// `module` with every lazily initialised parameter given its value now.
///
/// Burn draws a parameter's initial value on first use, from the device RNG
/// as it is at that moment. A run that seeds the RNG per step, or restores
/// only some parameters from a checkpoint, must fix the others first, or they
/// would be drawn at a different point of the random stream in a resumed run.
/// Float parameters keep their id and `require_grad`.
pub fn materialize<M: Module>(module: M) -> M {
    struct Materialize;
    impl burn::module::ModuleMapper for Materialize {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.is_initialized() {
                param
            } else {
                param.map(|t| t)
            }
        }
    }
    module.map(&mut Materialize)
}

/// Whether every element of `tensor` is finite (one read-back).
pub fn tensor_is_finite(tensor: Tensor<1>) -> bool {
    // x - x is 0 for finite x and NaN for ±inf and NaN; the sum is then NaN.
    tensor.clone().sub(tensor).sum().into_scalar::<f32>() == 0.0
}

/// The first parameter of `model` whose gradient in `grads` is not finite.
pub fn first_non_finite_grad<M: Module>(model: &M, grads: &GradientsParams) -> Option<String> {
    parameters(model, Some(grads))
        .into_iter()
        .find(|e| {
            e.grad
                .as_ref()
                .is_some_and(|g| !tensor_is_finite(g.clone()))
        })
        .map(|e| e.path)
}
