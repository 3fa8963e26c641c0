import type { HookId } from '../domain/hooks.ts';
import { HOOK_IDS } from '../domain/hooks.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { derivePrefetchTemplates, withIncludes } from './prefetch/templates.ts';

/** A CDS service as discovery describes it ({@link https://cds-hooks.hl7.org/2.0/#response}), plus the rules it runs. */
export interface CdsService {
  readonly id: string;
  readonly hook: HookId;
  readonly title: string;
  readonly description: string;
  readonly prefetch: Readonly<Record<string, string>>;
  readonly usageRequirements?: string;
  /** Rules this service evaluates (internal; not part of discovery). */
  readonly ruleIds: readonly string[];
}

/** The discovery document fields of a service, without internals. */
export function discoveryEntry(service: CdsService): Record<string, unknown> {
  return {
    hook: service.hook,
    id: service.id,
    title: service.title,
    description: service.description,
    ...(Object.keys(service.prefetch).length ? { prefetch: service.prefetch } : {}),
    ...(service.usageRequirements ? { usageRequirements: service.usageRequirements } : {}),
  };
}

const USAGE: Partial<Record<HookId, string>> = {
  'order-select': 'Send the draft orders and selections in context; cards name the selected order they concern and may suggest removing it.',
  'order-sign': 'Send every draft order being signed in context.draftOrders.',
};

/**
 * describeServices lists one service per hook and rule group (a rule's `group`, else its id) of
 * the active rules, with prefetch templates derived from the retrieves of the CQL those rules
 * run. Ids are `<group>-<hook>`; order is deterministic.
 */
export function describeServices(prepared: PreparedKnowledge): CdsService[] {
  const allElm = [...prepared.knowledge.libraries.values()].map((l) => l.compiled.elm);
  const services: CdsService[] = [];
  for (const hook of HOOK_IDS) {
    const groups = new Map<string, PreparedKnowledge['rules'][number][]>();
    for (const rule of prepared.rulesFor(hook)) {
      const group = rule.loaded.rule.group ?? rule.loaded.rule.id;
      groups.set(group, [...(groups.get(group) ?? []), rule]);
    }
    for (const [group, rules] of [...groups].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const roots = [...new Set(rules.map((r) => prepared.knowledge.libraries.get(r.libraryKey)?.compiled.elm).filter((e) => e !== undefined))];
      const specs = rules.map((r) => r.loaded.rule);
      const single = specs.length === 1 ? specs[0] : undefined;
      services.push({
        id: `${group}-${hook}`,
        hook,
        title: single ? single.title : titleCase(group),
        description: single ? single.description : specs.map((s) => `${s.title}.`).join(' '),
        prefetch: derivePrefetchTemplates(withIncludes(roots, allElm)),
        ...(USAGE[hook] ? { usageRequirements: USAGE[hook] } : {}),
        ruleIds: specs.map((s) => s.id),
      });
    }
  }
  return services;
}

function titleCase(id: string): string {
  return id.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
}
