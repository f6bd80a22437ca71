import consoleCss from './assets/console.css' with { type: 'text' }
import consoleJs from './assets/console.js' with { type: 'text' }
import uplotJs from 'uplot/dist/uPlot.iife.min.js' with { type: 'text' }
import uplotCss from 'uplot/dist/uPlot.min.css' with { type: 'text' }

/** The console's static files, embedded in the binary as text: nothing is fetched from elsewhere at run time. */
export const ASSETS: Record<string, { type: string; body: string } | undefined> = {
  'console.css': { type: 'text/css; charset=utf-8', body: `${uplotCss}\n${consoleCss}` },
  'console.js': { type: 'text/javascript; charset=utf-8', body: consoleJs },
  'uplot.js': { type: 'text/javascript; charset=utf-8', body: uplotJs }
}
