//! One array in NumPy's `.npy` format, to and from [`HostTensor`]: the unit that both `.npy`
//! files and the members of `.npz` archives are made of. `npyz` parses and writes the header;
//! the data section is the elements' raw bytes, which this module copies (swapping big-endian
//! ones and reordering Fortran-order ones).

use std::io::{self, Write};
use std::panic;

use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, TypeStr, WriterBuilder};

use crate::error::ArrayProblem;
use crate::host_tensor::element_count;
use crate::{ElementType, HostTensor, fortran_order};

/// Decodes a whole `.npy` image. Takes the bytes by value so that the common case (little-endian,
/// C order) becomes the tensor's storage without a second copy.
pub(crate) fn decode(mut bytes: Vec<u8>) -> Result<HostTensor, ArrayProblem> {
    let (header, header_len) = read_header(&bytes)?;
    let (dtype, big_endian) = element_type(&header.dtype())?;
    let shape = header
        .shape()
        .iter()
        .map(|&dim| usize::try_from(dim))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| ArrayProblem::Corrupt("a dimension does not fit in memory".to_owned()))?;
    let expected = element_count(&shape)
        .ok()
        .and_then(|count| count.checked_mul(dtype.size_bytes()))
        .ok_or_else(|| ArrayProblem::Corrupt(format!("shape {shape:?} is too large to address")))?;
    let available = bytes.len() - header_len;
    if available != expected {
        return Err(ArrayProblem::Corrupt(format!(
            "the header describes {expected} bytes of data ({dtype}, shape {shape:?}), \
             but {available} follow it"
        )));
    }
    bytes.drain(..header_len);
    if big_endian {
        for element in bytes.chunks_exact_mut(dtype.size_bytes()) {
            element.reverse();
        }
    }
    if header.order() == Order::Fortran && shape.len() > 1 {
        bytes = fortran_order::to_row_major(&bytes, &shape, dtype.size_bytes());
    }
    Ok(HostTensor::new(dtype, shape, bytes)?)
}

/// The length of the whole `.npy` image whose start is `prefix`, from its header; `None` when
/// `prefix` ends inside the header. Lets an archive reader check a member's declared size
/// before inflating its data.
pub(crate) fn image_len(prefix: &[u8]) -> Result<Option<u64>, ArrayProblem> {
    let (header, header_len) = match read_header(prefix) {
        Ok(parsed) => parsed,
        Err(ArrayProblem::Corrupt(detail)) if detail.contains("cut short") => return Ok(None),
        Err(problem) => return Err(problem),
    };
    let (dtype, _) = element_type(&header.dtype())?;
    let mut bytes = dtype.size_bytes() as u128;
    for &dim in header.shape() {
        bytes = bytes.saturating_mul(u128::from(dim));
    }
    let total = bytes.saturating_add(header_len as u128);
    Ok(Some(u64::try_from(total).unwrap_or(u64::MAX)))
}

/// Writes `tensor` as a complete `.npy` image (C order, little-endian).
pub(crate) fn encode(tensor: &HostTensor, out: &mut impl Write) -> io::Result<()> {
    let type_str: TypeStr = type_str(tensor.dtype()).parse().map_err(io::Error::other)?;
    // usize is at most 64 bits on every Rust target, so this never truncates.
    let shape: Vec<u64> = tensor.shape().iter().map(|&dim| dim as u64).collect();
    npyz::WriteOptions::new_header_only()
        .dtype(DType::Plain(type_str))
        .shape(&shape)
        .writer(&mut *out)
        .write_header_only()?;
    out.write_all(tensor.data())
}

/// The NumPy type string each element type is written as.
///
/// bf16 is written as `|V2`, a 2-byte void: NumPy has no bf16, and `ml_dtypes.bfloat16` arrays
/// load back as that same void type. Compared with `<u2` (a uint16 view) it has two merits:
/// attnc reads its own output back as bf16 rather than as integers, and a NumPy user who
/// forgets to convert gets an error (void arrays refuse arithmetic and `astype(float)`) instead
/// of integers like 16256 in place of 1.0. Without ml_dtypes, `v.view(np.uint16)` then
/// `(u.astype(np.uint32) << 16).view(np.float32)` gives the exact float32 values.
fn type_str(dtype: ElementType) -> &'static str {
    match dtype {
        ElementType::F32 => "<f4",
        ElementType::F16 => "<f2",
        ElementType::Bf16 => "|V2",
        ElementType::I32 => "<i4",
        ElementType::F64 => "<f8",
        ElementType::I64 => "<i8",
        ElementType::U16 => "<u2",
        ElementType::Bool => "|b1",
    }
}

/// Parses the header at the start of `bytes`; returns it with its length in bytes.
fn read_header(bytes: &[u8]) -> Result<(NpyHeader, usize), ArrayProblem> {
    let mut rest = bytes;
    // Last resort, not error handling by design: npyz multiplies the shape's dimensions with
    // plain `*`, which panics on overflow where overflow checks are on (debug and test builds),
    // e.g. for a damaged header claiming shape (2**40, 2**40). Nothing else here can unwind,
    // and release builds wrap instead, which `decode`'s own checked size catches.
    let parsed = panic::catch_unwind(move || {
        NpyHeader::from_reader(&mut rest).map(|header| (header, rest.len()))
    });
    match parsed {
        Ok(Ok((header, remaining))) => Ok((header, bytes.len() - remaining)),
        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Err(
            ArrayProblem::Corrupt("the .npy header is cut short".to_owned()),
        ),
        // npyz relays the Python-literal parser's multi-line report; its first line says enough.
        Ok(Err(error)) => {
            let error = error.to_string();
            let first_line = error.lines().next().unwrap_or_default().trim_end();
            Err(ArrayProblem::Corrupt(format!(
                "bad .npy header: {first_line}"
            )))
        }
        Err(_) => Err(ArrayProblem::Corrupt(
            "the .npy header describes an array too large to address".to_owned(),
        )),
    }
}

/// Maps a NumPy dtype to an element type, and says whether its bytes are big-endian.
fn element_type(dtype: &DType) -> Result<(ElementType, bool), ArrayProblem> {
    let DType::Plain(type_str) = dtype else {
        return Err(ArrayProblem::UnsupportedDtype(format!(
            "{} (a structured array)",
            dtype.descr()
        )));
    };
    let element = match (type_str.type_char(), type_str.size_field()) {
        (TypeChar::Float, 4) => ElementType::F32,
        (TypeChar::Float, 2) => ElementType::F16,
        (TypeChar::Float, 8) => ElementType::F64,
        (TypeChar::Int, 4) => ElementType::I32,
        (TypeChar::Int, 8) => ElementType::I64,
        (TypeChar::Uint, 2) => ElementType::U16,
        (TypeChar::Bool, 1) => ElementType::Bool,
        // ml_dtypes' bfloat16 saves as '<V2'; NumPy itself writes a 2-byte void as '|V2'.
        (TypeChar::RawData, 2) => ElementType::Bf16,
        _ => return Err(ArrayProblem::UnsupportedDtype(describe(type_str))),
    };
    Ok((element, type_str.endianness() == Endianness::Big))
}

/// Names a NumPy type the way a NumPy user knows it: `'<i2' (int16)`.
fn describe(type_str: &TypeStr) -> String {
    let kind = match type_str.type_char() {
        TypeChar::Int => "int",
        TypeChar::Uint => "uint",
        TypeChar::Float => "float",
        TypeChar::Complex => "complex",
        TypeChar::RawData => "void",
        _ => return format!("'{type_str}'"),
    };
    let bits = type_str.size_field().saturating_mul(8);
    format!("'{type_str}' ({kind}{bits})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_only(descr: &str, shape: &str, fortran: bool) -> Vec<u8> {
        let text = format!(
            "{{'descr': {descr}, 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        let padded_len = (10 + text.len() + 1).next_multiple_of(64) - 10;
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend(u16::try_from(padded_len).unwrap_or(u16::MAX).to_le_bytes());
        bytes.extend(text.as_bytes());
        bytes.resize(10 + padded_len - 1, b' ');
        bytes.push(b'\n');
        bytes
    }

    fn decode_problem(bytes: Vec<u8>) -> String {
        match decode(bytes) {
            Ok(tensor) => format!("decoded {tensor:?}"),
            Err(ArrayProblem::Corrupt(detail)) => format!("corrupt: {detail}"),
            Err(ArrayProblem::UnsupportedDtype(dtype)) => format!("unsupported: {dtype}"),
        }
    }

    #[test]
    fn swaps_big_endian_elements() {
        let mut bytes = header_only("'>i4'", "(2,)", false);
        bytes.extend([0, 0, 1, 2, 0xFF, 0xFF, 0xFF, 0xFE]);
        let tensor = decode(bytes).map(|t| t.to_f64_vec());
        assert_eq!(tensor.ok(), Some(vec![258.0, -2.0]));
    }

    #[test]
    fn reads_ml_dtypes_bfloat16_as_bf16() {
        let mut bytes = header_only("'<V2'", "(2,)", false);
        bytes.extend([0xC0, 0x3F, 0x10, 0xC0]);
        let tensor = decode(bytes);
        assert_eq!(
            tensor.map(|t| (t.dtype(), t.to_f64_vec())).ok(),
            Some((ElementType::Bf16, vec![1.5, -2.25]))
        );
    }

    #[test]
    fn names_unsupported_dtypes_as_numpy_does() {
        let mut bytes = header_only("'<i2'", "(1,)", false);
        bytes.extend([1, 0]);
        assert_eq!(decode_problem(bytes), "unsupported: '<i2' (int16)");
        let record = header_only("[('a', '<f4'), ('b', '<i4')]", "(0,)", false);
        assert_eq!(
            decode_problem(record),
            "unsupported: [('a', '<f4'), ('b', '<i4'), ] (a structured array)"
        );
        let object = header_only("'|O'", "(0,)", false);
        assert_eq!(decode_problem(object), "unsupported: '|O'");
    }

    #[test]
    fn rejects_data_of_the_wrong_length() {
        let mut bytes = header_only("'<f4'", "(2, 2)", false);
        bytes.extend([0; 12]);
        assert_eq!(
            decode_problem(bytes.clone()),
            "corrupt: the header describes 16 bytes of data (f32, shape [2, 2]), but 12 follow it"
        );
        bytes.extend([0; 8]);
        assert!(decode_problem(bytes).contains("but 20 follow it"));
    }

    #[test]
    fn rejects_shapes_too_large_to_address() {
        // The product overflows u64: npyz panics in debug builds and wraps in release ones.
        let huge = "(4294967296, 4294967296, 4294967296)";
        let problem = decode_problem(header_only("'<f4'", huge, false));
        assert!(problem.starts_with("corrupt: "), "{problem}");
        // Fits in u64 but not in memory alongside the element size.
        let big = decode_problem(header_only("'<f8'", "(4611686018427387904, 4)", false));
        assert!(big.starts_with("corrupt: "), "{big}");
    }
}
