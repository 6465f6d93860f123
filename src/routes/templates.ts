import type { FastifyPluginAsync } from 'fastify'
import type { ConfigSlice } from '../config/load.js'
import { fusionError, isFusionError } from '../errors.js'
import { Type } from '@sinclair/typebox'
import { FIELDS } from '../fusion/fields.js'
import { errorResponse, TemplateList } from '../schemas.js'
import type { TemplateInfo } from '../upstream/provider.js'

/** Activities whose lists are kept at once; the oldest is dropped first. */
const MAX_CACHED_PROJECTS = 256

interface Cached { expiresAt: number, pending: boolean, templates: Promise<TemplateInfo[]> }

/** The settings this plugin reads. */
export const templatesRouteSettings = ['REQUEST_DEADLINE_MS', 'TEMPLATES_CACHE_SECONDS', 'templates'] as const

/**
 * GET /templates: the materials a front-end can offer. The configuration's
 * list when it has one (FUSION_TEMPLATES; or, for the legacy API on the
 * emulator, the emulator's templates, which the entry point puts there);
 * otherwise API 3.0 asks the upstream (DescribeMaterialList, cached for
 * TEMPLATES_CACHE_SECONDS, one call in flight per activity), and the legacy
 * API, which has no listing, offers none.
 */
const templatesRoute: FastifyPluginAsync<{ config: ConfigSlice<typeof templatesRouteSettings[number]> }> = async (app, { config }) => {
  const cache = new Map<string, Cached>()

  /**
   * One listing in flight per activity, whatever the TTL; kept for
   * TEMPLATES_CACHE_SECONDS once done. "No such activity" is kept too, so
   * made-up ids cannot each cost an upstream call; other failures are not.
   */
  async function fromUpstream (
    projectId: string, list: NonNullable<typeof app.upstream.client.listTemplates>, log: typeof app.log
  ): Promise<TemplateInfo[]> {
    const hit = cache.get(projectId)
    if (hit !== undefined && (hit.pending || hit.expiresAt > Date.now())) return await hit.templates
    const entry: Cached = { expiresAt: Infinity, pending: true, templates: list(projectId, log, Date.now() + config.REQUEST_DEADLINE_MS) }
    cache.delete(projectId)
    cache.set(projectId, entry)
    while (cache.size > MAX_CACHED_PROJECTS) cache.delete(cache.keys().next().value as string)
    const settle = (keep: boolean): void => {
      entry.pending = false
      entry.expiresAt = Date.now() + config.TEMPLATES_CACHE_SECONDS * 1000
      if (!keep && cache.get(projectId) === entry) cache.delete(projectId)
    }
    entry.templates.then(
      () => { settle(true) },
      (error: unknown) => { settle(isFusionError(error) && error.code === 'FUSION_TEMPLATE_NOT_FOUND') }
    )
    return await entry.templates
  }

  app.get<{ Querystring: { project_id?: string } }>('/templates', {
    schema: {
      operationId: 'listTemplates',
      tags: ['fusion'],
      summary: 'The templates a front-end can offer',
      description: 'With FUSION_TEMPLATES set, those; with API 3.0, the activity\'s approved materials ' +
        '(DescribeMaterialList, cached briefly; `project_id` required); with the legacy API, the emulator\'s templates or none.',
      // The same id rule as POST /fuse's; Fastify checks it, and the error handler answers FUSION_INVALID_FIELD.
      querystring: Type.Object({
        project_id: Type.Optional({ ...FIELDS.project_id, description: 'The activity whose materials to list.' })
      }),
      response: {
        200: { description: 'The templates.', content: { 'application/json': { schema: TemplateList } } },
        ...Object.fromEntries([400, 401, 403, 404, 429, 502, 503, 504].map((status) => [status, errorResponse(status)]))
      }
    },
    config: { rateLimit: {} },
    // An empty `project_id=` (a form's empty input) means none.
    preValidation: async (request) => { if (request.query.project_id === '') delete request.query.project_id }
  }, async (request) => {
    const projectId = request.query.project_id
    const matches = (template: TemplateInfo): boolean => projectId === undefined || template.projectId === projectId
    // Previews written for the client reading them (the emulator's name the origin it called).
    const forClient = (template: TemplateInfo): TemplateInfo =>
      template.previewUrl === undefined ? template : { ...template, previewUrl: request.pictureUrl(template.previewUrl) }

    if (config.templates !== undefined) {
      return { templates: config.templates.templates.filter(matches).map(forClient), source: config.templates.source }
    }
    const list = app.upstream.client.listTemplates
    if (list !== undefined) {
      if (projectId === undefined) {
        throw fusionError('FUSION_MISSING_FIELD', {
          message: 'The query parameter `project_id` is required: the templates are listed per activity.'
        })
      }
      return { templates: (await fromUpstream(projectId, list, request.log)).map(forClient), source: 'upstream' }
    }
    return { templates: [], source: 'none' }
  })
}

export default templatesRoute
