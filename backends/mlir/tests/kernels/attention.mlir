// o = softmax(scale · q kᵀ) v for one (batch, head) slice with head dim 64, one query row at a
// time with an online softmax over the keys: a running max m, a running sum l and a 64-wide
// accumulator held in four vector<16xf32> registers, rescaled by exp(m_old - m_new) per key.
func.func @attention(%qp: memref<f32>, %kp: memref<f32>, %vp: memref<f32>, %op: memref<f32>,
                     %nq_i: i64, %nk_i: i64, %scale: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %c32 = arith.constant 32 : index
  %c48 = arith.constant 48 : index
  %nq = arith.index_cast %nq_i : i64 to index
  %nk = arith.index_cast %nk_i : i64 to index
  %q = memref.reinterpret_cast %qp to offset: [0], sizes: [%nq, 64], strides: [64, 1]
      : memref<f32> to memref<?x64xf32>
  %k = memref.reinterpret_cast %kp to offset: [0], sizes: [%nk, 64], strides: [64, 1]
      : memref<f32> to memref<?x64xf32>
  %v = memref.reinterpret_cast %vp to offset: [0], sizes: [%nk, 64], strides: [64, 1]
      : memref<f32> to memref<?x64xf32>
  %o = memref.reinterpret_cast %op to offset: [0], sizes: [%nq, 64], strides: [64, 1]
      : memref<f32> to memref<?x64xf32>
  %zero = arith.constant dense<0.0> : vector<16xf32>
  %ninf = arith.constant 0xFF800000 : f32
  %fzero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  scf.for %i = %c0 to %nq step %c1 {
    %q0 = vector.load %q[%i, %c0] : memref<?x64xf32>, vector<16xf32>
    %q1 = vector.load %q[%i, %c16] : memref<?x64xf32>, vector<16xf32>
    %q2 = vector.load %q[%i, %c32] : memref<?x64xf32>, vector<16xf32>
    %q3 = vector.load %q[%i, %c48] : memref<?x64xf32>, vector<16xf32>
    %r:6 = scf.for %j = %c0 to %nk step %c1
        iter_args(%m = %ninf, %l = %fzero, %a0 = %zero, %a1 = %zero, %a2 = %zero, %a3 = %zero)
        -> (f32, f32, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
      // s = scale · (q_i · k_j)
      %k0 = vector.load %k[%j, %c0] : memref<?x64xf32>, vector<16xf32>
      %k1 = vector.load %k[%j, %c16] : memref<?x64xf32>, vector<16xf32>
      %k2 = vector.load %k[%j, %c32] : memref<?x64xf32>, vector<16xf32>
      %k3 = vector.load %k[%j, %c48] : memref<?x64xf32>, vector<16xf32>
      %p0 = arith.mulf %q0, %k0 : vector<16xf32>
      %p1 = vector.fma %q1, %k1, %p0 : vector<16xf32>
      %p2 = vector.fma %q2, %k2, %p1 : vector<16xf32>
      %p3 = vector.fma %q3, %k3, %p2 : vector<16xf32>
      %dot = vector.reduction <add>, %p3 : vector<16xf32> into f32
      %s = arith.mulf %dot, %scale : f32
      // online softmax: new max, rescale factor for the old state, weight of this key
      %m_new = arith.maximumf %m, %s : f32
      %dm = arith.subf %m, %m_new : f32
      %alpha = math.exp %dm : f32
      %ds = arith.subf %s, %m_new : f32
      %w = math.exp %ds : f32
      %l_old = arith.mulf %l, %alpha : f32
      %l_new = arith.addf %l_old, %w : f32
      %alpha_v = vector.broadcast %alpha : f32 to vector<16xf32>
      %w_v = vector.broadcast %w : f32 to vector<16xf32>
      // acc = alpha · acc + w · v_j
      %v0 = vector.load %v[%j, %c0] : memref<?x64xf32>, vector<16xf32>
      %v1 = vector.load %v[%j, %c16] : memref<?x64xf32>, vector<16xf32>
      %v2 = vector.load %v[%j, %c32] : memref<?x64xf32>, vector<16xf32>
      %v3 = vector.load %v[%j, %c48] : memref<?x64xf32>, vector<16xf32>
      %s0 = arith.mulf %a0, %alpha_v : vector<16xf32>
      %s1 = arith.mulf %a1, %alpha_v : vector<16xf32>
      %s2 = arith.mulf %a2, %alpha_v : vector<16xf32>
      %s3 = arith.mulf %a3, %alpha_v : vector<16xf32>
      %n0 = vector.fma %w_v, %v0, %s0 : vector<16xf32>
      %n1 = vector.fma %w_v, %v1, %s1 : vector<16xf32>
      %n2 = vector.fma %w_v, %v2, %s2 : vector<16xf32>
      %n3 = vector.fma %w_v, %v3, %s3 : vector<16xf32>
      scf.yield %m_new, %l_new, %n0, %n1, %n2, %n3
          : f32, f32, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>
    }
    %inv = arith.divf %one, %r#1 : f32
    %inv_v = vector.broadcast %inv : f32 to vector<16xf32>
    %o0 = arith.mulf %r#2, %inv_v : vector<16xf32>
    %o1 = arith.mulf %r#3, %inv_v : vector<16xf32>
    %o2 = arith.mulf %r#4, %inv_v : vector<16xf32>
    %o3 = arith.mulf %r#5, %inv_v : vector<16xf32>
    vector.store %o0, %o[%i, %c0] : memref<?x64xf32>, vector<16xf32>
    vector.store %o1, %o[%i, %c16] : memref<?x64xf32>, vector<16xf32>
    vector.store %o2, %o[%i, %c32] : memref<?x64xf32>, vector<16xf32>
    vector.store %o3, %o[%i, %c48] : memref<?x64xf32>, vector<16xf32>
  }
  return
}
