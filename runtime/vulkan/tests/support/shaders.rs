//! Small SPIR-V compute shaders for the device tests, built with rspirv: each follows the
//! crate's SPIR-V ABI (set 0, binding k for the k-th buffer, scalars at push-constant offset 4·s,
//! `LocalSize` equal to the manifest's block). Every module is checked with `spirv-val` where
//! Debian's spirv-tools is installed.

use rspirv::binary::Assemble;
use rspirv::dr::{Builder, Operand};
use rspirv::spirv::{
    AddressingModel, BuiltIn, Capability, Decoration, ExecutionMode, ExecutionModel,
    FunctionControl, MemoryModel, MemorySemantics, Scope, SelectionControl, StorageClass, Word,
};
use std::collections::BTreeSet;

/// Threads per workgroup of every test shader.
pub const GROUP: u32 = 64;

/// A module under construction, with the types every test shader uses.
pub struct Shader {
    pub b: Builder,
    pub void: Word,
    pub u32: Word,
    pub i32: Word,
    pub f32: Word,
    pub bool: Word,
    gid: Word,
    /// Struct types already decorated (rspirv merges identical types: decorate each once).
    decorated: BTreeSet<Word>,
    /// Global variables the entry point being built uses.
    interface: Vec<Word>,
}

impl Shader {
    pub fn new() -> Shader {
        let mut b = Builder::new();
        b.set_version(1, 5);
        b.capability(Capability::Shader);
        b.memory_model(AddressingModel::Logical, MemoryModel::GLSL450);
        let void = b.type_void();
        let u32 = b.type_int(32, 0);
        let i32 = b.type_int(32, 1);
        let f32 = b.type_float(32);
        let bool = b.type_bool();
        let uvec3 = b.type_vector(u32, 3);
        let ptr = b.type_pointer(None, StorageClass::Input, uvec3);
        let gid = b.variable(ptr, None, StorageClass::Input, None);
        b.decorate(
            gid,
            Decoration::BuiltIn,
            [Operand::BuiltIn(BuiltIn::GlobalInvocationId)],
        );
        Shader {
            b,
            void,
            u32,
            i32,
            f32,
            bool,
            gid,
            decorated: BTreeSet::new(),
            interface: Vec::new(),
        }
    }

    /// A storage buffer of `element`s at set 0, `binding`: `struct { element data[]; }`.
    pub fn buffer(&mut self, element: Word, binding: u32) -> Word {
        let array = self.b.type_runtime_array(element);
        let block = self.b.type_struct([array]);
        if self.decorated.insert(block) {
            self.b
                .decorate(array, Decoration::ArrayStride, [Operand::LiteralBit32(4)]);
            self.b.decorate(block, Decoration::Block, []);
            self.b
                .member_decorate(block, 0, Decoration::Offset, [Operand::LiteralBit32(0)]);
        }
        let ptr = self
            .b
            .type_pointer(None, StorageClass::StorageBuffer, block);
        let var = self
            .b
            .variable(ptr, None, StorageClass::StorageBuffer, None);
        self.b
            .decorate(var, Decoration::DescriptorSet, [Operand::LiteralBit32(0)]);
        self.b
            .decorate(var, Decoration::Binding, [Operand::LiteralBit32(binding)]);
        self.interface.push(var);
        var
    }

    /// The push-constant block: one 32-bit member per scalar, at offset 4·s.
    pub fn push_constants(&mut self, members: &[Word]) -> Word {
        let block = self.b.type_struct(members.iter().copied());
        if self.decorated.insert(block) {
            self.b.decorate(block, Decoration::Block, []);
            for s in 0..members.len() as u32 {
                self.b.member_decorate(
                    block,
                    s,
                    Decoration::Offset,
                    [Operand::LiteralBit32(4 * s)],
                );
            }
        }
        let ptr = self.b.type_pointer(None, StorageClass::PushConstant, block);
        let var = self.b.variable(ptr, None, StorageClass::PushConstant, None);
        self.interface.push(var);
        var
    }

    pub fn int(&mut self, v: i32) -> Word {
        self.b.constant_bit32(self.i32, v as u32)
    }

    pub fn float(&mut self, v: f32) -> Word {
        self.b.constant_bit32(self.f32, v.to_bits())
    }

    /// Starts entry point code: a `void main()` with its first block open.
    pub fn begin(&mut self) -> Word {
        let fn_type = self.b.type_function(self.void, []);
        let f = self
            .b
            .begin_function(self.void, None, FunctionControl::NONE, fn_type)
            .unwrap();
        self.b.begin_block(None).unwrap();
        f
    }

    /// Ends the function (its current block returns) and declares it as entry point `name`.
    pub fn finish(&mut self, f: Word, name: &str, local_size: u32) {
        self.b.ret().unwrap();
        self.b.end_function().unwrap();
        let mut interface = vec![self.gid];
        interface.append(&mut self.interface);
        self.b
            .entry_point(ExecutionModel::GLCompute, f, name, interface);
        self.b
            .execution_mode(f, ExecutionMode::LocalSize, [local_size, 1, 1]);
    }

    /// `gl_GlobalInvocationID.x`.
    pub fn index(&mut self) -> Word {
        let uvec3 = self.b.type_vector(self.u32, 3);
        let gid = self.b.load(uvec3, None, self.gid, None, []).unwrap();
        self.b.composite_extract(self.u32, None, gid, [0]).unwrap()
    }

    /// Loads push-constant member `s` of type `ty`.
    pub fn scalar(&mut self, block: Word, s: i32, ty: Word) -> Word {
        let ptr = self.b.type_pointer(None, StorageClass::PushConstant, ty);
        let member = self.int(s);
        let p = self.b.access_chain(ptr, None, block, [member]).unwrap();
        self.b.load(ty, None, p, None, []).unwrap()
    }

    /// A pointer to element `i` of buffer `var` holding `ty`s.
    pub fn element(&mut self, var: Word, ty: Word, i: Word) -> Word {
        let ptr = self.b.type_pointer(None, StorageClass::StorageBuffer, ty);
        let zero = self.int(0);
        self.b.access_chain(ptr, None, var, [zero, i]).unwrap()
    }

    pub fn load(&mut self, ty: Word, ptr: Word) -> Word {
        self.b.load(ty, None, ptr, None, []).unwrap()
    }

    pub fn store(&mut self, ptr: Word, value: Word) {
        self.b.store(ptr, value, None, []).unwrap();
    }

    /// `if (cond) { body }`, continuing in the merge block.
    pub fn when(&mut self, cond: Word, body: impl FnOnce(&mut Shader)) {
        let then = self.b.id();
        let merge = self.b.id();
        self.b
            .selection_merge(merge, SelectionControl::NONE)
            .unwrap();
        self.b.branch_conditional(cond, then, merge, []).unwrap();
        self.b.begin_block(Some(then)).unwrap();
        body(self);
        self.b.branch(merge).unwrap();
        self.b.begin_block(Some(merge)).unwrap();
    }

    /// `i < n` for a u32 index and an i32 count.
    pub fn below(&mut self, i: Word, n: Word) -> Word {
        let n = self.b.bitcast(self.u32, None, n).unwrap();
        self.b.u_less_than(self.bool, None, i, n).unwrap()
    }

    /// The module's bytes, validated when `spirv-val` is present.
    pub fn bytes(self) -> Vec<u8> {
        let words = self.b.module().assemble();
        validate(&words);
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Runs `spirv-val --target-env vulkan1.3` on the module where spirv-tools is installed.
fn validate(words: &[u32]) {
    let dir = std::env::temp_dir().join(format!("attnc-vulkan-test-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join(format!("{:016x}.spv", fnv(words)));
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let out = std::process::Command::new("spirv-val")
        .args(["--target-env", "vulkan1.3"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    if let Ok(out) = out {
        assert!(
            out.status.success(),
            "spirv-val rejects a test shader: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn fnv(words: &[u32]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ *w as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `y[i] = two * x[i] + float(n)` for `i < len`. Signature: x, len, y, two, n.
pub fn affine() -> Vec<u8> {
    let mut s = Shader::new();
    let (f32, i32) = (s.f32, s.i32);
    let x = s.buffer(f32, 0);
    let y = s.buffer(f32, 1);
    let pc = s.push_constants(&[i32, f32, i32]);
    let f = s.begin();
    let i = s.index();
    let len = s.scalar(pc, 0, i32);
    let inside = s.below(i, len);
    s.when(inside, |s| {
        let two = s.scalar(pc, 1, f32);
        let n = s.scalar(pc, 2, i32);
        let n = s.b.convert_s_to_f(f32, None, n).unwrap();
        let px = s.element(x, f32, i);
        let xv = s.load(f32, px);
        let scaled = s.b.f_mul(f32, None, two, xv).unwrap();
        let value = s.b.f_add(f32, None, scaled, n).unwrap();
        let py = s.element(y, f32, i);
        s.store(py, value);
    });
    s.finish(f, "affine", GROUP);
    s.bytes()
}

/// `y[i] = x[i + offset]` for `i < len`, with a guard: when `i + offset >= len` the first such
/// thread stores (code, i + offset, len) in the status words. Signature: x, y, status, len,
/// offset, code.
pub fn guarded_gather() -> Vec<u8> {
    let mut s = Shader::new();
    let (f32, i32, u32) = (s.f32, s.i32, s.u32);
    let x = s.buffer(f32, 0);
    let y = s.buffer(f32, 1);
    let status = s.buffer(i32, 2);
    let pc = s.push_constants(&[i32, i32, i32]);
    let f = s.begin();
    let i = s.index();
    let len = s.scalar(pc, 0, i32);
    let inside = s.below(i, len);
    s.when(inside, |s| {
        let offset = s.scalar(pc, 1, i32);
        let i_signed = s.b.bitcast(i32, None, i).unwrap();
        let j = s.b.i_add(i32, None, i_signed, offset).unwrap();
        let ju = s.b.bitcast(u32, None, j).unwrap();
        let ok = s.below(ju, len);
        let bad = s.b.logical_not(s.bool, None, ok).unwrap();
        s.when(bad, |s| {
            let code = s.scalar(pc, 2, i32);
            let zero = s.int(0);
            let word0 = s.element(status, i32, zero);
            let scope = s.b.constant_bit32(u32, Scope::Device as u32);
            let relaxed = s.b.constant_bit32(u32, MemorySemantics::NONE.bits());
            let previous =
                s.b.atomic_compare_exchange(i32, None, word0, scope, relaxed, relaxed, code, zero)
                    .unwrap();
            let first = s.b.i_equal(s.bool, None, previous, zero).unwrap();
            s.when(first, |s| {
                let one = s.int(1);
                let two = s.int(2);
                let w1 = s.element(status, i32, one);
                s.store(w1, j);
                let w2 = s.element(status, i32, two);
                s.store(w2, len);
            });
        });
        s.when(ok, |s| {
            let px = s.element(x, f32, ju);
            let v = s.load(f32, px);
            let py = s.element(y, f32, i);
            s.store(py, v);
        });
    });
    s.finish(f, "gather", GROUP);
    s.bytes()
}

/// Two entry points in one module. `accumulate` (x, ws, len): `ws[i] += 3 * x[i]`, so a
/// workspace that is not zeroed before each call shows. `finish` (ws, x, y, len):
/// `y[i] = ws[i] + x[i]`, reading what the first launch wrote.
pub fn two_stage() -> Vec<u8> {
    let mut s = Shader::new();
    let (f32, i32) = (s.f32, s.i32);

    let x = s.buffer(f32, 0);
    let ws = s.buffer(f32, 1);
    let pc = s.push_constants(&[i32]);
    let f = s.begin();
    let i = s.index();
    let len = s.scalar(pc, 0, i32);
    let inside = s.below(i, len);
    s.when(inside, |s| {
        let three = s.float(3.0);
        let px = s.element(x, f32, i);
        let xv = s.load(f32, px);
        let pw = s.element(ws, f32, i);
        let old = s.load(f32, pw);
        let t = s.b.f_mul(f32, None, three, xv).unwrap();
        let v = s.b.f_add(f32, None, old, t).unwrap();
        s.store(pw, v);
    });
    s.finish(f, "accumulate", GROUP);

    let ws = s.buffer(f32, 0);
    let x = s.buffer(f32, 1);
    let y = s.buffer(f32, 2);
    let pc = s.push_constants(&[i32]);
    let f = s.begin();
    let i = s.index();
    let len = s.scalar(pc, 0, i32);
    let inside = s.below(i, len);
    s.when(inside, |s| {
        let pw = s.element(ws, f32, i);
        let w = s.load(f32, pw);
        let px = s.element(x, f32, i);
        let xv = s.load(f32, px);
        let v = s.b.f_add(f32, None, w, xv).unwrap();
        let py = s.element(y, f32, i);
        s.store(py, v);
    });
    s.finish(f, "finish", GROUP);
    s.bytes()
}
