// The sink in a child process (bench/sink-child.ts): its CPU is measured apart; it still shares
// the cores. Stopped by pid with everything else support/ started.

import * as childProcess from 'node:child_process'
import * as path from 'node:path'
import { killPid, stopChild, track, untrack, type Resource } from '../support'

export interface SinkChild {
  readonly port: number
  readonly pid: number
  /** The messages the sink received so far. */
  count(): Promise<number>
}

interface Ready {
  readonly type: 'ready'
  readonly port: number
}
interface Count {
  readonly type: 'count'
  readonly id: number
  readonly count: number
}

const isObject = (m: unknown): m is Record<string, unknown> => typeof m === 'object' && m !== null

export const isCountRequest = (m: unknown): m is { type: 'count'; id: number } =>
  isObject(m) && m.type === 'count' && typeof m.id === 'number'
const isReady = (m: unknown): m is Ready => isObject(m) && m.type === 'ready' && typeof m.port === 'number'
const isCount = (m: unknown): m is Count => isCountRequest(m) && typeof (m as { count?: unknown }).count === 'number'

/** Forks the sink child (with this process's TypeScript loader) and resolves once it listens. */
export function startSinkChild(): Promise<SinkChild> {
  return new Promise((resolve, reject) => {
    const child = childProcess.fork(path.join(__dirname, 'sink-child.ts'), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const resource: Resource = {
      stop: () => stopChild(child),
      killSync: () => void killPid(child.pid, 'SIGKILL'),
    }
    track(resource)
    const waiting = new Map<number, { resolve(count: number): void; reject(err: Error): void }>()
    let seq = 0
    const timer = setTimeout(() => reject(new Error('the sink child did not start within 15 s')), 15_000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      untrack(resource)
      const err = new Error(`the sink child exited (${code}, ${signal})`)
      for (const w of waiting.values()) w.reject(err)
      reject(err)
    })
    child.on('message', (m: unknown) => {
      if (isReady(m) && child.pid !== undefined) {
        clearTimeout(timer)
        const pid = child.pid
        resolve({
          port: m.port,
          pid,
          count() {
            return new Promise((resolve, reject) => {
              const id = ++seq
              waiting.set(id, { resolve, reject })
              child.send({ type: 'count', id })
            })
          },
        })
      } else if (isCount(m)) {
        const w = waiting.get(m.id)
        waiting.delete(m.id)
        w?.resolve(m.count)
      }
    })
  })
}
