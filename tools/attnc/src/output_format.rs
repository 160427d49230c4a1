//! `--format text|json`, the same flag on `run`, `bench` and `plan`: text for people, one JSON
//! document on stdout for programs (schemas in docs/output-formats.md).

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout, for programs.
    Json,
}

/// Dim values as a JSON object (`{"B": 2, "S": 128}`), as every command reports them.
pub fn dims_json(bindings: &attnc_ir::Bindings) -> serde_json::Value {
    serde_json::Value::Object(
        bindings
            .dims
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
            .collect(),
    )
}
