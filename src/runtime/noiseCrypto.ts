import { pureJsCrypto } from '@chainsafe/libp2p-noise'
import sodium from 'libsodium-wrappers'
import { runtimeName } from './runtime.ts'

type NoiseCrypto = typeof pureJsCrypto

/**
 * Noise's crypto for runtimes whose node:crypto has no ChaCha20-Poly1305 (Bun): the handshake stays on
 * noise's pure-JS implementation (a few operations per connection), and every transport message is
 * sealed and opened by libsodium's WebAssembly build instead of the pure-JS cipher, which was the largest
 * single cost of a receiving node (3× faster from 1 KiB up, 5× on 100-byte messages).
 * The wire format is the same ChaCha20-Poly1305 (IETF) either way.
 */
async function wasmNoiseCrypto(): Promise<NoiseCrypto> {
  await sodium.ready
  return {
    ...pureJsCrypto,
    chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
      return sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext.subarray(), ad, null, nonce, k)
    },
    chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k) {
      // Throws on a bad tag, as noise expects of a failed decryption.
      return sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, ciphertext.subarray(), ad, nonce, k)
    }
  }
}

/**
 * @returns the options for libp2p's noise on this runtime: Bun's node:crypto lacks ChaCha20-Poly1305, so
 * there the transport cipher runs in WebAssembly; elsewhere noise's defaults
 */
export async function noiseOptions(): Promise<{ crypto?: NoiseCrypto }> {
  return runtimeName() === 'bun' ? { crypto: await wasmNoiseCrypto() } : {}
}
