// haraka-config's ini reader (no types shipped): the tests parse ini text exactly as Haraka does.

declare module 'haraka-config/lib/readers/ini' {
  type IniOptions = { readonly booleans?: readonly string[] }
  type Ini = Record<string, Record<string, unknown>>

  /** Reads and parses an ini file. */
  export function load(file: string, options: IniOptions): Ini
  /** Parses ini text; `name` names it in log messages. */
  export function parseIni(name: string, options: IniOptions, data: string): Ini
}
