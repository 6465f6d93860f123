// The demo page: it calls the gateway's public API exactly as a front-end would
// (GET /templates, POST /fuse with FormData and an Idempotency-Key), nothing more.

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

let photo = null
let previewUrl = null
let choice = null
// One key per photo-and-template choice: pressing Fuse again (or a network retry) resends the same key,
// so the gateway answers from its store instead of paying for a second fusion.
let idempotencyKey = null

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
  fuseButton.disabled = photo === null || currentTemplate() === null
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
  status.textContent = ''
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

function renderTemplates (templates) {
  templateList.replaceChildren()
  for (const [index, template] of templates.entries()) {
    const label = document.createElement('label')
    label.className = 'template'
    const input = document.createElement('input')
    input.type = 'radio'
    input.name = 'template'
    input.value = `${template.projectId}/${template.modelId}`
    input.addEventListener('change', () => { choice = template; choiceChanged() })
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
    templateList.append(label)
    if (index === 0) {
      input.checked = true
      choice = template
    }
  }
  choiceChanged()
}

async function loadTemplates (projectId) {
  const query = projectId ? `?project_id=${encodeURIComponent(projectId)}` : ''
  const response = await fetch(`/templates${query}`, { headers: { accept: 'application/json' } })
  const body = await response.json()
  if (!response.ok) {
    // API 3.0 lists templates per activity: ask for one.
    if (body.code === 'FUSION_MISSING_FIELD') {
      $('project-row').hidden = false
      return
    }
    showError(body.code, body.message)
    return
  }
  if (body.templates.length === 0) {
    // Nothing to list (the legacy API has no listing): type the ids.
    $('manual-row').hidden = false
    return
  }
  renderTemplates(body.templates)
}

function listTemplates (projectId) {
  loadTemplates(projectId).catch((error) => showError('NETWORK', `The templates could not be loaded: ${error.message}`))
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

  clearMessages()
  fuseButton.disabled = true
  status.textContent = 'Fusing…'
  try {
    const response = await fetch('/fuse', {
      method: 'POST',
      body: data,
      headers: { accept: 'application/json', 'idempotency-key': idempotencyKey }
    })
    const body = await response.json().catch(() => ({ code: `HTTP ${response.status}`, message: 'The answer was not JSON.' }))
    if (!response.ok) {
      const wait = response.headers.get('retry-after')
      showError(body.code, wait ? `${body.message} (retry in ${wait} s)` : body.message)
      status.textContent = ''
      return
    }
    fused.removeAttribute('data-loaded')
    fused.onload = () => { fused.dataset.loaded = 'true' }
    fused.src = `data:image/jpeg;base64,${body.imageBase64}`
    result.hidden = false
    const replayed = response.headers.get('idempotent-replayed') === 'true'
    resultMeta.textContent = `Request ${body.requestId}${replayed ? ' (replayed: no second fusion was made)' : ''}`
    status.textContent = 'Done.'
  } catch (error) {
    showError('NETWORK', `The gateway could not be reached: ${error.message}`)
    status.textContent = ''
  } finally {
    fuseButton.disabled = false
  }
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
$('load-templates').addEventListener('click', () => { clearMessages(); listTemplates($('project-id').value.trim()) })
$('manual-project').addEventListener('input', choiceChanged)
$('manual-model').addEventListener('input', choiceChanged)
form.addEventListener('submit', (event) => { event.preventDefault(); void fuse() })

fetch('/healthz').then((response) => response.json()).then((health) => {
  if (health.upstream?.mode === 'emulator') {
    const mode = $('mode')
    mode.textContent = 'Answered by the built-in emulator: no Tencent credentials are configured.'
    mode.hidden = false
  }
}).catch(() => {})
listTemplates()
