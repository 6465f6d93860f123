import { Api3Failure, forcedCode } from './errors.js'
import { int, intInRange, text, type Api3Version, type Fields } from './params.js'
import { findProject, templatesOf, type Project, type Template } from '../shared/templates.js'

/**
 * DescribeMaterialList, in the shape of each version's MaterialInfo
 * (DescribeMaterialList, 2018-12-01 and 2022-09-27), and the materials' pictures, which a
 * front-end shows as previews (2018-12-01 answers their URL).
 */
const MAX_LIMIT: Readonly<Record<Api3Version, number>> = { '2018-12-01': 100, '2022-09-27': 20 }
const DEFAULT_LIMIT = 20
/** 1: approved, the only state a usable material has. */
const APPROVED = 1

function activityId (params: Fields, version: Api3Version): string {
  // Integer in 2018-12-01, string in 2022-09-27: params.ts has refused the other kind.
  return version === '2018-12-01' ? String(int(params, 'ActivityId')) : text(params, 'ActivityId')!
}

function faceList (template: Template): Fields[] {
  return template.faces.map((face) => ({
    FaceId: face.faceId,
    FaceInfo: { X: face.rect.x, Y: face.rect.y, Width: face.rect.width, Height: face.rect.height }
  }))
}

function materialInfo (template: Template, project: Project, version: Api3Version, pictureUrl: (modelId: string) => string): Fields {
  const common = {
    MaterialId: template.modelId,
    MaterialStatus: APPROVED,
    CreateTime: project.createTime,
    UpdateTime: project.createTime,
    MaterialFaceList: faceList(template)
  }
  if (version === '2022-09-27') return { ...common, MaterialName: template.title, AuditResult: '' }
  return {
    ...common,
    Url: pictureUrl(template.modelId),
    BlendParamPtu: 0,
    PositionParamPtu: 0,
    BlendParamYoutu: 0,
    PositionParamYoutu: 0
  }
}

export function describeMaterialList (
  params: Fields, version: Api3Version, pictureUrl: (modelId: string) => string, faults: boolean
): Fields {
  const id = activityId(params, version)
  const limit = intInRange(params, 'Limit', 1, MAX_LIMIT[version]) ?? DEFAULT_LIMIT
  const offset = intInRange(params, 'Offset', 0, Number.MAX_SAFE_INTEGER) ?? 0
  const project = findProject(id)
  if (project === undefined) throw new Api3Failure('InvalidParameterValue.ActivityIdNotFound')
  const materialId = text(params, 'MaterialId')
  const forced = materialId === undefined || !faults ? undefined : forcedCode(materialId)
  if (forced !== undefined && forced !== 'normal') throw new Api3Failure(forced)
  // MaterialId filters the list; a forced id answered "normally" lists the whole activity.
  const materials = templatesOf(id).filter((template) => materialId === undefined || forced === 'normal' || template.modelId === materialId)
  return {
    MaterialInfos: materials.slice(offset, offset + limit).map((template) => materialInfo(template, project, version, pictureUrl)),
    Count: materials.length
  }
}
