//! OAuth clients as the Admin REST API manages them: patient apps (`oauth_clients` rows with a `patient_apps`
//! row, jhe-compat §3.5), the data sources they upload from, and practitioners' own API keys
//! (`practitioner_clients`, client-credentials). No response ever carries a stored secret or its hash.

use crate::data_sources::{DATA_SOURCE_SELECT, DataSource};
use crate::invitations::{Invitation, invitations_of_patient};
use crate::passwords::hash_password;
use crate::{Error, Page, PageRequest, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool};

/// A patient app (jhe-compat §5.1 Client). `clientId` is spelled out because camelizing leaves `client_id` as it
/// is (§2.1).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Client {
    pub id: i64,
    pub name: String,
    #[serde(rename = "clientId")]
    pub client_id: String,
    pub invitation_url: String,
}

/// A patient app with the invitations one patient received for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsolidatedClient {
    #[serde(flatten)]
    pub client: Client,
    pub patient_invitations: Vec<Invitation>,
}

/// A `client_data_sources` row; `client_id` is the client's row id.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ClientDataSource {
    pub id: i64,
    pub client_id: i64,
    pub data_source_id: i64,
}

/// A practitioner's API key (jhe-compat §5.5). `key` = base64(`client_id:client_secret`) is only known when the
/// key is created: jhe stores an argon2 hash of the secret, never the secret (the reference stores it in clear
/// to show it again).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PractitionerClient {
    pub id: i64,
    pub label: String,
    #[serde(serialize_with = "crate::wire::serialize_drf_datetime")]
    pub created: DateTime<Utc>,
    pub name: String,
    #[sqlx(skip)]
    pub key: Option<String>,
}

/// The fields of a new patient app; `redirect_uri` is the site's `/auth/callback`.
#[derive(Debug, Clone)]
pub struct NewClient<'a> {
    pub name: &'a str,
    pub client_id: &'a str,
    pub invitation_url: &'a str,
    pub redirect_uri: &'a str,
}

/// Changes to a patient app; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges<'a> {
    pub name: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub invitation_url: Option<&'a str>,
}

/// Patient apps, newest first.
pub async fn list_clients(pool: &PgPool, page: PageRequest) -> Result<Page<Client>> {
    let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM patient_apps"#).fetch_one(pool).await?;
    let items = sqlx::query_as!(
        Client,
        "SELECT c.id, c.name, c.client_id, a.invitation_url
         FROM oauth_clients c JOIN patient_apps a ON a.client_pk = c.id
         ORDER BY c.id DESC LIMIT $1 OFFSET $2",
        page.limit(),
        page.offset(),
    )
    .fetch_all(pool)
    .await?;
    Ok(Page { count, items })
}

pub async fn get_client(pool: &PgPool, id: i64) -> Result<Client> {
    sqlx::query_as!(
        Client,
        "SELECT c.id, c.name, c.client_id, a.invitation_url
         FROM oauth_clients c JOIN patient_apps a ON a.client_pk = c.id
         WHERE c.id = $1",
        id,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound { entity: "Client" })
}

async fn check_client_id_free(tx: &mut sqlx::PgConnection, client_id: &str, except: Option<i64>) -> Result<()> {
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM oauth_clients WHERE client_id = $1 AND id IS DISTINCT FROM $2) AS "exists!""#,
        client_id,
        except,
    )
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(Error::Conflict(format!(
            "clientId: an OAuth client with the client id `{client_id}` already exists"
        )));
    }
    Ok(())
}

/// Creates a patient app: a public authorization-code client that skips the consent screen (the patient
/// consents per study instead), signs ID tokens with RS256, and has an invitation URL.
pub async fn create_client(pool: &PgPool, new: &NewClient<'_>) -> Result<Client> {
    let mut tx = pool.begin().await?;
    check_client_id_free(&mut tx, new.client_id, None).await?;
    let id = sqlx::query_scalar!(
        r#"INSERT INTO oauth_clients (client_id, name, client_type, grant_type, redirect_uris, skip_authorization, algorithm)
         VALUES ($1, $2, 'public', 'authorization-code', $3, TRUE, 'RS256') RETURNING id AS "id!""#,
        new.client_id,
        new.name,
        new.redirect_uri,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!("INSERT INTO patient_apps (client_pk, invitation_url) VALUES ($1, $2)", id, new.invitation_url)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    get_client(pool, id).await
}

pub async fn update_client(pool: &PgPool, id: i64, changes: &ClientChanges<'_>) -> Result<Client> {
    let mut tx = pool.begin().await?;
    let exists = sqlx::query_scalar!("SELECT client_pk FROM patient_apps WHERE client_pk = $1 FOR UPDATE", id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(Error::NotFound { entity: "Client" });
    }
    if let Some(client_id) = changes.client_id {
        check_client_id_free(&mut tx, client_id, Some(id)).await?;
    }
    sqlx::query!(
        "UPDATE oauth_clients SET name = COALESCE($2, name), client_id = COALESCE($3, client_id), updated = now()
         WHERE id = $1",
        id,
        changes.name,
        changes.client_id,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE patient_apps SET invitation_url = COALESCE($2, invitation_url) WHERE client_pk = $1",
        id,
        changes.invitation_url,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get_client(pool, id).await
}

/// Deletes a patient app with everything hanging off it: its study links, data source links, invitations and
/// tokens. Removing an app is how an administrator revokes it, so nothing of it may outlive the row.
pub async fn delete_client(pool: &PgPool, id: i64) -> Result<()> {
    let deleted =
        sqlx::query!("DELETE FROM oauth_clients c USING patient_apps a WHERE a.client_pk = c.id AND c.id = $1", id)
            .execute(pool)
            .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "Client" });
    }
    Ok(())
}

/// The data sources a patient app uploads from, ordered by name.
pub async fn client_data_sources(pool: &PgPool, client_pk: i64) -> Result<Vec<DataSource>> {
    get_client(pool, client_pk).await?;
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "{DATA_SOURCE_SELECT} JOIN client_data_sources cd ON cd.data_source_id = d.id
         WHERE cd.client_pk = $1 ORDER BY d.name, d.id"
    )))
    .bind(client_pk)
    .fetch_all(pool)
    .await?)
}

pub async fn add_client_data_source(pool: &PgPool, client_pk: i64, data_source_id: i64) -> Result<ClientDataSource> {
    get_client(pool, client_pk).await?;
    let data_source_exists =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM data_sources WHERE id = $1) AS "exists!""#, data_source_id)
            .fetch_one(pool)
            .await?;
    if !data_source_exists {
        return Err(Error::Invalid(format!("dataSourceId: data source {data_source_id} does not exist")));
    }
    let row = sqlx::query_as!(
        ClientDataSource,
        "INSERT INTO client_data_sources (client_pk, data_source_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
         RETURNING id, client_pk AS client_id, data_source_id",
        client_pk,
        data_source_id,
    )
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| Error::Conflict(format!("client {client_pk} already has data source {data_source_id}")))
}

pub async fn remove_client_data_source(pool: &PgPool, client_pk: i64, data_source_id: i64) -> Result<()> {
    get_client(pool, client_pk).await?;
    let removed = sqlx::query!(
        "DELETE FROM client_data_sources WHERE client_pk = $1 AND data_source_id = $2",
        client_pk,
        data_source_id,
    )
    .execute(pool)
    .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "ClientDataSource" });
    }
    Ok(())
}

/// The patient apps of every study the patient is enrolled in (each once, by name), each with the patient's
/// invitations to it, newest first.
pub async fn consolidated_clients(pool: &PgPool, patient_id: i64) -> Result<Vec<ConsolidatedClient>> {
    let clients = sqlx::query_as!(
        Client,
        "SELECT c.id, c.name, c.client_id, a.invitation_url
         FROM oauth_clients c JOIN patient_apps a ON a.client_pk = c.id
         WHERE c.id IN (SELECT sc.client_pk FROM study_clients sc
             JOIN study_patients sp ON sp.study_id = sc.study_id WHERE sp.patient_id = $1)
         ORDER BY c.name, c.id",
        patient_id,
    )
    .fetch_all(pool)
    .await?;
    let invitations = invitations_of_patient(pool, patient_id).await?;
    Ok(clients
        .into_iter()
        .map(|client| {
            let patient_invitations = invitations.iter().filter(|i| i.client_id == client.id).cloned().collect();
            ConsolidatedClient { client, patient_invitations }
        })
        .collect())
}

const PRACTITIONER_CLIENT_SELECT: &str = "SELECT pc.id, pc.label, c.created, c.name
    FROM practitioner_clients pc JOIN oauth_clients c ON c.id = pc.client_pk";

/// A practitioner's API keys, oldest first.
pub async fn list_practitioner_clients(
    pool: &PgPool,
    practitioner_id: i64,
    page: PageRequest,
) -> Result<Page<PractitionerClient>> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM practitioner_clients WHERE practitioner_id = $1"#,
        practitioner_id,
    )
    .fetch_one(pool)
    .await?;
    let items = sqlx::query_as(AssertSqlSafe(format!(
        "{PRACTITIONER_CLIENT_SELECT} WHERE pc.practitioner_id = $1 ORDER BY pc.id LIMIT $2 OFFSET $3"
    )))
    .bind(practitioner_id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    Ok(Page { count, items })
}

/// One of the practitioner's API keys; someone else's is "not found", not "forbidden", so ids reveal nothing.
pub async fn get_practitioner_client(pool: &PgPool, practitioner_id: i64, id: i64) -> Result<PractitionerClient> {
    sqlx::query_as(AssertSqlSafe(format!("{PRACTITIONER_CLIENT_SELECT} WHERE pc.id = $1 AND pc.practitioner_id = $2")))
        .bind(id)
        .bind(practitioner_id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "PractitionerClient" })
}

/// Creates a confidential client-credentials client owned by the practitioner's user (its tokens act as that
/// user). The answer carries `key`; only an argon2 hash of the secret is stored.
pub async fn create_practitioner_client(
    pool: &PgPool,
    practitioner_id: i64,
    owner_user_id: i64,
    label: &str,
    name: &str,
) -> Result<PractitionerClient> {
    let client_id = Alphanumeric.sample_string(&mut rand::rng(), 16);
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let secret_hash = hash_password(&secret)?;
    let mut tx = pool.begin().await?;
    let client_pk = sqlx::query_scalar!(
        r#"INSERT INTO oauth_clients (client_id, client_secret_hash, name, client_type, grant_type, owner_user_id)
         VALUES ($1, $2, $3, 'confidential', 'client-credentials', $4) RETURNING id AS "id!""#,
        client_id,
        secret_hash,
        name,
        owner_user_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let id = sqlx::query_scalar!(
        r#"INSERT INTO practitioner_clients (client_pk, practitioner_id, label) VALUES ($1, $2, $3) RETURNING id AS "id!""#,
        client_pk,
        practitioner_id,
        label,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut created = get_practitioner_client(pool, practitioner_id, id).await?;
    created.key = Some(STANDARD.encode(format!("{client_id}:{secret}")));
    Ok(created)
}

pub async fn update_practitioner_client(
    pool: &PgPool,
    practitioner_id: i64,
    id: i64,
    label: &str,
) -> Result<PractitionerClient> {
    let updated = sqlx::query!(
        "UPDATE practitioner_clients SET label = $3 WHERE id = $1 AND practitioner_id = $2",
        id,
        practitioner_id,
        label,
    )
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "PractitionerClient" });
    }
    get_practitioner_client(pool, practitioner_id, id).await
}

/// Deletes the API key's OAuth client, which takes the key row and every token issued to it along.
pub async fn delete_practitioner_client(pool: &PgPool, practitioner_id: i64, id: i64) -> Result<()> {
    let deleted = sqlx::query!(
        "DELETE FROM oauth_clients c USING practitioner_clients pc
         WHERE pc.client_pk = c.id AND pc.id = $1 AND pc.practitioner_id = $2",
        id,
        practitioner_id,
    )
    .execute(pool)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "PractitionerClient" });
    }
    Ok(())
}
