//! A sentence classifier: a BERT encoder, mean pooling and a linear head
//! (`head`), the model `ember finetune` trains (with LoRA on the encoder).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use ember_runtime::recompute::Segmented;
use ember_runtime::train::Output;

use crate::bert::{BertModel, mean_pool};

/// Encoder + mean pooling + linear classification head.
#[derive(Module, Debug)]
pub struct SentenceClassifier {
    /// The (usually LoRA-adapted) encoder.
    pub encoder: BertModel,
    /// `hidden → classes`.
    pub head: Linear,
}

impl SentenceClassifier {
    /// A classifier with a fresh head of `num_classes` outputs.
    pub fn new(encoder: BertModel, num_classes: usize, device: &Device) -> Self {
        let [_, hidden] = encoder.embeddings.word_embeddings.weight.dims();
        Self {
            encoder,
            head: LinearConfig::new(hidden, num_classes).init(device),
        }
    }

    /// Logits `[B, classes]` of token ids and attention mask `[B, L]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<2> {
        let hidden = self.encoder.forward(input_ids, attention_mask.clone());
        ember_runtime::precision::linear(&self.head, mean_pool(hidden, attention_mask))
    }
}

/// Token ids `[batch, len]`, attention mask `[batch, len]` and class labels
/// `[batch]`.
pub type ClassifierBatch = (Tensor<2, Int>, Tensor<2>, Tensor<1, Int>);

/// Stem: the embeddings; blocks: the encoder layers; head: mean pooling, the
/// linear head and cross-entropy. For [`ember_runtime::recompute`].
impl Segmented<3> for SentenceClassifier {
    type Batch = ClassifierBatch;
    /// The attention bias and the mask.
    type Context = (Tensor<4>, Tensor<2>);
    fn num_blocks(&self) -> usize {
        self.encoder.encoder.layer.len()
    }
    fn stem(&self, (ids, mask, _): &ClassifierBatch) -> (Tensor<3>, Self::Context) {
        (
            self.encoder.embed(ids.clone()),
            (BertModel::mask_bias(mask.clone()), mask.clone()),
        )
    }
    fn block(&self, index: usize, x: Tensor<3>, (bias, _): &Self::Context) -> Tensor<3> {
        self.encoder.encoder.layer[index].forward(x, bias.clone())
    }
    fn head(
        &self,
        x: Tensor<3>,
        (_, _, labels): &ClassifierBatch,
        (_, mask): &Self::Context,
    ) -> Output {
        let logits = ember_runtime::precision::linear(&self.head, mean_pool(x, mask.clone()));
        Output::classification(logits, labels.clone())
    }
}
