// Row softmax with a tanh soft-cap, y[r, :] = softmax(cap · tanh(x[r, :] / cap)), over a
// [rows x cols] f32 buffer passed as bare pointers plus sizes. Three passes over each row: max,
// exp and sum, scale by 1 / sum.
func.func @softmax_rows(%xp: memref<f32>, %yp: memref<f32>, %rows_i: i64, %cols_i: i64, %cap: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %rows = arith.index_cast %rows_i : i64 to index
  %cols = arith.index_cast %cols_i : i64 to index
  %x = memref.reinterpret_cast %xp to offset: [0], sizes: [%rows, %cols], strides: [%cols, 1]
      : memref<f32> to memref<?x?xf32, strided<[?, 1]>>
  %y = memref.reinterpret_cast %yp to offset: [0], sizes: [%rows, %cols], strides: [%cols, 1]
      : memref<f32> to memref<?x?xf32, strided<[?, 1]>>
  %ninf = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  scf.for %i = %c0 to %rows step %c1 {
    %max = scf.for %j = %c0 to %cols step %c1 iter_args(%acc = %ninf) -> (f32) {
      %v = memref.load %x[%i, %j] : memref<?x?xf32, strided<[?, 1]>>
      %d = arith.divf %v, %cap : f32
      %t = math.tanh %d : f32
      %s = arith.mulf %t, %cap : f32
      %m = arith.maximumf %acc, %s : f32
      scf.yield %m : f32
    }
    %sum = scf.for %j = %c0 to %cols step %c1 iter_args(%acc = %zero) -> (f32) {
      %v = memref.load %x[%i, %j] : memref<?x?xf32, strided<[?, 1]>>
      %d = arith.divf %v, %cap : f32
      %t = math.tanh %d : f32
      %s = arith.mulf %t, %cap : f32
      %z = arith.subf %s, %max : f32
      %e = math.exp %z : f32
      memref.store %e, %y[%i, %j] : memref<?x?xf32, strided<[?, 1]>>
      %a = arith.addf %acc, %e : f32
      scf.yield %a : f32
    }
    %inv = arith.divf %one, %sum : f32
    scf.for %j = %c0 to %cols step %c1 {
      %e = memref.load %y[%i, %j] : memref<?x?xf32, strided<[?, 1]>>
      %p = arith.mulf %e, %inv : f32
      memref.store %p, %y[%i, %j] : memref<?x?xf32, strided<[?, 1]>>
    }
  }
  return
}
