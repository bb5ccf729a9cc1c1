// Kernel scalars and storage structs by field name: the layouts are read from the WGSL
// structs themselves, so the host never mirrors a field order by hand.

/** The bits of x as an f32, as a u32 word (params and storage structs are u32 words). */
const f32buf = new Float32Array(1);
const u32view = new Uint32Array(f32buf.buffer);
export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32view[0];
}

export interface ParamLayout {
  names: string[];
  f32: boolean[];
}

/** A dispatch's scalars named as its kernel's Params fields; f32 fields take their number as is. */
export type ParamValues = Record<string, number>;

/** The Params struct of a kernel's (preprocessed) source; no fields when it has none. */
export function paramLayout(code: string): ParamLayout {
  return structLayout(code, "Params", false);
}

/** The fields of WGSL struct `name` in `code`, 32-bit scalars only (an error if absent and `required`). */
export function structLayout(code: string, name: string, required = true): ParamLayout {
  const m = new RegExp(`struct\\s+${name}\\s*\\{([^}]*)\\}`).exec(code);
  if (!m && required) throw new Error(`WGSL struct ${name} not found`);
  const fields = (m?.[1] ?? "").split(/[,;\n]/).map((f) => f.trim()).filter(Boolean).map((f) => f.split(":").map((x) => x.trim()));
  for (const [field, type] of fields) if (type !== "u32" && type !== "f32" && type !== "i32") throw new Error(`${name} field ${field}: ${type} is not a 32-bit scalar`);
  return { names: fields.map((f) => f[0]), f32: fields.map((f) => f[1] === "f32") };
}

/**
 * An array of a WGSL struct of u32 fields as the host writes it for a storage buffer:
 * fields by name, the layout read from the kernel source, so nothing mirrors it by hand.
 */
export class StructArray {
  readonly words: Uint32Array<ArrayBuffer>;
  private at: Record<string, number> = {};
  readonly stride: number;
  constructor(layout: ParamLayout, readonly length: number, private label: string) {
    if (layout.f32.some(Boolean)) throw new Error(`${label}: StructArray holds u32 fields only`);
    layout.names.forEach((n, i) => (this.at[n] = i));
    this.stride = layout.names.length;
    this.words = new Uint32Array(length * this.stride);
  }
  private field(name: string): number {
    const f = this.at[name];
    if (f === undefined) throw new Error(`${this.label} has no field ${name} (it has ${Object.keys(this.at).join(", ")})`);
    return f;
  }
  /** every field of element i */
  set(i: number, values: Record<string, number>) {
    if (Object.keys(values).length !== this.stride) throw new Error(`${this.label}: set needs all ${this.stride} fields`);
    for (const [k, v] of Object.entries(values)) this.words[i * this.stride + this.field(k)] = v >>> 0;
  }
  put(i: number, name: string, v: number) {
    this.words[i * this.stride + this.field(name)] = v >>> 0;
  }
  get(i: number, name: string): number {
    return this.words[i * this.stride + this.field(name)];
  }
}

/**
 * The u32 words of a kernel's Params from named values, in the struct's order; a
 * field missing or one the struct lacks is an error that names the kernel.
 */
export function paramWords(layout: ParamLayout, values: ParamValues, kernel: string): number[] {
  const { names, f32 } = layout;
  const words = new Array<number>(names.length);
  for (let i = 0; i < names.length; i++) {
    const x = values[names[i]];
    if (x === undefined) throw new Error(`${kernel}: Params field ${names[i]} is not set`);
    words[i] = f32[i] ? f32Bits(x) : x >>> 0;
  }
  if (Object.keys(values).length !== names.length) {
    const extra = Object.keys(values).filter((n) => !names.includes(n));
    throw new Error(`${kernel}: Params has no field ${extra.join(", ")} (it has ${names.join(", ")})`);
  }
  return words;
}
