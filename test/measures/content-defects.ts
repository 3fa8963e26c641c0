/**
 * Test cases whose expected counts contradict their own data: content defects, documented with
 * evidence in docs/measures.md. One list, read by test/measures/ecqm-conformance.test.ts (which
 * fails if one of them starts passing or no longer exists) and bench/measures-vs-fqm.ts.
 */
export const CONTENT_DEFECTS: readonly { readonly measure: string; readonly test: string; readonly name: string; readonly reason: string }[] = [
  {
    measure: 'CMS122',
    test: '6630d394-c81d-42f5-a218-40b73a2a4949',
    name: 'NUMPass GMIGreaterThan9',
    reason: 'expects numerator 1 for "GMI greater than 9%", but the Observation has valueCodeableConcept SNOMED 374166001 "Yes", not a Quantity: the CQL "value as Quantity > 9 \'%\'" is null and "value is null" is false',
  },
  {
    measure: 'CMS122',
    test: '8956ebb5-d3c0-4112-a34a-200961713efd',
    name: 'NUMPass HbA1cGreaterThan9',
    reason: 'expects numerator 1 for "HbA1c level is 9.1%", but the Observation has valueCodeableConcept SNOMED 373066001 "Yes", not 9.1 \'%\'',
  },
  {
    measure: 'CMS165',
    test: '6885264d-efbf-4e48-99a2-2e8ce29d61ba',
    name: 'NUMERFail SBP139DBP89TakenDuringEMER',
    reason: 'expects numerator 0 because the BP was taken during an emergency visit, but Observation.encounter references Encounter/Encounter-7-1, which is not in the bundle (the EMER encounter has id 1197015d-…), so getEncounter() is null and the 139/89 reading qualifies',
  },
];

