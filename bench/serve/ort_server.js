// ort_server.js - the benchmark peer for `ferry serve`: a Node.js HTTP server that runs one ONNX
// model with onnxruntime-node (CPU) behind the same KServe v2 JSON infer endpoint, so that wrk
// can post the same body to both. Not a product: one model, FP32 inputs, JSON only.
//
//   node bench/serve/ort_server.js MODEL NAME [--port P] [--threads T]
//
// Prints {"port": P} on stdout once listening (port 0 picks a free one).
'use strict';
const http = require('http');
const ort = require('onnxruntime-node');

function parse(argv) {
  const a = { port: 0, threads: 1 };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') a.port = parseInt(argv[++i], 10);
    else if (argv[i] === '--threads') a.threads = parseInt(argv[++i], 10);
    else pos.push(argv[i]);
  }
  if (pos.length !== 2) throw new Error('usage: ort_server.js MODEL NAME [--port P] [--threads T]');
  [a.model, a.name] = pos;
  return a;
}

function flatten(data, out) {
  for (const v of data) {
    if (Array.isArray(v)) flatten(v, out);
    else out.push(v);
  }
  return out;
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json',
                          'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function main() {
  const a = parse(process.argv.slice(2));
  const session = await ort.InferenceSession.create(a.model, {
    intraOpNumThreads: a.threads, interOpNumThreads: 1, executionProviders: ['cpu'] });
  const inferPath = '/v2/models/' + a.name + '/infer';

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v2/health/ready') return reply(res, 200, {});
    if (req.method !== 'POST' || req.url !== inferPath) {
      return reply(res, 404, { error: 'not found' });
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        const feeds = {};
        for (const t of body.inputs) {
          if (t.datatype !== 'FP32') throw new Error('only FP32 inputs');
          const data = Float32Array.from(flatten(t.data, []));
          feeds[t.name] = new ort.Tensor('float32', data, t.shape);
        }
        const results = await session.run(feeds);
        const outputs = session.outputNames.map((name) => ({
          name, datatype: 'FP32', shape: results[name].dims,
          data: Array.from(results[name].data) }));
        const out = { model_name: a.name, model_version: '1', outputs };
        if (body.id !== undefined) out.id = body.id;
        reply(res, 200, out);
      } catch (e) {
        reply(res, 400, { error: String(e.message || e) });
      }
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(a.port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
