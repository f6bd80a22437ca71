/** The stream cipher @libp2p/pnet uses (the `xsalsa20` package ships no types). */
declare module 'xsalsa20' {
  interface XSalsa20Stream {
    update(input: Uint8Array, output?: Uint8Array): Uint8Array
    finalize(): void
  }
  interface XSalsa20 {
    (nonce: Uint8Array, key: Uint8Array): XSalsa20Stream
    prototype: XSalsa20Stream
  }
  const XSalsa20: XSalsa20
  export default XSalsa20
}
