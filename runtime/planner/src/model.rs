//! Planner input, part 1: the model description (a TOML file), read and checked.
//!
//! The planner never sees weights or kernels; a model is its sizes, its dtype, the
//! workload (batch × sequence) and, per layer, which `.attn` kernel computes attention.
//! The format is documented in the crate docs and in `runtime/planner/README.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Element type of weights, activations and the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// Shape of the MLP block. Gated (SwiGLU, as in Llama) has three matrices, plain has two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MlpKind {
    #[default]
    Gated,
    Plain,
}

impl MlpKind {
    /// Number of `hidden × mlp_hidden` weight matrices.
    pub fn matrices(self) -> u64 {
        match self {
            MlpKind::Gated => 3,
            MlpKind::Plain => 2,
        }
    }
}

/// One distinct attention kernel of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The path as written in the model file; this is what outputs print, so they do not
    /// depend on where the checkout lives.
    pub written: String,
    /// The path joined to the model file's folder; this is what the work source reads.
    pub resolved: PathBuf,
}

impl Kernel {
    /// The resolved path with `.` and `folder/..` folded away: where the kernel is from
    /// where the model path was given (`examples/gqa_causal.attn`, not the model file's
    /// `../../../examples/gqa_causal.attn`), for text a person reads.
    pub fn shown(&self) -> String {
        let mut parts: Vec<std::path::Component> = Vec::new();
        for c in self.resolved.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir
                    if matches!(parts.last(), Some(std::path::Component::Normal(_))) =>
                {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts.iter().collect::<PathBuf>().display().to_string()
    }
}

/// A checked model description.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub mlp_hidden: u64,
    pub mlp: MlpKind,
    pub dtype: Dtype,
    /// Sequences in one forward pass; micro-batches split this number.
    pub batch: u64,
    /// Tokens per sequence.
    pub seq: u64,
    /// Distinct attention kernels, in order of first use.
    pub kernels: Vec<Kernel>,
    /// For each layer, an index into `kernels`. Its length is the layer count.
    pub layer_kernel: Vec<usize>,
    /// Facts about the description worth a line in the plan, though not errors.
    pub notes: Vec<String>,
}

impl Model {
    pub fn layers(&self) -> usize {
        self.layer_kernel.len()
    }

    /// Query heads that share one K/V head; the planner never splits such a group.
    pub fn heads_per_kv_group(&self) -> u64 {
        self.heads / self.kv_heads
    }

    /// Reads and checks a model file. Kernel paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|error| ModelError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        Model::parse(&text, path)
    }

    /// Checks a model given as text; `path` names it in messages and anchors kernel paths.
    pub fn parse(text: &str, path: &Path) -> Result<Model, ModelError> {
        let raw: RawModel = toml::from_str(text).map_err(|error| ModelError::Parse {
            file: path.to_path_buf(),
            error: Box::new(error),
        })?;
        raw.check(path)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    layers: u64,
    hidden: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    mlp_hidden: u64,
    #[serde(default)]
    mlp: MlpKind,
    dtype: Dtype,
    batch: u64,
    seq: u64,
    attention: String,
    #[serde(default)]
    layer_attention: Vec<RawOverride>,
}

/// Layers `first..=last`, every `every`-th one, use another kernel (hybrid models).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    first: u64,
    last: u64,
    #[serde(default = "one")]
    every: u64,
    attention: String,
}

fn one() -> u64 {
    1
}

impl RawModel {
    fn check(self, path: &Path) -> Result<Model, ModelError> {
        let invalid = |field: &str, message: String| ModelError::Invalid {
            file: path.to_path_buf(),
            field: field.to_string(),
            message,
        };
        for (field, value) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("mlp_hidden", self.mlp_hidden),
            ("batch", self.batch),
            ("seq", self.seq),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        // The stage search keeps a Pareto front per layer boundary and looks stages up by
        // length; the deepest models have about 130 layers, and 100,000 plan in seconds.
        if self.layers > 100_000 {
            return Err(invalid(
                "layers",
                format!("{} is more than 100000", self.layers),
            ));
        }
        if self.kv_heads > self.heads || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(invalid(
                "kv_heads",
                format!(
                    "{} must divide heads ({}): every K/V head serves the same number of query heads",
                    self.kv_heads, self.heads
                ),
            ));
        }
        // The planner sizes the attention's projections from heads x head_dim and everything
        // else (residual stream, MLP, transfers) from hidden, and never assumes they agree:
        // Gemma 7B has hidden 3072 with 16 heads of 256. So a mismatch is planned as written,
        // and said, since in other files it is a typo.
        let mut notes = Vec::new();
        let attention_width = self.heads * self.head_dim;
        if attention_width != self.hidden {
            notes.push(format!(
                "hidden ({}) is not heads x head_dim ({} x {} = {attention_width}): the attention \
                 projections are planned {attention_width} wide, the residual stream and MLP \
                 {} wide (as in Gemma 7B); check the file if that is not meant",
                self.hidden, self.heads, self.head_dim, self.hidden
            ));
        }
        let base_dir = path.parent().unwrap_or(Path::new(""));
        let mut kernels: Vec<Kernel> = Vec::new();
        let mut intern = |written: &str| -> usize {
            if let Some(i) = kernels.iter().position(|k| k.written == written) {
                return i;
            }
            kernels.push(Kernel {
                written: written.to_string(),
                resolved: base_dir.join(written),
            });
            kernels.len() - 1
        };
        let base = intern(&self.attention);
        let mut layer_kernel = vec![base; self.layers as usize];
        for (i, o) in self.layer_attention.iter().enumerate() {
            let field = format!("layer_attention[{i}]");
            if o.first > o.last || o.last >= self.layers {
                return Err(invalid(
                    &field,
                    format!(
                        "layers {}..={} are not within 0..={}",
                        o.first,
                        o.last,
                        self.layers - 1
                    ),
                ));
            }
            if o.every == 0 {
                return Err(invalid(&(field + ".every"), "must be at least 1".into()));
            }
            let k = intern(&o.attention);
            // Later entries win, so a file can state a rule and then its exceptions.
            for layer in (o.first..=o.last).step_by(o.every as usize) {
                layer_kernel[layer as usize] = k;
            }
        }
        // A kernel overridden everywhere would still be listed; drop unused ones so that
        // outputs only name kernels that run.
        let used: Vec<usize> = (0..kernels.len())
            .filter(|k| layer_kernel.contains(k))
            .collect();
        let layer_kernel = layer_kernel
            .iter()
            .map(|k| used.iter().position(|u| u == k).unwrap_or(0))
            .collect();
        let kernels = used.iter().map(|&k| kernels[k].clone()).collect();
        Ok(Model {
            name: self.name,
            source: path.to_path_buf(),
            hidden: self.hidden,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            mlp_hidden: self.mlp_hidden,
            mlp: self.mlp,
            dtype: self.dtype,
            batch: self.batch,
            seq: self.seq,
            kernels,
            layer_kernel,
            notes,
        })
    }
}

/// Why a model file was refused.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read model file {}: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("model file {} is not valid: {error}", file.display())]
    Parse {
        file: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("model file {}, field `{field}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        name = "tiny"
        layers = 6
        hidden = 64
        heads = 4
        kv_heads = 2
        head_dim = 16
        mlp_hidden = 128
        dtype = "bf16"
        batch = 2
        seq = 32
        attention = "full.attn"
    "#;

    #[test]
    fn hidden_unlike_heads_times_head_dim_is_a_note_naming_both() {
        let m = Model::parse(BASE, Path::new("tiny.toml")).unwrap();
        assert!(m.notes.is_empty(), "{:?}", m.notes);
        // Gemma 7B's shape: 16 heads of 256 over a 3072-wide residual stream.
        let gemma = BASE
            .replace("hidden = 64", "hidden = 3072")
            .replace("heads = 4", "heads = 16")
            .replace("head_dim = 16", "head_dim = 256");
        let m = Model::parse(&gemma, Path::new("gemma.toml")).unwrap();
        assert_eq!(m.notes.len(), 1);
        assert!(
            m.notes[0].contains("3072") && m.notes[0].contains("16 x 256 = 4096"),
            "{}",
            m.notes[0]
        );
    }

    #[test]
    fn overrides_make_a_hybrid_model() {
        let text = format!(
            "{BASE}\n[[layer_attention]]\nfirst = 0\nlast = 5\nevery = 2\nattention = \"window.attn\"\n"
        );
        let m = Model::parse(&text, Path::new("models/tiny.toml")).unwrap();
        assert_eq!(m.layer_kernel, vec![1, 0, 1, 0, 1, 0]);
        assert_eq!(m.kernels[1].written, "window.attn");
        assert_eq!(m.kernels[1].resolved, Path::new("models/window.attn"));
        assert_eq!(m.kernels[1].shown(), "models/window.attn");
    }

    #[test]
    fn unused_kernels_are_dropped() {
        let text = format!(
            "{BASE}\n[[layer_attention]]\nfirst = 0\nlast = 5\nattention = \"window.attn\"\n"
        );
        let m = Model::parse(&text, Path::new("m.toml")).unwrap();
        assert_eq!(m.kernels.len(), 1);
        assert_eq!(m.layer_kernel, vec![0; 6]);
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let text = BASE.replace("kv_heads = 2", "kv_heads = 3");
        let e = Model::parse(&text, Path::new("m.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "model file m.toml, field `kv_heads`: 3 must divide heads (4): every K/V head serves the same number of query heads"
        );
        let text = format!("{BASE}\n[[layer_attention]]\nfirst = 2\nlast = 9\nattention = \"w\"\n");
        let e = Model::parse(&text, Path::new("m.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "model file m.toml, field `layer_attention[0]`: layers 2..=9 are not within 0..=5"
        );
        let e = Model::parse(&BASE.replace("seq", "sequence"), Path::new("m.toml")).unwrap_err();
        assert!(
            e.to_string().starts_with("model file m.toml is not valid:"),
            "{e}"
        );
    }

    #[test]
    fn shown_paths_fold_parent_folders_but_keep_leading_ones() {
        let shown = |model: &str, written: &str| {
            Kernel {
                written: written.to_string(),
                resolved: Path::new(model)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(written),
            }
            .shown()
        };
        assert_eq!(
            shown(
                "runtime/planner/models/m.toml",
                "../../../examples/gqa_causal.attn"
            ),
            "examples/gqa_causal.attn"
        );
        assert_eq!(shown("m.toml", "../k.attn"), "../k.attn");
        assert_eq!(shown("a/m.toml", "./k.attn"), "a/k.attn");
    }
}
