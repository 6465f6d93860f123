// The demo page: it calls the gateway's public API exactly as a front-end would (GET /templates;
// POST /fuse with FormData, an Idempotency-Key and Prefer: respond-async; then the job it names), nothing more.

const $ = (id) => document.getElementById(id)
const form = $('fuse-form')
const photoInput = $('photo')
const drop = $('drop')
const preview = $('preview')
const dropHint = $('drop-hint')
const templateList = $('template-list')
const fuseButton = $('fuse')
const status = $('status')
const errorBox = $('error')
const result = $('result')
const fused = $('fused')
const resultMeta = $('result-meta')
const cancelButton = $('cancel')

let photo = null
let previewUrl = null
let choice = null
// One key per photo-and-template choice: pressing Fuse again (or a network retry) resends the same key,
// so the gateway answers from its store instead of paying for a second fusion.
let idempotencyKey = null
// The job being followed: at most one. Its events stream or poll timer stops when it ends or another starts.
let following = null

/** A UUID v4; crypto.randomUUID exists only in secure contexts (a phone on the LAN is not one). */
function newKey () {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID()
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6] & 0x0f) | 0x40
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

function choiceChanged () {
  idempotencyKey = null
  updateFuseButton()
}

/** Fuse waits for a photo and a template, and for the job being followed to end. */
function updateFuseButton () {
  fuseButton.disabled = following !== null || photo === null || currentTemplate() === null
}

function currentTemplate () {
  if (!$('manual-row').hidden) {
    const projectId = $('manual-project').value.trim()
    const modelId = $('manual-model').value.trim()
    return projectId && modelId ? { projectId, modelId } : null
  }
  return choice
}

function showError (code, message) {
  $('error-code').textContent = code
  $('error-message').textContent = message
  errorBox.hidden = false
}

function clearMessages () {
  errorBox.hidden = true
  // A job still followed keeps its place in line on show.
  if (following === null) setStatus('', '')
}

function usePhoto (file) {
  if (!file) return
  photo = file
  if (previewUrl) URL.revokeObjectURL(previewUrl)
  previewUrl = URL.createObjectURL(file)
  preview.src = previewUrl
  preview.hidden = false
  dropHint.textContent = file.name
  clearMessages()
  choiceChanged()
}

/** No template on offer: the list is emptied and nothing stays chosen. */
function clearTemplates () {
  templateList.replaceChildren()
  choice = null
  choiceChanged()
}

function renderTemplates (templates) {
  clearTemplates()
  for (const template of templates) {
    const label = document.createElement('label')
    label.className = 'template'
    const input = document.createElement('input')
    input.type = 'radio'
    input.name = 'template'
    input.value = `${template.projectId}/${template.modelId}`
    input.addEventListener('change', () => { choice = template; choiceChanged() })
    // A material without a face cannot be fused (the upstream refuses it): shown, but not offered.
    const faceless = Array.isArray(template.faces) && template.faces.length === 0
    input.disabled = faceless
    label.append(input)
    if (template.previewUrl) {
      const image = document.createElement('img')
      image.src = template.previewUrl
      image.alt = ''
      image.loading = 'lazy'
      label.append(image)
    }
    const name = document.createElement('span')
    name.textContent = template.name ?? template.modelId
    label.append(name)
    if (faceless) {
      const why = document.createElement('small')
      why.className = 'why'
      why.textContent = 'No face to replace: cannot be used'
      label.append(why)
    }
    templateList.append(label)
    if (choice === null && !faceless) {
      input.checked = true
      choice = template
    }
  }
  choiceChanged()
}

async function loadTemplates (projectId) {
  const query = projectId ? `?project_id=${encodeURIComponent(projectId)}` : ''
  const response = await fetch(`/templates${query}`, { headers: { accept: 'application/json' } })
  const body = await readBody(response)
  if (!response.ok) {
    // API 3.0 lists templates per activity: ask for one.
    if (body.code === 'FUSION_MISSING_FIELD' && !projectId) {
      $('project-row').hidden = false
      return
    }
    showError(body.code, `The templates${projectId ? ` of activity ${projectId}` : ''} could not be loaded: ${body.message}`)
    return
  }
  if (body.templates.length === 0) {
    if (projectId) {
      showError('', `The activity ${projectId} has no approved templates.`)
      return
    }
    // Nothing to list (the legacy API has no listing): type the ids.
    $('manual-row').hidden = false
    return
  }
  renderTemplates(body.templates)
}

function listTemplates (projectId) {
  // The last list goes at once: while loading, and after a failure, nothing stale can be chosen.
  clearTemplates()
  loadTemplates(projectId).catch((error) => showError('NETWORK', `The templates could not be loaded: ${error.message}`))
}

/** "Load templates": an activity's list, or what to type when the box is empty. */
function loadProjectTemplates () {
  clearMessages()
  const input = $('project-id')
  const projectId = input.value.trim()
  if (projectId === '') {
    clearTemplates()
    input.setAttribute('aria-invalid', 'true')
    showError('', 'Type your activity\'s id (project_id) first, for example at_1603326187690926080.')
    input.focus()
    return
  }
  input.removeAttribute('aria-invalid')
  listTemplates(projectId)
}

/** The JSON body of an answer, or one that says it was not JSON (a proxy's error page, say). */
async function readBody (response) {
  return await response.json().catch(() => ({ code: `HTTP ${response.status}`, message: 'The answer was not JSON.' }))
}

function showPicture (answer, replayed) {
  fused.removeAttribute('data-loaded')
  fused.onload = () => {
    // Once loaded, when the picture has its height: scrolled to before, it would still lie below the fold.
    result.scrollIntoView({ block: 'start' })
    fused.dataset.loaded = 'true'
  }
  fused.src = answer.imageBase64 !== undefined ? `data:image/jpeg;base64,${answer.imageBase64}` : answer.imageUrl
  result.hidden = false
  resultMeta.textContent = `Request ${answer.requestId}${replayed ? ' (replayed: no second fusion was made)' : ''}`
  setStatus('done', 'Done.')
}

/** The line's words for a job, and its state (data-state) and place (data-position) for styles and tests. */
function setStatus (state, text, position) {
  status.dataset.state = state
  if (position === undefined) delete status.dataset.position
  else status.dataset.position = String(position)
  status.textContent = text
}

function stopFollowing () {
  if (following === null) return
  following.source?.close()
  clearTimeout(following.timer)
  following = null
  cancelButton.hidden = true
  updateFuseButton()
}

/**
 * Follows a queued job to its end: its events stream (EventSource), or, where EventSource is missing or fails
 * before the end, GET every Retry-After seconds. Every body is the same: the job as GET /fuse/jobs/{jobId} shows it.
 */
function follow (url, job, replayed, firstPoll) {
  stopFollowing()
  const watch = { url, replayed, source: null, timer: null, failures: 0 }
  following = watch
  fuseButton.disabled = true
  showJob(watch, job)
  if (following !== watch) return
  if (typeof globalThis.EventSource !== 'function') {
    schedulePoll(watch, firstPoll)
    return
  }
  const source = new EventSource(`${url}/events`)
  watch.source = source
  source.onmessage = (event) => { if (following === watch) showJob(watch, JSON.parse(event.data)) }
  source.onerror = () => {
    // Ended before the job did (a proxy that buffers or cuts streams, a lost connection): poll instead.
    source.close()
    watch.source = null
    if (following === watch) void poll(watch)
  }
}

/**
 * When to look again: the server's Retry-After (about when the job's turn comes), but at least every 2 s, so the
 * place in line the page shows stays current.
 */
function pollDelay (response) {
  return Math.min(2, Math.max(1, Number(response?.headers.get('retry-after')) || 1))
}

function schedulePoll (watch, seconds) {
  watch.timer = setTimeout(() => { void poll(watch) }, seconds * 1000)
}

async function poll (watch) {
  let response, body
  try {
    response = await fetch(watch.url, { headers: { accept: 'application/json' }, cache: 'no-store' })
    body = await readBody(response)
  } catch (error) {
    body = { code: 'NETWORK', message: `The gateway could not be reached: ${error.message}` }
  }
  if (following !== watch) return
  if (response?.ok) {
    watch.failures = 0
    showJob(watch, body)
    if (following === watch) schedulePoll(watch, pollDelay(response))
    return
  }
  // No answer, or a passing one (a replica shedding load, the line's Redis away): a phone between networks, say.
  const passing = response === undefined || response.status >= 500 || response.status === 429
  if (passing && ++watch.failures < 5) {
    schedulePoll(watch, pollDelay(response) + 1)
    return
  }
  // An unknown or expired job (FUSION_JOB_NOT_FOUND), or no answer for too long: the next press makes a new job.
  stopFollowing()
  idempotencyKey = null
  setStatus('', '')
  showError(body.code, body.message)
}

/** Shows where the job stands; once it has ended, its picture or error, and the following stops. */
function showJob (watch, job) {
  const ended = job.finishedAt !== undefined || ['succeeded', 'failed', 'canceled'].includes(job.status)
  if (!ended) {
    if (job.status === 'queued') {
      const eta = Math.max(1, job.etaSeconds ?? 1)
      const text = job.position !== undefined ? `Number ${job.position} in line, about ${eta} s` : 'Waiting in line…'
      setStatus('queued', text, job.position)
    } else {
      setStatus(job.status, 'Your turn: fusing…')
    }
    cancelButton.hidden = job.status !== 'queued'
    return
  }
  stopFollowing()
  if (job.status === 'succeeded') {
    showPicture(job.result, watch.replayed)
    return
  }
  // A new press after a failed or canceled job is a new job: the same key would only show this one again.
  idempotencyKey = null
  if (job.status === 'canceled') {
    setStatus('canceled', 'You left the line: nothing was sent for fusion.')
    return
  }
  setStatus('failed', '')
  showError(job.error?.code ?? 'FAILED', job.error?.message ?? 'The fusion failed.')
}

async function cancel () {
  const watch = following
  if (watch === null) return
  cancelButton.disabled = true
  try {
    const response = await fetch(watch.url, { method: 'DELETE', headers: { accept: 'application/json' } })
    const body = await readBody(response)
    if (following !== watch) return
    // 200: canceled (or, if it had just finished, its end); 409 FUSION_JOB_RUNNING: too late, the picture follows.
    if (response.ok) showJob(watch, body)
    else if (response.status === 409) cancelButton.hidden = true
    else showError(body.code, body.message)
  } catch (error) {
    showError('NETWORK', `The gateway could not be reached: ${error.message}`)
  } finally {
    cancelButton.disabled = false
  }
}

async function fuse () {
  const template = currentTemplate()
  if (photo === null || template === null) return
  idempotencyKey ??= newKey()
  const data = new FormData()
  data.append('project_id', template.projectId)
  data.append('model_id', template.modelId)
  // base64 keeps the demo working wherever the page is opened from, even when the result host is not reachable.
  data.append('rsp_img_type', 'base64')
  data.append('image', photo, photo.name || 'photo.jpg')

  stopFollowing()
  clearMessages()
  result.hidden = true
  fuseButton.disabled = true
  setStatus('sending', 'Sending the photo…')
  let response, body
  try {
    response = await fetch('/fuse', {
      method: 'POST',
      body: data,
      // respond-async: the photo is checked at once, and the fusion waits its turn in the line.
      headers: { accept: 'application/json', prefer: 'respond-async', 'idempotency-key': idempotencyKey }
    })
    body = await readBody(response)
  } catch (error) {
    setStatus('', '')
    showError('NETWORK', `The gateway could not be reached: ${error.message}`)
    updateFuseButton()
    return
  }
  const replayed = response.headers.get('idempotent-replayed') === 'true'
  if (response.status === 202) {
    // A replayed 202 carries no Location: the job's address is also built from its id.
    follow(response.headers.get('location') ?? `/fuse/jobs/${encodeURIComponent(body.jobId)}`, body, replayed, pollDelay(response))
    return
  }
  if (response.ok) {
    // Answered at once (a gateway in front that does not pass Prefer on).
    showPicture(body, replayed)
  } else {
    // Refused at once: the photo (fix it), or the line (full, or this client already has jobs waiting).
    const wait = response.headers.get('retry-after')
    setStatus('', '')
    showError(body.code, wait ? `${body.message} (retry in ${wait} s)` : body.message)
  }
  updateFuseButton()
}

photoInput.addEventListener('change', () => usePhoto(photoInput.files[0]))
for (const name of ['dragenter', 'dragover']) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add('dragging') })
}
for (const name of ['dragleave', 'drop']) {
  drop.addEventListener(name, () => drop.classList.remove('dragging'))
}
drop.addEventListener('drop', (event) => {
  event.preventDefault()
  usePhoto(event.dataTransfer.files[0])
})
$('load-templates').addEventListener('click', loadProjectTemplates)
$('project-id').addEventListener('keydown', (event) => {
  // Enter in the box loads its templates rather than submitting the form.
  if (event.key === 'Enter') { event.preventDefault(); loadProjectTemplates() }
})
$('manual-project').addEventListener('input', choiceChanged)
$('manual-model').addEventListener('input', choiceChanged)
form.addEventListener('submit', (event) => { event.preventDefault(); void fuse() })
cancelButton.addEventListener('click', () => { void cancel() })

fetch('/healthz').then((response) => response.json()).then((health) => {
  if (health.upstream?.mode === 'emulator') {
    const mode = $('mode')
    mode.textContent = 'Answered by the built-in emulator: no Tencent credentials are configured.'
    mode.hidden = false
  }
}).catch(() => {})
listTemplates()
