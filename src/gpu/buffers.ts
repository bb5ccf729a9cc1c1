// Buffer helpers: storage allocation, uploads, readback, and a pool of reusable
// buffers by size class so steady-state steps allocate nothing.

import { MapRead, Usage } from "./flags.ts";

export const STORAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

export function createStorage(device: GPUDevice, size: number, label: string): GPUBuffer {
  // Bindings must be non-empty and 4-byte aligned; round up to 16 for vec4 access.
  return device.createBuffer({ label, size: Math.max(16, Math.ceil(size / 16) * 16), usage: STORAGE });
}

export function uploadStorage(device: GPUDevice, data: ArrayBufferView, label: string): GPUBuffer {
  const b = createStorage(device, data.byteLength, label);
  writeAligned(device, b, 0, data);
  return b;
}

/** queue.writeBuffer needs a multiple of 4 bytes; pad the tail. */
export function writeAligned(device: GPUDevice, buf: GPUBuffer, offset: number, data: ArrayBufferView) {
  const n = data.byteLength;
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, n);
  if (n % 4 === 0) {
    device.queue.writeBuffer(buf, offset, bytes, 0, n);
  } else {
    const padded = new Uint8Array(Math.ceil(n / 4) * 4);
    padded.set(bytes);
    device.queue.writeBuffer(buf, offset, padded, 0, padded.length);
  }
}

/** Reads `size` bytes of `src` at `offset` (a copy into a staging buffer, then map). */
export async function readBuffer(device: GPUDevice, src: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
  const aligned = Math.ceil(size / 4) * 4;
  const staging = device.createBuffer({ size: aligned, usage: Usage.MAP_READ | Usage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, offset, staging, 0, aligned);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(MapRead);
  const out = staging.getMappedRange().slice(0, size);
  staging.unmap();
  staging.destroy();
  return out;
}

/**
 * Buffers that grow on demand and keep their identity while big enough, so cached
 * bind groups stay valid across steps. `onRealloc` lets the owner drop stale bind groups.
 */
export class GrowableBuffers {
  private bufs = new Map<string, GPUBuffer>();
  constructor(private device: GPUDevice, private onRealloc: () => void) {}

  get(name: string, bytes: number): GPUBuffer {
    const b = this.bufs.get(name);
    if (b && b.size >= bytes) return b;
    if (b) {
      this.onRealloc();
      b.destroy();
    }
    // Grow geometrically so a slowly rising batch size doesn't reallocate every step.
    const size = Math.max(bytes, b ? b.size * 2 : 0);
    const nb = createStorage(this.device, size, name);
    this.bufs.set(name, nb);
    return nb;
  }

  destroy() {
    for (const b of this.bufs.values()) b.destroy();
    this.bufs.clear();
  }
}
