//! The types of MLIR values the code generators write: scalars, vectors and memrefs, printed as
//! MLIR spells them. Every value the emitter hands out carries one, so an op helper picks its
//! variant (`addf` or `addi`, `cmpf` or `cmpi`) from its operands and never from a string.

use attnc_ir::ElementType;
use std::fmt;

/// A memref's memory space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Plain (global or host) memory.
    Default,
    /// A GPU work group's shared memory.
    Workgroup,
    /// A thread's private memory (`memref.alloca` lowered to local/stack memory; promoted to
    /// registers where every access has a constant index).
    Private,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    F16,
    Bf16,
    F32,
    F64,
    I1,
    I8,
    I16,
    I32,
    I64,
    Index,
    Vector(Vec<usize>, Box<Ty>),
    /// Sizes (`None` for a dynamic one), element type, memory space.
    MemRef(Vec<Option<usize>>, Box<Ty>, Space),
    /// A type the emitter does not interpret, printed as given (LLVM structs, pointers).
    Other(String),
}

impl Ty {
    pub fn is_float(&self) -> bool {
        matches!(self, Ty::F16 | Ty::Bf16 | Ty::F32 | Ty::F64)
            || matches!(self, Ty::Vector(_, e) if e.is_float())
    }

    /// Signed integers and `index` (not `i1`, which is a truth value).
    pub fn is_int(&self) -> bool {
        matches!(self, Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64 | Ty::Index)
            || matches!(self, Ty::Vector(_, e) if e.is_int())
    }

    pub fn is_bool(&self) -> bool {
        matches!(self, Ty::I1) || matches!(self, Ty::Vector(_, e) if **e == Ty::I1)
    }

    /// The element type of a vector or memref; a scalar is its own element.
    pub fn element(&self) -> &Ty {
        match self {
            Ty::Vector(_, e) | Ty::MemRef(_, e, _) => e,
            t => t,
        }
    }

    /// Bits of a scalar (64 for `index`, as the targets lower it).
    pub fn bits(&self) -> usize {
        match self {
            Ty::I1 => 1,
            Ty::I8 => 8,
            Ty::F16 | Ty::Bf16 | Ty::I16 => 16,
            Ty::F32 | Ty::I32 => 32,
            Ty::F64 | Ty::I64 | Ty::Index => 64,
            Ty::Vector(shape, e) => shape.iter().product::<usize>() * e.bits(),
            Ty::MemRef(..) | Ty::Other(_) => 64,
        }
    }

    /// The type a stored element type is held in.
    pub fn of_element(t: ElementType) -> Ty {
        match t {
            ElementType::F32 => Ty::F32,
            ElementType::F16 => Ty::F16,
            ElementType::Bf16 => Ty::Bf16,
            ElementType::F64 => Ty::F64,
            ElementType::I32 => Ty::I32,
            ElementType::I64 => Ty::I64,
            ElementType::U16 => Ty::I16,
            ElementType::Bool => Ty::I8,
        }
    }

    pub fn vector(shape: &[usize], element: Ty) -> Ty {
        Ty::Vector(shape.to_vec(), Box::new(element))
    }

    /// A one-dimensional memref of dynamic length.
    pub fn buffer(element: Ty, space: Space) -> Ty {
        Ty::MemRef(vec![None], Box::new(element), space)
    }

    /// A one-dimensional memref of static length.
    pub fn array(len: usize, element: Ty, space: Space) -> Ty {
        Ty::MemRef(vec![Some(len)], Box::new(element), space)
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::F16 => f.write_str("f16"),
            Ty::Bf16 => f.write_str("bf16"),
            Ty::F32 => f.write_str("f32"),
            Ty::F64 => f.write_str("f64"),
            Ty::I1 => f.write_str("i1"),
            Ty::I8 => f.write_str("i8"),
            Ty::I16 => f.write_str("i16"),
            Ty::I32 => f.write_str("i32"),
            Ty::I64 => f.write_str("i64"),
            Ty::Index => f.write_str("index"),
            Ty::Vector(shape, e) => {
                let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
                write!(f, "vector<{}x{e}>", dims.join("x"))
            }
            Ty::MemRef(sizes, e, space) => {
                f.write_str("memref<")?;
                for s in sizes {
                    match s {
                        Some(n) => write!(f, "{n}x")?,
                        None => f.write_str("?x")?,
                    }
                }
                write!(f, "{e}")?;
                match space {
                    Space::Default | Space::Private => {}
                    Space::Workgroup => f.write_str(", #gpu.address_space<workgroup>")?,
                }
                f.write_str(">")
            }
            Ty::Other(s) => f.write_str(s),
        }
    }
}

/// An SSA value and its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Val {
    pub name: String,
    pub ty: Ty,
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_print_as_mlir_spells_them() {
        assert_eq!(
            Ty::vector(&[4, 2], Ty::Bf16).to_string(),
            "vector<4x2xbf16>"
        );
        assert_eq!(
            Ty::buffer(Ty::F32, Space::Default).to_string(),
            "memref<?xf32>"
        );
        assert_eq!(
            Ty::array(1024, Ty::Bf16, Space::Workgroup).to_string(),
            "memref<1024xbf16, #gpu.address_space<workgroup>>"
        );
        assert!(Ty::vector(&[2], Ty::F32).is_float());
        assert!(Ty::Index.is_int() && !Ty::I1.is_int() && Ty::I1.is_bool());
        assert_eq!(Ty::vector(&[4, 2], Ty::Bf16).bits(), 128);
    }
}
