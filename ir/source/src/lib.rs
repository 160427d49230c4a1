//! The bottom of the compiler: source files, byte spans into them, and the one diagnostic data
//! type. Every stage (parser, graph builder, passes, back ends, binding shapes) reports through
//! [`Diagnostic`] with spans, so an error found late still points into the `.attn` source. This
//! crate only holds the data; rendering (`file:line:col` with a caret) is the front end's job.

mod diagnostic;
mod source;
pub mod suggest;
pub mod wording;

pub use diagnostic::{Diagnostic, Label, Level};
pub use source::{FileId, MAX_SOURCE_BYTES, Sources, Span};
