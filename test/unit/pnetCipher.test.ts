import { describe, expect, test } from 'bun:test'
import XSalsa20 from 'xsalsa20'
import { boundPnetCipherMemory } from '../../src/p2p/pnetCipher.ts'

describe("the private network's cipher", () => {
  test('streams on several connections take megabyte reads without exhausting its memory, and their bytes do not change', () => {
    boundPnetCipherMemory()
    const key = new Uint8Array(32).fill(7)
    const nonces = [1, 2, 3].map((n) => new Uint8Array(24).fill(n))
    const streams = nonces.map((n) => XSalsa20(n, key))
    const sent: Uint8Array[][] = [[], [], []]
    const got: Uint8Array[][] = [[], [], []]
    // Reads of up to a megabyte, interleaved across three connections: before, the memory's maximum was
    // reached after about 150 of them and every stream of the process threw from then on.
    for (let i = 0; i < 300; i++) {
      const c = i % 3
      const input = new Uint8Array(300_000 + ((i * 7919) % 700_000)).map((_, j) => (i + j) & 0xff)
      sent[c].push(input)
      got[c].push(streams[c].update(input))
    }
    // The same bytes through a fresh stream in small pieces give the same keystream.
    for (let c = 0; c < 3; c++) {
      const reference = XSalsa20(nonces[c], key)
      for (let k = 0; k < 3; k++) {
        const input = sent[c][k]
        const out = new Uint8Array(input.length)
        for (let at = 0; at < input.length; at += 1000) out.set(reference.update(input.subarray(at, at + 1000)), at)
        expect(Buffer.from(got[c][k]).equals(Buffer.from(out))).toBe(true)
      }
    }
  })
})
