import { runtimeName } from './runtime.ts'

/**
 * Makes `import … from specifier` resolve to `exports` in every module loaded later, whatever node_modules
 * holds (or lacks) beside it: the compiled binary gives plugin files the SDK this way. On Deno, which
 * resolves bare specifiers through an import map or npm, it does nothing.
 *
 * @param specifier the bare module name, such as `@cairn/plugin`
 * @param exports the module's named exports
 */
export async function provideModule(specifier: string, exports: Record<string, unknown>): Promise<void> {
  if (runtimeName() !== 'bun') return
  const { plugin } = await import('bun')
  plugin({
    name: `provide ${specifier}`,
    setup(build) {
      build.module(specifier, () => ({ exports, loader: 'object' }))
    }
  })
}
