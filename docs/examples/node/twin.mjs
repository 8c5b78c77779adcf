// The twin for a Node test suite, over HTTP only (docs/http.md).
// SD35_MOCK_URL set (a container, a shared twin): use it, with SD35_MOCK_CONTROL_TOKEN if it has one.
// Unset: start `sd35-mock --port 0` (pip install the twin; SD35_MOCK_COMMAND names another command) and stop it after.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

export async function startTwin() {
  const token = process.env.SD35_MOCK_CONTROL_TOKEN;
  if (process.env.SD35_MOCK_URL) {
    return twinAt(process.env.SD35_MOCK_URL.replace(/\/$/, ''), token, async () => {});
  }
  const command = process.env.SD35_MOCK_COMMAND ?? 'sd35-mock';
  const child = spawn(command, ['--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    child.once('error', reject);  // e.g. sd35-mock is not on PATH
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code} before listening`)));
    lines.on('line', (line) => {  // its one line on stdout: "sd35-mock listening on http://127.0.0.1:PORT"
      const found = line.match(/listening on (\S+)/);
      if (found) resolve(found[1]);
    });
  });
  return twinAt(url, token, async () => {
    child.kill('SIGTERM');  // it exits 0 at once
    if (child.exitCode === null) await once(child, 'exit');
  });
}

function twinAt(url, token, stop) {
  // One control-plane call: JSON in, JSON out; a refusal throws with the twin's FAILURE body.
  async function control(method, path, body) {
    const headers = token ? { 'X-Mock-Token': token } : {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const answer = await fetch(`${url}/__mock__${path}`,
      { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`${method} /__mock__${path}: HTTP ${answer.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
  return { url, control, stop };
}
