/**
 * One synthetic patient and their record, as FHIR R4 resources. Rates are rough US adult
 * prevalences so rules and measures find both hits and misses; every code comes from codes.ts.
 */
import { CONDITIONS, ENCOUNTERS, ETHNICITIES, LABS, MEDICATIONS, PROCEDURES, RACES, STROKE, SYSTEMS, UNITS, type Code } from './codes.ts';
import { Random } from './random.ts';

/** Resource is a generated FHIR resource (plain JSON). */
export type Resource = { resourceType: string; id: string } & Record<string, unknown>;

/** PopulationContext is what every patient of one population shares. */
export interface PopulationContext {
  readonly seed: number;
  /** asOf is the end of the simulated history (ms since epoch); nothing is dated after it. */
  readonly asOf: number;
  /** years of encounter history before asOf. */
  readonly years: number;
  readonly practitionerIds: readonly string[];
  readonly organizationIds: readonly string[];
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

const QICORE = 'http://hl7.org/fhir/us/qicore/StructureDefinition/';

/**
 * The profiles each resource claims in `meta.profile`, as QI-Core 4.1.1 data does: the published
 * eCQMs retrieve by these (blood pressure by the FHIR core `bp` vital-signs profile), so a batch
 * that trusts meta.profile reads this population exactly as it reads the eCQM test cases.
 */
const PROFILES = {
  patient: [`${QICORE}qicore-patient`],
  encounter: [`${QICORE}qicore-encounter`],
  condition: [`${QICORE}qicore-condition`],
  observation: [`${QICORE}qicore-observation`],
  bloodPressure: ['http://hl7.org/fhir/StructureDefinition/bp'],
  procedure: [`${QICORE}qicore-procedure`],
  medicationRequest: [`${QICORE}qicore-medicationrequest`],
  /** A MedicationRequest with doNotPerform: CMS104 tells "not ordered" from "ordered" by this profile alone. */
  medicationNotRequested: [`${QICORE}qicore-mednotrequested`],
  serviceRequest: [`${QICORE}qicore-servicerequest`],
  organization: [`${QICORE}qicore-organization`],
  practitioner: [`${QICORE}qicore-practitioner`],
} as const;
const YEAR = 365.25 * DAY;

const GIVEN_F = ['Mary', 'Linda', 'Maria', 'Aisha', 'Mei', 'Olivia', 'Rosa', 'Grace', 'Fatima', 'Ingrid', 'Sofia', 'Hannah'];
const GIVEN_M = ['James', 'Robert', 'Jose', 'Wei', 'Ahmed', 'Liam', 'Samuel', 'Noah', 'Arjun', 'Lars', 'Diego', 'Kofi'];
const FAMILY = ['Smith', 'Johnson', 'Garcia', 'Nguyen', 'Patel', 'Kim', 'Okafor', 'Muller', 'Rossi', 'Cohen', 'Silva', 'Brown', 'Lopez', 'Wang'];

function coding(code: Code): Record<string, string> {
  return { system: SYSTEMS[code.system], code: code.code, display: code.display };
}

function concept(code: Code): Record<string, unknown> {
  return { coding: [coding(code)], text: code.display };
}

function category(system: string, code: string, display: string): Record<string, unknown>[] {
  return [{ coding: [{ system, code, display }] }];
}

const DISCHARGE_CATEGORY = [{ coding: [{ system: SYSTEMS.medicationRequestCategory, code: 'discharge', display: 'Discharge' }] }];

const PAD2 = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));

/** isoDate formats a day number as YYYY-MM-DD (proleptic Gregorian, days since 1970-01-01). */
function civil(days: number): string {
  // Howard Hinnant's days-from-civil inverse; much cheaper than a Date per timestamp.
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${y}-${PAD2[m]}-${PAD2[d]}`;
}

/** iso formats ms since epoch as a FHIR instant at second precision, UTC. */
function iso(ms: number): string {
  const days = Math.floor(ms / DAY);
  const secs = Math.floor((ms - days * DAY) / 1000);
  return `${civil(days)}T${PAD2[Math.floor(secs / 3600)]}:${PAD2[Math.floor(secs / 60) % 60]}:${PAD2[secs % 60]}Z`;
}

function isoDate(ms: number): string {
  return civil(Math.floor(ms / DAY));
}

function sampleAge(r: Random): number {
  const u = r.next();
  if (u < 0.2) return r.int(0, 17);
  if (u < 0.46) return r.int(18, 39);
  if (u < 0.62) return r.int(40, 51);
  if (u < 0.8) return r.int(52, 64);
  if (u < 0.96) return r.int(65, 84);
  return r.int(85, 100);
}

/** PatientBuilder accumulates one patient's resources; methods keep each resource shape in one place. */
class PatientBuilder {
  readonly out: Resource[] = [];
  readonly ref: { reference: string };

  constructor(
    private readonly r: Random,
    private readonly ctx: PopulationContext,
    readonly patientId: string,
  ) {
    this.ref = { reference: `Patient/${patientId}` };
  }

  private meta(ms: number, profile: readonly string[]): Record<string, unknown> {
    return { versionId: '1', lastUpdated: iso(Math.min(ms + 3_600_000, this.ctx.asOf)), profile };
  }

  practitioner(): { reference: string } {
    return { reference: `Practitioner/${this.r.pick(this.ctx.practitionerIds)}` };
  }

  encounter(code: Code, at: number, classCode = 'AMB'): string {
    const id = this.r.uuid();
    this.out.push({
      resourceType: 'Encounter', id, meta: this.meta(at, PROFILES.encounter), status: 'finished',
      class: { system: SYSTEMS.actCode, code: classCode, display: classCode === 'IMP' ? 'inpatient encounter' : 'ambulatory' },
      type: [concept(code)], subject: this.ref,
      participant: [{ individual: this.practitioner() }],
      period: { start: iso(at), end: iso(at + (classCode === 'IMP' ? 3 * DAY : 1_800_000)) },
      serviceProvider: { reference: `Organization/${this.r.pick(this.ctx.organizationIds)}` },
    });
    return id;
  }

  /**
   * stay adds a finished Encounter from `start` to `end` and returns its id: an emergency visit, or
   * with `inpatient` an inpatient stay carrying its principal diagnosis (billing, rank 1, as
   * CQMCommon's principalDiagnosis() reads it) and discharge disposition.
   */
  stay(code: Code, start: number, end: number, inpatient?: { diagnosisId: string; disposition: Code }): string {
    const id = this.r.uuid();
    this.out.push({
      resourceType: 'Encounter', id, meta: this.meta(end, PROFILES.encounter), status: 'finished',
      class: inpatient === undefined ? { system: SYSTEMS.actCode, code: 'EMER', display: 'emergency' } : { system: SYSTEMS.actCode, code: 'IMP', display: 'inpatient encounter' },
      type: [concept(code)], subject: this.ref,
      participant: [{ individual: this.practitioner() }],
      period: { start: iso(start), end: iso(end) },
      ...(inpatient === undefined ? {} : {
        length: { value: Math.max(0, Math.round((end - start) / DAY)), unit: 'days', system: SYSTEMS.ucum, code: 'd' },
        diagnosis: [{ condition: { reference: `Condition/${inpatient.diagnosisId}` }, use: { coding: [{ system: SYSTEMS.diagnosisRole, code: 'billing', display: 'Billing' }] }, rank: 1 }],
        hospitalization: { dischargeDisposition: concept(inpatient.disposition) },
      }),
      serviceProvider: { reference: `Organization/${this.r.pick(this.ctx.organizationIds)}` },
    });
    return id;
  }

  /** encounterDiagnosis adds a Condition diagnosed during an encounter and returns its id. */
  encounterDiagnosis(code: Code, onset: number): string {
    const id = this.r.uuid();
    this.out.push({
      resourceType: 'Condition', id, meta: this.meta(onset, PROFILES.condition),
      clinicalStatus: { coding: [{ system: SYSTEMS.conditionClinical, code: 'active' }] },
      verificationStatus: { coding: [{ system: SYSTEMS.conditionVerification, code: 'confirmed' }] },
      category: category(SYSTEMS.conditionCategory, 'encounter-diagnosis', 'Encounter Diagnosis'),
      code: concept(code), subject: this.ref, onsetDateTime: iso(onset), recordedDate: iso(onset),
    });
    return id;
  }

  condition(code: Code, onset: number, options: { status?: string; abatement?: number; error?: boolean } = {}): void {
    const status = options.status ?? 'active';
    this.out.push({
      resourceType: 'Condition', id: this.r.uuid(), meta: this.meta(onset, PROFILES.condition),
      clinicalStatus: { coding: [{ system: SYSTEMS.conditionClinical, code: status }] },
      verificationStatus: { coding: [{ system: SYSTEMS.conditionVerification, code: options.error ? 'entered-in-error' : 'confirmed' }] },
      category: category(SYSTEMS.conditionCategory, 'problem-list-item', 'Problem List Item'),
      code: concept(code), subject: this.ref, onsetDateTime: iso(onset), recordedDate: iso(onset),
      ...(options.abatement === undefined ? {} : { abatementDateTime: iso(options.abatement) }),
    });
  }

  quantity(code: Code, at: number, value: number, unit: string, cat: string, status = 'final'): void {
    this.out.push({
      resourceType: 'Observation', id: this.r.uuid(), meta: this.meta(at, PROFILES.observation), status,
      category: category(SYSTEMS.observationCategory, cat, cat === 'laboratory' ? 'Laboratory' : 'Vital Signs'),
      code: concept(code), subject: this.ref, effectiveDateTime: iso(at), issued: iso(at + 3_600_000),
      valueQuantity: { value, unit, system: SYSTEMS.ucum, code: unit },
    });
  }

  bloodPressure(at: number, systolic: number, diastolic: number, encounterId: string): void {
    const component = (code: Code, value: number) => ({ code: concept(code), valueQuantity: { value, unit: UNITS.mmHg, system: SYSTEMS.ucum, code: UNITS.mmHg } });
    this.out.push({
      resourceType: 'Observation', id: this.r.uuid(), meta: this.meta(at, PROFILES.bloodPressure), status: 'final',
      category: category(SYSTEMS.observationCategory, 'vital-signs', 'Vital Signs'),
      code: concept(LABS.bpPanel), subject: this.ref, encounter: { reference: `Encounter/${encounterId}` }, effectiveDateTime: iso(at),
      component: [component(LABS.systolic, systolic), component(LABS.diastolic, diastolic)],
    });
  }

  screeningResult(code: Code, at: number, cat: string): void {
    this.out.push({
      resourceType: 'Observation', id: this.r.uuid(), meta: this.meta(at, PROFILES.observation), status: 'final',
      category: category(SYSTEMS.observationCategory, cat, cat === 'imaging' ? 'Imaging' : 'Laboratory'),
      code: concept(code), subject: this.ref, effectiveDateTime: iso(at), issued: iso(at + DAY),
      valueCodeableConcept: { coding: [{ system: SYSTEMS.snomed, code: '260385009', display: 'Negative (qualifier value)' }] },
    });
  }

  procedure(code: Code, at: number, status = 'completed'): void {
    this.out.push({
      resourceType: 'Procedure', id: this.r.uuid(), meta: this.meta(at, PROFILES.procedure), status,
      code: concept(code), subject: this.ref, performedDateTime: iso(at), performer: [{ actor: this.practitioner() }],
    });
  }

  /** medication adds a prescription; `discharge` marks it as written at a hospital discharge (category). */
  medication(code: Code, authored: number, days: number, status: string, discharge = false): void {
    this.out.push({
      resourceType: 'MedicationRequest', id: this.r.uuid(), meta: this.meta(authored, PROFILES.medicationRequest), status, intent: 'order',
      ...(discharge ? { category: DISCHARGE_CATEGORY } : {}),
      medicationCodeableConcept: concept(code), subject: this.ref, authoredOn: iso(authored), requester: this.practitioner(),
      dosageInstruction: [{ text: 'Take 1 tablet by mouth daily', timing: { repeat: { frequency: 1, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: 1, unit: 'tablet' } }] }],
      dispenseRequest: { validityPeriod: { start: iso(authored), end: iso(authored + days * DAY) }, numberOfRepeatsAllowed: 0, quantity: { value: days, unit: 'tablet' }, expectedSupplyDuration: { value: days, unit: 'days', system: SYSTEMS.ucum, code: 'd' } },
    });
  }

  /** medicationNotRequested records a discharge medication deliberately not prescribed, with the reason (QI-Core MedicationNotRequested). */
  medicationNotRequested(code: Code, authored: number, reason: Code): void {
    this.out.push({
      resourceType: 'MedicationRequest', id: this.r.uuid(), meta: this.meta(authored, PROFILES.medicationNotRequested), status: 'completed', intent: 'order',
      category: DISCHARGE_CATEGORY, doNotPerform: true,
      reasonCode: [concept(reason)], medicationCodeableConcept: concept(code), subject: this.ref, authoredOn: iso(authored), requester: this.practitioner(),
    });
  }

  serviceRequest(code: Code, authored: number): void {
    this.out.push({
      resourceType: 'ServiceRequest', id: this.r.uuid(), meta: this.meta(authored, PROFILES.serviceRequest), status: 'completed', intent: 'order',
      code: concept(code), subject: this.ref, authoredOn: iso(authored), requester: this.practitioner(),
    });
  }
}

/** generatePatient returns patient number `index` of the population; the same inputs give the same output. */
export function generatePatient(index: number, ctx: PopulationContext): Resource[] {
  const r = new Random(ctx.seed, index);
  const id = r.uuid();
  const b = new PatientBuilder(r, ctx, id);
  const { asOf } = ctx;
  const age = sampleAge(r);
  const female = r.chance(0.51);
  const birth = asOf - age * YEAR - r.int(1, 364) * DAY;
  const deathRate = age >= 85 ? 0.12 : age >= 65 ? 0.03 : age >= 40 ? 0.006 : 0.001;
  const death = r.chance(deathRate) ? asOf - r.int(5, 700) * DAY : null;
  const end = death ?? asOf;
  const start = Math.max(birth + DAY, asOf - ctx.years * YEAR);
  const adult = age >= 18;
  const ageAt = (ms: number) => (ms - birth) / YEAR;
  const between = (from: number, to: number) => from + Math.floor(r.next() * Math.max(to - from, DAY));

  const race = r.pick(RACES);
  const ethnicity = r.chance(0.18) ? ETHNICITIES[0] : ETHNICITIES[1];
  b.out.push({
    resourceType: 'Patient', id,
    meta: { versionId: '1', lastUpdated: iso(Math.min(end, asOf)), profile: PROFILES.patient },
    extension: [
      { url: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race', extension: [{ url: 'ombCategory', valueCoding: { system: SYSTEMS.raceEthnicity, code: race.code, display: race.display } }, { url: 'text', valueString: race.display }] },
      { url: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity', extension: [{ url: 'ombCategory', valueCoding: { system: SYSTEMS.raceEthnicity, code: ethnicity.code, display: ethnicity.display } }, { url: 'text', valueString: ethnicity.display }] },
    ],
    identifier: [{ system: SYSTEMS.mrn, value: `MRN${String(index + 1).padStart(8, '0')}` }],
    active: !r.chance(0.01),
    name: [{ use: 'official', family: r.pick(FAMILY), given: [r.pick(female ? GIVEN_F : GIVEN_M)] }],
    gender: female ? 'female' : 'male',
    birthDate: isoDate(birth),
    ...(death === null ? { deceasedBoolean: false } : { deceasedDateTime: iso(death) }),
  });

  // Chronic conditions, by age band.
  const htn = adult && r.chance(age < 40 ? 0.08 : age < 65 ? 0.32 : 0.55);
  const dm = adult && r.chance(age < 40 ? 0.03 : age < 65 ? 0.13 : 0.22);
  const ckd = age >= 50 && r.chance(dm || htn ? 0.15 : 0.04);
  const ckd4 = ckd && r.chance(0.3);
  const onset = () => between(Math.max(birth + 18 * YEAR, asOf - 12 * YEAR), Math.min(end, asOf - 30 * DAY));
  if (htn) {
    const resolved = r.chance(0.04);
    const at = onset();
    b.condition(r.pick(CONDITIONS.hypertension), at, resolved ? { status: 'resolved', abatement: between(at, end) } : {});
  }
  if (dm) b.condition(r.pick(CONDITIONS.diabetes), onset());
  if (ckd) b.condition(r.pick(ckd4 ? CONDITIONS.ckdStage4 : CONDITIONS.ckdStage3), onset());
  if (r.chance(0.01) && adult) b.condition(r.pick(CONDITIONS.diabetes), onset(), { error: true });

  // Encounters with vitals and labs, every year of history.
  const bpBase = htn ? (r.chance(0.55) ? 128 : 146) : 116 + Math.max(0, age - 40) * 0.2;
  const a1cBase = dm ? (r.chance(0.2) ? r.float(9.2, 11.5) : r.float(6.2, 8.6)) : r.float(4.8, 5.6);
  const egfrBase = ckd4 ? r.float(16, 29) : ckd ? r.float(32, 58) : r.float(65, 105);
  const a1cSkipsLastYear = dm && r.chance(0.12);
  for (let yearStart = asOf - ctx.years * YEAR; yearStart < end; yearStart += YEAR) {
    const yearEnd = Math.min(yearStart + YEAR, end);
    if (yearEnd <= start) continue;
    const visits = (adult ? r.int(0, 2) : r.int(0, 1)) + (htn || dm || ckd ? r.int(1, 2) : 0) + (age >= 65 ? 1 : 0);
    const lastYear = yearEnd > asOf - YEAR;
    for (let v = 0; v < visits; v++) {
      const at = between(Math.max(yearStart, start), yearEnd);
      const adultAge = ageAt(at) >= 18;
      const kind = adultAge && v === 0 && r.chance(0.35) ? (age >= 65 ? r.pick([ENCOUNTERS.wellness[0], ENCOUNTERS.preventive[1]]) : r.pick(ENCOUNTERS.preventive)) : r.chance(0.05) ? ENCOUNTERS.telephone[0] : r.pick(ENCOUNTERS.office);
      const encounterId = b.encounter(kind, at);
      if (adultAge && kind.code !== '98966' && r.chance(htn ? 0.9 : 0.5)) {
        const sys = Math.round(r.normal(bpBase, 9));
        b.bloodPressure(at, sys, Math.round(r.normal(sys * 0.6, 6)), encounterId);
      }
      if (dm && r.chance(0.75) && !(lastYear && a1cSkipsLastYear)) {
        b.quantity(r.pick(LABS.hba1c), at + 1_800_000, Math.max(4.5, r.float(a1cBase - 0.6, a1cBase + 0.6)), UNITS.percent, 'laboratory');
      }
      if ((ckd || ((dm || htn) && r.chance(0.3))) && r.chance(0.8)) {
        b.quantity(r.pick(LABS.egfr), at + 1_800_000, Math.max(5, r.float(egfrBase - 4, egfrBase + 4)), UNITS.egfr, 'laboratory');
      }
    }
  }
  if (dm && r.chance(0.02)) b.quantity(LABS.hba1c[0], end - 20 * DAY, 13.1, UNITS.percent, 'laboratory', 'entered-in-error');

  // Medications.
  const recent = () => between(Math.max(start, end - 300 * DAY), end - DAY);
  const chronic = (code: Code) => {
    const at = recent();
    b.medication(code, at, 90, death === null ? 'active' : 'stopped');
    if (r.chance(0.6) && at - YEAR > start) b.medication(code, at - YEAR, 90, 'completed');
  };
  if (htn && r.chance(0.7)) chronic(MEDICATIONS.antihypertensive[0]);
  if (dm && r.chance(0.7)) chronic(MEDICATIONS.metformin[0]);
  const statinEligible = dm && age >= 40 && age <= 75;
  if (r.chance(statinEligible ? 0.62 : htn ? 0.25 : 0)) chronic(r.pick(MEDICATIONS.statin));
  const anticoag = adult && r.chance(age >= 65 ? 0.08 : 0.015);
  if (anticoag) chronic(r.pick(MEDICATIONS.anticoagulant));
  const opioid = adult && r.chance(0.06);
  if (opioid) {
    const at = recent();
    b.medication(r.pick(MEDICATIONS.opioid), at, 30, r.chance(0.7) ? 'active' : 'completed');
    if (r.chance(0.3)) b.medication(r.pick(MEDICATIONS.benzodiazepine), at + r.int(-20, 20) * DAY, 30, 'active');
  } else if (adult && r.chance(0.04)) {
    b.medication(r.pick(MEDICATIONS.benzodiazepine), recent(), 30, 'active');
  }
  if (adult && r.chance(ckd4 ? 0.3 : anticoag ? 0.25 : 0.08)) b.medication(r.pick(MEDICATIONS.nsaid), recent(), 30, r.chance(0.8) ? 'active' : 'cancelled');

  // Cancer screening: hits and misses at realistic rates.
  const ageNow = ageAt(end);
  if (female && ageNow >= 40 && ageNow <= 76) {
    if (r.chance(0.68)) {
      const at = between(Math.max(start, end - 26 * 30 * DAY), end - DAY);
      b.screeningResult(r.pick(LABS.mammogram), at, 'imaging');
      if (r.chance(0.5)) b.procedure(PROCEDURES.mammogram[0], at);
    } else if (r.chance(0.3)) {
      b.screeningResult(LABS.mammogram[0], between(start, Math.max(start + DAY, end - 30 * 30 * DAY)), 'imaging');
    }
    if (r.chance(0.006)) b.condition(CONDITIONS.bilateralMastectomy[0], onset());
  }
  if (ageNow >= 45 && ageNow <= 76) {
    const u = r.next();
    if (u < 0.45) b.procedure(r.pick(PROCEDURES.colonoscopy), between(Math.max(birth + 44 * YEAR, end - 9 * YEAR), end - DAY));
    else if (u < 0.57) b.screeningResult(r.pick(LABS.fobt), between(end - 300 * DAY, end - DAY), 'laboratory');
    else if (u < 0.62) b.screeningResult(LABS.fitDna[0], between(end - 2 * YEAR, end - DAY), 'laboratory');
    else if (u < 0.64) b.screeningResult(LABS.ctColonography[0], between(end - 4 * YEAR, end - DAY), 'imaging');
    if (r.chance(0.004)) b.condition(CONDITIONS.colonCancer[0], onset());
  }

  // End of life: hospice and palliative care, mostly the old and the dying.
  const hospice = adult && (death !== null ? r.chance(0.4) : r.chance(age >= 75 ? 0.03 : 0.003));
  if (hospice) {
    const at = between(Math.max(start, end - 120 * DAY), end - DAY);
    b.encounter(r.pick(ENCOUNTERS.hospice), at);
    if (r.chance(0.5)) b.procedure(PROCEDURES.hospice[0], at);
    if (r.chance(0.3)) b.condition(CONDITIONS.hospice[0], at);
  }
  if (adult && r.chance(age >= 65 ? 0.025 : 0.003)) {
    const at = between(Math.max(start, end - 200 * DAY), end - DAY);
    const u = r.next();
    if (u < 0.4) b.encounter(r.pick(ENCOUNTERS.palliative), at);
    else if (u < 0.7) b.condition(CONDITIONS.palliative[0], at);
    else b.procedure(PROCEDURES.palliative[0], at);
  }
  if (adult && r.chance(0.03)) b.encounter(ENCOUNTERS.inpatient[0], between(start, end - 4 * DAY), 'IMP');

  // A stroke admission (CMS104), drawn last so every resource above is the same with or without it.
  const fatalStroke = adult && death !== null && r.chance(0.08);
  if (fatalStroke || r.chance(strokeChance(age))) {
    const stay = strokeLengthOfStay(r);
    const earliest = Math.max(start, birth + 18 * YEAR + DAY);
    const discharge = fatalStroke ? end : between(earliest + stay, end - DAY);
    if (discharge - stay >= earliest && discharge <= end) strokeAdmission(b, r, discharge - stay, discharge, fatalStroke, ctx.asOf);
  }
  return b.out;
}

/**
 * strokeChance is the chance of a stroke admission over the five years of history, by age at
 * the end of it: about 0.3% a year at 55-64, 0.7% at 65-74, 1.3% at 75-84 and 1.8% from 85 (US
 * incidence, first and recurrent strokes).
 */
function strokeChance(age: number): number {
  return age < 18 ? 0 : age < 45 ? 0.002 : age < 55 ? 0.007 : age < 65 ? 0.015 : age < 75 ? 0.035 : age < 85 ? 0.065 : 0.09;
}

/** strokeLengthOfStay draws a length of stay: median about 4 days, a tail to 5 weeks (never the 120 days TJC caps). */
function strokeLengthOfStay(r: Random): number {
  const u = r.next();
  const days = u < 0.55 ? r.int(1, 4) : u < 0.9 ? r.int(5, 9) : r.int(10, 35);
  return days * DAY + r.int(-6, 6) * HOUR;
}

/**
 * strokeAdmission adds one stroke stay for CMS104 (STK-2): mostly through the emergency department,
 * the inpatient encounter with its principal diagnosis and discharge disposition, comfort measures,
 * and what was decided about antithrombotics at discharge. Shares are rough registry figures: 13%
 * hemorrhagic (outside STK-2); of ischemic stays about one in five excluded (hospice, transfer to
 * acute care, left against advice, comfort measures; `fatal` ones expire in hospital), and of the
 * others 84% discharged on an antithrombotic, 7.5% not with a documented reason or a pharmacological
 * contraindication (exceptions) and the rest without one (the care gap the measure finds).
 */
function strokeAdmission(b: PatientBuilder, r: Random, admit: number, discharge: number, fatal: boolean, asOf: number): void {
  if (r.chance(0.85)) {
    const edEnd = admit - r.int(5, 55) * MINUTE;
    b.stay(STROKE.edVisit[0], edEnd - r.int(90, 300) * MINUTE, edEnd);
  }
  const ischemic = !r.chance(0.13);
  const diagnosisId = b.encounterDiagnosis(r.pick(ischemic ? STROKE.ischemic : STROKE.hemorrhagic), admit - r.int(1, 6) * HOUR);
  const u = r.next();
  const hospice = !fatal && u < 0.06;
  const disposition = fatal ? STROKE.expired[0]
    : u < 0.035 ? STROKE.homeHospice[0]
    : u < 0.06 ? STROKE.facilityHospice[0]
    : u < 0.1 ? r.pick(STROKE.toAcuteCare)
    : u < 0.115 ? STROKE.leftAgainstAdvice[0]
    : r.pick(STROKE.dischargedAlive);
  b.stay(r.pick(STROKE.admission), admit, discharge, { diagnosisId, disposition });
  const comfort = r.chance(fatal || hospice ? 0.6 : 0.03);
  if (comfort) {
    const at = admit + Math.floor(r.next() * (discharge - admit));
    if (r.chance(0.5)) b.serviceRequest(r.pick(STROKE.comfort), at);
    else b.procedure(r.pick(STROKE.comfort), at);
  }
  // Antithrombotics are withheld after a hemorrhage; the dead are discharged on nothing.
  if (fatal || !ischemic) return;
  const ordered = discharge - r.int(1, 5) * HOUR;
  const onAntithrombotic = (comfort || u < 0.115) ? 0.5 : 0.84;
  const v = r.next();
  if (v < onAntithrombotic) b.medication(r.pick(STROKE.antithrombotic), ordered, 90, ordered + 90 * DAY < asOf ? 'completed' : 'active', true);
  else if (v < onAntithrombotic + 0.06) b.medicationNotRequested(r.pick(STROKE.antithrombotic), ordered, r.chance(0.65) ? r.pick(STROKE.medicalReason) : r.pick(STROKE.refusal));
  else if (v < onAntithrombotic + 0.075) b.medication(STROKE.contraindicated[0], ordered, 30, ordered + 30 * DAY < asOf ? 'completed' : 'active', true);
}

/** generateDirectory returns the shared Practitioner and Organization resources of a population. */
export function generateDirectory(ctx: Pick<PopulationContext, 'seed' | 'asOf'>, practitioners: number, organizations: number): { resources: Resource[]; practitionerIds: string[]; organizationIds: string[] } {
  const r = new Random(ctx.seed, -1);
  const resources: Resource[] = [];
  const organizationIds: string[] = [];
  const practitionerIds: string[] = [];
  const meta = (profile: readonly string[]) => ({ versionId: '1', lastUpdated: iso(ctx.asOf - 400 * DAY), profile });
  for (let i = 0; i < organizations; i++) {
    const id = r.uuid();
    organizationIds.push(id);
    resources.push({ resourceType: 'Organization', id, meta: meta(PROFILES.organization), active: true, type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'prov', display: 'Healthcare Provider' }] }], name: `Cairn Community Clinic ${i + 1}` });
  }
  for (let i = 0; i < practitioners; i++) {
    const id = r.uuid();
    practitionerIds.push(id);
    const female = r.chance(0.5);
    resources.push({ resourceType: 'Practitioner', id, meta: meta(PROFILES.practitioner), active: true, identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: String(1000000000 + r.int(0, 899999999)) }], name: [{ family: r.pick(FAMILY), given: [r.pick(female ? GIVEN_F : GIVEN_M)], prefix: ['Dr.'] }], gender: female ? 'female' : 'male' });
  }
  return { resources, practitionerIds, organizationIds };
}
