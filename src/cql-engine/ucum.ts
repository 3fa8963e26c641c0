/**
 * UCUM unit services for the in-process CQL compiler, backed by @lhncbc/ucum-lhc. The compiler
 * asks to validate every quoted unit in a quantity literal (CQL §2.4 Quantities); an invalid unit
 * becomes a compile error. Conversion and multiplication are wired too because the same lazy
 * service is what the Kotlin engine would use.
 */
import { createRequire } from 'node:module';
import type { Translator } from './translator.ts';

interface UcumValidation {
  readonly status: 'valid' | 'invalid' | 'error';
  readonly msg: readonly string[];
}
interface UcumConversion {
  readonly status: 'succeeded' | 'failed' | 'error';
  readonly toVal: number | null;
  readonly msg: readonly string[];
}
/** UcumUtils is the part of ucum-lhc's UcumLhcUtils we use (the package ships no types). */
export interface UcumUtils {
  validateUnitString(unit: string, suggest?: boolean): UcumValidation;
  convertUnitTo(fromUnit: string, fromValue: number, toUnit: string): UcumConversion;
}

function isUcumUtils(value: unknown): value is UcumUtils {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return typeof candidate.validateUnitString === 'function' && typeof candidate.convertUnitTo === 'function';
}

/** loadUcumUtils returns ucum-lhc's unit utilities; it loads ~1 MB of unit tables, so call it lazily. */
export function loadUcumUtils(): UcumUtils {
  const require = createRequire(import.meta.url);
  const pkg = require('@lhncbc/ucum-lhc') as { UcumLhcUtils?: { getInstance?: () => unknown } };
  const utils = pkg.UcumLhcUtils?.getInstance?.();
  if (!isUcumUtils(utils)) throw new Error('@lhncbc/ucum-lhc does not expose UcumLhcUtils.getInstance()');
  return utils;
}

/** validateUcumUnit returns null when `unit` is valid UCUM, else a message saying why not. */
export function validateUcumUnit(utils: UcumUtils, unit: string): string | null {
  const result = utils.validateUnitString(unit, false);
  if (result.status === 'valid') return null;
  const why = result.msg.length > 0 ? result.msg.join(' ') : `${unit} is not a valid UCUM unit.`;
  return why;
}

/** convertUcumValue converts a decimal string between commensurable UCUM units, or throws. */
export function convertUcumValue(utils: UcumUtils, value: string, fromUnit: string, toUnit: string): string {
  if (fromUnit === toUnit) return value;
  const result = utils.convertUnitTo(fromUnit, Number(value), toUnit);
  if (result.status !== 'succeeded' || result.toVal === null) {
    throw new Error(result.msg.join(' ') || `Cannot convert ${fromUnit} to ${toUnit}.`);
  }
  return String(result.toVal);
}

/** combineUnits builds the UCUM unit of a product or quotient; `1` is the unity unit. */
export function combineUnits(left: string, right: string, operator: '.' | '/'): string {
  const wrap = (unit: string): string => (/^[A-Za-z0-9[\]{}'_%]+$/.test(unit) ? unit : `(${unit})`);
  if (operator === '.') {
    if (left === '1') return right;
    if (right === '1') return left;
    return `${wrap(left)}.${wrap(right)}`;
  }
  if (right === '1') return left;
  if (left === right) return '1';
  return `${wrap(left)}/${wrap(right)}`;
}

/** createLazyUcumService is the `Lazy<UcumService>` LibraryManager takes; ucum-lhc loads on first use. */
export function createLazyUcumService({ cqlToElm, BigDecimal, Pair }: Translator): unknown {
  let utils: UcumUtils | undefined;
  const get = (): UcumUtils => (utils ??= loadUcumUtils());
  return cqlToElm.createUcumService(
    (value, fromUnit, toUnit) => convertUcumValue(get(), value, fromUnit, toUnit),
    (unit) => validateUcumUnit(get(), unit),
    (left, right) => new Pair(left.first.multiply(right.first), combineUnits(left.second, right.second, '.')),
    (left, right) => {
      const quotient = Number(left.first.toPlainString()) / Number(right.first.toPlainString());
      return new Pair(BigDecimal.fromString(String(quotient)), combineUnits(left.second, right.second, '/'));
    },
  );
}
