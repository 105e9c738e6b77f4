#!/usr/bin/env node
// ONNX Runtime side of bench/bench_executor: throughput of one model at a given batch and
// thread count, printed as one JSON line.
//   node scripts/bench_onnxruntime.js MODEL.onnx BATCH THREADS SECONDS
// Input: uniform [0, 1) floats of the model's first input shape with the batch dim replaced.
'use strict';
const path = require('path');
const modulesDir = path.join(__dirname, 'node', 'node_modules');
const ort = require(path.join(modulesDir, 'onnxruntime-node'));
const version = require(path.join(modulesDir, 'onnxruntime-node', 'package.json')).version;

async function main() {
  const [model, batchArg, threadsArg, secondsArg] = process.argv.slice(2);
  if (!model) {
    console.error('usage: bench_onnxruntime.js MODEL.onnx BATCH THREADS SECONDS');
    process.exit(2);
  }
  const batch = parseInt(batchArg || '256', 10);
  const threads = parseInt(threadsArg || '2', 10);
  const seconds = parseFloat(secondsArg || '3');
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const name = session.inputNames[0];
  // The reference models are [batch, 1, 28, 28]; other shapes can be passed via SHAPE env.
  const sample = (process.env.SHAPE || '1,28,28').split(',').map(Number);
  const n = batch * sample.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; ++i) data[i] = Math.random();
  const feeds = { [name]: new ort.Tensor('float32', data, [batch, ...sample]) };
  for (let i = 0; i < 3; ++i) await session.run(feeds);  // warm-up
  let runs = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < seconds || runs < 5) {
    await session.run(feeds);
    ++runs;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  console.log(JSON.stringify({ peer: 'onnxruntime-node ' + version, batch, threads, runs,
                               seconds: elapsed, images_per_second: (runs * batch) / elapsed }));
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
