//! The chunked form's shared memory: every per-chunk array as rows of f32 at a byte offset,
//! sized from the chunk length, the block's value columns and each state's rows. Plain numbers,
//! so the chunk can be shrunk to fit the target before any code is written, and tested here.

/// An array of `rows` rows of `stride` 4-byte elements at byte `at` of the block's shared
/// memory; element (r, c) is at `r * stride + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arr {
    pub at: usize,
    pub rows: usize,
    pub stride: usize,
}

impl Arr {
    pub fn len(&self) -> usize {
        self.rows * self.stride
    }
}

/// What sizes a state's arrays.
#[derive(Clone, Debug)]
pub(super) struct StateShape {
    /// The state's rows (its first axis).
    pub rows: usize,
    /// A matrix state (over the block's value columns) rather than a vector.
    pub matrix: bool,
    /// A per-row (diagonal) decay rather than a scalar one (or none).
    pub per_row: bool,
    pub terms: usize,
}

/// One state's arrays.
#[derive(Clone, Debug)]
pub(super) struct StateArrs {
    pub rows: usize,
    /// The rows padded to whole steps of the products (16, or 32 for a per-row decay, whose
    /// scores split the rows between a warp's lanes); the padding holds zeros.
    pub padded: usize,
    pub matrix: bool,
    pub per_row: bool,
    /// Per step of the chunk (and row, for a per-row decay): the decay, its running product
    /// from the chunk's start to the step (inclusive), and from the step (exclusive) to the
    /// chunk's end.
    pub decay: Arr,
    pub to_step: Arr,
    pub to_end: Arr,
    /// A scalar decay's `D[t][s] = Π_{u=s+1..t} a_u` for s <= t (products, never ratios).
    pub between: Option<Arr>,
    /// `[padded][columns]` for a matrix state, `[1][padded]` for a vector.
    pub state: Arr,
    pub terms: Vec<TermArrs>,
}

/// One rank-one term's arrays: its scale per step, left vector per step (over the rows) and,
/// for a matrix state, right vector per step (over the block's columns).
#[derive(Clone, Debug)]
pub(super) struct TermArrs {
    pub scale: Arr,
    pub left: Arr,
    pub right: Option<Arr>,
}

/// One read-out's arrays: its row per step, its weights against each term of its state
/// (`[t][s]`, zero for s > t) and its result per step.
#[derive(Clone, Debug)]
pub(super) struct ReadoutArrs {
    pub state: usize,
    pub query: Arr,
    pub weights: Vec<Arr>,
    /// `[chunk][columns]` for a matrix state, `[chunk][1]` for a vector.
    pub out: Arr,
}

#[derive(Clone, Debug)]
pub(super) struct Arrays {
    pub states: Vec<StateArrs>,
    pub readouts: Vec<ReadoutArrs>,
    /// Per step input computed by the block (a map), `[chunk][len]`.
    pub steps: Vec<Arr>,
    /// Per per-head value, `[1][len]`.
    pub per_head: Vec<Arr>,
    pub bytes: usize,
}

/// Elements per row for `width` values: rows of 8 or more get 4 more, so that the 8 rows a
/// fragment load reads at once start in different banks.
pub(super) fn stride(width: usize) -> usize {
    if width >= 8 { width + 4 } else { width }
}

/// Rows of a state padded for its products.
pub(super) fn padded_rows(rows: usize, per_row: bool) -> usize {
    rows.next_multiple_of(if per_row { 32 } else { 16 }).max(16)
}

struct Bump {
    bytes: usize,
}

impl Bump {
    fn take(&mut self, rows: usize, width: usize) -> Arr {
        let at = self.bytes.next_multiple_of(16);
        let a = Arr {
            at,
            rows,
            stride: stride(width),
        };
        self.bytes = at + 4 * a.len();
        a
    }
}

/// The arrays of a chunk of `chunk` steps over `columns` value columns per block, for the
/// given states, read-outs (by state) and the lengths of the step and per-head values.
pub(super) fn arrays(
    chunk: usize,
    columns: usize,
    states: &[StateShape],
    readouts: &[usize],
    steps: &[usize],
    per_head: &[usize],
) -> Arrays {
    let mut m = Bump { bytes: 0 };
    let per_head = per_head.iter().map(|&len| m.take(1, len)).collect();
    let steps = steps.iter().map(|&len| m.take(chunk, len)).collect();
    let states: Vec<StateArrs> = states
        .iter()
        .map(|s| {
            let padded = padded_rows(s.rows, s.per_row);
            let w = if s.per_row { padded } else { 1 };
            let (decay, to_step, to_end) = (m.take(chunk, w), m.take(chunk, w), m.take(chunk, w));
            let between = (!s.per_row).then(|| m.take(chunk, chunk));
            let state = if s.matrix {
                m.take(padded, columns)
            } else {
                m.take(1, padded)
            };
            let terms = (0..s.terms)
                .map(|_| TermArrs {
                    scale: m.take(chunk, 1),
                    left: m.take(chunk, padded),
                    right: s.matrix.then(|| m.take(chunk, columns)),
                })
                .collect();
            StateArrs {
                rows: s.rows,
                padded,
                matrix: s.matrix,
                per_row: s.per_row,
                decay,
                to_step,
                to_end,
                between,
                state,
                terms,
            }
        })
        .collect();
    let readouts = readouts
        .iter()
        .map(|&k| {
            let s = &states[k];
            ReadoutArrs {
                state: k,
                query: m.take(chunk, s.padded),
                weights: (0..s.terms.len()).map(|_| m.take(chunk, chunk)).collect(),
                out: m.take(chunk, if s.matrix { columns } else { 1 }),
            }
        })
        .collect();
    Arrays {
        states,
        readouts,
        steps,
        per_head,
        bytes: m.bytes.next_multiple_of(16),
    }
}

/// Value columns per block: the states' columns in whole 8-column blocks of the products, at
/// most 64 (more blocks per (b, h) for wider states keep more of the GPU busy).
pub(super) fn block_columns(cols: usize) -> usize {
    cols.next_multiple_of(8).min(64)
}

/// The chunk lengths to try, longest first: 16-step tiles of the products for a block's four
/// warps, at most the plan's chunk (and 16 at least).
pub(super) fn chunk_candidates(planned: usize) -> Vec<usize> {
    let v: Vec<usize> = [64, 32, 16].into_iter().filter(|c| *c <= planned).collect();
    if v.is_empty() { vec![16] } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(d: usize) -> Vec<StateShape> {
        vec![StateShape {
            rows: d,
            matrix: true,
            per_row: false,
            terms: 1,
        }]
    }

    #[test]
    fn arrays_are_aligned_disjoint_and_padded() {
        let a = arrays(64, 64, &retention(128), &[0], &[128, 1], &[1]);
        let mut all: Vec<Arr> = a.per_head.clone();
        all.extend(&a.steps);
        for s in &a.states {
            all.extend([s.decay, s.to_step, s.to_end, s.state]);
            all.extend(s.between);
            for t in &s.terms {
                all.push(t.scale);
                all.push(t.left);
                all.extend(t.right);
            }
        }
        for r in &a.readouts {
            all.push(r.query);
            all.push(r.out);
            all.extend(&r.weights);
        }
        all.sort_by_key(|x| x.at);
        for w in all.windows(2) {
            assert!(w[0].at + 4 * w[0].len() <= w[1].at, "{w:?} overlap");
        }
        assert!(all.iter().all(|x| x.at.is_multiple_of(16)));
        let last = all.last().unwrap();
        assert!(last.at + 4 * last.len() <= a.bytes);
        // The state: 128 rows of 64 columns (+4 for the banks); the scores 64 x (64 + 4).
        assert_eq!(
            (a.states[0].state.rows, a.states[0].state.stride),
            (128, 68)
        );
        assert_eq!(a.readouts[0].weights[0].stride, 68);
        assert_eq!(a.states[0].between.unwrap().rows, 64);
    }

    #[test]
    fn a_per_row_decay_pads_rows_to_a_warp_and_has_no_between_matrix() {
        let s = [StateShape {
            rows: 40,
            matrix: true,
            per_row: true,
            terms: 1,
        }];
        let a = arrays(32, 16, &s, &[0], &[], &[]);
        assert_eq!(a.states[0].padded, 64);
        assert_eq!(a.states[0].decay.stride, 68);
        assert!(a.states[0].between.is_none());
        assert_eq!(a.readouts[0].query.stride, 68);
    }

    #[test]
    fn a_vector_state_has_one_row_and_a_column_of_outputs() {
        let s = [StateShape {
            rows: 5,
            matrix: false,
            per_row: false,
            terms: 1,
        }];
        let a = arrays(16, 8, &s, &[0], &[], &[]);
        assert_eq!(a.states[0].padded, 16);
        assert_eq!((a.states[0].state.rows, a.states[0].state.stride), (1, 20));
        assert!(a.states[0].terms[0].right.is_none());
        assert_eq!((a.readouts[0].out.rows, a.readouts[0].out.stride), (16, 1));
    }

    #[test]
    fn columns_and_chunks() {
        assert_eq!(block_columns(256), 64);
        assert_eq!(block_columns(40), 40);
        assert_eq!(block_columns(5), 8);
        assert_eq!(chunk_candidates(64), vec![64, 32, 16]);
        assert_eq!(chunk_candidates(48), vec![32, 16]);
        assert_eq!(chunk_candidates(8), vec![16]);
    }
}
