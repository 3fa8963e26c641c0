/**
 * Export formats for report lists. CSV and Parquet are written by DuckDB itself to a temp file
 * that is then streamed (warehouse/report-export.ts); the Apache Arrow IPC stream is built here,
 * one record batch per DuckDB chunk (about 2,048 rows), so a 1,000,000-row export never sits in
 * memory at once.
 */
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DateDay, Field, Float64, Int32, makeData, RecordBatch, RecordBatchStreamWriter, Schema, Struct, TimestampMillisecond, Utf8,
  vectorFromArray, type Data, type DataType,
} from 'apache-arrow';
import type { ColumnChunk } from '../warehouse/report-export.ts';
import type { ListColumn } from '../warehouse/reports.ts';

export const EXPORT_FORMATS = ['csv', 'parquet', 'arrow'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const EXPORT_CONTENT_TYPES: Readonly<Record<ExportFormat, string>> = {
  csv: 'text/csv; charset=utf-8',
  parquet: 'application/vnd.apache.parquet',
  arrow: 'application/vnd.apache.arrow.stream',
};

function arrowType(column: ListColumn): DataType {
  switch (column.kind) {
    case 'integer': return new Int32();
    case 'number': return new Float64();
    case 'date': return new DateDay();
    case 'timestamp': return new TimestampMillisecond('UTC');
    default: return new Utf8();
  }
}

/** arrowSchema is the Arrow schema of a list: every field nullable, typed by column kind. */
export function arrowSchema(columns: readonly ListColumn[]): Schema {
  return new Schema(columns.map((c) => new Field(c.name, arrowType(c), true)));
}

function validity(values: readonly unknown[]): { nullBitmap: Uint8Array; nullCount: number } {
  const nullBitmap = new Uint8Array((values.length + 7) >> 3);
  let nullCount = 0;
  values.forEach((v, i) => {
    if (v === null || v === undefined) nullCount++;
    else nullBitmap[i >> 3]! |= 1 << (i & 7);
  });
  return { nullBitmap, nullCount };
}

const encoder = new TextEncoder();

/** columnData builds one column's Arrow data straight from its values (no per-value builder). */
function columnData(column: ListColumn, values: readonly (string | number | null)[]): Data {
  const length = values.length;
  const { nullBitmap, nullCount } = validity(values);
  switch (column.kind) {
    case 'integer':
      return makeData({ type: new Int32(), length, nullCount, nullBitmap, data: Int32Array.from(values, (v) => Number(v ?? 0)) });
    case 'number':
      return makeData({ type: new Float64(), length, nullCount, nullBitmap, data: Float64Array.from(values, (v) => Number(v ?? 0)) });
    case 'date':
      return makeData({ type: new DateDay(), length, nullCount, nullBitmap, data: Int32Array.from(values, (v) => Number(v ?? 0)) });
    case 'timestamp':
      return vectorFromArray(values.map((v) => (v === null ? null : new Date(String(v)))), new TimestampMillisecond('UTC')).data[0]!;
    default: {
      const valueOffsets = new Int32Array(length + 1);
      const parts: Uint8Array[] = [];
      let offset = 0;
      values.forEach((v, i) => {
        if (v !== null) {
          const bytes = encoder.encode(String(v));
          parts.push(bytes);
          offset += bytes.byteLength;
        }
        valueOffsets[i + 1] = offset;
      });
      const data = new Uint8Array(offset);
      let at = 0;
      for (const part of parts) {
        data.set(part, at);
        at += part.byteLength;
      }
      return makeData({ type: new Utf8(), length, nullCount, nullBitmap, valueOffsets, data });
    }
  }
}

/** arrowBatches turns column chunks into record batches of one fixed schema (an empty list: one empty batch). */
export async function* arrowBatches(columns: readonly ListColumn[], chunks: AsyncIterable<ColumnChunk>): AsyncGenerator<RecordBatch> {
  const schema = arrowSchema(columns);
  const batch = (length: number, values: readonly (readonly (string | number | null)[])[]): RecordBatch =>
    new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length, nullCount: 0, children: columns.map((c, i) => columnData(c, values[i] ?? [])) }));
  let any = false;
  for await (const chunk of chunks) {
    yield batch(chunk.length, chunk.columns);
    any = true;
  }
  if (!any) yield batch(0, columns.map(() => []));
}

/** arrowStream encodes column chunks as an Arrow IPC stream (schema, record batches, end marker). */
export function arrowStream(columns: readonly ListColumn[], chunks: AsyncIterable<ColumnChunk>): Readable {
  const out = new PassThrough();
  const writer = RecordBatchStreamWriter.throughNode({ autoDestroy: true });
  pipeline(Readable.from(arrowBatches(columns, chunks)), writer, out).catch((error: unknown) => out.destroy(error as Error));
  return out;
}
