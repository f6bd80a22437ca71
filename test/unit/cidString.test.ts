import { describe, expect, test } from 'bun:test'
import { heapStats } from 'bun:jsc'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { cidFromBytes, cidString } from '../../src/util/cidString.ts'

const digests = await Promise.all(Array.from({ length: 2000 }, (_, i) => sha256.digest(new Uint8Array([i & 255, i >> 8]))))
const v1 = digests.map((d, i) => CID.create(1, i % 2 === 0 ? raw.code : 0x70, d))
const v0 = CID.create(0, 0x70, digests[0])

/** @returns the live strings per item that `make` returns, all held at once */
function stringsPer(make: (i: number) => string): number {
  Bun.gc(true)
  const before = heapStats().objectTypeCounts.string ?? 0
  const held = v1.map((_, i) => make(i))
  Bun.gc(true)
  const per = ((heapStats().objectTypeCounts.string ?? 0) - before) / held.length
  expect(held.length).toBe(v1.length)
  return per
}

describe('CIDs printed as flat strings', () => {
  test('cidString and cidFromBytes give the string multiformats gives, for CIDv1 and CIDv0', () => {
    expect(v1.every((c) => cidString(c) === c.toString())).toBe(true)
    expect(v1.every((c) => cidFromBytes(c.bytes.slice()).toString() === c.toString() && cidFromBytes(c.bytes.slice()).equals(c))).toBe(true)
    expect([cidString(v0), cidFromBytes(v0.bytes.slice()).toString()]).toEqual([v0.toString(), v0.toString()])
    expect(() => cidFromBytes(new Uint8Array([1, 0x55, 0x12, 40, 1]))).toThrow()
  })

  test("a CID of a megabyte (an identity CID a member linked) gives multiformats' string, not a RangeError", () => {
    const long = CID.createV1(raw.code, identity.digest(new Uint8Array(1024 * 1024).fill(7)))
    expect([cidString(long) === long.toString(), cidFromBytes(long.bytes.slice()).equals(long)]).toEqual([true, true])
  })

  test('each string is one cell, not a rope of one per character', () => {
    const fresh = v1.map((c) => c.bytes.slice())
    expect({ cidString: stringsPer((i) => cidString(CID.decode(fresh[i]))) < 2, cidFromBytes: stringsPer((i) => cidFromBytes(fresh[i]).toString()) < 2 }).toEqual({
      cidString: true,
      cidFromBytes: true
    })
  })
})
