declare module '@orbitdb/core'
