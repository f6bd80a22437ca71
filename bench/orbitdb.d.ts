declare module "@orbitdb/core"
