declare module 'parse-prometheus-text-format' {
  /** Parses Prometheus text exposition into metric families. */
  export default function parse(text: string): Array<{ name: string; help: string; type: string; metrics: unknown[] }>
}
