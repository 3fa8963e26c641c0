/** FHIR R4 resource types that may name their drug by reference (`medicationReference`), which CairnCommon.cql resolves to a Medication. */
export const MEDICATION_REFERENCE_HOLDERS: readonly string[] = ['MedicationRequest', 'MedicationStatement', 'MedicationDispense', 'MedicationAdministration'];
