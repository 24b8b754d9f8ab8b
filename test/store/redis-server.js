'use strict'

// Starts and stops throwaway redis-server processes on loopback ports, for the store tests.
// Nothing is saved to disk; every process is killed by its pid.

const childProcess = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server'
const HOST = '127.0.0.1'
const live = new Set()

process.once('exit', () => {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
})

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` every `everyMs` until it returns a truthy value; fails after `ms`. */
async function waitFor(check, ms, what, everyMs = 25) {
  const deadline = Date.now() + ms
  let last
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what}: not so within ${ms} ms${last ? ` (last error: ${last.message})` : ''}`)
    await delay(everyMs)
  }
}

/** A loopback port nobody listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Resolves true when a PING on `port` gets +PONG, false otherwise (bounded by `ms`). */
function ping(port, ms = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port })
    let buf = ''
    const done = (ok) => {
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), ms)
    sock.once('error', () => done(false))
    sock.on('data', (d) => {
      buf += d.toString()
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
    sock.once('connect', () => sock.write('PING\r\n'))
  })
}

/**
 * Starts redis-server on `port` (a free one when omitted) and waits until it answers PING.
 * Returns { port, pid, dir, stop(), pause(), resume() }.
 */
async function startRedis({ port, args = [] } = {}) {
  port = port ?? (await freePort())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-redis-'))
  const child = childProcess.spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  live.add(child)
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  let exited = false
  const exit = new Promise((resolve) => child.once('exit', resolve))
  exit.then(() => {
    exited = true
    live.delete(child)
  })
  child.once('error', (err) => (output += String(err)))

  const server = {
    port,
    pid: child.pid,
    dir,
    /** Stops the server (SIGTERM, then SIGKILL) and waits for it to exit. */
    async stop() {
      if (exited) return
      try {
        process.kill(child.pid, 'SIGCONT')
        process.kill(child.pid, 'SIGTERM')
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(child.pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }, 3000)
      await exit
      clearTimeout(timer)
      fs.rmSync(dir, { recursive: true, force: true })
    },
    /** Freezes the server: it keeps its socket open but answers nothing. */
    pause() {
      process.kill(child.pid, 'SIGSTOP')
    },
    resume() {
      process.kill(child.pid, 'SIGCONT')
    },
  }
  const deadline = Date.now() + 10_000
  while (!(await ping(port))) {
    if (exited || Date.now() > deadline) {
      await server.stop()
      throw new Error(`redis-server on port ${port} does not answer PING: ${exited ? 'it exited' : 'timed out'}\n${output}`)
    }
    await delay(25)
  }
  return server
}

module.exports = { startRedis, freePort, waitFor, delay, HOST }
