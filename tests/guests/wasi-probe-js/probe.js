// A test fixture: reports, as labels, the clocks and random sources a
// JavaScript plugin (componentize-js, StarlingMonkey) sees under the host's
// WASI context, and waits on request.
//
// `handle` is `async`: componentize-js then runs the engine's event loop
// until the promise settles, so a timer in it is a real wait on a WASI
// monotonic-clock subscription. The `wait` config key picks one:
// - `sleep`: a five-second `setTimeout`;
// - `short-sleep`: 100 ms, then the clocks as labels (`slept:`);
// - `busy-wait`: spin until `performance.now()` has moved by a second.

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
    summary: 'Reports its clocks and random sources, waits on request (test fixture)',
    purposes: ['essential.service.operations'],
    fields: [],
    capabilities: ['add-label'],
    config: [
      {
        name: 'wait',
        description: 'sleep, short-sleep or busy-wait',
        required: false,
        defaultValue: undefined,
      },
    ],
  };
}

export async function handle(event) {
  const wait = new Map(event.config).get('wait');
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
  return timeAndChance().map(label);
}
