import XSalsa20 from 'xsalsa20'

/**
 * The largest piece @libp2p/pnet's cipher (the `xsalsa20` package) is given at once. Its WebAssembly
 * memory starts at 640 KiB and every stream keeps its own view of it; a stream whose view went stale
 * when another stream grew the memory grows it again by the whole difference, so a few large reads
 * across several connections reach the memory's 62.5 MiB maximum, after which every connection of the
 * process fails. Pieces this small fit the initial memory: it never grows.
 */
const PIECE = 64 * 1024

type Update = (input: Uint8Array, output?: Uint8Array) => Uint8Array

let installed = false

/**
 * Makes the private network's stream cipher take large inputs in pieces of at most 64 KiB. A stream
 * cipher's output does not depend on how its input is split, so the bytes on the wire are unchanged.
 * Safe to call more than once.
 */
export function boundPnetCipherMemory(): void {
  if (installed) return
  installed = true
  const proto = XSalsa20.prototype as unknown as { update: Update }
  const whole = proto.update
  proto.update = function (this: unknown, input: Uint8Array, output?: Uint8Array): Uint8Array {
    if (input.length <= PIECE) return whole.call(this, input, output)
    const out = output ?? new Uint8Array(input.length)
    for (let at = 0; at < input.length; at += PIECE) whole.call(this, input.subarray(at, at + PIECE), out.subarray(at, at + PIECE))
    return out
  }
}
