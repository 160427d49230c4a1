//! Reading back what a SPIR-V module declares about one compute entry point: that it exists,
//! its workgroup size, and the descriptor bindings it uses. The runtime checks these against the
//! manifest at load time, so a manifest that drifts from its shader fails with a message instead
//! of running with the wrong geometry. A small reader of the binary format, not a SPIR-V library:
//! it looks at a handful of instructions and skips the rest by their word counts.

use std::collections::BTreeMap;

const MAGIC: u32 = 0x0723_0203;
const HEADER_WORDS: usize = 5;

// Opcodes and operands of the SPIR-V specification that this reader looks at.
const OP_ENTRY_POINT: u32 = 15;
const OP_EXECUTION_MODE: u32 = 16;
const OP_CONSTANT: u32 = 43;
const OP_CONSTANT_COMPOSITE: u32 = 44;
const OP_SPEC_CONSTANT: u32 = 50;
const OP_SPEC_CONSTANT_COMPOSITE: u32 = 51;
const OP_VARIABLE: u32 = 59;
const OP_DECORATE: u32 = 71;
const OP_EXECUTION_MODE_ID: u32 = 331;
const MODEL_GL_COMPUTE: u32 = 5;
const MODE_LOCAL_SIZE: u32 = 17;
const MODE_LOCAL_SIZE_ID: u32 = 38;
const DECORATION_BUILT_IN: u32 = 11;
const DECORATION_BINDING: u32 = 33;
const DECORATION_DESCRIPTOR_SET: u32 = 34;
const BUILT_IN_WORKGROUP_SIZE: u32 = 25;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpirvError {
    #[error("the code is {0} bytes, not a whole number of 32-bit SPIR-V words")]
    NotWords(usize),
    #[error("the code does not start with the SPIR-V magic number")]
    NotSpirv,
    #[error("the SPIR-V module is damaged: {0}")]
    Damaged(String),
    #[error("the SPIR-V module has no GLCompute entry point `{name}` (it has: {found})")]
    NoEntryPoint { name: String, found: String },
    #[error(
        "the workgroup size of entry point `{0}` is not a constant the runtime can read (the ABI bakes it into the shader)"
    )]
    UnknownWorkgroupSize(String),
}

/// The SPIR-V words of a code section, in host order (either byte order is accepted).
pub fn words(bytes: &[u8]) -> Result<Vec<u32>, SpirvError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(SpirvError::NotWords(bytes.len()));
    }
    let little: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    match little.first() {
        Some(&MAGIC) => Ok(little),
        Some(w) if w.swap_bytes() == MAGIC => Ok(little.into_iter().map(u32::swap_bytes).collect()),
        _ => Err(SpirvError::NotSpirv),
    }
}

/// What one compute entry point declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub name: String,
    /// Threads per workgroup along x, y, z.
    pub workgroup_size: [u32; 3],
    /// (descriptor set, binding) of every resource variable the entry point lists in its
    /// interface; `None` before SPIR-V 1.4, whose interfaces list only inputs and outputs.
    pub bindings: Option<Vec<(u32, u32)>>,
}

/// The module's SPIR-V version as (major, minor).
pub fn version(words: &[u32]) -> (u32, u32) {
    let v = words.get(1).copied().unwrap_or(0);
    ((v >> 16) & 0xff, (v >> 8) & 0xff)
}

/// Finds GLCompute entry point `name` and what it declares.
pub fn entry_point(words: &[u32], name: &str) -> Result<EntryPoint, SpirvError> {
    if words.len() < HEADER_WORDS || words[0] != MAGIC {
        return Err(SpirvError::NotSpirv);
    }
    let mut entries: Vec<(u32, String, Vec<u32>)> = Vec::new();
    let mut local_size: BTreeMap<u32, [u32; 3]> = BTreeMap::new();
    let mut local_size_id: BTreeMap<u32, [u32; 3]> = BTreeMap::new();
    let mut scalars: BTreeMap<u32, u32> = BTreeMap::new();
    let mut composites: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut workgroup_size_builtin: Option<u32> = None;
    let mut sets: BTreeMap<u32, u32> = BTreeMap::new();
    let mut bindings: BTreeMap<u32, u32> = BTreeMap::new();
    let mut variables: Vec<u32> = Vec::new();

    let mut at = HEADER_WORDS;
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        let opcode = words[at] & 0xffff;
        if count == 0 || at + count > words.len() {
            return Err(SpirvError::Damaged(format!(
                "the instruction at word {at} claims {count} words"
            )));
        }
        let ops = &words[at + 1..at + count];
        match (opcode, ops) {
            (OP_ENTRY_POINT, [model, function, rest @ ..]) if *model == MODEL_GL_COMPUTE => {
                let (text, interface) = literal_string(rest)?;
                entries.push((*function, text, interface.to_vec()));
            }
            (OP_EXECUTION_MODE, [function, mode, x, y, z, ..]) if *mode == MODE_LOCAL_SIZE => {
                local_size.insert(*function, [*x, *y, *z]);
            }
            (OP_EXECUTION_MODE_ID, [function, mode, x, y, z, ..])
                if *mode == MODE_LOCAL_SIZE_ID =>
            {
                local_size_id.insert(*function, [*x, *y, *z]);
            }
            (OP_CONSTANT | OP_SPEC_CONSTANT, [_, id, value, ..]) => {
                scalars.insert(*id, *value);
            }
            (OP_CONSTANT_COMPOSITE | OP_SPEC_CONSTANT_COMPOSITE, [_, id, parts @ ..]) => {
                composites.insert(*id, parts.to_vec());
            }
            (OP_DECORATE, [target, decoration, value, ..]) => match *decoration {
                DECORATION_BUILT_IN if *value == BUILT_IN_WORKGROUP_SIZE => {
                    workgroup_size_builtin = Some(*target);
                }
                DECORATION_BINDING => {
                    bindings.insert(*target, *value);
                }
                DECORATION_DESCRIPTOR_SET => {
                    sets.insert(*target, *value);
                }
                _ => {}
            },
            (OP_VARIABLE, [_, id, ..]) => variables.push(*id),
            _ => {}
        }
        at += count;
    }

    let Some((function, _, interface)) = entries.iter().find(|(_, n, _)| n == name) else {
        let found: Vec<&str> = entries.iter().map(|(_, n, _)| n.as_str()).collect();
        return Err(SpirvError::NoEntryPoint {
            name: name.to_string(),
            found: if found.is_empty() {
                "none".into()
            } else {
                found.join(", ")
            },
        });
    };
    let unknown = || SpirvError::UnknownWorkgroupSize(name.to_string());
    let constant = |id: &u32| scalars.get(id).copied();
    // The WorkgroupSize built-in, where present, overrides the execution modes.
    let workgroup_size = if let Some(id) = workgroup_size_builtin {
        let parts = composites.get(&id).ok_or_else(unknown)?;
        match parts.as_slice() {
            [x, y, z] => [
                constant(x).ok_or_else(unknown)?,
                constant(y).ok_or_else(unknown)?,
                constant(z).ok_or_else(unknown)?,
            ],
            _ => return Err(unknown()),
        }
    } else if let Some(size) = local_size.get(function) {
        *size
    } else if let Some([x, y, z]) = local_size_id.get(function) {
        [
            constant(x).ok_or_else(unknown)?,
            constant(y).ok_or_else(unknown)?,
            constant(z).ok_or_else(unknown)?,
        ]
    } else {
        return Err(unknown());
    };
    let bindings = (version(words) >= (1, 4)).then(|| {
        interface
            .iter()
            .filter(|id| variables.contains(id))
            .filter_map(|id| Some((sets.get(id).copied().unwrap_or(0), *bindings.get(id)?)))
            .collect()
    });
    Ok(EntryPoint {
        name: name.to_string(),
        workgroup_size,
        bindings,
    })
}

/// A nul-terminated literal string packed little-endian into words, and the words after it.
fn literal_string(ops: &[u32]) -> Result<(String, &[u32]), SpirvError> {
    let mut bytes = Vec::new();
    for (k, word) in ops.iter().enumerate() {
        for b in word.to_le_bytes() {
            if b == 0 {
                let text = String::from_utf8(bytes)
                    .map_err(|_| SpirvError::Damaged("an entry point name is not UTF-8".into()))?;
                return Ok((text, &ops[k + 1..]));
            }
            bytes.push(b);
        }
    }
    Err(SpirvError::Damaged(
        "an entry point name has no terminating nul".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled module: entry point `main` with LocalSize 64 1 1 and one bound variable.
    fn module(version: u32) -> Vec<u32> {
        let inst = |op: u32, ops: &[u32]| {
            let mut v = vec![((ops.len() as u32 + 1) << 16) | op];
            v.extend_from_slice(ops);
            v
        };
        let name = u32::from_le_bytes(*b"main");
        let mut w = vec![MAGIC, version, 0, 100, 0];
        w.extend(inst(OP_ENTRY_POINT, &[MODEL_GL_COMPUTE, 1, name, 0, 7]));
        w.extend(inst(OP_EXECUTION_MODE, &[1, MODE_LOCAL_SIZE, 64, 1, 1]));
        w.extend(inst(OP_DECORATE, &[7, DECORATION_DESCRIPTOR_SET, 0]));
        w.extend(inst(OP_DECORATE, &[7, DECORATION_BINDING, 2]));
        w.extend(inst(OP_VARIABLE, &[5, 7, 12]));
        w
    }

    #[test]
    fn reads_the_entry_point_its_workgroup_size_and_bindings() {
        let m = module(0x0001_0500);
        let e = entry_point(&m, "main").unwrap();
        assert_eq!(e.workgroup_size, [64, 1, 1]);
        assert_eq!(e.bindings, Some(vec![(0, 2)]));
        assert_eq!(
            entry_point(&module(0x0001_0300), "main").unwrap().bindings,
            None
        );
        let err = entry_point(&m, "other").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the SPIR-V module has no GLCompute entry point `other` (it has: main)"
        );
    }

    #[test]
    fn bytes_in_either_order_and_damage_are_handled() {
        let m = module(0x0001_0500);
        let le: Vec<u8> = m.iter().flat_map(|w| w.to_le_bytes()).collect();
        let be: Vec<u8> = m.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(words(&le).unwrap(), m);
        assert_eq!(words(&be).unwrap(), m);
        assert_eq!(words(&le[..7]), Err(SpirvError::NotWords(7)));
        assert_eq!(words(b"not spirv!!!"), Err(SpirvError::NotSpirv));
        let mut cut = m.clone();
        cut.truncate(cut.len() - 2);
        assert!(matches!(
            entry_point(&cut, "main"),
            Err(SpirvError::Damaged(_))
        ));
    }
}
