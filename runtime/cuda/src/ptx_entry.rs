//! Reading a PTX entry's parameter list, to check it against the launch signature before the
//! driver sees the code.
//!
//! The driver takes kernel arguments as an array of untyped pointers and copies as many bytes
//! from each as the entry's parameter declares: an argument list that disagrees with the PTX is
//! not an error there but garbage in the kernel. So the loader compares the signature with the
//! `.entry` declaration (count, and size and kind of each parameter) and refuses a mismatch,
//! naming the parameter. Parsing is on the text alone, so it is tested without a GPU.

use attnc_kernel_abi::{KernelSignature, Param};

/// The PTX text of a code section: UTF-8 with no NUL inside (the driver reads a C string, so a
/// NUL would cut the code short); NULs at the end, which a C-minded writer may add, are dropped.
pub fn ptx_text(code: &[u8]) -> Result<&str, String> {
    let end = code.iter().rposition(|&b| b != 0).map_or(0, |k| k + 1);
    let code = &code[..end];
    if let Some(at) = code.iter().position(|&b| b == 0) {
        return Err(format!("the PTX holds a NUL byte at offset {at}"));
    }
    let text = std::str::from_utf8(code)
        .map_err(|e| format!("the PTX is not text: byte {} is not UTF-8", e.valid_up_to()))?;
    if text.trim().is_empty() {
        return Err("the PTX is empty".into());
    }
    Ok(text)
}

/// One `.param` of an entry: its name, size in bytes and whether it is a float.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtxParam {
    pub name: String,
    pub bytes: u32,
    pub float: bool,
}

/// The parameters of entry `name` in `ptx`, in order.
pub fn entry_params(ptx: &str, name: &str) -> Result<Vec<PtxParam>, String> {
    let text = strip_comments(ptx);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(".entry") {
        let after = &rest[at + ".entry".len()..];
        rest = after;
        if !after.starts_with(|c: char| c.is_whitespace()) {
            continue;
        }
        let after = after.trim_start();
        let end = after
            .find(|c: char| !is_ident_char(c))
            .unwrap_or(after.len());
        let entry = &after[..end];
        found.push(entry.to_string());
        if entry != name {
            continue;
        }
        let after = after[end..].trim_start();
        let Some(list) = after.strip_prefix('(') else {
            // `.entry k {`: no parameters.
            return Ok(Vec::new());
        };
        let close = list
            .find(')')
            .ok_or_else(|| format!("the parameter list of entry `{name}` is not closed"))?;
        return list[..close]
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| param(p).ok_or_else(|| format!("cannot read parameter `{p}` of `{name}`")))
            .collect();
    }
    Err(if found.is_empty() {
        format!("the PTX has no entry `{name}` (it declares no .entry at all)")
    } else {
        format!(
            "the PTX has no entry `{name}`; its entries are {}",
            found.join(", ")
        )
    })
}

/// Checks that the signature's parameters are those of the entry: a buffer or an `Int` is an
/// 8-byte integer (a 64-bit pointer, an i64), an `F32` a 4-byte value.
pub fn check_entry(ptx: &str, signature: &KernelSignature) -> Result<(), String> {
    let params = entry_params(ptx, &signature.name)?;
    if params.len() != signature.params.len() {
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "the signature has {} parameters, the PTX entry {} ({})",
            signature.params.len(),
            params.len(),
            names.join(", ")
        ));
    }
    for (k, (want, got)) in signature.params.iter().zip(&params).enumerate() {
        let ok = match want {
            Param::Buffer { .. } | Param::Int { .. } => got.bytes == 8 && !got.float,
            Param::F32 { .. } => got.bytes == 4,
        };
        if !ok {
            return Err(format!(
                "parameter {k} (`{}`, {}) is declared in the PTX as `{}`, {} bytes{}",
                want.name(),
                want.describe(),
                got.name,
                got.bytes,
                if got.float { ", float" } else { "" }
            ));
        }
    }
    Ok(())
}

/// `.param .u64 .ptr .global .align 1 x`, `.param .f32 s`, `.param .align 8 .b8 t[16]`.
fn param(text: &str) -> Option<PtxParam> {
    let mut tokens = text.split_whitespace().peekable();
    if tokens.next()? != ".param" {
        return None;
    }
    let mut element: Option<(u32, bool)> = None;
    let mut name = None;
    while let Some(token) = tokens.next() {
        if token == ".align" {
            tokens.next()?;
        } else if let Some(t) = token.strip_prefix('.') {
            if let Some(e) = scalar_type(t) {
                element = Some(e);
            }
            // `.ptr`, `.global`, `.const`, … qualify a pointer and change nothing here.
        } else {
            name = Some(token);
        }
    }
    let (size, float) = element?;
    let name = name?;
    let (name, count) = match name.split_once('[') {
        Some((n, count)) => (n, count.strip_suffix(']')?.trim().parse::<u32>().ok()?),
        None => (name, 1),
    };
    Some(PtxParam {
        name: name.to_string(),
        bytes: size.checked_mul(count)?,
        float: float && count == 1,
    })
}

/// Size in bytes and whether it is a float, for a PTX scalar type name without its dot.
fn scalar_type(t: &str) -> Option<(u32, bool)> {
    let (Some(kind), Some(bits)) = (t.get(..1), t.get(1..)) else {
        return None;
    };
    let bytes = match bits {
        "8" => 1,
        "16" => 2,
        "32" => 4,
        "64" => 8,
        _ => return None,
    };
    match kind {
        "u" | "s" | "b" => Some((bytes, false)),
        "f" if bytes >= 2 => Some((bytes, true)),
        _ => None,
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '%')
}

/// The text with `//` and `/* */` comments replaced by a space; quoted strings (the paths of
/// `.file` directives) are kept whole, so a `//` inside one is not taken for a comment.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '"' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for d in chars.by_ref() {
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use attnc_kernel_abi::{Access, ElementType};

    /// The shape LLVM's NVPTX back end writes, with comments and a `.file` path.
    const PTX: &str = r#"
//
// Generated by LLVM NVPTX Back-End
//
.version 8.0
.target sm_90a
.address_size 64
.file 1 "/tmp//kernel.attn"

	// .globl	attnc_scale  // .entry attnc_fake (
.visible .entry attnc_scale(
	.param .u64 .ptr .global .align 4 attnc_scale_param_0,
	.param .u64 attnc_scale_param_1,
	.param .f32 attnc_scale_param_2 /* a scale */
)
{
	ret;
}
.visible .entry attnc_other()
{
	ret;
}
.entry attnc_struct(.param .align 8 .b8 s[16], .param .b32 t)
{
	ret;
}
"#;

    fn signature(name: &str, params: Vec<Param>) -> KernelSignature {
        KernelSignature {
            name: name.into(),
            params,
        }
    }

    fn buffer(name: &str) -> Param {
        Param::Buffer {
            name: name.into(),
            element: ElementType::F32,
            access: Access::Read,
            extent: vec![],
        }
    }

    #[test]
    fn reads_entries_as_llvm_writes_them() {
        let p = entry_params(PTX, "attnc_scale").unwrap();
        let summary: Vec<(u32, bool)> = p.iter().map(|p| (p.bytes, p.float)).collect();
        assert_eq!(summary, [(8, false), (8, false), (4, true)]);
        assert_eq!(p[0].name, "attnc_scale_param_0");
        assert_eq!(entry_params(PTX, "attnc_other").unwrap(), []);
        let s = entry_params(PTX, "attnc_struct").unwrap();
        assert_eq!((s[0].bytes, s[1].bytes), (16, 4));
    }

    #[test]
    fn missing_entries_name_those_there() {
        let err = entry_params(PTX, "attnc_scal").unwrap_err();
        assert_eq!(
            err,
            "the PTX has no entry `attnc_scal`; its entries are attnc_scale, attnc_other, attnc_struct"
        );
        assert!(
            entry_params(PTX, "attnc_fake").is_err(),
            "comments are skipped"
        );
        let err = entry_params(".version 8.0", "k").unwrap_err();
        assert!(err.contains("no .entry at all"), "{err}");
    }

    #[test]
    fn signatures_are_checked_parameter_by_parameter() {
        let good = signature(
            "attnc_scale",
            vec![
                buffer("x"),
                Param::Int { name: "n".into() },
                Param::F32 { name: "s".into() },
            ],
        );
        check_entry(PTX, &good).unwrap();
        let short = signature("attnc_scale", vec![buffer("x"), buffer("y")]);
        assert_eq!(
            check_entry(PTX, &short).unwrap_err(),
            "the signature has 2 parameters, the PTX entry 3 (attnc_scale_param_0, attnc_scale_param_1, attnc_scale_param_2)"
        );
        let swapped = signature(
            "attnc_scale",
            vec![
                buffer("x"),
                Param::F32 { name: "s".into() },
                Param::Int { name: "n".into() },
            ],
        );
        let err = check_entry(PTX, &swapped).unwrap_err();
        assert!(
            err.starts_with(
                "parameter 1 (`s`, an f32) is declared in the PTX as `attnc_scale_param_1`, 8 bytes"
            ),
            "{err}"
        );
    }

    #[test]
    fn code_sections_must_be_text_without_nul() {
        assert_eq!(ptx_text(b".version 8.0\n\0\0"), Ok(".version 8.0\n"));
        assert_eq!(
            ptx_text(b".ver\0sion"),
            Err("the PTX holds a NUL byte at offset 4".into())
        );
        assert_eq!(
            ptx_text(b".ver\xffsion"),
            Err("the PTX is not text: byte 4 is not UTF-8".into())
        );
        assert_eq!(ptx_text(b"\0"), Err("the PTX is empty".into()));
    }

    #[test]
    fn odd_text_gives_errors_not_panics() {
        for text in [
            ".entry",
            ".entry k(",
            ".entry k(.param)",
            ".entry k(.param .u64 x[)",
            ".entry k(.param .align)",
            "/* unclosed",
            "\"unclosed",
            ".entry k(.param .u64 x[99999999999])",
            ".entry k(.param . x)",
            ".entry k(.param .é x)",
        ] {
            let _ = entry_params(text, "k");
        }
        assert!(entry_params(".entry k(.param .q64 x)", "k").is_err());
    }
}
