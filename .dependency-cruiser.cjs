/**
 * Layer rules for cairn (issue 18, "Habits that keep it this way"). Run with:
 *   npx depcruise src mod.ts --config .dependency-cruiser.cjs
 * Two invariants cannot be expressed as imports and live in scripts/lint-sql.ts instead:
 * no SQL outside src/store/, and no branching on the runtime outside src/runtime/.
 */

// Node built-ins that do I/O (or read the process's environment). node:buffer, node:util, node:crypto and the like are fine in src/model.
const IO_BUILTINS = '^(node:)?(fs|fs/promises|net|http|https|http2|child_process|dgram|dns|dns/promises|tls|cluster|worker_threads|readline|sqlite|os|process)$'

// Packages that open sockets, files or stores. @libp2p/peer-id and @libp2p/interface are allowed in src/model: they only parse
// and type peer ids and keys (src/model/head.ts uses them). To forbid every libp2p package, drop the (?!peer-id/|interface/) lookahead.
const IO_PACKAGES = '(^|/)node_modules/(libp2p/|helia/|@helia/|@chainsafe/|@libp2p/(?!peer-id/|interface/)|blockstore-fs/|datastore-fs/|hono/|pino/|pino-pretty/|prom-client/)'

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: "No import cycles, type-only ones included (there are none today; if one is ever needed, add viaOnly: { dependencyTypesNot: ['type-only'] }).",
      from: {},
      to: { circular: true }
    },
    {
      name: 'model-is-pure',
      severity: 'error',
      comment: 'src/model holds data shapes and pure functions: no file system, network, SQLite, runtime or service layer.',
      from: { path: '^src/model/' },
      to: {
        path: [IO_BUILTINS, '^bun:', IO_PACKAGES, '^src/(store|runtime|p2p|http|cli|node|sync|publish|housekeeping|datadir|plugins)/']
      }
    },
    {
      name: 'only-runtime-imports-runtime-apis',
      severity: 'error',
      comment: 'Only src/runtime/ touches bun:* and node:sqlite (the Hono adapter pattern); everything else goes through src/runtime/.',
      from: { path: '^(src/|mod\\.ts$|plugins/)', pathNot: '^src/runtime/' },
      to: { path: ['^bun:', '^(node:)?sqlite$'] }
    },
    {
      name: 'only-runtime-detects-runtime',
      severity: 'error',
      comment: 'The runtime detection module is private to src/runtime/: nothing else branches on Bun vs Deno.',
      from: { pathNot: '^src/runtime/' },
      to: { path: '^src/runtime/runtime\\.ts$' }
    },
    {
      name: 'store-is-below-services',
      severity: 'error',
      comment: 'src/store is the bottom layer (SQL repositories): it knows nothing of the services or front ends built on it.',
      from: { path: '^src/store/' },
      to: { path: '^src/(sync|publish|plugins|housekeeping|p2p|http|node|cli)/' }
    },
    {
      name: 'builtin-plugins-only-via-cli',
      severity: 'error',
      comment: 'The built-in plugins (top-level plugins/) are passed in by the CLI; the rest of src/ receives them as a parameter.',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^plugins/' }
    },
    {
      name: 'client-is-self-contained',
      severity: 'error',
      comment: 'src/client is the typed client backends import (Node 20+, Bun, Deno): it uses fetch, web streams and node:fs only, and nothing else of src/ or of node_modules.',
      from: { path: '^src/client/' },
      to: { pathNot: ['^src/client/', '^(node:)?(fs/promises|path)$'] }
    },
    {
      name: 'src-not-to-test-or-bench',
      severity: 'error',
      comment: 'Shipped code never imports tests, test helpers or benchmarks.',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|bench/node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings']
    },
    reporterOptions: {
      text: { highlightFocused: true }
    }
  }
}
