/**
 * Whose record a resource is: the one R4 element per resource type that names the patient the
 * resource is about, i.e. the element the type's `patient` search parameter searches
 * ({@link https://hl7.org/fhir/R4/compartmentdefinition-patient.html}). Evaluation takes every
 * resource it is given as the context patient's, so one about another patient must never reach it.
 */
import { isRecord } from './json.ts';

/** A FHIR resource as JSON: only `resourceType` is known. */
interface FhirResource {
  readonly resourceType: string;
  readonly id?: unknown;
  readonly [element: string]: unknown;
}

/**
 * PATIENT_REFERENCE_ELEMENT maps a resource type to the element holding its patient (a Reference,
 * 0..1 or 1..1 in R4). Every type of cds-hooks/prefetch/templates.ts's PATIENT_SEARCH_PARAM is here except those whose
 * patient link may name several patients or people who are not the record's subject, which are
 * never checked: Account (`subject`, 0..*), Appointment (`participant.actor`), and SupplyRequest
 * (`deliverTo`, where it goes rather than whom it is about). Coverage is checked on `beneficiary`
 * (who it covers), not `subscriber` or `payor`. Types not listed (Medication, Practitioner,
 * Organization, ...) have no patient, and Patient is checked by its id.
 */
export const PATIENT_REFERENCE_ELEMENT: ReadonlyMap<string, string> = new Map([
  ['AdverseEvent', 'subject'],
  ['AllergyIntolerance', 'patient'],
  ['BodyStructure', 'patient'],
  ['CarePlan', 'subject'],
  ['CareTeam', 'subject'],
  ['Claim', 'patient'],
  ['ClinicalImpression', 'subject'],
  ['Communication', 'subject'],
  ['CommunicationRequest', 'subject'],
  ['Composition', 'subject'],
  ['Condition', 'subject'],
  ['Consent', 'patient'],
  ['Coverage', 'beneficiary'],
  ['DetectedIssue', 'patient'],
  ['Device', 'patient'],
  ['DeviceRequest', 'subject'],
  ['DeviceUseStatement', 'subject'],
  ['DiagnosticReport', 'subject'],
  ['DocumentReference', 'subject'],
  ['Encounter', 'subject'],
  ['EpisodeOfCare', 'patient'],
  ['ExplanationOfBenefit', 'patient'],
  ['FamilyMemberHistory', 'patient'],
  ['Flag', 'subject'],
  ['Goal', 'subject'],
  ['ImagingStudy', 'subject'],
  ['Immunization', 'patient'],
  ['ImmunizationEvaluation', 'patient'],
  ['ImmunizationRecommendation', 'patient'],
  ['List', 'subject'],
  ['Media', 'subject'],
  ['MedicationAdministration', 'subject'],
  ['MedicationDispense', 'subject'],
  ['MedicationRequest', 'subject'],
  ['MedicationStatement', 'subject'],
  ['NutritionOrder', 'patient'],
  ['Observation', 'subject'],
  ['Procedure', 'subject'],
  ['QuestionnaireResponse', 'subject'],
  ['RelatedPerson', 'patient'],
  ['RiskAssessment', 'subject'],
  ['ServiceRequest', 'subject'],
  ['Specimen', 'subject'],
  ['Task', 'for'],
  ['VisionPrescription', 'patient'],
]);

const PATIENT_SEGMENT = 'Patient/';
const HISTORY = '/_history/';

/**
 * patientOfReference returns the Patient id a literal reference names (`Patient/<id>`,
 * `<base>/Patient/<id>`, either with `/_history/<version>`), or undefined for a reference to
 * anything else (`Group/1`, `#contained`, `urn:uuid:...`, a conditional `Patient?identifier=`).
 * Read leniently, so that sloppy spelling never hides whose a resource is: surrounding spaces, empty
 * segments (`Patient//p2`, a trailing `/`) and the type's case (`patient/p2`) are ignored.
 */
function patientOfReference(reference: string): string | undefined {
  const history = reference.indexOf(HISTORY);
  const segments = (history < 0 ? reference : reference.slice(0, history)).trim().split('/').filter((segment) => segment !== '');
  if (segments.length < 2 || segments[segments.length - 2]?.toLowerCase() !== 'patient') return undefined;
  return segments[segments.length - 1]?.trim() || undefined;
}

/**
 * A context patient, with the two spellings of a reference to it that need no parsing: most
 * resources name it so, and they cost two string comparisons.
 */
class ContextPatient {
  readonly id: string;
  private readonly relative: string;
  private readonly absoluteSuffix: string;

  constructor(id: string) {
    this.id = id;
    this.relative = `${PATIENT_SEGMENT}${id}`;
    this.absoluteSuffix = `/${PATIENT_SEGMENT}${id}`;
  }

  /** names is false only for a reference to a Patient other than this one. */
  names(reference: string): boolean {
    if (reference === this.relative || reference.endsWith(this.absoluteSuffix)) return true;
    const other = patientOfReference(reference);
    return other === undefined || other === this.id;
  }
}

/**
 * otherPatient describes the first resource in `resources` about a patient other than `patientId`
 * (bare): a Patient with another id, or a resource whose {@link PATIENT_REFERENCE_ELEMENT} names
 * another Patient. It says which resource and which element, never anything of the other patient.
 * A resource without a patient reference, or naming its patient by identifier only, passes.
 */
export function otherPatient(resources: readonly FhirResource[], patientId: string): string | undefined {
  let patient: ContextPatient | undefined;
  for (const resource of resources) {
    const type = resource.resourceType;
    if (type === 'Patient') {
      if (String(resource.id ?? patientId) !== patientId) return `holds Patient/${String(resource.id)}, not the context patient ${patientId}`;
      continue;
    }
    const element = PATIENT_REFERENCE_ELEMENT.get(type);
    if (element === undefined) continue;
    const value = resource[element];
    // A bare string is not a FHIR Reference, but it is read as one: whose it names still counts.
    const reference = typeof value === 'string' ? value : isRecord(value) ? value.reference : undefined;
    if (typeof reference !== 'string') continue;
    patient ??= new ContextPatient(patientId);
    if (!patient.names(reference)) return `holds ${describe(resource)} whose ${element} is not the context patient ${patientId}`;
  }
  return undefined;
}

function describe(resource: FhirResource): string {
  const id = typeof resource.id === 'string' && resource.id ? resource.id.slice(0, 64) : undefined;
  return id === undefined ? `${/^[AEIOU]/.test(resource.resourceType) ? 'an' : 'a'} ${resource.resourceType} without an id` : `${resource.resourceType}/${id}`;
}
