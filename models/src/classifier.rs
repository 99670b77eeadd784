//! A sentence classifier: a BERT encoder, mean pooling and a linear head
//! (`head`), the model `ember finetune` trains (with LoRA on the encoder).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

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
        Self { encoder, head: LinearConfig::new(hidden, num_classes).init(device) }
    }

    /// Logits `[B, classes]` of token ids and attention mask `[B, L]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2>) -> Tensor<2> {
        let hidden = self.encoder.forward(input_ids, attention_mask.clone());
        self.head.forward(mean_pool(hidden, attention_mask))
    }
}
