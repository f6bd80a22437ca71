import type { Plugin } from '../src/plugins/types.ts'
import workspaceAccess from './workspace-access.ts'

/** The plugins built into the binary. */
export const BUILTIN_PLUGINS: Plugin[] = [workspaceAccess]
