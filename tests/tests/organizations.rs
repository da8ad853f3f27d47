//! `/api/v1/organizations`.

use jhe_tests::{TestServer, seeded};
use serde_json::json;

async fn org(server: &TestServer, name: &str) -> i64 {
    server.id_of("organizations", "name", name).await
}

#[tokio::test]
async fn list_get_types_and_tree() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let lifespan = org(&server, "Lifespan Lab").await;
    let saturn = org(&server, "Saturn School of Data Science").await;

    let listed = server.get("/api/v1/organizations", &mary).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["count"], 9);
    let top = server.get("/api/v1/organizations?partOf=0", &mary).await;
    let names: Vec<&str> =
        top.body["results"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Neptune Health System", "Planetary Research Institute"]);
    assert_eq!(server.get("/api/v1/organizations?part_of=0", &mary).await.body["count"], 2);
    assert_eq!(server.get("/api/v1/organizations?part_of=x", &mary).await.status, 400);

    let one = server.get(&format!("/api/v1/organizations/{lifespan}"), &mary).await;
    assert_eq!(one.status, 200);
    assert_eq!(
        one.body,
        json!({"id": lifespan, "name": "Lifespan Lab", "type": "laboratory", "partOf": saturn,
               "currentUserRole": "manager", "children": []})
    );
    let root = server.get("/api/v1/organizations/0", &mary).await;
    assert_eq!(root.body["name"], "ROOT");
    assert_eq!(root.body["partOf"], serde_json::Value::Null);
    assert_eq!(server.get("/api/v1/organizations/999999", &mary).await.status, 404);
    assert_eq!(server.get("/api/v1/organizations/abc", &mary).await.status, 404);

    let types = server.get("/api/v1/organizations/types", &mary).await;
    assert_eq!(types.body["health-information-network"], "Health Information Network");
    assert_eq!(types.body.as_object().unwrap().len(), 18);

    let pri = org(&server, "Planetary Research Institute").await;
    let tree = server.get(&format!("/api/v1/organizations/{pri}/tree"), &mary).await;
    assert_eq!(tree.body["children"][0]["name"], "Saturn School of Data Science");
    assert_eq!(tree.body["children"][0]["children"][0]["name"], "Lifespan Lab");
    assert_eq!(tree.body["children"][0]["children"][0]["currentUserRole"], "manager");

    let admin = server.token(seeded::ADMIN).await;
    assert_eq!(server.get(&format!("/api/v1/organizations/{pri}"), &admin).await.body["currentUserRole"], "super_user");
}

#[tokio::test]
async fn create_rules() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let megan = server.token(seeded::MEGAN).await;
    let admin = server.token(seeded::ADMIN).await;
    let peter = server.token(seeded::PETER).await;
    let lifespan = org(&server, "Lifespan Lab").await;

    let top = server.post("/api/v1/organizations", &mary, json!({"name": "Top", "type": "edu"})).await;
    assert_eq!(top.status, 403);
    assert_eq!(top.detail(), "You don't have permission to create a top-level organization.");
    let top = server.post("/api/v1/organizations", &admin, json!({"name": "Top", "type": "edu", "partOf": 0})).await;
    assert_eq!(top.status, 201);
    assert_eq!(top.body["partOf"], 0);

    // a manager of the parent creates a sub-organization and becomes its manager
    let sub = server
        .post("/api/v1/organizations", &mary, json!({"name": "Sub Lab", "type": "laboratory", "part_of": lifespan}))
        .await;
    assert_eq!(sub.status, 201, "{:?}", sub.body);
    assert_eq!(sub.body["currentUserRole"], "manager");
    let sub_id = sub.body["id"].as_i64().unwrap();
    let users = server.get(&format!("/api/v1/organizations/{sub_id}/users"), &mary).await;
    assert_eq!(users.body[0]["email"], seeded::MARY);
    assert_eq!(users.body[0]["role"], "manager");

    assert_eq!(
        server
            .post("/api/v1/organizations", &megan, json!({"name": "X", "type": "laboratory", "partOf": lifespan}))
            .await
            .status,
        403
    );
    assert_eq!(
        server
            .post("/api/v1/organizations", &peter, json!({"name": "X", "type": "laboratory", "partOf": lifespan}))
            .await
            .status,
        403
    );

    let bad_type =
        server.post("/api/v1/organizations", &mary, json!({"name": "X", "type": "castle", "partOf": lifespan})).await;
    assert_eq!(bad_type.status, 400);
    assert!(bad_type.detail().contains("`castle` is not a valid choice"), "{}", bad_type.detail());
    let no_name = server.post("/api/v1/organizations", &mary, json!({"type": "dept", "partOf": lifespan})).await;
    assert_eq!(no_name.status, 400);
    assert_eq!(no_name.detail(), "name: this field is required");
    let missing_parent =
        server.post("/api/v1/organizations", &admin, json!({"name": "X", "type": "dept", "partOf": 99999})).await;
    assert_eq!(missing_parent.status, 400);
    assert!(missing_parent.detail().contains("partOf"));
    let unknown_key =
        server.post("/api/v1/organizations", &admin, json!({"name": "X", "type": "dept", "colour": "red"})).await;
    assert_eq!(unknown_key.status, 400);
    assert!(unknown_key.detail().contains("colour"));
}

#[tokio::test]
async fn update_and_delete_need_a_manager_of_the_parent() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let mark = server.token(seeded::MARK).await;
    let victor = server.token(seeded::VICTOR).await;
    let lifespan = org(&server, "Lifespan Lab").await;
    let path = format!("/api/v1/organizations/{lifespan}");

    assert_eq!(server.patch(&path, &victor, json!({"name": "Renamed"})).await.status, 403);
    assert_eq!(server.patch(&path, &mark, json!({"name": "Renamed"})).await.status, 403);
    let renamed = server.patch(&path, &mary, json!({"name": "Renamed Lab"})).await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.body["name"], "Renamed Lab");
    assert_eq!(renamed.body["type"], "laboratory");
    let put = server.put(&path, &mary, json!({"name": "Lifespan Lab", "type": "team"})).await;
    assert_eq!(put.body["type"], "team");
    let moved = server.patch(&path, &mary, json!({"partOf": 0})).await;
    assert_eq!(moved.status, 400);
    assert_eq!(server.patch(&path, &mary, json!({"name": ""})).await.status, 400);
    assert_eq!(server.patch("/api/v1/organizations/0", &mary, json!({"name": "x"})).await.status, 403);
    assert_eq!(server.patch("/api/v1/organizations/987654", &mary, json!({"name": "x"})).await.status, 404);

    assert_eq!(server.delete(&path, &victor, None).await.status, 403);
    assert_eq!(server.delete(&path, &mary, None).await.status, 204);
    assert_eq!(server.get(&path, &mary).await.status, 404);
}

#[tokio::test]
async fn membership_add_change_and_remove() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let megan = server.token(seeded::MEGAN).await;
    let lifespan = org(&server, "Lifespan Lab").await;
    let mark_id = server.id_of("users", "email", seeded::MARK).await;
    let peter_id = server.id_of("users", "email", seeded::PETER).await;
    let add = format!("/api/v1/organizations/{lifespan}/user");

    let added = server.post(&add, &mary, json!({"jheUserId": mark_id, "organizationPartitionerRole": "viewer"})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(added.body["role"], "viewer");
    assert_eq!(added.body["organization"]["id"], lifespan);
    assert_eq!(added.body["practitioner"]["telecomEmail"], seeded::MARK);
    let changed =
        server.post(&add, &mary, json!({"jhe_user_id": mark_id, "organization_partitioner_role": "member"})).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["role"], "member");

    assert_eq!(server.post(&add, &megan, json!({"jheUserId": mark_id})).await.status, 403);
    let no_user = server.post(&add, &mary, json!({})).await;
    assert_eq!(no_user.status, 400);
    assert_eq!(no_user.detail(), "jheUserId: this field is required");
    let patient = server.post(&add, &mary, json!({"jheUserId": peter_id})).await;
    assert_eq!(patient.status, 404);
    assert_eq!(patient.detail(), "No Practitioner matches the given query.");
    let bad_role =
        server.post(&add, &mary, json!({"jheUserId": mark_id, "organizationPartitionerRole": "owner"})).await;
    assert_eq!(bad_role.status, 400);
    assert!(bad_role.detail().contains("manager, member, viewer"));

    let users = server.get(&format!("/api/v1/organizations/{lifespan}/users"), &megan).await;
    assert!(users.body.as_array().unwrap().iter().any(|u| u["email"] == seeded::MARK && u["role"] == "member"));
    let outsider = server.token(seeded::PERCY).await;
    assert_eq!(server.get(&format!("/api/v1/organizations/{lifespan}/users"), &outsider).await.status, 403);

    let remove = format!("/api/v1/organizations/{lifespan}/remove_user");
    assert_eq!(server.delete(&remove, &megan, Some(json!({"jheUserId": mark_id}))).await.status, 403);
    assert_eq!(server.delete(&remove, &mary, Some(json!({"jheUserId": mark_id}))).await.status, 204);
    assert_eq!(server.delete(&remove, &mary, Some(json!({"jheUserId": mark_id}))).await.status, 404);
    assert_eq!(server.delete(&remove, &mary, None).await.status, 400);

    // the caller's own organizations
    let mine = server.get("/api/v1/users/organizations", &megan).await;
    assert_eq!(
        mine.body,
        json!([{"id": lifespan, "name": "Lifespan Lab", "type": "laboratory",
        "partOf": server.id_of("organizations", "name", "Saturn School of Data Science").await,
        "currentUserRole": "member", "children": []}])
    );
    let patients_orgs = server.get("/api/v1/users/organizations", &server.token(seeded::PETER).await).await;
    assert_eq!(patients_orgs.body, json!([]));
}
