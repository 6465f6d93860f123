/**
 * Fault injection, shared by both APIs: a material id `emulator_ret_<code>`
 * (in any known activity) forces the legacy `ret` code (API 3.0 answers its
 * mapped error), and `emulator_error_<Code-With-Dashes>` an API 3.0 code.
 */
const FORCED_RET = /^emulator_ret_(-?\d{1,6})$/

/** The legacy `ret` a material id forces, or undefined. */
export function forcedRet (modelId: string): number | undefined {
  const match = FORCED_RET.exec(modelId)
  return match === null ? undefined : Number(match[1])
}
