#!/usr/bin/env node
// generate.mjs: greedy generation with llama.cpp itself (the prebuilt binaries of
// node-llama-cpp 3.21.1, installed by `node tools/llamacpp/logits.mjs install`)
// on a GGUF model, for the held-out prompts of `make demo`.
//
//   node tools/demomodel/generate.mjs MODEL.gguf TEST.jsonl [SHOW]
//
// Each prompt is tokenized by the model's own vocabulary with BOS prepended (as
// lora-train does), then extended one argmax token at a time (at most 8) until
// EOS. Prints SHOW examples and "k/N correct".
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const VERSION = '3.21.1';

function installDir() {
  const base = process.env.LORAKIT_NPM_CACHE ||
    path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'lorakit', 'npm');
  return path.join(base, `node-llama-cpp-${VERSION}`);
}

const [modelPath, dataPath, showArg] = process.argv.slice(2);
if (!modelPath || !dataPath) {
  process.stderr.write('usage: generate.mjs MODEL.gguf TEST.jsonl [SHOW]\n');
  process.exit(2);
}
const show = Number(showArg ?? 3);
const maxNew = 8;
try {
  const require = createRequire(path.join(installDir(), 'package.json'));
  const { getLlama, LlamaLogLevel } = await import(require.resolve('node-llama-cpp'));
  const llama = await getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel: LlamaLogLevel.error, maxThreads: 2,
  });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const examples = fs.readFileSync(dataPath, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  const context = await model.createContext({ contextSize: 64, batchSize: 64, sequences: 1, threads: 2, flashAttention: false });
  const seq = context.getSequence();
  const eos = model.tokens.eos;
  let correct = 0;
  for (const [i, ex] of examples.entries()) {
    const ids = [model.tokens.bos, ...model.tokenize(ex.prompt, false)];
    const out = [];
    await seq.clearHistory();
    let next = ids; // the tokens not yet in the sequence's KV cache
    for (let k = 0; k < maxNew; k++) {
      const res = await seq.controlledEvaluate(next.map((t, j) => j === next.length - 1 ? [t, { generateNext: { probabilities: true } }] : t));
      const probs = res[res.length - 1]?.next?.probabilities;
      if (!probs) throw new Error('no probabilities returned');
      let best = -1, bp = -1;
      for (const [t, p] of probs) if (p > bp || (p === bp && t < best)) { best = t; bp = p; }
      if (best === eos) break;
      out.push(best);
      next = [best];
    }
    const text = model.detokenize(out);
    if (text === ex.completion) correct++;
    if (i < show) process.stdout.write(`  ${JSON.stringify(ex.prompt).padEnd(8)} -> ${JSON.stringify(text).padEnd(10)} (want ${JSON.stringify(ex.completion)})\n`);
  }
  process.stdout.write(`${correct}/${examples.length} correct\n`);
  seq.dispose();
  await context.dispose();
  await model.dispose();
  await llama.dispose();
} catch (e) {
  process.stderr.write(`generate.mjs: ${e.stack || e}\n`);
  process.exit(1);
}
