//! A typed layer over rspirv's builder for compute shaders: the scalar types the kernels use,
//! constants made once each, `Function` variables gathered at the top of the entry function (as
//! SPIR-V requires), storage buffers and the push-constant block of the runtime's ABI, and
//! structured loops and branches. Kernel code never writes a merge or continue block itself, so
//! every module it builds has the structured control flow Vulkan demands.

use crate::error::{Result, rs};
use rspirv::dr::{Builder, Instruction, Module, Operand};
use rspirv::spirv::{
    self, AddressingModel, BuiltIn, Capability, Decoration, ExecutionMode, ExecutionModel,
    FunctionControl, LoopControl, MemoryModel, SelectionControl, StorageClass, Word,
};
use std::collections::{BTreeSet, HashMap};

/// GLSL.std.450 extended instruction numbers used by the kernels.
pub(crate) mod glsl {
    pub const FABS: u32 = 4;
    pub const FLOOR: u32 = 8;
    pub const CEIL: u32 = 9;
    pub const SIN: u32 = 13;
    pub const COS: u32 = 14;
    pub const TAN: u32 = 15;
    pub const ASIN: u32 = 16;
    pub const ACOS: u32 = 17;
    pub const ATAN: u32 = 18;
    pub const SINH: u32 = 19;
    pub const COSH: u32 = 20;
    pub const POW: u32 = 26;
    pub const EXP: u32 = 27;
    pub const LOG: u32 = 28;
    pub const EXP2: u32 = 29;
    pub const LOG2: u32 = 30;
    pub const SQRT: u32 = 31;
    pub const INVERSE_SQRT: u32 = 32;
    pub const SMIN: u32 = 39;
    pub const SMAX: u32 = 42;
    pub const FMA: u32 = 50;
    pub const PACK_HALF_2X16: u32 = 58;
    pub const UNPACK_HALF_2X16: u32 = 62;
    pub const NMIN: u32 = 79;
    pub const NMAX: u32 = 80;
}

/// Feature loops up to this length are unrolled. Measured on lavapipe on an idle machine
/// (softmax at B=1, H=8, S=1024, D=64): loops ran 1.2x (causal) to 1.9x (full) faster than
/// code unrolled to D, so only one-element vectors are written without a loop for now; a GPU
/// driver may prefer unrolling (not measured yet).
pub(crate) const UNROLL: u32 = 1;

/// The scalar types of kernel values: the language's float, int and bool, and the raw words
/// 16-bit tensors are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ty {
    F32,
    I32,
    U32,
    Bool,
}

/// A value with its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Val {
    pub id: Word,
    pub ty: Ty,
}

pub(crate) struct Shader {
    pub b: Builder,
    glsl: Word,
    void: Word,
    f32: Word,
    i32: Word,
    u32: Word,
    bool: Word,
    constants: HashMap<(Ty, u32), Word>,
    /// `Function` variables, moved to the top of the entry function when it is finished.
    locals: Vec<Instruction>,
    /// Block-decorated struct types (rspirv merges identical types: decorate each once).
    decorated: BTreeSet<Word>,
    /// Array types already given an `ArrayStride`.
    strided: BTreeSet<Word>,
    /// Global variables the entry point uses.
    pub interface: Vec<Word>,
    /// Feature loops up to this length are unrolled ([`UNROLL`] unless a kernel says otherwise).
    pub unroll: u32,
}

impl Shader {
    pub fn new() -> Shader {
        let mut b = Builder::new();
        b.set_version(1, 5);
        b.capability(Capability::Shader);
        b.memory_model(AddressingModel::Logical, MemoryModel::GLSL450);
        let glsl = b.ext_inst_import("GLSL.std.450");
        let void = b.type_void();
        let f32 = b.type_float(32);
        let i32 = b.type_int(32, 1);
        let u32 = b.type_int(32, 0);
        let bool = b.type_bool();
        Shader {
            b,
            glsl,
            void,
            f32,
            i32,
            u32,
            bool,
            constants: HashMap::new(),
            locals: Vec::new(),
            decorated: BTreeSet::new(),
            strided: BTreeSet::new(),
            interface: Vec::new(),
            unroll: UNROLL,
        }
    }

    pub fn ty(&self, t: Ty) -> Word {
        match t {
            Ty::F32 => self.f32,
            Ty::I32 => self.i32,
            Ty::U32 => self.u32,
            Ty::Bool => self.bool,
        }
    }

    fn constant(&mut self, ty: Ty, bits: u32) -> Val {
        let t = self.ty(ty);
        let id = match self.constants.get(&(ty, bits)) {
            Some(id) => *id,
            None => {
                let id = if ty == Ty::Bool {
                    if bits != 0 {
                        self.b.constant_true(t)
                    } else {
                        self.b.constant_false(t)
                    }
                } else {
                    self.b.constant_bit32(t, bits)
                };
                self.constants.insert((ty, bits), id);
                id
            }
        };
        Val { id, ty }
    }

    pub fn f32(&mut self, v: f64) -> Val {
        self.constant(Ty::F32, (v as f32).to_bits())
    }

    pub fn i32(&mut self, v: i64) -> Val {
        self.constant(Ty::I32, v as i32 as u32)
    }

    pub fn u32(&mut self, v: u32) -> Val {
        self.constant(Ty::U32, v)
    }

    pub fn bool(&mut self, v: bool) -> Val {
        self.constant(Ty::Bool, v as u32)
    }

    /// A `Function` variable of type `pointee` (declared at the top of the function).
    pub fn local(&mut self, pointee: Word) -> Word {
        let ptr = self.b.type_pointer(None, StorageClass::Function, pointee);
        let id = self.b.id();
        self.locals.push(Instruction::new(
            spirv::Op::Variable,
            Some(ptr),
            Some(id),
            vec![Operand::StorageClass(StorageClass::Function)],
        ));
        id
    }

    /// A scalar `Function` variable.
    pub fn scalar_local(&mut self, ty: Ty) -> Word {
        let t = self.ty(ty);
        self.local(t)
    }

    /// A `Function` array variable of `len` scalars.
    pub fn array_local(&mut self, ty: Ty, len: u32) -> Word {
        let t = self.ty(ty);
        let n = self.u32(len.max(1)).id;
        let array = self.b.type_array(t, n);
        self.local(array)
    }

    /// A pointer to element `k` (i32) of a `Function` array of `ty`s.
    pub fn local_element(&mut self, var: Word, ty: Ty, k: Val) -> Result<Word> {
        let ptr = self
            .b
            .type_pointer(None, StorageClass::Function, self.ty(ty));
        rs(self.b.access_chain(ptr, None, var, [k.id]))
    }

    pub fn load(&mut self, ty: Ty, ptr: Word) -> Result<Val> {
        let t = self.ty(ty);
        let id = rs(self.b.load(t, None, ptr, None, []))?;
        Ok(Val { id, ty })
    }

    pub fn store(&mut self, ptr: Word, v: Val) -> Result<()> {
        rs(self.b.store(ptr, v.id, None, []))
    }

    /// A storage buffer of `ty` words at set 0, `binding`: `struct { ty data[]; }`.
    pub fn buffer(&mut self, ty: Ty, binding: u32) -> Word {
        let element = self.ty(ty);
        let array = self.b.type_runtime_array(element);
        if self.strided.insert(array) {
            self.b
                .decorate(array, Decoration::ArrayStride, [Operand::LiteralBit32(4)]);
        }
        let block = self.b.type_struct([array]);
        if self.decorated.insert(block) {
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

    /// A `Workgroup` array of `len` scalars, shared by the invocations of a workgroup (declared
    /// before the entry function: module-scope variables live outside it).
    pub fn workgroup_array(&mut self, ty: Ty, len: u32) -> Word {
        let t = self.ty(ty);
        let n = self.u32(len.max(1)).id;
        let array = self.b.type_array(t, n);
        let ptr = self.b.type_pointer(None, StorageClass::Workgroup, array);
        let var = self.b.variable(ptr, None, StorageClass::Workgroup, None);
        self.interface.push(var);
        var
    }

    /// A pointer to element `k` (i32) of a `Workgroup` array of `ty`s.
    pub fn workgroup_element(&mut self, var: Word, ty: Ty, k: Val) -> Result<Word> {
        let ptr = self
            .b
            .type_pointer(None, StorageClass::Workgroup, self.ty(ty));
        rs(self.b.access_chain(ptr, None, var, [k.id]))
    }

    /// `OpControlBarrier` at workgroup scope, ordering workgroup memory (GLSL's `barrier()`):
    /// every invocation's writes before it are visible to every invocation after it. Only in
    /// control flow that is uniform across the workgroup.
    pub fn barrier(&mut self) -> Result<()> {
        let scope = self.u32(spirv::Scope::Workgroup as u32).id;
        let semantics =
            spirv::MemorySemantics::ACQUIRE_RELEASE | spirv::MemorySemantics::WORKGROUP_MEMORY;
        let semantics = self.u32(semantics.bits()).id;
        rs(self.b.control_barrier(scope, scope, semantics))
    }

    /// A pointer to word `k` (i32) of a storage buffer of `ty`s.
    pub fn buffer_element(&mut self, var: Word, ty: Ty, k: Val) -> Result<Word> {
        let ptr = self
            .b
            .type_pointer(None, StorageClass::StorageBuffer, self.ty(ty));
        let zero = self.i32(0).id;
        rs(self.b.access_chain(ptr, None, var, [zero, k.id]))
    }

    /// The push-constant block: `count` i32 members at offsets 4·s.
    pub fn push_constants(&mut self, count: usize) -> Option<Word> {
        if count == 0 {
            return None;
        }
        let members = vec![self.i32; count];
        let block = self.b.type_struct(members);
        if self.decorated.insert(block) {
            self.b.decorate(block, Decoration::Block, []);
            for s in 0..count as u32 {
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
        Some(var)
    }

    /// Member `s` of the push-constant block, as i32.
    pub fn push_constant(&mut self, block: Word, s: usize) -> Result<Val> {
        let ptr = self
            .b
            .type_pointer(None, StorageClass::PushConstant, self.i32);
        let member = self.i32(s as i64).id;
        let p = rs(self.b.access_chain(ptr, None, block, [member]))?;
        self.load(Ty::I32, p)
    }

    /// An input built-in `uvec3` (`WorkgroupId`, `LocalInvocationId`).
    pub fn builtin_uvec3(&mut self, which: BuiltIn) -> Word {
        let uvec3 = self.b.type_vector(self.u32, 3);
        let ptr = self.b.type_pointer(None, StorageClass::Input, uvec3);
        let var = self.b.variable(ptr, None, StorageClass::Input, None);
        self.b
            .decorate(var, Decoration::BuiltIn, [Operand::BuiltIn(which)]);
        self.interface.push(var);
        var
    }

    /// Component `k` of a built-in `uvec3`, as i32.
    pub fn builtin_component(&mut self, var: Word, k: u32) -> Result<Val> {
        let uvec3 = self.b.type_vector(self.u32, 3);
        let v = rs(self.b.load(uvec3, None, var, None, []))?;
        let c = rs(self.b.composite_extract(self.u32, None, v, [k]))?;
        let id = rs(self.b.bitcast(self.i32, None, c))?;
        Ok(Val { id, ty: Ty::I32 })
    }

    /// Starts the entry function with its first block open.
    pub fn begin_function(&mut self) -> Result<Word> {
        let fn_type = self.b.type_function(self.void, []);
        let f = rs(self
            .b
            .begin_function(self.void, None, FunctionControl::NONE, fn_type))?;
        rs(self.b.begin_block(None))?;
        Ok(f)
    }

    /// Ends the entry function and declares it as GLCompute entry point `name`.
    pub fn finish_function(&mut self, f: Word, name: &str, local_size: u32) -> Result<()> {
        rs(self.b.ret())?;
        rs(self.b.end_function())?;
        self.b
            .entry_point(ExecutionModel::GLCompute, f, name, self.interface.clone());
        self.b
            .execution_mode(f, ExecutionMode::LocalSize, [local_size, 1, 1]);
        Ok(())
    }

    /// The finished module, its `Function` variables moved into the entry block.
    pub fn module(self) -> Module {
        let mut m = self.b.module();
        if let Some(first) = m.functions.first_mut().and_then(|f| f.blocks.first_mut()) {
            first.instructions.splice(0..0, self.locals);
        }
        m
    }

    /// A GLSL.std.450 instruction.
    pub fn ext(&mut self, ty: Ty, inst: u32, args: &[Val]) -> Result<Val> {
        let t = self.ty(ty);
        let ops = args.iter().map(|a| Operand::IdRef(a.id));
        let id = rs(self.b.ext_inst(t, None, self.glsl, inst, ops))?;
        Ok(Val { id, ty })
    }

    /// `body(f)` for every feature `f < len`: unrolled up to `unroll` elements, so every
    /// per-invocation array is indexed by constants and the driver can keep it in registers
    /// (a dynamically indexed private array lives in memory); a loop above that.
    pub fn features(
        &mut self,
        len: u32,
        mut body: impl FnMut(&mut Shader, Val) -> Result<()>,
    ) -> Result<()> {
        if len <= self.unroll {
            for f in 0..len {
                let k = self.i32(f as i64);
                body(self, k)?;
            }
            return Ok(());
        }
        let (lo, hi) = (self.i32(0), self.i32(len as i64));
        self.for_range(lo, hi, body)
    }

    /// `for k in lo..hi { body(k) }` over i32, as a structured loop.
    pub fn for_range(
        &mut self,
        lo: Val,
        hi: Val,
        body: impl FnOnce(&mut Shader, Val) -> Result<()>,
    ) -> Result<()> {
        let counter = self.scalar_local(Ty::I32);
        self.store(counter, lo)?;
        let (header, inner, cont, merge) = (self.b.id(), self.b.id(), self.b.id(), self.b.id());
        rs(self.b.branch(header))?;
        rs(self.b.begin_block(Some(header)))?;
        let k = self.load(Ty::I32, counter)?;
        let go = self.lt(k, hi)?;
        rs(self.b.loop_merge(merge, cont, LoopControl::NONE, []))?;
        rs(self.b.branch_conditional(go.id, inner, merge, []))?;
        rs(self.b.begin_block(Some(inner)))?;
        body(self, k)?;
        rs(self.b.branch(cont))?;
        rs(self.b.begin_block(Some(cont)))?;
        let one = self.i32(1);
        let next = self.add(k, one)?;
        self.store(counter, next)?;
        rs(self.b.branch(header))?;
        rs(self.b.begin_block(Some(merge)))?;
        Ok(())
    }

    /// `if cond { body }`, continuing after it.
    pub fn when(&mut self, cond: Val, body: impl FnOnce(&mut Shader) -> Result<()>) -> Result<()> {
        let (then, merge) = (self.b.id(), self.b.id());
        rs(self.b.selection_merge(merge, SelectionControl::NONE))?;
        rs(self.b.branch_conditional(cond.id, then, merge, []))?;
        rs(self.b.begin_block(Some(then)))?;
        body(self)?;
        rs(self.b.branch(merge))?;
        rs(self.b.begin_block(Some(merge)))?;
        Ok(())
    }

    // Arithmetic. Operands have the same type; callers convert first.

    pub fn add(&mut self, a: Val, b: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = match a.ty {
            Ty::F32 => rs(self.b.f_add(t, None, a.id, b.id))?,
            _ => rs(self.b.i_add(t, None, a.id, b.id))?,
        };
        Ok(Val { id, ty: a.ty })
    }

    pub fn sub(&mut self, a: Val, b: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = match a.ty {
            Ty::F32 => rs(self.b.f_sub(t, None, a.id, b.id))?,
            _ => rs(self.b.i_sub(t, None, a.id, b.id))?,
        };
        Ok(Val { id, ty: a.ty })
    }

    pub fn mul(&mut self, a: Val, b: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = match a.ty {
            Ty::F32 => rs(self.b.f_mul(t, None, a.id, b.id))?,
            _ => rs(self.b.i_mul(t, None, a.id, b.id))?,
        };
        Ok(Val { id, ty: a.ty })
    }

    pub fn fdiv(&mut self, a: Val, b: Val) -> Result<Val> {
        let id = rs(self.b.f_div(self.f32, None, a.id, b.id))?;
        Ok(Val { id, ty: Ty::F32 })
    }

    /// Truncating signed division and the remainder with the divisor's sign (`OpSMod`).
    pub fn sdiv(&mut self, a: Val, b: Val) -> Result<Val> {
        let id = rs(self.b.s_div(self.i32, None, a.id, b.id))?;
        Ok(Val { id, ty: Ty::I32 })
    }

    pub fn smod(&mut self, a: Val, b: Val) -> Result<Val> {
        let id = rs(self.b.s_mod(self.i32, None, a.id, b.id))?;
        Ok(Val { id, ty: Ty::I32 })
    }

    pub fn neg(&mut self, a: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = match a.ty {
            Ty::F32 => rs(self.b.f_negate(t, None, a.id))?,
            _ => rs(self.b.s_negate(t, None, a.id))?,
        };
        Ok(Val { id, ty: a.ty })
    }

    /// Comparisons: ordered for floats (false with a NaN), signed for ints.
    pub fn cmp(&mut self, op: Cmp, a: Val, b: Val) -> Result<Val> {
        let t = self.bool;
        let (x, y) = (a.id, b.id);
        let id = match (a.ty, op) {
            (Ty::F32, Cmp::Eq) => rs(self.b.f_ord_equal(t, None, x, y))?,
            (Ty::F32, Cmp::Ne) => rs(self.b.f_unord_not_equal(t, None, x, y))?,
            (Ty::F32, Cmp::Lt) => rs(self.b.f_ord_less_than(t, None, x, y))?,
            (Ty::F32, Cmp::Le) => rs(self.b.f_ord_less_than_equal(t, None, x, y))?,
            (Ty::F32, Cmp::Gt) => rs(self.b.f_ord_greater_than(t, None, x, y))?,
            (Ty::F32, Cmp::Ge) => rs(self.b.f_ord_greater_than_equal(t, None, x, y))?,
            (Ty::Bool, Cmp::Eq) => rs(self.b.logical_equal(t, None, x, y))?,
            (Ty::Bool, Cmp::Ne) => rs(self.b.logical_not_equal(t, None, x, y))?,
            (Ty::Bool, _) => {
                let (a, b) = (self.int(a)?, self.int(b)?);
                return self.cmp(op, a, b);
            }
            (_, Cmp::Eq) => rs(self.b.i_equal(t, None, x, y))?,
            (_, Cmp::Ne) => rs(self.b.i_not_equal(t, None, x, y))?,
            (_, Cmp::Lt) => rs(self.b.s_less_than(t, None, x, y))?,
            (_, Cmp::Le) => rs(self.b.s_less_than_equal(t, None, x, y))?,
            (_, Cmp::Gt) => rs(self.b.s_greater_than(t, None, x, y))?,
            (_, Cmp::Ge) => rs(self.b.s_greater_than_equal(t, None, x, y))?,
        };
        Ok(Val { id, ty: Ty::Bool })
    }

    pub fn lt(&mut self, a: Val, b: Val) -> Result<Val> {
        self.cmp(Cmp::Lt, a, b)
    }

    pub fn and(&mut self, a: Val, b: Val) -> Result<Val> {
        let id = rs(self.b.logical_and(self.bool, None, a.id, b.id))?;
        Ok(Val { id, ty: Ty::Bool })
    }

    pub fn or(&mut self, a: Val, b: Val) -> Result<Val> {
        let id = rs(self.b.logical_or(self.bool, None, a.id, b.id))?;
        Ok(Val { id, ty: Ty::Bool })
    }

    pub fn not(&mut self, a: Val) -> Result<Val> {
        let id = rs(self.b.logical_not(self.bool, None, a.id))?;
        Ok(Val { id, ty: Ty::Bool })
    }

    pub fn select(&mut self, c: Val, a: Val, b: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = rs(self.b.select(t, None, c.id, a.id, b.id))?;
        Ok(Val { id, ty: a.ty })
    }

    pub fn is_nan(&mut self, a: Val) -> Result<Val> {
        let id = rs(self.b.is_nan(self.bool, None, a.id))?;
        Ok(Val { id, ty: Ty::Bool })
    }

    /// Converts to f32: ints exactly below 2^24, truth values to 0 or 1.
    pub fn float(&mut self, a: Val) -> Result<Val> {
        Ok(match a.ty {
            Ty::F32 => a,
            Ty::I32 => Val {
                id: rs(self.b.convert_s_to_f(self.f32, None, a.id))?,
                ty: Ty::F32,
            },
            Ty::U32 => Val {
                id: rs(self.b.convert_u_to_f(self.f32, None, a.id))?,
                ty: Ty::F32,
            },
            Ty::Bool => {
                let (one, zero) = (self.f32(1.0), self.f32(0.0));
                self.select(a, one, zero)?
            }
        })
    }

    /// Converts to i32: floats toward zero (callers floor first), truth values to 0 or 1.
    pub fn int(&mut self, a: Val) -> Result<Val> {
        Ok(match a.ty {
            Ty::I32 => a,
            Ty::F32 => Val {
                id: rs(self.b.convert_f_to_s(self.i32, None, a.id))?,
                ty: Ty::I32,
            },
            Ty::U32 => Val {
                id: rs(self.b.bitcast(self.i32, None, a.id))?,
                ty: Ty::I32,
            },
            Ty::Bool => {
                let (one, zero) = (self.i32(1), self.i32(0));
                self.select(a, one, zero)?
            }
        })
    }

    /// A truth value: non-zero numbers are true.
    pub fn truth(&mut self, a: Val) -> Result<Val> {
        match a.ty {
            Ty::Bool => Ok(a),
            Ty::F32 => {
                let zero = self.f32(0.0);
                self.cmp(Cmp::Ne, a, zero)
            }
            _ => {
                let a = self.int(a)?;
                let zero = self.i32(0);
                self.cmp(Cmp::Ne, a, zero)
            }
        }
    }

    pub fn to(&mut self, a: Val, ty: Ty) -> Result<Val> {
        match ty {
            Ty::F32 => self.float(a),
            Ty::I32 => self.int(a),
            Ty::Bool => self.truth(a),
            Ty::U32 => self.bitcast(a, Ty::U32),
        }
    }

    pub fn bitcast(&mut self, a: Val, ty: Ty) -> Result<Val> {
        if a.ty == ty {
            return Ok(a);
        }
        let t = self.ty(ty);
        let id = rs(self.b.bitcast(t, None, a.id))?;
        Ok(Val { id, ty })
    }

    pub fn shl(&mut self, a: Val, by: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = rs(self.b.shift_left_logical(t, None, a.id, by.id))?;
        Ok(Val { id, ty: a.ty })
    }

    pub fn shr(&mut self, a: Val, by: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = rs(self.b.shift_right_logical(t, None, a.id, by.id))?;
        Ok(Val { id, ty: a.ty })
    }

    pub fn bit_and(&mut self, a: Val, b: Val) -> Result<Val> {
        let t = self.ty(a.ty);
        let id = rs(self.b.bitwise_and(t, None, a.id, b.id))?;
        Ok(Val { id, ty: a.ty })
    }

    /// `v.x` of `unpackHalf2x16(w)`: the f16 in the low half of word `w`, as f32.
    pub fn unpack_half(&mut self, w: Val) -> Result<Val> {
        let vec2 = self.b.type_vector(self.f32, 2);
        let id = rs(self.b.ext_inst(
            vec2,
            None,
            self.glsl,
            glsl::UNPACK_HALF_2X16,
            [Operand::IdRef(w.id)],
        ))?;
        let x = rs(self.b.composite_extract(self.f32, None, id, [0]))?;
        Ok(Val { id: x, ty: Ty::F32 })
    }

    /// The f16 bits of `x` (low half of a u32 word), by `packHalf2x16(vec2(x, 0))`.
    pub fn pack_half(&mut self, x: Val) -> Result<Val> {
        let vec2 = self.b.type_vector(self.f32, 2);
        let zero = self.f32(0.0);
        let v = rs(self.b.composite_construct(vec2, None, [x.id, zero.id]))?;
        let id = rs(self.b.ext_inst(
            self.u32,
            None,
            self.glsl,
            glsl::PACK_HALF_2X16,
            [Operand::IdRef(v)],
        ))?;
        Ok(Val { id, ty: Ty::U32 })
    }

    /// Atomic `*ptr op= v` on a u32 word at device scope, relaxed.
    pub fn atomic(&mut self, op: Atomic, ptr: Word, v: Val) -> Result<Val> {
        let scope = self.u32(spirv::Scope::Device as u32).id;
        let relaxed = self.u32(0).id;
        let t = self.ty(v.ty);
        let id = match op {
            Atomic::And => rs(self.b.atomic_and(t, None, ptr, scope, relaxed, v.id))?,
            Atomic::Or => rs(self.b.atomic_or(t, None, ptr, scope, relaxed, v.id))?,
        };
        Ok(Val { id, ty: v.ty })
    }

    /// Atomically stores `v` where `*ptr` is `expected`; returns the old value.
    pub fn compare_exchange(&mut self, ptr: Word, expected: Val, v: Val) -> Result<Val> {
        let scope = self.u32(spirv::Scope::Device as u32).id;
        let relaxed = self.u32(0).id;
        let t = self.ty(v.ty);
        let id = rs(self.b.atomic_compare_exchange(
            t,
            None,
            ptr,
            scope,
            relaxed,
            relaxed,
            v.id,
            expected.id,
        ))?;
        Ok(Val { id, ty: v.ty })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Atomic {
    And,
    Or,
}
