//! The device profiles and models that ship with the planner, compiled in so that the
//! runtime library and its tests have them wherever they run.
//!
//! Names are the files' paths from the workspace root, which is also what model kernel
//! paths are resolved against: run from the root, a work source finds
//! `examples/gqa_causal.attn`.

use std::path::Path;

use crate::devices::{Profile, ProfileError};
use crate::model::{Model, ModelError};

/// (path from the workspace root, contents) of each shipped device profile.
pub const PROFILES: [(&str, &str); 3] = [
    (
        "runtime/planner/profiles/phones.toml",
        include_str!("../profiles/phones.toml"),
    ),
    (
        "runtime/planner/profiles/workstation.toml",
        include_str!("../profiles/workstation.toml"),
    ),
    (
        "runtime/planner/profiles/h100_server.toml",
        include_str!("../profiles/h100_server.toml"),
    ),
];

/// (path from the workspace root, contents) of each shipped model.
pub const MODELS: [(&str, &str); 2] = [
    (
        "runtime/planner/models/llama_1b.toml",
        include_str!("../models/llama_1b.toml"),
    ),
    (
        "runtime/planner/models/llama_7b.toml",
        include_str!("../models/llama_7b.toml"),
    ),
];

pub fn profiles() -> Result<Vec<Profile>, ProfileError> {
    PROFILES
        .iter()
        .map(|(path, text)| Profile::parse(text, Path::new(path)))
        .collect()
}

pub fn models() -> Result<Vec<Model>, ModelError> {
    MODELS
        .iter()
        .map(|(path, text)| Model::parse(text, Path::new(path)))
        .collect()
}
