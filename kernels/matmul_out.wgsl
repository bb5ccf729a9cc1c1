// Included by gemm.wgsl and gemv.wgsl (not a kernel of its own): the output epilogue
// Y[yi] = v (+ B[colOff + n] with BIAS) (+ Y[yi] with RESIDUAL). Needs Y, B and P.colOff
// in the including kernel.
fn storeOut(yi: u32, n: u32, v: f32) {
  var out = v;
#if BIAS
  out += B[P.colOff + n];
#endif
#if RESIDUAL
  out += Y[yi];
#endif
  Y[yi] = out;
}
