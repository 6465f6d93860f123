import sharp from 'sharp'

/**
 * The emulator's built-in activities (project_id) and materials (model_id).
 * Each material is a drawn scene with an oval "face slot" that the user's face
 * is blended into. Drawn as SVG and rendered once, on first use.
 */
export interface FaceSlot { cx: number, cy: number, rx: number, ry: number }

/** A face of the material as API 3.0 lists it (DescribeMaterialList) and names it (TemplateFaceID). */
export interface MaterialFace {
  faceId: string
  /** In template pixels: the bounding box of the face slot. */
  rect: { x: number, y: number, width: number, height: number }
}

export interface Template {
  projectId: string
  modelId: string
  title: string
  /** undefined: the material has no face, which the upstream answers with ret -8. */
  slot: FaceSlot | undefined
  /** Empty when the material has no face. */
  faces: readonly MaterialFace[]
  svg: string
}

export interface Project {
  projectId: string
  /** Created after 2018-12-01: the legacy domain refuses it with ret -20013. */
  requiresApi3: boolean
  /** Created in the 2022 console: the legacy domain has never heard of it and answers as for any unknown activity. */
  unknownToLegacy: boolean
  /** When its materials were uploaded, as DescribeMaterialList writes it (Beijing time). */
  createTime: string
}

/** The id API 3.0 gives the only face of a single-face material. */
const SINGLE_FACE_ID = '1'

const WIDTH = 720
const HEIGHT = 960

const stars = Array.from({ length: 60 }, (_, i) => {
  // Deterministic scatter, so every render of the template is identical.
  const x = (i * 137) % WIDTH
  const y = (i * 251) % HEIGHT
  const r = 1 + (i % 3)
  return `<circle cx="${x}" cy="${y}" r="${r}" fill="#fff" opacity="${0.4 + (i % 5) / 10}"/>`
}).join('')

const scene = (body: string): string =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">${body}</svg>`

/** The example ids of Tencent's FuseFace 2022-09-27 documentation. */
export const API3_ONLY_PROJECT_ID = 'at_1603326187690926080'
export const API3_ONLY_MODEL_ID = 'mt_1603586676924403712'

export const PROJECTS: readonly Project[] = [
  { projectId: '100307', requiresApi3: false, unknownToLegacy: false, createTime: '2018-06-12 10:21:07' },
  { projectId: '100646', requiresApi3: false, unknownToLegacy: false, createTime: '2018-10-22 15:40:21' },
  { projectId: '300001', requiresApi3: true, unknownToLegacy: false, createTime: '2018-12-20 09:12:45' },
  { projectId: API3_ONLY_PROJECT_ID, requiresApi3: true, unknownToLegacy: true, createTime: '2022-12-16 17:26:03' }
]

function facesOf (slot: FaceSlot | undefined): MaterialFace[] {
  if (slot === undefined) return []
  return [{ faceId: SINGLE_FACE_ID, rect: { x: slot.cx - slot.rx, y: slot.cy - slot.ry, width: slot.rx * 2, height: slot.ry * 2 } }]
}

const lanterns = [90, 250, 470, 630].map((x, i) =>
  `<line x1="${x}" y1="0" x2="${x}" y2="${70 + (i % 2) * 40}" stroke="#8d6e1f" stroke-width="3"/>` +
  `<ellipse cx="${x}" cy="${110 + (i % 2) * 40}" rx="46" ry="40" fill="#e53935" stroke="#ffca28" stroke-width="4"/>`
).join('')

const DRAWN: ReadonlyArray<Omit<Template, 'faces'>> = [
  {
    projectId: '100307',
    modelId: 'qc_100307_152854_1',
    title: 'Astronaut',
    slot: { cx: 360, cy: 380, rx: 125, ry: 160 },
    svg: scene(`
      <defs><radialGradient id="space" cx="50%" cy="40%" r="80%">
        <stop offset="0" stop-color="#1b2a6b"/><stop offset="1" stop-color="#05060f"/></radialGradient></defs>
      <rect width="100%" height="100%" fill="url(#space)"/>${stars}
      <circle cx="600" cy="140" r="70" fill="#c9c1a5"/><circle cx="580" cy="120" r="14" fill="#a89f84"/>
      <path d="M120 960 C120 720 220 640 360 640 C500 640 600 720 600 960 Z" fill="#e8e8ea" stroke="#9aa0aa" stroke-width="6"/>
      <rect x="290" y="720" width="140" height="90" rx="12" fill="#4a6fa5"/>
      <circle cx="360" cy="390" r="230" fill="#f4f4f6" stroke="#9aa0aa" stroke-width="10"/>
      <ellipse cx="360" cy="380" rx="150" ry="185" fill="#222831"/>`)
  },
  {
    projectId: '100307',
    modelId: 'qc_100307_152854_2',
    title: 'Royal portrait',
    slot: { cx: 360, cy: 420, rx: 120, ry: 155 },
    svg: scene(`
      <rect width="100%" height="100%" fill="#6b1020"/>
      <rect x="30" y="30" width="660" height="900" fill="none" stroke="#d4af37" stroke-width="24"/>
      <path d="M100 960 C120 700 240 620 360 620 C480 620 600 700 620 960 Z" fill="#4b0f6b"/>
      <path d="M250 640 L360 760 L470 640 Z" fill="#f5f0e1"/>
      <path d="M250 250 L280 170 L320 230 L360 150 L400 230 L440 170 L470 250 Z" fill="#d4af37" stroke="#8c6d1f" stroke-width="4"/>
      <circle cx="360" cy="185" r="12" fill="#c0392b"/>`)
  },
  {
    projectId: '100307',
    modelId: 'qc_100307_152854_3',
    title: 'Empty landscape (a material without a face)',
    slot: undefined,
    svg: scene(`
      <rect width="100%" height="100%" fill="#87ceeb"/>
      <circle cx="560" cy="180" r="80" fill="#ffd54f"/>
      <path d="M0 700 L200 420 L380 650 L520 480 L720 720 L720 960 L0 960 Z" fill="#4e7d3a"/>`)
  },
  {
    projectId: '100646',
    modelId: 'qc_100646_154021_9',
    title: 'Superhero',
    slot: { cx: 360, cy: 360, rx: 120, ry: 150 },
    svg: scene(`
      <defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
        <stop offset="0" stop-color="#ff7043"/><stop offset="1" stop-color="#283593"/></linearGradient></defs>
      <rect width="100%" height="100%" fill="url(#sky)"/>
      <path d="M140 960 L200 620 L360 560 L520 620 L580 960 Z" fill="#c62828"/>
      <path d="M200 620 C260 600 300 560 360 560 C420 560 460 600 520 620 L500 960 L220 960 Z" fill="#1565c0"/>
      <path d="M320 700 L360 640 L400 700 L360 760 Z" fill="#ffd600"/>
      <path d="M230 300 C240 200 480 200 490 300 L480 330 L240 330 Z" fill="#1565c0"/>`)
  },
  {
    projectId: '300001',
    modelId: 'qc_300001_000001_1',
    title: 'Winter campaign (an activity created after December 2018)',
    slot: { cx: 360, cy: 400, rx: 120, ry: 150 },
    svg: scene('<rect width="100%" height="100%" fill="#e3f2fd"/>')
  },
  {
    projectId: API3_ONLY_PROJECT_ID,
    modelId: API3_ONLY_MODEL_ID,
    title: 'Lantern festival (an activity of the 2022 console, API 3.0 only)',
    slot: { cx: 360, cy: 420, rx: 118, ry: 150 },
    svg: scene(`
      <rect width="100%" height="100%" fill="#7f0000"/>
      <rect y="760" width="720" height="200" fill="#4e0000"/>${lanterns}
      <path d="M130 960 C150 700 250 630 360 630 C470 630 570 700 590 960 Z" fill="#c62828" stroke="#ffca28" stroke-width="6"/>
      <path d="M300 640 L360 720 L420 640 Z" fill="#ffca28"/>`)
  }
]

export const TEMPLATES: readonly Template[] = DRAWN.map((template) => ({ ...template, faces: facesOf(template.slot) }))

const rendered = new Map<string, Promise<Buffer>>()

/** The material as PNG pixels, rendered once per process. */
export async function renderTemplate (template: Template): Promise<Buffer> {
  const key = `${template.projectId}/${template.modelId}`
  let image = rendered.get(key)
  if (image === undefined) {
    image = sharp(Buffer.from(template.svg)).png().toBuffer()
    rendered.set(key, image)
  }
  return await image
}

export function findProject (projectId: string): Project | undefined {
  return PROJECTS.find((project) => project.projectId === projectId)
}

/** The activities the legacy domain knows (it serves or refuses them); the others are unknown to it. */
export function findLegacyProject (projectId: string): Project | undefined {
  const project = findProject(projectId)
  return project?.unknownToLegacy === true ? undefined : project
}

export function templatesOf (projectId: string): Template[] {
  return TEMPLATES.filter((template) => template.projectId === projectId)
}

export function findTemplateByModelId (modelId: string): Template | undefined {
  return TEMPLATES.find((template) => template.modelId === modelId)
}

export function findTemplate (projectId: string, modelId: string): Template | undefined {
  return TEMPLATES.find((template) => template.projectId === projectId && template.modelId === modelId)
}

export function modelExists (modelId: string): boolean {
  return TEMPLATES.some((template) => template.modelId === modelId)
}

const previews = new Map<string, Promise<Buffer>>()

/** The material as a JPEG, rendered once per process. */
export async function materialPicture (template: Template): Promise<Buffer> {
  let picture = previews.get(template.modelId)
  if (picture === undefined) {
    picture = renderTemplate(template).then(async (png) => await sharp(png).jpeg({ quality: 85 }).toBuffer())
    previews.set(template.modelId, picture)
  }
  return await picture
}
