// WebGPU flag values (fixed by the spec). Modules can't rely on the GPUBufferUsage
// global at import time: under Bun it exists only after bun-webgpu's setupGlobals.
export const Usage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80, QUERY_RESOLVE: 0x200 } as const;
export const MapRead = 0x1;
