// The console's static files are imported as text (`with { type: 'text' }`, Bun and Deno) and embedded.
declare module '*.css' {
  const text: string
  export default text
}
declare module '*/assets/console.js' {
  const text: string
  export default text
}
declare module 'uplot/dist/uPlot.iife.min.js' {
  const text: string
  export default text
}
