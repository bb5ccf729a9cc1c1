// Included by sample.wgsl and logprobs.wgsl (not a kernel of its own): reductions over
// the WG threads of a workgroup through the includer's `redv`, `redi` (WG entries each)
// and `wf`. Call them in uniform control flow (they hold barriers).

// the sum (or with isMax the largest) of v over the threads, to every thread
fn reduce(t: u32, v: f32, isMax: bool) -> f32 {
  redv[t] = v;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (t < k) { redv[t] = select(redv[t] + redv[t + k], max(redv[t], redv[t + k]), isMax); }
    workgroupBarrier();
  }
  if (t == 0u) { wf = redv[0]; }
  return workgroupUniformLoad(&wf);
}

// leaves in redv[0], redi[0] the largest v over the threads and its i (the lowest i on ties)
fn argmaxReduce(t: u32, v: f32, i: u32) {
  redv[t] = v;
  redi[t] = i;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (t < k) {
      let ov = redv[t + k];
      let oi = redi[t + k];
      if (ov > redv[t] || (ov == redv[t] && oi < redi[t])) { redv[t] = ov; redi[t] = oi; }
    }
    workgroupBarrier();
  }
}
