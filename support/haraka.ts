// The Haraka instance builder: the plugin packed once per process (npm pack, or the tarball in
// HIJACK_GUARD_E2E_TARBALL), a template made once with `haraka -i` and `npm install <tarball>`,
// and per instance a copy of it with the config written, the test-only plugins of
// support/haraka-plugins/ copied in, and a Haraka process started and stopped by pid. Everything
// stays on loopback: rDNS is answered for loopback, all outbound goes to the sink, public_ip is
// set, and mail_from.is_resolvable is not loaded.

import * as childProcess from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import {
  HOST,
  KEEP,
  REPO_ROOT,
  freePort,
  isRunning,
  killPid,
  run,
  tail,
  tmpDir,
  track,
  untrack,
  waitExit,
  waitUntil,
} from './process'

const HARAKA_BIN = path.join(REPO_ROOT, 'node_modules', '.bin', 'haraka')
const PLUGIN_PACKAGE = 'haraka-plugin-hijack-guard'
const PLUGIN_NAME = 'hijack-guard'
/** The test-only Haraka plugins copied into every instance's plugins/ (loaded only when listed). */
export const TEST_PLUGINS_DIR = path.join(__dirname, 'haraka-plugins')

export interface HarakaOptions {
  /** false: an instance without hijack-guard (no tarball needed). Default true. */
  readonly plugin?: boolean
  /**
   * npm packages (`name@version`) installed into the instance directory as an operator does
   * (`npm install` in the Haraka directory), e.g. another Haraka plugin; list them in the plugins.
   */
  readonly packages?: readonly string[]
  /** auth/flat_file users: { login: password }. */
  readonly users?: Readonly<Record<string, string>>
  /** 'flat_file' (default), 'any' (test_auth_any: any login, password 'secret'), other plugin names, or a list. */
  readonly auth?: string | readonly string[]
  /** Written verbatim to config/hijack-guard.ini. */
  readonly pluginIni?: string
  /** smtp.ini nodes (default 0: one process). */
  readonly nodes?: number
  /** config/me (default mx.test.example). */
  readonly me?: string
  /** host_list (default test.example); inbound mail for them is forwarded to the sink. */
  readonly localDomains?: readonly string[]
  /** More plugins as source text, { name: source }, written to DIR/plugins; list them below. */
  readonly testPlugins?: Readonly<Record<string, string>>
  /** Plugin names placed before the auth plugin (e.g. 'test_preauth'). */
  readonly beforePlugins?: readonly string[]
  /** Plugin names placed after hijack-guard (e.g. 'test_deny_mail'). */
  readonly extraPlugins?: readonly string[]
  /** connection.ini [max] line_length (Haraka's default 512 also caps the AUTH line). */
  readonly lineLength?: number
  /** { file: text } written last into DIR/config (they win). */
  readonly config?: Readonly<Record<string, string>>
  /** log.ini level (default info). */
  readonly logLevel?: string
  /** Added to Haraka's environment. */
  readonly env?: NodeJS.ProcessEnv
  /** Default: a free port. */
  readonly port?: number
  /** The sink outbound mail goes to (or sinkPort). */
  readonly sink?: { readonly port: number }
  readonly sinkPort?: number
  /** true: Haraka writes its log straight into DIR/haraka.log and log() reads the file (long, busy runs). */
  readonly logToFile?: boolean
  /** How long start() waits for the 220 greeting (default 15000 ms). */
  readonly startTimeoutMs?: number
}

export interface WaitForLogOptions {
  /** How many matches (default 1). */
  readonly count?: number
  /** Default 5000 ms. */
  readonly timeoutMs?: number
  /** A logMark(): only the log after it counts. */
  readonly since?: number
}

export interface HarakaInstance {
  readonly host: string
  readonly port: number
  /** The instance directory (haraka -c DIR). */
  readonly dir: string
  readonly sinkPort: number
  /** The plugins file's list, in order. */
  readonly plugins: readonly string[]
  readonly logFile: string
  /** The pid while it runs, else null. */
  readonly pid: number | null
  /** True when the last run exited without stop(). */
  readonly crashed: boolean
  /** Of the last run, once it exited. */
  readonly exitCode: number | null
  readonly exitSignal: NodeJS.Signals | null
  /** How long the last start() took until the 220, in ms. */
  readonly startMs: number
  alive(): boolean
  /** Everything Haraka logged (across restarts, with harness markers). */
  log(): string
  /** A position in the log, for waitForLog's `since`. */
  logMark(): number
  /** Spawns Haraka and resolves once it greets with 220; on failure rejects with the log's tail. */
  start(options?: { timeoutMs?: number }): Promise<void>
  /** SIGINT, SIGKILL to its process group after timeoutMs (default 8000). */
  stop(options?: { timeoutMs?: number }): Promise<void>
  restart(options?: { timeoutMs?: number }): Promise<void>
  /** Waits until `regex` matched `count` times in the log; rejects early if Haraka exits. */
  waitForLog(regex: RegExp, options?: WaitForLogOptions): Promise<void>
  /** Writes (or replaces) DIR/config/<name>. */
  writeConfig(name: string, text: string): void
  /** stop() and remove the instance directory (unless HIJACK_GUARD_E2E_KEEP=1). */
  destroy(): Promise<void>
}

let packing: Promise<string> | null = null

/** The plugin's tarball: HIJACK_GUARD_E2E_TARBALL, else `npm pack` of the repository (once per process). */
export function packPlugin(): Promise<string> {
  if (!packing) {
    const attempt = (async () => {
      const given = process.env.HIJACK_GUARD_E2E_TARBALL
      if (given) {
        if (!fs.existsSync(given)) throw new Error(`HIJACK_GUARD_E2E_TARBALL=${given} does not exist`)
        return path.resolve(given)
      }
      const dest = tmpDir('pack')
      await run('npm', ['pack', '--pack-destination', dest], { cwd: REPO_ROOT })
      const tgz = fs.readdirSync(dest).filter((f) => f.endsWith('.tgz'))
      if (tgz.length !== 1 || tgz[0] === undefined)
        throw new Error(`npm pack produced ${JSON.stringify(tgz)} in ${dest}`)
      return path.join(dest, tgz[0])
    })()
    attempt.catch(() => {
      packing = null
    })
    packing = attempt
  }
  return packing
}

const templates = new Map<string, Promise<string>>()

/** The package name of an npm spec such as `name@1.2.3` or `@scope/name@1.2.3`. */
function packageName(spec: string): string {
  const at = spec.lastIndexOf('@')
  return at > 0 ? spec.slice(0, at) : spec
}

/**
 * A `haraka -i` directory, with the tarball installed when withPlugin and `packages` installed
 * from the registry (npm's cache first); made once per process for each combination.
 */
function harakaTemplate(withPlugin: boolean, packages: readonly string[]): Promise<string> {
  const id = JSON.stringify([withPlugin, packages])
  let made = templates.get(id)
  if (!made) {
    made = (async () => {
      const dir = path.join(tmpDir(`template-${withPlugin ? 'plugin' : 'base'}`), 'haraka')
      await run(process.execPath, [HARAKA_BIN, '-i', dir], { cwd: REPO_ROOT })
      const specs = [...(withPlugin ? [await packPlugin()] : []), ...packages]
      if (specs.length) {
        await run('npm', ['install', ...specs, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir })
      }
      const names = [...(withPlugin ? [PLUGIN_PACKAGE] : []), ...packages.map(packageName)]
      for (const name of names) {
        const pj = path.join(dir, 'node_modules', name, 'package.json')
        if (!fs.existsSync(pj)) throw new Error(`npm install ${specs.join(' ')} did not create ${pj}`)
      }
      return dir
    })()
    made.catch(() => templates.delete(id))
    templates.set(id, made)
  }
  return made
}

function authPluginNames(auth: string | readonly string[] | undefined): string[] {
  const list = typeof auth === 'string' ? [auth] : (auth ?? ['flat_file'])
  return list.map((a) => (a === 'flat_file' ? 'auth/flat_file' : a === 'any' ? 'test_auth_any' : a))
}

/** The number of matches of `regex` in `text`. */
function countMatches(text: string, regex: RegExp): number {
  const re = new RegExp(regex.source, regex.flags.includes('g') ? regex.flags : `${regex.flags}g`)
  let n = 0
  while (re.exec(text) !== null) {
    n++
    if (re.lastIndex === 0) break
  }
  return n
}

/** The first reply line of an SMTP server on `port`, or null (nothing within timeoutMs). */
function probeGreeting(port: number, timeoutMs = 1000): Promise<string | null> {
  return new Promise((resolve) => {
    let buf = ''
    let done = false
    const sock = net.connect({ host: HOST, port })
    const finish = (line: string | null): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (line) sock.end('QUIT\r\n')
      else sock.destroy()
      resolve(line)
    }
    const timer = setTimeout(() => finish(null), timeoutMs)
    sock.setEncoding('utf8')
    sock.on('data', (data: string) => {
      buf += data
      const nl = buf.indexOf('\n')
      if (nl !== -1) finish(buf.slice(0, nl).trim())
    })
    sock.on('error', () => finish(null))
    sock.on('close', () => finish(null))
  })
}

/** Writes the instance's config: listener, loopback routing, auth users, plugin list. */
function writeInstanceConfig(
  dir: string,
  opts: HarakaOptions,
  port: number,
  sinkPort: number,
  plugins: readonly string[],
): void {
  const cfgDir = path.join(dir, 'config')
  const write = (name: string, lines: readonly string[]): void =>
    fs.writeFileSync(path.join(cfgDir, name), `${lines.join('\n')}\n`)
  write('smtp.ini', [
    '[main]',
    `listen=${HOST}:${port}`,
    `nodes=${opts.nodes ?? 0}`,
    `public_ip=${HOST}`,
    'force_shutdown_timeout=5',
    '',
    '[headers]',
    'max_lines=1000',
    'max_received=100',
  ])
  write('me', [opts.me ?? 'mx.test.example'])
  if (opts.lineLength) {
    const ci = fs.readFileSync(path.join(cfgDir, 'connection.ini'), 'utf8')
    fs.writeFileSync(
      path.join(cfgDir, 'connection.ini'),
      ci.replace(/^line_length=\d+$/m, `line_length=${opts.lineLength}`),
    )
  }
  write('host_list', opts.localDomains ?? ['test.example'])
  write('log.ini', ['[main]', `level=${opts.logLevel ?? 'info'}`, 'timestamps=false', 'format=default'])
  // enable_tls=false and temp_fail_intervals=none: quick, deterministic delivery to the sink.
  write('outbound.ini', [
    '[main]',
    'enable_tls=false',
    'local_mx_ok=true',
    'inet_prefer=v4',
    'connect_timeout=5',
    'temp_fail_intervals=none',
  ])
  write('test_loopback.ini', ['[main]', `sink_host=${HOST}`, `sink_port=${sinkPort}`])
  // Inbound (not relayed) mail for the local domains goes to the sink too.
  write('smtp_forward.ini', [
    '[main]',
    `host=${HOST}`,
    `port=${sinkPort || 1}`,
    'enable_tls=false',
    'enable_outbound=false',
  ])
  const users = Object.entries(opts.users ?? {}).map(([user, pass]) => `${user}=${pass}`)
  write('auth_flat_file.ini', ['[core]', 'methods=PLAIN,LOGIN', '', '[users]', ...users])
  if (opts.pluginIni !== undefined) fs.writeFileSync(path.join(cfgDir, `${PLUGIN_NAME}.ini`), opts.pluginIni)
  write('plugins', plugins)
  for (const [name, text] of Object.entries(opts.config ?? {})) {
    const file = path.join(cfgDir, name)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, text)
  }
}

const instances = new Set<HarakaProcess>()

class HarakaProcess implements HarakaInstance {
  readonly host = HOST
  readonly logFile: string
  crashed = false
  exitCode: number | null = null
  exitSignal: NodeJS.Signals | null = null
  startMs = 0
  #child: childProcess.ChildProcess | null = null
  #memLog = ''
  #stopping = false
  /** logToFile: Haraka writes DIR/haraka.log itself; nothing passes through or stays in this process. */
  readonly #direct: boolean

  constructor(
    readonly dir: string,
    readonly port: number,
    readonly sinkPort: number,
    readonly plugins: readonly string[],
    private readonly opts: HarakaOptions,
  ) {
    this.logFile = path.join(dir, 'haraka.log')
    this.#direct = opts.logToFile === true
  }

  get pid(): number | null {
    return this.#child && isRunning(this.#child) ? (this.#child.pid ?? null) : null
  }

  alive(): boolean {
    return isRunning(this.#child)
  }

  log(): string {
    if (!this.#direct) return this.#memLog
    try {
      return fs.readFileSync(this.logFile, 'utf8')
    } catch {
      return ''
    }
  }

  logMark(): number {
    return this.log().length
  }

  async start({ timeoutMs = this.opts.startTimeoutMs ?? 15_000 }: { timeoutMs?: number } = {}): Promise<void> {
    if (this.pid !== null) throw new Error(`haraka on ${this.port} is already running (pid ${this.pid})`)
    this.#stopping = false
    this.#append(`\n==== harness: starting haraka -c ${this.dir} ====\n`)
    const mark = this.logMark()
    const child = this.#spawn()
    this.#child = child
    let spawnError: Error | null = null
    child.on('error', (err) => {
      spawnError = err
    })
    track(this)
    const t0 = Date.now()
    const greets = async (): Promise<boolean> => {
      if (spawnError) throw spawnError
      if (!isRunning(child))
        throw new Error(`haraka exited during startup (code ${child.exitCode}, signal ${child.signalCode})`)
      const line = await probeGreeting(this.port, 1000)
      if (line && !line.startsWith('220')) throw new Error(`haraka greeted with: ${line}`)
      return line !== null
    }
    try {
      await waitUntil(greets, {
        timeoutMs,
        intervalMs: 50,
        message: `haraka did not answer 220 on ${HOST}:${this.port}`,
      })
    } catch (err) {
      await this.stop()
      const error = err instanceof Error ? err : new Error(String(err))
      error.message += `\n---- haraka log (${this.dir}) ----\n${tail(this.log(), 80)}`
      throw error
    }
    this.startMs = Date.now() - t0
    // Haraka answers 220 before its outbound queue is loaded, and loading it deletes every
    // temporary queue file it finds: a message relayed in that moment fails "550 Queue error".
    // Wait for the load (or an exit, which the caller sees), never longer than the bound.
    await waitUntil(() => !isRunning(child) || /files in my temp fail queue/.test(this.log().slice(mark)), {
      timeoutMs,
      intervalMs: 25,
      message: `haraka on ${this.port} did not load its outbound queue`,
    }).catch(() => undefined)
  }

  async stop({ timeoutMs = 8000 }: { timeoutMs?: number } = {}): Promise<void> {
    const child = this.#child
    if (!child) return
    this.#stopping = true
    if (isRunning(child)) {
      killPid(child.pid, 'SIGINT')
      if (!(await waitExit(child, timeoutMs))) {
        this.#append('\n==== harness: haraka did not exit on SIGINT, sending SIGKILL ====\n')
        this.killSync()
        await waitExit(child, 2000)
      }
    }
    // Cluster workers leave when the master exits; make sure they did.
    if (this.opts.nodes && child.pid !== undefined) {
      const group = -child.pid
      try {
        await waitUntil(() => !killPid(group, 0), { timeoutMs: 3000 })
      } catch {
        killPid(group, 'SIGKILL')
      }
    }
    untrack(this)
  }

  async restart(options?: { timeoutMs?: number }): Promise<void> {
    await this.stop(options)
    await this.start(options)
  }

  async waitForLog(regex: RegExp, { count = 1, timeoutMs = 5000, since = 0 }: WaitForLogOptions = {}): Promise<void> {
    const seen = (): number => countMatches(this.log().slice(since), regex)
    const enough = (): boolean => {
      if (seen() >= count) return true
      if (this.#child && !this.alive()) {
        // One last look: the exit line was appended after the final output.
        if (seen() >= count) return true
        throw new Error(`haraka exited while waiting for ${regex} x${count} (saw ${seen()})\n${tail(this.log())}`)
      }
      return false
    }
    await waitUntil(enough, {
      timeoutMs,
      message: () => `${regex} x${count} in haraka log (saw ${seen()})\n${tail(this.log())}`,
    })
  }

  writeConfig(name: string, text: string): void {
    fs.writeFileSync(path.join(this.dir, 'config', name), text)
  }

  async destroy(): Promise<void> {
    await this.stop()
    instances.delete(this)
    if (!KEEP) fs.rmSync(path.dirname(this.dir), { recursive: true, force: true })
  }

  killSync(): void {
    const pid = this.#child?.pid
    if (!pid) return
    killPid(-pid, 'SIGKILL')
    killPid(pid, 'SIGKILL')
  }

  #append(data: Buffer | string): void {
    const text = data.toString()
    if (!this.#direct) this.#memLog += text
    try {
      fs.appendFileSync(this.logFile, text)
    } catch {
      // the directory was removed
    }
  }

  #spawn(): childProcess.ChildProcess {
    const logFd = this.#direct ? fs.openSync(this.logFile, 'a') : null
    let child: childProcess.ChildProcess
    try {
      // detached: its own process group, so cluster workers are killed with it
      child = childProcess.spawn(process.execPath, [HARAKA_BIN, '-c', this.dir], {
        cwd: this.dir,
        env: { ...process.env, ...this.opts.env },
        stdio: logFd === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
        detached: true,
      })
    } finally {
      if (logFd !== null) fs.closeSync(logFd)
    }
    const append = (data: Buffer): void => this.#append(data)
    child.stdout?.on('data', append)
    child.stderr?.on('data', append)
    this.crashed = false
    this.exitCode = null
    this.exitSignal = null
    child.on('exit', (code, signal) => {
      if (!this.#stopping) this.crashed = true
      this.exitCode = code
      this.exitSignal = signal
      this.#append(`\n==== harness: haraka exited code=${code} signal=${signal} ====\n`)
    })
    return child
  }
}

/** A new Haraka instance directory (a copy of the template) with its config; not started yet. */
export async function createHaraka(opts: HarakaOptions = {}): Promise<HarakaInstance> {
  const withPlugin = opts.plugin !== false
  const template = await harakaTemplate(withPlugin, opts.packages ?? [])
  const dir = path.join(tmpDir('haraka'), 'haraka')
  fs.cpSync(template, dir, { recursive: true, verbatimSymlinks: true })
  const port = opts.port ?? (await freePort())
  const sinkPort = opts.sinkPort ?? opts.sink?.port ?? 0
  const plugins = [
    'test_loopback',
    ...(opts.beforePlugins ?? []),
    ...authPluginNames(opts.auth),
    ...(withPlugin ? [PLUGIN_NAME] : []),
    ...(opts.extraPlugins ?? []),
    'rcpt_to.in_host_list',
    'queue/smtp_forward',
  ]
  fs.cpSync(TEST_PLUGINS_DIR, path.join(dir, 'plugins'), { recursive: true })
  for (const [name, source] of Object.entries(opts.testPlugins ?? {})) {
    fs.writeFileSync(path.join(dir, 'plugins', `${name}.js`), source)
  }
  writeInstanceConfig(dir, opts, port, sinkPort, plugins)
  const instance = new HarakaProcess(dir, port, sinkPort, plugins, opts)
  instances.add(instance)
  return instance
}

/** For a mocha afterEach: prints the log tails of the live (or crashed) instances when the test failed. */
export function dumpLogsIfFailed(context: { currentTest?: { state?: string } | undefined }, lines = 80): void {
  if (context.currentTest?.state !== 'failed') return
  for (const h of instances) {
    if (!h.alive() && !h.crashed) continue
    console.error(`\n---- haraka ${h.dir} (port ${h.port}) log tail ----\n${tail(h.log(), lines)}`)
  }
}

/** The EHLO name that test_preauth logs in as `login` (list test_preauth in beforePlugins). */
export function preauthName(login: string): string {
  return `preauth-${Buffer.from(login, 'utf8').toString('hex')}.test`
}
