import { ValueSetIndex } from '../cql-engine/terminology.ts';
import type { KnowledgeSet } from '../knowledge/knowledge-set.ts';

/** A knowledge set as plain data (structured-cloneable), for worker threads. */
export type TransferableKnowledge = Omit<KnowledgeSet, 'valueSets'>;

/** toTransferable drops the one non-data member (the value-set index; rebuilt from its expansions). */
export function toTransferable(knowledge: KnowledgeSet): TransferableKnowledge {
  const { valueSets: _index, ...data } = knowledge;
  return data;
}

/** fromTransferable rebuilds the knowledge set a worker received. */
export function fromTransferable(data: TransferableKnowledge): KnowledgeSet {
  return Object.freeze({ ...data, valueSets: new ValueSetIndex(data.valueSetExpansions) });
}
