/** A plain SQL identifier (a table, column or schema name cairn builds SQL with): letters, digits, underscores. */
export const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/

/** @returns `name` as a quoted SQL identifier (its double quotes doubled) */
export const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`
