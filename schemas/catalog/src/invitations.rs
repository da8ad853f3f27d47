//! Patient invitations: a one-time token that lets a patient app sign a patient in (jhe-compat §3.7, §7.4).
//! Only base64url(sha256(token)) is stored; the raw token exists once, in the answer to the issuing request.

use crate::{Error, Page, PageRequest, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jhe_schemas::InvitationStatus;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};

/// The length of an invitation token (`[A-Za-z0-9]{32}`), which redeeming apps rely on.
pub const INVITATION_TOKEN_LENGTH: usize = 32;

/// An invitation as the REST API shows it. `client_id` is the OAuth client's row id (it keeps its snake_case
/// key on the wire, jhe-compat §2.1). `token` and `invitation_link` are only known in the answer that issues it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Invitation {
    pub id: i64,
    pub patient_id: i64,
    pub client_id: i64,
    pub token_hash: String,
    #[sqlx(skip)]
    pub token: Option<String>,
    pub status: String,
    #[serde(serialize_with = "crate::wire::serialize_drf_datetime")]
    pub last_updated: DateTime<Utc>,
    #[sqlx(skip)]
    pub invitation_link: Option<String>,
}

/// A freshly issued invitation (with its raw `token`) and the client's invitation URL template (`…CODE…`).
#[derive(Debug, Clone)]
pub struct IssuedInvitation {
    pub invitation: Invitation,
    pub invitation_url: String,
}

/// Which invitations a caller may list: `None` everywhere is everything (superusers).
#[derive(Debug, Clone, Default)]
pub struct InvitationFilter {
    /// only patients sharing an organization with this practitioner
    pub visible_to_practitioner: Option<i64>,
    pub patient_id: Option<i64>,
}

/// base64url(sha256(token)) without padding: 43 characters.
pub fn invitation_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

pub(crate) const INVITATION_COLUMNS: &str =
    "i.id, i.patient_id, i.client_pk AS client_id, i.token_hash, i.status, i.last_updated";

fn push_invitation_filter(query: &mut QueryBuilder<Postgres>, filter: &InvitationFilter) {
    query.push(" WHERE TRUE");
    if let Some(practitioner_id) = filter.visible_to_practitioner {
        query.push(
            " AND EXISTS (SELECT 1 FROM patient_organizations po JOIN practitioner_organizations pr
                ON pr.organization_id = po.organization_id WHERE po.patient_id = i.patient_id AND pr.practitioner_id = ",
        );
        query.push_bind(practitioner_id).push(")");
    }
    if let Some(patient_id) = filter.patient_id {
        query.push(" AND i.patient_id = ").push_bind(patient_id);
    }
}

/// Invitations matching `filter`, newest first.
pub async fn list_invitations(pool: &PgPool, filter: &InvitationFilter, page: PageRequest) -> Result<Page<Invitation>> {
    let mut count_query = QueryBuilder::new("SELECT count(*) FROM patient_invitations i");
    push_invitation_filter(&mut count_query, filter);
    let count: i64 = count_query.build_query_scalar().fetch_one(pool).await?;
    let mut query = QueryBuilder::new(format!("SELECT {INVITATION_COLUMNS} FROM patient_invitations i"));
    push_invitation_filter(&mut query, filter);
    query.push(" ORDER BY i.last_updated DESC, i.id DESC LIMIT ").push_bind(page.limit());
    query.push(" OFFSET ").push_bind(page.offset());
    let items = query.build_query_as().fetch_all(pool).await?;
    Ok(Page { count, items })
}

pub async fn get_invitation(pool: &PgPool, id: i64) -> Result<Invitation> {
    sqlx::query_as(AssertSqlSafe(format!("SELECT {INVITATION_COLUMNS} FROM patient_invitations i WHERE i.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "PatientInvitation" })
}

/// Every invitation of a patient, newest first.
pub async fn invitations_of_patient(pool: &PgPool, patient_id: i64) -> Result<Vec<Invitation>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {INVITATION_COLUMNS} FROM patient_invitations i WHERE i.patient_id = $1
         ORDER BY i.last_updated DESC, i.id DESC"
    )))
    .bind(patient_id)
    .fetch_all(pool)
    .await?)
}

/// Issues an invitation of a patient to a patient app. Earlier `issued` invitations of the same patient and
/// client become `reissued` in the same transaction, so only the newest link works.
pub async fn issue_invitation(pool: &PgPool, patient_id: i64, client_pk: i64) -> Result<IssuedInvitation> {
    let mut tx = pool.begin().await?;
    let patient_exists =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1) AS "exists!""#, patient_id)
            .fetch_one(&mut *tx)
            .await?;
    if !patient_exists {
        return Err(Error::Invalid(format!("patientId: patient {patient_id} does not exist")));
    }
    // `None`: no such client; `Some(None)`: a client that is not a patient app
    let client: Option<Option<String>> = sqlx::query_scalar!(
        r#"SELECT a.invitation_url AS "invitation_url?" FROM oauth_clients c
         LEFT JOIN patient_apps a ON a.client_pk = c.id WHERE c.id = $1"#,
        client_pk,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let invitation_url = match client {
        None => return Err(Error::Invalid(format!("client_id: client {client_pk} does not exist"))),
        Some(None) => {
            return Err(Error::Invalid(format!(
                "client_id: client {client_pk} is not a patient app (it has no invitation URL); \
                 pick one of GET /api/v1/clients"
            )));
        }
        Some(Some(url)) => url,
    };
    sqlx::query!(
        "UPDATE patient_invitations SET status = $3, last_updated = now()
         WHERE patient_id = $1 AND client_pk = $2 AND status = $4",
        patient_id,
        client_pk,
        InvitationStatus::Reissued.as_str(),
        InvitationStatus::Issued.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    let token = Alphanumeric.sample_string(&mut rand::rng(), INVITATION_TOKEN_LENGTH);
    let row = sqlx::query!(
        "INSERT INTO patient_invitations AS i (patient_id, client_pk, token_hash, status) VALUES ($1, $2, $3, $4)
         RETURNING i.id, i.patient_id, i.client_pk AS client_id, i.token_hash, i.status, i.last_updated",
        patient_id,
        client_pk,
        invitation_token_hash(&token),
        InvitationStatus::Issued.as_str(),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let invitation = Invitation {
        id: row.id,
        patient_id: row.patient_id,
        client_id: row.client_id,
        token_hash: row.token_hash,
        token: Some(token),
        status: row.status,
        last_updated: row.last_updated,
        invitation_link: None,
    };
    Ok(IssuedInvitation { invitation, invitation_url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_unpadded_base64url_sha256() {
        // sha256("abc") = ba7816bf…f20015ad
        assert_eq!(invitation_token_hash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(invitation_token_hash("x".repeat(32).as_str()).len(), 43);
    }
}
