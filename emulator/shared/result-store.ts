import { randomUUID } from 'node:crypto'

/**
 * The fused pictures answered by URL, kept in memory for `GET /results/:id`
 * (both APIs answer through it). Bounded: the oldest are dropped first.
 */
export class ResultStore {
  private readonly images = new Map<string, Buffer>()

  constructor (private readonly max: number) {}

  /** Returns the id the picture is served under. */
  put (image: Buffer): string {
    const id = randomUUID()
    this.images.set(id, image)
    while (this.images.size > this.max) this.images.delete(this.images.keys().next().value as string)
    return id
  }

  get (id: string): Buffer | undefined {
    return this.images.get(id)
  }
}
