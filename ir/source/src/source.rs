//! Source files and byte spans: every AST node, IR node and diagnostic points back into these.

/// Which loaded file a span belongs to (the user's program, or the built-in prelude).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(usize);

impl FileId {
    /// The file's position among the files of its [`Sources`] (renderers key files by it).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A half-open byte range `[start, end)` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        // Files are read from disk and capped far below 4 GiB by `Sources::add`.
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both (they must be in the same file).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The largest source file accepted; spans are stored as `u32`.
pub const MAX_SOURCE_BYTES: usize = 64 << 20;

/// All source files of one compilation, owned in one place so diagnostics can quote them.
#[derive(Default)]
pub struct Sources {
    /// (name, text) of every file, in the order added.
    files: Vec<(String, String)>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a file; text longer than [`MAX_SOURCE_BYTES`] is refused by the parser, not here.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push((name.into(), text.into()));
        FileId(self.files.len() - 1)
    }

    pub fn text(&self, file: FileId) -> &str {
        self.files.get(file.0).map_or("", |(_, text)| text.as_str())
    }

    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file.0)
            .map_or("<unknown>", |(name, _)| name.as_str())
    }

    /// 1-based line and column of a byte offset, for compact dumps.
    pub fn line_col(&self, file: FileId, offset: u32) -> (usize, usize) {
        let text = self.text(file);
        let offset = (offset as usize).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Every file as (id, name, text), in the order added.
    pub fn files(&self) -> impl Iterator<Item = (FileId, &str, &str)> {
        self.files
            .iter()
            .enumerate()
            .map(|(k, (name, text))| (FileId(k), name.as_str(), text.as_str()))
    }

    /// `file:line:col` of a span's start, for messages that cannot quote the source.
    pub fn location(&self, span: Span) -> String {
        let (line, col) = self.line_col(span.file, span.start);
        format!("{}:{line}:{col}", self.name(span.file))
    }
}
