//! Requests to add a patient of another organization to the requester's: the only way a practitioner brings in a
//! patient they cannot already see. A request names the patient by the exact email the practitioner typed; the
//! patient accepts or declines it with their own login, and only acceptance adds the organization. Neither side is
//! shown more of the other than the request itself: the practitioner sees the email they typed and the request's
//! status, never the patient's record or id, until the patient has accepted.

use crate::{Error, Page, PageRequest, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// The organization a request is for, as the patient is shown it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestingOrganization {
    pub id: i64,
    pub name: String,
}

/// A request as both the patient and the requesting organization see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationRequest {
    pub id: i64,
    pub organization: RequestingOrganization,
    /// the email as the practitioner typed it
    pub requested_email: String,
    /// the requesting practitioner's name and email, for the patient to recognise them
    pub requested_by: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// `pending`, `accepted`, `declined` or `cancelled`
    pub status: String,
    pub decided_at: Option<DateTime<Utc>>,
}

/// What a patient does with a request addressed to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestDecision {
    Accept,
    Decline,
}

/// Asks the patient whose account email is exactly `email` (case-insensitive) to join `organization_id`. A
/// pending request of that organization to the same patient is answered again rather than duplicated.
pub async fn request_patient_organization(
    pool: &PgPool,
    organization_id: i64,
    email: &str,
    requested_by: i64,
) -> Result<OrganizationRequest> {
    let mut tx = pool.begin().await?;
    crate::organizations::require_organization(&mut *tx, organization_id).await?;
    let patient_id = sqlx::query_scalar!(
        "SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE lower(u.email) = lower($1)",
        email,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        Error::Invalid(format!(
            "telecomEmail: no patient has the email {email}; create the patient in your organization instead"
        ))
    })?;
    let member = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM patient_organizations WHERE patient_id = $1 AND organization_id = $2)
           AS "exists!""#,
        patient_id,
        organization_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if member {
        return Err(Error::Conflict(format!("the patient with the email {email} is already in this organization")));
    }
    let id = sqlx::query_scalar!(
        r#"WITH inserted AS (
               INSERT INTO patient_organization_requests (patient_id, organization_id, requested_email, requested_by)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (patient_id, organization_id) WHERE status = 'pending' DO NOTHING
               RETURNING id)
           SELECT id AS "id!" FROM inserted
           UNION ALL
           SELECT id FROM patient_organization_requests
            WHERE patient_id = $1 AND organization_id = $2 AND status = 'pending'
           LIMIT 1"#,
        patient_id,
        organization_id,
        email,
        requested_by,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    get_organization_request(pool, id).await
}

/// Which requests a read returns: every filter given must hold.
#[derive(Debug, Clone, Copy, Default)]
struct RequestFilter<'a> {
    id: Option<i64>,
    patient_id: Option<i64>,
    organization_ids: Option<&'a [i64]>,
}

/// The requests matching `filter`, newest first, with the total count.
async fn select_requests(
    pool: &PgPool,
    filter: RequestFilter<'_>,
    page: PageRequest,
) -> Result<Page<OrganizationRequest>> {
    let rows = sqlx::query!(
        r#"SELECT r.id, r.organization_id, o.name AS organization_name, r.requested_email,
                  NULLIF(trim(u.first_name || ' ' || u.last_name || ' <' || u.email || '>'), '<>') AS requested_by,
                  r.requested_at, r.status, r.decided_at, count(*) OVER () AS "total!"
             FROM patient_organization_requests r
             JOIN organizations o ON o.id = r.organization_id
             LEFT JOIN users u ON u.id = r.requested_by
            WHERE ($1::bigint IS NULL OR r.id = $1)
              AND ($2::bigint IS NULL OR r.patient_id = $2)
              AND ($3::bigint[] IS NULL OR r.organization_id = ANY($3))
            ORDER BY r.id DESC
            LIMIT $4 OFFSET $5"#,
        filter.id,
        filter.patient_id,
        filter.organization_ids,
        page.limit(),
        page.offset(),
    )
    .fetch_all(pool)
    .await?;
    let count = rows.first().map_or(0, |row| row.total);
    let items = rows
        .into_iter()
        .map(|row| OrganizationRequest {
            id: row.id,
            organization: RequestingOrganization { id: row.organization_id, name: row.organization_name },
            requested_email: row.requested_email,
            requested_by: row.requested_by,
            requested_at: row.requested_at,
            status: row.status,
            decided_at: row.decided_at,
        })
        .collect();
    Ok(Page { count, items })
}

const ONE: PageRequest = PageRequest { page: 1, page_size: 1 };
const ALL: PageRequest = PageRequest { page: 1, page_size: u32::MAX };

/// One request by id.
pub async fn get_organization_request(pool: &PgPool, id: i64) -> Result<OrganizationRequest> {
    let filter = RequestFilter { id: Some(id), ..RequestFilter::default() };
    select_requests(pool, filter, ONE).await?.items.pop().ok_or(Error::NotFound { entity: "OrganizationRequest" })
}

/// The organization a request is for, if the request exists.
pub async fn organization_request_organization(pool: &PgPool, id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!("SELECT organization_id FROM patient_organization_requests WHERE id = $1", id)
        .fetch_optional(pool)
        .await?)
}

/// Requests addressed to a patient, newest first.
pub async fn organization_requests_of_patient(pool: &PgPool, patient_id: i64) -> Result<Vec<OrganizationRequest>> {
    let filter = RequestFilter { patient_id: Some(patient_id), ..RequestFilter::default() };
    Ok(select_requests(pool, filter, ALL).await?.items)
}

/// Requests of the given organizations (`None`: all), newest first.
pub async fn organization_requests_of_organizations(
    pool: &PgPool,
    organization_ids: Option<&[i64]>,
    page: PageRequest,
) -> Result<Page<OrganizationRequest>> {
    select_requests(pool, RequestFilter { organization_ids, ..RequestFilter::default() }, page).await
}

/// The patient's answer to a pending request addressed to them; accepting adds the organization. A request of
/// another patient is not found.
pub async fn decide_organization_request(
    pool: &PgPool,
    patient_id: i64,
    request_id: i64,
    decision: RequestDecision,
) -> Result<OrganizationRequest> {
    let mut tx = pool.begin().await?;
    let pending = sqlx::query!(
        "SELECT organization_id, status FROM patient_organization_requests
          WHERE id = $1 AND patient_id = $2 FOR UPDATE",
        request_id,
        patient_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound { entity: "OrganizationRequest" })?;
    if pending.status != "pending" {
        return Err(Error::Conflict(format!("this request is {} already", pending.status)));
    }
    let status = match decision {
        RequestDecision::Accept => "accepted",
        RequestDecision::Decline => "declined",
    };
    if decision == RequestDecision::Accept {
        sqlx::query!(
            "INSERT INTO patient_organizations (patient_id, organization_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            patient_id,
            pending.organization_id,
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        "UPDATE patient_organization_requests SET status = $2, decided_at = now() WHERE id = $1",
        request_id,
        status,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get_organization_request(pool, request_id).await
}

/// Withdraws a pending request (the requesting organization changed its mind).
pub async fn cancel_organization_request(pool: &PgPool, request_id: i64) -> Result<()> {
    let cancelled = sqlx::query!(
        "UPDATE patient_organization_requests SET status = 'cancelled', decided_at = now()
          WHERE id = $1 AND status = 'pending'",
        request_id,
    )
    .execute(pool)
    .await?;
    if cancelled.rows_affected() == 0 {
        return Err(Error::Conflict("only a pending request can be cancelled".into()));
    }
    Ok(())
}
