//! Calling JIT-compiled kernels safely: arguments are checked against the launch signature, then
//! passed through the engine's packed wrapper.
//!
//! What a call checks: the argument count, each argument's kind, each buffer's element type and
//! mutability, and that each buffer is at least as long as the extent its signature gives for
//! these integer arguments. What it trusts, like any JIT trusts its compiler: that the generated
//! kernel touches no element beyond that extent and writes only buffers the signature marks
//! written. Given that, a call from safe code cannot corrupt memory, and borrows keep buffers
//! alive and unaliased for its duration.

use crate::error::{ArgumentError, MlirError};
use attnc_kernel_abi::{Access, ElementType, Extent, KernelSignature, Param};
use std::{ffi::c_void, marker::PhantomData};

/// `_mlir_<name>(void **args)`: reads parameter `i` from the address in `args[i]`.
pub(crate) type PackedFn = unsafe extern "C" fn(*mut *mut c_void);

/// A compiled kernel. `Send + Sync`: it is reentrant machine code (generated kernels keep no
/// global state), so threads may call it at once, each on its own buffers.
#[derive(Clone, Copy)]
pub struct Kernel<'jit> {
    signature: &'jit KernelSignature,
    entry: PackedFn,
}

/// One argument of a kernel call.
pub enum Arg<'a> {
    Buffer(BufferArg<'a>),
    Int(i64),
    F32(f32),
}

/// A borrowed buffer, read-only or writable, of one of the element types a signature names.
pub struct BufferArg<'a> {
    address: *mut c_void,
    len: usize,
    element: ElementType,
    writable: bool,
    borrow: PhantomData<&'a mut [u8]>,
}

/// Rust element types that match an [`ElementType`] bit for bit.
pub trait Element: Copy + sealed::Sealed {
    const TYPE: ElementType;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($rust:ty => $element:ident),*) => {$(
        impl sealed::Sealed for $rust {}
        impl Element for $rust {
            const TYPE: ElementType = ElementType::$element;
        }
    )*};
}
elements!(f32 => F32, f64 => F64, i32 => I32, i64 => I64, u8 => Bool);

impl<'a> Arg<'a> {
    /// A buffer the kernel only reads.
    pub fn input<T: Element>(data: &'a [T]) -> Self {
        Arg::Buffer(BufferArg {
            address: data.as_ptr().cast_mut().cast(),
            len: data.len(),
            element: T::TYPE,
            writable: false,
            borrow: PhantomData,
        })
    }

    /// A buffer the kernel may write (and read).
    pub fn output<T: Element>(data: &'a mut [T]) -> Self {
        Arg::Buffer(BufferArg {
            address: data.as_mut_ptr().cast(),
            len: data.len(),
            element: T::TYPE,
            writable: true,
            borrow: PhantomData,
        })
    }

    fn describe(&self) -> String {
        match self {
            Arg::Buffer(buffer) if buffer.writable => {
                format!("a writable {:?} buffer", buffer.element)
            }
            Arg::Buffer(buffer) => format!("a read-only {:?} buffer", buffer.element),
            Arg::Int(_) => "an i64".to_owned(),
            Arg::F32(_) => "an f32".to_owned(),
        }
    }
}

/// One parameter's value as the packed wrapper loads it: from offset 0, with the parameter's
/// type, so a union (not bytes) keeps it right on any endianness.
#[repr(C)]
#[derive(Clone, Copy)]
union Slot {
    pointer: *mut c_void,
    int: i64,
    float: f32,
}

impl<'jit> Kernel<'jit> {
    pub(crate) fn new(signature: &'jit KernelSignature, entry: PackedFn) -> Self {
        Self { signature, entry }
    }

    pub fn signature(&self) -> &'jit KernelSignature {
        self.signature
    }

    /// Runs the kernel to completion on the calling thread.
    pub fn call(&self, args: &[Arg<'_>]) -> Result<(), MlirError> {
        let mut slots = self.check(args).map_err(|source| MlirError::Arguments {
            kernel: self.signature.name.clone(),
            source,
        })?;
        let mut addresses: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|slot| std::ptr::from_mut(slot).cast())
            .collect();
        // SAFETY: `check` matched every argument to its parameter's LLVM type (which `compile`
        // matched to the function) and every buffer's length to its extent. `addresses` holds
        // one live slot per parameter, and the borrows in `args` outlive the call.
        unsafe { (self.entry)(addresses.as_mut_ptr()) };
        Ok(())
    }

    /// Checks `args` against the signature and returns the values to pass.
    fn check(&self, args: &[Arg<'_>]) -> Result<Vec<Slot>, ArgumentError> {
        let params = &self.signature.params;
        if args.len() != params.len() {
            return Err(ArgumentError::Count {
                expected: params.len(),
                got: args.len(),
            });
        }
        let mut ints = Vec::with_capacity(params.len());
        let mut slots = Vec::with_capacity(params.len());
        for (index, (param, arg)) in params.iter().zip(args).enumerate() {
            let slot = match (param, arg) {
                (Param::Buffer { .. }, Arg::Buffer(buffer)) => Slot {
                    pointer: buffer.address,
                },
                (Param::Int { .. }, Arg::Int(value)) => Slot { int: *value },
                (Param::F32 { .. }, Arg::F32(value)) => Slot { float: *value },
                _ => {
                    return Err(ArgumentError::Kind {
                        index,
                        name: param.name().to_owned(),
                        expected: param.describe(),
                        got: arg.describe(),
                    });
                }
            };
            ints.push(match arg {
                Arg::Int(value) => Some(*value),
                _ => None,
            });
            slots.push(slot);
        }
        for (param, arg) in params.iter().zip(args) {
            if let (
                Param::Buffer {
                    name,
                    element,
                    access,
                    extent,
                },
                Arg::Buffer(buffer),
            ) = (param, arg)
            {
                self.check_buffer(name, *element, *access, extent, buffer, &ints)?;
            }
        }
        Ok(slots)
    }

    fn check_buffer(
        &self,
        name: &str,
        element: ElementType,
        access: Access,
        extent: &[Extent],
        buffer: &BufferArg<'_>,
        ints: &[Option<i64>],
    ) -> Result<(), ArgumentError> {
        if buffer.element != element {
            return Err(ArgumentError::Element {
                name: name.to_owned(),
                element: buffer.element,
                expected: element,
            });
        }
        if access != Access::Read && !buffer.writable {
            return Err(ArgumentError::ReadOnly {
                name: name.to_owned(),
            });
        }
        let bad = |detail: String| ArgumentError::BadExtent {
            name: name.to_owned(),
            detail,
        };
        let mut needed: u64 = 1;
        for dim in extent {
            let factor = match dim {
                Extent::Fixed(value) => *value,
                Extent::Param(param) => {
                    let value = self
                        .signature
                        .int_value(ints, param)
                        .ok_or_else(|| bad(format!("`{param}` has no value")))?;
                    u64::try_from(value).map_err(|_| bad(format!("`{param}` = {value}")))?
                }
            };
            needed = needed
                .checked_mul(factor)
                .ok_or_else(|| bad("the product overflows u64".to_owned()))?;
        }
        if (buffer.len as u64) < needed {
            return Err(ArgumentError::TooShort {
                name: name.to_owned(),
                len: buffer.len,
                needed,
            });
        }
        Ok(())
    }
}
