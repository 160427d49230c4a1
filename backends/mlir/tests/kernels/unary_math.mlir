// The math ops kernels use, on scalars and on vector<16xf32>: out[k, i] = f_k(x[i]) for
// f = exp, log, tanh, sqrt, erf, with out a [5 x n] buffer. The vector kernel needs n % 16 == 0.
func.func @unary_math(%xp: memref<f32>, %op: memref<f32>, %n_i: i64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %n = arith.index_cast %n_i : i64 to index
  %x = memref.reinterpret_cast %xp to offset: [0], sizes: [%n], strides: [1]
      : memref<f32> to memref<?xf32>
  %o = memref.reinterpret_cast %op to offset: [0], sizes: [5, %n], strides: [%n, 1]
      : memref<f32> to memref<5x?xf32, strided<[?, 1]>>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf32>
    %e = math.exp %v : f32
    %l = math.log %v : f32
    %t = math.tanh %v : f32
    %s = math.sqrt %v : f32
    %r = math.erf %v : f32
    memref.store %e, %o[%c0, %i] : memref<5x?xf32, strided<[?, 1]>>
    memref.store %l, %o[%c1, %i] : memref<5x?xf32, strided<[?, 1]>>
    memref.store %t, %o[%c2, %i] : memref<5x?xf32, strided<[?, 1]>>
    memref.store %s, %o[%c3, %i] : memref<5x?xf32, strided<[?, 1]>>
    memref.store %r, %o[%c4, %i] : memref<5x?xf32, strided<[?, 1]>>
  }
  return
}

func.func @unary_math_vec(%xp: memref<f32>, %op: memref<f32>, %n_i: i64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c16 = arith.constant 16 : index
  %n = arith.index_cast %n_i : i64 to index
  %x = memref.reinterpret_cast %xp to offset: [0], sizes: [%n], strides: [1]
      : memref<f32> to memref<?xf32>
  %o = memref.reinterpret_cast %op to offset: [0], sizes: [5, %n], strides: [%n, 1]
      : memref<f32> to memref<5x?xf32, strided<[?, 1]>>
  scf.for %i = %c0 to %n step %c16 {
    %v = vector.load %x[%i] : memref<?xf32>, vector<16xf32>
    %e = math.exp %v : vector<16xf32>
    %l = math.log %v : vector<16xf32>
    %t = math.tanh %v : vector<16xf32>
    %s = math.sqrt %v : vector<16xf32>
    %r = math.erf %v : vector<16xf32>
    vector.store %e, %o[%c0, %i] : memref<5x?xf32, strided<[?, 1]>>, vector<16xf32>
    vector.store %l, %o[%c1, %i] : memref<5x?xf32, strided<[?, 1]>>, vector<16xf32>
    vector.store %t, %o[%c2, %i] : memref<5x?xf32, strided<[?, 1]>>, vector<16xf32>
    vector.store %s, %o[%c3, %i] : memref<5x?xf32, strided<[?, 1]>>, vector<16xf32>
    vector.store %r, %o[%c4, %i] : memref<5x?xf32, strided<[?, 1]>>, vector<16xf32>
  }
  return
}
