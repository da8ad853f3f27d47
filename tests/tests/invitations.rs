//! `/api/v1/invitation`: issuing invitation links to patient apps, reissuing, and who may read them.

use jhe_tests::{TestServer, seeded};
use serde_json::{Value, json};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.sort_unstable();
    keys
}

const INVITATION_KEYS: [&str; 8] =
    ["client_id", "id", "invitationLink", "lastUpdated", "patientId", "status", "token", "tokenHash"];

async fn patient_id(server: &TestServer, email: &str) -> i64 {
    sqlx::query_scalar("SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = $1")
        .bind(email)
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

async fn stored(server: &TestServer, id: i64) -> (String, String) {
    sqlx::query_as("SELECT token_hash, status FROM patient_invitations WHERE id = $1")
        .bind(id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn members_issue_links_and_reissuing_retires_the_previous_one() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let peter = patient_id(&server, seeded::PETER).await;
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    let site: String = sqlx::query_scalar("SELECT value_string FROM settings WHERE key = 'site.url'")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    let host = site.split_once("://").unwrap().1.trim_end_matches('/');

    let first = server
        .post("/api/v1/invitation", &megan, json!({"patient_id": peter, "client_id": carex, "send_email": false}))
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(keys(&first.body), INVITATION_KEYS);
    assert_eq!((first.body["patientId"].as_i64(), first.body["client_id"].as_i64()), (Some(peter), Some(carex)));
    assert_eq!(first.body["status"], "issued");
    assert!(first.body["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let token = first.body["token"].as_str().unwrap();
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
    // CODE becomes quote("<host[:port]>_<token>"): the ':' of the port is %3A
    let code = format!("{}_{token}", host.replace(':', "%3A"));
    assert_eq!(first.body["invitationLink"], format!("https://carex.ai/invitation/{code}"));
    assert!(first.body["invitationLink"].as_str().unwrap().ends_with(&format!("_{token}")));

    // only the hash is stored: 43 characters of unpadded base64url, never the token
    let first_id = first.body["id"].as_i64().unwrap();
    let (hash, status) = stored(&server, first_id).await;
    assert_eq!(hash.len(), 43);
    assert!(hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{hash}");
    assert_eq!((first.body["tokenHash"].as_str(), status.as_str()), (Some(hash.as_str()), "issued"));
    assert_ne!(hash, token);
    let token_stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM patient_invitations WHERE token_hash = $1 OR token_hash LIKE '%' || $1 || '%'",
    )
    .bind(token)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(token_stored, 0);

    // camelCase keys (clientId arrives unconverted, §2.1) are accepted; the earlier link is retired
    let second = server
        .post("/api/v1/invitation", &megan, json!({"patientId": peter, "clientId": carex, "sendEmail": false}))
        .await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    assert_ne!(second.body["token"], first.body["token"]);
    assert_eq!(stored(&server, first_id).await.1, "reissued");
    let second_id = second.body["id"].as_i64().unwrap();
    assert_eq!(stored(&server, second_id).await.1, "issued");

    // another app's invitations are independent
    let access = server.id_of("oauth_clients", "client_id", "patient-access").await;
    let other = server.post("/api/v1/invitation", &megan, json!({"patient_id": peter, "client_id": access})).await;
    assert_eq!(other.status, 201);
    assert!(
        other.body["invitationLink"]
            .as_str()
            .unwrap()
            .starts_with("http://localhost:8001/clients/patient-access/?code=")
    );
    assert_eq!(stored(&server, second_id).await.1, "issued");

    let read = server.get(&format!("/api/v1/invitation/{first_id}"), &megan).await;
    assert_eq!(read.status, 200);
    assert_eq!(keys(&read.body), INVITATION_KEYS);
    assert_eq!(read.body["status"], "reissued");
    assert!(read.body["token"].is_null() && read.body["invitationLink"].is_null());
    assert_eq!(read.body["tokenHash"], first.body["tokenHash"]);

    // superusers may invite anyone
    let percy = patient_id(&server, seeded::PERCY).await;
    let admin = server.token(seeded::ADMIN).await;
    let by_admin = server.post("/api/v1/invitation", &admin, json!({"patient_id": percy, "client_id": carex})).await;
    assert_eq!(by_admin.status, 201);
}

#[tokio::test]
async fn issuing_needs_a_managing_role_and_valid_ids() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let peter = patient_id(&server, seeded::PETER).await;
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    let admin_ui = server.id_of("oauth_clients", "client_id", "jhe-admin-ui").await;
    let body = json!({"patient_id": peter, "client_id": carex});

    // a viewer, a practitioner of other organizations, a patient (even for themself)
    for email in [seeded::VICTOR, seeded::MARK, seeded::PETER, seeded::PAMELA] {
        let answer = server.post("/api/v1/invitation", &server.token(email).await, body.clone()).await;
        assert_eq!(answer.status, 403, "{email}: {:?}", answer.body);
    }
    assert_eq!(server.request("POST", "/api/v1/invitation", None, Some(body.clone())).await.status, 401);

    for (bad, detail) in [
        (json!({"client_id": carex}), "patientId: this field is required".to_owned()),
        (json!({"patient_id": peter}), "client_id: this field is required".to_owned()),
        (json!({"patient_id": peter, "client_id": 999999}), "client_id: client 999999 does not exist".to_owned()),
        (
            json!({"patient_id": peter, "client_id": carex, "send_email": "yes"}),
            "sendEmail: expected true or false".to_owned(),
        ),
    ] {
        let answer = server.post("/api/v1/invitation", &mary, bad.clone()).await;
        assert_eq!((answer.status, answer.detail()), (400, detail), "{bad}");
    }
    // an id that does not exist reads like a patient of another organization
    let missing = server.post("/api/v1/invitation", &mary, json!({"patient_id": 999999, "client_id": carex})).await;
    let percy = server.patient_id(seeded::PERCY).await;
    let foreign = server.post("/api/v1/invitation", &mary, json!({"patient_id": percy, "client_id": carex})).await;
    assert_eq!((missing.status, missing.detail()), (403, foreign.detail()));
    let not_int = server.post("/api/v1/invitation", &mary, json!({"patientId": "peter", "client_id": carex})).await;
    assert_eq!(not_int.status, 400);
    assert!(not_int.detail().ends_with("`peter` is not an integer"), "{}", not_int.detail());
    let not_an_app =
        server.post("/api/v1/invitation", &mary, json!({"patient_id": peter, "client_id": admin_ui})).await;
    assert_eq!(not_an_app.status, 400);
    assert!(not_an_app.detail().contains("is not a patient app"), "{}", not_an_app.detail());
    let unknown =
        server.post("/api/v1/invitation", &mary, json!({"patient_id": peter, "client_id": carex, "email": "x"})).await;
    assert_eq!(unknown.status, 400);

    // no mail delivery yet: say so instead of pretending, and issue nothing
    let email = server
        .post("/api/v1/invitation", &mary, json!({"patient_id": peter, "client_id": carex, "send_email": true}))
        .await;
    assert_eq!(email.status, 400);
    assert!(
        email.detail().contains("email delivery is not configured; send the invitationLink to the patient yourself")
    );
    let issued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM patient_invitations").fetch_one(&server.db.pool).await.unwrap();
    assert_eq!(issued, 0);
}

#[tokio::test]
async fn invitations_are_read_only_by_those_who_see_the_patient() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let mark = server.token(seeded::MARK).await;
    let peter = patient_id(&server, seeded::PETER).await;
    let percy = patient_id(&server, seeded::PERCY).await;
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    let commonhealth = server.id_of("oauth_clients", "client_id", "commonhealth").await;

    let to_peter = server.post("/api/v1/invitation", &mary, json!({"patient_id": peter, "client_id": carex})).await;
    let to_peter_again =
        server.post("/api/v1/invitation", &mary, json!({"patient_id": peter, "client_id": carex})).await;
    let to_percy =
        server.post("/api/v1/invitation", &mark, json!({"patient_id": percy, "client_id": commonhealth})).await;
    assert_eq!((to_peter.status, to_peter_again.status, to_percy.status), (201, 201, 201));
    let peter_invitation = to_peter.body["id"].as_i64().unwrap();
    let percy_invitation = to_percy.body["id"].as_i64().unwrap();

    let ids = |answer: &jhe_tests::Answer| -> Vec<i64> {
        answer.body["results"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
    };
    let mine = server.get("/api/v1/invitation", &mary).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(keys(&mine.body), ["count", "next", "previous", "results"]);
    // newest first
    assert_eq!(ids(&mine), [to_peter_again.body["id"].as_i64().unwrap(), peter_invitation]);
    assert_eq!(keys(&mine.body["results"][0]), INVITATION_KEYS);
    assert!(mine.body["results"][0]["token"].is_null());
    assert_eq!(ids(&server.get("/api/v1/invitation", &mark).await), [percy_invitation]);
    let admin = server.token(seeded::ADMIN).await;
    assert_eq!(server.get("/api/v1/invitation?pageSize=1", &admin).await.body["count"], 3);
    assert_eq!(server.get(&format!("/api/v1/invitation?patientId={percy}"), &admin).await.body["count"], 1);
    assert_eq!(server.get(&format!("/api/v1/invitation?patient_id={percy}"), &mary).await.body["count"], 0);

    // patients see their own invitations only
    let peter_token = server.token(seeded::PETER).await;
    assert_eq!(server.get("/api/v1/invitation", &peter_token).await.body["count"], 2);
    let pamela = server.token(seeded::PAMELA).await;
    assert_eq!(server.get("/api/v1/invitation", &pamela).await.body["count"], 0);
    assert_eq!(server.get(&format!("/api/v1/invitation?patientId={peter}"), &pamela).await.status, 403);

    let path = format!("/api/v1/invitation/{peter_invitation}");
    assert_eq!(server.get(&path, &peter_token).await.status, 200);
    assert_eq!(server.get(&path, &server.token(seeded::VICTOR).await).await.status, 200);
    for (token, who) in [(&mark, "mark"), (&pamela, "pamela")] {
        assert_eq!(server.get(&path, token).await.status, 403, "{who}");
    }
    let missing = server.get("/api/v1/invitation/999999", &mary).await;
    assert_eq!((missing.status, missing.detail().as_str()), (404, "No PatientInvitation matches the given query."));
    assert_eq!(server.request("GET", "/api/v1/invitation", None, None).await.status, 401);
    assert_eq!(server.request("GET", &path, None, None).await.status, 401);
}
