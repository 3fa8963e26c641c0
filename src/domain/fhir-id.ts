/** The FHIR id grammar ({@link https://hl7.org/fhir/R4/datatypes.html#id}), unanchored, to compose into larger patterns. */
export const FHIR_ID_CHARS = '[A-Za-z0-9\\-.]{1,64}';

/** FHIR_ID matches a valid FHIR id. */
export const FHIR_ID = new RegExp(`^${FHIR_ID_CHARS}$`);
