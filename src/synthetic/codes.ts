/**
 * Every code the synthetic population uses, in one place so a test can check each one against
 * `value-sets/` and the eCQM value sets (../shared/fixtures/population/ecqm-content-qicore-2024).
 * The comment on each group names the rule or measure it is there to exercise.
 */

/** SYSTEMS are the canonical code system URLs used in FHIR R4. */
export const SYSTEMS = {
  loinc: 'http://loinc.org',
  snomed: 'http://snomed.info/sct',
  rxnorm: 'http://www.nlm.nih.gov/research/umls/rxnorm',
  icd10cm: 'http://hl7.org/fhir/sid/icd-10-cm',
  cpt: 'http://www.ama-assn.org/go/cpt',
  hcpcs: 'https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets',
  ucum: 'http://unitsofmeasure.org',
  actCode: 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
  observationCategory: 'http://terminology.hl7.org/CodeSystem/observation-category',
  conditionClinical: 'http://terminology.hl7.org/CodeSystem/condition-clinical',
  conditionVerification: 'http://terminology.hl7.org/CodeSystem/condition-ver-status',
  conditionCategory: 'http://terminology.hl7.org/CodeSystem/condition-category',
  diagnosisRole: 'http://terminology.hl7.org/CodeSystem/diagnosis-role',
  dischargeDisposition: 'http://terminology.hl7.org/CodeSystem/discharge-disposition',
  medicationRequestCategory: 'http://terminology.hl7.org/CodeSystem/medicationrequest-category',
  raceEthnicity: 'urn:oid:2.16.840.1.113883.6.238',
  mrn: 'urn:oid:2.16.840.1.113883.19.5.99999.1',
} as const;

/** Code is one coding; `system` is a key of SYSTEMS. */
export interface Code {
  readonly system: keyof typeof SYSTEMS;
  readonly code: string;
  readonly display: string;
}

const c = (system: keyof typeof SYSTEMS, code: string, display: string): Code => Object.freeze({ system, code, display });

/** ENCOUNTERS: qualifying visits for CMS122/125/130/165 (Office Visit, Preventive Care, Annual Wellness). */
export const ENCOUNTERS = {
  office: [c('cpt', '99213', 'Office or other outpatient visit, established patient, low complexity'), c('cpt', '99214', 'Office or other outpatient visit, established patient, moderate complexity'), c('cpt', '99203', 'Office or other outpatient visit, new patient, low complexity')],
  preventive: [c('cpt', '99396', 'Periodic preventive medicine reevaluation, 40-64 years'), c('cpt', '99397', 'Periodic preventive medicine reevaluation, 65 years and older'), c('cpt', '99395', 'Periodic preventive medicine reevaluation, 18-39 years')],
  wellness: [c('hcpcs', 'G0439', 'Annual wellness visit, subsequent')],
  telephone: [c('cpt', '98966', 'Telephone assessment and management service, 5-10 minutes')],
  /** Hospice Encounter value set (Hospice library exclusion). */
  hospice: [c('snomed', '183919006', 'Urgent admission to hospice (procedure)'), c('snomed', '385765002', 'Hospice care management (procedure)')],
  /** Palliative Care Encounter value set (PalliativeCare library exclusion). */
  palliative: [c('snomed', '305686008', 'Seen by palliative care physician (finding)'), c('hcpcs', 'M1017', 'Patient admitted to palliative care services')],
  inpatient: [c('snomed', '32485007', 'Hospital admission (procedure)')],
} as const;

/** CONDITIONS: diabetes (CMS122, statin rule), hypertension (CMS165), CKD, hospice/palliative diagnoses. */
export const CONDITIONS = {
  diabetes: [c('icd10cm', 'E11.9', 'Type 2 diabetes mellitus without complications'), c('icd10cm', 'E11.65', 'Type 2 diabetes mellitus with hyperglycemia'), c('snomed', '44054006', 'Diabetes mellitus type 2 (disorder)')],
  hypertension: [c('icd10cm', 'I10', 'Essential (primary) hypertension'), c('snomed', '59621000', 'Essential hypertension (disorder)'), c('snomed', '38341003', 'Hypertensive disorder, systemic arterial (disorder)')],
  ckdStage3: [c('icd10cm', 'N18.30', 'Chronic kidney disease, stage 3 unspecified'), c('snomed', '433144002', 'Chronic kidney disease stage 3 (disorder)')],
  ckdStage4: [c('icd10cm', 'N18.4', 'Chronic kidney disease, stage 4 (severe)'), c('snomed', '431857002', 'Chronic kidney disease stage 4 (disorder)')],
  hospice: [c('snomed', '170935008', 'Full care by hospice (finding)')],
  palliative: [c('icd10cm', 'Z51.5', 'Encounter for palliative care')],
  colonCancer: [c('icd10cm', 'C18.9', 'Malignant neoplasm of colon, unspecified')],
  bilateralMastectomy: [c('icd10cm', 'Z90.13', 'Acquired absence of bilateral breasts and nipples')],
} as const;

/** MEDICATIONS: RxNorm clinical drugs for the co-prescription and safety rules. */
export const MEDICATIONS = {
  opioid: [c('rxnorm', '1049621', 'oxycodone hydrochloride 5 MG Oral Tablet'), c('rxnorm', '856999', 'Acetaminophen 325 MG / Hydrocodone Bitartrate 5 MG Oral Tablet'), c('rxnorm', '835603', 'tramadol hydrochloride 50 MG Oral Tablet')],
  benzodiazepine: [c('rxnorm', '308047', 'alprazolam 0.25 MG Oral Tablet'), c('rxnorm', '197901', 'Lorazepam 1 MG Oral Tablet'), c('rxnorm', '197591', 'Diazepam 5 MG Oral Tablet')],
  nsaid: [c('rxnorm', '197806', 'Ibuprofen 600 MG Oral Tablet'), c('rxnorm', '198013', 'Naproxen 250 MG Oral Tablet')],
  anticoagulant: [c('rxnorm', '855332', 'Warfarin Sodium 5 MG Oral Tablet'), c('rxnorm', '1364435', 'apixaban 2.5 MG Oral Tablet'), c('rxnorm', '1114198', 'rivaroxaban 10 MG Oral Tablet')],
  statin: [c('rxnorm', '617312', 'atorvastatin 10 MG Oral Tablet'), c('rxnorm', '312961', 'Simvastatin 20 MG Oral Tablet'), c('rxnorm', '859747', 'rosuvastatin calcium 10 MG Oral Tablet')],
  antihypertensive: [c('rxnorm', '314076', 'lisinopril 10 MG Oral Tablet')],
  metformin: [c('rxnorm', '860975', '24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet')],
} as const;

/** LABS: LOINC codes for results; units are UCUM. */
export const LABS = {
  hba1c: [c('loinc', '4548-4', 'Hemoglobin A1c/Hemoglobin.total in Blood'), c('loinc', '17856-6', 'Hemoglobin A1c/Hemoglobin.total in Blood by HPLC')],
  egfr: [c('loinc', '33914-3', 'Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)'), c('loinc', '62238-1', 'Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)'), c('loinc', '98979-8', 'Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)')],
  bpPanel: c('loinc', '85354-9', 'Blood pressure panel with all children optional'),
  systolic: c('loinc', '8480-6', 'Systolic blood pressure'),
  diastolic: c('loinc', '8462-4', 'Diastolic blood pressure'),
  fobt: [c('loinc', '29771-3', 'Hemoglobin.gastrointestinal.lower [Presence] in Stool by Immunoassay'), c('loinc', '57905-2', 'Hemoglobin.gastrointestinal.lower [Presence] in Stool by Immunoassay --1st specimen')],
  fitDna: [c('loinc', '77353-1', 'Noninvasive colorectal cancer DNA and occult blood screening [Interpretation] in Stool Narrative')],
  ctColonography: [c('loinc', '60515-4', 'CT Colon and Rectum W air contrast PR')],
  mammogram: [c('loinc', '24606-6', 'MG Breast Screening'), c('loinc', '24604-1', 'MG Breast Diagnostic Limited Views')],
} as const;

/** PROCEDURES: screening and end-of-life procedures (CMS125, CMS130, Hospice, PalliativeCare). */
export const PROCEDURES = {
  colonoscopy: [c('cpt', '45378', 'Colonoscopy, flexible; diagnostic'), c('snomed', '73761001', 'Colonoscopy (procedure)')],
  mammogram: [c('cpt', '77067', 'Screening mammography, bilateral')],
  hospice: [c('cpt', '99377', 'Supervision of a hospice patient, 15-29 minutes')],
  palliative: [c('snomed', '103735009', 'Palliative care (regime/therapy)')],
} as const;

/**
 * STROKE: CMS104 (STK-2, discharged on antithrombotic therapy), an episode measure over
 * nonelective inpatient stays whose principal diagnosis is an ischemic stroke. Each group is named
 * after the CMS104/TJCOverall value set it comes from, except `hemorrhagic` (in no CMS104 value
 * set: STK-2 counts ischemic strokes only, so these stays are realistic misses) and
 * `dischargedAlive` (HL7 discharge dispositions that keep a stay in the denominator).
 */
export const STROKE = {
  /** Nonelective Inpatient Encounter. */
  admission: [c('snomed', '183452005', 'Emergency hospital admission (procedure)'), c('snomed', '32485007', 'Hospital admission (procedure)')],
  /** Emergency Department Visit: the stay's hospitalization starts at an ED visit ending within the hour before it. */
  edVisit: [c('snomed', '4525004', 'Emergency department patient visit (procedure)')],
  /** Ischemic Stroke: the principal (billing, rank 1) diagnosis that puts a stay in the initial population. */
  ischemic: [c('icd10cm', 'I63.9', 'Cerebral infarction, unspecified'), c('icd10cm', 'I63.512', 'Cerebral infarction due to unspecified occlusion or stenosis of left middle cerebral artery'), c('icd10cm', 'I63.411', 'Cerebral infarction due to embolism of right middle cerebral artery'), c('icd10cm', 'I63.81', 'Other cerebral infarction due to occlusion or stenosis of small artery'), c('icd10cm', 'I63.50', 'Cerebral infarction due to unspecified occlusion or stenosis of unspecified cerebral artery'), c('snomed', '422504002', 'Ischemic stroke (disorder)')],
  hemorrhagic: [c('icd10cm', 'I61.9', 'Nontraumatic intracerebral hemorrhage, unspecified'), c('icd10cm', 'I60.9', 'Nontraumatic subarachnoid hemorrhage, unspecified')],
  /** Antithrombotic Therapy for Ischemic Stroke: the discharge prescription of the numerator. */
  antithrombotic: [c('rxnorm', '243670', 'aspirin 81 MG Oral Tablet'), c('rxnorm', '308416', 'aspirin 81 MG Delayed Release Oral Tablet'), c('rxnorm', '309362', 'clopidogrel 75 MG Oral Tablet'), c('rxnorm', '1364445', 'apixaban 5 MG Oral Tablet'), c('rxnorm', '1232086', 'rivaroxaban 20 MG Oral Tablet'), c('rxnorm', '855332', 'warfarin sodium 5 MG Oral Tablet'), c('rxnorm', '1116635', 'ticagrelor 90 MG Oral Tablet')],
  /** Pharmacological Contraindications For Antithrombotic Therapy: a discharge prescription that is an exception. */
  contraindicated: [c('rxnorm', '855812', 'prasugrel 10 MG Oral Tablet')],
  /** Medical Reason For Not Providing Treatment: reasonCode of a MedicationNotRequested (exception). */
  medicalReason: [c('snomed', '183932001', 'Procedure contraindicated (situation)'), c('snomed', '410536001', 'Contraindicated (qualifier value)'), c('snomed', '416098002', 'Allergy to drug (finding)'), c('snomed', '62014003', 'Adverse reaction caused by drug (disorder)')],
  /** Patient Refusal: reasonCode of a MedicationNotRequested (exception). */
  refusal: [c('snomed', '182895007', 'Drug declined by patient (situation)'), c('snomed', '406149000', 'Medication declined (situation)')],
  /** Comfort Measures: ordered (ServiceRequest) or performed (Procedure) during the stay, an exclusion. */
  comfort: [c('snomed', '133918004', 'Comfort measures (regime/therapy)'), c('snomed', '182964004', 'Terminal care (regime/therapy)')],
  /** Discharge dispositions that exclude a stay: one value set each (TJCOverall). */
  toAcuteCare: [c('snomed', '434781000124105', 'Discharge to acute care hospital (procedure)'), c('snomed', '306701001', 'Discharge to community hospital (procedure)')],
  leftAgainstAdvice: [c('snomed', '445060000', 'Left against medical advice (finding)')],
  expired: [c('snomed', '371828006', 'Patient deceased during stay (discharge status = dead) (finding)')],
  homeHospice: [c('snomed', '428361000124107', 'Discharge to home for hospice care (procedure)')],
  facilityHospice: [c('snomed', '428371000124100', 'Discharge to healthcare facility for hospice care (procedure)')],
  dischargedAlive: [c('dischargeDisposition', 'home', 'Home'), c('dischargeDisposition', 'snf', 'Skilled nursing facility'), c('dischargeDisposition', 'rehab', 'Rehabilitation')],
} as const;

/** RACES and ETHNICITIES are the CDC race/ethnicity codes the SDE value sets list. */
export const RACES = [c('raceEthnicity', '2106-3', 'White'), c('raceEthnicity', '2054-5', 'Black or African American'), c('raceEthnicity', '2028-9', 'Asian'), c('raceEthnicity', '1002-5', 'American Indian or Alaska Native'), c('raceEthnicity', '2076-8', 'Native Hawaiian or Other Pacific Islander'), c('raceEthnicity', '2131-1', 'Other Race')] as const;
export const ETHNICITIES = [c('raceEthnicity', '2135-2', 'Hispanic or Latino'), c('raceEthnicity', '2186-5', 'Not Hispanic or Latino')] as const;

/** UNITS are the UCUM units of each numeric result. */
export const UNITS = {
  percent: '%',
  egfr: 'mL/min/{1.73_m2}',
  mmHg: 'mm[Hg]',
} as const;

/** allCodes lists every code above with the group it belongs to, for value-set checks. */
export function allCodes(): { group: string; code: Code }[] {
  const out: { group: string; code: Code }[] = [];
  const groups = { ENCOUNTERS, CONDITIONS, MEDICATIONS, LABS, PROCEDURES, STROKE };
  for (const [groupName, group] of Object.entries(groups)) {
    for (const [key, value] of Object.entries(group)) {
      for (const code of Array.isArray(value) ? value : [value as Code]) out.push({ group: `${groupName}.${key}`, code });
    }
  }
  return out;
}
