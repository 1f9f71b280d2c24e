// `fixture-wasi-probe-js`: reports, as labels, what the host's deny-all
// WASI context lets a JavaScript plugin reach at run time: the network
// (fetch, WebSocket), Node's and Deno's ways to files, the environment and
// processes, the clock and the random source; and writes to standard output
// and error. With `call` set to `fetch` it tries the network instead.
//
// componentize-js (StarlingMonkey) pre-initialises the engine at build
// time; the labels show what a script can reach when the host runs the
// component. The Python counterpart is tests/guests/wasi-probe-py.

/** A global's kind: `absent`, or `function`, `object`, … */
function present(name) {
  const value = globalThis[name];
  return value === undefined ? 'absent' : typeof value;
}

export function describe() {
  return {
    id: 'fixture-wasi-probe-js',
    version: '0.1.0',
    summary: 'Reports what WASI lets a JavaScript plugin reach (test fixture)',
    purposes: ['essential.service.operations'],
    fields: [],
    capabilities: ['add-label'],
    config: [
      {
        name: 'call',
        description: '`fetch` to try the network instead of reporting',
        required: false,
        defaultValue: undefined,
      },
    ],
  };
}

export function handle(event) {
  // With `call` set to `fetch`, it tries the network: the import behind
  // `fetch` is not there (built with `--disable http fetch-event`), and the
  // call traps.
  if (new Map(event.config).get('call') === 'fetch') {
    fetch('http://127.0.0.1:9/');
    return [{ tag: 'add-label', val: 'fetch:returned' }];
  }
  console.log('probe says hello on stdout');
  console.error('probe says hello on stderr');
  // A year after 2020 and before 2200: a real, harmless clock.
  const now = Date.now() / 1000;
  const clock = now > 1_577_836_800 && now < 7_258_118_400 ? 'ok' : 'odd';
  const random = Math.random();
  const labels = [
    `fetch:${present('fetch')}`,
    `websocket:${present('WebSocket')}`,
    // Node's and Deno's ways to files, the environment and processes do not
    // exist.
    `require:${present('require')}`,
    `process:${present('process')}`,
    `deno:${present('Deno')}`,
    `clock:${clock}`,
    `random:${random >= 0 && random < 1 ? 'ok' : 'odd'}`,
  ];
  return labels.map((label) => ({ tag: 'add-label', val: label }));
}
