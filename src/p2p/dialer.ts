import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Components } from '../node/components.ts'
import type { CairnIpfs } from './ipfs.ts'

/** How often the bootstrap peers are dialled again when not connected. */
const REDIAL_MS = 5000
/** How long one dial may take. */
const DIAL_TIMEOUT_MS = 10_000

export interface DialerInit {
  ipfs: CairnIpfs
  /** multiaddrs with /p2p/<peer id>, kept connected */
  bootstrap: readonly string[]
}

/**
 * Keeps this node connected: dials the bootstrap peers now and whenever they are not connected, and
 * every peer that discovery finds.
 */
export class Dialer {
  private readonly init: DialerInit
  private readonly components: Pick<Components, 'log'>
  private timer?: ReturnType<typeof setInterval>
  private readonly onDiscovery = (evt: CustomEvent<{ id: PeerId }>): void => {
    const libp2p = this.init.ipfs.libp2p
    const id = evt.detail.id
    if (libp2p.getConnections(id).length > 0) return
    void libp2p.dial(id, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).catch((err: Error) => {
      this.components.log.debug(`cannot dial discovered peer ${id.toString()}: ${err.message}`)
    })
  }

  constructor(init: DialerInit, components: Pick<Components, 'log'>) {
    this.init = init
    this.components = components
  }

  start(): void {
    if (this.timer != null) return
    this.init.ipfs.libp2p.addEventListener('peer:discovery', this.onDiscovery)
    this.dialBootstrap()
    this.timer = setInterval(() => {
      this.dialBootstrap()
    }, REDIAL_MS)
  }

  stop(): void {
    if (this.timer == null) return
    clearInterval(this.timer)
    this.timer = undefined
    this.init.ipfs.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
  }

  private dialBootstrap(): void {
    const libp2p = this.init.ipfs.libp2p
    for (const addr of this.init.bootstrap) {
      const ma = multiaddr(addr)
      const id = ma.getComponents().find((c) => c.name === 'p2p')?.value
      if (id != null && libp2p.getConnections(peerIdFromString(id)).length > 0) continue
      void libp2p.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).catch((err: Error) => {
        this.components.log.debug(`cannot reach bootstrap peer ${addr}: ${err.message}`)
      })
    }
  }
}
