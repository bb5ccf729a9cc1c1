// Included by sample.wgsl and logprobs.wgsl (not a kernel of its own): one sequence
// row's sampling settings, the 8 words src/model/llama.ts writes per row. logprobs: 0
// for none, else 1 + the alternatives asked for (logprobs.wgsl); p0, p2 pad the row.
struct Sampling { temperature: f32, topP: f32, topK: u32, seed: u32, counter: u32, p0: u32, logprobs: u32, p2: u32, }
