import { runtimeName } from './runtime.ts'

declare const Deno: { stdout: { write: (b: Uint8Array) => Promise<number> }; stderr: { write: (b: Uint8Array) => Promise<number> } }

async function writeAll(fd: 1 | 2, text: string): Promise<void> {
  if (runtimeName() === 'bun') {
    // The callback runs once the chunk was handed to the OS (Bun.write(Bun.stdout) writes at its own
    // offset into a redirected file, which garbles output, so it is not used).
    const stream = fd === 1 ? process.stdout : process.stderr
    await new Promise<void>((resolve, reject) => {
      stream.write(text, (err) => {
        if (err != null) reject(err)
        else resolve()
      })
    })
    return
  }
  const out = fd === 1 ? Deno.stdout : Deno.stderr
  const bytes = new TextEncoder().encode(text)
  for (let n = 0; n < bytes.length; ) n += await out.write(bytes.subarray(n))
}

/**
 * Writes lines to stdout or stderr in order, batching those written in one turn, and lets the caller
 * wait until every byte has left the process: a large `cairn events --json` into a pipe must not be
 * cut short by the exit (process.stdout.write to a pipe is asynchronous and exit drops what is queued).
 */
class LineWriter {
  private readonly fd: 1 | 2
  private buffer = ''
  private pending: Promise<void> = Promise.resolve()

  constructor(fd: 1 | 2) {
    this.fd = fd
  }

  line(text: string): void {
    this.write(text + '\n')
  }

  /** Writes `text` as it is (a terminal's progress bar redraws a line with a carriage return). */
  write(text: string): void {
    const first = this.buffer === ''
    this.buffer += text
    if (first) {
      this.pending = this.pending.then(async () => {
        const chunk = this.buffer
        this.buffer = ''
        await writeAll(this.fd, chunk)
      })
    }
  }

  /** Resolves when everything written so far is out. */
  async flush(): Promise<void> {
    await this.pending
  }
}

export const stdout = new LineWriter(1)
export const stderr = new LineWriter(2)

/** @returns whether stderr is a terminal (a person watches it) */
export function stderrIsTerminal(): boolean {
  return process.stderr.isTTY === true
}
