import type { FhirResource } from '../src/cql-engine/fhir-model.ts';

/**
 * generateOpioidPatient makes one synthetic FHIR R4 patient for the opioid/benzodiazepine bench:
 * a Patient, MedicationRequests (most with medicationCodeableConcept, some with
 * medicationReference to contained-in-bundle Medications), Conditions, Observations and Encounters,
 * dated relative to `asOf`. Deterministic for a given seed; no clock or Math.random.
 */
export function generateOpioidPatient(options: { readonly resources: number; readonly seed: number; readonly asOf: string }): FhirResource[] {
  const random = mulberry32(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const asOf = Date.parse(options.asOf);
  const daysAgo = (max: number): string => new Date(asOf - Math.floor(random() * max) * 86_400_000).toISOString();
  const day = (iso: string): string => iso.slice(0, 10);

  const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
  const opioids = ['1049621', '856980', '891874', '835603'];
  const benzos = ['308048', '197901', '197591', '197527'];
  const others = ['308182', '314076', '860975', '197806', '1725059'];
  const rx = (code: string) => ({ coding: [{ system: RXNORM, code, display: `RxNorm ${code}` }], text: `RxNorm ${code}` });

  const patientId = `bench-${options.seed}`;
  const subject = { reference: `Patient/${patientId}` };
  const out: FhirResource[] = [
    { resourceType: 'Patient', id: patientId, gender: 'female', birthDate: '1961-04-12', name: [{ family: 'Bench', given: ['Opal'] }] },
  ];
  const budget = Math.max(options.resources - 1, 0);
  const counts = {
    medication: Math.round(budget * 0.05),
    byReference: Math.round(budget * 0.1),
    byConcept: Math.round(budget * 0.3),
    condition: Math.round(budget * 0.2),
    observation: Math.round(budget * 0.2),
  };
  const encounters = budget - counts.medication - counts.byReference - counts.byConcept - counts.condition - counts.observation;

  const medicationIds: string[] = [];
  for (let i = 0; i < counts.medication; i++) {
    const id = `med-${i}`;
    medicationIds.push(id);
    out.push({ resourceType: 'Medication', id, status: 'active', code: rx(i % 2 === 0 ? pick(opioids) : pick(others)) });
  }
  const request = (id: string, medication: Record<string, unknown>): FhirResource => ({
    resourceType: 'MedicationRequest',
    id,
    status: pick(['active', 'active', 'completed', 'stopped']),
    intent: pick(['order', 'order', 'order', 'plan']),
    ...medication,
    subject,
    authoredOn: daysAgo(540),
    dosageInstruction: [{ text: 'as directed', timing: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } } }],
    dispenseRequest: { quantity: { value: 30, unit: 'tablet' }, expectedSupplyDuration: { value: 30, unit: 'days', system: 'http://unitsofmeasure.org', code: 'd' } },
  });
  for (let i = 0; i < counts.byConcept; i++) {
    out.push(request(`mr-cc-${i}`, { medicationCodeableConcept: rx(pick([...opioids, ...benzos, ...others])) }));
  }
  for (let i = 0; i < counts.byReference; i++) {
    out.push(request(`mr-ref-${i}`, { medicationReference: { reference: `Medication/${pick(medicationIds.length > 0 ? medicationIds : ['none'])}` } }));
  }

  const ICD10 = 'http://hl7.org/fhir/sid/icd-10-cm';
  for (let i = 0; i < counts.condition; i++) {
    const code = pick(['F11.20', 'G89.29', 'G89.4', 'M54.50', 'E11.9', 'I10', 'J45.909']);
    out.push({
      resourceType: 'Condition',
      id: `cond-${i}`,
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: pick(['active', 'active', 'resolved']) }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
      code: { coding: [{ system: ICD10, code }] },
      subject,
      onsetDateTime: daysAgo(1500),
      recordedDate: day(daysAgo(1500)),
    });
  }

  const LOINC = 'http://loinc.org';
  for (let i = 0; i < counts.observation; i++) {
    const screen = random() < 0.3;
    out.push({
      resourceType: 'Observation',
      id: `obs-${i}`,
      status: pick(['final', 'final', 'amended', 'preliminary']),
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: screen ? 'laboratory' : 'vital-signs' }] }],
      code: { coding: [{ system: LOINC, code: screen ? pick(['19295-5', '3349-8']) : pick(['8480-6', '8462-4', '2339-0']) }] },
      subject,
      effectiveDateTime: daysAgo(720),
      ...(screen
        ? { valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: pick(['260385009', '10828004']) }] } }
        : { valueQuantity: { value: 80 + Math.floor(random() * 80), unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }),
    });
  }

  for (let i = 0; i < encounters; i++) {
    const start = daysAgo(720);
    out.push({
      resourceType: 'Encounter',
      id: `enc-${i}`,
      status: pick(['finished', 'finished', 'cancelled']),
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      type: [{ coding: [{ system: 'http://www.ama-assn.org/go/cpt', code: pick(['99213', '99214', '99281']) }] }],
      subject,
      period: { start, end: new Date(Date.parse(start) + 1_800_000).toISOString() },
    });
  }
  return out;
}

/** mulberry32 is a small seeded PRNG so generated data is reproducible. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
