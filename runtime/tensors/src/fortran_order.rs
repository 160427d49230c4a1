//! Reordering a column-major (Fortran-order) array to row-major, since NumPy writes
//! `np.asfortranarray` data as-is and [`crate::HostTensor`] is always row-major.

/// Returns the row-major copy of `data`, a column-major array of `shape` whose elements are
/// `element_size` bytes each. `data.len()` must equal the element count times `element_size`.
pub(crate) fn to_row_major(data: &[u8], shape: &[usize], element_size: usize) -> Vec<u8> {
    // Column-major strides, in elements: the first axis is contiguous.
    let strides: Vec<usize> = shape
        .iter()
        .scan(1, |stride, &dim| {
            let this = *stride;
            *stride *= dim;
            Some(this)
        })
        .collect();
    let mut out = Vec::with_capacity(data.len());
    // Walk the row-major multi-index like an odometer (last axis fastest), keeping the
    // column-major offset in step instead of recomputing it per element.
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..data.len() / element_size {
        let start = offset * element_size;
        out.extend_from_slice(&data[start..start + element_size]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            offset -= strides[axis] * shape[axis];
            index[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_a_matrix() {
        // [[1, 2, 3], [4, 5, 6]] stored column by column.
        let fortran = [1, 4, 2, 5, 3, 6];
        assert_eq!(to_row_major(&fortran, &[2, 3], 1), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn reorders_three_axes_with_multibyte_elements() {
        let shape = [2, 3, 4];
        // Element (i, j, k) has value 100i + 10j + k, stored as a big u16 so byte order matters.
        let value = |i: usize, j: usize, k: usize| (1000 + 100 * i + 10 * j + k) as u16;
        let mut fortran = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    fortran.extend(value(i, j, k).to_le_bytes());
                }
            }
        }
        let mut row_major = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    row_major.extend(value(i, j, k).to_le_bytes());
                }
            }
        }
        assert_eq!(to_row_major(&fortran, &shape, 2), row_major);
    }

    #[test]
    fn leaves_vectors_scalars_and_empty_arrays_alone() {
        assert_eq!(to_row_major(&[1, 2, 3], &[3], 1), [1, 2, 3]);
        assert_eq!(to_row_major(&[9, 8], &[], 2), [9, 8]);
        assert_eq!(to_row_major(&[], &[2, 0, 3], 4), Vec::<u8>::new());
    }
}
