// Explicit 512-bit vectors: dots[r] = Σ_j a[r, j] · b[j] (vector.fma, then vector.reduction) and
// fused[r, j] = a[r, j] · b[j] + 1 (vector.fma, vector.store), with cols % 16 == 0.
func.func @vector_rows(%ap: memref<f32>, %bp: memref<f32>, %dp: memref<f32>, %fp: memref<f32>,
                       %rows_i: i64, %cols_i: i64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %rows = arith.index_cast %rows_i : i64 to index
  %cols = arith.index_cast %cols_i : i64 to index
  %a = memref.reinterpret_cast %ap to offset: [0], sizes: [%rows, %cols], strides: [%cols, 1]
      : memref<f32> to memref<?x?xf32, strided<[?, 1]>>
  %f = memref.reinterpret_cast %fp to offset: [0], sizes: [%rows, %cols], strides: [%cols, 1]
      : memref<f32> to memref<?x?xf32, strided<[?, 1]>>
  %b = memref.reinterpret_cast %bp to offset: [0], sizes: [%cols], strides: [1]
      : memref<f32> to memref<?xf32>
  %d = memref.reinterpret_cast %dp to offset: [0], sizes: [%rows], strides: [1]
      : memref<f32> to memref<?xf32>
  %zero = arith.constant dense<0.0> : vector<16xf32>
  %ones = arith.constant dense<1.0> : vector<16xf32>
  scf.for %i = %c0 to %rows step %c1 {
    %acc = scf.for %j = %c0 to %cols step %c16 iter_args(%s = %zero) -> (vector<16xf32>) {
      %va = vector.load %a[%i, %j] : memref<?x?xf32, strided<[?, 1]>>, vector<16xf32>
      %vb = vector.load %b[%j] : memref<?xf32>, vector<16xf32>
      %fused = vector.fma %va, %vb, %ones : vector<16xf32>
      vector.store %fused, %f[%i, %j] : memref<?x?xf32, strided<[?, 1]>>, vector<16xf32>
      %next = vector.fma %va, %vb, %s : vector<16xf32>
      scf.yield %next : vector<16xf32>
    }
    %dot = vector.reduction <add>, %acc : vector<16xf32> into f32
    memref.store %dot, %d[%i] : memref<?xf32>
  }
  return
}
