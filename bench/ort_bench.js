// ort_bench.js - times ONNX Runtime (onnxruntime-node, CPU) on one model, the reference that
// bench/run.py compares Ferry with. Prints one JSON line like `ferry bench --json`.
//
//   node ort_bench.js MODEL --input NAME:DTYPE:D1,D2,... [--threads T] [--seconds S]
//                     [--warmup N] [--cold]
// --cold: create the session, run once, exit (the caller times the whole process).
'use strict';
const ort = require('onnxruntime-node');

function parse(argv) {
  const a = { inputs: [], threads: 1, seconds: 5, warmup: 10, cold: false };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === '--input') a.inputs.push(argv[++i]);
    else if (s === '--threads') a.threads = parseInt(argv[++i], 10);
    else if (s === '--seconds') a.seconds = parseFloat(argv[++i]);
    else if (s === '--warmup') a.warmup = parseInt(argv[++i], 10);
    else if (s === '--cold') a.cold = true;
    else if (!a.model) a.model = s;
    else throw new Error('unexpected argument ' + s);
  }
  if (!a.model) throw new Error('usage: ort_bench.js MODEL --input NAME:DTYPE:DIMS ...');
  return a;
}

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
  uint8: Uint8Array, int8: Int8Array, bool: Uint8Array,
};

function makeFeeds(specs) {
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const feeds = {};
  for (const spec of specs) {
    const [name, dtype, dimsText] = spec.split(':');
    const dims = dimsText === '' ? [] : dimsText.split(',').map(Number);
    const count = dims.reduce((x, y) => x * y, 1);
    const data = new ARRAYS[dtype](count);
    for (let i = 0; i < count; i++) {
      if (dtype === 'int64') data[i] = BigInt(Math.floor(rnd() * 10));
      else if (dtype.startsWith('float')) data[i] = rnd() * 2 - 1;
      else data[i] = Math.floor(rnd() * 10);
    }
    feeds[name] = new ort.Tensor(dtype, data, dims);
  }
  return feeds;
}

async function main() {
  const a = parse(process.argv.slice(2));
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(a.model, {
    intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const feeds = makeFeeds(a.inputs);
  let t = process.hrtime.bigint();
  await session.run(feeds);
  const firstMs = Number(process.hrtime.bigint() - t) / 1e6;
  if (a.cold) return;
  for (let i = 0; i < a.warmup; i++) await session.run(feeds);
  const samples = [];
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(a.seconds * 1e9));
  for (;;) {
    const s = process.hrtime.bigint();
    await session.run(feeds);
    const e = process.hrtime.bigint();
    samples.push(Number(e - s) / 1e6);
    if (e >= end && samples.length >= 5) break;
  }
  const total = Number(process.hrtime.bigint() - start) / 1e9;
  samples.sort((x, y) => x - y);
  const pct = (p) => samples[Math.min(samples.length - 1, Math.max(0, Math.ceil(p / 100 * samples.length) - 1))];
  console.log(JSON.stringify({
    model: a.model, threads: a.threads, runs: samples.length, load_ms: loadMs,
    first_run_ms: firstMs, median_ms: pct(50), p90_ms: pct(90), p99_ms: pct(99),
    min_ms: samples[0], runs_per_s: samples.length / total,
    peak_rss_mib: process.resourceUsage().maxRSS / 1024,
  }));
}

main().catch((e) => { console.error('ort_bench: ' + e.message); process.exit(1); });
