// The app under test: what a Node app calling the provider's API might do (it knows nothing of the twin).
export async function generate(baseUrl, apiKey, request, { interval = 1000, maxPolls = 30 } = {}) {
  const headers = { 'API-Key': apiKey, 'Content-Type': 'application/json' };
  const submitted = await fetch(`${baseUrl}/sd3_5/v1`, { method: 'POST', headers, body: JSON.stringify(request) });
  let job = await submitted.json();
  if (!submitted.ok) throw new Error(`submit: HTTP ${submitted.status}: ${job.error}`);
  for (let polls = 0; job.status === 'PENDING' && polls < maxPolls; polls++) {
    await new Promise((resolve) => setTimeout(resolve, interval));
    const read = await fetch(`${baseUrl}/sd3_5/v1/status/${encodeURIComponent(job.id)}`, { headers });
    if (read.status === 503 || read.status === 429) continue;  // busy: poll again later
    job = await read.json();
    if (!read.ok) throw new Error(`status: HTTP ${read.status}: ${job.error}`);
  }
  return job;  // SUCCESS with download_urls, FAILURE with error, or still PENDING after maxPolls
}
