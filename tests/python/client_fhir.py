"""The real `jupyterhealth-client` against a running jhe: the FHIR side of the client's contract (jhe-compat §11.2–§11.4,
§11.7) over observations that went through the pipeline. Run by tests/tests/python_client.rs as manager_mary with
JHE_URL and JHE_TOKEN set and the arguments `<phase> <peter> <pamela> <bp-hr study> <bp study>`.

Data (uploaded by the test): Peter 30 heart rate (with a datasheet in the header) + 5 blood pressure; Pamela 2,500 heart
rate + 3 blood pressure. Peter consents to both codes for the "BP & HR" study and has the "BP" study pending; Pamela
consents to everything. Phase `after-revoke` runs after Peter withdrew heart rate from the "BP & HR" study.
"""

import os
import sys

import pandas as pd
from jupyterhealth_client import Code, JupyterHealthClient
from jupyterhealth_client._client import RequestError

# §11.4: the columns tidy_observation produced for a current-format heart-rate Observation on the reference.
REFERENCE_COLUMNS = {
    "resource_type", "code", "code_coding_0_code", "code_coding_0_system", "id", "meta_lastUpdated", "meta_source",
    "resourceType", "status", "subject_reference", "subject_identifier_system", "subject_identifier_value",
    "effectiveDateTime", "identifier_0_system", "identifier_0_value", "uuid", "modality", "schema_id_name",
    "schema_id_version", "schema_id_namespace", "external_datasheets_0_datasheet_type",
    "external_datasheets_0_datasheet_reference", "source_creation_date_time", "heart_rate_unit", "heart_rate_value",
    "effective_time_frame_date_time", "source_creation_date_time_local", "effective_time_frame_date_time_local",
}
# Deliberate differences (spec/decisions.md): the code's display text and the data source are emitted.
ALLOWED_EXTRA_COLUMNS = {"code_coding_0_display", "device_reference"}


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def ids_of(resources):
    ids = [r["id"] for r in resources]
    check(len(ids) == len(set(ids)), f"duplicate ids across pages: {len(ids)} rows, {len(set(ids))} distinct")
    return ids


def codes_of(resources):
    return sorted({r["code"]["coding"][0]["code"] for r in resources})


def before(client, peter, pamela, both_study, bp_study):
    everything = list(client.list_observations(patient_id=peter, limit=10_000))
    check(len(ids_of(everything)) == 35, f"Peter's observations: {len(everything)}")
    check(codes_of(everything) == ["omh:blood-pressure:4.0", "omh:heart-rate:2.0"], codes_of(everything))
    check(all(r["subject"]["reference"] == f"Patient/{peter}" for r in everything), "subject of every row")

    heart = list(client.list_observations(patient_id=peter, code=Code.HEART_RATE))
    check(len(heart) == 30, f"Peter's heart rate (Code enum): {len(heart)}")
    by_string = list(client.list_observations(patient_id=peter, code="omh:heart-rate:2.0"))
    check(ids_of(by_string) == ids_of(heart), "code as a string is the same search")
    full_code = list(client.list_observations(patient_id=peter, code="https://w3id.org/openmhealth|omh:blood-pressure:4.0"))
    check(len(full_code) == 5, f"system|code: {len(full_code)}")

    # Pamela's 2,503 rows come in three pages of the client's _count=1000, without repeats or gaps.
    pamela_rows = list(client.list_observations(patient_id=pamela, limit=10_000))
    check(len(ids_of(pamela_rows)) == 2503, f"Pamela's observations over three pages: {len(pamela_rows)}")
    limited = list(client.list_observations(patient_id=pamela, limit=1500))
    check(len(limited) == 1500, f"limit=1500: {len(limited)}")

    in_study = list(client.list_observations(study_id=both_study, limit=10_000))
    check(len(ids_of(in_study)) == 2538, f"BP & HR study: {len(in_study)}")
    both = list(client.list_observations(study_id=both_study, patient_id=peter, limit=10_000))
    check(len(both) == 35, f"BP & HR study, Peter: {len(both)}")
    # The BP study: Peter's consent is pending there, so only Pamela's blood pressure shows.
    bp_only = list(client.list_observations(study_id=bp_study, limit=10_000))
    check(len(bp_only) == 3, f"BP study: {len(bp_only)}")
    check(all(r["subject"]["reference"] == f"Patient/{pamela}" for r in bp_only), "BP study rows are Pamela's")

    df = client.list_observations_df(patient_id=peter, code=Code.HEART_RATE)
    check(isinstance(df, pd.DataFrame) and len(df) == 30, f"list_observations_df rows: {len(df)}")
    columns = set(df.columns)
    missing = REFERENCE_COLUMNS - columns
    extra = columns - REFERENCE_COLUMNS - ALLOWED_EXTRA_COLUMNS
    check(not missing and not extra, f"DataFrame columns: missing {sorted(missing)}, unexpected {sorted(extra)}")
    check(sorted(df["heart_rate_value"].tolist()) == [60.0 + m for m in range(30)], "heart_rate_value column")
    check(set(df["code"]) == {"omh:heart-rate:2.0"}, f"code column: {set(df['code'])}")
    check(str(df["effective_time_frame_date_time"].dtype).startswith("datetime64"), "effective time is a timestamp")
    check(str(df["effective_time_frame_date_time"].dt.tz) == "UTC", "effective time in UTC")
    first = df.sort_values("effective_time_frame_date_time").iloc[0]
    check(str(first["effective_time_frame_date_time_local"]) == "2025-01-01 00:00:00", f"local time: {first}")
    check(str(first["effective_time_frame_date_time"]) == "2025-01-01 08:00:00+00:00", f"UTC time: {first}")

    one = client.get_fhir("Observation", heart[0]["id"])
    check(one["resourceType"] == "Observation" and one["id"] == heart[0]["id"], f"get_fhir(Observation, id): {one}")
    bundle = client.get_fhir("Observation", patient_id=peter, params={"_count": 2})
    check(bundle["resourceType"] == "Bundle" and bundle["total"] == 35 and len(bundle["entry"]) == 2, "get_fhir search")
    check(any(link["relation"] == "next" for link in bundle["link"]), "a next link")
    counted = client.get_fhir("Observation", patient_id=peter, params={"_summary": "count"})
    check(counted["total"] == 35 and counted["entry"] == [], f"_summary=count: {counted}")
    listed = list(client.list_fhir("Observation", study_id=both_study, patient_id=peter, limit=100))
    check(len(listed) == 35, f"list_fhir(Observation): {len(listed)}")
    imported = list(client.list_fhir("Observation", patient_id=peter, fhir_source="imported"))
    check(imported == [], f"no imported observations: {len(imported)}")

    patient = client.get_fhir("Patient", peter)
    check(patient["resourceType"] == "Patient" and patient["id"] == str(peter), f"get_fhir(Patient): {patient}")
    patients = list(client.list_fhir("Patient", study_id=both_study))
    check(sorted(p["id"] for p in patients) == sorted([str(peter), str(pamela)]), f"list_fhir(Patient): {patients}")
    groups = list(client.list_fhir("Group", patient_id=peter))
    check(len(groups) == 2 and all(g["resourceType"] == "Group" for g in groups), f"list_fhir(Group): {groups}")

    statement = client.get_fhir_capability_statement()
    check(statement["resourceType"] == "CapabilityStatement", "capability statement")
    types = client.list_fhir_resource_types()
    check({"Observation", "Patient", "Group", "Organization", "Practitioner", "Device"} <= set(types), f"types: {types}")

    try:
        client.get_fhir("Observation", "999999999")
    except RequestError as error:
        check(error.requests_error.response.status_code == 404, f"unknown observation: {error}")
    else:
        check(False, "get_fhir(Observation, unknown id) did not raise")


def after_revoke(client, peter, pamela, both_study, bp_study):
    everything = list(client.list_observations(patient_id=peter, limit=10_000))
    check(codes_of(everything) == ["omh:blood-pressure:4.0"], f"after revoking heart rate: {codes_of(everything)}")
    check(len(everything) == 5, f"Peter's observations after revoking heart rate: {len(everything)}")
    heart = list(client.list_observations(patient_id=peter, code=Code.HEART_RATE))
    check(heart == [], f"Peter's heart rate after revoking: {len(heart)}")
    counted = client.get_fhir("Observation", patient_id=peter, params={"_summary": "count"})
    check(counted["total"] == 5, f"the count follows the consent: {counted['total']}")
    in_study = list(client.list_observations(study_id=both_study, limit=10_000))
    check(len(in_study) == 2508, f"BP & HR study after Peter's revocation: {len(in_study)}")
    df = client.list_observations_df(patient_id=pamela, code=Code.HEART_RATE, limit=10_000)
    check(len(df) == 2500, f"Pamela is not affected: {len(df)}")


def main():
    phase, peter, pamela, both_study, bp_study = sys.argv[1], *map(int, sys.argv[2:6])
    client = JupyterHealthClient(url=os.environ["JHE_URL"], token=os.environ["JHE_TOKEN"])
    {"before": before, "after-revoke": after_revoke}[phase](client, peter, pamela, both_study, bp_study)
    print(f"jupyterhealth-client FHIR contract ({phase}): ok")


if __name__ == "__main__":
    main()
