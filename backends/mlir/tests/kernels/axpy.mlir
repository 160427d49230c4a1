// A plain scalar loop, y[i] += a · x[i], that only LLVM's loop vectoriser can make SIMD: with the
// host's target machine it should use the widest vectors the CPU has.
func.func @axpy(%xp: memref<f32>, %yp: memref<f32>, %n_i: i64, %a: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = arith.index_cast %n_i : i64 to index
  %x = memref.reinterpret_cast %xp to offset: [0], sizes: [%n], strides: [1]
      : memref<f32> to memref<?xf32>
  %y = memref.reinterpret_cast %yp to offset: [0], sizes: [%n], strides: [1]
      : memref<f32> to memref<?xf32>
  scf.for %i = %c0 to %n step %c1 {
    %xv = memref.load %x[%i] : memref<?xf32>
    %yv = memref.load %y[%i] : memref<?xf32>
    %p = arith.mulf %xv, %a : f32
    %s = arith.addf %p, %yv : f32
    memref.store %s, %y[%i] : memref<?xf32>
  }
  return
}
