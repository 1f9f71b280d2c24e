// `fixture-wasi-probe-js`: reports, as labels, what the host's deny-all
// WASI context lets a JavaScript plugin (componentize-js, StarlingMonkey)
// reach at run time: the network (fetch, WebSocket), Node's and Deno's ways
// to files, the environment and processes, and the clocks and random
// sources it sees; writes to standard output and error; and waits on
// request. The Python counterpart is tests/guests/wasi-probe-py.
//
// `handle` is `async`: componentize-js then runs the engine's event loop
// until the promise settles, so a timer in it is a real wait on a WASI
// monotonic-clock subscription. Configuration picks what it does instead
// of reporting:
// - `call` = `fetch`: try the network (the import behind `fetch` is not
//   there, built with `--disable http fetch-event`: the call traps);
// - `wait` = `sleep`: a five-second `setTimeout`;
// - `wait` = `short-sleep`: 100 ms, then the clocks as labels (`slept:`);
// - `wait` = `busy-wait`: spin until `performance.now()` has moved by a
//   second.

/** A global's kind: `absent`, or `function`, `object`, … */
function present(name) {
  const value = globalThis[name];
  return value === undefined ? 'absent' : typeof value;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The clocks and the random sources, as labels. */
function timeAndChance() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return [
    `date:${Date.now()}`,
    `perf:${performance.now()}`,
    `crypto:${hex(bytes)}`,
    `math:${Math.random()}`,
  ];
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function label(text) {
  return { tag: 'add-label', val: text };
}

export function describe() {
  return {
    id: 'fixture-wasi-probe-js',
    version: '0.1.0',
    summary: 'Reports what WASI lets a JavaScript plugin reach, waits on request (test fixture)',
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
      {
        name: 'wait',
        description: 'sleep, short-sleep or busy-wait',
        required: false,
        defaultValue: undefined,
      },
    ],
    // What the probe reports: whether each global is there (its `typeof`),
    // whether the clock and random source look sane, and what a wait did.
    // The readings of the clocks and of chance (`date:`, `perf:`, `crypto:`,
    // `math:`, `slept:`) are long numbers and hex: no rule admits them, so
    // the host refuses them, and a test reads them from the refused actions.
    labels: [
      ...['fetch', 'websocket', 'require', 'process', 'deno'].map((name) => ({
        tag: 'pattern',
        val: { prefix: `${name}:`, alphabet: 'letters', maxLength: 16 },
      })),
      ...['clock:ok', 'clock:odd', 'random:ok', 'random:odd', 'slept', 'clock moved'].map(
        (name) => ({ tag: 'exact', val: name }),
      ),
    ],
  };
}

export async function handle(event) {
  const config = new Map(event.config);
  if (config.get('call') === 'fetch') {
    fetch('http://127.0.0.1:9/');
    return [label('fetch:returned')];
  }
  const wait = config.get('wait');
  if (wait === 'sleep') {
    await sleep(5000);
    return [label('slept')];
  }
  if (wait === 'short-sleep') {
    const before = performance.now();
    await sleep(100);
    return [label(`slept:${performance.now() - before}`), ...timeAndChance().map(label)];
  }
  if (wait === 'busy-wait') {
    const until = performance.now() + 1000;
    while (performance.now() < until) {
      // spin
    }
    return [label('clock moved')];
  }
  console.log('probe says hello on stdout');
  console.error('probe says hello on stderr');
  // A year after 2020 and before 2200: a plausible clock (the host's is
  // fixed at the event's time).
  const now = Date.now() / 1000;
  const clock = now > 1_577_836_800 && now < 7_258_118_400 ? 'ok' : 'odd';
  const random = Math.random();
  return [
    `fetch:${present('fetch')}`,
    `websocket:${present('WebSocket')}`,
    // Node's and Deno's ways to files, the environment and processes do not
    // exist.
    `require:${present('require')}`,
    `process:${present('process')}`,
    `deno:${present('Deno')}`,
    `clock:${clock}`,
    `random:${random >= 0 && random < 1 ? 'ok' : 'odd'}`,
    ...timeAndChance(),
  ].map(label);
}
