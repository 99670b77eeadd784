//! The data of `ember finetune`'s tasks: where each split comes from (the
//! intent data compiled into the binary, or a file), its parsing with errors
//! that name the file and line, the checks before training, and the
//! [`Dataset`]s the trainer draws batches from.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_models::sentence::SentenceEncoder;
use ember_runtime::Error;
use ember_runtime::data::{DataCheck, DataReport};
use ember_runtime::train::Dataset;

/// Where a split's examples come from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// Data compiled into the binary, named by its path in the repository.
    Builtin {
        /// Its path in the repository.
        name: &'static str,
        /// Its contents.
        text: &'static str,
    },
    /// A file given by `--train`/`--test` or the TOML file.
    File(PathBuf),
}

impl Source {
    fn read(&self) -> Result<std::borrow::Cow<'static, str>, String> {
        match self {
            Source::Builtin { text, .. } => Ok((*text).into()),
            Source::File(path) => std::fs::read_to_string(path).map(Into::into).map_err(|e| {
                let hint = if path.starts_with("data/digits") && e.kind() == std::io::ErrorKind::NotFound {
                    " (the digits data is in the repository's data/digits/: run from its root, or pass --train and --test)"
                } else {
                    ""
                };
                format!("{}: {e}{hint}", path.display())
            }),
        }
    }

    fn is_csv(&self) -> bool {
        match self {
            Source::Builtin { name, .. } => name.ends_with(".csv"),
            Source::File(path) => path.extension().is_some_and(|e| e == "csv"),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin { name, .. } => write!(f, "{name} (built in)"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Labelled text.
pub(super) struct Example {
    pub(super) text: String,
    pub(super) label: usize,
}

pub(super) fn read_text_dataset(
    source: &Source,
    labels: &mut Vec<String>,
    grow: bool,
) -> Result<Vec<Example>, String> {
    let text = source.read()?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |m: String| format!("{source}:{}: {m}", i + 1);
        let (text, label) = if source.is_csv() {
            if i == 0 && line.trim() == "text,label" {
                continue;
            }
            let (t, l) = line
                .rsplit_once(',')
                .ok_or_else(|| at("expected `text,label`".into()))?;
            (t.trim_matches('"').to_string(), l.trim().to_string())
        } else {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let t = v["text"]
                .as_str()
                .ok_or_else(|| at("no string field `text`".into()))?;
            let l = match &v["label"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(at("no field `label`".into())),
            };
            (t.to_string(), l)
        };
        let label = match labels.iter().position(|l| *l == label) {
            Some(i) => i,
            None if grow => {
                labels.push(label);
                labels.len() - 1
            }
            None => {
                return Err(at(format!(
                    "label `{label}` does not occur in the training set"
                )));
            }
        };
        out.push(Example { text, label });
    }
    if out.is_empty() {
        return Err(format!("{source}: no examples"));
    }
    Ok(out)
}

pub(super) fn check_text(
    source: &Source,
    data: &[Example],
    classes: usize,
) -> Result<DataReport, String> {
    let mut check = DataCheck::new(classes);
    for (i, e) in data.iter().enumerate() {
        check.input_len(i, e.text.trim().len());
        check.label(i, e.label as i64);
    }
    check
        .finish()
        .into_result()
        .map_err(|e| format!("{source}: {e}"))
}

/// Tokenized on demand, batch by batch.
pub(super) struct TextData<'a> {
    pub(super) examples: &'a [Example],
    pub(super) encoder: &'a SentenceEncoder,
}

impl Dataset for TextData<'_> {
    type Batch = (Tensor<2, Int>, Tensor<2>, Tensor<1, Int>);
    fn len(&self) -> usize {
        self.examples.len()
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
        let texts: Vec<&str> = indices
            .iter()
            .map(|&i| self.examples[i].text.as_str())
            .collect();
        let (ids, mask) = self.encoder.tokenize(&texts).map_err(|e| Error::Data {
            problems: vec![e.to_string()],
        })?;
        let targets: Vec<i64> = indices
            .iter()
            .map(|&i| self.examples[i].label as i64)
            .collect();
        let targets = Tensor::from_data(TensorData::new(targets, [indices.len()]), device);
        Ok((ids.to_device(device), mask.to_device(device), targets))
    }
}

/// Digits in memory: 64 pixels scaled to [0, 1], labels 0–9.
pub(super) struct Digits {
    x: Vec<f32>,
    y: Vec<i64>,
}

pub(super) fn read_digits(source: &Source) -> Result<(Digits, DataReport), String> {
    let text = source.read()?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut check = DataCheck::new(10);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if i == 0 && line.starts_with("p0") {
            continue;
        }
        let at = |m: String| format!("{source}:{}: {m}", i + 1);
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != 65 {
            return Err(at(format!(
                "expected 64 pixels and a label, found {} fields",
                values.len()
            )));
        }
        let row: Vec<f32> = values[..64]
            .iter()
            .map(|v| v.trim().parse::<f32>().map(|p| p / 16.0))
            .collect::<Result<_, _>>()
            .map_err(|e| at(e.to_string()))?;
        let label: i64 = values[64]
            .trim()
            .parse()
            .map_err(|e| at(format!("label: {e}")))?;
        check.features(y.len(), &row);
        check.label(y.len(), label);
        x.extend(row);
        y.push(label);
    }
    let report = check
        .finish()
        .into_result()
        .map_err(|e| format!("{source}: {e}"))?;
    Ok((Digits { x, y }, report))
}

impl Dataset for Digits {
    type Batch = (Tensor<2>, Tensor<1, Int>);
    fn len(&self) -> usize {
        self.y.len()
    }
    fn batch(&self, indices: &[usize], device: &Device) -> Result<Self::Batch, Error> {
        let mut x = Vec::with_capacity(indices.len() * 64);
        for &i in indices {
            x.extend_from_slice(&self.x[i * 64..(i + 1) * 64]);
        }
        let y: Vec<i64> = indices.iter().map(|&i| self.y[i]).collect();
        Ok((
            Tensor::from_data(TensorData::new(x, [indices.len(), 64]), device),
            Tensor::from_data(TensorData::new(y, [indices.len()]), device),
        ))
    }
}
