// The smallest client of the wait line: POST /fuse with Prefer: respond-async and an Idempotency-Key made once per
// photo (pressing the button again, or any retry, can never pay for a second fusion), then follow the job it names
// to the picture: its events stream, or GET every Retry-After seconds where EventSource is missing or fails.
const photo = document.getElementById('photo')
const button = document.getElementById('fuse')
const message = document.getElementById('message')
let key = null

photo.addEventListener('change', () => {
  key = crypto.randomUUID() // secure contexts only (https, localhost); public/demo.js shows a fallback
  button.disabled = photo.files.length === 0
})

button.addEventListener('click', async () => {
  const form = new FormData()
  form.append('project_id', '100307')
  form.append('model_id', 'qc_100307_152854_1')
  form.append('image', photo.files[0])
  message.textContent = 'Sending…'
  const response = await fetch('/fuse', {
    method: 'POST',
    body: form, // the browser writes the multipart Content-Type and boundary itself
    headers: { accept: 'application/json', prefer: 'respond-async', 'idempotency-key': key }
  })
  const answer = await response.json() // 202 { jobId, status: 'queued', position, etaSeconds, requestId }
  if (!response.ok) {
    // Refused at once: switch on answer.code (docs/errors.md); answer.message can be shown as it is.
    message.textContent = `${answer.code}: ${answer.message}`
    return
  }
  follow(`/fuse/jobs/${answer.jobId}`, answer)
})

/** Shows the job as it stands; true once it has ended (its picture, or its error, is on show). */
function show (job) {
  if (job.status === 'queued') message.textContent = `Number ${job.position} in line, about ${job.etaSeconds} s`
  if (job.status === 'running') message.textContent = 'Fusing…'
  if (job.status === 'succeeded') {
    message.textContent = `Valid until ${job.result.expiresAt}`
    document.getElementById('result').src = job.result.imageUrl
  }
  if (job.status === 'failed') message.textContent = `${job.error.code}: ${job.error.message}`
  if (job.status === 'canceled') message.textContent = 'Canceled'
  return job.finishedAt !== undefined
}

function follow (url, job) {
  show(job)
  if (typeof EventSource !== 'function') return poll(url, 1)
  // One event at once, one each time the place in line or the state changes, a last one, then the end.
  const events = new EventSource(`${url}/events`)
  events.onmessage = (event) => { if (show(JSON.parse(event.data))) events.close() }
  events.onerror = () => { events.close(); poll(url, 0) } // ended before the job did: poll instead
}

async function poll (url, seconds) {
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  const response = await fetch(url, { headers: { accept: 'application/json' } })
  const job = await response.json()
  const retryAfter = Number(response.headers.get('retry-after')) || 1
  if (response.status === 429 || response.status === 503) poll(url, retryAfter) // looked too often, or the line is busy
  else if (!response.ok) message.textContent = `${job.code}: ${job.message}` // 404 FUSION_JOB_NOT_FOUND: gone or expired
  else if (!show(job)) poll(url, retryAfter)
}
