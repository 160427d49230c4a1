//! Values while interpreting: `Val` is one point's value (a scalar, a row, a matrix); a `Slab`
//! holds a node's values over its loop nest for one (b, h) slice.

use attnc_ir::types::FrameIndex;

/// One point's value. Integers and booleans are exact f64s (booleans are 0 and 1).
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    S(f64),
    V(Vec<f64>),
    M {
        rows: usize,
        cols: usize,
        data: Vec<f64>,
    },
    /// `diag(v)`, only ever an operand of `@`.
    Diag(Vec<f64>),
}

impl Val {
    pub fn scalar(&self) -> f64 {
        match self {
            Val::S(x) => *x,
            // Types are checked when the graph is built; a scalar is asked for only of scalars.
            _ => f64::NAN,
        }
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Val {
        match self {
            Val::S(x) => Val::S(f(*x)),
            Val::V(v) => Val::V(v.iter().map(|x| f(*x)).collect()),
            Val::M { rows, cols, data } => Val::M {
                rows: *rows,
                cols: *cols,
                data: data.iter().map(|x| f(*x)).collect(),
            },
            Val::Diag(v) => Val::Diag(v.iter().map(|x| f(*x)).collect()),
        }
    }

    /// Combines two values elementwise, broadcasting a scalar over the other side.
    pub fn zip(&self, other: &Val, f: impl Fn(f64, f64) -> f64) -> Val {
        match (self, other) {
            (Val::S(a), b) => b.map(|y| f(*a, y)),
            (a, Val::S(b)) => a.map(|x| f(x, *b)),
            (Val::V(a), Val::V(b)) => Val::V(a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()),
            (
                Val::M {
                    rows,
                    cols,
                    data: a,
                },
                Val::M { data: b, .. },
            ) => Val::M {
                rows: *rows,
                cols: *cols,
                data: a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect(),
            },
            _ => Val::S(f64::NAN),
        }
    }

    /// The same shape with new elements.
    pub fn with_elements(&self, data: Vec<f64>) -> Val {
        match self {
            Val::S(_) => Val::S(data[0]),
            Val::V(_) => Val::V(data),
            Val::Diag(_) => Val::Diag(data),
            Val::M { rows, cols, .. } => Val::M {
                rows: *rows,
                cols: *cols,
                data,
            },
        }
    }

    pub fn elements(&self) -> &[f64] {
        match self {
            Val::S(x) => std::slice::from_ref(x),
            Val::V(v) | Val::Diag(v) => v,
            Val::M { data, .. } => data,
        }
    }
}

/// The per-point shape of a slab: scalar, row of `n`, or `rows x cols` matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointShape {
    Scalar,
    Vector(usize),
    Matrix(usize, usize),
}

impl PointShape {
    pub fn len(self) -> usize {
        match self {
            PointShape::Scalar => 1,
            PointShape::Vector(n) => n,
            PointShape::Matrix(r, c) => r * c,
        }
    }

    pub fn make(self, data: Vec<f64>) -> Val {
        match self {
            PointShape::Scalar => Val::S(data[0]),
            PointShape::Vector(_) => Val::V(data),
            PointShape::Matrix(rows, cols) => Val::M { rows, cols, data },
        }
    }
}

/// A point in the loop nest: the value of every frame index (unused ones stay 0).
pub type Point = [usize; 5];

pub fn at(p: &Point, fi: FrameIndex) -> usize {
    p[fi as usize]
}

/// Values of one node over the slice's loop nest (its indices other than b and h).
#[derive(Clone, Debug)]
pub struct Slab {
    pub axes: Vec<(FrameIndex, usize)>,
    strides: Vec<usize>,
    pub shape: PointShape,
    pub data: Vec<f64>,
}

impl Slab {
    pub fn new(axes: Vec<(FrameIndex, usize)>, shape: PointShape) -> Slab {
        let mut strides = vec![0; axes.len()];
        let mut stride = shape.len();
        for (k, (_, extent)) in axes.iter().enumerate().rev() {
            strides[k] = stride;
            stride *= extent;
        }
        Slab {
            axes,
            strides,
            shape,
            data: vec![f64::NAN; stride],
        }
    }

    fn offset(&self, p: &Point) -> usize {
        self.axes
            .iter()
            .zip(&self.strides)
            .map(|((fi, _), s)| at(p, *fi) * s)
            .sum()
    }

    pub fn get(&self, p: &Point) -> &[f64] {
        let o = self.offset(p);
        &self.data[o..o + self.shape.len()]
    }

    pub fn get_val(&self, p: &Point) -> Val {
        self.shape.make(self.get(p).to_vec())
    }

    pub fn scalar(&self, p: &Point) -> f64 {
        self.data[self.offset(p)]
    }

    pub fn set(&mut self, p: &Point, v: &[f64]) {
        let o = self.offset(p);
        let n = self.shape.len();
        self.data[o..o + n].copy_from_slice(&v[..n]);
    }

    /// Calls `f` on every point of the slab's loop nest, with `base` giving b and h.
    pub fn for_each_point(&self, base: &Point, mut f: impl FnMut(&Point)) {
        let mut p = *base;
        let n = self.axes.len();
        if self.axes.iter().any(|(_, e)| *e == 0) {
            return;
        }
        loop {
            f(&p);
            let mut k = n;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                let (fi, extent) = self.axes[k];
                p[fi as usize] += 1;
                if p[fi as usize] < extent {
                    break;
                }
                p[fi as usize] = 0;
            }
        }
    }
}
