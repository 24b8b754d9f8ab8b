declare module 'haraka-constants' {
  export const cont: number
  export const ok: number
  export const deny: number
  export const denysoft: number
  export const denydisconnect: number
  export const denysoftdisconnect: number
  export const delay: number
  export function translate(code: number): string
}

declare module 'haraka-config' {
  interface ConfigReader {
    get(name: string, type?: unknown, cb?: () => void): unknown
  }
  const config: {
    /** A reader of `defaults/config` with `overrides/config` merged over it, key by key. */
    module_config(defaults: string, overrides?: string): ConfigReader
  }
  export = config
}

declare module 'haraka-dsn' {
  class DSN {
    code: number
    reply: string
    static create(code: number, msg: string, subject?: number, detail?: number): DSN
    static sec_unauthorized(msg: string, code?: number): DSN
    static sys_unspecified(msg: string, code?: number): DSN
  }
  export = DSN
}
