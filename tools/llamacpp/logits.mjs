#!/usr/bin/env node
// logits: evaluate GGUF models (and LoRA adapters) with llama.cpp itself, through the
// prebuilt binaries of the npm package node-llama-cpp, for pkg/export's interop test.
//
//   node tools/llamacpp/logits.mjs install       install the pinned package into the cache; print its folder
//   node tools/llamacpp/logits.mjs eval JOBS     evaluate the jobs of JOBS (a JSON file, '-' for stdin)
//   node tools/llamacpp/logits.mjs tokenize JOBS tokenize texts with a model's own vocabulary
//
// The package goes to $LORAKIT_NPM_CACHE/node-llama-cpp-3.21.1, else
// $XDG_CACHE_HOME/lorakit/npm/node-llama-cpp-3.21.1, else
// ~/.cache/lorakit/npm/node-llama-cpp-3.21.1 (never inside the repository), installed
// lean: only the linux-x64 CPU binaries, no install scripts. An existing install is reused.
//
// eval JOBS: {"threads": N, "jobs": [{"name", "model", "lora": path|null, "scale": 1, "ids": [[id...]...]}]}
// prints {"results": [{"name", "vocab", "logprobs": [[[ln p per token]...per position]...per row]}]}.
// llama.cpp exposes no raw logits; controlledEvaluate returns the softmax per position,
// so ln p is the logits minus a per-position constant (null where p underflowed to 0).
// Every row is evaluated from an empty sequence, in a context one slot longer than the
// row (llama.cpp keeps contextSize − 1 tokens), with an f32 KV cache and no flash
// attention.
//
// tokenize JOBS: {"jobs": [{"name", "model", "texts": [...], "special": bool}]}
// prints {"results": [{"name", "ids": [[id...]...]}]}.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const VERSION = '3.21.1';
const PKGS = [`node-llama-cpp@${VERSION}`, `@node-llama-cpp/linux-x64@${VERSION}`];

function cacheBase() {
  if (process.env.LORAKIT_NPM_CACHE) return process.env.LORAKIT_NPM_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'lorakit', 'npm');
}

function installDir() {
  return path.join(cacheBase(), `node-llama-cpp-${VERSION}`);
}

function installed(dir) {
  try {
    const v = (p) => JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', p, 'package.json'))).version;
    return v('node-llama-cpp') === VERSION && v('@node-llama-cpp/linux-x64') === VERSION;
  } catch {
    return false;
  }
}

function install() {
  const dir = installDir();
  if (installed(dir)) return dir;
  fs.mkdirSync(cacheBase(), { recursive: true });
  // Install into a fresh folder and rename it into place: concurrent or interrupted
  // installs never leave a half-populated folder behind.
  const tmp = fs.mkdtempSync(path.join(cacheBase(), `.node-llama-cpp-${VERSION}.tmp-`));
  try {
    fs.writeFileSync(path.join(tmp, 'package.json'), '{"private": true}\n');
    execFileSync('npm', ['i', '-E', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund',
      '--loglevel=error', '--prefix', tmp, ...PKGS], { stdio: ['ignore', process.stderr, process.stderr] });
    if (!installed(tmp)) throw new Error(`npm did not install ${PKGS.join(' ')}`);
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      if (!installed(dir)) throw e; // another process won the race: fine
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

async function loadLlama(threads) {
  const dir = installDir();
  if (!installed(dir)) throw new Error(`node-llama-cpp ${VERSION} is not installed in ${dir}; run: node ${process.argv[1]} install`);
  const require = createRequire(path.join(dir, 'package.json'));
  const { getLlama, LlamaLogLevel } = await import(require.resolve('node-llama-cpp'));
  return getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel: LlamaLogLevel.error, maxThreads: threads,
  });
}

function readJobs(arg) {
  const text = !arg || arg === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(arg, 'utf8');
  return JSON.parse(text);
}

async function evaluate(spec) {
  const threads = spec.threads || 2;
  const llama = await loadLlama(threads);
  const results = [];
  for (const job of spec.jobs) {
    const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 });
    const longest = Math.max(...job.ids.map((r) => r.length));
    const context = await model.createContext({
      contextSize: longest + 1, batchSize: longest + 1, sequences: 1, threads,
      flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
      ...(job.lora ? { lora: { adapters: [{ filePath: job.lora, scale: job.scale ?? 1 }] } } : {}),
    });
    const vocab = Number(model.fileInfo?.metadata?.llama?.vocab_size ?? 0) || null;
    const rows = [];
    const seq = context.getSequence();
    for (const ids of job.ids) {
      await seq.clearHistory();
      const out = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: { probabilities: true } }]));
      const row = [];
      for (const pos of out) {
        const probs = pos?.next?.probabilities;
        if (!probs) throw new Error(`${job.name}: no probabilities returned`);
        let n = vocab ?? 0;
        for (const t of probs.keys()) n = Math.max(n, t + 1);
        const lp = new Array(n).fill(null);
        for (const [t, p] of probs) lp[t] = p > 0 ? Math.log(p) : null;
        row.push(lp);
      }
      rows.push(row);
    }
    seq.dispose();
    results.push({ name: job.name, vocab, logprobs: rows });
    await context.dispose();
    await model.dispose();
  }
  await llama.dispose();
  return { results };
}

async function tokenize(spec) {
  const llama = await loadLlama(spec.threads || 2);
  const results = [];
  for (const job of spec.jobs) {
    const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0, vocabOnly: true });
    const ids = job.texts.map((s) => Array.from(model.tokenize(s, job.special ?? false)));
    results.push({ name: job.name, ids });
    await model.dispose();
  }
  await llama.dispose();
  return { results };
}

const [cmd, arg] = process.argv.slice(2);
try {
  switch (cmd) {
    case 'install':
      process.stdout.write(install() + '\n');
      break;
    case 'eval':
      process.stdout.write(JSON.stringify(await evaluate(readJobs(arg))) + '\n');
      break;
    case 'tokenize':
      process.stdout.write(JSON.stringify(await tokenize(readJobs(arg))) + '\n');
      break;
    default:
      process.stderr.write('usage: logits.mjs install | eval JOBS.json | tokenize JOBS.json\n');
      process.exit(2);
  }
} catch (e) {
  process.stderr.write(`logits.mjs: ${e.stack || e}\n`);
  process.exit(1);
}
