//! Organizations: a tree under ROOT (id 0), and practitioners' roles in them.

use crate::people::Practitioner;
use crate::{Error, Page, PageRequest, Result};
use jhe_schemas::Role;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};

pub const ROOT_ORGANIZATION_ID: i64 = 0;

/// An organization as the REST API shows it. `current_user_role` and `children` are filled in by the caller
/// where the endpoint calls for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all(serialize = "camelCase"))]
pub struct Organization {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    pub part_of: Option<i64>,
    #[sqlx(skip)]
    #[serde(default)]
    pub current_user_role: Option<String>,
    #[sqlx(skip)]
    #[serde(default)]
    pub children: Vec<Organization>,
}

/// `{id, name, type}`, the short form nested in studies and consents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OrganizationShort {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
}

/// A practitioner of an organization, as `GET /organizations/{id}/users` lists them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationUser {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
}

/// A practitioner's role in an organization.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub id: i64,
    pub organization: Organization,
    pub practitioner: Practitioner,
    pub role: String,
}

const ORGANIZATION_COLUMNS: &str = "id, name, type, part_of";

pub async fn list_organizations(pool: &PgPool, part_of: Option<i64>, page: PageRequest) -> Result<Page<Organization>> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM organizations WHERE ($1::bigint IS NULL OR part_of = $1)"#,
        part_of,
    )
    .fetch_one(pool)
    .await?;
    let items = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE ($1::bigint IS NULL OR part_of = $1)
         ORDER BY name, id LIMIT $2 OFFSET $3"
    )))
    .bind(part_of)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    Ok(Page { count, items })
}

pub async fn get_organization(pool: &PgPool, id: i64) -> Result<Organization> {
    sqlx::query_as(AssertSqlSafe(format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "Organization" })
}

/// Creates an organization under `part_of`; a practitioner creating a sub-organization becomes its manager.
pub async fn create_organization(
    pool: &PgPool,
    name: &str,
    kind: &str,
    part_of: i64,
    creator_practitioner_id: Option<i64>,
) -> Result<Organization> {
    let mut tx = pool.begin().await?;
    let parent_exists =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1) AS "exists!""#, part_of)
            .fetch_one(&mut *tx)
            .await?;
    if !parent_exists {
        return Err(Error::Invalid(format!("partOf: organization {part_of} does not exist")));
    }
    let organization: Organization = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO organizations (name, type, part_of) VALUES ($1, $2, $3) RETURNING {ORGANIZATION_COLUMNS}"
    )))
    .bind(name)
    .bind(kind)
    .bind(part_of)
    .fetch_one(&mut *tx)
    .await?;
    if let (Some(practitioner_id), true) = (creator_practitioner_id, part_of != ROOT_ORGANIZATION_ID) {
        sqlx::query!(
            "INSERT INTO practitioner_organizations (practitioner_id, organization_id, role) VALUES ($1, $2, 'manager')",
            practitioner_id,
            organization.id,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(organization)
}

pub async fn update_organization(
    pool: &PgPool,
    id: i64,
    name: Option<&str>,
    kind: Option<&str>,
) -> Result<Organization> {
    sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE organizations SET name = COALESCE($2, name), type = COALESCE($3, type), last_updated = now()
         WHERE id = $1 RETURNING {ORGANIZATION_COLUMNS}"
    )))
    .bind(id)
    .bind(name)
    .bind(kind)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound { entity: "Organization" })
}

/// Deletes an organization with its sub-organizations, studies and memberships.
pub async fn delete_organization(pool: &PgPool, id: i64) -> Result<()> {
    if id == ROOT_ORGANIZATION_ID {
        return Err(Error::Invalid("the ROOT organization cannot be deleted".into()));
    }
    let deleted = sqlx::query!("DELETE FROM organizations WHERE id = $1", id).execute(pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "Organization" });
    }
    Ok(())
}

/// The organization with all its descendants in `children`, each level ordered by name.
pub async fn organization_tree(pool: &PgPool, id: i64) -> Result<Organization> {
    let rows: Vec<Organization> = sqlx::query!(
        r#"WITH RECURSIVE tree AS (
             SELECT id, name, type, part_of FROM organizations WHERE id = $1
             UNION ALL
             SELECT o.id, o.name, o.type, o.part_of FROM organizations o JOIN tree t ON o.part_of = t.id
                 WHERE o.id <> 0
         )
         SELECT id AS "id!", name AS "name!", type AS "kind!", part_of FROM tree ORDER BY name, id"#,
        id,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| Organization {
        id: row.id,
        name: row.name,
        kind: row.kind,
        part_of: row.part_of,
        current_user_role: None,
        children: Vec::new(),
    })
    .collect();
    let Some(root) = rows.iter().find(|o| o.id == id).cloned() else {
        return Err(Error::NotFound { entity: "Organization" });
    };
    Ok(attach_children(root, &rows))
}

fn attach_children(mut node: Organization, all: &[Organization]) -> Organization {
    node.children = all
        .iter()
        .filter(|o| o.part_of == Some(node.id) && o.id != node.id)
        .map(|child| attach_children(child.clone(), all))
        .collect();
    node
}

/// Practitioners of an organization with their role there, ordered by id.
pub async fn organization_users(pool: &PgPool, organization_id: i64) -> Result<Vec<OrganizationUser>> {
    get_organization(pool, organization_id).await?;
    let users = sqlx::query_as!(
        OrganizationUser,
        "SELECT u.id, u.email, u.first_name, u.last_name, po.role
         FROM practitioner_organizations po
         JOIN practitioners p ON p.id = po.practitioner_id
         JOIN users u ON u.id = p.user_id
         WHERE po.organization_id = $1 ORDER BY u.id",
        organization_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(users)
}

/// Gives the practitioner behind `user_id` `role` in the organization. Returns the membership and whether it is new.
pub async fn upsert_membership(
    pool: &PgPool,
    organization_id: i64,
    user_id: i64,
    role: Role,
) -> Result<(Membership, bool)> {
    let organization = get_organization(pool, organization_id).await?;
    if organization_id == ROOT_ORGANIZATION_ID {
        return Err(Error::Invalid("practitioners cannot be members of the ROOT organization".into()));
    }
    let practitioner_id =
        sqlx::query_scalar!("SELECT id FROM practitioners WHERE user_id = $1", user_id).fetch_optional(pool).await?;
    let Some(practitioner_id) = practitioner_id else {
        return Err(Error::NotFound { entity: "Practitioner" });
    };
    let row = sqlx::query!(
        r#"INSERT INTO practitioner_organizations (practitioner_id, organization_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (practitioner_id, organization_id) DO UPDATE SET role = EXCLUDED.role
         RETURNING id AS "id!", (xmax = 0) AS "created!""#,
        practitioner_id,
        organization_id,
        role.as_str(),
    )
    .fetch_one(pool)
    .await?;
    let practitioner = crate::people::get_practitioner(pool, practitioner_id).await?;
    Ok((Membership { id: row.id, organization, practitioner, role: role.as_str().to_owned() }, row.created))
}

/// Removes the practitioner behind `user_id` from the organization.
pub async fn remove_membership(pool: &PgPool, organization_id: i64, user_id: i64) -> Result<()> {
    let removed = sqlx::query!(
        "DELETE FROM practitioner_organizations po USING practitioners p
         WHERE po.practitioner_id = p.id AND p.user_id = $1 AND po.organization_id = $2",
        user_id,
        organization_id,
    )
    .execute(pool)
    .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "PractitionerOrganization" });
    }
    Ok(())
}

/// The organizations a user is a practitioner member of, with the role as `current_user_role`.
pub async fn organizations_of_user(pool: &PgPool, user_id: i64) -> Result<Vec<Organization>> {
    let rows = sqlx::query!(
        "SELECT o.id, o.name, o.type AS kind, o.part_of, po.role
         FROM practitioner_organizations po
         JOIN practitioners p ON p.id = po.practitioner_id
         JOIN organizations o ON o.id = po.organization_id
         WHERE p.user_id = $1 ORDER BY o.name, o.id",
        user_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Organization {
            id: row.id,
            name: row.name,
            kind: row.kind,
            part_of: row.part_of,
            current_user_role: Some(row.role),
            children: Vec::new(),
        })
        .collect())
}

/// Refuses an organization id that names no organization a patient or practitioner can belong to (the root, 0,
/// is not one).
pub(crate) async fn require_organization(executor: impl sqlx::PgExecutor<'_>, organization_id: i64) -> Result<()> {
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1 AND id <> 0) AS "exists!""#,
        organization_id,
    )
    .fetch_one(executor)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(Error::Invalid(format!("organizationId: organization {organization_id} does not exist")))
    }
}
