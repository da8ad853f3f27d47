"""The real `jupyterhealth-client` against a running jhe: every REST method of the client's contract
(jhe-compat §11.2, §11.7). Run by tests/tests/python_client.rs with JHE_URL and JHE_TOKEN (manager_mary) set.

FHIR methods (list_observations, get_fhir, ...) join this script with the FHIR API.
"""

import os
import sys

from jupyterhealth_client import JupyterHealthClient
from jupyterhealth_client._client import RequestError

PETER = "ll_patient_peter@example.com"


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    client = JupyterHealthClient(url=os.environ["JHE_URL"], token=os.environ["JHE_TOKEN"])

    user = client.get_user()
    check(user["email"] == "manager_mary@example.com", f"get_user: {user}")
    check(user["userType"] == "practitioner" and user["isSuperuser"] is False, f"get_user: {user}")

    organizations = list(client.list_organizations())
    check(len(organizations) == 9, f"list_organizations: {len(organizations)}")
    lifespan = next(o for o in organizations if o["name"] == "Lifespan Lab")
    org = client.get_organization(lifespan["id"])
    check(org["currentUserRole"] == "manager" and org["children"] == [], f"get_organization: {org}")
    root = client.get_organization(0)
    check(root["name"] == "ROOT" and root["partOf"] is None, f"ROOT: {root}")

    studies = list(client.list_studies(organization_id=lifespan["id"]))
    check({s["name"] for s in studies} == {"Lifespan Study on BP & HR", "Lifespan Study on BP"}, f"list_studies: {studies}")
    study = client.get_study(studies[0]["id"])
    check(study["organization"]["id"] == lifespan["id"] and "iconUrl" in study, f"get_study: {study}")

    patients = list(client.list_patients(organization_id=lifespan["id"]))
    check(len(patients) == 2, f"list_patients(organization_id): {len(patients)}")
    in_study = list(client.list_patients(study_id=study["id"]))
    check(len(in_study) == 2, f"list_patients(study_id): {len(in_study)}")
    everyone = list(client.list_patients())
    check(len(everyone) >= 2, f"list_patients(): {len(everyone)}")

    peter = client.lookup_patient(email=PETER)
    check(peter["telecomEmail"] == PETER, f"lookup_patient(email): {peter}")
    by_external = client.lookup_patient(external_id="abc123")
    check(by_external["id"] == peter["id"], f"lookup_patient(external_id): {by_external}")
    by_system = client.lookup_patient(external_id="E1234", system="urn:oid:1.2.3.4")
    check(by_system["id"] == peter["id"], f"lookup_patient(external_id, system): {by_system}")
    same = client.get_patient(peter["id"])
    check(same["identifiers"] == peter["identifiers"], f"get_patient: {same}")

    consents = client.get_patient_consents(peter["id"])
    check(consents["patient"]["id"] == peter["id"], f"get_patient_consents: {consents}")
    codes = {c["codingCode"] for c in consents["consolidatedConsentedScopes"]}
    check("omh:blood-pressure:4.0" in codes and "omh:heart-rate:2.0" in codes, f"consented scopes: {codes}")
    check(len(consents["studiesPendingConsent"]) >= 1, "pending study listed")

    sources = list(client.list_data_sources())
    check(len(sources) == 6 and all("supportedScopes" in s for s in sources), f"list_data_sources: {sources}")

    # errors carry the server's `detail` (an id outside the caller's organizations, here one that does not exist)
    try:
        client.get_patient(999999)
    except RequestError as error:
        check("This patient is not in any of your organizations." in str(error), f"403 message: {error}")
    else:
        check(False, "get_patient(999999) did not raise")

    print("jupyterhealth-client REST contract: ok")


if __name__ == "__main__":
    main()
