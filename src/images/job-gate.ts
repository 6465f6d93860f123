import { fusionError } from '../errors.js'

/**
 * Who may start image work: a job needs one of `slots` and its estimated
 * decode memory out of `memoryBytes`, both held until libvips has really
 * finished with the photo (even when its client was answered earlier). Photos
 * start in arrival order: one that waits for memory is not overtaken by smaller
 * ones behind it, so a large photo is delayed, never starved, and the queue's
 * order is the answer order. Every wait ends by the request's deadline.
 *
 * Not p-limit (used before): it counts jobs only, and a waiting job cannot leave its queue
 * when its deadline comes or its client goes.
 */
export interface JobGate {
  /**
   * Resolves with a lease once a slot and `cost` bytes are free and every earlier waiter has started. Refuses with
   * 503 FUSION_OVERLOADED at `deadline` (at once if it has passed), or FUSION_CLIENT_CLOSED_REQUEST when `signal`
   * aborts; a refused waiter never starts. A cost over `memoryBytes` is the caller's to refuse: it is counted as the whole budget.
   */
  acquire: (cost: number, options?: { signal?: AbortSignal | undefined, deadline?: number | undefined }) => Promise<Lease>
  readonly running: number
  readonly waiting: number
  /** Estimated decode memory of the running jobs. */
  readonly memoryInUse: number
}

export interface Lease {
  /** Gives the slot and the memory back. Only the first call counts. */
  release: () => void
}

export interface JobGateOptions {
  slots: number
  memoryBytes: number
  /** Seconds a client refused at its deadline should wait. */
  retryAfterSeconds: number
  /** Runs after every change of the running jobs, the waiters or the memory in use. */
  onChange?: () => void
}

interface Waiter { cost: number, start: () => void }

export function createJobGate (options: JobGateOptions): JobGate {
  const queue: Waiter[] = []
  let running = 0
  let memoryInUse = 0

  const overloaded = (): Error => fusionError('FUSION_OVERLOADED', {
    retryAfterSeconds: options.retryAfterSeconds,
    cause: new Error('the request deadline came while its photo waited for an image job')
  })

  function dispatch (): void {
    while (queue.length > 0) {
      const head = queue[0]!
      if (running >= options.slots || memoryInUse + head.cost > options.memoryBytes) break
      queue.shift()
      running++
      memoryInUse += head.cost
      head.start()
    }
    options.onChange?.()
  }

  function lease (cost: number): Lease {
    let released = false
    return {
      release () {
        if (released) return
        released = true
        running--
        memoryInUse -= cost
        dispatch()
      }
    }
  }

  return {
    get running () { return running },
    get waiting () { return queue.length },
    get memoryInUse () { return memoryInUse },
    acquire: async (requested, { signal, deadline } = {}) => {
      if (signal?.aborted === true) throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')
      if (deadline !== undefined && deadline <= Date.now()) throw overloaded()
      const cost = Math.min(requested, options.memoryBytes)
      return await new Promise<Lease>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined
        const settle = (): void => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
        }
        const waiter: Waiter = { cost, start: () => { settle(); resolve(lease(cost)) } }
        const leave = (error: Error): void => {
          const at = queue.indexOf(waiter)
          if (at === -1) return
          queue.splice(at, 1)
          settle()
          reject(error)
          // The next waiter may fit where this one did not.
          dispatch()
        }
        const onAbort = (): void => { leave(fusionError('FUSION_CLIENT_CLOSED_REQUEST')) }
        signal?.addEventListener('abort', onAbort, { once: true })
        if (deadline !== undefined) timer = setTimeout(() => { leave(overloaded()) }, deadline - Date.now())
        queue.push(waiter)
        dispatch()
      })
    }
  }
}
