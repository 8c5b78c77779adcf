// node --test app.test.mjs: the app's tests against the twin, each with a key of its own, so they could share one
// twin with other suites (rules scope outcomes and faults to a key; the journal and the job list filter by it).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generate } from './app.mjs';
import { startTwin } from './twin.mjs';

const REQUEST = { prompt: 'a red fox', negative_prompt: '', num_inference_steps: 4, samples: 1, guidance_scale: 0,
  width: 256, height: 256 };
let twin;
before(async () => { twin = await startTwin(); });
after(async () => { await twin?.stop(); });

test('a job this test makes fail reaches the app as FAILURE with its error', async () => {
  const key = 'key-of-the-failure-test';
  const rule = await twin.control('POST', '/rules',
    { match: { api_key: key }, outcome: 'FAILURE', error: 'nsfw content', pending_polls: 2 });
  try {
    const job = await generate(twin.url, key, REQUEST, { interval: 50 });
    assert.equal(job.status, 'FAILURE');
    assert.equal(job.error, 'nsfw content');
    // What the app sent, by its key (matched in the twin, shown as ***). Codes and bodies are the twin's guesses
    // (sd35-mock matrix tries the others), so the test checks what the app did, not what the twin answered.
    const sent = (await twin.control('GET', `/journal?key=${key}`)).requests;
    assert.equal(sent[0].kind, 'submit');
    assert.equal(sent[0].rule, rule.id);  // the rule shaped the submit's job
    assert.ok(sent.slice(1).every((e) => e.kind === 'status' && e.job_id === sent[0].job_id));
    assert.ok(sent.length <= 3, `${sent.length - 1} status reads for a job done on its 2nd`);
  } finally {
    await twin.control('DELETE', `/rules/${rule.id}`);
  }
});

test('a submit whose answer is lost after the job was made is not sent twice', async () => {
  const key = 'key-of-the-drop-test';
  const rule = await twin.control('POST', '/rules', { match: { api_key: key },
    fault: { type: 'drop', phase: 'after', endpoint: 'submit' }, times: 1 });
  await assert.rejects(generate(twin.url, key, REQUEST), /fetch failed/);  // the connection closed, no answer
  const submits = (await twin.control('GET', `/journal?kind=submit&key=${key}`)).requests;
  assert.equal(submits.length, 1, 'exactly one POST reached the twin');
  assert.equal(submits[0].fault, 'drop after');
  const [orphan] = (await twin.control('GET', `/jobs?key=${key}`)).jobs;  // the job exists, unseen by the app
  assert.equal(submits[0].job_id, orphan.id);
  assert.equal(rule.times, 1);
});

test('the app polls no faster than once a second, then downloads the image', async (t) => {
  const key = 'key-of-the-polling-test';
  const rule = await twin.control('POST', '/rules', { match: { api_key: key }, pending_polls: 2 });
  try {
    const job = await generate(twin.url, key, REQUEST, { interval: 1000 });
    assert.equal(job.status, 'SUCCESS');
    const image = await fetch(job.download_urls[0]);
    assert.equal(image.status, 200);
    assert.match(image.headers.get('content-type'), /^image\//);
    const reads = (await twin.control('GET', `/journal?kind=status&job_id=${job.id}`)).requests;
    t.diagnostic(`status reads answered HTTP ${reads.map((e) => e.status).join(', ') || '(none)'}`);
    assert.ok(reads.length <= 2, `${reads.length} status reads for a job done on its 2nd`);
    for (let i = 1; i < reads.length; i++) {
      assert.ok(reads[i].at - reads[i - 1].at >= 0.9, `polled ${reads[i].at - reads[i - 1].at} s apart`);
    }
  } finally {
    await twin.control('DELETE', `/rules/${rule.id}`);
  }
});

test('a filter the twin does not know is refused, not ignored', async () => {
  await assert.rejects(twin.control('GET', '/jobs?owner=me'), /HTTP 400 .*owner: is not a parameter/);
});
