// Runs an ONNX model with ONNX Runtime (onnxruntime-node from scripts/node) on raw float32 input
// and writes the first output as raw float32. Used by tests that check compsearch's exports.
//
// usage: node scripts/ort_run.js MODEL.onnx INPUT.f32 DIM0,DIM1,... OUTPUT.f32
// Prints {"output_shape": [...]} on stdout.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, 'node', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [modelPath, inputPath, dims, outputPath] = process.argv.slice(2);
  if (!outputPath) {
    console.error('usage: node scripts/ort_run.js MODEL.onnx INPUT.f32 DIM0,DIM1,... OUTPUT.f32');
    process.exit(2);
  }
  const shape = dims.split(',').map(Number);
  const buf = fs.readFileSync(inputPath);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const options = {intraOpNumThreads: 1, interOpNumThreads: 1};
  // COMPSEARCH_ORT_OPT=disabled turns graph optimisations off (QDQ fusion can change numerics).
  if (process.env.COMPSEARCH_ORT_OPT) options.graphOptimizationLevel = process.env.COMPSEARCH_ORT_OPT;
  const session = await ort.InferenceSession.create(modelPath, options);
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', Float32Array.from(data), shape);
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  fs.writeFileSync(outputPath, Buffer.from(out.data.buffer, out.data.byteOffset, out.data.byteLength));
  console.log(JSON.stringify({output_shape: out.dims}));
}

main().catch((e) => {
  console.error(String(e));
  process.exit(1);
});
