// The OpenAI-compatible HTTP API driven by the official `openai` Node SDK against a real
// mamba-serve process (synthetic:tiny on the CPU backend, the ChatML test template, bearer
// tokens on): models, completions and chat (streaming and not), n > 1, logprobs, stop strings,
// the prefix cache through resent conversations, errors and auth, clients that disconnect, and
// many concurrent SSE streams.
//
//   node --test tests/integration/openai/openai_sdk_test.mjs
//   env: MAMBA_SERVE (the binary), MAMBA_SSE_STREAMS (concurrent streams; default 1000)
import { execFileSync, spawn } from 'node:child_process';
import { Agent as HttpsAgent } from 'node:https';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const binary = process.env.MAMBA_SERVE ?? join(root, 'build', 'bin', 'mamba-serve');
const streams = Number(process.env.MAMBA_SSE_STREAMS ?? 1000);
const TOKEN_A = 'token-alpha-0123456789abcdef';
const TOKEN_B = 'token-bravo-0123456789abcdef';

let server;
let baseURL;
let metricsURL;
let client;

function startServer(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no listening line; stderr: ${err}`)), 60000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/mamba-serve listening grpc=(\S+) metrics=(\S+) http=(\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, grpc: m[1], metrics: m[2], http: m[3] });
      }
    });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => reject(new Error(`mamba-serve exited with ${code}: ${err}`)));
  });
}

async function metric(name, labels = '') {
  const text = await (await fetch(`${metricsURL}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const [series, value] = line.split(' ');
    if (series !== name && !series.startsWith(`${name}{`)) continue;
    if (labels && !series.includes(labels)) continue;
    sum += Number(value);
  }
  return sum;
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-openai-'));
  const tokens = join(dir, 'tokens.txt');
  writeFileSync(tokens, `${TOKEN_A} alpha\n${TOKEN_B} bravo\n`);
  server = await startServer([
    '--model=synthetic:tiny', '--backend=cpu', '--cpu_threads=1', '--host=127.0.0.1',
    '--port=0', '--metrics_port=0', '--http_port=0', '--log_level=warning',
    `--chat_template=${join(root, 'tests', 'data', 'chat_templates', 'chatml.jinja')}`,
    `--auth_tokens_file=${tokens}`, '--max_new_tokens=4096', '--max_queue=4096',
  ]);
  baseURL = `http://${server.http}/v1`;
  metricsURL = `http://${server.metrics}`;
  client = new OpenAI({ baseURL, apiKey: TOKEN_A, maxRetries: 0, timeout: 120000 });
});

after(() => {
  server?.child.kill('SIGTERM');
});

test('models lists the served model', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), ['synthetic:tiny']);
  const one = await client.models.retrieve('synthetic:tiny');
  assert.equal(one.object, 'model');
});

test('completions: greedy text, streamed or not, and a repeated prompt hits the cache', async () => {
  const prompt = 'The quick brown fox jumps over the lazy dog, again and again and again';
  const first = await client.completions.create({
    model: 'synthetic:tiny', prompt, max_tokens: 12, temperature: 0,
  });
  assert.equal(first.object, 'text_completion');
  assert.equal(first.choices.length, 1);
  assert.equal(first.choices[0].finish_reason, 'length');
  assert.equal(first.usage.completion_tokens, 12);
  const promptTokens = first.usage.prompt_tokens;
  assert.ok(promptTokens > 10);

  const again = await client.completions.create({
    model: 'synthetic:tiny', prompt, max_tokens: 12, temperature: 0,
  });
  assert.equal(again.choices[0].text, first.choices[0].text);
  assert.equal(again.usage.prompt_tokens, promptTokens);
  // Everything but the prompt's last token came from the prefix cache.
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, promptTokens - 1);

  let text = '';
  let finish = null;
  let usage = null;
  const stream = await client.completions.create({
    model: 'synthetic:tiny', prompt, max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, first.choices[0].text);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

test('completions: token-id prompts, several prompts, logprobs', async () => {
  const r = await client.completions.create({
    model: 'synthetic:tiny', prompt: [[72, 101, 108, 108, 111], 'Hello'], max_tokens: 4,
    temperature: 0, logprobs: 3,
  });
  assert.equal(r.choices.length, 2);
  // "Hello" in the byte tokenizer is those five ids: both prompts give the same greedy text.
  assert.equal(r.choices[0].text, r.choices[1].text);
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 4);
  assert.equal(lp.token_logprobs.length, 4);
  assert.equal(lp.top_logprobs.length, 4);
  assert.equal(Object.keys(lp.top_logprobs[0]).length, 3);
  for (const v of lp.token_logprobs) assert.ok(v <= 0);
});

test('chat: a message, streamed and not, n > 1, logprobs, stop strings', async () => {
  const messages = [
    { role: 'system', content: 'You are a terse assistant.' },
    { role: 'user', content: [{ type: 'text', text: 'Say ' }, { type: 'text', text: 'hi' }] },
  ];
  const r = await client.chat.completions.create({
    model: 'synthetic:tiny', messages, max_tokens: 10, temperature: 0,
    logprobs: true, top_logprobs: 2,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].logprobs.content.length, r.usage.completion_tokens);
  assert.equal(r.choices[0].logprobs.content[0].top_logprobs.length, 2);

  const chunks = [];
  const stream = await client.chat.completions.create({
    model: 'synthetic:tiny', messages, max_tokens: 10, temperature: 0, stream: true,
  });
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, r.choices[0].message.content);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');

  const several = await client.chat.completions.create({
    model: 'synthetic:tiny', messages, max_tokens: 8, temperature: 1, n: 3, seed: 7,
  });
  assert.deepEqual(several.choices.map((c) => c.index), [0, 1, 2]);
  // The prompt is counted once; each choice generated its own tokens.
  assert.equal(several.usage.prompt_tokens, r.usage.prompt_tokens);
  assert.equal(several.usage.completion_tokens, 24);
  const again = await client.chat.completions.create({
    model: 'synthetic:tiny', messages, max_tokens: 8, temperature: 1, n: 3, seed: 7,
  });
  assert.deepEqual(again.choices.map((c) => c.message.content),
                   several.choices.map((c) => c.message.content));

  // A stop string that the greedy text contains ends it before the string.
  const full = r.choices[0].message.content;
  if (full.length >= 4) {
    const stop = full.slice(2, 4);
    const stopped = await client.chat.completions.create({
      model: 'synthetic:tiny', messages, max_tokens: 10, temperature: 0, stop: [stop],
    });
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    assert.equal(stopped.choices[0].message.content, full.slice(0, full.indexOf(stop)));
  }
});

test('chat: a resent conversation prefills only its new message', async () => {
  const system = { role: 'system', content: 'Long shared instructions. '.repeat(20) };
  const turn1 = [system, { role: 'user', content: 'First question?' }];
  const a = await client.chat.completions.create({
    model: 'synthetic:tiny', messages: turn1, max_tokens: 6, temperature: 0,
  });
  const turn2 = [...turn1, { role: 'assistant', content: a.choices[0].message.content },
    { role: 'user', content: 'Second?' }];
  const b = await client.chat.completions.create({
    model: 'synthetic:tiny', messages: turn2, max_tokens: 6, temperature: 0,
  });
  // At least the whole first turn's prompt was cached.
  assert.ok(b.usage.prompt_tokens_details.cached_tokens >= a.usage.prompt_tokens,
            JSON.stringify([a.usage, b.usage]));
  // Another conversation with the same system prompt hits the system message's boundary.
  const other = await client.chat.completions.create({
    model: 'synthetic:tiny', messages: [system, { role: 'user', content: 'Unrelated.' }],
    max_tokens: 4, temperature: 0,
  });
  assert.ok(other.usage.prompt_tokens_details.cached_tokens >= 500,
            JSON.stringify(other.usage));
  // Another tenant shares nothing.
  const bravo = new OpenAI({ baseURL, apiKey: TOKEN_B, maxRetries: 0 });
  const isolated = await bravo.chat.completions.create({
    model: 'synthetic:tiny', messages: turn2, max_tokens: 6, temperature: 0,
  });
  assert.equal(isolated.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(isolated.choices[0].message.content, b.choices[0].message.content);
});

test('errors come as OpenAI sends them', async () => {
  await assert.rejects(
    client.completions.create({ model: 'synthetic:tiny', prompt: 'x', temperature: -1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature' &&
      /temperature/.test(e.message));
  await assert.rejects(
    client.completions.create({ model: 'synthetic:tiny', prompt: 'x', n: 0 }),
    (e) => e.status === 400 && e.param === 'n');
  await assert.rejects(
    client.chat.completions.create({ model: 'synthetic:tiny', messages: [] }),
    (e) => e.status === 400 && e.param === 'messages');
  await assert.rejects(
    client.completions.create({ model: 'synthetic:tiny', prompt: 'x', presence_penalty: 3 }),
    (e) => e.status === 400 && e.param === 'presence_penalty');
  await assert.rejects(
    client.completions.create({ model: 'gpt-4', prompt: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found' &&
      e.type === 'invalid_request_error');
  const stranger = new OpenAI({ baseURL, apiKey: 'wrong-token', maxRetries: 0 });
  await assert.rejects(stranger.models.list(),
                       (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  // Bad JSON and a wrong route, without the SDK.
  const bad = await fetch(`${baseURL}/completions`, {
    method: 'POST', body: '{"prompt": ', headers: { Authorization: `Bearer ${TOKEN_A}` },
  });
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error.message, /not valid JSON/);
  const missing = await fetch(`${baseURL}/embeddings`, {
    method: 'POST', body: '{}', headers: { Authorization: `Bearer ${TOKEN_A}` },
  });
  assert.equal(missing.status, 404);
  assert.equal((await fetch(`http://${server.http}/health`)).status, 200);
  // A body over the bound (twice the longest prompt, at least 1 MiB): 413 in OpenAI's shape.
  const huge = await fetch(`${baseURL}/completions`, {
    method: 'POST', body: JSON.stringify({ prompt: 'x'.repeat(64 << 20) }),
    headers: { Authorization: `Bearer ${TOKEN_A}` },
  }).catch(() => null);
  if (huge !== null) {  // the server may close before the client has sent it all
    assert.equal(huge.status, 413);
    assert.equal((await huge.json()).error.code, 'request_too_large');
  }
});

test('penalties change greedy output', async () => {
  const base = { model: 'synthetic:tiny', prompt: 'aaaa', max_tokens: 16, temperature: 0 };
  const plain = await client.completions.create(base);
  const penalized = await client.completions.create({ ...base, frequency_penalty: 2 });
  assert.notEqual(plain.choices[0].text, penalized.choices[0].text);
});

test('a client that disconnects mid-stream frees its sequence', async () => {
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: 'synthetic:tiny', prompt: 'x', max_tokens: 4000, ignore_eos: true, stream: true },
    { signal: controller.signal });
  let seen = 0;
  try {
    for await (const chunk of stream) {
      seen += chunk.choices.length;
      if (seen >= 2) controller.abort();
    }
  } catch (e) {
    // The SDK ends the loop quietly on an abort; an error here is the abort too.
  }
  assert.ok(seen >= 2 && seen < 4000, `${seen} chunks`);
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && (await metric('mamba_requests_running')) > 0) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(await metric('mamba_requests_running'), 0);
  assert.ok(await metric('mamba_requests_total', 'code="CANCELLED"') >= 1);
});

test(`${streams} concurrent SSE streams`, { timeout: 600000 }, async () => {
  const before = await metric('mamba_requests_total', 'protocol="http"');
  const one = async (i) => {
    const response = await fetch(`${baseURL}/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN_A}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: `stream ${i}`, max_tokens: 4, ignore_eos: true,
        stream: true }),
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.ok(text.endsWith('data: [DONE]\n\n'), text.slice(-200));
    const events = text.split('\n\n').filter((e) => e.startsWith('data: {'));
    const tokens = events.map((e) => JSON.parse(e.slice(6)))
      .filter((e) => e.choices.length > 0 && e.choices[0].finish_reason === 'length');
    assert.equal(tokens.length, 1);
  };
  await Promise.all(Array.from({ length: streams }, (_, i) => one(i)));
  const done = await metric('mamba_requests_total', 'protocol="http"');
  assert.ok(done - before >= streams);
});

test('TLS: the HTTP API uses the gRPC port\'s certificate files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-openai-tls-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
      '-out', cert, '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  } catch (e) {
    return;  // no openssl CLI: nothing to test with
  }
  const tls = await startServer([
    '--model=synthetic:tiny', '--backend=cpu', '--cpu_threads=1', '--host=127.0.0.1',
    '--port=0', '--metrics_port=-1', '--http_port=0', '--log_level=warning',
    `--tls_cert=${cert}`, `--tls_key=${key}`,
  ]);
  try {
    const secure = new OpenAI({
      baseURL: `https://${tls.http}/v1`, apiKey: 'unused', maxRetries: 0,
      httpAgent: new HttpsAgent({ ca: readFileSync(cert) }),
    });
    const r = await secure.completions.create({ prompt: 'x', max_tokens: 3, temperature: 0 });
    assert.equal(r.usage.completion_tokens, 3);
    let text = '';
    const stream = await secure.completions.create(
      { prompt: 'x', max_tokens: 3, temperature: 0, stream: true });
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    assert.equal(text, r.choices[0].text);
    // Plain HTTP to the TLS port gets no answer.
    await assert.rejects(fetch(`http://${tls.http}/v1/models`));
  } finally {
    tls.child.kill('SIGTERM');
  }
});
