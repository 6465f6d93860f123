// The smallest client of POST /fuse: FormData, and an Idempotency-Key made once per photo,
// so that pressing the button again (or any retry) can never pay for a second fusion.
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
  message.textContent = 'Fusing…'
  const response = await fetch('/fuse', {
    method: 'POST',
    body: form, // the browser writes the multipart Content-Type and boundary itself
    headers: { accept: 'application/json', 'idempotency-key': key }
  })
  const answer = await response.json()
  if (!response.ok) {
    // Switch on answer.code (docs/errors.md); answer.message can be shown as it is.
    message.textContent = `${answer.code}: ${answer.message}`
    return
  }
  message.textContent = `Valid until ${answer.expiresAt}`
  document.getElementById('result').src = answer.imageUrl
})
